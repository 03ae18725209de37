//! The two pure decisions of a tuning run: which candidates are on the Pareto frontier of
//! under-provisioned minutes against replica-minutes, and which one is chosen under a budget.
//!
//! Both read each candidate's figures against the HPA's, on the trace where that figure is
//! worst ([`VsHpa`]). On one trace that orders candidates exactly as their own figures do
//! (each is divided by the same HPA figure); on several it makes traces of different sizes
//! comparable, and a candidate is only as good as it is on the trace it suits least: the
//! goal a policy is tuned for ("at most the HPA's replica-minutes, on every trace") is a
//! worst case.

use serde::Serialize;

use crate::sim::report::Summary;

/// The HPA figure a ratio divides by is at least this: one second (or one replica-second).
/// A trace on which the HPA is never short then still ranks candidates by how short they
/// are (a candidate short for 30 s there is 30x), where a plain ratio would have none.
const LEAST_MINUTES: f64 = 1.0 / 60.0;

/// A candidate's figures over the HPA's on the same training slice, each the worst over the
/// traces (below 1: better than the HPA on every trace).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VsHpa {
    pub under_provisioned_minutes: f64,
    pub replica_minutes: f64,
    pub scale_events: f64,
}

impl VsHpa {
    /// `figures` against `hpa`, trace by trace (the two slices pair up by position).
    pub fn worst(figures: &[Summary], hpa: &[Summary]) -> Self {
        let mut worst =
            VsHpa { under_provisioned_minutes: 0.0, replica_minutes: 0.0, scale_events: 0.0 };
        for (own, hpa) in figures.iter().zip(hpa) {
            let on_trace = VsHpa {
                under_provisioned_minutes: own.under_provisioned_minutes
                    / hpa.under_provisioned_minutes.max(LEAST_MINUTES),
                replica_minutes: own.replica_minutes / hpa.replica_minutes.max(LEAST_MINUTES),
                scale_events: own.scale_events as f64 / hpa.scale_events.max(1) as f64,
            };
            worst.under_provisioned_minutes =
                worst.under_provisioned_minutes.max(on_trace.under_provisioned_minutes);
            worst.replica_minutes = worst.replica_minutes.max(on_trace.replica_minutes);
            worst.scale_events = worst.scale_events.max(on_trace.scale_events);
        }
        worst
    }
}

/// One candidate's standing on the training slices; `index` 0 is the base policy.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scored {
    pub index: usize,
    /// Its figures summed over the traces' training slices (on one trace, that slice's).
    pub summary: Summary,
    /// What the frontier and the choice rank it by.
    pub vs_hpa: VsHpa,
    /// Within the budget on every trace.
    pub within_budget: bool,
}

/// Lower is better on both axes, then fewer scale events, then the earlier candidate (the
/// base policy wins every tie).
fn order(a: &Scored, b: &Scored) -> std::cmp::Ordering {
    let (x, y) = (&a.vs_hpa, &b.vs_hpa);
    x.replica_minutes
        .total_cmp(&y.replica_minutes)
        .then(x.under_provisioned_minutes.total_cmp(&y.under_provisioned_minutes))
        .then(x.scale_events.total_cmp(&y.scale_events))
        .then(a.index.cmp(&b.index))
}

/// The candidates no other beats on both axes, cheapest first (so under-provisioned minutes
/// fall strictly along it). Of several at the same point, the one with the fewest scale
/// events stands for it.
pub fn pareto_frontier(scored: &[Scored]) -> Vec<Scored> {
    let mut sorted = scored.to_vec();
    sorted.sort_by(order);
    let mut frontier: Vec<Scored> = Vec::new();
    for candidate in sorted {
        let under = candidate.vs_hpa.under_provisioned_minutes;
        if frontier.last().is_none_or(|best| under < best.vs_hpa.under_provisioned_minutes) {
            frontier.push(candidate);
        }
    }
    frontier
}

/// What was chosen and why.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Choice {
    /// The fewest under-provisioned minutes within the budget (then fewest scale events,
    /// then fewest replica-minutes).
    WithinBudget(Scored),
    /// Nothing fits the budget: the cheapest frontier point.
    OverBudget(Scored),
}

impl Choice {
    pub fn scored(&self) -> Scored {
        match self {
            Choice::WithinBudget(scored) | Choice::OverBudget(scored) => *scored,
        }
    }
}

/// Chooses among `scored`. `None` only for no candidates.
pub fn choose(scored: &[Scored]) -> Option<Choice> {
    let within = scored.iter().filter(|s| s.within_budget).min_by(|a, b| {
        let (x, y) = (&a.vs_hpa, &b.vs_hpa);
        x.under_provisioned_minutes
            .total_cmp(&y.under_provisioned_minutes)
            .then(x.scale_events.total_cmp(&y.scale_events))
            .then(x.replica_minutes.total_cmp(&y.replica_minutes))
            .then(a.index.cmp(&b.index))
    });
    match within {
        Some(best) => Some(Choice::WithinBudget(*best)),
        None => pareto_frontier(scored).first().copied().map(Choice::OverBudget),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(under: f64, replica_minutes: f64, events: u64) -> Summary {
        Summary {
            under_provisioned_minutes: under,
            replica_minutes,
            scale_events: events,
            peak_replicas: 1,
        }
    }

    /// A candidate on one trace whose HPA figures are all 1, so its figures are its ratios;
    /// within the budget when it costs at most 150.
    fn scored(index: usize, under: f64, replica_minutes: f64, events: u64) -> Scored {
        let figures = summary(under, replica_minutes, events);
        Scored {
            index,
            summary: figures,
            vs_hpa: VsHpa::worst(&[figures], &[summary(1.0, 1.0, 1)]),
            within_budget: replica_minutes <= 150.0,
        }
    }

    fn indices(points: &[Scored]) -> Vec<usize> {
        points.iter().map(|s| s.index).collect()
    }

    #[test]
    fn the_frontier_keeps_what_nothing_beats_on_both_axes() {
        let all = [
            scored(0, 10.0, 100.0, 5),
            scored(1, 5.0, 120.0, 5),
            scored(2, 6.0, 130.0, 5), // beaten by 1 on both
            scored(3, 0.0, 200.0, 5),
            scored(4, 10.0, 110.0, 5), // beaten by 0 on cost, tied on minutes
            scored(5, 12.0, 90.0, 5),
        ];
        assert_eq!(indices(&pareto_frontier(&all)), [5, 0, 1, 3]);
    }

    #[test]
    fn one_point_stands_for_its_ties_with_the_fewest_scale_events() {
        let all = [scored(0, 1.0, 100.0, 9), scored(1, 1.0, 100.0, 3), scored(2, 1.0, 100.0, 3)];
        assert_eq!(indices(&pareto_frontier(&all)), [1]);
    }

    #[test]
    fn the_choice_is_the_fewest_minutes_short_within_the_budget() {
        let all = [
            scored(0, 10.0, 100.0, 5),
            scored(1, 2.0, 140.0, 5),
            scored(2, 2.0, 150.0, 3), // same minutes as 1, fewer events
            scored(3, 0.0, 300.0, 1), // over budget
        ];
        assert_eq!(choose(&all), Some(Choice::WithinBudget(all[2])));
        // Under a tighter budget, 1 is the best that fits.
        let tighter =
            all.map(|s| Scored { within_budget: s.summary.replica_minutes <= 145.0, ..s });
        assert_eq!(choose(&tighter), Some(Choice::WithinBudget(tighter[1])));
    }

    #[test]
    fn equal_minutes_and_events_go_to_the_cheaper() {
        let all = [scored(0, 1.0, 120.0, 4), scored(1, 1.0, 110.0, 4)];
        assert_eq!(choose(&all), Some(Choice::WithinBudget(all[1])));
    }

    #[test]
    fn over_budget_the_cheapest_frontier_point_is_chosen() {
        let all = [scored(0, 10.0, 200.0, 5), scored(1, 12.0, 200.0, 2), scored(2, 0.0, 400.0, 1)];
        assert_eq!(choose(&all), Some(Choice::OverBudget(all[0])));
        assert_eq!(choose(&[]), None);
    }

    #[test]
    fn each_figure_is_its_worst_trace_s_and_a_trace_the_hpa_serves_counts_seconds() {
        let hpa = [summary(10.0, 1000.0, 10), summary(0.0, 100.0, 0)];
        // Half the HPA's shortfall on the first trace, 30 s short where the HPA never is.
        let own = [summary(5.0, 900.0, 5), summary(0.5, 110.0, 3)];
        let worst = VsHpa::worst(&own, &hpa);
        assert_eq!(worst.under_provisioned_minutes, 30.0);
        assert_eq!(worst.replica_minutes, 1.1);
        assert_eq!(worst.scale_events, 3.0);
        // Never short where the HPA is not either: 0, not a missing ratio.
        let served = VsHpa::worst(&[summary(0.0, 90.0, 0)], &hpa[1..]);
        assert_eq!(served.under_provisioned_minutes, 0.0);
        assert_eq!(served.scale_events, 0.0);
    }

    #[test]
    fn a_candidate_that_suits_the_large_trace_alone_is_not_chosen() {
        // A long busy trace and a short quiet one, the HPA's figures on each.
        let hpa = [summary(100.0, 10_000.0, 100), summary(2.0, 500.0, 10)];
        let stand = |index, figures: [Summary; 2]| Scored {
            index,
            summary: crate::sim::tune::total(&figures),
            vs_hpa: VsHpa::worst(&figures, &hpa),
            within_budget: figures
                .iter()
                .zip(&hpa)
                .all(|(f, h)| f.replica_minutes <= h.replica_minutes),
        };
        // 0: 40 minutes fewer on the busy trace, but three times the HPA's on the quiet one
        // (44 in all against 62); 1: 0.7x the HPA's on both.
        let all = [
            stand(0, [summary(40.0, 9_900.0, 90), summary(6.0, 480.0, 9)]),
            stand(1, [summary(70.0, 9_950.0, 90), summary(1.4, 490.0, 9)]),
        ];
        assert_eq!(choose(&all), Some(Choice::WithinBudget(all[1])));
        assert_eq!(all[1].vs_hpa.under_provisioned_minutes, 0.7);
    }

    #[test]
    fn on_one_trace_the_ratios_rank_as_the_figures_do() {
        let hpa = [summary(7.3, 1234.5, 17)];
        let own: Vec<Summary> = (0..40)
            .map(|i| summary(f64::from(i % 7) * 1.3, 1000.0 + f64::from(i * 37 % 23), i as u64 % 5))
            .collect();
        let ranked = |key: &dyn Fn(usize) -> (f64, f64)| {
            let mut order: Vec<usize> = (0..own.len()).collect();
            order.sort_by(|&a, &b| {
                let (x, y) = (key(a), key(b));
                x.0.total_cmp(&y.0).then(x.1.total_cmp(&y.1)).then(a.cmp(&b))
            });
            order
        };
        let by_figures = ranked(&|i| (own[i].replica_minutes, own[i].under_provisioned_minutes));
        let by_ratios = ranked(&|i| {
            let r = VsHpa::worst(&own[i..=i], &hpa);
            (r.replica_minutes, r.under_provisioned_minutes)
        });
        assert_eq!(by_figures, by_ratios);
    }
}
