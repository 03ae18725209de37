//! Where things are in a policy file: field paths (`spec.scaling.metrics[1].target`) and a
//! tree of the YAML with the position of every key and value.
//!
//! The typed pass ([`super::spec`]) knows *what* is wrong and at which field path; this map
//! turns that path back into `LINE:COL`. Keeping positions out of the spec types keeps them
//! plain serde structs, and lets one lookup serve serde errors, unknown fields and semantic
//! problems alike. The map also sees what serde hides: duplicate keys, and null documents.

use std::fmt;
use std::ops::Range;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::{Location, Spanned};

/// One step of a field path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    Key(String),
    Index(usize),
}

/// A path from the document root, displayed as `spec.scaling.metrics[1].target`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldPath(Vec<Segment>);

impl FieldPath {
    pub fn root() -> Self {
        Self::default()
    }

    /// This path extended by a mapping key.
    pub fn key(&self, key: &str) -> Self {
        let mut segments = self.0.clone();
        segments.push(Segment::Key(key.to_owned()));
        Self(segments)
    }

    /// This path extended by a sequence index.
    pub fn index(&self, index: usize) -> Self {
        let mut segments = self.0.clone();
        segments.push(Segment::Index(index));
        Self(segments)
    }

    pub fn segments(&self) -> &[Segment] {
        &self.0
    }

    /// The path without its last segment (the root stays the root).
    pub fn parent(&self) -> Self {
        let mut segments = self.0.clone();
        segments.pop();
        Self(segments)
    }

    /// The last segment when it is a mapping key: the field's own name.
    pub fn last_key(&self) -> Option<&str> {
        match self.0.last() {
            Some(Segment::Key(key)) => Some(key),
            _ => None,
        }
    }

    /// Converts a path reported by `serde_ignored` (`spec.scaling.metrics.1.foo`, with `?`
    /// for every `Option` it went through) into ours.
    pub fn from_ignored(path: &serde_ignored::Path<'_>) -> Self {
        let mut reversed = Vec::new();
        let mut at = path;
        loop {
            match at {
                serde_ignored::Path::Root => break,
                serde_ignored::Path::Seq { parent, index } => {
                    reversed.push(Segment::Index(*index));
                    at = parent;
                }
                serde_ignored::Path::Map { parent, key } => {
                    reversed.push(Segment::Key(key.clone()));
                    at = parent;
                }
                serde_ignored::Path::Some { parent }
                | serde_ignored::Path::NewtypeStruct { parent }
                | serde_ignored::Path::NewtypeVariant { parent } => at = parent,
            }
        }
        reversed.reverse();
        Self(reversed)
    }

    /// Converts the path `serde_path_to_error` tracked up to a failure. Segments it could not
    /// name (inside a duplicate key, say) end the path: what comes before is still accurate.
    pub fn from_tracked(path: &serde_path_to_error::Path) -> Self {
        let mut segments = Vec::new();
        for segment in path {
            match segment {
                serde_path_to_error::Segment::Seq { index } => {
                    segments.push(Segment::Index(*index))
                }
                serde_path_to_error::Segment::Map { key } => {
                    segments.push(Segment::Key(key.clone()))
                }
                serde_path_to_error::Segment::Enum { variant } => {
                    segments.push(Segment::Key(variant.clone()));
                }
                serde_path_to_error::Segment::Unknown => break,
            }
        }
        Self(segments)
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("<document>");
        }
        for (i, segment) in self.0.iter().enumerate() {
            match segment {
                Segment::Key(key) if i == 0 => f.write_str(key)?,
                Segment::Key(key) => write!(f, ".{key}")?,
                Segment::Index(index) => write!(f, "[{index}]")?,
            }
        }
        Ok(())
    }
}

/// A 1-based line and column (in characters, as editors count them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Pos {
    pub line: usize,
    pub column: usize,
}

impl Pos {
    pub const START: Pos = Pos { line: 1, column: 1 };

    /// The position of a parser location; unknown locations (line 0) become the file's start,
    /// which is where a reader looks first anyway.
    pub fn from_location(location: Location) -> Self {
        let line = usize::try_from(location.line()).unwrap_or(usize::MAX);
        let column = usize::try_from(location.column()).unwrap_or(usize::MAX);
        if line == 0 { Pos::START } else { Pos { line, column: column.max(1) } }
    }
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// Which position of a field a problem is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Anchor {
    /// The field's value (a bad value).
    Value,
    /// The field's key (a field that should not be there).
    Key,
    /// The mapping that should hold the field (a field that is missing).
    Parent,
}

/// A YAML node and where it starts.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub pos: Pos,
    /// Byte range of the node in the source, when the parser knows it.
    pub span: Option<Range<usize>>,
    pub kind: NodeKind,
}

#[derive(Debug, Clone, PartialEq)]
pub enum NodeKind {
    Null,
    /// Any other scalar, as text (numbers and booleans as YAML resolved them).
    Scalar(String),
    Seq(Vec<Node>),
    /// Entries in document order; duplicates are kept so they can be reported.
    Map(Vec<Entry>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// The key's text; `None` for a list or mapping used as a key, which no field matches.
    pub key: Option<String>,
    pub key_pos: Pos,
    pub value: Node,
}

/// A key that appears more than once in one mapping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DuplicateKey {
    pub path: FieldPath,
    pub pos: Pos,
    pub first: Pos,
}

/// The position tree of one YAML document.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceMap {
    text: String,
    root: Node,
}

impl SourceMap {
    /// Reads the document's shape. `options` should keep duplicate keys (to report them) and
    /// accept non-finite numbers (the typed pass judges those).
    pub fn parse(text: &str, options: serde_saphyr::Options) -> Result<Self, serde_saphyr::Error> {
        let root = serde_saphyr::from_str_with_options::<Node>(text, options)?;
        Ok(Self { text: text.to_owned(), root })
    }

    /// How a message names what was found: `` `ten` `` (as written), `a mapping`, ...
    pub fn describe(&self, node: &Node) -> String {
        let text = match &node.kind {
            NodeKind::Null => return "nothing (null)".to_owned(),
            NodeKind::Seq(_) => return "a list".to_owned(),
            NodeKind::Map(_) => return "a mapping".to_owned(),
            NodeKind::Scalar(resolved) => {
                // The source spelling (`1e400`, not `inf`) is what the author will look for.
                let written = node.span.clone().and_then(|span| self.text.get(span));
                written.filter(|w| !w.is_empty() && !w.contains('\n')).unwrap_or(resolved)
            }
        };
        let short: String = text.chars().take(40).collect();
        if short.len() < text.len() { format!("`{short}...`") } else { format!("`{text}`") }
    }

    pub fn root(&self) -> &Node {
        &self.root
    }

    /// The node at `path`, if the document has one there. With duplicate keys the first one
    /// counts, as in the typed pass.
    pub fn node(&self, path: &FieldPath) -> Option<&Node> {
        path.segments().iter().try_fold(&self.root, |node, segment| child(node, segment))
    }

    /// Where a problem about `path` should point. A path the document does not spell out
    /// (a defaulted field, say) points at its nearest ancestor that it does.
    pub fn locate(&self, path: &FieldPath, anchor: Anchor) -> Pos {
        let segments = match anchor {
            Anchor::Parent => &path.segments()[..path.segments().len().saturating_sub(1)],
            Anchor::Value | Anchor::Key => path.segments(),
        };
        let mut node = &self.root;
        for (i, segment) in segments.iter().enumerate() {
            let is_last = i + 1 == segments.len();
            if let (true, Anchor::Key, Segment::Key(key), NodeKind::Map(entries)) =
                (is_last, anchor, segment, &node.kind)
                && let Some(entry) = entries.iter().find(|e| e.key.as_ref() == Some(key))
            {
                return entry.key_pos;
            }
            match child(node, segment) {
                Some(next) => node = next,
                None => break,
            }
        }
        node.pos
    }

    /// Every repeated key in every mapping, in document order.
    pub fn duplicate_keys(&self) -> Vec<DuplicateKey> {
        let mut found = Vec::new();
        collect_duplicates(&self.root, &FieldPath::root(), &mut found);
        found
    }
}

fn child<'a>(node: &'a Node, segment: &Segment) -> Option<&'a Node> {
    match (&node.kind, segment) {
        (NodeKind::Map(entries), Segment::Key(key)) => {
            entries.iter().find(|e| e.key.as_ref() == Some(key)).map(|e| &e.value)
        }
        (NodeKind::Seq(items), Segment::Index(index)) => items.get(*index),
        _ => None,
    }
}

fn collect_duplicates(node: &Node, path: &FieldPath, found: &mut Vec<DuplicateKey>) {
    match &node.kind {
        NodeKind::Map(entries) => {
            for (i, entry) in entries.iter().enumerate() {
                let entry_path = path.key(entry.key.as_deref().unwrap_or("<complex key>"));
                let first = entries[..i].iter().find(|e| e.key.is_some() && e.key == entry.key);
                if let Some(first) = first {
                    found.push(DuplicateKey {
                        path: entry_path.clone(),
                        pos: entry.key_pos,
                        first: first.key_pos,
                    });
                }
                collect_duplicates(&entry.value, &entry_path, found);
            }
        }
        NodeKind::Seq(items) => {
            for (i, item) in items.iter().enumerate() {
                collect_duplicates(item, &path.index(i), found);
            }
        }
        NodeKind::Null | NodeKind::Scalar(_) => {}
    }
}

// Deserialization: every node goes through `Spanned`, which is how serde-saphyr hands out
// locations; the kind underneath is read with `deserialize_any`, so the tree takes whatever
// shape the document has.

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let spanned = Spanned::<NodeKind>::deserialize(deserializer)?;
        let span = spanned.referenced.span();
        let start = span.byte_offset().and_then(|offset| usize::try_from(offset).ok());
        let len = span.byte_len().and_then(|len| usize::try_from(len).ok());
        Ok(Node {
            pos: Pos::from_location(spanned.referenced),
            span: start.zip(len).map(|(start, len)| start..start.saturating_add(len)),
            kind: spanned.value,
        })
    }
}

impl<'de> Deserialize<'de> for NodeKind {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(KindVisitor)
    }
}

struct KindVisitor;

impl<'de> Visitor<'de> for KindVisitor {
    type Value = NodeKind;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML node")
    }

    fn visit_unit<E: de::Error>(self) -> Result<NodeKind, E> {
        Ok(NodeKind::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<NodeKind, E> {
        Ok(NodeKind::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<NodeKind, D::Error> {
        NodeKind::deserialize(deserializer)
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<NodeKind, E> {
        Ok(NodeKind::Scalar(v.to_string()))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<NodeKind, E> {
        Ok(NodeKind::Scalar(v.to_string()))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<NodeKind, E> {
        Ok(NodeKind::Scalar(v.to_string()))
    }

    fn visit_i128<E: de::Error>(self, v: i128) -> Result<NodeKind, E> {
        Ok(NodeKind::Scalar(v.to_string()))
    }

    fn visit_u128<E: de::Error>(self, v: u128) -> Result<NodeKind, E> {
        Ok(NodeKind::Scalar(v.to_string()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<NodeKind, E> {
        Ok(NodeKind::Scalar(v.to_string()))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<NodeKind, E> {
        Ok(NodeKind::Scalar(v.to_owned()))
    }

    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<NodeKind, E> {
        Ok(NodeKind::Scalar(String::from_utf8_lossy(v).into_owned()))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<NodeKind, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Node>()? {
            items.push(item);
        }
        Ok(NodeKind::Seq(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<NodeKind, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<Spanned<KeyText>>()? {
            let value = map.next_value::<Node>()?;
            entries.push(Entry {
                key: key.value.0,
                key_pos: Pos::from_location(key.referenced),
                value,
            });
        }
        Ok(NodeKind::Map(entries))
    }
}

/// A mapping key as text. Policies only use string keys, but a document may hold any key;
/// a sequence or mapping used as a key is read whole and has no text.
struct KeyText(Option<String>);

impl<'de> Deserialize<'de> for KeyText {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        NodeKind::deserialize(deserializer).map(|kind| {
            KeyText(match kind {
                NodeKind::Null => Some("null".to_owned()),
                NodeKind::Scalar(text) => Some(text),
                NodeKind::Seq(_) | NodeKind::Map(_) => None,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::spec::PolicyDocument;

    fn map(text: &str) -> SourceMap {
        let mut options = serde_saphyr::Options::default();
        options.duplicate_keys = serde_saphyr::DuplicateKeyPolicy::PassThrough;
        options.non_finite_float_policy = serde_saphyr::NonFiniteFloatPolicy::AsString;
        SourceMap::parse(text, options).expect("well-formed YAML")
    }

    fn path(segments: &[Segment]) -> FieldPath {
        FieldPath(segments.to_vec())
    }

    fn key(name: &str) -> Segment {
        Segment::Key(name.to_owned())
    }

    #[test]
    fn paths_display_with_dots_and_brackets() {
        assert_eq!(FieldPath::root().to_string(), "<document>");
        let target =
            FieldPath::root().key("spec").key("scaling").key("metrics").index(1).key("target");
        assert_eq!(target.to_string(), "spec.scaling.metrics[1].target");
        assert_eq!(target.parent().to_string(), "spec.scaling.metrics[1]");
        assert_eq!(target.last_key(), Some("target"));
    }

    #[test]
    fn ignored_paths_lose_their_option_markers() {
        let text = "spec:\n  scaling:\n    metrics:\n      - {}\n      - {foo: 1}\n";
        let mut unknown = Vec::new();
        let parsed: Result<PolicyDocument, _> =
            serde_saphyr::with_deserializer_from_str(text, |de| {
                serde_ignored::deserialize(de, |p| unknown.push(FieldPath::from_ignored(&p)))
            });
        assert!(parsed.is_ok());
        let shown: Vec<String> = unknown.iter().map(ToString::to_string).collect();
        assert_eq!(shown, ["spec.scaling.metrics[1].foo"]);
    }

    #[test]
    fn keys_values_and_parents_have_their_own_positions() {
        let text = "spec:\n  scaling:\n    minReplicas: 3\n    metrics:\n      - {redis: x}\n";
        let map = map(text);
        let min = path(&[key("spec"), key("scaling"), key("minReplicas")]);
        assert_eq!(map.locate(&min, Anchor::Key), Pos { line: 3, column: 5 });
        assert_eq!(map.locate(&min, Anchor::Value), Pos { line: 3, column: 18 });
        assert_eq!(map.locate(&min, Anchor::Parent), Pos { line: 3, column: 5 });
        let target =
            path(&[key("spec"), key("scaling"), key("metrics"), Segment::Index(0), key("target")]);
        assert_eq!(map.locate(&target, Anchor::Parent), Pos { line: 5, column: 9 });
        // A field the document leaves out points at the nearest ancestor it has: `spec`'s
        // mapping, which starts at its first key.
        let defaulted = path(&[key("spec"), key("sampling"), key("timeout")]);
        assert_eq!(map.locate(&defaulted, Anchor::Value), Pos { line: 2, column: 3 });
        let missing_index = path(&[key("spec"), key("scaling"), key("metrics"), Segment::Index(7)]);
        assert_eq!(map.locate(&missing_index, Anchor::Value), Pos { line: 5, column: 7 });
    }

    #[test]
    fn every_duplicate_key_is_found_with_the_first_one() {
        let text = "a: 1\nb: {c: 1, c: 2}\na: 3\n? [x]\n: 1\n? [x]\n: 2\n";
        let found = map(text).duplicate_keys();
        let shown: Vec<(String, Pos, Pos)> =
            found.into_iter().map(|d| (d.path.to_string(), d.pos, d.first)).collect();
        assert_eq!(
            shown,
            [
                ("b.c".to_owned(), Pos { line: 2, column: 11 }, Pos { line: 2, column: 5 }),
                ("a".to_owned(), Pos { line: 3, column: 1 }, Pos { line: 1, column: 1 }),
            ]
        );
    }

    #[test]
    fn found_values_are_shown_as_written() {
        let text = "a: 1e400\nb: [1]\nc: ~\nd: 'quoted'\ne: xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\n";
        let map = map(text);
        let shown = |name: &str| map.describe(map.node(&path(&[key(name)])).expect("present"));
        assert_eq!(shown("a"), "`1e400`");
        assert_eq!(shown("b"), "a list");
        assert_eq!(shown("c"), "nothing (null)");
        assert_eq!(shown("d"), "`'quoted'`");
        assert_eq!(shown("e"), format!("`{}...`", "x".repeat(40)));
    }
}
