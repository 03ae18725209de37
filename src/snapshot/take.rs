//! The snapshot pipeline and the operations over a destination.
//!
//! Taking one: sample the members, resolve their hosts and sample the masters again, rank
//! them ([`super::source`]: a replica only when its master vouches for it), open a
//! replication stream on the first that accepts, then two tasks joined by a small bounded
//! channel:
//!
//! ```text
//!  socket -> reader task (RDB verifier: header, CRC64) -> channel (16 chunks)
//!         -> writer (zstd?, sha256) -> WriteMultipart (1 buffered + 2 in-flight parts)
//! ```
//!
//! The reader always drains the socket while the channel has room; if the store cannot take
//! data for `stall`, the snapshot fails (Redis would drop a replica that stops reading anyway)
//! rather than buffering without bound. Memory is about 16 x 256 KiB + 3 parts (8 MiB each,
//! more only for RDBs over ~70 GiB, since S3 allows 10,000 parts). The upload is completed
//! only after the verifier accepted the whole RDB; any failure aborts it. The manifest is
//! written last.
//!
//! The policy's `deadline` runs from the source choice to the end of the RDB, and its
//! `minBytesPerSecond` floor over the payload ([`super::pace`]): breaching either fails the
//! snapshot like any other stream error (upload aborted, no manifest), so the caller's
//! snapshot gate is released. Completing the upload and writing the manifest after the RDB
//! are bounded by the store client's own timeouts, not by the deadline.

use std::io::Write as _;
use std::path::Path as FsPath;
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::Utc;
use futures::StreamExt as _;
use object_store::{ObjectStoreExt as _, PutPayload, WriteMultipart};
use sha2::{Digest as _, Sha256};
use tokio::sync::mpsc;

use super::SnapshotError;
use super::manifest::{self, Codec, Manifest};
use super::pace::Pace;
use super::rdb::{RdbSummary, RdbVerifier};
use super::retention::{self, Prune};
use super::source::{self, Candidate, Seen};
use super::store::Destination;
use super::stream::{Deadlines, Transfer};
use crate::observe::{Outcome, Role};
use crate::policy::{Compression, Policy, Snapshots};
use crate::sample::redis::{Access, Endpoint, RedisSampler};

/// Chunks in flight between the socket reader and the uploader.
const CHANNEL_CHUNKS: usize = 16;
/// Upload parts in flight besides the one being filled.
const PARTS_IN_FLIGHT: usize = 2;
const MIN_PART: usize = 8 * 1024 * 1024;
/// S3 allows 10,000 parts; leave room for an RDB larger than `used_memory` predicted.
const MAX_PARTS: u64 = 9_000;

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
    /// Reads the policy's secrets now and opens its destination (no network yet).
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

    /// Takes one snapshot from the best of `instances` (the target's members: nothing else
    /// is ever a source) and returns its manifest.
    pub async fn take(
        &self,
        instances: &[Endpoint],
        progress: &dyn Progress,
    ) -> Result<Manifest, SnapshotError> {
        let run_id = run_id();
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
                    return self.upload(&candidate, transfer, &run_id, progress).await;
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
        progress: &dyn Progress,
    ) -> Result<Manifest, SnapshotError> {
        let started = Utc::now();
        let instance = candidate.endpoint.id.clone();
        let id = manifest::snapshot_id(started, &instance);
        let object_name = format!("{id}{}", Codec::from(self.config.compression).object_suffix());
        let key = self.destination.key(&self.policy, &object_name);
        let url = self.destination.url.clone();
        tracing::info!(policy = %self.policy, instance, run_id, object = %key, "snapshot started");
        let hint = transfer.announced_len().or(candidate.used_memory).unwrap_or(0);
        let part = usize::try_from(hint.div_ceil(MAX_PARTS)).unwrap_or(usize::MAX).max(MIN_PART);
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
        let reader = tokio::spawn(async move {
            let mut verifier = RdbVerifier::new();
            loop {
                let chunk = transfer.next().await.map_err(|source| SnapshotError::Stream {
                    instance: reader_instance.clone(),
                    source,
                })?;
                let Some(chunk) = chunk else { break };
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
            Ok((summary, transfer.replid.clone(), transfer.offset))
        });

        let mut sha = Sha256::new();
        let mut encoder = match self.config.compression {
            Compression::None => None,
            Compression::Zstd { level } => Some(
                zstd::stream::write::Encoder::new(Vec::new(), level)
                    .map_err(|source| SnapshotError::Compress { id: id.clone(), source })?,
            ),
        };
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
            let out = match encoder.as_mut() {
                None => chunk,
                Some(encoder) => {
                    if let Err(source) = encoder.write_all(&chunk) {
                        failure = Some(SnapshotError::Compress { id: id.clone(), source });
                        break;
                    }
                    Bytes::from(std::mem::take(encoder.get_mut()))
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
        let (summary, replid, offset) = match (failure, verdict) {
            (None, Ok(done)) => done,
            (Some(error), _) | (None, Err(error)) => {
                return Err(abort(writer, error).await);
            }
        };
        if let Some(encoder) = encoder {
            match encoder.finish() {
                Ok(tail) if !tail.is_empty() => {
                    sha.update(&tail);
                    stored += tail.len() as u64;
                    writer.put(Bytes::from(tail));
                }
                Ok(_) => {}
                Err(source) => {
                    let error = SnapshotError::Compress { id: id.clone(), source };
                    return Err(abort(writer, error).await);
                }
            }
        }
        // `finish` aborts the upload itself when a part or the completion fails.
        writer.finish().await.map_err(|source| upload_error(source, None))?;
        let manifest = Manifest {
            format: manifest::FORMAT,
            id: id.clone(),
            policy: self.policy.clone(),
            source: instance.clone(),
            run_id: run_id.to_owned(),
            object: object_name,
            compression: self.config.compression.into(),
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

    /// Every complete snapshot (one with a valid manifest), oldest first. Manifests that
    /// fail [`Self::listing`]'s checks are left out (and logged).
    pub async fn list(&self) -> Result<Vec<Manifest>, SnapshotError> {
        Ok(self.listing().await?.manifests)
    }

    /// Every `.json` under the policy's folder: the valid manifests, oldest first, and the
    /// ones skipped with why. A stray or planted file must not stop `list` and `prune` for
    /// every good snapshot, nor steer them: a manifest counts only when it is at most
    /// [`MAX_MANIFEST_BYTES`], parses, and names itself, this policy and its own object.
    pub async fn listing(&self) -> Result<Listing, SnapshotError> {
        let folder = self.destination.folder(&self.policy);
        let url = &self.destination.url;
        let mut keys = Vec::new();
        let mut listing = self.destination.store.list(Some(&folder));
        while let Some(meta) = listing.next().await {
            let meta = meta.map_err(|source| SnapshotError::Object {
                action: "list",
                url: url.clone(),
                object: folder.to_string(),
                source: Box::new(source),
            })?;
            if meta.location.as_ref().ends_with(".json") {
                keys.push(meta.location);
            }
        }
        let mut result = Listing::default();
        for key in keys {
            match self.read_manifest(&key).await {
                Ok(manifest) => result.manifests.push(manifest),
                // The store itself failing is not the manifest's fault: stop.
                Err(error @ SnapshotError::Object { .. }) => return Err(error),
                Err(error) => {
                    let why = crate::errors::chain(&error);
                    tracing::warn!(policy = %self.policy, object = %key, %why, "manifest skipped");
                    result.skipped.push(Skipped { object: key.to_string(), why });
                }
            }
        }
        result.manifests.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(result)
    }

    async fn read_manifest(
        &self,
        key: &object_store::path::Path,
    ) -> Result<Manifest, SnapshotError> {
        let url = &self.destination.url;
        let object_error = |source| SnapshotError::Object {
            action: "read",
            url: url.clone(),
            object: key.to_string(),
            source: Box::new(source),
        };
        let invalid = |why: String| SnapshotError::InvalidManifest {
            url: url.clone(),
            object: key.to_string(),
            why,
        };
        self.destination.check_local(key).map_err(invalid)?;
        let got = self.destination.store.get(key).await.map_err(object_error)?;
        // The size is known before the body is read: an oversized file is never loaded.
        if got.meta.size > MAX_MANIFEST_BYTES {
            return Err(invalid(format!(
                "{} bytes, more than the {MAX_MANIFEST_BYTES} a manifest may have",
                got.meta.size
            )));
        }
        let bytes = got.bytes().await.map_err(object_error)?;
        if bytes.len() as u64 > MAX_MANIFEST_BYTES {
            return Err(invalid(format!("more than {MAX_MANIFEST_BYTES} bytes")));
        }
        let manifest: Manifest = serde_json::from_slice(&bytes).map_err(|source| {
            SnapshotError::Manifest { url: url.clone(), object: key.to_string(), source }
        })?;
        let stem = key.filename().and_then(|name| name.strip_suffix(".json")).unwrap_or_default();
        manifest::check(&manifest, stem, &self.policy).map_err(invalid)?;
        let object = self.destination.key(&self.policy, &manifest.object);
        self.destination.check_local(&object).map_err(invalid)?;
        Ok(manifest)
    }

    async fn manifest(&self, id: &str) -> Result<Manifest, SnapshotError> {
        let key = self.destination.key(&self.policy, &format!("{id}.json"));
        match self.read_manifest(&key).await {
            Err(SnapshotError::Object { source, .. })
                if matches!(*source, object_store::Error::NotFound { .. }) =>
            {
                Err(SnapshotError::NotFound {
                    id: id.to_owned(),
                    url: self.destination.url.clone(),
                })
            }
            other => other,
        }
    }

    /// Downloads `id`, checks its sha256, decompresses it and verifies the RDB (header,
    /// end opcode, CRC64) against its manifest.
    pub async fn verify(
        &self,
        id: &str,
        progress: &dyn Progress,
    ) -> Result<Manifest, SnapshotError> {
        let manifest = self.manifest(id).await?;
        self.download(&manifest, None, progress).await?;
        Ok(manifest)
    }

    /// Downloads, verifies and writes `id` to `to` as a plain RDB, refusing to replace an
    /// existing `to`. See [`Self::restore_with`].
    pub async fn restore(
        &self,
        id: &str,
        to: &FsPath,
        progress: &dyn Progress,
    ) -> Result<Manifest, SnapshotError> {
        self.restore_with(id, to, false, progress).await
    }

    /// Downloads, verifies and writes `id` to `to` as a plain RDB. The file appears only
    /// once verified: written to `to.partial` first, created new with mode 0600 (an existing
    /// file or planted symlink there is refused, never followed), then moved into place.
    /// Without `overwrite`, an existing `to` is an error, checked first and again by the
    /// final link, which never replaces a file that appeared meanwhile.
    pub async fn restore_with(
        &self,
        id: &str,
        to: &FsPath,
        overwrite: bool,
        progress: &dyn Progress,
    ) -> Result<Manifest, SnapshotError> {
        let exists = |path: &FsPath| SnapshotError::Exists { path: path.to_owned() };
        if !overwrite && std::fs::symlink_metadata(to).is_ok() {
            return Err(exists(to));
        }
        let manifest = self.manifest(id).await?;
        let mut partial = to.as_os_str().to_owned();
        partial.push(".partial");
        let partial = std::path::PathBuf::from(partial);
        let local = |path: &FsPath| {
            let path = path.to_owned();
            move |source| SnapshotError::Local { path, source }
        };
        let file = {
            use std::os::unix::fs::OpenOptionsExt as _;
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&partial)
                .map_err(local(&partial))?
        };
        let file = (to.to_owned(), std::io::BufWriter::new(file));
        let result = self.download(&manifest, Some(file), progress).await;
        let placed = result.and_then(|()| {
            if overwrite {
                std::fs::rename(&partial, to).map_err(local(to))
            } else {
                // A hard link fails if `to` exists: no window where a file that appeared
                // during the download is replaced.
                std::fs::hard_link(&partial, to).map_err(|source| match source.kind() {
                    std::io::ErrorKind::AlreadyExists => exists(to),
                    _ => SnapshotError::Local { path: to.to_owned(), source },
                })
            }
        });
        // We created the partial file (create_new), so removing it is ours to do.
        let _ = std::fs::remove_file(&partial);
        placed?;
        Ok(manifest)
    }

    async fn download(
        &self,
        manifest: &Manifest,
        file: Option<(std::path::PathBuf, std::io::BufWriter<std::fs::File>)>,
        progress: &dyn Progress,
    ) -> Result<(), SnapshotError> {
        let id = manifest.id.clone();
        let key = self.destination.key(&self.policy, &manifest.object);
        let url = &self.destination.url;
        let object_error = |source| SnapshotError::Object {
            action: "download",
            url: url.clone(),
            object: key.to_string(),
            source: Box::new(source),
        };
        self.destination.check_local(&key).map_err(|why| SnapshotError::InvalidManifest {
            url: url.clone(),
            object: key.to_string(),
            why,
        })?;
        let mut stream =
            self.destination.store.get(&key).await.map_err(object_error)?.into_stream();
        let sink = Sink {
            verifier: RdbVerifier::new(),
            file,
            file_failed: false,
            written: 0,
            limit: manifest.raw_bytes,
        };
        let mut output = match manifest.compression {
            Codec::Zstd => Output::Zstd(
                zstd::stream::write::Decoder::new(sink)
                    .map_err(|source| SnapshotError::Decompress { id: id.clone(), source })?,
            ),
            Codec::None => Output::Plain(sink),
        };
        let mut sha = Sha256::new();
        let mut stored = 0_u64;
        progress.start(&id, Some(manifest.stored_bytes));
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(object_error)?;
            sha.update(&chunk);
            stored += chunk.len() as u64;
            progress.advance(chunk.len() as u64);
            let written = match &mut output {
                Output::Plain(sink) => sink.write_all(&chunk),
                Output::Zstd(decoder) => decoder.write_all(&chunk),
            };
            written.map_err(|source| output.error(&id, source))?;
        }
        progress.finish();
        let mut sink = match output {
            Output::Plain(sink) => sink,
            Output::Zstd(mut decoder) => {
                if let Err(source) = decoder.flush() {
                    return Err(Output::Zstd(decoder).error(&id, source));
                }
                decoder.into_inner()
            }
        };
        let mismatch = |why: String| SnapshotError::Mismatch { id: id.clone(), why };
        let sha = hex(&sha.finalize());
        if stored != manifest.stored_bytes {
            return Err(mismatch(format!(
                "{stored} bytes stored, manifest says {}",
                manifest.stored_bytes
            )));
        }
        if sha != manifest.sha256 {
            return Err(mismatch(format!("sha256 {sha}, manifest says {}", manifest.sha256)));
        }
        if let Some((path, file)) = sink.file.as_mut() {
            file.flush().map_err(|source| SnapshotError::Local { path: path.clone(), source })?;
        }
        let summary: RdbSummary = sink
            .verifier
            .finish()
            .map_err(|source| SnapshotError::StoredCorrupt { id: id.clone(), source })?;
        if summary.bytes != manifest.raw_bytes
            || summary.crc64.map(|c| format!("{c:016x}")) != manifest.crc64
        {
            return Err(mismatch(format!(
                "RDB of {} bytes with CRC64 {:?}, manifest says {} bytes and {:?}",
                summary.bytes, summary.crc64, manifest.raw_bytes, manifest.crc64
            )));
        }
        Ok(())
    }

    /// Applies retention: deletes what [`retention::plan`] says (manifest first, so a
    /// half-deleted snapshot is never listed), or only reports it with `dry_run`.
    pub async fn prune(&self, dry_run: bool) -> Result<Vec<Prune>, SnapshotError> {
        let manifests = self.listing().await?.manifests;
        let times: Vec<_> = manifests.iter().map(|m| (m.id.clone(), m.started)).collect();
        let plan = retention::plan(&times, &self.config.retention);
        if dry_run {
            return Ok(plan);
        }
        for prune in &plan {
            let Some(manifest) = manifests.iter().find(|m| m.id == prune.id) else { continue };
            for name in [format!("{}.json", manifest.id), manifest.object.clone()] {
                let key = self.destination.key(&self.policy, &name);
                // Checked again just before deleting: a symlink planted since the listing
                // must not take the delete out of the store.
                self.destination.check_local(&key).map_err(|why| {
                    SnapshotError::InvalidManifest {
                        url: self.destination.url.clone(),
                        object: key.to_string(),
                        why,
                    }
                })?;
                self.destination.store.delete(&key).await.map_err(|source| {
                    SnapshotError::Object {
                        action: "delete",
                        url: self.destination.url.clone(),
                        object: key.to_string(),
                        source: Box::new(source),
                    }
                })?;
            }
            tracing::info!(policy = %self.policy, id = %prune.id, why = %prune.why, "snapshot deleted by retention");
        }
        Ok(plan)
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

/// The largest manifest read: a real one is under 1 KB.
pub const MAX_MANIFEST_BYTES: u64 = 1 << 20;

/// What [`Snapshotter::listing`] found.
#[derive(Debug, Default)]
pub struct Listing {
    /// Valid manifests, oldest first.
    pub manifests: Vec<Manifest>,
    /// `.json` objects that are not valid manifests, with why; never pruned or restored.
    pub skipped: Vec<Skipped>,
}

#[derive(Debug, Clone)]
pub struct Skipped {
    pub object: String,
    pub why: String,
}

/// Where downloaded RDB bytes go: the verifier, and a file when restoring.
struct Sink {
    verifier: RdbVerifier,
    file: Option<(std::path::PathBuf, std::io::BufWriter<std::fs::File>)>,
    /// Set when writing the file failed, so the error is reported as the file's, not as
    /// a decompression problem.
    file_failed: bool,
    /// RDB bytes accepted so far, and the manifest's `rawBytes`: a small object that
    /// expands past that (a zstd bomb, a wrong manifest) stops at the first extra byte
    /// instead of filling the disk.
    written: u64,
    limit: u64,
}

/// Decompressed output went past the manifest's `rawBytes`.
#[derive(Debug, thiserror::Error)]
#[error("the object expands past the {limit} bytes its manifest records")]
pub struct ExpandsPastManifest {
    limit: u64,
}

impl std::io::Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.written.saturating_add(buf.len() as u64) > self.limit {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                ExpandsPastManifest { limit: self.limit },
            ));
        }
        self.written += buf.len() as u64;
        self.verifier.update(buf);
        if let Some((_, file)) = &mut self.file
            && let Err(error) = file.write_all(buf)
        {
            self.file_failed = true;
            return Err(error);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.as_mut().map_or(Ok(()), |(_, file)| file.flush())
    }
}

enum Output {
    Plain(Sink),
    Zstd(zstd::stream::write::Decoder<'static, Sink>),
}

impl Output {
    fn sink(&self) -> &Sink {
        match self {
            Output::Plain(sink) => sink,
            Output::Zstd(decoder) => decoder.get_ref(),
        }
    }

    /// A write error: the local file's when writing it failed, else the decoder's.
    fn error(&self, id: &str, source: std::io::Error) -> SnapshotError {
        match &self.sink().file {
            Some((path, _)) if self.sink().file_failed => {
                SnapshotError::Local { path: path.clone(), source }
            }
            _ => SnapshotError::Decompress { id: id.to_owned(), source },
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// A short random-enough id for one attempt: time and process id, no extra crate.
fn run_id() -> String {
    let nanos = Utc::now().timestamp_nanos_opt().unwrap_or_default();
    format!("{:x}-{:x}", nanos, std::process::id())
}
