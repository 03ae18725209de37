//! Destinations: a policy's `destination`, parsed once by validation into a
//! [`crate::policy::Store`], opened as an object store and a key prefix.
//! `s3://bucket/prefix` (AWS or an S3-compatible `endpoint`, path-style), `gs://bucket/prefix`,
//! `az://container/prefix`, `file:///dir`. Credentials come from the policy's `credentials`
//! (read through [`crate::sample::secret`], never logged) or, when absent, from the
//! environment's usual chain (`AWS_*` variables, instance or pod identity, ...).

use std::sync::Arc;
use std::time::Duration;

use object_store::ObjectStore;
use object_store::aws::AmazonS3Builder;
use object_store::azure::MicrosoftAzureBuilder;
use object_store::gcp::GoogleCloudStorageBuilder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{BackoffConfig, RetryConfig};

use super::SnapshotError;
use crate::policy::{AzureCredentials, S3Credentials, Snapshots, Store};
use crate::sample::secret;

/// An opened destination: where every snapshot of one policy goes.
#[derive(Debug, Clone)]
pub struct Destination {
    /// The URL as written in the policy (no credentials are ever part of it).
    pub url: String,
    pub store: Arc<dyn ObjectStore>,
    /// The key prefix inside the bucket; empty for `file://`, whose root is the directory.
    prefix: String,
    /// The directory of a `file://` destination, resolved: what keys must stay inside.
    root: Option<std::path::PathBuf>,
}

/// Retries bounded well below Redis's `repl-timeout`: a store that is down for longer than
/// this fails the snapshot clearly rather than stalling the source.
fn retry() -> RetryConfig {
    RetryConfig {
        backoff: BackoffConfig::default(),
        max_retries: 3,
        retry_timeout: Duration::from_secs(30),
    }
}

impl Destination {
    /// Opens the store the policy's destination names, as validation parsed it: a
    /// `file://` directory is created now; the object stores only build their clients (no
    /// network yet).
    pub fn open(snapshots: &Snapshots) -> Result<Self, SnapshotError> {
        let url = snapshots.destination.url.clone();
        let bad = |why: String| SnapshotError::Destination { url: url.clone(), why };
        let store_error =
            |source| SnapshotError::Store { url: url.clone(), source: Box::new(source) };
        let (store, prefix): (Arc<dyn ObjectStore>, &str) = match &snapshots.destination.store {
            Store::Local { dir } => {
                std::fs::create_dir_all(dir)
                    .map_err(|e| bad(format!("cannot create the directory: {e}")))?;
                let store = LocalFileSystem::new_with_prefix(dir).map_err(store_error)?;
                let root = std::fs::canonicalize(dir)
                    .map_err(|e| bad(format!("cannot resolve the directory: {e}")))?;
                return Ok(Self {
                    url,
                    store: Arc::new(store),
                    prefix: String::new(),
                    root: Some(root),
                });
            }
            Store::S3 { bucket, prefix, endpoint, region, credentials } => {
                let mut builder = AmazonS3Builder::from_env()
                    .with_bucket_name(bucket)
                    .with_retry(retry())
                    .with_virtual_hosted_style_request(false);
                if let Some(endpoint) = endpoint {
                    builder = builder
                        .with_endpoint(endpoint)
                        .with_allow_http(endpoint.starts_with("http://"));
                }
                if let Some(region) = region {
                    builder = builder.with_region(region);
                }
                if let Some(S3Credentials { access_key_id, secret_access_key, session_token }) =
                    credentials
                {
                    let read = |what, source| {
                        secret::read(source)
                            .map_err(|source| SnapshotError::Credentials { what, source })
                    };
                    builder = builder
                        .with_access_key_id(read("access key id", access_key_id)?.expose())
                        .with_secret_access_key(
                            read("secret access key", secret_access_key)?.expose(),
                        );
                    if let Some(token) = session_token {
                        builder = builder.with_token(read("session token", token)?.expose());
                    }
                }
                (Arc::new(builder.build().map_err(store_error)?), prefix)
            }
            Store::Gcs { bucket, prefix, service_account_key } => {
                let mut builder = GoogleCloudStorageBuilder::from_env()
                    .with_bucket_name(bucket)
                    .with_retry(retry());
                if let Some(service_account_key) = service_account_key {
                    let key = secret::read(service_account_key).map_err(|source| {
                        SnapshotError::Credentials { what: "service account key", source }
                    })?;
                    builder = builder.with_service_account_key(key.expose());
                }
                (Arc::new(builder.build().map_err(store_error)?), prefix)
            }
            Store::Azure { container, prefix, credentials } => {
                let mut builder = MicrosoftAzureBuilder::from_env()
                    .with_container_name(container)
                    .with_retry(retry());
                if let Some(AzureCredentials { account, access_key }) = credentials {
                    let key = secret::read(access_key).map_err(|source| {
                        SnapshotError::Credentials { what: "account key", source }
                    })?;
                    builder = builder.with_account(account).with_access_key(key.expose());
                }
                (Arc::new(builder.build().map_err(store_error)?), prefix)
            }
        };
        Ok(Self { url, store, prefix: prefix.to_owned(), root: None })
    }

    /// For a `file://` destination, refuses a key that is a symlink or whose folder resolves
    /// outside the destination's directory: the local store follows symlinks, so a planted
    /// one would let a read, a restore or a delete reach any file the daemon can. Object
    /// stores have no symlinks: always fine.
    pub fn check_local(&self, key: &Path) -> Result<(), String> {
        let Some(root) = &self.root else { return Ok(()) };
        let mut path = root.clone();
        for part in key.parts() {
            path.push(part.as_ref());
        }
        let folder = path.parent().unwrap_or(root);
        match std::fs::canonicalize(folder) {
            Ok(real) if real.starts_with(root) => {}
            Ok(real) => {
                return Err(format!(
                    "its folder resolves to `{}`, outside the store",
                    real.display()
                ));
            }
            // A missing folder holds nothing to follow; the store reports the missing key.
            Err(_) => return Ok(()),
        }
        match std::fs::symlink_metadata(&path) {
            Ok(meta) if meta.file_type().is_symlink() => {
                Err(format!("`{}` is a symlink", path.display()))
            }
            _ => Ok(()),
        }
    }

    /// The key of `name` in `policy`'s folder: `<prefix>/<policy>/<name>`.
    pub fn key(&self, policy: &str, name: &str) -> Path {
        Path::from(self.folder_text(policy) + "/" + name)
    }

    /// The folder holding `policy`'s snapshots.
    pub fn folder(&self, policy: &str) -> Path {
        Path::from(self.folder_text(policy))
    }

    fn folder_text(&self, policy: &str) -> String {
        if self.prefix.is_empty() { policy.to_owned() } else { format!("{}/{policy}", self.prefix) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::load_policy_str;

    fn snapshots(section: &str) -> Snapshots {
        let text = format!(
            "apiVersion: autopilot.redis.io/v1alpha1\nkind: RedisPolicy\nmetadata: {{name: t}}\n\
             spec:\n  target: {{endpoints: [\"r:6379\"]}}\n  snapshots: {section}\n"
        );
        load_policy_str("t.yaml", &text).expect("valid").snapshots.expect("snapshots")
    }

    #[test]
    fn keys_live_under_the_prefix_and_the_policy() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("file://{}/backups", dir.path().display());
        let d = Destination::open(&snapshots(&format!(
            "{{schedule: '0 0 3 * * *', destination: '{url}'}}"
        )))
        .unwrap();
        assert_eq!(d.key("cache", "a.json").as_ref(), "cache/a.json");
        assert!(dir.path().join("backups").is_dir());
        let s3 = Destination::open(&snapshots(
            "{schedule: '0 0 3 * * *', destination: 's3://bucket/some/prefix/', \
             endpoint: 'http://127.0.0.1:9', region: eu-west-1}",
        ))
        .unwrap();
        assert_eq!(s3.key("cache", "a.json").as_ref(), "some/prefix/cache/a.json");
    }

    #[test]
    fn a_missing_credential_names_where_it_was_expected_not_its_value() {
        let err = Destination::open(&snapshots(
            "{schedule: '0 0 3 * * *', destination: 's3://b/p', credentials: \
             {accessKeyIdEnv: RA_TEST_UNSET_KEY_ID, secretAccessKeyEnv: RA_TEST_UNSET_SECRET}}",
        ))
        .unwrap_err();
        let text = crate::errors::chain(&err);
        assert!(text.contains("access key id") && text.contains("RA_TEST_UNSET_KEY_ID"), "{text}");
    }
}
