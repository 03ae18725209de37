//! The decision core's boundary, checked rather than trusted. `model` (the plain data at the
//! bottom) imports nothing from the crate; `policy`, `observe` and `decide` import only
//! `model` and the core layers below them, and none of them does I/O, reads a clock or awaits. The daemon,
//! `plan` and `simulate` run the same core, so anything that crept in here would behave
//! differently under each of them. Test code (`#[cfg(test)]` modules, `*tests.rs` files) is
//! exempt: it may build fixtures on disk.

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

/// The production lines of a file: comments dropped, a `#[cfg(test)]` item declared out of
/// line (`mod tests;`, a `use`) skipped, and nothing from an inline test module on (it closes
/// the file, as rustfmt and the style guide keep it).
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
            match lines.next() {
                Some((_, item)) if item.trim_end().ends_with(';') => continue,
                _ => break,
            }
        }
        if !line.trim().is_empty() {
            code.push((n, line));
        }
    }
    code
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
         #[cfg(test)]\nmod tests { use crate::sample::Endpoint; }\n",
    )
    .expect("write");
    let found = breaches(src.path());
    let lines: Vec<&str> = found.iter().map(String::as_str).collect();
    assert_eq!(
        lines,
        [
            "decide/bad.rs:1: `decide` may not use `crate::cluster`",
            "decide/bad.rs:2: `decide` may not use `std::fs`",
            "decide/bad.rs:5: `decide` may not use `async`",
            "decide/bad.rs:5: `decide` may not use `.await`",
            "decide/bad.rs:6: `decide` may not use `crate::{`",
        ],
        "{found:#?}"
    );
}
