//! `redis-autopilot plan`: one live evaluation for on-call. Samples the policy's instances and
//! PromQL queries now, runs the same decision core the daemon runs, and prints what it would do
//! and why. It never acts. A StatefulSet target is listed through the Kubernetes API (from a
//! laptop: `--kubeconfig`/`--context`) and its pods sampled at their IPs, which must be
//! reachable from where plan runs.

use std::process::ExitCode;

use anyhow::Context as _;
use serde::Serialize;

use super::policy_arg::PolicyArg;
use super::table::{Table, bytes, one_line};
use super::{KubeArgs, Output, emit};
use crate::cluster::kubernetes::{ClientOptions, KubeClient};
use crate::cluster::{AnyCluster, Cluster};
use crate::decide::{Fleet, Memory, ScalingDecision, decide, format_number};
use crate::observe::{History, InstanceSample, Observation, Outcome, Role};
use crate::policy::{MetricSource, Policy, Target};
use crate::sample::redis::Endpoint;
use crate::sample::{PolicySampler, static_endpoints};

/// `plan`'s flags; its help text, exit status included, is on `cli::Command::Plan`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    policy: PolicyArg,
    /// How to print the result.
    #[arg(long, value_enum, default_value_t = Output::Table)]
    output: Output,
    /// Sample for the policy's longest window (one round per sampling interval) before
    /// deciding. Without it, plan decides on one round (two when a metric is a rate) and says
    /// so.
    #[arg(long)]
    fill: bool,
    #[command(flatten)]
    kube: KubeArgs,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let runtime = super::runtime()?;
    let policy = runtime.block_on(args.policy.resolve(&args.kube))?.policy;
    let report = runtime.block_on(evaluate(&policy, args.fill, args.kube.options()))?;
    match args.output {
        Output::Table => emit(report.table().trim_end())?,
        Output::Json => {
            emit(serde_json::to_string_pretty(&report).context("cannot encode the plan as JSON")?)?
        }
    }
    Ok(if report.missing_data { ExitCode::from(2) } else { ExitCode::SUCCESS })
}

/// What plan saw and decided, printable as a table or JSON.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Report {
    policy: String,
    rounds: usize,
    rounds_wanted: usize,
    instances: Vec<InstanceRow>,
    queries: Vec<QueryRow>,
    decisions: Vec<DecisionRow>,
    missing_data: bool,
}

/// One instance as `plan` and `status` show it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct InstanceRow {
    id: String,
    outcome: String,
    role: Option<&'static str>,
    link_up: Option<bool>,
    offset: Option<u64>,
    /// Bytes of replication stream the replica has not yet applied.
    lag_bytes: Option<u64>,
    last_io_seconds_ago: Option<u64>,
    ops_per_sec: Option<u64>,
    used_memory: Option<u64>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct QueryRow {
    query: String,
    series: Option<Vec<f64>>,
    error: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct DecisionRow {
    #[serde(flatten)]
    decision: ScalingDecision,
    /// The reason as one sentence, as logs and Events show it.
    sentence: String,
}

async fn evaluate(policy: &Policy, fill: bool, kube: ClientOptions) -> anyhow::Result<Report> {
    let (mut endpoints, requested) = match &policy.target {
        Target::Kubernetes { .. } => {
            // Opening a StatefulSet target only reads it: plan never acts.
            let cluster = AnyCluster::open(policy, &KubeClient::new(kube)).await?;
            let members = cluster.members().await?;
            let endpoints = members.into_iter().map(|m| m.endpoint).collect();
            (endpoints, Some(cluster.replicas().await?))
        }
        Target::Endpoints(_) | Target::Local { .. } => (static_endpoints(policy)?, None),
    };
    let sampler = PolicySampler::new(policy)?;
    let interval = policy.sampling.interval;
    let rounds_wanted = rounds_to_fill(policy);
    let rounds = if fill { rounds_wanted } else { rounds_for_rates(policy) };
    // Seasonal forecasts and measured bursts start from what Prometheus kept, as in the daemon.
    let mut memory = Memory::default();
    if let Some(scaling) = &policy.scaling {
        for past in sampler.metric_histories(policy, chrono::Utc::now()).await {
            match &past.points {
                Ok(points) => memory.scaling.seed(scaling, past.learns, past.metric, points),
                Err(error) => eprintln!(
                    "warning: cannot read the {} history `{}` from Prometheus: {error}; it has \
                     only this run's samples to go on",
                    past.learns.name(),
                    past.query
                ),
            }
        }
    }
    let mut history = History::new(policy.history_span(), interval);
    for round in 0..rounds {
        if round > 0 {
            tokio::time::sleep(interval).await;
        }
        let observation = sampler.round(&endpoints, chrono::Utc::now()).await;
        if round == 0 && matches!(policy.target, Target::Local { .. }) {
            // The local fleet's port range is where instances *may* run: a port that refuses
            // is an instance that does not exist, not a dead one.
            endpoints = present(&endpoints, &observation);
        }
        history.push(observation);
    }
    let latest = history.latest().cloned().context("no sampling round ran")?;
    let latest = only(&latest, &endpoints);
    let replicas = requested.unwrap_or(u16::try_from(endpoints.len()).unwrap_or(u16::MAX));
    let fleet = Fleet { replicas };
    let decision = decide(policy, &history, fleet, &mut memory, latest.at);
    let missing_data = decision
        .iter()
        .map(ScalingDecision::reason)
        .any(|reason| reason.readings.iter().any(|r| r.value.is_err()))
        || latest.instances.iter().all(|s| s.info.is_none());
    Ok(Report {
        policy: policy.name.clone(),
        rounds,
        rounds_wanted,
        instances: instance_rows(&latest.instances),
        queries: latest
            .queries
            .iter()
            .map(|q| QueryRow {
                query: q.query.clone(),
                series: q.value.as_ref().ok().cloned(),
                error: q.value.as_ref().err().cloned(),
            })
            .collect(),
        decisions: decision
            .into_iter()
            .map(|decision| DecisionRow { sentence: decision.sentence(), decision })
            .collect(),
        missing_data,
    })
}

/// Rounds that fill the longest window: one per sampling interval, plus one for rates.
fn rounds_to_fill(policy: &Policy) -> usize {
    let span = policy.history_span().as_secs_f64();
    let interval = policy.sampling.interval.as_secs_f64().max(1e-3);
    (span / interval).ceil() as usize + 1
}

/// A rate needs two rounds; everything else can be judged, roughly, from one.
fn rounds_for_rates(policy: &Policy) -> usize {
    let rates = policy
        .scaling
        .iter()
        .flat_map(|s| &s.metrics)
        .any(|m| matches!(m.source, MetricSource::Redis { rate: true, .. }));
    if rates { 2 } else { 1 }
}

fn present(endpoints: &[Endpoint], observation: &Observation) -> Vec<Endpoint> {
    endpoints
        .iter()
        .zip(&observation.instances)
        .filter(|(_, sample)| sample.outcome != Outcome::Refused)
        .map(|(endpoint, _)| endpoint.clone())
        .collect()
}

fn only(observation: &Observation, endpoints: &[Endpoint]) -> Observation {
    let mut observation = observation.clone();
    observation.instances.retain(|s| endpoints.iter().any(|e| e.id == s.id));
    observation
}

/// The instances as a table.
pub(super) fn instance_table(rows: &[InstanceRow]) -> Table {
    let mut table = Table::new(&INSTANCE_COLUMNS).right_aligned(&["OFFSET", "OPS/S", "MEMORY"]);
    for row in rows {
        table.row(row.cells());
    }
    table
}

const INSTANCE_COLUMNS: [&str; 8] =
    ["INSTANCE", "OUTCOME", "ROLE", "LINK", "OFFSET", "LAG", "OPS/S", "MEMORY"];

/// A row per sample; a replica's lag is counted against the first master among them.
pub(super) fn instance_rows(samples: &[InstanceSample]) -> Vec<InstanceRow> {
    let master_offset = samples
        .iter()
        .filter_map(|s| s.info.as_ref())
        .find(|info| info.role == Role::Master)
        .and_then(|info| info.replication.master_repl_offset);
    samples.iter().map(|s| instance_row(s, master_offset)).collect()
}

fn instance_row(sample: &InstanceSample, master_offset: Option<u64>) -> InstanceRow {
    let info = sample.info.as_ref();
    let replication = info.map(|i| &i.replication);
    let is_replica = info.is_some_and(|i| i.role == Role::Replica);
    let offset = replication
        .and_then(|r| if is_replica { r.replica_repl_offset } else { r.master_repl_offset });
    InstanceRow {
        id: sample.id.clone(),
        outcome: sample.outcome.to_string(),
        role: info.map(|i| match i.role {
            Role::Master => "master",
            Role::Replica => "replica",
        }),
        link_up: info.and_then(|i| i.master_link_up),
        offset,
        lag_bytes: match (is_replica, master_offset, offset) {
            (true, Some(master), Some(replica)) => Some(master.saturating_sub(replica)),
            _ => None,
        },
        last_io_seconds_ago: replication
            .filter(|_| is_replica)
            .and_then(|r| r.master_last_io_seconds_ago),
        ops_per_sec: info.and_then(|i| i.stats.instantaneous_ops_per_sec),
        used_memory: info.and_then(|i| i.memory.used_memory),
    }
}

impl Report {
    fn table(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        let _ = writeln!(out, "Policy `{}`: {} sampling round(s)", self.policy, self.rounds);
        if self.rounds < self.rounds_wanted {
            let _ = writeln!(
                out,
                "  windows want {} rounds; statistics use what {} gave (--fill samples them all)",
                self.rounds_wanted, self.rounds
            );
        }
        let _ = writeln!(
            out,
            "  plan starts with no memory: stabilization windows and cooldowns are empty, so the \
             daemon may hold where plan would scale\n"
        );
        let _ = writeln!(out, "{}", instance_table(&self.instances));
        if !self.queries.is_empty() {
            let _ = writeln!(out, "\nQUERIES");
            for q in &self.queries {
                let value = match (&q.series, &q.error) {
                    (Some(series), _) => {
                        series.iter().map(|v| format_number(*v)).collect::<Vec<_>>().join(", ")
                    }
                    (None, Some(error)) => format!("error: {}", one_line(error)),
                    (None, None) => String::new(),
                };
                let _ = writeln!(out, "  {}: {value}", one_line(&q.query));
            }
        }
        let _ = writeln!(out, "\nDECISIONS");
        if self.decisions.is_empty() {
            let _ = writeln!(out, "  none: the policy has no scaling section");
        }
        for d in &self.decisions {
            let _ = writeln!(out, "  {}: {}", d.decision.kind(), one_line(&d.sentence));
        }
        if self.missing_data {
            let _ = writeln!(out, "\nData was missing: exit status 2.");
        }
        out
    }
}

impl InstanceRow {
    /// The columns of [`INSTANCE_COLUMNS`].
    pub(super) fn cells(&self) -> [String; 8] {
        let dash = || "-".to_owned();
        [
            self.id.clone(),
            self.outcome.clone(),
            self.role.map_or_else(dash, str::to_owned),
            self.link_up.map_or_else(dash, |up| if up { "up" } else { "down" }.to_owned()),
            self.offset.map_or_else(dash, |o| o.to_string()),
            match (self.lag_bytes, self.last_io_seconds_ago) {
                (Some(lag), Some(io)) => format!("{}, io {io}s ago", bytes(lag)),
                (Some(lag), None) => bytes(lag),
                (None, Some(io)) => format!("io {io}s ago"),
                (None, None) => dash(),
            },
            self.ops_per_sec.map_or_else(dash, |v| format_number(v as f64)),
            self.used_memory.map_or_else(dash, bytes),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: &str, outcome: &str) -> InstanceRow {
        InstanceRow {
            id: id.into(),
            outcome: outcome.into(),
            role: Some("replica"),
            link_up: Some(true),
            offset: Some(1_000),
            lag_bytes: Some(1_536),
            last_io_seconds_ago: Some(0),
            ops_per_sec: Some(1_200),
            used_memory: Some(2 * 1024 * 1024),
        }
    }

    /// Issue 17: a peer's parse error spans lines, and broke the instance table.
    #[test]
    fn every_instance_is_one_line_of_the_table_whatever_its_outcome_says() {
        let report = Report {
            policy: "cache".into(),
            rounds: 1,
            rounds_wanted: 1,
            instances: vec![
                row("10.0.0.1:6379", "protocol error: Parse error at 1\nUnexpected `84`\n"),
                row("10.0.0.2:6379", "ok"),
            ],
            queries: vec![QueryRow {
                query: "sum(rate(\n  x[1m]))".into(),
                series: None,
                error: Some("bad\nquery".into()),
            }],
            decisions: Vec::new(),
            missing_data: false,
        };
        let table = report.table();
        let lines: Vec<&str> = table.lines().collect();
        let header = lines.iter().position(|l| l.starts_with("INSTANCE")).expect("a header");
        assert_eq!(
            &lines[header..header + 4],
            [
                "INSTANCE       OUTCOME                                           ROLE     LINK  OFFSET  LAG                 OPS/S   MEMORY",
                "10.0.0.1:6379  protocol error: Parse error at 1 Unexpected `84`  replica  up      1000  1.5 KiB, io 0s ago  1,200  2.0 MiB",
                "10.0.0.2:6379  ok                                                replica  up      1000  1.5 KiB, io 0s ago  1,200  2.0 MiB",
                "",
            ]
        );
        assert!(table.contains("  sum(rate( x[1m])): error: bad query"), "{table}");
    }
}
