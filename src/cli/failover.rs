//! `redis-autopilot failover`: one failover or switchover, on purpose, by a human. It chooses
//! the successor the way the daemon does (or takes `--to`), explains the choice, and carries it
//! out through the same state machine ([`crate::failover`]).

use std::process::ExitCode;

use anyhow::bail;

use super::policy_arg::PolicyArg;
use super::{KubeArgs, Output, emit};
use crate::cluster::AnyCluster;
use crate::cluster::kubernetes::KubeClient;
use crate::decide::health::{self, HealthReason};
use crate::failover::{self, Probe};
use crate::observe::Role;
use crate::policy::BeforeAction;
use crate::sample::redis::{HEALTH_SECTIONS, RedisSampler};
use crate::sample::redis_access;
use crate::snapshot::{Quiet, Snapshotter};

/// Fails the master over to the best replica (or `--to`), now. Without `--graceful` the
/// replica is promoted at once, as after a master death: writes the old master acknowledged
/// but had not yet replicated are lost. With `--graceful` the master must serve: Redis
/// `FAILOVER TO` pauses writes until the replica caught up, so none is lost.
///
/// Without `--graceful` a master that is still serving is refused unless `--force`: promoting
/// a replica under it loses what it has not replicated yet.
///
/// Exit status: 0 done (or, with --dry-run, planned), 1 refused or failed, 2 done but some
/// members could not be repointed yet (listed; the daemon repoints or fences them when they
/// answer).
///
/// Example: redis-autopilot failover --policy policies/session-cache.yaml --graceful
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    policy: PolicyArg,
    /// The instance to promote (as `plan` lists it); default: the best replica.
    #[arg(long, value_name = "INSTANCE")]
    to: Option<String>,
    /// Switch over without losing acknowledged writes (the master must be serving).
    #[arg(long)]
    graceful: bool,
    /// Show what would be done and why; change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Fail over (without `--graceful`) even though the master is serving: writes it
    /// acknowledged but had not replicated are lost. Prefer `--graceful`.
    #[arg(long, conflicts_with = "graceful")]
    force: bool,
    /// Fail over without the snapshot the policy's `snapshots.beforeActions: [failover]`
    /// asks for (when the snapshot cannot be taken and the failover cannot wait).
    #[arg(long)]
    no_snapshot: bool,
    /// How to print what was done (or, with --dry-run, would be).
    #[arg(long, value_enum, default_value_t = Output::Table)]
    output: Output,
    #[command(flatten)]
    kube: KubeArgs,
}

/// What `--output json` prints; keys in camelCase, as every JSON the tool prints.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct Report {
    policy: String,
    from: String,
    to: String,
    epoch: u64,
    graceful: bool,
    dry_run: bool,
    reason: String,
    /// The snapshot taken first (`beforeActions: [failover]`), by id.
    snapshot: Option<String>,
    timeline: Option<failover::Timeline>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let runtime = super::runtime()?;
    let policy = runtime.block_on(args.policy.resolve(&args.kube))?.policy;
    let kube = KubeClient::new(args.kube.clone().options());
    let report = runtime.block_on(fail_over(&policy, &args, &kube))?;
    match args.output {
        Output::Json => emit(serde_json::to_string_pretty(&report)?)?,
        Output::Table => {
            let verb = if args.graceful { "switchover" } else { "failover" };
            let done = if args.dry_run { "would" } else { "did" };
            emit(format!(
                "{}: {done} {verb} {} -> {} at epoch {}\nwhy: {}",
                report.policy, report.from, report.to, report.epoch, report.reason
            ))?;
            if let Some(snapshot) = &report.snapshot {
                emit(format!("snapshot first: {snapshot}"))?;
            }
            if let Some(timeline) = &report.timeline {
                emit(format!("timeline: {timeline}"))?;
            }
        }
    }
    // Not all done: say what is left, and do not exit as if it were.
    match report.timeline.as_ref().filter(|t| !t.unreached.is_empty()) {
        Some(timeline) => {
            for (instance, why) in &timeline.unreached {
                eprintln!("left: {instance} still follows the old master ({why})");
            }
            eprintln!(
                "the new master serves; a running daemon repoints or fences these when they answer"
            );
            Ok(ExitCode::from(2))
        }
        None => Ok(ExitCode::SUCCESS),
    }
}

async fn fail_over(
    policy: &crate::policy::Policy,
    args: &Args,
    kube: &KubeClient,
) -> anyhow::Result<Report> {
    let access = redis_access(policy)?;
    let cluster = AnyCluster::attach(policy, kube).await?;
    let prober = RedisSampler::with_sections(
        access.clone(),
        policy.health.probe_timeout.max(policy.sampling.timeout),
        HEALTH_SECTIONS,
    );
    let probe = Probe::take(&cluster, &prober).await?;
    let Some(record) = probe.record.clone() else {
        bail!("no master is recorded for {}: the daemon chooses the first one", policy.name);
    };
    let Some(master) = probe.member(&record.instance) else {
        bail!("the recorded master {} is not a member of {}", record.instance, policy.name);
    };
    let serving =
        probe.members.iter().zip(&probe.samples).any(|(m, s)| {
            m.id == master.id && s.info.as_ref().is_some_and(|i| i.role == Role::Master)
        });
    if !args.graceful && serving && !args.force && !args.dry_run {
        bail!(
            "{} is serving as master: a failover would lose the writes it has not replicated \
             yet. Use --graceful to switch over without losing any, or --force to fail over \
             anyway",
            master.id
        );
    }
    if args.graceful && !serving {
        bail!(
            "{} is not serving as master, so there is nothing to switch over gracefully: \
             run without --graceful to promote a replica",
            master.id
        );
    }
    let choice =
        health::successor(&policy.health, probe.input(), Some(&master.id)).map_err(|excluded| {
            let why: Vec<String> = excluded.iter().map(|(i, w)| format!("{i}: {w}")).collect();
            anyhow::anyhow!("no replica can take over: {}", why.join("; "))
        });
    let choice = match (&args.to, choice) {
        (None, choice) => choice?,
        (Some(to), Ok(choice)) if choice.chosen.instance == *to => choice,
        (Some(to), Ok(mut choice)) => {
            let Some(at) = choice.outranked.iter().position(|c| c.instance == *to) else {
                let why = match choice.excluded.iter().find(|(i, _)| i == to) {
                    Some((_, why)) => why.clone(),
                    None => not_a_member(&probe),
                };
                bail!("cannot promote {to}: {why}");
            };
            let chosen = choice.outranked.remove(at);
            choice.outranked.insert(0, std::mem::replace(&mut choice.chosen, chosen));
            choice
        }
        (Some(to), Err(_)) if probe.member(to).is_none() => {
            bail!("cannot promote {to}: {}", not_a_member(&probe))
        }
        (Some(to), Err(error)) => bail!("cannot promote {to}: {error}"),
    };
    let Some(to) = probe.member(&choice.chosen.instance) else {
        bail!("{} is no longer a member", choice.chosen.instance);
    };
    let epoch = record.epoch + 1;
    let reason = HealthReason::Requested { choice: choice.clone(), graceful: args.graceful };
    let mut report = Report {
        policy: policy.name.clone(),
        from: master.id.clone(),
        to: to.id.clone(),
        epoch,
        graceful: args.graceful,
        dry_run: args.dry_run,
        reason: reason.to_string(),
        snapshot: None,
        timeline: None,
    };
    if args.dry_run {
        return Ok(report);
    }
    let snapshot_first = policy
        .snapshots
        .as_ref()
        .is_some_and(|s| s.before_actions.contains(&BeforeAction::Failover));
    if snapshot_first && !args.no_snapshot {
        let snapshotter = Snapshotter::new(policy)?;
        let endpoints: Vec<_> =
            probe.members.iter().filter(|m| m.gone.is_none()).map(|m| m.endpoint.clone()).collect();
        let manifest = snapshotter.take(&endpoints, &Quiet).await.map_err(|error| {
            anyhow::anyhow!(
                "no failover: the snapshot beforeActions asks for failed ({}); \
                 pass --no-snapshot to fail over without it",
                crate::errors::chain(&error)
            )
        })?;
        report.snapshot = Some(manifest.id);
    }
    let actor = failover::cli_actor();
    let context = failover::Context::new(policy, &access, &actor);
    let timeline = if args.graceful {
        failover::switch_over(&cluster, &probe.members, master, to, epoch, &context).await?
    } else {
        let replaced = if serving {
            failover::Replaced::Answering(master)
        } else {
            failover::Replaced::Down(master)
        };
        failover::fail_over(&cluster, &probe.members, replaced, to, epoch, &context).await?
    };
    report.timeline = Some(timeline);
    Ok(report)
}

/// Why `--to` names nothing promotable: it is not a member, and these are.
fn not_a_member(probe: &Probe) -> String {
    let members: Vec<&str> = probe.members.iter().map(|m| m.id.as_str()).collect();
    format!("it is not a member (the members are: {})", members.join(", "))
}
