//! The manifest: a small JSON document written next to each RDB object, *after* the object
//! is complete and verified. A snapshot exists exactly when its manifest does, so a transfer
//! that failed halfway, or one still running, is never listed, restored or counted by
//! retention. A restore test later rewrites it whole with its verdict (`verified`), in one
//! atomic put; nothing else in it ever changes.
//!
//! Names sort by time: `<prefix>/<policy>/<20261124T023000.000Z>-<source>.rdb[.zst][.age]`,
//! the manifest the same name with `.json`; the id is the file stem.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::policy::Compression;

/// The manifest format; bumped on an incompatible change.
pub const FORMAT: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub format: u32,
    /// `20261124T023000.000Z-10.0.0.7-6379`: the time and source, sortable.
    pub id: String,
    pub policy: String,
    /// The instance the RDB came from.
    pub source: String,
    /// Ties the logs, metrics and objects of one attempt together.
    pub run_id: String,
    /// The object holding the RDB, relative to the destination.
    pub object: String,
    /// How the object is stored. Any word but `none` or `zstd` fails to parse, naming it:
    /// an object this build cannot decode is never taken for plain.
    pub compression: Codec,
    /// Whether the object is encrypted (after compression). Absent in manifests written
    /// before encryption existed, which are plain; any word but `none` or `age` fails to
    /// parse, so a sealed object is never taken for plain.
    #[serde(default)]
    pub encryption: Cipher,
    /// The age public keys (`age1…`) the object is encrypted to: public, recorded so that a
    /// restore without a matching identity can say which keys it needs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recipients: Vec<String>,
    /// Replication id and offset the RDB corresponds to (`+FULLRESYNC`).
    pub replid: Option<String>,
    pub repl_offset: Option<u64>,
    pub rdb_version: u16,
    pub redis_version: Option<String>,
    /// Bytes of the RDB itself, and of the object as stored.
    pub raw_bytes: u64,
    pub stored_bytes: u64,
    /// The RDB's own CRC64 (hex); `None` when the server had `rdbchecksum no`.
    pub crc64: Option<String>,
    /// SHA-256 of the object as stored (compressed and encrypted if so), hex: `sha256sum` of
    /// a downloaded object matches it.
    pub sha256: String,
    pub started: DateTime<Utc>,
    pub finished: DateTime<Utc>,
    /// The source's keys per database (`INFO keyspace`), read as the RDB payload began, so
    /// just after the fork that wrote it: what a restore test compares the loaded count with.
    /// `None` in manifests written before it was recorded, or when that `INFO` failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keyspace: Option<BTreeMap<u32, u64>>,
    /// A few of the source's keys with their types (`SCAN` + `TYPE` at the same moment), at
    /// most [`SAMPLE_KEYS`]: a restore test checks them in the loaded instance.
    /// Empty when the object is encrypted: key names are the dataset's own words (user ids,
    /// emails), so they are sealed with it, in `sealedSample`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sample: Vec<SampledKey>,
    /// With encryption: `sample` as JSON, sealed to the object's recipients (an age file,
    /// base64). A restore test opens it with the identity that decrypts the object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealed_sample: Option<String>,
    /// The last restore test of this snapshot; `None` until one ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verified: Option<Verified>,
}

/// The most keys a manifest samples: enough to catch an RDB of another dataset, few enough
/// that the manifest stays small.
pub const SAMPLE_KEYS: usize = 16;

/// One sampled key: its database, name and type (`string`, `hash`, ...) at snapshot time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SampledKey {
    pub db: u32,
    pub key: String,
    #[serde(rename = "type")]
    pub kind: String,
}

/// What a restore test found: when it ran, the keys the scratch instance loaded (`None`
/// when it never loaded), whether it passed, and otherwise why (`reason` is the bounded
/// label the metrics use, `why` the sentence).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Verified {
    pub at: DateTime<Utc>,
    pub keys: Option<u64>,
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub why: Option<String>,
}

impl Manifest {
    /// Keys over every database at snapshot time, when recorded.
    pub fn keys(&self) -> Option<u64> {
        self.keyspace.as_ref().map(|dbs| dbs.values().sum())
    }

    /// Whether the last restore test of this snapshot passed.
    pub fn proven(&self) -> bool {
        self.verified.as_ref().is_some_and(|v| v.ok)
    }
}

/// How a snapshot's object is stored, as its manifest records it (`"none"`, `"zstd"`): the
/// policy's [`Compression`] without its level, which a reader does not need.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Codec {
    None,
    Zstd,
}

impl Codec {
    /// The word in the manifest.
    pub fn as_str(self) -> &'static str {
        match self {
            Codec::None => "none",
            Codec::Zstd => "zstd",
        }
    }

    /// File suffix of the object.
    pub fn object_suffix(self) -> &'static str {
        match self {
            Codec::None => ".rdb",
            Codec::Zstd => ".rdb.zst",
        }
    }
}

impl From<Compression> for Codec {
    fn from(compression: Compression) -> Self {
        match compression {
            Compression::None => Codec::None,
            Compression::Zstd { .. } => Codec::Zstd,
        }
    }
}

impl std::fmt::Display for Codec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // `pad`, so table columns (`{:<6}`) line up.
        f.pad(self.as_str())
    }
}

pub use crate::model::{snapshot_id, snapshot_id_time};

/// How a snapshot's object is encrypted, as its manifest records it (`"none"`, `"age"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Cipher {
    #[default]
    None,
    Age,
}

impl Cipher {
    pub fn as_str(self) -> &'static str {
        match self {
            Cipher::None => "none",
            Cipher::Age => "age",
        }
    }

    /// What the object's name gains after the codec's suffix.
    pub fn object_suffix(self) -> &'static str {
        match self {
            Cipher::None => "",
            Cipher::Age => ".age",
        }
    }
}

impl std::fmt::Display for Cipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

/// The object name of snapshot `id` stored with `codec` and `cipher`.
pub fn object_name(id: &str, codec: Codec, cipher: Cipher) -> String {
    format!("{id}{}{}", codec.object_suffix(), cipher.object_suffix())
}

/// Whether `manifest`, read from `<stem>.json` in `policy`'s folder, describes itself: its id
/// is the file's stem and a well-formed id, its policy is `policy`, and its object is the
/// id's own `.rdb` or `.rdb.zst` for its compression, `.age` added when encrypted (a
/// compression or encryption it does not know never parsed into a [`Manifest`]). So a
/// copied or planted manifest can neither point retention at another snapshot's object nor reach outside the folder.
pub fn check(manifest: &Manifest, stem: &str, policy: &str) -> Result<(), String> {
    if manifest.id != stem {
        return Err(format!("its id `{}` is not its file name `{stem}`", manifest.id));
    }
    let clean = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if snapshot_id_time(&manifest.id).is_none() || !manifest.id.chars().all(clean) {
        return Err(format!("`{}` is not a snapshot id", manifest.id));
    }
    if manifest.policy != policy {
        return Err(format!("it belongs to policy `{}`, not `{policy}`", manifest.policy));
    }
    let expected = object_name(&manifest.id, manifest.compression, manifest.encryption);
    if manifest.object != expected {
        return Err(format!("its object `{}` is not `{expected}`", manifest.object));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone as _;

    use super::*;

    #[test]
    fn ids_sort_by_time_and_read_back() {
        let at = Utc.with_ymd_and_hms(2026, 11, 24, 2, 30, 0).unwrap();
        let id = snapshot_id(at, "[::1]:6379");
        assert_eq!(id, "20261124T023000.000Z-1-6379");
        assert_eq!(snapshot_id_time(&id), Some(at));
        let later = snapshot_id(at + chrono::Duration::milliseconds(1), "redis-0");
        assert!(later > id);
        assert_eq!(snapshot_id_time("garbage"), None);
    }

    /// A manifest is only ever read back as `none` or `zstd`: an unknown word is an error
    /// naming it, so nothing downstream can take it for plain.
    #[test]
    fn an_unknown_compression_does_not_parse() {
        let at = Utc.with_ymd_and_hms(2026, 11, 24, 2, 30, 0).unwrap();
        let id = snapshot_id(at, "redis-0");
        let json = |compression: &str| {
            serde_json::json!({
                "format": FORMAT, "id": id, "policy": "cache", "source": "redis-0",
                "runId": "r", "object": format!("{id}.rdb"), "compression": compression,
                "replid": null, "replOffset": null, "rdbVersion": 12, "redisVersion": null,
                "rawBytes": 1, "storedBytes": 1, "crc64": null, "sha256": "00",
                "started": at, "finished": at,
            })
        };
        let plain: Manifest = serde_json::from_value(json("none")).expect("none is known");
        assert_eq!(check(&plain, &id, "cache"), Ok(()));
        // Written before keyspaces, samples and restore tests were recorded: still read.
        assert_eq!((plain.keys(), plain.sample.len(), plain.proven()), (None, 0, false));
        let error = serde_json::from_value::<Manifest>(json("lz9")).expect_err("lz9 is unknown");
        assert!(error.to_string().contains("lz9"), "{error}");
    }

    /// A manifest from before encryption existed reads as plain; `age` reads with its
    /// recipients and its `.age` object; an unknown word is an error naming it.
    #[test]
    fn encryption_defaults_to_none_and_an_unknown_cipher_does_not_parse() {
        let at = Utc.with_ymd_and_hms(2026, 11, 24, 2, 30, 0).unwrap();
        let id = snapshot_id(at, "redis-0");
        let mut json = serde_json::json!({
            "format": FORMAT, "id": id, "policy": "cache", "source": "redis-0",
            "runId": "r", "object": format!("{id}.rdb.zst"), "compression": "zstd",
            "replid": null, "replOffset": null, "rdbVersion": 12, "redisVersion": null,
            "rawBytes": 1, "storedBytes": 1, "crc64": null, "sha256": "00",
            "started": at, "finished": at,
        });
        let old: Manifest = serde_json::from_value(json.clone()).expect("an old manifest");
        assert_eq!((old.encryption, old.recipients.len()), (Cipher::None, 0));
        assert_eq!(check(&old, &id, "cache"), Ok(()));
        assert!(!serde_json::to_string(&old).unwrap().contains("recipients"));

        json["encryption"] = "age".into();
        json["recipients"] = serde_json::json!(["age1xyz"]);
        let sealed: Manifest = serde_json::from_value(json.clone()).expect("age is known");
        assert_eq!(sealed.encryption, Cipher::Age);
        assert!(check(&sealed, &id, "cache").unwrap_err().contains(".rdb.zst.age"));
        json["object"] = format!("{id}.rdb.zst.age").into();
        let sealed: Manifest = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(check(&sealed, &id, "cache"), Ok(()));

        json["encryption"] = "rot13".into();
        let error = serde_json::from_value::<Manifest>(json).expect_err("rot13 is unknown");
        assert!(error.to_string().contains("rot13"), "{error}");
    }
}
