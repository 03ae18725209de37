//! `redis-autopilot tune`: searches a policy's scaling settings on a trace.
//!
//! - [`knobs`]: the search space, one entry per tunable field, every value valid.
//! - [`frontier`]: the Pareto frontier and the choice under a budget (pure).
//! - [`write`]: the chosen policy as a commented policy file that loads back as itself.
//! - [`plot`]: every candidate, the frontier, the HPA and the choice as SVG.
//!
//! Candidate 0 is the base policy; the others are drawn from the knobs' values by a
//! counter-based hash of the seed (the synthetic traces' SplitMix64), so a seed always gives
//! the same candidates. Each knob keeps the base's value half of the time, so candidates
//! stay near the base as well as far from it. Every candidate replays the trace's first four
//! fifths (the training slice) through the same simulator as `simulate`, in parallel; the
//! HPA replays it once. The chosen candidate, the base and the HPA then replay the whole
//! trace, and their figures over the last fifth (the validation slice, which the search
//! never saw) show whether the choice holds on load it was not tuned on.

pub mod frontier;
pub mod knobs;
pub mod plot;
pub mod write;

use std::collections::HashSet;

use rayon::prelude::*;
use serde::Serialize;

use self::frontier::{Choice, Scored, choose, pareto_frontier};
use self::knobs::{Setting, Tunable};
use super::hpa::{HpaController, HpaSpec};
use super::model::ClusterModel;
use super::policy_run::{PolicyController, to_millis};
use super::replay::{Run, replay};
use super::report::Summary;
use super::synthetic::{hash, unit};
use super::trace::{Millis, TimeKind, Trace, TraceError, timestamp};
use super::{Settings, SimError};
use crate::policy::{Policy, Scaling};

/// The trace's last fifth is held out.
const VALIDATION_FIFTHS: i64 = 1;
/// The shortest trace that splits: its validation slice is then at least a minute.
const MIN_TRACE: Millis = 5 * 60_000;
/// Draws per candidate asked for before giving up on finding new ones (a small search
/// space runs out of distinct candidates).
const DRAWS_PER_CANDIDATE: usize = 20;

#[derive(Debug, thiserror::Error)]
pub enum TuneError {
    #[error(transparent)]
    Sim(#[from] SimError),
    #[error(transparent)]
    Trace(#[from] TraceError),
    #[error(
        "{file}: the trace spans {minutes:.1} minutes; tune needs at least 5, so that its last \
         fifth (the validation slice) is at least a minute"
    )]
    TooShort { file: String, minutes: f64 },
}

/// What a tuning run is asked to do.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    /// The simulated cluster, as `simulate` takes it.
    pub settings: Settings,
    /// How many candidates, the base included (at least 1).
    pub candidates: usize,
    pub seed: u64,
    /// The most replica-minutes a chosen candidate may use on the training slice; `None`:
    /// the HPA's.
    pub budget: Option<f64>,
}

/// One knob a candidate sets differently from the base.
#[derive(Debug, Clone, PartialEq)]
pub struct KnobChange {
    /// Under `spec.scaling` (`scaleDown.stabilization`, `metrics[2].target`).
    pub field: String,
    pub base: Setting,
    pub value: Setting,
}

/// A policy the search tries.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub policy: Policy,
    pub changes: Vec<KnobChange>,
}

/// Figures over the two slices.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Slices {
    pub training: Summary,
    pub validation: Summary,
}

/// Everything a tuning run found.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub candidates: Vec<Candidate>,
    /// Every candidate's training figures, by index.
    pub scored: Vec<Scored>,
    pub frontier: Vec<Scored>,
    pub choice: Choice,
    pub budget: f64,
    /// Where the validation slice starts (the training slice ends there).
    pub split_at: Millis,
    pub chosen: Slices,
    pub base: Slices,
    pub hpa: Slices,
}

impl Outcome {
    pub fn chosen_candidate(&self) -> &Candidate {
        &self.candidates[self.choice.scored().index]
    }
}

/// The base policy as candidate 0 and `count - 1` distinct seeded variations of it (fewer if
/// the knobs cannot make that many).
pub fn candidates(base: &Policy, count: usize, seed: u64) -> Result<Vec<Candidate>, SimError> {
    let scaling =
        base.scaling.as_ref().ok_or_else(|| SimError::NoScaling { policy: base.name.clone() })?;
    let knobs = Tunable::all(scaling);
    let domains: Vec<Vec<Setting>> = knobs.iter().map(|knob| knob.domain(base, scaling)).collect();
    let mut seen: HashSet<Vec<usize>> = HashSet::new();
    let base_choice = vec![0; knobs.len()];
    seen.insert(base_choice);
    let mut candidates = vec![Candidate { policy: base.clone(), changes: Vec::new() }];
    let draws = count.saturating_mul(DRAWS_PER_CANDIDATE) as u64;
    for draw in 0..draws {
        if candidates.len() >= count {
            break;
        }
        let choice: Vec<usize> = domains
            .iter()
            .enumerate()
            .map(|(k, domain)| {
                let keep = unit(hash(seed, draw, 2 * k as u64)) < 0.5;
                let pick =
                    (unit(hash(seed, draw, 2 * k as u64 + 1)) * domain.len() as f64) as usize;
                if keep { 0 } else { pick.min(domain.len() - 1) }
            })
            .collect();
        if !seen.insert(choice.clone()) {
            continue;
        }
        candidates.push(apply(base, scaling, &knobs, &domains, &choice));
    }
    Ok(candidates)
}

/// The base with each knob set to its chosen value.
fn apply(
    base: &Policy,
    scaling: &Scaling,
    knobs: &[Tunable],
    domains: &[Vec<Setting>],
    choice: &[usize],
) -> Candidate {
    let mut tuned = scaling.clone();
    let mut changes = Vec::new();
    for ((knob, domain), &index) in knobs.iter().zip(domains).zip(choice) {
        if index == 0 {
            continue;
        }
        knob.set(&mut tuned, &domain[index]);
        changes.push(KnobChange { field: knob.field(), base: domain[0], value: domain[index] });
    }
    let mut policy = base.clone();
    policy.scaling = Some(tuned);
    Candidate { policy, changes }
}

/// Where the validation slice starts: four fifths in, on a whole second (so a slice bound
/// can spell it).
pub fn split_point(trace: &Trace) -> Result<Millis, TuneError> {
    let span = trace.end() - trace.start();
    if span < MIN_TRACE {
        return Err(TuneError::TooShort {
            file: trace.name().to_owned(),
            minutes: span as f64 / 60_000.0,
        });
    }
    let at = trace.start() + span / 5 * (5 - VALIDATION_FIFTHS);
    Ok(at - at.rem_euclid(1000))
}

/// The trace before `at`.
fn before(trace: &Trace, at: Millis) -> Result<Trace, TraceError> {
    let bound = match trace.kind() {
        TimeKind::Calendar => timestamp(at).format("%Y-%m-%d %H:%M:%S").to_string(),
        TimeKind::Seconds => (at / 1000).to_string(),
    };
    trace.clone().slice(None, Some(&bound))
}

fn cluster(trace: &Trace, settings: &Settings) -> ClusterModel {
    ClusterModel::new(
        settings.initial_replicas,
        settings.capacity_per_replica,
        to_millis(settings.warmup),
        trace.start(),
    )
}

fn run_policy(policy: &Policy, trace: &Trace, settings: &Settings) -> Result<Run, SimError> {
    let mut controller = PolicyController::new(policy)?;
    Ok(replay(trace, cluster(trace, settings), &mut controller))
}

/// The HPA with the base's bounds and its first metric's target per pod.
fn hpa(base: &Policy) -> Result<HpaController, SimError> {
    let scaling =
        base.scaling.as_ref().ok_or_else(|| SimError::NoScaling { policy: base.name.clone() })?;
    let metric =
        scaling.metrics.first().ok_or_else(|| SimError::NoMetric { policy: base.name.clone() })?;
    Ok(HpaController::new(HpaSpec {
        min_replicas: scaling.min_replicas,
        max_replicas: scaling.max_replicas,
        average_value: metric.target,
    }))
}

fn run_hpa(base: &Policy, trace: &Trace, settings: &Settings) -> Result<Run, SimError> {
    Ok(replay(trace, cluster(trace, settings), &mut hpa(base)?))
}

/// Tunes `base` on `trace` (loads already in ops/s).
pub fn tune(base: &Policy, trace: &Trace, options: &Options) -> Result<Outcome, TuneError> {
    // Refuse a policy the HPA cannot be compared with before any work.
    hpa(base)?;
    let split_at = split_point(trace)?;
    let training = before(trace, split_at)?;
    let settings = &options.settings;
    let candidates = candidates(base, options.candidates.max(1), options.seed)?;

    // The HPA's replay runs beside the candidates' rather than before them.
    let (hpa_training, scored) = rayon::join(
        || run_hpa(base, &training, settings),
        || {
            candidates
                .par_iter()
                .enumerate()
                .map(|(index, candidate)| {
                    let run = run_policy(&candidate.policy, &training, settings)?;
                    Ok(Scored { index, summary: run.summary })
                })
                .collect::<Result<Vec<Scored>, SimError>>()
        },
    );
    let (hpa_training, scored) = (hpa_training?.summary, scored?);
    let budget = options.budget.unwrap_or(hpa_training.replica_minutes);
    let frontier = pareto_frontier(&scored);
    // Candidate 0, the base, is always scored, so there is always a choice.
    let choice = choose(&scored, budget).unwrap_or(Choice::OverBudget(scored[0]));

    let chosen_policy = &candidates[choice.scored().index].policy;
    let full = |policy: Option<&Policy>| match policy {
        Some(policy) => run_policy(policy, trace, settings),
        None => run_hpa(base, trace, settings),
    };
    let runs: Vec<Run> = [Some(chosen_policy), Some(base), None]
        .into_par_iter()
        .map(full)
        .collect::<Result<_, _>>()?;
    let slices = |run: &Run, training: Summary| Slices {
        training,
        validation: slice_summary(run, trace, settings.capacity_per_replica, split_at),
    };
    Ok(Outcome {
        chosen: slices(&runs[0], choice.scored().summary),
        base: slices(&runs[1], scored[0].summary),
        hpa: slices(&runs[2], hpa_training),
        candidates,
        scored,
        frontier,
        choice,
        budget,
        split_at,
    })
}

/// A run's four figures over `[from, trace end)`, from its timeline of shapes: the same
/// integrals the replay takes, over part of the time.
pub fn slice_summary(run: &Run, trace: &Trace, capacity_per_replica: f64, from: Millis) -> Summary {
    let rows = trace.rows();
    let end = trace.end();
    let timeline = &run.timeline;
    // The shape in force at `from`, and the next change after it.
    let mut change = timeline.partition_point(|c| c.at <= from);
    let (mut requested, mut ready) =
        timeline.get(change.wrapping_sub(1)).map_or((0, 0), |c| (c.requested, c.ready));
    let mut row = rows.partition_point(|r| r.at <= from).saturating_sub(1);
    let (mut under, mut replica_millis, mut scale_events, mut peak) =
        (0i64, 0u128, 0u64, requested);
    let mut now = from;
    while now < end {
        let row_end = rows.get(row + 1).map_or(end, |r| r.at);
        let next = timeline.get(change).map_or(end, |c| c.at).min(row_end).min(end);
        let span = next - now;
        if rows[row].load > capacity_per_replica * f64::from(ready) {
            under += span;
        }
        replica_millis += u128::from(requested) * span.unsigned_abs() as u128;
        now = next;
        if next == row_end && row + 1 < rows.len() {
            row += 1;
        }
        while let Some(c) = timeline.get(change).filter(|c| c.at <= now) {
            if c.requested != requested {
                scale_events += 1;
            }
            (requested, ready) = (c.requested, c.ready);
            peak = peak.max(requested);
            change += 1;
        }
    }
    const MILLIS_PER_MINUTE: f64 = 60_000.0;
    Summary {
        under_provisioned_minutes: under as f64 / MILLIS_PER_MINUTE,
        replica_minutes: replica_millis as f64 / MILLIS_PER_MINUTE,
        scale_events,
        peak_replicas: peak,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::sim::fixtures::{policy, redis_metric};
    use crate::sim::trace::Row;

    fn base() -> Policy {
        policy().metric(redis_metric("instantaneous_ops_per_sec", 80.0)).max(8).build()
    }

    /// Per-minute load over an hour: quiet, a ramp to 500 ops/s, and back.
    fn hour() -> Trace {
        let rows = (0..60)
            .map(|m: i64| {
                let load = if (20..40).contains(&m) { 500.0 } else { 60.0 + m as f64 };
                Row { at: m * 60_000, load }
            })
            .collect();
        Trace::from_rows("hour.csv", TimeKind::Seconds, rows).expect("valid")
    }

    fn settings() -> Settings {
        Settings {
            capacity_per_replica: 100.0,
            warmup: Duration::from_secs(30),
            initial_replicas: 1,
        }
    }

    #[test]
    fn candidate_zero_is_the_base_and_the_rest_are_distinct_and_seeded() {
        let base = base();
        let first = candidates(&base, 50, 7).expect("scaling");
        assert_eq!(first.len(), 50);
        assert_eq!(first[0], Candidate { policy: base.clone(), changes: vec![] });
        assert!(first[1..].iter().all(|c| !c.changes.is_empty()));
        let distinct: HashSet<String> =
            first.iter().map(|c| format!("{:?}", c.policy.scaling)).collect();
        assert_eq!(distinct.len(), 50);
        assert_eq!(candidates(&base, 50, 7).expect("scaling"), first);
        assert_ne!(candidates(&base, 50, 8).expect("scaling"), first);
    }

    #[test]
    fn a_slice_from_the_start_gives_the_replay_s_own_figures() {
        let trace = hour();
        let run = run_policy(&base(), &trace, &settings()).expect("runs");
        assert!(run.summary.scale_events > 0, "{:?}", run.summary);
        assert!(run.summary.under_provisioned_minutes > 0.0, "{:?}", run.summary);
        assert_eq!(slice_summary(&run, &trace, 100.0, trace.start()), run.summary);
    }

    #[test]
    fn a_later_slice_counts_only_its_own_time() {
        let trace = hour();
        let run = run_hpa(&base(), &trace, &settings()).expect("runs");
        let last = slice_summary(&run, &trace, 100.0, 48 * 60_000);
        // 12 minutes of 108 to 119 ops/s well after the ramp: the HPA holds 2 replicas, never short.
        assert_eq!(last.under_provisioned_minutes, 0.0);
        assert!(last.replica_minutes >= 12.0 && last.replica_minutes < run.summary.replica_minutes);
    }

    #[test]
    fn the_split_holds_out_the_last_fifth_on_a_whole_second() {
        let trace = hour();
        assert_eq!(split_point(&trace).expect("an hour splits"), 48 * 60_000);
        let training = before(&trace, 48 * 60_000).expect("slices");
        assert_eq!(training.end(), 48 * 60_000);
        let short = Trace::from_rows(
            "short.csv",
            TimeKind::Seconds,
            vec![Row { at: 0, load: 1.0 }, Row { at: 60_000, load: 1.0 }],
        )
        .expect("valid");
        let refused = split_point(&short).expect_err("two minutes");
        assert!(
            refused.to_string().contains("short.csv: the trace spans 2.0 minutes"),
            "{refused}"
        );
    }

    #[test]
    fn tuning_ranks_on_training_and_reports_validation() {
        let trace = hour();
        let options = Options { settings: settings(), candidates: 12, seed: 1, budget: None };
        let outcome = tune(&base(), &trace, &options).expect("tunes");
        assert_eq!(outcome.scored.len(), 12);
        assert_eq!(outcome.split_at, 48 * 60_000);
        let hpa_training = outcome.hpa.training;
        assert_eq!(outcome.budget, hpa_training.replica_minutes);
        let chosen = outcome.choice.scored();
        assert_eq!(outcome.chosen.training, chosen.summary);
        assert_eq!(outcome.base.training, outcome.scored[0].summary);
        match outcome.choice {
            Choice::WithinBudget(_) => assert!(chosen.summary.replica_minutes <= outcome.budget),
            Choice::OverBudget(_) => {
                assert!(outcome.scored.iter().all(|s| s.summary.replica_minutes > outcome.budget))
            }
        }
        // The validation slice is 12 of the 60 minutes.
        assert!(outcome.hpa.validation.replica_minutes < hpa_training.replica_minutes);
        // The frontier's points are all scored candidates, cheapest first.
        let costs: Vec<f64> = outcome.frontier.iter().map(|s| s.summary.replica_minutes).collect();
        assert!(costs.windows(2).all(|pair| pair[0] <= pair[1]), "{costs:?}");
    }
}
