//! Restore tests: prove a snapshot restores by loading it into a scratch instance
//! ([`crate::cluster::scratch`]: a local `redis-server` child, or for a `kubernetes` target the
//! verifier StatefulSet scaled to one pod) through the one-shot master
//! ([`crate::snapshot::seed`]), the same path `restore --into` takes (on Kubernetes the seed
//! listens at the daemon's `POD_IP`:9188 and the verifier's Redis connects to it), then
//! checking the scratch with [`crate::snapshot::proof`]: its key count against the manifest's,
//! its sampled keys' types. The scratch is discarded however the test ends (the verifier
//! scaled back to 0); nothing of the fleet is touched.
//!
//! The verdict is written into the snapshot's manifest (`verified`), replacing it in one put:
//! an atomic rename for `file://` (the local store stages the new file and renames it over the
//! old), a single `PUT` for object stores. Only `verified` changes; the object and every field
//! its checks use (size, sha256, CRC64) stay as they were.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use chrono::Utc;
use object_store::{ObjectStoreExt as _, PutPayload};

use super::Snapshotter;
use crate::cluster::kubernetes::KubeClient;
use crate::cluster::scratch::{ScratchInstance, ScratchKind};
use crate::cluster::{AnyCluster, Cluster as _, Member};
use crate::policy::{Policy, Target};
use crate::snapshot::SnapshotError;
use crate::snapshot::manifest::{Manifest, SampledKey, Verified};
use crate::snapshot::proof::{self, Failure};
use crate::snapshot::seed::{self, Limits, SeedError};

/// The deadline of each command sent to the scratch instance.
const STEP: Duration = Duration::from_secs(5);
/// The step that points the scratch at the seed: its failure is the scratch's.
const SCRATCH: &str = "point the scratch at the seed";

impl Snapshotter {
    /// Loads `manifest`'s snapshot into a scratch instance (`scratch`: a local `redis-server`
    /// child, its binary's path or name given as text, or the verifier StatefulSet) and
    /// checks it. Never fails: what went wrong is the
    /// verdict's `reason` and `why`. Bounded by the policy's snapshot `deadline`; the scratch
    /// is discarded (the verifier scaled back to 0) after that, however the test ended.
    pub async fn restore_test(
        &self,
        manifest: &Manifest,
        scratch: impl Into<ScratchKind>,
    ) -> Verified {
        let scratch = &scratch.into();
        let at = Utc::now();
        let deadline = self.config.limits.deadline;
        let mut started = None;
        let run = self.load_and_check(manifest, scratch, &mut started);
        let (keys, result) = match tokio::time::timeout(deadline, run).await {
            Ok(outcome) => outcome,
            Err(_) => (
                None,
                Err(Failure {
                    reason: "deadline",
                    why: format!("the restore test did not finish within {deadline:?}"),
                }),
            ),
        };
        // Outside the deadline: a test that ran out of time still scales the verifier down.
        if let Some(instance) = started {
            instance.discard().await;
        }
        match result {
            Ok(()) => Verified { at, keys, ok: true, reason: None, why: None },
            Err(Failure { reason, why }) => {
                Verified { at, keys, ok: false, reason: Some(reason.to_owned()), why: Some(why) }
            }
        }
    }

    /// The keys loaded (when it loaded) and the verdict. The scratch, once started, is left
    /// in `started` for the caller to discard.
    async fn load_and_check(
        &self,
        manifest: &Manifest,
        kind: &ScratchKind,
        started: &mut Option<ScratchInstance>,
    ) -> (Option<u64>, Result<(), Failure>) {
        let failed = |error: &SnapshotError| Failure {
            reason: reason(error),
            why: crate::errors::chain(error),
        };
        let mut payload = match self.payload(manifest).await {
            Ok(payload) => payload,
            Err(error) => return (None, Err(failed(&error))),
        };
        let header = match payload.header().await {
            Ok(header) => header,
            Err(error) => return (None, Err(failed(&error.into()))),
        };
        // The scratch takes the policy's password, never its TLS: a local child listens
        // plain, and so does the verifier deploy/ ships.
        let access = crate::sample::redis::Access { tls: None, ..self.access.clone() };
        let databases = manifest
            .keyspace
            .as_ref()
            .and_then(|dbs| dbs.keys().max())
            .map_or(0, |db| db.saturating_add(1));
        let deadline = self.config.limits.deadline;
        let scratch = match kind.start(&access, databases, deadline).await {
            Ok(scratch) => started.insert(scratch),
            Err(error) => {
                return (
                    None,
                    Err(Failure { reason: "scratch", why: crate::errors::chain(&error) }),
                );
            }
        };
        let result = async {
            let server = seed::server_version(scratch.endpoint(), &access, STEP)
                .await
                .map_err(|e| failed(&e.into()))?;
            seed::check_version(header, &server).map_err(|e| failed(&e.into()))?;
            let limits = Limits { step: STEP, total: deadline, ..Limits::default() };
            let target = Member {
                id: scratch.endpoint().id.clone(),
                endpoint: scratch.endpoint().clone(),
                ordinal: u16::MAX,
                gone: None,
            };
            // A local child reaches a seed on loopback; the verifier's pod reaches the
            // daemon's pod at POD_IP:9188, as a restore into the fleet does.
            let listen = if scratch.in_cluster() {
                super::into::seed_address(&target).map_err(|e| failed(&e))?
            } else {
                SocketAddr::from((Ipv4Addr::LOCALHOST, 0))
            };
            let point = |seed: Member| {
                let (target, access) = (&target, &access);
                async move {
                    crate::cluster::redis_admin::replicaof(target, Some(&seed), access, STEP)
                        .await
                        .map_err(|source| SnapshotError::Cluster { action: SCRATCH, source })
                }
            };
            let loaded = self
                .load_through_seed(&target, &access, listen, payload, limits, &super::Quiet, point)
                .await
                .map_err(|error| {
                    let mut failure = match &error {
                        SnapshotError::Cluster { action: SCRATCH, .. } => {
                            Failure { reason: "scratch", why: crate::errors::chain(&error) }
                        }
                        _ => failed(&error),
                    };
                    let log = scratch.log_tail();
                    if !log.is_empty() {
                        failure.why = format!("{}; the scratch's log: {log}", failure.why);
                    }
                    failure
                });
            let loaded = loaded?;
            let checked = async {
                proof::check_keys(manifest, loaded.keys)?;
                let sample = self.sampled_keys(manifest).await.map_err(|e| failed(&e))?;
                let found = sample_types(scratch.endpoint(), &access, &sample).await?;
                proof::check_sample(&sample, &found)
            };
            Ok::<_, Failure>((loaded.keys, checked.await))
        }
        .await;
        match result {
            Ok((keys, verdict)) => (Some(keys), verdict),
            Err(failure) => (None, Err(failure)),
        }
    }

    /// Writes `verified` into `id`'s manifest, read afresh (a snapshot pruned meanwhile is
    /// not written back: `NotFound`), and returns the manifest as written.
    pub async fn record_verified(
        &self,
        id: &str,
        verified: Verified,
    ) -> Result<Manifest, SnapshotError> {
        let mut manifest = self.manifest(id).await?;
        manifest.verified = Some(verified);
        let key = self.checked_key(&format!("{}.json", manifest.id))?;
        let url = self.destination.url.clone();
        let json = serde_json::to_vec_pretty(&manifest).map_err(|source| {
            SnapshotError::Manifest { url: url.clone(), object: key.to_string(), source }
        })?;
        self.destination.store.put(&key, PutPayload::from(json)).await.map_err(|source| {
            SnapshotError::Object {
                action: "rewrite the manifest",
                url,
                object: key.to_string(),
                source: Box::new(source),
            }
        })?;
        Ok(manifest)
    }
}

/// A restore test's verdict as an Event (`action` `RestoreTest`): its reason, whether it is a
/// Warning, and its note with the numbers (keys loaded vs expected). One wording for the
/// daemon's scheduled tests and `snapshot verify --restore`.
pub fn verdict_event(manifest: &Manifest, verified: &Verified) -> (&'static str, bool, String) {
    let show = |keys: Option<u64>| keys.map_or_else(|| "unknown".to_owned(), |k| k.to_string());
    let counts = format!("{} keys loaded, {} expected", show(verified.keys), show(manifest.keys()));
    if verified.ok {
        let note = format!("snapshot {} restores: {counts}", manifest.id);
        ("RestoreTestPassed", false, note)
    } else {
        let note = format!(
            "snapshot {} failed its restore test ({}): {counts}: {}",
            manifest.id,
            verified.reason.as_deref().unwrap_or("unknown"),
            verified.why.as_deref().unwrap_or_default()
        );
        ("RestoreTestFailed", true, note)
    }
}

/// Posts a restore test's outcome on `policy`'s target through its backend
/// ([`Cluster::announce`]): an Event on a StatefulSet, never held back as a repeat. Only a
/// Kubernetes target has somewhere to post it (local and endpoints targets have the log
/// line), so no other target is opened. Best effort: a target that cannot be opened now is
/// logged.
pub async fn announce(policy: &Policy, kube: &KubeClient, reason: &str, warning: bool, note: &str) {
    if !matches!(policy.target, Target::Kubernetes { .. }) {
        return;
    }
    match AnyCluster::attach(policy, kube).await {
        Ok(cluster) => cluster.announce("RestoreTest", reason, warning, note).await,
        Err(error) => {
            tracing::warn!(policy = %policy.name, error = %crate::errors::chain(&error), "cannot post the restore test's verdict as an Event");
        }
    }
}

/// The bounded reason for a failure: the snapshot's own problem when the seed failed because
/// of it (a sha256 or CRC64 mismatch found at the end), else the error's category.
fn reason(error: &SnapshotError) -> &'static str {
    match error {
        SnapshotError::Seed(SeedError::Source(inner)) => inner.category(),
        other => other.category(),
    }
}

/// `TYPE` of every sampled key in the scratch (`none` when missing).
async fn sample_types(
    scratch: &crate::sample::redis::Endpoint,
    access: &crate::sample::redis::Access,
    sample: &[SampledKey],
) -> Result<Vec<String>, Failure> {
    if sample.is_empty() {
        return Ok(Vec::new());
    }
    let failed = |why: String| Failure {
        reason: "scratch",
        why: format!("cannot read the sampled keys: {why}"),
    };
    let run = async {
        let mut connection = crate::sample::redis::connect(scratch, access, STEP)
            .await
            .map_err(|e| failed(e.to_string()))?;
        let mut found = Vec::with_capacity(sample.len());
        for key in sample {
            redis::cmd("SELECT")
                .arg(key.db)
                .query_async::<()>(&mut connection)
                .await
                .map_err(|e| failed(e.to_string()))?;
            let kind: String = redis::cmd("TYPE")
                .arg(&key.key)
                .query_async(&mut connection)
                .await
                .map_err(|e| failed(e.to_string()))?;
            found.push(kind);
        }
        Ok(found)
    };
    tokio::time::timeout(STEP * 4, run)
        .await
        .unwrap_or_else(|_| Err(failed(format!("no answer within {:?}", STEP * 4))))
}
