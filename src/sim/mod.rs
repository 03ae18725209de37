//! Trace replay against a policy and the HPA baseline.
