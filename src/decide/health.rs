//! Health: is the recorded master serving, and if not, which instance takes over; which
//! instances must be fenced or repointed; how each is advertised. Pure like the rest of the
//! core: one health probe of every member, the durable master record and `now` in, decisions
//! with their reasons out.
//!
//! # When the master is down
//!
//! The recorded master *serves* when its probe answers and it reports `role:master`. Let
//! `failing` be the time since it last served (since this daemon's first probe if it never
//! did). It is declared down when any of these holds:
//!
//! 1. **Restarted without its data**: it answers with a new run id holding fewer keys than
//!    another instance (or, after a daemon restart, holding none while another holds some).
//!    Immediately: its replicas would otherwise resync from it and lose everything. Fewer, not
//!    none: clients may write a few keys into it before any probe sees it.
//! 2. **Unambiguous death** (only with `confirmWithReplicas`): its connection is refused or the
//!    backend reports it gone, at least one replica is reachable, and every reachable replica
//!    reports its master link down. Immediately.
//! 3. **Timeout**: `failing >= downAfter`, and, with `confirmWithReplicas`, no reachable replica
//!    still hears from it (link up with `master_last_io_seconds_ago` below `downAfter`): a
//!    master only this daemon cannot reach is partitioned from the daemon, not down.
//!
//! A recorded master that answers as a *replica* while holding the most data is not down but
//! unfinished: the daemon stopped between recording and promoting it, and [`Decision::Promote`]
//! resumes.
//!
//! # Who takes over
//!
//! As Sentinel chooses: replicas that are reachable, not syncing, not priority 0, whose link
//! has not been down for longer than `failing + 10 x downAfter`, that were no more than
//! `replicaMaxLag` behind while the master served, and that hold data when anyone does; then
//! lowest `replica-priority`, highest replication offset, smallest run id.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::time::Duration;

use serde::Serialize;

use super::Decision;
use crate::model::{Advertised, MasterRecord, Member};
use crate::observe::{Info, InstanceId, InstanceSample, Outcome, RedisId, Role, Timestamp};
use crate::policy::{FailoverMode, Health};

/// What one health probe saw: the members, one sample each (same order), and the record.
#[derive(Debug, Clone, Copy)]
pub struct HealthInput<'a> {
    pub record: Option<&'a MasterRecord>,
    pub members: &'a [Member],
    pub samples: &'a [InstanceSample],
}

/// What the health core remembers between probes. Owned by the caller.
#[derive(Debug, Clone, Default)]
pub struct HealthMemory {
    /// The master record and when this daemon first saw it: the start of `failing` when the
    /// recorded master has not served since (a daemon restart, a new record).
    record_seen: Option<(MasterRecord, Timestamp)>,
    /// The master record and when it last served.
    last_serving: Option<(MasterRecord, Timestamp)>,
    /// Each instance's last run id: a new one means the process restarted.
    run_ids: HashMap<InstanceId, RedisId>,
    /// Each replica's lag in seconds as the master last reported it.
    lag: HashMap<InstanceId, u64>,
    /// When failovers were applied, for `maxFailoversPerHour`.
    failovers: VecDeque<Timestamp>,
    /// What each instance is advertised as, once applied.
    advertised: HashMap<InstanceId, Advertised>,
    /// Instances that restarted with no data and have held none since: never promotable while
    /// another holds data, however many probes ago the restart was seen.
    empty_since_restart: HashSet<InstanceId>,
    /// Instances whose run id changed since they were last recorded master: a recorded
    /// master among them holding less than another instance restarted without its data
    /// (clients may already have written a few keys into it).
    restarted: HashSet<InstanceId>,
    /// Instances fenced and not yet resynced.
    fenced: HashSet<InstanceId>,
    /// The last "master down, no failover" report, so that it is made once per change.
    reported: Option<String>,
    /// Replicas detached from a master that stopped answering (by replica), and from which
    /// master: they keep their data whatever restarts on its address.
    detached: HashMap<InstanceId, InstanceId>,
}

impl HealthMemory {
    /// Records an applied failover (counted against `maxFailoversPerHour`).
    pub fn record_failover(&mut self, at: Timestamp) {
        self.failovers.push_back(at);
    }

    /// Records that `instance` is now advertised as `role`.
    pub fn record_advertised(&mut self, instance: &str, role: Advertised) {
        self.advertised.insert(instance.to_owned(), role);
    }

    /// Records that `instance` was detached from `master`.
    pub fn record_detached(&mut self, instance: &str, master: &str) {
        self.detached.insert(instance.to_owned(), master.to_owned());
    }

    /// Records that `instance` was fenced: advertised as such until it has resynced.
    pub fn record_fenced(&mut self, instance: &str) {
        self.fenced.insert(instance.to_owned());
    }

    /// How many failovers were applied in the hour before `now`.
    fn failovers_within_hour(&mut self, now: Timestamp) -> usize {
        while self.failovers.front().is_some_and(|at| now - *at > chrono::TimeDelta::hours(1)) {
            self.failovers.pop_front();
        }
        self.failovers.len()
    }
}

/// One instance as a health probe saw it.
#[derive(Debug, Clone, Copy)]
struct Seen<'a> {
    member: &'a Member,
    outcome: &'a Outcome,
    info: Option<&'a Info>,
}

impl Seen<'_> {
    fn id(&self) -> &str {
        &self.member.id
    }

    /// Answering, and not reported gone by the backend.
    fn answering(&self) -> Option<&Info> {
        self.info.filter(|_| self.member.gone.is_none())
    }

    /// Its replication offset: how much of the write history it holds.
    fn offset(&self) -> u64 {
        self.info.map_or(0, |info| {
            let replication = &info.replication;
            match info.role {
                Role::Replica => replication.replica_repl_offset,
                Role::Master => replication.master_repl_offset,
            }
            .or(replication.master_repl_offset)
            .unwrap_or(0)
        })
    }

    fn keys(&self) -> u64 {
        self.info.map_or(0, |info| info.keyspace.iter().map(|db| db.keys).sum())
    }

    /// Holds keys. Not the offset: a replica that never linked up reports an offset of 1.
    fn holds_data(&self) -> bool {
        self.keys() > 0
    }

    /// Whether it replicates `master`'s endpoint.
    fn follows(&self, master: &Member) -> bool {
        self.info.is_some_and(|info| {
            info.role == Role::Replica
                && info.replication.master_port == Some(master.endpoint.port)
                && info.replication.master_host.as_deref() == Some(master.endpoint.host.as_str())
        })
    }

    /// How it failed, strongest evidence first.
    fn failure(&self) -> Evidence {
        if let Some(why) = &self.member.gone {
            return Evidence::Gone(why.clone());
        }
        match self.outcome {
            Outcome::Ok => Evidence::NotMaster,
            Outcome::Refused => Evidence::Refused,
            other => Evidence::NoAnswer(other.to_string()),
        }
    }
}

/// Why the recorded master is not serving.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "probe", content = "detail", rename_all = "camelCase")]
pub enum Evidence {
    /// The backend reports its process or pod gone.
    Gone(String),
    /// Connection refused: nothing listens.
    Refused,
    /// Timed out or failed otherwise: maybe dead, maybe slow or partitioned.
    NoAnswer(String),
    /// It answers, but as a replica.
    NotMaster,
    /// It answers (as `role`), having restarted, holding `keys` keys while another instance
    /// holds `most_elsewhere`: its data did not survive the restart.
    Restarted { role: String, keys: u64, most_elsewhere: u64 },
}

impl Evidence {
    /// Refused or gone: the process is not there.
    fn unambiguous(&self) -> bool {
        matches!(self, Evidence::Gone(_) | Evidence::Refused)
    }
}

impl fmt::Display for Evidence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Evidence::Gone(why) => write!(f, "is gone ({why})"),
            Evidence::Refused => f.write_str("refuses connections"),
            Evidence::NoAnswer(why) => write!(f, "does not answer ({why})"),
            Evidence::NotMaster => f.write_str("answers as a replica"),
            Evidence::Restarted { role, keys, most_elsewhere } => write!(
                f,
                "answers as a {role} holding {keys} keys while another instance holds \
                 {most_elsewhere}"
            ),
        }
    }
}

/// Which part of the detection rule declared the master down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum DownRule {
    RestartedEmpty,
    Unambiguous,
    Timeout,
}

/// The evidence that the master is down.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Detection {
    pub master: InstanceId,
    pub evidence: Evidence,
    pub rule: DownRule,
    /// Time since it last served, in milliseconds.
    pub failing_ms: u64,
    pub down_after_ms: u64,
    /// Its replicas this probe reached, and how many of them report the link down.
    pub replicas_reachable: usize,
    pub replicas_link_down: usize,
}

impl fmt::Display for Detection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let failing = humantime::format_duration(Duration::from_millis(self.failing_ms));
        write!(f, "master {} {}", self.master, self.evidence)?;
        match self.rule {
            DownRule::RestartedEmpty => f.write_str(" after restarting without its data"),
            DownRule::Unambiguous => write!(
                f,
                " and all {} reachable replicas report the link down (after {failing})",
                self.replicas_reachable
            ),
            DownRule::Timeout => write!(
                f,
                " for {failing} (downAfter {}; {} of {} reachable replicas report the link down)",
                humantime::format_duration(Duration::from_millis(self.down_after_ms)),
                self.replicas_link_down,
                self.replicas_reachable
            ),
        }
    }
}

/// A replica in the running for master.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Candidate {
    pub instance: InstanceId,
    pub ordinal: u16,
    pub priority: u32,
    pub offset: u64,
    pub run_id: Option<String>,
}

/// The choice of a new master and every instance passed over, with why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Choice {
    pub chosen: Candidate,
    /// Candidates that ranked lower.
    pub outranked: Vec<Candidate>,
    /// Instances that could not take over, and why.
    pub excluded: Vec<(InstanceId, String)>,
}

impl fmt::Display for Choice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.chosen;
        write!(f, "chose {} (priority {}, offset {}", c.instance, c.priority, c.offset)?;
        if let Some(run_id) = &c.run_id {
            write!(f, ", run id {}", &run_id[..run_id.len().min(8)])?;
        }
        f.write_str(")")?;
        for other in &self.outranked {
            write!(
                f,
                "; {} ranks lower (priority {}, offset {})",
                other.instance, other.priority, other.offset
            )?;
        }
        for (instance, why) in &self.excluded {
            write!(f, "; {instance} excluded: {why}")?;
        }
        Ok(())
    }
}

/// Why no failover follows a detection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "blocked", rename_all = "camelCase")]
pub enum Blocked {
    /// `failover: manual`: a human runs `redis-autopilot failover`.
    Manual,
    /// `failover: off`.
    Off,
    /// `maxFailoversPerHour` reached.
    RateLimited { failovers: usize, max: u32 },
    /// No replica can take over.
    NoCandidate { excluded: Vec<(InstanceId, String)> },
    /// The target's roles cannot be changed (static endpoints).
    ObserveOnly,
}

impl Blocked {
    /// What blocks, without the numbers that change from probe to probe: reported again only
    /// when this changes.
    fn key(&self) -> String {
        match self {
            Blocked::Manual => "manual".into(),
            Blocked::Off => "off".into(),
            Blocked::RateLimited { .. } => "rate_limited".into(),
            Blocked::ObserveOnly => "observe_only".into(),
            Blocked::NoCandidate { excluded } => {
                let ids: Vec<&str> = excluded.iter().map(|(id, _)| id.as_str()).collect();
                format!("no_candidate:{}", ids.join(","))
            }
        }
    }
}

impl fmt::Display for Blocked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Blocked::Manual => f.write_str("failover is manual: run `redis-autopilot failover`"),
            Blocked::Off => f.write_str("failover is off"),
            Blocked::RateLimited { failovers, max } => write!(
                f,
                "{failovers} failovers in the last hour reached maxFailoversPerHour {max}: waiting for a human"
            ),
            Blocked::NoCandidate { excluded } => {
                f.write_str("no replica can take over")?;
                for (instance, why) in excluded {
                    write!(f, "; {instance}: {why}")?;
                }
                Ok(())
            }
            Blocked::ObserveOnly => f.write_str("this target's roles are observed, not managed"),
        }
    }
}

/// Why a health decision was made; renders to one sentence.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "why", rename_all = "camelCase")]
pub enum HealthReason {
    /// No master is recorded: the first is chosen.
    Bootstrap { choice: Choice },
    /// No master is recorded and one instance already serves as master: it is kept.
    Adopt { offset: u64 },
    /// The master is down.
    Down { detection: Detection, choice: Choice },
    /// The master is down and no failover follows.
    DownBlocked { detection: Detection, blocked: Blocked },
    /// The recorded master answers as a replica but holds the most data: promote it.
    Unfinished { offset: u64 },
    /// Claims master without being the recorded one.
    ClaimsMaster { master: InstanceId },
    /// Replicates something other than the recorded master.
    FollowsOther { following: String, master: InstanceId },
    /// What the instance is advertised as now follows what it does.
    Role { role: Advertised, detail: String },
    /// A human asked for it (`redis-autopilot failover`).
    Requested { choice: Choice, graceful: bool },
    /// The master's process is not there: its replica stops following it.
    Detach { master: InstanceId, evidence: Evidence },
}

impl fmt::Display for HealthReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HealthReason::Bootstrap { choice } => write!(f, "no master is recorded: {choice}"),
            HealthReason::Adopt { offset } => write!(
                f,
                "no master is recorded and this instance already serves as master (offset {offset}): keeping it"
            ),
            HealthReason::Down { detection, choice } => write!(f, "{detection}: {choice}"),
            HealthReason::DownBlocked { detection, blocked } => write!(f, "{detection}: {blocked}"),
            HealthReason::Unfinished { offset } => write!(
                f,
                "the recorded master answers as a replica but holds the most data (offset {offset}): \
                 finishing its promotion"
            ),
            HealthReason::ClaimsMaster { master } => {
                write!(f, "claims master, but {master} is the recorded master: fencing")
            }
            HealthReason::FollowsOther { following, master } => {
                write!(f, "replicates {following}, but {master} is the recorded master")
            }
            HealthReason::Role { role, detail } => write!(f, "{}: {detail}", role.as_str()),
            HealthReason::Detach { master, evidence } => write!(
                f,
                "master {master} {evidence}: detaching its replica until the master is decided \
                 on, so that it cannot resync from whatever restarts there holding no data"
            ),
            HealthReason::Requested { choice, graceful } => {
                let how = if *graceful { "switchover" } else { "failover" };
                write!(f, "{how} requested: {choice}")
            }
        }
    }
}

/// What a health probe concluded.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Assessment {
    pub decisions: Vec<Decision>,
    /// The recorded master serves writes.
    pub master_serving: bool,
    /// Replicas beyond `replicaMaxLag` (marked whether or not they are taken out).
    pub lagging: Vec<InstanceId>,
}

/// Assesses one health probe. `manage` is false for targets whose roles are only observed.
pub fn assess(
    health: &Health,
    input: HealthInput<'_>,
    memory: &mut HealthMemory,
    manage: bool,
    now: Timestamp,
) -> Assessment {
    if let Some(record) = input.record
        && memory.record_seen.as_ref().is_none_or(|(seen, _)| seen != record)
    {
        // Newly recorded: whatever it was before, it starts afresh as master.
        if memory.record_seen.as_ref().is_none_or(|(seen, _)| seen.instance != record.instance) {
            memory.restarted.remove(&record.instance);
        }
        memory.record_seen = Some((record.clone(), now));
    }
    // A recorded master that is not a member (a pod with no IP, Pending, or removed while
    // the daemon was down) is judged as a deleted pod is: present, and gone.
    let absent = input.record.filter(|r| !input.members.iter().any(|m| m.id == r.instance));
    let (members, samples);
    let input = match absent {
        None => input,
        Some(record) => {
            members = [input.members, &[absent_member(&record.instance)]].concat();
            samples = [input.samples, &[absent_sample(&record.instance)]].concat();
            HealthInput { record: input.record, members: &members, samples: &samples }
        }
    };
    let seen = see(input, memory);
    let mut assessment = Assessment::default();
    // Someone is changing roles: a claim on the record, or Redis itself in a `FAILOVER`.
    // Acting now would race them (finish "their" promotion, fence "their" new master), so
    // nothing is decided until they are done or their claim lapses.
    let claimed = input.record.and_then(|r| r.active_claim(now));
    let switching = seen
        .iter()
        .find(|s| s.answering().is_some_and(|info| info.replication.failover_in_progress));
    if claimed.is_some() || switching.is_some() {
        assessment.master_serving = input.record.is_some_and(|record| {
            seen.iter().any(|s| {
                s.id() == record.instance && s.answering().is_some_and(|i| i.role == Role::Master)
            })
        });
        return assessment;
    }
    let Some(record) = input.record else {
        if manage && health.failover != FailoverMode::Off {
            assessment.decisions.extend(bootstrap(health, &seen));
        }
        return assessment;
    };
    let Some(master) = seen.iter().find(|s| s.id() == record.instance) else {
        // Not reached: an absent recorded master was added as gone above.
        return assessment;
    };
    let serving = master.answering().is_some_and(|info| info.role == Role::Master);
    let any_holder = seen.iter().any(|s| s.id() != master.id() && s.holds_data());
    let most_elsewhere = seen.iter().filter(|s| s.id() != master.id()).map(Seen::keys).max();
    let behind = most_elsewhere.is_some_and(|most| master.keys() < most);
    let restarted_empty = master.answering().is_some()
        && behind
        && any_holder
        && (memory.restarted.contains(master.id())
            || (memory.last_serving.is_none() && !master.holds_data()));
    if serving && !restarted_empty {
        memory.last_serving = Some((record.clone(), now));
        memory.reported = None;
        memory.detached.clear();
        assessment.master_serving = true;
        remember_lags(master, &seen, memory);
        if manage && health.failover != FailoverMode::Off {
            reconcile(health, master.member, &seen, memory, &mut assessment);
        }
        return assessment;
    }
    let since = match (&memory.last_serving, &memory.record_seen) {
        (Some((served, at)), _) if served == record => *at,
        (_, Some((_, seen))) => *seen,
        (_, None) => now,
    };
    let failing = (now - since).to_std().unwrap_or_default();
    // Unfinished promotion: the record names it, it holds the most data, nothing else serves.
    if !restarted_empty
        && master.answering().is_some_and(|info| info.role == Role::Replica)
        && !seen.iter().any(|s| s.id() != master.id() && s.offset() > master.offset())
    {
        if manage && health.failover != FailoverMode::Off {
            assessment.decisions.push(Decision::Promote {
                instance: master.id().to_owned(),
                epoch: record.epoch,
                reason: HealthReason::Unfinished { offset: master.offset() },
            });
        }
        return assessment;
    }
    // Its replicas: those that follow it. A master that is not a member has no address to
    // compare with: its replicas are those that follow no member.
    let follows_master = |s: &Seen<'_>| match absent {
        None => s.follows(master.member),
        Some(_) => {
            s.info.is_some_and(|i| i.role == Role::Replica && i.replication.master_port.is_some())
                && !seen.iter().any(|other| s.follows(other.member))
        }
    };
    let replicas: Vec<&Seen> = seen
        .iter()
        .filter(|s| s.id() != master.id() && s.answering().is_some() && follows_master(s))
        .collect();
    let link_down =
        replicas.iter().filter(|s| s.info.is_some_and(|i| i.master_link_up != Some(true))).count();
    let heard = replicas.iter().any(|s| {
        s.info.is_some_and(|i| {
            i.master_link_up == Some(true)
                && i.replication
                    .master_last_io_seconds_ago
                    .is_some_and(|ago| Duration::from_secs(ago) < health.down_after)
        })
    });
    let evidence = match master.answering() {
        Some(info) if restarted_empty => Evidence::Restarted {
            role: info.role.as_str().to_owned(),
            keys: master.keys(),
            most_elsewhere: most_elsewhere.unwrap_or(0),
        },
        _ => master.failure(),
    };
    let rule = if restarted_empty {
        Some(DownRule::RestartedEmpty)
    } else if health.confirm_with_replicas
        && evidence.unambiguous()
        && !replicas.is_empty()
        && link_down == replicas.len()
    {
        Some(DownRule::Unambiguous)
    } else if failing >= health.down_after && !(health.confirm_with_replicas && heard) {
        Some(DownRule::Timeout)
    } else {
        None
    };
    let Some(rule) = rule else {
        if manage && health.failover != FailoverMode::Off && !heard {
            detach(master, &evidence, &replicas, &memory.detached, &mut assessment);
        }
        return assessment;
    };
    let detection = Detection {
        master: master.id().to_owned(),
        evidence,
        rule,
        failing_ms: millis(failing),
        down_after_ms: millis(health.down_after),
        replicas_reachable: replicas.len(),
        replicas_link_down: link_down,
    };
    let blocked = if !manage {
        Some(Blocked::ObserveOnly)
    } else {
        match health.failover {
            FailoverMode::Off => Some(Blocked::Off),
            FailoverMode::Manual => Some(Blocked::Manual),
            FailoverMode::Auto => {
                let failovers = memory.failovers_within_hour(now);
                (failovers >= health.max_failovers_per_hour as usize).then_some(
                    Blocked::RateLimited { failovers, max: health.max_failovers_per_hour },
                )
            }
        }
    };
    let choice = match blocked {
        Some(blocked) => Err(blocked),
        None => choose(health, &seen, Some(master.id()), failing, memory)
            .map_err(|excluded| Blocked::NoCandidate { excluded }),
    };
    match choice {
        Ok(choice) => {
            memory.reported = None;
            assessment.decisions.push(Decision::Failover {
                from: Some(master.id().to_owned()),
                to: choice.chosen.instance.clone(),
                epoch: record.epoch + 1,
                reason: HealthReason::Down { detection, choice },
            });
        }
        Err(blocked) => {
            let reason = HealthReason::DownBlocked { detection, blocked };
            // Once per change of what blocks it: the probe runs several times a second.
            let summary = match &reason {
                HealthReason::DownBlocked { blocked, .. } => blocked.key(),
                _ => String::new(),
            };
            if memory.reported.as_ref() != Some(&summary) {
                memory.reported = Some(summary);
                assessment
                    .decisions
                    .push(Decision::MasterDown { master: master.id().to_owned(), reason });
            }
        }
    }
    assessment
}

/// Ranks the instances that could succeed `master` for a failover a human asked for
/// (`redis-autopilot failover`): the same exclusions and order as an automatic one, with no
/// memory of earlier probes. `Err` lists every instance with why it cannot take over.
pub fn successor(
    health: &Health,
    input: HealthInput<'_>,
    master: Option<&str>,
) -> Result<Choice, Vec<(InstanceId, String)>> {
    let mut memory = HealthMemory::default();
    let seen = see(input, &mut memory);
    choose(health, &seen, master, Duration::ZERO, &memory)
}

/// Ranks the candidates to succeed `master` (`None`: any instance, for bootstrap). `Err` lists
/// every instance with why it cannot take over.
fn choose(
    health: &Health,
    seen: &[Seen<'_>],
    master: Option<&str>,
    failing: Duration,
    memory: &HealthMemory,
) -> Result<Choice, Vec<(InstanceId, String)>> {
    let holder = seen.iter().find(|s| Some(s.id()) != master && s.holds_data()).map(|s| s.id());
    let mut candidates = Vec::new();
    let mut excluded = Vec::new();
    for s in seen.iter().filter(|s| Some(s.id()) != master) {
        match exclusion(health, s, holder, failing, memory) {
            Some(why) => excluded.push((s.id().to_owned(), why)),
            None => candidates.push(candidate(s)),
        }
    }
    candidates.sort_by(|a, b| {
        a.priority
            .cmp(&b.priority)
            .then(b.offset.cmp(&a.offset))
            .then_with(|| a.run_id.cmp(&b.run_id))
    });
    let mut ranked = candidates.into_iter();
    match ranked.next() {
        Some(chosen) => Ok(Choice { chosen, outranked: ranked.collect(), excluded }),
        None => Err(excluded),
    }
}

fn candidate(s: &Seen<'_>) -> Candidate {
    Candidate {
        instance: s.id().to_owned(),
        ordinal: s.member.ordinal,
        priority: s.info.and_then(|i| i.replication.replica_priority).unwrap_or(100),
        offset: s.offset(),
        run_id: s.info.and_then(|i| i.server.run_id).map(|id| id.to_string()),
    }
}

/// Why `s` cannot take over, if it cannot.
fn exclusion(
    health: &Health,
    s: &Seen<'_>,
    holder: Option<&str>,
    failing: Duration,
    memory: &HealthMemory,
) -> Option<String> {
    if let Some(why) = &s.member.gone {
        return Some(format!("gone ({why})"));
    }
    let Some(info) = s.info else {
        return Some(format!("not reachable ({})", s.outcome));
    };
    if info.role == Role::Master {
        return Some("claims master without being recorded".into());
    }
    if info.replication.replica_priority == Some(0) {
        return Some("replica-priority 0".into());
    }
    if info.syncing {
        return Some("still syncing".into());
    }
    let stale = failing + health.down_after * 10;
    if let Some(down) = info.replication.master_link_down_since_seconds
        && Duration::from_secs(down) > stale
    {
        return Some(format!(
            "link down for {down}s (more than {})",
            humantime::format_duration(stale)
        ));
    }
    if let Some(&lag) = memory.lag.get(s.id())
        && Duration::from_secs(lag) > health.replica_max_lag
    {
        return Some(format!(
            "{lag}s behind while the master served (replicaMaxLag {})",
            humantime::format_duration(health.replica_max_lag)
        ));
    }
    if !s.holds_data()
        && let Some(holder) = holder
    {
        return Some(format!("holds no data while {holder} does"));
    }
    None
}

/// Pairs members with samples and notes restarts (a run id that changed).
fn see<'a>(input: HealthInput<'a>, memory: &mut HealthMemory) -> Vec<Seen<'a>> {
    input
        .members
        .iter()
        .zip(input.samples)
        .map(|(member, sample)| {
            let info = sample.info.as_ref().filter(|_| sample.outcome == Outcome::Ok);
            let run_id = info.and_then(|i| i.server.run_id);
            let restarted = match run_id {
                Some(id) => {
                    memory.run_ids.insert(member.id.clone(), id).is_some_and(|old| old != id)
                }
                None => false,
            };
            let seen = Seen { member, outcome: &sample.outcome, info };
            if restarted {
                memory.restarted.insert(member.id.clone());
            }
            if seen.holds_data() {
                memory.empty_since_restart.remove(&member.id);
            } else if restarted {
                memory.empty_since_restart.insert(member.id.clone());
            }
            seen
        })
        .collect()
}

/// No master is recorded: keep the one instance already serving as master, or choose one.
fn bootstrap(health: &Health, seen: &[Seen<'_>]) -> Option<Decision> {
    let masters: Vec<&Seen> =
        seen.iter().filter(|s| s.answering().is_some_and(|i| i.role == Role::Master)).collect();
    if let Some(best) =
        masters.iter().max_by_key(|s| (s.offset(), std::cmp::Reverse(s.member.ordinal)))
    {
        return Some(Decision::Failover {
            from: None,
            to: best.id().to_owned(),
            epoch: 1,
            reason: HealthReason::Adopt { offset: best.offset() },
        });
    }
    // Nothing serves yet, so there is no `downAfter` to wait for: promote at once. When no
    // instance holds data, any will do: the lowest ordinal, so a new fleet's first master is
    // predictable (instance 0, pod-0) rather than whichever has the smallest random run id.
    let mut choice = choose(health, seen, None, Duration::ZERO, &HealthMemory::default()).ok()?;
    if !seen.iter().any(|s| s.holds_data()) {
        let mut all: Vec<Candidate> =
            std::iter::once(choice.chosen).chain(choice.outranked).collect();
        all.sort_by_key(|c| (c.priority, c.ordinal));
        let mut ranked = all.into_iter();
        choice.chosen = ranked.next()?;
        choice.outranked = ranked.collect();
    }
    Some(Decision::Failover {
        from: None,
        to: choice.chosen.instance.clone(),
        epoch: 1,
        reason: HealthReason::Bootstrap { choice },
    })
}

/// The master serves: record what it says of its replicas' lag.
fn remember_lags(master: &Seen<'_>, seen: &[Seen<'_>], memory: &mut HealthMemory) {
    let Some(info) = master.info else { return };
    for replica in &info.replication.replicas {
        let Some(lag) = replica.lag else { continue };
        if let Some(s) = seen.iter().find(|s| {
            s.member.endpoint.port == replica.port && s.member.endpoint.host == replica.ip
        }) {
            memory.lag.insert(s.id().to_owned(), lag);
        }
    }
}

/// The master serves: fence other masters, repoint strays, and advertise what each does.
fn reconcile(
    health: &Health,
    master: &Member,
    seen: &[Seen<'_>],
    memory: &mut HealthMemory,
    assessment: &mut Assessment,
) {
    for s in seen {
        let Some(info) = s.answering() else { continue };
        let role = if s.id() == master.id {
            Some((Advertised::Master, "the recorded master, serving".to_owned()))
        } else if info.role == Role::Master {
            assessment.decisions.push(Decision::Fence {
                instance: s.id().to_owned(),
                master: master.id.clone(),
                reason: HealthReason::ClaimsMaster { master: master.id.clone() },
            });
            None
        } else if !s.follows(master) {
            let replication = &info.replication;
            let following = match (&replication.master_host, replication.master_port) {
                (Some(host), Some(port)) => format!("{host}:{port}"),
                _ => "nothing".to_owned(),
            };
            assessment.decisions.push(Decision::Repoint {
                instance: s.id().to_owned(),
                master: master.id.clone(),
                reason: HealthReason::FollowsOther { following, master: master.id.clone() },
            });
            None
        } else {
            Some(replica_role(health, s, info, memory, assessment))
        };
        let Some((role, detail)) = role else { continue };
        if memory.advertised.get(s.id()) != Some(&role) {
            assessment.decisions.push(Decision::Advertise {
                instance: s.id().to_owned(),
                role,
                reason: HealthReason::Role { role, detail },
            });
        }
    }
}

/// How a replica of the recorded master is advertised.
fn replica_role(
    health: &Health,
    s: &Seen<'_>,
    info: &Info,
    memory: &mut HealthMemory,
    assessment: &mut Assessment,
) -> (Advertised, String) {
    let ready = info.master_link_up == Some(true) && !info.syncing;
    if memory.fenced.contains(s.id()) {
        if !ready {
            return (Advertised::Fenced, "fenced, resyncing from the recorded master".into());
        }
        memory.fenced.remove(s.id());
    }
    let lag = memory.lag.get(s.id()).copied();
    let behind = if !ready {
        Some("link down or syncing".to_owned())
    } else {
        lag.filter(|&lag| Duration::from_secs(lag) > health.replica_max_lag).map(|lag| {
            format!(
                "{lag}s behind (replicaMaxLag {})",
                humantime::format_duration(health.replica_max_lag)
            )
        })
    };
    match behind {
        Some(why) => {
            assessment.lagging.push(s.id().to_owned());
            if health.remove_lagging_replicas {
                (Advertised::Lagging, why)
            } else {
                (Advertised::Replica, format!("lagging, kept in the replica set: {why}"))
            }
        }
        None => (Advertised::Replica, "linked up to the recorded master".into()),
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// The recorded master's process is not there (refused, gone), no replica still hears from it,
/// and no failover was decided yet: each replica following it stops, replicating its own address instead (a
/// read-only replica with its link down that keeps its data and feeds no one). Otherwise a
/// master that restarts empty on the same address, as a master, would be fully resynced by
/// every replica within a second, before any probe could see that it holds nothing. It costs
/// a master that comes back with its data one partial resync: reconcile repoints them.
fn detach(
    master: &Seen<'_>,
    evidence: &Evidence,
    replicas: &[&Seen<'_>],
    memory: &HashMap<InstanceId, InstanceId>,
    assessment: &mut Assessment,
) {
    if !evidence.unambiguous() {
        return;
    }
    for replica in replicas {
        if memory.get(replica.id()).is_some_and(|from| from == master.id()) {
            continue;
        }
        assessment.decisions.push(Decision::Detach {
            instance: replica.id().to_owned(),
            master: master.id().to_owned(),
            reason: HealthReason::Detach {
                master: master.id().to_owned(),
                evidence: evidence.clone(),
            },
        });
    }
}

/// The stand-in for a recorded master that is not a member.
fn absent_member(instance: &str) -> Member {
    Member {
        id: instance.to_owned(),
        endpoint: crate::model::Endpoint { id: instance.to_owned(), host: String::new(), port: 0 },
        ordinal: u16::MAX,
        gone: Some("not a member of the deployment (a pod with no IP yet, or removed)".into()),
    }
}

fn absent_sample(instance: &str) -> InstanceSample {
    InstanceSample {
        id: instance.to_owned(),
        outcome: Outcome::Unreachable("not a member".into()),
        info: None,
    }
}
