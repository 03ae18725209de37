//! Fixtures for the validation tests of every section: a document head and target, a valid
//! scaling or Prometheus section to extend, and assertions on the one problem at a field
//! path, with its position and message.

use crate::policy::SecretSource;
use crate::policy::load_policy_str;

/// Lines 1-4; a case's body starts on line 5, and a target is added after it unless the
/// case is about the target.
pub(super) const HEAD: &str = "apiVersion: autopilot.redis.io/v1alpha1\nkind: RedisPolicy\n\
                                metadata: {name: t}\nspec:\n";

pub(super) const TARGET: &str = "  target: {endpoints: [\"redis-0:6379\"]}\n";

/// A valid scaling section (lines 5-10) followed by `extra`, from line 11.
pub(super) fn scaling(extra: &str) -> String {
    format!(
        "  scaling:\n    minReplicas: 1\n    maxReplicas: 10\n    metrics:\n      \
         - redis: instantaneous_ops_per_sec\n        target: 100\n{extra}"
    )
}

pub(super) fn problems_in(text: &str) -> Vec<crate::policy::Diagnostic> {
    load_policy_str("t.yaml", text).expect_err("the policy has a problem")
}

/// The one problem at `path`.
pub(super) fn problem_at(text: &str, path: &str) -> crate::policy::Diagnostic {
    let problems = problems_in(text);
    let listing: Vec<String> = problems.iter().map(ToString::to_string).collect();
    let mut at_path: Vec<_> = problems.into_iter().filter(|d| d.path == path).collect();
    assert_eq!(at_path.len(), 1, "one problem at {path} in:\n{}", listing.join("\n"));
    at_path.remove(0)
}

/// Asserts the one problem at `path`: its position and (part of) its message.
pub(super) fn assert_problem(text: &str, path: &str, line: usize, column: usize, message: &str) {
    let found = problem_at(text, path);
    assert_eq!((found.line, found.column), (line, column), "position of {found}");
    assert!(found.message.contains(message), "`{message}` not in {found}");
}

/// A `spec.prometheus` section with a valid URL (lines 5-6) followed by `extra`, from
/// line 7.
pub(super) fn prometheus(extra: &str) -> String {
    format!("  prometheus:\n    url: http://prometheus:9090\n{extra}")
}

pub(super) fn env(name: &str) -> SecretSource {
    SecretSource::Env(name.to_owned())
}

pub(super) fn file(path: &str) -> SecretSource {
    SecretSource::File(path.into())
}
