//! The daemon's library parts that are not the loop itself: its metrics, the status the
//! policy tasks publish, and the HTTP surface that serves both and receives Alertmanager's
//! webhook. The `run` loop owns one of each and plugs them together:
//!
//! - [`metrics`]: every Prometheus metric, in one explicit registry.
//! - [`status`]: readiness and the ring of recent decisions, shared by tasks and handlers.
//! - [`http`]: `/healthz`, `/readyz`, `/metrics`, `/v1/decisions`, `/v1/alerts`.

pub mod http;
pub mod metrics;
pub mod status;

pub use http::{AlertCommand, AlertRoutes, AlertSink, HttpError, router, serve};
pub use metrics::{AlertOutcome, Metrics, Source};
pub use status::{ActionOutcome, DecisionRecord, Status};
