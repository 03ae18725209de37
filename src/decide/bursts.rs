//! How bursty a metric is: each round's value over the metric's level (its statistic) at
//! that round, kept for a long window, and a high quantile of those ratios as the burst the
//! headroom must hold.
//!
//! A band's headroom is a fixed fraction of the target, tuned for some burstiness. A quiet
//! load pays for headroom it never uses, and a noisier one than the tuning saw overruns it.
//! Scaling the level by *measured / expected* bursts sizes the same band for the load at
//! hand. The window is long (a day) on purpose: an estimate over minutes moves with every
//! burst, and every move up of the count costs a warm-up, which loses more than the estimate
//! gains (docs/simulation.md has the figures). Over a day it is the load's character, not
//! its latest wobble.
//!
//! A round is measured against the higher of two levels: the metric's statistic when it was
//! the newest round (the level before it) and when it is in the middle of the window (the
//! level around it). Against the level before it alone, every round of a lasting rise (a
//! flash crowd arriving) reads as a burst; against the level around it alone, the last
//! rounds before a lasting fall do. A burst is above both.
//!
//! Rounds of a fleet well under its target are not counted: a near-idle Redis's ratios are
//! large and say nothing about the headroom at the target. Until the window holds enough
//! counted rounds for the quantile, the factor is 1 and the band works as written.

use std::collections::VecDeque;

use serde::Serialize;

use super::series::{self, window_start};
use crate::observe::Timestamp;
use crate::policy::{Bursts, Metric};

/// Ratios are kept in logarithmic bins of this relative width (half a percent), from
/// `RATIO_MIN` up; anything beyond the last bin counts in it.
const BIN_WIDTH: f64 = 0.005;
const RATIO_MIN: f64 = 0.25;
/// Bins from 0.25 to 16 (ln 64 / ln 1.005): wider than any burst a band can answer.
const BINS: usize = 834;
/// A round counts only while the level per replica is at least this fraction of the target.
pub const COUNTED_FROM: f64 = 0.5;
/// The quantile must rest on this many counted rounds above it before it is used.
const ROUNDS_BEYOND_QUANTILE: f64 = 10.0;

/// The burst factor's state for one metric, kept between evaluations.
#[derive(Debug, Clone)]
pub struct BurstMemory {
    config: Bursts,
    /// Rounds not yet in the middle of the window: time, value, and the level when each was
    /// the newest round. At most the metric's window of rounds.
    pending: VecDeque<(Timestamp, f64, f64)>,
    /// The newest round taken in.
    newest: Option<Timestamp>,
    /// Counted rounds in `bursts.window`, oldest first, by bin.
    rounds: VecDeque<(Timestamp, u16)>,
    counts: Vec<u32>,
    /// The smallest bin with at least `quantile` of the rounds at or below it, and how many
    /// are: kept up to date round by round, since a scan of every bin at every evaluation
    /// would cost `simulate` more than the rest of the decision.
    quantile_bin: usize,
    at_or_below: u64,
}

/// What the metric's burst factor was at one evaluation, for the reason.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BurstReading {
    pub quantile: f64,
    /// The quantile of the counted rounds' ratio to their level; `None` until enough rounds.
    pub measured: Option<f64>,
    pub expect: f64,
    /// What the level was multiplied by: `measured / expect`, or 1 until measured.
    pub factor: f64,
    pub rounds: usize,
}

impl BurstMemory {
    pub fn new(config: &Bursts) -> Self {
        Self {
            config: config.clone(),
            pending: VecDeque::new(),
            newest: None,
            rounds: VecDeque::new(),
            counts: vec![0; BINS],
            quantile_bin: 0,
            at_or_below: 0,
        }
    }

    /// Whether this memory was kept for `config` (a reloaded policy starts afresh).
    pub fn fits(&self, config: &Bursts) -> bool {
        self.config == *config
    }

    /// Takes in the metric's `window` (oldest first) and `level` (its statistic over it):
    /// rounds newer than any seen wait with `level` as the level before them; rounds now in
    /// the middle of the window or older are measured and, while `counted` (the level is near
    /// the target), counted. Forgets what left `bursts.window`.
    pub fn feed(&mut self, window: &[(Timestamp, f64)], level: f64, counted: bool, now: Timestamp) {
        let first_new = self.newest.map_or(0, |seen| window.partition_point(|(at, _)| *at <= seen));
        self.pending.extend(window[first_new..].iter().map(|&(at, value)| (at, value, level)));
        if let Some(&(at, _)) = window.last() {
            self.newest = Some(self.newest.map_or(at, |seen| seen.max(at)));
        }
        let middle = window[..window.len().div_ceil(2)].last().map(|p| p.0);
        while let Some(&(at, value, before)) = self.pending.front() {
            if middle.is_none_or(|middle| at > middle) {
                break;
            }
            self.pending.pop_front();
            let around = level.max(before);
            if counted
                && around > 0.0
                && around.is_finite()
                && let Some(bin) = bin_of(value / around)
            {
                self.rounds.push_back((at, bin));
                self.count(bin, true);
            }
        }
        let cutoff = window_start(now, self.config.window);
        while let Some(&(at, bin)) = self.rounds.front() {
            if at > cutoff {
                break;
            }
            self.rounds.pop_front();
            self.count(bin, false);
        }
        self.settle();
    }

    /// Measures a metric's past values per replica (oldest first, one per sampling round) as
    /// if each had been a live round: its level is the metric's statistic over the metric's
    /// window ending at it, counted from the same fraction of the target. The rounds still
    /// waiting for their level around them at the end are dropped: live rounds are totals,
    /// and a level of totals must not measure a value per replica.
    pub fn replay(&mut self, metric: &Metric, points: &[(Timestamp, f64)]) {
        let mut first = 0;
        for (newest, &(now, _)) in points.iter().enumerate() {
            let cutoff = window_start(now, metric.window);
            while first < newest && points[first].0 <= cutoff {
                first += 1;
            }
            let window = &points[first..=newest];
            let level = series::statistic(metric.statistic, window, now);
            self.feed(window, level, level >= COUNTED_FROM * metric.target, now);
        }
        self.pending.clear();
    }

    /// One round more or less in `bin`.
    fn count(&mut self, bin: u16, added: bool) {
        let bin = usize::from(bin);
        if added {
            self.counts[bin] += 1;
        } else {
            self.counts[bin] -= 1;
        }
        if bin <= self.quantile_bin {
            if added {
                self.at_or_below += 1;
            } else {
                self.at_or_below -= 1;
            }
        }
    }

    /// Moves the quantile's bin to where the rounds now put it: a few bins at most per round.
    fn settle(&mut self) {
        let wanted = (self.config.quantile * self.rounds.len() as f64).ceil() as u64;
        while self.at_or_below < wanted && self.quantile_bin + 1 < BINS {
            self.quantile_bin += 1;
            self.at_or_below += u64::from(self.counts[self.quantile_bin]);
        }
        while self.quantile_bin > 0
            && self.at_or_below - u64::from(self.counts[self.quantile_bin]) >= wanted
        {
            self.at_or_below -= u64::from(self.counts[self.quantile_bin]);
            self.quantile_bin -= 1;
        }
    }

    /// The factor to multiply the level by now.
    pub fn reading(&self) -> BurstReading {
        let Bursts { quantile, expect, max_factor, .. } = self.config;
        let measured = self.measured();
        BurstReading {
            quantile,
            measured,
            expect,
            factor: measured.map_or(1.0, |m| (m / expect).min(max_factor)),
            rounds: self.rounds.len(),
        }
    }

    /// The upper edge of the bin holding the quantile, once enough rounds are counted.
    fn measured(&self) -> Option<f64> {
        let n = self.rounds.len();
        if (n as f64) * (1.0 - self.config.quantile) < ROUNDS_BEYOND_QUANTILE {
            return None;
        }
        Some(RATIO_MIN * (1.0 + BIN_WIDTH).powi(self.quantile_bin as i32 + 1))
    }

    #[cfg(test)]
    pub(super) fn held(&self) -> usize {
        self.rounds.len() + self.pending.len()
    }
}

/// The bin of a ratio; `None` for a ratio that is not a number.
fn bin_of(ratio: f64) -> Option<u16> {
    if !ratio.is_finite() || ratio < 0.0 {
        return None;
    }
    let bin = ((ratio / RATIO_MIN).ln() / BIN_WIDTH.ln_1p()).floor();
    Some(bin.clamp(0.0, (BINS - 1) as f64) as u16)
}
