//! What a destination holds for one policy, and retention's deletes. A snapshot exists
//! exactly when its manifest does; [`Snapshotter::listing`] reads every manifest in the
//! policy's folder and trusts one only when it is small, parses, and names itself, this
//! policy and its own object, so a stray or planted file can neither stop `list` and `prune`
//! nor steer them. [`Snapshotter::prune`] deletes what [`retention::plan`] chose (less the
//! newest proven-restorable snapshots `verify.keep` protects), manifest first, so a
//! half-deleted snapshot is never listed.

use futures::StreamExt as _;
use object_store::ObjectStoreExt as _;

use super::Snapshotter;
use crate::snapshot::SnapshotError;
use crate::snapshot::manifest::{self, Manifest};
use crate::snapshot::retention::{self, Prune};

impl Snapshotter {
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

    pub(super) async fn manifest(&self, id: &str) -> Result<Manifest, SnapshotError> {
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

    /// Applies retention: deletes what [`retention::plan`] says (manifest first, so a
    /// half-deleted snapshot is never listed), or only reports it with `dry_run`.
    pub async fn prune(&self, dry_run: bool) -> Result<Vec<Prune>, SnapshotError> {
        let manifests = self.listing().await?.manifests;
        let times: Vec<_> = manifests.iter().map(|m| (m.id.clone(), m.started)).collect();
        let mut plan = retention::plan(&times, &self.config.retention);
        if let Some(verify) = &self.config.verify {
            let proven: Vec<String> =
                manifests.iter().filter(|m| m.proven()).map(|m| m.id.clone()).collect();
            plan = retention::keep_proven(plan, &proven, verify.keep);
        }
        if dry_run {
            return Ok(plan);
        }
        for prune in &plan {
            let Some(manifest) = manifests.iter().find(|m| m.id == prune.id) else { continue };
            for name in [format!("{}.json", manifest.id), manifest.object.clone()] {
                // Checked again just before deleting: a symlink planted since the listing
                // must not take the delete out of the store.
                let key = self.checked_key(&name)?;
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
