//! Kubernetes Events (events.k8s.io/v1) on the StatefulSet, one per action, so
//! `kubectl describe statefulset` shows what the daemon did and why. Rate-limited: the same
//! action and reason at most once per [`EventSink::new`]'s interval; the next one that goes
//! out says how many were held back. A new master record starts afresh
//! ([`EventSink::new_epoch`]): a failover right after the first master (or another failover)
//! is news, not a repeat; [`EventSink::emit_always`] posts what is news every time (a restore
//! test's verdict). Events are best effort: a failure to post one is logged (naming the
//! missing permission on a 403) and never fails the action it reports.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::Api;
use kube::api::PostParams;

use super::api::{CREATE_EVENT, bounded};

/// Who reports the events (`reportingController`).
pub const CONTROLLER: &str = "redis-autopilot.io/redis-autopilot";
/// The API limits `note` to 1 kB.
const NOTE_MAX: usize = 1024;

/// Normal or Warning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Normal,
    Warning,
}

struct Sent {
    /// When it last went out; `None` once a new master epoch began.
    at: Option<Instant>,
    held_back: u32,
}

pub struct EventSink {
    api: Api<Event>,
    regarding: ObjectReference,
    instance: String,
    interval: Duration,
    sent: Mutex<HashMap<(String, String), Sent>>,
}

impl EventSink {
    /// Events about `regarding`, reported by `instance` (the daemon's identity), at most one
    /// per action and reason per `interval`.
    pub fn new(
        api: Api<Event>,
        regarding: ObjectReference,
        instance: String,
        interval: Duration,
    ) -> Self {
        Self { api, regarding, instance, interval, sent: Mutex::new(HashMap::new()) }
    }

    /// A new master was recorded: what follows (its promotion, repoints, role labels, the
    /// decision that explains it) is not a repeat of what the last epoch posted, so each goes
    /// out at once, with the count held back before it. Epochs only grow by a failover, a
    /// switchover or the first master, which have their own bounds: no flood.
    pub fn new_epoch(&self) {
        let mut sent = self.sent.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        for last in sent.values_mut() {
            last.at = None;
        }
    }

    /// Posts one Event, unless the same `action` and `reason` went out less than the interval
    /// ago in this epoch.
    pub async fn emit(&self, severity: Severity, action: &str, reason: &str, note: &str) {
        let held_back = {
            let mut sent = self.sent.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let key = (action.to_owned(), reason.to_owned());
            let now = Instant::now();
            match sent.get_mut(&key) {
                Some(last) if last.at.is_some_and(|at| now.duration_since(at) < self.interval) => {
                    last.held_back += 1;
                    return;
                }
                Some(last) => {
                    let held_back = last.held_back;
                    *last = Sent { at: Some(now), held_back: 0 };
                    held_back
                }
                None => {
                    sent.insert(key, Sent { at: Some(now), held_back: 0 });
                    0
                }
            }
        };
        let mut note = note.to_owned();
        if held_back > 0 {
            note.push_str(&format!(" ({held_back} more like it held back)"));
        }
        self.post(severity, action, reason, note).await;
    }

    /// Posts one Event now, never held back as a repeat and not counted against
    /// [`EventSink::emit`]'s interval: for results that are news each time, however alike
    /// (a restore test's verdict: one per firing of its own schedule, at least minutes apart).
    pub async fn emit_always(&self, severity: Severity, action: &str, reason: &str, note: &str) {
        self.post(severity, action, reason, note.to_owned()).await;
    }

    async fn post(&self, severity: Severity, action: &str, reason: &str, mut note: String) {
        if note.len() > NOTE_MAX {
            let mut end = NOTE_MAX - 3;
            while !note.is_char_boundary(end) {
                end -= 1;
            }
            note.truncate(end);
            note.push_str("...");
        }
        let event = self.event(severity, action, reason, note);
        let object = format!("events for {}", self.object());
        let posted =
            bounded(&CREATE_EVENT, &object, self.api.create(&PostParams::default(), &event)).await;
        if let Err(error) = posted {
            tracing::warn!(action, reason, error = %crate::errors::chain(&error), "cannot post a Kubernetes Event");
        }
    }

    fn object(&self) -> String {
        format!(
            "{} {}/{}",
            self.regarding.kind.as_deref().unwrap_or_default().to_lowercase(),
            self.regarding.namespace.as_deref().unwrap_or_default(),
            self.regarding.name.as_deref().unwrap_or_default()
        )
    }

    fn event(&self, severity: Severity, action: &str, reason: &str, note: String) -> Event {
        let now = k8s_openapi::jiff::Timestamp::now();
        let name = self.regarding.name.clone().unwrap_or_default();
        Event {
            metadata: ObjectMeta {
                name: Some(format!("{name}.{:x}", now.as_nanosecond())),
                namespace: self.regarding.namespace.clone(),
                ..ObjectMeta::default()
            },
            event_time: Some(MicroTime(now)),
            action: Some(action.to_owned()),
            reason: Some(reason.to_owned()),
            note: Some(note),
            type_: Some(
                match severity {
                    Severity::Normal => "Normal",
                    Severity::Warning => "Warning",
                }
                .to_owned(),
            ),
            regarding: Some(self.regarding.clone()),
            reporting_controller: Some(CONTROLLER.to_owned()),
            reporting_instance: Some(self.instance.clone()),
            ..Event::default()
        }
    }
}
