//! Who takes over when the master is down, at bootstrap, or when a human asks: the candidates
//! ranked, and every other instance with why it cannot take over.
//!
//! As Sentinel chooses: replicas that are reachable, not syncing, not priority 0, whose link
//! has not been down for longer than `failing + 10 x downAfter` (`failing` at least as long
//! as the freshest replica has been without the master), that were no more than
//! `replicaMaxLag` behind while the master served, and that hold data when anyone does; then
//! lowest `replica-priority`, highest replication offset, smallest run id.

use std::fmt;
use std::time::Duration;

use serde::Serialize;

use super::{HealthInput, HealthMemory, Seen, see};
use crate::observe::{InstanceId, Role};
use crate::policy::Health;

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
    choose(health, &seen, master, lost_for(&seen, master), &memory)
}

/// How long the replicas have been without a master that is not serving: the shortest time
/// any of them reports its link down. It stands for `failing` where nobody watched the master
/// fail: a command runs once, and a daemon that started (or took the lease) after the master
/// died has watched only since its first probe. Measured from then, every replica's link
/// would look stale though all went down with the master, and nothing could ever take over.
/// A replica that lost the master well before the freshest one still stands out. Zero while
/// the master serves or a replica still follows it: a link down then is stale.
pub(super) fn lost_for(seen: &[Seen<'_>], master: Option<&str>) -> Duration {
    let mut shortest: Option<u64> = None;
    for s in seen {
        let Some(info) = s.answering() else { continue };
        if Some(s.id()) == master {
            if info.role == Role::Master {
                return Duration::ZERO;
            }
            continue;
        }
        if info.role != Role::Replica {
            continue;
        }
        match (info.master_link_up, info.replication.master_link_down_since_seconds) {
            (Some(true), _) => return Duration::ZERO,
            (_, Some(down)) => shortest = Some(shortest.map_or(down, |s| s.min(down))),
            _ => {}
        }
    }
    shortest.map_or(Duration::ZERO, Duration::from_secs)
}

/// Ranks the candidates to succeed `master` (`None`: any instance, for bootstrap). `Err` lists
/// every instance with why it cannot take over.
pub(super) fn choose(
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
    // To the millisecond: `failing` is measured between clock readings, and nanoseconds in a
    // reason say nothing.
    let stale = Duration::from_millis(
        u64::try_from((failing + health.down_after * 10).as_millis()).unwrap_or(u64::MAX),
    );
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
