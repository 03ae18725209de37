//! Hostile input to the samplers and the snapshot store: peers that answer with endless
//! replies, stores holding planted manifests, symlinks and oversized objects. Each case is
//! bounded in time and memory; none needs more than a fake peer on 127.0.0.1 or a temp dir.

mod support;

use std::io::{Read as _, Write as _};
use std::net::TcpListener;
use std::time::{Duration, Instant};

use redis_autopilot::observe::Outcome;
use redis_autopilot::sample::redis::{Access, Endpoint, RedisSampler};

/// The process's resident set, in KiB, from `/proc/self/status`.
fn vm_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("procfs");
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).expect("VmRSS line");
    line.split_whitespace().nth(1).and_then(|n| n.parse().ok()).expect("VmRSS value")
}

/// Splits complete RESP command arrays off the front of `buffer`, returning each command's
/// name (upper case); an incomplete tail stays in `buffer`.
fn commands(buffer: &mut Vec<u8>) -> Vec<String> {
    fn line(bytes: &[u8], at: usize) -> Option<(&[u8], usize)> {
        let end = bytes[at..].windows(2).position(|w| w == b"\r\n")? + at;
        Some((&bytes[at..end], end + 2))
    }
    let mut names = Vec::new();
    loop {
        let Some((header, mut at)) = line(buffer, 0) else { break };
        let count: usize = std::str::from_utf8(&header[1..]).unwrap().parse().unwrap();
        let mut name = None;
        let mut complete = true;
        for _ in 0..count {
            let Some((len, next)) = line(buffer, at) else {
                complete = false;
                break;
            };
            let len: usize = std::str::from_utf8(&len[1..]).unwrap().parse().unwrap();
            if buffer.len() < next + len + 2 {
                complete = false;
                break;
            }
            name.get_or_insert_with(|| {
                String::from_utf8_lossy(&buffer[next..next + len]).to_uppercase()
            });
            at = next + len + 2;
        }
        if !complete {
            break;
        }
        names.push(name.unwrap_or_default());
        buffer.drain(..at);
    }
    names
}

/// A peer that answers every command `+OK` except `INFO`, which it answers with a bulk
/// string announcing `announced` bytes and then streams zeros until the client hangs up.
/// Returns the port and a handle yielding how many payload bytes it managed to send.
fn endless_info_peer(announced: u64) -> (u16, std::thread::JoinHandle<u64>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let handle = std::thread::spawn(move || {
        let (mut socket, _) = listener.accept().unwrap();
        let mut buffer = Vec::new();
        let mut chunk = [0_u8; 4096];
        loop {
            let n = socket.read(&mut chunk).unwrap_or(0);
            if n == 0 {
                return 0;
            }
            buffer.extend_from_slice(&chunk[..n]);
            for name in commands(&mut buffer) {
                if name != "INFO" {
                    socket.write_all(b"+OK\r\n").unwrap();
                    continue;
                }
                socket.write_all(format!("${announced}\r\n").as_bytes()).unwrap();
                let zeros = vec![b'0'; 64 * 1024];
                let mut sent = 0_u64;
                while sent < announced {
                    match socket.write(&zeros) {
                        Ok(0) | Err(_) => return sent,
                        Ok(n) => sent += n as u64,
                    }
                }
                return sent;
            }
        }
    });
    (port, handle)
}

#[tokio::test]
async fn an_info_reply_announcing_200_mb_is_a_protocol_error_read_in_bounded_memory() {
    let (port, peer) = endless_info_peer(200 * 1024 * 1024);
    let endpoint = Endpoint::parse(&format!("127.0.0.1:{port}")).unwrap();
    // A generous deadline: the cap, not the clock, must end this sample.
    let sampler = RedisSampler::new(Access::default(), Duration::from_secs(60));
    let before = vm_rss_kib();
    let started = Instant::now();
    let sample = sampler.sample(&[endpoint]).await.remove(0);
    let took = started.elapsed();
    let growth = vm_rss_kib().saturating_sub(before);
    assert!(
        matches!(&sample.outcome, Outcome::Protocol(why) if why.contains("longer than")),
        "{:?}",
        sample.outcome
    );
    assert!(took < Duration::from_secs(30), "took {took:?}");
    // The cap is 1 MiB; allow the runtime and the redis crate their buffers.
    assert!(growth < 32 * 1024, "VmRSS grew by {growth} KiB");
    drop(sampler);
    let sent = peer.join().unwrap();
    eprintln!("peer sent {sent} payload bytes; VmRSS grew {growth} KiB; took {took:?}");
    assert!(sent < 200 * 1024 * 1024, "the client read the whole reply");
}
