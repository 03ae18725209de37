//! What a simulation reports: four numbers per controller and the policy's ratio to the HPA
//! on three of them, as JSON (`{"policy": {...}, "hpa": {...}, "vsHpa": {...}}`) or as a
//! side-by-side table a person can read.

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

/// The policy and the HPA baseline over the same trace.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Comparison {
    pub policy: Summary,
    pub hpa: Summary,
}

/// The policy's figure over the HPA's (below 1: the policy does better), for the three figures
/// a policy is meant to beat the HPA on. `None` (JSON `null`) where the HPA's figure is 0: no
/// ratio exists then, whatever the policy's figure (the table shows both figures anyway).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VsHpa {
    pub under_provisioned_minutes: Option<f64>,
    pub replica_minutes: Option<f64>,
    pub scale_events: Option<f64>,
}

/// Exactly what `--output json` prints: the comparison's two objects, unchanged since the
/// first release, and `vsHpa` beside them (keys are only ever added).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    #[serde(flatten)]
    pub comparison: Comparison,
    pub vs_hpa: VsHpa,
}

impl Comparison {
    pub fn vs_hpa(&self) -> VsHpa {
        let (policy, hpa) = (&self.policy, &self.hpa);
        VsHpa {
            under_provisioned_minutes: ratio(
                policy.under_provisioned_minutes,
                hpa.under_provisioned_minutes,
            ),
            replica_minutes: ratio(policy.replica_minutes, hpa.replica_minutes),
            scale_events: ratio(policy.scale_events as f64, hpa.scale_events as f64),
        }
    }

    pub fn report(&self) -> Report {
        Report { comparison: *self, vs_hpa: self.vs_hpa() }
    }
}

/// `policy / hpa`, or `None` when the HPA's figure is 0.
fn ratio(policy: f64, hpa: f64) -> Option<f64> {
    (hpa > 0.0).then(|| policy / hpa)
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
        let vs = self.comparison.vs_hpa();
        writeln!(f, "  {:<28}{:>14}{:>14}{:>14}", "", "policy", "HPA", "policy/HPA")?;
        let mut row = |label: &str, policy: String, hpa: String, ratio: Option<Option<f64>>| {
            let ratio = match ratio {
                Some(Some(ratio)) => format!("{ratio:.2}x"),
                Some(None) => "n/a".to_owned(),
                None => String::new(),
            };
            let line = format!("  {label:<28}{policy:>14}{hpa:>14}{ratio:>14}");
            writeln!(f, "{}", line.trim_end())
        };
        row(
            "under-provisioned minutes",
            minutes(policy.under_provisioned_minutes),
            minutes(hpa.under_provisioned_minutes),
            Some(vs.under_provisioned_minutes),
        )?;
        row(
            "replica-minutes",
            minutes(policy.replica_minutes),
            minutes(hpa.replica_minutes),
            Some(vs.replica_minutes),
        )?;
        row(
            "scale events",
            policy.scale_events.to_string(),
            hpa.scale_events.to_string(),
            Some(vs.scale_events),
        )?;
        row(
            "peak replicas",
            policy.peak_replicas.to_string(),
            hpa.peak_replicas.to_string(),
            None,
        )?;
        writeln!(f)?;
        writeln!(
            f,
            "  under-provisioned: demand > capacity x ready instances; replica-minutes: requested"
        )?;
        writeln!(
            f,
            "  instances (ready or warming) integrated over time. Lower is better for both."
        )?;
        write!(f, "  policy/HPA below 1x: the policy does better; n/a: the HPA's figure is 0.")
    }
}

/// Minutes with one decimal when it shows; a small non-zero value never reads as `0`.
pub(crate) fn minutes(value: f64) -> String {
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
    fn vs_hpa_divides_the_policy_by_the_hpa_and_is_null_where_the_hpa_has_0() {
        let comparison = Comparison { policy: summary(1.5, 100.0), hpa: summary(0.0, 80.0) };
        let json = serde_json::to_value(comparison.report()).expect("serializable");
        // The two objects exactly as before, and vsHpa beside them.
        assert_eq!(json["policy"], serde_json::to_value(comparison.policy).expect("ok"));
        assert_eq!(json["hpa"], serde_json::to_value(comparison.hpa).expect("ok"));
        assert_eq!(
            json["vsHpa"],
            serde_json::json!({"underProvisionedMinutes": null, "replicaMinutes": 1.25,
                               "scaleEvents": 1.0})
        );
        let both_zero = Comparison { policy: summary(0.0, 0.0), hpa: summary(0.0, 0.0) };
        assert_eq!(both_zero.vs_hpa().under_provisioned_minutes, None);
        assert_eq!(both_zero.vs_hpa().replica_minutes, None);
        let better = Comparison { policy: summary(2.0, 90.0), hpa: summary(8.0, 100.0) };
        assert_eq!(better.vs_hpa().under_provisioned_minutes, Some(0.25));
    }

    #[test]
    fn the_table_prints_the_ratio_beside_both_figures() {
        let context = Context {
            policy_name: "p".to_owned(),
            trace_name: "t.csv".to_owned(),
            from: "0s".to_owned(),
            to: "60s".to_owned(),
            rows: 2,
            step: Duration::from_secs(30),
            trace_scale: 1.0,
            peak_demand: 10.0,
            capacity_per_replica: 5.0,
            warmup: Duration::ZERO,
            min_replicas: 1,
            max_replicas: 4,
            initial_replicas: 1,
        };
        let comparison = Comparison { policy: summary(2.0, 90.0), hpa: summary(0.0, 100.0) };
        let text = Table { context: &context, comparison: &comparison }.to_string();
        let line = |label: &str| {
            text.lines().find(|l| l.trim_start().starts_with(label)).expect(label).to_owned()
        };
        assert!(line("replica-minutes").ends_with("90           100         0.90x"), "{text}");
        assert!(line("under-provisioned minutes").ends_with("n/a"), "{text}");
        assert!(line("scale events").ends_with("1.00x"), "{text}");
        assert!(line("peak replicas").ends_with('5'), "{text}");
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
