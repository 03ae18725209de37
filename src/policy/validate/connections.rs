//! How the daemon reaches Redis and Prometheus: `spec.auth` and `spec.tls` for every Redis of
//! the target, `spec.prometheus` for PromQL metrics. Secrets are only ever named (an
//! environment variable or a file), never written in a policy, and messages never echo what
//! looks like one.

use super::checker::{Checker, env_name, file_path, report_conflicts};
use crate::policy::source_map::FieldPath;
use crate::policy::spec::{LoginSpec, PolicySpec, PrometheusSpec, TlsSpec};
use crate::policy::{PrometheusCredentials, PrometheusSource, RedisAuth, RedisTls, SecretSource};

pub(super) fn check_auth(c: &mut Checker, spec: &LoginSpec, path: &FieldPath) -> Option<RedisAuth> {
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

pub(super) fn check_tls(c: &mut Checker, spec: &TlsSpec, path: &FieldPath) -> Option<RedisTls> {
    let ca_file = match &spec.ca_file {
        None => Some(None),
        Some(file) => c.check(file_path(file), &path.key("caFile")).map(|()| Some(file.into())),
    };
    Some(RedisTls { ca_file: ca_file? })
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

pub(super) fn check_prometheus(
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

/// The first field that needs PromQL evaluated: a metric's `prometheus` query, or a seasonal
/// forecast's or measured bursts' `history`.
pub(super) fn first_promql_use(spec: &PolicySpec, metrics_path: &FieldPath) -> Option<FieldPath> {
    let metrics = spec.scaling.as_ref()?.metrics.as_ref()?;
    metrics.iter().enumerate().find_map(|(i, metric)| {
        if metric.prometheus.is_some() && metric.redis.is_none() {
            Some(metrics_path.index(i).key("prometheus"))
        } else if metric.seasonal.as_ref().is_some_and(|s| names_query(&s.history)) {
            Some(metrics_path.index(i).key("seasonal").key("history"))
        } else if metric.bursts.as_ref().is_some_and(|b| names_query(&b.history)) {
            Some(metrics_path.index(i).key("bursts").key("history"))
        } else {
            None
        }
    })
}

/// Whether a `history` names a query (a blank one is its own problem).
fn names_query(history: &Option<String>) -> bool {
    history.as_deref().is_some_and(|q| !q.trim().is_empty())
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

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;
    use crate::policy::load_policy_str;
    use crate::policy::validate::testing::*;

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
}
