//! Every Kubernetes API call the backend and the leader election make, as data
//! ([`API_CALLS`]), and how a failed call becomes a [`KubeError`] that says what to do about
//! it: a 403 names the verb and resource the Role lacks, an unreachable API server says so,
//! a 409 is a conflict the caller retries with fresh state.
//!
//! The table is what `deploy/`'s Role must grant; a test checks that it does.

use std::time::Duration;

/// One kind of API request: `verb` on `resource` (and `subresource`) in API `group`
/// (`""` is the core group), as RBAC rules spell them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiCall {
    pub verb: &'static str,
    pub group: &'static str,
    pub resource: &'static str,
    pub subresource: Option<&'static str>,
}

impl ApiCall {
    const fn new(verb: &'static str, group: &'static str, resource: &'static str) -> Self {
        Self { verb, group, resource, subresource: None }
    }

    const fn sub(
        verb: &'static str,
        group: &'static str,
        resource: &'static str,
        subresource: &'static str,
    ) -> Self {
        Self { verb, group, resource, subresource: Some(subresource) }
    }

    /// `statefulsets/scale`, as an RBAC rule names it.
    pub fn rbac_resource(&self) -> String {
        match self.subresource {
            Some(sub) => format!("{}/{sub}", self.resource),
            None => self.resource.to_owned(),
        }
    }
}

impl std::fmt::Display for ApiCall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let group = if self.group.is_empty() { "core" } else { self.group };
        write!(f, "`{}` on `{}` (API group {group})", self.verb, self.rbac_resource())
    }
}

/// Reads the StatefulSet: its selector at start, the master record before every change.
pub const GET_STATEFULSET: ApiCall = ApiCall::new("get", "apps", "statefulsets");
/// Writes the master record (annotations) under a resourceVersion precondition.
pub const PATCH_STATEFULSET: ApiCall = ApiCall::new("patch", "apps", "statefulsets");
/// Reads the requested replica count (the fleet's; the verifier's before a restore test).
pub const GET_SCALE: ApiCall = ApiCall::sub("get", "apps", "statefulsets", "scale");
/// Sets the requested replica count (the fleet's; the verifier's 0 -> 1 -> 0 for a restore
/// test, see [`super::verifier`]).
pub const PATCH_SCALE: ApiCall = ApiCall::sub("patch", "apps", "statefulsets", "scale");
/// The pod watcher's initial (and recovery) list; the verifier's pod during a restore test.
pub const LIST_PODS: ApiCall = ApiCall::new("list", "", "pods");
/// The pod watcher's stream.
pub const WATCH_PODS: ApiCall = ApiCall::new("watch", "", "pods");
/// Sets a pod's role label.
pub const PATCH_POD: ApiCall = ApiCall::new("patch", "", "pods");
/// An Event on the StatefulSet for an action.
pub const CREATE_EVENT: ApiCall = ApiCall::new("create", "events.k8s.io", "events");
/// Leader election: read the Lease.
pub const GET_LEASE: ApiCall = ApiCall::new("get", "coordination.k8s.io", "leases");
/// Leader election: create the Lease when it does not exist yet.
pub const CREATE_LEASE: ApiCall = ApiCall::new("create", "coordination.k8s.io", "leases");
/// Leader election: acquire, renew or release the Lease (resourceVersion precondition).
pub const UPDATE_LEASE: ApiCall = ApiCall::new("update", "coordination.k8s.io", "leases");

/// `run --resources`: the initial (and recovery) list of RedisPolicy objects.
pub const LIST_POLICIES: ApiCall = ApiCall::new("list", "autopilot.redis.io", "redispolicies");
/// `run --resources`: the stream of RedisPolicy changes.
pub const WATCH_POLICIES: ApiCall = ApiCall::new("watch", "autopilot.redis.io", "redispolicies");
/// `status NAME` and the other commands that take a RedisPolicy's name (a person's call).
pub const GET_POLICY: ApiCall = ApiCall::new("get", "autopilot.redis.io", "redispolicies");
/// `pause NAME` and `resume NAME`: the pause annotation (a person's call, not the daemon's).
pub const PATCH_POLICY: ApiCall = ApiCall::new("patch", "autopilot.redis.io", "redispolicies");
/// A policy's status, written by its leader (and `Valid=False` for an invalid one).
pub const PATCH_POLICY_STATUS: ApiCall =
    ApiCall::sub("patch", "autopilot.redis.io", "redispolicies", "status");

/// Every API call the daemon makes. Add a call here when the code makes a new one.
pub const API_CALLS: &[ApiCall] = &[
    GET_STATEFULSET,
    PATCH_STATEFULSET,
    GET_SCALE,
    PATCH_SCALE,
    LIST_PODS,
    WATCH_PODS,
    PATCH_POD,
    CREATE_EVENT,
    GET_LEASE,
    CREATE_LEASE,
    UPDATE_LEASE,
    LIST_POLICIES,
    WATCH_POLICIES,
    PATCH_POLICY_STATUS,
];

/// Why a Kubernetes API interaction failed. Names the object and the call; never a token.
#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    #[error("cannot load the Kubernetes client configuration")]
    Config(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("cannot build the Kubernetes client")]
    Client(#[source] Box<kube::Error>),
    #[error(
        "forbidden: the daemon's service account may not {call} for {object} (grant it in the \
         Role): {message}"
    )]
    Forbidden { call: &'static ApiCall, object: String, message: String },
    #[error("{object} not found ({call})")]
    NotFound { call: &'static ApiCall, object: String },
    #[error("{object} changed under us {attempts} times in a row ({call}): giving up this round")]
    Conflict { call: &'static ApiCall, object: String, attempts: u32 },
    #[error("the Kubernetes API server is unreachable ({call} for {object}); no action this round")]
    Unreachable {
        call: &'static ApiCall,
        object: String,
        #[source]
        source: Box<kube::Error>,
    },
    #[error("{call} for {object} timed out after {timeout:?}")]
    Timeout { call: &'static ApiCall, object: String, timeout: Duration },
    #[error("{call} for {object} failed")]
    Api {
        call: &'static ApiCall,
        object: String,
        #[source]
        source: Box<kube::Error>,
    },
    #[error("{object}: {why}")]
    Invalid { object: String, why: String },
    #[error("the pod watch for {object} is not in sync: {why}")]
    Watch { object: String, why: String },
}

impl KubeError {
    /// A bounded label for metrics.
    pub fn category(&self) -> &'static str {
        match self {
            KubeError::Config(_) => "kube_config",
            KubeError::Client(_) => "kube_client",
            KubeError::Forbidden { .. } => "kube_forbidden",
            KubeError::NotFound { .. } => "kube_not_found",
            KubeError::Conflict { .. } => "kube_conflict",
            KubeError::Unreachable { .. } => "kube_unreachable",
            KubeError::Timeout { .. } => "kube_timeout",
            KubeError::Api { .. } => "kube_api",
            KubeError::Invalid { .. } => "kube_invalid",
            KubeError::Watch { .. } => "kube_watch",
        }
    }

    /// A 409: the object changed since it was read.
    pub fn is_conflict(&self) -> bool {
        matches!(self, KubeError::Conflict { .. })
    }

    /// Classifies a failed `call` on `object`.
    pub fn from_kube(
        call: &'static ApiCall,
        object: impl Into<String>,
        source: kube::Error,
    ) -> Self {
        let object = object.into();
        match &source {
            kube::Error::Api(status) => match status.code {
                403 => KubeError::Forbidden { call, object, message: status.message.clone() },
                404 => KubeError::NotFound { call, object },
                409 => KubeError::Conflict { call, object, attempts: 1 },
                _ => KubeError::Api { call, object, source: Box::new(source) },
            },
            // No HTTP answer at all: refused, reset, DNS, TLS handshake.
            kube::Error::HyperError(_) | kube::Error::Service(_) => {
                KubeError::Unreachable { call, object, source: Box::new(source) }
            }
            _ => KubeError::Api { call, object, source: Box::new(source) },
        }
    }
}

/// How long one API request may take (the watch stream excepted).
pub const DEADLINE: Duration = Duration::from_secs(10);

/// Runs one API request under [`DEADLINE`], classifying its failure.
pub async fn bounded<T>(
    call: &'static ApiCall,
    object: &str,
    request: impl Future<Output = Result<T, kube::Error>>,
) -> Result<T, KubeError> {
    match tokio::time::timeout(DEADLINE, request).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(source)) => Err(KubeError::from_kube(call, object, source)),
        Err(_elapsed) => {
            Err(KubeError::Timeout { call, object: object.to_owned(), timeout: DEADLINE })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_forbidden_call_names_the_verb_and_resource() {
        let status =
            kube::core::Status::failure("statefulsets.apps \"redis\" is forbidden", "Forbidden")
                .with_code(403);
        let error = KubeError::from_kube(
            &PATCH_SCALE,
            "statefulset cache/redis",
            kube::Error::Api(Box::new(status)),
        );
        assert_eq!(error.category(), "kube_forbidden");
        let text = error.to_string();
        assert!(text.contains("`patch` on `statefulsets/scale` (API group apps)"), "{text}");
        assert!(text.contains("statefulset cache/redis"), "{text}");
    }

    #[test]
    fn every_call_is_listed_once() {
        for (i, call) in API_CALLS.iter().enumerate() {
            assert!(!API_CALLS[..i].contains(call), "{call} listed twice");
        }
    }
}
