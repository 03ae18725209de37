//! Scheduled snapshots in the daemon: one `tokio-cron-scheduler` job per policy with a
//! `spec.snapshots` section, on its cron line (UTC).
//!
//! - **At most one in flight per policy**: a run that finds the previous one still going is
//!   counted (`outcome="busy"`) and skipped, never queued, so a slow store cannot pile up
//!   transfers against the same replica.
//! - **Every run ends**: a transfer slower than the policy's `minBytesPerSecond` or longer
//!   than its `deadline` fails (see [`crate::snapshot::pace`]), so a trickling source holds
//!   the gate, and a scale-down waiting on it, for at most that long.
//! - **Missed schedules are reported**: when a policy's job is first set up, the newest
//!   snapshot is compared with the schedule's previous firing; older means the daemon was
//!   down when one was due: a warning and `snapshots_missed_total`. No snapshot at all is a
//!   new policy (or destination), not a missed one: its first is at the next firing. The
//!   next firing takes one as usual; nothing is silently skipped.
//! - **Modes**: `dry-run` and `paused` (the daemon's, or one policy's [`Pause`]) never upload;
//!   they log what would have run and count it.
//! - After a successful snapshot, retention prunes the policy's older ones (logged).
//! - Alerts mapped to `snapshot` take one at once, through the same gate.
//! - **Restore tests** (`spec.snapshots.verify`): a second job on its own cron line loads the
//!   newest snapshot into a scratch instance (never a member of the fleet: a `redis-server`
//!   child, or for a `kubernetes` target the verifier StatefulSet scaled to one pod and back
//!   to 0, see [`crate::cluster::scratch`]), checks it ([`crate::snapshot::proof`]) and writes
//!   the verdict into its manifest. Through the same gate, leader check and modes as
//!   snapshots: never beside a snapshot of the same policy (`busy`), only on the leader, not
//!   in a dry run or paused. Counted in `snapshot_verifications_total` and, failed, by
//!   reason; on a `kubernetes` target every verdict is also an Event on the StatefulSet
//!   (`RestoreTestPassed`, or a Warning `RestoreTestFailed` with the reason and key counts).
//! - Shutdown stops the scheduler; a transfer in flight is dropped with the runtime, which
//!   leaves an incomplete multipart upload and no manifest: never a listed snapshot.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::Mutex;
use tokio_cron_scheduler::{Job, JobScheduler, JobSchedulerError};

use super::metrics::Metrics;
use super::policy_loop::rfc3339;
use super::report::Reports;
use crate::act::{Leadership, Mode, Pause, Pauses};
use crate::cluster::AnyCluster;
use crate::cluster::kubernetes::KubeClient;
use crate::cluster::scratch::ScratchKind;
use crate::errors::chain;
use crate::policy::Policy;
use crate::resource::status::LastSnapshot;
use crate::snapshot::Quiet;
use crate::snapshot::manifest::Verified;
use crate::snapshot::snapshotter::{announce, verdict_event};
use crate::snapshot::{Manifest, SnapshotError, Snapshotter};

/// The scheduler's handle on one job.
type JobId = uuid::Uuid;
/// Each scheduled policy's jobs (snapshots, and restore tests when set) and runner, by
/// policy name.
type Jobs = HashMap<String, (Vec<JobId>, Arc<Runner>)>;

/// Every policy's snapshot job. Cheap to clone: clones share the scheduler.
#[derive(Clone)]
pub struct SnapshotScheduler {
    scheduler: JobScheduler,
    mode: Mode,
    /// Each policy's runtime pause, as its executor sees it.
    pauses: Pauses,
    metrics: Arc<Metrics>,
    /// Where each policy's last snapshot is told, for its resource's status.
    reports: Reports,
    /// Lists a StatefulSet's pods when a snapshot chooses its source.
    kube: Arc<KubeClient>,
    jobs: Arc<Mutex<Jobs>>,
    /// One gate per policy name, kept across reloads so a reload never lets a second
    /// transfer start beside a running one.
    gates: Arc<std::sync::Mutex<HashMap<String, Arc<Mutex<()>>>>>,
}

impl SnapshotScheduler {
    pub async fn start(
        mode: Mode,
        pauses: Pauses,
        metrics: Arc<Metrics>,
        reports: Reports,
        kube: Arc<KubeClient>,
    ) -> Result<Self, JobSchedulerError> {
        let scheduler = JobScheduler::new().await?;
        scheduler.start().await?;
        Ok(Self {
            scheduler,
            mode,
            pauses,
            metrics,
            reports,
            kube,
            jobs: Arc::default(),
            gates: Arc::default(),
        })
    }

    /// Schedules `policy`'s snapshots (replacing a previous version's job), or removes its
    /// job when it has no `spec.snapshots`.
    pub async fn set(&self, policy: &Policy, leadership: Leadership) {
        let name = policy.name.clone();
        let first = self.remove(&name).await.is_none();
        let Some(config) = &policy.snapshots else { return };
        // Scheduled even when it cannot be built now (a credential file not mounted yet):
        // each firing tries again and counts its failure, so the alerts on failures and on
        // the last success keep firing rather than the schedule going quiet.
        let snapshotter = match Snapshotter::new(policy) {
            Ok(snapshotter) => Some(Arc::new(snapshotter)),
            Err(error) => {
                tracing::error!(policy = %name, error = %chain(&error), "snapshots cannot run for this policy yet: each firing tries again");
                self.metrics.snapshot_failed(&name, error.category());
                None
            }
        };
        let gate = self.gate(&name);
        let runner = Arc::new(Runner {
            policy: policy.clone(),
            snapshotter: std::sync::Mutex::new(snapshotter),
            gate,
            mode: self.mode,
            pause: self.pauses.of(&name),
            leadership,
            kube: self.kube.clone(),
            metrics: self.metrics.clone(),
            reports: self.reports.clone(),
        });
        let job_runner = runner.clone();
        let job = Job::new_async(config.schedule.as_str(), move |_id, _scheduler| {
            let runner = job_runner.clone();
            Box::pin(async move {
                // `run` logs and counts every outcome itself.
                let _ = runner.run("schedule").await;
            })
        });
        let added = match job {
            Ok(job) => self.scheduler.add(job).await,
            Err(error) => Err(error),
        };
        let mut ids = match added {
            Ok(id) => {
                tracing::info!(policy = %name, schedule = %config.schedule, destination = %config.destination, "snapshots scheduled");
                vec![id]
            }
            Err(error) => {
                tracing::error!(policy = %name, error = %error, "cannot schedule snapshots");
                self.metrics.snapshot_failed(&name, "schedule");
                return;
            }
        };
        if let Some(verify) = &config.verify {
            let job_runner = runner.clone();
            let job = Job::new_async(verify.schedule.as_str(), move |_id, _scheduler| {
                let runner = job_runner.clone();
                Box::pin(async move {
                    // `verify` logs and counts every outcome itself.
                    let _ = runner.verify("schedule").await;
                })
            });
            let added = match job {
                Ok(job) => self.scheduler.add(job).await,
                Err(error) => Err(error),
            };
            match added {
                Ok(id) => {
                    tracing::info!(policy = %name, schedule = %verify.schedule, keep = verify.keep, "restore tests scheduled");
                    ids.push(id);
                }
                Err(error) => {
                    tracing::error!(policy = %name, error = %error, "cannot schedule restore tests");
                    self.metrics.verification_failed(&name, "schedule");
                }
            }
        }
        self.jobs.lock().await.insert(name, (ids, runner.clone()));
        if first {
            tokio::spawn(async move { runner.report_missed().await });
        }
    }

    /// Stops `name`'s job (a run in flight finishes). Returns whether there was one.
    pub async fn remove(&self, name: &str) -> Option<()> {
        let (ids, _) = self.jobs.lock().await.remove(name)?;
        for id in ids {
            if let Err(error) = self.scheduler.remove(&id).await {
                tracing::warn!(policy = %name, error = %error, "cannot unschedule snapshots");
            }
        }
        Some(())
    }

    /// Takes a snapshot of `name` now and waits for it: `Err` says why none was taken (in
    /// flight already, standby, dry run, paused, no schedule, or the failure). What a
    /// `beforeActions: [scaleDown]` policy waits for before removing instances.
    pub async fn take_now(&self, name: &str, why: &str) -> Result<Manifest, String> {
        let runner = self.jobs.lock().await.get(name).map(|(_, runner)| runner.clone());
        match runner {
            Some(runner) => runner.run(why).await,
            None => Err("the policy has no working snapshot schedule".to_owned()),
        }
    }

    /// Takes a snapshot of `name` now (an alert asked), unless one is in flight.
    pub async fn trigger(&self, name: &str, why: &str) {
        let runner = self.jobs.lock().await.get(name).map(|(_, runner)| runner.clone());
        match runner {
            Some(runner) => {
                let why = why.to_owned();
                tokio::spawn(async move {
                    // `run` logs and counts every outcome itself.
                    let _ = runner.run(&why).await;
                });
            }
            None => {
                tracing::warn!(policy = %name, why, "a snapshot was asked for, but the policy has no working snapshot schedule");
            }
        }
    }

    pub async fn shutdown(mut self) {
        if let Err(error) = self.scheduler.shutdown().await {
            tracing::warn!(error = %error, "snapshot scheduler did not stop cleanly");
        }
    }

    fn gate(&self, name: &str) -> Arc<Mutex<()>> {
        let mut gates = self.gates.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        gates.entry(name.to_owned()).or_default().clone()
    }
}

/// One policy's snapshot runs.
struct Runner {
    policy: Policy,
    /// Built at the first use that can build it (see [`Runner::snapshotter`]).
    snapshotter: std::sync::Mutex<Option<Arc<Snapshotter>>>,
    gate: Arc<Mutex<()>>,
    mode: Mode,
    pause: Pause,
    /// Only the leader takes snapshots: two daemons would upload every one twice.
    leadership: Leadership,
    kube: Arc<KubeClient>,
    metrics: Arc<Metrics>,
    reports: Reports,
}

impl Runner {
    /// The policy's snapshotter, built now if it could not be before: what it reads (the
    /// Redis password, the store's credentials) may have appeared since.
    fn snapshotter(&self) -> Result<Arc<Snapshotter>, SnapshotError> {
        let mut held = self.snapshotter.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(snapshotter) = held.as_ref() {
            return Ok(snapshotter.clone());
        }
        let built = Arc::new(Snapshotter::new(&self.policy)?);
        *held = Some(built.clone());
        Ok(built)
    }

    /// The gate every run passes: one transfer at a time per policy (a snapshot or a restore
    /// test), the leader only, and neither in a dry run nor paused. `Err` is the outcome label
    /// and why, already logged; `what` names the work in the logs.
    fn admit(
        &self,
        why: &str,
        what: &str,
    ) -> Result<tokio::sync::MutexGuard<'_, ()>, (&'static str, String)> {
        let name = &self.policy.name;
        let Ok(in_flight) = self.gate.try_lock() else {
            tracing::warn!(policy = %name, why, "a snapshot or restore test is still in flight: skipping this {what}");
            return Err(("busy", "another snapshot is in flight".to_owned()));
        };
        if !self.leadership.is_leader() {
            tracing::debug!(policy = %name, why, "standby: the leader runs this {what}");
            return Err(("standby", "this daemon is a standby".to_owned()));
        }
        match self.pause.over(self.mode) {
            Mode::DryRun => {
                tracing::info!(policy = %name, why, "dry run: would run a {what} now");
                Err(("dry_run", "dry run".to_owned()))
            }
            Mode::Paused => {
                tracing::info!(policy = %name, why, "paused: not running the {what} due now");
                Err(("paused", "paused".to_owned()))
            }
            Mode::Apply => Ok(in_flight),
        }
    }

    /// Takes one snapshot, logging and counting the outcome; `Err` says why none was taken.
    async fn run(&self, why: &str) -> Result<Manifest, String> {
        let name = &self.policy.name;
        let _in_flight = self.admit(why, "snapshot").map_err(|(outcome, message)| {
            self.metrics.snapshot_run(name, outcome);
            message
        })?;
        let started = Instant::now();
        match self.take().await {
            Ok(manifest) => {
                self.metrics.snapshot_succeeded(
                    name,
                    manifest.finished.timestamp(),
                    started.elapsed(),
                    manifest.raw_bytes,
                    manifest.stored_bytes,
                );
                let last = LastSnapshot {
                    time: rfc3339(manifest.finished),
                    id: manifest.id.clone(),
                    bytes: manifest.stored_bytes,
                    verified: false,
                    reason: Some(why.to_owned()),
                };
                self.reports.update(name, |r| r.last_snapshot = Some(last));
                // Retention after success only: a failing schedule never prunes what is left.
                let pruned = match self.snapshotter() {
                    Ok(snapshotter) => snapshotter.prune(false).await,
                    Err(error) => Err(error),
                };
                if let Err(error) = pruned {
                    tracing::warn!(policy = %name, error = %chain(&error), "retention could not prune");
                }
                Ok(manifest)
            }
            Err(error) => {
                tracing::error!(policy = %name, why, reason = error.category(), error = %chain(&error), "snapshot failed");
                self.metrics.snapshot_failed(name, error.category());
                Err(chain(&error))
            }
        }
    }

    /// Runs one restore test of the newest snapshot, through the same gate as snapshots,
    /// writing the verdict into its manifest, counting and logging it, and on a Kubernetes
    /// target posting it as an Event ([`announce`]). `Err` says why none ran or what
    /// failed.
    async fn verify(&self, why: &str) -> Result<Verified, String> {
        let name = &self.policy.name;
        let _in_flight = self.admit(why, "restore test").map_err(|(outcome, message)| {
            self.metrics.verification_run(name, outcome);
            message
        })?;
        let started = Instant::now();
        let (newest, verified) = match self.restore_test(why).await {
            Ok(tested) => tested,
            Err(None) => return Err("no snapshot to test".to_owned()),
            // No verdict: the test could not run at all (no scratch, the store unreachable).
            Err(Some((reason, message))) => {
                tracing::error!(policy = %name, why, reason, error = %message, "restore test failed");
                self.metrics.verification_failed(name, reason);
                let note = format!("restore test failed ({reason}): {message}");
                announce(&self.policy, &self.kube, "RestoreTestFailed", true, &note).await;
                return Err(message);
            }
        };
        let (event, warning, note) = verdict_event(&newest, &verified);
        if verified.ok && verified.reason.is_none() {
            tracing::info!(
                policy = %name, why, id = %newest.id, keys = verified.keys,
                expected = newest.keys(), took = ?started.elapsed(),
                "restore test passed: the snapshot loads"
            );
            self.metrics.verification_passed(name, verified.at.timestamp());
            self.reports.update(name, |r| {
                if let Some(last) = r.last_snapshot.as_mut().filter(|last| last.id == newest.id) {
                    last.verified = true;
                }
            });
            announce(&self.policy, &self.kube, event, warning, &note).await;
            Ok(verified)
        } else {
            let reason = verified.reason.as_deref().unwrap_or("unknown");
            tracing::error!(policy = %name, why, reason, error = %note, "restore test failed");
            self.metrics.verification_failed(name, reason);
            announce(&self.policy, &self.kube, event, warning, &note).await;
            Err(note)
        }
    }

    /// The test of the newest snapshot, its verdict written into the manifest: the manifest
    /// and the verdict; else why none was reached, `None` when there is no snapshot yet
    /// (counted here), else the reason and message.
    async fn restore_test(
        &self,
        why: &str,
    ) -> Result<(Manifest, Verified), Option<(&'static str, String)>> {
        let name = &self.policy.name;
        let scratch = ScratchKind::for_policy(&self.policy, &self.kube)
            .await
            .map_err(|error| Some(("no_scratch", chain(&error))))?;
        let snapshotter =
            self.snapshotter().map_err(|error| Some((error.category(), chain(&error))))?;
        let newest = match snapshotter.latest().await {
            Ok(newest) => newest,
            Err(SnapshotError::NotFound { .. }) => {
                tracing::info!(policy = %name, why, "no snapshot to test yet");
                self.metrics.verification_run(name, "no_snapshot");
                return Err(None);
            }
            Err(error) => return Err(Some((error.category(), chain(&error)))),
        };
        let verified = snapshotter.restore_test(&newest, &scratch).await;
        if let Err(error) = snapshotter.record_verified(&newest.id, verified.clone()).await {
            tracing::warn!(policy = %name, id = %newest.id, error = %chain(&error), "cannot write the restore test's verdict into the manifest");
        }
        Ok((newest, verified))
    }

    async fn take(&self) -> Result<Manifest, SnapshotError> {
        let snapshotter = self.snapshotter()?;
        let instances = AnyCluster::endpoints(&self.policy, &self.kube)
            .await
            .map_err(SnapshotError::Members)?;
        snapshotter.take(&instances, &Quiet).await
    }

    /// Warns (and counts) when the newest snapshot is older than the schedule's previous
    /// firing: one was due while the daemon was not running.
    async fn report_missed(&self) {
        let name = &self.policy.name;
        let Some(config) = &self.policy.snapshots else { return };
        let now = chrono::Utc::now();
        let Some(due) = config.schedule.last_at_or_before(now) else { return };
        let listed = match self.snapshotter() {
            Ok(snapshotter) => snapshotter.list().await,
            Err(error) => Err(error),
        };
        match listed {
            Ok(manifests) => {
                let newest = manifests.last().map(|m| m.started);
                if missed(newest, due) {
                    tracing::warn!(
                        policy = %name, due = %due, newest = ?newest.map(|t| t.to_rfc3339()),
                        "a scheduled snapshot was missed (the daemon was not running); the next is at the next firing"
                    );
                    self.metrics.snapshot_missed(name);
                }
            }
            Err(error) => {
                tracing::warn!(policy = %name, error = %chain(&error), "cannot list snapshots to check for missed schedules");
            }
        }
    }
}

/// Whether a firing at `due` has no snapshot at or after it although an earlier one exists.
/// A snapshot started a little before `due` (clock skew, a run still finishing) is not
/// counted as missing it. With none at all nothing is known to be missed: a policy new to
/// the daemon has none yet, and its first firing is still ahead.
fn missed(
    newest: Option<chrono::DateTime<chrono::Utc>>,
    due: chrono::DateTime<chrono::Utc>,
) -> bool {
    newest.is_some_and(|newest| newest + chrono::Duration::minutes(1) < due)
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone as _;

    use super::*;

    /// A brand-new policy has no snapshot and has missed nothing.
    #[test]
    fn a_policy_without_any_snapshot_has_missed_nothing() {
        let due = chrono::Utc.with_ymd_and_hms(2026, 3, 1, 3, 0, 0).unwrap();
        assert!(!missed(None, due));
    }

    #[test]
    fn a_firing_without_a_later_snapshot_was_missed() {
        let due = chrono::Utc.with_ymd_and_hms(2026, 3, 1, 3, 0, 0).unwrap();
        assert!(missed(Some(due - chrono::Duration::days(1)), due));
        assert!(!missed(Some(due + chrono::Duration::seconds(5)), due));
        assert!(!missed(Some(due - chrono::Duration::seconds(5)), due));
    }
}
