//! Cost of reading `INFO`: the sampler parses one reply per instance per round (1,000 a round),
//! and must spend less CPU on it than redis-server spends producing it. Also the lookups the
//! decision core makes and the small synthesized observations the simulator builds.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use redis_autopilot::observe::{Info, Role};

/// A real `INFO all` reply from a Redis 7.0 master with two replicas and keys in two databases.
const MASTER: &str = include_str!("../tests/fixtures/info/master.txt");

fn parse(c: &mut Criterion) {
    let mut group = c.benchmark_group("parse");
    group.throughput(Throughput::Bytes(MASTER.len() as u64));
    group.bench_function("master INFO all", |b| b.iter(|| Info::parse(black_box(MASTER))));
    group.finish();
}

fn lookup(c: &mut Criterion) {
    let info = Info::parse(MASTER);
    let mut group = c.benchmark_group("number");
    // Early, late and compound fields: lookups scan the index from its end.
    for field in ["uptime_in_seconds", "instantaneous_ops_per_sec", "keys", "db0.keys"] {
        group.bench_function(field, |b| b.iter(|| black_box(&info).number(black_box(field))));
    }
    group.finish();
}

fn synthesize(c: &mut Criterion) {
    c.bench_function("synthesize 4 numbers", |b| {
        b.iter(|| {
            let mut info = Info::new(Role::Replica);
            info.master_link_up = Some(true);
            info.set_number("instantaneous_ops_per_sec", black_box(41_200.0));
            info.set_number("used_memory", black_box(2.5e9));
            info.set_number("connected_clients", black_box(120.0));
            info.set_number("keys", black_box(1e6));
            info
        })
    });
}

criterion_group!(benches, parse, lookup, synthesize);
criterion_main!(benches);
