//! The StatefulSet's pods, kept current by a watch (list, then a stream of changes) so that
//! [`KubeCluster::members`](super::KubeCluster) is a read of memory and a deleted, evicted or crashed pod
//! is known within one watch event rather than one sampling timeout.
//!
//! A pod that disappears (deleted, or recreated by the StatefulSet without an IP yet) stays a
//! member at its last address, marked `gone`, until a pod of that name is running again or a
//! scale-down removed its ordinal: a dead master must be seen dead, not vanish.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use futures::StreamExt as _;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::runtime::WatchStreamExt as _;
use kube::runtime::watcher;
use tokio::sync::watch;

use super::ROLE_LABEL;
use super::api::{KubeError, LIST_PODS, WATCH_PODS};

/// What the backend knows about one pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodView {
    pub name: String,
    pub ordinal: u16,
    /// `status.podIP`, or the last one seen when the pod has none now.
    pub ip: Option<String>,
    /// Why the pod cannot be serving, when the API says so.
    pub gone: Option<String>,
    /// The current `redis-autopilot.io/role` label.
    pub role: Option<String>,
}

#[derive(Debug, Default)]
struct State {
    pods: BTreeMap<u16, PodView>,
    /// Pods seen since the watcher's last (re)list began.
    relisting: Option<BTreeMap<u16, PodView>>,
    /// Ordinals at or above this were scaled away: forget them once deleted.
    requested: Option<u16>,
    /// Why the cache cannot be trusted now (the watch failed and has not recovered).
    broken: Option<String>,
    synced: bool,
}

/// The pod cache and the task that feeds it (stopped on drop).
pub struct PodCache {
    state: Arc<Mutex<State>>,
    synced: watch::Receiver<bool>,
    task: tokio::task::JoinHandle<()>,
    object: String,
}

impl Drop for PodCache {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl PodCache {
    /// Starts watching the pods `selector` matches that belong to StatefulSet `set`.
    pub fn start(api: Api<Pod>, set: String, selector: String, object: String) -> Self {
        let state = Arc::new(Mutex::new(State::default()));
        let (synced_tx, synced) = watch::channel(false);
        let feed = Arc::clone(&state);
        let watched = object.clone();
        let task = tokio::spawn(async move {
            let config = watcher::Config::default().labels(&selector);
            let mut events = watcher(api, config).default_backoff().boxed();
            while let Some(event) = events.next().await {
                let mut state = feed.lock().unwrap_or_else(PoisonError::into_inner);
                match event {
                    Ok(event) => {
                        state.apply(&set, event);
                        if state.synced {
                            let _ = synced_tx.send(true);
                        }
                    }
                    Err(error) => {
                        let why = crate::errors::chain(&error);
                        if state.broken.is_none() {
                            tracing::warn!(object = %watched, error = %why, "pod watch failed; retrying");
                        }
                        state.broken = Some(why);
                    }
                }
            }
        });
        Self { state, synced, task, object }
    }

    /// Waits until the first list has arrived, at most `timeout`.
    pub async fn wait_synced(&self, timeout: std::time::Duration) -> Result<(), KubeError> {
        let mut synced = self.synced.clone();
        match tokio::time::timeout(timeout, synced.wait_for(|s| *s)).await {
            Ok(Ok(_)) => Ok(()),
            _ => {
                let why = self.lock().broken.clone().unwrap_or_else(|| {
                    format!("no pod list after {timeout:?} ({LIST_PODS}, {WATCH_PODS})")
                });
                Err(KubeError::Watch { object: self.object.clone(), why })
            }
        }
    }

    /// The pods, in ordinal order; an error while the watch is broken (stale data is not
    /// acted on).
    pub fn pods(&self) -> Result<Vec<PodView>, KubeError> {
        let state = self.lock();
        if let Some(why) = &state.broken {
            return Err(KubeError::Watch { object: self.object.clone(), why: why.clone() });
        }
        if !state.synced {
            return Err(KubeError::Watch {
                object: self.object.clone(),
                why: "the first pod list has not arrived yet".into(),
            });
        }
        Ok(state.pods.values().cloned().collect())
    }

    /// Remembers the requested replica count: deleted pods at or above it are forgotten.
    pub fn set_requested(&self, replicas: u16) {
        let mut state = self.lock();
        state.requested = Some(replicas);
        state.pods.retain(|&ordinal, pod| ordinal < replicas || pod.gone.is_none());
    }

    /// Notes a role label this process just wrote, before the watch reports it.
    pub fn set_role(&self, ordinal: u16, role: &str) {
        if let Some(pod) = self.lock().pods.get_mut(&ordinal) {
            pod.role = Some(role.to_owned());
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl State {
    fn apply(&mut self, set: &str, event: watcher::Event<Pod>) {
        // A broken watch is mended only once its relist is complete: until then the pods
        // held are the view from before the break.
        if !matches!(event, watcher::Event::Init | watcher::Event::InitApply(_)) {
            self.broken = None;
        }
        match event {
            watcher::Event::Init => self.relisting = Some(BTreeMap::new()),
            watcher::Event::InitApply(pod) => {
                if let Some(view) = view(set, &pod) {
                    let merged = merge(self.pods.get(&view.ordinal), view);
                    if let Some(relisting) = &mut self.relisting {
                        relisting.insert(merged.ordinal, merged);
                    }
                }
            }
            watcher::Event::InitDone => {
                let listed = self.relisting.take().unwrap_or_default();
                let old = std::mem::replace(&mut self.pods, listed);
                // Pods that went away while the watch was down.
                for (ordinal, pod) in old {
                    if !self.pods.contains_key(&ordinal) {
                        self.vanish(pod);
                    }
                }
                self.synced = true;
            }
            watcher::Event::Apply(pod) => {
                if let Some(view) = view(set, &pod) {
                    let merged = merge(self.pods.get(&view.ordinal), view);
                    self.pods.insert(merged.ordinal, merged);
                }
            }
            watcher::Event::Delete(pod) => {
                if let Some(view) = view(set, &pod) {
                    let last = merge(self.pods.get(&view.ordinal), view);
                    self.vanish(last);
                }
            }
        }
    }

    /// Keeps a deleted pod as a tombstone, unless its ordinal was scaled away.
    fn vanish(&mut self, mut pod: PodView) {
        if self.requested.is_some_and(|requested| pod.ordinal >= requested) {
            self.pods.remove(&pod.ordinal);
            return;
        }
        pod.gone = Some("pod deleted".into());
        self.pods.insert(pod.ordinal, pod);
    }
}

/// A pod without an IP keeps the last IP its predecessor had, and says why it is gone.
fn merge(previous: Option<&PodView>, mut view: PodView) -> PodView {
    if view.ip.is_none() {
        view.ip = previous.and_then(|p| p.ip.clone());
        if view.gone.is_none() {
            view.gone = Some("pod has no IP (not running yet)".into());
        }
    }
    view
}

/// The backend's view of `pod`, if it is one of StatefulSet `set`'s (named `set-N`).
pub fn view(set: &str, pod: &Pod) -> Option<PodView> {
    let name = pod.metadata.name.clone()?;
    let ordinal = name.strip_prefix(set)?.strip_prefix('-')?.parse::<u16>().ok()?;
    let ip = pod.status.as_ref().and_then(|s| s.pod_ip.clone()).filter(|ip| !ip.is_empty());
    let role = pod.metadata.labels.as_ref().and_then(|l| l.get(ROLE_LABEL)).cloned();
    Some(PodView { name, ordinal, ip, gone: gone(pod), role })
}

/// Why the API says this pod's Redis is not serving: deleted (terminating), evicted, failed or
/// finished, or its Redis container terminated or crash-looping. `None` when nothing says so
/// (a pod still starting for the first time is not gone: it never served).
pub fn gone(pod: &Pod) -> Option<String> {
    if pod.metadata.deletion_timestamp.is_some() {
        return Some("pod is being deleted".into());
    }
    let status = pod.status.as_ref()?;
    if status.reason.as_deref() == Some("Evicted") {
        return Some("pod was evicted".into());
    }
    if let Some(phase @ ("Failed" | "Succeeded")) = status.phase.as_deref() {
        return Some(format!("pod phase is {phase}"));
    }
    // The Redis container: the one named `redis`, else the pod's first container.
    let wanted = pod.spec.as_ref().and_then(|spec| {
        spec.containers
            .iter()
            .find(|c| c.name == "redis")
            .or_else(|| spec.containers.first())
            .map(|c| c.name.clone())
    })?;
    let container = status.container_statuses.as_ref()?.iter().find(|c| c.name == wanted)?;
    let state = container.state.as_ref()?;
    if let Some(terminated) = &state.terminated {
        let reason = terminated.reason.as_deref().unwrap_or("terminated");
        return Some(format!(
            "container `{wanted}` terminated ({reason}, exit code {})",
            terminated.exit_code
        ));
    }
    if let Some(waiting) = &state.waiting
        && let Some(last) = container.last_state.as_ref().and_then(|s| s.terminated.as_ref())
    {
        let reason = waiting.reason.as_deref().unwrap_or("waiting");
        return Some(format!(
            "container `{wanted}` is not running ({reason}; last exit code {})",
            last.exit_code
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(json: serde_json::Value) -> Pod {
        serde_json::from_value(json).unwrap()
    }

    fn base() -> serde_json::Value {
        serde_json::json!({
            "metadata": {"name": "redis-2", "labels": {ROLE_LABEL: "replica"}},
            "spec": {"containers": [{"name": "exporter"}, {"name": "redis"}]},
            "status": {"phase": "Running", "podIP": "10.0.0.7", "containerStatuses": [
                {"name": "redis", "ready": true, "restartCount": 0, "image": "redis", "imageID": "",
                 "state": {"running": {}}}
            ]}
        })
    }

    #[test]
    fn a_running_pod_is_a_member_at_its_ip() {
        let view = view("redis", &pod(base())).unwrap();
        assert_eq!(
            view,
            PodView {
                name: "redis-2".into(),
                ordinal: 2,
                ip: Some("10.0.0.7".into()),
                gone: None,
                role: Some("replica".into()),
            }
        );
        assert_eq!(super::view("redis-session", &pod(base())), None);
    }

    #[test]
    fn the_api_says_when_a_pod_is_gone() {
        let mut deleting = base();
        deleting["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z".into();
        assert_eq!(gone(&pod(deleting)).as_deref(), Some("pod is being deleted"));

        let mut evicted = base();
        evicted["status"]["phase"] = "Failed".into();
        evicted["status"]["reason"] = "Evicted".into();
        assert_eq!(gone(&pod(evicted)).as_deref(), Some("pod was evicted"));

        let mut failed = base();
        failed["status"]["phase"] = "Failed".into();
        assert_eq!(gone(&pod(failed)).as_deref(), Some("pod phase is Failed"));

        let mut crashed = base();
        crashed["status"]["containerStatuses"][0]["state"] =
            serde_json::json!({"terminated": {"exitCode": 137, "reason": "OOMKilled"}});
        assert_eq!(
            gone(&pod(crashed)).as_deref(),
            Some("container `redis` terminated (OOMKilled, exit code 137)")
        );

        let mut looping = base();
        looping["status"]["containerStatuses"][0]["state"] =
            serde_json::json!({"waiting": {"reason": "CrashLoopBackOff"}});
        looping["status"]["containerStatuses"][0]["lastState"] =
            serde_json::json!({"terminated": {"exitCode": 1}});
        assert_eq!(
            gone(&pod(looping)).as_deref(),
            Some("container `redis` is not running (CrashLoopBackOff; last exit code 1)")
        );

        let mut starting = base();
        starting["status"]["containerStatuses"][0]["state"] =
            serde_json::json!({"waiting": {"reason": "ContainerCreating"}});
        assert_eq!(gone(&pod(starting)), None);
    }

    #[test]
    fn a_deleted_pod_stays_gone_at_its_last_address_until_scaled_away() {
        let mut state = State::default();
        state.apply("redis", watcher::Event::Init);
        state.apply("redis", watcher::Event::InitApply(pod(base())));
        state.apply("redis", watcher::Event::InitDone);
        state.apply("redis", watcher::Event::Delete(pod(base())));
        let tomb = &state.pods[&2];
        assert_eq!(
            (tomb.ip.as_deref(), tomb.gone.as_deref()),
            (Some("10.0.0.7"), Some("pod deleted"))
        );
        // Recreated without an IP yet: still gone, still at the old address.
        let mut recreated = base();
        recreated["status"] = serde_json::json!({"phase": "Pending"});
        state.apply("redis", watcher::Event::Apply(pod(recreated)));
        let pending = &state.pods[&2];
        assert_eq!(pending.ip.as_deref(), Some("10.0.0.7"));
        assert!(pending.gone.as_deref().unwrap().contains("no IP"));
        // Running again: not gone.
        state.apply("redis", watcher::Event::Apply(pod(base())));
        assert_eq!(state.pods[&2].gone, None);
        // Scaled to 2: ordinal 2's deletion removes it.
        state.requested = Some(2);
        state.apply("redis", watcher::Event::Delete(pod(base())));
        assert!(state.pods.is_empty());
    }

    #[test]
    fn a_broken_watch_is_mended_only_by_a_complete_relist() {
        let mut state = State::default();
        state.apply("redis", watcher::Event::Init);
        state.apply("redis", watcher::Event::InitApply(pod(base())));
        state.apply("redis", watcher::Event::InitDone);
        state.broken = Some("connection reset".into());
        // The relist begins: the pods held are still the view from before the break.
        state.apply("redis", watcher::Event::Init);
        assert!(state.broken.is_some());
        state.apply("redis", watcher::Event::InitDone);
        assert_eq!(state.broken, None);
        // The pod went away during the break: gone, at its last address.
        assert_eq!(state.pods[&2].gone.as_deref(), Some("pod deleted"));
    }
}
