//! Which daemon acts on a policy: for a StatefulSet target, the one holding that policy's
//! Lease (`--lease-name` + `-` + the policy's name). One Lease per policy, so any number of the
//! daemon's replicas share the policies, and a dead replica's policies move to the others,
//! each within its lease duration. A policy with a local or endpoints target never talks to an
//! API server and always leads. A campaign starts with the policy's first loop, goes on
//! across its reloads, ends (its Lease released) when the policy is removed, and every
//! campaign ends after the policy loops at shutdown.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::act::Leadership;
use crate::cluster::kubernetes::lease::{Candidacy, Elector, LeaseConfig, default_identity};
use crate::cluster::kubernetes::{KubeClient, KubeError};
use crate::policy::{Policy, Target};

/// How long a removed policy's campaign may take to release its Lease.
pub const RELEASE_GRACE: Duration = Duration::from_secs(5);

/// `run`'s leader-election flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseSettings {
    /// The Leases' prefix: each policy's Lease is `NAME-POLICY` ([`lease_name`]).
    pub name: String,
    /// `None`: `POD_NAMESPACE`, else the client's default namespace.
    pub namespace: Option<String>,
    /// `None`: [`default_identity`].
    pub identity: Option<String>,
    pub lease_duration: Duration,
    pub renew_deadline: Duration,
    pub retry_period: Duration,
    /// Where this daemon serves requests, written into the Leases it holds, so a standby
    /// sends a policy's alerts on to its leader; `None`: nowhere (a standby refuses them).
    pub advertise_url: Option<String>,
}

/// The Leases' name prefix, and client-go's default timings: a new leader acts at most
/// `lease_duration + retry_period` (17 s) after the old one died.
impl Default for LeaseSettings {
    fn default() -> Self {
        Self {
            name: "redis-autopilot".into(),
            namespace: None,
            identity: None,
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
            advertise_url: None,
        }
    }
}

/// The daemon's Kubernetes client and one campaign per policy with a Kubernetes target.
pub struct Election {
    client: Arc<KubeClient>,
    settings: LeaseSettings,
    campaigns: BTreeMap<String, Campaign>,
    /// Shared by every campaign: the load that spreads the Leases, the URL they advertise.
    candidacy: Candidacy,
}

/// One policy's Lease: whether we hold it, where its holder serves, the switch that ends the
/// campaign (releasing the Lease if held), and the elector's task.
struct Campaign {
    leader: watch::Receiver<bool>,
    leader_url: watch::Receiver<Option<String>>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// The Lease of `policy`: one per policy, so that the daemon's replicas share the policies
/// and a dead replica's policies move to the others one by one, each within its own lease
/// duration.
pub fn lease_name(prefix: &str, policy: &str) -> String {
    format!("{prefix}-{policy}")
}

impl Election {
    pub fn new(client: Arc<KubeClient>, settings: LeaseSettings) -> Self {
        let candidacy = Candidacy::new(settings.advertise_url.clone());
        Self { client, settings, campaigns: BTreeMap::new(), candidacy }
    }

    pub fn client(&self) -> &KubeClient {
        &self.client
    }

    /// Who this daemon is, in the Leases and in the Events it posts: `--identity`, else
    /// [`default_identity`].
    pub fn identity(&self) -> String {
        self.settings.identity.clone().unwrap_or_else(default_identity)
    }

    /// The gate `policy`'s executor obeys: its own Lease for a Kubernetes target (the
    /// campaign starts on first use and goes on across the policy's reloads), always leading
    /// otherwise.
    pub async fn leadership_for(&mut self, policy: &Policy) -> Result<Leadership, KubeError> {
        if !matches!(policy.target, Target::Kubernetes { .. }) {
            // A policy that no longer targets Kubernetes leaves its Lease to no one.
            self.release(&policy.name, RELEASE_GRACE).await;
            return Ok(Leadership::always());
        }
        if let Some(campaign) = self.campaigns.get(&policy.name) {
            let leadership = Leadership::following(campaign.leader.clone());
            return Ok(leadership.with_leader_url(campaign.leader_url.clone()));
        }
        let client = self.client.get().await?;
        let namespace = self
            .settings
            .namespace
            .clone()
            .or_else(|| std::env::var("POD_NAMESPACE").ok().filter(|n| !n.is_empty()))
            .unwrap_or_else(|| client.default_namespace().to_owned());
        let config = LeaseConfig {
            name: lease_name(&self.settings.name, &policy.name),
            namespace,
            identity: self.identity(),
            lease_duration: self.settings.lease_duration,
            renew_deadline: self.settings.renew_deadline,
            retry_period: self.settings.retry_period,
        };
        tracing::info!(policy = %policy.name, lease = %format!("{}/{}", config.namespace, config.name), identity = %config.identity, "campaigning for the policy's lease");
        let (sender, leader) = watch::channel(false);
        let (url_sender, leader_url) = watch::channel(None);
        let (stop, stopped) = watch::channel(false);
        let elector = Elector::new(client, config).sharing(self.candidacy.clone(), url_sender);
        let task = tokio::spawn(elector.run(sender, stopped));
        let leadership = Leadership::following(leader.clone()).with_leader_url(leader_url.clone());
        let campaign = Campaign { leader, leader_url, stop, task };
        self.campaigns.insert(policy.name.clone(), campaign);
        Ok(leadership)
    }

    /// Ends `policy`'s campaign, releasing its Lease if we hold it, and waits for that (at
    /// most `grace`): the policy was removed, or no longer targets Kubernetes.
    pub async fn release(&mut self, policy: &str, grace: Duration) {
        if let Some(campaign) = self.campaigns.remove(policy) {
            let _ = campaign.stop.send(true);
            if tokio::time::timeout(grace, campaign.task).await.is_err() {
                tracing::warn!(policy, "the policy's lease was not released within {grace:?}");
            }
        }
    }

    /// Ends every campaign, releasing the Leases we hold, and waits (at most `grace` in all);
    /// called once the policy loops have stopped, so no standby acts while one of ours might.
    pub async fn finish(self, grace: Duration) {
        let mut tasks = Vec::new();
        for (_, campaign) in self.campaigns {
            let _ = campaign.stop.send(true);
            tasks.push(campaign.task);
        }
        if tokio::time::timeout(grace, futures::future::join_all(tasks)).await.is_err() {
            tracing::warn!("the leases were not released within {grace:?}");
        }
    }
}
