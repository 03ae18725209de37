//! The backend a policy's target names, chosen once when its loop starts. An enum rather than
//! `dyn Cluster`: the trait's futures are not object-safe, and the set of backends is closed.

use super::kubernetes::{EVENT_INTERVAL, KubeClient, KubeCluster, KubeTarget, lease};
use super::local::{LocalConfig, LocalFleet};
use super::{Advertised, Cluster, ClusterError, MasterRecord, Member, StaticEndpoints};
use crate::policy::{Policy, Target};
use crate::sample::redis::Endpoint;
use crate::sample::redis_access;

pub enum AnyCluster {
    Local(Box<LocalFleet>),
    Endpoints(StaticEndpoints),
    Kubernetes(Box<KubeCluster>),
}

impl AnyCluster {
    /// Opens the policy's target. A local fleet is brought to its requested size (at least
    /// `minReplicas`); giving a new one its first master is the caller's next step
    /// ([`crate::act::target::open_as`]). A StatefulSet is only read (its pods watched) through
    /// `kube`'s client, built on first use: Kubernetes runs the pods. Its Events name this
    /// process by [`lease::default_identity`] (`POD_NAME`, else `HOSTNAME`).
    pub async fn open(policy: &Policy, kube: &KubeClient) -> Result<Self, ClusterError> {
        Self::open_as(policy, kube, &lease::default_identity()).await
    }

    /// [`AnyCluster::open`] for the daemon: a StatefulSet's Events name it `identity`, the
    /// name it holds the Lease under (`run --identity`).
    pub async fn open_as(
        policy: &Policy,
        kube: &KubeClient,
        identity: &str,
    ) -> Result<Self, ClusterError> {
        match &policy.target {
            Target::Local { .. } => {
                let access = redis_access(policy).map_err(ClusterError::Access)?;
                let Some(config) = LocalConfig::from_policy(policy, access) else {
                    return Err(ClusterError::Unsupported { target: "local", action: "open" });
                };
                let fleet = LocalFleet::open_async(config).await?;
                let min = policy.scaling.as_ref().map_or(1, |s| s.min_replicas);
                let recorded = fleet.replicas().await?;
                fleet.scale(recorded, recorded.max(min)).await?;
                Ok(Self::Local(Box::new(fleet)))
            }
            Target::Endpoints(endpoints) => {
                Ok(Self::Endpoints(StaticEndpoints::new(endpoints.clone())))
            }
            Target::Kubernetes { namespace, stateful_set, port } => {
                let target = KubeTarget {
                    namespace: namespace.clone(),
                    stateful_set: stateful_set.clone(),
                    port: *port,
                    access: redis_access(policy).map_err(ClusterError::Access)?,
                    timeout: super::action_timeout(policy),
                    identity: identity.to_owned(),
                    event_interval: EVENT_INTERVAL,
                };
                let cluster = KubeCluster::open(kube.get().await?, target).await?;
                Ok(Self::Kubernetes(Box::new(cluster)))
            }
        }
    }
}

impl AnyCluster {
    /// Stops what the daemon runs for the policy, explicitly and logged, once its loop has
    /// stopped (daemon shutdown, policy removed): a local fleet saves its master's data and
    /// stops its processes ([`LocalFleet::shutdown`]). A StatefulSet and static endpoints are
    /// not the daemon's to stop. Dropping the target instead stops nothing.
    pub async fn stop(self) {
        if let Self::Local(fleet) = self
            && let Err(error) = fleet.shutdown().await
        {
            tracing::error!(error = %crate::errors::chain(&error), "cannot stop the local fleet");
        }
    }
}

impl AnyCluster {
    /// Opens the policy's target to act on it once (`redis-autopilot failover`): unlike
    /// [`AnyCluster::open`] it starts, stops and scales nothing, and a local fleet's processes
    /// are left running when it is dropped (a daemon may own them).
    pub async fn attach(policy: &Policy, kube: &KubeClient) -> Result<Self, ClusterError> {
        match &policy.target {
            Target::Local { .. } => {
                let access = redis_access(policy).map_err(ClusterError::Access)?;
                let Some(config) = LocalConfig::from_policy(policy, access) else {
                    return Err(ClusterError::Unsupported { target: "local", action: "attach" });
                };
                let fleet =
                    LocalFleet::open_async(LocalConfig { owns_processes: false, ..config }).await?;
                Ok(Self::Local(Box::new(fleet)))
            }
            Target::Endpoints(_) | Target::Kubernetes { .. } => Self::open(policy, kube).await,
        }
    }
}

impl AnyCluster {
    /// Where `policy`'s instances answer now, those the backend knows gone left out: for
    /// one-off work beside the policy loop, such as a snapshot choosing its source.
    pub async fn endpoints(
        policy: &Policy,
        kube: &KubeClient,
    ) -> Result<Vec<Endpoint>, ClusterError> {
        let cluster = Self::attach(policy, kube).await?;
        let members = cluster.members().await?;
        Ok(members.into_iter().filter(|m| m.gone.is_none()).map(|m| m.endpoint).collect())
    }
}

impl Cluster for AnyCluster {
    async fn members(&self) -> Result<Vec<Member>, ClusterError> {
        match self {
            Self::Local(c) => c.members().await,
            Self::Endpoints(c) => c.members().await,
            Self::Kubernetes(c) => c.members().await,
        }
    }

    async fn replicas(&self) -> Result<u16, ClusterError> {
        match self {
            Self::Local(c) => c.replicas().await,
            Self::Endpoints(c) => c.replicas().await,
            Self::Kubernetes(c) => c.replicas().await,
        }
    }

    async fn scale(&self, from: u16, to: u16) -> Result<(), ClusterError> {
        match self {
            Self::Local(c) => c.scale(from, to).await,
            Self::Endpoints(c) => c.scale(from, to).await,
            Self::Kubernetes(c) => c.scale(from, to).await,
        }
    }

    async fn recorded_master(&self) -> Result<Option<MasterRecord>, ClusterError> {
        match self {
            Self::Local(c) => c.recorded_master().await,
            Self::Endpoints(c) => c.recorded_master().await,
            Self::Kubernetes(c) => c.recorded_master().await,
        }
    }

    async fn fresh_record(&self) -> Result<Option<MasterRecord>, ClusterError> {
        match self {
            Self::Local(c) => c.fresh_record().await,
            Self::Endpoints(c) => c.fresh_record().await,
            Self::Kubernetes(c) => c.fresh_record().await,
        }
    }

    async fn record_master(&self, record: MasterRecord) -> Result<(), ClusterError> {
        match self {
            Self::Local(c) => c.record_master(record).await,
            Self::Endpoints(c) => c.record_master(record).await,
            Self::Kubernetes(c) => c.record_master(record).await,
        }
    }

    async fn promote(&self, member: &Member, epoch: u64) -> Result<(), ClusterError> {
        match self {
            Self::Local(c) => c.promote(member, epoch).await,
            Self::Endpoints(c) => c.promote(member, epoch).await,
            Self::Kubernetes(c) => c.promote(member, epoch).await,
        }
    }

    async fn switch_over(
        &self,
        from: &Member,
        to: &Member,
        epoch: u64,
    ) -> Result<(), ClusterError> {
        match self {
            Self::Local(c) => c.switch_over(from, to, epoch).await,
            Self::Endpoints(c) => c.switch_over(from, to, epoch).await,
            Self::Kubernetes(c) => c.switch_over(from, to, epoch).await,
        }
    }

    async fn repoint(&self, member: &Member, master: &Member) -> Result<(), ClusterError> {
        match self {
            Self::Local(c) => c.repoint(member, master).await,
            Self::Endpoints(c) => c.repoint(member, master).await,
            Self::Kubernetes(c) => c.repoint(member, master).await,
        }
    }

    async fn advertise(&self, member: &Member, role: Advertised) -> Result<(), ClusterError> {
        match self {
            Self::Local(c) => c.advertise(member, role).await,
            Self::Endpoints(c) => c.advertise(member, role).await,
            Self::Kubernetes(c) => c.advertise(member, role).await,
        }
    }

    async fn heal(&self) -> Result<(), ClusterError> {
        match self {
            Self::Local(c) => c.heal().await,
            Self::Endpoints(c) => c.heal().await,
            Self::Kubernetes(c) => c.heal().await,
        }
    }

    async fn announce(&self, action: &str, reason: &str, warning: bool, note: &str) {
        match self {
            Self::Local(c) => c.announce(action, reason, warning, note).await,
            Self::Endpoints(c) => c.announce(action, reason, warning, note).await,
            Self::Kubernetes(c) => c.announce(action, reason, warning, note).await,
        }
    }

    async fn explain(&self, kind: &str, reason: &str) {
        match self {
            Self::Local(c) => c.explain(kind, reason).await,
            Self::Endpoints(c) => c.explain(kind, reason).await,
            Self::Kubernetes(c) => c.explain(kind, reason).await,
        }
    }
}
