//! Where a restore test loads a snapshot: the scratch instance, never a member of any fleet.
//! One abstraction over two places, so the test itself ([`crate::snapshot::snapshotter`]'s
//! `restore_test`) is written once:
//!
//! - [`ScratchKind::Local`]: a throwaway `redis-server` child on loopback
//!   ([`super::local::Scratch`]), for local and endpoints targets.
//! - [`ScratchKind::Verifier`]: the verifier StatefulSet scaled to one pod
//!   ([`super::kubernetes::verifier::Verifier`]), for a `kubernetes` target, whose daemon runs
//!   in a pod without a `redis-server`.
//!
//! Either way the instance is a guard: [`ScratchInstance::discard`] (or a drop) ends it.

use std::time::Duration;

use super::ClusterError;
use super::kubernetes::KubeClient;
use super::kubernetes::verifier::{Verifier, VerifierTarget};
use super::local::Scratch;
use crate::policy::{Policy, Target};
use crate::sample::redis::{Access, Endpoint};

/// Where a policy's restore tests load snapshots.
#[derive(Clone)]
pub enum ScratchKind {
    /// A `redis-server` child: the path or name of the binary.
    Local { redis_server: String },
    /// The verifier StatefulSet, reached through `client`.
    Verifier { client: kube::Client, target: VerifierTarget },
}

impl ScratchKind {
    /// The scratch for `policy`'s restore tests: the local target's own `redis-server`,
    /// `redis-server` on `PATH` for an `endpoints` target, the policy's verifier for a
    /// `kubernetes` target (its namespace, when the policy names none, the daemon's:
    /// `POD_NAMESPACE`, else the Kubernetes client's default namespace).
    pub async fn for_policy(policy: &Policy, kube: &KubeClient) -> Result<Self, ClusterError> {
        match &policy.target {
            Target::Local { redis_server, .. } => {
                Ok(Self::Local { redis_server: redis_server.clone() })
            }
            Target::Endpoints(_) => Ok(Self::Local { redis_server: "redis-server".to_owned() }),
            Target::Kubernetes { namespace, stateful_set, .. } => {
                let verifier = policy
                    .snapshots
                    .as_ref()
                    .and_then(|s| s.verify.as_ref())
                    .map(|v| v.verifier.clone())
                    .unwrap_or_default();
                let client = kube.get().await?;
                let verifier_namespace = verifier
                    .namespace
                    .clone()
                    .or_else(|| std::env::var("POD_NAMESPACE").ok().filter(|n| !n.is_empty()))
                    .unwrap_or_else(|| client.default_namespace().to_owned());
                // `check` refuses a verifier naming the target when both namespaces are
                // written; with the daemon's namespace defaulted it can only be seen here.
                if verifier_namespace == *namespace && verifier.name == *stateful_set {
                    return Err(ClusterError::Unsupported {
                        target: "kubernetes",
                        action: "use the fleet's own StatefulSet as the restore tests' verifier",
                    });
                }
                let target = VerifierTarget {
                    namespace: verifier_namespace,
                    name: verifier.name,
                    port: verifier.port,
                };
                Ok(Self::Verifier { client, target })
            }
        }
    }

    /// Starts (or scales up) the scratch, within `deadline`. It demands the password in
    /// `access` (a local child is started so; the verifier is deployed with the fleet's).
    /// `databases`: how many a local child has (the verifier's are its configuration's).
    pub async fn start(
        &self,
        access: &Access,
        databases: u32,
        deadline: Duration,
    ) -> Result<ScratchInstance, ClusterError> {
        match self {
            Self::Local { redis_server } => {
                Ok(ScratchInstance::Local(Scratch::start(redis_server, access, databases).await?))
            }
            Self::Verifier { client, target } => Ok(ScratchInstance::Verifier(Box::new(
                Verifier::start(client.clone(), target, deadline).await?,
            ))),
        }
    }
}

/// A `redis-server` path or name: a local child.
impl From<&str> for ScratchKind {
    fn from(redis_server: &str) -> Self {
        Self::Local { redis_server: redis_server.to_owned() }
    }
}

impl From<&String> for ScratchKind {
    fn from(redis_server: &String) -> Self {
        Self::from(redis_server.as_str())
    }
}

impl From<&ScratchKind> for ScratchKind {
    fn from(kind: &ScratchKind) -> Self {
        kind.clone()
    }
}

/// A running scratch; see the module documentation.
pub enum ScratchInstance {
    Local(Scratch),
    /// Boxed: it carries two API handles, several times a local scratch's size.
    Verifier(Box<Verifier>),
}

impl ScratchInstance {
    pub fn endpoint(&self) -> &Endpoint {
        match self {
            Self::Local(scratch) => scratch.endpoint(),
            Self::Verifier(verifier) => verifier.endpoint(),
        }
    }

    /// Whether it runs in a pod: the seed must then listen where pods reach it (`POD_IP`),
    /// not on loopback.
    pub fn in_cluster(&self) -> bool {
        matches!(self, Self::Verifier(_))
    }

    /// The last lines of its log, when the daemon can read it (a local child's); empty for
    /// the verifier, whose log is the pod's (`kubectl logs`).
    pub fn log_tail(&self) -> String {
        match self {
            Self::Local(scratch) => scratch.log_tail(),
            Self::Verifier(_) => String::new(),
        }
    }

    /// Ends it: a local child is killed and its directory removed; the verifier is scaled
    /// back to 0.
    pub async fn discard(self) {
        match self {
            Self::Local(scratch) => scratch.discard().await,
            Self::Verifier(verifier) => verifier.discard().await,
        }
    }
}
