//! RedisPolicy objects on the API server: a watch that keeps every object of one namespace
//! (or of all) in memory, and the writes of their `status` subresource and Events.
//!
//! The cache follows kube's watcher: a list, then a stream of changes, and a complete relist
//! whenever the stream cannot resume. An object leaves the cache only when the API server
//! says it is gone (a `DELETED` event, or a complete relist without it); a watch that fails
//! keeps the last objects it knew, so an API outage never looks like a deleted policy.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures::StreamExt as _;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::Api;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::runtime::WatchStreamExt as _;
use kube::runtime::watcher;
use serde_json::{Value, json};
use tokio::sync::watch;

use super::api::{KubeError, LIST_POLICIES, PATCH_POLICY_STATUS, WATCH_POLICIES, bounded};
use super::events::{EventSink, Severity};
use crate::resource::object::PolicyObject;
use crate::resource::status::PolicyStatus;
use crate::resource::{GROUP, KIND, PLURAL, VERSION};

/// The API resource of RedisPolicy, for kube's dynamic client.
pub fn api_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(GROUP, VERSION, KIND), PLURAL)
}

/// The RedisPolicy objects of `namespace`, or of every namespace.
pub fn api(client: kube::Client, namespace: Option<&str>) -> Api<DynamicObject> {
    match namespace {
        Some(namespace) => Api::namespaced_with(client, namespace, &api_resource()),
        None => Api::all_with(client, &api_resource()),
    }
}

#[derive(Debug, Default)]
struct State {
    objects: BTreeMap<(String, String), PolicyObject>,
    /// Objects seen since the watcher's last (re)list began.
    relisting: Option<BTreeMap<(String, String), PolicyObject>>,
    /// Why the watch is not following changes now; its objects are the last it knew.
    broken: Option<String>,
    synced: bool,
}

impl State {
    fn apply(&mut self, event: watcher::Event<DynamicObject>) {
        let read = |object: &DynamicObject| {
            let value = serde_json::to_value(object).ok()?;
            PolicyObject::from_json(&value)
        };
        let key = |object: &PolicyObject| (object.namespace.clone(), object.name.clone());
        match event {
            watcher::Event::Init => self.relisting = Some(BTreeMap::new()),
            watcher::Event::InitApply(object) => {
                if let (Some(relisting), Some(object)) = (self.relisting.as_mut(), read(&object)) {
                    relisting.insert(key(&object), object);
                }
            }
            watcher::Event::InitDone => {
                // Complete: what it lacks is gone.
                if let Some(relisting) = self.relisting.take() {
                    self.objects = relisting;
                }
                self.synced = true;
                self.broken = None;
            }
            watcher::Event::Apply(object) => {
                if let Some(object) = read(&object) {
                    self.objects.insert(key(&object), object);
                }
                self.broken = None;
            }
            watcher::Event::Delete(object) => {
                if let Some(object) = read(&object) {
                    self.objects.remove(&key(&object));
                }
                self.broken = None;
            }
        }
    }
}

/// The objects and the task that feeds them (stopped on drop).
pub struct PolicyWatch {
    state: Arc<Mutex<State>>,
    /// Bumped on every change the watch applies.
    changes: watch::Receiver<u64>,
    task: tokio::task::JoinHandle<()>,
    scope: String,
}

impl Drop for PolicyWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl PolicyWatch {
    /// Starts watching the RedisPolicy objects of `namespace` (`None`: all namespaces).
    pub fn start(client: kube::Client, namespace: Option<&str>) -> Self {
        let scope = match namespace {
            Some(namespace) => format!("RedisPolicy objects in namespace {namespace}"),
            None => "RedisPolicy objects in every namespace".to_owned(),
        };
        let api = api(client, namespace);
        let state = Arc::new(Mutex::new(State::default()));
        let (changed, changes) = watch::channel(0u64);
        let feed = Arc::clone(&state);
        let watched = scope.clone();
        let task = tokio::spawn(async move {
            let mut events = watcher(api, watcher::Config::default()).default_backoff().boxed();
            while let Some(event) = events.next().await {
                let mut state = feed.lock().unwrap_or_else(PoisonError::into_inner);
                match event {
                    Ok(event) => {
                        let news =
                            !matches!(event, watcher::Event::Init | watcher::Event::InitApply(_));
                        state.apply(event);
                        if news {
                            changed.send_modify(|count| *count += 1);
                        }
                    }
                    Err(error) => {
                        let why = crate::errors::chain(&error);
                        if state.broken.is_none() {
                            tracing::warn!(objects = %watched, error = %why, "RedisPolicy watch failed; retrying, the last objects stay");
                        }
                        state.broken = Some(why);
                    }
                }
            }
        });
        Self { state, changes, task, scope }
    }

    /// Waits until the first list has arrived, at most `timeout`.
    pub async fn wait_synced(&self, timeout: Duration) -> Result<(), KubeError> {
        let mut changes = self.changes.clone();
        let synced = tokio::time::timeout(timeout, async {
            loop {
                if self.lock().synced {
                    return;
                }
                if changes.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
        });
        match synced.await {
            Ok(()) => Ok(()),
            Err(_) => Err(KubeError::Watch {
                object: self.scope.clone(),
                why: self.lock().broken.clone().unwrap_or_else(|| {
                    format!("no list after {timeout:?} ({LIST_POLICIES}, {WATCH_POLICIES})")
                }),
            }),
        }
    }

    /// Every object, once the first list has arrived (`Err` until then).
    pub fn objects(&self) -> Result<Vec<PolicyObject>, String> {
        let state = self.lock();
        if !state.synced {
            let why = state.broken.clone().unwrap_or_else(|| "not listed yet".to_owned());
            return Err(format!("cannot list {}: {why}", self.scope));
        }
        Ok(state.objects.values().cloned().collect())
    }

    /// One object, as last seen.
    pub fn object(&self, namespace: &str, name: &str) -> Option<PolicyObject> {
        self.lock().objects.get(&(namespace.to_owned(), name.to_owned())).cloned()
    }

    /// Changes whenever the watch applied one.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changes.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Writes `status` on the object as a JSON merge patch of the status subresource. Every top
/// level field is written, `null` when empty, so one that no longer applies is removed.
/// With `precondition` (the resourceVersion the caller read), a change since is a 409
/// ([`KubeError::Conflict`]) rather than an overwrite.
pub async fn write_status(
    client: kube::Client,
    object: &PolicyObject,
    status: &PolicyStatus,
    precondition: Option<&str>,
) -> Result<(), KubeError> {
    let api = api(client, Some(&object.namespace));
    let mut body = serde_json::to_value(status).unwrap_or_else(|_| json!({}));
    if let Value::Object(fields) = &mut body {
        for field in PolicyStatus::FIELDS {
            fields.entry(*field).or_insert(Value::Null);
        }
    }
    let mut patch = json!({ "status": body });
    if let Some(version) = precondition {
        patch["metadata"] = json!({ "resourceVersion": version });
    }
    let what = format!("the status of redispolicy {}/{}", object.namespace, object.name);
    bounded(
        &PATCH_POLICY_STATUS,
        &what,
        api.patch_status(&object.name, &PatchParams::default(), &Patch::Merge(&patch)),
    )
    .await
    .map(drop)
}

/// Events about one RedisPolicy object (`kubectl describe redispolicy` shows them).
pub fn event_sink(client: kube::Client, object: &PolicyObject, identity: &str) -> EventSink {
    let regarding = ObjectReference {
        api_version: Some(format!("{GROUP}/{VERSION}")),
        kind: Some(KIND.to_owned()),
        name: Some(object.name.clone()),
        namespace: Some(object.namespace.clone()),
        uid: object.uid.clone(),
        resource_version: object.resource_version.clone(),
        ..ObjectReference::default()
    };
    let api = Api::namespaced(client, &object.namespace);
    EventSink::new(api, regarding, identity.to_owned(), Duration::ZERO)
}

/// Posts one Warning Event on the object.
pub async fn warn(sink: &EventSink, action: &str, reason: &str, note: &str) {
    sink.emit_always(Severity::Warning, action, reason, note).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(name: &str, max: u64) -> DynamicObject {
        serde_json::from_value(json!({
            "apiVersion": "autopilot.redis.io/v1alpha1", "kind": "RedisPolicy",
            "metadata": {"name": name, "namespace": "prod", "resourceVersion": "1"},
            "spec": {"scaling": {"maxReplicas": max}},
        }))
        .expect("an object")
    }

    fn names(state: &State) -> Vec<String> {
        state.objects.keys().map(|(_, name)| name.clone()).collect()
    }

    #[test]
    fn an_object_goes_only_when_the_api_server_says_so() {
        let mut state = State::default();
        state.apply(watcher::Event::Init);
        state.apply(watcher::Event::InitApply(object("a", 3)));
        state.apply(watcher::Event::InitApply(object("b", 3)));
        state.apply(watcher::Event::InitDone);
        assert_eq!(names(&state), ["a", "b"]);
        state.apply(watcher::Event::Delete(object("a", 3)));
        assert_eq!(names(&state), ["b"]);
        // A relist under way replaces nothing until complete.
        state.apply(watcher::Event::Init);
        state.apply(watcher::Event::InitApply(object("c", 3)));
        assert_eq!(names(&state), ["b"]);
        state.apply(watcher::Event::InitDone);
        assert_eq!(names(&state), ["c"], "what a complete relist lacks is gone");
    }
}
