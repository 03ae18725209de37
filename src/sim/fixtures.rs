//! Test fixtures: policies built in Rust, so simulator tests do not depend on the YAML loader.

use std::time::Duration;

use crate::policy::{
    Aggregate, Behavior, FailoverMode, Health, Metric, MetricSource, Policy, Sampling, Scaling,
    Statistic, Step, Target,
};

pub struct PolicyBuilder {
    policy: Policy,
}

/// A policy sampling every 10 s, 1..=4 replicas, no metrics yet, no stabilization, cooldown
/// or forecast, steps of 100 % per 15 s, warm-up 30 s.
pub fn policy() -> PolicyBuilder {
    let behavior = Behavior {
        stabilization: Duration::ZERO,
        max_step: Step::Percent(100),
        period: Duration::from_secs(15),
        cooldown: Duration::ZERO,
    };
    PolicyBuilder {
        policy: Policy {
            name: "test".into(),
            target: Target::Endpoints(vec![crate::model::Endpoint::loopback(6379)]),
            auth: None,
            tls: None,
            prometheus: None,
            sampling: Sampling {
                interval: Duration::from_secs(10),
                timeout: Duration::from_secs(2),
            },
            scaling: Some(Scaling {
                min_replicas: 1,
                max_replicas: 4,
                metrics: vec![],
                tolerance: 0.1,
                band: None,
                scale_up: behavior.clone(),
                scale_down: behavior,
                schedule: vec![],
                forecast: None,
                warmup: Duration::from_secs(30),
            }),
            health: Health { failover: FailoverMode::Off, ..Health::default() },
            snapshots: None,
            alerts: vec![],
            paused: false,
        },
    }
}

/// The last value of the mean of a Redis `INFO` field across ready instances.
pub fn redis_metric(field: &str, target: f64) -> Metric {
    Metric {
        source: MetricSource::Redis {
            field: field.into(),
            rate: false,
            plausible_max: crate::policy::bounds::default_plausible_max(field, false),
        },
        aggregate: Aggregate::Mean,
        statistic: Statistic::Last,
        window: Duration::from_secs(30),
        target,
        seasonal: None,
        saturation: None,
        bursts: None,
    }
}

/// The last value of a PromQL total, divided by the target.
pub fn prometheus_metric(query: &str, target: f64) -> Metric {
    Metric {
        source: MetricSource::Prometheus { query: query.into() },
        aggregate: Aggregate::Sum,
        statistic: Statistic::Last,
        window: Duration::from_secs(30),
        target,
        seasonal: None,
        saturation: None,
        bursts: None,
    }
}

impl PolicyBuilder {
    fn scaling(&mut self) -> &mut Scaling {
        self.policy.scaling.as_mut().expect("fixtures always have scaling")
    }

    pub fn metric(mut self, metric: Metric) -> Self {
        self.scaling().metrics.push(metric);
        self
    }

    pub fn min(mut self, min: u16) -> Self {
        self.scaling().min_replicas = min;
        self
    }

    pub fn max(mut self, max: u16) -> Self {
        self.scaling().max_replicas = max;
        self
    }

    pub fn warmup(mut self, warmup: Duration) -> Self {
        self.scaling().warmup = warmup;
        self
    }

    pub fn build(self) -> Policy {
        self.policy
    }
}
