//! The durable master record: StatefulSet annotations `redis-autopilot.io/master` (a pod
//! name), `redis-autopilot.io/epoch` and, while or since someone changed roles,
//! `redis-autopilot.io/claim` (JSON, [`crate::cluster::Claim`]). Written with a merge patch that carries the
//! resourceVersion it was decided on, so the API server refuses (409) a writer that read a
//! stale record; the writer then re-reads and decides again, at most [`ATTEMPTS`] times.

use k8s_openapi::api::apps::v1::StatefulSet;
use kube::Api;
use kube::api::{Patch, PatchParams};

use super::api::{GET_STATEFULSET, KubeError, PATCH_STATEFULSET, bounded};
use crate::cluster::{Claim, ClusterError, MasterRecord};

pub const MASTER_ANNOTATION: &str = "redis-autopilot.io/master";
pub const EPOCH_ANNOTATION: &str = "redis-autopilot.io/epoch";
pub const CLAIM_ANNOTATION: &str = "redis-autopilot.io/claim";

/// Reads and decides again this many times when the StatefulSet changed under a write.
pub const ATTEMPTS: u32 = 3;

/// What the annotations say now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    pub master: Option<String>,
    pub epoch: u64,
    pub claim: Option<Claim>,
    resource_version: Option<String>,
}

impl Recorded {
    pub fn record(&self) -> Option<MasterRecord> {
        MasterRecord::stored(self.master.as_ref(), self.epoch, self.claim.as_ref())
    }

    pub fn describe(&self) -> String {
        MasterRecord::describe(self.record().as_ref())
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
    let claim = match get(CLAIM_ANNOTATION) {
        None => None,
        Some(text) => {
            Some(serde_json::from_str::<Claim>(text).map_err(|error| KubeError::Invalid {
                object: object.to_owned(),
                why: format!(
                    "annotation {CLAIM_ANNOTATION} is not a claim ({error}): remove it once no \
                     failover is running"
                ),
            })?)
        }
    };
    Ok(Recorded {
        master: get(MASTER_ANNOTATION).cloned(),
        epoch,
        claim,
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
                    // `null` removes it in a merge patch.
                    CLAIM_ANNOTATION: next.claim.as_ref().map(|claim| {
                        serde_json::to_string(claim).unwrap_or_default()
                    }),
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
