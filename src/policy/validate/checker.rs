//! The [`Checker`] every section writes its problems to, with its readers for the common
//! field kinds (integers in a range, words from a list, durations within bounds, cron lines),
//! and the field rules more than one section applies (environment variable names, file
//! paths, exactly-one-of groups).

use std::time::Duration;

use super::Problem;
use crate::policy::CronSchedule;
use crate::policy::bounds::{Bounds, parse_duration, show};
use crate::policy::source_map::{Anchor, FieldPath};

/// Collects problems; its helpers return `None` only after recording one.
#[derive(Debug, Default)]
pub(super) struct Checker {
    pub(super) problems: Vec<Problem>,
}

impl Checker {
    /// A bad value.
    pub(super) fn bad(&mut self, path: &FieldPath, message: impl Into<String>) {
        self.problems.push(Problem {
            path: path.clone(),
            anchor: Anchor::Value,
            message: message.into(),
        });
    }

    /// A field that must not be there in this combination.
    pub(super) fn unexpected(&mut self, path: &FieldPath, message: impl Into<String>) {
        self.problems.push(Problem {
            path: path.clone(),
            anchor: Anchor::Key,
            message: message.into(),
        });
    }

    /// Records `result`'s error at `path`.
    pub(super) fn check(&mut self, result: Result<(), String>, path: &FieldPath) -> Option<()> {
        result.map_err(|message| self.bad(path, message)).ok()
    }

    pub(super) fn required<'a, T: ?Sized>(
        &mut self,
        value: Option<&'a T>,
        path: &FieldPath,
    ) -> Option<&'a T> {
        if value.is_none() {
            let name = path.last_key().unwrap_or("value");
            self.problems.push(Problem {
                path: path.clone(),
                anchor: Anchor::Parent,
                message: format!("missing required field `{name}`"),
            });
        }
        value
    }

    pub(super) fn exact(&mut self, value: Option<&str>, path: &FieldPath, expected: &str) {
        if let Some(found) = self.required(value, path)
            && found != expected
        {
            self.bad(path, format!("must be `{expected}`, found `{found}`"));
        }
    }

    /// An integer in `min..=max` (a range `T` holds), or `default` when absent (`None`:
    /// required).
    pub(super) fn int<T: TryFrom<i64> + Copy>(
        &mut self,
        value: Option<i64>,
        path: &FieldPath,
        default: Option<T>,
        min: i64,
        max: i64,
    ) -> Option<T> {
        let Some(value) = value else {
            return match default {
                Some(default) => Some(default),
                None => self.required(None::<&T>, path).copied(),
            };
        };
        let message = if value < min {
            format!("must be at least {min}, found {value}")
        } else if value > max {
            format!("must be at most {max}, found {value}")
        } else if let Ok(value) = T::try_from(value) {
            return Some(value);
        } else {
            format!("{value} is out of range")
        };
        self.bad(path, message);
        None
    }

    /// A word out of `choices`, or `default` when absent.
    pub(super) fn word<T: Copy>(
        &mut self,
        value: Option<&str>,
        path: &FieldPath,
        default: T,
        choices: &[(&str, T)],
    ) -> Option<T> {
        let Some(text) = value else { return Some(default) };
        if let Some((_, chosen)) = choices.iter().find(|(word, _)| *word == text) {
            return Some(*chosen);
        }
        let words: Vec<&str> = choices.iter().map(|(word, _)| *word).collect();
        self.bad(path, format!("unknown value `{text}`, expected one of {}", words.join(", ")));
        None
    }

    /// A duration like `30s` within `limits`, or `default` when absent (`None`: required).
    pub(super) fn duration(
        &mut self,
        value: Option<&str>,
        path: &FieldPath,
        default: Option<Duration>,
        limits: Bounds,
    ) -> Option<Duration> {
        let Some(text) = value else {
            return match default {
                Some(default) => Some(default),
                None => self.required(None::<&Duration>, path).copied(),
            };
        };
        match parse_duration(text).and_then(|d| limits.check(d, text)) {
            Ok(d) => Some(d),
            Err(message) => {
                self.bad(path, message);
                None
            }
        }
    }

    /// `window` when it spans at least `count` sampling intervals: a window shorter than
    /// that never holds enough samples to compute anything.
    pub(super) fn at_least_intervals(
        &mut self,
        window: Duration,
        path: &FieldPath,
        interval: Option<Duration>,
        count: u32,
    ) -> Option<Duration> {
        let Some(interval) = interval else { return Some(window) };
        let least = interval.saturating_mul(count);
        if window >= least {
            return Some(window);
        }
        let what = if count == 1 {
            format!("sampling.interval ({})", show(interval))
        } else {
            format!("{count} x sampling.interval ({})", show(least))
        };
        self.bad(path, format!("must be at least {what}, found {}", show(window)));
        None
    }

    pub(super) fn cron(&mut self, value: Option<&str>, path: &FieldPath) -> Option<CronSchedule> {
        let text = self.required(value, path)?;
        CronSchedule::parse(text).map_err(|message| self.bad(path, message)).ok()
    }
}

/// For an exactly-one-of group with several members set: each member after the first is
/// reported at its own key, naming the one that was kept.
pub(super) fn report_conflicts(
    c: &mut Checker,
    path: &FieldPath,
    set: &[(&str, bool)],
    rule: &str,
) {
    let mut present = set.iter().filter(|(_, is_set)| *is_set).map(|(name, _)| *name);
    let first = present.next().unwrap_or_default();
    for extra in present {
        c.unexpected(&path.key(extra), format!("{rule}; `{first}` is already set"));
    }
}

pub(super) fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// An environment variable name as a shell writes it. The value is not echoed back: a name
/// that is not one is most often the secret itself, pasted into the wrong field.
pub(super) fn env_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let valid = chars.next().is_some_and(|ch| ch.is_ascii_alphabetic() || ch == '_')
        && chars.all(|ch| ch.is_ascii_alphanumeric() || ch == '_');
    if valid {
        Ok(())
    } else {
        Err("must be an environment variable name (letters, digits and `_`, not starting \
             with a digit)"
            .to_owned())
    }
}

pub(super) fn file_path(path: &str) -> Result<(), String> {
    if path.trim().is_empty() { Err("must be a file path".to_owned()) } else { Ok(()) }
}
