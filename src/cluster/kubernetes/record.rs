//! The durable master record: StatefulSet annotations `redis-autopilot.io/master` (a pod
//! name) and `redis-autopilot.io/epoch`. Written with a merge patch that carries the
//! resourceVersion it was decided on, so the API server refuses (409) a writer that read a
//! stale record; the writer then re-reads and decides again, at most [`ATTEMPTS`] times.

use k8s_openapi::api::apps::v1::StatefulSet;
use kube::Api;
use kube::api::{Patch, PatchParams};

use super::api::{GET_STATEFULSET, KubeError, PATCH_STATEFULSET, bounded};
use crate::cluster::{ClusterError, MasterRecord};

pub const MASTER_ANNOTATION: &str = "redis-autopilot.io/master";
pub const EPOCH_ANNOTATION: &str = "redis-autopilot.io/epoch";

/// Reads and decides again this many times when the StatefulSet changed under a write.
pub const ATTEMPTS: u32 = 3;

/// What the annotations say now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    pub master: Option<String>,
    pub epoch: u64,
    resource_version: Option<String>,
}

impl Recorded {
    pub fn record(&self) -> Option<MasterRecord> {
        self.master.clone().map(|instance| MasterRecord { instance, epoch: self.epoch })
    }

    pub fn describe(&self) -> String {
        match &self.master {
            Some(master) => format!("{master} at epoch {}", self.epoch),
            None => format!("nothing (epoch {})", self.epoch),
        }
    }
}

/// The record in `set`'s annotations.
pub fn parse(set: &StatefulSet, object: &str) -> Result<Recorded, KubeError> {
    let annotations = set.metadata.annotations.as_ref();
    let get = |key: &str| annotations.and_then(|a| a.get(key)).filter(|v| !v.is_empty());
    let epoch = match get(EPOCH_ANNOTATION) {
        None => 0,
        Some(text) => text.parse::<u64>().map_err(|_| KubeError::Invalid {
            object: object.to_owned(),
            why: format!(
                "annotation {EPOCH_ANNOTATION}={text:?} is not a whole number (fix it: it \
                 orders failovers)"
            ),
        })?,
    };
    Ok(Recorded {
        master: get(MASTER_ANNOTATION).cloned(),
        epoch,
        resource_version: set.metadata.resource_version.clone(),
    })
}

/// Reads the record now.
pub async fn read(api: &Api<StatefulSet>, name: &str, object: &str) -> Result<Recorded, KubeError> {
    let set = bounded(&GET_STATEFULSET, object, api.get(name)).await?;
    parse(&set, object)
}

/// Reads the record, asks `decide` what it should become, and writes that under the read's
/// resourceVersion; on a 409, reads and decides again. `decide` returns `Ok(None)` when the
/// record already says what it should (nothing is written) or refuses with an error.
pub async fn update(
    api: &Api<StatefulSet>,
    name: &str,
    object: &str,
    mut decide: impl FnMut(&Recorded) -> Result<Option<MasterRecord>, ClusterError>,
) -> Result<MasterRecord, ClusterError> {
    for _ in 0..ATTEMPTS {
        let current = read(api, name, object).await?;
        let Some(next) = decide(&current)? else {
            return current.record().ok_or_else(|| {
                ClusterError::from(KubeError::Invalid {
                    object: object.to_owned(),
                    why: "no master is recorded".into(),
                })
            });
        };
        let patch = serde_json::json!({
            "metadata": {
                "resourceVersion": current.resource_version,
                "annotations": {
                    MASTER_ANNOTATION: next.instance,
                    EPOCH_ANNOTATION: next.epoch.to_string(),
                },
            }
        });
        let (params, patch) = (PatchParams::default(), Patch::Merge(&patch));
        let written = api.patch(name, &params, &patch);
        match bounded(&PATCH_STATEFULSET, object, written).await {
            Ok(_) => return Ok(next),
            Err(error) if error.is_conflict() => {
                tracing::info!(object, "master record changed under the write; re-reading");
            }
            Err(error) => return Err(error.into()),
        }
    }
    Err(KubeError::Conflict {
        call: &PATCH_STATEFULSET,
        object: object.to_owned(),
        attempts: ATTEMPTS,
    }
    .into())
}

/// The rule every write obeys ([`crate::cluster::Cluster::record_master`]): the same record
/// again is a no-op; otherwise the epoch must grow.
pub fn advance(
    current: &Recorded,
    next: &MasterRecord,
) -> Result<Option<MasterRecord>, ClusterError> {
    if current.record().as_ref() == Some(next) {
        return Ok(None);
    }
    if next.epoch <= current.epoch {
        return Err(ClusterError::StaleEpoch {
            instance: next.instance.clone(),
            epoch: next.epoch,
            recorded: current.describe(),
        });
    }
    Ok(Some(next.clone()))
}
