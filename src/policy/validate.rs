//! Spec -> [`Policy`]: fills in defaults and checks every rule of the policy language,
//! collecting *all* problems (each with its field path) rather than stopping at the first.
//!
//! Each section is checked even when another one is broken, and a cross-field rule
//! (`maxReplicas >= minReplicas`) runs only when both sides are valid on their own, so one
//! mistake is reported once. Every helper that yields `None` has recorded a problem first;
//! that is what lets [`validate`] assemble a `Policy` exactly when the list is empty.

use std::collections::HashMap;
use std::time::Duration;

use super::TransferLimits;
use super::bounds::{self, Bounds, SAMPLING_INTERVAL, SAMPLING_TIMEOUT, parse_duration, show};
use super::source_map::{Anchor, FieldPath};
use super::spec::{
    AlertActionSpec, AlertSpec, BehaviorSpec, CronFloorSpec, DestinationCredentialsSpec,
    ForecastSpec, HealthSpec, KubernetesSpec, LocalSpec, LoginSpec, MetricSpec, PolicyDocument,
    PolicySpec, PrometheusSpec, RetentionSpec, SamplingSpec, ScalingSpec, SnapshotsSpec, StepSpec,
    TargetSpec, TlsSpec,
};
use super::{
    Aggregate, AlertAction, AlertRule, AzureCredentials, BeforeAction, Behavior, Compression,
    CronFloor, CronSchedule, Destination, FailoverMode, Forecast, ForecastMethod, Health, Metric,
    MetricSource, Policy, PrometheusCredentials, PrometheusSource, RedisAuth, RedisTls, Retention,
    S3Credentials, Sampling, Scaling, SecretSource, SnapshotSource, Snapshots, Statistic, Step,
    Store, Target, WriteGuard,
};
use crate::model::Endpoint;

pub const API_VERSION: &str = "autopilot.redis.io/v1alpha1";
pub const KIND: &str = "RedisPolicy";

/// Replica counts above this are almost certainly a typo (and would not fit a StatefulSet
/// one operator can reason about).
pub const MAX_REPLICAS_LIMIT: i64 = 1000;

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
    let path = root.key("spec");
    let Some(spec) = c.required(doc.spec.as_ref(), &path) else {
        return Err(c.problems);
    };
    let policy = check_spec(&mut c, spec, &path, name);
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
        None => match first_promql_metric(spec) {
            // Once, at the first: the fix is one section, not one per metric.
            Some(index) => {
                let metric = path.key("scaling").key("metrics").index(index);
                c.unexpected(
                    &metric.key("prometheus"),
                    "needs spec.prometheus.url to evaluate PromQL",
                );
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
    })
}

fn check_target(c: &mut Checker, target: &TargetSpec, path: &FieldPath) -> Option<Target> {
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

/// For an exactly-one-of group with several members set: each member after the first is
/// reported at its own key, naming the one that was kept.
fn report_conflicts(c: &mut Checker, path: &FieldPath, set: &[(&str, bool)], rule: &str) {
    let mut present = set.iter().filter(|(_, is_set)| *is_set).map(|(name, _)| *name);
    let first = present.next().unwrap_or_default();
    for extra in present {
        c.unexpected(&path.key(extra), format!("{rule}; `{first}` is already set"));
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

fn check_auth(c: &mut Checker, spec: &LoginSpec, path: &FieldPath) -> Option<RedisAuth> {
    let username = match &spec.username {
        None => Some(None),
        // An ACL rule list is split on spaces, so no user name can hold one.
        Some(name) if name.is_empty() || name.contains(char::is_whitespace) => {
            c.bad(
                &path.key("username"),
                "must be a Redis ACL user name (not empty, no spaces); leave it out to \
                 authenticate as `default`",
            );
            None
        }
        Some(name) => Some(Some(name.clone())),
    };
    let password = check_password(c, spec, path);
    Some(RedisAuth { username: username?, password: password? })
}

fn check_tls(c: &mut Checker, spec: &TlsSpec, path: &FieldPath) -> Option<RedisTls> {
    let ca_file = match &spec.ca_file {
        None => Some(None),
        Some(file) => c.check(file_path(file), &path.key("caFile")).map(|()| Some(file.into())),
    };
    Some(RedisTls { ca_file: ca_file? })
}

fn check_prometheus(
    c: &mut Checker,
    spec: &PrometheusSpec,
    path: &FieldPath,
) -> Option<PrometheusSource> {
    let url_path = path.key("url");
    let url = c
        .required(spec.url.as_ref(), &url_path)
        .and_then(|url| prometheus_url(url).map_err(|message| c.bad(&url_path, message)).ok());
    let credentials = match (&spec.bearer_token_env, &spec.bearer_token_file, &spec.basic_auth) {
        (None, None, None) => Some(None),
        (Some(env), None, None) => c
            .check(env_name(env), &path.key("bearerTokenEnv"))
            .map(|()| Some(PrometheusCredentials::Bearer(SecretSource::Env(env.clone())))),
        (None, Some(file), None) => c
            .check(file_path(file), &path.key("bearerTokenFile"))
            .map(|()| Some(PrometheusCredentials::Bearer(SecretSource::File(file.into())))),
        (None, None, Some(basic)) => check_basic_auth(c, basic, &path.key("basicAuth")).map(Some),
        (env, file, basic) => {
            let set = [
                ("bearerTokenEnv", env.is_some()),
                ("bearerTokenFile", file.is_some()),
                ("basicAuth", basic.is_some()),
            ];
            report_conflicts(
                c,
                path,
                &set,
                "Prometheus credentials are one of `bearerTokenEnv`, `bearerTokenFile` or \
                 `basicAuth`",
            );
            None
        }
    };
    Some(PrometheusSource { url: url?, credentials: credentials? })
}

fn check_basic_auth(
    c: &mut Checker,
    spec: &LoginSpec,
    path: &FieldPath,
) -> Option<PrometheusCredentials> {
    let username_path = path.key("username");
    let username = c.required(spec.username.as_ref(), &username_path).and_then(|name| {
        // RFC 7617 sends `user:password`: the first colon ends the user.
        if name.is_empty() || name.contains(':') {
            c.bad(&username_path, "must be a user name (not empty, no `:`)");
            return None;
        }
        Some(name.clone())
    });
    let password = check_password(c, spec, path);
    Some(PrometheusCredentials::Basic { username: username?, password: password? })
}

/// Exactly one of `passwordEnv` or `passwordFile`.
fn check_password(c: &mut Checker, spec: &LoginSpec, path: &FieldPath) -> Option<SecretSource> {
    match (&spec.password_env, &spec.password_file) {
        (None, None) => {
            c.bad(
                path,
                "needs the password's source: exactly one of `passwordEnv` or `passwordFile`",
            );
            None
        }
        (Some(_), Some(_)) => {
            c.unexpected(
                &path.key("passwordFile"),
                "a password is read from one place; `passwordEnv` is already set",
            );
            None
        }
        (Some(env), None) => c
            .check(env_name(env), &path.key("passwordEnv"))
            .map(|()| SecretSource::Env(env.clone())),
        (None, Some(file)) => c
            .check(file_path(file), &path.key("passwordFile"))
            .map(|()| SecretSource::File(file.into())),
    }
}

/// The first metric whose source is a PromQL query (one with `redis` set too has its own
/// problem already).
fn first_promql_metric(spec: &PolicySpec) -> Option<usize> {
    let metrics = spec.scaling.as_ref()?.metrics.as_ref()?;
    metrics.iter().position(|metric| metric.prometheus.is_some() && metric.redis.is_none())
}

fn check_sampling(
    c: &mut Checker,
    spec: Option<&SamplingSpec>,
    path: &FieldPath,
) -> Option<Sampling> {
    let default = SamplingSpec::default();
    let spec = spec.unwrap_or(&default);
    let interval = c.duration(
        spec.interval.as_deref(),
        &path.key("interval"),
        Some(secs(10)),
        SAMPLING_INTERVAL,
    );
    let timeout =
        c.duration(spec.timeout.as_deref(), &path.key("timeout"), Some(secs(2)), SAMPLING_TIMEOUT);
    let (interval, timeout) = (interval?, timeout?);
    if timeout >= interval {
        c.bad(
            &path.key("timeout"),
            format!(
                "must be shorter than sampling.interval ({}), found {}",
                show(interval),
                show(timeout)
            ),
        );
        return None;
    }
    Some(Sampling { interval, timeout })
}

fn check_scaling(
    c: &mut Checker,
    spec: &ScalingSpec,
    path: &FieldPath,
    sampling: Option<&Sampling>,
) -> Option<Scaling> {
    let interval = sampling.map(|s| s.interval);
    let min_path = path.key("minReplicas");
    let max_path = path.key("maxReplicas");
    let min: Option<u16> = c
        .required(spec.min_replicas.as_ref(), &min_path)
        .and_then(|&min| c.int(Some(min), &min_path, None, 1, MAX_REPLICAS_LIMIT));
    let mut max: Option<u16> = c
        .required(spec.max_replicas.as_ref(), &max_path)
        .and_then(|&max| c.int(Some(max), &max_path, None, 1, MAX_REPLICAS_LIMIT));
    if let (Some(min), Some(found)) = (min, max)
        && found < min
    {
        c.bad(&max_path, format!("must be >= minReplicas ({min}), found {found}"));
        max = None;
    }

    let metrics_path = path.key("metrics");
    let metrics = c.required(spec.metrics.as_ref(), &metrics_path).and_then(|metrics| {
        if metrics.is_empty() {
            c.bad(&metrics_path, "needs at least one metric");
            return None;
        }
        let checked: Vec<Option<Metric>> = metrics
            .iter()
            .enumerate()
            .map(|(i, metric)| check_metric(c, metric, &metrics_path.index(i), interval))
            .collect();
        checked.into_iter().collect::<Option<Vec<_>>>()
    });

    let tolerance = match spec.tolerance {
        None => Some(0.1),
        Some(t) if t.is_finite() && (0.0..1.0).contains(&t) => Some(t),
        Some(t) => {
            c.bad(&path.key("tolerance"), format!("must be >= 0 and < 1, found {t}"));
            None
        }
    };
    let warmup =
        c.duration(spec.warmup.as_deref(), &path.key("warmup"), Some(secs(30)), bounds::WARMUP);
    let scale_up = check_behavior(
        c,
        spec.scale_up.as_ref(),
        &path.key("scaleUp"),
        Behavior {
            stabilization: Duration::ZERO,
            max_step: Step::Percent(100),
            period: secs(15),
            cooldown: Duration::ZERO,
        },
    );
    let scale_down = check_behavior(
        c,
        spec.scale_down.as_ref(),
        &path.key("scaleDown"),
        Behavior {
            stabilization: secs(300),
            max_step: Step::Percent(100),
            period: secs(15),
            cooldown: Duration::ZERO,
        },
    );
    let schedule = match &spec.schedule {
        None => Some(Vec::new()),
        Some(floors) => {
            let checked: Vec<Option<CronFloor>> = floors
                .iter()
                .enumerate()
                .map(|(i, floor)| check_floor(c, floor, &path.key("schedule").index(i), max))
                .collect();
            checked.into_iter().collect::<Option<Vec<_>>>()
        }
    };
    let forecast = match &spec.forecast {
        None => Some(None),
        Some(forecast) => check_forecast(c, forecast, &path.key("forecast"), interval).map(Some),
    };

    Some(Scaling {
        min_replicas: min?,
        max_replicas: max?,
        metrics: metrics?,
        tolerance: tolerance?,
        scale_up: scale_up?,
        scale_down: scale_down?,
        schedule: schedule?,
        forecast: forecast?,
        warmup: warmup?,
    })
}

fn check_metric(
    c: &mut Checker,
    spec: &MetricSpec,
    path: &FieldPath,
    interval: Option<Duration>,
) -> Option<Metric> {
    let source = match (&spec.redis, &spec.prometheus) {
        (None, None) => {
            c.bad(path, "needs a source: `redis: INFO_FIELD` or `prometheus: QUERY`");
            None
        }
        (Some(_), Some(_)) => {
            c.unexpected(
                &path.key("prometheus"),
                "a metric has one source; `redis` is already set",
            );
            None
        }
        (Some(field), None) => {
            let valid = !field.is_empty()
                && field.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '_');
            if valid {
                let rate = spec.rate.unwrap_or(false);
                let plausible_max =
                    spec.plausible_max.or_else(|| bounds::default_plausible_max(field, rate));
                Some(MetricSource::Redis { field: field.clone(), rate, plausible_max })
            } else {
                c.bad(
                    &path.key("redis"),
                    format!(
                        "must be a field of Redis INFO like `instantaneous_ops_per_sec` \
                         (letters, digits, `_`), found `{field}`"
                    ),
                );
                None
            }
        }
        (None, Some(query)) => {
            if spec.rate.is_some() {
                c.unexpected(
                    &path.key("rate"),
                    "applies to `redis` metrics only; a PromQL query takes rate() itself",
                );
                None
            } else if spec.plausible_max.is_some() {
                c.unexpected(
                    &path.key("plausibleMax"),
                    "applies to `redis` metrics only (one instance's reading); bound a PromQL \
                     query in the query itself (clamp_max)",
                );
                None
            } else if query.trim().is_empty() {
                c.bad(&path.key("prometheus"), "must be a PromQL query");
                None
            } else {
                Some(MetricSource::Prometheus { query: query.clone() })
            }
        }
    };
    // A Prometheus query usually sums the whole deployment already; a Redis field is per
    // instance, and the mean load per replica is what a per-replica target compares with.
    let default_aggregate = if spec.prometheus.is_some() && spec.redis.is_none() {
        Aggregate::Sum
    } else {
        Aggregate::Mean
    };
    let aggregate = c.word(
        spec.aggregate.as_deref(),
        &path.key("aggregate"),
        default_aggregate,
        &[("mean", Aggregate::Mean), ("max", Aggregate::Max), ("sum", Aggregate::Sum)],
    );
    let window_path = path.key("window");
    let window = c
        .duration(spec.window.as_deref(), &window_path, Some(secs(60)), bounds::METRIC_WINDOW)
        .and_then(|window| c.at_least_intervals(window, &window_path, interval, 1));
    let statistic = check_statistic(c, spec, path, window);
    let target = c.required(spec.target.as_ref(), &path.key("target")).and_then(|&target| {
        if target.is_finite() && target > 0.0 {
            Some(target)
        } else {
            c.bad(
                &path.key("target"),
                format!("must be a finite number greater than 0, found {target}"),
            );
            None
        }
    });
    let source = source.and_then(|source| check_plausible_max(c, spec, path, source, target));
    Some(Metric {
        source: source?,
        aggregate: aggregate?,
        statistic: statistic?,
        window: window?,
        target: target?,
    })
}

/// `plausibleMax`: a finite number above the target. At or below the target, honest load
/// could never reach the target, so the metric could never scale up: a mistake, whether the
/// policy wrote the number or the field's default is too low for this deployment.
fn check_plausible_max(
    c: &mut Checker,
    spec: &MetricSpec,
    path: &FieldPath,
    source: MetricSource,
    target: Option<f64>,
) -> Option<MetricSource> {
    let MetricSource::Redis { field, plausible_max: Some(max), .. } = &source else {
        return Some(source);
    };
    let max_path = path.key("plausibleMax");
    if !(max.is_finite() && *max > 0.0) {
        c.bad(&max_path, format!("must be a finite number greater than 0, found {max}"));
        return None;
    }
    match target {
        Some(target) if *max <= target => {
            let (at, message) = if spec.plausible_max.is_some() {
                let message = format!(
                    "must be above the target ({target}): a reading above it is left out as \
                     implausible, so the metric could never reach its target, found {max}"
                );
                (max_path, message)
            } else {
                // No `plausibleMax` in the file: said at the target it is too low for.
                let message = format!(
                    "the default plausible maximum of `{field}` per instance is {max}, not \
                     above the target ({target}): set plausibleMax above the target if one \
                     instance really carries that much"
                );
                (path.key("target"), message)
            };
            c.bad(&at, message);
            None
        }
        _ => Some(source),
    }
}

fn check_statistic(
    c: &mut Checker,
    spec: &MetricSpec,
    path: &FieldPath,
    window: Option<Duration>,
) -> Option<Statistic> {
    let stat_path = path.key("statistic");
    let half_life_path = path.key("halfLife");
    let text = spec.statistic.as_deref().unwrap_or("mean");
    let statistic = match text {
        "mean" => Statistic::Mean,
        "max" => Statistic::Max,
        "min" => Statistic::Min,
        "last" => Statistic::Last,
        "ewma" => {
            // A quarter of the window: the oldest sample in the window then weighs 1/16.
            let half_life = c.duration(
                spec.half_life.as_deref(),
                &half_life_path,
                window.map(|w| w / 4),
                bounds::HALF_LIFE,
            );
            // Without a window there is no default to fall back on; the window's own
            // problem has been reported.
            return half_life.map(|half_life| Statistic::Ewma { half_life });
        }
        other => match percentile(other) {
            Some(n @ 1..=99) => Statistic::Percentile(n),
            _ => {
                c.bad(
                    &stat_path,
                    format!(
                        "unknown statistic `{other}`, expected one of mean, max, min, last, \
                         p1..p99 (e.g. p95), ewma"
                    ),
                );
                return None;
            }
        },
    };
    if spec.half_life.is_some() {
        c.unexpected(&half_life_path, "applies only with `statistic: ewma`");
        return None;
    }
    Some(statistic)
}

/// `p95` -> 95; digits only, without a leading zero, so each percentile has one spelling.
fn percentile(text: &str) -> Option<u8> {
    let digits = text.strip_prefix('p')?;
    let plain = digits.chars().all(|ch| ch.is_ascii_digit()) && !digits.starts_with('0');
    if plain { digits.parse().ok() } else { None }
}

fn check_behavior(
    c: &mut Checker,
    spec: Option<&BehaviorSpec>,
    path: &FieldPath,
    default: Behavior,
) -> Option<Behavior> {
    let Some(spec) = spec else { return Some(default) };
    let stabilization = c.duration(
        spec.stabilization.as_deref(),
        &path.key("stabilization"),
        Some(default.stabilization),
        bounds::STABILIZATION,
    );
    let max_step = match &spec.max_step {
        None => Some(default.max_step),
        Some(step) => check_step(c, step, &path.key("maxStep")),
    };
    let period = c.duration(
        spec.period.as_deref(),
        &path.key("period"),
        Some(default.period),
        bounds::PERIOD,
    );
    let cooldown = c.duration(
        spec.cooldown.as_deref(),
        &path.key("cooldown"),
        Some(default.cooldown),
        bounds::COOLDOWN,
    );
    Some(Behavior {
        stabilization: stabilization?,
        max_step: max_step?,
        period: period?,
        cooldown: cooldown?,
    })
}

fn check_step(c: &mut Checker, step: &StepSpec, path: &FieldPath) -> Option<Step> {
    match step {
        StepSpec::Pods(pods) => {
            c.int(Some(*pods), path, None, 1, MAX_REPLICAS_LIMIT).map(Step::Pods)
        }
        StepSpec::Text(text) => {
            let percent = text.trim().strip_suffix('%').and_then(|n| n.trim().parse::<i64>().ok());
            match percent {
                Some(p @ 1..=1000) => u16::try_from(p).ok().map(Step::Percent),
                Some(p) => {
                    c.bad(path, format!("a percentage step must be 1% to 1000%, found {p}%"));
                    None
                }
                None => {
                    c.bad(
                        path,
                        format!(
                            "expected a whole number of pods like 4 or a percentage like \
                             \"50%\", found `{text}`"
                        ),
                    );
                    None
                }
            }
        }
    }
}

fn check_floor(
    c: &mut Checker,
    spec: &CronFloorSpec,
    path: &FieldPath,
    max_replicas: Option<u16>,
) -> Option<CronFloor> {
    let cron = c.cron(spec.cron.as_deref(), &path.key("cron"));
    let min_path = path.key("minReplicas");
    let min_replicas = c
        .required(spec.min_replicas.as_ref(), &min_path)
        .and_then(|&min| c.int::<u16>(Some(min), &min_path, None, 1, MAX_REPLICAS_LIMIT))
        .and_then(|min| match max_replicas {
            Some(max) if min > max => {
                c.bad(&min_path, format!("must be <= maxReplicas ({max}), found {min}"));
                None
            }
            _ => Some(min),
        });
    let duration = c.duration(spec.duration.as_deref(), &path.key("for"), None, bounds::FLOOR_FOR);
    Some(CronFloor { cron: cron?, min_replicas: min_replicas?, duration: duration? })
}

fn check_forecast(
    c: &mut Checker,
    spec: &ForecastSpec,
    path: &FieldPath,
    interval: Option<Duration>,
) -> Option<Forecast> {
    let method = c.word(
        spec.method.as_deref(),
        &path.key("method"),
        ForecastMethod::Linear,
        &[("linear", ForecastMethod::Linear)],
    );
    let window_path = path.key("window");
    // Two samples is the least a line can be fitted through.
    let window = c
        .duration(spec.window.as_deref(), &window_path, None, bounds::FORECAST_WINDOW)
        .and_then(|window| c.at_least_intervals(window, &window_path, interval, 2));
    Some(Forecast { method: method?, window: window? })
}

fn check_health(c: &mut Checker, spec: Option<&HealthSpec>, path: &FieldPath) -> Option<Health> {
    let empty = HealthSpec::default();
    let spec = spec.unwrap_or(&empty);
    let defaults = Health::default();
    let down_after = c.duration(
        spec.down_after.as_deref(),
        &path.key("downAfter"),
        Some(defaults.down_after),
        bounds::DOWN_AFTER,
    );
    let failover = c.word(
        spec.failover.as_deref(),
        &path.key("failover"),
        defaults.failover,
        &[
            ("auto", FailoverMode::Auto),
            ("manual", FailoverMode::Manual),
            ("off", FailoverMode::Off),
        ],
    );
    let max_failovers_per_hour = c.int(
        spec.max_failovers_per_hour,
        &path.key("maxFailoversPerHour"),
        Some(defaults.max_failovers_per_hour),
        0,
        i64::from(u32::MAX),
    );
    let replica_max_lag = c.duration(
        spec.replica_max_lag.as_deref(),
        &path.key("replicaMaxLag"),
        Some(defaults.replica_max_lag),
        bounds::REPLICA_MAX_LAG,
    );
    let probe_interval = c.duration(
        spec.probe_interval.as_deref(),
        &path.key("probeInterval"),
        Some(defaults.probe_interval),
        bounds::PROBE_INTERVAL,
    );
    let probe_timeout_path = path.key("probeTimeout");
    let probe_timeout = c.duration(
        spec.probe_timeout.as_deref(),
        &probe_timeout_path,
        Some(defaults.probe_timeout),
        bounds::PROBE_TIMEOUT,
    );
    // A probe that may outlast downAfter could never show the master down in time.
    let probe_timeout = match (probe_timeout, down_after) {
        (Some(timeout), Some(down)) if timeout > down => {
            c.bad(
                &probe_timeout_path,
                format!("must be at most downAfter ({}), found {}", show(down), show(timeout)),
            );
            None
        }
        (timeout, _) => timeout,
    };
    let min_replicas = c.int(
        spec.min_replicas_to_write,
        &path.key("minReplicasToWrite"),
        Some(0_u32),
        0,
        i64::from(u32::MAX),
    );
    let max_lag_path = path.key("minReplicasMaxLag");
    let max_lag = c.duration(
        spec.min_replicas_max_lag.as_deref(),
        &max_lag_path,
        Some(secs(10)),
        bounds::MIN_REPLICAS_MAX_LAG,
    );
    // Redis takes whole seconds.
    let max_lag = match max_lag {
        Some(lag) if lag.subsec_nanos() != 0 => {
            c.bad(&max_lag_path, format!("must be whole seconds, found {}", show(lag)));
            None
        }
        lag => lag,
    };
    let write_guard = match (min_replicas?, max_lag?) {
        (0, _) => None,
        (min_replicas, max_lag) => Some(WriteGuard { min_replicas, max_lag }),
    };
    Some(Health {
        down_after: down_after?,
        confirm_with_replicas: spec.confirm_with_replicas.unwrap_or(defaults.confirm_with_replicas),
        failover: failover?,
        max_failovers_per_hour: max_failovers_per_hour?,
        replica_max_lag: replica_max_lag?,
        remove_lagging_replicas: spec
            .remove_lagging_replicas
            .unwrap_or(defaults.remove_lagging_replicas),
        probe_interval: probe_interval?,
        probe_timeout: probe_timeout?,
        write_guard,
    })
}

fn check_snapshots(c: &mut Checker, spec: &SnapshotsSpec, path: &FieldPath) -> Option<Snapshots> {
    let schedule_path = path.key("schedule");
    let schedule = c
        .required(spec.schedule.as_ref(), &schedule_path)
        .and_then(|text| c.cron(Some(text), &schedule_path))
        .and_then(|cron| match bounds::snapshot_schedule_problem(&cron) {
            Some(problem) => {
                c.bad(&schedule_path, problem);
                None
            }
            None => Some(cron),
        });
    let source = c.word(
        spec.source.as_deref(),
        &path.key("source"),
        SnapshotSource::Replica,
        &[
            ("replica", SnapshotSource::Replica),
            ("replicaOrMaster", SnapshotSource::ReplicaOrMaster),
            ("master", SnapshotSource::Master),
        ],
    );
    let destination_path = path.key("destination");
    let location = c.required(spec.destination.as_ref(), &destination_path).and_then(|url| {
        destination_url(url).map_err(|message| c.bad(&destination_path, message)).ok()
    });
    let level_path = path.key("compressionLevel");
    let zstd = c.word(
        spec.compression.as_deref(),
        &path.key("compression"),
        true,
        &[("none", false), ("zstd", true)],
    );
    let compression = match (zstd, spec.compression_level) {
        (None, _) => None,
        (Some(false), Some(_)) => {
            c.unexpected(&level_path, "applies only to `compression: zstd`");
            None
        }
        (Some(false), None) => Some(Compression::None),
        (Some(true), level) => {
            c.int(level, &level_path, Some(3_i32), 1, 22).map(|level| Compression::Zstd { level })
        }
    };
    let retention = check_retention(c, spec.retention.as_ref(), &path.key("retention"));
    // The scheme as written, even when the rest of the URL is broken: a field that does not
    // apply to it is reported besides the URL's own problem.
    let scheme = spec.destination.as_deref().and_then(|d| d.split_once("://")).map(|(s, _)| s);
    let endpoint = check_store_endpoint(c, spec, scheme, path);
    let region = match (&spec.region, scheme) {
        (Some(_), Some(s)) if s != "s3" => {
            c.unexpected(&path.key("region"), "applies only to `s3://` destinations");
            None
        }
        (Some(region), _) if region.trim().is_empty() => {
            c.bad(&path.key("region"), "must not be empty");
            None
        }
        (region, _) => Some(region.clone()),
    };
    let credentials = match &spec.credentials {
        None => Some(Credentials::None),
        Some(creds) => check_destination_credentials(c, creds, scheme, &path.key("credentials")),
    };
    let destination = match (location, endpoint, region, credentials) {
        (Some(location), Some(endpoint), Some(region), Some(credentials)) => {
            store(location, endpoint, region, credentials).map(|store| Destination {
                url: spec.destination.clone().unwrap_or_default(),
                store,
            })
        }
        _ => None,
    };
    let before_actions = check_before_actions(c, spec.before_actions.as_deref(), path);
    let limits = check_transfer_limits(c, spec, path);
    Some(Snapshots {
        schedule: schedule?,
        source: source?,
        destination: destination?,
        compression: compression?,
        retention: retention?,
        before_actions: before_actions?,
        limits: limits?,
    })
}

/// The store a valid destination names, with the fields that apply to it. The fields were
/// each checked against the URL's scheme, so they fit; `None` (a mismatch) is only reached
/// after [`check_destination_credentials`] has reported it.
fn store(
    location: Location,
    endpoint: Option<String>,
    region: Option<String>,
    credentials: Credentials,
) -> Option<Store> {
    Some(match (location, credentials) {
        (Location::Local { dir }, Credentials::None) => Store::Local { dir },
        (Location::Bucket { scheme: Scheme::S3, bucket, prefix }, Credentials::None) => {
            Store::S3 { bucket, prefix, endpoint, region, credentials: None }
        }
        (Location::Bucket { scheme: Scheme::S3, bucket, prefix }, Credentials::S3(keys)) => {
            Store::S3 { bucket, prefix, endpoint, region, credentials: Some(keys) }
        }
        (Location::Bucket { scheme: Scheme::Gcs, bucket, prefix }, Credentials::None) => {
            Store::Gcs { bucket, prefix, service_account_key: None }
        }
        (Location::Bucket { scheme: Scheme::Gcs, bucket, prefix }, Credentials::Gcs(key)) => {
            Store::Gcs { bucket, prefix, service_account_key: Some(key) }
        }
        (Location::Bucket { scheme: Scheme::Azure, bucket, prefix }, Credentials::None) => {
            Store::Azure { container: bucket, prefix, credentials: None }
        }
        (Location::Bucket { scheme: Scheme::Azure, bucket, prefix }, Credentials::Azure(key)) => {
            Store::Azure { container: bucket, prefix, credentials: Some(key) }
        }
        _ => return None,
    })
}

/// `minBytesPerSecond`, `throughputWindow`, `deadline`: the floor and the deadline that end a
/// snapshot which would otherwise hold the snapshot gate forever.
fn check_transfer_limits(
    c: &mut Checker,
    spec: &SnapshotsSpec,
    path: &FieldPath,
) -> Option<TransferLimits> {
    let defaults = TransferLimits::default();
    let (least, most) = bounds::SNAPSHOT_MIN_BYTES_PER_SECOND;
    let floor = c.int(
        spec.min_bytes_per_second,
        &path.key("minBytesPerSecond"),
        Some(defaults.min_bytes_per_second),
        least,
        most,
    );
    let window = c.duration(
        spec.throughput_window.as_deref(),
        &path.key("throughputWindow"),
        Some(defaults.throughput_window),
        bounds::SNAPSHOT_THROUGHPUT_WINDOW,
    );
    let deadline = c.duration(
        spec.deadline.as_deref(),
        &path.key("deadline"),
        Some(defaults.deadline),
        bounds::SNAPSHOT_DEADLINE,
    );
    Some(TransferLimits {
        min_bytes_per_second: floor?,
        throughput_window: window?,
        deadline: deadline?,
    })
}

/// `endpoint`: an `http(s)://` URL of an S3-compatible server, for `s3://` destinations only.
fn check_store_endpoint(
    c: &mut Checker,
    spec: &SnapshotsSpec,
    scheme: Option<&str>,
    path: &FieldPath,
) -> Option<Option<String>> {
    let Some(endpoint) = &spec.endpoint else { return Some(None) };
    let endpoint_path = path.key("endpoint");
    if scheme.is_some_and(|s| s != "s3") {
        c.unexpected(&endpoint_path, "applies only to `s3://` destinations");
        return None;
    }
    match url::Url::parse(endpoint) {
        Ok(url) if !url.username().is_empty() || url.password().is_some() => {
            c.bad(
                &endpoint_path,
                "must not contain `user:password@`; name where credentials are read in \
                 spec.snapshots.credentials",
            );
            None
        }
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => {
            Some(Some(endpoint.trim_end_matches('/').to_owned()))
        }
        _ => {
            c.bad(
                &endpoint_path,
                "must be an http:// or https:// URL of an S3-compatible server".to_owned(),
            );
            None
        }
    }
}

/// One secret from an `...Env` or `...File` field pair; `Some(None)` when neither is set.
fn secret_field(
    c: &mut Checker,
    (env, file): (&Option<String>, &Option<String>),
    (env_key, file_key): (&str, &str),
    path: &FieldPath,
) -> Option<Option<SecretSource>> {
    match (env, file) {
        (None, None) => Some(None),
        (Some(_), Some(_)) => {
            c.unexpected(
                &path.key(file_key),
                format!("a secret is read from one place; `{env_key}` is already set"),
            );
            None
        }
        (Some(env), None) => c
            .check(env_name(env), &path.key(env_key))
            .map(|()| Some(SecretSource::Env(env.clone()))),
        (None, Some(file)) => c
            .check(file_path(file), &path.key(file_key))
            .map(|()| Some(SecretSource::File(file.into()))),
    }
}

fn check_destination_credentials(
    c: &mut Checker,
    spec: &DestinationCredentialsSpec,
    scheme: Option<&str>,
    path: &FieldPath,
) -> Option<Credentials> {
    let key_id = secret_field(
        c,
        (&spec.access_key_id_env, &spec.access_key_id_file),
        ("accessKeyIdEnv", "accessKeyIdFile"),
        path,
    );
    let secret_key = secret_field(
        c,
        (&spec.secret_access_key_env, &spec.secret_access_key_file),
        ("secretAccessKeyEnv", "secretAccessKeyFile"),
        path,
    );
    let token = secret_field(
        c,
        (&spec.session_token_env, &spec.session_token_file),
        ("sessionTokenEnv", "sessionTokenFile"),
        path,
    );
    let service_account = secret_field(
        c,
        (&spec.service_account_key_env, &spec.service_account_key_file),
        ("serviceAccountKeyEnv", "serviceAccountKeyFile"),
        path,
    );
    let account_key = secret_field(
        c,
        (&spec.account_key_env, &spec.account_key_file),
        ("accountKeyEnv", "accountKeyFile"),
        path,
    );
    let (key_id, secret_key, token, service_account, account_key) =
        (key_id?, secret_key?, token?, service_account?, account_key?);
    let s3_set = key_id.is_some() || secret_key.is_some() || token.is_some();
    let gcs_set = service_account.is_some();
    let azure_set = account_key.is_some() || spec.account_name.is_some();
    let wrong = |c: &mut Checker, set: bool, store: &str| {
        if set {
            c.bad(
                path,
                format!("holds {store} credentials, which do not apply to this destination"),
            );
        }
        set
    };
    match scheme {
        Some("s3") => {
            if wrong(c, gcs_set || azure_set, "GCS or Azure") {
                return None;
            }
            match (key_id, secret_key) {
                (Some(access_key_id), Some(secret_access_key)) => {
                    Some(Credentials::S3(S3Credentials {
                        access_key_id,
                        secret_access_key,
                        session_token: token,
                    }))
                }
                _ => {
                    c.bad(path, "needs both an access key id (`accessKeyIdEnv` or `accessKeyIdFile`) and a secret access key (`secretAccessKeyEnv` or `secretAccessKeyFile`)");
                    None
                }
            }
        }
        Some("gs") => {
            if wrong(c, s3_set || azure_set, "S3 or Azure") {
                return None;
            }
            match service_account {
                Some(service_account_key) => Some(Credentials::Gcs(service_account_key)),
                None => {
                    c.bad(path, "needs `serviceAccountKeyEnv` or `serviceAccountKeyFile`");
                    None
                }
            }
        }
        Some("az") => {
            if wrong(c, s3_set || gcs_set, "S3 or GCS") {
                return None;
            }
            let account = c.required(spec.account_name.as_ref(), &path.key("accountName"));
            match (account, account_key) {
                (Some(account), Some(access_key)) => Some(Credentials::Azure(AzureCredentials {
                    account: account.clone(),
                    access_key,
                })),
                (_, None) => {
                    c.bad(path, "needs `accountKeyEnv` or `accountKeyFile`");
                    None
                }
                (None, Some(_)) => None,
            }
        }
        Some("file") => {
            c.unexpected(path, "a `file://` destination takes no credentials");
            None
        }
        // No usable destination: its own problem is already reported.
        _ => None,
    }
}

fn check_before_actions(
    c: &mut Checker,
    actions: Option<&[String]>,
    path: &FieldPath,
) -> Option<Vec<BeforeAction>> {
    let path = path.key("beforeActions");
    let mut out = Some(Vec::new());
    for (i, action) in actions.unwrap_or_default().iter().enumerate() {
        let choices =
            [("scaleDown", BeforeAction::ScaleDown), ("failover", BeforeAction::Failover)];
        match (c.word(Some(action), &path.index(i), BeforeAction::ScaleDown, &choices), &mut out) {
            (Some(action), Some(list)) if !list.contains(&action) => list.push(action),
            (Some(_), Some(_)) => {
                c.bad(&path.index(i), format!("`{action}` is listed twice"));
                out = None;
            }
            _ => out = None,
        }
    }
    out
}

fn check_retention(
    c: &mut Checker,
    spec: Option<&RetentionSpec>,
    path: &FieldPath,
) -> Option<Retention> {
    let default = RetentionSpec::default();
    let spec = spec.unwrap_or(&default);
    let max = i64::from(u32::MAX);
    let keep_last = c.int(spec.keep_last, &path.key("keepLast"), Some(7_u32), 1, max);
    let daily = c.int(spec.daily, &path.key("daily"), Some(0_u32), 0, max);
    let weekly = c.int(spec.weekly, &path.key("weekly"), Some(0_u32), 0, max);
    let monthly = c.int(spec.monthly, &path.key("monthly"), Some(0_u32), 0, max);
    Some(Retention { keep_last: keep_last?, daily: daily?, weekly: weekly?, monthly: monthly? })
}

fn check_alerts(c: &mut Checker, spec: &PolicySpec, path: &FieldPath) -> Option<Vec<AlertRule>> {
    let Some(alerts) = &spec.alerts else { return Some(Vec::new()) };
    let mut seen: HashMap<&str, usize> = HashMap::new();
    let mut rules = Some(Vec::with_capacity(alerts.len()));
    for (i, alert) in alerts.iter().enumerate() {
        let rule = check_alert(c, alert, (path, i), spec, &mut seen);
        match (rule, rules.as_mut()) {
            (Some(rule), Some(rules)) => rules.push(rule),
            _ => rules = None,
        }
    }
    rules
}

fn check_alert<'a>(
    c: &mut Checker,
    alert: &'a AlertSpec,
    (alerts_path, index): (&FieldPath, usize),
    spec: &PolicySpec,
    seen: &mut HashMap<&'a str, usize>,
) -> Option<AlertRule> {
    let path = alerts_path.index(index);
    let name_path = path.key("alertname");
    let alert_name = c.required(alert.alertname.as_ref(), &name_path).and_then(|name| {
        if name.trim().is_empty() {
            c.bad(&name_path, "must be an Alertmanager alert name");
            return None;
        }
        if let Some(first) = seen.insert(name, index) {
            c.bad(&name_path, format!("`{name}` is mapped twice (also at alerts[{first}])"));
            return None;
        }
        Some(name.clone())
    });
    let action_path = path.key("action");
    let action = c.required(alert.action.as_ref(), &action_path).and_then(|action| match action {
        AlertActionSpec::Evaluate => Some(AlertAction::Evaluate),
        AlertActionSpec::Snapshot if spec.snapshots.is_none() => {
            c.bad(&action_path, "`snapshot` needs a `spec.snapshots` section to take one");
            None
        }
        AlertActionSpec::Snapshot => Some(AlertAction::Snapshot),
        AlertActionSpec::ScaleUp(_) if spec.scaling.is_none() => {
            c.bad(&action_path, "`scaleUp` needs a `spec.scaling` section to scale within");
            None
        }
        AlertActionSpec::ScaleUp(n) => c
            .int(Some(*n), &action_path.key("scaleUp"), None, 1, MAX_REPLICAS_LIMIT)
            .map(AlertAction::ScaleUp),
    });
    Some(AlertRule { alert_name: alert_name?, action: action? })
}

/// Collects problems; its helpers return `None` only after recording one.
#[derive(Debug, Default)]
struct Checker {
    problems: Vec<Problem>,
}

impl Checker {
    /// A bad value.
    fn bad(&mut self, path: &FieldPath, message: impl Into<String>) {
        self.problems.push(Problem {
            path: path.clone(),
            anchor: Anchor::Value,
            message: message.into(),
        });
    }

    /// A field that must not be there in this combination.
    fn unexpected(&mut self, path: &FieldPath, message: impl Into<String>) {
        self.problems.push(Problem {
            path: path.clone(),
            anchor: Anchor::Key,
            message: message.into(),
        });
    }

    /// Records `result`'s error at `path`.
    fn check(&mut self, result: Result<(), String>, path: &FieldPath) -> Option<()> {
        result.map_err(|message| self.bad(path, message)).ok()
    }

    fn required<'a, T: ?Sized>(&mut self, value: Option<&'a T>, path: &FieldPath) -> Option<&'a T> {
        if value.is_none() {
            let name = path.last_key().unwrap_or("value");
            self.problems.push(Problem {
                path: path.clone(),
                anchor: Anchor::Parent,
                message: format!("missing required field `{name}`"),
            });
        }
        value
    }

    fn exact(&mut self, value: Option<&str>, path: &FieldPath, expected: &str) {
        if let Some(found) = self.required(value, path)
            && found != expected
        {
            self.bad(path, format!("must be `{expected}`, found `{found}`"));
        }
    }

    /// An integer in `min..=max` (a range `T` holds), or `default` when absent (`None`:
    /// required).
    fn int<T: TryFrom<i64> + Copy>(
        &mut self,
        value: Option<i64>,
        path: &FieldPath,
        default: Option<T>,
        min: i64,
        max: i64,
    ) -> Option<T> {
        let Some(value) = value else {
            return match default {
                Some(default) => Some(default),
                None => self.required(None::<&T>, path).copied(),
            };
        };
        let message = if value < min {
            format!("must be at least {min}, found {value}")
        } else if value > max {
            format!("must be at most {max}, found {value}")
        } else if let Ok(value) = T::try_from(value) {
            return Some(value);
        } else {
            format!("{value} is out of range")
        };
        self.bad(path, message);
        None
    }

    /// A word out of `choices`, or `default` when absent.
    fn word<T: Copy>(
        &mut self,
        value: Option<&str>,
        path: &FieldPath,
        default: T,
        choices: &[(&str, T)],
    ) -> Option<T> {
        let Some(text) = value else { return Some(default) };
        if let Some((_, chosen)) = choices.iter().find(|(word, _)| *word == text) {
            return Some(*chosen);
        }
        let words: Vec<&str> = choices.iter().map(|(word, _)| *word).collect();
        self.bad(path, format!("unknown value `{text}`, expected one of {}", words.join(", ")));
        None
    }

    /// A duration like `30s` within `limits`, or `default` when absent (`None`: required).
    fn duration(
        &mut self,
        value: Option<&str>,
        path: &FieldPath,
        default: Option<Duration>,
        limits: Bounds,
    ) -> Option<Duration> {
        let Some(text) = value else {
            return match default {
                Some(default) => Some(default),
                None => self.required(None::<&Duration>, path).copied(),
            };
        };
        match parse_duration(text).and_then(|d| limits.check(d, text)) {
            Ok(d) => Some(d),
            Err(message) => {
                self.bad(path, message);
                None
            }
        }
    }

    /// `window` when it spans at least `count` sampling intervals: a window shorter than
    /// that never holds enough samples to compute anything.
    fn at_least_intervals(
        &mut self,
        window: Duration,
        path: &FieldPath,
        interval: Option<Duration>,
        count: u32,
    ) -> Option<Duration> {
        let Some(interval) = interval else { return Some(window) };
        let least = interval.saturating_mul(count);
        if window >= least {
            return Some(window);
        }
        let what = if count == 1 {
            format!("sampling.interval ({})", show(interval))
        } else {
            format!("{count} x sampling.interval ({})", show(least))
        };
        self.bad(path, format!("must be at least {what}, found {}", show(window)));
        None
    }

    fn cron(&mut self, value: Option<&str>, path: &FieldPath) -> Option<CronSchedule> {
        let text = self.required(value, path)?;
        CronSchedule::parse(text).map_err(|message| self.bad(path, message)).ok()
    }
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// A Kubernetes name that must be a DNS-1123 label: `session-cache`.
fn dns_label(name: &str) -> Result<(), String> {
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
fn dns_subdomain(name: &str) -> Result<(), String> {
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

/// An environment variable name as a shell writes it. The value is not echoed back: a name
/// that is not one is most often the secret itself, pasted into the wrong field.
fn env_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let valid = chars.next().is_some_and(|ch| ch.is_ascii_alphabetic() || ch == '_')
        && chars.all(|ch| ch.is_ascii_alphanumeric() || ch == '_');
    if valid {
        Ok(())
    } else {
        Err("must be an environment variable name (letters, digits and `_`, not starting \
             with a digit)"
            .to_owned())
    }
}

fn file_path(path: &str) -> Result<(), String> {
    if path.trim().is_empty() { Err("must be a file path".to_owned()) } else { Ok(()) }
}

/// The base URL of the Prometheus HTTP API, as written less any trailing `/` (the client
/// appends `/api/v1/...`). Parsed strictly: anything the WHATWG parser would silently repair
/// (a backslash, a missing `//`, spaces) is an error, so the URL used is the URL read.
/// Messages never echo the URL: it may hold a password.
fn prometheus_url(text: &str) -> Result<String, String> {
    const EXAMPLE: &str = "must be an http:// or https:// URL like \
                           `http://prometheus.monitoring:9090`";
    let violation = std::cell::Cell::new(None);
    let parsed = url::Url::options()
        .syntax_violation_callback(Some(&|found| {
            if violation.get().is_none() {
                violation.set(Some(found));
            }
        }))
        .parse(text);
    let url = match parsed {
        Ok(url) => url,
        Err(url::ParseError::RelativeUrlWithoutBase) => return Err(EXAMPLE.to_owned()),
        Err(e) => return Err(format!("{EXAMPLE} ({e})")),
    };
    if !matches!(url.scheme(), "http" | "https") {
        return Err(EXAMPLE.to_owned());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not contain `user:password@`; put credentials in basicAuth".to_owned());
    }
    if let Some(violation) = violation.get() {
        return Err(format!("{EXAMPLE} ({})", violation.description()));
    }
    if url.query().is_some() {
        return Err("must not have a query (`?...`): it is the base URL of the API".to_owned());
    }
    if url.fragment().is_some() {
        return Err("must not have a fragment (`#...`): it is the base URL of the API".to_owned());
    }
    Ok(text.trim_end_matches('/').to_owned())
}

/// Where snapshots go, as [`destination_url`] reads it; the fields that apply to its kind of
/// store are checked beside it.
#[derive(Debug)]
enum Location {
    Local { dir: std::path::PathBuf },
    Bucket { scheme: Scheme, bucket: String, prefix: String },
}

#[derive(Debug, Clone, Copy)]
enum Scheme {
    S3,
    Gcs,
    Azure,
}

/// `spec.snapshots.credentials` as read for the destination's scheme.
#[derive(Debug)]
enum Credentials {
    /// None given: the environment's usual chain.
    None,
    S3(S3Credentials),
    Gcs(SecretSource),
    Azure(AzureCredentials),
}

/// Where snapshots go: an object-store or file URL, without credentials, parsed here once
/// (the store opens what this returns). Messages never echo the URL: `s3://KEY:SECRET@bucket`
/// is the mistake they are most often about.
fn destination_url(url: &str) -> Result<Location, String> {
    const SCHEMES: [&str; 4] = ["s3", "gs", "az", "file"];
    const EXPECTED: &str = "must be a URL starting with s3://, gs://, az:// or file://";
    match url.split_once("://") {
        Some((scheme, rest)) if SCHEMES.contains(&scheme) && !rest.trim().is_empty() => {
            let authority = rest.split('/').next().unwrap_or_default();
            if authority.contains('@') {
                return Err("must not contain credentials (`KEY:SECRET@`); name where they are \
                            read in spec.snapshots.credentials"
                    .to_owned());
            }
        }
        Some((scheme, _))
            if !scheme.is_empty() && scheme.chars().all(|c| c.is_ascii_alphanumeric()) =>
        {
            return Err(format!("{EXPECTED}, found a `{scheme}://` URL"));
        }
        _ => return Err(EXPECTED.to_owned()),
    }
    let parsed = url::Url::parse(url).map_err(|e| format!("{EXPECTED} ({e})"))?;
    let scheme = match parsed.scheme() {
        "file" => {
            return parsed.to_file_path().map(|dir| Location::Local { dir }).map_err(|()| {
                "a `file://` destination must name an absolute local path, like \
                 `file:///var/backups`"
                    .to_owned()
            });
        }
        "s3" => Scheme::S3,
        "gs" => Scheme::Gcs,
        _ => Scheme::Azure,
    };
    let bucket = parsed.host_str().unwrap_or_default().to_owned();
    if bucket.is_empty() {
        let what = if matches!(scheme, Scheme::Azure) { "container" } else { "bucket" };
        return Err(format!("names no {what}: expected `{}://{what}/prefix`", parsed.scheme()));
    }
    let prefix = parsed.path().trim_matches('/').to_owned();
    Ok(Location::Bucket { scheme, bucket, prefix })
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;
    use crate::policy::load_policy_str;

    /// Lines 1-4; a case's body starts on line 5, and a target is added after it unless the
    /// case is about the target.
    const HEAD: &str = "apiVersion: autopilot.redis.io/v1alpha1\nkind: RedisPolicy\n\
                        metadata: {name: t}\nspec:\n";
    const TARGET: &str = "  target: {endpoints: [\"redis-0:6379\"]}\n";

    /// A valid scaling section (lines 5-10) followed by `extra`, from line 11.
    fn scaling(extra: &str) -> String {
        format!(
            "  scaling:\n    minReplicas: 1\n    maxReplicas: 10\n    metrics:\n      \
             - redis: instantaneous_ops_per_sec\n        target: 100\n{extra}"
        )
    }

    fn problems_in(text: &str) -> Vec<crate::policy::Diagnostic> {
        load_policy_str("t.yaml", text).expect_err("the policy has a problem")
    }

    /// The one problem at `path`.
    fn problem_at(text: &str, path: &str) -> crate::policy::Diagnostic {
        let problems = problems_in(text);
        let listing: Vec<String> = problems.iter().map(ToString::to_string).collect();
        let mut at_path: Vec<_> = problems.into_iter().filter(|d| d.path == path).collect();
        assert_eq!(at_path.len(), 1, "one problem at {path} in:\n{}", listing.join("\n"));
        at_path.remove(0)
    }

    /// Asserts the one problem at `path`: its position and (part of) its message.
    fn assert_problem(text: &str, path: &str, line: usize, column: usize, message: &str) {
        let found = problem_at(text, path);
        assert_eq!((found.line, found.column), (line, column), "position of {found}");
        assert!(found.message.contains(message), "`{message}` not in {found}");
    }

    /// A `spec.prometheus` section with a valid URL (lines 5-6) followed by `extra`, from
    /// line 7.
    fn prometheus(extra: &str) -> String {
        format!("  prometheus:\n    url: http://prometheus:9090\n{extra}")
    }

    #[rstest]
    #[case::max_below_min(
        "  scaling:\n    minReplicas: 4\n    maxReplicas: 2\n    metrics: [{redis: x, target: 1}]\n",
        "spec.scaling.maxReplicas",
        7,
        18,
        "must be >= minReplicas (4), found 2"
    )]
    #[case::min_zero(
        "  scaling:\n    minReplicas: 0\n    maxReplicas: 2\n    metrics: [{redis: x, target: 1}]\n",
        "spec.scaling.minReplicas",
        6,
        18,
        "must be at least 1, found 0"
    )]
    #[case::max_over_limit(
        "  scaling:\n    minReplicas: 1\n    maxReplicas: 1001\n    metrics: [{redis: x, target: 1}]\n",
        "spec.scaling.maxReplicas",
        7,
        18,
        "must be at most 1000"
    )]
    #[case::max_missing(
        "  scaling:\n    minReplicas: 1\n    metrics: [{redis: x, target: 1}]\n",
        "spec.scaling.maxReplicas",
        6,
        5,
        "missing required field `maxReplicas`"
    )]
    #[case::metrics_empty(
        "  scaling:\n    minReplicas: 1\n    maxReplicas: 2\n    metrics: []\n",
        "spec.scaling.metrics",
        8,
        14,
        "needs at least one metric"
    )]
    #[case::metric_without_source(
        &scaling("      - target: 5\n"),
        "spec.scaling.metrics[1]", 11, 9, "needs a source"
    )]
    #[case::metric_with_two_sources(
        &scaling("      - {redis: x, prometheus: 'up', target: 5}\n"),
        "spec.scaling.metrics[1].prometheus", 11, 20, "one source; `redis` is already set"
    )]
    #[case::rate_on_prometheus(
        &scaling("      - {prometheus: 'up', rate: true, target: 5}\n"),
        "spec.scaling.metrics[1].rate", 11, 28, "applies to `redis` metrics only"
    )]
    #[case::redis_field_with_spaces(
        &scaling("      - {redis: 'used memory', target: 5}\n"),
        "spec.scaling.metrics[1].redis", 11, 17, "must be a field of Redis INFO"
    )]
    #[case::statistic_p100(
        &scaling("        statistic: p100\n"),
        "spec.scaling.metrics[0].statistic", 11, 20, "unknown statistic `p100`"
    )]
    #[case::half_life_without_ewma(
        &scaling("        halfLife: 30s\n"),
        "spec.scaling.metrics[0].halfLife", 11, 9, "applies only with `statistic: ewma`"
    )]
    #[case::aggregate_unknown(
        &scaling("        aggregate: avg\n"),
        "spec.scaling.metrics[0].aggregate", 11, 20, "unknown value `avg`, expected one of mean, max, sum"
    )]
    #[case::window_shorter_than_interval(
        &scaling("        window: 5s\n"),
        "spec.scaling.metrics[0].window", 11, 17, "must be at least sampling.interval (10s), found 5s"
    )]
    #[case::target_zero(
        "  scaling:\n    minReplicas: 1\n    maxReplicas: 2\n    metrics: [{redis: x, target: 0}]\n",
        "spec.scaling.metrics[0].target",
        8,
        34,
        "must be a finite number greater than 0, found 0"
    )]
    #[case::target_nan(
        "  scaling:\n    minReplicas: 1\n    maxReplicas: 2\n    metrics: [{redis: x, target: .nan}]\n",
        "spec.scaling.metrics[0].target",
        8,
        34,
        "found NaN"
    )]
    #[case::target_missing(
        "  scaling:\n    minReplicas: 1\n    maxReplicas: 2\n    metrics: [{redis: x}]\n",
        "spec.scaling.metrics[0].target",
        8,
        15,
        "missing required field `target`"
    )]
    #[case::plausible_max_zero(
        &scaling("        plausibleMax: 0\n"),
        "spec.scaling.metrics[0].plausibleMax", 11, 23, "must be a finite number greater than 0, found 0"
    )]
    #[case::plausible_max_below_target(
        &scaling("        plausibleMax: 50\n"),
        "spec.scaling.metrics[0].plausibleMax", 11, 23, "must be above the target (100)"
    )]
    #[case::plausible_max_on_a_query(
        "  scaling:\n    minReplicas: 1\n    maxReplicas: 2\n    metrics: [{prometheus: up, plausibleMax: 5, target: 1}]\n",
        "spec.scaling.metrics[0].plausibleMax",
        8,
        32,
        "applies to `redis` metrics only"
    )]
    #[case::target_above_the_default_plausible_max(
        "  scaling:\n    minReplicas: 1\n    maxReplicas: 2\n    metrics: [{redis: instantaneous_ops_per_sec, target: 3000000}]\n",
        "spec.scaling.metrics[0].target",
        8,
        58,
        "the default plausible maximum of `instantaneous_ops_per_sec` per instance is 2000000"
    )]
    #[case::tolerance_one(
        &scaling("    tolerance: 1\n"),
        "spec.scaling.tolerance", 11, 16, "must be >= 0 and < 1, found 1"
    )]
    #[case::duration_without_unit(
        &scaling("    warmup: 30\n"),
        "spec.scaling.warmup", 11, 13, "durations need a unit, e.g. `30s`"
    )]
    #[case::duration_garbage(
        &scaling("    warmup: soon\n"),
        "spec.scaling.warmup", 11, 13, "invalid duration `soon`"
    )]
    #[case::max_step_zero_percent(
        &scaling("    scaleUp: {maxStep: \"0%\"}\n"),
        "spec.scaling.scaleUp.maxStep", 11, 24, "must be 1% to 1000%, found 0%"
    )]
    #[case::max_step_fraction(
        &scaling("    scaleUp: {maxStep: 2.5}\n"),
        "spec.scaling.scaleUp.maxStep", 11, 24, "found `2.5`"
    )]
    #[case::max_step_zero_pods(
        &scaling("    scaleDown: {maxStep: 0}\n"),
        "spec.scaling.scaleDown.maxStep", 11, 26, "must be at least 1, found 0"
    )]
    #[case::period_zero(
        &scaling("    scaleDown: {period: 0s}\n"),
        "spec.scaling.scaleDown.period", 11, 25, "must be longer than 0"
    )]
    #[case::floor_above_max(
        &scaling("    schedule:\n      - {cron: '0 0 8 * * *', minReplicas: 11, for: 1h}\n"),
        "spec.scaling.schedule[0].minReplicas", 12, 44, "must be <= maxReplicas (10), found 11"
    )]
    #[case::floor_five_field_cron(
        &scaling("    schedule:\n      - {cron: '0 8 * * *', minReplicas: 2, for: 1h}\n"),
        "spec.scaling.schedule[0].cron", 12, 16, "invalid cron `0 8 * * *`"
    )]
    #[case::floor_without_for(
        &scaling("    schedule:\n      - {cron: '0 0 8 * * *', minReplicas: 2}\n"),
        "spec.scaling.schedule[0].for", 12, 9, "missing required field `for`"
    )]
    #[case::forecast_window_too_short(
        &scaling("    forecast: {window: 15s}\n"),
        "spec.scaling.forecast.window", 11, 24, "must be at least 2 x sampling.interval (20s)"
    )]
    #[case::forecast_method_unknown(
        &scaling("    forecast: {method: holt, window: 15m}\n"),
        "spec.scaling.forecast.method", 11, 24, "unknown value `holt`, expected one of linear"
    )]
    #[case::timeout_not_below_interval(
        "  sampling: {interval: 2s, timeout: 2s}\n",
        "spec.sampling.timeout",
        5,
        37,
        "must be shorter than sampling.interval (2s)"
    )]
    #[case::failover_unknown(
        "  health: {failover: yes-please}\n",
        "spec.health.failover",
        5,
        22,
        "expected one of auto, manual, off"
    )]
    #[case::down_after_zero(
        "  health: {downAfter: 0s}\n",
        "spec.health.downAfter",
        5,
        23,
        "must be longer than 0"
    )]
    #[case::snapshot_destination_http(
        "  snapshots: {schedule: '0 0 3 * * *', destination: 'http://x/y'}\n",
        "spec.snapshots.destination",
        5,
        53,
        "s3://, gs://, az:// or file://"
    )]
    #[case::snapshot_schedule_missing(
        "  snapshots: {destination: 's3://b/p'}\n",
        "spec.snapshots.schedule",
        5,
        14,
        "missing required field `schedule`"
    )]
    #[case::level_without_zstd(
        "  snapshots: {schedule: '0 0 3 * * *', destination: 's3://b', compression: none, compressionLevel: 5}\n",
        "spec.snapshots.compressionLevel",
        5,
        82,
        "applies only to `compression: zstd`"
    )]
    #[case::level_too_high(
        "  snapshots: {schedule: '0 0 3 * * *', destination: 's3://b', compressionLevel: 23}\n",
        "spec.snapshots.compressionLevel",
        5,
        81,
        "must be at most 22"
    )]
    #[case::keep_last_zero(
        "  snapshots: {schedule: '0 0 3 * * *', destination: 's3://b', retention: {keepLast: 0}}\n",
        "spec.snapshots.retention.keepLast",
        5,
        85,
        "must be at least 1"
    )]
    #[case::endpoint_off_s3(
        "  snapshots: {schedule: '0 0 3 * * *', destination: 'gs://b', endpoint: 'http://x:9000'}\n",
        "spec.snapshots.endpoint",
        5,
        63,
        "applies only to `s3://` destinations"
    )]
    #[case::s3_credentials_half(
        "  snapshots: {schedule: '0 0 3 * * *', destination: 's3://b', credentials: {accessKeyIdEnv: K}}\n",
        "spec.snapshots.credentials",
        5,
        76,
        "needs both an access key id"
    )]
    #[case::credentials_for_another_store(
        "  snapshots: {schedule: '0 0 3 * * *', destination: 's3://b', credentials: {accountKeyEnv: K}}\n",
        "spec.snapshots.credentials",
        5,
        76,
        "holds GCS or Azure credentials"
    )]
    #[case::before_action_unknown(
        "  snapshots: {schedule: '0 0 3 * * *', destination: 's3://b', beforeActions: [scaleUp]}\n",
        "spec.snapshots.beforeActions[0]",
        5,
        79,
        "expected one of scaleDown, failover"
    )]
    #[case::snapshot_floor_zero(
        "  snapshots: {schedule: '0 0 3 * * *', destination: 's3://b', minBytesPerSecond: 0}\n",
        "spec.snapshots.minBytesPerSecond",
        5,
        82,
        "must be at least 1, found 0"
    )]
    #[case::snapshot_window_zero(
        "  snapshots: {schedule: '0 0 3 * * *', destination: 's3://b', throughputWindow: 0s}\n",
        "spec.snapshots.throughputWindow",
        5,
        81,
        "must be at least 1s"
    )]
    #[case::snapshot_deadline_too_long(
        "  snapshots: {schedule: '0 0 3 * * *', destination: 's3://b', deadline: 8d}\n",
        "spec.snapshots.deadline",
        5,
        73,
        "must be at most 7days, found `8d` (a snapshot holds the policy's snapshot gate"
    )]
    #[case::alert_snapshot_without_snapshots(
        "  alerts: [{alertname: A, action: snapshot}]\n",
        "spec.alerts[0].action",
        5,
        35,
        "needs a `spec.snapshots` section"
    )]
    #[case::alert_scale_up_without_scaling(
        "  alerts: [{alertname: A, action: {scaleUp: 1}}]\n",
        "spec.alerts[0].action",
        5,
        35,
        "needs a `spec.scaling` section"
    )]
    #[case::alertname_twice(
        "  alerts:\n    - {alertname: A, action: evaluate}\n    - {alertname: A, action: evaluate}\n",
        "spec.alerts[1].alertname",
        7,
        19,
        "`A` is mapped twice (also at alerts[0])"
    )]
    #[case::alert_action_unknown(
        "  alerts: [{alertname: A, action: page}]\n",
        "spec.alerts[0].action",
        5,
        35,
        "unknown variant `page`, expected one of evaluate, snapshot, scaleUp"
    )]
    fn a_broken_rule_is_reported_at_its_field(
        #[case] body: &str,
        #[case] path: &str,
        #[case] line: usize,
        #[case] column: usize,
        #[case] message: &str,
    ) {
        assert_problem(&format!("{HEAD}{body}{TARGET}"), path, line, column, message);
    }

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

    const SECRETS_HINT: &str =
        "secrets are read from passwordEnv or passwordFile, never written in a policy";
    const URL_EXAMPLE: &str =
        "must be an http:// or https:// URL like `http://prometheus.monitoring:9090`";
    const ENV_NAME: &str =
        "must be an environment variable name (letters, digits and `_`, not starting with a digit)";

    #[rstest]
    #[case::auth_without_password(
        "  auth: {username: autopilot}\n",
        "spec.auth",
        5,
        9,
        "needs the password's source: exactly one of `passwordEnv` or `passwordFile`"
    )]
    #[case::auth_empty_section(
        "  auth:\n",
        "spec.auth",
        5,
        7,
        "needs the password's source: exactly one of `passwordEnv` or `passwordFile`"
    )]
    #[case::auth_two_passwords(
        "  auth: {passwordEnv: REDIS_PASSWORD, passwordFile: /p}\n",
        "spec.auth.passwordFile",
        5,
        39,
        "a password is read from one place; `passwordEnv` is already set"
    )]
    #[case::auth_env_starting_with_a_digit(
        "  auth: {passwordEnv: 1PASSWORD}\n",
        "spec.auth.passwordEnv",
        5,
        23,
        ENV_NAME
    )]
    #[case::auth_env_with_a_dash(
        "  auth: {passwordEnv: REDIS-PASSWORD}\n",
        "spec.auth.passwordEnv",
        5,
        23,
        ENV_NAME
    )]
    #[case::auth_file_empty(
        "  auth: {passwordFile: ''}\n",
        "spec.auth.passwordFile",
        5,
        24,
        "must be a file path"
    )]
    #[case::auth_username_with_a_space(
        "  auth: {username: 'auto pilot', passwordEnv: P}\n",
        "spec.auth.username",
        5,
        20,
        "must be a Redis ACL user name (not empty, no spaces); leave it out to authenticate as \
         `default`"
    )]
    #[case::auth_inline_password(
        "  auth: {password: hunter2}\n",
        "spec.auth.password", 5, 10,
        &format!("unknown field `password` ({SECRETS_HINT}), expected one of username, \
                  passwordEnv, passwordFile")
    )]
    #[case::tls_ca_file_empty(
        "  tls: {caFile: ''}\n",
        "spec.tls.caFile",
        5,
        17,
        "must be a file path"
    )]
    #[case::tls_field_misspelled(
        "  tls: {cafile: /ca.crt}\n",
        "spec.tls.cafile",
        5,
        9,
        "unknown field `cafile` (did you mean `caFile`?), expected one of caFile"
    )]
    #[case::promql_without_prometheus(
        &scaling("      - {prometheus: 'sum(up)', target: 5}\n"),
        "spec.scaling.metrics[1].prometheus", 11, 10,
        "needs spec.prometheus.url to evaluate PromQL"
    )]
    #[case::url_missing(
        "  prometheus: {bearerTokenEnv: T}\n",
        "spec.prometheus.url",
        5,
        15,
        "missing required field `url`"
    )]
    #[case::url_with_credentials(
        "  prometheus: {url: 'http://reader:hunter2@prometheus:9090'}\n",
        "spec.prometheus.url",
        5,
        21,
        "must not contain `user:password@`; put credentials in basicAuth"
    )]
    #[case::url_without_scheme(
        "  prometheus: {url: 'prometheus.monitoring:9090'}\n",
        "spec.prometheus.url",
        5,
        21,
        URL_EXAMPLE
    )]
    #[case::url_relative(
        "  prometheus: {url: '/prometheus'}\n",
        "spec.prometheus.url",
        5,
        21,
        URL_EXAMPLE
    )]
    #[case::url_not_http(
        "  prometheus: {url: 'ftp://prometheus:9090'}\n",
        "spec.prometheus.url",
        5,
        21,
        URL_EXAMPLE
    )]
    #[case::url_repaired_by_the_parser(
        "  prometheus: {url: 'http:/prometheus:9090'}\n",
        "spec.prometheus.url", 5, 21, &format!("{URL_EXAMPLE} (expected //)")
    )]
    #[case::url_with_spaces(
        "  prometheus: {url: ' http://prometheus:9090'}\n",
        "spec.prometheus.url", 5, 21,
        &format!("{URL_EXAMPLE} (leading or trailing control or space character are ignored \
                  in URLs)")
    )]
    #[case::url_port_out_of_range(
        "  prometheus: {url: 'http://prometheus:99999'}\n",
        "spec.prometheus.url", 5, 21, &format!("{URL_EXAMPLE} (invalid port number)")
    )]
    #[case::url_with_query(
        "  prometheus: {url: 'http://prometheus:9090/?timeout=5s'}\n",
        "spec.prometheus.url",
        5,
        21,
        "must not have a query (`?...`): it is the base URL of the API"
    )]
    #[case::url_with_fragment(
        "  prometheus: {url: 'http://prometheus:9090/#graph'}\n",
        "spec.prometheus.url",
        5,
        21,
        "must not have a fragment (`#...`): it is the base URL of the API"
    )]
    #[case::bearer_and_basic(
        &prometheus("    bearerTokenEnv: T\n    basicAuth: {username: r, passwordEnv: P}\n"),
        "spec.prometheus.basicAuth", 8, 5,
        "Prometheus credentials are one of `bearerTokenEnv`, `bearerTokenFile` or `basicAuth`; \
         `bearerTokenEnv` is already set"
    )]
    #[case::bearer_env_and_file(
        &prometheus("    bearerTokenFile: /t\n    bearerTokenEnv: T\n"),
        "spec.prometheus.bearerTokenFile", 7, 5,
        "Prometheus credentials are one of `bearerTokenEnv`, `bearerTokenFile` or `basicAuth`; \
         `bearerTokenEnv` is already set"
    )]
    #[case::bearer_env_with_a_space(
        &prometheus("    bearerTokenEnv: PROM TOKEN\n"),
        "spec.prometheus.bearerTokenEnv", 7, 21, ENV_NAME
    )]
    #[case::bearer_file_blank(
        &prometheus("    bearerTokenFile: ' '\n"),
        "spec.prometheus.bearerTokenFile", 7, 22, "must be a file path"
    )]
    #[case::bearer_inline_token(
        &prometheus("    bearerToken: abc\n"),
        "spec.prometheus.bearerToken", 7, 5,
        "unknown field `bearerToken` (secrets are read from bearerTokenEnv or bearerTokenFile, \
         never written in a policy), expected one of url, bearerTokenEnv, bearerTokenFile, \
         basicAuth"
    )]
    #[case::basic_without_username(
        &prometheus("    basicAuth: {passwordEnv: P}\n"),
        "spec.prometheus.basicAuth.username", 7, 16, "missing required field `username`"
    )]
    #[case::basic_username_with_a_colon(
        &prometheus("    basicAuth: {username: 'a:b', passwordEnv: P}\n"),
        "spec.prometheus.basicAuth.username", 7, 27, "must be a user name (not empty, no `:`)"
    )]
    #[case::basic_without_password(
        &prometheus("    basicAuth: {username: reader}\n"),
        "spec.prometheus.basicAuth", 7, 16,
        "needs the password's source: exactly one of `passwordEnv` or `passwordFile`"
    )]
    #[case::basic_two_passwords(
        &prometheus("    basicAuth: {username: reader, passwordFile: /p, passwordEnv: P}\n"),
        "spec.prometheus.basicAuth.passwordFile", 7, 35,
        "a password is read from one place; `passwordEnv` is already set"
    )]
    #[case::basic_env_not_a_name(
        &prometheus("    basicAuth: {username: reader, passwordEnv: $PROM_PASSWORD}\n"),
        "spec.prometheus.basicAuth.passwordEnv", 7, 48, ENV_NAME
    )]
    #[case::basic_inline_password(
        &prometheus("    basicAuth: {username: reader, password: x}\n"),
        "spec.prometheus.basicAuth.password", 7, 35,
        &format!("unknown field `password` ({SECRETS_HINT}), expected one of username, \
                  passwordEnv, passwordFile")
    )]
    fn a_connection_problem_is_reported_at_its_field(
        #[case] body: &str,
        #[case] path: &str,
        #[case] line: usize,
        #[case] column: usize,
        #[case] message: &str,
    ) {
        let found = problem_at(&format!("{HEAD}{body}{TARGET}"), path);
        assert_eq!((found.line, found.column, found.message.as_str()), (line, column, message));
    }

    #[test]
    fn a_missing_prometheus_section_is_reported_once() {
        let text = format!(
            "{HEAD}{TARGET}{}",
            scaling(
                "      - {prometheus: 'sum(up)', target: 5}\n      - {prometheus: 'max(up)', \
                 target: 5}\n"
            )
        );
        let shown: Vec<String> = problems_in(&text).iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            ["t.yaml:12:10: spec.scaling.metrics[1].prometheus: needs spec.prometheus.url to \
              evaluate PromQL"]
        );
    }

    #[test]
    fn secrets_written_in_the_wrong_place_are_not_echoed() {
        let text = format!(
            "{HEAD}{TARGET}  auth: {{passwordEnv: 'hunter2!', password: hunter2}}\n\
             \x20 prometheus:\n    url: 'http://reader:hunter2@prometheus:9090'\n\
             \x20   bearerTokenEnv: 'hunter2 token'\n"
        );
        let problems = problems_in(&text);
        assert_eq!(problems.len(), 4, "{problems:?}");
        for problem in problems {
            assert!(!problem.to_string().contains("hunter2"), "{problem}");
        }
    }

    /// `s3://KEY:SECRET@bucket` (and an endpoint with `user:password@`) is refused, and
    /// neither the key nor the secret is repeated.
    #[rstest]
    #[case::destination(
        "destination: 's3://AKIAEXAMPLE:hunter2@bucket/x'",
        "spec.snapshots.destination"
    )]
    #[case::destination_user_only(
        "destination: 'gs://AKIAEXAMPLE@bucket/x'",
        "spec.snapshots.destination"
    )]
    #[case::bad_scheme(
        "destination: 'ftp://AKIAEXAMPLE:hunter2@bucket/x'",
        "spec.snapshots.destination"
    )]
    #[case::endpoint(
        "destination: s3://bucket/x, endpoint: 'http://AKIAEXAMPLE:hunter2@minio:9000'",
        "spec.snapshots.endpoint"
    )]
    fn credentials_in_a_snapshot_url_are_refused_unechoed(
        #[case] fields: &str,
        #[case] path: &str,
    ) {
        let text = format!("{HEAD}{TARGET}  snapshots: {{schedule: '0 0 3 * * *', {fields}}}\n");
        let problem = problem_at(&text, path);
        let shown = problem.to_string();
        assert!(!shown.contains("hunter2") && !shown.contains("AKIAEXAMPLE"), "{shown}");
        if !fields.contains("ftp") {
            assert!(shown.contains("must not contain"), "{shown}");
        }
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
  alerts:
    - {alertname: OrdersRedisSlow, action: {scaleUp: 1}}
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
                    },
                    Metric {
                        source: MetricSource::Prometheus {
                            query: "sum(rate(orders_total[1m]))".to_owned(),
                        },
                        aggregate: Aggregate::Sum,
                        statistic: Statistic::Last,
                        window: secs(60),
                        target: 500.0,
                    },
                ],
                tolerance: 0.05,
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
            }),
            alerts: vec![AlertRule {
                alert_name: "OrdersRedisSlow".to_owned(),
                action: AlertAction::ScaleUp(1),
            }],
        };
        assert_eq!(load_policy_str("orders.yaml", text), Ok(expected));
    }

    fn env(name: &str) -> SecretSource {
        SecretSource::Env(name.to_owned())
    }

    fn file(path: &str) -> SecretSource {
        SecretSource::File(path.into())
    }

    fn source(url: &str, credentials: Option<PrometheusCredentials>) -> Option<PrometheusSource> {
        Some(PrometheusSource { url: url.to_owned(), credentials })
    }

    /// The other spellings of the three sections; none needs a metric to be allowed.
    #[rstest]
    #[case::auth_from_a_file_as_default(
        "  auth: {passwordFile: /run/secrets/redis}\n",
        Some(RedisAuth { username: None, password: file("/run/secrets/redis") }),
        None,
        None
    )]
    #[case::tls_with_system_roots("  tls: {}\n", None, Some(RedisTls { ca_file: None }), None)]
    #[case::tls_section_left_empty(
        "  tls:\n    # caFile: /etc/redis/ca.crt\n",
        None,
        Some(RedisTls { ca_file: None }),
        None
    )]
    #[case::prometheus_without_credentials(
        "  prometheus: {url: 'http://prometheus.monitoring:9090/'}\n",
        None,
        None,
        source("http://prometheus.monitoring:9090", None)
    )]
    #[case::bearer_from_env(
        "  prometheus: {url: 'http://p:9090', bearerTokenEnv: PROM_TOKEN}\n",
        None,
        None,
        source("http://p:9090", Some(PrometheusCredentials::Bearer(env("PROM_TOKEN"))))
    )]
    #[case::bearer_from_file(
        "  prometheus: {url: 'https://p//', bearerTokenFile: /t}\n",
        None,
        None,
        source("https://p", Some(PrometheusCredentials::Bearer(file("/t"))))
    )]
    #[case::basic_from_env(
        "  prometheus: {url: 'http://p:9090', basicAuth: {username: r, passwordEnv: _P1}}\n",
        None,
        None,
        source(
            "http://p:9090",
            Some(PrometheusCredentials::Basic { username: "r".to_owned(), password: env("_P1") })
        )
    )]
    fn connection_sections_read_as_written(
        #[case] body: &str,
        #[case] auth: Option<RedisAuth>,
        #[case] tls: Option<RedisTls>,
        #[case] prometheus: Option<PrometheusSource>,
    ) {
        let policy = load_policy_str("t.yaml", &format!("{HEAD}{TARGET}{body}")).expect("valid");
        assert_eq!((policy.auth, policy.tls, policy.prometheus), (auth, tls, prometheus));
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

    #[test]
    fn tls_on_a_local_fleet_is_refused() {
        let text =
            format!("{HEAD}  target: {{local: {{dataDir: ./data}}}}\n  tls: {{caFile: /ca.crt}}\n");
        assert_problem(&text, "spec.tls", 6, 3, "the local fleet starts its instances without TLS");
    }

    #[test]
    fn the_local_demo_reads_as_written() {
        let text = include_str!("../../policies/local-demo.yaml");
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

    #[test]
    fn alert_actions_map_to_policy_actions() {
        let text = include_str!("../../policies/checkout-scheduled.yaml");
        let policy = load_policy_str("checkout.yaml", text).expect("valid");
        let actions: Vec<AlertAction> = policy.alerts.iter().map(|rule| rule.action).collect();
        assert_eq!(
            actions,
            [AlertAction::ScaleUp(2), AlertAction::Evaluate, AlertAction::Snapshot]
        );
        let scaling = policy.scaling.expect("scaling");
        assert_eq!(scaling.schedule[0].cron.as_str(), "0 30 7 * * Mon-Fri");
        assert_eq!(scaling.schedule[0].duration, secs(11 * 3600));
        assert_eq!(
            scaling.forecast,
            Some(Forecast { method: ForecastMethod::Linear, window: secs(15 * 60) })
        );
    }

    #[rstest]
    #[case::p1("p1", Some(1))]
    #[case::p99("p99", Some(99))]
    #[case::leading_zero("p05", None)]
    #[case::signed("p+5", None)]
    #[case::bare("p", None)]
    fn percentiles_have_one_spelling(#[case] text: &str, #[case] expected: Option<u8>) {
        assert_eq!(percentile(text), expected);
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

    /// Validation parses the destination once into the store it names, with the fields that
    /// apply to that store only: the snapshot store opens it as it is.
    #[rstest]
    #[case::local(
        "destination: 'file:///var/backups/redis'",
        Store::Local { dir: "/var/backups/redis".into() }
    )]
    #[case::s3(
        "destination: 's3://bkt/some/prefix/', endpoint: 'http://minio:9000/', region: eu-west-1, \
         credentials: {accessKeyIdEnv: K, secretAccessKeyFile: /s}",
        Store::S3 {
            bucket: "bkt".to_owned(),
            prefix: "some/prefix".to_owned(),
            endpoint: Some("http://minio:9000".to_owned()),
            region: Some("eu-west-1".to_owned()),
            credentials: Some(S3Credentials {
                access_key_id: env("K"),
                secret_access_key: file("/s"),
                session_token: None,
            }),
        }
    )]
    #[case::s3_no_prefix(
        "destination: 's3://bkt'",
        Store::S3 {
            bucket: "bkt".to_owned(),
            prefix: String::new(),
            endpoint: None,
            region: None,
            credentials: None,
        }
    )]
    #[case::gcs(
        "destination: 'gs://b/p', credentials: {serviceAccountKeyFile: /k}",
        Store::Gcs { bucket: "b".to_owned(), prefix: "p".to_owned(), service_account_key: Some(file("/k")) }
    )]
    #[case::azure(
        "destination: 'az://c/p/q', credentials: {accountName: acct, accountKeyEnv: K}",
        Store::Azure {
            container: "c".to_owned(),
            prefix: "p/q".to_owned(),
            credentials: Some(AzureCredentials { account: "acct".to_owned(), access_key: env("K") }),
        }
    )]
    fn destinations_are_parsed_once_into_their_store(#[case] fields: &str, #[case] store: Store) {
        let text = format!("{HEAD}{TARGET}  snapshots: {{schedule: '0 0 3 * * *', {fields}}}\n");
        let snapshots = load_policy_str("t.yaml", &text).expect("valid").snapshots.expect("set");
        assert_eq!(snapshots.destination.store, store);
        assert!(fields.contains(&format!("'{}'", snapshots.destination.url)), "{fields}");
    }

    /// What the store could never open is refused by `check`, at the field, not found out
    /// when the first snapshot runs.
    #[rstest]
    #[case::s3_no_bucket("s3:///prefix", "names no bucket: expected `s3://bucket/prefix`")]
    #[case::az_no_container("az:///prefix", "names no container")]
    #[case::file_relative("file://backups/redis", "must name an absolute local path")]
    #[case::unparsable("s3://bu cket/x", "must be a URL starting with")]
    fn a_destination_no_store_can_open_is_refused(#[case] url: &str, #[case] message: &str) {
        let text = format!(
            "{HEAD}{TARGET}  snapshots: {{schedule: '0 0 3 * * *', destination: '{url}'}}\n"
        );
        let problem = problem_at(&text, "spec.snapshots.destination");
        assert!(problem.message.contains(message), "`{message}` not in {problem}");
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
