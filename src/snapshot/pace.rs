//! How slow and how long a snapshot may be: a floor on the payload's throughput, judged over
//! consecutive windows, and a deadline over the whole snapshot (source choice, handshake,
//! waiting for the fork, the payload). Both come from the policy
//! ([`crate::policy::TransferLimits`]).
//!
//! Why both, beside the stall timer: the stall timer restarts on every byte, so a source that
//! sends one byte every few seconds (or a keepalive newline every second before a payload
//! that never comes) would keep a snapshot running forever, holding the policy's snapshot
//! gate and any scale-down waiting on it. The floor catches a trickle within one window; the
//! deadline catches everything else.
//!
//! Pure: the caller passes `now`, so the rules are tested without a clock.

use std::time::{Duration, Instant};

use crate::policy::TransferLimits;

/// A limit was breached; each names the figure measured and the limit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PaceError {
    #[error(
        "the RDB arrived at {bytes_per_second} bytes/s ({bytes} bytes in {:.1}s), below the \
         floor of {floor} bytes/s (spec.snapshots.minBytesPerSecond)",
        .over.as_secs_f64()
    )]
    TooSlow { bytes_per_second: u64, bytes: u64, over: Duration, floor: u64 },
    #[error(
        "the snapshot has run for {:.1}s, past its deadline of {deadline:?} \
         (spec.snapshots.deadline)",
        .elapsed.as_secs_f64()
    )]
    Deadline { elapsed: Duration, deadline: Duration },
}

impl PaceError {
    pub fn category(&self) -> &'static str {
        match self {
            PaceError::TooSlow { .. } => "too_slow",
            PaceError::Deadline { .. } => "deadline",
        }
    }
}

/// One snapshot's limits and what has arrived so far. `Copy`: every candidate source tried
/// shares the snapshot's start, so trying another never restarts the deadline.
#[derive(Debug, Clone, Copy)]
pub struct Pace {
    limits: TransferLimits,
    started: Instant,
    /// The current throughput window: when it opened and the bytes since. `None` until the
    /// payload starts: the fork and `repl-diskless-sync-delay` before it send nothing.
    window: Option<(Instant, u64)>,
}

impl Pace {
    /// A snapshot that started at `started`.
    pub fn new(limits: TransferLimits, started: Instant) -> Self {
        Self { limits, started, window: None }
    }

    /// No floor and no deadline worth the name (a century): for callers that bound the
    /// transfer themselves.
    pub fn unlimited(started: Instant) -> Self {
        let century = Duration::from_secs(100 * 365 * 86_400);
        let limits = TransferLimits {
            min_bytes_per_second: 0,
            throughput_window: century,
            deadline: century,
        };
        Self::new(limits, started)
    }

    /// The payload starts at `now`: throughput is judged from here on.
    pub fn payload_started(&mut self, now: Instant) {
        self.window = Some((now, 0));
    }

    /// Records `arrived` bytes at `now` (0 to only judge), and judges: past the deadline, or
    /// a window that closed below the floor, is an error. A window that passed opens the next.
    pub fn check(&mut self, arrived: u64, now: Instant) -> Result<(), PaceError> {
        let elapsed = now.saturating_duration_since(self.started);
        if elapsed >= self.limits.deadline {
            return Err(PaceError::Deadline { elapsed, deadline: self.limits.deadline });
        }
        let Some((opened, bytes)) = self.window.as_mut() else { return Ok(()) };
        *bytes = bytes.saturating_add(arrived);
        let over = now.saturating_duration_since(*opened);
        if over < self.limits.throughput_window {
            return Ok(());
        }
        let rate = u128::from(*bytes) * 1_000_000_000 / over.as_nanos().max(1);
        let bytes_per_second = u64::try_from(rate).unwrap_or(u64::MAX);
        if bytes_per_second < self.limits.min_bytes_per_second {
            return Err(PaceError::TooSlow {
                bytes_per_second,
                bytes: *bytes,
                over,
                floor: self.limits.min_bytes_per_second,
            });
        }
        self.window = Some((now, 0));
        Ok(())
    }

    /// How long after `now` a limit falls due even if nothing arrives: the deadline, or the
    /// end of the current window. [`Pace::check`] at that time judges it.
    pub fn until_due(&self, now: Instant) -> Duration {
        let elapsed = now.saturating_duration_since(self.started);
        let deadline = self.limits.deadline.saturating_sub(elapsed);
        match self.window {
            None => deadline,
            Some((opened, _)) => {
                let open_for = now.saturating_duration_since(opened);
                deadline.min(self.limits.throughput_window.saturating_sub(open_for))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(floor: u64, window: u64, deadline: u64) -> TransferLimits {
        TransferLimits {
            min_bytes_per_second: floor,
            throughput_window: Duration::from_secs(window),
            deadline: Duration::from_secs(deadline),
        }
    }

    fn at(start: Instant, secs: f64) -> Instant {
        start + Duration::from_secs_f64(secs)
    }

    #[test]
    fn a_trickle_fails_when_its_first_window_closes() {
        let t0 = Instant::now();
        let mut pace = Pace::new(limits(1000, 2, 3600), t0);
        pace.payload_started(at(t0, 5.0));
        // One byte a second, as a hostile source sends it: fine until the window closes.
        pace.check(1, at(t0, 6.0)).unwrap();
        assert_eq!(pace.until_due(at(t0, 6.0)), Duration::from_secs(1));
        let error = pace.check(1, at(t0, 7.0)).unwrap_err();
        assert_eq!(
            error,
            PaceError::TooSlow {
                bytes_per_second: 1,
                bytes: 2,
                over: Duration::from_secs(2),
                floor: 1000
            }
        );
        assert_eq!(error.category(), "too_slow");
        assert_eq!(
            error.to_string(),
            "the RDB arrived at 1 bytes/s (2 bytes in 2.0s), below the floor of 1000 bytes/s \
             (spec.snapshots.minBytesPerSecond)"
        );
    }

    #[test]
    fn a_fast_window_opens_the_next_and_silence_is_judged_when_due() {
        let t0 = Instant::now();
        let mut pace = Pace::new(limits(1000, 2, 3600), t0);
        pace.payload_started(t0);
        pace.check(5000, at(t0, 2.0)).unwrap();
        // Nothing arrives in the next window: judged when it is due, at 0 bytes/s.
        let due = pace.until_due(at(t0, 2.0));
        assert_eq!(due, Duration::from_secs(2));
        let error = pace.check(0, at(t0, 2.0) + due).unwrap_err();
        assert!(matches!(error, PaceError::TooSlow { bytes_per_second: 0, .. }), "{error}");
    }

    #[test]
    fn before_the_payload_only_the_deadline_counts() {
        let t0 = Instant::now();
        let mut pace = Pace::new(limits(1000, 2, 3), t0);
        // Keepalives while the server forks: no floor yet.
        pace.check(0, at(t0, 2.5)).unwrap();
        assert_eq!(pace.until_due(at(t0, 2.5)), Duration::from_millis(500));
        let error = pace.check(0, at(t0, 3.0)).unwrap_err();
        assert_eq!(
            error,
            PaceError::Deadline {
                elapsed: Duration::from_secs(3),
                deadline: Duration::from_secs(3)
            }
        );
        assert_eq!(error.category(), "deadline");
        assert_eq!(
            error.to_string(),
            "the snapshot has run for 3.0s, past its deadline of 3s (spec.snapshots.deadline)"
        );
    }

    #[test]
    fn the_deadline_holds_however_fast_the_payload() {
        let t0 = Instant::now();
        let mut pace = Pace::new(limits(1, 1, 10), t0);
        pace.payload_started(t0);
        for second in 1..10 {
            pace.check(1 << 30, at(t0, f64::from(second))).unwrap();
        }
        assert_eq!(pace.until_due(at(t0, 9.5)), Duration::from_millis(500));
        assert!(matches!(pace.check(1 << 30, at(t0, 10.0)), Err(PaceError::Deadline { .. })));
    }

    #[test]
    fn unlimited_never_fails_and_never_overflows() {
        let t0 = Instant::now();
        let mut pace = Pace::unlimited(t0);
        pace.payload_started(t0);
        pace.check(0, at(t0, 86_400.0 * 365.0)).unwrap();
        assert!(pace.until_due(t0) > Duration::from_secs(86_400 * 365 * 99));
    }
}
