//! The demo's full-screen view on a terminal: once a second it reads the fleet
//! ([`super::fleet`]), the trace's clock and the daemon's new decisions into a
//! [`super::screen::Screen`] and draws it; keys act on the demo (kill the master, more
//! or less load, take a snapshot, pause the autopilot, skip ahead, quit). The terminal is
//! restored however the view ends.

use std::path::PathBuf;
use std::time::Duration;

use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use tokio::sync::{mpsc, watch};

use super::fleet;
use super::screen::{DecisionLine, Point, Screen, draw};
use super::{Feed, view};

/// Trace time one `n` skips.
const SKIP: Duration = Duration::from_secs(30 * 60);
/// How much one `+` or `-` changes the load.
const LOAD_STEP: f64 = 1.25;

/// Where the fleet is, for the view to read it.
pub struct FleetAt {
    pub base_port: u16,
    pub max_instances: u16,
    pub data_dir: PathBuf,
    pub target: f64,
}

/// Runs the view until `q` or Ctrl-C (then raises SIGINT, which stops the daemon and with it
/// the demo) or until `stop`. Tells `serving_changed` the instances that serve reads whenever
/// they change, so the load follows them.
pub async fn show(
    feed: Feed,
    fleet_at: FleetAt,
    serving_changed: impl Fn(Vec<u16>),
    mut stop: watch::Receiver<bool>,
) {
    let mut terminal = ratatui::init();
    let (keys_tx, mut keys) = mpsc::channel(16);
    let (keys_stop_tx, keys_stop) = std::sync::mpsc::channel::<()>();
    // crossterm reads keys with blocking calls: a thread of their own, polled so it can end.
    let reader = std::thread::spawn(move || {
        while keys_stop.try_recv().is_err() {
            if event::poll(Duration::from_millis(100)).unwrap_or(false)
                && let Ok(Event::Key(key)) = event::read()
                && key.kind == KeyEventKind::Press
                && keys_tx.blocking_send(key).is_err()
            {
                return;
            }
        }
    });
    let mut screen = Screen {
        policy: feed.policy.clone(),
        speed: feed.playback.speed,
        target: fleet_at.target,
        max_instances: fleet_at.max_instances,
        ..Screen::default()
    };
    // A snapshot takes seconds: it runs beside the view and reports back here.
    let (snapshot_done, mut snapshots_done) = mpsc::channel::<String>(4);
    let started = tokio::time::Instant::now();
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    let mut seen = None;
    let mut serving = Vec::new();
    loop {
        tokio::select! {
            _ = ticker.tick() => {
                let instances = fleet::instances(fleet_at.base_port, fleet_at.max_instances).await;
                let now_serving = fleet::serving(&instances);
                if now_serving != serving {
                    serving = now_serving;
                    serving_changed(serving.clone());
                }
                let elapsed = started.elapsed();
                let at = feed.playback.trace_at(elapsed);
                screen.trace_time = feed.playback.trace.format_time(at);
                screen.load_factor = feed.playback.factor();
                match fleet::recorded_master(&fleet_at.data_dir).await {
                    Ok(master) => (screen.master, screen.record_error) = (master, None),
                    Err(why) => screen.record_error = Some(why),
                }
                screen.push(Point {
                    t: elapsed.as_secs_f64(),
                    demanded: feed.playback.demand(elapsed),
                    served: instances.iter().filter_map(|i| i.ops).sum::<u64>() as f64,
                    instances: serving.len() as u16,
                });
                screen.instances = instances;
                let recent = feed.shared.status.recent(Some(&feed.policy), 50);
                for record in recent.iter().rev().filter(|r| seen.is_none_or(|at| r.at > at)) {
                    if view::worth_showing(&record.decision) {
                        screen.decided(DecisionLine {
                            at: record.at.with_timezone(&chrono::Local).format("%H:%M:%S").to_string(),
                            kind: record.decision.kind().to_owned(),
                            outcome: record.action.as_ref().map_or("-", |a| a.label()).to_owned(),
                            reason: record.sentence.clone(),
                        });
                    }
                }
                if let Some(newest) = recent.first() {
                    seen = Some(newest.at);
                }
            }
            Some(key) = keys.recv() => {
                let ctrl_c = key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c');
                match key.code {
                    KeyCode::Char('q') => break,
                    _ if ctrl_c => break,
                    KeyCode::Char('k') => {
                        screen.notice = match &screen.master {
                            Some((id, _)) => match fleet::kill(id).await {
                                Ok(()) => format!("killed the master {id}: watch the failover"),
                                Err(why) => format!("could not kill {id}: {why}"),
                            },
                            None => "no master recorded yet".to_owned(),
                        };
                    }
                    KeyCode::Char('+') | KeyCode::Char('=') => {
                        feed.playback.set_factor(feed.playback.factor() * LOAD_STEP);
                        screen.notice = format!("load x{:.2}", feed.playback.factor());
                    }
                    KeyCode::Char('-') => {
                        feed.playback.set_factor(feed.playback.factor() / LOAD_STEP);
                        screen.notice = format!("load x{:.2}", feed.playback.factor());
                    }
                    KeyCode::Char('s') => {
                        screen.notice = "taking a snapshot...".to_owned();
                        let requests = feed.shared.requests.clone();
                        let (policy, done) = (feed.policy.clone(), snapshot_done.clone());
                        tokio::spawn(async move {
                            let outcome = requests.snapshot(&policy, "the demo's `s` key").await;
                            let _ = done.send(snapshot_notice(outcome)).await;
                        });
                    }
                    KeyCode::Char('p') => {
                        let paused = !screen.paused;
                        let why = "the demo's `p` key";
                        screen.notice = match feed.shared.requests.pause(&feed.policy, paused, why).await {
                            Ok(Ok(())) => {
                                screen.paused = paused;
                                if paused {
                                    "paused: the autopilot decides and explains, and acts on nothing (p resumes)".to_owned()
                                } else {
                                    "resumed: the autopilot acts again".to_owned()
                                }
                            }
                            Ok(Err(why)) => format!("cannot pause: {why}"),
                            Err(not_running) => not_running.to_string(),
                        };
                    }
                    KeyCode::Char('n') => {
                        feed.playback.skip(SKIP);
                        screen.notice = "skipped 30 minutes of trace".to_owned();
                    }
                    _ => {}
                }
                screen.load_factor = feed.playback.factor();
            }
            Some(notice) = snapshots_done.recv() => screen.notice = notice,
            _ = stop.changed() => break,
        }
        // A draw that fails (the terminal went away) is no reason to stop the fleet uncleanly.
        let _ = terminal.draw(|frame| draw(frame, &screen));
    }
    let _ = keys_stop_tx.send(());
    let _ = reader.join();
    ratatui::restore();
    if !*stop.borrow() {
        // Raw mode swallowed Ctrl-C: deliver it as the signal the daemon stops on.
        let _ =
            rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::INT);
    }
}

/// What the notice line says once a snapshot asked for with `s` is done.
fn snapshot_notice(
    outcome: Result<Result<crate::snapshot::Manifest, String>, crate::daemon::requests::NotRunning>,
) -> String {
    match outcome {
        Ok(Ok(manifest)) => format!(
            "snapshot {} taken from {}: {} bytes of RDB",
            manifest.id,
            manifest.source,
            crate::decide::format_number(manifest.raw_bytes as f64)
        ),
        Ok(Err(why)) => format!("no snapshot taken: {why}"),
        Err(not_running) => not_running.to_string(),
    }
}
