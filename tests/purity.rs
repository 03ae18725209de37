//! The decision core's boundary, checked rather than trusted. `model` (the plain data at the
//! bottom) imports nothing from the crate; `policy`, `observe` and `decide` import only
//! `model` and the core layers below them, and none of them does I/O, reads a clock or awaits. The daemon,
//! `plan` and `simulate` run the same core, so anything that crept in here would behave
//! differently under each of them. Test code (`#[cfg(test)]` modules, `*tests.rs` files) is
//! exempt: it may build fixtures on disk.
//!
//! Beyond the core, no module under `src/` may reach, through `crate::` paths, a module that
//! reaches back to it: the top-level modules form a graph without a circle, which is what lets
//! each be read, tested and replaced from the bottom up (`docs/architecture.md` draws it).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The core's modules under `src/`, and which crate modules each may name: a strict layering,
/// `model` <- `policy` <- `observe` <- `decide`, so there is no circle inside the core either.
const CORE: &[(&str, &[&str])] = &[
    ("model.rs", &[]),
    ("policy", &["model", "policy"]),
    ("observe", &["model", "policy", "observe"]),
    ("decide", &["model", "policy", "observe", "decide"]),
];

/// What the core never uses: I/O crates and modules, clocks, async.
const FORBIDDEN: &[&str] = &[
    "tokio",
    "redis::",
    "kube::",
    "k8s_openapi::",
    "object_store",
    "reqwest",
    "hyper",
    "axum",
    "std::fs",
    "std::process",
    "std::env",
    "std::thread",
    "std::net::Tcp",
    "std::net::Udp",
    "Instant::now",
    "SystemTime::now",
    "Utc::now",
    "Local::now",
    "async ",
    ".await",
    // Ways around the module check: a grouped import hides the names, and `super::super`
    // from a core file reaches the crate root.
    "crate::{",
    "super::super",
];

fn rust_files(path: &Path, found: &mut Vec<PathBuf>) {
    if path.is_dir() {
        for entry in std::fs::read_dir(path).expect("read src") {
            rust_files(&entry.expect("entry").path(), found);
        }
    } else if path.extension().is_some_and(|ext| ext == "rs") {
        found.push(path.to_owned());
    }
}

/// The production lines of a file: comments dropped, and each `#[cfg(test)]` item skipped,
/// whole and only it: one declared out of line (`mod tests;`, a `use`), or a block to its
/// closing brace (the test module, or a test-only helper in the middle of an `impl`, after
/// which the file's production code goes on and is read).
fn code_lines(path: &Path) -> Vec<(usize, String)> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    if name.ends_with("tests.rs") {
        return Vec::new();
    }
    let text = std::fs::read_to_string(path).expect("read a source file");
    let mut lines = text
        .lines()
        .enumerate()
        .map(|(n, line)| (n + 1, line.split("//").next().unwrap_or_default().to_owned()));
    let mut code = Vec::new();
    while let Some((n, line)) = lines.next() {
        if line.trim() == "#[cfg(test)]" {
            skip_item(&mut lines);
            continue;
        }
        if !line.trim().is_empty() {
            code.push((n, line));
        }
    }
    code
}

/// Consumes one item from `lines`: its attributes, then either a line ending in `;` with no
/// block, or everything up to the brace that closes the block it opens.
fn skip_item(lines: &mut impl Iterator<Item = (usize, String)>) {
    let mut depth = 0i64;
    let mut opened = false;
    for (_, line) in lines.by_ref() {
        let trimmed = line.trim();
        if !opened && (trimmed.is_empty() || trimmed.starts_with("#[")) {
            continue;
        }
        for c in line.chars() {
            match c {
                '{' => {
                    depth += 1;
                    opened = true;
                }
                '}' => depth -= 1,
                _ => {}
            }
        }
        if opened && depth <= 0 || !opened && trimmed.ends_with(';') {
            return;
        }
    }
}

/// Every `crate::name` a line refers to.
fn crate_modules(line: &str) -> Vec<&str> {
    line.match_indices("crate::")
        .filter(|(at, _)| !line[..*at].ends_with(|c: char| c.is_alphanumeric() || c == '_'))
        .map(|(at, found)| {
            let rest = &line[at + found.len()..];
            let end = rest.find(|c: char| !(c.is_alphanumeric() || c == '_')).unwrap_or(rest.len());
            &rest[..end]
        })
        .collect()
}

/// Every breach in `src`, one line each.
fn breaches(src: &Path) -> Vec<String> {
    let mut found = Vec::new();
    for (module, allowed) in CORE {
        let mut files = Vec::new();
        rust_files(&src.join(module), &mut files);
        assert!(!files.is_empty(), "no sources for core module `{module}` under {}", src.display());
        for file in files {
            for (n, line) in code_lines(&file) {
                let at = format!("{}:{n}", file.strip_prefix(src).unwrap_or(&file).display());
                for name in crate_modules(&line) {
                    // An empty name is a grouped import, caught below as `crate::{`.
                    if !name.is_empty() && !allowed.contains(&name) {
                        found.push(format!("{at}: `{module}` may not use `crate::{name}`"));
                    }
                }
                for forbidden in FORBIDDEN {
                    if line.contains(forbidden) {
                        found.push(format!("{at}: `{module}` may not use `{}`", forbidden.trim()));
                    }
                }
            }
        }
    }
    found
}

#[test]
fn the_decision_core_does_no_io_and_imports_only_the_model_and_itself() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let found = breaches(&src);
    assert!(found.is_empty(), "the core's boundary is breached:\n{}", found.join("\n"));
}

/// The check itself: a core file that names an edge module, does I/O or awaits is caught.
#[test]
fn a_breach_of_the_boundary_is_caught() {
    let src = tempfile::tempdir().expect("temp dir");
    for (module, _) in CORE {
        let path = src.path().join(module);
        let file = if module.ends_with(".rs") {
            path
        } else {
            std::fs::create_dir_all(&path).expect("mkdir");
            path.join("mod.rs")
        };
        std::fs::write(&file, "//! Plain.\nuse super::Member; // crate::cluster in a comment\n")
            .expect("write");
    }
    std::fs::write(
        src.path().join("decide/bad.rs"),
        "use crate::cluster::Member;\nfn f() { let _ = std::fs::read(\"x\"); }\n\
         #[cfg(test)]\nmod fixture;\nasync fn g() { h().await }\nuse crate::{sample::Endpoint};\n\
         impl S {\n    #[cfg(test)]\n    #[allow(dead_code)]\n    fn held(&self) -> usize {\n\
         \x20       if true { std::fs::read(\"y\"); }\n        0\n    }\n\
         \x20   fn later(&self) { std::time::Instant::now(); }\n}\n\
         #[cfg(test)]\nmod tests { use crate::sample::Endpoint; }\n",
    )
    .expect("write");
    let found = breaches(src.path());
    let lines: Vec<&str> = found.iter().map(String::as_str).collect();
    // A test-only helper is skipped, and only it: the code after it is read.
    assert_eq!(
        lines,
        [
            "decide/bad.rs:1: `decide` may not use `crate::cluster`",
            "decide/bad.rs:2: `decide` may not use `std::fs`",
            "decide/bad.rs:5: `decide` may not use `async`",
            "decide/bad.rs:5: `decide` may not use `.await`",
            "decide/bad.rs:6: `decide` may not use `crate::{`",
            "decide/bad.rs:14: `decide` may not use `Instant::now`",
        ],
        "{found:#?}"
    );
}

/// The top-level module a file under `src` belongs to (`cluster/local/mod.rs` -> `cluster`);
/// `None` for the crate roots, which declare the modules rather than use them.
fn top_module(src: &Path, file: &Path) -> Option<String> {
    let relative = file.strip_prefix(src).ok()?;
    let first = relative.components().next()?.as_os_str().to_str()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    (!["lib", "main"].contains(&name)).then(|| name.to_owned())
}

/// Every top-level module `code` names through `crate::`, grouped imports included
/// (`crate::{a::X, b}` names `a` and `b`).
fn named_modules(code: &str) -> Vec<String> {
    let mut names = Vec::new();
    for (at, found) in code.match_indices("crate::") {
        if code[..at].ends_with(|c: char| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let rest = &code[at + found.len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 0;
            let mut item_start = true;
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => item_start = true,
                    c if item_start && (c.is_alphanumeric() || c == '_') => {
                        let tail = &group[i..];
                        let end = tail
                            .find(|c: char| !(c.is_alphanumeric() || c == '_'))
                            .unwrap_or(tail.len());
                        names.push(tail[..end].to_owned());
                        item_start = false;
                    }
                    _ => {}
                }
            }
        } else {
            names.extend(crate_modules(&code[at..]).first().map(|name| (*name).to_owned()));
        }
    }
    names
}

/// The edges between top-level modules under `src`, each with the first file naming it.
fn module_graph(src: &Path) -> BTreeMap<String, BTreeMap<String, String>> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    files.sort();
    let mut graph: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for file in files {
        let Some(from) = top_module(src, &file) else { continue };
        let code: Vec<String> = code_lines(&file).into_iter().map(|(_, line)| line).collect();
        let shown = file.strip_prefix(src).unwrap_or(&file).display().to_string();
        let edges = graph.entry(from.clone()).or_default();
        for to in named_modules(&code.join("\n")) {
            if !to.is_empty() && to != from {
                edges.entry(to).or_insert_with(|| shown.clone());
            }
        }
    }
    graph
}

/// Every circle in `graph`, each once, as `a -> b (file) -> a (file)`.
fn circles(graph: &BTreeMap<String, BTreeMap<String, String>>) -> Vec<String> {
    fn walk(
        graph: &BTreeMap<String, BTreeMap<String, String>>,
        path: &mut Vec<String>,
        found: &mut BTreeSet<Vec<String>>,
    ) {
        let Some(last) = path.last().cloned() else { return };
        for next in graph.get(&last).into_iter().flat_map(BTreeMap::keys) {
            if let Some(at) = path.iter().position(|m| m == next) {
                // The circle, rotated to start at its smallest module, so each is found once.
                let mut circle = path[at..].to_vec();
                let start = circle.iter().enumerate().min_by_key(|(_, m)| *m).map_or(0, |(i, _)| i);
                circle.rotate_left(start);
                found.insert(circle);
            } else {
                path.push(next.clone());
                walk(graph, path, found);
                path.pop();
            }
        }
    }
    let mut found = BTreeSet::new();
    for start in graph.keys() {
        walk(graph, &mut vec![start.clone()], &mut found);
    }
    found
        .into_iter()
        .map(|circle| {
            let mut text = circle[0].clone();
            for (i, from) in circle.iter().enumerate() {
                let to = &circle[(i + 1) % circle.len()];
                text.push_str(&format!(" -> {to} ({})", graph[from][to]));
            }
            text
        })
        .collect()
}

#[test]
fn no_module_under_src_reaches_back_to_itself() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let graph = module_graph(&src);
    assert!(graph.contains_key("cluster") && graph.contains_key("act"), "{graph:?}");
    let found = circles(&graph);
    assert!(found.is_empty(), "import circles among the modules under src/:\n{}", found.join("\n"));
}

/// The graph `docs/architecture.md` draws, by module in its order: the code block after the
/// line that introduces it, one `module -> a, b` (or `-> nothing`) per line.
fn drawn_graph(doc: &str) -> Vec<(String, BTreeSet<String>)> {
    let after = doc
        .split_once("compares the graph with the one drawn here")
        .expect("architecture.md introduces the drawn graph")
        .1;
    let block = after.split("```").nth(1).expect("a code block after it");
    block
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            let (from, to) =
                line.split_once("->").unwrap_or_else(|| panic!("not `a -> b`: {line}"));
            let to = match to.trim() {
                "nothing" => BTreeSet::new(),
                list => list.split(',').map(|name| name.trim().to_owned()).collect(),
            };
            (from.trim().to_owned(), to)
        })
        .collect()
}

/// `docs/architecture.md`'s module graph is the code's, edge for edge, and its order is one
/// the code keeps: each module names only modules drawn below it.
#[test]
fn the_drawn_module_graph_is_the_code_s() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let doc = std::fs::read_to_string(root.join("docs/architecture.md")).expect("architecture.md");
    let drawn = drawn_graph(&doc);
    let actual: BTreeMap<String, BTreeSet<String>> = module_graph(&root.join("src"))
        .into_iter()
        .map(|(from, to)| (from, to.into_keys().collect()))
        .collect();
    let drawn_map: BTreeMap<String, BTreeSet<String>> = drawn.iter().cloned().collect();
    assert_eq!(drawn_map, actual, "docs/architecture.md draws another module graph");
    for (at, (from, to)) in drawn.iter().enumerate() {
        let below: BTreeSet<&String> = drawn[at + 1..].iter().map(|(name, _)| name).collect();
        for name in to {
            assert!(below.contains(name), "`{from}` names `{name}`, which is not drawn below it");
        }
    }
}

/// The check itself: a circle through a grouped import, two modules deep, is caught and
/// printed with the file of each edge; test modules and comments do not count.
#[test]
fn an_import_circle_is_caught() {
    let src = tempfile::tempdir().expect("temp dir");
    let write = |path: &str, text: &str| {
        let path = src.path().join(path);
        std::fs::create_dir_all(path.parent().expect("a parent")).expect("mkdir");
        std::fs::write(path, text).expect("write");
    };
    write("lib.rs", "pub mod a;\npub mod b;\npub mod c;\n");
    write("a/mod.rs", "use crate::b::B;\n// crate::c in a comment\n");
    write("b.rs", "use crate::{\n    c::C,\n    model,\n};\n");
    write("c/inner.rs", "fn f() { crate::a::g() }\n#[cfg(test)]\nmod tests { use crate::b; }\n");
    write("model.rs", "#[cfg(test)]\nmod tests { use crate::a; }\n");
    let found = circles(&module_graph(src.path()));
    assert_eq!(found, ["a -> b (a/mod.rs) -> c (b.rs) -> a (c/inner.rs)"], "{found:#?}");
}
