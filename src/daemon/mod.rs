//! The long-running daemon: one task per policy on its sampling interval (sample -> decide
//! -> act), policy reloads, and the HTTP surface.
//!
//! - [`policies`]: the policy directory, loaded at start and reloaded on change.

pub mod policies;
