//! Credentials read from an environment variable or a file (how Kubernetes mounts Secrets).
//! A [`Secret`]'s `Debug` and `Display` never show its value, and errors name where the secret
//! was expected, never what it holds.

use std::fmt;
use std::path::PathBuf;

use crate::policy::SecretSource;

/// A credential value. Only [`Secret::expose`] reveals it, at the one place it is sent.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

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

/// Reads a secret now. Files are read whole with one trailing newline removed, since
/// `kubectl create secret --from-file` and editors often leave one.
pub fn read(source: &SecretSource) -> Result<Secret, SecretError> {
    match source {
        SecretSource::Env(name) => match std::env::var(name) {
            Ok(value) => Ok(Secret(value)),
            Err(std::env::VarError::NotPresent) => Err(SecretError::EnvMissing(name.clone())),
            Err(std::env::VarError::NotUnicode(_)) => Err(SecretError::EnvNotUnicode(name.clone())),
        },
        SecretSource::File(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|source| SecretError::File { path: path.clone(), source })?;
            let value = text.strip_suffix('\n').unwrap_or(&text);
            let value = value.strip_suffix('\r').unwrap_or(value);
            if value.is_empty() {
                return Err(SecretError::FileEmpty(path.clone()));
            }
            Ok(Secret(value.to_owned()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_never_prints_its_value() {
        let secret = Secret("hunter2".into());
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

    #[test]
    fn a_missing_environment_variable_is_named() {
        let err = read(&SecretSource::Env("REDIS_AUTOPILOT_TEST_UNSET_VAR".into())).unwrap_err();
        assert_eq!(
            err.to_string(),
            "environment variable `REDIS_AUTOPILOT_TEST_UNSET_VAR` is not set"
        );
    }
}
