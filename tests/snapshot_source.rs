//! Which member a snapshot is read from, and how long a source may take: a fake peer on
//! loopback that claims to be the freshest replica is never chosen over the replica its
//! master vouches for, and a source that trickles its RDB fails the snapshot on the policy's
//! throughput floor or deadline, leaves nothing in the store, and frees the snapshot gate
//! for the next one. Real `redis-server`s beside the fakes; every wait is on an event with a
//! generous deadline.

mod support;

use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use redis_autopilot::act::{Leadership, Mode, Pauses};
use redis_autopilot::cluster::kubernetes::{ClientOptions, KubeClient};
use redis_autopilot::daemon::metrics::Metrics;
use redis_autopilot::daemon::snapshots::SnapshotScheduler;
use redis_autopilot::policy::{Policy, load_policy_str};
use redis_autopilot::sample::redis::Endpoint;
use redis_autopilot::snapshot::Quiet;
use redis_autopilot::snapshot::Snapshotter;
use support::{Redis, load_collections, replicated};

/// What a fake peer does once asked for an RDB (`PSYNC`).
#[derive(Clone)]
enum Psync {
    /// Sends this RDB whole, in the length-prefixed form, then closes.
    Serve(Vec<u8>),
    /// Announces a 1 MB RDB, then sends one byte of it about every second until the client
    /// hangs up.
    Trickle,
}

/// A peer on 127.0.0.1 that answers `INFO` with `info`, every other command `+OK`, and
/// `PSYNC` as `psync` says. Counts the `PSYNC`s it got and notes when a client it was
/// streaming to hung up. Its threads end once the test drops it.
struct FakePeer {
    port: u16,
    psyncs: Arc<AtomicUsize>,
    hung_up: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
}

impl FakePeer {
    fn start(info: &str, psync: Psync) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("test fixture");
        listener.set_nonblocking(true).expect("test fixture");
        let port = listener.local_addr().expect("test fixture").port();
        let peer =
            Self { port, psyncs: Arc::default(), hung_up: Arc::default(), stop: Arc::default() };
        let info = info.replace('\n', "\r\n");
        let (psyncs, hung_up, stop) =
            (peer.psyncs.clone(), peer.hung_up.clone(), peer.stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((socket, _)) => {
                        let (info, psync) = (info.clone(), psync.clone());
                        let (psyncs, hung_up, stop) =
                            (psyncs.clone(), hung_up.clone(), stop.clone());
                        std::thread::spawn(move || {
                            serve(socket, &info, &psync, &psyncs, &hung_up, &stop);
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        peer
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn psyncs(&self) -> usize {
        self.psyncs.load(Ordering::Relaxed)
    }
}

impl Drop for FakePeer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn serve(
    mut socket: TcpStream,
    info: &str,
    psync: &Psync,
    psyncs: &AtomicUsize,
    hung_up: &AtomicBool,
    stop: &AtomicBool,
) {
    let _ = socket.set_nonblocking(false);
    let _ = socket.set_read_timeout(Some(Duration::from_millis(200)));
    let mut buffer = Vec::new();
    let mut chunk = [0_u8; 4096];
    while !stop.load(Ordering::Relaxed) {
        let n = match socket.read(&mut chunk) {
            Ok(0) => return,
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                continue;
            }
            Err(_) => return,
        };
        buffer.extend_from_slice(&chunk[..n]);
        for name in support::resp::commands(&mut buffer) {
            let reply = match name.as_str() {
                "INFO" => format!("${}\r\n{info}\r\n", info.len()).into_bytes(),
                "PSYNC" => {
                    psyncs.fetch_add(1, Ordering::Relaxed);
                    let head = format!("+FULLRESYNC {} 0\r\n", "f".repeat(40));
                    match psync {
                        Psync::Serve(rdb) => {
                            let mut out = format!("{head}${}\r\n", rdb.len()).into_bytes();
                            out.extend_from_slice(rdb);
                            let _ = socket.write_all(&out);
                            return;
                        }
                        Psync::Trickle => {
                            let header = format!("{head}$1000000\r\nREDIS0010");
                            if socket.write_all(header.as_bytes()).is_err() {
                                return;
                            }
                            trickle(&mut socket, hung_up, stop);
                            return;
                        }
                    }
                }
                _ => b"+OK\r\n".to_vec(),
            };
            if socket.write_all(&reply).is_err() {
                return;
            }
        }
    }
}

/// One byte about every second until the client hangs up (noted in `hung_up`).
fn trickle(socket: &mut TcpStream, hung_up: &AtomicBool, stop: &AtomicBool) {
    let _ = socket.set_read_timeout(Some(Duration::from_secs(1)));
    let mut chunk = [0_u8; 64];
    while !stop.load(Ordering::Relaxed) {
        // A read that returns 0 is the client closing; a timeout is a second gone by.
        match socket.read(&mut chunk) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                if socket.write_all(b"\x00").is_err() {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    hung_up.store(!stop.load(Ordering::Relaxed), Ordering::Relaxed);
}

/// A small valid RDB (header, one key, end opcode, CRC64), so a fake that is asked for one
/// can serve it and the snapshot would succeed from it.
fn valid_rdb() -> Vec<u8> {
    let mut rdb = b"REDIS0010".to_vec();
    rdb.extend_from_slice(&[0xFE, 0x00, 0xFB, 0x01, 0x00, 0x00, 0x04, b'f', b'a', b'k', b'e']);
    rdb.extend_from_slice(&[0x01, b'v', 0xFF]);
    let crc = crc::Crc::<u64>::new(&crc::CRC_64_REDIS).checksum(&rdb);
    rdb.extend_from_slice(&crc.to_le_bytes());
    rdb
}

fn policy(name: &str, endpoints: &[String], store: &Path, extra: &str) -> Policy {
    let endpoints: Vec<String> = endpoints.iter().map(|e| format!("\"{e}\"")).collect();
    let text = format!(
        "apiVersion: autopilot.redis.io/v1alpha1\nkind: RedisPolicy\nmetadata: {{name: {name}}}\n\
         spec:\n  target: {{endpoints: [{}]}}\n  snapshots:\n    schedule: '0 0 3 * * *'\n\
         \x20   destination: 'file://{}'\n    compression: none\n{extra}",
        endpoints.join(", "),
        store.display()
    );
    load_policy_str(&format!("{name}.yaml"), &text).unwrap_or_else(|diagnostics| {
        let text: Vec<String> = diagnostics.iter().map(ToString::to_string).collect();
        panic!("invalid policy:\n{}", text.join("\n"))
    })
}

fn endpoints(addrs: &[String]) -> Vec<Endpoint> {
    addrs.iter().map(|a| Endpoint::parse(a).expect("test fixture")).collect()
}

/// Every file under `dir` (none when it does not exist).
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    entries
        .map(|e| e.expect("dir entry").path())
        .flat_map(|p| if p.is_dir() { files_under(&p) } else { vec![p] })
        .collect()
}

/// Polls `done` until it holds, failing after `limit`.
async fn wait_for(limit: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The peer: `role:slave`, link up, offset u64::MAX, listed as an endpoint beside a
/// real master and its replica. It is never asked for an RDB: the snapshot comes from the
/// replica the master lists as online, and its manifest names that replica. With only the
/// fake and the master, `replicaOrMaster` falls back to the master and `replica` refuses,
/// naming the fake and why. Members named `localhost:PORT` are recognised in the master's
/// list by the address their host resolves to.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_claiming_the_highest_offset_is_not_chosen_over_a_corroborated_replica() {
    let (master, replicas) = replicated(1);
    load_collections(&master, &replicas);
    let fake = FakePeer::start(
        "# Server\nredis_version:7.0.15\n# Replication\nrole:slave\nmaster_host:127.0.0.1\n\
         master_port:1\nmaster_link_status:up\nslave_repl_offset:18446744073709551615\n",
        Psync::Serve(valid_rdb()),
    );
    let store = tempfile::tempdir().expect("temp dir");
    let members = [fake.addr(), master.addr(), replicas[0].addr()];
    let snapshotter =
        Snapshotter::new(&policy("cache", &members, store.path(), "")).expect("snapshotter");
    let manifest = snapshotter.take(&endpoints(&members), &Quiet).await.expect("a snapshot");
    assert_eq!(manifest.source, replicas[0].addr(), "read from the corroborated replica");
    assert_eq!(fake.psyncs(), 0, "the fake was asked for an RDB");
    let listed: Vec<(String, String)> =
        snapshotter.list().await.expect("list").into_iter().map(|m| (m.id, m.source)).collect();
    assert_eq!(listed, [(manifest.id.clone(), replicas[0].addr())]);
    snapshotter.verify(&manifest.id, &Quiet).await.expect("the snapshot verifies");

    // Nobody vouches for the fake: the master itself, when the policy allows it...
    let two = [fake.addr(), master.addr()];
    let fallback =
        Snapshotter::new(&policy("fallback", &two, store.path(), "    source: replicaOrMaster\n"))
            .expect("snapshotter");
    let manifest = fallback.take(&endpoints(&two), &Quiet).await.expect("from the master");
    assert_eq!(manifest.source, master.addr());
    // ...and no snapshot at all with `source: replica`, saying why.
    let strict = Snapshotter::new(&policy("strict", &two, store.path(), "")).expect("snapshotter");
    let error = strict.take(&endpoints(&two), &Quiet).await.expect_err("no trusted replica");
    let text = redis_autopilot::errors::chain(&error);
    assert_eq!(error.category(), "no_source", "{text}");
    assert!(
        text.contains(&format!("{} claims to be a linked-up replica, but no master", fake.addr())),
        "{text}"
    );
    assert_eq!(fake.psyncs(), 0, "the fake was asked for an RDB");

    // Members named by host name: the master lists its replica by address, and the host is
    // resolved to recognise it.
    let named = [format!("localhost:{}", master.port), format!("localhost:{}", replicas[0].port)];
    let by_name =
        Snapshotter::new(&policy("named", &named, store.path(), "")).expect("snapshotter");
    let manifest = by_name.take(&endpoints(&named), &Quiet).await.expect("from the replica");
    assert_eq!(manifest.source, named[1]);
}

/// A source that announces an RDB and trickles it a byte a second: with a throughput floor
/// the snapshot fails once the first window closes, with a deadline once it passes, each
/// naming its figure. Both run through the daemon's scheduler and its per-policy gate: the
/// gate is held while the trickle runs (a second run is refused as in flight), and released
/// when it fails, so the next snapshot, from a real master, is taken. The store holds no
/// object and no manifest from the failed ones, and the source connection is closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickling_source_fails_on_the_floor_or_the_deadline_and_frees_the_gate() {
    let master = Redis::master();
    master.cli(&["SET", "k", "v"]);
    let store = tempfile::tempdir().expect("temp dir");
    let scheduler = SnapshotScheduler::start(
        Mode::Apply,
        Pauses::default(),
        Arc::new(Metrics::new()),
        Default::default(),
        Arc::new(KubeClient::new(ClientOptions::default())),
    )
    .await
    .expect("scheduler");
    let cases = [
        (
            "    minBytesPerSecond: 1000\n    throughputWindow: 2s\n",
            "below the floor of 1000 bytes/s",
        ),
        ("    minBytesPerSecond: 1\n    deadline: 3s\n", "past its deadline of 3s"),
    ];
    for (limits, expected) in cases {
        let fake = FakePeer::start(
            "# Replication\nrole:master\nconnected_slaves:0\nmaster_repl_offset:0\n",
            Psync::Trickle,
        );
        let extra = format!("    source: master\n{limits}");
        let trickling = policy("cache", &[fake.addr()], store.path(), &extra);
        scheduler.set(&trickling, Leadership::always()).await;
        let run = {
            let scheduler = scheduler.clone();
            tokio::spawn(async move { scheduler.take_now("cache", "test").await })
        };
        wait_for(Duration::from_secs(60), "the fake asked for its RDB", || fake.psyncs() == 1)
            .await;
        // While the trickle runs, the gate is held: another run is refused, not queued.
        if !run.is_finished() {
            let busy = scheduler.take_now("cache", "a second run").await;
            assert_eq!(busy, Err("another snapshot is in flight".to_owned()));
        }
        let outcome = tokio::time::timeout(Duration::from_secs(120), run)
            .await
            .unwrap_or_else(|_| panic!("{limits}: the trickling snapshot never ended"))
            .expect("the run task");
        let why = outcome.expect_err("a trickle is no snapshot");
        eprintln!("{limits:?} -> {why}");
        assert!(why.contains(expected), "{limits}: {why}");
        assert!(why.contains(&fake.addr()), "{why}");
        wait_for(Duration::from_secs(60), "the source connection closed", || {
            fake.hung_up.load(Ordering::Relaxed)
        })
        .await;
        assert_eq!(files_under(store.path()), Vec::<PathBuf>::new(), "{limits}: left behind");
    }

    // The gate is free: the next snapshot of the same policy, from a real master, is taken.
    let real = policy("cache", &[master.addr()], store.path(), "    source: master\n");
    scheduler.set(&real, Leadership::always()).await;
    let taken = tokio::time::timeout(Duration::from_secs(120), scheduler.take_now("cache", "test"))
        .await
        .expect("the real snapshot ended");
    let taken = taken.expect("a snapshot from the real master");
    let listed = Snapshotter::new(&real).expect("snapshotter").list().await.expect("list");
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].id, taken.id);
    assert_eq!(listed[0].source, master.addr());
    scheduler.shutdown().await;
}
