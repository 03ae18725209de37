//! `redis-autopilot run`: the daemon.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use crate::act::{Mode, RateLimit};
use crate::cluster::kubernetes::lease::LeaseConfig;
use crate::daemon::leader::LeaseSettings;
use crate::daemon::policy_loop::Shared;
use crate::daemon::supervisor::{ResourceScope, RunConfig, run as run_daemon};
use crate::daemon::{HttpLimits, WebhookAccess};
use crate::policy::SecretSource;

/// Runs the daemon: one loop per policy in PATH and, with --resources, per RedisPolicy
/// object (sample -> decide -> act on each policy's
/// sampling interval), HTTP on --listen (/healthz, /readyz, /metrics, /v1/decisions,
/// POST /v1/alerts). Reloads policies on SIGHUP and when a file changes; an invalid edit is
/// rejected with check's diagnostics and the running version stays. SIGTERM or SIGINT stops
/// taking work, lets in-flight actions finish, and exits.
///
/// Example: redis-autopilot run --policies policies/ --dry-run --listen 127.0.0.1:9187
#[derive(Debug, clap::Args)]
pub struct Args {
    /// A directory of policy files (*.yaml, *.yml; searched recursively), or one policy file.
    /// `--policy`, as the other commands spell it, is the same flag.
    #[arg(
        long,
        visible_alias = "policy",
        value_name = "PATH",
        required_unless_present = "resources"
    )]
    policies: Option<PathBuf>,
    /// Also run the RedisPolicy objects of the API server (the CRD, deploy/base/crd.yaml), in
    /// --resources-namespace or in every namespace. Each object's status says what the
    /// daemon makes of it; an invalid one is never run, and its previous valid spec keeps
    /// running.
    #[arg(long)]
    resources: bool,
    /// The namespace whose RedisPolicy objects run [default: $POD_NAMESPACE, else the
    /// client's namespace].
    #[arg(long, value_name = "NS", requires = "resources", conflicts_with = "all_namespaces")]
    resources_namespace: Option<String>,
    /// Run the RedisPolicy objects of every namespace (the rules of
    /// deploy/base/rbac-policies.yaml in a ClusterRole: docs/deploy.md).
    #[arg(long, requires = "resources")]
    all_namespaces: bool,
    /// Decide and report every action (logs, metrics, /v1/decisions) without performing it.
    #[arg(long, conflicts_with = "paused")]
    dry_run: bool,
    /// Decide and explain, but neither perform nor report actions as dry runs.
    #[arg(long)]
    paused: bool,
    /// Address of the HTTP endpoints.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9187")]
    listen: SocketAddr,
    /// At most this many actions per policy per hour, however the decisions flap.
    #[arg(long, value_name = "N", default_value_t = 30)]
    max_actions_per_hour: u32,
    /// File holding the bearer token POST /v1/alerts requires. Without a token the webhook is
    /// disabled (404).
    #[arg(long, value_name = "FILE", conflicts_with = "alerts_token_env")]
    alerts_token_file: Option<PathBuf>,
    /// Environment variable holding the bearer token POST /v1/alerts requires.
    #[arg(long, value_name = "NAME")]
    alerts_token_env: Option<String>,
    /// Serve POST /v1/alerts without a token: anyone who reaches the port can trigger
    /// scale-ups, evaluations and snapshots. Only behind a NetworkPolicy, or for tests.
    #[arg(long, conflicts_with_all = ["alerts_token_file", "alerts_token_env"])]
    webhook_insecure_no_token: bool,
    /// HTTP connections open at once; past it a new one is accepted and closed. Never more
    /// than half the open-file limit.
    #[arg(long, value_name = "N", default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..))]
    http_max_connections: u32,
    /// How long an HTTP caller has to send a request's headers (or a webhook body); an idle
    /// keep-alive connection is closed after it too.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = positive_duration)]
    http_read_timeout: Duration,
    #[command(flatten)]
    lease: LeaseArgs,
    #[command(flatten)]
    kube: super::KubeArgs,
}

/// Leader election for StatefulSet targets: only the daemon holding the Lease acts; the
/// others sample and decide, and drop (and count) their actions. A new leader acts at most
/// --lease-duration + --retry-period after the old one died.
#[derive(Debug, clap::Args)]
struct LeaseArgs {
    /// Prefix of the coordination.k8s.io/v1 Leases: each policy's is `NAME-POLICY`.
    #[arg(long, value_name = "NAME", default_value = "redis-autopilot")]
    lease_name: String,
    /// Namespace of the Lease [default: $POD_NAMESPACE, else the client's namespace].
    #[arg(long, value_name = "NS")]
    lease_namespace: Option<String>,
    /// This daemon's identity in the Lease and in Events [default: $POD_NAME, else $HOSTNAME].
    #[arg(long, value_name = "ID")]
    identity: Option<String>,
    /// How long a leader's claim lasts without renewal (whole seconds).
    #[arg(long, value_name = "DURATION", default_value = "15s", value_parser = humantime::parse_duration)]
    lease_duration: Duration,
    /// The leader stops acting when it could not renew for this long (< --lease-duration).
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = humantime::parse_duration)]
    renew_deadline: Duration,
    /// How often the leader renews and a standby retries (< --renew-deadline).
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = humantime::parse_duration)]
    retry_period: Duration,
    /// The URL other replicas reach this daemon's HTTP port on, written into the Leases it
    /// holds: a replica that receives an alert for a policy it does not lead sends it on
    /// there [default: http://$POD_IP:PORT, PORT from --listen; without POD_IP, none: a
    /// standby refuses such alerts and Alertmanager retries].
    #[arg(long, value_name = "URL")]
    advertise_url: Option<String>,
}

impl LeaseArgs {
    fn settings(self, listen: SocketAddr) -> anyhow::Result<LeaseSettings> {
        let advertise_url = self.advertise_url.or_else(|| {
            let ip = std::env::var("POD_IP").ok().filter(|ip| !ip.is_empty())?;
            let ip: std::net::IpAddr = ip.parse().ok()?;
            Some(format!("http://{}", SocketAddr::new(ip, listen.port())))
        });
        let settings = LeaseSettings {
            advertise_url,
            name: self.lease_name,
            namespace: self.lease_namespace,
            identity: self.identity,
            lease_duration: self.lease_duration,
            renew_deadline: self.renew_deadline,
            retry_period: self.retry_period,
        };
        let check = LeaseConfig {
            name: settings.name.clone(),
            namespace: String::new(),
            identity: String::new(),
            lease_duration: settings.lease_duration,
            renew_deadline: settings.renew_deadline,
            retry_period: settings.retry_period,
        };
        check.validate().map_err(|why| anyhow::anyhow!("leader election: {why}"))?;
        Ok(settings)
    }
}

fn positive_duration(text: &str) -> Result<Duration, String> {
    match humantime::parse_duration(text) {
        Ok(duration) if duration.is_zero() => Err("must be positive".to_owned()),
        Ok(duration) => Ok(duration),
        Err(error) => Err(error.to_string()),
    }
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let mode = if args.dry_run {
        Mode::DryRun
    } else if args.paused {
        Mode::Paused
    } else {
        Mode::Apply
    };
    let webhook = match (args.alerts_token_file, args.alerts_token_env) {
        (Some(file), _) => WebhookAccess::Token(SecretSource::File(file)),
        (None, Some(name)) => WebhookAccess::Token(SecretSource::Env(name)),
        (None, None) if args.webhook_insecure_no_token => WebhookAccess::InsecureNoToken,
        (None, None) => WebhookAccess::Disabled,
    };
    let http = HttpLimits {
        max_connections: args.http_max_connections as usize,
        read_timeout: args.http_read_timeout,
        ..HttpLimits::default()
    };
    let resources = match (args.resources, args.all_namespaces) {
        (false, _) => None,
        (true, true) => Some(ResourceScope::AllNamespaces),
        (true, false) => Some(ResourceScope::Namespace(args.resources_namespace)),
    };
    let config = RunConfig {
        policies: args.policies,
        resources,
        mode,
        listen: args.listen,
        rate_limit: RateLimit { max: args.max_actions_per_hour, window: Duration::from_secs(3600) },
        webhook,
        http,
        kube: args.kube.options(),
        lease: args.lease.settings(args.listen)?,
    };
    let runtime = super::runtime()?;
    runtime.block_on(run_daemon(config, Shared::new()))?;
    Ok(ExitCode::SUCCESS)
}
