//! `redis-autopilot status`: the one page an on-call engineer opens first. Who is master, at
//! which epoch, and does it serve; every member with its role, link and lag; the health verdict
//! in words, from the same core the daemon runs; who leads the policy and whether it is paused;
//! the last scale and failover with their reasons, and the newest snapshot.
//!
//! It reads, never acts. The fleet is probed directly (as `plan` does), so the page is true
//! even when no daemon runs; what only the daemon knows (leadership, pause, its last actions)
//! comes from its HTTP surface (`--daemon`), and a daemon that cannot be reached is said so,
//! not treated as an error.

use std::process::ExitCode;
use std::time::Duration;

use serde::Serialize;

use super::plan::{InstanceRow, instance_rows, instance_table};
use super::policy_arg::PolicyArg;
use super::table::one_line;
use super::{KubeArgs, Output, emit};
use crate::cluster::AnyCluster;
use crate::cluster::kubernetes::KubeClient;
use crate::daemon::PolicyView;
use crate::decide::health::{self, HealthDecision, HealthMemory};
use crate::failover::Probe;
use crate::policy::{Policy, Target};
use crate::resource::status::{LastAction, LastSnapshot, PolicyStatus};
use crate::sample::redis::{HEALTH_SECTIONS, RedisSampler};
use crate::sample::redis_access;
use crate::snapshot::{SnapshotError, Snapshotter};

/// How long the daemon and the snapshot listing may take: a status page must come back.
const ASK_TIMEOUT: Duration = Duration::from_secs(5);
/// Decisions read from the daemon to find the last scale and failover.
const DECISIONS: usize = 500;

/// `status`'s flags; its help text, exit status included, is on `cli::Command::Status`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    policy: PolicyArg,
    /// The daemon's HTTP address (its `--listen`), asked who leads the policy, whether it is
    /// paused, and what it last did. Not reached: said so, the rest is shown.
    #[arg(long, value_name = "URL", default_value = "http://127.0.0.1:9187")]
    daemon: String,
    /// How to print the page.
    #[arg(long, value_enum, default_value_t = Output::Table)]
    output: Output,
    #[command(flatten)]
    kube: KubeArgs,
}

/// What `--output json` prints.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Report {
    policy: String,
    target: String,
    master: Option<Master>,
    /// The health core's decisions on this probe, as sentences; empty: nothing to do.
    verdict: Vec<String>,
    members: Vec<InstanceRow>,
    /// `spec.paused`, or the daemon's pause.
    paused: bool,
    daemon: Daemon,
    last_snapshot: Option<LastSnapshot>,
    /// Why the snapshot line is missing, when it is (not configured, or the listing failed).
    #[serde(skip_serializing_if = "Option::is_none")]
    snapshots_note: Option<String>,
    /// The RedisPolicy object, when the policy was named by one: what its status says.
    #[serde(skip_serializing_if = "Option::is_none")]
    resource: Option<Resource>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Resource {
    namespace: String,
    name: String,
    generation: Option<i64>,
    status: PolicyStatus,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Master {
    instance: String,
    epoch: u64,
    serving: bool,
    /// Who last changed roles and when that was done, or who is changing them now.
    #[serde(skip_serializing_if = "Option::is_none")]
    changed_by: Option<String>,
}

#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
struct Daemon {
    url: String,
    /// `None` when the daemon was not reached (`error` says why) or does not run the policy.
    #[serde(skip_serializing_if = "Option::is_none")]
    view: Option<PolicyView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_scale: Option<LastAction>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_failover: Option<LastAction>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let runtime = super::runtime()?;
    let resolved = runtime.block_on(args.policy.resolve(&args.kube))?;
    let policy = resolved.policy;
    let kube = KubeClient::new(args.kube.clone().options());
    let mut report = runtime.block_on(gather(&policy, &args.daemon, &kube))?;
    report.resource = resolved.object.map(|object| Resource {
        status: object.status.clone().unwrap_or_default(),
        namespace: object.namespace,
        name: object.name,
        generation: object.generation,
    });
    match args.output {
        Output::Json => emit(serde_json::to_string_pretty(&report)?)?,
        Output::Table => emit(report.table())?,
    }
    let serving = report.master.as_ref().is_some_and(|m| m.serving);
    Ok(if serving { ExitCode::SUCCESS } else { ExitCode::from(2) })
}

async fn gather(policy: &Policy, daemon_url: &str, kube: &KubeClient) -> anyhow::Result<Report> {
    let access = redis_access(policy)?;
    let cluster = AnyCluster::attach(policy, kube).await?;
    let prober = RedisSampler::with_sections(
        access,
        policy.health.probe_timeout.max(policy.sampling.timeout),
        HEALTH_SECTIONS,
    );
    let (probe, daemon, snapshot) = tokio::join!(
        Probe::take(&cluster, &prober),
        ask_daemon(daemon_url, &policy.name),
        newest_snapshot(policy)
    );
    let probe = probe?;
    let now = chrono::Utc::now();
    // The daemon's own core on this one probe, from an empty memory: what it would decide if
    // it saw the fleet for the first time now (it may be further along: `downAfter` counts
    // from its first failed probe, not this one).
    let manage = !matches!(policy.target, Target::Endpoints(_));
    let bootstrap = policy.snapshots.as_ref().and_then(|s| s.bootstrap.as_ref());
    let assessment = health::assess(
        &policy.health,
        bootstrap,
        probe.input(),
        &mut HealthMemory::default(),
        manage,
        now,
    );
    let verdict = assessment
        .decisions
        .iter()
        .filter(|d| !matches!(d, HealthDecision::Advertise { .. }))
        .map(|d| format!("{}: {}", d.kind(), d.sentence()))
        .collect();
    let master = probe.record.as_ref().map(|record| Master {
        instance: record.instance.clone(),
        epoch: record.epoch,
        serving: assessment.master_serving,
        changed_by: record.claim.as_ref().map(|claim| match record.active_claim(now) {
            Some(active) => format!("now: {active}"),
            None => match &claim.from {
                Some(from) => format!(
                    "{} (from {from}), done by {}",
                    claim.by,
                    claim.until.format("%Y-%m-%d %H:%M:%SZ")
                ),
                None => {
                    format!("{}, done by {}", claim.by, claim.until.format("%Y-%m-%d %H:%M:%SZ"))
                }
            },
        }),
    });
    let paused = policy.paused || daemon.view.as_ref().is_some_and(|v| v.paused);
    let (last_snapshot, snapshots_note) = match snapshot {
        Ok(snapshot) => (snapshot, None),
        Err(note) => (None, Some(note)),
    };
    Ok(Report {
        policy: policy.name.clone(),
        target: describe(&policy.target),
        master,
        verdict,
        members: instance_rows(&probe.samples),
        paused,
        daemon,
        last_snapshot,
        snapshots_note,
        resource: None,
    })
}

fn describe(target: &Target) -> String {
    match target {
        Target::Kubernetes { namespace, stateful_set, .. } => {
            format!("StatefulSet {namespace}/{stateful_set}")
        }
        Target::Endpoints(endpoints) => format!("{} endpoints (observed only)", endpoints.len()),
        Target::Local { base_port, data_dir, .. } => {
            format!("local fleet from port {base_port} in {data_dir}")
        }
    }
}

/// The newest snapshot, `Ok(None)` when there is none yet; `Err` says why none is shown.
async fn newest_snapshot(policy: &Policy) -> Result<Option<LastSnapshot>, String> {
    if policy.snapshots.is_none() {
        return Err("no snapshots configured (spec.snapshots)".to_owned());
    }
    let snapshotter = Snapshotter::new(policy).map_err(|e| crate::errors::chain(&e))?;
    match tokio::time::timeout(ASK_TIMEOUT, snapshotter.latest()).await {
        Ok(Ok(manifest)) => Ok(Some(LastSnapshot {
            time: manifest.finished.to_rfc3339(),
            verified: manifest.proven(),
            bytes: manifest.stored_bytes,
            id: manifest.id,
            reason: None,
        })),
        Ok(Err(SnapshotError::NotFound { .. })) => Ok(None),
        Ok(Err(error)) => Err(format!("cannot list snapshots: {}", crate::errors::chain(&error))),
        Err(_) => Err(format!("listing snapshots took more than {ASK_TIMEOUT:?}")),
    }
}

/// What the daemon at `url` says of `policy`: its view, and its last applied scale and
/// failover.
async fn ask_daemon(url: &str, policy: &str) -> Daemon {
    let mut daemon = Daemon { url: url.to_owned(), ..Daemon::default() };
    let client = match reqwest::Client::builder().timeout(ASK_TIMEOUT).build() {
        Ok(client) => client,
        Err(error) => {
            daemon.error = Some(error.to_string());
            return daemon;
        }
    };
    let base = url.trim_end_matches('/');
    let views = async {
        let response = client.get(format!("{base}/v1/policies")).send().await?;
        response.error_for_status()?.json::<Vec<PolicyView>>().await
    };
    let decisions = async {
        let query = [("policy", policy.to_owned()), ("limit", DECISIONS.to_string())];
        let response = client.get(format!("{base}/v1/decisions")).query(&query).send().await?;
        response.error_for_status()?.json::<Vec<serde_json::Value>>().await
    };
    match tokio::join!(views, decisions) {
        (Ok(views), decisions) => {
            daemon.view = views.into_iter().find(|v| v.name == policy);
            if daemon.view.is_none() {
                daemon.error = Some(format!("the daemon at {url} does not run policy {policy}"));
            }
            match decisions {
                Ok(decisions) => {
                    daemon.last_scale = last_applied(&decisions, "scale");
                    daemon.last_failover = last_applied(&decisions, "failover");
                }
                // Not "none": the last actions are unknown, and the page says so.
                Err(error) => {
                    let why = crate::errors::chain(&error.without_url());
                    daemon.error = Some(format!("cannot read its decisions: {why}"));
                }
            }
        }
        (Err(error), _) => daemon.error = Some(crate::errors::chain(&error.without_url())),
    }
    daemon
}

/// The newest decision of `kind` that was applied (`/v1/decisions` lists newest first).
fn last_applied(decisions: &[serde_json::Value], kind: &str) -> Option<LastAction> {
    let record = decisions.iter().find(|record| {
        record["decision"]["kind"] == kind && record["action"]["outcome"] == "applied"
    })?;
    let text = |field: &str| record[field].as_str().unwrap_or_default().to_owned();
    let decided = |field: &str| match &record["decision"][field] {
        serde_json::Value::String(text) => text.clone(),
        other => other.to_string(),
    };
    let what = match kind {
        "scale" => format!("scale {} -> {}", decided("from"), decided("to")),
        _ => format!("{kind} to {} at epoch {}", decided("to"), decided("epoch")),
    };
    Some(LastAction { time: text("at"), what, reason: text("sentence") })
}

impl Resource {
    /// What the object's status says; with `actions`, its last scale and failover too (the
    /// daemon's own account was not reached).
    fn lines(&self, out: &mut String, actions: bool) {
        use std::fmt::Write as _;
        let status = &self.status;
        let phase = status.phase.map_or_else(|| "-".to_owned(), |p| format!("{p:?}"));
        let observed = match (status.observed_generation, self.generation) {
            (Some(seen), Some(now)) if seen < now => {
                format!(
                    ", status of generation {seen} (the daemon has not read generation {now} yet)"
                )
            }
            _ => String::new(),
        };
        let _ = writeln!(
            out,
            "Resource: redispolicy {}/{}: phase {phase}{observed}",
            self.namespace, self.name
        );
        for c in &status.conditions {
            let _ = writeln!(
                out,
                "  {}={} ({}) since {}: {}",
                c.kind,
                c.status,
                c.reason,
                c.last_transition_time,
                one_line(&c.message)
            );
        }
        if actions {
            let last = |action: Option<(&str, &str, &str)>| match action {
                Some((time, what, reason)) => format!("{time} {what}: {}", one_line(reason)),
                None => "none in the status".to_owned(),
            };
            let scale = status.last_scale.as_ref().map(|a| (&*a.time, &*a.what, &*a.reason));
            let failover = status.last_failover.as_ref().map(|a| (&*a.time, &*a.what, &*a.reason));
            let _ = writeln!(out, "Last scale: {}", last(scale));
            let _ = writeln!(out, "Last failover: {}", last(failover));
        }
    }
}

impl Report {
    fn table(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        let _ = writeln!(out, "Policy `{}`: {}", self.policy, self.target);
        match &self.master {
            Some(master) => {
                let serving = if master.serving { "serving" } else { "NOT serving" };
                let _ = writeln!(
                    out,
                    "Master: {} at epoch {} ({serving})",
                    master.instance, master.epoch
                );
                if let Some(by) = &master.changed_by {
                    let _ = writeln!(out, "  roles last changed by {}", one_line(by));
                }
            }
            None => {
                let _ = writeln!(out, "Master: none recorded (the daemon records the first one)");
            }
        }
        if self.verdict.is_empty() {
            let _ = writeln!(out, "Health: nothing to do");
        } else {
            let _ = writeln!(out, "Health (what the daemon's core decides on this probe):");
            for sentence in &self.verdict {
                let _ = writeln!(out, "  {}", one_line(sentence));
            }
        }
        let _ = writeln!(out, "Paused: {}", if self.paused { "yes" } else { "no" });
        match (&self.daemon.view, &self.daemon.error) {
            (Some(view), _) => {
                let role = if view.leading { "leads it" } else { "is a standby for it" };
                let _ = writeln!(
                    out,
                    "Daemon: {} at {} {role} (mode {})",
                    view.identity, self.daemon.url, view.mode
                );
            }
            (None, Some(error)) => {
                let _ = writeln!(
                    out,
                    "Daemon: not reached at {} ({}); pass --daemon URL",
                    self.daemon.url,
                    one_line(error)
                );
            }
            (None, None) => {}
        }
        let last = |action: &Option<LastAction>| match action {
            Some(a) => format!("{} {}: {}", a.time, a.what, one_line(&a.reason)),
            None => "none the daemon remembers".to_owned(),
        };
        match (&self.daemon.view, &self.daemon.error) {
            (Some(_), None) => {
                let _ = writeln!(out, "Last scale: {}", last(&self.daemon.last_scale));
                let _ = writeln!(out, "Last failover: {}", last(&self.daemon.last_failover));
            }
            (Some(_), Some(error)) => {
                let _ = writeln!(out, "Last scale and failover: unknown ({})", one_line(error));
            }
            (None, _) => {}
        }
        if let Some(resource) = &self.resource {
            resource.lines(&mut out, self.daemon.view.is_none());
        }
        match (&self.last_snapshot, &self.snapshots_note) {
            (Some(s), _) => {
                let proven = if s.verified { ", proven restorable" } else { "" };
                let _ = writeln!(
                    out,
                    "Last snapshot: {} {} ({}{proven})",
                    s.time,
                    s.id,
                    super::table::bytes(s.bytes)
                );
            }
            (None, Some(note)) => {
                let _ = writeln!(out, "Last snapshot: {}", one_line(note));
            }
            (None, None) => {
                let _ = writeln!(out, "Last snapshot: none yet");
            }
        }
        let _ = write!(out, "\n{}", instance_table(&self.members));
        out
    }
}
