//! The demo's plain view, for when stdout is not a terminal (a pipe, a log file, CI): one
//! status line a second (trace time, asked load, instances serving) and every decision the
//! daemon makes, once, with its reason, as it happens.

use std::io::Write as _;
use std::time::Duration;

use tokio::sync::watch;

use super::fleet;
use super::tui::FleetAt;
use super::{DemoConfig, Feed, describe};
use crate::decide::{Decision, HealthDecision, ScalingDecision, format_number};
use crate::policy::Policy;

/// One line on stdout. A closed stdout is no reason to stop the fleet uncleanly.
pub fn say(line: &str) {
    let _ = writeln!(std::io::stdout().lock(), "{line}");
}

pub fn banner(policy: &Policy, config: &DemoConfig) {
    let trace = config
        .trace
        .as_ref()
        .map_or("the embedded World Cup 1998 trace".to_owned(), |t| t.display().to_string());
    say(&format!(
        "redis-autopilot demo: policy `{}` ({}), replaying {trace} at {}x, peak {} ops/s; \
         HTTP on {} (/metrics, /v1/decisions); the daemon's log is in {}. Ctrl-C stops \
         everything.",
        policy.name,
        describe(policy),
        config.speed,
        format_number(config.peak),
        config.listen,
        config.scratch.join("daemon.log").display(),
    ));
}

pub fn farewell(answered: u64) {
    say(&format!(
        "demo stopped: {} GETs answered; the fleet is shut down.",
        format_number(answered as f64)
    ));
}

/// Every action and alarm; holds and role labels would drown them.
pub fn worth_showing(decision: &Decision) -> bool {
    !matches!(
        decision,
        Decision::Scaling(ScalingDecision::Hold { .. })
            | Decision::Health(HealthDecision::Advertise { .. })
    )
}

/// Prints until `stop`; tells `serving_changed` the instances that serve reads whenever they
/// change, so the load follows them.
pub async fn show(
    feed: Feed,
    fleet_at: FleetAt,
    serving_changed: impl Fn(Vec<u16>),
    mut stop: watch::Receiver<bool>,
) {
    let started = tokio::time::Instant::now();
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    let mut seen = None;
    let mut serving = Vec::new();
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.changed() => return,
        }
        let instances = fleet::instances(fleet_at.base_port, fleet_at.max_instances).await;
        let now_serving = fleet::serving(&instances);
        if now_serving != serving {
            serving = now_serving;
            serving_changed(serving.clone());
        }
        let recent = feed.shared.status.recent(Some(&feed.policy), 50);
        // Oldest first, only those not printed yet.
        for record in recent.iter().rev().filter(|r| seen.is_none_or(|at| r.at > at)) {
            if worth_showing(&record.decision) {
                let outcome = record.action.as_ref().map_or("-", |a| a.label());
                say(&format!(
                    "  >> {} {} [{outcome}] {}",
                    record.at.format("%H:%M:%S"),
                    record.decision.kind(),
                    record.sentence
                ));
            }
        }
        if let Some(newest) = recent.first() {
            seen = Some(newest.at);
        }
        let elapsed = started.elapsed();
        let at = feed.playback.trace_at(elapsed);
        say(&format!(
            "{}  trace {}  load {:>7} ops/s  instances serving {:>2} ({}) {}",
            chrono::Utc::now().format("%H:%M:%S"),
            feed.playback.trace.format_time(at),
            format_number(feed.playback.demand(elapsed)),
            serving.len(),
            fleet::serving_in_words(&instances),
            "#".repeat(serving.len()),
        ));
    }
}
