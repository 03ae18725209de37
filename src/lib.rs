//! redis-autopilot keeps Redis deployments healthy, right-sized and backed up.
//!
//! # The pipeline: sample -> decide -> act
//!
//! Every evaluation runs the same three stages, and only the first and last touch the world:
//!
//! - **sample** (edges, I/O): read every instance's `INFO` and the policy's PromQL queries
//!   into an [`observe::Observation`]. The simulator is one such edge: it synthesizes
//!   observations from a recorded load trace.
//! - **decide** ([`decide`], pure): policy + [`observe::History`] + fleet + memory + `now` in,
//!   [`decide::ScalingDecision`]s with reasons out; one health probe in,
//!   [`decide::HealthDecision`]s out. No I/O, no clock, no async.
//! - **act** (edges, I/O): apply each kind of decision to a cluster through its own path
//!   ([`act::scale`], [`act::health`]), or only report it.
//!
//! # Layout
//!
//! - [`model`]: the plain data every stage shares (members, endpoints, the master record and
//!   its epoch rule); imports nothing from the crate.
//! - [`policy`]: the YAML policy language, parsed into a validated [`policy::Policy`] whose
//!   fields are typed (endpoints, the snapshot destination), with positioned diagnostics for
//!   every problem; validation has one file per policy section.
//! - [`policy_files`]: policy files on disk (the listing, the bounded read).
//! - [`resource`]: RedisPolicy as a Kubernetes resource: the CRD, generated from the policy's
//!   own types, and its `status`.
//! - [`observe`]: observations, instance samples (typed `INFO`) and the bounded history.
//! - [`sample`]: the Redis and Prometheus samplers (edges, I/O).
//! - [`decide`]: the pure decision core: scaling (`decide`) and health (`decide::health`:
//!   `assess`, `choice`, `reasons`). `model`, `policy`, `observe` and `decide` do no I/O, read
//!   no clock and never await; `tests/purity.rs` checks it.
//! - [`act`]: one action path per kind of decision ([`act::scale`], with the scale-down
//!   hand-over of the master, and [`act::health`]) and their admission: apply, dry-run or
//!   paused, under a per-policy rate limit, only while leading.
//! - [`failover`]: failover, switchover and hand-over as state machines over the cluster trait,
//!   and the health probe.
//! - [`cluster`]: the cluster edge the daemon acts through (list, scale, promote, switch over,
//!   repoint, the durable master record) and its backends; a backend only does what it is told.
//!
//! No module reaches back to one that names it: `tests/purity.rs` fails on any import circle
//! among the modules under `src/` (the graph is in `docs/architecture.md`).
//! - [`daemon`]: `run`: policy loops, reloads, metrics, shared status and the HTTP surface
//!   (probes, `/metrics`, recent decisions, the Alertmanager webhook).
//! - [`snapshot`]: RDBs streamed from a replica into object storage, verified (CRC64) while
//!   streaming, described by a manifest, pruned by retention, restorable to a file or into
//!   the deployment through a one-shot master ([`snapshot::seed`]); the
//!   [`snapshot::Snapshotter`] splits into upload, catalog, restore and into.
//! - [`demo`]: the embedded default: local fleet, trace-driven load, live view.
//! - [`errors`]: an error and its causes as one line of text.
//! - [`sim`]: replays a load trace against a policy and against the Kubernetes HPA baseline,
//!   and generates synthetic traces (`trace generate`).
//! - [`cli`]: the `redis-autopilot` subcommands; `main.rs` only calls [`cli::run`].

pub mod act;
pub mod cli;
pub mod cluster;
pub mod daemon;
pub mod decide;
pub mod demo;
pub mod errors;
pub mod failover;
pub mod file_read;
pub mod model;
pub mod observe;
pub mod policy;
pub mod policy_files;
pub mod resource;
pub mod sample;
pub mod sim;
pub mod snapshot;
