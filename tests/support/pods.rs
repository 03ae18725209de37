//! A StatefulSet whose pods are real: the fake API server holding StatefulSet `redis-session`
//! with three running pods, each with a real redis-server on its own loopback IP (so replicas
//! connect from their pod's address), plus a kubeconfig for the fake and a policy directory.
//! The end-to-end Kubernetes tests (`kube_daemon`, `partition`) drive a daemon against it.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::json;
use tempfile::TempDir;

use super::failover::{connect_at, info_field_at, wait_until};
use super::kube_fake::KubeFake;
use super::{Redis, free_port};

/// As in `deploy/`: the Redis StatefulSet's namespace and name (its Role names it), and the
/// daemon's own namespace (`POD_NAMESPACE`), where its Lease lives.
pub const NS: &str = "cache";
pub const SET: &str = "redis-session";
pub const LEASE_NS: &str = "redis-autopilot";
/// The daemon's `--lease-name` default: each policy's Lease is `redis-autopilot-POLICY`.
pub const LEASE_PREFIX: &str = "redis-autopilot";
pub const IPS: [&str; 3] = ["127.0.0.1", "127.0.0.2", "127.0.0.3"];
pub const MASTER_ANNOTATION: &str = "redis-autopilot.io/master";
pub const EPOCH_ANNOTATION: &str = "redis-autopilot.io/epoch";
pub const ROLE_LABEL: &str = "redis-autopilot.io/role";
/// How long a wait on the pods may take before the test fails with their state.
pub const DEADLINE: Duration = Duration::from_secs(15);

/// The fake API server on a runtime the test keeps, the pods' Redis servers, and the temp dir
/// holding the kubeconfig, the policy and the daemons' logs.
pub struct Pods {
    pub fake: KubeFake,
    /// The one port every pod's Redis listens on, each on its own IP.
    pub port: u16,
    /// `--min-replicas-max-lag`, as deploy/examples/redis sets it.
    max_lag_secs: u64,
    /// By ordinal; `None` while that pod's Redis is dead.
    redis: Vec<Option<Redis>>,
    pub dir: TempDir,
    pub runtime: tokio::runtime::Runtime,
}

impl Pods {
    /// Starts the fake and the three pods, each Redis booted as a replica of itself with the
    /// write guard at `max_lag_secs`, and writes the policy `policy(port)`. Everything is
    /// world-readable, so a daemon run as another user (`nobody`) can read it.
    pub fn start(max_lag_secs: u64, policy: impl FnOnce(u16) -> String) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a runtime for the fake");
        let fake = runtime.block_on(KubeFake::start());
        fake.add_statefulset(NS, SET, 3, json!({}));
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod the temp dir");
        let port = free_port_on_every_ip();
        let mut pods = Self { fake, port, max_lag_secs, redis: Vec::new(), dir, runtime };
        for (ordinal, ip) in IPS.iter().enumerate() {
            pods.fake.add_pod(NS, SET, ordinal as u16, ip);
            pods.redis.push(None);
            pods.boot(ordinal, true);
        }
        // The kubeconfig's namespace is not the Lease's: POD_NAMESPACE must win.
        pods.fake.write_kubeconfig(&pods.kubeconfig(), "default");
        std::fs::create_dir(pods.policies()).expect("policy dir");
        std::fs::write(pods.policy_file(), policy(port)).expect("write the policy");
        for path in [pods.kubeconfig(), pods.policy_file()] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        }
        pods
    }

    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("kubeconfig")
    }

    pub fn policies(&self) -> PathBuf {
        self.dir.path().join("policies")
    }

    /// The one policy file in [`Pods::policies`], for the CLI's `--policy`.
    pub fn policy_file(&self) -> PathBuf {
        self.policies().join("policy.yaml")
    }

    /// Starts pod `ordinal`'s Redis with the example StatefulSet's settings: booted as a
    /// replica of itself (as its start.sh does when no master is labelled), or, `replica`
    /// false, misconfigured as a master. Replicas connect from their own pod IP.
    pub fn boot(&mut self, ordinal: usize, replica: bool) {
        let (ip, port, max_lag) = (IPS[ordinal], self.port.to_string(), self.max_lag_secs);
        let max_lag = max_lag.to_string();
        let mut args = vec![
            "--repl-ping-replica-period",
            "1",
            "--min-replicas-to-write",
            "1",
            "--min-replicas-max-lag",
            &max_lag,
            // Protected mode accepts only 127.0.0.1 and ::1 as clients without a password.
            "--protected-mode",
            "no",
            "--bind-source-addr",
            ip,
        ];
        if replica {
            args.extend(["--replicaof", ip, &port]);
        }
        self.redis[ordinal] = Some(Redis::start_at(ip, self.port, &args));
    }

    /// `kill -9` of pod `ordinal`'s Redis (the pod itself stays running, as when its process
    /// dies and before the kubelet notices).
    pub fn kill(&mut self, ordinal: usize) {
        let redis = self.redis[ordinal].take().expect("a running redis");
        redis.process.signal("KILL");
    }

    pub fn live(&self) -> impl Iterator<Item = usize> + '_ {
        (0..IPS.len()).filter(|&o| self.redis[o].is_some())
    }

    pub fn addrs(&self) -> Vec<(String, u16)> {
        IPS.iter().map(|ip| ((*ip).to_owned(), self.port)).collect()
    }

    pub fn info(&self, ordinal: usize, field: &str) -> Option<String> {
        info_field_at(IPS[ordinal], self.port, field)
    }

    pub fn connect(&self, ordinal: usize) -> redis::Connection {
        connect_at(IPS[ordinal], self.port, Duration::from_secs(5)).expect("connect to redis")
    }

    /// The pods whose Redis reports role master.
    pub fn masters(&self) -> Vec<usize> {
        self.live().filter(|&o| self.info(o, "role").as_deref() == Some("master")).collect()
    }

    /// The record in the StatefulSet's annotations: the master's ordinal and the epoch.
    pub fn record(&self) -> Option<(usize, u64)> {
        let set = self.fake.statefulset(NS, SET);
        let annotations = &set["metadata"]["annotations"];
        let master = annotations[MASTER_ANNOTATION].as_str()?;
        let ordinal = master.strip_prefix(&format!("{SET}-"))?.parse().ok()?;
        Some((ordinal, annotations[EPOCH_ANNOTATION].as_str()?.parse().ok()?))
    }

    pub fn label(&self, ordinal: usize) -> Option<String> {
        let pod = self.fake.pod(NS, &format!("{SET}-{ordinal}"));
        pod["metadata"]["labels"][ROLE_LABEL].as_str().map(str::to_owned)
    }

    /// Who holds `policy`'s Lease.
    pub fn holder(&self, policy: &str) -> Option<String> {
        let lease = self.fake.lease(LEASE_NS, &lease_name(policy))?;
        lease["spec"]["holderIdentity"].as_str().map(str::to_owned)
    }

    /// `PROGRAM ARGS --kubeconfig KUBECONFIG` with no `$KUBECONFIG`: a command run from a
    /// laptop against the fake. Its stdout; a failure shows both streams and `log()`.
    pub fn cli(&self, program: &Path, args: &[&str], log: impl Fn() -> String) -> String {
        let output = std::process::Command::new(program)
            .args(args)
            .arg("--kubeconfig")
            .arg(self.kubeconfig())
            .env_remove("KUBECONFIG")
            .output()
            .unwrap_or_else(|e| panic!("run {}: {e}", program.display()));
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{args:?}: {stdout}\n{stderr}\n{}", log());
        stdout
    }

    /// What the pods look like now, for failure messages.
    pub fn describe(&self) -> String {
        let mut text = format!("record {:?}\n", self.record());
        for (ordinal, ip) in IPS.iter().enumerate() {
            let field = |f: &str| self.info(ordinal, f).unwrap_or_else(|| "-".into());
            text.push_str(&format!(
                "{SET}-{ordinal} {ip}: label {:?}, role {}, master {}, link {}\n",
                self.label(ordinal),
                field("role"),
                field("master_host"),
                field("master_link_status"),
            ));
        }
        text
    }

    /// Waits until the record names a master at `epoch`, its Redis (alone) reports role
    /// master, every other live pod's Redis replicates it with the link up, and the role
    /// labels say so. Returns the master's ordinal.
    pub fn wait_healthy(&self, epoch: u64, log: impl Fn() -> String + Copy) -> usize {
        wait_until(
            DEADLINE,
            &format!("one master recorded at epoch {epoch}, labelled, replicated"),
            || format!("{}\n{}", self.describe(), log()),
            || {
                let (master, recorded) = self.record()?;
                assert!(recorded <= epoch, "epoch {recorded}, beyond {epoch}\n{}", log());
                (recorded == epoch).then_some(())?;
                (self.info(master, "role")? == "master").then_some(())?;
                (self.label(master)? == "master").then_some(())?;
                for other in self.live().filter(|&o| o != master) {
                    (self.info(other, "role")? == "slave").then_some(())?;
                    (self.info(other, "master_host")? == IPS[master]).then_some(())?;
                    (self.info(other, "master_port")? == self.port.to_string()).then_some(())?;
                    (self.info(other, "master_link_status")? == "up").then_some(())?;
                    (self.label(other)? == "replica").then_some(())?;
                }
                Some(master)
            },
        )
    }
}

/// A port free on all three pod IPs.
fn free_port_on_every_ip() -> u16 {
    loop {
        let port = free_port();
        if IPS.iter().all(|ip| std::net::TcpListener::bind((*ip, port)).is_ok()) {
            return port;
        }
    }
}

/// A daemon's log file with its path as a heading, for failure messages.
pub fn read_log(path: &std::path::Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    format!("--- {} ---\n{text}", path.display())
}

/// `policy`'s Lease, as the daemon names it (`redis_autopilot::daemon::leader::lease_name`).
pub fn lease_name(policy: &str) -> String {
    format!("{LEASE_PREFIX}-{policy}")
}

/// The daemon tests' short leases: a standby takes over within about a second.
pub const LEASE_FLAGS: [&str; 6] =
    ["--lease-duration", "1s", "--renew-deadline", "600ms", "--retry-period", "100ms"];

/// `redis-autopilot run` on the pods' kubeconfig and policy directory, with short leases, in
/// an environment with no identity (`POD_NAME`, `HOSTNAME`) and `POD_NAMESPACE` set as in
/// deploy/; its stderr goes to `NAME.log` in the pods' temp dir. Killed on drop.
pub struct PodsDaemon {
    child: Option<std::process::Child>,
    /// Its `--listen` port.
    pub http: u16,
    pub log_path: PathBuf,
}

impl PodsDaemon {
    /// Runs the daemon with `extra` flags and `env` on top of that environment.
    pub fn start(pods: &Pods, name: &str, extra: &[&str], env: &[(&str, &str)]) -> Self {
        Self::start_as(pods, name, &[], extra, env)
    }

    /// Runs the daemon on the RedisPolicy objects of [`LEASE_NS`] (`run --resources`, its
    /// `POD_NAMESPACE`) instead of the policy directory.
    pub fn on_resources(pods: &Pods, name: &str, extra: &[&str]) -> Self {
        Self::spawn(pods, name, &[], Source::Resources, extra, &[])
    }

    /// [`PodsDaemon::start`] under `wrapper` (a command and its arguments, ending with `--`,
    /// which runs the binary: `setpriv ... --` to run it as another user).
    pub fn start_as(
        pods: &Pods,
        name: &str,
        wrapper: &[&str],
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Self {
        Self::spawn(pods, name, wrapper, Source::Directory, extra, env)
    }

    fn spawn(
        pods: &Pods,
        name: &str,
        wrapper: &[&str],
        source: Source,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Self {
        let binary = env!("CARGO_BIN_EXE_redis-autopilot");
        let mut command = match wrapper.split_first() {
            Some((program, args)) => {
                let mut command = std::process::Command::new(program);
                command.args(args).arg(binary);
                command
            }
            None => std::process::Command::new(binary),
        };
        let log_path = pods.dir.path().join(format!("{name}.log"));
        let http = super::free_port();
        let stderr = std::fs::File::create(&log_path).expect("daemon log");
        command.arg("run").arg("--kubeconfig").arg(pods.kubeconfig());
        match source {
            Source::Directory => command.arg("--policies").arg(pods.policies()),
            Source::Resources => command.arg("--resources"),
        };
        let child = command
            .args(["--listen", &format!("127.0.0.1:{http}")])
            .args(LEASE_FLAGS)
            .args(extra)
            .env_remove("POD_NAME")
            .env_remove("HOSTNAME")
            .env_remove("KUBECONFIG")
            .env("POD_NAMESPACE", LEASE_NS)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .envs(env.iter().copied())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("spawn redis-autopilot");
        Self { child: Some(child), http, log_path }
    }

    pub fn log(&self) -> String {
        read_log(&self.log_path)
    }

    /// `redis_autopilot_samples_total` of `policy`, summed over sources and outcomes: it
    /// grows by one per pod every sampling round. 0 while the daemon does not answer.
    pub fn samples(&self, runtime: &tokio::runtime::Runtime, policy: &str) -> f64 {
        use prometheus_parse::{Scrape, Value};
        let url = format!("http://127.0.0.1:{}/metrics", self.http);
        let Some(text) =
            runtime.block_on(async { reqwest::get(url).await.ok()?.text().await.ok() })
        else {
            return 0.0;
        };
        let scrape =
            Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).expect("/metrics parses");
        scrape
            .samples
            .iter()
            .filter(|s| s.metric == "redis_autopilot_samples_total")
            .filter(|s| s.labels.get("policy") == Some(policy))
            .map(|s| match s.value {
                Value::Counter(v) | Value::Untyped(v) => v,
                ref other => panic!("samples_total: unexpected {other:?}"),
            })
            .sum()
    }

    /// `kill -9`: no chance to release a Lease.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("kill the daemon");
            child.wait().expect("reap the daemon");
        }
    }
}

/// Where a [`PodsDaemon`] takes its policies from.
enum Source {
    Directory,
    Resources,
}

impl Drop for PodsDaemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A policy `name` on the pods' StatefulSet (pods on `port`): three instances held there, a
/// 1 s sampling round, a fast probe (100 ms, a 2 s `downAfter`, replicas asked), the write
/// guard as `deploy/examples/redis` sets it; `more` (whole sections, indented under `spec:`)
/// is appended.
pub fn three_pod_policy(name: &str, port: u16, more: &str) -> String {
    format!(
        "\
apiVersion: autopilot.redis.io/v1alpha1
kind: RedisPolicy
metadata:
  name: {name}
spec:
  target:
    kubernetes: {{namespace: {NS}, statefulSet: {SET}, port: {port}}}
  sampling:
    interval: 1s
    timeout: 500ms
  scaling:
    minReplicas: 3
    maxReplicas: 3
    metrics:
      - redis: instantaneous_ops_per_sec
        target: 1000000
  health:
    downAfter: 2s
    confirmWithReplicas: true
    probeInterval: 100ms
    probeTimeout: 300ms
    minReplicasToWrite: 1
    minReplicasMaxLag: 10s
{more}"
    )
}
