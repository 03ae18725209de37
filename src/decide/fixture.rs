//! Test fixtures that read like sentences: `scaling().min(1).max(8).redis("ops", 1000.0)` and
//! `round(at).ready_ops(&[900.0, 1100.0])`.

use std::time::Duration;

use chrono::{TimeZone, Utc};

use crate::observe::{Info, InstanceSample, Observation, Outcome, QueryResult, Role, Timestamp};
use crate::policy::{
    Aggregate, Band, Behavior, Bursts, CronFloor, CronSchedule, Forecast, ForecastMethod, Health,
    Metric, MetricSource, Policy, Sampling, Saturation, Scaling, Seasonal, Statistic, Step, Target,
};

pub fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// 2026-11-24 (a Tuesday) 00:00:00 UTC plus `s` seconds.
pub fn t(s: i64) -> Timestamp {
    Utc.with_ymd_and_hms(2026, 11, 24, 0, 0, 0).unwrap() + chrono::Duration::seconds(s)
}

pub struct ScalingBuilder(pub Scaling);

/// min 1, max 10, tolerance 0.1, no windows, no limits: each rule is opted into per test.
pub fn scaling() -> ScalingBuilder {
    let free = Behavior {
        stabilization: Duration::ZERO,
        max_step: Step::Percent(1000),
        period: secs(15),
        cooldown: Duration::ZERO,
    };
    ScalingBuilder(Scaling {
        min_replicas: 1,
        max_replicas: 10,
        metrics: vec![],
        tolerance: 0.1,
        band: None,
        scale_up: free.clone(),
        scale_down: free,
        schedule: vec![],
        forecast: None,
        warmup: secs(30),
    })
}

impl ScalingBuilder {
    pub fn min(mut self, n: u16) -> Self {
        self.0.min_replicas = n;
        self
    }
    pub fn max(mut self, n: u16) -> Self {
        self.0.max_replicas = n;
        self
    }
    /// Mean across instances, mean over a 30 s window.
    pub fn redis(self, field: &str, target: f64) -> Self {
        self.metric(
            MetricSource::Redis {
                field: field.into(),
                rate: false,
                plausible_max: crate::policy::bounds::default_plausible_max(field, false),
            },
            Aggregate::Mean,
            target,
        )
    }
    pub fn metric(mut self, source: MetricSource, aggregate: Aggregate, target: f64) -> Self {
        self.0.metrics.push(Metric {
            source,
            aggregate,
            statistic: Statistic::Mean,
            window: secs(30),
            target,
            seasonal: None,
            saturation: None,
            bursts: None,
        });
        self
    }
    /// Changes the last metric added.
    pub fn statistic(mut self, statistic: Statistic, window: Duration) -> Self {
        if let Some(m) = self.0.metrics.last_mut() {
            m.statistic = statistic;
            m.window = window;
        }
        self
    }
    /// A seasonal forecast on the last metric added: `periods` in hours, trusted up to a
    /// relative error of 0.25, a 5 m horizon, and a scale-down window of `agreed` seconds
    /// while it agrees.
    pub fn seasonal(mut self, periods_hours: &[u64], agreed: u64) -> Self {
        if let Some(m) = self.0.metrics.last_mut() {
            m.seasonal = Some(Seasonal {
                periods: periods_hours.iter().map(|h| secs(h * 3600)).collect(),
                horizon: secs(300),
                max_error: 0.25,
                min_rise: 1.0,
                scale_down_stabilization: secs(agreed),
                history: None,
            });
        }
        self
    }
    /// A replica at `above` per replica (last metric added) is at its ceiling, read in the
    /// newest round alone.
    pub fn saturation(self, above: f64, factor: f64) -> Self {
        self.saturation_over(above, factor, 1)
    }
    /// The same, read in each of the newest `rounds` rounds.
    pub fn saturation_over(mut self, above: f64, factor: f64, rounds: u8) -> Self {
        if let Some(m) = self.0.metrics.last_mut() {
            m.saturation = Some(Saturation { above, factor, rounds });
        }
        self
    }
    /// Measured bursts scale the last metric added: the `quantile` of rounds over their
    /// level within `window`, against `expect`.
    pub fn bursts(mut self, quantile: f64, window: Duration, expect: f64) -> Self {
        if let Some(m) = self.0.metrics.last_mut() {
            m.bursts =
                Some(Bursts { quantile, window, expect, max_factor: f64::INFINITY, history: None });
        }
        self
    }
    /// The band rule instead of the tolerance, in fractions of each metric's target.
    pub fn band(mut self, scale_up_above: f64, size_for: f64, scale_down_below: f64) -> Self {
        self.0.band = Some(Band { scale_up_above, size_for, scale_down_below });
        self
    }
    pub fn up(mut self, stabilization: u64, step: Step, period: u64, cooldown: u64) -> Self {
        self.0.scale_up = behavior(stabilization, step, period, cooldown);
        self
    }
    pub fn down(mut self, stabilization: u64, step: Step, period: u64, cooldown: u64) -> Self {
        self.0.scale_down = behavior(stabilization, step, period, cooldown);
        self
    }
    pub fn floor(mut self, cron: &str, min: u16, duration: Duration) -> Self {
        let cron = CronSchedule::parse(cron).unwrap();
        self.0.schedule.push(CronFloor { cron, min_replicas: min, duration });
        self
    }
    pub fn forecast(mut self, window: Duration, warmup: Duration) -> Self {
        self.0.forecast = Some(Forecast { method: ForecastMethod::Linear, window });
        self.0.warmup = warmup;
        self
    }
    pub fn policy(self) -> Policy {
        Policy {
            name: "test".into(),
            target: Target::Endpoints(vec![crate::model::Endpoint::loopback(6379)]),
            auth: None,
            tls: None,
            prometheus: None,
            sampling: Sampling { interval: secs(10), timeout: secs(2) },
            scaling: Some(self.0),
            health: Health::default(),
            snapshots: None,
            alerts: vec![],
            paused: false,
        }
    }
}

fn behavior(stabilization: u64, step: Step, period: u64, cooldown: u64) -> Behavior {
    Behavior {
        stabilization: secs(stabilization),
        max_step: step,
        period: secs(period),
        cooldown: secs(cooldown),
    }
}

pub struct RoundBuilder(pub Observation);

pub fn round(at: Timestamp) -> RoundBuilder {
    RoundBuilder(Observation { at, instances: vec![], queries: vec![] })
}

impl RoundBuilder {
    /// One ready instance per value, each reporting `field` = value; the first is the master.
    pub fn ready(mut self, field: &str, values: &[f64]) -> Self {
        for v in values {
            let n = self.0.instances.len();
            let mut info = Info::new(if n == 0 { Role::Master } else { Role::Replica });
            info.master_link_up = (n > 0).then_some(true);
            info.set_number(field, *v);
            self.0.instances.push(InstanceSample {
                id: format!("redis-{n}"),
                outcome: Outcome::Ok,
                info: Some(info),
            });
        }
        self
    }
    pub fn ready_ops(self, values: &[f64]) -> Self {
        self.ready("instantaneous_ops_per_sec", values)
    }
    /// A replica still syncing from its master.
    pub fn syncing(mut self) -> Self {
        let n = self.0.instances.len();
        let mut info = Info::new(Role::Replica);
        info.master_link_up = Some(false);
        info.syncing = true;
        self.0.instances.push(InstanceSample {
            id: format!("redis-{n}"),
            outcome: Outcome::Ok,
            info: Some(info),
        });
        self
    }
    pub fn unreachable(mut self, outcome: Outcome) -> Self {
        let n = self.0.instances.len();
        self.0.instances.push(InstanceSample { id: format!("redis-{n}"), outcome, info: None });
        self
    }
    pub fn query(mut self, query: &str, value: Result<Vec<f64>, String>) -> Self {
        self.0.queries.push(QueryResult { query: query.into(), value });
        self
    }
}
