//! Credentials read from an environment variable or a file (how Kubernetes mounts Secrets).
//! A [`Secret`]'s `Debug` and `Display` never show its value, and errors name where the secret
//! was expected, never what it holds.
//!
//! A secret follows its source. Every [`Secret`] read from one source shares its versions:
//! [`read`] and [`refresh`] read the source again and, when the value changed, every holder
//! (a sampler, a local fleet's or a StatefulSet's role commands, a snapshot stream) uses the
//! new value from its next connection on, without being rebuilt. Files are read through their
//! path every time, so a Kubernetes Secret volume that swaps its `..data` symlink to a new
//! timestamped directory is followed by content, not by the link's mtime.

use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use crate::policy::SecretSource;

/// The most a secret file may hold: a password, token or key is bytes to kilobytes, and a
/// file past this is not one (a mount mistake, `/dev/zero`), so it is refused unread.
const MAX_SECRET_BYTES: usize = 64 * 1024;

/// A credential value. Only [`Secret::expose`] reveals it, at the one place it is sent.
#[derive(Clone)]
pub struct Secret(Arc<Version>);

/// One value a source held, and the next one it held, once it changed: a list that only
/// grows at its end, so a holder's `&str` stays valid while newer values are appended.
/// Holders of old versions keep them alive; nothing else does, so rotations cost nothing
/// that lasts.
struct Version {
    value: String,
    next: OnceLock<Arc<Version>>,
}

impl Secret {
    fn new(value: String) -> Self {
        Self(Arc::new(Version { value, next: OnceLock::new() }))
    }

    /// The source's value at its latest read.
    pub fn expose(&self) -> &str {
        &self.latest().value
    }

    fn latest(&self) -> &Version {
        let mut version: &Version = &self.0;
        while let Some(next) = version.next.get() {
            version = next;
        }
        version
    }

    /// Makes `value` the latest version (if it differs) and returns a handle to it; `true`
    /// when it changed. Only called under the registry's lock, so one appender at a time.
    fn update(&self, value: String) -> (Secret, bool) {
        let latest = self.latest();
        if latest.value == value {
            return (self.clone(), false);
        }
        let next = Arc::new(Version { value, next: OnceLock::new() });
        // The registry's lock makes this the only writer: the cell is empty.
        let _ = latest.next.set(Arc::clone(&next));
        (Secret(next), true)
    }
}

impl PartialEq for Secret {
    fn eq(&self, other: &Self) -> bool {
        self.expose() == other.expose()
    }
}

impl Eq for Secret {}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("environment variable `{0}` is not set")]
    EnvMissing(String),
    #[error("environment variable `{0}` is not valid UTF-8")]
    EnvNotUnicode(String),
    #[error("cannot read secret file `{}`", .path.display())]
    File {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("secret file `{}` is empty", .0.display())]
    FileEmpty(PathBuf),
}

/// Every source read so far, with the handle to its latest version and the error of its last
/// failed refresh (reported once).
struct Entry {
    source: SecretSource,
    latest: Secret,
    failing: Option<String>,
}

static SOURCES: Mutex<Vec<Entry>> = Mutex::new(Vec::new());

fn sources() -> std::sync::MutexGuard<'static, Vec<Entry>> {
    // Nothing panics while holding it; a poisoned list is still a consistent list.
    SOURCES.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Reads a secret now. Files are read whole with one trailing newline removed, since
/// `kubectl create secret --from-file` and editors often leave one. Every earlier [`Secret`]
/// of the same source follows the value read.
pub fn read(source: &SecretSource) -> Result<Secret, SecretError> {
    let value = read_value(source)?;
    let mut sources = sources();
    match sources.iter_mut().find(|entry| &entry.source == source) {
        Some(entry) => {
            entry.latest = entry.latest.update(value).0;
            entry.failing = None;
            Ok(entry.latest.clone())
        }
        None => {
            let secret = Secret::new(value);
            sources.push(Entry { source: source.clone(), latest: secret.clone(), failing: None });
            Ok(secret)
        }
    }
}

/// What a [`refresh`] found for one source.
#[derive(Debug)]
pub enum Refreshed {
    /// It holds a new value, which every holder now uses.
    Changed(SecretSource),
    /// It could not be read (reported once until it can): holders keep the last value.
    Failed(SecretSource, SecretError),
}

/// Reads every source read so far again (SIGHUP, and the daemon's poll), reporting those whose
/// value changed and those newly unreadable. A source that cannot be read keeps its last value:
/// a Secret being rewritten must not log anyone out.
pub fn refresh() -> Vec<Refreshed> {
    let mut sources = sources();
    let mut found = Vec::new();
    for entry in sources.iter_mut() {
        match read_value(&entry.source) {
            Ok(value) => {
                entry.failing = None;
                let (latest, changed) = entry.latest.update(value);
                entry.latest = latest;
                if changed {
                    found.push(Refreshed::Changed(entry.source.clone()));
                }
            }
            Err(error) => {
                let message = error.to_string();
                if entry.failing.as_ref() != Some(&message) {
                    entry.failing = Some(message);
                    found.push(Refreshed::Failed(entry.source.clone(), error));
                }
            }
        }
    }
    found
}

/// Where a secret comes from, for logs: never its value.
pub fn describe(source: &SecretSource) -> String {
    match source {
        SecretSource::Env(name) => format!("environment variable `{name}`"),
        SecretSource::File(path) => format!("file `{}`", path.display()),
    }
}

fn read_value(source: &SecretSource) -> Result<String, SecretError> {
    match source {
        SecretSource::Env(name) => match std::env::var(name) {
            Ok(value) => Ok(value),
            Err(std::env::VarError::NotPresent) => Err(SecretError::EnvMissing(name.clone())),
            Err(std::env::VarError::NotUnicode(_)) => Err(SecretError::EnvNotUnicode(name.clone())),
        },
        SecretSource::File(path) => {
            let text = crate::file_read::read_regular_text(path, MAX_SECRET_BYTES)
                .map_err(|source| SecretError::File { path: path.clone(), source })?;
            let value = text.strip_suffix('\n').unwrap_or(&text);
            let value = value.strip_suffix('\r').unwrap_or(value);
            if value.is_empty() {
                return Err(SecretError::FileEmpty(path.clone()));
            }
            Ok(value.to_owned())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_never_prints_its_value() {
        let secret = Secret::new("hunter2".into());
        assert!(!format!("{secret:?} {secret}").contains("hunter2"));
        assert_eq!(secret.expose(), "hunter2");
    }

    #[test]
    fn files_lose_one_trailing_newline_and_errors_name_the_file_not_the_value() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("password");
        std::fs::write(&path, "s3cret\n").unwrap();
        assert_eq!(read(&SecretSource::File(path.clone())).unwrap().expose(), "s3cret");
        std::fs::write(&path, "\n").unwrap();
        let err = read(&SecretSource::File(path.clone())).unwrap_err().to_string();
        assert!(err.contains("password") && err.contains("empty"), "{err}");
        let missing = dir.path().join("nope");
        let err = read(&SecretSource::File(missing)).unwrap_err().to_string();
        assert!(err.contains("nope"), "{err}");
    }

    /// What [`refresh`] reported about `path` (other tests' sources may be in the list too).
    fn refreshed(path: &std::path::Path) -> Vec<&'static str> {
        refresh()
            .into_iter()
            .filter_map(|r| match r {
                Refreshed::Changed(SecretSource::File(p)) if p == path => Some("changed"),
                Refreshed::Failed(SecretSource::File(p), _) if p == path => Some("failed"),
                _ => None,
            })
            .collect()
    }

    /// A Kubernetes Secret volume: `password -> ..data/password`, `..data -> ..<stamp>`.
    fn mount(dir: &std::path::Path, stamp: &str, value: &str) {
        let version = dir.join(format!("..{stamp}"));
        std::fs::create_dir(&version).unwrap();
        std::fs::write(version.join("password"), value).unwrap();
        let staged = dir.join("..data_tmp");
        std::os::unix::fs::symlink(format!("..{stamp}"), &staged).unwrap();
        // The atomic swap the kubelet does: rename a new link over the old one.
        std::fs::rename(&staged, dir.join("..data")).unwrap();
        if !dir.join("password").exists() {
            std::os::unix::fs::symlink("..data/password", dir.join("password")).unwrap();
        }
    }

    #[test]
    fn every_holder_follows_a_rotated_kubernetes_secret() {
        let dir = tempfile::tempdir().unwrap();
        mount(dir.path(), "2026_12_02_1", "first\n");
        let path = dir.path().join("password");
        let source = SecretSource::File(path.clone());
        let held = read(&source).unwrap();
        let copy = held.clone();
        assert_eq!(held.expose(), "first");
        assert!(refreshed(&path).is_empty(), "nothing changed");

        mount(dir.path(), "2026_12_02_2", "second\n");
        assert_eq!(held.expose(), "first", "re-read only on refresh");
        assert_eq!(refreshed(&path), ["changed"]);
        assert_eq!((held.expose(), copy.expose()), ("second", "second"));
        assert!(refreshed(&path).is_empty(), "reported once");

        // Gone for a while: reported once, the last value stays in use.
        std::fs::remove_file(dir.path().join("..data")).unwrap();
        assert_eq!(refreshed(&path), ["failed"]);
        assert!(refreshed(&path).is_empty());
        assert_eq!(held.expose(), "second");
        // Another read of the source is one more holder of the same value.
        mount(dir.path(), "2026_12_02_3", "third");
        assert_eq!(read(&source).unwrap().expose(), "third");
        assert_eq!(held.expose(), "third");
    }

    #[test]
    fn a_missing_environment_variable_is_named() {
        let err = read(&SecretSource::Env("REDIS_AUTOPILOT_TEST_UNSET_VAR".into())).unwrap_err();
        assert_eq!(
            err.to_string(),
            "environment variable `REDIS_AUTOPILOT_TEST_UNSET_VAR` is not set"
        );
    }
}
