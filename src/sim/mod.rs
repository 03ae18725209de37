//! Trace replay: a recorded load played against a policy (through the real decision core) and
//! against the Kubernetes HPA baseline, on the same simulated cluster, side by side.
//!
//! - [`trace`]: the load CSV, piecewise constant per row.
//! - [`scenario`]: which policy meets which trace, and the cluster assumptions.
//! - [`model`]: the simulated deployment (capacity per instance, warm-up, even load split).
//! - [`cluster`]: the model behind the daemon's [`crate::cluster::Cluster`] trait.
//! - [`replay`](mod@replay): the event-driven loop that integrates exactly between events.
//! - [`policy_run`]: the policy as a controller: observations in, [`crate::decide`] decides.
//! - [`hpa`]: the HPA algorithm as a controller.
//! - [`report`]: the four numbers per controller and the policy/HPA ratios, as JSON or a table.
//! - [`plot`]: demand, capacity, replicas and under-provisioned periods over time as SVG.
//! - [`synthetic`]: seeded synthetic traces (daily and weekly cycles, flash crowds, growth, noise).
//! - [`refine`](mod@refine): per-second requests drawn from a coarser trace of request counts.
//! - [`tune`]: a seeded search over a policy's scaling settings, ranked on the trace's first four
//!   fifths and checked on the last.

pub mod cluster;
pub mod hpa;
pub mod model;
pub mod plot;
pub mod policy_run;
pub mod refine;
pub mod replay;
pub mod report;
pub mod scenario;
pub mod synthetic;
pub mod trace;
pub mod tune;

#[cfg(test)]
mod fixtures;

use std::time::Duration;

use hpa::{HpaController, HpaSpec};
use model::ClusterModel;
use policy_run::{MetricGap, PolicyController, to_millis};
use replay::{Run, replay};
use report::Comparison;
use scenario::Scenario;
use trace::Trace;

use crate::policy::Policy;

/// The cluster assumptions a simulation runs under.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Settings {
    /// Ops/s one ready instance serves.
    pub capacity_per_replica: f64,
    /// From scale-up request to serving.
    pub warmup: Duration,
    /// Instances at the start, all ready.
    pub initial_replicas: u16,
}

impl Settings {
    /// The scenario's assumptions, with the policy's `warmup` and `minReplicas` filling in
    /// what the scenario leaves out.
    pub fn for_policy(scenario: &Scenario, policy: &Policy) -> Result<Self, SimError> {
        let scaling = policy
            .scaling
            .as_ref()
            .ok_or_else(|| SimError::NoScaling { policy: policy.name.clone() })?;
        let initial_replicas = scenario.initial_replicas.unwrap_or(scaling.min_replicas);
        // More than the policy's bounds is a deployment neither controller may run: refused
        // rather than replayed (the model would hold that many instances).
        if initial_replicas > scaling.max_replicas {
            return Err(SimError::InitialReplicas {
                initial: initial_replicas,
                max: scaling.max_replicas,
                policy: policy.name.clone(),
            });
        }
        Ok(Self {
            capacity_per_replica: scenario.capacity_per_replica,
            warmup: scenario.warmup.unwrap_or(scaling.warmup),
            initial_replicas,
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("policy `{policy}` has no scaling section: there is nothing to simulate")]
    NoScaling { policy: String },
    #[error(
        "policy `{policy}` has no scaling metric: the HPA baseline needs the first metric's target"
    )]
    NoMetric { policy: String },
    #[error("initialReplicas {initial} is more than policy `{policy}`'s maxReplicas {max}")]
    InitialReplicas { initial: u16, max: u16, policy: String },
}

/// Both controllers' runs over one trace.
#[derive(Debug, Clone, PartialEq)]
pub struct Simulation {
    pub policy: Run,
    pub hpa: Run,
    /// Policy metrics the simulated fleet could not supply (see [`policy_run::MetricGap`]).
    pub gaps: Vec<MetricGap>,
}

impl Simulation {
    pub fn comparison(&self) -> Comparison {
        Comparison { policy: self.policy.summary, hpa: self.hpa.summary }
    }
}

/// Replays `trace` (loads already in ops/s) against `policy` and against the HPA with the
/// policy's bounds and its first metric's target.
pub fn simulate(
    policy: &Policy,
    trace: &Trace,
    settings: &Settings,
) -> Result<Simulation, SimError> {
    let scaling = policy
        .scaling
        .as_ref()
        .ok_or_else(|| SimError::NoScaling { policy: policy.name.clone() })?;
    let first_metric = scaling
        .metrics
        .first()
        .ok_or_else(|| SimError::NoMetric { policy: policy.name.clone() })?;
    let cluster = ClusterModel::new(
        settings.initial_replicas,
        settings.capacity_per_replica,
        to_millis(settings.warmup),
        trace.start(),
    );
    let mut policy_controller = PolicyController::new(policy)?;
    let mut hpa_controller = HpaController::new(HpaSpec {
        min_replicas: scaling.min_replicas,
        max_replicas: scaling.max_replicas,
        average_value: first_metric.target,
    });
    // The two replays share nothing but the trace: one per core.
    let (policy_run, hpa_run) = std::thread::scope(|scope| {
        let hpa_cluster = cluster.clone();
        let hpa = scope.spawn(|| replay(trace, hpa_cluster, &mut hpa_controller));
        let policy_run = replay(trace, cluster, &mut policy_controller);
        (policy_run, hpa.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
    });
    Ok(Simulation { policy: policy_run, hpa: hpa_run, gaps: policy_controller.gaps() })
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::sim::fixtures::{policy, redis_metric};
    use crate::sim::trace::{Row, TimeKind};

    fn scenario() -> Scenario {
        Scenario {
            policy: PathBuf::from("p.yaml"),
            trace: PathBuf::from("t.csv"),
            trace_scale: 1.0,
            capacity_per_replica: 100.0,
            warmup: None,
            from: None,
            to: None,
            initial_replicas: None,
        }
    }

    #[test]
    fn the_policy_fills_in_warmup_and_initial_replicas() {
        let policy = policy().min(2).warmup(Duration::from_secs(45)).build();
        let settings = Settings::for_policy(&scenario(), &policy).expect("has scaling");
        assert_eq!(settings.warmup, Duration::from_secs(45));
        assert_eq!(settings.initial_replicas, 2);
        let given = Scenario {
            warmup: Some(Duration::from_secs(5)),
            initial_replicas: Some(3),
            ..scenario()
        };
        let settings = Settings::for_policy(&given, &policy).expect("has scaling");
        // More than maxReplicas: refused, naming both.
        let beyond = Scenario { initial_replicas: Some(65_535), ..given.clone() };
        let refused = Settings::for_policy(&beyond, &policy).expect_err("beyond maxReplicas");
        assert!(refused.to_string().contains("initialReplicas 65535 is more than"), "{refused}");
        assert_eq!((settings.warmup, settings.initial_replicas), (Duration::from_secs(5), 3));
    }

    #[test]
    fn both_controllers_see_the_same_trace_and_cluster() {
        // Flat 50 ops/s on 1 replica of 100 (target 80) for 5 minutes: nobody moves.
        let policy = policy().metric(redis_metric("instantaneous_ops_per_sec", 80.0)).build();
        let rows = (0..5).map(|m| Row { at: m * 60_000, load: 50.0 }).collect();
        let trace = Trace::from_rows("flat", TimeKind::Seconds, rows).expect("valid");
        let settings =
            Settings { capacity_per_replica: 100.0, warmup: Duration::ZERO, initial_replicas: 1 };
        let simulation = simulate(&policy, &trace, &settings).expect("simulates");
        let comparison = simulation.comparison();
        assert_eq!(comparison.policy, comparison.hpa);
        assert_eq!(comparison.policy.replica_minutes, 5.0);
        assert_eq!(comparison.policy.scale_events, 0);
    }

    #[test]
    fn a_policy_without_metrics_has_no_hpa_target() {
        let policy = policy().build();
        let rows = vec![Row { at: 0, load: 1.0 }, Row { at: 1000, load: 1.0 }];
        let trace = Trace::from_rows("t", TimeKind::Seconds, rows).expect("valid");
        let settings =
            Settings { capacity_per_replica: 1.0, warmup: Duration::ZERO, initial_replicas: 1 };
        assert!(matches!(simulate(&policy, &trace, &settings), Err(SimError::NoMetric { .. })));
    }
}
