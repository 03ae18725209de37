//! Snapshots: RDBs streamed from a Redis replica straight into object storage, verified on
//! the way, described by a manifest, pruned by retention, and restorable on demand.
//!
//! - [`stream`]: the replication handshake (`REPLCONF rdb-only`, `PSYNC`) and the payload
//!   reader for both framings.
//! - [`rdb`]: the streaming verifier (header, end opcode, CRC64).
//! - [`store`]: destination URLs to object stores, credentials read from env or files.
//! - [`source`]: which member to read from: pure; a replica only when its master vouches
//!   for it, then the master if the policy allows; never an address only `INFO` names.
//! - [`pace`]: pure: the throughput floor and the deadline that end a snapshot that would
//!   otherwise never finish.
//! - [`snapshotter`]: one policy's snapshots over its destination, one file per kind of
//!   work: `upload` (socket -> verify -> (zstd) -> (age) -> sha256 -> multipart upload ->
//!   manifest), `catalog` (list, prune), `object` (the one download path every read takes:
//!   sha256 of the stored bytes, then age decryption), `restore` (verify, restore), `into`
//!   (restore into the deployment), `bootstrap` (seed a new fleet's first master) and `proof`
//!   (restore tests into a scratch instance).
//! - [`crypt`]: encryption at rest with age: recipients and identities read from files
//!   (an identity's secret never shown), the streaming encryptor, the decrypting reader.
//! - [`manifest`]: the JSON document that makes a snapshot exist, its codec, and
//!   time-sorted names.
//! - [`retention`]: pure: which complete snapshots to delete, and why (never the newest
//!   `verify.keep` proven restorable).
//! - [`proof`]: pure: what a restore test concludes from a loaded scratch instance (the
//!   key-count tolerance, the sampled keys' types); `snapshotter`'s `proof` runs the test.
//! - [`seed`]: the one-shot master that restores through the replication protocol: answers
//!   a replica's handshake and streams it an RDB; the RDB-version rule; waiting for the load.
//!
//! # Guarantees
//!
//! A snapshot exists only when its manifest exists, and the manifest is written only after
//! the RDB's checksum verified and the object upload completed. A transfer that fails
//! (source, network, store, corruption, too slow, past its deadline) aborts its multipart
//! upload and leaves no manifest; if the abort itself fails, the incomplete upload is
//! invisible to `list` and is left to the bucket's lifecycle rule. Safe to cancel at any point; a daemon that dies mid-transfer
//! leaves at most an incomplete multipart upload.

pub mod crypt;
pub mod manifest;
pub mod pace;
pub mod proof;
pub mod rdb;
pub mod retention;
pub mod seed;
pub mod snapshotter;
pub mod source;
pub mod store;
pub mod stream;

pub use manifest::Manifest;
pub use snapshotter::{IntoOptions, IntoReport, Progress, Quiet, SEED_PORT, Snapshotter};

use crate::observe::InstanceId;

/// Why a snapshot operation failed. Messages name the instance, URL, object or file, never a
/// credential.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("policy {policy} has no `spec.snapshots` section")]
    NotConfigured { policy: String },
    #[error("cannot prepare access to the instances")]
    Access(#[source] crate::sample::SetupError),
    #[error("cannot read the destination credentials ({what})")]
    Credentials {
        what: &'static str,
        #[source]
        source: crate::sample::secret::SecretError,
    },
    #[error("cannot open destination `{url}`")]
    Store {
        url: String,
        #[source]
        source: Box<object_store::Error>,
    },
    #[error("destination `{url}`: {why}")]
    Destination { url: String, why: String },
    #[error("cannot list the instances")]
    Members(#[source] crate::cluster::ClusterError),
    #[error("no instance can serve a snapshot: {why}")]
    NoSource { why: String },
    /// Every instance failed the TLS handshake: a certificate problem, not a fleet one.
    #[error("no instance can serve a snapshot: {why}")]
    SourceTls { why: String },
    #[error("streaming the RDB from {instance} failed")]
    Stream {
        instance: InstanceId,
        #[source]
        source: stream::StreamError,
    },
    #[error("the RDB from {instance} is corrupt; the upload was aborted")]
    Corrupt {
        instance: InstanceId,
        #[source]
        source: rdb::RdbError,
    },
    #[error(
        "the destination `{url}` did not keep up: the upload stalled for {after:?} while the \
         source kept sending (Redis drops a replica that stops reading)"
    )]
    Backpressure { url: String, after: std::time::Duration },
    #[error("uploading `{object}` to `{url}` failed{}", abort_note(.abort.as_deref()))]
    Upload {
        url: String,
        object: String,
        abort: Option<String>,
        #[source]
        source: Box<object_store::Error>,
    },
    #[error("cannot {action} `{object}` at `{url}`")]
    Object {
        action: &'static str,
        url: String,
        object: String,
        #[source]
        source: Box<object_store::Error>,
    },
    #[error("manifest `{object}` at `{url}` is not valid")]
    Manifest {
        url: String,
        object: String,
        #[source]
        source: serde_json::Error,
    },
    /// A manifest that is too large, or names another snapshot, policy or object than its
    /// own, or a `file://` object reached through a symlink: never trusted.
    #[error("manifest `{object}` at `{url}` is not trusted: {why}")]
    InvalidManifest { url: String, object: String, why: String },
    #[error("no snapshot `{id}` at `{url}` (see `snapshot list`)")]
    NotFound { id: String, url: String },
    #[error("snapshot `{id}` does not match its manifest: {why}")]
    Mismatch { id: String, why: String },
    #[error("snapshot `{id}` is corrupt")]
    StoredCorrupt {
        id: String,
        #[source]
        source: rdb::RdbError,
    },
    #[error("cannot compress snapshot `{id}`")]
    Compress {
        id: String,
        #[source]
        source: std::io::Error,
    },
    /// The task reading the RDB from the source ended without a verdict (it panicked or
    /// was cancelled): a fault here, not the source's.
    #[error("the snapshot's reader task failed: {why}")]
    ReaderFailed { why: String },
    /// The recipients or the identity could not be read, or encryption could not start.
    #[error(transparent)]
    Crypt(#[from] crypt::CryptError),
    #[error("cannot encrypt snapshot `{id}`")]
    Encrypt {
        id: String,
        #[source]
        source: std::io::Error,
    },
    /// An encrypted snapshot, and no identity here is one of the keys it was encrypted to.
    #[error("snapshot `{id}` is encrypted (age) to {}, and {why}", recipients_text(.recipients))]
    NoIdentity { id: String, recipients: Vec<String>, why: String },
    /// Not a valid age object, or cut, or altered: the object matched its manifest's size
    /// and sha256, so the manifest itself describes a damaged object.
    #[error("cannot decrypt snapshot `{id}`: {why}")]
    Decrypt { id: String, why: String },
    #[error("cannot decompress snapshot `{id}`")]
    Decompress {
        id: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{}` exists; pass --force to replace it", .path.display())]
    Exists { path: std::path::PathBuf },
    /// `restore --into` found data it would replace, and was not told `--force`.
    #[error(
        "refusing to restore over data ({instances}); pass --force to snapshot it first and replace it"
    )]
    HoldsData { instances: String },
    /// A bootstrap found data (or an instance it could not ask) right before seeding.
    #[error("not seeding the first master: {instances}, and a bootstrap never replaces data")]
    SeedOverData { instances: String },
    #[error("cannot restore into the deployment: {why}")]
    Restore { why: String },
    #[error("cannot {action}")]
    Cluster {
        action: &'static str,
        #[source]
        source: crate::cluster::ClusterError,
    },
    #[error(transparent)]
    Seed(#[from] seed::SeedError),
    #[error("cannot write `{}`", .path.display())]
    Local {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn recipients_text(recipients: &[String]) -> String {
    if recipients.is_empty() {
        "keys its manifest does not list".to_owned()
    } else {
        recipients.join(", ")
    }
}

fn abort_note(abort: Option<&str>) -> String {
    match abort {
        None => "; the multipart upload was aborted".to_owned(),
        Some(why) => format!(
            "; aborting the multipart upload failed too ({why}): it is not listed as a \
             snapshot, and the bucket's lifecycle rule for incomplete uploads removes it"
        ),
    }
}

/// The store refused the request's credentials or their permissions (HTTP 401 or 403: an
/// unknown access key, a wrong secret, a policy that does not allow the action).
fn refused(error: &object_store::Error) -> bool {
    matches!(
        error,
        object_store::Error::PermissionDenied { .. } | object_store::Error::Unauthenticated { .. }
    )
}

impl SnapshotError {
    /// A bounded label for metrics (`failures by reason`).
    pub fn category(&self) -> &'static str {
        match self {
            SnapshotError::NotConfigured { .. } => "not_configured",
            SnapshotError::Access(_) | SnapshotError::Credentials { .. } => "credentials",
            SnapshotError::Store { .. } | SnapshotError::Destination { .. } => "destination",
            SnapshotError::Members(_) => "members",
            SnapshotError::NoSource { .. } => "no_source",
            SnapshotError::SourceTls { .. } => "tls",
            SnapshotError::Stream { source, .. } => source.category(),
            SnapshotError::Corrupt { .. } => "corrupt",
            SnapshotError::Backpressure { .. } => "backpressure",
            SnapshotError::Upload { source, .. } | SnapshotError::Object { source, .. }
                if refused(source) =>
            {
                "store_forbidden"
            }
            SnapshotError::Upload { .. } => "upload",
            SnapshotError::Object { .. } | SnapshotError::Manifest { .. } => "store",
            SnapshotError::InvalidManifest { .. } => "invalid_manifest",
            SnapshotError::NotFound { .. } => "not_found",
            SnapshotError::Mismatch { .. } | SnapshotError::StoredCorrupt { .. } => {
                "stored_corrupt"
            }
            SnapshotError::Compress { .. } => "compress",
            SnapshotError::ReaderFailed { .. } => "reader_failed",
            SnapshotError::Decompress { .. } => "decompress",
            SnapshotError::Crypt(error) => error.category(),
            SnapshotError::Encrypt { .. } => "encrypt",
            SnapshotError::NoIdentity { .. } => "no_identity",
            SnapshotError::Decrypt { .. } => "decrypt",
            SnapshotError::Local { .. } | SnapshotError::Exists { .. } => "local_io",
            SnapshotError::HoldsData { .. } | SnapshotError::SeedOverData { .. } => "holds_data",
            SnapshotError::Restore { .. } => "restore",
            SnapshotError::Cluster { source, .. } => source.category(),
            SnapshotError::Seed(error) => error.category(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::SnapshotError;

    fn object(source: object_store::Error) -> SnapshotError {
        SnapshotError::Object {
            action: "start uploading",
            url: "s3://b/p".into(),
            object: "p/o".into(),
            source: Box::new(source),
        }
    }

    #[test]
    fn a_store_refusing_the_credentials_is_its_own_category() {
        let cause = || Box::new(std::io::Error::other("403")) as _;
        let denied = object_store::Error::PermissionDenied { path: "p/o".into(), source: cause() };
        let unauthenticated =
            object_store::Error::Unauthenticated { path: "p/o".into(), source: cause() };
        let other = object_store::Error::Generic { store: "S3", source: cause() };
        assert_eq!(object(denied).category(), "store_forbidden");
        assert_eq!(object(unauthenticated).category(), "store_forbidden");
        assert_eq!(object(other).category(), "store");
        let upload = SnapshotError::Upload {
            url: "s3://b/p".into(),
            object: "p/o".into(),
            abort: None,
            source: Box::new(object_store::Error::PermissionDenied {
                path: "p/o".into(),
                source: cause(),
            }),
        };
        assert_eq!(upload.category(), "store_forbidden");
    }
}
