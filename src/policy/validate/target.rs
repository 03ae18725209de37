//! `spec.target`: exactly one of a StatefulSet (`kubernetes`), a fixed list of `endpoints`,
//! or a `local` fleet. Endpoints are parsed here, once, into [`Endpoint`]s that the sampler
//! and the cluster take as they are.

use std::collections::HashMap;

use super::checker::{Checker, report_conflicts};
use crate::model::Endpoint;
use crate::policy::Target;
use crate::policy::source_map::FieldPath;
use crate::policy::spec::{KubernetesSpec, LocalSpec, TargetSpec};

pub(super) fn check_target(
    c: &mut Checker,
    target: &TargetSpec,
    path: &FieldPath,
) -> Option<Target> {
    match (&target.kubernetes, &target.endpoints, &target.local) {
        (Some(kubernetes), None, None) => check_kubernetes(c, kubernetes, &path.key("kubernetes")),
        (None, Some(endpoints), None) => check_endpoints(c, endpoints, &path.key("endpoints")),
        (None, None, Some(local)) => check_local(c, local, &path.key("local")),
        (None, None, None) => {
            c.bad(path, "needs exactly one of `kubernetes`, `endpoints` or `local`");
            None
        }
        (kubernetes, endpoints, local) => {
            let set = [
                ("kubernetes", kubernetes.is_some()),
                ("endpoints", endpoints.is_some()),
                ("local", local.is_some()),
            ];
            report_conflicts(
                c,
                path,
                &set,
                "a target is one of `kubernetes`, `endpoints` or `local`",
            );
            None
        }
    }
}

fn check_kubernetes(c: &mut Checker, spec: &KubernetesSpec, path: &FieldPath) -> Option<Target> {
    let namespace = c.required(spec.namespace.as_ref(), &path.key("namespace")).and_then(|ns| {
        c.check(dns_label(ns), &path.key("namespace"))?;
        Some(ns.clone())
    });
    let stateful_set =
        c.required(spec.stateful_set.as_ref(), &path.key("statefulSet")).and_then(|name| {
            c.check(dns_subdomain(name), &path.key("statefulSet"))?;
            Some(name.clone())
        });
    let port = c.int(spec.port, &path.key("port"), Some(6379_u16), 1, 65535);
    Some(Target::Kubernetes { namespace: namespace?, stateful_set: stateful_set?, port: port? })
}

fn check_endpoints(c: &mut Checker, endpoints: &[String], path: &FieldPath) -> Option<Target> {
    if endpoints.is_empty() {
        c.bad(path, "needs at least one `host:port`");
        return None;
    }
    let mut seen: HashMap<&str, usize> = HashMap::new();
    let mut parsed = Some(Vec::with_capacity(endpoints.len()));
    for (i, text) in endpoints.iter().enumerate() {
        let item = path.index(i);
        match host_port(text) {
            Err(message) => {
                c.bad(&item, message);
                parsed = None;
            }
            Ok(_) if seen.contains_key(text.as_str()) => {
                let first = seen[text.as_str()];
                c.bad(&item, format!("`{text}` is listed twice (also at index {first})"));
                parsed = None;
            }
            Ok(endpoint) => {
                seen.insert(text, i);
                if let Some(list) = parsed.as_mut() {
                    list.push(endpoint);
                }
            }
        }
    }
    parsed.map(Target::Endpoints)
}

fn check_local(c: &mut Checker, spec: &LocalSpec, path: &FieldPath) -> Option<Target> {
    let redis_server = match &spec.redis_server {
        Some(server) if server.trim().is_empty() => {
            c.bad(&path.key("redisServer"), "must name a redis-server executable");
            None
        }
        Some(server) => Some(server.clone()),
        None => Some("redis-server".to_owned()),
    };
    let base_port = c.int(spec.base_port, &path.key("basePort"), Some(7000_u16), 1, 65535);
    let data_dir = c.required(spec.data_dir.as_ref(), &path.key("dataDir")).and_then(|dir| {
        if dir.trim().is_empty() {
            c.bad(&path.key("dataDir"), "must be a directory path");
            return None;
        }
        Some(dir.clone())
    });
    Some(Target::Local { redis_server: redis_server?, base_port: base_port?, data_dir: data_dir? })
}

/// A Kubernetes name that must be a DNS-1123 label: `session-cache`.
pub(super) fn dns_label(name: &str) -> Result<(), String> {
    let valid_chars =
        name.chars().all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '-');
    let valid_ends = name.starts_with(|ch: char| ch.is_ascii_alphanumeric())
        && name.ends_with(|ch: char| ch.is_ascii_alphanumeric());
    if valid_chars && valid_ends && name.len() <= 63 {
        Ok(())
    } else {
        Err(format!(
            "must be a DNS-1123 label (at most 63 of a-z, 0-9 and `-`, starting and ending \
             with a letter or digit), found `{name}`"
        ))
    }
}

/// A Kubernetes object name that must be a DNS-1123 subdomain: labels joined by dots.
pub(super) fn dns_subdomain(name: &str) -> Result<(), String> {
    if name.len() <= 253 && name.split('.').all(|label| dns_label(label).is_ok()) {
        Ok(())
    } else {
        Err(format!(
            "must be a DNS-1123 subdomain (lowercase letters, digits, `-` and `.`), found `{name}`"
        ))
    }
}

/// `host:port`, with IPv6 hosts in brackets (`[::1]:6379`), as the [`Endpoint`] it names:
/// its id is the text as written, its host without the brackets.
fn host_port(endpoint: &str) -> Result<Endpoint, String> {
    let bad = || format!("expected `host:port` like `redis-1:6379`, found `{endpoint}`");
    let (host, port) = endpoint.rsplit_once(':').ok_or_else(bad)?;
    let host = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(v6) if v6.parse::<std::net::Ipv6Addr>().is_ok() => v6,
        Some(_) => return Err(bad()),
        None if !host.is_empty() && !host.contains(|ch: char| ch == ':' || ch.is_whitespace()) => {
            host
        }
        None => return Err(bad()),
    };
    match port.parse::<u16>() {
        Ok(port) if port > 0 => {
            Ok(Endpoint { id: endpoint.to_owned(), host: host.to_owned(), port })
        }
        _ => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;
    use crate::policy::load_policy_str;
    use crate::policy::validate::testing::*;

    #[rstest]
    #[case::target_missing(
        &format!("{HEAD}  sampling: {{interval: 10s}}\n"),
        "spec.target", 5, 3, "missing required field `target`"
    )]
    #[case::target_empty(
        &format!("{HEAD}  target: {{}}\n"),
        "spec.target", 5, 11, "needs exactly one of `kubernetes`, `endpoints` or `local`"
    )]
    #[case::two_targets(
        &format!("{HEAD}  target:\n    endpoints: ['a:1']\n    local: {{dataDir: ./d}}\n"),
        "spec.target.local", 7, 5, "`endpoints` is already set"
    )]
    #[case::endpoint_port_out_of_range(
        &format!("{HEAD}  target: {{endpoints: ['a:1', 'b:70000']}}\n"),
        "spec.target.endpoints[1]", 5, 31, "expected `host:port`"
    )]
    #[case::endpoints_empty(
        &format!("{HEAD}  target: {{endpoints: []}}\n"),
        "spec.target.endpoints", 5, 23, "needs at least one `host:port`"
    )]
    #[case::namespace_missing(
        &format!("{HEAD}  target:\n    kubernetes: {{statefulSet: redis}}\n"),
        "spec.target.kubernetes.namespace", 6, 17, "missing required field `namespace`"
    )]
    #[case::stateful_set_uppercase(
        &format!("{HEAD}  target:\n    kubernetes: {{namespace: cache, statefulSet: Redis}}\n"),
        "spec.target.kubernetes.statefulSet", 6, 49, "must be a DNS-1123 subdomain"
    )]
    #[case::local_ports_beyond_65535(
        &format!("{HEAD}  target:\n    local: {{basePort: 65530, dataDir: ./d}}\n{}", scaling("")),
        "spec.target.local.basePort", 6, 23, "= 65539 is beyond port 65535"
    )]
    #[case::local_without_data_dir(
        &format!("{HEAD}  target:\n    local: {{basePort: 7000}}\n"),
        "spec.target.local.dataDir", 6, 12, "missing required field `dataDir`"
    )]
    fn a_document_level_problem_is_reported_at_its_field(
        #[case] text: &str,
        #[case] path: &str,
        #[case] line: usize,
        #[case] column: usize,
        #[case] message: &str,
    ) {
        assert_problem(text, path, line, column, message);
    }

    /// Validation parses each endpoint once: the sampler and the cluster take these as they
    /// are.
    #[test]
    fn endpoints_are_parsed_once_into_typed_endpoints() {
        let text = format!("{HEAD}  target: {{endpoints: [\"redis-1:6379\", \"[::1]:7000\"]}}\n");
        let policy = load_policy_str("t.yaml", &text).expect("valid");
        let endpoint = |id: &str, host: &str, port| Endpoint {
            id: id.to_owned(),
            host: host.to_owned(),
            port,
        };
        assert_eq!(
            policy.target,
            Target::Endpoints(vec![
                endpoint("redis-1:6379", "redis-1", 6379),
                endpoint("[::1]:7000", "::1", 7000)
            ])
        );
    }

    #[rstest]
    #[case::name("redis-1:6379", true)]
    #[case::ipv4("10.0.0.1:6379", true)]
    #[case::ipv6("[::1]:6379", true)]
    #[case::bare_ipv6("::1:6379", false)]
    #[case::no_port("redis-1", false)]
    #[case::port_zero("redis-1:0", false)]
    #[case::empty_host(":6379", false)]
    fn endpoints_are_host_and_port(#[case] endpoint: &str, #[case] valid: bool) {
        assert_eq!(host_port(endpoint).is_ok(), valid, "{endpoint}");
    }
}
