//! Why a health decision was made: [`HealthReason`] and what it carries (the [`Evidence`]
//! that the master is not serving, the [`DownRule`] that declared it down, what [`Blocked`]
//! a failover), kept as data for `/v1/decisions` and rendered to the one sentence that logs,
//! Events and the `failover` command show.

use std::fmt;
use std::time::Duration;

use serde::Serialize;

use super::Choice;
use crate::model::Advertised;
use crate::observe::InstanceId;
use crate::policy::Bootstrap;

/// Why the recorded master is not serving.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(
    tag = "probe",
    content = "detail",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
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
    pub(super) fn unambiguous(&self) -> bool {
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
    pub(super) fn key(&self) -> String {
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
    /// No master is recorded and no instance holds data: the first is loaded from `from`.
    Seed { from: Bootstrap, choice: Choice },
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
            HealthReason::Seed { from, choice } => write!(
                f,
                "no master is recorded and no instance holds data: seeding from {from} \
                 (spec.snapshots.bootstrap); {choice}"
            ),
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
