//! Leader election on a `coordination.k8s.io/v1` Lease, the protocol client-go's
//! leaderelection uses: the holder renews `renewTime` every retry period; a candidate takes
//! the Lease over only when it has seen the same record unchanged for a whole lease duration
//! (measured on its own clock, so clock skew between nodes does not matter); every write
//! carries the resourceVersion it was decided on, so of two candidates only one wins.
//!
//! The holder stops leading as soon as a renewal shows another holder, or when it could not
//! renew for `renew_deadline` (shorter than the lease duration: it stops before anyone else
//! can start). On shutdown it releases the Lease so a standby takes over at once.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::Api;
use kube::api::PostParams;
use tokio::sync::watch;

use super::api::{CREATE_LEASE, GET_LEASE, KubeError, UPDATE_LEASE, bounded};

/// Which Lease, who we are, and the timings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseConfig {
    pub name: String,
    pub namespace: String,
    pub identity: String,
    /// How long a holder's claim lasts without renewal (whole seconds in the Lease).
    pub lease_duration: Duration,
    /// The holder stops acting when it could not renew for this long.
    pub renew_deadline: Duration,
    /// How often the holder renews and a standby retries.
    pub retry_period: Duration,
}

impl LeaseConfig {
    /// Checks the timings' order: retry < renew deadline < lease duration.
    pub fn validate(&self) -> Result<(), String> {
        if self.lease_duration.as_secs() == 0 || self.lease_duration.subsec_nanos() != 0 {
            return Err("the lease duration must be a whole number of seconds, at least 1s".into());
        }
        if self.renew_deadline >= self.lease_duration {
            return Err("the renew deadline must be shorter than the lease duration".into());
        }
        if self.retry_period.is_zero() || self.retry_period >= self.renew_deadline {
            return Err(
                "the retry period must be positive and shorter than the renew deadline".into()
            );
        }
        Ok(())
    }
}

/// This process's name for Events and the Lease: `POD_NAME`, else `HOSTNAME`, else
/// `redis-autopilot`.
pub fn default_identity() -> String {
    ["POD_NAME", "HOSTNAME"]
        .iter()
        .find_map(|name| std::env::var(name).ok().filter(|v| !v.is_empty()))
        .unwrap_or_else(|| "redis-autopilot".into())
}

/// One candidate.
pub struct Elector {
    api: Api<Lease>,
    config: LeaseConfig,
    object: String,
    /// The last Lease record seen (its resourceVersion) and when it was first seen so.
    observed: Option<(String, Instant)>,
}

impl Elector {
    pub fn new(client: kube::Client, config: LeaseConfig) -> Self {
        let api = Api::namespaced(client, &config.namespace);
        let object = format!("lease {}/{}", config.namespace, config.name);
        Self { api, config, object, observed: None }
    }

    /// Campaigns until `shutdown` turns true, publishing on `leader` whether we hold the
    /// Lease. Never panics on API errors: they are logged, and the next retry tries again.
    pub async fn run(mut self, leader: watch::Sender<bool>, mut shutdown: watch::Receiver<bool>) {
        let mut renewed: Option<Instant> = None;
        loop {
            let attempt = self.try_acquire_or_renew().await;
            let now = Instant::now();
            let leading = match attempt {
                Ok(true) => {
                    renewed = Some(now);
                    true
                }
                Ok(false) => {
                    renewed = None;
                    false
                }
                Err(error) => {
                    let within = renewed
                        .is_some_and(|at| now.duration_since(at) < self.config.renew_deadline);
                    tracing::warn!(
                        lease = %self.object, error = %crate::errors::chain(&error),
                        still_leading = within, "cannot renew or acquire the lease"
                    );
                    within
                }
            };
            if *leader.borrow() != leading {
                if leading {
                    tracing::info!(lease = %self.object, identity = %self.config.identity, "acquired the lease: acting");
                } else {
                    tracing::warn!(lease = %self.object, identity = %self.config.identity, "lost the lease: not acting");
                }
                let _ = leader.send(leading);
            }
            tokio::select! {
                _ = tokio::time::sleep(self.config.retry_period) => {}
                _ = shutdown.wait_for(|stop| *stop) => break,
            }
        }
        if *leader.borrow() {
            let _ = leader.send(false);
            if let Err(error) = self.release().await {
                tracing::warn!(lease = %self.object, error = %crate::errors::chain(&error), "cannot release the lease");
            }
        }
    }

    /// One round: `true` when we hold the Lease after it.
    pub async fn try_acquire_or_renew(&mut self) -> Result<bool, KubeError> {
        let now = k8s_openapi::jiff::Timestamp::now();
        let seconds = i32::try_from(self.config.lease_duration.as_secs()).unwrap_or(i32::MAX);
        let name = self.config.name.clone();
        let lease = match bounded(&GET_LEASE, &self.object, self.api.get_opt(&name)).await? {
            Some(lease) => lease,
            None => {
                let lease = Lease {
                    metadata: ObjectMeta { name: Some(name), ..ObjectMeta::default() },
                    spec: Some(LeaseSpec {
                        holder_identity: Some(self.config.identity.clone()),
                        lease_duration_seconds: Some(seconds),
                        acquire_time: Some(MicroTime(now)),
                        renew_time: Some(MicroTime(now)),
                        lease_transitions: Some(0),
                        ..LeaseSpec::default()
                    }),
                };
                let params = PostParams::default();
                let created = self.api.create(&params, &lease);
                return match bounded(&CREATE_LEASE, &self.object, created).await {
                    Ok(created) => {
                        self.observe(&created);
                        Ok(true)
                    }
                    // Another candidate created it first.
                    Err(error) if error.is_conflict() => Ok(false),
                    Err(error) => Err(error),
                };
            }
        };
        let observed_at = self.observe(&lease);
        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
        let ours = holder.as_deref() == Some(self.config.identity.as_str());
        if let Some(other) = &holder
            && !ours
        {
            let duration = spec
                .lease_duration_seconds
                .and_then(|s| u64::try_from(s).ok())
                .map_or(self.config.lease_duration, Duration::from_secs);
            if observed_at.elapsed() < duration {
                tracing::debug!(lease = %self.object, holder = %other, "the lease is held");
                return Ok(false);
            }
        }
        let transitions = spec.lease_transitions.unwrap_or(0);
        let mut next = lease.clone();
        next.spec = Some(LeaseSpec {
            holder_identity: Some(self.config.identity.clone()),
            lease_duration_seconds: Some(seconds),
            acquire_time: if ours { spec.acquire_time } else { Some(MicroTime(now)) },
            renew_time: Some(MicroTime(now)),
            lease_transitions: Some(if ours { transitions } else { transitions + 1 }),
            ..spec
        });
        let params = PostParams::default();
        let replaced = self.api.replace(&self.config.name, &params, &next);
        match bounded(&UPDATE_LEASE, &self.object, replaced).await {
            Ok(written) => {
                self.observe(&written);
                Ok(true)
            }
            // Someone else wrote it since we read it: they won this round.
            Err(error) if error.is_conflict() => Ok(false),
            Err(error) => Err(error),
        }
    }

    /// Gives the Lease up (no holder), so a standby acquires it on its next retry.
    async fn release(&mut self) -> Result<(), KubeError> {
        let Some(mut lease) =
            bounded(&GET_LEASE, &self.object, self.api.get_opt(&self.config.name)).await?
        else {
            return Ok(());
        };
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        if spec.holder_identity.as_deref() != Some(self.config.identity.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(MicroTime(k8s_openapi::jiff::Timestamp::now()));
        let params = PostParams::default();
        let replaced = self.api.replace(&self.config.name, &params, &lease);
        bounded(&UPDATE_LEASE, &self.object, replaced).await?;
        tracing::info!(lease = %self.object, "released the lease");
        Ok(())
    }

    /// Notes `lease`'s record; returns when it was first seen as it is now.
    fn observe(&mut self, lease: &Lease) -> Instant {
        let version = lease.metadata.resource_version.clone().unwrap_or_default();
        match &self.observed {
            Some((seen, at)) if *seen == version => *at,
            _ => {
                let now = Instant::now();
                self.observed = Some((version, now));
                now
            }
        }
    }
}
