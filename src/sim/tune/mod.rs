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
//! stay near the base as well as far from it. Every candidate replays each trace's first four
//! fifths (its training slice) through the same simulator as `simulate`, in parallel; the
//! HPA replays each once. Candidates are ranked by their figures against the HPA's on the
//! trace where each is worst ([`frontier::VsHpa`]), so tuning on several traces chooses a
//! policy for all of them rather than for the largest. The chosen candidate, the base and
//! the HPA then replay every whole trace, and their figures over each last fifth (the
//! validation slices, which the search never saw) show whether the choice holds on load it
//! was not tuned on.

pub mod frontier;
pub mod knobs;
pub mod plot;
pub mod write;

use std::collections::HashSet;

use rayon::prelude::*;
use serde::Serialize;

use self::frontier::{Choice, Scored, VsHpa, choose, pareto_frontier};
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
/// The most traces one run tunes on: every candidate replays each, and keeps a figure per
/// trace, so their number multiplies the run's time and memory.
pub const MAX_TRACES: usize = 64;
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
    #[error("tune needs at least one trace")]
    NoTrace,
    #[error("{traces} traces: tune takes at most {MAX_TRACES}")]
    TooManyTraces { traces: usize },
    #[error(
        "a budget in replica-minutes is one trace's; with {traces} traces, give it as a \
         multiple of the HPA's replica-minutes on each (--budget-vs-hpa)"
    )]
    BudgetOfOneTrace { traces: usize },
}

/// The most a chosen candidate may cost on the training slices.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Budget {
    /// At most this many replica-minutes on the one trace's training slice.
    ReplicaMinutes(f64),
    /// At most this multiple of the HPA's replica-minutes on every trace's training slice.
    VsHpa(f64),
}

impl Budget {
    /// The HPA's replica-minutes on every trace.
    pub const HPA: Budget = Budget::VsHpa(1.0);

    /// Whether a candidate with `figures` on the traces' training slices fits, the HPA
    /// having had `hpa` on them. Compared in replica-minutes, not as ratios, so that a
    /// candidate that fits costs at most exactly the budget.
    fn fits(self, figures: &[Summary], hpa: &[Summary]) -> bool {
        match self {
            Budget::ReplicaMinutes(most) => figures.iter().all(|f| f.replica_minutes <= most),
            Budget::VsHpa(multiple) => figures
                .iter()
                .zip(hpa)
                .all(|(f, h)| f.replica_minutes <= multiple * h.replica_minutes),
        }
    }
}

/// What a tuning run is asked to do.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    /// The simulated cluster, as `simulate` takes it.
    pub settings: Settings,
    /// How many candidates, the base included (at least 1).
    pub candidates: usize,
    pub seed: u64,
    pub search: Search,
    /// The most a chosen candidate may cost on the training slices; `None`: the HPA's
    /// replica-minutes on every trace.
    pub budget: Option<Budget>,
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

/// What a tuning run found on one of its traces.
#[derive(Debug, Clone, PartialEq)]
pub struct OnTrace {
    /// Where the validation slice starts (the training slice ends there).
    pub split_at: Millis,
    pub chosen: Slices,
    pub base: Slices,
    pub hpa: Slices,
}

/// Everything a tuning run found.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub candidates: Vec<Candidate>,
    /// Every candidate's standing, by index.
    pub scored: Vec<Scored>,
    /// Every candidate's figures on each trace's training slice: `[candidate][trace]`.
    pub training: Vec<Vec<Summary>>,
    pub frontier: Vec<Scored>,
    pub choice: Choice,
    pub budget: Budget,
    /// One per trace, in the order given.
    pub traces: Vec<OnTrace>,
}

impl Outcome {
    pub fn chosen_candidate(&self) -> &Candidate {
        &self.candidates[self.choice.scored().index]
    }

    /// The HPA's own standing (1, or 0 for a figure that is 0 on every trace).
    pub fn hpa_vs_hpa(&self) -> VsHpa {
        let hpa: Vec<Summary> = self.traces.iter().map(|t| t.hpa.training).collect();
        VsHpa::worst(&hpa, &hpa)
    }
}

/// How far from the base the candidates go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Search {
    /// Each knob keeps the base's value half of the time and otherwise takes any of its
    /// values (the base's included): candidates near the base and far from it.
    Wide,
    /// One or two knobs changed (1.5 a draw on average, `NEAR_CHANGES`), each to a value
    /// other than the base's: the base's neighbourhood, for an author who wants to know what
    /// one setting more or less would do.
    Near,
}

impl Search {
    /// As `--search` spells it.
    pub fn name(self) -> &'static str {
        match self {
            Search::Wide => "wide",
            Search::Near => "near",
        }
    }
}

/// Knobs a [`Search::Near`] draw changes on average. A draw that changes none is the base
/// and is drawn again, so candidates change about 1.9.
const NEAR_CHANGES: f64 = 1.5;

/// The base policy as candidate 0 and `count - 1` distinct seeded variations of it (fewer if
/// the knobs cannot make that many).
pub fn candidates(
    base: &Policy,
    count: usize,
    seed: u64,
    search: Search,
) -> Result<Vec<Candidate>, SimError> {
    let scaling =
        base.scaling.as_ref().ok_or_else(|| SimError::NoScaling { policy: base.name.clone() })?;
    let knobs = Tunable::all(scaling);
    let domains: Vec<Vec<Setting>> = knobs.iter().map(|knob| knob.domain(base, scaling)).collect();
    // A knob whose only value is the base's cannot change, so it does not count.
    let changeable = domains.iter().filter(|domain| domain.len() > 1).count();
    let (keep_probability, first_pick) = match search {
        Search::Wide => (0.5, 0),
        Search::Near => ((1.0 - NEAR_CHANGES / changeable.max(1) as f64).max(0.0), 1),
    };
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
                let keep = unit(hash(seed, draw, 2 * k as u64)) < keep_probability;
                let picks = domain.len().saturating_sub(first_pick);
                if keep || picks == 0 {
                    return 0;
                }
                let pick = (unit(hash(seed, draw, 2 * k as u64 + 1)) * picks as f64) as usize;
                first_pick + pick.min(picks - 1)
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

/// Tunes `base` on `traces` (loads already in ops/s).
pub fn tune(base: &Policy, traces: &[Trace], options: &Options) -> Result<Outcome, TuneError> {
    // Refuse what cannot be tuned before any work.
    hpa(base)?;
    if traces.is_empty() {
        return Err(TuneError::NoTrace);
    }
    if traces.len() > MAX_TRACES {
        return Err(TuneError::TooManyTraces { traces: traces.len() });
    }
    let budget = options.budget.unwrap_or(Budget::HPA);
    if matches!(budget, Budget::ReplicaMinutes(_)) && traces.len() > 1 {
        return Err(TuneError::BudgetOfOneTrace { traces: traces.len() });
    }
    let splits: Vec<Millis> = traces.iter().map(split_point).collect::<Result<_, _>>()?;
    let training: Vec<Trace> =
        traces.iter().zip(&splits).map(|(t, &at)| before(t, at)).collect::<Result<_, _>>()?;
    let settings = &options.settings;
    let candidates = candidates(base, options.candidates.max(1), options.seed, options.search)?;

    // Every (candidate, trace) pair is one task, so one long trace does not leave a core
    // idle; the HPA's replays run beside them rather than before.
    let width = training.len();
    let (hpa_training, figures) = rayon::join(
        || {
            training
                .par_iter()
                .map(|trace| Ok(run_hpa(base, trace, settings)?.summary))
                .collect::<Result<Vec<Summary>, SimError>>()
        },
        || {
            (0..candidates.len() * width)
                .into_par_iter()
                .map(|task| {
                    let (candidate, trace) = (&candidates[task / width], &training[task % width]);
                    Ok(run_policy(&candidate.policy, trace, settings)?.summary)
                })
                .collect::<Result<Vec<Summary>, SimError>>()
        },
    );
    let (hpa_training, figures) = (hpa_training?, figures?);
    let training_figures: Vec<Vec<Summary>> = figures.chunks(width).map(<[_]>::to_vec).collect();
    let scored: Vec<Scored> = training_figures
        .iter()
        .enumerate()
        .map(|(index, figures)| Scored {
            index,
            summary: total(figures),
            vs_hpa: VsHpa::worst(figures, &hpa_training),
            within_budget: budget.fits(figures, &hpa_training),
        })
        .collect();
    let frontier = pareto_frontier(&scored);
    // Candidate 0, the base, is always scored, so there is always a choice.
    let choice = choose(&scored).unwrap_or(Choice::OverBudget(scored[0]));

    // The chosen candidate, the base and the HPA on every whole trace, for the validation
    // slices.
    let chosen = choice.scored().index;
    // The base chosen is replayed once, not twice.
    let whole: &[Option<usize>] =
        if chosen == 0 { &[Some(0), None] } else { &[Some(chosen), Some(0), None] };
    let (chosen_runs, base_runs, hpa_runs) = (0, whole.len() - 2, whole.len() - 1);
    let runs: Vec<Run> = (0..whole.len() * width)
        .into_par_iter()
        .map(|task| {
            let trace = &traces[task % width];
            match whole[task / width] {
                Some(index) => run_policy(&candidates[index].policy, trace, settings),
                None => run_hpa(base, trace, settings),
            }
        })
        .collect::<Result<_, _>>()?;
    let slices = |who: usize, trace: usize, training: Summary| Slices {
        training,
        validation: slice_summary(
            &runs[who * width + trace],
            &traces[trace],
            settings.capacity_per_replica,
            splits[trace],
        ),
    };
    let on_traces = (0..width)
        .map(|t| OnTrace {
            split_at: splits[t],
            chosen: slices(chosen_runs, t, training_figures[chosen][t]),
            base: slices(base_runs, t, training_figures[0][t]),
            hpa: slices(hpa_runs, t, hpa_training[t]),
        })
        .collect();
    Ok(Outcome {
        candidates,
        scored,
        training: training_figures,
        frontier,
        choice,
        budget,
        traces: on_traces,
    })
}

/// Figures summed over traces: minutes and events add up, the peak is the highest.
pub fn total(figures: &[Summary]) -> Summary {
    figures.iter().fold(
        Summary {
            under_provisioned_minutes: 0.0,
            replica_minutes: 0.0,
            scale_events: 0,
            peak_replicas: 0,
        },
        |sum, f| Summary {
            under_provisioned_minutes: sum.under_provisioned_minutes + f.under_provisioned_minutes,
            replica_minutes: sum.replica_minutes + f.replica_minutes,
            scale_events: sum.scale_events + f.scale_events,
            peak_replicas: sum.peak_replicas.max(f.peak_replicas),
        },
    )
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

    fn options(candidates: usize, seed: u64, budget: Option<Budget>) -> Options {
        Options { settings: settings(), candidates, seed, search: Search::Wide, budget }
    }

    #[test]
    fn candidate_zero_is_the_base_and_the_rest_are_distinct_and_seeded() {
        let base = base();
        let first = candidates(&base, 50, 7, Search::Wide).expect("scaling");
        assert_eq!(first.len(), 50);
        assert_eq!(first[0], Candidate { policy: base.clone(), changes: vec![] });
        assert!(first[1..].iter().all(|c| !c.changes.is_empty()));
        let distinct: HashSet<String> =
            first.iter().map(|c| format!("{:?}", c.policy.scaling)).collect();
        assert_eq!(distinct.len(), 50);
        assert_eq!(candidates(&base, 50, 7, Search::Wide).expect("scaling"), first);
        assert_ne!(candidates(&base, 50, 8, Search::Wide).expect("scaling"), first);
    }

    #[test]
    fn a_near_search_changes_one_or_two_knobs_and_a_wide_one_many() {
        let base = crate::policy::load_policy_str(
            "policies/session-cache.yaml",
            include_str!("../../../policies/session-cache.yaml"),
        )
        .expect("the shipped policy");
        let changed = |search| -> Vec<usize> {
            let drawn = candidates(&base, 200, 5, search).expect("scaling");
            assert_eq!(drawn.len(), 200);
            drawn[1..].iter().map(|c| c.changes.len()).collect()
        };
        let mean = |counts: &[usize]| counts.iter().sum::<usize>() as f64 / counts.len() as f64;
        let near = changed(Search::Near);
        assert!(near.iter().all(|&n| n >= 1), "{near:?}");
        // 1.5 a draw, about 1.9 once draws that change nothing are drawn again.
        assert!((1.5..=2.4).contains(&mean(&near)), "{}", mean(&near));
        assert!(near.iter().filter(|&&n| n == 1).count() >= 60, "{near:?}");
        let wide = changed(Search::Wide);
        assert!(mean(&wide) > 4.0 * mean(&near), "{} against {}", mean(&wide), mean(&near));
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
        let options = options(12, 1, None);
        let outcome = tune(&base(), std::slice::from_ref(&trace), &options).expect("tunes");
        assert_eq!(outcome.scored.len(), 12);
        assert_eq!(outcome.budget, Budget::HPA);
        let [on_trace] = &outcome.traces[..] else { panic!("one trace: {:?}", outcome.traces) };
        assert_eq!(on_trace.split_at, 48 * 60_000);
        let hpa_training = on_trace.hpa.training;
        let chosen = outcome.choice.scored();
        // On one trace a candidate's summary is its figures there.
        assert_eq!(on_trace.chosen.training, chosen.summary);
        assert_eq!(outcome.training[chosen.index], [chosen.summary]);
        assert_eq!(on_trace.base.training, outcome.scored[0].summary);
        for scored in &outcome.scored {
            let fits = scored.summary.replica_minutes <= hpa_training.replica_minutes;
            assert_eq!(scored.within_budget, fits, "{scored:?}");
        }
        match outcome.choice {
            Choice::WithinBudget(_) => {
                assert!(chosen.summary.replica_minutes <= hpa_training.replica_minutes)
            }
            Choice::OverBudget(_) => assert!(outcome.scored.iter().all(|s| !s.within_budget)),
        }
        // The validation slice is 12 of the 60 minutes.
        assert!(on_trace.hpa.validation.replica_minutes < hpa_training.replica_minutes);
        // The frontier's points are all scored candidates, cheapest first.
        let costs: Vec<f64> = outcome.frontier.iter().map(|s| s.summary.replica_minutes).collect();
        assert!(costs.windows(2).all(|pair| pair[0] <= pair[1]), "{costs:?}");
    }

    #[test]
    fn a_chosen_base_reports_its_own_replay_on_both_slices() {
        let traces = [hour()];
        let outcome = tune(&base(), &traces, &options(1, 1, None)).expect("tunes");
        assert_eq!(outcome.choice.scored().index, 0);
        let on_trace = &outcome.traces[0];
        assert_eq!(on_trace.chosen, on_trace.base);
        let alone = run_policy(&base(), &traces[0], &settings()).expect("runs");
        let validation = slice_summary(&alone, &traces[0], 100.0, on_trace.split_at);
        assert_eq!(on_trace.base.validation, validation);
        let hpa = run_hpa(&base(), &traces[0], &settings()).expect("runs");
        let hpa_validation = slice_summary(&hpa, &traces[0], 100.0, on_trace.split_at);
        assert_eq!(on_trace.hpa.validation, hpa_validation);
    }

    /// The hour, and the same hour with a tenth of the load: on the quiet one every
    /// candidate sits at `minReplicas`, so summed figures would rank by the busy hour alone.
    fn two_traces() -> [Trace; 2] {
        let busy = hour();
        let mut quiet = busy.clone();
        quiet.scale(0.1);
        [busy, quiet]
    }

    #[test]
    fn on_several_traces_a_candidate_stands_where_it_is_worst_and_fits_on_each() {
        let traces = two_traces();
        let options = options(16, 3, None);
        let outcome = tune(&base(), &traces, &options).expect("tunes");
        assert_eq!(outcome.traces.len(), 2);
        let hpa: Vec<Summary> = outcome.traces.iter().map(|t| t.hpa.training).collect();
        for scored in &outcome.scored {
            let figures = &outcome.training[scored.index];
            assert_eq!(figures.len(), 2);
            // Each candidate's figures are its own replays of each training slice.
            let alone = run_policy(
                &outcome.candidates[scored.index].policy,
                &before(&traces[1], outcome.traces[1].split_at).expect("slices"),
                &settings(),
            )
            .expect("runs");
            assert_eq!(figures[1], alone.summary);
            assert_eq!(scored.vs_hpa, VsHpa::worst(figures, &hpa));
            assert_eq!(
                scored.summary.replica_minutes,
                figures[0].replica_minutes + figures[1].replica_minutes
            );
            let fits =
                figures.iter().zip(&hpa).all(|(f, h)| f.replica_minutes <= h.replica_minutes);
            assert_eq!(scored.within_budget, fits, "{scored:?}");
        }
        // Validation on each trace: the chosen candidate's training figures are its own.
        let chosen = outcome.choice.scored().index;
        for (t, on_trace) in outcome.traces.iter().enumerate() {
            assert_eq!(on_trace.chosen.training, outcome.training[chosen][t]);
            assert_eq!(on_trace.base.training, outcome.training[0][t]);
            assert!(on_trace.hpa.validation.replica_minutes > 0.0);
        }
        // A budget in replica-minutes belongs to one trace.
        let per_trace = Options { budget: Some(Budget::ReplicaMinutes(100.0)), ..options };
        let refused = tune(&base(), &traces, &per_trace).expect_err("two traces");
        assert!(refused.to_string().contains("with 2 traces"), "{refused}");
        assert!(matches!(tune(&base(), &[], &per_trace), Err(TuneError::NoTrace)));
        let many = vec![hour(); MAX_TRACES + 1];
        let refused = tune(&base(), &many, &options).expect_err("too many");
        assert_eq!(refused.to_string(), "65 traces: tune takes at most 64");
    }

    #[test]
    fn a_budget_as_a_multiple_of_the_hpa_holds_on_every_trace() {
        let traces = two_traces();
        let options = options(16, 3, Some(Budget::VsHpa(1.2)));
        let outcome = tune(&base(), &traces, &options).expect("tunes");
        for scored in &outcome.scored {
            let fits = outcome.training[scored.index]
                .iter()
                .zip(&outcome.traces)
                .all(|(f, t)| f.replica_minutes <= 1.2 * t.hpa.training.replica_minutes);
            assert_eq!(scored.within_budget, fits);
        }
        assert!(outcome.scored.iter().any(|s| s.within_budget));
    }
}
