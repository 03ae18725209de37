//! The built `redis-autopilot run` binary on one `endpoints:` policy over a real
//! `redis-server`, for tests of the daemon as a process: its HTTP surface spoken to in raw
//! HTTP/1.1 over loopback sockets (so a test controls every byte and every connection), its
//! log, and its resources read from `/proc/PID` (open descriptors, resident memory).
//! Stopped with SIGTERM (then SIGKILL) on drop.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use super::Redis;
pub use super::policy_daemon::Options;
use super::policy_daemon::{self, STOP_GRACE};

/// The policy's name; it maps alert `RedisHot` to `evaluate`.
pub const POLICY: &str = "guarded";
/// How long a daemon gets to become ready.
const START_LIMIT: Duration = Duration::from_secs(30);

pub struct Daemon {
    process: policy_daemon::Daemon,
    pub port: u16,
    _redis: Redis,
}

impl Daemon {
    /// Starts the daemon and waits for `/readyz`; panics with its log if it exits first.
    pub fn start(options: Options) -> Self {
        match Self::try_start(options) {
            Ok(daemon) => daemon,
            Err((status, log)) => panic!("the daemon exited with {status} before ready:\n{log}"),
        }
    }

    /// Starts the daemon and waits for `/readyz`, or for its exit: `Err` with its status and
    /// log.
    pub fn try_start(options: Options) -> Result<Self, (ExitStatus, String)> {
        let redis = Redis::master();
        let dir = tempfile::tempdir().expect("temp dir");
        let policy = policy_yaml(&redis.addr());
        let mut process =
            policy_daemon::Daemon::spawn_with(dir, &[("guarded.yaml", &policy)], &options);
        process.ready_or_exit(START_LIMIT).map_err(|status| (status, process.log()))?;
        let port = process.http;
        Ok(Self { process, port, _redis: redis })
    }

    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    pub fn alive(&mut self) -> bool {
        matches!(self.process.child.try_wait(), Ok(None))
    }

    pub fn log(&self) -> String {
        self.process.log()
    }

    /// One request on a new connection (`Connection: close`), answered within 5 s: status
    /// and body; `None` when the connection failed or no answer came.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Option<(u16, String)> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        stream.set_write_timeout(Some(Duration::from_secs(5))).ok()?;
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\
             Content-Length: {}\r\n",
            body.len()
        );
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes()).ok()?;
        stream.write_all(body.as_bytes()).ok()?;
        read_response(&mut stream)
    }

    pub fn get(&self, path: &str) -> Option<(u16, String)> {
        self.request("GET", path, &[], "")
    }

    /// `POST /v1/alerts` with `token` as the bearer token, if any.
    pub fn post_alerts(&self, token: Option<&str>, body: &str) -> Option<(u16, String)> {
        let auth = token.map(|t| format!("Bearer {t}"));
        let mut headers = vec![("Content-Type", "application/json")];
        if let Some(auth) = &auth {
            headers.push(("Authorization", auth));
        }
        self.request("POST", "/v1/alerts", &headers, body)
    }

    /// Polls `GET path` every 100 ms until it answers 200, or panics after `limit`.
    pub fn wait_for_200(&self, path: &str, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        loop {
            if let Some((200, body)) = self.get(path) {
                return body;
            }
            assert!(
                Instant::now() < deadline,
                "GET {path} not 200 within {limit:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The value of the one `/metrics` sample named `name` with all of `labels`.
    pub fn metric(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let text = self.wait_for_200("/metrics", Duration::from_secs(20));
        let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned())))
            .expect("/metrics parses");
        let found = scrape.samples.iter().find(|s| {
            s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v))
        })?;
        match found.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => Some(v),
            ref other => panic!("{name}: unexpected {other:?}"),
        }
    }

    /// The daemon's resident memory now (`VmRSS`).
    pub fn rss_bytes(&self) -> u64 {
        self.process.status_kb("VmRSS") * 1024
    }

    /// The daemon's open file descriptors now.
    pub fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid())).map_or(0, Iterator::count)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if !self.process.stop() && !std::thread::panicking() {
            panic!("the daemon did not exit within {STOP_GRACE:?} of SIGTERM:\n{}", self.log());
        }
    }
}

/// Reads one HTTP/1.1 response to the end of the connection: status and body.
pub fn read_response(stream: &mut TcpStream) -> Option<(u16, String)> {
    let mut bytes = Vec::new();
    match stream.read_to_end(&mut bytes) {
        Ok(_) => {}
        // A reset after a complete response (the server closed with unread request bytes).
        Err(_) if !bytes.is_empty() => {}
        Err(_) => return None,
    }
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    Some((status, body))
}

fn policy_yaml(redis: &str) -> String {
    format!(
        "\
apiVersion: autopilot.redis.io/v1alpha1
kind: RedisPolicy
metadata:
  name: {POLICY}
spec:
  target:
    endpoints: [\"{redis}\"]
  sampling:
    interval: 1s
    timeout: 500ms
  scaling:
    minReplicas: 1
    maxReplicas: 4
    metrics:
      - redis: instantaneous_ops_per_sec
        target: 1000
  alerts:
    - alertname: RedisHot
      action: evaluate
"
    )
}
