//! The two pure decisions of a tuning run: which candidates are on the Pareto frontier of
//! under-provisioned minutes against replica-minutes, and which one is chosen under a budget.

use crate::sim::report::Summary;

/// One candidate's figures on the training slice; `index` 0 is the base policy.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scored {
    pub index: usize,
    pub summary: Summary,
}

/// Lower is better on both axes, then fewer scale events, then the earlier candidate (the
/// base policy wins every tie).
fn order(a: &Scored, b: &Scored) -> std::cmp::Ordering {
    let (x, y) = (&a.summary, &b.summary);
    x.replica_minutes
        .total_cmp(&y.replica_minutes)
        .then(x.under_provisioned_minutes.total_cmp(&y.under_provisioned_minutes))
        .then(x.scale_events.cmp(&y.scale_events))
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
        let under = candidate.summary.under_provisioned_minutes;
        if frontier.last().is_none_or(|best| under < best.summary.under_provisioned_minutes) {
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

/// Chooses among `scored` under `budget` replica-minutes. `None` only for no candidates.
pub fn choose(scored: &[Scored], budget: f64) -> Option<Choice> {
    let within = scored.iter().filter(|s| s.summary.replica_minutes <= budget).min_by(|a, b| {
        let (x, y) = (&a.summary, &b.summary);
        x.under_provisioned_minutes
            .total_cmp(&y.under_provisioned_minutes)
            .then(x.scale_events.cmp(&y.scale_events))
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

    fn scored(index: usize, under: f64, replica_minutes: f64, events: u64) -> Scored {
        Scored {
            index,
            summary: Summary {
                under_provisioned_minutes: under,
                replica_minutes,
                scale_events: events,
                peak_replicas: 1,
            },
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
        assert_eq!(choose(&all, 150.0), Some(Choice::WithinBudget(all[2])));
        // Under a tighter budget, 1 is the best that fits.
        assert_eq!(choose(&all, 145.0), Some(Choice::WithinBudget(all[1])));
    }

    #[test]
    fn equal_minutes_and_events_go_to_the_cheaper() {
        let all = [scored(0, 1.0, 120.0, 4), scored(1, 1.0, 110.0, 4)];
        assert_eq!(choose(&all, 200.0), Some(Choice::WithinBudget(all[1])));
    }

    #[test]
    fn over_budget_the_cheapest_frontier_point_is_chosen() {
        let all = [scored(0, 10.0, 100.0, 5), scored(1, 12.0, 100.0, 2), scored(2, 0.0, 200.0, 1)];
        assert_eq!(choose(&all, 50.0), Some(Choice::OverBudget(all[0])));
        assert_eq!(choose(&[], 50.0), None);
    }
}
