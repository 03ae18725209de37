//! The one download path every read of a snapshot takes (verify, restore to a file, the
//! payload of `restore --into` and bootstrap): the object streamed from the destination,
//! its stored bytes counted and hashed as they arrive, then, when the manifest says `age`,
//! decrypted on the fly with the policy's identity. What comes out is the object's content
//! as its codec left it (zstd or plain RDB); callers decode and check the RDB.
//!
//! ```text
//!  store -> tap (count, sha256) -> [age: header, identity, 64 KiB chunks] -> next()
//! ```
//!
//! Errors, most telling first: the download's own; then, when decryption fails, the object
//! against its manifest (the rest is drained and hashed, so a replaced or cut object reads
//! as a mismatch), and only an object that matches its manifest yet does not decrypt as a
//! decryption error. Memory: one store chunk, the read buffer and one age chunk.

use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use bytes::{Buf as _, Bytes};
use futures::stream::BoxStream;
use futures::{AsyncReadExt as _, StreamExt as _};
use object_store::ObjectStoreExt as _;
use sha2::{Digest as _, Sha256};

use super::{Snapshotter, hex};
use crate::snapshot::SnapshotError;
use crate::snapshot::crypt::{self, Identities};
use crate::snapshot::manifest::SampledKey;
use crate::snapshot::manifest::{Cipher, Manifest};

/// Plaintext read per call when decrypting; age hands out at most one 64 KiB chunk a read.
const READ: usize = 64 * 1024;
/// The buffer in front of the decryptor: the header is parsed from it.
const BUFFER: usize = 64 * 1024;

/// A snapshot's object being read: see the module documentation.
pub(super) struct ObjectReader {
    tap: Tap,
    body: Body,
    manifest: Manifest,
    url: String,
    key: String,
}

enum Body {
    /// Passed through as the store hands it out, without a copy.
    Plain,
    Age(Pin<Box<age::stream::StreamReader<futures::io::BufReader<Tap>>>>),
}

impl Snapshotter {
    /// Opens `manifest`'s object. An encrypted one has its header read and its identity
    /// matched here, before a byte of it is handed out: a restore that cannot decrypt fails
    /// before it changes anything.
    pub(super) async fn open_object(
        &self,
        manifest: &Manifest,
    ) -> Result<ObjectReader, SnapshotError> {
        let key = self.checked_key(&manifest.object)?;
        let url = self.destination.url.clone();
        // The identity first: without one, nothing is downloaded.
        let identities = match manifest.encryption {
            Cipher::None => None,
            Cipher::Age => Some(self.identities(manifest)?),
        };
        let stream = self
            .destination
            .store
            .get(&key)
            .await
            .map_err(|source| SnapshotError::Object {
                action: "download",
                url: url.clone(),
                object: key.to_string(),
                source: Box::new(source),
            })?
            .into_stream();
        let tap = Tap(Arc::new(Mutex::new(Tapped {
            stream: Some(stream),
            pending: Bytes::new(),
            sha: Sha256::new(),
            stored: 0,
            failed: None,
        })));
        let mut reader = ObjectReader {
            tap: tap.clone(),
            body: Body::Plain,
            manifest: manifest.clone(),
            url,
            key: key.to_string(),
        };
        if let Some(identities) = identities {
            let input = futures::io::BufReader::with_capacity(BUFFER, tap);
            match crypt::decrypt(input, &identities).await {
                Ok(plain) => reader.body = Body::Age(Box::pin(plain)),
                Err(crypt::OpenError::NoMatch) => {
                    let what = self.identity_source();
                    return Err(SnapshotError::NoIdentity {
                        id: manifest.id.clone(),
                        recipients: manifest.recipients.clone(),
                        why: format!(
                            "the identity ({what}) holds none of them (it holds {})",
                            identities.public().join(", ")
                        ),
                    });
                }
                Err(crypt::OpenError::Other(error)) => {
                    return Err(reader.failed(error.to_string()).await);
                }
            }
        }
        Ok(reader)
    }

    /// The keys `manifest` sampled at snapshot time: in clear for a plain snapshot, opened
    /// with the policy's identity for an encrypted one (`sealedSample`).
    pub(super) async fn sampled_keys(
        &self,
        manifest: &Manifest,
    ) -> Result<Vec<SampledKey>, SnapshotError> {
        use base64::Engine as _;
        let Some(sealed) = &manifest.sealed_sample else {
            return Ok(manifest.sample.clone());
        };
        let identities = self.identities(manifest)?;
        let unreadable = |why: String| SnapshotError::Decrypt {
            id: manifest.id.clone(),
            why: format!("its sampled keys (sealedSample): {why}"),
        };
        let sealed = base64::engine::general_purpose::STANDARD
            .decode(sealed)
            .map_err(|e| unreadable(e.to_string()))?;
        let plain = crypt::open_sealed(&sealed, &identities).await.map_err(unreadable)?;
        serde_json::from_slice(&plain).map_err(|e| unreadable(e.to_string()))
    }

    /// The policy's identity, read now (a rotated Secret applies to the next read).
    fn identities(&self, manifest: &Manifest) -> Result<Identities, SnapshotError> {
        let source = self.config.encryption.as_ref().and_then(|e| e.identity.as_ref());
        let Some(source) = source else {
            return Err(SnapshotError::NoIdentity {
                id: manifest.id.clone(),
                recipients: manifest.recipients.clone(),
                why: "the policy names no identity to decrypt it \
                      (spec.snapshots.encryption.identityFile or identityEnv)"
                    .to_owned(),
            });
        };
        Ok(Identities::read(source)?)
    }

    fn identity_source(&self) -> String {
        self.config
            .encryption
            .as_ref()
            .and_then(|e| e.identity.as_ref())
            .map_or_else(|| "none".to_owned(), crate::sample::secret::describe)
    }
}

impl ObjectReader {
    /// Bytes of the object stored so far (for progress: the manifest's `storedBytes` is the
    /// total).
    pub(super) fn stored(&self) -> u64 {
        self.tap.lock().stored
    }

    /// The next piece of the object's content (decrypted if encrypted); `None` at its end.
    pub(super) async fn next(&mut self) -> Result<Option<Bytes>, SnapshotError> {
        match &mut self.body {
            Body::Plain => {
                let tap = &self.tap;
                match futures::future::poll_fn(|cx| tap.poll_chunk(cx)).await {
                    Ok(chunk) => Ok(chunk),
                    Err(_) => Err(self.object_error()),
                }
            }
            Body::Age(plain) => {
                let mut buffer = vec![0_u8; READ];
                match plain.read(&mut buffer).await {
                    Ok(0) => Ok(None),
                    Ok(read) => {
                        buffer.truncate(read);
                        Ok(Some(Bytes::from(buffer)))
                    }
                    Err(error) => Err(self.failed(error.to_string()).await),
                }
            }
        }
    }

    /// After the content's end: reads what is left of the object (age stops at its last
    /// chunk; anything after must still count) and checks the bytes stored and their
    /// sha256 against the manifest.
    pub(super) async fn finish(self) -> Result<(), SnapshotError> {
        let (stored, sha) = self.drain().await?;
        super::restore::check_stored(&self.manifest, stored, &sha)
    }

    /// The error for a read that failed while decrypting: the download's, else a mismatch
    /// with the manifest found by reading the rest, else the decryption's (`why`).
    async fn failed(&mut self, why: String) -> SnapshotError {
        if self.tap.lock().failed.is_some() {
            return self.object_error();
        }
        let checked = self
            .drain()
            .await
            .and_then(|(stored, sha)| super::restore::check_stored(&self.manifest, stored, &sha));
        match checked {
            Err(error) => error,
            Ok(()) => SnapshotError::Decrypt { id: self.manifest.id.clone(), why },
        }
    }

    /// Reads the object to its end; its size and sha256.
    async fn drain(&self) -> Result<(u64, String), SnapshotError> {
        let tap = &self.tap;
        while futures::future::poll_fn(|cx| tap.poll_chunk(cx))
            .await
            .map_err(|_| self.object_error())?
            .is_some()
        {}
        let mut tapped = tap.lock();
        Ok((tapped.stored, hex(&std::mem::take(&mut tapped.sha).finalize())))
    }

    fn object_error(&self) -> SnapshotError {
        let source =
            self.tap.lock().failed.take().unwrap_or_else(|| object_store::Error::Generic {
                store: "snapshot",
                source: "the download ended with an error".into(),
            });
        SnapshotError::Object {
            action: "download",
            url: self.url.clone(),
            object: self.key.clone(),
            source: Box::new(source),
        }
    }
}

/// The object's stream, shared by the reader that hashes it and the decryptor that reads it
/// (which owns its input and never gives it back).
#[derive(Clone)]
struct Tap(Arc<Mutex<Tapped>>);

struct Tapped {
    /// `None` once the object ended.
    stream: Option<BoxStream<'static, object_store::Result<Bytes>>>,
    /// Received, hashed, not yet read by the decryptor.
    pending: Bytes,
    sha: Sha256,
    stored: u64,
    /// The download's error, kept for the report (the decryptor only sees an `io::Error`).
    failed: Option<object_store::Error>,
}

impl Tap {
    fn lock(&self) -> std::sync::MutexGuard<'_, Tapped> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The next chunk of the object, hashed and counted on arrival.
    fn poll_chunk(&self, cx: &mut Context<'_>) -> Poll<std::io::Result<Option<Bytes>>> {
        let mut tapped = self.lock();
        if !tapped.pending.is_empty() {
            return Poll::Ready(Ok(Some(std::mem::take(&mut tapped.pending))));
        }
        loop {
            let Some(stream) = tapped.stream.as_mut() else { return Poll::Ready(Ok(None)) };
            match stream.poll_next_unpin(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => tapped.stream = None,
                Poll::Ready(Some(Ok(chunk))) => {
                    tapped.sha.update(&chunk);
                    tapped.stored += chunk.len() as u64;
                    if !chunk.is_empty() {
                        return Poll::Ready(Ok(Some(chunk)));
                    }
                }
                Poll::Ready(Some(Err(error))) => {
                    tapped.stream = None;
                    tapped.failed = Some(error);
                    return Poll::Ready(Err(std::io::Error::other("the download failed")));
                }
            }
        }
    }
}

impl futures::io::AsyncRead for Tap {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<std::io::Result<usize>> {
        let mut chunk = match self.poll_chunk(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
            Poll::Ready(Ok(None)) => return Poll::Ready(Ok(0)),
            Poll::Ready(Ok(Some(chunk))) => chunk,
        };
        let read = buf.len().min(chunk.len());
        buf[..read].copy_from_slice(&chunk[..read]);
        chunk.advance(read);
        // What the decryptor did not take now, it reads next (already hashed).
        self.lock().pending = chunk;
        Poll::Ready(Ok(read))
    }
}
