//! Reading a snapshot back: download its object, check the bytes stored (count and
//! sha256) and the RDB inside (header, end opcode, CRC64, size) against its manifest, and,
//! to restore, write the plain RDB to a local file that appears only once all of that held.
//! [`Snapshotter::verify`] is the same download with nowhere to write. The object is read
//! through the shared download path (`object`: hashed, decrypted when encrypted); a
//! compressed one is decoded by the codec its manifest names, and never past the
//! `rawBytes` it records.

use std::io::Write as _;
use std::path::Path as FsPath;

use super::{Progress, Snapshotter};
use crate::snapshot::SnapshotError;
use crate::snapshot::manifest::{Codec, Manifest};
use crate::snapshot::rdb::{RdbSummary, RdbVerifier};

impl Snapshotter {
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
        let mut object = self.open_object(manifest).await?;
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
        progress.start(&id, Some(manifest.stored_bytes));
        let mut stored = 0_u64;
        while let Some(chunk) = object.next().await? {
            progress.advance(object.stored() - stored);
            stored = object.stored();
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
        object.finish().await?;
        if let Some((path, file)) = sink.file.as_mut() {
            file.flush().map_err(|source| SnapshotError::Local { path: path.clone(), source })?;
        }
        check_rdb(manifest, sink.verifier)
    }
}

/// The object as downloaded against its manifest: the bytes stored (`stored`) and their
/// sha256. Every read of a snapshot (to a file, a verification, into an instance) checks it.
pub(super) fn check_stored(
    manifest: &Manifest,
    stored: u64,
    sha256: &str,
) -> Result<(), SnapshotError> {
    let mismatch = |why: String| SnapshotError::Mismatch { id: manifest.id.clone(), why };
    if stored != manifest.stored_bytes {
        return Err(mismatch(format!(
            "{stored} bytes stored, manifest says {}",
            manifest.stored_bytes
        )));
    }
    if sha256 != manifest.sha256 {
        return Err(mismatch(format!("sha256 {sha256}, manifest says {}", manifest.sha256)));
    }
    Ok(())
}

/// The RDB the object decoded to against its manifest: a complete file (header, end opcode,
/// CRC64) of the size and CRC64 recorded.
pub(super) fn check_rdb(manifest: &Manifest, verifier: RdbVerifier) -> Result<(), SnapshotError> {
    let id = &manifest.id;
    let summary: RdbSummary = verifier
        .finish()
        .map_err(|source| SnapshotError::StoredCorrupt { id: id.clone(), source })?;
    if summary.bytes != manifest.raw_bytes
        || summary.crc64.map(|c| format!("{c:016x}")) != manifest.crc64
    {
        return Err(SnapshotError::Mismatch {
            id: id.clone(),
            why: format!(
                "RDB of {} bytes with CRC64 {:?}, manifest says {} bytes and {:?}",
                summary.bytes, summary.crc64, manifest.raw_bytes, manifest.crc64
            ),
        });
    }
    Ok(())
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
