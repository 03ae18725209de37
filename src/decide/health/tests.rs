//! Behaviour of the health core ([`super`]), one rule per test. Each test builds
//! probes of a small fleet on 127.0.0.1:7000.., feeds them to `assess` in time order the way
//! the policy loop does, and checks the decisions *and* the rule or choice behind them: a
//! failover to the right instance for the wrong reason is a bug too.

use chrono::TimeDelta;
use rstest::rstest;

use crate::decide::fixture::{secs, t};
use crate::decide::health::{
    self, Assessment, Blocked, Choice, Detection, DownRule, Evidence, HealthDecision, HealthInput,
    HealthMemory, HealthReason,
};
use crate::model::Endpoint;
use crate::model::{Advertised, Claim, MasterRecord, Member, RecordRefusal};
use crate::observe::info::{ConnectedReplica, Keyspace, ReplicaState};
use crate::observe::{Info, InstanceSample, Outcome, RedisId, Role, Timestamp};
use crate::policy::{Bootstrap, FailoverMode, Health};

/// Keys every instance of a healthy fleet holds.
const KEYS: u64 = 100;
/// The master's replication offset in a healthy fleet; replica `i` is at `OFFSET - i`.
const OFFSET: u64 = 1000;

/// Instance `i`'s id: its address, as static endpoints and the local fleet name instances.
fn name(i: usize) -> String {
    format!("127.0.0.1:{}", 7000 + i)
}

fn port(i: usize) -> u16 {
    u16::try_from(7000 + i).expect("a small fleet")
}

/// Run ids order like `n`, which is how Sentinel's last tie-break reads them.
fn run_id(n: u8) -> RedisId {
    RedisId([n; 20])
}

fn at(ms: i64) -> Timestamp {
    t(0) + TimeDelta::milliseconds(ms)
}

fn member(i: usize) -> Member {
    Member {
        id: name(i),
        endpoint: Endpoint::parse(&name(i)).expect("host:port"),
        ordinal: u16::try_from(i).expect("a small fleet"),
        gone: None,
    }
}

fn with_keys(info: &mut Info, keys: u64) {
    info.keyspace.clear();
    if keys > 0 {
        info.keyspace.push(Keyspace { db: 0, keys, expires: 0, avg_ttl: 0 });
    }
}

/// A freshly booted instance: a replica of nothing, no data, never linked.
fn blank(run: u8) -> Info {
    let mut info = Info::new(Role::Replica);
    info.master_link_up = Some(false);
    info.server.run_id = Some(run_id(run));
    info.replication.replica_repl_offset = Some(1);
    info
}

fn master_info(run: u8, offset: u64) -> Info {
    let mut info = Info::new(Role::Master);
    info.server.run_id = Some(run_id(run));
    info.replication.master_repl_offset = Some(offset);
    with_keys(&mut info, KEYS);
    info
}

/// A replica of instance `of`, linked up and hearing from it, priority 100, holding `KEYS`.
fn replica_info(of: usize, run: u8, offset: u64) -> Info {
    let mut info = Info::new(Role::Replica);
    info.master_link_up = Some(true);
    info.server.run_id = Some(run_id(run));
    let replication = &mut info.replication;
    replication.master_host = Some("127.0.0.1".into());
    replication.master_port = Some(port(of));
    replication.master_last_io_seconds_ago = Some(0);
    replication.replica_repl_offset = Some(offset);
    replication.master_repl_offset = Some(offset);
    replication.replica_priority = Some(100);
    with_keys(&mut info, KEYS);
    info
}

/// The link of a replica whose master went away `since` seconds ago, as Redis reports it.
fn link_down(info: &mut Info, since: u64) {
    info.master_link_up = Some(false);
    info.replication.master_last_io_seconds_ago = None;
    info.replication.master_link_down_since_seconds = Some(since);
}

/// One health probe: the members and one sample each.
#[derive(Debug, Clone)]
struct Probe {
    members: Vec<Member>,
    samples: Vec<InstanceSample>,
}

impl Probe {
    /// `n` instances, each with run id `i + 1` and `KEYS` keys: 0 serves as master at `OFFSET`
    /// and reports every replica online with lag 0; each other `i` replicates it, linked up,
    /// at `OFFSET - i` (so instance 1 is the most caught up).
    fn healthy(n: usize) -> Self {
        let mut probe = Self { members: vec![], samples: vec![] };
        for i in 0..n {
            let run = u8::try_from(i + 1).expect("a small fleet");
            let offset = OFFSET - i as u64;
            let info = if i == 0 { master_info(run, OFFSET) } else { replica_info(0, run, offset) };
            probe.members.push(member(i));
            probe.samples.push(InstanceSample {
                id: name(i),
                outcome: Outcome::Ok,
                info: Some(info),
            });
        }
        let replicas = (1..n)
            .map(|i| ConnectedReplica {
                ip: "127.0.0.1".into(),
                port: port(i),
                state: ReplicaState::Online,
                offset: Some(OFFSET - i as u64),
                lag: Some(0),
            })
            .collect();
        if n > 0 {
            probe.info(0).replication.replicas = replicas;
        }
        probe
    }

    /// `n` freshly booted instances, none holding data; instance `i` has run id `n - i`, so
    /// the smallest run id is the highest ordinal.
    fn blank(n: usize) -> Self {
        let mut probe = Self { members: vec![], samples: vec![] };
        for i in 0..n {
            let run = u8::try_from(n - i).expect("a small fleet");
            probe.members.push(member(i));
            probe.samples.push(InstanceSample {
                id: name(i),
                outcome: Outcome::Ok,
                info: Some(blank(run)),
            });
        }
        probe
    }

    fn info(&mut self, i: usize) -> &mut Info {
        self.samples[i].info.as_mut().expect("instance answers in this probe")
    }

    /// Changes what instance `i` reports.
    fn with(mut self, i: usize, change: impl FnOnce(&mut Info)) -> Self {
        change(self.info(i));
        self
    }

    /// Instance `i` answers nothing this probe.
    fn fail(mut self, i: usize, outcome: Outcome) -> Self {
        self.samples[i].outcome = outcome;
        self.samples[i].info = None;
        self
    }

    /// The backend reports instance `i` gone; its probe timed out.
    fn gone(mut self, i: usize, why: &str) -> Self {
        self.members[i].gone = Some(why.into());
        self.fail(i, Outcome::Timeout)
    }

    /// Every answering replica reports its master link down for `since` seconds.
    fn links_down(mut self, since: u64) -> Self {
        for sample in &mut self.samples {
            if let Some(info) = sample.info.as_mut().filter(|i| i.role == Role::Replica) {
                link_down(info, since);
            }
        }
        self
    }

    /// Master 0 refuses connections; every replica reports the link down.
    fn master_dead(n: usize) -> Self {
        Self::healthy(n).fail(0, Outcome::Refused).links_down(0)
    }
}

/// Drives the core as the policy loop does, and applies what it decides as a cluster would.
struct Run {
    health: Health,
    /// `spec.snapshots.bootstrap`.
    seed_from: Option<Bootstrap>,
    memory: HealthMemory,
    record: Option<MasterRecord>,
    manage: bool,
}

impl Run {
    /// Default health policy; instance 0 recorded as master at epoch 1.
    fn new() -> Self {
        Self::with(Health::default())
    }

    fn with(health: Health) -> Self {
        Self {
            health,
            seed_from: None,
            memory: HealthMemory::default(),
            record: Some(MasterRecord::new(name(0), 1)),
            manage: true,
        }
    }

    fn assess(&mut self, probe: &Probe, ms: i64) -> Assessment {
        let input = HealthInput {
            record: self.record.as_ref(),
            members: &probe.members,
            samples: &probe.samples,
        };
        let seed_from = self.seed_from.as_ref();
        health::assess(&self.health, seed_from, input, &mut self.memory, self.manage, at(ms))
    }

    /// Records what the policy loop records once an action succeeded.
    fn apply(&mut self, assessment: &Assessment, ms: i64) {
        for decision in &assessment.decisions {
            match decision {
                HealthDecision::Failover { to, epoch, .. } => {
                    self.record = Some(MasterRecord::new(to.clone(), *epoch));
                    self.memory.record_failover(at(ms));
                }
                HealthDecision::Detach { instance, master, .. } => {
                    self.memory.record_detached(instance, master);
                }
                HealthDecision::Fence { instance, .. } => {
                    self.memory.record_fenced(instance);
                    self.memory.record_advertised(instance, Advertised::Fenced);
                }
                HealthDecision::Advertise { instance, role, .. } => {
                    self.memory.record_advertised(instance, *role);
                }
                _ => {}
            }
        }
    }
}

/// The one failover decided, with its detection and choice.
fn failover(assessment: &Assessment) -> (&Option<String>, &str, u64, &Detection, &Choice) {
    match assessment.decisions.as_slice() {
        [
            HealthDecision::Failover {
                from,
                to,
                epoch,
                reason: HealthReason::Down { detection, choice },
            },
        ] => (from, to, *epoch, detection, choice),
        other => panic!("expected one failover of a down master, got {other:#?}"),
    }
}

/// The one bootstrap decision (a failover from no master), with its reason.
fn first_master(assessment: &Assessment) -> (&str, u64, &HealthReason) {
    match assessment.decisions.as_slice() {
        [HealthDecision::Failover { from: None, to, epoch, reason }] => (to, *epoch, reason),
        other => panic!("expected one first-master decision, got {other:#?}"),
    }
}

/// The one "master down, nothing done" report.
fn master_down(assessment: &Assessment) -> (&Detection, &Blocked) {
    match assessment.decisions.as_slice() {
        [
            HealthDecision::MasterDown {
                reason: HealthReason::DownBlocked { detection, blocked },
                ..
            },
        ] => (detection, blocked),
        other => panic!("expected one MasterDown, got {other:#?}"),
    }
}

fn order(choice: &Choice) -> Vec<&str> {
    std::iter::once(&choice.chosen).chain(&choice.outranked).map(|c| c.instance.as_str()).collect()
}

fn excluded<'a>(choice_excluded: &'a [(String, String)], instance: &str) -> Option<&'a str> {
    choice_excluded.iter().find(|(i, _)| i == instance).map(|(_, why)| why.as_str())
}

// ---------------------------------------------------------------------------------------
// Bootstrap: no master recorded.

#[test]
fn bootstrap_of_an_empty_fleet_chooses_the_lowest_ordinal_at_epoch_1() {
    let mut run = Run::new();
    run.record = None;
    // Instance 2 has the smallest run id and the highest offset: with no data anywhere
    // neither matters, and the first master is predictably instance 0.
    let probe = Probe::blank(3).with(2, |i| i.replication.replica_repl_offset = Some(50));
    let assessment = run.assess(&probe, 0);
    let (to, epoch, reason) = first_master(&assessment);
    assert_eq!((to, epoch), (name(0).as_str(), 1));
    let HealthReason::Bootstrap { choice } = reason else { panic!("{reason:?}") };
    assert_eq!(order(choice), [name(0), name(1), name(2)]);
    assert!(choice.excluded.is_empty(), "{choice:?}");
    assert!(!assessment.master_serving);
}

/// A new fleet under `bootstrap: latest`, with no master recorded.
fn seeding() -> Run {
    Run { record: None, seed_from: Some(Bootstrap::Latest), ..Run::new() }
}

/// The one seed decided.
fn seed(assessment: &Assessment) -> (&str, &Bootstrap) {
    match assessment.decisions.as_slice() {
        [HealthDecision::Seed { instance, from, .. }] => (instance, from),
        other => panic!("expected one seed: {other:#?}"),
    }
}

#[test]
fn with_bootstrap_an_empty_new_fleet_is_seeded_into_the_lowest_ordinal() {
    let mut run = seeding();
    let probe = Probe::blank(3);
    let assessment = run.assess(&probe, 0);
    assert_eq!(seed(&assessment), (name(0).as_str(), &Bootstrap::Latest));
    let reason = assessment.decisions[0].sentence();
    assert!(reason.contains("seeding from the latest snapshot"), "{reason}");
    // Nothing is recorded until the seed is done: a later probe decides it again, but not
    // before SEED_RETRY has passed since an attempt reached the fleet.
    run.memory.record_seed_attempt(at(0));
    assert!(run.assess(&probe, 59_999).decisions.is_empty());
    assert_eq!(seed(&run.assess(&probe, 60_000)).0, name(0));
}

#[test]
fn bootstrap_never_seeds_over_data_or_past_an_instance_it_cannot_read() {
    // One instance holds keys: it becomes the first master with its data, as without
    // bootstrap.
    let holding = Probe::blank(3).with(2, |i| with_keys(i, 10));
    let assessment = seeding().assess(&holding, 0);
    let (to, epoch, _) = first_master(&assessment);
    assert_eq!((to, epoch), (name(2).as_str(), 1));
    // One cannot be read: it might hold data. Nothing is decided until it answers.
    let unread = Probe::blank(3).fail(1, Outcome::Timeout);
    assert!(seeding().assess(&unread, 0).decisions.is_empty());
    // A recorded master, even an empty one: a fleet that has one is never seeded.
    let mut recorded = Run { record: Some(MasterRecord::new(name(0), 1)), ..seeding() };
    let empty = Probe::healthy(3).with(0, |i| with_keys(i, 0)).with(1, |i| with_keys(i, 0));
    let empty = empty.with(2, |i| with_keys(i, 0));
    assert!(
        !recorded
            .assess(&empty, 0)
            .decisions
            .iter()
            .any(|d| matches!(d, HealthDecision::Seed { .. }))
    );
}

#[test]
fn bootstrap_adopts_the_one_instance_already_serving_as_master() {
    let mut run = Run::new();
    run.record = None;
    let probe = Probe::blank(3).with(1, |i| *i = master_info(7, 500));
    let assessment = run.assess(&probe, 0);
    let (to, epoch, reason) = first_master(&assessment);
    assert_eq!((to, epoch), (name(1).as_str(), 1));
    assert_eq!(reason, &HealthReason::Adopt { offset: 500 });
}

#[test]
fn bootstrap_of_a_fleet_holding_data_chooses_as_sentinel_does() {
    let mut run = Run::new();
    run.record = None;
    let probe = Probe::blank(3)
        .with(1, |i| {
            with_keys(i, KEYS);
            i.replication.replica_repl_offset = Some(900);
        })
        .with(2, |i| {
            with_keys(i, KEYS);
            i.replication.replica_repl_offset = Some(400);
            i.replication.replica_priority = Some(10);
        });
    let assessment = run.assess(&probe, 0);
    let (to, epoch, reason) = first_master(&assessment);
    // Lowest priority first, though instance 1 holds more of the history.
    assert_eq!((to, epoch), (name(2).as_str(), 1));
    let HealthReason::Bootstrap { choice } = reason else { panic!("{reason:?}") };
    assert_eq!(order(choice), [name(2), name(1)]);
    assert_eq!(
        excluded(&choice.excluded, &name(0)),
        Some("holds no data while 127.0.0.1:7001 does")
    );
}

#[rstest]
#[case::failover_off(FailoverMode::Off, true)]
#[case::observe_only(FailoverMode::Auto, false)]
fn bootstrap_chooses_nothing_when_it_may_not_act(#[case] mode: FailoverMode, #[case] manage: bool) {
    let mut run = Run::with(Health { failover: mode, ..Health::default() });
    run.record = None;
    run.manage = manage;
    assert_eq!(run.assess(&Probe::blank(3), 0), Assessment::default());
}

// ---------------------------------------------------------------------------------------
// A serving master.

#[test]
fn a_serving_master_is_only_advertised_and_each_role_once() {
    let mut run = Run::new();
    let probe = Probe::healthy(3);
    let assessment = run.assess(&probe, 0);
    assert!(assessment.master_serving);
    assert!(assessment.lagging.is_empty());
    let advertised: Vec<(&str, Advertised)> = assessment
        .decisions
        .iter()
        .map(|d| match d {
            HealthDecision::Advertise { instance, role, .. } => (instance.as_str(), *role),
            other => panic!("a serving master needs only advertising, got {other:#?}"),
        })
        .collect();
    assert_eq!(
        advertised,
        [
            (name(0).as_str(), Advertised::Master),
            (name(1).as_str(), Advertised::Replica),
            (name(2).as_str(), Advertised::Replica)
        ]
    );
    assert_eq!(
        assessment.decisions[0].sentence(),
        "master: the recorded master, serving",
        "the reason says why the role"
    );
    run.apply(&assessment, 0);
    let again = run.assess(&probe, 250);
    assert!(again.decisions.is_empty(), "advertised already: {:#?}", again.decisions);
    assert!(again.master_serving);
}

#[test]
fn an_advertise_that_was_not_applied_is_decided_again() {
    let mut run = Run::new();
    let probe = Probe::healthy(2);
    let first = run.assess(&probe, 0);
    // Only the master's label was applied (the replica's failed).
    run.memory.record_advertised(&name(0), Advertised::Master);
    let again = run.assess(&probe, 250);
    assert_eq!(first.decisions.len(), 2);
    assert!(
        matches!(again.decisions.as_slice(), [HealthDecision::Advertise { instance, role: Advertised::Replica, .. }] if *instance == name(1)),
        "{:#?}",
        again.decisions
    );
}

// ---------------------------------------------------------------------------------------
// Detection: unambiguous death.

#[rstest]
#[case::refused(Probe::master_dead(3), Evidence::Refused)]
#[case::gone(
    Probe::healthy(3).gone(0, "process exited (signal 9)").links_down(0),
    Evidence::Gone("process exited (signal 9)".into())
)]
fn a_dead_master_whose_replicas_all_lost_it_fails_over_at_once(
    #[case] dead: Probe,
    #[case] evidence: Evidence,
) {
    let mut run = Run::new();
    run.assess(&Probe::healthy(3), 0);
    let assessment = run.assess(&dead, 250);
    let (from, to, epoch, detection, choice) = failover(&assessment);
    assert_eq!(from.as_deref(), Some(name(0).as_str()));
    // Instance 1 is the most caught up (offset 999 against 998).
    assert_eq!((to, epoch), (name(1).as_str(), 2));
    assert_eq!(detection.rule, DownRule::Unambiguous);
    assert_eq!(detection.evidence, evidence);
    assert_eq!(detection.failing_ms, 250, "well before downAfter (5s)");
    assert_eq!((detection.replicas_reachable, detection.replicas_link_down), (2, 2));
    assert_eq!(order(choice), [name(1), name(2)]);
    assert!(!assessment.master_serving);
}

#[test]
fn a_master_that_times_out_is_not_unambiguously_dead_and_waits_for_down_after() {
    let mut run = Run::new();
    run.assess(&Probe::healthy(3), 0);
    let hung = Probe::healthy(3).fail(0, Outcome::Timeout).links_down(0);
    for ms in [250, 2500, 4999] {
        let assessment = run.assess(&hung, ms);
        assert!(assessment.decisions.is_empty(), "at {ms} ms: {:#?}", assessment.decisions);
    }
    let assessment = run.assess(&hung, 5000);
    let (_, to, _, detection, _) = failover(&assessment);
    assert_eq!(to, name(1));
    assert_eq!(detection.rule, DownRule::Timeout);
    assert_eq!(detection.evidence, Evidence::NoAnswer("timed out".into()));
    assert_eq!(detection.failing_ms, 5000);
}

#[test]
fn a_refused_master_that_one_replica_still_hears_is_not_unambiguously_dead() {
    let mut run = Run::new();
    run.assess(&Probe::healthy(3), 0);
    // Replica 2 still has a live link: the daemon's own view is not the whole truth.
    let probe = Probe::master_dead(3).with(2, |i| *i = replica_info(0, 3, 998));
    // Not even detached from it: a replica that hears it says it is there.
    assert!(run.assess(&probe, 250).decisions.is_empty());
}

#[test]
fn without_confirm_with_replicas_a_refused_master_still_waits_for_down_after() {
    let mut run = Run::with(Health { confirm_with_replicas: false, ..Health::default() });
    run.assess(&Probe::healthy(3), 0);
    // Its replicas stop following it meanwhile, but nobody is promoted.
    let early = run.assess(&Probe::master_dead(3), 250);
    assert!(
        early.decisions.iter().all(|d| matches!(d, HealthDecision::Detach { .. })),
        "{early:#?}"
    );
    assert_eq!(early.decisions.len(), 2);
    let assessment = run.assess(&Probe::master_dead(3), 5000);
    let (_, _, _, detection, _) = failover(&assessment);
    assert_eq!(detection.rule, DownRule::Timeout);
    assert_eq!(detection.evidence, Evidence::Refused);
}

#[test]
fn a_dead_master_with_no_reachable_replica_is_not_unambiguously_dead() {
    // "At least one replica reachable": nobody confirms, so the timeout rule applies.
    let mut run = Run::new();
    run.assess(&Probe::healthy(2), 0);
    let probe = Probe::healthy(2).fail(0, Outcome::Refused).fail(1, Outcome::Timeout);
    assert!(run.assess(&probe, 250).decisions.is_empty());
}

// ---------------------------------------------------------------------------------------
// Detection: the timeout rule and replica confirmation.

#[test]
fn with_confirmation_a_master_a_replica_still_hears_is_partitioned_not_down() {
    let mut run = Run::new();
    run.assess(&Probe::healthy(3), 0);
    // The daemon cannot reach the master; replica 1 heard from it a second ago.
    let probe = Probe::healthy(3).fail(0, Outcome::Timeout).links_down(0).with(1, |i| {
        *i = replica_info(0, 2, 999);
        i.replication.master_last_io_seconds_ago = Some(1);
    });
    for ms in [5000, 10_000, 60_000] {
        let assessment = run.assess(&probe, ms);
        assert!(assessment.decisions.is_empty(), "at {ms} ms: {:#?}", assessment.decisions);
    }
}

#[test]
fn a_replica_whose_last_io_reached_down_after_no_longer_vouches_for_the_master() {
    let mut run = Run::new();
    run.assess(&Probe::healthy(3), 0);
    // Link still reported up (Redis notices only at repl-timeout), but silent for downAfter.
    let probe = Probe::healthy(3).fail(0, Outcome::Timeout).links_down(0).with(1, |i| {
        *i = replica_info(0, 2, 999);
        i.replication.master_last_io_seconds_ago = Some(5);
    });
    let assessment = run.assess(&probe, 5000);
    let (_, _, _, detection, _) = failover(&assessment);
    assert_eq!(detection.rule, DownRule::Timeout);
    assert_eq!((detection.replicas_reachable, detection.replicas_link_down), (2, 1));
}

#[test]
fn without_confirmation_the_daemons_own_timeout_is_enough() {
    let mut run = Run::with(Health { confirm_with_replicas: false, ..Health::default() });
    run.assess(&Probe::healthy(3), 0);
    let probe = Probe::healthy(3).fail(0, Outcome::Timeout).with(1, |i| {
        i.replication.master_last_io_seconds_ago = Some(1);
    });
    assert!(run.assess(&probe, 4999).decisions.is_empty());
    let assessment = run.assess(&probe, 5000);
    let (_, _, _, detection, _) = failover(&assessment);
    assert_eq!(detection.rule, DownRule::Timeout);
    assert_eq!(detection.down_after_ms, 5000);
}

// ---------------------------------------------------------------------------------------
// Detection: a master that restarted empty.

#[rstest]
#[case::boots_as_replica(Role::Replica)]
#[case::boots_as_master(Role::Master)]
fn a_master_restarted_empty_fails_over_at_once_to_a_replica_with_data(#[case] role: Role) {
    let mut run = Run::new();
    run.assess(&Probe::healthy(4), 0);
    let probe = Probe::healthy(4)
        .with(0, |i| {
            *i = blank(42);
            i.role = role;
        })
        .links_down(0)
        // Replica 3 restarted empty too, and would rank first by priority.
        .with(3, |i| {
            *i = blank(43);
            i.replication.master_host = Some("127.0.0.1".into());
            i.replication.master_port = Some(port(0));
            i.replication.replica_priority = Some(1);
        });
    let assessment = run.assess(&probe, 500);
    let (from, to, epoch, detection, choice) = failover(&assessment);
    assert_eq!(from.as_deref(), Some(name(0).as_str()));
    assert_eq!((to, epoch), (name(1).as_str(), 2));
    assert_eq!(detection.rule, DownRule::RestartedEmpty);
    assert_eq!(
        detection.evidence,
        Evidence::Restarted { role: role.as_str().into(), keys: 0, most_elsewhere: KEYS }
    );
    assert!(detection.failing_ms < 5000);
    assert_eq!(order(choice), [name(1), name(2)]);
    assert_eq!(
        excluded(&choice.excluded, &name(3)),
        Some("holds no data while 127.0.0.1:7001 does")
    );
    assert!(!assessment.master_serving, "an empty restarted master never counts as serving");
}

#[test]
fn after_a_daemon_restart_a_recorded_master_with_no_data_while_a_replica_has_some_is_down() {
    // Fresh memory: the daemon cannot know the run id changed, only that the master is empty.
    let mut run = Run::new();
    let probe = Probe::healthy(3).with(0, |i| with_keys(i, 0));
    let assessment = run.assess(&probe, 0);
    let (_, to, _, detection, _) = failover(&assessment);
    assert_eq!(to, name(1));
    assert_eq!(detection.rule, DownRule::RestartedEmpty);
}

#[test]
fn a_new_master_whose_first_write_reached_a_replica_before_its_own_sample_serves() {
    // Seen in CI: the fleet was just bootstrapped (no memory of the master serving), the
    // master was sampled before the first write and its replica after. The replica's data
    // descends from the master's own history, so nothing was lost and nothing fails over.
    let history = RedisId([7; 20]);
    let mut run = Run::new();
    let probe = Probe::healthy(3).with(0, |i| with_keys(i, 0));
    let probe = (0..3)
        .fold(probe, |probe, n| probe.with(n, |i| i.replication.master_replid = Some(history)));
    let assessment = run.assess(&probe, 0);
    assert!(assessment.master_serving, "{:#?}", assessment.decisions);
    assert!(
        !assessment.decisions.iter().any(|d| matches!(d, HealthDecision::Failover { .. })),
        "{:#?}",
        assessment.decisions
    );
    // A master promoted since continues that history as its second id: the same holds.
    let promoted = probe.clone().with(0, |i| {
        i.replication.master_replid = Some(RedisId([8; 20]));
        i.replication.master_replid2 = Some(history);
    });
    assert!(Run::new().assess(&promoted, 0).master_serving);
    // An empty master on a history of its own is one that restarted without its data.
    let restarted = probe.with(0, |i| i.replication.master_replid = Some(RedisId([9; 20])));
    let assessment = Run::new().assess(&restarted, 0);
    assert_eq!(failover(&assessment).3.rule, DownRule::RestartedEmpty);
}

#[test]
fn an_empty_master_of_an_empty_fleet_serves() {
    // Nobody holds data: nothing to protect, so an empty master is just a new one.
    let mut run = Run::new();
    let probe =
        Probe::healthy(3).with(0, |i| with_keys(i, 0)).with(1, |i| with_keys(i, 0)).with(2, |i| {
            with_keys(i, 0);
        });
    assert!(run.assess(&probe, 0).master_serving);
}

#[test]
fn a_master_restarted_empty_as_master_stays_down_until_a_failover_is_applied() {
    // The failover decided on the restart probe was not applied (the record write failed,
    // or the leader was not admitted): on the next probe the instance still holds nothing,
    // but its new run id is no longer new, and it is taken for a serving master. Its
    // replicas would then resync from it and lose everything.
    let mut run = Run::new();
    run.assess(&Probe::healthy(3), 0);
    let probe = Probe::healthy(3).with(0, |i| with_keys(i, 0)).with(0, |i| {
        i.server.run_id = Some(run_id(42));
    });
    let first = run.assess(&probe, 250);
    assert_eq!(failover(&first).3.rule, DownRule::RestartedEmpty);
    let second = run.assess(&probe, 500);
    assert!(!second.master_serving, "still empty while replicas hold data");
    assert_eq!(failover(&second).3.rule, DownRule::RestartedEmpty);
}

// ---------------------------------------------------------------------------------------
// An unfinished promotion.

#[test]
fn a_recorded_master_answering_as_a_replica_with_the_most_data_is_promoted_at_its_epoch() {
    // The daemon recorded instance 1 at epoch 4 and stopped before `REPLICAOF NO ONE`.
    let mut run = Run::new();
    run.record = Some(MasterRecord::new(name(1), 4));
    let probe = Probe::master_dead(3);
    let assessment = run.assess(&probe, 0);
    assert_eq!(
        assessment.decisions,
        [HealthDecision::Promote {
            instance: name(1),
            epoch: 4,
            reason: HealthReason::Unfinished { offset: 999 },
        }]
    );
    // Not if another holds more: then it is an ordinary down master (no Promote).
    let behind = Probe::master_dead(3).with(2, |i| i.replication.replica_repl_offset = Some(5000));
    let assessment = Run { record: run.record.clone(), ..Run::new() }.assess(&behind, 0);
    assert!(
        !assessment.decisions.iter().any(|d| matches!(d, HealthDecision::Promote { .. })),
        "{:#?}",
        assessment.decisions
    );
}

// ---------------------------------------------------------------------------------------
// Who takes over.

#[test]
fn candidates_rank_by_priority_then_offset_then_run_id() {
    let probe = Probe::healthy(5)
        .with(1, |i| *i = replica_info(0, 9, 2000))
        .with(2, |i| *i = replica_info(0, 3, 2000))
        .with(3, |i| {
            *i = replica_info(0, 7, 100);
            i.replication.replica_priority = Some(50);
        })
        .with(4, |i| *i = replica_info(0, 1, 1500));
    let choice =
        health::successor(&Health::default(), input(&probe), Some(&name(0))).expect("candidates");
    // 3: lowest priority despite the smallest offset; 2 before 1: same priority and offset,
    // smaller run id; 4 last: smallest run id, but less data.
    assert_eq!(order(&choice), [name(3), name(2), name(1), name(4)]);
    assert!(choice.excluded.is_empty());
}

/// A failover a human asks for long after the master died measures each replica's link
/// against the freshest one's, as the daemon measures it against how long the master has
/// been failing: links that went down with the master are fine however long ago, one that
/// went down well before them is still stale. While the master serves, a link down is
/// measured from now.
#[test]
fn a_failover_asked_for_long_after_the_death_measures_links_against_the_freshest() {
    let health = Health { down_after: secs(3), ..Health::default() };
    let long_dead = Probe::master_dead(4)
        .links_down(600)
        .with(2, |i| link_down(i, 610))
        .with(3, |i| link_down(i, 700));
    let choice = health::successor(&health, input(&long_dead), Some(&name(0))).expect("candidates");
    assert_eq!(order(&choice), [name(1), name(2)]);
    assert_eq!(
        excluded(&choice.excluded, &name(3)),
        Some("link down for 700s (more than 10m 30s)")
    );

    let serving = Probe::healthy(3).with(2, |i| link_down(i, 40));
    let choice = health::successor(&health, input(&serving), Some(&name(0))).expect("candidates");
    assert_eq!(order(&choice), [name(1)]);
    assert_eq!(excluded(&choice.excluded, &name(2)), Some("link down for 40s (more than 30s)"));
}

/// A daemon that starts (or takes the lease) after the master died has watched it fail for
/// one probe, but every replica's link has been down for ten minutes: all went down with the
/// master, so one is promoted, as it would be by a daemon that had watched all along.
#[test]
fn a_daemon_that_starts_after_the_master_died_still_fails_over() {
    let mut run = Run::new();
    let assessment = run.assess(&Probe::master_dead(3).links_down(600), 0);
    let (_, to, _, _, choice) = failover(&assessment);
    assert_eq!(to, name(1));
    assert!(choice.excluded.is_empty(), "{choice:?}");
}

fn input(probe: &Probe) -> HealthInput<'_> {
    HealthInput { record: None, members: &probe.members, samples: &probe.samples }
}

#[test]
fn candidates_exclude_those_that_cannot_safely_take_over_and_the_reason_says_why() {
    let mut run = Run::new();
    // While the master served it reported replica 6 thirty seconds behind.
    let serving = Probe::healthy(10).with(0, |i| {
        if let Some(r) = i.replication.replicas.iter_mut().find(|r| r.port == port(6)) {
            r.lag = Some(30);
        }
    });
    run.assess(&serving, 0);
    let probe = Probe::master_dead(10)
        .gone(1, "pod deleted")
        .fail(2, Outcome::Timeout)
        .with(3, |i| i.replication.replica_priority = Some(0))
        .with(4, |i| {
            i.syncing = true;
            i.replication.master_sync_in_progress = true;
        })
        .with(5, |i| i.replication.master_link_down_since_seconds = Some(100))
        .with(7, |i| with_keys(i, 0))
        .with(8, |i| *i = master_info(9, 5000))
        .with(9, |i| i.replication.replica_repl_offset = Some(10));
    let assessment = run.assess(&probe, 250);
    let (_, to, _, detection, choice) = failover(&assessment);
    assert_eq!(detection.rule, DownRule::Unambiguous);
    assert_eq!(to, name(9), "the only one left, though the furthest behind");
    let why = |i| excluded(&choice.excluded, &name(i)).unwrap_or("not excluded").to_owned();
    assert_eq!(why(1), "gone (pod deleted)");
    assert_eq!(why(2), "not reachable (timed out)");
    assert_eq!(why(3), "replica-priority 0");
    assert_eq!(why(4), "still syncing");
    assert_eq!(why(5), "link down for 100s (more than 50s 250ms)");
    assert_eq!(why(6), "30s behind while the master served (replicaMaxLag 10s)");
    assert_eq!(why(7), "holds no data while 127.0.0.1:7003 does");
    assert_eq!(why(8), "claims master without being recorded");
    assert_eq!(choice.excluded.len(), 8);
    let reason = assessment.decisions[0].sentence();
    assert!(
        reason.starts_with(
            "master 127.0.0.1:7000 refuses connections and all 6 reachable replicas report the \
             link down (after 250ms): chose 127.0.0.1:7009 (priority 100, offset 10, run id"
        ),
        "{reason}"
    );
    assert!(reason.contains("; 127.0.0.1:7003 excluded: replica-priority 0"), "{reason}");
    assert!(reason.contains("; 127.0.0.1:7001 excluded: gone (pod deleted)"), "{reason}");
}

#[test]
fn the_reason_names_the_outranked_candidates() {
    let mut run = Run::new();
    run.assess(&Probe::healthy(3), 0);
    let reason = run.assess(&Probe::master_dead(3), 250).decisions[0].sentence();
    assert_eq!(
        reason,
        "master 127.0.0.1:7000 refuses connections and all 2 reachable replicas report the \
         link down (after 250ms): chose 127.0.0.1:7001 (priority 100, offset 999, run id \
         02020202); 127.0.0.1:7002 ranks lower (priority 100, offset 998)"
    );
}

// ---------------------------------------------------------------------------------------
// When no failover follows.

#[rstest]
#[case::manual(FailoverMode::Manual, Blocked::Manual)]
#[case::off(FailoverMode::Off, Blocked::Off)]
fn manual_and_off_report_the_master_down_once(#[case] mode: FailoverMode, #[case] why: Blocked) {
    let mut run = Run::with(Health { failover: mode, ..Health::default() });
    run.assess(&Probe::healthy(3), 0);
    let down = run.assess(&Probe::master_dead(3), 250);
    let (detection, blocked) = master_down(&down);
    assert_eq!(detection.rule, DownRule::Unambiguous);
    assert_eq!(blocked, &why);
    for ms in [500, 5000, 60_000] {
        let assessment = run.assess(&Probe::master_dead(3), ms);
        assert!(assessment.decisions.is_empty(), "at {ms} ms: {:#?}", assessment.decisions);
    }
    // It serves again, then fails again: a new outage, reported again.
    run.assess(&Probe::healthy(3), 61_000);
    let down = run.assess(&Probe::master_dead(3), 61_250);
    assert_eq!(master_down(&down).1, &why);
}

#[test]
fn max_failovers_per_hour_reached_waits_for_a_human_until_the_hour_passed() {
    let mut run = Run::new();
    for _ in 0..3 {
        run.memory.record_failover(at(-100_000));
    }
    run.assess(&Probe::healthy(3), 0);
    let down = run.assess(&Probe::master_dead(3), 250);
    let (detection, blocked) = master_down(&down);
    assert_eq!(detection.rule, DownRule::Unambiguous);
    assert_eq!(blocked, &Blocked::RateLimited { failovers: 3, max: 3 });
    assert!(run.assess(&Probe::master_dead(3), 3_500_000).decisions.is_empty(), "reported once");
    // An hour after the failovers, the limit no longer holds.
    let assessment = run.assess(&Probe::master_dead(3), 3_500_001);
    let (_, to, _, _, _) = failover(&assessment);
    assert_eq!(to, name(1));
}

#[test]
fn an_observed_target_reports_the_master_down_and_changes_nothing() {
    let mut run = Run::new();
    run.manage = false;
    let serving = run.assess(&Probe::healthy(3), 0);
    assert!(serving.master_serving);
    assert!(serving.decisions.is_empty(), "no labels to set: {:#?}", serving.decisions);
    let down = run.assess(&Probe::master_dead(3), 250);
    assert_eq!(master_down(&down).1, &Blocked::ObserveOnly);
}

#[test]
fn no_candidate_is_reported_with_every_exclusion() {
    let mut run = Run::new();
    run.assess(&Probe::healthy(2), 0);
    let probe = Probe::master_dead(2).with(1, |i| i.replication.replica_priority = Some(0));
    let assessment = run.assess(&probe, 250);
    let (_, blocked) = master_down(&assessment);
    assert_eq!(
        blocked,
        &Blocked::NoCandidate { excluded: vec![(name(1), "replica-priority 0".into())] }
    );
    assert!(
        assessment.decisions[0]
            .sentence()
            .ends_with("no replica can take over; 127.0.0.1:7001: replica-priority 0"),
        "{}",
        assessment.decisions[0].sentence()
    );
    assert!(run.assess(&probe, 500).decisions.is_empty(), "reported once");
}

#[test]
fn no_candidate_because_a_link_was_down_too_long_is_reported_once() {
    let mut run = Run::new();
    run.assess(&Probe::healthy(2), 0);
    // The only replica lost its link long before the master died: too stale to promote.
    let probe = |since| {
        Probe::master_dead(2)
            .with(1, |i| i.replication.master_link_down_since_seconds = Some(since))
    };
    let down = run.assess(&probe(100), 250);
    let (_, blocked) = master_down(&down);
    assert!(matches!(blocked, Blocked::NoCandidate { .. }), "{blocked:?}");
    // The next probe sees the same situation: no new report.
    let again = run.assess(&probe(100), 500);
    assert!(again.decisions.is_empty(), "reported again: {:#?}", again.decisions);
}

// ---------------------------------------------------------------------------------------
// A serving master: fencing, repointing, advertising.

#[test]
fn another_instance_claiming_master_is_fenced() {
    let mut run = Run::new();
    let probe = Probe::healthy(3).with(2, |i| *i = master_info(9, 400));
    let assessment = run.assess(&probe, 0);
    let fences: Vec<&HealthDecision> = assessment
        .decisions
        .iter()
        .filter(|d| !matches!(d, HealthDecision::Advertise { .. }))
        .collect();
    assert_eq!(
        fences,
        [&HealthDecision::Fence {
            instance: name(2),
            master: name(0),
            reason: HealthReason::ClaimsMaster { master: name(0) },
        }]
    );
    assert!(
        !assessment.decisions.iter().any(
            |d| matches!(d, HealthDecision::Advertise { instance, .. } if *instance == name(2))
        ),
        "not advertised as anything while it claims master"
    );
    assert!(assessment.master_serving);
}

#[test]
fn a_fenced_instance_is_advertised_fenced_until_it_has_resynced() {
    let mut run = Run::new();
    let claiming = Probe::healthy(3).with(2, |i| *i = master_info(9, 400));
    let assessment = run.assess(&claiming, 0);
    run.apply(&assessment, 0);
    // Repointed, and resyncing.
    let resyncing = Probe::healthy(3).with(2, |i| {
        *i = replica_info(0, 9, 0);
        i.syncing = true;
        i.master_link_up = Some(false);
    });
    let assessment = run.assess(&resyncing, 250);
    assert!(assessment.decisions.is_empty(), "still fenced: {:#?}", assessment.decisions);
    let assessment = run.assess(&Probe::healthy(3), 500);
    assert!(
        matches!(assessment.decisions.as_slice(), [HealthDecision::Advertise { instance, role: Advertised::Replica, .. }] if *instance == name(2)),
        "{:#?}",
        assessment.decisions
    );
}

#[rstest]
#[case::another_master(Some(("10.0.0.9", 6379)), "10.0.0.9:6379")]
#[case::nothing(None, "nothing")]
fn a_replica_of_anything_else_is_repointed(
    #[case] follows: Option<(&str, u16)>,
    #[case] following: &str,
) {
    let mut run = Run::new();
    let probe = Probe::healthy(3).with(1, |i| {
        i.replication.master_host = follows.map(|(host, _)| host.to_owned());
        i.replication.master_port = follows.map(|(_, port)| port);
    });
    let assessment = run.assess(&probe, 0);
    let repoints: Vec<&HealthDecision> = assessment
        .decisions
        .iter()
        .filter(|d| !matches!(d, HealthDecision::Advertise { .. }))
        .collect();
    assert_eq!(
        repoints,
        [&HealthDecision::Repoint {
            instance: name(1),
            master: name(0),
            reason: HealthReason::FollowsOther { following: following.into(), master: name(0) },
        }]
    );
}

#[rstest]
#[case::kept(false, Advertised::Replica)]
#[case::removed(true, Advertised::Lagging)]
fn a_lagging_replica_is_listed_and_taken_out_only_when_the_policy_says(
    #[case] remove: bool,
    #[case] role: Advertised,
) {
    let mut run = Run::with(Health { remove_lagging_replicas: remove, ..Health::default() });
    let probe = Probe::healthy(3).with(0, |i| i.replication.replicas[1].lag = Some(30));
    let assessment = run.assess(&probe, 0);
    assert_eq!(assessment.lagging, [name(2)]);
    let advertised = assessment
        .decisions
        .iter()
        .find_map(|d| match d {
            HealthDecision::Advertise { instance, role, .. } if *instance == name(2) => {
                Some((*role, d.sentence()))
            }
            _ => None,
        })
        .expect("replica 2 advertised");
    assert_eq!(advertised.0, role);
    assert!(advertised.1.contains("30s behind (replicaMaxLag 10s)"), "{}", advertised.1);
}

#[test]
fn a_replica_with_its_link_down_is_lagging() {
    let mut run = Run::with(Health { remove_lagging_replicas: true, ..Health::default() });
    let probe = Probe::healthy(3).with(1, |i| link_down(i, 3));
    let assessment = run.assess(&probe, 0);
    assert_eq!(assessment.lagging, [name(1)]);
    assert!(assessment.decisions.iter().any(|d| matches!(
        d,
        HealthDecision::Advertise { instance, role: Advertised::Lagging, .. } if *instance == name(1)
    )));
}

// ---------------------------------------------------------------------------------------
// After a failover.

#[test]
fn a_new_master_that_stops_answering_gets_down_after_like_any_other() {
    let mut run = Run::new();
    run.assess(&Probe::healthy(3), 0);
    let assessment = run.assess(&Probe::master_dead(3), 100_000);
    assert_eq!(failover(&assessment).1, name(1));
    run.apply(&assessment, 100_000);
    // A probe later instance 1 (just promoted) times out once; instance 2 is resyncing.
    let probe =
        Probe::healthy(3).fail(0, Outcome::Refused).fail(1, Outcome::Timeout).with(2, |i| {
            *i = replica_info(1, 3, 998);
            link_down(i, 0);
        });
    let assessment = run.assess(&probe, 100_250);
    assert!(
        assessment.decisions.is_empty(),
        "failed over again after 250 ms, not downAfter: {:#?}",
        assessment.decisions
    );
}

#[test]
fn after_a_failover_the_new_master_serves_and_the_old_one_is_fenced_when_it_returns() {
    let mut run = Run::new();
    run.assess(&Probe::healthy(3), 0);
    let assessment = run.assess(&Probe::master_dead(3), 250);
    run.apply(&assessment, 250);
    assert_eq!(run.record, Some(MasterRecord::new(name(1), 2)));
    // Instance 1 promoted, 2 repointed; the old master returns still claiming master.
    let mut after = Probe::healthy(3);
    after.samples[1].info = Some(master_info(2, 999));
    after.samples[0].info = Some(master_info(1, 1000));
    after.samples[2].info = Some(replica_info(1, 3, 999));
    let assessment = run.assess(&after, 1000);
    assert!(assessment.master_serving);
    assert!(
        assessment.decisions.contains(&HealthDecision::Fence {
            instance: name(0),
            master: name(1),
            reason: HealthReason::ClaimsMaster { master: name(1) },
        }),
        "{:#?}",
        assessment.decisions
    );
}

#[test]
fn down_after_is_the_policys() {
    // The timeout rule reads the policy's downAfter, not a constant.
    let mut run = Run::with(Health { down_after: secs(1), ..Health::default() });
    run.assess(&Probe::healthy(3), 0);
    let hung = Probe::healthy(3).fail(0, Outcome::Timeout).links_down(0);
    assert!(run.assess(&hung, 999).decisions.is_empty());
    assert_eq!(failover(&run.assess(&hung, 1000)).3.rule, DownRule::Timeout);
}

// ---------------------------------------------------------------------------------------
// One actor at a time: claims on the record and Redis's own FAILOVER.

fn claim(until_ms: i64) -> Claim {
    Claim { from: Some(name(0)), by: "cli:alice@laptop/42".into(), until: at(until_ms) }
}

/// The switchover of issue 11: the record already names instance 1 (at epoch 2, claimed),
/// which still answers as a caught-up replica while `FAILOVER` runs. Without the claim this
/// is exactly the "unfinished promotion" the core would finish with `REPLICAOF NO ONE`.
#[test]
fn a_claimed_record_is_left_alone_until_the_claim_is_released_or_lapses() {
    let mut run = Run::new();
    run.record = Some(MasterRecord { claim: Some(claim(5_000)), ..MasterRecord::new(name(1), 2) });
    let probe = Probe::healthy(3).with(1, |i| i.replication.replica_repl_offset = Some(OFFSET));
    for ms in [0, 1_000, 4_999] {
        let assessment = run.assess(&probe, ms);
        assert!(assessment.decisions.is_empty(), "at {ms} ms: {:#?}", assessment.decisions);
    }
    // Lapsed (its holder died): the ordinary rules apply again.
    let assessment = run.assess(&probe, 5_001);
    assert!(
        matches!(assessment.decisions.as_slice(), [HealthDecision::Promote { instance, epoch: 2, .. }] if *instance == name(1)),
        "{:#?}",
        assessment.decisions
    );
}

#[test]
fn a_master_in_a_redis_failover_is_left_alone_whoever_started_it() {
    let mut run = Run::new();
    run.record = Some(MasterRecord::new(name(1), 2));
    let probe = Probe::healthy(3)
        .with(0, |i| i.replication.failover_in_progress = true)
        .with(1, |i| i.replication.replica_repl_offset = Some(OFFSET));
    let assessment = run.assess(&probe, 0);
    assert!(assessment.decisions.is_empty(), "{:#?}", assessment.decisions);
    let done = probe.with(0, |i| i.replication.failover_in_progress = false);
    assert!(!run.assess(&done, 100).decisions.is_empty(), "decides again once it is over");
}

#[test]
fn the_record_rule_lets_only_the_claim_holder_write_while_it_holds() {
    let claimed = MasterRecord { claim: Some(claim(5_000)), ..MasterRecord::new(name(1), 2) };
    let other = MasterRecord::new(name(2), 3);
    let refused = MasterRecord::advance(Some(&claimed), &other, at(1_000));
    assert!(matches!(refused, Err(RecordRefusal::Busy { .. })), "{refused:?}");
    let message = refused.unwrap_err().to_string();
    assert!(message.contains("cli:alice@laptop/42"), "{message}");
    // Its holder releases it on the same record.
    let mut released = claimed.clone();
    released.claim.as_mut().unwrap().until = at(1_000);
    assert_eq!(
        MasterRecord::advance(Some(&claimed), &released, at(1_000)).unwrap(),
        Some(released.clone())
    );
    // Released or lapsed, anyone may write a higher epoch, never a lower one.
    assert!(MasterRecord::advance(Some(&released), &other, at(1_001)).unwrap().is_some());
    assert!(MasterRecord::advance(Some(&claimed), &other, at(5_001)).unwrap().is_some());
    let stale = MasterRecord::advance(Some(&released), &MasterRecord::new(name(2), 2), at(1_001));
    assert!(matches!(stale, Err(RecordRefusal::StaleEpoch { .. })), "{stale:?}");
}

// ---------------------------------------------------------------------------------------
// A recorded master that is not a member.

#[test]
fn a_recorded_master_that_is_not_a_member_counts_as_gone() {
    let mut run = Run::with(Health { confirm_with_replicas: true, ..Health::default() });
    // Instance 0's pod lost its IP (Pending after a restart): only 1 and 2 are members.
    let mut probe = Probe::healthy(3).links_down(1);
    probe.members.remove(0);
    probe.samples.remove(0);
    let assessment = run.assess(&probe, 0);
    let (from, to, epoch, detection, _) = failover(&assessment);
    assert_eq!((from.as_deref(), to, epoch), (Some(name(0).as_str()), name(1).as_str(), 2));
    assert_eq!(detection.rule, DownRule::Unambiguous);
    assert!(matches!(&detection.evidence, Evidence::Gone(why) if why.contains("not a member")));
}

#[test]
fn a_recorded_master_not_a_member_without_confirmation_waits_for_down_after() {
    let mut run = Run::with(Health { confirm_with_replicas: false, ..Health::default() });
    let mut probe = Probe::healthy(3).links_down(1);
    probe.members.remove(0);
    probe.samples.remove(0);
    let down_after = i64::try_from(run.health.down_after.as_millis()).unwrap();
    let first = run.assess(&probe, 0);
    assert!(
        first.decisions.iter().all(|d| matches!(d, HealthDecision::Detach { .. })),
        "{first:#?}"
    );
    run.apply(&first, 0);
    let assessment = run.assess(&probe, down_after);
    assert_eq!(failover(&assessment).3.rule, DownRule::Timeout);
}

// ---------------------------------------------------------------------------------------
// Replicas of a dead master are detached until it is decided on.

#[test]
fn replicas_of_a_refused_master_are_detached_once_and_repointed_when_it_serves_again() {
    let mut run = Run::with(Health { confirm_with_replicas: false, ..Health::default() });
    // Refused, and every replica reports the link down: not yet down without confirmation.
    let probe = Probe::master_dead(3);
    let first = run.assess(&probe, 0);
    let detached: Vec<&str> = first
        .decisions
        .iter()
        .map(|d| match d {
            HealthDecision::Detach { instance, master, reason } => {
                assert_eq!(*master, name(0));
                assert!(reason.to_string().contains("refuses connections"), "{reason}");
                instance.as_str()
            }
            other => panic!("expected only detaches, got {other:#?}"),
        })
        .collect();
    assert_eq!(detached, [name(1), name(2)]);
    run.apply(&first, 0);
    // Detached: each now follows its own address, link down.
    let own = |i: usize| {
        move |info: &mut Info| {
            info.replication.master_port = Some(port(i));
            link_down(info, 0);
        }
    };
    let probe = probe.with(1, own(1)).with(2, own(2));
    let again = run.assess(&probe, 250);
    assert!(again.decisions.is_empty(), "detached once: {again:#?}");
    // The same process answers again with its data: the replicas follow it again.
    let back = Probe::healthy(3).with(1, own(1)).with(2, own(2));
    let assessment = run.assess(&back, 500);
    let repointed: Vec<&str> = assessment
        .decisions
        .iter()
        .filter_map(|d| match d {
            HealthDecision::Repoint { instance, .. } => Some(instance.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(repointed, [name(1), name(2)]);
}

#[test]
fn a_timed_out_master_is_not_detached_from() {
    let mut run = Run::new();
    let probe = Probe::healthy(3).fail(0, Outcome::Timeout);
    assert!(run.assess(&probe, 0).decisions.is_empty());
}

#[test]
fn a_master_restarted_empty_as_a_master_is_said_to_answer_as_a_master() {
    let mut run = Run::new();
    run.assess(&Probe::healthy(3), 0);
    let probe = Probe::healthy(3).with(0, |i| {
        i.server.run_id = Some(run_id(99));
        with_keys(i, 0);
    });
    let assessment = run.assess(&probe, 100);
    let reason = assessment.decisions[0].sentence();
    assert!(
        reason.contains(
            "answers as a master holding 0 keys while another instance holds 100 after restarting"
        ),
        "{reason}"
    );
}

/// Clients may write into a master that restarted empty before any probe sees it: a few keys
/// do not make it the holder of the data.
#[test]
fn a_master_restarted_holding_a_few_fresh_keys_is_still_down() {
    let mut run = Run::new();
    run.assess(&Probe::healthy(3), 0);
    let probe = Probe::healthy(3).with(0, |i| {
        i.server.run_id = Some(run_id(99));
        with_keys(i, 3);
    });
    let assessment = run.assess(&probe, 100);
    let (_, to, _, detection, _) = failover(&assessment);
    assert_eq!(to, name(1));
    assert_eq!(detection.rule, DownRule::RestartedEmpty);
    // The same counts without a restart are an ordinary serving master.
    let mut steady = Run::new();
    steady.assess(&Probe::healthy(3), 0);
    let fewer = Probe::healthy(3).with(0, |i| with_keys(i, 3));
    assert!(steady.assess(&fewer, 100).master_serving);
}
