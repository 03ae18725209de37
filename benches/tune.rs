//! How long `tune` takes at the size issue 16 sets: 200 candidates of the shipped session-cache
//! policy on a 3-week synthetic trace at one row per second (1,814,400 rows, flash crowds
//! included). Target: under 2 minutes on the 2-core machine.
//!
//! A plain bench binary rather than criterion: one run takes minutes, and criterion's least
//! 10 samples would make the bench itself half an hour. It prints the wall time and the
//! candidate-steps per second (candidates x training-slice rows / seconds).
//!
//! Measured 2026-12-05 on the 2-core machine, otherwise idle: 57.1 s, 5.08 M
//! candidate-steps/s (64.8 s in a run beside other work), with every metric's target and
//! window among the knobs (58.7 s before, when only the first metric's were: the candidates
//! differ; 159.1 s earlier that day, when each tick rebuilt its metrics' windows; 171 s on
//! 2026-12-04, before round values were remembered between ticks). The time is the
//! decision core's per-tick cost (about 290,000 ticks per candidate at 5 s sampling), not the
//! replay.

use std::time::Instant;

use redis_autopilot::policy::load_policy_str;
use redis_autopilot::sim::Settings;
use redis_autopilot::sim::synthetic::{Generator, Kind, Spec};
use redis_autopilot::sim::trace::{TimeKind, Trace};
use redis_autopilot::sim::tune::{Options, Search, tune};

const CANDIDATES: usize = 200;
const DAYS: f64 = 21.0;
/// `cargo test --all-targets` runs this binary too, unoptimised and without `--bench`: a
/// smoke run of the same path at a size that takes seconds there.
const SMOKE_CANDIDATES: usize = 3;
const SMOKE_DAYS: f64 = 0.25;
const CAPACITY_PER_REPLICA: f64 = 50_000.0;

fn main() {
    let measuring = std::env::args().any(|a| a == "--bench");
    let (candidates, days) =
        if measuring { (CANDIDATES, DAYS) } else { (SMOKE_CANDIDATES, SMOKE_DAYS) };
    let policy = load_policy_str(
        "policies/session-cache.yaml",
        include_str!("../policies/session-cache.yaml"),
    )
    .expect("the shipped policy is valid");
    let generator = Generator::new(Spec { days, ..Spec::new(Kind::FlashCrowd) })
        .expect("a valid synthetic spec");
    let trace =
        Trace::from_rows("3 weeks, per second", TimeKind::Calendar, generator.rows().collect())
            .expect("increasing times");
    let rows = trace.rows().len();
    let scaling = policy.scaling.as_ref().expect("session-cache scales");
    let options = Options {
        settings: Settings {
            capacity_per_replica: CAPACITY_PER_REPLICA,
            warmup: scaling.warmup,
            initial_replicas: scaling.min_replicas,
        },
        candidates,
        seed: 1,
        search: Search::Wide,
        budget: None,
    };

    let started = Instant::now();
    let outcome = tune(&policy, std::slice::from_ref(&trace), &options).expect("tunes");
    let seconds = started.elapsed().as_secs_f64();

    let training_rows = rows as f64 * 0.8;
    let steps_per_second = outcome.scored.len() as f64 * training_rows / seconds;
    println!(
        "tune: {} candidates on {rows} rows ({days} days per second) in {seconds:.1} s on {} \
         threads: {:.2} M candidate-steps/s; frontier {} points, chosen candidate {}",
        outcome.scored.len(),
        rayon::current_num_threads(),
        steps_per_second / 1e6,
        outcome.frontier.len(),
        outcome.choice.scored().index,
    );
}
