//! The [`Snapshotter`]: everything done with one policy's snapshots over its destination,
//! one file per kind of work:
//!
//! - `upload`: taking one, from choosing the source to writing the manifest;
//! - `catalog`: what the destination holds (list, with every untrusted manifest left out)
//!   and retention's deletes (prune);
//! - `object`: the download every read of a snapshot takes: stored bytes counted and
//!   hashed, then decrypted when the manifest says `age` (so verify, restore and `into`
//!   all decrypt the same way);
//! - `restore`: reading one back, checked against its manifest (verify), and writing it to
//!   a local file (restore);
//! - `into`: streaming one into the deployment the policy targets through the one-shot
//!   master ([`crate::snapshot::seed`]), under a claim on the master record;
//! - `bootstrap`: loading a new fleet's first master the same way, before it is recorded.
//! - `proof`: restore tests: the same load into a scratch instance outside the fleet, checked
//!   against the manifest, and the verdict written into it.
//!
//! Each file adds its methods to the one [`Snapshotter`], so callers see a single type.

mod bootstrap;
mod catalog;
mod into;
mod object;
mod proof;
mod restore;
mod upload;

use std::time::Duration;

pub use catalog::{Listing, MAX_MANIFEST_BYTES, Skipped};
pub use into::{IntoOptions, IntoReport, SEED_PORT, claim_lease};
pub use proof::{announce, verdict_event};
pub use restore::ExpandsPastManifest;

use super::SnapshotError;
use super::store::Destination;
use super::stream::Deadlines;
use crate::policy::{Policy, Snapshots};
use crate::sample::redis::Access;

/// Reports transfer progress (a terminal progress bar, or nothing).
pub trait Progress: Send + Sync {
    /// A transfer of `total` bytes (if known) starts; `what` says which.
    fn start(&self, what: &str, total: Option<u64>);
    fn advance(&self, bytes: u64);
    fn finish(&self);
}

/// No progress reporting: the daemon's choice (it logs and counts instead).
pub struct Quiet;

impl Progress for Quiet {
    fn start(&self, _: &str, _: Option<u64>) {}
    fn advance(&self, _: u64) {}
    fn finish(&self) {}
}

/// Takes, lists, verifies, restores and prunes one policy's snapshots.
pub struct Snapshotter {
    policy: String,
    config: Snapshots,
    access: Access,
    destination: Destination,
    deadlines: Deadlines,
    sample_timeout: Duration,
}

impl Snapshotter {
    /// Reads the policy's credentials now and opens its destination (no network yet). The
    /// encryption keys are read where they are used: the recipients when a snapshot starts,
    /// the identity when an encrypted snapshot is read.
    pub fn new(policy: &Policy) -> Result<Self, SnapshotError> {
        let config = policy
            .snapshots
            .clone()
            .ok_or_else(|| SnapshotError::NotConfigured { policy: policy.name.clone() })?;
        let access = crate::sample::redis_access(policy).map_err(SnapshotError::Access)?;
        let destination = Destination::open(&config)?;
        let handshake = policy.sampling.timeout.max(Duration::from_secs(5));
        Ok(Self {
            policy: policy.name.clone(),
            config,
            access,
            destination,
            // Below Redis's default repl-timeout (60 s): we give up before it drops us.
            deadlines: Deadlines { handshake, stall: Duration::from_secs(45) },
            sample_timeout: policy.sampling.timeout,
        })
    }

    /// Shorter deadlines (tests and benchmarks that provoke stalls).
    pub fn with_deadlines(mut self, deadlines: Deadlines) -> Self {
        self.deadlines = deadlines;
        self
    }

    pub fn destination(&self) -> &Destination {
        &self.destination
    }

    /// The key of `name` in the policy's folder, once the destination allows it
    /// ([`Destination::check_local`]: no symlink, nothing outside the store). Checked just
    /// before each use, so one planted since a listing is refused, never followed.
    fn checked_key(&self, name: &str) -> Result<object_store::path::Path, SnapshotError> {
        let key = self.destination.key(&self.policy, name);
        self.destination.check_local(&key).map_err(|why| SnapshotError::InvalidManifest {
            url: self.destination.url.clone(),
            object: key.to_string(),
            why,
        })?;
        Ok(key)
    }
}

/// Lowercase hex of a digest, as `sha256sum` prints it: the manifest records it so.
fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}
