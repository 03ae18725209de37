//! `spec.alerts`: Alertmanager alert names mapped to actions the policy can take (an
//! evaluation, a scale-up within `spec.scaling`, a snapshot when `spec.snapshots` is set).

use std::collections::HashMap;

use super::checker::Checker;
use super::scaling::MAX_REPLICAS_LIMIT;
use crate::policy::source_map::FieldPath;
use crate::policy::spec::{AlertActionSpec, AlertSpec, PolicySpec};
use crate::policy::{AlertAction, AlertRule};

pub(super) fn check_alerts(
    c: &mut Checker,
    spec: &PolicySpec,
    path: &FieldPath,
) -> Option<Vec<AlertRule>> {
    let Some(alerts) = &spec.alerts else { return Some(Vec::new()) };
    let mut seen: HashMap<&str, usize> = HashMap::new();
    let mut rules = Some(Vec::with_capacity(alerts.len()));
    for (i, alert) in alerts.iter().enumerate() {
        let rule = check_alert(c, alert, (path, i), spec, &mut seen);
        match (rule, rules.as_mut()) {
            (Some(rule), Some(rules)) => rules.push(rule),
            _ => rules = None,
        }
    }
    rules
}

fn check_alert<'a>(
    c: &mut Checker,
    alert: &'a AlertSpec,
    (alerts_path, index): (&FieldPath, usize),
    spec: &PolicySpec,
    seen: &mut HashMap<&'a str, usize>,
) -> Option<AlertRule> {
    let path = alerts_path.index(index);
    let name_path = path.key("alertname");
    let alert_name = c.required(alert.alertname.as_ref(), &name_path).and_then(|name| {
        if name.trim().is_empty() {
            c.bad(&name_path, "must be an Alertmanager alert name");
            return None;
        }
        if let Some(first) = seen.insert(name, index) {
            c.bad(&name_path, format!("`{name}` is mapped twice (also at alerts[{first}])"));
            return None;
        }
        Some(name.clone())
    });
    let action_path = path.key("action");
    let action = c.required(alert.action.as_ref(), &action_path).and_then(|action| match action {
        AlertActionSpec::Evaluate => Some(AlertAction::Evaluate),
        AlertActionSpec::Snapshot if spec.snapshots.is_none() => {
            c.bad(&action_path, "`snapshot` needs a `spec.snapshots` section to take one");
            None
        }
        AlertActionSpec::Snapshot => Some(AlertAction::Snapshot),
        AlertActionSpec::ScaleUp(_) if spec.scaling.is_none() => {
            c.bad(&action_path, "`scaleUp` needs a `spec.scaling` section to scale within");
            None
        }
        AlertActionSpec::ScaleUp(n) => c
            .int(Some(*n), &action_path.key("scaleUp"), None, 1, MAX_REPLICAS_LIMIT)
            .map(AlertAction::ScaleUp),
    });
    Some(AlertRule { alert_name: alert_name?, action: action? })
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;
    use crate::policy::load_policy_str;
    use crate::policy::validate::checker::secs;
    use crate::policy::validate::testing::*;
    use crate::policy::{Forecast, ForecastMethod};

    #[rstest]
    #[case::alert_snapshot_without_snapshots(
        "  alerts: [{alertname: A, action: snapshot}]\n",
        "spec.alerts[0].action",
        5,
        35,
        "needs a `spec.snapshots` section"
    )]
    #[case::alert_scale_up_without_scaling(
        "  alerts: [{alertname: A, action: {scaleUp: 1}}]\n",
        "spec.alerts[0].action",
        5,
        35,
        "needs a `spec.scaling` section"
    )]
    #[case::alertname_twice(
        "  alerts:\n    - {alertname: A, action: evaluate}\n    - {alertname: A, action: evaluate}\n",
        "spec.alerts[1].alertname",
        7,
        19,
        "`A` is mapped twice (also at alerts[0])"
    )]
    #[case::alert_action_unknown(
        "  alerts: [{alertname: A, action: page}]\n",
        "spec.alerts[0].action",
        5,
        35,
        "unknown variant `page`, expected one of evaluate, snapshot, scaleUp"
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

    #[test]
    fn alert_actions_map_to_policy_actions() {
        let text = include_str!("../../../policies/checkout-scheduled.yaml");
        let policy = load_policy_str("checkout.yaml", text).expect("valid");
        let actions: Vec<AlertAction> = policy.alerts.iter().map(|rule| rule.action).collect();
        assert_eq!(
            actions,
            [AlertAction::ScaleUp(2), AlertAction::Evaluate, AlertAction::Snapshot]
        );
        let scaling = policy.scaling.expect("scaling");
        assert_eq!(scaling.schedule[0].cron.as_str(), "0 30 7 * * Mon-Fri");
        assert_eq!(scaling.schedule[0].duration, secs(11 * 3600));
        assert_eq!(
            scaling.forecast,
            Some(Forecast { method: ForecastMethod::Linear, window: secs(15 * 60) })
        );
    }
}
