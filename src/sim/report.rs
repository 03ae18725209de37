//! What a simulation reports: four numbers per controller, as JSON
//! (`{"policy": {...}, "hpa": {...}}`) or as a side-by-side table a person can read.

use crate::decide::format_number;
use std::fmt;
use std::time::Duration;

use serde::Serialize;

use super::Settings;
use super::trace::Trace;
use crate::policy::Policy;

/// One controller's result over the replayed trace.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    /// Minutes during which demand exceeded capacity x ready instances.
    pub under_provisioned_minutes: f64,
    /// Integral of requested instances (ready or warming) over time, in instance-minutes.
    pub replica_minutes: f64,
    /// How many times the requested count changed.
    pub scale_events: u64,
    /// The most instances ever requested, including the initial count.
    pub peak_replicas: u16,
}

/// The policy and the HPA baseline over the same trace: exactly what `--output json` prints.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Comparison {
    pub policy: Summary,
    pub hpa: Summary,
}

/// What was simulated, for the table's heading.
#[derive(Debug, Clone, PartialEq)]
pub struct Context {
    pub policy_name: String,
    pub trace_name: String,
    pub from: String,
    pub to: String,
    pub rows: usize,
    pub step: Duration,
    pub trace_scale: f64,
    pub peak_demand: f64,
    pub capacity_per_replica: f64,
    pub warmup: Duration,
    pub min_replicas: u16,
    pub max_replicas: u16,
    pub initial_replicas: u16,
}

impl Context {
    /// Describes a run of `policy` over `trace` (already scaled by `trace_scale`).
    pub fn new(policy: &Policy, trace: &Trace, trace_scale: f64, settings: &Settings) -> Self {
        let (min_replicas, max_replicas) =
            policy.scaling.as_ref().map_or((0, 0), |s| (s.min_replicas, s.max_replicas));
        Self {
            policy_name: policy.name.clone(),
            trace_name: trace.name().to_owned(),
            from: trace.format_time(trace.start()),
            to: trace.format_time(trace.end()),
            rows: trace.rows().len(),
            step: Duration::from_millis(trace.step().unsigned_abs()),
            trace_scale,
            peak_demand: trace.peak(),
            capacity_per_replica: settings.capacity_per_replica,
            warmup: settings.warmup,
            min_replicas,
            max_replicas,
            initial_replicas: settings.initial_replicas,
        }
    }
}

/// The human-readable comparison.
#[derive(Debug, Clone, PartialEq)]
pub struct Table<'a> {
    pub context: &'a Context,
    pub comparison: &'a Comparison,
}

impl fmt::Display for Table<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = self.context;
        let (policy, hpa) = (&self.comparison.policy, &self.comparison.hpa);
        let needed = (c.peak_demand / c.capacity_per_replica).ceil();
        writeln!(f, "Policy `{}` against {}", c.policy_name, c.trace_name)?;
        writeln!(
            f,
            "  trace     {} .. {} ({} rows, step {}), load x {} = peak {} ops/s",
            c.from,
            c.to,
            format_number(c.rows as f64),
            humantime::format_duration(c.step),
            c.trace_scale,
            format_number(c.peak_demand),
        )?;
        writeln!(
            f,
            "  cluster   {} ops/s per replica (peak needs {}), warm-up {}, replicas {}..{} starting at {}",
            format_number(c.capacity_per_replica),
            needed,
            humantime::format_duration(c.warmup),
            c.min_replicas,
            c.max_replicas,
            c.initial_replicas,
        )?;
        writeln!(f)?;
        writeln!(f, "  {:<28}{:>14}{:>14}", "", "policy", "HPA")?;
        let mut row = |label: &str, policy: String, hpa: String| {
            writeln!(f, "  {label:<28}{policy:>14}{hpa:>14}")
        };
        row(
            "under-provisioned minutes",
            minutes(policy.under_provisioned_minutes),
            minutes(hpa.under_provisioned_minutes),
        )?;
        row("replica-minutes", minutes(policy.replica_minutes), minutes(hpa.replica_minutes))?;
        row("scale events", policy.scale_events.to_string(), hpa.scale_events.to_string())?;
        row("peak replicas", policy.peak_replicas.to_string(), hpa.peak_replicas.to_string())?;
        writeln!(f)?;
        writeln!(
            f,
            "  under-provisioned: demand > capacity x ready instances; replica-minutes: requested"
        )?;
        write!(f, "  instances (ready or warming) integrated over time. Lower is better for both.")
    }
}

/// Minutes with one decimal when it shows; a small non-zero value never reads as `0`.
fn minutes(value: f64) -> String {
    let tenths = (value * 10.0).round();
    if tenths == 0.0 && value > 0.0 {
        return "<0.1".to_owned();
    }
    let whole = format_number((tenths / 10.0).trunc());
    let tenth = (tenths % 10.0).abs();
    if tenth == 0.0 { whole } else { format!("{whole}.{tenth}") }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(under: f64, replica_minutes: f64) -> Summary {
        Summary {
            under_provisioned_minutes: under,
            replica_minutes,
            scale_events: 3,
            peak_replicas: 5,
        }
    }

    #[test]
    fn json_has_exactly_the_four_keys_per_controller() {
        let comparison = Comparison { policy: summary(1.5, 100.0), hpa: summary(0.0, 90.0) };
        let json = serde_json::to_value(comparison).expect("serializable");
        assert_eq!(
            json,
            serde_json::json!({
                "policy": {"underProvisionedMinutes": 1.5, "replicaMinutes": 100.0,
                           "scaleEvents": 3, "peakReplicas": 5},
                "hpa": {"underProvisionedMinutes": 0.0, "replicaMinutes": 90.0,
                        "scaleEvents": 3, "peakReplicas": 5},
            })
        );
    }

    #[test]
    fn numbers_read_like_a_person_wrote_them() {
        assert_eq!(minutes(12_345.0), "12,345");
        assert_eq!(minutes(12_345.25), "12,345.3");
        assert_eq!(minutes(0.5), "0.5");
        assert_eq!(minutes(0.0), "0");
        assert_eq!(minutes(0.01), "<0.1");
    }
}
