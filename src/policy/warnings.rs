//! Valid but risky: what `check` warns about in a policy that passes. A warning never
//! fails `check` (exit status 0); it names the field and what the combination risks.

use super::source_map::FieldPath;
use super::validate::Problem;
use super::{FailoverMode, Policy, Target};
use crate::policy::source_map::Anchor;

/// Every warning for `policy`, at the field it is about (a defaulted field points at its
/// nearest written ancestor).
pub fn warnings(policy: &Policy) -> Vec<Problem> {
    let mut found = Vec::new();
    let spec = FieldPath::root().key("spec");
    let health = &policy.health;
    // Without the replicas' say and without a write guard, a master the daemon cannot reach
    // but its clients can keeps taking writes for the whole partition; the replica promoted
    // meanwhile never sees them, and they are gone when the old master is fenced.
    if !health.confirm_with_replicas
        && health.write_guard.is_none()
        && health.failover != FailoverMode::Off
    {
        found.push(Problem {
            path: spec.key("health").key("confirmWithReplicas"),
            anchor: Anchor::Value,
            message: "with confirmWithReplicas: false and minReplicasToWrite: 0, a master cut \
                      off from the daemon but not from its clients keeps accepting writes for \
                      the whole partition, and every one of them is lost when a replica is \
                      promoted; set minReplicasToWrite: 1 (the master then stops writing once \
                      it loses its replicas) or confirmWithReplicas: true"
                .to_owned(),
        });
    }
    if let (Target::Endpoints(_), Some(_)) = (&policy.target, &policy.scaling) {
        found.push(Problem {
            path: spec.key("scaling"),
            anchor: Anchor::Key,
            message: "an `endpoints` target is observe-only: the daemon cannot add or remove \
                      its instances, so every scaling decision is recorded as advice \
                      (actions_total outcome=\"advice\"), never applied"
                .to_owned(),
        });
    }
    // A forecast that only learns from its own samples knows nothing for a period after
    // every restart, rollout or leader change.
    let metrics = policy.scaling.iter().flat_map(|s| s.metrics.iter().enumerate());
    for (i, metric) in metrics {
        if metric.seasonal.as_ref().is_some_and(|s| s.history.is_none()) {
            found.push(Problem {
                path: spec.key("scaling").key("metrics").index(i).key("seasonal"),
                anchor: Anchor::Key,
                message: "without `history` (a PromQL query for the same total), the forecast \
                          learns from the daemon's own samples and forgets on every restart: \
                          it forecasts nothing for a day after each one"
                    .to_owned(),
            });
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;
    use crate::policy::load_policy_str;

    const HEAD: &str = "apiVersion: autopilot.redis.io/v1alpha1\nkind: RedisPolicy\n\
                        metadata: {name: t}\nspec:\n";
    const SCALING: &str = "  scaling: {minReplicas: 1, maxReplicas: 3, metrics: [{redis: \
                           connected_clients, target: 10}]}\n";

    fn paths(body: &str) -> Vec<String> {
        let policy = load_policy_str("t.yaml", &format!("{HEAD}{body}")).expect("valid");
        warnings(&policy).into_iter().map(|w| w.path.to_string()).collect()
    }

    #[rstest]
    #[case::defaults("  target: {kubernetes: {namespace: n, statefulSet: s}}\n", &[])]
    #[case::unconfirmed_unguarded(
        "  target: {kubernetes: {namespace: n, statefulSet: s}}\n  health: {confirmWithReplicas: false}\n",
        &["spec.health.confirmWithReplicas"]
    )]
    #[case::unconfirmed_guarded(
        "  target: {kubernetes: {namespace: n, statefulSet: s}}\n  health: {confirmWithReplicas: false, minReplicasToWrite: 1}\n",
        &[]
    )]
    #[case::unconfirmed_no_failover(
        "  target: {kubernetes: {namespace: n, statefulSet: s}}\n  health: {confirmWithReplicas: false, failover: 'off'}\n",
        &[]
    )]
    #[case::endpoints_observed("  target: {endpoints: ['a:1']}\n", &[])]
    #[case::endpoints_scaled(&format!("  target: {{endpoints: ['a:1']}}\n{SCALING}"), &["spec.scaling"])]
    #[case::statefulset_scaled(&format!("  target: {{kubernetes: {{namespace: n, statefulSet: s}}}}\n{SCALING}"), &[])]
    // A StatefulSet's restore tests run in the verifier StatefulSet deploy/ ships: nothing
    // to warn about.
    #[case::statefulset_restore_tests(
        "  target: {kubernetes: {namespace: n, statefulSet: s}}\n  snapshots: {schedule: '0 0 3 * * *', destination: 'file:///b', verify: {schedule: '0 0 4 * * *'}}\n",
        &[]
    )]
    #[case::local_restore_tests(
        "  target: {local: {basePort: 7000, dataDir: /tmp/d}}\n  snapshots: {schedule: '0 0 3 * * *', destination: 'file:///b', verify: {schedule: '0 0 4 * * *'}}\n",
        &[]
    )]
    #[case::seasonal_without_history(
        "  target: {kubernetes: {namespace: n, statefulSet: s}}\n  scaling: {minReplicas: 1, maxReplicas: 3, metrics: [{redis: x, target: 10, seasonal: {}}]}\n",
        &["spec.scaling.metrics[0].seasonal"]
    )]
    #[case::seasonal_with_history(
        "  target: {kubernetes: {namespace: n, statefulSet: s}}\n  prometheus: {url: 'http://p:9090'}\n  scaling: {minReplicas: 1, maxReplicas: 3, metrics: [{redis: x, target: 10, seasonal: {history: 'sum(x)'}}]}\n",
        &[]
    )]
    fn risky_combinations_are_warned(#[case] body: &str, #[case] expected: &[&str]) {
        assert_eq!(paths(body), expected);
    }
}
