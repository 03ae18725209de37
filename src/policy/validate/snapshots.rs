//! `spec.snapshots`: schedule, source, compression, encryption, retention, transfer limits,
//! and the
//! destination, parsed here once into a [`Store`] (a local directory, or an S3, GCS or Azure
//! bucket with its prefix and the fields and credentials that apply to that store only),
//! which the snapshot store opens as it is.

use super::checker::{Checker, env_name, file_path};
use super::target::{dns_label, dns_subdomain};
use crate::policy::bounds;
use crate::policy::source_map::FieldPath;
use crate::policy::spec::{
    DestinationCredentialsSpec, EncryptionSpec, RetentionSpec, SnapshotsSpec, VerifierSpec,
    VerifySpec,
};
use crate::policy::{
    AzureCredentials, BeforeAction, Bootstrap, Compression, Destination, Encryption, Retention,
    S3Credentials, SecretSource, SnapshotSource, Snapshots, Store, TransferLimits, Verifier,
    Verify,
};

pub(super) fn check_snapshots(
    c: &mut Checker,
    spec: &SnapshotsSpec,
    path: &FieldPath,
) -> Option<Snapshots> {
    let schedule = check_schedule(c, spec.schedule.as_ref(), &path.key("schedule"), "snapshots");
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
        let location = destination_url(url).map_err(|message| c.bad(&destination_path, message));
        location.ok().map(|location| (url.clone(), location))
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
        (Some((url, location)), Some(endpoint), Some(region), Some(credentials)) => {
            store(location, endpoint, region, credentials).map(|store| Destination { url, store })
        }
        _ => None,
    };
    let before_actions = check_before_actions(c, spec.before_actions.as_deref(), path);
    let limits = check_transfer_limits(c, spec, path);
    let bootstrap = check_bootstrap(c, spec.bootstrap.as_deref(), &path.key("bootstrap"));
    let encryption = match &spec.encryption {
        None => Some(None),
        Some(encryption) => check_encryption(c, encryption, &path.key("encryption")).map(Some),
    };
    let verify = match &spec.verify {
        None => Some(None),
        Some(verify) => check_verify(c, verify, &path.key("verify")).map(Some),
    };
    Some(Snapshots {
        schedule: schedule?,
        source: source?,
        destination: destination?,
        compression: compression?,
        retention: retention?,
        before_actions: before_actions?,
        limits: limits?,
        bootstrap: bootstrap?,
        encryption: encryption?,
        verify: verify?,
    })
}

/// A required cron line no more frequent than a snapshot's: each run of `what` streams a
/// whole dataset (forks a Redis, or loads one into memory).
fn check_schedule(
    c: &mut Checker,
    schedule: Option<&String>,
    path: &FieldPath,
    what: &str,
) -> Option<crate::policy::CronSchedule> {
    let cron = c.required(schedule, path).and_then(|text| c.cron(Some(text), path))?;
    match bounds::snapshot_schedule_problem(&cron) {
        Some(problem) => {
            c.bad(path, problem.replace("snapshots may run", &format!("{what} may run")));
            None
        }
        None => Some(cron),
    }
}

/// `latest`, or a snapshot id as `snapshot list` prints it (its time and source: a typo is
/// caught here rather than when a new fleet cannot start).
fn check_bootstrap(
    c: &mut Checker,
    bootstrap: Option<&str>,
    path: &FieldPath,
) -> Option<Option<Bootstrap>> {
    match bootstrap.map(str::trim) {
        None => Some(None),
        Some("latest") => Some(Some(Bootstrap::Latest)),
        Some(id) if crate::model::snapshot_id_time(id).is_some() => {
            Some(Some(Bootstrap::Snapshot(id.to_owned())))
        }
        Some(other) => {
            c.bad(
                path,
                format!(
                    "`{other}` is neither `latest` nor a snapshot id (like \
                     `20261124T023000.000Z-10.0.0.7-6379`, as `snapshot list` prints it)"
                ),
            );
            None
        }
    }
}

/// `encryption`: the recipients file is required (an encryption section that cannot encrypt
/// would store plain snapshots unnoticed). Only where the keys are read is checked here
/// (validation does no I/O); `check` also parses a readable recipients file
/// (`cli::check`), and never reads the identity, a secret.
fn check_encryption(
    c: &mut Checker,
    spec: &EncryptionSpec,
    path: &FieldPath,
) -> Option<Encryption> {
    let recipients_path = path.key("recipientsFile");
    let recipients_file = c
        .required(spec.recipients_file.as_ref(), &recipients_path)
        .and_then(|file| c.check(file_path(file), &recipients_path).map(|()| file));
    let identity = secret_field(
        c,
        (&spec.identity_env, &spec.identity_file),
        ("identityEnv", "identityFile"),
        path,
    );
    Some(Encryption { recipients_file: recipients_file?.into(), identity: identity? })
}

/// `verify`: a cron line no more frequent than a snapshot's (each test streams the whole
/// snapshot and loads it into memory), and how many proven snapshots retention keeps.
fn check_verify(c: &mut Checker, spec: &VerifySpec, path: &FieldPath) -> Option<Verify> {
    let schedule =
        check_schedule(c, spec.schedule.as_ref(), &path.key("schedule"), "restore tests");
    let keep = c.int(spec.keep, &path.key("keep"), Some(1_u32), 0, i64::from(u32::MAX));
    let verifier = match &spec.verifier {
        None => Some(Verifier::default()),
        Some(verifier) => check_verifier(c, verifier, &path.key("verifier")),
    };
    Some(Verify { schedule: schedule?, keep: keep?, verifier: verifier? })
}

/// `verify.verifier`: a StatefulSet's namespace (default: the daemon's) and name, and its
/// Redis port. Whether the target is one it applies to is the policy's check.
fn check_verifier(c: &mut Checker, spec: &VerifierSpec, path: &FieldPath) -> Option<Verifier> {
    let namespace = match &spec.namespace {
        None => Some(None),
        Some(ns) => c.check(dns_label(ns), &path.key("namespace")).map(|()| Some(ns.clone())),
    };
    let name = match &spec.name {
        None => Some(Verifier::DEFAULT_NAME.to_owned()),
        Some(name) => c.check(dns_subdomain(name), &path.key("name")).map(|()| name.clone()),
    };
    let port = c.int(spec.port, &path.key("port"), Some(6379_u16), 1, 65535);
    Some(Verifier { namespace: namespace?, name: name?, port: port? })
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
    use crate::policy::validate::testing::*;

    #[rstest]
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
    #[case::bootstrap_neither_latest_nor_an_id(
        "  snapshots: {schedule: '0 0 3 * * *', destination: 's3://b', bootstrap: newest}\n",
        "spec.snapshots.bootstrap",
        5,
        74,
        "`newest` is neither `latest` nor a snapshot id"
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

    /// `verify`: a schedule is required and fires no more often than snapshots may, `keep`
    /// is a count, and an unknown field is named; each reported at its field, all at once.
    #[rstest]
    #[case::schedule_missing(
        "{keep: 2}",
        "spec.snapshots.verify.schedule",
        "missing required field `schedule`"
    )]
    #[case::schedule_garbage("{schedule: 'every day'}", "spec.snapshots.verify.schedule", "")]
    #[case::too_often(
        "{schedule: '0 * * * * *'}",
        "spec.snapshots.verify.schedule",
        "restore tests may run at most every"
    )]
    #[case::keep_negative(
        "{schedule: '0 0 4 * * *', keep: -1}",
        "spec.snapshots.verify.keep",
        "must be at least 0"
    )]
    #[case::unknown_field(
        "{schedule: '0 0 4 * * *', every: 2}",
        "spec.snapshots.verify.every",
        "schedule, keep"
    )]
    fn a_bad_verify_section_is_reported_at_its_field(
        #[case] verify: &str,
        #[case] path: &str,
        #[case] message: &str,
    ) {
        let text = format!(
            "{HEAD}{TARGET}  snapshots: {{schedule: '0 0 3 * * *', destination: 's3://b', verify: {verify}}}\n"
        );
        let problem = problem_at(&text, path);
        assert!(problem.message.contains(message), "`{message}` not in {problem}");
        assert_eq!(problem.line, 6, "{problem}");
    }

    #[test]
    fn verify_is_parsed_with_keep_defaulting_to_one() {
        let text = |verify: &str| {
            format!(
                "{HEAD}{TARGET}  snapshots: {{schedule: '0 0 3 * * *', destination: 's3://b'{verify}}}\n"
            )
        };
        let snapshots =
            |t: String| load_policy_str("t.yaml", &t).expect("valid").snapshots.expect("set");
        assert_eq!(snapshots(text("")).verify, None);
        let verify = snapshots(text(", verify: {schedule: '0 30 4 * * *'}")).verify.expect("set");
        assert_eq!((verify.schedule.as_str(), verify.keep), ("0 30 4 * * *", 1));
        let verify =
            snapshots(text(", verify: {schedule: '0 30 4 * * 0', keep: 0}")).verify.expect("set");
        assert_eq!(verify.keep, 0);
        assert_eq!(verify.verifier, crate::policy::Verifier::default());
    }

    /// `verify.verifier` on a StatefulSet target: the defaults (the daemon's namespace,
    /// `redis-autopilot-verifier`, 6379), or what is written.
    #[test]
    fn a_verifier_defaults_to_the_one_deploy_ships() {
        let text = |verifier: &str| {
            format!(
                "{HEAD}  target: {{kubernetes: {{namespace: cache, statefulSet: redis}}}}\n  \
                 snapshots: {{schedule: '0 0 3 * * *', destination: 's3://b', verify: \
                 {{schedule: '0 30 4 * * *'{verifier}}}}}\n"
            )
        };
        let verifier = |t: String| {
            let policy = load_policy_str("t.yaml", &t).expect("valid");
            policy.snapshots.expect("set").verify.expect("set").verifier
        };
        let default = verifier(text(""));
        assert_eq!(
            (default.namespace, default.name.as_str(), default.port),
            (None, "redis-autopilot-verifier", 6379)
        );
        let written = verifier(text(", verifier: {namespace: ops, name: proof, port: 7000}"));
        assert_eq!(
            (written.namespace.as_deref(), written.name.as_str(), written.port),
            (Some("ops"), "proof", 7000)
        );
    }

    /// A bad verifier is reported at its field: a name Kubernetes refuses, a port out of
    /// range, the target StatefulSet itself, or a target that starts its own scratch.
    #[rstest]
    #[case::namespace(
        "kubernetes: {namespace: cache, statefulSet: redis}",
        "{namespace: Ops}",
        "spec.snapshots.verify.verifier.namespace",
        "DNS-1123 label"
    )]
    #[case::name(
        "kubernetes: {namespace: cache, statefulSet: redis}",
        "{name: 'a_b'}",
        "spec.snapshots.verify.verifier.name",
        "DNS-1123 subdomain"
    )]
    #[case::port(
        "kubernetes: {namespace: cache, statefulSet: redis}",
        "{port: 0}",
        "spec.snapshots.verify.verifier.port",
        "must be at least 1"
    )]
    #[case::the_fleet_itself(
        "kubernetes: {namespace: cache, statefulSet: redis}",
        "{namespace: cache, name: redis}",
        "spec.snapshots.verify.verifier.name",
        "names the target StatefulSet cache/redis"
    )]
    #[case::local_target(
        "local: {basePort: 7000, dataDir: /tmp/d}",
        "{name: proof}",
        "spec.snapshots.verify.verifier",
        "applies only to a `kubernetes` target"
    )]
    #[case::endpoints_target(
        "endpoints: ['a:1']",
        "{}",
        "spec.snapshots.verify.verifier",
        "applies only to a `kubernetes` target"
    )]
    fn a_bad_verifier_is_reported_at_its_field(
        #[case] target: &str,
        #[case] verifier: &str,
        #[case] path: &str,
        #[case] message: &str,
    ) {
        let text = format!(
            "{HEAD}  target: {{{target}}}\n  snapshots: {{schedule: '0 0 3 * * *', destination: \
             's3://b', verify: {{schedule: '0 30 4 * * *', verifier: {verifier}}}}}\n"
        );
        let problem = problem_at(&text, path);
        assert!(problem.message.contains(message), "`{message}` not in {problem}");
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

    /// A credential written inline is refused with where to read it from instead, and its
    /// value is never echoed: whichever of the stores' secrets it is.
    #[rstest]
    fn an_inline_credential_is_refused_with_a_hint_and_never_echoed(
        #[values(
            "accessKeyId",
            "secretAccessKey",
            "sessionToken",
            "serviceAccountKey",
            "accountKey"
        )]
        field: &str,
    ) {
        let text = format!(
            "{HEAD}{TARGET}  snapshots: {{schedule: '0 0 3 * * *', destination: 's3://b', \
             credentials: {{{field}: s3cr3t-VALUE}}}}\n"
        );
        let problem = problem_at(&text, &format!("spec.snapshots.credentials.{field}"));
        assert!(problem.message.contains("never written in a policy"), "{problem}");
        assert!(!problem.to_string().contains("s3cr3t-VALUE"), "{problem}");
    }

    fn encrypted(fields: &str) -> String {
        format!(
            "{HEAD}{TARGET}  snapshots: {{schedule: '0 0 3 * * *', destination: 'file:///b', \
             encryption: {{{fields}}}}}\n"
        )
    }

    /// Encryption reads its keys from files or the environment; a section that cannot
    /// encrypt, two sources for the identity, or an identity written inline are refused at
    /// their field.
    #[rstest]
    #[case::recipients_missing(
        "identityFile: /k",
        "spec.snapshots.encryption.recipientsFile",
        "missing required field `recipientsFile`"
    )]
    #[case::recipients_empty_path(
        "recipientsFile: ' '",
        "spec.snapshots.encryption.recipientsFile",
        "must be a file path"
    )]
    #[case::identity_twice(
        "recipientsFile: /r, identityFile: /k, identityEnv: AGE_KEY",
        "spec.snapshots.encryption.identityFile",
        "a secret is read from one place"
    )]
    #[case::identity_env_name(
        "recipientsFile: /r, identityEnv: 'age key'",
        "spec.snapshots.encryption.identityEnv",
        "must be an environment variable name"
    )]
    #[case::identity_inline(
        "recipientsFile: /r, identity: AGE-SECRET-KEY-1QQQ",
        "spec.snapshots.encryption.identity",
        "never written in a policy"
    )]
    fn a_broken_encryption_section_is_reported_at_its_field(
        #[case] fields: &str,
        #[case] path: &str,
        #[case] message: &str,
    ) {
        let problem = problem_at(&encrypted(fields), path);
        assert!(problem.message.contains(message), "`{message}` not in {problem}");
        assert!(!problem.to_string().contains("AGE-SECRET-KEY-1QQQ"), "{problem}");
    }

    #[test]
    fn a_valid_encryption_section_is_parsed_and_its_identity_file_is_a_secret_file() {
        let loaded = load_policy_str(
            "t.yaml",
            &encrypted("recipientsFile: /nonexistent/recipients, identityFile: /run/age/key"),
        )
        .expect("valid");
        let snapshots = loaded.snapshots.as_ref().unwrap();
        assert_eq!(
            snapshots.encryption,
            Some(Encryption {
                recipients_file: "/nonexistent/recipients".into(),
                identity: Some(file("/run/age/key")),
            })
        );
        let secret_files = loaded.secret_files();
        assert!(
            secret_files
                .iter()
                .any(|(field, path)| *field == "spec.snapshots.encryption.identityFile"
                    && *path == std::path::Path::new("/run/age/key")),
            "{secret_files:?}"
        );
        let loaded = load_policy_str("t.yaml", &encrypted("recipientsFile: /r, identityEnv: K"))
            .expect("valid");
        let encryption = loaded.snapshots.unwrap().encryption.unwrap();
        assert_eq!(encryption.identity, Some(env("K")));
    }
}
