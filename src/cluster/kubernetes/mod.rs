//! The Kubernetes backend: a StatefulSet of Redis pods, acted on through the API server.
//!
//! | [`Cluster`] call | Kubernetes |
//! |---|---|
//! | `members` | the StatefulSet's pods (its label selector), from a watch cache ([`pods`]); addressed `status.podIP:port`, ordinal from the name's `-N` suffix, `gone` from the pod's state |
//! | `replicas` / `scale` | the `scale` subresource (`GET`, then merge `PATCH {"metadata":{"resourceVersion":RV},"spec":{"replicas":N}}` with the RV read: a concurrent `kubectl scale` makes it a 409, never an overwrite) |
//! | `recorded_master` / `record_master` | annotations `redis-autopilot.io/master` and `redis-autopilot.io/epoch` on the StatefulSet, written under a resourceVersion precondition ([`record`]) |
//! | `promote` / `repoint` | Redis `REPLICAOF` on the pod's IP ([`crate::cluster::redis_admin`]) |
//! | `switch_over` | Redis `FAILOVER TO` from the master's pod IP to the target's |
//! | `advertise` | merge `PATCH` of the pod label `redis-autopilot.io/role` |
//!
//! Every action posts an Event on the StatefulSet ([`events`]). The calls made are listed in
//! [`api::API_CALLS`]; leader election ([`lease`]) decides which daemon may act at all.
//!
//! - [`api`]: the call table and error classification (403 names the permission).
//! - [`client`]: in-cluster or kubeconfig client.
//! - [`pods`]: the pod watch cache and what makes a pod `gone`.
//! - [`record`]: the master record in annotations.
//! - [`events`]: rate-limited Events.
//! - [`lease`]: the `coordination.k8s.io/v1` Lease elector.
//! - [`policies`]: RedisPolicy objects (`run --resources`): their watch, status and Events.
//! - [`verifier`]: the StatefulSet restore tests scale up, load and scale back to 0.

pub mod api;
pub mod client;
pub mod events;
pub mod lease;
pub mod pods;
pub mod policies;
pub mod record;
pub mod verifier;

use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ObjectReference, Pod};
use kube::Api;
use kube::api::{Patch, PatchParams};

pub use api::{API_CALLS, ApiCall, KubeError};
pub use client::{ClientOptions, KubeClient};

use self::api::{GET_SCALE, GET_STATEFULSET, PATCH_POD, PATCH_SCALE, bounded};
use self::events::{EventSink, Severity};
use self::pods::PodCache;
use super::redis_admin;
use super::{Advertised, Cluster, ClusterError, MasterRecord, Member};
use crate::sample::redis::{Access, Endpoint};

/// The pod label Services select by.
pub const ROLE_LABEL: &str = "redis-autopilot.io/role";
/// How long [`KubeCluster::open`] waits for the first pod list.
const SYNC_DEADLINE: Duration = Duration::from_secs(10);
/// The same action and reason posts at most one Event per this interval (and master epoch).
pub const EVENT_INTERVAL: Duration = Duration::from_secs(60);

/// Which StatefulSet, and how to reach Redis in its pods.
#[derive(Debug, Clone)]
pub struct KubeTarget {
    pub namespace: String,
    pub stateful_set: String,
    /// The Redis port on every pod.
    pub port: u16,
    /// How the role commands authenticate to Redis.
    pub access: Access,
    /// Deadline of every Redis role command.
    pub timeout: Duration,
    /// Who this daemon is in Events (`reportingInstance`).
    pub identity: String,
    /// At most one Event per action and reason per this interval.
    pub event_interval: Duration,
}

pub struct KubeCluster {
    target: KubeTarget,
    /// `statefulset NAMESPACE/NAME`, for messages.
    object: String,
    sets: Api<StatefulSet>,
    pods_api: Api<Pod>,
    pods: PodCache,
    events: EventSink,
    /// Record writes and replica-count changes run one at a time, each seeing the last
    /// one's result. Never held across a Redis command.
    acting: tokio::sync::Mutex<()>,
    /// The record as last read or written, and when: health probes ask for it several times a
    /// second, and the API server should not hear about each of them (see
    /// [`RECORD_MAX_AGE`]).
    cached_record: std::sync::Mutex<Option<(Instant, Option<MasterRecord>)>>,
}

/// How old a record `recorded_master` may answer with. Safe to serve stale because nothing
/// acts on it unchecked: every write re-reads under a resourceVersion precondition and refuses
/// a stale epoch, and promote/repoint re-read the record before touching Redis. The cost of
/// staleness is only a decision made up to this much later after someone else's write (a
/// `redis-autopilot failover` run by hand).
const RECORD_MAX_AGE: Duration = Duration::from_secs(2);

impl KubeCluster {
    /// The role commands, guarded by the record, under the target's access and deadline.
    fn guarded(&self) -> redis_admin::Guarded<'_> {
        redis_admin::Guarded { access: &self.target.access, timeout: self.target.timeout }
    }

    /// Reads the StatefulSet (its selector and the recorded master), starts the pod watch and
    /// waits for its first list. Changes nothing.
    pub async fn open(client: kube::Client, target: KubeTarget) -> Result<Self, ClusterError> {
        let object = format!("statefulset {}/{}", target.namespace, target.stateful_set);
        let sets: Api<StatefulSet> = Api::namespaced(client.clone(), &target.namespace);
        let set = bounded(&GET_STATEFULSET, &object, sets.get(&target.stateful_set)).await?;
        let recorded = record::parse(&set, &object)?;
        let selector = selector(&set).ok_or_else(|| KubeError::Invalid {
            object: object.clone(),
            why: "has no spec.selector.matchLabels to find its pods by".into(),
        })?;
        let regarding = ObjectReference {
            api_version: Some("apps/v1".into()),
            kind: Some("StatefulSet".into()),
            name: set.metadata.name.clone(),
            namespace: set.metadata.namespace.clone().or_else(|| Some(target.namespace.clone())),
            uid: set.metadata.uid.clone(),
            resource_version: set.metadata.resource_version.clone(),
            ..ObjectReference::default()
        };
        let events = EventSink::new(
            Api::namespaced(client.clone(), &target.namespace),
            regarding,
            target.identity.clone(),
            target.event_interval,
        );
        let pods_api: Api<Pod> = Api::namespaced(client, &target.namespace);
        let pods = PodCache::start(
            pods_api.clone(),
            target.stateful_set.clone(),
            selector,
            format!("pods of {object}"),
        );
        if let Some(replicas) = set.spec.as_ref().and_then(|s| s.replicas) {
            pods.set_requested(u16::try_from(replicas).unwrap_or(0));
        }
        pods.wait_synced(SYNC_DEADLINE).await?;
        tracing::info!(%object, recorded = %recorded.describe(), "kubernetes target open");
        Ok(Self {
            target,
            object,
            sets,
            pods_api,
            pods,
            events,
            acting: tokio::sync::Mutex::new(()),
            cached_record: std::sync::Mutex::new(Some((Instant::now(), recorded.record()))),
        })
    }

    fn member(&self, pod: &pods::PodView) -> Option<Member> {
        let ip = pod.ip.clone()?;
        Some(Member {
            id: pod.name.clone(),
            endpoint: Endpoint { id: pod.name.clone(), host: ip, port: self.target.port },
            ordinal: pod.ordinal,
            gone: pod.gone.clone(),
        })
    }

    /// Reads the record from the API server (and refreshes the cache).
    async fn read_record(&self) -> Result<record::Recorded, ClusterError> {
        let recorded = record::read(&self.sets, &self.target.stateful_set, &self.object).await?;
        self.cache_record(recorded.record());
        Ok(recorded)
    }

    async fn update_record(
        &self,
        decide: impl FnMut(&record::Recorded) -> Result<Option<MasterRecord>, ClusterError>,
    ) -> Result<MasterRecord, ClusterError> {
        let result =
            record::update(&self.sets, &self.target.stateful_set, &self.object, decide).await;
        match &result {
            Ok(written) => self.cache_record(Some(written.clone())),
            // Whatever the StatefulSet says now, the cache may not: read it next time.
            Err(_) => *self.record_cache() = None,
        }
        result
    }

    fn cache_record(&self, record: Option<MasterRecord>) {
        *self.record_cache() = Some((Instant::now(), record));
    }

    fn record_cache(&self) -> std::sync::MutexGuard<'_, Option<(Instant, Option<MasterRecord>)>> {
        self.cached_record.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Posts the Event for one action's result: `reason` on success, `{action}Failed` (a
    /// Warning with the error) on failure. `note` says what the action was.
    async fn report<T>(
        &self,
        action: &str,
        reason: &str,
        note: &str,
        result: &Result<T, ClusterError>,
    ) {
        match result {
            Ok(_) => self.events.emit(Severity::Normal, action, reason, note).await,
            Err(error) => {
                let note = format!("{note}: {}", crate::errors::chain(error));
                self.events
                    .emit(Severity::Warning, action, &format!("{action}Failed"), &note)
                    .await;
            }
        }
    }

    /// The scale subresource now: its `spec.replicas` and the resourceVersion to write under.
    async fn read_scale(&self) -> Result<(u16, Option<String>), ClusterError> {
        let scale =
            bounded(&GET_SCALE, &self.object, self.sets.get_scale(&self.target.stateful_set))
                .await?;
        let replicas = scale.spec.and_then(|s| s.replicas).unwrap_or(0);
        let replicas = u16::try_from(replicas).unwrap_or(u16::MAX);
        self.pods.set_requested(replicas);
        Ok((replicas, scale.metadata.resource_version))
    }

    /// Writes `spec.replicas` under `version`: the API server answers 409 if anyone wrote the
    /// StatefulSet since it was read, which is [`ClusterError::Resized`] (read again to say
    /// what it is now), never a silent overwrite.
    async fn set_replicas(
        &self,
        from: u16,
        to: u16,
        version: Option<String>,
    ) -> Result<(), ClusterError> {
        let patch = serde_json::json!({
            "metadata": {"resourceVersion": version},
            "spec": {"replicas": to},
        });
        let (params, patch) = (PatchParams::default(), Patch::Merge(&patch));
        let request = self.sets.patch_scale(&self.target.stateful_set, &params, &patch);
        match bounded(&PATCH_SCALE, &self.object, request).await {
            Ok(_) => {
                self.pods.set_requested(to);
                Ok(())
            }
            Err(error) if error.is_conflict() => {
                let (found, _) = self.read_scale().await?;
                Err(ClusterError::Resized { from, to, found })
            }
            Err(error) => Err(error.into()),
        }
    }
}

/// `spec.selector.matchLabels` as a label selector string (`app=redis,tier=cache`).
fn selector(set: &StatefulSet) -> Option<String> {
    let labels = set.spec.as_ref()?.selector.match_labels.as_ref()?;
    if labels.is_empty() {
        return None;
    }
    Some(labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(","))
}

/// The longest Event note the API server accepts is 1 KiB.
const NOTE_LIMIT: usize = 1024;

impl Cluster for KubeCluster {
    /// An Event `Decided`/`<Kind>` whose note is the decision's reason (cut to what an Event
    /// holds), rate-limited like every Event.
    async fn explain(&self, kind: &str, reason: &str) {
        let mut event_reason = kind.to_owned();
        if let Some(first) = event_reason.get_mut(..1) {
            first.make_ascii_uppercase();
        }
        let mut note = reason.to_owned();
        if note.len() > NOTE_LIMIT {
            let mut cut = NOTE_LIMIT - 3;
            while !note.is_char_boundary(cut) {
                cut -= 1;
            }
            note.truncate(cut);
            note.push_str("...");
        }
        self.events.emit(Severity::Normal, "Decided", &event_reason, &note).await;
    }

    /// An Event posted at once, never held back as a repeat ([`EventSink::emit_always`]).
    async fn announce(&self, action: &str, reason: &str, warning: bool, note: &str) {
        let severity = if warning { Severity::Warning } else { Severity::Normal };
        self.events.emit_always(severity, action, reason, note).await;
    }

    /// Pods with an address (current or last known), in ordinal order; an error while the pod
    /// watch is broken, so nothing acts on a stale view.
    async fn members(&self) -> Result<Vec<Member>, ClusterError> {
        let pods = self.pods.pods()?;
        Ok(pods.iter().filter_map(|pod| self.member(pod)).collect())
    }

    async fn replicas(&self) -> Result<u16, ClusterError> {
        Ok(self.read_scale().await?.0)
    }

    /// Sets `spec.replicas` through the scale subresource; the StatefulSet controller creates
    /// and deletes the pods (highest ordinals first). Refused, before any write, while the
    /// recorded master's pod is one it would remove (the action path hands it over first).
    /// New pods boot as replicas of the recorded master (the deploy/ startup script reads the
    /// annotation). Idempotent.
    async fn scale(&self, from: u16, to: u16) -> Result<(), ClusterError> {
        let result = async {
            let (found, version) = self.read_scale().await?;
            super::refuse_resized(from, to, found)?;
            let record = self.read_record().await?.record();
            let members = self.members().await?;
            super::refuse_removing_master(record.as_ref(), &members, to)?;
            let _acting = self.acting.lock().await;
            self.set_replicas(from, to, version).await
        }
        .await;
        let reason = if to >= from { "ScaledUp" } else { "ScaledDown" };
        self.report("Scale", reason, &format!("scale from {from} to {to} replicas"), &result).await;
        result
    }

    /// At most [`RECORD_MAX_AGE`] old; fresh after this daemon's own writes.
    async fn recorded_master(&self) -> Result<Option<MasterRecord>, ClusterError> {
        if let Some((at, record)) = self.record_cache().clone()
            && at.elapsed() < RECORD_MAX_AGE
        {
            return Ok(record);
        }
        Ok(self.read_record().await?.record())
    }

    async fn fresh_record(&self) -> Result<Option<MasterRecord>, ClusterError> {
        Ok(self.read_record().await?.record())
    }

    async fn record_master(&self, next: MasterRecord) -> Result<(), ClusterError> {
        let _acting = self.acting.lock().await;
        let mut written = false;
        let result = self
            .update_record(|current| {
                let now = chrono::Utc::now();
                let write = MasterRecord::advance(current.record().as_ref(), &next, now)?;
                written = write.is_some();
                Ok(write)
            })
            .await;
        if result.is_ok() && written {
            self.events.new_epoch();
        }
        // A released claim (lapsed at once) closes a role change: its own Event, so the
        // timeline reads claimed, acted, released, rather than the same record twice.
        let released = next.claim.is_some() && next.active_claim(chrono::Utc::now()).is_none();
        if released {
            let note = format!(
                "release the claim on the master record ({} at epoch {})",
                next.instance, next.epoch
            );
            self.report("ReleaseClaim", "ClaimReleased", &note, &result).await;
        } else {
            let note = format!("record {} as master at epoch {}", next.instance, next.epoch);
            self.report("RecordMaster", "MasterRecorded", &note, &result).await;
        }
        result.map(drop)
    }

    /// Reads the record fresh, then promotes with no lock held: the record check is what
    /// makes it safe, and a slow instance must not hold up the others.
    async fn promote(&self, member: &Member, epoch: u64) -> Result<(), ClusterError> {
        let result = async {
            let current = self.read_record().await?;
            self.guarded().promote(current.record().as_ref(), member, epoch).await
        }
        .await;
        let note = format!("promote {} (REPLICAOF NO ONE) at epoch {epoch}", member.id);
        self.report("Promote", "Promoted", &note, &result).await;
        result
    }

    /// Reads the record fresh, then `FAILOVER TO` with no lock held, like [`Cluster::promote`].
    async fn switch_over(
        &self,
        from: &Member,
        to: &Member,
        epoch: u64,
    ) -> Result<(), ClusterError> {
        let result = async {
            let current = self.read_record().await?;
            self.guarded().switch_over(current.record().as_ref(), from, to, epoch).await
        }
        .await;
        let note =
            format!("switch over from {} to {} (FAILOVER TO) at epoch {epoch}", from.id, to.id);
        self.report("SwitchOver", "SwitchedOver", &note, &result).await;
        result
    }

    /// Refuses to repoint the recorded master (record another master first). Holds no lock
    /// across `REPLICAOF`: a failover repoints every member at once, and one unreachable
    /// member must not delay the others by its timeout.
    async fn repoint(&self, member: &Member, master: &Member) -> Result<(), ClusterError> {
        let result = async {
            let current = self.read_record().await?;
            self.guarded().repoint(current.record().as_ref(), member, master).await
        }
        .await;
        let note = format!("point {} at master {} (REPLICAOF)", member.id, master.id);
        self.report("Repoint", "Repointed", &note, &result).await;
        result
    }

    /// Patches the role label when it differs from what the watch last saw; a no-op (no API
    /// call) otherwise.
    async fn advertise(&self, member: &Member, role: Advertised) -> Result<(), ClusterError> {
        let current =
            self.pods.pods()?.into_iter().find(|p| p.name == member.id).and_then(|p| p.role);
        if current.as_deref() == Some(role.as_str()) {
            return Ok(());
        }
        let patch = serde_json::json!({"metadata": {"labels": {ROLE_LABEL: role.as_str()}}});
        let object = format!("pod {}/{}", self.target.namespace, member.id);
        let (params, patch) = (PatchParams::default(), Patch::Merge(&patch));
        let request = self.pods_api.patch(&member.id, &params, &patch);
        let result: Result<(), ClusterError> = bounded(&PATCH_POD, &object, request)
            .await
            .map(|_| self.pods.set_role(member.ordinal, role.as_str()))
            .map_err(Into::into);
        let note = format!("label {} {ROLE_LABEL}={}", member.id, role.as_str());
        self.report("Advertise", "RoleLabelled", &note, &result).await;
        result
    }
}
