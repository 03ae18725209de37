//! Leader election on a `coordination.k8s.io/v1` Lease, the protocol client-go's
//! leaderelection uses: the holder renews `renewTime` every retry period; a candidate takes
//! the Lease over only when it has seen the same record unchanged for a whole lease duration
//! (measured on its own clock, so clock skew between nodes does not matter); every write
//! carries the resourceVersion it was decided on, so of two candidates only one wins.
//!
//! The holder stops leading as soon as a renewal shows another holder, or when it could not
//! renew for `renew_deadline` (shorter than the lease duration: it stops before anyone else
//! can start). On shutdown it releases the Lease so a standby takes over at once.
//!
//! One process campaigns for many Leases (one per policy), and its replicas share them
//! ([`Candidacy`]): a candidate whose process already holds a Lease waits one retry period
//! more for a free one, so a replica holding none (which looks once per retry period) takes
//! it first, at start and when a replica dies. One period, not one per Lease held: a lone
//! survivor must not take the last of many policies many periods late. The holder writes the URL it serves on into the Lease (annotation
//! [`URL_ANNOTATION`]) and every candidate publishes the current holder's, so a request for a
//! policy reaching a standby is sent on to its leader.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
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

/// The annotation on a Lease naming the URL its holder serves requests on.
pub const URL_ANNOTATION: &str = "redis-autopilot.io/url";

/// What the campaigns of one process share: how many Leases it holds now, and the URL it
/// advertises in those.
#[derive(Debug, Clone, Default)]
pub struct Candidacy {
    held: Arc<AtomicUsize>,
    url: Option<String>,
}

impl Candidacy {
    /// `url`: where this process serves requests for the policies it leads, if anywhere.
    pub fn new(url: Option<String>) -> Self {
        Self { held: Arc::default(), url }
    }

    /// How many Leases this process holds now.
    pub fn held(&self) -> usize {
        self.held.load(Ordering::Relaxed)
    }
}

/// One candidate.
pub struct Elector {
    api: Api<Lease>,
    config: LeaseConfig,
    object: String,
    /// The last Lease record seen (its resourceVersion, or none for a Lease that does not
    /// exist) and when it was first seen so.
    observed: Option<(Option<String>, Instant)>,
    candidacy: Candidacy,
    /// Where the current holder serves, as its Lease says.
    leader_url: Option<watch::Sender<Option<String>>>,
}

impl Elector {
    pub fn new(client: kube::Client, config: LeaseConfig) -> Self {
        let api = Api::namespaced(client, &config.namespace);
        let object = format!("lease {}/{}", config.namespace, config.name);
        let candidacy = Candidacy::default();
        Self { api, config, object, observed: None, candidacy, leader_url: None }
    }

    /// Campaigns as one of the process's candidates (sharing its load, advertising its URL),
    /// publishing the holder's URL on `leader_url`.
    pub fn sharing(
        mut self,
        candidacy: Candidacy,
        leader_url: watch::Sender<Option<String>>,
    ) -> Self {
        self.candidacy = candidacy;
        self.leader_url = Some(leader_url);
        self
    }

    /// How long this candidate waits, beyond what the protocol asks, before taking a free
    /// Lease: one retry period when its process holds one already.
    fn yield_to_others(&self) -> Duration {
        if self.candidacy.held() > 0 { self.config.retry_period } else { Duration::ZERO }
    }

    fn publish_leader_url(&self, lease: Option<&Lease>) {
        let Some(sender) = &self.leader_url else { return };
        let url = lease.and_then(|lease| {
            let held = lease.spec.as_ref()?.holder_identity.as_deref().filter(|h| !h.is_empty());
            held?;
            lease.metadata.annotations.as_ref()?.get(URL_ANNOTATION).cloned()
        });
        sender.send_if_modified(|current| {
            let changed = *current != url;
            *current = url;
            changed
        });
    }

    fn annotations(&self) -> Option<BTreeMap<String, String>> {
        let url = self.candidacy.url.clone()?;
        Some(BTreeMap::from([(URL_ANNOTATION.to_owned(), url)]))
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
                    self.candidacy.held.fetch_add(1, Ordering::Relaxed);
                } else {
                    self.candidacy.held.fetch_sub(1, Ordering::Relaxed);
                }
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
            self.candidacy.held.fetch_sub(1, Ordering::Relaxed);
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
        let read = bounded(&GET_LEASE, &self.object, self.api.get_opt(&name)).await?;
        self.publish_leader_url(read.as_ref());
        let lease = match read {
            Some(lease) => lease,
            None => {
                // Not there yet: a loaded process lets an idle replica create it first.
                let absent_since = self.observe(None);
                if absent_since.elapsed() < self.yield_to_others() {
                    return Ok(false);
                }
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(name),
                        annotations: self.annotations(),
                        ..ObjectMeta::default()
                    },
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
                        self.observe(Some(&created));
                        self.publish_leader_url(Some(&created));
                        Ok(true)
                    }
                    // Another candidate created it first.
                    Err(error) if error.is_conflict() => Ok(false),
                    Err(error) => Err(error),
                };
            }
        };
        let observed_at = self.observe(Some(&lease));
        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
        let ours = holder.as_deref() == Some(self.config.identity.as_str());
        if !ours {
            // Held: until it expired. Released: free at once. Either way, a loaded process
            // waits a little longer, so an idle replica takes it first.
            let duration = spec
                .lease_duration_seconds
                .and_then(|s| u64::try_from(s).ok())
                .map_or(self.config.lease_duration, Duration::from_secs);
            let expires = if holder.is_some() { duration } else { Duration::ZERO };
            if observed_at.elapsed() < expires + self.yield_to_others() {
                tracing::debug!(lease = %self.object, holder = ?holder, "the lease is held, or left to a less loaded replica");
                return Ok(false);
            }
        }
        let transitions = spec.lease_transitions.unwrap_or(0);
        let mut next = lease.clone();
        if let Some(ours) = self.annotations() {
            next.metadata.annotations.get_or_insert_with(BTreeMap::new).extend(ours);
        }
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
                self.observe(Some(&written));
                self.publish_leader_url(Some(&written));
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

    /// Notes `lease`'s record (`None`: there is none); returns when it was first seen as it
    /// is now.
    fn observe(&mut self, lease: Option<&Lease>) -> Instant {
        let version =
            lease.map(|lease| lease.metadata.resource_version.clone().unwrap_or_default());
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
