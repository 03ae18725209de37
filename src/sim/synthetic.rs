//! Synthetic load traces: seeded, reproducible stand-ins for the per-second web traces a policy
//! is tuned on (`redis-autopilot trace generate`, `docs/simulation.md`).
//!
//! The load is a pure function of the time and the seed, built from factors that each model
//! one thing real traffic does:
//!
//! - a **daily profile** on the UTC clock: a night trough, a morning ramp, an afternoon peak and
//!   a smaller evening bump;
//! - a **weekly cycle**: Saturdays and Sundays at a fraction of the weekday level;
//! - **day-to-day jitter**: each day's amplitude drawn around 1, blended from noon to noon so no
//!   day starts with a step;
//! - **organic growth** (`slow-ramp`): the level grows geometrically to reach the peak at the end;
//! - **flash crowds** (`flash-crowd`): at random times, load multiplies by several times within
//!   tens of seconds and decays over minutes;
//! - **per-second noise**: a wander over minutes, independent per-second jitter, and short
//!   bursts of a few seconds.
//!
//! Randomness is counter-based (a SplitMix64 hash of seed, stream and index), so any second's
//! load is computed without walking the seconds before it, the same seed always gives the same
//! trace, and [`Generator::rows`] streams rows without holding them: a trace of weeks at one
//! row per second costs the memory of its flash crowds only. Nothing here does I/O; the
//! command writes the rows (`cli/trace.rs`).

use std::fmt;

use super::trace::{Millis, Row};

const SECOND: Millis = 1_000;
const HOUR: Millis = 3_600 * SECOND;
const DAY: Millis = 24 * HOUR;
/// Longest trace generated: a year, so the crowd list and the run time stay bounded.
const MAX_DAYS: f64 = 366.0;
/// Knot spacing of the slow per-second wander.
const WANDER_KNOT: Millis = 300 * SECOND;
/// Bursts are placed one chance per slot of this length.
const BURST_SLOT: Millis = 60 * SECOND;
/// Chance that a slot holds a burst (about six an hour).
const BURST_CHANCE: f64 = 0.1;
/// A flash crowd reaches its top in 10 to 60 s and decays with a time constant of 3 to 15 min.
const CROWD_RISE_SECONDS: (f64, f64) = (10.0, 60.0);
const CROWD_DECAY_SECONDS: (f64, f64) = (180.0, 900.0);
/// After 20 time constants (a factor e^-20) a crowd no longer counts.
const CROWD_SPAN: Millis = (CROWD_RISE_SECONDS.1 + 20.0 * CROWD_DECAY_SECONDS.1) as Millis * SECOND;

/// Independent random streams, so adding one never shifts the values of another.
mod stream {
    pub const JITTER: u64 = 1;
    pub const WANDER: u64 = 2;
    pub const WHITE: u64 = 3;
    pub const BURST: u64 = 4;
    pub const CROWDS: u64 = 5;
}

/// What a generated trace models (see the module comment).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The daily profile with its weekly cycle and day-to-day jitter.
    Diurnal,
    /// `Diurnal` plus flash crowds.
    FlashCrowd,
    /// `Diurnal` under geometric growth that reaches the peak at the end.
    SlowRamp,
}

impl Kind {
    pub const ALL: [Kind; 3] = [Kind::Diurnal, Kind::FlashCrowd, Kind::SlowRamp];

    /// The name the command line and the docs use.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Diurnal => "diurnal",
            Kind::FlashCrowd => "flash-crowd",
            Kind::SlowRamp => "slow-ramp",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Everything a trace is generated from. [`Spec::new`] holds the documented defaults.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spec {
    pub kind: Kind,
    /// The first row's time (ms since the epoch); the daily and weekly cycles follow its UTC
    /// clock and calendar.
    pub start: Millis,
    /// Length in days (fractions allowed).
    pub days: f64,
    /// Time between rows, in whole seconds; each row holds the mean of its seconds.
    pub step_seconds: u32,
    pub seed: u64,
    /// Ops/s of a weekday's afternoon peak before noise, jitter and crowds (for `slow-ramp`,
    /// the last weekday's).
    pub peak: f64,
    /// The night trough as a fraction of the peak, in (0, 1].
    pub night: f64,
    /// Saturday's and Sunday's level as a fraction of a weekday's, in (0, 2].
    pub weekend: f64,
    /// Spread of each day's amplitude (standard deviation of its logarithm), in [0, 0.5].
    pub jitter: f64,
    /// Spread of the per-second noise (standard deviation of its logarithm), in [0, 0.5];
    /// bursts scale with it, so 0 gives a smooth trace.
    pub noise: f64,
    /// `flash-crowd`: mean crowds per day (a Poisson process), in (0, 100].
    pub crowds_per_day: f64,
    /// `flash-crowd`: the least a crowd multiplies the load by at its top (each draws 1x to
    /// 1.5x this), >= 1.
    pub crowd_factor: f64,
    /// `slow-ramp`: the level at the end over the level at the start, >= 1.
    pub growth: f64,
}

/// 2026-01-05T00:00:00Z, a Monday: traces start on a week's first day unless told otherwise.
pub const DEFAULT_START: Millis = 1_767_571_200_000;

impl Spec {
    pub const fn new(kind: Kind) -> Self {
        Self {
            kind,
            start: DEFAULT_START,
            days: 28.0,
            step_seconds: 1,
            seed: 1,
            peak: 200_000.0,
            night: 0.15,
            weekend: 0.6,
            jitter: 0.08,
            noise: 0.05,
            crowds_per_day: 2.0,
            crowd_factor: 3.0,
            growth: 2.0,
        }
    }
}

/// One wrong setting; [`SpecError`] holds them all.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{field}: must be {rule}, got {value}")]
pub struct Problem {
    pub field: &'static str,
    pub rule: &'static str,
    pub value: String,
}

/// Every wrong setting of a [`Spec`], not only the first.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("cannot generate the trace: {}", .problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
pub struct SpecError {
    pub problems: Vec<Problem>,
}

/// A flash crowd: from `at` the load rises linearly for `rise_seconds` to `factor` times what
/// it would be, then the excess decays exponentially with `decay_seconds`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Crowd {
    pub at: Millis,
    pub rise_seconds: f64,
    pub decay_seconds: f64,
    pub factor: f64,
}

impl Crowd {
    /// How much of the excess applies `since` ms after the start: 0 before, 1 at the top.
    fn share(&self, since: Millis) -> f64 {
        let seconds = since as f64 / 1000.0;
        if seconds < 0.0 {
            0.0
        } else if seconds < self.rise_seconds {
            seconds / self.rise_seconds
        } else {
            (-(seconds - self.rise_seconds) / self.decay_seconds).exp()
        }
    }

    /// When the load is at its top.
    pub fn top(&self) -> Millis {
        self.at + (self.rise_seconds * 1000.0) as Millis
    }
}

/// A validated [`Spec`] ready to produce load.
#[derive(Debug, Clone, PartialEq)]
pub struct Generator {
    spec: Spec,
    end: Millis,
    /// The daily profile's raw maximum, so the profile peaks at exactly 1.
    profile_max: f64,
    /// Sorted by start.
    crowds: Vec<Crowd>,
}

impl Generator {
    /// Checks every setting; the error lists all that are wrong.
    pub fn new(spec: Spec) -> Result<Self, SpecError> {
        let mut problems = Vec::new();
        let mut check = |ok: bool, field: &'static str, rule: &'static str, value: f64| {
            if !ok {
                problems.push(Problem { field, rule, value: value.to_string() });
            }
        };
        let within = |v: f64, low: f64, high: f64| v.is_finite() && v >= low && v <= high;
        // A trace is two rows at least: `simulate` needs a step to know how long one lasts.
        let steps =
            spec.days * (DAY as f64) / (f64::from(spec.step_seconds.max(1)) * SECOND as f64);
        check(
            spec.days.is_finite() && steps >= 2.0 && spec.days <= MAX_DAYS,
            "days",
            "at least two steps and at most 366",
            spec.days,
        );
        check(spec.step_seconds >= 1, "step", "at least 1s", f64::from(spec.step_seconds));
        // Far beyond any Redis; past it, crowds and bursts multiply the load into infinity.
        check(within(spec.peak, f64::MIN_POSITIVE, 1e12), "peak", "in (0, 1e12]", spec.peak);
        check(spec.night > 0.0 && spec.night <= 1.0, "night", "in (0, 1]", spec.night);
        check(spec.weekend > 0.0 && spec.weekend <= 2.0, "weekend", "in (0, 2]", spec.weekend);
        check(within(spec.jitter, 0.0, 0.5), "jitter", "in [0, 0.5]", spec.jitter);
        check(within(spec.noise, 0.0, 0.5), "noise", "in [0, 0.5]", spec.noise);
        check(
            spec.crowds_per_day > 0.0 && spec.crowds_per_day <= 100.0,
            "crowds-per-day",
            "in (0, 100]",
            spec.crowds_per_day,
        );
        check(
            within(spec.crowd_factor, 1.0, 100.0),
            "crowd-factor",
            "in [1, 100]",
            spec.crowd_factor,
        );
        check(within(spec.growth, 1.0, 1000.0), "growth", "in [1, 1000]", spec.growth);
        let end = spec.start.checked_add((spec.days.min(MAX_DAYS) * DAY as f64) as Millis);
        let end = match end {
            Some(end) if representable(spec.start) && representable(end) => end,
            _ => {
                problems.push(Problem {
                    field: "start",
                    rule: "a time whose trace ends inside the calendar",
                    value: spec.start.to_string(),
                });
                spec.start
            }
        };
        if !problems.is_empty() {
            return Err(SpecError { problems });
        }
        let profile_max = (0..24 * 60)
            .map(|minute| raw_profile(f64::from(minute) / 60.0))
            .fold(f64::MIN, f64::max);
        let crowds = match spec.kind {
            Kind::FlashCrowd => crowds(&spec, end),
            Kind::Diurnal | Kind::SlowRamp => Vec::new(),
        };
        Ok(Self { spec, end, profile_max, crowds })
    }

    pub fn spec(&self) -> &Spec {
        &self.spec
    }

    /// Where the last row stops.
    pub fn end(&self) -> Millis {
        self.end
    }

    /// The flash crowds, in time order (none for the other kinds).
    pub fn crowds(&self) -> &[Crowd] {
        &self.crowds
    }

    /// How many rows [`Generator::rows`] yields: the length in steps, a partial last step
    /// counted whole.
    pub fn row_count(&self) -> u64 {
        let step = self.step();
        ((self.end - self.spec.start) as u64).div_ceil(step as u64)
    }

    fn step(&self) -> Millis {
        Millis::from(self.spec.step_seconds) * SECOND
    }

    /// The rows, one per step from the start, each the mean load of its seconds. Lazy: one
    /// row is computed per `next`.
    pub fn rows(&self) -> impl Iterator<Item = Row> + '_ {
        let step = self.step();
        (0..self.row_count()).map(move |index| {
            let at = self.spec.start + index as Millis * step;
            let seconds = self.spec.step_seconds;
            let total: f64 =
                (0..seconds).map(|s| self.load_at(at + Millis::from(s) * SECOND)).sum();
            Row { at, load: total / f64::from(seconds) }
        })
    }

    /// The load in the second that starts at `at` (any time; whole seconds give whole
    /// per-second noise values).
    pub fn load_at(&self, at: Millis) -> f64 {
        self.base(at) * self.crowd_multiplier(at) * self.noise(at)
    }

    /// The load without crowds and noise: profile, weekly cycle, jitter and growth.
    pub fn base(&self, at: Millis) -> f64 {
        let hour = at.rem_euclid(DAY) as f64 / HOUR as f64;
        let profile = raw_profile(hour) / self.profile_max;
        let shape = self.spec.night + (1.0 - self.spec.night) * profile;
        let week = if is_weekend(at) { self.spec.weekend } else { 1.0 };
        self.spec.peak * shape * week * self.day_jitter(at) * self.growth(at)
    }

    /// 1 outside crowds; at a crowd's top at least its factor.
    pub fn crowd_multiplier(&self, at: Millis) -> f64 {
        let started = self.crowds.partition_point(|c| c.at <= at);
        let excess: f64 = self.crowds[..started]
            .iter()
            .rev()
            .take_while(|c| at - c.at <= CROWD_SPAN)
            .map(|c| (c.factor - 1.0) * c.share(at - c.at))
            .sum();
        1.0 + excess
    }

    /// `slow-ramp`: from 1/growth at the start to 1 at the end, geometrically.
    fn growth(&self, at: Millis) -> f64 {
        if self.spec.kind != Kind::SlowRamp {
            return 1.0;
        }
        let progress = (at - self.spec.start) as f64 / (self.end - self.spec.start) as f64;
        self.spec.growth.powf(progress.clamp(0.0, 1.0) - 1.0)
    }

    /// Each day's amplitude, drawn per UTC day and blended linearly from noon to noon.
    fn day_jitter(&self, at: Millis) -> f64 {
        let sigma = self.spec.jitter;
        if sigma == 0.0 {
            return 1.0;
        }
        let days = (at - DAY / 2) as f64 / DAY as f64;
        let (day, fraction) = (days.floor(), days - days.floor());
        let amplitude = |day: f64| {
            (sigma * normal(self.spec.seed, stream::JITTER, day as i64 as u64)
                - sigma * sigma / 2.0)
                .exp()
        };
        amplitude(day) * (1.0 - fraction) + amplitude(day + 1.0) * fraction
    }

    /// Per-second noise, mean about 1: a wander over minutes, independent jitter per second
    /// and bursts of a few seconds.
    fn noise(&self, at: Millis) -> f64 {
        let sigma = self.spec.noise;
        if sigma == 0.0 {
            return 1.0;
        }
        let seed = self.spec.seed;
        let knots = at.div_euclid(WANDER_KNOT);
        let fraction = at.rem_euclid(WANDER_KNOT) as f64 / WANDER_KNOT as f64;
        // Smoothstep between knots: no corners every five minutes.
        let blend = fraction * fraction * (3.0 - 2.0 * fraction);
        let wander = normal(seed, stream::WANDER, knots as u64) * (1.0 - blend)
            + normal(seed, stream::WANDER, (knots + 1) as u64) * blend;
        let second = at.div_euclid(SECOND);
        let white = normal(seed, stream::WHITE, second as u64);
        let log = sigma * (wander + white) - sigma * sigma;
        log.exp() * self.burst(at)
    }

    /// A burst: in about one minute in ten, 2 to 10 seconds at 1 + 10 x noise x (0.5 to 1.5).
    fn burst(&self, at: Millis) -> f64 {
        let slot = at.div_euclid(BURST_SLOT) as u64;
        let draw = hash(self.spec.seed, stream::BURST, slot);
        if unit(draw) >= BURST_CHANCE {
            return 1.0;
        }
        let draw = mix(draw);
        let offset = (unit(draw) * 50.0) as Millis * SECOND;
        let length = (2.0 + unit(mix(draw)) * 8.0) as Millis * SECOND;
        let within = at.rem_euclid(BURST_SLOT) - offset;
        if (0..length).contains(&within) {
            1.0 + 10.0 * self.spec.noise * (0.5 + unit(mix(mix(draw))))
        } else {
            1.0
        }
    }
}

/// The day's shape before scaling: three bumps on a 24-hour circle (hours UTC), a morning one
/// at 10:00, the main one at 15:00 and a smaller evening one at 20:30; near 0 around 04:00.
fn raw_profile(hour: f64) -> f64 {
    const BUMPS: [(f64, f64, f64); 3] = [(10.0, 1.8, 0.75), (15.0, 2.6, 1.0), (20.5, 1.6, 0.55)];
    BUMPS
        .iter()
        .map(|&(centre, width, weight)| {
            // The nearest way round the clock.
            let distance = (hour - centre + 12.0).rem_euclid(24.0) - 12.0;
            weight * (-(distance * distance) / (2.0 * width * width)).exp()
        })
        .sum()
}

fn representable(at: Millis) -> bool {
    chrono::DateTime::from_timestamp_millis(at).is_some()
}

/// Saturday or Sunday (UTC). Day 0 of the epoch, 1970-01-01, was a Thursday.
fn is_weekend(at: Millis) -> bool {
    let weekday_from_monday = (at.div_euclid(DAY) + 3).rem_euclid(7);
    weekday_from_monday >= 5
}

/// Flash crowds as a Poisson process over the trace, drawn in order from one seeded sequence.
fn crowds(spec: &Spec, end: Millis) -> Vec<Crowd> {
    let mut state = hash(spec.seed, stream::CROWDS, 0);
    let mut next = || {
        state = mix(state);
        unit(state)
    };
    let mean_gap = DAY as f64 / spec.crowds_per_day;
    let mut crowds = Vec::new();
    let mut at = spec.start as f64;
    loop {
        at += -(1.0 - next()).ln() * mean_gap;
        // Whole seconds, so a crowd's start and top fall on per-second rows.
        let start = (at / 1000.0).round() as Millis * SECOND;
        if start >= end {
            break;
        }
        let between = |(low, high): (f64, f64), u: f64| (low + (high - low) * u).round();
        crowds.push(Crowd {
            at: start,
            rise_seconds: between(CROWD_RISE_SECONDS, next()),
            decay_seconds: between(CROWD_DECAY_SECONDS, next()),
            factor: spec.crowd_factor * (1.0 + 0.5 * next()),
        });
    }
    crowds
}

/// SplitMix64's output function: a bijective mix of 64 bits.
pub(crate) fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The random value number `index` of `stream` under `seed` (also `tune`'s candidate draws).
pub(crate) fn hash(seed: u64, stream: u64, index: u64) -> u64 {
    mix(mix(seed ^ stream.wrapping_mul(0xD6E8_FEB8_6659_FD93)) ^ index)
}

/// A uniform value in [0, 1) from the top 53 bits.
pub(crate) fn unit(bits: u64) -> f64 {
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

/// A standard normal value (Box-Muller on the two halves of one hash).
fn normal(seed: u64, stream: u64, index: u64) -> f64 {
    let bits = hash(seed, stream, index);
    let u1 = ((bits >> 32) as f64 + 1.0) / 4_294_967_297.0;
    let u2 = (bits & 0xFFFF_FFFF) as f64 / 4_294_967_296.0;
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(kind: Kind) -> Spec {
        Spec { days: 14.0, step_seconds: 60, ..Spec::new(kind) }
    }

    fn generate(spec: Spec) -> Vec<Row> {
        Generator::new(spec).expect("valid").rows().collect()
    }

    fn mean(rows: impl Iterator<Item = f64>) -> f64 {
        let (sum, count) = rows.fold((0.0, 0.0), |(s, n), v| (s + v, n + 1.0));
        sum / count
    }

    #[test]
    fn the_same_seed_gives_the_same_trace_and_another_seed_another() {
        for kind in Kind::ALL {
            let one = Spec { days: 2.0, step_seconds: 1, ..Spec::new(kind) };
            let first = generate(one);
            assert_eq!(first, generate(one), "{kind}");
            assert_eq!(first.len(), 2 * 86_400);
            let other = generate(Spec { seed: 2, ..one });
            let differing = first.iter().zip(&other).filter(|(a, b)| a.load != b.load).count();
            assert!(differing > first.len() / 2, "{kind}: only {differing} rows differ");
        }
    }

    #[test]
    fn rows_are_one_step_apart_from_the_start_and_never_negative() {
        let generator =
            Generator::new(Spec { days: 0.5, step_seconds: 7, ..Spec::new(Kind::FlashCrowd) })
                .expect("valid");
        let rows: Vec<Row> = generator.rows().collect();
        // 43,200 s in steps of 7 s: the last partial step still gets a row.
        assert_eq!(rows.len(), 6_172);
        assert_eq!(rows.len() as u64, generator.row_count());
        assert_eq!(rows[0].at, DEFAULT_START);
        assert!(rows.windows(2).all(|w| w[1].at - w[0].at == 7_000));
        assert!(rows.iter().all(|r| r.load.is_finite() && r.load >= 0.0));
    }

    #[test]
    fn a_step_row_is_the_mean_of_its_seconds() {
        let base = Spec { days: 0.1, ..Spec::new(Kind::FlashCrowd) };
        let per_second = generate(Spec { step_seconds: 1, ..base });
        let per_minute = generate(Spec { step_seconds: 60, ..base });
        let expected = mean(per_second[60..120].iter().map(|r| r.load));
        assert!((per_minute[1].load - expected).abs() < 1e-6 * expected);
    }

    #[test]
    fn weekends_are_lower_than_weekdays_and_nights_than_afternoons() {
        let rows = generate(Spec { days: 28.0, ..spec(Kind::Diurnal) });
        let weekend = mean(rows.iter().filter(|r| is_weekend(r.at)).map(|r| r.load));
        let weekday = mean(rows.iter().filter(|r| !is_weekend(r.at)).map(|r| r.load));
        // The default weekend level is 0.6 of a weekday's, blurred by jitter and noise.
        let ratio = weekend / weekday;
        assert!((0.5..0.7).contains(&ratio), "weekend/weekday = {ratio}");
        let hour = |r: &Row| r.at.rem_euclid(DAY) / HOUR;
        let night = mean(rows.iter().filter(|r| (2..5).contains(&hour(r))).map(|r| r.load));
        let afternoon = mean(rows.iter().filter(|r| (13..16).contains(&hour(r))).map(|r| r.load));
        assert!(night < 0.3 * afternoon, "night {night}, afternoon {afternoon}");
        // A weekday afternoon is near the peak asked for.
        let monday_peak = rows[..1440].iter().map(|r| r.load).fold(0.0, f64::max);
        assert!((150_000.0..300_000.0).contains(&monday_peak), "{monday_peak}");
    }

    #[test]
    fn days_differ_in_amplitude_but_jitter_zero_repeats_them() {
        let day_peaks = |rows: &[Row]| -> Vec<f64> {
            rows.chunks(1440).map(|day| day.iter().map(|r| r.load).fold(0.0, f64::max)).collect()
        };
        let smooth = Spec { noise: 0.0, ..spec(Kind::Diurnal) };
        let still = day_peaks(&generate(Spec { jitter: 0.0, ..smooth }));
        assert!((still[0] - still[1]).abs() < 1e-6 * still[0], "{still:?}");
        assert!((still[0] - 200_000.0).abs() < 200.0, "peak {}", still[0]);
        let jittered = day_peaks(&generate(smooth));
        assert!((jittered[0] - jittered[1]).abs() > 1e-3 * jittered[0], "{jittered:?}");
    }

    #[test]
    fn flash_crowds_multiply_the_base_by_the_factor_within_a_minute_and_decay() {
        let spec = Spec { noise: 0.0, crowd_factor: 4.0, ..spec(Kind::FlashCrowd) };
        let generator = Generator::new(spec).expect("valid");
        let crowds = generator.crowds();
        // Two a day on average over 14 days.
        assert!((10..=50).contains(&crowds.len()), "{} crowds", crowds.len());
        assert!(crowds.windows(2).all(|w| w[0].at <= w[1].at));
        for crowd in crowds {
            assert!(crowd.rise_seconds <= 60.0 && crowd.factor >= 4.0, "{crowd:?}");
            let top = crowd.top();
            if top >= generator.end() {
                continue;
            }
            let ratio = generator.load_at(top) / generator.base(top);
            assert!(ratio >= 4.0, "{crowd:?}: x{ratio} at the top");
            // An hour later it has decayed (unless another crowd came since).
            let later = top + HOUR;
            let quiet = !crowds.iter().any(|c| c.at > crowd.at && c.at <= later);
            if quiet && later < generator.end() {
                let ratio = generator.load_at(later) / generator.base(later);
                assert!(ratio < 1.0 + 0.02 * crowd.factor, "{crowd:?}: x{ratio} an hour on");
            }
        }
        // The diurnal kind with the same seed has no crowds and the same base.
        let plain = Generator::new(Spec { kind: Kind::Diurnal, ..spec }).expect("valid");
        assert!(plain.crowds().is_empty());
        let at = DEFAULT_START + 5 * DAY + 3 * HOUR;
        assert_eq!(plain.base(at), generator.base(at));
    }

    #[test]
    fn a_slow_ramp_grows_by_the_factor_and_peaks_at_the_end() {
        let spec = Spec { noise: 0.0, jitter: 0.0, growth: 4.0, ..spec(Kind::SlowRamp) };
        let rows = generate(spec);
        let days: Vec<f64> =
            rows.chunks(1440).map(|day| mean(day.iter().map(|r| r.load))).collect();
        assert_eq!(days.len(), 14);
        // The same weekday a week apart: half the trace, so growth^(1/2) = 2.
        for (first, second) in days[..7].iter().zip(&days[7..]) {
            assert!((second / first - 2.0).abs() < 0.01, "{first} -> {second}");
        }
        let weeks: Vec<f64> = days.chunks(7).map(|week| week.iter().sum()).collect();
        assert!(weeks[1] > 1.9 * weeks[0], "{weeks:?}");
        // It reaches the diurnal level (the peak asked for) at the end, from a quarter of it.
        let ramp = Generator::new(spec).expect("valid");
        let plain = Generator::new(Spec { kind: Kind::Diurnal, ..spec }).expect("valid");
        let (first, last) = (rows[0].at, rows[rows.len() - 1].at);
        assert!((ramp.base(first) / plain.base(first) - 0.25).abs() < 1e-9);
        assert!((ramp.base(last) / plain.base(last) - 1.0).abs() < 1e-3);
    }

    #[test]
    fn per_second_noise_has_the_asked_spread_and_bursts() {
        let spec = Spec { days: 1.0, step_seconds: 1, ..Spec::new(Kind::Diurnal) };
        let generator = Generator::new(spec).expect("valid");
        let ratios: Vec<f64> = (0..86_400)
            .map(|s| {
                let at = DEFAULT_START + s * SECOND;
                generator.load_at(at) / generator.base(at)
            })
            .collect();
        let average = mean(ratios.iter().copied());
        assert!((0.97..1.06).contains(&average), "mean noise factor {average}");
        let changes = mean(ratios.windows(2).map(|w| (w[1] / w[0]).ln().abs()));
        assert!(changes > 0.02, "second-to-second changes too small: {changes}");
        let bursts = ratios.iter().filter(|r| **r > 1.2).count();
        assert!(bursts > 500, "{bursts} seconds in bursts");
    }

    #[test]
    fn every_wrong_setting_is_reported() {
        let spec = Spec {
            days: 0.0,
            peak: -1.0,
            night: 1.5,
            noise: f64::NAN,
            crowd_factor: 0.5,
            ..Spec::new(Kind::FlashCrowd)
        };
        let error = Generator::new(spec).expect_err("invalid");
        let fields: Vec<&str> = error.problems.iter().map(|p| p.field).collect();
        assert_eq!(fields, ["days", "peak", "night", "noise", "crowd-factor"]);
        assert!(error.to_string().contains("peak: must be in (0, 1e12], got -1"), "{error}");
        // A peak that crowds and bursts would multiply past a finite number; a trace shorter
        // than two steps.
        let wild = Spec { peak: 1e308, days: 1e-9, ..Spec::new(Kind::FlashCrowd) };
        let error = Generator::new(wild).expect_err("invalid");
        let fields: Vec<&str> = error.problems.iter().map(|p| p.field).collect();
        assert_eq!(fields, ["days", "peak"]);
        for start in [8_300_000_000_000_000, i64::MAX - 1_000, i64::MIN / 2] {
            let far = Spec { start, ..Spec::new(Kind::Diurnal) };
            let error = Generator::new(far).expect_err("beyond the calendar");
            assert_eq!(error.problems[0].field, "start");
        }
    }

    #[test]
    fn the_default_start_is_a_monday() {
        assert!(!is_weekend(DEFAULT_START));
        assert!(is_weekend(DEFAULT_START + 5 * DAY));
        assert!(is_weekend(DEFAULT_START + 6 * DAY + 23 * HOUR));
        assert!(!is_weekend(DEFAULT_START + 7 * DAY));
        assert_eq!(
            crate::sim::trace::timestamp(DEFAULT_START).to_rfc3339(),
            "2026-01-05T00:00:00+00:00"
        );
    }
}
