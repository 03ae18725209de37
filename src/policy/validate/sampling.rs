//! `spec.sampling`: how often the instances are sampled, and how long one sample may take
//! (shorter than the interval).

use super::checker::{Checker, secs};
use crate::policy::Sampling;
use crate::policy::bounds::{SAMPLING_INTERVAL, SAMPLING_TIMEOUT, show};
use crate::policy::source_map::FieldPath;
use crate::policy::spec::SamplingSpec;

pub(super) fn check_sampling(
    c: &mut Checker,
    spec: Option<&SamplingSpec>,
    path: &FieldPath,
) -> Option<Sampling> {
    let default = SamplingSpec::default();
    let spec = spec.unwrap_or(&default);
    let interval = c.duration(
        spec.interval.as_deref(),
        &path.key("interval"),
        Some(secs(10)),
        SAMPLING_INTERVAL,
    );
    let timeout =
        c.duration(spec.timeout.as_deref(), &path.key("timeout"), Some(secs(2)), SAMPLING_TIMEOUT);
    let (interval, timeout) = (interval?, timeout?);
    if timeout >= interval {
        c.bad(
            &path.key("timeout"),
            format!(
                "must be shorter than sampling.interval ({}), found {}",
                show(interval),
                show(timeout)
            ),
        );
        return None;
    }
    Some(Sampling { interval, timeout })
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use crate::policy::validate::testing::*;

    #[rstest]
    #[case::timeout_not_below_interval(
        "  sampling: {interval: 2s, timeout: 2s}\n",
        "spec.sampling.timeout",
        5,
        37,
        "must be shorter than sampling.interval (2s)"
    )]
    fn a_broken_rule_is_reported_at_its_field(
        #[case] body: &str,
        #[case] path: &str,
        #[case] line: usize,
        #[case] column: usize,
        #[case] message: &str,
    ) {
        assert_problem(&format!("{HEAD}{body}{TARGET}"), path, line, column, message);
    }
}
