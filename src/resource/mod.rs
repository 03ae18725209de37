//! RedisPolicy as a Kubernetes resource: the CustomResourceDefinition, generated from the
//! same serde types `check` reads policy files with ([`crate::policy::spec`]), so a file and
//! a resource can never be two languages; and the `status` the daemon reports on it.
//!
//! - [`crd`]: the definition itself (schema, printer columns, the status subresource), as
//!   `redis-autopilot crd` prints it and `deploy/base/crd.yaml` ships it (`tests/deploy.rs`
//!   checks the two are the same).
//! - [`object`]: one RedisPolicy as read from the API server, and the policy text the
//!   daemon loads it as (through the loader files go through).
//! - [`status`]: the status document: phase, master and epoch, replicas, the last scale,
//!   failover and snapshot, and the conditions.

pub mod crd;
pub mod object;
pub mod status;

/// The API group and version of RedisPolicy, as policy files have always named them.
pub const GROUP: &str = "autopilot.redis.io";
pub const VERSION: &str = "v1alpha1";
pub const KIND: &str = "RedisPolicy";
pub const PLURAL: &str = "redispolicies";
