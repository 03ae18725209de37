//! Reading policy files: YAML text -> spec -> validated policy, with every problem reported
//! as `FILE:LINE:COL: field.path: message`.
//!
//! Two passes read the text. The typed pass deserializes [`PolicyDocument`] with every
//! unknown field collected (`serde_ignored`) and the path of a type error tracked
//! (`serde_path_to_error`); the source-map pass reads the same text into a position tree.
//! Every problem, whoever finds it, is a field path, and the tree turns paths into
//! positions. Parser budgets bound the work on hostile input, so nothing here panics or
//! runs away whatever the bytes.

use std::fmt;

use serde_saphyr::{Budget, MessageFormatter, Options, UserMessageFormatter};

use super::Policy;
use super::source_map::{Anchor, FieldPath, NodeKind, Pos, SourceMap};
use super::spec::{self, PolicyDocument};
use super::validate;

/// Policy files are a few kilobytes; a megabyte is a mistake (or an attack), not a policy.
pub const MAX_POLICY_BYTES: usize = 1 << 20;

/// One problem in a policy file, positioned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: String,
    pub line: usize,
    pub column: usize,
    /// Dotted field path from the document root, e.g. `spec.scaling.maxReplicas`.
    pub path: String,
    pub message: String,
    pub severity: Severity,
}

/// An error makes a policy invalid; a warning is a valid policy's risk, said by `check`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Error,
    Warning,
}

impl Diagnostic {
    /// A diagnostic whose path and message are printable on one line whatever the input
    /// held (keys and scalars can contain newlines and escape sequences).
    pub fn new(file: &str, pos: Pos, path: &str, message: &str) -> Self {
        Self {
            file: file.to_owned(),
            line: pos.line,
            column: pos.column,
            path: one_line(path),
            message: one_line(message),
            severity: Severity::Error,
        }
    }

    /// A problem with the file as a whole (unreadable, not text), at its start.
    pub fn whole_file(file: &str, message: &str) -> Self {
        Self::new(file, Pos::START, "<file>", message)
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let warning = if self.severity == Severity::Warning { "warning: " } else { "" };
        // Line 0: a text with no lines to point at (a resource read from the API server).
        if self.line == 0 {
            return write!(f, "{}: {}: {warning}{}", self.file, self.path, self.message);
        }
        write!(
            f,
            "{}:{}:{}: {}: {warning}{}",
            self.file, self.line, self.column, self.path, self.message
        )
    }
}

/// A policy that passed, with what `check` warns about it and where its fields are.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub file: String,
    pub policy: Policy,
    /// Risky but valid combinations ([`super::warnings`]), positioned.
    pub warnings: Vec<Diagnostic>,
    map: SourceMap,
}

impl Loaded {
    /// A diagnostic about `path` in this policy's file (a rule across files, say).
    pub fn diagnostic(&self, path: &FieldPath, anchor: Anchor, message: &str) -> Diagnostic {
        Diagnostic::new(&self.file, self.map.locate(path, anchor), &path.to_string(), message)
    }
}

/// Loads and validates policy text; `file` names it in diagnostics.
pub fn load_policy_str(file: &str, text: &str) -> Result<Policy, Vec<Diagnostic>> {
    load_policy_text(file, text, true).map(|loaded| loaded.policy)
}

/// Loads and validates policy text, keeping its warnings; `file` names it in diagnostics.
pub fn load_policy_str_checked(file: &str, text: &str) -> Result<Loaded, Vec<Diagnostic>> {
    load_policy_text(file, text, true)
}

/// `quote`: whether a problem may show the value it is about (never for a file that is not
/// named as YAML: it may be a secret).
/// Loads and validates policy text; `file` names it in diagnostics, and `quote` says whether
/// values may be quoted back (not for a file that is not YAML: it may be a secret).
pub fn load_policy_text(file: &str, text: &str, quote: bool) -> Result<Loaded, Vec<Diagnostic>> {
    if text.len() > MAX_POLICY_BYTES {
        return Err(vec![too_large(file)]);
    }
    let typed = typed_pass(text);
    let map = match SourceMap::parse(text, source_map_options()) {
        Ok(map) => map,
        Err(map_error) => {
            // Not well-formed YAML (or beyond a limit): that is the problem to report, even
            // if the typed pass tripped over a type first (`apiVersion: [` is a list to it).
            // The path where the typed pass stopped is the nearest one known.
            let path = typed.document.err().map(|failure| failure.path).unwrap_or_default();
            return Err(vec![yaml_diagnostic(file, &path, &map_error, None, quote)]);
        }
    };
    if map.root().kind == NodeKind::Null {
        return Err(vec![Diagnostic::new(
            file,
            Pos::START,
            "<document>",
            &format!(
                "empty document; a policy starts with `apiVersion: {}` and `kind: {}`",
                validate::API_VERSION,
                validate::KIND
            ),
        )]);
    }

    let mut diagnostics = Vec::new();
    for duplicate in map.duplicate_keys() {
        diagnostics.push(Diagnostic::new(
            file,
            duplicate.pos,
            &duplicate.path.to_string(),
            &format!("duplicate key (first at {}; only that one counts)", duplicate.first),
        ));
    }
    for path in &typed.unknown {
        diagnostics.push(Diagnostic::new(
            file,
            map.locate(path, Anchor::Key),
            &path.to_string(),
            &unknown_field_message(path),
        ));
    }
    match typed.document {
        Err(failure) => diagnostics.push(yaml_diagnostic(
            file,
            &failure.path,
            &failure.error,
            Some(&map),
            quote,
        )),
        Ok(document) => match validate::validate(&document) {
            Ok(policy) if diagnostics.is_empty() => {
                let warnings = super::warnings::warnings(&policy)
                    .iter()
                    .map(|problem| {
                        let mut warning = Diagnostic::new(
                            file,
                            map.locate(&problem.path, problem.anchor),
                            &problem.path.to_string(),
                            &problem.message,
                        );
                        warning.severity = Severity::Warning;
                        warning
                    })
                    .collect();
                return Ok(Loaded { file: file.to_owned(), policy, warnings, map });
            }
            Ok(_) => {}
            Err(problems) => {
                diagnostics.extend(problems.iter().map(|problem| {
                    Diagnostic::new(
                        file,
                        map.locate(&problem.path, problem.anchor),
                        &problem.path.to_string(),
                        &problem.message,
                    )
                }));
            }
        },
    }
    // Document order reads best; the sort is stable, so problems at one spot keep theirs.
    diagnostics.sort_by_key(|d| (d.line, d.column));
    Err(diagnostics)
}

/// The outcome of the typed pass: the document, or where and why it could not be read;
/// and every unknown field met on the way.
struct TypedPass {
    document: Result<PolicyDocument, TypedFailure>,
    unknown: Vec<FieldPath>,
}

struct TypedFailure {
    path: FieldPath,
    error: serde_saphyr::Error,
}

fn typed_pass(text: &str) -> TypedPass {
    let mut track = serde_path_to_error::Track::new();
    let mut unknown = Vec::new();
    let result = serde_saphyr::with_deserializer_from_str_with_options(
        text,
        typed_options(),
        |deserializer| {
            let deserializer = serde_path_to_error::Deserializer::new(deserializer, &mut track);
            serde_ignored::deserialize(deserializer, |path| {
                unknown.push(FieldPath::from_ignored(&path));
            })
        },
    );
    let document = result
        .map_err(|error| TypedFailure { path: FieldPath::from_tracked(&track.path()), error });
    TypedPass { document, unknown }
}

/// Limits far above any real policy (a full one is ~100 nodes) and far below what would
/// hurt: alias bombs and deep nesting end as one diagnostic, quickly.
fn budget() -> Option<Budget> {
    serde_saphyr::budget! {
        max_events: 100_000,
        max_aliases: 1_000,
        max_anchors: 1_000,
        max_nodes: 50_000,
        // A policy nests 6 deep. Each level costs ~40 KiB of stack in a debug build (serde
        // wrappers), so 16 levels stay well inside a 2 MiB thread (tokio's default), where
        // the parser's default of 64 overflowed it.
        max_depth: 16,
        max_total_scalar_bytes: MAX_POLICY_BYTES,
        max_recorded_anchor_events: 100_000,
    }
}

fn base_options() -> Options {
    serde_saphyr::options! {
        budget: budget(),
        alias_limits: serde_saphyr::alias_limits! {
            max_total_replayed_events: 100_000,
            max_replay_stack_depth: 16,
        },
        // Positions and messages are ours; the parser's source snippets would be dropped.
        with_snippet: false,
    }
}

fn typed_options() -> Options {
    // Duplicates are reported from the source map, all of them; here the first one counts
    // so the typed pass carries on past them.
    let mut options = base_options();
    options.duplicate_keys = serde_saphyr::DuplicateKeyPolicy::FirstWins;
    options
}

fn source_map_options() -> Options {
    let mut options = base_options();
    options.duplicate_keys = serde_saphyr::DuplicateKeyPolicy::PassThrough;
    // `target: .nan` is the typed pass's to judge; the map only records where it is.
    options.non_finite_float_policy = serde_saphyr::NonFiniteFloatPolicy::AsString;
    options
}

/// A parser or type error, positioned where the parser says (or, failing that, where the
/// path is) and worded for policy authors where the parser's wording is terse.
fn yaml_diagnostic(
    file: &str,
    path: &FieldPath,
    error: &serde_saphyr::Error,
    map: Option<&SourceMap>,
    quote: bool,
) -> Diagnostic {
    // The location of the use (an alias) is on the outer error; the cause is inside.
    let located = error.location().map(Pos::from_location).filter(|pos| *pos != Pos::START);
    let mut error = error;
    while let serde_saphyr::Error::AliasError { error: inner, .. }
    | serde_saphyr::Error::WithSnippet { error: inner, .. } = error
    {
        error = inner;
    }
    let pos =
        located.or_else(|| map.map(|map| map.locate(path, Anchor::Value))).unwrap_or(Pos::START);
    // "found X" only when the error is about the node at `path` (not, say, about a key).
    let found = map.and_then(|map| {
        let node = map.node(path)?;
        (located.is_none() || located == Some(node.pos)).then(|| match (&node.kind, quote) {
            (NodeKind::Scalar(_), false) => {
                "a value (not shown: the file is not *.yaml)".to_owned()
            }
            _ => map.describe(node),
        })
    });
    match limit_message(error) {
        // The path where a limit broke is an accident of the input; the document is the
        // problem.
        Some(message) => Diagnostic::new(file, pos, "<document>", &message),
        None => Diagnostic::new(file, pos, &path.to_string(), &yaml_message(error, found)),
    }
}

/// The wording for a parser limit the document broke, if it broke one.
fn limit_message(error: &serde_saphyr::Error) -> Option<String> {
    use serde_saphyr::granit_parser::ErrorKind;
    use serde_saphyr::{Error, ExternalMessageSource};

    match error {
        Error::Budget { breach, .. } => {
            Some(format!("document too large or too deeply nested for a policy ({breach:?})"))
        }
        Error::AliasReplayLimitExceeded { .. }
        | Error::AliasExpansionLimitExceeded { .. }
        | Error::AliasReplayStackDepthExceeded { .. } => {
            Some("aliases expand to far more than a policy holds (an alias bomb?)".to_owned())
        }
        Error::ExternalMessage { source, .. } => match source.as_ref() {
            ExternalMessageSource::Parser(scan)
                if matches!(scan.kind(), ErrorKind::RecursionLimitExceeded) =>
            {
                Some("document nested too deeply for a policy".to_owned())
            }
            _ => None,
        },
        _ => None,
    }
}

fn yaml_message(error: &serde_saphyr::Error, found: Option<String>) -> String {
    use serde_saphyr::Error;

    let found = found.map(|found| format!(", found {found}")).unwrap_or_default();
    match error {
        Error::InvalidScalar { ty, .. } => {
            let expected = match *ty {
                "i8" | "i16" | "i32" | "i64" | "i128" | "u8" | "u16" | "u32" | "u64" | "u128" => {
                    "a whole number"
                }
                "floating point" | "f32" | "f64" => "a finite number",
                "boolean" | "bool" => "true or false",
                other => other,
            };
            format!("expected {expected}{found}")
        }
        Error::Unexpected { expected, .. } => {
            let expected = match expected.trim_end_matches(" start") {
                "mapping" => "a mapping".to_owned(),
                "sequence" => "a list".to_owned(),
                "string scalar" => "a string".to_owned(),
                other => other.to_owned(),
            };
            format!("expected {expected}{found}")
        }
        Error::MultipleDocuments { .. } => "a policy file holds one YAML document and another \
                                            starts here; put each policy in its own file"
            .to_owned(),
        other => UserMessageFormatter.format_message(other).into_owned(),
    }
}

fn unknown_field_message(path: &FieldPath) -> String {
    let name = path.last_key().unwrap_or_default();
    let Some(expected) = spec::fields_at(path.parent().segments()) else {
        return format!("unknown field `{name}`");
    };
    let hint = spec::inline_secret_hint(path.segments())
        .map(|hint| format!(" ({hint})"))
        .or_else(|| {
            let field = expected.iter().find(|field| is_near(name, field))?;
            Some(format!(" (did you mean `{field}`?)"))
        })
        .unwrap_or_default();
    format!("unknown field `{name}`{hint}, expected one of {}", expected.join(", "))
}

/// A likely typo: equal ignoring case, or at most two edits apart (for names long enough
/// that two edits do not turn any word into any other).
fn is_near(typed: &str, field: &str) -> bool {
    if typed.eq_ignore_ascii_case(field) {
        return true;
    }
    let limit = if field.len() >= 6 { 2 } else { 1 };
    edit_distance(typed, field) <= limit
}

/// Levenshtein distance, over characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitute = previous[j] + usize::from(ca != *cb);
            current.push(substitute.min(previous[j + 1] + 1).min(current[j] + 1));
        }
        previous = current;
    }
    previous[b.len()]
}

/// The diagnostic for text past [`MAX_POLICY_BYTES`].
pub fn too_large(file: &str) -> Diagnostic {
    Diagnostic::whole_file(
        file,
        &format!("larger than {} KiB; a policy file is a few KiB of YAML", MAX_POLICY_BYTES / 1024),
    )
}

/// The position just after `text`.
pub fn end_of(text: &str) -> Pos {
    let line = text.matches('\n').count() + 1;
    let last_line = text.rsplit('\n').next().unwrap_or_default();
    Pos { line, column: last_line.chars().count() + 1 }
}

/// Control characters escaped, so one diagnostic is one line of plain text.
fn one_line(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for ch in text.chars() {
        if ch.is_control() {
            out.extend(ch.escape_default());
        } else {
            out.push(ch);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use rstest::rstest;

    use super::*;

    const EXAMPLES: [(&str, &str); 4] = [
        ("session-cache.yaml", include_str!("../../policies/session-cache.yaml")),
        ("api-prometheus.yaml", include_str!("../../policies/api-prometheus.yaml")),
        ("checkout-scheduled.yaml", include_str!("../../policies/checkout-scheduled.yaml")),
        ("local-demo.yaml", include_str!("../../policies/local-demo.yaml")),
    ];

    const HEAD: &str = "apiVersion: autopilot.redis.io/v1alpha1\nkind: RedisPolicy\n\
                        metadata: {name: t}\nspec:\n  target: {endpoints: ['a:1']}\n";

    fn billion_laughs() -> String {
        let mut text = "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n".to_owned();
        for (prev, name) in ('a'..='h').zip('b'..='i') {
            let refs = vec![format!("*{prev}"); 9].join(", ");
            text.push_str(&format!("{name}: &{name} [{refs}]\n"));
        }
        text
    }

    fn nested_blocks(depth: usize) -> String {
        (0..depth).map(|i| format!("{}a:\n", " ".repeat(i))).collect()
    }

    /// Inputs that must end as exactly one clear diagnostic: (text, path, line, message).
    #[rstest]
    #[case::empty("", "<document>", 1, "empty document")]
    #[case::only_comments("# nothing yet\n", "<document>", 1, "empty document")]
    #[case::nul_bytes("\0\0\0", "<document>", 1, "unexpected character")]
    #[case::deep_flow_sequences(&format!("a: {}", "[".repeat(100_000)), "<document>", 1, "nested too deeply")]
    #[case::deep_flow_mappings(&format!("a: {}", "{a: ".repeat(100_000)), "<document>", 1, "too deeply nested")]
    #[case::deep_block_mappings(&nested_blocks(1_000), "<document>", 17, "too deeply nested")]
    #[case::billion_laughs(&billion_laughs(), "<document>", 5, "too large")]
    #[case::self_alias("a: &a [*a]\n", "a", 1, "Recursive reference")]
    #[case::unclosed_bracket("apiVersion: [\n", "apiVersion", 1, "unclosed bracket")]
    #[case::two_documents("---\na: 1\n---\nb: 2\n", "<document>", 4, "one YAML document")]
    #[case::a_list("[1, 2]\n", "<document>", 1, "expected a mapping, found a list")]
    #[case::huge_integer(&format!("{HEAD}  scaling: {{maxReplicas: 99999999999999999999}}\n"),
        "spec.scaling.maxReplicas", 6, "expected a whole number, found `99999999999999999999`")]
    #[case::integer_overflowing_to_infinity(&format!("{HEAD}  scaling: {{maxReplicas: 1e400}}\n"),
        "spec.scaling.maxReplicas", 6, "expected a whole number, found `1e400`")]
    #[case::infinite_tolerance(&format!("{HEAD}  scaling: {{tolerance: 1e400}}\n"),
        "spec.scaling.tolerance", 6, "expected a finite number, found `1e400`")]
    #[case::too_large(&format!("a: {}\n", "x".repeat(MAX_POLICY_BYTES)), "<file>", 1, "larger than 1024 KiB")]
    fn hostile_input_is_one_clear_diagnostic(
        #[case] text: &str,
        #[case] path: &str,
        #[case] line: usize,
        #[case] message: &str,
    ) {
        let started = Instant::now();
        let diagnostics = load_policy_str("x.yaml", text).expect_err("not a policy");
        let listing: Vec<String> = diagnostics.iter().map(ToString::to_string).collect();
        assert_eq!(diagnostics.len(), 1, "{listing:?}");
        let found = &diagnostics[0];
        assert_eq!((found.path.as_str(), found.line), (path, line), "{found}");
        assert!(found.message.contains(message), "`{message}` not in {found}");
        assert!(started.elapsed().as_secs() < 5, "took {:?}", started.elapsed());
    }

    /// The daemon loads policies on tokio worker threads, whose stacks are 2 MiB.
    #[test]
    fn deep_nesting_fits_a_worker_thread_stack() {
        let inputs = [
            format!("a: {}", "{a: ".repeat(1_000)),
            format!("a:\n  {}x", "- ".repeat(1_000)),
            nested_blocks(200),
            format!("{HEAD}  alerts:\n    - action: {}", "{scaleUp: ".repeat(1_000)),
        ];
        let worker = std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(move || inputs.iter().all(|text| load_policy_str("x.yaml", text).is_err()));
        let all_rejected = worker.expect("spawn").join().expect("no stack overflow");
        assert!(all_rejected);
    }

    #[test]
    fn non_finite_targets_are_reported_not_accepted() {
        for value in [".nan", ".inf", "-.inf"] {
            let text = format!(
                "{HEAD}  scaling:\n    minReplicas: 1\n    maxReplicas: 2\n    \
                 metrics: [{{redis: x, target: {value}}}]\n"
            );
            let diagnostics = load_policy_str("x.yaml", &text).expect_err("not finite");
            assert_eq!(diagnostics.len(), 1, "{diagnostics:?}");
            assert_eq!(diagnostics[0].path, "spec.scaling.metrics[0].target");
            assert!(diagnostics[0].message.contains("must be a finite number"), "{value}");
        }
    }

    #[test]
    fn unknown_fields_are_all_reported_with_their_key_positions() {
        let text =
            format!("{HEAD}  bogus: 1\n  sampling: {{interval: 5s, every: 1s}}\nstatus: {{}}\n");
        let shown: Vec<String> = load_policy_str("x.yaml", &text)
            .expect_err("unknown fields")
            .into_iter()
            .map(|d| format!("{}:{} {}", d.line, d.column, d.path))
            .collect();
        assert_eq!(shown, ["6:3 spec.bogus", "7:28 spec.sampling.every", "8:1 status"]);
    }

    #[rstest]
    #[case::typo("maxReplica", "(did you mean `maxReplicas`?)")]
    #[case::case("MINREPLICAS", "(did you mean `minReplicas`?)")]
    #[case::unrelated("replicas", "unknown field `replicas`, expected one of minReplicas")]
    fn unknown_fields_name_the_allowed_ones(#[case] field: &str, #[case] message: &str) {
        let path = FieldPath::root().key("spec").key("scaling").key(field);
        let found = unknown_field_message(&path);
        assert!(found.contains(message), "{found}");
        assert_eq!(found.contains("did you mean"), message.contains("did you mean"), "{found}");
    }

    #[test]
    fn control_characters_cannot_break_a_line_of_output() {
        let diagnostics =
            load_policy_str("x.yaml", "\"a\\nb\\u001b[2J\": 1\n").expect_err("unknown");
        let shown = diagnostics[0].to_string();
        assert!(!shown.chars().any(char::is_control), "{shown:?}");
        assert!(shown.contains("a\\nb\\u{1b}[2J"), "{shown}");
    }

    /// xorshift64*: a fixed seed makes a failure reproducible without a dependency.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }

        fn below(&mut self, n: usize) -> usize {
            usize::try_from(self.next() % u64::try_from(n.max(1)).expect("small")).expect("small")
        }
    }

    /// Bytes that change YAML structure, not just a value.
    const SPICY: &[u8] = b"[]{}:-&*!|>'\"#%@`,?\n\t \\0.e~<";

    fn mutate(rng: &mut Rng, mut bytes: Vec<u8>) -> Vec<u8> {
        for _ in 0..=rng.below(4) {
            let at = rng.below(bytes.len());
            match rng.below(6) {
                0 => bytes[at] = SPICY[rng.below(SPICY.len())],
                1 => bytes[at] = (rng.next() & 0xFF) as u8,
                2 => bytes.insert(at, SPICY[rng.below(SPICY.len())]),
                3 => {
                    let end = (at + rng.below(40)).min(bytes.len());
                    bytes.drain(at..end);
                }
                4 => {
                    let end = (at + rng.below(80)).min(bytes.len());
                    let copy = bytes[at..end].to_vec();
                    let to = rng.below(bytes.len());
                    bytes.splice(to..to, copy);
                }
                _ => bytes.truncate(at),
            }
            if bytes.is_empty() {
                break;
            }
        }
        bytes
    }

    /// Mutated example policies never panic, and every problem is a well-formed line.
    #[test]
    fn mutated_policies_never_panic() {
        let mut rng = Rng(0x5EED_CAFE_F00D_0001);
        let mut rejected = 0;
        for round in 0..400 {
            for (name, text) in EXAMPLES {
                let mutated = mutate(&mut rng, text.as_bytes().to_vec());
                let text = String::from_utf8_lossy(&mutated);
                let Err(diagnostics) = load_policy_str(name, &text) else { continue };
                rejected += 1;
                assert!(!diagnostics.is_empty(), "round {round}: rejected without a reason");
                let lines = text.lines().count() + 1;
                for d in &diagnostics {
                    let shown = d.to_string();
                    assert!(
                        d.line >= 1 && d.line <= lines && d.column >= 1,
                        "round {round}: {shown}"
                    );
                    assert!(!shown.contains('\n'), "round {round}: {shown:?}");
                }
            }
        }
        // Most mutations break something; if none did, the loop tested nothing.
        assert!(rejected > 800, "only {rejected} of 1600 mutations were rejected");
    }

    #[test]
    fn the_example_policies_load() {
        for (name, text) in EXAMPLES {
            if let Err(diagnostics) = load_policy_str(name, text) {
                panic!("{name}: {diagnostics:?}");
            }
        }
    }

    #[test]
    fn redis_fields_names_each_field_a_metric_reads_once() {
        let yaml = "apiVersion: autopilot.redis.io/v1alpha1
kind: RedisPolicy
metadata:
  name: cache
spec:
  target:
    endpoints: [\"127.0.0.1:6379\"]
  prometheus:
    url: http://127.0.0.1:9090
  scaling:
    minReplicas: 1
    maxReplicas: 4
    metrics:
      - redis: total_commands_processed
        rate: true
        target: 1000
      - redis: instantaneous_ops_per_sec
        target: 1000
      - redis: instantaneous_ops_per_sec
        statistic: p95
        target: 1000
      - prometheus: 'sum(rate(app_requests_total[1m]))'
        aggregate: sum
        target: 1000
";
        let policy = load_policy_str("cache.yaml", yaml).expect("a valid policy");
        assert_eq!(
            policy.redis_fields(),
            ["instantaneous_ops_per_sec", "total_commands_processed"]
        );
    }
}
