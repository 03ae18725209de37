//! Per-second load from a coarser trace of request counts (`redis-autopilot trace refine`).
//!
//! A per-minute log (WorldCup98's, a Prometheus `increase(...[1m])`) says how many requests
//! came each minute, not how they fell within it. The simulator counts under-provisioned time
//! by the second, and what runs a fleet short is the busiest seconds: a per-minute trace
//! replayed as it is has none. Refining it draws the seconds from a model of how web requests
//! arrive:
//!
//! - requests come in **clusters** (a page and the objects it pulls, a client's batch), and
//!   clusters arrive at random: a Poisson process at the row's rate divided by the mean
//!   cluster size;
//! - a cluster holds a **geometric** number of requests, at least one, with the mean
//!   `cluster_size` (a cluster size of 1 is plain Poisson arrivals).
//!
//! Each second's count then has the row's mean and a variance of `2 x cluster_size - 1` times
//! it, skewed as clustered arrivals are: a second of few large clusters reaches far above its
//! mean, a second of many small ones little. The rate is constant within a row; a minute's
//! seconds sum to its count on average, not exactly.
//!
//! Randomness is counter-based, as in [`super::synthetic`]: each second's draws come from a
//! hash of the seed and the second's index, so the same trace, settings and seed always give
//! the same file, and [`Refinement::rows`] streams the seconds without holding them.

use super::synthetic::{hash, mix, unit};
use super::trace::{Millis, Row, Trace};

const SECOND: Millis = 1_000;
/// Longest output: a year of seconds, as for generated traces.
const MAX_SECONDS: i64 = 366 * 86_400;
/// Largest mean cluster: beyond it a "cluster" is a whole minute's traffic.
const MAX_CLUSTER_SIZE: f64 = 1e6;
/// The random stream of refined seconds (see [`super::synthetic`]'s streams).
const STREAM: u64 = 16;

/// How a trace is refined; see the module comment.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spec {
    /// The period the trace's load counts requests over, in seconds: 60 for requests per
    /// minute, 1 for a trace that already gives requests per second.
    pub per_seconds: u32,
    /// Mean requests per cluster, >= 1.
    pub cluster_size: f64,
    pub seed: u64,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum RefineError {
    #[error("cluster-size: must be from 1 to 1,000,000, got {0}")]
    ClusterSize(f64),
    #[error("per: must be at least one second")]
    Per,
    #[error("{file}: {days:.1} days is longer than the 366 days a refined trace may span")]
    TooLong { file: String, days: f64 },
}

/// A trace and how to refine it, checked: see [`Refinement::rows`].
#[derive(Debug)]
pub struct Refinement<'t> {
    trace: &'t Trace,
    spec: Spec,
    seconds: i64,
}

impl<'t> Refinement<'t> {
    pub fn new(trace: &'t Trace, spec: Spec) -> Result<Self, RefineError> {
        if !(1.0..=MAX_CLUSTER_SIZE).contains(&spec.cluster_size) {
            return Err(RefineError::ClusterSize(spec.cluster_size));
        }
        if spec.per_seconds == 0 {
            return Err(RefineError::Per);
        }
        // Every second that starts before the trace's end.
        let seconds = (trace.end() - trace.start() + SECOND - 1) / SECOND;
        if seconds > MAX_SECONDS {
            return Err(RefineError::TooLong {
                file: trace.name().to_owned(),
                days: seconds as f64 / 86_400.0,
            });
        }
        Ok(Self { trace, spec, seconds })
    }

    /// The requests the trace counts: each row's count per period over the time it lasts.
    /// The refined seconds add up to this on average.
    pub fn counted_requests(&self) -> f64 {
        let rows = self.trace.rows();
        let ends = rows.iter().skip(1).map(|r| r.at).chain([self.trace.end()]);
        let seconds_counted: f64 =
            rows.iter().zip(ends).map(|(row, end)| row.load * (end - row.at) as f64 / 1000.0).sum();
        seconds_counted / f64::from(self.spec.per_seconds)
    }

    /// One row per second from the trace's start: the requests that came in that second,
    /// drawn at the rate of the trace's row in force at the second's start.
    pub fn rows(&self) -> impl Iterator<Item = Row> + '_ {
        let rows = self.trace.rows();
        let mut current = 0;
        (0..self.seconds).map(move |index| {
            let at = self.trace.start() + index * SECOND;
            while rows.get(current + 1).is_some_and(|next| next.at <= at) {
                current += 1;
            }
            let rate = rows[current].load / f64::from(self.spec.per_seconds);
            let mut draws = Draws::new(self.spec.seed, index as u64);
            Row { at, load: requests(&mut draws, rate, self.spec.cluster_size) }
        })
    }
}

/// The requests of one second at `rate` requests a second, in clusters of mean `cluster_size`.
fn requests(draws: &mut Draws, rate: f64, cluster_size: f64) -> f64 {
    let clusters = poisson(draws, rate / cluster_size);
    if cluster_size == 1.0 || clusters == 0.0 {
        return clusters;
    }
    // Past its first request, each cluster's size is geometric with mean `cluster_size - 1`:
    // their sum is negative binomial, drawn as a Poisson count at a gamma-distributed rate.
    let rate = gamma(draws, clusters) * (cluster_size - 1.0);
    clusters + poisson(draws, rate)
}

/// A Poisson count of mean `mean`: by inversion below 10, by Hörmann's transformed rejection
/// (PTRS, 1993) above, whose cost does not grow with the mean.
fn poisson(draws: &mut Draws, mean: f64) -> f64 {
    if mean <= 0.0 {
        return 0.0;
    }
    if mean < 10.0 {
        let u = draws.unit();
        let (mut k, mut term) = (0.0, (-mean).exp());
        let mut cumulative = term;
        // Past 200 the remaining mass at a mean below 10 is below 1e-200: rounding, not tail.
        while u > cumulative && k < 200.0 {
            k += 1.0;
            term *= mean / k;
            cumulative += term;
        }
        return k;
    }
    let (root, log_mean) = (mean.sqrt(), mean.ln());
    let b = 0.931 + 2.53 * root;
    let a = -0.059 + 0.02483 * b;
    let inverse_alpha = 1.1239 + 1.1328 / (b - 3.4);
    let v_r = 0.9277 - 3.6224 / (b - 2.0);
    loop {
        let u = draws.unit() - 0.5;
        let v = draws.unit();
        let us = 0.5 - u.abs();
        if us <= 0.0 {
            continue;
        }
        let k = ((2.0 * a / us + b) * u + mean + 0.43).floor();
        if us >= 0.07 && v <= v_r {
            return k;
        }
        if k < 0.0 || (us < 0.013 && v > us) {
            continue;
        }
        let accept = v.ln() + inverse_alpha.ln() - (a / (us * us) + b).ln();
        if accept <= -mean + k * log_mean - statrs::function::gamma::ln_gamma(k + 1.0) {
            return k;
        }
    }
}

/// A gamma value of shape `shape` (>= 1) and scale 1, by Marsaglia and Tsang's method (2000).
fn gamma(draws: &mut Draws, shape: f64) -> f64 {
    let d = shape - 1.0 / 3.0;
    let c = 1.0 / (9.0 * d).sqrt();
    loop {
        let x = draws.normal();
        let v = 1.0 + c * x;
        if v <= 0.0 {
            continue;
        }
        let v = v * v * v;
        let u = draws.unit();
        if u < 1.0 - 0.0331 * x.powi(4) || u.ln() < 0.5 * x * x + d * (1.0 - v + v.ln()) {
            return d * v;
        }
    }
}

/// The random values of one second: a SplitMix64 sequence started from a hash of the seed
/// and the second's index, so each second draws what its rejection samplers need without
/// shifting any other second's values.
struct Draws {
    state: u64,
}

impl Draws {
    fn new(seed: u64, second: u64) -> Self {
        Self { state: hash(seed, STREAM, second) }
    }

    fn next(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix(self.state)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        unit(self.next())
    }

    /// Standard normal (Box-Muller).
    fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.unit();
        let u2 = self.unit();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::trace::TimeKind;

    /// Mean and variance of `n` draws of `draw`.
    fn moments(n: u64, mut draw: impl FnMut(&mut Draws) -> f64) -> (f64, f64) {
        let values: Vec<f64> = (0..n).map(|i| draw(&mut Draws::new(7, i))).collect();
        let mean = values.iter().sum::<f64>() / n as f64;
        let variance = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
        (mean, variance)
    }

    fn minutes(counts: &[f64]) -> Trace {
        let rows = counts
            .iter()
            .enumerate()
            .map(|(i, &load)| Row { at: i as Millis * 60 * SECOND, load })
            .collect();
        Trace::from_rows("minutes", TimeKind::Seconds, rows).expect("valid")
    }

    fn spec(cluster_size: f64) -> Spec {
        Spec { per_seconds: 60, cluster_size, seed: 1 }
    }

    /// Poisson counts have their mean as variance, at every mean and on both samplers. With
    /// 200,000 draws the sample mean's standard error is under 0.25 % of a mean of 100, and
    /// the variance's under 0.4 %: the bounds are several standard errors wide.
    #[test]
    fn poisson_counts_have_the_mean_as_their_variance() {
        for mean in [0.3, 4.0, 9.99, 10.0, 35.0, 500.0, 80_000.0] {
            let (m, v) = moments(200_000, |d| poisson(d, mean));
            assert!((m / mean - 1.0).abs() < 0.02, "mean {mean}: sample mean {m}");
            assert!((v / mean - 1.0).abs() < 0.03, "mean {mean}: sample variance {v}");
        }
    }

    /// The counts follow the Poisson distribution itself, not just its first two moments: the
    /// largest gap between the sample's and the exact cumulative distribution (Kolmogorov's)
    /// stays within 1.6 / sqrt(n), which the sample exceeds in about one seed in ten thousand.
    #[test]
    fn poisson_counts_follow_the_poisson_distribution() {
        const N: u64 = 200_000;
        for mean in [3.0, 10.0, 35.0, 500.0] {
            let mut counts = vec![0u64; (mean * 3.0) as usize + 60];
            let last = counts.len() - 1;
            for i in 0..N {
                let k = poisson(&mut Draws::new(11, i), mean) as usize;
                counts[k.min(last)] += 1;
            }
            let (mut exact, mut sampled, mut term, mut gap) = (0.0, 0.0, (-mean).exp(), 0.0f64);
            for (k, &count) in counts.iter().enumerate() {
                if k > 0 {
                    term *= mean / k as f64;
                }
                exact += term;
                sampled += count as f64 / N as f64;
                gap = gap.max((exact - sampled).abs());
            }
            assert!(gap < 1.6 / (N as f64).sqrt(), "mean {mean}: distance {gap}");
        }
    }

    #[test]
    fn gamma_values_have_the_shape_as_mean_and_variance() {
        for shape in [1.0, 3.0, 40.0] {
            let (m, v) = moments(200_000, |d| gamma(d, shape));
            assert!((m / shape - 1.0).abs() < 0.02, "shape {shape}: sample mean {m}");
            assert!((v / shape - 1.0).abs() < 0.03, "shape {shape}: sample variance {v}");
        }
    }

    /// Clusters of geometric size with mean m make a second's variance (2m - 1) times its
    /// mean; m = 1 is plain Poisson.
    #[test]
    fn clustered_seconds_are_as_dispersed_as_the_cluster_size_says() {
        for (rate, size) in [(50.0, 1.0), (50.0, 10.0), (800.0, 4.0), (2.0, 10.0)] {
            let (m, v) = moments(200_000, |d| requests(d, rate, size));
            assert!((m / rate - 1.0).abs() < 0.02, "rate {rate}, size {size}: mean {m}");
            let dispersion = v / m;
            let expected = 2.0 * size - 1.0;
            assert!(
                (dispersion / expected - 1.0).abs() < 0.05,
                "rate {rate}, size {size}: variance/mean {dispersion}, expected {expected}"
            );
        }
    }

    /// Each second draws at its own row's rate: a minute's seconds add up to about its count,
    /// and a quiet minute stays quiet next to a busy one.
    #[test]
    fn each_minute_keeps_its_count() {
        let trace = minutes(&[60_000.0, 600.0, 0.0, 6_000.0]);
        let refined = Refinement::new(&trace, spec(10.0)).expect("valid");
        let rows: Vec<Row> = refined.rows().collect();
        assert_eq!(rows.len(), 240);
        assert!(rows.iter().enumerate().all(|(i, r)| r.at == i as Millis * SECOND));
        assert!(rows.iter().all(|r| r.load >= 0.0 && r.load.fract() == 0.0));
        let sums: Vec<f64> = rows.chunks(60).map(|c| c.iter().map(|r| r.load).sum()).collect();
        // A minute of 60,000 in clusters of 10: standard deviation sqrt(60,000 x 19) = 1,068.
        assert!((sums[0] - 60_000.0).abs() < 5_000.0, "{sums:?}");
        assert!((sums[1] - 600.0).abs() < 500.0, "{sums:?}");
        assert_eq!(sums[2], 0.0);
        assert!((sums[3] - 6_000.0).abs() < 1_700.0, "{sums:?}");
    }

    #[test]
    fn the_same_seed_gives_the_same_seconds_and_another_seed_others() {
        let trace = minutes(&[6_000.0; 30]);
        let refined = |seed| {
            let spec = Spec { seed, ..spec(10.0) };
            Refinement::new(&trace, spec).expect("valid").rows().collect::<Vec<_>>()
        };
        assert_eq!(refined(3), refined(3));
        assert_ne!(refined(3), refined(4));
    }

    #[test]
    fn every_wrong_setting_is_refused() {
        let trace = minutes(&[1.0, 2.0]);
        for size in [0.5, f64::NAN, 2e6] {
            let error = Refinement::new(&trace, spec(size)).expect_err("bad size");
            assert!(matches!(error, RefineError::ClusterSize(_)), "{size}");
        }
        let no_period = Spec { per_seconds: 0, ..spec(1.0) };
        assert_eq!(Refinement::new(&trace, no_period).expect_err("no period"), RefineError::Per);
        // Two rows of `days` each: the last lasts as long as the first.
        let spanning = |days: i64| {
            let day = 86_400 * SECOND;
            let rows = vec![Row { at: 0, load: 1.0 }, Row { at: days * day, load: 1.0 }];
            Trace::from_rows("long.csv", TimeKind::Seconds, rows).expect("valid")
        };
        assert!(Refinement::new(&spanning(183), spec(1.0)).is_ok());
        let error = Refinement::new(&spanning(184), spec(1.0)).expect_err("too long");
        assert_eq!(
            error.to_string(),
            "long.csv: 368.0 days is longer than the 366 days a refined trace may span"
        );
    }
}
