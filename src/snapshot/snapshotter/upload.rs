//! Taking one snapshot: sample the members, resolve their hosts and sample the masters
//! again, rank them ([`crate::snapshot::source`]: a replica only when its master vouches for
//! it), open a replication stream on the first that accepts, then two tasks joined by a
//! small bounded channel:
//!
//! ```text
//!  socket -> reader task (RDB verifier: header, CRC64) -> channel (16 chunks)
//!         -> writer (zstd?, age?, sha256) -> WriteMultipart (1 buffered + 2 in-flight parts)
//! ```
//!
//! With `encryption`, the recipients file is read when the snapshot starts (so a rotated
//! Secret applies to the next one, and an unreadable one fails it before Redis forks), and
//! what zstd produced (or the RDB) is encrypted with age before it is hashed and uploaded;
//! the manifest records `encryption: age` and the recipients' public keys.
//!
//! The reader always drains the socket while the channel has room; if the store cannot take
//! data for `stall`, the snapshot fails (Redis would drop a replica that stops reading anyway)
//! rather than buffering without bound. Memory is about 16 x 256 KiB + 3 parts (8 MiB each,
//! more only for RDBs over ~70 GiB, since S3 allows 10,000 parts). The upload is completed
//! only after the verifier accepted the whole RDB; any failure aborts it. The manifest is
//! written last.
//!
//! The policy's `deadline` runs from the source choice to the end of the RDB, and its
//! `minBytesPerSecond` floor over the payload ([`crate::snapshot::pace`]): breaching either
//! fails the snapshot like any other stream error (upload aborted, no manifest), so the
//! caller's snapshot gate is released. Completing the upload and writing the manifest after
//! the RDB are bounded by the store client's own timeouts, not by the deadline.

use std::io::Write as _;
use std::time::Instant;

use bytes::Bytes;
use chrono::Utc;
use object_store::{ObjectStoreExt as _, PutPayload, WriteMultipart};
use sha2::{Digest as _, Sha256};
use tokio::sync::mpsc;

use super::{Progress, Snapshotter, hex};
use crate::observe::{Outcome, Role};
use crate::policy::Compression;
use crate::sample::redis::{Endpoint, RedisSampler};
use crate::snapshot::SnapshotError;
use crate::snapshot::crypt::{Encrypt, Recipients};
use crate::snapshot::manifest::{self, Cipher, Codec, Manifest, SampledKey};
use crate::snapshot::pace::Pace;
use crate::snapshot::rdb::RdbVerifier;
use crate::snapshot::source::{self, Candidate, Seen};
use crate::snapshot::stream::Transfer;

/// Chunks in flight between the socket reader and the uploader.
const CHANNEL_CHUNKS: usize = 16;
/// Upload parts in flight besides the one being filled.
const PARTS_IN_FLIGHT: usize = 2;
const MIN_PART: usize = 8 * 1024 * 1024;
/// S3 allows 10,000 parts; leave room for an RDB larger than `used_memory` predicted.
const MAX_PARTS: u64 = 9_000;

impl Snapshotter {
    /// Takes one snapshot from the best of `instances` (the target's members: nothing else
    /// is ever a source) and returns its manifest.
    pub async fn take(
        &self,
        instances: &[Endpoint],
        progress: &dyn Progress,
    ) -> Result<Manifest, SnapshotError> {
        let run_id = run_id();
        let recipients = self.recipients()?;
        let pace = Pace::new(self.config.limits, Instant::now());
        let round = self.observe(instances).await;
        let candidates = source::rank(&round, self.config.source).map_err(|why| {
            let tls = |seen: &Seen| matches!(seen.sample.outcome, Outcome::Tls(_));
            if !round.is_empty() && round.iter().all(tls) {
                SnapshotError::SourceTls { why }
            } else {
                SnapshotError::NoSource { why }
            }
        })?;
        let mut last_error = None;
        for candidate in candidates {
            let opened =
                Transfer::open_paced(&candidate.endpoint, &self.access, self.deadlines, pace).await;
            match opened {
                Ok(transfer) => {
                    return self
                        .upload(&candidate, transfer, &run_id, recipients.as_ref(), progress)
                        .await;
                }
                // Not linked to its master right now, or loading: another may serve.
                Err(error) if error.retryable() => {
                    tracing::warn!(
                        policy = %self.policy, instance = %candidate.endpoint.id, run_id,
                        error = %crate::errors::chain(&error),
                        "snapshot source refused; trying the next candidate"
                    );
                    last_error = Some(SnapshotError::Stream {
                        instance: candidate.endpoint.id.clone(),
                        source: error,
                    });
                }
                Err(error) => {
                    return Err(SnapshotError::Stream {
                        instance: candidate.endpoint.id.clone(),
                        source: error,
                    });
                }
            }
        }
        Err(last_error.unwrap_or_else(|| SnapshotError::NoSource { why: "no candidates".into() }))
    }

    /// What [`source::rank`] needs: every member's `INFO`, the addresses its host resolves
    /// to (a master lists its replicas by IP), and each master's `INFO` read once more after
    /// all of that, so its view is no older than any replica's claim.
    async fn observe(&self, instances: &[Endpoint]) -> Vec<Seen> {
        let sampler = RedisSampler::new(self.access.clone(), self.sample_timeout);
        let (samples, addresses) = futures::join!(
            sampler.sample(instances),
            futures::future::join_all(instances.iter().map(|e| self.addresses(e)))
        );
        let mut round: Vec<Seen> = instances
            .iter()
            .zip(samples)
            .zip(addresses)
            .map(|((endpoint, sample), addresses)| Seen {
                endpoint: endpoint.clone(),
                sample,
                later: None,
                addresses,
            })
            .collect();
        let masters: Vec<usize> = (0..round.len())
            .filter(|&i| {
                round[i].sample.info.as_ref().is_some_and(|info| info.role == Role::Master)
            })
            .collect();
        let endpoints: Vec<Endpoint> = masters.iter().map(|&i| round[i].endpoint.clone()).collect();
        for (i, again) in masters.into_iter().zip(sampler.sample(&endpoints).await) {
            round[i].later = again.info;
        }
        round
    }

    /// `endpoint`'s host as written and the addresses it resolves to (best effort, bounded by
    /// the sampling timeout: an address not found only leaves a replica uncorroborated).
    async fn addresses(&self, endpoint: &Endpoint) -> Vec<String> {
        let mut addresses = vec![endpoint.host.clone()];
        let lookup = tokio::net::lookup_host((endpoint.host.as_str(), endpoint.port));
        if let Ok(Ok(found)) = tokio::time::timeout(self.sample_timeout, lookup).await {
            for address in found {
                let ip = address.ip().to_string();
                if !addresses.contains(&ip) {
                    addresses.push(ip);
                }
            }
        }
        addresses
    }

    async fn upload(
        &self,
        candidate: &Candidate,
        mut transfer: Transfer,
        run_id: &str,
        recipients: Option<&Recipients>,
        progress: &dyn Progress,
    ) -> Result<Manifest, SnapshotError> {
        let started = Utc::now();
        let instance = candidate.endpoint.id.clone();
        let id = manifest::snapshot_id(started, &instance);
        let cipher = if recipients.is_some() { Cipher::Age } else { Cipher::None };
        let object_name = manifest::object_name(&id, Codec::from(self.config.compression), cipher);
        let key = self.destination.key(&self.policy, &object_name);
        let url = self.destination.url.clone();
        tracing::info!(policy = %self.policy, instance, run_id, object = %key, "snapshot started");
        let hint = transfer.announced_len().or(candidate.used_memory).unwrap_or(0);
        let part = usize::try_from(hint.div_ceil(MAX_PARTS)).unwrap_or(usize::MAX).max(MIN_PART);
        // Before the upload starts: a failure here leaves no multipart upload to abort.
        let mut encoder = Encoder::new(&id, self.config.compression, recipients)?;
        let upload = self.destination.store.put_multipart(&key).await.map_err(|source| {
            SnapshotError::Object {
                action: "start uploading",
                url: url.clone(),
                object: key.to_string(),
                source: Box::new(source),
            }
        })?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, part);
        progress.start(&format!("{id} from {instance}"), transfer.announced_len());

        // The reader: socket -> verifier -> channel. It never waits on the store for longer
        // than `stall`, so a slow store fails the snapshot instead of stalling Redis.
        let (tx, mut rx) = mpsc::channel::<Bytes>(CHANNEL_CHUNKS);
        let stall = self.deadlines.stall;
        let reader_instance = instance.clone();
        let reader_url = url.clone();
        let (endpoint, access, timeout) =
            (candidate.endpoint.clone(), self.access.clone(), self.sample_timeout);
        let reader = tokio::spawn(async move {
            let mut verifier = RdbVerifier::new();
            let mut keyspace = None;
            loop {
                let chunk = transfer.next().await.map_err(|source| SnapshotError::Stream {
                    instance: reader_instance.clone(),
                    source,
                })?;
                let Some(chunk) = chunk else { break };
                // The payload began: the fork that writes it has happened. The source's key
                // count is read now, beside the stream, so it differs from the RDB's only by
                // the writes of these few milliseconds.
                if keyspace.is_none() {
                    let (endpoint, access) = (endpoint.clone(), access.clone());
                    keyspace = Some(tokio::spawn(async move {
                        keyspace_at(&endpoint, &access, timeout).await
                    }));
                }
                verifier.update(&chunk);
                match tokio::time::timeout(stall, tx.send(chunk)).await {
                    Ok(Ok(())) => {}
                    // The uploader stopped (its own error is the one reported).
                    Ok(Err(_closed)) => break,
                    Err(_elapsed) => {
                        return Err(SnapshotError::Backpressure { url: reader_url, after: stall });
                    }
                }
            }
            let summary = verifier
                .finish()
                .map_err(|source| SnapshotError::Corrupt { instance: reader_instance, source })?;
            Ok((summary, transfer.replid.clone(), transfer.offset, keyspace))
        });

        let mut sha = Sha256::new();
        let mut stored: u64 = 0;
        let upload_error = |source, abort| SnapshotError::Upload {
            url: url.clone(),
            object: key.to_string(),
            abort,
            source: Box::new(source),
        };
        let mut failure: Option<SnapshotError> = None;
        while let Some(chunk) = rx.recv().await {
            progress.advance(chunk.len() as u64);
            let out = match encoder.push(chunk) {
                Ok(out) => out,
                Err(error) => {
                    failure = Some(error);
                    break;
                }
            };
            if out.is_empty() {
                continue;
            }
            if let Err(source) = writer.wait_for_capacity(PARTS_IN_FLIGHT).await {
                failure = Some(upload_error(source, None));
                break;
            }
            sha.update(&out);
            stored += out.len() as u64;
            writer.put(out);
        }
        // Stop the reader if we stopped first, then hear its verdict.
        drop(rx);
        let verdict = match reader.await {
            Ok(result) => result,
            Err(join) => Err(SnapshotError::ReaderFailed { why: join.to_string() }),
        };
        progress.finish();
        let (summary, replid, offset, keyspace) = match (failure, verdict) {
            (None, Ok(done)) => done,
            (Some(error), _) | (None, Err(error)) => {
                return Err(abort(writer, error).await);
            }
        };
        match encoder.finish() {
            Ok(tail) if !tail.is_empty() => {
                sha.update(&tail);
                stored += tail.len() as u64;
                writer.put(tail);
            }
            Ok(_) => {}
            Err(error) => return Err(abort(writer, error).await),
        }
        // `finish` aborts the upload itself when a part or the completion fails.
        writer.finish().await.map_err(|source| upload_error(source, None))?;
        let (keyspace, sample) = match keyspace {
            Some(task) => task.await.unwrap_or_default(),
            None => (None, Vec::new()),
        };
        if keyspace.is_none() {
            tracing::warn!(policy = %self.policy, instance, "the source's keyspace could not be read: restore tests of this snapshot cannot check its key count");
        }
        let (sample, sealed_sample) = match recipients {
            Some(recipients) if !sample.is_empty() => {
                (Vec::new(), Some(seal_sample(&sample, recipients)?))
            }
            _ => (sample, None),
        };
        let manifest = Manifest {
            format: manifest::FORMAT,
            id: id.clone(),
            policy: self.policy.clone(),
            source: instance.clone(),
            run_id: run_id.to_owned(),
            object: object_name,
            compression: self.config.compression.into(),
            encryption: cipher,
            recipients: recipients.map(Recipients::names).unwrap_or_default(),
            replid,
            repl_offset: offset,
            rdb_version: summary.version,
            redis_version: candidate.redis_version.clone(),
            raw_bytes: summary.bytes,
            stored_bytes: stored,
            crc64: summary.crc64.map(|c| format!("{c:016x}")),
            sha256: hex(&sha.finalize()),
            started,
            finished: Utc::now(),
            keyspace,
            sample,
            sealed_sample,
            verified: None,
        };
        if summary.crc64.is_none() {
            tracing::warn!(policy = %self.policy, instance, "the RDB has no checksum (rdbchecksum no): only its structure was verified");
        }
        self.write_manifest(&manifest).await?;
        tracing::info!(
            policy = %self.policy, instance, run_id, id,
            raw_bytes = manifest.raw_bytes, stored_bytes = manifest.stored_bytes,
            "snapshot complete"
        );
        Ok(manifest)
    }

    async fn write_manifest(&self, manifest: &Manifest) -> Result<(), SnapshotError> {
        let key = self.destination.key(&self.policy, &format!("{}.json", manifest.id));
        let json =
            serde_json::to_vec_pretty(manifest).map_err(|source| SnapshotError::Manifest {
                url: self.destination.url.clone(),
                object: key.to_string(),
                source,
            })?;
        self.destination.store.put(&key, PutPayload::from(json)).await.map_err(|source| {
            SnapshotError::Object {
                action: "write the manifest",
                url: self.destination.url.clone(),
                object: key.to_string(),
                source: Box::new(source),
            }
        })?;
        Ok(())
    }
}

impl Snapshotter {
    /// The policy's recipients, read now; `None` without `encryption`.
    fn recipients(&self) -> Result<Option<Recipients>, SnapshotError> {
        let Some(encryption) = &self.config.encryption else { return Ok(None) };
        Ok(Some(Recipients::read(&encryption.recipients_file)?))
    }
}

/// What the RDB becomes before it is stored: zstd-compressed, then age-encrypted, each only
/// when the policy says so. Each push returns the bytes ready to store.
struct Encoder {
    id: String,
    zstd: Option<zstd::stream::write::Encoder<'static, Vec<u8>>>,
    age: Option<Encrypt>,
}

impl Encoder {
    fn new(
        id: &str,
        compression: Compression,
        recipients: Option<&Recipients>,
    ) -> Result<Self, SnapshotError> {
        let zstd = match compression {
            Compression::None => None,
            Compression::Zstd { level } => Some(
                zstd::stream::write::Encoder::new(Vec::new(), level)
                    .map_err(|source| SnapshotError::Compress { id: id.to_owned(), source })?,
            ),
        };
        let age = recipients.map(Encrypt::new).transpose()?;
        Ok(Self { id: id.to_owned(), zstd, age })
    }

    fn push(&mut self, chunk: Bytes) -> Result<Bytes, SnapshotError> {
        let compressed = match self.zstd.as_mut() {
            None => chunk,
            Some(zstd) => {
                zstd.write_all(&chunk)
                    .map_err(|source| SnapshotError::Compress { id: self.id.clone(), source })?;
                Bytes::from(std::mem::take(zstd.get_mut()))
            }
        };
        self.seal(&compressed)
    }

    fn seal(&mut self, bytes: &Bytes) -> Result<Bytes, SnapshotError> {
        match self.age.as_mut() {
            None => Ok(bytes.clone()),
            Some(_) if bytes.is_empty() => Ok(Bytes::new()),
            Some(age) => age
                .push(bytes)
                .map_err(|source| SnapshotError::Encrypt { id: self.id.clone(), source }),
        }
    }

    /// The last bytes: zstd's end of frame, then age's last chunk.
    fn finish(mut self) -> Result<Bytes, SnapshotError> {
        let mut tail = match self.zstd.take() {
            None => Bytes::new(),
            Some(zstd) => zstd
                .finish()
                .map(Bytes::from)
                .map_err(|source| SnapshotError::Compress { id: self.id.clone(), source })?,
        };
        tail = self.seal(&tail)?;
        let Some(age) = self.age.take() else { return Ok(tail) };
        let last = age
            .finish()
            .map_err(|source| SnapshotError::Encrypt { id: self.id.clone(), source })?;
        let mut out = Vec::with_capacity(tail.len() + last.len());
        out.extend_from_slice(&tail);
        out.extend_from_slice(&last);
        Ok(Bytes::from(out))
    }
}

/// Aborts the multipart upload after `error`, noting in the error if the abort failed too.
async fn abort(writer: WriteMultipart, error: SnapshotError) -> SnapshotError {
    match (writer.abort().await, error) {
        (Ok(()), error) => error,
        (Err(abort_error), SnapshotError::Upload { url, object, source, .. }) => {
            SnapshotError::Upload { url, object, abort: Some(abort_error.to_string()), source }
        }
        (Err(abort_error), error) => {
            tracing::warn!(error = %abort_error, "aborting the multipart upload failed; it is not listed, and the bucket's lifecycle rule removes it");
            error
        }
    }
}

/// `SCAN` calls per database while sampling keys: a database of mostly long or binary names
/// yields fewer than [`manifest::SAMPLE_KEYS`] rather than a long scan.
const SAMPLE_SCANS: usize = 4;

/// The source's keys per database (`INFO keyspace`) and a sample of its keys with their types
/// (`SCAN`, `TYPE`), for the manifest. Best effort, each step bounded by `timeout`: a failure
/// leaves the keyspace `None` or the sample short, never fails the snapshot. Only names that
/// are UTF-8 and at most 200 bytes, of keys without a time to live, are sampled: the manifest
/// stays small and readable, and no sampled key expires before a restore test looks for it.
async fn keyspace_at(
    endpoint: &Endpoint,
    access: &crate::sample::redis::Access,
    timeout: std::time::Duration,
) -> (Option<std::collections::BTreeMap<u32, u64>>, Vec<SampledKey>) {
    let run = async {
        let mut connection = crate::sample::redis::connect(endpoint, access, timeout).await.ok()?;
        let text: String =
            redis::cmd("INFO").arg("keyspace").query_async(&mut connection).await.ok()?;
        let info = crate::observe::Info::parse(&text);
        let keyspace: std::collections::BTreeMap<u32, u64> =
            info.keyspace.iter().map(|db| (db.db, db.keys)).collect();
        let mut sample = Vec::new();
        for (&db, _) in keyspace.iter().filter(|(_, keys)| **keys > 0) {
            if sample.len() >= manifest::SAMPLE_KEYS
                || redis::cmd("SELECT").arg(db).query_async::<()>(&mut connection).await.is_err()
            {
                break;
            }
            let mut cursor = 0_u64;
            for _ in 0..SAMPLE_SCANS {
                let Ok((next, keys)) = redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("COUNT")
                    .arg(64)
                    .query_async::<(u64, Vec<Vec<u8>>)>(&mut connection)
                    .await
                else {
                    break;
                };
                for key in keys {
                    if sample.len() >= manifest::SAMPLE_KEYS {
                        break;
                    }
                    let Ok(name) = String::from_utf8(key) else { continue };
                    if name.len() > 200 {
                        continue;
                    }
                    // A key that may expire before a restore test cannot be expected there.
                    let ttl: Result<i64, _> =
                        redis::cmd("PTTL").arg(&name).query_async(&mut connection).await;
                    if ttl != Ok(-1) {
                        continue;
                    }
                    let kind: Result<String, _> =
                        redis::cmd("TYPE").arg(&name).query_async(&mut connection).await;
                    // `none`: gone since the SCAN.
                    if let Ok(kind) = kind
                        && kind != "none"
                    {
                        sample.push(SampledKey { db, key: name, kind });
                    }
                }
                cursor = next;
                if cursor == 0 || sample.len() >= manifest::SAMPLE_KEYS {
                    break;
                }
            }
        }
        Some((keyspace, sample))
    };
    match tokio::time::timeout(timeout * 4, run).await {
        Ok(Some((keyspace, sample))) => (Some(keyspace), sample),
        _ => (None, Vec::new()),
    }
}

/// A short random-enough id for one attempt: time and process id, no extra crate.
fn run_id() -> String {
    let nanos = Utc::now().timestamp_nanos_opt().unwrap_or_default();
    format!("{:x}-{:x}", nanos, std::process::id())
}

/// The sampled keys as JSON, sealed to the snapshot's recipients and base64-encoded for the
/// manifest (see [`Manifest::sealed_sample`]).
fn seal_sample(sample: &[SampledKey], recipients: &Recipients) -> Result<String, SnapshotError> {
    use base64::Engine as _;
    let json = serde_json::to_vec(sample)
        .map_err(|e| crate::snapshot::crypt::CryptError::Encryptor { why: e.to_string() })?;
    let sealed = crate::snapshot::crypt::seal(recipients, &json)?;
    Ok(base64::engine::general_purpose::STANDARD.encode(sealed))
}
