//! One policy's loop: every sampling interval, sample its instances, decide, and act through
//! its cluster backend. Everything for one target happens in this one task, so two actions
//! on the same target are never in flight at once; a reload or an alert is a message to it.
//!
//! Shutdown is checked between evaluations: an action in flight finishes (every cluster call
//! is bounded by a deadline), and nothing new starts.

use std::time::Instant;

use tokio::sync::{mpsc, watch};

use super::metrics::Metrics;
use super::status::{DecisionRecord, Status};
use crate::act::{self, ActionOutcome, Executor};
use crate::cluster::Cluster;
use crate::decide::{Decision, Fleet, Memory, decide};
use crate::errors::chain;
use crate::observe::{History, Timestamp};
use crate::policy::{AlertAction, MetricSource, Policy};
use crate::sample::{PolicySampler, SetupError};

/// What the rest of the daemon can ask of a policy's loop.
#[derive(Debug)]
pub enum Command {
    /// A new valid version of the policy: keep the history and memory, change the rules.
    Reload(Box<Policy>),
    /// An alert the policy maps to an action.
    Alert { alert_name: String, action: AlertAction },
}

/// Handles shared by every policy's loop and the HTTP surface.
#[derive(Clone)]
pub struct Shared {
    pub metrics: std::sync::Arc<Metrics>,
    pub status: Status,
}

impl Shared {
    pub fn new() -> Self {
        Self {
            metrics: std::sync::Arc::new(Metrics::new()),
            status: Status::new(super::status::DEFAULT_CAPACITY),
        }
    }
}

impl Default for Shared {
    fn default() -> Self {
        Self::new()
    }
}

pub struct PolicyLoop<C> {
    policy: Policy,
    cluster: C,
    sampler: PolicySampler,
    history: History,
    /// The `INFO` numbers the policy's metrics read: all of a reply the history keeps.
    fields: Vec<String>,
    memory: Memory,
    executor: Executor,
    shared: Shared,
}

impl<C: Cluster> PolicyLoop<C> {
    pub fn new(
        policy: Policy,
        cluster: C,
        executor: Executor,
        shared: Shared,
    ) -> Result<Self, SetupError> {
        let sampler = PolicySampler::new(&policy)?;
        let history = History::new(policy.history_span(), policy.sampling.interval);
        let fields = redis_fields(&policy);
        Ok(Self {
            policy,
            cluster,
            sampler,
            history,
            fields,
            memory: Memory::default(),
            executor,
            shared,
        })
    }

    /// Runs until `shutdown` turns true or every command sender is gone.
    pub async fn run(
        mut self,
        mut commands: mpsc::Receiver<Command>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let name = self.policy.name.clone();
        self.shared.status.policy_loaded(&name);
        let mut ticker = tokio::time::interval(self.policy.sampling.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                _ = shutdown.changed() => break,
                command = commands.recv() => match command {
                    None => break,
                    Some(Command::Reload(policy)) => self.reload(*policy, &mut ticker),
                    Some(Command::Alert { alert_name, action }) => {
                        self.alert(&alert_name, action).await;
                    }
                },
                _ = ticker.tick() => self.evaluate().await,
            }
        }
        self.shared.status.policy_unloaded(&name);
        tracing::info!(policy = %name, "policy loop stopped");
    }

    fn reload(&mut self, policy: Policy, ticker: &mut tokio::time::Interval) {
        match PolicySampler::new(&policy) {
            Ok(sampler) => self.sampler = sampler,
            Err(error) => {
                tracing::error!(policy = %policy.name, error = %chain(&error), "reload rejected: keeping the running version");
                return;
            }
        }
        if policy.sampling.interval != self.policy.sampling.interval {
            *ticker = tokio::time::interval(policy.sampling.interval);
        }
        // The history keeps what was sampled; its size follows the new windows.
        let mut history = History::new(policy.history_span(), policy.sampling.interval);
        for observation in self.history.iter() {
            history.push(observation.clone());
        }
        self.history = history;
        // Rounds already held keep only the old version's fields: a metric the new version
        // adds starts with an empty window, as it would in a freshly started daemon.
        self.fields = redis_fields(&policy);
        tracing::info!(policy = %policy.name, "policy reloaded");
        self.policy = policy;
    }

    async fn alert(&mut self, alert_name: &str, action: AlertAction) {
        let name = self.policy.name.clone();
        match action {
            AlertAction::Evaluate => {
                tracing::info!(policy = %name, alert = %alert_name, "alert: evaluating now");
                self.evaluate().await;
            }
            AlertAction::ScaleUp(step) => match self.cluster.replicas().await {
                Ok(replicas) => {
                    let at_least = replicas.saturating_add(step);
                    self.memory.scaling.request_scale_up(chrono::Utc::now(), alert_name, at_least);
                    tracing::info!(policy = %name, alert = %alert_name, at_least, "alert: scale-up requested");
                    self.evaluate().await;
                }
                Err(error) => {
                    tracing::warn!(policy = %name, alert = %alert_name, error = %chain(&error), "alert: cannot read the replica count");
                }
            },
            AlertAction::Snapshot => {
                // The supervisor hands snapshot alerts to the snapshot scheduler, beside this loop.
                tracing::debug!(policy = %name, alert = %alert_name, "snapshot alert: taken by the snapshot scheduler");
            }
        }
    }

    /// One round: sample -> decide -> act, each decision recorded with what became of it.
    async fn evaluate(&mut self) {
        let name = self.policy.name.clone();
        let members = match self.cluster.members().await {
            Ok(members) => members,
            Err(error) => {
                tracing::warn!(policy = %name, error = %chain(&error), "cannot list instances: no evaluation this round");
                return;
            }
        };
        let endpoints: Vec<_> = members.iter().map(|m| m.endpoint.clone()).collect();
        let now = chrono::Utc::now();
        let mut observation = self.sampler.round(&endpoints, now).await;
        self.shared.metrics.observation(&name, &observation);
        // A policy holds ~300 rounds (5 min at 1 s): whole replies would be ~10 KB per
        // instance-round; the few numbers its metrics read are all `decide` asks of them.
        observation.retain_numbers(&self.fields);
        self.history.push(observation);
        let replicas = match self.cluster.replicas().await {
            Ok(replicas) => replicas,
            Err(error) => {
                tracing::warn!(policy = %name, error = %chain(&error), "cannot read the replica count: no decision this round");
                return;
            }
        };
        let decisions =
            decide(&self.policy, &self.history, Fleet { replicas }, &mut self.memory, now);
        for decision in decisions {
            self.shared.metrics.decision(&name, &decision);
            let action = match &decision {
                Decision::Hold { replicas, .. } => {
                    self.shared.metrics.replicas(&name, *replicas, *replicas);
                    tracing::debug!(policy = %name, reason = %decision.reason(), "hold");
                    None
                }
                Decision::Scale { from, to, .. } => {
                    let outcome = self.scale(*from, *to, now).await;
                    let current = if outcome == ActionOutcome::Applied { *to } else { *from };
                    self.shared.metrics.replicas(&name, current, *to);
                    tracing::info!(
                        policy = %name, action = "scale", from, to, outcome = outcome.label(),
                        reason = %decision.reason(), "decision"
                    );
                    Some(outcome)
                }
            };
            self.shared.status.record(DecisionRecord::new(now, &name, decision, action));
        }
        self.shared.status.first_decision(&name);
    }

    /// The shared action path ([`act::scale`]), timed for the metrics when it reached the
    /// cluster.
    async fn scale(&mut self, from: u16, to: u16, now: Timestamp) -> ActionOutcome {
        let started = Instant::now();
        let outcome =
            act::scale(&mut self.executor, &self.cluster, &mut self.memory, from, to, now).await;
        let took = matches!(outcome, ActionOutcome::Applied | ActionOutcome::Failed { .. })
            .then(|| started.elapsed());
        self.shared.metrics.action(&self.policy.name, "scale", &outcome, took);
        outcome
    }
}

/// The `INFO` fields a policy's metrics read, each once.
fn redis_fields(policy: &Policy) -> Vec<String> {
    let mut fields: Vec<String> = policy
        .scaling
        .iter()
        .flat_map(|s| &s.metrics)
        .filter_map(|m| match &m.source {
            MetricSource::Redis { field, .. } => Some(field.clone()),
            MetricSource::Prometheus { .. } => None,
        })
        .collect();
    fields.sort_unstable();
    fields.dedup();
    fields
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::load_policy_str;

    #[test]
    fn history_keeps_each_redis_field_a_metric_reads_once() {
        let yaml = "apiVersion: autopilot.redis.io/v1alpha1
kind: RedisPolicy
metadata:
  name: cache
spec:
  target:
    endpoints: [\"127.0.0.1:6379\"]
  prometheus:
    url: http://127.0.0.1:9090
  scaling:
    minReplicas: 1
    maxReplicas: 4
    metrics:
      - redis: total_commands_processed
        rate: true
        target: 1000
      - redis: instantaneous_ops_per_sec
        target: 1000
      - redis: instantaneous_ops_per_sec
        statistic: p95
        target: 1000
      - prometheus: 'sum(rate(app_requests_total[1m]))'
        aggregate: sum
        target: 1000
";
        let policy = load_policy_str("cache.yaml", yaml).expect("a valid policy");
        assert_eq!(
            redis_fields(&policy),
            vec!["instantaneous_ops_per_sec".to_owned(), "total_commands_processed".to_owned()]
        );
    }
}
