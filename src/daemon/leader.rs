//! Which daemon acts: for StatefulSet targets, the one holding the Lease. Started on the
//! first policy that targets Kubernetes (a daemon with only local or endpoints targets never
//! talks to an API server and always leads), shared by every policy's executor, and stopped
//! (the Lease released) after the policy loops at shutdown.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::act::Leadership;
use crate::cluster::kubernetes::lease::{Elector, LeaseConfig, default_identity};
use crate::cluster::kubernetes::{KubeClient, KubeError};
use crate::policy::{Policy, Target};

/// `run`'s leader-election flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseSettings {
    pub name: String,
    /// `None`: `POD_NAMESPACE`, else the client's default namespace.
    pub namespace: Option<String>,
    /// `None`: [`default_identity`].
    pub identity: Option<String>,
    pub lease_duration: Duration,
    pub renew_deadline: Duration,
    pub retry_period: Duration,
}

/// The Lease name, and client-go's default timings: a new leader acts at most
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
        }
    }
}

/// The daemon's Kubernetes client and, once started, its elector.
pub struct Election {
    client: Arc<KubeClient>,
    settings: LeaseSettings,
    stopped: watch::Receiver<bool>,
    running: Option<(watch::Receiver<bool>, JoinHandle<()>)>,
}

impl Election {
    /// `stopped` turning true ends the campaign (releasing the Lease).
    pub fn new(
        client: Arc<KubeClient>,
        settings: LeaseSettings,
        stopped: watch::Receiver<bool>,
    ) -> Self {
        Self { client, settings, stopped, running: None }
    }

    pub fn client(&self) -> &KubeClient {
        &self.client
    }

    /// Who this daemon is, in the Lease and in the Events it posts: `--identity`, else
    /// [`default_identity`].
    pub fn identity(&self) -> String {
        self.settings.identity.clone().unwrap_or_else(default_identity)
    }

    /// The gate `policy`'s executor obeys: the Lease for a Kubernetes target (starting the
    /// elector on first use), always leading otherwise.
    pub async fn leadership_for(&mut self, policy: &Policy) -> Result<Leadership, KubeError> {
        if !matches!(policy.target, Target::Kubernetes { .. }) {
            return Ok(Leadership::always());
        }
        if let Some((leader, _)) = &self.running {
            return Ok(Leadership::following(leader.clone()));
        }
        let client = self.client.get().await?;
        let namespace = self
            .settings
            .namespace
            .clone()
            .or_else(|| std::env::var("POD_NAMESPACE").ok().filter(|n| !n.is_empty()))
            .unwrap_or_else(|| client.default_namespace().to_owned());
        let config = LeaseConfig {
            name: self.settings.name.clone(),
            namespace,
            identity: self.identity(),
            lease_duration: self.settings.lease_duration,
            renew_deadline: self.settings.renew_deadline,
            retry_period: self.settings.retry_period,
        };
        tracing::info!(lease = %format!("{}/{}", config.namespace, config.name), identity = %config.identity, "campaigning for the lease");
        let (sender, leader) = watch::channel(false);
        let task = tokio::spawn(Elector::new(client, config).run(sender, self.stopped.clone()));
        self.running = Some((leader.clone(), task));
        Ok(Leadership::following(leader))
    }

    /// Waits (at most `grace`) for the elector to release the Lease; call after `stopped`
    /// turned true.
    pub async fn finish(self, grace: Duration) {
        if let Some((_, task)) = self.running
            && tokio::time::timeout(grace, task).await.is_err()
        {
            tracing::warn!("the lease was not released within {grace:?}");
        }
    }
}
