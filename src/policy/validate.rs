//! Spec -> Policy.
