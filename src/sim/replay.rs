//! The event-driven replay: walks a trace from event to event (row boundaries, controller
//! ticks, warm-up completions), integrates exactly between them, and lets one controller
//! resize the cluster at its ticks. Nothing changes between two events, so every integral is
//! a sum of `value x span` with no per-second loop.
//!
//! Controllers act on a [`SimCluster`], the daemon's cluster trait over the model; the replay
//! reads the resulting shape from the model after each evaluation.

use super::cluster::SimCluster;
use super::model::ClusterModel;
use super::report::Summary;
use super::trace::{Millis, Row, Trace};
use crate::cluster::MasterRecord;

/// An autoscaler under test, asked at its own cadence what the deployment should be.
pub trait Controller {
    /// Time between evaluations; the first is at the trace's start.
    fn interval(&self) -> Millis;

    /// Evaluates at `now` with `demand` ops/s asked of `cluster`, and scales it if it decides
    /// to (the cluster's clock is already at `now`).
    fn evaluate(&mut self, now: Millis, demand: f64, cluster: &mut SimCluster);
}

/// The cluster's shape from `at` until the next change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Change {
    pub at: Millis,
    pub requested: u16,
    pub ready: u16,
}

/// One controller's run: the four numbers and every change of shape (for plots).
#[derive(Debug, Clone, PartialEq)]
pub struct Run {
    pub summary: Summary,
    pub timeline: Vec<Change>,
    /// How many times a scale-down handed the master over (a switchover) first.
    pub switchovers: u64,
    /// The master record at the end.
    pub master: Option<MasterRecord>,
}

struct Replay<'t> {
    rows: &'t [Row],
    /// Index of the row covering `now`.
    row: usize,
    end: Millis,
    now: Millis,
    cluster: SimCluster,
    under_provisioned: Millis,
    replica_millis: u128,
    scale_events: u64,
    peak_replicas: u16,
    timeline: Vec<Change>,
}

/// Replays `trace` (loads in ops/s) against `cluster` resized by `controller`.
pub fn replay(trace: &Trace, cluster: ClusterModel, controller: &mut impl Controller) -> Run {
    // The master where a past failover may have left it, on the highest ordinal: a scale-down
    // below the starting count must hand it over (see `SimCluster`).
    let master = cluster.requested().saturating_sub(1);
    let mut replay = Replay {
        rows: trace.rows(),
        row: 0,
        end: trace.end(),
        now: trace.start(),
        peak_replicas: cluster.requested(),
        cluster: SimCluster::new(cluster, trace.start()).with_master_at(master),
        under_provisioned: 0,
        replica_millis: 0,
        scale_events: 0,
        timeline: Vec::new(),
    };
    replay.record();
    // A zero interval would never advance; a millisecond is the model's resolution anyway.
    let interval = controller.interval().max(1);
    let mut tick = trace.start();
    while tick < replay.end {
        replay.advance_to(tick);
        let demand = replay.demand();
        let before = replay.cluster.model_mut().requested();
        replay.cluster.set_now(tick);
        controller.evaluate(tick, demand, &mut replay.cluster);
        replay.scaled_from(before);
        tick = tick.saturating_add(interval);
    }
    replay.advance_to(replay.end);
    replay.finish()
}

impl Replay<'_> {
    fn demand(&self) -> f64 {
        self.rows[self.row].load
    }

    /// Integrates from `now` to `until`, stopping at every row boundary and warm-up end.
    fn advance_to(&mut self, until: Millis) {
        while self.now < until {
            let row_end = self.rows.get(self.row + 1).map_or(self.end, |r| r.at);
            let demand = self.demand();
            let cluster = self.cluster.model_mut();
            let mut next = until.min(row_end);
            if let Some(ready_at) = cluster.next_ready_at() {
                next = next.min(ready_at);
            }
            let span = next - self.now;
            if demand > cluster.capacity() {
                self.under_provisioned += span;
            }
            self.replica_millis += u128::from(cluster.requested()) * span.unsigned_abs() as u128;
            cluster.serve(demand, span);
            let warmed = cluster.finish_warmups(next);
            self.now = next;
            if next == row_end && self.row + 1 < self.rows.len() {
                self.row += 1;
            }
            if warmed {
                self.record();
            }
        }
    }

    /// Counts a scale event if the controller changed the requested count from `before`.
    fn scaled_from(&mut self, before: u16) {
        let replicas = self.cluster.model_mut().requested();
        if replicas == before {
            return;
        }
        self.scale_events += 1;
        self.peak_replicas = self.peak_replicas.max(replicas);
        self.record();
    }

    fn record(&mut self) {
        let cluster = self.cluster.model_mut();
        let change =
            Change { at: self.now, requested: cluster.requested(), ready: cluster.ready() };
        // Several changes at one instant (a scale and a warm-up end) keep only the last.
        if self.timeline.last().is_some_and(|last| last.at == change.at) {
            self.timeline.pop();
        }
        self.timeline.push(change);
    }

    fn finish(self) -> Run {
        const MILLIS_PER_MINUTE: f64 = 60_000.0;
        Run {
            summary: Summary {
                under_provisioned_minutes: self.under_provisioned as f64 / MILLIS_PER_MINUTE,
                replica_minutes: self.replica_millis as f64 / MILLIS_PER_MINUTE,
                scale_events: self.scale_events,
                peak_replicas: self.peak_replicas,
            },
            timeline: self.timeline,
            switchovers: self.cluster.switchovers(),
            master: self.cluster.record(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::trace::TimeKind;

    /// Scales to fixed counts at fixed times: the integrals can then be checked by hand.
    struct Script {
        interval: Millis,
        steps: Vec<(Millis, u16)>,
    }

    impl Controller for Script {
        fn interval(&self) -> Millis {
            self.interval
        }

        fn evaluate(&mut self, now: Millis, _: f64, cluster: &mut SimCluster) {
            if let Some((_, to)) = self.steps.iter().find(|(at, _)| *at == now) {
                cluster.resize(*to);
            }
        }
    }

    fn trace(rows: &[(i64, f64)]) -> Trace {
        let rows = rows.iter().map(|&(s, load)| Row { at: s * 1000, load }).collect();
        Trace::from_rows("test", TimeKind::Seconds, rows).expect("valid trace")
    }

    #[test]
    fn steady_load_within_capacity_costs_replicas_times_minutes() {
        // 3 minutes at 150 ops/s on 2 replicas of 100: never short.
        let trace = trace(&[(0, 150.0), (60, 150.0), (120, 150.0)]);
        let mut hold = Script { interval: 10_000, steps: vec![] };
        let run = replay(&trace, ClusterModel::new(2, 100.0, 0, 0), &mut hold);
        assert_eq!(
            run.summary,
            Summary {
                under_provisioned_minutes: 0.0,
                replica_minutes: 6.0,
                scale_events: 0,
                peak_replicas: 2
            }
        );
    }

    #[test]
    fn under_provisioning_lasts_until_the_warmup_ends() {
        // Rows: 0-60 s at 100 ops/s, 60-120 s at 250, 120-180 s at 50; 1 replica of 100 ops/s.
        // At 60 s the script asks for 3; they serve from 60 + 30 = 90 s. Short from 60 to 90 s
        // (0.5 min). Back to 1 at 150 s. Replica-minutes: 1 x 1 + 3 x 1.5 + 1 x 0.5 = 6.
        let trace = trace(&[(0, 100.0), (60, 250.0), (120, 50.0)]);
        let mut script = Script { interval: 30_000, steps: vec![(60_000, 3), (150_000, 1)] };
        let run = replay(&trace, ClusterModel::new(1, 100.0, 30_000, 0), &mut script);
        assert_eq!(
            run.summary,
            Summary {
                under_provisioned_minutes: 0.5,
                replica_minutes: 6.0,
                scale_events: 2,
                peak_replicas: 3
            }
        );
        let shapes: Vec<(Millis, u16, u16)> =
            run.timeline.iter().map(|c| (c.at, c.requested, c.ready)).collect();
        assert_eq!(shapes, vec![(0, 1, 1), (60_000, 3, 1), (90_000, 3, 3), (150_000, 1, 1)]);
    }

    #[test]
    fn demand_exactly_at_capacity_is_not_short_and_rows_change_between_ticks() {
        // One tick at 0 only (interval longer than the trace): rows at 0, 20 s and 40 s must
        // still be integrated separately. 200 ops/s on 2 x 100 is exactly enough; 201 is not.
        let trace = trace(&[(0, 200.0), (20, 201.0), (40, 10.0)]);
        let mut hold = Script { interval: 600_000, steps: vec![] };
        let run = replay(&trace, ClusterModel::new(2, 100.0, 0, 0), &mut hold);
        assert_eq!(run.summary.under_provisioned_minutes, 20.0 / 60.0);
        assert_eq!(run.summary.replica_minutes, 2.0);
    }

    #[test]
    fn scaling_down_warming_instances_cancels_their_capacity() {
        // Ask for 4 at 0 (warm-up 60 s), drop back to 2 at 30 s: capacity never rose.
        let trace = trace(&[(0, 300.0), (60, 300.0)]);
        let mut script = Script { interval: 30_000, steps: vec![(0, 4), (30_000, 2)] };
        let run = replay(&trace, ClusterModel::new(2, 100.0, 60_000, 0), &mut script);
        assert_eq!(run.summary.under_provisioned_minutes, 2.0);
        // 4 x 0.5 min + 2 x 1.5 min.
        assert_eq!(run.summary.replica_minutes, 5.0);
        assert_eq!(run.summary.peak_replicas, 4);
    }
}
