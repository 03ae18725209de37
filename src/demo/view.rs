//! The demo's live view: one status line a second (trace time, demanded load, replicas) and
//! every action the daemon takes, with its reason, as it happens. Plain lines, so it reads the
//! same in a terminal, a log file or a CI transcript.

use std::io::Write as _;
use std::time::Duration;

use tokio::sync::watch;

use super::{DemoConfig, describe};
use crate::daemon::policy_loop::Shared;
use crate::decide::{Decision, HealthDecision, ScalingDecision, format_number};
use crate::policy::Policy;
use crate::sim::trace::Trace;

/// What the view watches.
pub struct Feed {
    pub shared: Shared,
    pub policy: String,
    pub trace: Trace,
    pub speed: f64,
}

fn say(line: &str) {
    // A closed terminal is no reason to stop the fleet cleanly.
    let _ = writeln!(std::io::stdout().lock(), "{line}");
}

pub fn banner(policy: &Policy, config: &DemoConfig) {
    say(&format!(
        "redis-autopilot demo: policy `{}` ({}), replaying {} at {}x, peak {} ops/s; \
         HTTP on {} (/metrics, /v1/decisions). Ctrl-C stops everything.",
        policy.name,
        describe(policy),
        config.trace.display(),
        config.speed,
        format_number(config.peak),
        config.listen,
    ));
}

pub fn farewell(answered: u64) {
    say(&format!(
        "demo stopped: {} GETs answered; the fleet is shut down.",
        format_number(answered as f64)
    ));
}

/// Prints until `stop`; tells `replicas_changed` the fleet's size whenever it changes, so the
/// load follows the instances that exist.
pub async fn show(feed: Feed, replicas_changed: impl Fn(u16), mut stop: watch::Receiver<bool>) {
    let started = tokio::time::Instant::now();
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    let mut seen = None;
    let mut replicas = 0u16;
    let span = (feed.trace.end() - feed.trace.start()).max(1);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.changed() => return,
        }
        let recent = feed.shared.status.recent(Some(&feed.policy), 50);
        // Oldest first, only those not printed yet.
        for record in recent.iter().rev().filter(|r| seen.is_none_or(|at| r.at > at)) {
            // Every action and alarm; holds and label changes would drown them.
            if !matches!(
                record.decision,
                Decision::Scaling(ScalingDecision::Hold { .. })
                    | Decision::Health(HealthDecision::Advertise { .. })
            ) {
                let outcome = record.action.as_ref().map_or("-", |a| a.label());
                say(&format!(
                    "  >> {} [{outcome}] {}",
                    record.at.format("%H:%M:%S"),
                    record.sentence
                ));
            }
        }
        if let Some(newest) = recent.first() {
            seen = Some(newest.at);
            let now = match &newest.decision {
                Decision::Scaling(ScalingDecision::Hold { replicas, .. }) => *replicas,
                Decision::Scaling(ScalingDecision::Scale { from, to, .. }) => {
                    let applied = newest.action.as_ref().is_some_and(|a| a.label() == "applied");
                    if applied { *to } else { *from }
                }
                Decision::Health(_) => replicas,
            };
            if now != replicas {
                replicas = now;
                replicas_changed(replicas);
            }
        }
        let played = (started.elapsed().as_secs_f64() * feed.speed * 1000.0) as i64 % span;
        let at = feed.trace.start() + played;
        let load = feed.trace.load_at(at);
        say(&format!(
            "{}  trace {}  load {:>7} ops/s  replicas {:>2} {}",
            chrono::Utc::now().format("%H:%M:%S"),
            feed.trace.format_time(at),
            format_number(load),
            replicas,
            "#".repeat(usize::from(replicas)),
        ));
    }
}
