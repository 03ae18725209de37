//! Spec -> [`Policy`]: fills in defaults and checks every rule of the policy language,
//! collecting *all* problems (each with its field path) rather than stopping at the first.
//!
//! One file per section of the spec, each turning its part of the spec into its part of the
//! [`Policy`]: `target`, `connections` (`auth`, `tls`, `prometheus`), `sampling`,
//! `scaling`, `health`, `snapshots` and `alerts`. They all write to one
//! `checker::Checker`, which also holds the field rules several sections share. This file
//! checks the document's header, calls every section, applies the rules that span sections
//! (a local fleet's top port, the history's length, TLS on a local fleet), and assembles the
//! result.
//!
//! Each section is checked even when another one is broken, and a cross-field rule
//! (`maxReplicas >= minReplicas`) runs only when both sides are valid on their own, so one
//! mistake is reported once. Every helper that yields `None` has recorded a problem first;
//! that is what lets [`validate`] assemble a `Policy` exactly when the list is empty.

mod alerts;
mod checker;
mod connections;
mod health;
mod sampling;
mod scaling;
mod snapshots;
mod target;
#[cfg(test)]
mod testing;

pub use scaling::MAX_REPLICAS_LIMIT;

use self::alerts::check_alerts;
use self::checker::Checker;
use self::connections::{check_auth, check_prometheus, check_tls, first_promql_use};
use self::health::check_health;
use self::sampling::check_sampling;
use self::scaling::check_scaling;
use self::snapshots::check_snapshots;
use self::target::{check_target, dns_label};
use crate::policy::bounds;
use crate::policy::source_map::{Anchor, FieldPath};
use crate::policy::spec::{PolicyDocument, PolicySpec};
use crate::policy::{Policy, Target};

pub const API_VERSION: &str = "autopilot.redis.io/v1alpha1";
pub const KIND: &str = "RedisPolicy";
/// The annotation that pauses a policy like `spec.paused: true` (either pauses it): what a
/// tool sets without editing the spec, as `kubectl annotate` does.
pub const PAUSED_ANNOTATION: &str = "redis-autopilot.io/paused";

/// One rule a spec breaks.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    pub path: FieldPath,
    /// Which position of the field the problem points at.
    pub anchor: Anchor,
    pub message: String,
}

/// Converts a deserialized document into a policy, or returns every problem found.
pub fn validate(doc: &PolicyDocument) -> Result<Policy, Vec<Problem>> {
    let mut c = Checker::default();
    let root = FieldPath::root();

    c.exact(doc.api_version.as_deref(), &root.key("apiVersion"), API_VERSION);
    c.exact(doc.kind.as_deref(), &root.key("kind"), KIND);
    let name = c.required(doc.metadata.as_ref(), &root.key("metadata")).and_then(|metadata| {
        let path = root.key("metadata").key("name");
        let name = c.required(metadata.name.as_ref(), &path)?;
        c.check(dns_label(name), &path)?;
        Some(name.clone())
    });
    let annotated_pause = doc
        .metadata
        .as_ref()
        .and_then(|m| m.annotations.as_ref())
        .and_then(|annotations| annotations.get(PAUSED_ANNOTATION))
        .and_then(|value| {
            let path = root.key("metadata").key("annotations").key(PAUSED_ANNOTATION);
            match value.as_str() {
                "true" => Some(true),
                "false" => Some(false),
                _ => {
                    c.bad(&path, format!("`{value}`: expected \"true\" or \"false\""));
                    None
                }
            }
        });
    let path = root.key("spec");
    let Some(spec) = c.required(doc.spec.as_ref(), &path) else {
        return Err(c.problems);
    };
    let mut policy = check_spec(&mut c, spec, &path, name);
    if let Some(policy) = &mut policy {
        policy.paused |= annotated_pause.unwrap_or(false);
    }
    match policy {
        Some(policy) if c.problems.is_empty() => Ok(policy),
        _ => {
            debug_assert!(!c.problems.is_empty(), "a section failed without saying why");
            Err(c.problems)
        }
    }
}

fn check_spec(
    c: &mut Checker,
    spec: &PolicySpec,
    path: &FieldPath,
    name: Option<String>,
) -> Option<Policy> {
    let target = c
        .required(spec.target.as_ref(), &path.key("target"))
        .and_then(|target| check_target(c, target, &path.key("target")));
    let auth = match &spec.auth {
        Some(auth) => check_auth(c, auth, &path.key("auth")).map(Some),
        None => Some(None),
    };
    let tls = match &spec.tls {
        Some(tls) => check_tls(c, tls, &path.key("tls")).map(Some),
        None => Some(None),
    };
    let prometheus = match &spec.prometheus {
        Some(prometheus) => check_prometheus(c, prometheus, &path.key("prometheus")).map(Some),
        None => match first_promql_use(spec, &path.key("scaling").key("metrics")) {
            // Once, at the first: the fix is one section, not one per metric.
            Some(field) => {
                c.unexpected(&field, "needs spec.prometheus.url to evaluate PromQL");
                None
            }
            None => Some(None),
        },
    };
    let sampling = check_sampling(c, spec.sampling.as_ref(), &path.key("sampling"));
    let scaling = match &spec.scaling {
        Some(scaling) => {
            check_scaling(c, scaling, &path.key("scaling"), sampling.as_ref()).map(Some)
        }
        None => Some(None),
    };
    let health = check_health(c, spec.health.as_ref(), &path.key("health"));
    let snapshots = match &spec.snapshots {
        Some(snapshots) => check_snapshots(c, snapshots, &path.key("snapshots")).map(Some),
        None => Some(None),
    };
    let alerts = check_alerts(c, spec, &path.key("alerts"));

    // A local fleet listens on basePort, basePort + 1, ...: the top one must be a port.
    if let (Some(Target::Local { base_port, .. }), Some(Some(scaling))) = (&target, &scaling) {
        let top = u32::from(*base_port) + u32::from(scaling.max_replicas) - 1;
        if top > u32::from(u16::MAX) {
            c.bad(
                &path.key("target").key("local").key("basePort"),
                format!(
                    "basePort {base_port} + maxReplicas {} - 1 = {top} is beyond port 65535",
                    scaling.max_replicas
                ),
            );
        }
    }

    // The history holds the longest window's rounds: bounded, so it can be allocated.
    if let (Some(sampling), Some(Some(scaling))) = (&sampling, &scaling) {
        let scaling_path = path.key("scaling");
        let windows = scaling
            .metrics
            .iter()
            .enumerate()
            .map(|(i, m)| (scaling_path.key("metrics").index(i).key("window"), m.window))
            .chain(
                scaling
                    .forecast
                    .iter()
                    .map(|f| (scaling_path.key("forecast").key("window"), f.window)),
            );
        for (window_path, window) in windows {
            if let Some(problem) = bounds::history_problem(window, sampling.interval) {
                c.bad(&window_path, problem);
            }
        }
    }

    // A verifier is where a StatefulSet's restore tests load: local and endpoints targets
    // start a scratch redis-server child, and the fleet itself is never one (a test would
    // scale it to one pod and load a snapshot over its data).
    let verifier = spec.snapshots.as_ref().and_then(|s| s.verify.as_ref()?.verifier.as_ref());
    if let Some(written) = verifier {
        let at = path.key("snapshots").key("verify").key("verifier");
        match (&target, &snapshots) {
            (Some(Target::Kubernetes { namespace, stateful_set, .. }), Some(Some(snapshots))) => {
                let chosen = snapshots.verify.as_ref().map(|v| &v.verifier);
                if let Some(chosen) = chosen
                    && chosen.namespace.as_ref() == Some(namespace)
                    && chosen.name == *stateful_set
                {
                    let field = if written.name.is_some() { at.key("name") } else { at };
                    c.bad(
                        &field,
                        format!(
                            "names the target StatefulSet {namespace}/{stateful_set}: a restore \
                             test would scale the fleet itself and load a snapshot over it; \
                             name a StatefulSet of its own (deploy/base ships \
                             redis-autopilot-verifier)"
                        ),
                    );
                }
            }
            (Some(Target::Local { .. } | Target::Endpoints(_)), _) => c.unexpected(
                &at,
                "applies only to a `kubernetes` target: local and endpoints targets load a \
                 restore test into a scratch redis-server the daemon starts",
            ),
            _ => {}
        }
    }

    // The local fleet starts its instances without TLS: the daemon could never connect.
    if let (Some(Target::Local { .. }), Some(_)) = (&target, &spec.tls) {
        c.unexpected(
            &path.key("tls"),
            "the local fleet starts its instances without TLS; remove spec.tls, or target \
             endpoints or kubernetes",
        );
    }

    Some(Policy {
        name: name?,
        target: target?,
        auth: auth?,
        tls: tls?,
        prometheus: prometheus?,
        sampling: sampling?,
        scaling: scaling?,
        health: health?,
        snapshots: snapshots?,
        alerts: alerts?,
        paused: spec.paused.unwrap_or(false),
    })
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;
    use crate::policy::load_policy_str;
    use crate::policy::validate::checker::secs;
    use crate::policy::validate::testing::*;
    use crate::policy::{
        Aggregate, AlertAction, AlertRule, Behavior, Compression, CronFloor, CronSchedule,
        Destination, FailoverMode, Forecast, ForecastMethod, Health, Metric, MetricSource,
        PrometheusCredentials, PrometheusSource, RedisAuth, RedisTls, Retention, Sampling, Scaling,
        SecretSource, SnapshotSource, Snapshots, Statistic, Step, Store, TransferLimits,
        WriteGuard,
    };
    use std::time::Duration;

    #[rstest]
    #[case::api_version(
        "apiVersion: v1\nkind: RedisPolicy\nmetadata: {name: t}\nspec:\n  target: {endpoints: ['a:1']}\n",
        "apiVersion",
        1,
        13,
        "must be `autopilot.redis.io/v1alpha1`, found `v1`"
    )]
    #[case::kind_missing(
        "apiVersion: autopilot.redis.io/v1alpha1\nmetadata: {name: t}\nspec:\n  target: {endpoints: ['a:1']}\n",
        "kind",
        1,
        1,
        "missing required field `kind`"
    )]
    #[case::name_not_a_dns_label(
        "apiVersion: autopilot.redis.io/v1alpha1\nkind: RedisPolicy\nmetadata: {name: Session_Cache}\nspec:\n  target: {endpoints: ['a:1']}\n",
        "metadata.name",
        3,
        18,
        "must be a DNS-1123 label"
    )]
    #[case::spec_missing(
        "apiVersion: autopilot.redis.io/v1alpha1\nkind: RedisPolicy\nmetadata: {name: t}\n",
        "spec",
        1,
        1,
        "missing required field `spec`"
    )]
    #[case::unknown_field_with_hint(
        &format!("{HEAD}{TARGET}  scaling:\n    minReplicas: 1\n    maxReplica: 3\n"),
        "spec.scaling.maxReplica", 8, 5, "unknown field `maxReplica` (did you mean `maxReplicas`?), expected one of minReplicas, maxReplicas, metrics"
    )]
    #[case::duplicate_key(
        &format!("{HEAD}{TARGET}  sampling:\n    interval: 5s\n    interval: 10s\n"),
        "spec.sampling.interval", 8, 5, "duplicate key (first at 7:5"
    )]
    #[case::type_error(
        &format!("{HEAD}{TARGET}  scaling:\n    minReplicas: ten\n"),
        "spec.scaling.minReplicas", 7, 18, "expected a whole number, found `ten`"
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

    /// A full policy with every section, read into exactly the `Policy` it describes.
    #[test]
    fn a_full_policy_reads_as_written() {
        let text = r#"
apiVersion: autopilot.redis.io/v1alpha1
kind: RedisPolicy
metadata: {name: orders}
spec:
  target:
    kubernetes: {namespace: shop, statefulSet: redis-orders, port: 6380}
  auth: {username: autopilot, passwordEnv: REDIS_PASSWORD}
  tls: {caFile: /etc/redis/tls/ca.crt}
  prometheus:
    url: https://metrics.example.com/prometheus/
    basicAuth: {username: reader, passwordFile: /var/run/secrets/prometheus/password}
  sampling: {interval: 15s, timeout: 3s}
  scaling:
    minReplicas: 2
    maxReplicas: 6
    metrics:
      - {redis: used_cpu_sys, rate: true, aggregate: max, statistic: p90, window: 2m, target: 0.5}
      - {prometheus: 'sum(rate(orders_total[1m]))', statistic: last, target: 500}
    tolerance: 0.05
    warmup: 20s
    scaleUp: {stabilization: 15s, maxStep: 2, period: 30s, cooldown: 1m}
    scaleDown: {stabilization: 5m, maxStep: "25%", period: 1m, cooldown: 5m}
    schedule: [{cron: '0 0 9 * * Mon-Fri', minReplicas: 3, for: 8h}]
    forecast: {method: linear, window: 10m}
  health:
    downAfter: 3s
    confirmWithReplicas: false
    failover: manual
    maxFailoversPerHour: 1
    replicaMaxLag: 5s
    removeLaggingReplicas: true
    probeInterval: 100ms
    probeTimeout: 500ms
    minReplicasToWrite: 1
    minReplicasMaxLag: 5s
  snapshots:
    schedule: '0 0 2 * * *'
    source: replicaOrMaster
    destination: gs://orders-backups/redis/
    compression: none
    retention: {keepLast: 3, daily: 7, weekly: 4, monthly: 6}
    minBytesPerSecond: 1000
    throughputWindow: 2s
    deadline: 3h
    bootstrap: 20261124T023000.000Z-redis-0
  alerts:
    - {alertname: OrdersRedisSlow, action: {scaleUp: 1}}
  paused: true
"#;
        let cron = |line: &str| CronSchedule::parse(line).expect("cron");
        let expected = Policy {
            name: "orders".to_owned(),
            target: Target::Kubernetes {
                namespace: "shop".to_owned(),
                stateful_set: "redis-orders".to_owned(),
                port: 6380,
            },
            auth: Some(RedisAuth {
                username: Some("autopilot".to_owned()),
                password: SecretSource::Env("REDIS_PASSWORD".to_owned()),
            }),
            tls: Some(RedisTls { ca_file: Some("/etc/redis/tls/ca.crt".into()) }),
            prometheus: Some(PrometheusSource {
                url: "https://metrics.example.com/prometheus".to_owned(),
                credentials: Some(PrometheusCredentials::Basic {
                    username: "reader".to_owned(),
                    password: SecretSource::File("/var/run/secrets/prometheus/password".into()),
                }),
            }),
            sampling: Sampling { interval: secs(15), timeout: secs(3) },
            scaling: Some(Scaling {
                min_replicas: 2,
                max_replicas: 6,
                metrics: vec![
                    Metric {
                        source: MetricSource::Redis {
                            field: "used_cpu_sys".to_owned(),
                            rate: true,
                            plausible_max: None,
                        },
                        aggregate: Aggregate::Max,
                        statistic: Statistic::Percentile(90),
                        window: secs(120),
                        target: 0.5,
                        seasonal: None,
                        saturation: None,
                        bursts: None,
                    },
                    Metric {
                        source: MetricSource::Prometheus {
                            query: "sum(rate(orders_total[1m]))".to_owned(),
                        },
                        aggregate: Aggregate::Sum,
                        statistic: Statistic::Last,
                        window: secs(60),
                        target: 500.0,
                        seasonal: None,
                        saturation: None,
                        bursts: None,
                    },
                ],
                tolerance: 0.05,
                band: None,
                scale_up: Behavior {
                    stabilization: secs(15),
                    max_step: Step::Pods(2),
                    period: secs(30),
                    cooldown: secs(60),
                },
                scale_down: Behavior {
                    stabilization: secs(300),
                    max_step: Step::Percent(25),
                    period: secs(60),
                    cooldown: secs(300),
                },
                schedule: vec![CronFloor {
                    cron: cron("0 0 9 * * Mon-Fri"),
                    min_replicas: 3,
                    duration: secs(8 * 3600),
                }],
                forecast: Some(Forecast { method: ForecastMethod::Linear, window: secs(600) }),
                warmup: secs(20),
            }),
            health: Health {
                down_after: secs(3),
                confirm_with_replicas: false,
                failover: FailoverMode::Manual,
                max_failovers_per_hour: 1,
                replica_max_lag: secs(5),
                remove_lagging_replicas: true,
                probe_interval: Duration::from_millis(100),
                probe_timeout: Duration::from_millis(500),
                write_guard: Some(WriteGuard { min_replicas: 1, max_lag: secs(5) }),
            },
            snapshots: Some(Snapshots {
                schedule: cron("0 0 2 * * *"),
                source: SnapshotSource::ReplicaOrMaster,
                destination: Destination {
                    url: "gs://orders-backups/redis/".to_owned(),
                    store: Store::Gcs {
                        bucket: "orders-backups".to_owned(),
                        prefix: "redis".to_owned(),
                        service_account_key: None,
                    },
                },
                compression: Compression::None,
                retention: Retention { keep_last: 3, daily: 7, weekly: 4, monthly: 6 },
                before_actions: Vec::new(),
                limits: TransferLimits {
                    min_bytes_per_second: 1000,
                    throughput_window: secs(2),
                    deadline: secs(3 * 3600),
                },
                bootstrap: Some(crate::policy::Bootstrap::Snapshot(
                    "20261124T023000.000Z-redis-0".to_owned(),
                )),
                encryption: None,
                verify: None,
            }),
            alerts: vec![AlertRule {
                alert_name: "OrdersRedisSlow".to_owned(),
                action: AlertAction::ScaleUp(1),
            }],
            paused: true,
        };
        assert_eq!(load_policy_str("orders.yaml", text), Ok(expected));
    }

    #[test]
    fn every_problem_is_reported_not_just_the_first() {
        let text = format!(
            "{HEAD}{TARGET}  sampling: {{interval: 10}}\n{}",
            "  scaling:\n    minReplicas: 5\n    maxReplicas: 3\n    metrics: [{redis: x}]\n"
        );
        let paths: Vec<String> = problems_in(&text).into_iter().map(|d| d.path).collect();
        assert_eq!(
            paths,
            [
                "spec.sampling.interval",
                "spec.scaling.maxReplicas",
                "spec.scaling.metrics[0].target"
            ]
        );
    }

    #[test]
    fn omitted_fields_take_their_documented_defaults() {
        let text = format!(
            "{HEAD}{TARGET}{}    schedule: [{{cron: '0 0 8 * * *', minReplicas: 2, for: 1h}}]\n\
             \x20 snapshots: {{schedule: '0 0 3 * * *', destination: 'file:///backups'}}\n\
             \x20 prometheus: {{url: 'http://prometheus:9090'}}\n",
            scaling("      - {prometheus: 'sum(up)', statistic: ewma, window: 2m, target: 5}\n")
        );
        let policy = load_policy_str("t.yaml", &text).expect("valid");
        assert_eq!(policy.sampling, Sampling { interval: secs(10), timeout: secs(2) });
        let scaling = policy.scaling.expect("scaling");
        assert_eq!(scaling.tolerance, 0.1);
        assert_eq!(scaling.warmup, secs(30));
        assert_eq!(
            scaling.scale_up,
            Behavior {
                stabilization: Duration::ZERO,
                max_step: Step::Percent(100),
                period: secs(15),
                cooldown: Duration::ZERO
            }
        );
        assert_eq!(
            scaling.scale_down,
            Behavior {
                stabilization: secs(300),
                max_step: Step::Percent(100),
                period: secs(15),
                cooldown: Duration::ZERO
            }
        );
        assert_eq!(
            scaling.metrics[0],
            Metric {
                source: MetricSource::Redis {
                    field: "instantaneous_ops_per_sec".to_owned(),
                    rate: false,
                    plausible_max: Some(2_000_000.0),
                },
                aggregate: Aggregate::Mean,
                statistic: Statistic::Mean,
                window: secs(60),
                target: 100.0,
                seasonal: None,
                saturation: None,
                bursts: None,
            }
        );
        // A Prometheus metric sums by default; ewma's half-life defaults to window / 4.
        assert_eq!(scaling.metrics[1].aggregate, Aggregate::Sum);
        assert_eq!(scaling.metrics[1].statistic, Statistic::Ewma { half_life: secs(30) });
        assert_eq!(scaling.forecast, None);
        assert_eq!(
            policy.health,
            Health {
                down_after: secs(5),
                confirm_with_replicas: true,
                failover: FailoverMode::Auto,
                max_failovers_per_hour: 3,
                replica_max_lag: secs(10),
                remove_lagging_replicas: false,
                probe_interval: Duration::from_millis(250),
                probe_timeout: secs(1),
                write_guard: None,
            }
        );
        let snapshots = policy.snapshots.expect("snapshots");
        assert_eq!(snapshots.source, SnapshotSource::Replica);
        assert_eq!(snapshots.compression, Compression::Zstd { level: 3 });
        assert_eq!(
            snapshots.retention,
            Retention { keep_last: 7, daily: 0, weekly: 0, monthly: 0 }
        );
        assert_eq!(
            snapshots.limits,
            TransferLimits {
                min_bytes_per_second: 1024 * 1024,
                throughput_window: secs(60),
                deadline: secs(6 * 3600),
            }
        );
        assert!(policy.alerts.is_empty());
        // No AUTH, plain TCP, and Prometheus without credentials.
        assert_eq!((policy.auth, policy.tls), (None, None));
        assert_eq!(policy.prometheus.and_then(|prometheus| prometheus.credentials), None);
    }

    /// Issue 14: `redis-autopilot.io/paused: "true"` pauses like `spec.paused: true`; either
    /// one pauses; any other value is a problem at the annotation.
    #[test]
    fn the_paused_annotation_pauses_like_the_spec_field() {
        let annotated = |value: &str, spec: &str| {
            format!(
                "apiVersion: autopilot.redis.io/v1alpha1\nkind: RedisPolicy\nmetadata:\n  \
                 name: t\n  annotations: {{redis-autopilot.io/paused: '{value}'}}\nspec:\n{TARGET}{spec}"
            )
        };
        let paused = |text: &str| load_policy_str("t.yaml", text).map(|p| p.paused);
        assert_eq!(paused(&annotated("true", "")), Ok(true));
        assert_eq!(paused(&annotated("false", "")), Ok(false));
        assert_eq!(paused(&annotated("false", "  paused: true\n")), Ok(true));
        assert_problem(
            &annotated("yes", ""),
            "metadata.annotations.redis-autopilot.io/paused",
            5,
            44,
            "`yes`: expected \"true\" or \"false\"",
        );
    }

    #[test]
    fn tls_on_a_local_fleet_is_refused() {
        let text =
            format!("{HEAD}  target: {{local: {{dataDir: ./data}}}}\n  tls: {{caFile: /ca.crt}}\n");
        assert_problem(&text, "spec.tls", 6, 3, "the local fleet starts its instances without TLS");
    }

    #[test]
    fn the_local_demo_reads_as_written() {
        let text = include_str!("../../../policies/local-demo.yaml");
        let policy = load_policy_str("local-demo.yaml", text).expect("valid");
        assert_eq!(policy.name, "local-demo");
        assert_eq!(
            policy.target,
            Target::Local {
                redis_server: "redis-server".to_owned(),
                base_port: 7000,
                data_dir: "./data/local-demo".to_owned()
            }
        );
        assert_eq!(
            policy.sampling,
            Sampling { interval: secs(1), timeout: Duration::from_millis(500) }
        );
        let scaling = policy.scaling.expect("scaling");
        assert_eq!((scaling.min_replicas, scaling.max_replicas), (1, 6));
        assert_eq!(scaling.metrics[0].statistic, Statistic::Percentile(95));
        assert_eq!(scaling.metrics[0].window, secs(10));
        assert_eq!(scaling.scale_up.max_step, Step::Pods(2));
        assert_eq!(scaling.scale_down.stabilization, secs(20));
    }
}
