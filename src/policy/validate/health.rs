//! `spec.health`: failure detection, the failover mode and its rate limit, replica lag, the
//! probe's cadence, and Redis's write guard (`min-replicas-to-write`).

use super::checker::{Checker, secs};
use crate::policy::bounds::{self, show};
use crate::policy::source_map::FieldPath;
use crate::policy::spec::HealthSpec;
use crate::policy::{FailoverMode, Health, WriteGuard};

pub(super) fn check_health(
    c: &mut Checker,
    spec: Option<&HealthSpec>,
    path: &FieldPath,
) -> Option<Health> {
    let empty = HealthSpec::default();
    let spec = spec.unwrap_or(&empty);
    let defaults = Health::default();
    let down_after = c.duration(
        spec.down_after.as_deref(),
        &path.key("downAfter"),
        Some(defaults.down_after),
        bounds::DOWN_AFTER,
    );
    let failover = c.word(
        spec.failover.as_deref(),
        &path.key("failover"),
        defaults.failover,
        &[
            ("auto", FailoverMode::Auto),
            ("manual", FailoverMode::Manual),
            ("off", FailoverMode::Off),
        ],
    );
    let max_failovers_per_hour = c.int(
        spec.max_failovers_per_hour,
        &path.key("maxFailoversPerHour"),
        Some(defaults.max_failovers_per_hour),
        0,
        i64::from(u32::MAX),
    );
    let replica_max_lag = c.duration(
        spec.replica_max_lag.as_deref(),
        &path.key("replicaMaxLag"),
        Some(defaults.replica_max_lag),
        bounds::REPLICA_MAX_LAG,
    );
    let probe_interval = c.duration(
        spec.probe_interval.as_deref(),
        &path.key("probeInterval"),
        Some(defaults.probe_interval),
        bounds::PROBE_INTERVAL,
    );
    let probe_timeout_path = path.key("probeTimeout");
    let probe_timeout = c.duration(
        spec.probe_timeout.as_deref(),
        &probe_timeout_path,
        Some(defaults.probe_timeout),
        bounds::PROBE_TIMEOUT,
    );
    // A probe that may outlast downAfter could never show the master down in time.
    let probe_timeout = match (probe_timeout, down_after) {
        (Some(timeout), Some(down)) if timeout > down => {
            c.bad(
                &probe_timeout_path,
                format!("must be at most downAfter ({}), found {}", show(down), show(timeout)),
            );
            None
        }
        (timeout, _) => timeout,
    };
    let min_replicas = c.int(
        spec.min_replicas_to_write,
        &path.key("minReplicasToWrite"),
        Some(0_u32),
        0,
        i64::from(u32::MAX),
    );
    let max_lag_path = path.key("minReplicasMaxLag");
    let max_lag = c.duration(
        spec.min_replicas_max_lag.as_deref(),
        &max_lag_path,
        Some(secs(10)),
        bounds::MIN_REPLICAS_MAX_LAG,
    );
    // Redis takes whole seconds.
    let max_lag = match max_lag {
        Some(lag) if lag.subsec_nanos() != 0 => {
            c.bad(&max_lag_path, format!("must be whole seconds, found {}", show(lag)));
            None
        }
        lag => lag,
    };
    let write_guard = match (min_replicas?, max_lag?) {
        (0, _) => None,
        (min_replicas, max_lag) => Some(WriteGuard { min_replicas, max_lag }),
    };
    Some(Health {
        down_after: down_after?,
        confirm_with_replicas: spec.confirm_with_replicas.unwrap_or(defaults.confirm_with_replicas),
        failover: failover?,
        max_failovers_per_hour: max_failovers_per_hour?,
        replica_max_lag: replica_max_lag?,
        remove_lagging_replicas: spec
            .remove_lagging_replicas
            .unwrap_or(defaults.remove_lagging_replicas),
        probe_interval: probe_interval?,
        probe_timeout: probe_timeout?,
        write_guard,
    })
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use crate::policy::validate::testing::*;

    #[rstest]
    #[case::failover_unknown(
        "  health: {failover: yes-please}\n",
        "spec.health.failover",
        5,
        22,
        "expected one of auto, manual, off"
    )]
    #[case::down_after_zero(
        "  health: {downAfter: 0s}\n",
        "spec.health.downAfter",
        5,
        23,
        "must be longer than 0"
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
