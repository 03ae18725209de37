//! The verifier: a StatefulSet of its own (`deploy/base/verifier.yaml`, shipped at
//! `replicas: 0`) that a restore test of a `kubernetes` target loads a snapshot into, as a
//! local target's test loads a scratch `redis-server` child ([`crate::cluster::local::Scratch`]).
//! Never a member of any fleet: no policy targets it (`check` refuses a verifier that names the
//! target), nothing records it as a master, and it is empty between tests.
//!
//! [`Verifier::start`] takes the process-wide lock for that StatefulSet (two policies naming
//! one verifier never load it at once), scales it to 1 through the `scale` subresource and
//! waits for its pod `NAME-0` to be Running and Ready with an IP (listing pods by the
//! `statefulset.kubernetes.io/pod-name` label the StatefulSet controller sets). [`Verifier`]
//! is a guard: [`Verifier::discard`] scales it back to 0 and waits (bounded) for the pod to
//! go, so the next test starts on an empty one; dropping it without that scales it down from
//! a task. A scale-down that fails is logged at ERROR: the pod then keeps the restored data
//! and its memory until someone scales it down (`kubectl scale --replicas 0`).
//!
//! API calls: `get` (a look at its replicas first) and `patch` on `statefulsets/scale`, and
//! `list` on pods, in the verifier's namespace (the Role in `deploy/base/rbac-verifier.yaml`).

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams};
use tokio::sync::{Mutex, OwnedMutexGuard};

use super::api::{GET_SCALE, KubeError, LIST_PODS, PATCH_SCALE, bounded};
use crate::cluster::ClusterError;
use crate::sample::redis::Endpoint;

/// How often the verifier's pod is looked at while it starts or goes.
const POLL: Duration = Duration::from_millis(250);
/// How long a scale-down may take to remove the pod before the lock is released anyway: the
/// example's `terminationGracePeriodSeconds` is 5, a SIGKILL follows.
const GONE_DEADLINE: Duration = Duration::from_secs(60);
/// The label the StatefulSet controller puts on each of its pods, naming the pod.
const POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";

/// Which StatefulSet, and the port its Redis listens on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifierTarget {
    pub namespace: String,
    pub name: String,
    pub port: u16,
}

impl VerifierTarget {
    fn object(&self) -> String {
        format!("statefulset {}/{}", self.namespace, self.name)
    }
}

/// One lock per verifier StatefulSet in this process: the per-policy gate serialises one
/// policy's tests, this serialises every policy naming the same verifier.
static LOCKS: LazyLock<std::sync::Mutex<Locks>> = LazyLock::new(Default::default);

/// Each verifier's lock, by (namespace, name).
type Locks = HashMap<(String, String), Arc<Mutex<()>>>;

fn lock_for(target: &VerifierTarget) -> Arc<Mutex<()>> {
    let mut locks = LOCKS.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    locks.entry((target.namespace.clone(), target.name.clone())).or_default().clone()
}

/// A verifier scaled to one Ready pod; see the module documentation.
pub struct Verifier {
    target: VerifierTarget,
    object: String,
    sets: Api<StatefulSet>,
    pods: Api<Pod>,
    endpoint: Endpoint,
    /// Whether it still has to be scaled down (set from the scale-up on).
    scaled: bool,
    /// Held until the verifier is back at 0 (or the scale-down failed).
    lock: Option<OwnedMutexGuard<()>>,
}

impl Verifier {
    /// Waits for the verifier's lock, scales it to 1 and waits, at most `deadline`, for its
    /// pod to be Running and Ready with an IP. On a failure after the scale-up it is scaled
    /// back down before the error returns.
    pub async fn start(
        client: kube::Client,
        target: &VerifierTarget,
        deadline: Duration,
    ) -> Result<Self, ClusterError> {
        let started = Instant::now();
        let lock = lock_for(target).lock_owned().await;
        let object = target.object();
        let mut verifier = Self {
            target: target.clone(),
            object: object.clone(),
            sets: Api::namespaced(client.clone(), &target.namespace),
            pods: Api::namespaced(client, &target.namespace),
            endpoint: Endpoint { id: object, host: String::new(), port: target.port },
            scaled: false,
            lock: Some(lock),
        };
        // Above 0 before a test: one that died before its scale-down left it there (the
        // next scale-down fixes that), or something else scales it. Said, and used anyway:
        // the load replaces whatever it holds.
        let found = bounded(&GET_SCALE, &verifier.object, verifier.sets.get_scale(&target.name))
            .await?
            .spec
            .and_then(|s| s.replicas)
            .unwrap_or(0);
        if found > 0 {
            tracing::warn!(verifier = %verifier.object, replicas = found, "the verifier was not at 0 replicas before this restore test");
        }
        // From the request on, the guard scales it down again, even if the request's answer
        // was lost.
        verifier.scaled = true;
        scale(&verifier.sets, &verifier.target.name, &verifier.object, 1).await?;
        tracing::info!(verifier = %verifier.object, "verifier scaled to 1 for a restore test");
        let remaining = deadline.saturating_sub(started.elapsed());
        let pod = verifier.wait_ready(remaining).await;
        match pod {
            Ok((name, ip)) => {
                verifier.endpoint =
                    Endpoint { id: format!("verifier {name}"), host: ip, port: target.port };
                Ok(verifier)
            }
            Err(error) => {
                verifier.discard().await;
                Err(error)
            }
        }
    }

    /// Where its Redis answers: the pod's IP and the verifier's port.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Scales it back to 0 and waits (bounded) until its pod is gone; a failure is logged at
    /// ERROR (the pod keeps the restored data until it is scaled down). Then releases the lock.
    pub async fn discard(mut self) {
        self.scaled = false;
        match scale(&self.sets, &self.target.name, &self.object, 0).await {
            Ok(()) => {
                let pod = format!("{}-0", self.target.name);
                let deadline = Instant::now() + GONE_DEADLINE;
                loop {
                    match self.find_pod(&pod).await {
                        Ok(None) => break,
                        Ok(Some(_)) | Err(_) if Instant::now() >= deadline => {
                            tracing::warn!(verifier = %self.object, pod, "the verifier's pod is still there {GONE_DEADLINE:?} after its scale-down to 0");
                            break;
                        }
                        Ok(Some(_)) | Err(_) => tokio::time::sleep(POLL).await,
                    }
                }
                tracing::info!(verifier = %self.object, "verifier scaled back to 0");
            }
            Err(error) => log_scale_down_failure(&self.object, &error),
        }
        // Dropping `self` releases the lock.
    }

    /// The pod `NAME-0` once it is Running, Ready and has an IP: its name and IP.
    async fn wait_ready(&self, within: Duration) -> Result<(String, String), ClusterError> {
        let pod = format!("{}-0", self.target.name);
        let deadline = Instant::now() + within;
        loop {
            let last = match self.find_pod(&pod).await {
                Ok(Some(found)) => match ready_ip(&found) {
                    Ok(ip) => return Ok((pod, ip)),
                    Err(why) => why,
                },
                Ok(None) => "not created yet".to_owned(),
                Err(error) => crate::errors::chain(&error),
            };
            if Instant::now() >= deadline {
                return Err(KubeError::Invalid {
                    object: self.object.clone(),
                    why: format!(
                        "its pod {pod} was not Running and Ready with an IP within {within:?} \
                         (last seen: {last})"
                    ),
                }
                .into());
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// The pod named `name` (listed by the label the StatefulSet controller sets), if any.
    async fn find_pod(&self, name: &str) -> Result<Option<Pod>, KubeError> {
        let params = ListParams::default().labels(&format!("{POD_NAME_LABEL}={name}"));
        let object = format!("pods of {}", self.object);
        let list = bounded(&LIST_PODS, &object, self.pods.list(&params)).await?;
        Ok(list.items.into_iter().find(|p| p.metadata.name.as_deref() == Some(name)))
    }
}

impl Drop for Verifier {
    /// A test cancelled before [`Verifier::discard`] (the daemon shutting down): scaled down
    /// from a task, holding the lock until then. Without a runtime nothing can be sent: logged.
    fn drop(&mut self) {
        if !self.scaled {
            return;
        }
        let (sets, name, object) =
            (self.sets.clone(), self.target.name.clone(), self.object.clone());
        let lock = self.lock.take();
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    if let Err(error) = scale(&sets, &name, &object, 0).await {
                        log_scale_down_failure(&object, &error);
                    }
                    drop(lock);
                });
            }
            Err(_) => log_scale_down_failure(
                &object,
                &KubeError::Invalid {
                    object: object.clone(),
                    why: "no runtime left to send the scale-down".into(),
                },
            ),
        }
    }
}

fn log_scale_down_failure(object: &str, error: &KubeError) {
    tracing::error!(
        verifier = %object, error = %crate::errors::chain(error),
        "CANNOT SCALE THE VERIFIER BACK TO 0: its pod keeps the restored snapshot's data and \
         memory until it is scaled down (kubectl scale --replicas 0)"
    );
}

/// Sets the verifier's `spec.replicas` through the scale subresource. No resourceVersion
/// precondition: nothing else is meant to scale it, and the last word must be ours.
async fn scale(
    sets: &Api<StatefulSet>,
    name: &str,
    object: &str,
    replicas: u16,
) -> Result<(), KubeError> {
    let patch = serde_json::json!({"spec": {"replicas": replicas}});
    let (params, patch) = (PatchParams::default(), Patch::Merge(&patch));
    bounded(&PATCH_SCALE, object, sets.patch_scale(name, &params, &patch)).await.map(drop)
}

/// The pod's IP when it is Running, Ready and not being deleted; else what it is instead.
fn ready_ip(pod: &Pod) -> Result<String, String> {
    if pod.metadata.deletion_timestamp.is_some() {
        return Err("terminating".into());
    }
    let status = pod.status.as_ref().ok_or("no status yet")?;
    let phase = status.phase.as_deref().unwrap_or("Unknown");
    if phase != "Running" {
        return Err(format!("phase {phase}"));
    }
    let ready =
        status.conditions.iter().flatten().any(|c| c.type_ == "Ready" && c.status == "True");
    if !ready {
        return Err("Running, not Ready".into());
    }
    status.pod_ip.clone().filter(|ip| !ip.is_empty()).ok_or_else(|| "Ready, no IP yet".into())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn pod(value: serde_json::Value) -> Pod {
        serde_json::from_value(value).expect("a pod")
    }

    /// Only a Running, Ready pod with an IP that is not terminating is loaded.
    #[test]
    fn only_a_ready_running_pod_with_an_ip_is_used() {
        let ready = json!({"type": "Ready", "status": "True"});
        let base =
            |status: serde_json::Value| json!({"metadata": {"name": "v-0"}, "status": status});
        let ok = base(json!({"phase": "Running", "podIP": "10.0.0.4", "conditions": [ready]}));
        assert_eq!(ready_ip(&pod(ok.clone())), Ok("10.0.0.4".to_owned()));
        let mut terminating = ok;
        terminating["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        assert_eq!(ready_ip(&pod(terminating)), Err("terminating".to_owned()));
        let pending = base(json!({"phase": "Pending"}));
        assert_eq!(ready_ip(&pod(pending)), Err("phase Pending".to_owned()));
        let unready = base(json!({"phase": "Running", "podIP": "10.0.0.4",
                                  "conditions": [{"type": "Ready", "status": "False"}]}));
        assert_eq!(ready_ip(&pod(unready)), Err("Running, not Ready".to_owned()));
        let no_ip = base(json!({"phase": "Running", "conditions": [ready]}));
        assert_eq!(ready_ip(&pod(no_ip)), Err("Ready, no IP yet".to_owned()));
    }
}
