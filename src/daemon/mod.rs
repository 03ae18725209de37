//! The long-running daemon: one loop per policy on its sampling interval (sample -> decide ->
//! act), policy reloads, and the HTTP surface that serves what the loops publish.
//!
//! - [`supervisor`]: `run`: starts and stops policy loops, routes alerts, reloads, shuts down.
//! - [`policy_loop`]: one policy's loop, the one task its target is acted from: it samples,
//!   decides, hands each decision to [`crate::act`] and records what became of it.
//! - [`master_watch`]: an idle connection to the recorded master, so its death triggers a
//!   health probe at once.
//! - [`leader`]: the Lease elections, one per policy on a StatefulSet, that decide whether
//!   this daemon acts on it.
//! - [`policies`]: the policies of a directory and of RedisPolicy objects, loaded at start
//!   and reloaded on change.
//! - [`resources`]: RedisPolicy objects as a policy source, and the writer of their status.
//! - [`report`]: what each policy's loop last saw and did, for its status.
//! - [`snapshots`]: each policy's snapshot schedule, at most one transfer in flight per policy.
//! - [`metrics`]: every Prometheus metric, in one explicit registry.
//! - [`requests`]: what code beside the daemon may ask of it (a snapshot now, a pause).
//! - [`status`]: readiness and the ring of recent decisions, shared by loops and handlers.
//! - [`http`]: `/healthz`, `/readyz`, `/metrics`, `/v1/decisions`, `/v1/policies`,
//!   `/v1/alerts`.

pub mod http;
pub mod leader;
pub mod master_watch;
pub mod metrics;
pub mod policies;
pub mod policy_loop;
pub mod report;
pub mod requests;
pub mod resources;
pub mod snapshots;
pub mod status;
pub mod supervisor;

pub use http::{
    AlertCommand, AlertRoutes, AlertSink, DaemonView, HttpError, HttpLimits, PolicyView,
    WebhookAccess, WebhookAuth, router, serve,
};
pub use metrics::{AlertOutcome, Metrics, Source};
pub use status::{DecisionRecord, Status};
