//! Raw policy spec (serde).
