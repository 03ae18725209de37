//! The built `redis-autopilot run` binary on a policy directory of the test's own, observed
//! the way an operator would: `/readyz`, `/metrics`, its log and `/proc`. Stopped with SIGTERM
//! (then SIGKILL) on drop.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use prometheus_parse::{Scrape, Value};
use tempfile::TempDir;

use super::{free_port, require};

/// How to start the daemon, beyond its policies.
#[derive(Default)]
pub struct Options {
    /// Arguments after `run --policies DIR --listen ADDR`.
    pub args: Vec<String>,
    /// Environment variables for the daemon.
    pub env: Vec<(String, String)>,
    /// Run under `prlimit --nofile=N:N`.
    pub max_fds: Option<u64>,
}

/// How long a daemon gets to exit after SIGTERM.
pub const STOP_GRACE: Duration = Duration::from_secs(10);

pub struct Daemon {
    pub child: Child,
    pub http: u16,
    /// The `--policies` directory.
    pub policies: PathBuf,
    log_path: PathBuf,
    runtime: tokio::runtime::Runtime,
    client: reqwest::Client,
    // Last: removed once the daemon is gone.
    pub dir: TempDir,
}

impl Daemon {
    /// Starts the daemon on `policies` (file name, text), in a temp dir of its own, without
    /// waiting for it to be ready.
    pub fn spawn(policies: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        Self::spawn_in(dir, policies)
    }

    /// [`Daemon::spawn`] in `dir`, which may hold what the policies refer to (secrets, data).
    pub fn spawn_in(dir: TempDir, policies: &[(&str, &str)]) -> Self {
        Self::spawn_with(dir, policies, &Options::default())
    }

    /// [`Daemon::spawn_in`] with `options`; its log is `daemon.log` in `dir`.
    pub fn spawn_with(dir: TempDir, policies: &[(&str, &str)], options: &Options) -> Self {
        let policy_dir = dir.path().join("policies");
        std::fs::create_dir_all(&policy_dir).expect("create the policy dir");
        for (name, text) in policies {
            std::fs::write(policy_dir.join(name), text).expect("write a policy");
        }
        let log_path = dir.path().join("daemon.log");
        let log = std::fs::File::create(&log_path).expect("create the daemon log");
        let http = free_port();
        let binary = env!("CARGO_BIN_EXE_redis-autopilot");
        let mut command = match options.max_fds {
            Some(n) => {
                let mut command = Command::new(require("prlimit", "util-linux"));
                command.arg(format!("--nofile={n}:{n}")).arg("--").arg(binary);
                command
            }
            None => Command::new(binary),
        };
        let child = command
            .arg("run")
            .arg("--policies")
            .arg(&policy_dir)
            .args(["--listen", &format!("127.0.0.1:{http}")])
            .args(&options.args)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .envs(options.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn redis-autopilot");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .expect("HTTP client");
        Self { child, http, policies: policy_dir, log_path, runtime, client, dir }
    }

    /// Waits until `/readyz` answers 200, or the daemon exits: `Err` with its status.
    pub fn ready_or_exit(&mut self, limit: Duration) -> Result<(), ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(status);
            }
            if self.ready() {
                return Ok(());
            }
            assert!(Instant::now() < deadline, "/readyz not 200 within {limit:?}:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Polls `probe` every 200 ms until it returns `Some`; panics naming `what`, with the log,
    /// after `limit` or if the daemon exited.
    pub fn wait_until<T>(
        &mut self,
        limit: Duration,
        what: &str,
        mut probe: impl FnMut(&Self) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(value) = probe(self) {
                return value;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "{what}: the daemon exited with {status}\n--- daemon log ---\n{}",
                    self.log()
                );
            }
            if Instant::now() >= deadline {
                panic!("{what}: not within {limit:?}\n--- daemon log ---\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub fn try_get(&self, path: &str) -> Option<(u16, String)> {
        let url = format!("http://127.0.0.1:{}{path}", self.http);
        self.runtime.block_on(async {
            let response = self.client.get(url).send().await.ok()?;
            let status = response.status().as_u16();
            Some((status, response.text().await.ok()?))
        })
    }

    pub fn ready(&self) -> bool {
        self.try_get("/readyz").is_some_and(|(status, _)| status == 200)
    }

    /// Waits until `/readyz` answers 200.
    pub fn wait_ready(&mut self, limit: Duration) {
        self.wait_until(limit, "/readyz 200", |d| d.ready().then_some(()));
    }

    /// `POST /v1/alerts` with `body` and `token` as the bearer token, if any: the status.
    pub fn post_alerts(&self, token: Option<&str>, body: &str) -> u16 {
        let url = format!("http://127.0.0.1:{}/v1/alerts", self.http);
        self.runtime.block_on(async {
            let mut request = self
                .client
                .post(url)
                .header("content-type", "application/json")
                .body(body.to_owned());
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            request.send().await.expect("POST /v1/alerts").status().as_u16()
        })
    }

    /// `/metrics`, parsed; `None` while it does not answer.
    pub fn metrics(&self) -> Option<Scrape> {
        let (status, text) = self.try_get("/metrics")?;
        (status == 200).then(|| {
            Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).expect("/metrics parses")
        })
    }

    /// The sum of every sample of `name` whose labels include all of `labels` (0 when none).
    pub fn metric(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let scrape = self.metrics()?;
        Some(
            scrape
                .samples
                .iter()
                .filter(|s| s.metric == name)
                .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
                .map(|s| match s.value {
                    Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => v,
                    ref other => panic!("{name}: unexpected {other:?}"),
                })
                .sum(),
        )
    }

    /// Replaces a policy file in one rename, so the daemon never reads half of it.
    pub fn write_policy(&self, name: &str, text: &str) {
        let temp = self.dir.path().join(format!("{name}.tmp"));
        std::fs::write(&temp, text).expect("write the new policy");
        std::fs::rename(&temp, self.policies.join(name)).expect("rename the policy into place");
    }

    /// A `/proc/PID/status` field in kB (`VmRSS`, `VmHWM`).
    pub fn status_kb(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("read /proc/PID/status");
        status
            .lines()
            .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|value| value.trim().strip_suffix("kB")?.trim().parse().ok())
            .unwrap_or_else(|| panic!("{field} in {status}"))
    }

    pub fn signal(&self, signal: &str) {
        signal_pid(self.pid(), signal);
    }

    /// SIGTERM, then SIGKILL after [`STOP_GRACE`]. Whether it exited on SIGTERM.
    pub fn stop(&mut self) -> bool {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return true;
        }
        signal_pid(self.pid(), "TERM");
        let deadline = Instant::now() + STOP_GRACE;
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        false
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `kill -SIGNAL PID`; panics if it was not delivered.
pub fn signal_pid(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{signal} {pid}");
}

/// The pid a local fleet's instance `ordinal` wrote in `data_dir`.
pub fn instance_pid(data_dir: &Path, ordinal: u16) -> Option<u32> {
    let text =
        std::fs::read_to_string(data_dir.join(ordinal.to_string()).join("redis.pid")).ok()?;
    text.trim().parse().ok()
}

/// The recorded master of a local fleet (`dataDir/state.json`), once there is one.
pub fn recorded_master(data_dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(data_dir.join("state.json")).ok()?;
    let state: serde_json::Value = serde_json::from_str(&text).ok()?;
    state["master"].as_str().map(str::to_owned)
}
