//! Two policies that act on the same instances fight: each scales, fails over and fences by
//! its own view, undoing the other's. [`overlap`] says whether two validated policies share
//! a target, and [`refusal`] is the one problem both `check` and the daemon report for it:
//! `check` refuses a set of policies where any two do, the daemon refuses to start on one
//! and, on reload, refuses to run a policy that overlaps one already running.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Component, Path, PathBuf};

use super::source_map::{Anchor, FieldPath};
use super::{Diagnostic, Loaded, Policy, Target};
use crate::model::Endpoint;

/// The problem with `later` when it acts on the instances `earlier` acts on, positioned at
/// `later`'s `spec.target` and naming `earlier`'s policy and file; `None` when they do not
/// overlap.
pub fn refusal(earlier: &Loaded, later: &Loaded) -> Option<Diagnostic> {
    let why = overlap(&earlier.policy, &later.policy)?;
    let message = format!(
        "overlaps policy `{}` ({}): {why}; two policies on one target undo each other's \
         scaling and failovers",
        earlier.policy.name, earlier.file
    );
    let target = FieldPath::root().key("spec").key("target");
    Some(later.diagnostic(&target, Anchor::Key, &message))
}

/// Why `a` and `b` act on the same instances, or `None` when they cannot:
///
/// - the same `host:port` in both `endpoints:` lists (hosts compared without case);
/// - the same StatefulSet (namespace and name);
/// - two local fleets whose port ranges `basePort ..= basePort + maxReplicas - 1` meet, or
///   whose `dataDir`s are the same directory or one inside the other (compared as written,
///   `.` and `..` resolved, relative to the daemon's directory);
/// - an endpoint on this host's loopback inside a local fleet's port range;
/// - one's restore tests loading into the other's StatefulSet (`verify.verifier`): a test
///   scales its verifier to one pod and loads a snapshot over it.
pub fn overlap(a: &Policy, b: &Policy) -> Option<String> {
    if let Some(why) = verifier_on(a, b).or_else(|| verifier_on(b, a)) {
        return Some(why);
    }
    match (&a.target, &b.target) {
        (Target::Endpoints(left), Target::Endpoints(right)) => {
            let shared =
                left.iter().find(|l| right.iter().any(|r| l.id.eq_ignore_ascii_case(&r.id)))?;
            Some(format!("both list the endpoint `{}`", shared.id))
        }
        (
            Target::Kubernetes { namespace: ns_a, stateful_set: set_a, .. },
            Target::Kubernetes { namespace: ns_b, stateful_set: set_b, .. },
        ) => (ns_a == ns_b && set_a == set_b)
            .then(|| format!("both target the StatefulSet {ns_a}/{set_a}")),
        (Target::Local { data_dir: dir_a, .. }, Target::Local { data_dir: dir_b, .. }) => {
            let (ports_a, ports_b) = (local_ports(a)?, local_ports(b)?);
            if ports_a.0 <= ports_b.1 && ports_b.0 <= ports_a.1 {
                return Some(format!(
                    "their local fleets' ports meet ({}..={} and {}..={})",
                    ports_a.0, ports_a.1, ports_b.0, ports_b.1
                ));
            }
            let (norm_a, norm_b) = (normalize(Path::new(dir_a)), normalize(Path::new(dir_b)));
            if norm_a.starts_with(&norm_b) || norm_b.starts_with(&norm_a) {
                return Some(format!(
                    "their local fleets' data directories `{dir_a}` and `{dir_b}` are the same \
                     or nested"
                ));
            }
            None
        }
        (Target::Endpoints(endpoints), Target::Local { .. }) => endpoint_in_fleet(endpoints, b),
        (Target::Local { .. }, Target::Endpoints(endpoints)) => endpoint_in_fleet(endpoints, a),
        _ => None,
    }
}

/// Whether `tester`'s restore tests would load into the StatefulSet `fleet` runs. A verifier
/// without a namespace is in the daemon's, which `check` cannot know: the daemon's own check
/// refuses that one when it names a fleet of this policy's.
fn verifier_on(tester: &Policy, fleet: &Policy) -> Option<String> {
    let verifier = &tester.snapshots.as_ref()?.verify.as_ref()?.verifier;
    let Target::Kubernetes { namespace, stateful_set, .. } = &fleet.target else { return None };
    (verifier.name == *stateful_set && verifier.namespace.as_ref() == Some(namespace)).then(|| {
        format!(
            "policy `{}` names the StatefulSet {namespace}/{stateful_set} as the verifier its \
             restore tests scale and load a snapshot into, and policy `{}` runs its Redis there",
            tester.name, fleet.name
        )
    })
}

/// The ports a local fleet may listen on: one instance without `scaling`, else up to
/// `maxReplicas`.
fn local_ports(policy: &Policy) -> Option<(u32, u32)> {
    let Target::Local { base_port, .. } = &policy.target else { return None };
    let count = policy.scaling.as_ref().map_or(1, |s| s.max_replicas.max(1));
    let first = u32::from(*base_port);
    Some((first, first + u32::from(count) - 1))
}

fn endpoint_in_fleet(endpoints: &[Endpoint], fleet: &Policy) -> Option<String> {
    let (first, last) = local_ports(fleet)?;
    endpoints
        .iter()
        .find(|Endpoint { host, port, .. }| {
            let loopback = host.eq_ignore_ascii_case("localhost")
                || host.parse::<IpAddr>().is_ok_and(|ip| {
                    ip.is_loopback()
                        || ip == IpAddr::V4(Ipv4Addr::UNSPECIFIED)
                        || ip == IpAddr::V6(Ipv6Addr::UNSPECIFIED)
                });
            loopback && (first..=last).contains(&u32::from(*port))
        })
        .map(|endpoint| {
            let id = &endpoint.id;
            format!("the endpoint `{id}` is a port of the local fleet ({first}..={last})")
        })
}

/// `path` with `.` dropped and `..` applied, without touching the file system (the
/// directories may not exist yet when `check` runs).
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;
    use crate::policy::load_policy_str;

    fn policy(name: &str, target: &str, max: Option<u16>) -> Policy {
        let scaling = max.map_or(String::new(), |max| {
            format!(
                "  scaling:\n    minReplicas: 1\n    maxReplicas: {max}\n    metrics: \
                 [{{redis: connected_clients, target: 10}}]\n"
            )
        });
        let text = format!(
            "apiVersion: autopilot.redis.io/v1alpha1\nkind: RedisPolicy\nmetadata: {{name: \
             {name}}}\nspec:\n  target: {target}\n{scaling}"
        );
        load_policy_str("t.yaml", &text).unwrap_or_else(|d| panic!("{target}: {d:?}"))
    }

    /// A restore test's verifier that is another policy's StatefulSet: refused either way
    /// round, naming both; the same name in another namespace is not.
    #[test]
    fn a_verifier_on_another_policys_statefulset_overlaps() {
        let tester = |namespace: &str| {
            let text = format!(
                "apiVersion: autopilot.redis.io/v1alpha1\nkind: RedisPolicy\nmetadata: {{name: \
                 tester}}\nspec:\n  target: {{kubernetes: {{namespace: cache, statefulSet: \
                 mine}}}}\n  snapshots:\n    schedule: '0 0 3 * * *'\n    destination: \
                 'file:///b'\n    verify:\n      schedule: '0 0 4 * * *'\n      verifier: \
                 {{namespace: {namespace}, name: theirs}}\n"
            );
            load_policy_str("t.yaml", &text).unwrap_or_else(|d| panic!("{d:?}"))
        };
        let fleet = policy("fleet", "{kubernetes: {namespace: cache, statefulSet: theirs}}", None);
        for found in [overlap(&tester("cache"), &fleet), overlap(&fleet, &tester("cache"))] {
            let found = found.expect("an overlap");
            assert!(
                found.contains("StatefulSet cache/theirs")
                    && found.contains("`tester`")
                    && found.contains("`fleet`"),
                "{found}"
            );
        }
        assert_eq!(overlap(&tester("elsewhere"), &fleet), None);
    }

    #[rstest]
    #[case::same_endpoint(
        "{endpoints: ['a:1', 'b:1']}",
        None,
        "{endpoints: ['B:1']}",
        None,
        Some("endpoint `b:1`")
    )]
    #[case::other_endpoints("{endpoints: ['a:1']}", None, "{endpoints: ['a:2']}", None, None)]
    #[case::same_statefulset(
        "{kubernetes: {namespace: n, statefulSet: s}}",
        None,
        "{kubernetes: {namespace: n, statefulSet: s, port: 7000}}",
        None,
        Some("StatefulSet n/s")
    )]
    #[case::other_namespace(
        "{kubernetes: {namespace: n, statefulSet: s}}",
        None,
        "{kubernetes: {namespace: m, statefulSet: s}}",
        None,
        None
    )]
    #[case::ports_meet(
        "{local: {basePort: 7000, dataDir: a}}",
        Some(5),
        "{local: {basePort: 7004, dataDir: b}}",
        None,
        Some("ports meet")
    )]
    #[case::ports_apart(
        "{local: {basePort: 7000, dataDir: a}}",
        Some(5),
        "{local: {basePort: 7005, dataDir: b}}",
        Some(3),
        None
    )]
    #[case::same_dir(
        "{local: {basePort: 7000, dataDir: ./data/x}}",
        None,
        "{local: {basePort: 8000, dataDir: data/x/}}",
        None,
        Some("same or nested")
    )]
    #[case::nested_dir(
        "{local: {basePort: 7000, dataDir: /srv/redis}}",
        None,
        "{local: {basePort: 8000, dataDir: /srv/redis/../redis/b}}",
        None,
        Some("same or nested")
    )]
    #[case::sibling_dirs(
        "{local: {basePort: 7000, dataDir: /srv/redis}}",
        None,
        "{local: {basePort: 8000, dataDir: /srv/redis-b}}",
        None,
        None
    )]
    #[case::endpoint_in_fleet(
        "{local: {basePort: 7000, dataDir: a}}",
        Some(3),
        "{endpoints: ['127.0.0.1:7002']}",
        None,
        Some("a port of the local fleet")
    )]
    #[case::endpoint_beside_fleet(
        "{local: {basePort: 7000, dataDir: a}}",
        Some(3),
        "{endpoints: ['127.0.0.1:7003']}",
        None,
        None
    )]
    #[case::kinds_differ(
        "{kubernetes: {namespace: n, statefulSet: s}}",
        None,
        "{endpoints: ['s.n:6379']}",
        None,
        None
    )]
    fn overlapping_targets(
        #[case] a: &str,
        #[case] max_a: Option<u16>,
        #[case] b: &str,
        #[case] max_b: Option<u16>,
        #[case] expected: Option<&str>,
    ) {
        let (a, b) = (policy("a", a, max_a), policy("b", b, max_b));
        for found in [overlap(&a, &b), overlap(&b, &a)] {
            match (found, expected) {
                (None, None) => {}
                (Some(found), Some(expected)) => {
                    assert!(found.to_lowercase().contains(&expected.to_lowercase()), "{found}");
                }
                (found, expected) => panic!("{found:?}, expected {expected:?}"),
            }
        }
    }
}
