//! `--write`: the chosen policy as a policy file. The base file's text is kept as it is (its
//! comments, target, auth, health, snapshots...) except for the `spec.scaling` section, which
//! is written anew from the base's own YAML tree with the tuned fields set, each with a
//! comment saying what the base had. A header comment says what the tuning ran on.
//!
//! The result is loaded back through the real loader and must give exactly the chosen
//! policy, so a file this writes always passes `check` and means what the report says.

use std::ops::Range;

use super::Candidate;
use super::knobs::{duration_text, yaml_edits};
use crate::policy::source_map::{Node, NodeKind, Segment, SourceMap};
use crate::policy::{Policy, Statistic, load_policy_str};

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("{file}: cannot read its YAML again: {message}")]
    Parse { file: String, message: String },
    #[error(
        "{file}: spec.scaling must be a block mapping (`scaling:` on a line of its own) for \
         --write to rewrite it"
    )]
    NotBlock { file: String },
    #[error("{file}: the written policy does not load back as the chosen one: {message}")]
    NotFaithful { file: String, message: String },
}

/// A YAML node as it will be written: scalars as YAML text, tuned ones with a comment.
#[derive(Debug, Clone, PartialEq)]
enum Yaml {
    Scalar { text: String, comment: Option<String> },
    Seq(Vec<Yaml>),
    Map(Vec<(String, Yaml)>),
}

/// One change under `spec.scaling`: a path (`scaleDown.stabilization`), the new scalar (or
/// `None` to remove the key), and the comment to put beside it.
#[derive(Debug, Clone, PartialEq)]
pub struct Edit {
    pub field: String,
    pub value: Option<String>,
    pub comment: String,
}

/// The edits that write `candidate`'s changes, each commented with the base's value. An
/// EWMA's half-life is written out for every metric that uses one: left out, it would default
/// to a quarter of the (possibly tuned) window, not the value the candidate ran with.
pub fn edits(candidate: &Candidate) -> Vec<Edit> {
    let mut edits = Vec::new();
    for change in &candidate.changes {
        for (field, value) in yaml_edits(&change.field, &change.value) {
            let comment = format!("tuned; base: {}", change.base.show());
            edits.push(Edit { field, value, comment });
        }
    }
    let metrics = candidate.policy.scaling.iter().flat_map(|s| s.metrics.iter());
    for (index, metric) in metrics.enumerate() {
        let Statistic::Ewma { half_life } = metric.statistic else { continue };
        let field = format!("metrics[{index}].halfLife");
        if !edits.iter().any(|e| e.field == field) {
            edits.push(Edit {
                field,
                value: Some(duration_text(half_life)),
                comment: "written out: its default follows the window".to_owned(),
            });
        }
    }
    edits
}

/// `base_text` (the file `file`) with `edits` applied to `spec.scaling` and `header` (lines
/// without `#`) on top, checked to load back as `expected`.
pub fn tuned_policy_text(
    file: &str,
    base_text: &str,
    edits: &[Edit],
    header: &[String],
    expected: &Policy,
) -> Result<String, WriteError> {
    let mut options = serde_saphyr::Options::default();
    options.duplicate_keys = serde_saphyr::DuplicateKeyPolicy::FirstWins;
    let map = SourceMap::parse(base_text, options)
        .map_err(|e| WriteError::Parse { file: file.to_owned(), message: e.to_string() })?;
    let not_block = || WriteError::NotBlock { file: file.to_owned() };
    let spec = child_entry(map.root(), "spec").ok_or_else(not_block)?;
    let NodeKind::Map(entries) = &spec.kind else { return Err(not_block()) };
    let entry =
        entries.iter().find(|e| e.key.as_deref() == Some("scaling")).ok_or_else(not_block)?;
    let lines =
        section_lines(base_text, entry.key_pos.line, entry.key_pos.column).ok_or_else(not_block)?;

    let mut scaling = to_yaml(base_text, &entry.value);
    for edit in edits {
        let path = parse_field(&edit.field);
        let value = edit.value.as_ref().map(|text| (text.clone(), Some(edit.comment.clone())));
        set(&mut scaling, &path, value);
    }
    let indent = entry.key_pos.column - 1;
    let mut section = format!("{}scaling:\n", " ".repeat(indent));
    emit(&scaling, indent + 2, &mut section);

    let mut text: String = header.iter().map(|line| format!("# {line}\n")).collect();
    if !header.is_empty() {
        text.push('\n');
    }
    let source: Vec<&str> = base_text.split_inclusive('\n').collect();
    for line in &source[..lines.start] {
        text.push_str(line);
    }
    text.push_str(&section);
    for line in &source[lines.end..] {
        text.push_str(line);
    }

    let loaded = load_policy_str(file, &text).map_err(|diagnostics| {
        let message = diagnostics.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ");
        WriteError::NotFaithful { file: file.to_owned(), message }
    })?;
    if loaded != *expected {
        return Err(WriteError::NotFaithful {
            file: file.to_owned(),
            message: "it loads, but as a different policy".to_owned(),
        });
    }
    Ok(text)
}

fn child_entry<'a>(node: &'a Node, key: &str) -> Option<&'a Node> {
    match &node.kind {
        NodeKind::Map(entries) => {
            entries.iter().find(|e| e.key.as_deref() == Some(key)).map(|e| &e.value)
        }
        _ => None,
    }
}

/// The 0-based line range the entry whose key is at `line`:`column` (1-based) spans: its key
/// line and every line after it that is more indented, up to its last line of content (blank
/// and comment lines after that belong to what follows). `None` when the key does not start
/// its line (a flow mapping).
fn section_lines(text: &str, line: usize, column: usize) -> Option<Range<usize>> {
    let lines: Vec<&str> = text.lines().collect();
    let start = line.checked_sub(1)?;
    let key_line = lines.get(start)?;
    let before: String = key_line.chars().take(column - 1).collect();
    if !before.chars().all(|ch| ch == ' ') {
        return None;
    }
    let indent = column - 1;
    let mut end = start + 1;
    for (i, line) in lines.iter().enumerate().skip(start + 1) {
        let trimmed = line.trim_start_matches(' ');
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        if line.len() - trimmed.len() <= indent {
            break;
        }
        end = i + 1;
    }
    Some(start..end)
}

/// The tree under a node, each scalar as its source spells it (quotes included) when it sits
/// on one line, else as a double-quoted string.
fn to_yaml(text: &str, node: &Node) -> Yaml {
    match &node.kind {
        NodeKind::Null => Yaml::Scalar { text: "null".to_owned(), comment: None },
        NodeKind::Scalar(resolved) => {
            let written = node.span.clone().and_then(|span| text.get(span));
            let text = match written {
                Some(written) if !written.is_empty() && !written.contains('\n') => {
                    written.to_owned()
                }
                _ => quoted(resolved),
            };
            Yaml::Scalar { text, comment: None }
        }
        NodeKind::Seq(items) => Yaml::Seq(items.iter().map(|i| to_yaml(text, i)).collect()),
        NodeKind::Map(entries) => Yaml::Map(
            entries
                .iter()
                .map(|e| (e.key.clone().unwrap_or_default(), to_yaml(text, &e.value)))
                .collect(),
        ),
    }
}

/// A string as a YAML double-quoted scalar (JSON's escapes are YAML's).
fn quoted(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_else(|_| format!("\"{}\"", text.escape_default()))
}

/// `metrics[0].statistic` as path segments.
fn parse_field(field: &str) -> Vec<Segment> {
    let mut segments = Vec::new();
    for part in field.split('.') {
        let (key, indices) = part.split_once('[').unwrap_or((part, ""));
        segments.push(Segment::Key(key.to_owned()));
        for index in indices.split('[').filter(|i| !i.is_empty()) {
            if let Ok(index) = index.trim_end_matches(']').parse() {
                segments.push(Segment::Index(index));
            }
        }
    }
    segments
}

/// Sets (or with `None` removes) the scalar at `path`, creating mappings on the way.
fn set(node: &mut Yaml, path: &[Segment], value: Option<(String, Option<String>)>) {
    let Some((head, rest)) = path.split_first() else {
        if let Some((text, comment)) = value {
            *node = Yaml::Scalar { text, comment };
        }
        return;
    };
    match head {
        Segment::Key(key) => {
            if !matches!(node, Yaml::Map(_)) {
                if value.is_none() {
                    return;
                }
                *node = Yaml::Map(Vec::new());
            }
            let Yaml::Map(entries) = node else { return };
            let position = entries.iter().position(|(k, _)| k == key);
            let removing = value.is_none();
            match (position, rest.is_empty(), removing) {
                (Some(at), true, true) => {
                    entries.remove(at);
                }
                (None, _, true) => {}
                (Some(at), _, _) => set(&mut entries[at].1, rest, value),
                (None, _, false) => {
                    let mut child = Yaml::Map(Vec::new());
                    set(&mut child, rest, value);
                    entries.push((key.clone(), child));
                }
            }
        }
        Segment::Index(index) => {
            if let Yaml::Seq(items) = node
                && let Some(item) = items.get_mut(*index)
            {
                set(item, rest, value);
            }
        }
    }
}

/// Writes `node`'s content in block style: mapping entries (or sequence dashes) at `indent`.
fn emit(node: &Yaml, indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    match node {
        Yaml::Scalar { text, comment } => {
            out.push_str(&format!("{pad}{text}{}\n", comment_text(comment)));
        }
        Yaml::Map(entries) if entries.is_empty() => out.push_str(&format!("{pad}{{}}\n")),
        Yaml::Seq(items) if items.is_empty() => out.push_str(&format!("{pad}[]\n")),
        Yaml::Map(entries) => {
            for (key, value) in entries {
                match value {
                    Yaml::Scalar { text, comment } => {
                        out.push_str(&format!("{pad}{key}: {text}{}\n", comment_text(comment)))
                    }
                    Yaml::Map(inner) if inner.is_empty() => {
                        out.push_str(&format!("{pad}{key}: {{}}\n"))
                    }
                    Yaml::Seq(inner) if inner.is_empty() => {
                        out.push_str(&format!("{pad}{key}: []\n"))
                    }
                    Yaml::Map(_) | Yaml::Seq(_) => {
                        out.push_str(&format!("{pad}{key}:\n"));
                        emit(value, indent + 2, out);
                    }
                }
            }
        }
        Yaml::Seq(items) => {
            for item in items {
                // The item as a block two columns in, its first line's indent turned into
                // the dash.
                let mut block = String::new();
                emit(item, indent + 2, &mut block);
                out.push_str(&format!("{pad}- {}", &block[indent + 2..]));
            }
        }
    }
}

fn comment_text(comment: &Option<String>) -> String {
    comment.as_ref().map_or(String::new(), |c| format!("  # {c}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "\
# The base: its comments stay.
apiVersion: autopilot.redis.io/v1alpha1
kind: RedisPolicy
metadata:
  name: cache
spec:
  target:
    endpoints: ['127.0.0.1:6379']   # one instance
  sampling: {interval: 10s}
  scaling:
    minReplicas: 1
    maxReplicas: 8
    metrics:
      - redis: instantaneous_ops_per_sec
        statistic: ewma
        halfLife: 30s
        target: 1000   # old comment
      - redis: 'connected_clients'
        target: 5
    scaleUp: {maxStep: \"50%\"}
  # Health comment stays.
  health:
    downAfter: 3s
";

    fn load(text: &str) -> Policy {
        load_policy_str("t.yaml", text).unwrap_or_else(|d| panic!("{d:?}\n{text}"))
    }

    fn edit(field: &str, value: Option<&str>) -> Edit {
        Edit { field: field.into(), value: value.map(Into::into), comment: "tuned".into() }
    }

    #[test]
    fn tuned_fields_are_set_and_everything_else_kept() {
        let base = load(BASE);
        let mut expected = base.clone();
        let scaling = expected.scaling.as_mut().expect("scaling");
        scaling.metrics[0].statistic = crate::policy::Statistic::Percentile(95);
        scaling.metrics[0].target = 800.0;
        scaling.scale_down.stabilization = std::time::Duration::from_secs(60);
        scaling.scale_up.period = std::time::Duration::from_secs(30);
        let edits = [
            edit("metrics[0].statistic", Some("p95")),
            edit("metrics[0].halfLife", None),
            edit("metrics[0].target", Some("800")),
            edit("scaleDown.stabilization", Some("1m")),
            edit("scaleUp.period", Some("30s")),
        ];
        let header = vec!["Tuned.".to_owned()];
        let text = tuned_policy_text("t.yaml", BASE, &edits, &header, &expected)
            .expect("writes a faithful policy");
        assert_eq!(load(&text), expected);
        assert!(text.starts_with("# Tuned.\n\n# The base: its comments stay.\n"), "{text}");
        assert!(text.contains("endpoints: ['127.0.0.1:6379']   # one instance"), "{text}");
        assert!(text.contains("  # Health comment stays.\n  health:\n    downAfter: 3s\n"));
        assert!(text.contains("        target: 800  # tuned\n"), "{text}");
        assert!(text.contains("      - redis: 'connected_clients'\n        target: 5\n"), "{text}");
        assert!(text.contains("    scaleDown:\n      stabilization: 1m  # tuned\n"), "{text}");
        assert!(text.contains("    scaleUp:\n      maxStep: \"50%\"\n      period: 30s"), "{text}");
        assert!(!text.contains("halfLife"), "{text}");
    }

    #[test]
    fn a_file_that_would_not_load_as_the_chosen_policy_is_refused() {
        let base = load(BASE);
        let edits = [edit("metrics[0].target", Some("800"))];
        let refused = tuned_policy_text("t.yaml", BASE, &edits, &[], &base);
        assert!(matches!(refused, Err(WriteError::NotFaithful { .. })), "{refused:?}");
        let invalid = [edit("metrics[0].target", Some("-1"))];
        let refused = tuned_policy_text("t.yaml", BASE, &invalid, &[], &base);
        assert!(
            matches!(&refused, Err(WriteError::NotFaithful { message, .. }) if message.contains("target")),
            "{refused:?}"
        );
    }

    #[test]
    fn a_flow_style_scaling_section_is_refused_with_a_reason() {
        let flow = "spec: {scaling: {minReplicas: 1}}\n";
        let refused = tuned_policy_text("t.yaml", flow, &[], &[], &load(BASE));
        assert!(matches!(refused, Err(WriteError::NotBlock { .. })), "{refused:?}");
    }

    #[test]
    fn section_lines_end_at_the_last_indented_content() {
        let text = "spec:\n  scaling:\n    a: 1\n\n    b: 2\n  # next\n  health: {}\n";
        assert_eq!(section_lines(text, 2, 3), Some(1..5));
        assert_eq!(section_lines("spec: {scaling: {}}\n", 1, 8), None);
    }

    /// Every candidate the search draws from each shipped policy is a valid policy: written
    /// over the shipped file, it loads back through the real loader as exactly itself.
    #[test]
    fn every_candidate_of_every_shipped_policy_writes_and_loads_as_itself() {
        let shipped = [
            ("session-cache.yaml", include_str!("../../../policies/session-cache.yaml")),
            ("api-prometheus.yaml", include_str!("../../../policies/api-prometheus.yaml")),
            ("checkout-scheduled.yaml", include_str!("../../../policies/checkout-scheduled.yaml")),
            ("local-demo.yaml", include_str!("../../../policies/local-demo.yaml")),
        ];
        for (file, text) in shipped {
            let base = load(text);
            let candidates =
                super::super::candidates(&base, 50, 3, super::super::Search::Wide).expect("scales");
            assert_eq!(candidates.len(), 50, "{file}");
            for (index, candidate) in candidates.iter().enumerate() {
                let written =
                    tuned_policy_text(file, text, &edits(candidate), &[], &candidate.policy);
                assert!(written.is_ok(), "{file} candidate {index}: {written:?}");
            }
        }
    }

    /// The seasonal forecast's fields are written into its mapping, the ones the base left at
    /// their defaults included (session-cache's leaves `maxError` and
    /// `scaleDownStabilization` out), and load back as tuned.
    #[test]
    fn tuned_seasonal_fields_are_written_where_the_base_left_defaults() {
        let file = "session-cache.yaml";
        let text = include_str!("../../../policies/session-cache.yaml");
        let base = load(text);
        let candidates =
            super::super::candidates(&base, 200, 7, super::super::Search::Wide).expect("scales");
        let seasonal_fields = |c: &&Candidate| {
            c.changes.iter().filter(|k| k.field.starts_with("metrics[0].seasonal.")).count()
        };
        let tuned = candidates.iter().max_by_key(seasonal_fields).expect("candidates");
        assert!(seasonal_fields(&tuned) >= 2, "{:?}", tuned.changes);
        let written = tuned_policy_text(file, text, &edits(tuned), &[], &tuned.policy);
        let written = written.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(load(&written), tuned.policy);
    }

    /// The second and third metrics' own knobs are drawn, and each is written into its own
    /// metric's mapping (session-cache's tail leaves nothing at a default but the rest).
    #[test]
    fn every_metric_s_own_fields_are_tuned_and_written_into_it() {
        let file = "session-cache.yaml";
        let text = include_str!("../../../policies/session-cache.yaml");
        let base = load(text);
        let candidates =
            super::super::candidates(&base, 200, 7, super::super::Search::Wide).expect("scales");
        for field in [
            "metrics[1].target",
            "metrics[1].window",
            "metrics[2].target",
            "metrics[2].window",
            "metrics[2].exceedance",
        ] {
            let tuned = candidates
                .iter()
                .find(|c| c.changes.iter().any(|k| k.field == field))
                .unwrap_or_else(|| panic!("no candidate tunes {field}"));
            assert_ne!(tuned.policy, base, "{field}");
            let written = tuned_policy_text(file, text, &edits(tuned), &[], &tuned.policy);
            let written = written.unwrap_or_else(|e| panic!("{field}: {e}"));
            assert_eq!(load(&written), tuned.policy, "{field}");
        }
    }

    /// `base` with metric `index`'s window tuned from 1m to 5m.
    fn window_tuned(base: &Policy, index: usize) -> Candidate {
        let (from, to) = (std::time::Duration::from_secs(60), std::time::Duration::from_secs(300));
        let mut policy = base.clone();
        policy.scaling.as_mut().expect("scaling").metrics[index].window = to;
        let change = super::super::KnobChange {
            field: format!("metrics[{index}].window"),
            base: super::super::knobs::Setting::Duration(from),
            value: super::super::knobs::Setting::Duration(to),
        };
        Candidate { policy, changes: vec![change] }
    }

    /// An EWMA on any metric keeps the half-life its candidate ran with when a knob moves the
    /// window its default follows.
    #[test]
    fn an_ewma_half_life_is_written_out_on_every_metric() {
        let text = BASE.replace("        halfLife: 30s\n", "");
        let mut base = load(&text);
        let scaling = base.scaling.as_mut().expect("scaling");
        // A third metric: the first's EWMA again, after the base's `connected_clients`.
        let third = scaling.metrics[0].clone();
        scaling.metrics.push(third);
        let edits = edits(&window_tuned(&base, 2));
        let half_lives: Vec<(&str, Option<&str>)> = edits
            .iter()
            .filter(|e| e.field.ends_with(".halfLife"))
            .map(|e| (e.field.as_str(), e.value.as_deref()))
            .collect();
        assert_eq!(
            half_lives,
            [("metrics[0].halfLife", Some("15s")), ("metrics[2].halfLife", Some("15s"))]
        );
    }

    #[test]
    fn an_ewma_half_life_is_written_out_when_the_window_changes() {
        let text = BASE.replace("        halfLife: 30s\n", "");
        let candidate = window_tuned(&load(&text), 0);
        let edits = edits(&candidate);
        // The base's default half-life: a quarter of its 1m window.
        assert_eq!(edits[1].field, "metrics[0].halfLife");
        assert_eq!(edits[1].value.as_deref(), Some("15s"));
        let written = tuned_policy_text("t.yaml", &text, &edits, &[], &candidate.policy);
        assert!(written.is_ok(), "{written:?}");
    }
}
