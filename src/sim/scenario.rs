//! Scenario files: which policy meets which trace, and the cluster assumptions the trace does
//! not carry (capacity per replica, warm-up, scale of the load). Command-line flags override
//! a file's values, or stand in for a file altogether.
//!
//! ```yaml
//! policy: ../policies/session-cache.yaml   # relative to this file
//! trace: worldcup98-requests-per-minute.csv
//! traceScale: 1                            # multiplies column 2 into ops/s
//! capacityPerReplica: 50000                # ops/s one instance serves
//! warmup: 2m                               # default: the policy's scaling.warmup
//! from: "1998-06-24 00:00:00"              # optional slice, in the trace's time spelling
//! to: "1998-07-01 00:00:00"
//! initialReplicas: 2                       # default: minReplicas
//! ```

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Visitor};
use serde_saphyr::Spanned;

/// A scenario with every path resolved and every value checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    pub policy: PathBuf,
    pub trace: PathBuf,
    pub trace_scale: f64,
    pub capacity_per_replica: f64,
    /// `None`: the policy's `scaling.warmup`.
    pub warmup: Option<Duration>,
    /// Slice bounds, spelled like the trace's times.
    pub from: Option<String>,
    pub to: Option<String>,
    /// `None`: the policy's `minReplicas`.
    pub initial_replicas: Option<u16>,
}

/// Values given on the command line; each replaces the file's.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Overrides {
    pub policy: Option<PathBuf>,
    pub trace: Option<PathBuf>,
    pub trace_scale: Option<f64>,
    pub capacity_per_replica: Option<f64>,
    pub warmup: Option<Duration>,
}

#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("{file}: cannot read: {source}")]
    Read {
        file: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}:{line}:{column}: {message}")]
    Syntax { file: String, line: u64, column: u64, message: String },
    #[error("{file}:{line}:{column}: {field}: {message}")]
    Invalid { file: String, line: u64, column: u64, field: &'static str, message: String },
    #[error("no {what}: give a scenario file that names it, or {flag}")]
    Missing { what: &'static str, flag: &'static str },
}

/// The file as written. Numbers and durations keep their positions for error messages.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ScenarioSpec {
    policy: String,
    trace: String,
    #[serde(default)]
    trace_scale: Option<Spanned<f64>>,
    capacity_per_replica: Spanned<f64>,
    #[serde(default)]
    warmup: Option<Spanned<String>>,
    #[serde(default)]
    from: Option<TimeText>,
    #[serde(default)]
    to: Option<TimeText>,
    #[serde(default)]
    initial_replicas: Option<Spanned<u16>>,
}

/// A slice bound: a date string or a number of seconds, kept as text for the trace to parse.
#[derive(Debug)]
struct TimeText(String);

impl<'de> Deserialize<'de> for TimeText {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TimeVisitor;
        impl Visitor<'_> for TimeVisitor {
            type Value = TimeText;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a trace time: a date such as \"1998-06-24 00:00:00\" or seconds")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<TimeText, E> {
                Ok(TimeText(v.to_owned()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<TimeText, E> {
                Ok(TimeText(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<TimeText, E> {
                Ok(TimeText(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<TimeText, E> {
                Ok(TimeText(v.to_string()))
            }
        }
        deserializer.deserialize_any(TimeVisitor)
    }
}

impl Scenario {
    /// Reads a scenario file (if any) and lays the command line over it.
    pub fn resolve(file: Option<&Path>, overrides: Overrides) -> Result<Self, ScenarioError> {
        let base = match file {
            Some(path) => Some(Self::load(path)?),
            None => None,
        };
        let policy = overrides
            .policy
            .or_else(|| base.as_ref().map(|s| s.policy.clone()))
            .ok_or(ScenarioError::Missing { what: "policy", flag: "--policy FILE" })?;
        let trace = overrides
            .trace
            .or_else(|| base.as_ref().map(|s| s.trace.clone()))
            .ok_or(ScenarioError::Missing { what: "trace", flag: "--trace CSV" })?;
        let capacity_per_replica = overrides
            .capacity_per_replica
            .or_else(|| base.as_ref().map(|s| s.capacity_per_replica))
            .ok_or(ScenarioError::Missing {
                what: "capacity per replica",
                flag: "--capacity-per-replica OPS",
            })?;
        let base = base.as_ref();
        Ok(Self {
            policy,
            trace,
            trace_scale: overrides.trace_scale.or(base.map(|s| s.trace_scale)).unwrap_or(1.0),
            capacity_per_replica,
            warmup: overrides.warmup.or(base.and_then(|s| s.warmup)),
            from: base.and_then(|s| s.from.clone()),
            to: base.and_then(|s| s.to.clone()),
            initial_replicas: base.and_then(|s| s.initial_replicas),
        })
    }

    /// Reads one scenario file; its paths are taken relative to its directory.
    pub fn load(path: &Path) -> Result<Self, ScenarioError> {
        let file = path.display().to_string();
        // Bounded as a policy file is: a scenario is a few lines.
        let text = crate::file_read::read_regular_text(path, crate::policy::load::MAX_POLICY_BYTES)
            .map_err(|source| ScenarioError::Read { file: file.clone(), source })?;
        let base_dir = path.parent().unwrap_or(Path::new(""));
        Self::parse(&file, &text, base_dir)
    }

    /// Parses scenario text; `file` names it in errors, `base_dir` anchors relative paths.
    pub fn parse(file: &str, text: &str, base_dir: &Path) -> Result<Self, ScenarioError> {
        // serde_path_to_error names the field a type error is in (`capacityPerReplica`), which
        // serde-saphyr's own message leaves out.
        let mut field = String::new();
        let parsed = serde_saphyr::with_deserializer_from_str(text, |deserializer| {
            serde_path_to_error::deserialize(deserializer).map_err(|error| {
                // `Spanned` wraps positioned fields in a struct of its own; its inner
                // `.value` is no field of the file.
                field = error.path().to_string().trim_end_matches(".value").to_owned();
                error.into_inner()
            })
        });
        let spec: ScenarioSpec = parsed.map_err(|error| {
            let location = error.location();
            let (line, column) = location.map_or((0, 0), |l| (l.line(), l.column()));
            let mut message = error.without_snippet().to_string();
            // The position goes in front, like every other diagnostic; drop the trailing copy.
            if let Some(stripped) =
                message.strip_suffix(&format!(" at line {line}, column {column}"))
            {
                message = stripped.to_owned();
            }
            if !field.is_empty() && field != "." {
                message = format!("{field}: {message}");
            }
            ScenarioError::Syntax { file: file.to_owned(), line, column, message }
        })?;
        let invalid = |field: &'static str, at: &serde_saphyr::Location, message: String| {
            ScenarioError::Invalid {
                file: file.to_owned(),
                line: at.line(),
                column: at.column(),
                field,
                message,
            }
        };
        let positive = |field: &'static str, value: &Spanned<f64>| {
            if value.value.is_finite() && value.value > 0.0 {
                Ok(value.value)
            } else {
                Err(invalid(field, &value.referenced, format!("must be > 0, got {}", value.value)))
            }
        };
        let trace_scale = match &spec.trace_scale {
            Some(scale) => positive("traceScale", scale)?,
            None => 1.0,
        };
        let capacity_per_replica = positive("capacityPerReplica", &spec.capacity_per_replica)?;
        let warmup = match &spec.warmup {
            Some(text) => Some(humantime::parse_duration(&text.value).map_err(|e| {
                invalid("warmup", &text.referenced, format!("`{}`: {e}", text.value))
            })?),
            None => None,
        };
        if let Some(initial) = &spec.initial_replicas
            && initial.value == 0
        {
            return Err(invalid(
                "initialReplicas",
                &initial.referenced,
                "must be at least 1: a deployment needs its master".to_owned(),
            ));
        }
        Ok(Self {
            policy: base_dir.join(&spec.policy),
            trace: base_dir.join(&spec.trace),
            trace_scale,
            capacity_per_replica,
            warmup,
            from: spec.from.map(|t| t.0),
            to: spec.to.map(|t| t.0),
            initial_replicas: spec.initial_replicas.map(|i| i.value),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Scenario, ScenarioError> {
        Scenario::parse("s.yaml", text, Path::new("simulations"))
    }

    #[test]
    fn reads_a_full_scenario_relative_to_its_directory() {
        let scenario = parse(
            "policy: ../policies/session-cache.yaml\n\
             trace: worldcup.csv\n\
             traceScale: 0.5\n\
             capacityPerReplica: 50000\n\
             warmup: 2m\n\
             from: \"1998-06-24 00:00:00\"\n\
             to: 86400\n\
             initialReplicas: 3\n",
        )
        .expect("valid");
        assert_eq!(
            scenario,
            Scenario {
                policy: PathBuf::from("simulations/../policies/session-cache.yaml"),
                trace: PathBuf::from("simulations/worldcup.csv"),
                trace_scale: 0.5,
                capacity_per_replica: 50_000.0,
                warmup: Some(Duration::from_secs(120)),
                from: Some("1998-06-24 00:00:00".into()),
                to: Some("86400".into()),
                initial_replicas: Some(3),
            }
        );
    }

    #[test]
    fn defaults_apply_to_what_is_left_out() {
        let scenario =
            parse("policy: p.yaml\ntrace: t.csv\ncapacityPerReplica: 100\n").expect("valid");
        assert_eq!(scenario.trace_scale, 1.0);
        assert_eq!((scenario.warmup, scenario.initial_replicas), (None, None));
        assert_eq!((scenario.from, scenario.to), (None, None));
    }

    #[test]
    fn unknown_fields_are_named_with_their_line() {
        let err = parse("policy: p.yaml\ntrace: t.csv\ncapacityPerReplica: 100\ncapacity: 3\n")
            .expect_err("unknown field");
        let text = err.to_string();
        assert!(text.starts_with("s.yaml:4:"), "{text}");
        assert!(text.contains("capacity"), "{text}");
    }

    #[test]
    fn type_errors_name_the_field() {
        let err = parse("policy: p.yaml\ntrace: t.csv\ncapacityPerReplica: lots\n")
            .expect_err("not a number");
        assert_eq!(err.to_string(), "s.yaml:3:21: capacityPerReplica: invalid floating point");
    }

    #[test]
    fn missing_required_fields_are_named() {
        let err = parse("policy: p.yaml\ntrace: t.csv\n").expect_err("no capacity");
        assert!(err.to_string().contains("capacityPerReplica"), "{err}");
    }

    #[test]
    fn bad_values_name_file_line_and_field() {
        let err = parse("policy: p.yaml\ntrace: t.csv\ncapacityPerReplica: 0\n")
            .expect_err("zero capacity");
        assert_eq!(err.to_string(), "s.yaml:3:21: capacityPerReplica: must be > 0, got 0");
        let err = parse("policy: p.yaml\ntrace: t.csv\ncapacityPerReplica: 1\nwarmup: soon\n")
            .expect_err("bad warmup");
        assert!(err.to_string().starts_with("s.yaml:4:9: warmup: `soon`"), "{err}");
        let err =
            parse("policy: p.yaml\ntrace: t.csv\ncapacityPerReplica: 1\ninitialReplicas: 0\n")
                .expect_err("no master");
        assert!(err.to_string().starts_with("s.yaml:4:18: initialReplicas:"), "{err}");
    }

    #[test]
    fn flags_override_the_file_or_replace_it() {
        let overrides = Overrides {
            policy: Some("p.yaml".into()),
            trace: Some("t.csv".into()),
            capacity_per_replica: Some(10.0),
            ..Overrides::default()
        };
        let scenario = Scenario::resolve(None, overrides).expect("complete");
        assert_eq!(scenario.capacity_per_replica, 10.0);
        assert_eq!(scenario.trace_scale, 1.0);
        let err = Scenario::resolve(None, Overrides::default()).expect_err("nothing given");
        assert_eq!(
            err.to_string(),
            "no policy: give a scenario file that names it, or --policy FILE"
        );
    }
}
