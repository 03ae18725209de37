//! Encryption at rest with [age](https://age-encryption.org/v1): snapshots are encrypted on
//! the client, after compression, to the X25519 public keys (`age1…`) of a recipients file,
//! and decrypted with an identity (`AGE-SECRET-KEY-1…`, as `age-keygen` writes it) only when
//! one is read back.
//!
//! The payload is age's STREAM: 64 KiB chunks, each authenticated, the last one marked, so a
//! cut or altered object fails to decrypt instead of yielding a shorter RDB; memory stays at
//! one chunk each way whatever the snapshot's size.
//!
//! Secrets: an identity is held in [`Identities`], whose `Debug` shows only the public keys;
//! no error here quotes a line of a key file (a secret key pasted where a public key belongs
//! is reported by its line number only).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::str::FromStr as _;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;

use crate::policy::SecretSource;

/// How every age file starts: an object that does not is not one.
pub const MAGIC: &[u8] = b"age-encryption.org/v1";

/// Why keys could not be read, or encryption could not start. Never holds key material.
#[derive(Debug, thiserror::Error)]
pub enum CryptError {
    #[error("cannot read the recipients file `{}`", .path.display())]
    ReadRecipients {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("recipients file `{}`, line {line}: {why}", .path.display())]
    BadRecipient { path: PathBuf, line: usize, why: &'static str },
    #[error("recipients file `{}` names no recipient (one `age1…` public key per line)", .path.display())]
    NoRecipients { path: PathBuf },
    #[error("cannot read the identity ({what})")]
    ReadIdentity {
        what: String,
        #[source]
        source: crate::sample::secret::SecretError,
    },
    #[error(
        "the identity ({what}), line {line}, is not an age X25519 identity (`AGE-SECRET-KEY-1…`)"
    )]
    BadIdentity { what: String, line: usize },
    #[error("the identity ({what}) holds no age identity (`AGE-SECRET-KEY-1…`)")]
    NoIdentity { what: String },
    #[error("cannot start encrypting: {why}")]
    Encryptor { why: String },
}

impl CryptError {
    /// A bounded label for metrics.
    pub fn category(&self) -> &'static str {
        match self {
            CryptError::ReadRecipients { .. }
            | CryptError::BadRecipient { .. }
            | CryptError::NoRecipients { .. } => "recipients",
            CryptError::ReadIdentity { .. }
            | CryptError::BadIdentity { .. }
            | CryptError::NoIdentity { .. } => "identity",
            CryptError::Encryptor { .. } => "encrypt",
        }
    }
}

/// The public keys snapshots are encrypted to.
#[derive(Debug, Clone)]
pub struct Recipients {
    keys: Vec<age::x25519::Recipient>,
}

impl Recipients {
    /// Reads and parses the recipients file at `path`: a regular file of at most 1 MiB (a
    /// few thousand keys), never a device or a FIFO.
    pub fn read(path: &Path) -> Result<Self, CryptError> {
        let text = crate::file_read::read_regular_text(path, 1 << 20)
            .map_err(|source| CryptError::ReadRecipients { path: path.to_owned(), source })?;
        Self::parse(&text, path)
    }

    /// One `age1…` key per line; blank lines and `#` comments are skipped. `path` only names
    /// the file in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Self, CryptError> {
        let mut keys = Vec::new();
        for (index, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad =
                |why| CryptError::BadRecipient { path: path.to_owned(), line: index + 1, why };
            if line.to_ascii_uppercase().starts_with("AGE-SECRET-KEY-") {
                return Err(bad(
                    "holds a secret key (an identity), which belongs in identityFile; this file \
                     takes public keys (`age1…`, from `age-keygen -y`)",
                ));
            }
            let key = age::x25519::Recipient::from_str(line)
                .map_err(|_| bad("is not an age X25519 public key (`age1…`)"))?;
            keys.push(key);
        }
        if keys.is_empty() {
            return Err(CryptError::NoRecipients { path: path.to_owned() });
        }
        Ok(Self { keys })
    }

    /// The keys as written (`age1…`): public, recorded in the manifest.
    pub fn names(&self) -> Vec<String> {
        self.keys.iter().map(ToString::to_string).collect()
    }
}

/// Secret keys that decrypt snapshots. `Debug` shows only their public keys.
pub struct Identities {
    keys: Vec<age::x25519::Identity>,
}

impl std::fmt::Debug for Identities {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identities").field("public", &self.public()).finish_non_exhaustive()
    }
}

impl Identities {
    /// Reads the identity from `source` (a file or an environment variable).
    pub fn read(source: &SecretSource) -> Result<Self, CryptError> {
        let what = crate::sample::secret::describe(source);
        let secret = crate::sample::secret::read(source)
            .map_err(|source| CryptError::ReadIdentity { what: what.clone(), source })?;
        Self::parse(secret.expose(), &what)
    }

    /// `age-keygen`'s format: `AGE-SECRET-KEY-1…` lines, blank lines and `#` comments.
    /// `what` names the source in errors; a line is never quoted.
    pub fn parse(text: &str, what: &str) -> Result<Self, CryptError> {
        let mut keys = Vec::new();
        for (index, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let key = age::x25519::Identity::from_str(line)
                .map_err(|_| CryptError::BadIdentity { what: what.to_owned(), line: index + 1 })?;
            keys.push(key);
        }
        if keys.is_empty() {
            return Err(CryptError::NoIdentity { what: what.to_owned() });
        }
        Ok(Self { keys })
    }

    /// The public keys of these identities (`age1…`).
    pub fn public(&self) -> Vec<String> {
        self.keys.iter().map(|k| k.to_public().to_string()).collect()
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &dyn age::Identity> {
        self.keys.iter().map(|k| k as &dyn age::Identity)
    }
}

/// Encrypts a stream pushed in pieces: each [`Encrypt::push`] returns the ciphertext ready so
/// far (whole 64 KiB chunks; the header with the first), [`Encrypt::finish`] the rest.
pub struct Encrypt {
    writer: age::stream::StreamWriter<Spool>,
    spool: Spool,
}

impl Encrypt {
    pub fn new(recipients: &Recipients) -> Result<Self, CryptError> {
        let encryptor = age::Encryptor::with_recipients(
            recipients.keys.iter().map(|k| k as &dyn age::Recipient),
        )
        .map_err(|e| CryptError::Encryptor { why: e.to_string() })?;
        let spool = Spool::default();
        let writer = encryptor
            .wrap_output(spool.clone())
            .map_err(|e| CryptError::Encryptor { why: e.to_string() })?;
        Ok(Self { writer, spool })
    }

    pub fn push(&mut self, plain: &[u8]) -> std::io::Result<Bytes> {
        self.writer.write_all(plain)?;
        Ok(self.spool.take())
    }

    /// Writes the last chunk (marked last, so a cut is detected on decryption).
    pub fn finish(self) -> std::io::Result<Bytes> {
        self.writer.finish()?;
        Ok(self.spool.take())
    }
}

/// Where the age writer puts ciphertext until [`Encrypt`] hands it out. A shared buffer
/// because age's writer owns its output and offers no way to reach it before `finish`.
#[derive(Clone, Default)]
struct Spool(Arc<Mutex<Vec<u8>>>);

impl Spool {
    fn take(&self) -> Bytes {
        Bytes::from(std::mem::take(&mut *self.0.lock().unwrap_or_else(PoisonError::into_inner)))
    }
}

impl std::io::Write for Spool {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Why an age object could not be opened for reading.
#[derive(Debug)]
pub enum OpenError {
    /// None of the identities is one the object was encrypted to.
    NoMatch,
    /// Not an age file, a damaged header, or the download failed while reading it.
    Other(age::DecryptError),
}

/// Reads the header of the age object `input` and unlocks it with one of `identities`;
/// the returned reader yields the plaintext, failing on any cut or altered chunk.
pub async fn decrypt<R>(
    input: R,
    identities: &Identities,
) -> Result<age::stream::StreamReader<R>, OpenError>
where
    R: futures::io::AsyncBufRead + Unpin,
{
    let decryptor = age::Decryptor::new_async_buffered(input).await.map_err(OpenError::Other)?;
    decryptor.decrypt_async(identities.iter()).map_err(|error| match error {
        age::DecryptError::NoMatchingKeys => OpenError::NoMatch,
        other => OpenError::Other(other),
    })
}

/// Encrypts a small buffer whole to `recipients`: the manifest's sampled key names, which
/// are the dataset's own words and are kept as private as the object they describe.
pub fn seal(recipients: &Recipients, plain: &[u8]) -> Result<Vec<u8>, CryptError> {
    let failed = |e: std::io::Error| CryptError::Encryptor { why: e.to_string() };
    let mut encrypt = Encrypt::new(recipients)?;
    let mut sealed = encrypt.push(plain).map_err(failed)?.to_vec();
    sealed.extend_from_slice(&encrypt.finish().map_err(failed)?);
    Ok(sealed)
}

/// Decrypts what [`seal`] wrote. `Err` says why in words that hold no key material.
pub async fn open_sealed(sealed: &[u8], identities: &Identities) -> Result<Vec<u8>, String> {
    use futures::AsyncReadExt as _;
    let mut reader = match decrypt(sealed, identities).await {
        Ok(reader) => reader,
        Err(OpenError::NoMatch) => {
            return Err("the identity holds none of the keys it was sealed to".to_owned());
        }
        Err(OpenError::Other(error)) => return Err(error.to_string()),
    };
    // The plaintext is never longer than the ciphertext, itself inside a bounded manifest.
    let mut plain = Vec::with_capacity(sealed.len());
    reader.read_to_end(&mut plain).await.map_err(|e| e.to_string())?;
    Ok(plain)
}

#[cfg(test)]
mod tests {
    use futures::AsyncReadExt as _;

    use super::*;

    fn pair() -> (String, String) {
        use age::secrecy::ExposeSecret as _;
        let identity = age::x25519::Identity::generate();
        (identity.to_string().expose_secret().to_owned(), identity.to_public().to_string())
    }

    #[test]
    fn recipient_files_skip_comments_and_name_bad_lines_without_quoting_them() {
        let (secret, public) = pair();
        let path = Path::new("/run/keys/recipients");
        let good = Recipients::parse(&format!("# ops team\n\n  {public}  \n"), path).unwrap();
        assert_eq!(good.names(), vec![public.clone()]);
        let error = Recipients::parse(&format!("{public}\n{secret}\n"), path).unwrap_err();
        assert!(matches!(error, CryptError::BadRecipient { line: 2, .. }), "{error}");
        assert!(!error.to_string().contains(&secret), "{error}");
        let error = Recipients::parse("age1nope\n", path).unwrap_err();
        assert!(error.to_string().contains("line 1"), "{error}");
        let error = Recipients::parse("# only a comment\n", path).unwrap_err();
        assert!(matches!(error, CryptError::NoRecipients { .. }), "{error}");
    }

    /// The secret key is in no error and no `Debug` output, even from a malformed file.
    #[test]
    fn an_identity_never_shows_its_secret() {
        let (secret, public) = pair();
        let identities = Identities::parse(&format!("# public key: {public}\n{secret}\n"), "f")
            .expect("an age-keygen file");
        let debug = format!("{identities:?}");
        assert!(!debug.contains(&secret) && debug.contains(&public), "{debug}");
        let mangled = format!("{}x\n", &secret[..secret.len() - 1]);
        let error = Identities::parse(&mangled, "file `/k`").unwrap_err();
        let shown = format!("{error} {error:?}");
        assert!(shown.contains("line 1"), "{shown}");
        assert!(!shown.contains(&secret[20..]), "{shown}");
        assert!(matches!(Identities::parse("", "f"), Err(CryptError::NoIdentity { .. })));
    }

    async fn decrypt_all(object: &[u8], identities: &Identities) -> Result<Vec<u8>, String> {
        let mut reader = decrypt(object, identities).await.map_err(|e| format!("{e:?}"))?;
        let mut out = Vec::new();
        reader.read_to_end(&mut out).await.map_err(|e| e.to_string())?;
        Ok(out)
    }

    #[tokio::test]
    async fn pieces_encrypt_to_one_age_file_that_only_the_identity_opens_whole() {
        let (secret, public) = pair();
        let recipients = Recipients::parse(&public, Path::new("r")).unwrap();
        let plain: Vec<u8> = (0..300_000_u32).map(|i| (i % 251) as u8).collect();
        let mut encrypt = Encrypt::new(&recipients).unwrap();
        let mut object = Vec::new();
        for piece in plain.chunks(10_000) {
            object.extend_from_slice(&encrypt.push(piece).unwrap());
        }
        object.extend_from_slice(&encrypt.finish().unwrap());
        assert!(object.starts_with(MAGIC));
        let identities = Identities::parse(&secret, "s").unwrap();
        assert_eq!(decrypt_all(&object, &identities).await.unwrap(), plain);

        let (other, _) = pair();
        let wrong = Identities::parse(&other, "o").unwrap();
        assert!(matches!(decrypt(&object[..], &wrong).await, Err(OpenError::NoMatch)));

        // Cut at a chunk boundary or inside one: an error, never a shorter plaintext.
        for cut in [object.len() - 1, object.len() - 17, object.len() - (64 * 1024 + 16)] {
            let error = decrypt_all(&object[..cut], &identities).await.unwrap_err();
            assert!(!error.is_empty());
        }
    }

    #[tokio::test]
    async fn a_sealed_buffer_opens_only_with_its_identity_and_never_when_cut() {
        let (secret, public) = pair();
        let recipients = Recipients::parse(&public, Path::new("r")).unwrap();
        let sealed = seal(&recipients, b"user:1042 session:9f").unwrap();
        assert!(sealed.starts_with(MAGIC));
        assert!(!sealed.windows(9).any(|w| w == b"user:1042"));
        let identities = Identities::parse(&secret, "s").unwrap();
        assert_eq!(open_sealed(&sealed, &identities).await.unwrap(), b"user:1042 session:9f");
        let (other, _) = pair();
        let wrong = Identities::parse(&other, "o").unwrap();
        let error = open_sealed(&sealed, &wrong).await.unwrap_err();
        assert!(error.contains("none of the keys"), "{error}");
        assert!(open_sealed(&sealed[..sealed.len() - 1], &identities).await.is_err());
    }
}
