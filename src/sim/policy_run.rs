//! The policy under test, driven through the real decision core: at every sampling tick the
//! simulated cluster is turned into the same [`Observation`] a live sampler would build, pushed
//! into a [`History`], and [`decide`] is called exactly as the daemon calls it. A scale
//! decision is carried out as the daemon carries it out, through [`act::scale`] (admission,
//! the scale-down hand-over of the recorded master, [`crate::cluster::Cluster::scale`], the
//! record in the decision memory) on a [`SimCluster`].
//! Nothing here changes how the core decides or acts; it only stands in for the samplers.

use std::time::Duration;

use futures::FutureExt;

use super::SimError;
use super::cluster::SimCluster;
use super::model::{ClusterModel, InstanceState};
use super::replay::Controller;
use super::trace::{Clock, Millis};
use crate::act::{self, ActionOutcome, Executor, HandOver, Mode, RateLimit};
use crate::decide::{Decider, Fleet, ScalingDecision};
use crate::failover;
use crate::observe::{
    History, Info, InstanceSample, Observation, Outcome, QueryResult, Role, Timestamp,
};
use crate::policy::Policy;
use crate::sample::redis::Access;

/// `INFO` fields the simulated instances report.
const OPS_FIELD: &str = "instantaneous_ops_per_sec";
const COMMANDS_FIELD: &str = "total_commands_processed";
const CLIENTS_FIELD: &str = "connected_clients";
/// The model has no notion of clients; a constant keeps the field present without moving.
const CLIENTS_PER_INSTANCE: f64 = 10.0;

/// A field the model moves at every round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Moving {
    Ops,
    Commands,
}

impl Moving {
    const ALL: [Moving; 2] = [Moving::Ops, Moving::Commands];

    fn field(self) -> &'static str {
        match self {
            Moving::Ops => OPS_FIELD,
            Moving::Commands => COMMANDS_FIELD,
        }
    }

    fn value(self, state: &InstanceState) -> f64 {
        match self {
            Moving::Ops => state.ops_per_sec,
            Moving::Commands => state.commands_processed,
        }
    }
}

pub struct PolicyController<'p> {
    policy: &'p Policy,
    interval: Millis,
    /// Turns tick times into the instants observations carry.
    clock: Clock,
    history: History,
    /// The policy's decisions with their memory: the policy cannot change during a run.
    decider: Decider<'p>,
    /// Applies every admitted action. The daemon's `--max-actions-per-hour` is an operational
    /// guard against a misbehaving controller, not part of the policy, so the simulation
    /// measures the policy without it.
    executor: Executor,
    /// Every distinct PromQL query the policy reads; each is answered with the demand.
    queries: Vec<String>,
    /// `redis-0`, `redis-1`, ...: StatefulSet pod names, grown as the cluster grows.
    instance_ids: Vec<String>,
    /// An `INFO` with every simulated field the policy reads, cloned for each new instance:
    /// one exact-size copy instead of regrowing the field table.
    info_template: Info,
    /// The fields that move which the policy reads, rewritten at every round. As the daemon
    /// keeps only the numbers a policy's metrics read (`Info::retain_numbers`), a round holds
    /// no others: writing a number nothing reads costs a field lookup per instance per tick.
    moving: Vec<Moving>,
    /// The round the history let go at the last push, refilled for the next: a round costs
    /// no allocation once the history is full (one per instance otherwise, at every tick).
    spare: Option<Observation>,
    evaluations: u64,
    /// Metrics the simulated fleet could not answer: a policy starved of data never scales
    /// down, and its author should hear about it.
    gaps: Vec<MetricGap>,
}

/// A metric that was missing in some evaluations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricGap {
    /// As the decision's reason names it, e.g. `p95 of mean instantaneous_ops_per_sec over 2m`.
    pub metric: String,
    pub missing: u64,
    pub evaluations: u64,
    /// The first reason given, e.g. `no ready instance reports \`total_net_output_bytes\``.
    pub example: String,
}

impl<'p> PolicyController<'p> {
    pub fn new(policy: &'p Policy) -> Result<Self, SimError> {
        if policy.scaling.is_none() {
            return Err(SimError::NoScaling { policy: policy.name.clone() });
        }
        let interval = policy.sampling.interval;
        let read = policy.redis_fields();
        let moving: Vec<Moving> =
            Moving::ALL.into_iter().filter(|m| read.contains(&m.field())).collect();
        Ok(Self {
            policy,
            interval: to_millis(interval),
            clock: Clock::default(),
            history: History::new(policy.history_span(), interval),
            decider: Decider::new(policy),
            // A zero window forgets each admission at once: unlimited, in constant memory.
            executor: Executor::new(
                Mode::Apply,
                RateLimit { max: u32::MAX, window: Duration::ZERO },
            ),
            queries: policy.prometheus_queries().into_iter().map(str::to_owned).collect(),
            instance_ids: Vec::new(),
            info_template: info_template(&moving, read.contains(&CLIENTS_FIELD)),
            moving,
            spare: None,
            evaluations: 0,
            gaps: Vec::new(),
        })
    }

    /// Every metric that was missing at least once, with how often.
    pub fn gaps(&self) -> Vec<MetricGap> {
        let evaluations = self.evaluations;
        self.gaps.iter().map(|g| MetricGap { evaluations, ..g.clone() }).collect()
    }

    fn count_gaps(&mut self, decision: &ScalingDecision) {
        self.evaluations += 1;
        for reading in &decision.reason().readings {
            let Err(why) = &reading.value else { continue };
            match self.gaps.iter_mut().find(|g| g.metric == *reading.metric) {
                Some(gap) => gap.missing += 1,
                None => self.gaps.push(MetricGap {
                    metric: reading.metric.to_string(),
                    missing: 1,
                    evaluations: 0,
                    example: why.clone(),
                }),
            }
        }
    }

    /// What a sampler sees of `cluster` under `demand`, `master` serving as master, written
    /// over the spare round when there is one.
    fn observe(
        &mut self,
        now: Timestamp,
        demand: f64,
        cluster: &ClusterModel,
        master: Option<u16>,
    ) -> Observation {
        let states = cluster.instances(demand);
        while self.instance_ids.len() < states.len() {
            self.instance_ids.push(format!("redis-{}", self.instance_ids.len()));
        }
        let mut observation = self.spare.take().unwrap_or_else(|| Observation {
            at: now,
            instances: Vec::new(),
            queries: Vec::new(),
        });
        observation.at = now;
        observation.instances.truncate(states.len());
        for state in states {
            let id = &self.instance_ids[state.ordinal];
            match observation.instances.get_mut(state.ordinal) {
                // Written at this ordinal, so named by it: `redis-N` at index N.
                Some(InstanceSample { outcome, info: Some(info), .. }) => {
                    *outcome = Outcome::Ok;
                    describe(info, &state, master, &self.moving);
                }
                _ => {
                    let mut info = self.info_template.clone();
                    describe(&mut info, &state, master, &self.moving);
                    let sample =
                        InstanceSample { id: id.clone(), outcome: Outcome::Ok, info: Some(info) };
                    observation.instances.truncate(state.ordinal);
                    observation.instances.push(sample);
                }
            }
        }
        observation.queries.clear();
        observation.queries.extend(
            self.queries
                .iter()
                .map(|query| QueryResult { query: query.clone(), value: Ok(vec![demand]) }),
        );
        observation
    }
}

/// Writes what `INFO` says on one instance over `info` (the template or an earlier round's,
/// which hold the same fields): a ready one serves its share and its link is up; a warming
/// one is a replica still in its initial sync; `master` is the ordinal serving as master;
/// `moving` are the fields to rewrite.
fn describe(info: &mut Info, state: &InstanceState, master: Option<u16>, moving: &[Moving]) {
    let is_master = master.is_some_and(|m| usize::from(m) == state.ordinal);
    let role = if is_master { Role::Master } else { Role::Replica };
    info.role = role;
    // `master_link_status` only exists on replicas.
    info.master_link_up = (role == Role::Replica).then_some(state.ready);
    info.syncing = !state.ready;
    // `info_template` recorded the moving fields first, in this order.
    info.overwrite_numbers_in_order(moving.iter().map(|field| field.value(state)));
    debug_assert!(
        moving.iter().all(|f| {
            info.number(f.field()).map(f64::to_bits) == Some(f.value(state).to_bits())
        })
    );
}

impl Controller for PolicyController<'_> {
    fn interval(&self) -> Millis {
        self.interval
    }

    fn evaluate(&mut self, now: Millis, demand: f64, cluster: &mut SimCluster) {
        let master = cluster.serving_master();
        let at = self.clock.timestamp(now);
        let model = cluster.model();
        let (observation, replicas) = (self.observe(at, demand, model, master), model.requested());
        self.spare = self.history.push(observation);
        // `new` refused a policy without scaling, so there is always a decision.
        let Some(decision) = self.decider.decide(&self.history, Fleet { replicas }, at) else {
            return;
        };
        self.count_gaps(&decision);
        let scale = match decision {
            ScalingDecision::Scale { from, to, .. } => Some((from, to)),
            ScalingDecision::Hold { .. } => None,
        };
        self.decider.recycle(decision);
        let Some((from, to)) = scale else { return };
        // The daemon's hand-over over the model: nothing connects anywhere (the simulated
        // cluster answers probes itself), and the model has no config to set a write guard on.
        let access = Access::default();
        let context = failover::Context {
            access: &access,
            timeout: failover::action_timeout(self.policy),
            guard: None,
            actor: "simulate",
        };
        let hand_over = HandOver { health: &self.policy.health, context };
        // The simulated cluster's futures are ready at once, and a scale-down happens only with
        // every instance ready (no scale-down on doubt), so a replica below the new count can
        // always take over: the action is always applied; the replay reads its effect from the
        // model.
        let (executor, memory) = (&mut self.executor, self.decider.memory());
        let outcome =
            act::scale(executor, &*cluster, memory, from, to, at, &hand_over).now_or_never();
        debug_assert_eq!(outcome, Some(ActionOutcome::Applied));
    }
}

/// Every field a simulated instance reports that the policy reads: the `moving` ones first,
/// in their order (which [`describe`] rewrites in place), then `connected_clients`, which
/// never moves, if `clients`.
fn info_template(moving: &[Moving], clients: bool) -> Info {
    let mut info = Info::new(Role::Replica);
    for field in moving {
        info.set_number(field.field(), 0.0);
    }
    if clients {
        info.set_number(CLIENTS_FIELD, CLIENTS_PER_INSTANCE);
    }
    info
}

/// A policy duration in simulation milliseconds, saturating (a window of centuries is as good
/// as forever).
pub fn to_millis(duration: Duration) -> Millis {
    Millis::try_from(duration.as_millis()).unwrap_or(Millis::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::fixtures::{policy, prometheus_metric, redis_metric};
    use crate::sim::replay::replay;
    use crate::sim::trace::{Row, TimeKind, Trace, timestamp};

    fn ticks_of(controller: &mut PolicyController<'_>, cluster: &mut SimCluster, demand: f64) {
        for second in (0..60).step_by(10) {
            controller.evaluate(second * 1000, demand, cluster);
        }
    }

    #[test]
    fn observations_look_like_a_live_fleet() {
        let policy = policy()
            .metric(prometheus_metric("sum(rate(app_reads[1m]))", 100.0))
            .metric(redis_metric(OPS_FIELD, 100.0))
            .build();
        let mut controller = PolicyController::new(&policy).expect("has scaling");
        let mut cluster = ClusterModel::new(2, 100.0, 30_000, 0);
        cluster.scale_to(3, 0);
        let observation = controller.observe(timestamp(0), 150.0, &cluster, Some(0));
        assert_eq!(observation.ready_count(), 2);
        let ids: Vec<&str> = observation.instances.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(ids, ["redis-0", "redis-1", "redis-2"]);
        let master = observation.instances[0].info.as_ref().expect("info");
        assert_eq!((master.role, master.master_link_up), (Role::Master, None));
        assert_eq!(master.number(OPS_FIELD), Some(75.0));
        let warming = observation.instances[2].info.as_ref().expect("info");
        assert_eq!((warming.syncing, warming.master_link_up), (true, Some(false)));
        assert_eq!(warming.number(OPS_FIELD), Some(0.0));
        assert_eq!(
            observation.queries,
            vec![QueryResult { query: "sum(rate(app_reads[1m]))".into(), value: Ok(vec![150.0]) }]
        );
    }

    /// As the daemon's history does, a round holds the numbers the policy's metrics read and
    /// no others, moving or not.
    #[test]
    fn a_round_holds_only_the_fields_the_policy_reads() {
        let mut cluster = ClusterModel::new(2, 100.0, 30_000, 0);
        cluster.scale_to(2, 0);
        let numbers = |fields: &[&str]| {
            let mut built = policy();
            for field in fields {
                built = built.metric(redis_metric(field, 100.0));
            }
            let policy = built.build();
            let mut controller = PolicyController::new(&policy).expect("has scaling");
            let observation = controller.observe(timestamp(0), 150.0, &cluster, Some(0));
            let info = observation.instances[1].info.clone().expect("info");
            [OPS_FIELD, COMMANDS_FIELD, CLIENTS_FIELD].map(|field| info.number(field).is_some())
        };
        assert_eq!(numbers(&[OPS_FIELD]), [true, false, false]);
        assert_eq!(numbers(&[COMMANDS_FIELD]), [false, true, false]);
        assert_eq!(numbers(&[CLIENTS_FIELD, OPS_FIELD]), [true, false, true]);
        assert_eq!(numbers(&[]), [false, false, false]);
    }

    /// A round written over the one the history let go reads exactly as a new one, whether
    /// the fleet grew or shrank since, or its master moved.
    #[test]
    fn a_reused_round_reads_as_a_new_one() {
        let policy = policy().metric(prometheus_metric("sum(rate(app_reads[1m]))", 100.0)).build();
        let mut fresh = PolicyController::new(&policy).expect("has scaling");
        let mut reusing = PolicyController::new(&policy).expect("has scaling");
        let fleets = [(4, 4, Some(3)), (2, 1, Some(0)), (5, 3, None), (5, 5, Some(4))];
        for (second, &(requested, ready, master)) in (0..).zip(&fleets) {
            let mut cluster = ClusterModel::new(ready, 100.0, 30_000, 0);
            cluster.scale_to(requested, 0);
            let at = timestamp(second * 10_000);
            let demand = 50.0 * f64::from(requested);
            let expected = fresh.observe(at, demand, &cluster, master);
            let reused = reusing.observe(at, demand, &cluster, master);
            assert_eq!(reused, expected, "fleet {requested}/{ready}");
            // The next round is written over this one.
            reusing.spare = Some(reused);
        }
    }

    #[test]
    fn a_hot_fleet_scales_up_through_the_core() {
        // 2 replicas of target 100 serving 300 ops/s: mean 150 per replica -> ceil(1.5 x 2) = 3.
        let policy = policy().metric(redis_metric(OPS_FIELD, 100.0)).max(10).build();
        let mut controller = PolicyController::new(&policy).expect("has scaling");
        let mut cluster = SimCluster::new(ClusterModel::new(2, 1000.0, 0, 0), 0);
        controller.evaluate(0, 300.0, &mut cluster);
        assert_eq!(cluster.model().requested(), 3);
    }

    fn ready<T>(future: impl Future<Output = T>) -> T {
        future.now_or_never().expect("simulated cluster futures are ready at once")
    }

    /// Issue 13: `simulate` goes through the daemon's scale-down hand-over. 3 instances with
    /// the master on the highest, a quiet fleet (30 ops/s for a target of 100 each): the
    /// policy scales to 1, and the action path first switches the master over to the one
    /// survivor, recorded at the next epoch with its claim released; the backend only resizes.
    #[test]
    fn a_scale_down_removing_the_master_hands_it_over_through_the_action_path() {
        let policy = policy().metric(redis_metric(OPS_FIELD, 100.0)).build();
        let mut controller = PolicyController::new(&policy).expect("has scaling");
        let mut cluster = SimCluster::new(ClusterModel::new(3, 1000.0, 0, 0), 0).with_master_at(2);
        // The backend alone refuses to remove the recorded master.
        let refused = ready(crate::cluster::Cluster::scale(&cluster, 3, 1));
        assert!(
            matches!(
                refused,
                Err(crate::cluster::ClusterError::WouldRemoveMaster { ordinal: 2, to: 1, .. })
            ),
            "{refused:?}"
        );
        controller.evaluate(0, 30.0, &mut cluster);
        assert_eq!(cluster.model().requested(), 1);
        let record = cluster.record().expect("a record");
        assert_eq!((record.instance.as_str(), record.epoch), ("redis-0", 2));
        assert_eq!(record.active_claim(chrono::Utc::now()), None, "{record:?}");
        assert_eq!(cluster.serving_master(), Some(0));
        assert_eq!(cluster.switchovers(), 1);
        // The survivor is the master the next observation shows.
        let observation = controller.observe(timestamp(10_000), 30.0, cluster.model(), Some(0));
        let roles: Vec<Role> =
            observation.instances.iter().filter_map(|s| s.info.as_ref()).map(|i| i.role).collect();
        assert_eq!(roles, [Role::Master]);
    }

    /// The same through a whole replay: the master starts on the starting fleet's highest
    /// ordinal, and the run reports the switchover and where the master ended.
    #[test]
    fn a_replay_that_scales_below_its_start_hands_the_master_over() {
        let policy = policy().metric(redis_metric(OPS_FIELD, 100.0)).build();
        let rows = [(0, 30.0), (60, 30.0)].iter().map(|&(s, load)| Row { at: s * 1000, load });
        let trace = Trace::from_rows("quiet", TimeKind::Seconds, rows.collect()).expect("valid");
        let mut controller = PolicyController::new(&policy).expect("has scaling");
        let run = replay(&trace, ClusterModel::new(3, 1000.0, 0, 0), &mut controller);
        assert_eq!(run.timeline.last().map(|c| c.requested), Some(1));
        assert_eq!(run.switchovers, 1);
        let master = run.master.expect("a record");
        assert_eq!((master.instance.as_str(), master.epoch), ("redis-0", 2));
    }

    #[test]
    fn policies_without_scaling_are_refused() {
        let mut policy = policy().build();
        policy.scaling = None;
        assert!(matches!(PolicyController::new(&policy), Err(SimError::NoScaling { .. })));
    }

    #[test]
    fn a_quiet_fleet_holds_within_tolerance() {
        let policy = policy().metric(redis_metric(OPS_FIELD, 100.0)).build();
        let mut controller = PolicyController::new(&policy).expect("has scaling");
        let mut cluster = SimCluster::new(ClusterModel::new(2, 1000.0, 0, 0), 0);
        ticks_of(&mut controller, &mut cluster, 195.0);
        controller.evaluate(60_000, 195.0, &mut cluster);
        assert_eq!(cluster.model().requested(), 2);
    }

    #[test]
    fn replays_a_step_in_demand_end_to_end() {
        // 1 replica (capacity 100, target 80, no warm-up) sees demand jump from 50 to 300 at
        // 60 s. The policy samples every 10 s, scales on the last sample of the mean ops/s and
        // may add 100 % per 15 s:
        //   60 s: served is capped at 100 -> ceil(100 / 80) = 2
        //   70 s: 200 / 2 = 100 each -> wants 3, but the period (from 1) allows only 2
        //   80 s: the 60 s event left the period -> 3
        //   90 s: 300 / 3 = 100 each -> 4 (from 2 at the period's start, 4 is allowed)
        //  100 s: 300 / 4 = 75 each, ratio 0.94: within tolerance, hold.
        // Short from 60 s until 3 x 100 meets the 300 ops/s at 80 s: 20 seconds.
        let policy = policy().metric(redis_metric(OPS_FIELD, 80.0)).max(6).build();
        let rows = [(0, 50.0), (60, 300.0), (120, 300.0), (180, 300.0)]
            .iter()
            .map(|&(s, load)| Row { at: s * 1000, load })
            .collect();
        let trace = Trace::from_rows("step", TimeKind::Seconds, rows).expect("valid");
        let mut controller = PolicyController::new(&policy).expect("has scaling");
        let run = replay(&trace, ClusterModel::new(1, 100.0, 0, 0), &mut controller);
        let shapes: Vec<(Millis, u16)> = run.timeline.iter().map(|c| (c.at, c.requested)).collect();
        assert_eq!(shapes, vec![(0, 1), (60_000, 2), (80_000, 3), (90_000, 4)]);
        assert_eq!(run.summary.under_provisioned_minutes, 20.0 / 60.0);
        assert_eq!(run.summary.scale_events, 3);
        assert_eq!(run.summary.peak_replicas, 4);
    }
}
