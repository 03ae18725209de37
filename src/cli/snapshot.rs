//! `redis-autopilot snapshot`: take, list, verify, restore and prune a policy's snapshots by
//! hand, with the same code the daemon schedules. Long transfers show a progress bar when
//! stderr is a terminal, and one line at start and end otherwise (logs, CI).

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use anyhow::Context as _;
use indicatif::{ProgressBar, ProgressStyle};

use super::policy_arg::PolicyArg;
use super::table::{Table, bytes};
use super::{KubeArgs, Output, emit, load_policy_or_report};
use crate::cluster::AnyCluster;
use crate::cluster::kubernetes::KubeClient;
use crate::cluster::scratch::ScratchKind;
use crate::snapshot::snapshotter::{announce, verdict_event};
use crate::snapshot::{Manifest, Progress, Snapshotter};

/// Snapshots: RDBs streamed from a replica to the policy's `spec.snapshots.destination`.
///
/// Exit status: 0 on success; 1 on any failure (no source, too slow or past the deadline,
/// upload failed, corrupt RDB, unknown id, invalid policy, `restore` onto an existing file
/// without --force). A failed `now` leaves no snapshot behind.
///
/// Examples:
///   redis-autopilot snapshot now --policy policies/cache.yaml
///   redis-autopilot snapshot restore --policy policies/cache.yaml 20261124T023000Z-redis-1 --to dump.rdb
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Take a snapshot now: from a replica its master vouches for, else the master when the
    /// policy allows it; given up when slower than `minBytesPerSecond` or past `deadline`.
    Now {
        /// The policy whose `spec.snapshots` names the destination.
        #[command(flatten)]
        policy: PolicyArg,
        /// How to print the new snapshot's manifest.
        #[arg(long, value_enum, default_value_t = Output::Table)]
        output: Output,
        #[command(flatten)]
        kube: KubeArgs,
    },
    /// List complete snapshots, oldest first.
    List {
        /// The policy whose `spec.snapshots` names the destination.
        #[arg(long, value_name = "FILE")]
        policy: PathBuf,
        /// How to print the manifests.
        #[arg(long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// Download a snapshot and check its sha256, RDB structure and CRC64 against its manifest;
    /// with --restore, also run a restore test now (load it into a scratch redis-server, or for
    /// a StatefulSet the policy's verifier StatefulSet, check its key count and sampled key
    /// types) and record the verdict in its manifest. For a StatefulSet, run it in the daemon's
    /// pod (`kubectl exec`), whose POD_IP the verifier's pod can reach.
    Verify {
        /// The policy whose `spec.snapshots` names the destination.
        #[arg(long, value_name = "FILE")]
        policy: PathBuf,
        /// The snapshot id, as `list` shows it.
        id: String,
        /// Also prove it restores, as the daemon's scheduled restore tests do.
        #[arg(long)]
        restore: bool,
        #[command(flatten)]
        kube: KubeArgs,
    },
    /// Download, verify and decompress a snapshot to a local RDB file (written only once
    /// verified), or with --into load it into the deployment the policy targets.
    Restore {
        /// The policy whose `spec.snapshots` names the destination.
        #[arg(long, value_name = "FILE")]
        policy: PathBuf,
        /// The snapshot id, as `list` shows it.
        #[arg(required_unless_present = "latest", conflicts_with = "latest")]
        id: Option<String>,
        /// Restore the newest complete snapshot.
        #[arg(long)]
        latest: bool,
        /// Where to write the RDB.
        #[arg(
            long,
            value_name = "FILE.rdb",
            required_unless_present = "into",
            conflicts_with = "into"
        )]
        to: Option<PathBuf>,
        /// Load it into the deployment the policy targets (a local fleet or a StatefulSet)
        /// through the replication protocol: one instance loads it from a one-shot master, is
        /// recorded as master at a new epoch, and the others resync from it. Refused while any
        /// instance holds data, unless --force. For a StatefulSet, run it in the daemon's pod
        /// (`kubectl exec`), whose POD_IP the pods can reach.
        #[arg(long)]
        into: bool,
        /// With --to: replace FILE.rdb if it exists. With --into: restore over data, after
        /// taking a snapshot of it.
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        kube: KubeArgs,
    },
    /// Delete the snapshots the policy's retention no longer keeps (never the newest).
    Prune {
        /// The policy whose `spec.snapshots` names the destination.
        #[arg(long, value_name = "FILE")]
        policy: PathBuf,
        /// Only print what would be deleted, and why.
        #[arg(long)]
        dry_run: bool,
    },
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let runtime = super::runtime()?;
    let open = |policy: &PathBuf| -> anyhow::Result<(crate::policy::Policy, Snapshotter)> {
        let policy = load_policy_or_report(policy)?;
        let snapshotter = Snapshotter::new(&policy).map_err(report)?;
        Ok((policy, snapshotter))
    };
    let progress = terminal_progress();
    match args.command {
        Command::Now { policy, output, kube } => {
            let policy = runtime.block_on(policy.resolve(&kube))?.policy;
            let snapshotter = Snapshotter::new(&policy).map_err(report)?;
            let kube = KubeClient::new(kube.options());
            let instances = runtime.block_on(AnyCluster::endpoints(&policy, &kube))?;
            let manifest = runtime
                .block_on(snapshotter.take(&instances, progress.as_ref()))
                .map_err(report)?;
            print_manifests(&[manifest], output)?;
        }
        Command::List { policy, output } => {
            let (_, snapshotter) = open(&policy)?;
            let listing = runtime.block_on(snapshotter.listing()).map_err(report)?;
            print_manifests(&listing.manifests, output)?;
            // On stderr: the listing on stdout keeps its format (JSON stays parseable).
            for skipped in &listing.skipped {
                eprintln!("skipped `{}`: {}", skipped.object, skipped.why);
            }
        }
        Command::Verify { policy, id, restore, kube } => {
            let (policy, snapshotter) = open(&policy)?;
            let manifest =
                runtime.block_on(snapshotter.verify(&id, progress.as_ref())).map_err(report)?;
            emit(format_args!(
                "{} OK: {} bytes stored, RDB v{} of {} bytes, CRC64 {}, sha256 {}",
                manifest.id,
                manifest.stored_bytes,
                manifest.rdb_version,
                manifest.raw_bytes,
                manifest.crc64.as_deref().unwrap_or("disabled (rdbchecksum no)"),
                manifest.sha256
            ))?;
            if restore {
                // A `kubernetes` target's test scales the policy's verifier StatefulSet, and
                // its seed listens at POD_IP: run it in the daemon's pod (`kubectl exec`).
                let kube = KubeClient::new(kube.options());
                let scratch = runtime.block_on(ScratchKind::for_policy(&policy, &kube))?;
                let verified = runtime.block_on(snapshotter.restore_test(&manifest, &scratch));
                runtime
                    .block_on(snapshotter.record_verified(&manifest.id, verified.clone()))
                    .map_err(report)?;
                // On a StatefulSet, an Event as the daemon's scheduled tests post.
                let (event, warning, note) = verdict_event(&manifest, &verified);
                runtime.block_on(announce(&policy, &kube, event, warning, &note));
                let expected = manifest.keys().map_or_else(
                    || "no key count recorded".to_owned(),
                    |k| format!("{k} expected"),
                );
                let loaded = verified
                    .keys
                    .map_or_else(|| "not loaded".to_owned(), |k| format!("{k} keys loaded"));
                if !verified.ok {
                    anyhow::bail!(
                        "{} restore test FAILED ({}): {} ({loaded}, {expected})",
                        manifest.id,
                        verified.reason.as_deref().unwrap_or("unknown"),
                        verified.why.as_deref().unwrap_or_default()
                    );
                }
                emit(format_args!("{} restorable: {loaded} ({expected})", manifest.id))?;
            }
        }
        Command::Restore { policy, id, latest, to: None, into: true, force, kube } => {
            let (policy, snapshotter) = open(&policy)?;
            let report = runtime.block_on(restore_into(
                &policy,
                &snapshotter,
                &KubeClient::new(kube.options()),
                id.as_deref().filter(|_| !latest),
                force,
                progress.as_ref(),
            ))?;
            emit(restore_into_text(&report))?;
            for (instance, why) in &report.unreached {
                eprintln!("left: {instance} does not follow the restored master yet ({why})");
            }
        }
        Command::Restore { policy, id, latest, to, force, .. } => {
            let (_, snapshotter) = open(&policy)?;
            let id = match (id, latest) {
                (Some(id), false) => id,
                _ => runtime.block_on(snapshotter.latest()).map_err(report)?.id,
            };
            let to = to.context("--to FILE.rdb or --into is required")?;
            let manifest = runtime
                .block_on(snapshotter.restore_with(&id, &to, force, progress.as_ref()))
                .map_err(report)?;
            emit(format_args!(
                "restored {} ({} bytes, verified) to {}",
                manifest.id,
                manifest.raw_bytes,
                to.display()
            ))?;
        }
        Command::Prune { policy, dry_run } => {
            let (_, snapshotter) = open(&policy)?;
            let pruned = runtime.block_on(snapshotter.prune(dry_run)).map_err(report)?;
            let verb = if dry_run { "would delete" } else { "deleted" };
            if pruned.is_empty() {
                emit("nothing to prune")?;
            }
            for prune in pruned {
                emit(format_args!("{verb} {}: {}", prune.id, prune.why))?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `restore --into` a local fleet or a StatefulSet: targets with a durable master record for
/// the restore to advance (static endpoints have none).
async fn restore_into(
    policy: &crate::policy::Policy,
    snapshotter: &Snapshotter,
    kube: &KubeClient,
    id: Option<&str>,
    force: bool,
    progress: &dyn Progress,
) -> anyhow::Result<crate::snapshot::IntoReport> {
    if matches!(policy.target, crate::policy::Target::Endpoints(_)) {
        anyhow::bail!(
            "restore --into needs a target whose master is recorded (a local fleet or a \
             StatefulSet); `endpoints:` roles are only watched: use --to FILE.rdb and the \
             runbook in docs/operations.md"
        );
    }
    let manifest = match id {
        Some(id) => snapshotter.find(id).await,
        None => snapshotter.latest().await,
    }
    .map_err(report)?;
    let cluster = AnyCluster::attach(policy, kube).await?;
    let actor = crate::failover::cli_actor();
    let options = crate::snapshot::IntoOptions {
        force,
        actor: &actor,
        timeout: crate::cluster::action_timeout(policy),
        guard: policy.health.write_guard.as_ref(),
    };
    snapshotter.restore_into(&cluster, &manifest, &options, progress).await.map_err(report)
}

fn restore_into_text(report: &crate::snapshot::IntoReport) -> String {
    let expected = match report.keys_expected {
        Some(keys) => format!("{keys} expected"),
        None => "the manifest records no key count".to_owned(),
    };
    let mut text = format!(
        "restored {} into {}: master at epoch {}, {} keys loaded ({expected}), {} RDB bytes in {:.1} s",
        report.id, report.instance, report.epoch, report.keys_loaded, report.bytes, report.seconds
    );
    if let Some(id) = &report.pre_restore_snapshot {
        text.push_str(&format!("\nthe data it replaced is snapshot {id}"));
    }
    text
}

/// The whole error chain on one line, as everywhere else.
fn report(error: crate::snapshot::SnapshotError) -> anyhow::Error {
    anyhow::anyhow!(crate::errors::chain(&error))
}

fn print_manifests(manifests: &[Manifest], output: Output) -> anyhow::Result<()> {
    match output {
        Output::Json => emit(
            serde_json::to_string_pretty(manifests).context("cannot encode manifests as JSON")?,
        ),
        Output::Table => emit(manifest_table(manifests)),
    }
}

/// The manifests as a table: sizes in binary units (`--output json` has the exact bytes).
fn manifest_table(manifests: &[Manifest]) -> Table {
    let mut table =
        Table::new(&["ID", "SOURCE", "RDB SIZE", "STORED", "COMP", "KEYS", "FINISHED", "VERIFIED"])
            .right_aligned(&["RDB SIZE", "STORED", "KEYS"]);
    for m in manifests {
        table.row([
            m.id.clone(),
            m.source.clone(),
            bytes(m.raw_bytes),
            bytes(m.stored_bytes),
            m.compression.as_str().to_owned(),
            m.keys().map_or_else(|| "-".to_owned(), |keys| keys.to_string()),
            m.finished.format("%Y-%m-%d %H:%M:%SZ").to_string(),
            verified_cell(m.verified.as_ref()),
        ]);
    }
    table
}

/// Whether the snapshot was proven restorable: `restorable <when>`, `FAILED <reason> <when>`,
/// or `-` when never tested.
fn verified_cell(verified: Option<&crate::snapshot::manifest::Verified>) -> String {
    let Some(verified) = verified else { return "-".to_owned() };
    let at = verified.at.format("%Y-%m-%d %H:%M:%SZ");
    if verified.ok {
        format!("restorable {at}")
    } else {
        format!("FAILED {} {at}", verified.reason.as_deref().unwrap_or("unknown"))
    }
}

fn terminal_progress() -> Box<dyn Progress> {
    if std::io::stderr().is_terminal() {
        Box::new(Bar::default())
    } else {
        Box::new(Lines::default())
    }
}

/// An indicatif bar on stderr.
#[derive(Default)]
struct Bar(Mutex<Option<ProgressBar>>);

impl Progress for Bar {
    fn start(&self, what: &str, total: Option<u64>) {
        let bar = match total {
            Some(total) => ProgressBar::new(total),
            None => ProgressBar::new_spinner(),
        };
        let template = match total {
            Some(_) => {
                "{msg} [{bar:30}] {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} {eta}"
            }
            None => "{spinner} {msg} {binary_bytes} {binary_bytes_per_sec} {elapsed}",
        };
        if let Ok(style) = ProgressStyle::with_template(template) {
            bar.set_style(style);
        }
        bar.set_message(what.to_owned());
        *self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(bar);
    }

    fn advance(&self, bytes: u64) {
        if let Some(bar) = &*self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner) {
            bar.inc(bytes);
        }
    }

    fn finish(&self) {
        if let Some(bar) = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take() {
            bar.finish();
        }
    }
}

/// One line at the start and one at the end, for logs.
#[derive(Default)]
struct Lines {
    started: Mutex<Option<(String, Instant)>>,
    bytes: AtomicU64,
}

impl Progress for Lines {
    fn start(&self, what: &str, total: Option<u64>) {
        let size = total.map(|t| format!(" ({t} bytes)")).unwrap_or_default();
        eprintln!("transfer of {what}{size} started");
        self.bytes.store(0, Ordering::Relaxed);
        *self.started.lock().unwrap_or_else(std::sync::PoisonError::into_inner) =
            Some((what.to_owned(), Instant::now()));
    }

    fn advance(&self, bytes: u64) {
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    fn finish(&self) {
        let started = self.started.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
        if let Some((what, at)) = started {
            let bytes = self.bytes.load(Ordering::Relaxed);
            let secs = at.elapsed().as_secs_f64();
            let rate = bytes as f64 / secs.max(1e-9) / 1e6;
            eprintln!("transfer of {what} ended: {bytes} bytes in {secs:.1} s ({rate:.0} MB/s)");
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone as _, Utc};

    use super::*;
    use crate::snapshot::manifest::{Codec, FORMAT};

    /// Issue 17: `snapshot list` printed `88892` where `plan` prints `86.8 KiB`.
    #[test]
    fn the_listing_shows_sizes_in_binary_units_and_json_the_exact_bytes() {
        let at = Utc.with_ymd_and_hms(2026, 11, 24, 2, 30, 0).unwrap();
        let manifest = Manifest {
            format: FORMAT,
            id: "20261124T023000.000Z-127.0.0.1-6379".into(),
            policy: "cache".into(),
            source: "127.0.0.1:6379".into(),
            run_id: "r1".into(),
            object: "cache/20261124T023000.000Z-127.0.0.1-6379.rdb.zst".into(),
            compression: Codec::Zstd,
            encryption: crate::snapshot::manifest::Cipher::None,
            recipients: Vec::new(),
            replid: None,
            repl_offset: None,
            rdb_version: 12,
            redis_version: None,
            raw_bytes: 88_892,
            stored_bytes: 3 * 1024 * 1024 + 200 * 1024,
            crc64: None,
            sha256: "00".into(),
            started: at,
            finished: at,
            keyspace: None,
            sample: Vec::new(),
            sealed_sample: None,
            verified: None,
        };
        let proven = Manifest {
            keyspace: Some([(0, 1200), (2, 34)].into_iter().collect()),
            verified: Some(crate::snapshot::manifest::Verified {
                at,
                keys: Some(1234),
                ok: true,
                reason: None,
                why: None,
            }),
            ..manifest.clone()
        };
        let failed = Manifest {
            verified: Some(crate::snapshot::manifest::Verified {
                at,
                keys: Some(7),
                ok: false,
                reason: Some("key_count".into()),
                why: Some("loaded 7 keys".into()),
            }),
            ..proven.clone()
        };
        let table = manifest_table(&[manifest.clone(), proven, failed]).to_string();
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(
            lines,
            [
                "ID                                   SOURCE          RDB SIZE   STORED  COMP  KEYS  FINISHED              VERIFIED",
                "20261124T023000.000Z-127.0.0.1-6379  127.0.0.1:6379  86.8 KiB  3.2 MiB  zstd     -  2026-11-24 02:30:00Z  -",
                "20261124T023000.000Z-127.0.0.1-6379  127.0.0.1:6379  86.8 KiB  3.2 MiB  zstd  1234  2026-11-24 02:30:00Z  restorable 2026-11-24 02:30:00Z",
                "20261124T023000.000Z-127.0.0.1-6379  127.0.0.1:6379  86.8 KiB  3.2 MiB  zstd  1234  2026-11-24 02:30:00Z  FAILED key_count 2026-11-24 02:30:00Z",
            ]
        );
        let json = serde_json::to_value([&manifest]).unwrap();
        assert_eq!(json[0]["rawBytes"], 88_892);
        assert_eq!(json[0]["storedBytes"], 3 * 1024 * 1024 + 200 * 1024);
    }
}
