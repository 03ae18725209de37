//! `run --resources`: RedisPolicy objects as a source of policies, and the writer of their
//! `status`.
//!
//! - [`Resources`] lists the objects a [`PolicyWatch`] keeps, as policy texts, for the same
//!   [`PolicySet`](super::policies::PolicySet) a directory feeds: one validation, one
//!   overlap rule, and an invalid or conflicting object never runs while its previous valid
//!   version keeps running.
//! - [`StatusWriter`] writes each object's status once a second at most, and only when it
//!   changed. A running policy's status is written by the daemon that leads it, alone. An
//!   object that runs nowhere (invalid, or conflicting, since it was created) has no leader:
//!   every daemon may say so, each under the resourceVersion it read, so exactly one write
//!   (and one Event) lands per new problem.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::policies::{Conflict, PolicySet, PolicySource, Read};
use super::policy_loop::rfc3339;
use super::report::{PolicyReport, Reports};
use crate::act::{Leadership, Pauses};
use crate::cluster::kubernetes::KubeClient;
use crate::cluster::kubernetes::events::EventSink;
use crate::cluster::kubernetes::policies::{PolicyWatch, event_sink, warn, write_status};
use crate::errors::chain;
use crate::policy::{Diagnostic, Loaded, Policy, load_policy_str_checked};
use crate::resource::object::{PolicyObject, problems_text, unpositioned};
use crate::resource::status::{Condition, Phase, PolicyStatus, Replicas};

/// How often statuses are looked at (and so the most often one is written).
pub const STATUS_PERIOD: Duration = Duration::from_secs(1);

/// The objects a watch keeps, as policy texts.
pub struct Resources {
    watch: Arc<PolicyWatch>,
}

impl Resources {
    pub fn new(watch: Arc<PolicyWatch>) -> Self {
        Self { watch }
    }
}

impl PolicySource for Resources {
    fn list(&mut self) -> Result<Vec<(String, Read)>, Vec<Diagnostic>> {
        let objects = self
            .watch
            .objects()
            .map_err(|why| vec![Diagnostic::whole_file("redispolicies", &why)])?;
        Ok(objects.iter().map(|object| (object.key(), Read::Text(object.document()))).collect())
    }

    /// The listing is the API server's own (a complete list, then every change): what it
    /// lacks was deleted.
    fn is_gone(&self, _key: &str) -> bool {
        true
    }

    fn load(&self, key: &str, text: &str) -> Result<Loaded, Vec<Diagnostic>> {
        load_policy_str_checked(key, text).map_err(unpositioned)
    }

    fn present(&self, diagnostic: Diagnostic) -> Diagnostic {
        unpositioned(vec![diagnostic]).remove(0)
    }

    fn fatal_at_start(&self) -> bool {
        false
    }
}

/// What the supervisor tells the writer after every start and reload.
#[derive(Default)]
struct Board {
    /// Running policies by key: the version running and its leader gate.
    running: BTreeMap<String, (Policy, Leadership)>,
    /// Keys whose current text does not run, and why.
    problems: BTreeMap<String, Problem>,
}

/// Why an object's current spec does not run.
#[derive(Debug, Clone, PartialEq)]
struct Problem {
    reason: &'static str,
    message: String,
}

impl Problem {
    fn of(conflict: Option<Conflict>, diagnostics: &[Diagnostic]) -> Self {
        let reason = match conflict {
            None => "InvalidSpec",
            Some(Conflict::Overlap) => "OverlapsAnotherPolicy",
            Some(Conflict::DuplicateName) => "DuplicateName",
        };
        Self { reason, message: problems_text(diagnostics) }
    }
}

/// Writes the status of every RedisPolicy object; cheap to clone (the board is shared).
#[derive(Clone)]
pub struct StatusWriter {
    client: Arc<KubeClient>,
    watch: Arc<PolicyWatch>,
    board: Arc<Mutex<Board>>,
    reports: Reports,
    pauses: Pauses,
    identity: String,
}

impl StatusWriter {
    pub fn new(
        client: Arc<KubeClient>,
        watch: Arc<PolicyWatch>,
        reports: Reports,
        pauses: Pauses,
        identity: String,
    ) -> Self {
        let board = Arc::default();
        Self { client, watch, board, reports, pauses, identity }
    }

    /// Takes what runs and what is refused from `set`, with each running policy's gate.
    pub fn update(&self, set: &PolicySet, leaders: &BTreeMap<String, Leadership>) {
        let mut board = Board::default();
        for policy in set.policies() {
            let (Some(key), Some(leadership)) =
                (set.key_of(&policy.name), leaders.get(&policy.name))
            else {
                continue;
            };
            board.running.insert(key.to_owned(), (policy.clone(), leadership.clone()));
        }
        if let Ok(objects) = self.watch.objects() {
            for object in objects {
                let key = object.key();
                if let Some((conflict, diagnostics)) = set.problem(&key) {
                    board.problems.insert(key, Problem::of(conflict, &diagnostics));
                }
            }
        }
        *self.board.lock().unwrap_or_else(PoisonError::into_inner) = board;
    }

    /// Writes statuses every [`STATUS_PERIOD`] until `stopped` turns true.
    pub async fn run(self, mut stopped: tokio::sync::watch::Receiver<bool>) {
        let mut ticker = tokio::time::interval(STATUS_PERIOD);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // What this daemon last wrote on each object, so a write the watch has not echoed
        // yet is not written again.
        let mut written: BTreeMap<String, PolicyStatus> = BTreeMap::new();
        let mut sinks: BTreeMap<String, EventSink> = BTreeMap::new();
        loop {
            tokio::select! {
                _ = stopped.changed() => return,
                _ = ticker.tick() => self.write_all(&mut written, &mut sinks).await,
            }
        }
    }

    async fn write_all(
        &self,
        written: &mut BTreeMap<String, PolicyStatus>,
        sinks: &mut BTreeMap<String, EventSink>,
    ) {
        let Ok(objects) = self.watch.objects() else { return };
        let now = Utc::now();
        // What is no longer there needs no memory of what was written or said on it.
        written.retain(|key, _| objects.iter().any(|object| object.key() == *key));
        sinks.retain(|key, _| objects.iter().any(|object| object.key() == *key));
        for object in objects {
            let key = object.key();
            let (running, problem) = {
                let board = self.board.lock().unwrap_or_else(PoisonError::into_inner);
                (board.running.get(&key).cloned(), board.problems.get(&key).cloned())
            };
            let leads = running.as_ref().map(|(_, leadership)| leadership.is_leader());
            let status = match (&running, leads, &problem) {
                // Led elsewhere: that daemon writes.
                (Some(_), Some(false), _) => continue,
                (Some((policy, _)), _, _) => {
                    let report = self.reports.get(&policy.name).unwrap_or_default();
                    let paused = self.pauses.of(&policy.name).is_paused();
                    compose(&object, policy, &report, paused, problem.as_ref(), now)
                }
                (None, _, Some(problem)) => unrun(&object, problem, now),
                // Not started yet (its target did not open): nothing new to say.
                (None, _, None) => continue,
            };
            let current = object.status.clone().unwrap_or_default();
            if status == current || written.get(&key) == Some(&status) {
                continue;
            }
            // Unled writers race each other on purpose: the first write wins, the rest see a
            // 409 and find it said on their next look.
            let precondition = running.is_none().then_some(object.resource_version.as_deref());
            let client = match self.client.get().await {
                Ok(client) => client,
                Err(error) => {
                    tracing::warn!(error = %chain(&error), "cannot write policy statuses: no Kubernetes client");
                    return;
                }
            };
            match write_status(client.clone(), &object, &status, precondition.flatten()).await {
                Ok(()) => {
                    tracing::debug!(policy = %key, phase = ?status.phase, "status written");
                    if let Some(problem) = newly_said(&current, &status, problem.as_ref()) {
                        let sink = sinks
                            .entry(key.clone())
                            .or_insert_with(|| event_sink(client, &object, &self.identity));
                        warn(sink, "Validate", problem.reason, &problem.message).await;
                    }
                    written.insert(key, status);
                }
                Err(error) if error.is_conflict() => {}
                Err(error) => {
                    tracing::warn!(policy = %key, error = %chain(&error), "cannot write the policy's status");
                }
            }
        }
    }
}

/// The problem `status` says that `before` did not (a new one, or new words for it).
fn newly_said<'a>(
    before: &PolicyStatus,
    status: &PolicyStatus,
    problem: Option<&'a Problem>,
) -> Option<&'a Problem> {
    let valid = |s: &PolicyStatus| s.conditions.iter().find(|c| c.kind == "Valid").cloned();
    let now = valid(status)?;
    let then = valid(before);
    let news = now.status == "False"
        && then.is_none_or(|then| {
            then.status != "False" || then.message != now.message || then.reason != now.reason
        });
    problem.filter(|_| news)
}

/// The status of a running policy, from what its loop reported.
fn compose(
    object: &PolicyObject,
    policy: &Policy,
    report: &PolicyReport,
    paused: bool,
    problem: Option<&Problem>,
    now: DateTime<Utc>,
) -> PolicyStatus {
    let previous = object.status.clone().unwrap_or_default();
    let serving = report.master_serving;
    let phase = if problem.is_some() {
        Phase::Invalid
    } else if report.changing_roles {
        Phase::FailingOver
    } else if paused {
        Phase::Paused
    } else if serving == Some(true) && report.answered == report.members {
        Phase::Healthy
    } else {
        Phase::Degraded
    };
    let last_snapshot = report.last_snapshot.clone().or(previous.last_snapshot.clone());
    let mut conditions = Vec::new();
    conditions.push(valid_condition(&previous, problem, object.generation, now));
    let (master_available, why) = match (&report.master, serving) {
        (Some((master, epoch)), Some(true)) => {
            ("True", format!("{master} serves writes at epoch {epoch}"))
        }
        (Some((master, epoch)), _) => {
            ("False", format!("the recorded master {master} (epoch {epoch}) does not serve"))
        }
        (None, _) => ("False", "no master is recorded".to_owned()),
    };
    let reason = if master_available == "True" { "Serving" } else { "NotServing" };
    conditions.push(condition(&previous, "MasterAvailable", master_available, reason, why, now));
    let (active, reason, why) = match (&policy.scaling, &report.scaling) {
        (None, _) => ("False", "NotConfigured", "the policy has no spec.scaling".to_owned()),
        (Some(_), None) => ("Unknown", "NotEvaluated", "no scaling round yet".to_owned()),
        (Some(_), Some((true, why))) => ("True", "Evaluating", why.clone()),
        (Some(_), Some((false, why))) => ("False", "CannotEvaluate", why.clone()),
    };
    conditions.push(condition(&previous, "ScalingActive", active, reason, why, now));
    let (backed_up, reason, why) = backed_up(policy, last_snapshot.as_ref(), now);
    conditions.push(condition(&previous, "BackedUp", backed_up, reason, why, now));
    PolicyStatus {
        observed_generation: object.generation,
        phase: Some(phase),
        master: report.master.as_ref().map(|(master, _)| master.clone()).or(previous.master),
        epoch: report.master.as_ref().map(|(_, epoch)| *epoch).or(previous.epoch),
        replicas: Some(Replicas {
            desired: report.desired.unwrap_or(report.members),
            current: report.members,
            ready: report.answered,
        }),
        last_scale: report.last_scale.clone().or(previous.last_scale),
        last_failover: report.last_failover.clone().or(previous.last_failover),
        last_snapshot,
        conditions,
    }
}

/// The status of an object that runs nowhere: what it said before, with `Valid=False`.
fn unrun(object: &PolicyObject, problem: &Problem, now: DateTime<Utc>) -> PolicyStatus {
    let previous = object.status.clone().unwrap_or_default();
    let mut status = previous.clone();
    status.observed_generation = object.generation;
    status.phase = Some(Phase::Invalid);
    status.conditions.retain(|c| c.kind != "Valid");
    status.conditions.insert(0, valid_condition(&previous, Some(problem), object.generation, now));
    status
}

/// Whether the newest snapshot is as recent as the schedule asks: one taken since the last
/// firing that should have finished by now. A run may take up to its transfer deadline, but
/// never counts as late only once the next run is due too: the grace is the shorter of the
/// deadline and the schedule's period.
fn backed_up(
    policy: &Policy,
    last: Option<&crate::resource::status::LastSnapshot>,
    now: DateTime<Utc>,
) -> (&'static str, &'static str, String) {
    let Some(snapshots) = &policy.snapshots else {
        return ("False", "NotConfigured", "the policy has no spec.snapshots".to_owned());
    };
    let schedule = &snapshots.schedule;
    let period = schedule.last_at_or_before(now).and_then(|last| {
        let before = schedule.last_at_or_before(last - chrono::Duration::seconds(1))?;
        Some(last - before)
    });
    let mut deadline = chrono::Duration::from_std(snapshots.limits.deadline).unwrap_or_default();
    if let Some(period) = period {
        deadline = deadline.min(period);
    }
    let due = schedule.last_at_or_before(now - deadline);
    let taken = last.and_then(|last| DateTime::parse_from_rfc3339(&last.time).ok());
    match (due, taken) {
        (None, _) => ("True", "NotDueYet", "no snapshot is due yet".to_owned()),
        (Some(due), Some(taken)) if taken >= due => {
            ("True", "Recent", format!("the newest snapshot is from {}", rfc3339(taken.into())))
        }
        (Some(due), Some(taken)) => (
            "False",
            "Overdue",
            format!(
                "the newest snapshot is from {}; the schedule wanted one by {}",
                rfc3339(taken.into()),
                rfc3339(due + deadline)
            ),
        ),
        (Some(due), None) => (
            "False",
            "Overdue",
            format!("no snapshot known; the schedule wanted one by {}", rfc3339(due + deadline)),
        ),
    }
}

fn valid_condition(
    previous: &PolicyStatus,
    problem: Option<&Problem>,
    generation: Option<i64>,
    now: DateTime<Utc>,
) -> Condition {
    let mut valid = match problem {
        None => condition(previous, "Valid", "True", "Valid", "passes check".to_owned(), now),
        Some(problem) => {
            condition(previous, "Valid", "False", problem.reason, problem.message.clone(), now)
        }
    };
    valid.observed_generation = generation;
    valid
}

/// A condition, keeping its `lastTransitionTime` while its status stays what it was.
fn condition(
    previous: &PolicyStatus,
    kind: &str,
    status: &str,
    reason: &str,
    message: String,
    now: DateTime<Utc>,
) -> Condition {
    let before = previous.conditions.iter().find(|c| c.kind == kind);
    let last_transition_time = match before {
        Some(before) if before.status == status => before.last_transition_time.clone(),
        _ => rfc3339(now),
    };
    Condition {
        kind: kind.to_owned(),
        status: status.to_owned(),
        reason: reason.to_owned(),
        message,
        last_transition_time,
        observed_generation: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object(status: serde_json::Value) -> PolicyObject {
        PolicyObject::from_json(&json!({
            "metadata": {"name": "cache", "namespace": "prod", "generation": 4,
                         "resourceVersion": "9"},
            "spec": {}, "status": status,
        }))
        .expect("an object")
    }

    fn policy(snapshots: bool) -> Policy {
        let snapshots = if snapshots {
            "  snapshots:\n    schedule: '0 0 * * * *'\n    destination: 'file:///tmp/x'\n"
        } else {
            ""
        };
        let text = format!(
            "apiVersion: autopilot.redis.io/v1alpha1\nkind: RedisPolicy\nmetadata: {{name: cache}}\n\
             spec:\n  target: {{endpoints: ['10.0.0.1:6379']}}\n{snapshots}"
        );
        load_policy_str_checked("p.yaml", &text).expect("valid").policy
    }

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).expect("a time").into()
    }

    fn report() -> PolicyReport {
        PolicyReport {
            master: Some(("redis-0".into(), 3)),
            master_serving: Some(true),
            members: 3,
            answered: 3,
            desired: Some(3),
            ..PolicyReport::default()
        }
    }

    fn find<'a>(status: &'a PolicyStatus, kind: &str) -> &'a Condition {
        status.conditions.iter().find(|c| c.kind == kind).expect(kind)
    }

    #[test]
    fn a_serving_fleet_is_healthy_and_a_dead_master_degrades_it() {
        let now = at("2026-12-03T10:00:00Z");
        let status = compose(&object(json!({})), &policy(false), &report(), false, None, now);
        assert_eq!(status.phase, Some(Phase::Healthy));
        assert_eq!((status.master.as_deref(), status.epoch), (Some("redis-0"), Some(3)));
        assert_eq!(status.observed_generation, Some(4));
        assert_eq!(find(&status, "MasterAvailable").status, "True");
        assert_eq!(find(&status, "BackedUp").reason, "NotConfigured");

        let down = PolicyReport { master_serving: Some(false), answered: 2, ..report() };
        let later = at("2026-12-03T10:00:05Z");
        let degraded = compose(&object(json!({})), &policy(false), &down, false, None, later);
        assert_eq!(degraded.phase, Some(Phase::Degraded));
        assert_eq!(find(&degraded, "MasterAvailable").status, "False");
        let claimed = PolicyReport { changing_roles: true, ..down };
        let status = compose(&object(json!({})), &policy(false), &claimed, true, None, later);
        assert_eq!(status.phase, Some(Phase::FailingOver), "roles changing outranks a pause");
        let paused = compose(&object(json!({})), &policy(false), &report(), true, None, later);
        assert_eq!(paused.phase, Some(Phase::Paused));
    }

    #[test]
    fn a_transition_time_moves_only_with_its_status() {
        let first = compose(
            &object(json!({})),
            &policy(false),
            &report(),
            false,
            None,
            at("2026-12-03T10:00:00Z"),
        );
        let written = serde_json::to_value(&first).unwrap();
        let again = compose(
            &object(written),
            &policy(false),
            &report(),
            false,
            None,
            at("2026-12-03T11:00:00Z"),
        );
        assert_eq!(again, first, "nothing changed: nothing to write");
    }

    #[test]
    fn backed_up_follows_the_schedule() {
        let policy = policy(true);
        let snapshot = |time: &str| crate::resource::status::LastSnapshot {
            time: time.into(),
            id: "s".into(),
            bytes: 1,
            verified: false,
            reason: None,
        };
        // Hourly, with the 6 h default transfer deadline: an hour's grace, so at 10:59 a
        // snapshot since the 09:00 run is wanted.
        let now = at("2026-12-03T10:59:00Z");
        let recent = snapshot("2026-12-03T10:00:30Z");
        assert_eq!(backed_up(&policy, Some(&recent), now).0, "True");
        let old = snapshot("2026-12-03T08:00:30Z");
        let (status, reason, why) = backed_up(&policy, Some(&old), now);
        assert_eq!((status, reason), ("False", "Overdue"), "{why}");
        assert_eq!(backed_up(&policy, None, now).1, "Overdue");
    }

    #[test]
    fn an_unrun_object_keeps_what_it_said_and_is_invalid() {
        let before = json!({"master": "redis-1", "epoch": 7, "phase": "Healthy"});
        let problem = Problem { reason: "InvalidSpec", message: "spec.x: unknown field".into() };
        let status = unrun(&object(before), &problem, at("2026-12-03T10:00:00Z"));
        assert_eq!(status.phase, Some(Phase::Invalid));
        assert_eq!((status.master.as_deref(), status.epoch), (Some("redis-1"), Some(7)));
        let valid = find(&status, "Valid");
        assert_eq!(
            (valid.status.as_str(), valid.message.as_str()),
            ("False", "spec.x: unknown field")
        );
        assert_eq!(valid.observed_generation, Some(4));
        let said = newly_said(&PolicyStatus::default(), &status, Some(&problem));
        assert!(said.is_some(), "a new problem is an Event");
        assert!(newly_said(&status, &status, Some(&problem)).is_none(), "said once");
    }
}
