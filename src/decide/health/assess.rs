//! The walk over one health probe: does the recorded master serve, and if not, is it down
//! and by which rule; then what follows: a failover to whom [`super::choice`] ranks first,
//! finishing an unfinished promotion, detaching replicas, a report that nothing is done, or,
//! while the master serves, fencing, repointing and advertising the others.
//!
//! # When the master is down
//!
//! The recorded master *serves* when its probe answers and it reports `role:master`. Let
//! `failing` be the time since it last served (since this daemon's first probe if it never
//! did; for the choice of a successor then, at least as long as the freshest replica has been
//! without it, [`super::choice::lost_for`]). It is declared down when any of these holds:
//!
//! 1. **Restarted without its data**: it answers with a new run id holding fewer keys than
//!    another instance (or, after a daemon restart, holding none while another holds some).
//!    Immediately: its replicas would otherwise resync from it and lose everything. Fewer, not
//!    none: clients may write a few keys into it before any probe sees it. The instance
//!    holding more must be off the master's replication history: one sampled a moment after
//!    the master shares it.
//! 2. **Unambiguous death** (only with `confirmWithReplicas`): its connection is refused or the
//!    backend reports it gone, at least one replica is reachable, and every reachable replica
//!    reports its master link down. Immediately.
//! 3. **Timeout**: `failing >= downAfter`, and, with `confirmWithReplicas`, no reachable replica
//!    still hears from it (link up with `master_last_io_seconds_ago` below `downAfter`): a
//!    master only this daemon cannot reach is partitioned from the daemon, not down.
//!
//! A recorded master that answers as a *replica* while holding the most data is not down but
//! unfinished: the daemon stopped between recording and promoting it, and [`HealthDecision::Promote`]
//! resumes.
//!
//! # With no master recorded
//!
//! The instance already serving as master is adopted; else the best holder of data is
//! chosen, or, when none holds any, the lowest ordinal. With `spec.snapshots.bootstrap`, a
//! fleet where every instance answers and none holds data is seeded instead
//! ([`HealthDecision::Seed`]), at most once per [`super::SEED_RETRY`].

use std::collections::HashMap;
use std::time::Duration;

use super::choice::{choose, lost_for};
use super::{
    Blocked, Candidate, Detection, DownRule, Evidence, HealthDecision, HealthInput, HealthMemory,
    HealthReason, SEED_RETRY, Seen, see,
};
use crate::model::{Advertised, Member};
use crate::observe::{Info, InstanceId, InstanceSample, Outcome, Role, Timestamp};
use crate::policy::{Bootstrap, FailoverMode, Health};

/// What a health probe concluded.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Assessment {
    pub decisions: Vec<HealthDecision>,
    /// The recorded master serves writes.
    pub master_serving: bool,
    /// Replicas beyond `replicaMaxLag` (marked whether or not they are taken out).
    pub lagging: Vec<InstanceId>,
}

/// Assesses one health probe. `manage` is false for targets whose roles are only observed.
pub fn assess(
    health: &Health,
    seed_from: Option<&Bootstrap>,
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
            let seeding = seed_from.map(|from| (from, memory.seed_attempted, now));
            assessment.decisions.extend(bootstrap(health, &seen, seeding));
        }
        return assessment;
    };
    let Some(master) = seen.iter().find(|s| s.id() == record.instance) else {
        // Not reached: an absent recorded master was added as gone above.
        return assessment;
    };
    let serving = master.answering().is_some_and(|info| info.role == Role::Master);
    // Data the master lacks counts only off its history: a replica of this very history
    // holding more keys was sampled a moment later (the first writes to a new fleet land
    // between two samples), not left behind by a restart.
    let holder_elsewhere =
        seen.iter().any(|s| s.id() != master.id() && s.holds_data() && !s.shares_history(master));
    let most_elsewhere = seen.iter().filter(|s| s.id() != master.id()).map(Seen::keys).max();
    let behind = most_elsewhere.is_some_and(|most| master.keys() < most);
    let restarted_empty = master.answering().is_some()
        && behind
        && holder_elsewhere
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
    let (since, watched) = match (&memory.last_serving, &memory.record_seen) {
        (Some((served, at)), _) if served == record => (*at, true),
        (_, Some((_, seen))) => (*seen, false),
        (_, None) => (now, false),
    };
    let failing = (now - since).to_std().unwrap_or_default();
    // Unfinished promotion: the record names it, it holds the most data, nothing else serves.
    if !restarted_empty
        && master.answering().is_some_and(|info| info.role == Role::Replica)
        && !seen.iter().any(|s| s.id() != master.id() && s.offset() > master.offset())
    {
        if manage && health.failover != FailoverMode::Off {
            assessment.decisions.push(HealthDecision::Promote {
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
        None => {
            // Not seen serving since this daemon started: the replicas know better how long
            // the master has been gone (`lost_for`).
            let failing =
                if watched { failing } else { failing.max(lost_for(&seen, Some(master.id()))) };
            choose(health, &seen, Some(master.id()), failing, memory)
        }
        .map_err(|excluded| Blocked::NoCandidate { excluded }),
    };
    match choice {
        Ok(choice) => {
            memory.reported = None;
            assessment.decisions.push(HealthDecision::Failover {
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
                    .push(HealthDecision::MasterDown { master: master.id().to_owned(), reason });
            }
        }
    }
    assessment
}

/// No master is recorded: keep the one instance already serving as master, or choose one.
/// The first master of a fleet with no record. With `seeding` (what to seed from, when the
/// last attempt was, now), a fleet where every instance answers and none holds data has its
/// first master loaded from a snapshot instead of starting empty.
fn bootstrap(
    health: &Health,
    seen: &[Seen<'_>],
    seeding: Option<(&Bootstrap, Option<Timestamp>, Timestamp)>,
) -> Option<HealthDecision> {
    let masters: Vec<&Seen> =
        seen.iter().filter(|s| s.answering().is_some_and(|i| i.role == Role::Master)).collect();
    if let Some(best) =
        masters.iter().max_by_key(|s| (s.offset(), std::cmp::Reverse(s.member.ordinal)))
    {
        return Some(HealthDecision::Failover {
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
    let empty = !seen.iter().any(|s| s.holds_data());
    if empty {
        let mut all: Vec<Candidate> =
            std::iter::once(choice.chosen).chain(choice.outranked).collect();
        all.sort_by_key(|c| (c.priority, c.ordinal));
        let mut ranked = all.into_iter();
        choice.chosen = ranked.next()?;
        choice.outranked = ranked.collect();
    }
    if let Some((from, attempted, now)) = seeding
        && empty
    {
        // Never over data: an instance that cannot be read might hold some, so seeding waits
        // until every one answers (a new StatefulSet lists only the pods it has created).
        if !seen.iter().all(|s| s.answering().is_some()) {
            return None;
        }
        let retry = chrono::TimeDelta::from_std(SEED_RETRY).unwrap_or(chrono::TimeDelta::MAX);
        if attempted.is_some_and(|at| now - at < retry) {
            return None;
        }
        return Some(HealthDecision::Seed {
            instance: choice.chosen.instance.clone(),
            from: from.clone(),
            reason: HealthReason::Seed { from: from.clone(), choice },
        });
    }
    Some(HealthDecision::Failover {
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
            assessment.decisions.push(HealthDecision::Fence {
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
            assessment.decisions.push(HealthDecision::Repoint {
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
            assessment.decisions.push(HealthDecision::Advertise {
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
        assessment.decisions.push(HealthDecision::Detach {
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
