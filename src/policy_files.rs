//! Policy files on disk: which files a path stands for, and reading each through the
//! 1 MiB bound into [`crate::policy`]'s parser. The I/O half of loading a policy, kept out of
//! `policy` so the decision core stays free of it (`tests/purity.rs`).

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::policy::load::{MAX_POLICY_BYTES, end_of, load_policy_text, too_large};
use crate::policy::{Diagnostic, Loaded, Policy};

/// Loads and validates one policy file.
pub fn load_policy(path: &Path) -> Result<Policy, Vec<Diagnostic>> {
    load_policy_checked(path).map(|loaded| loaded.policy)
}

/// Loads and validates one policy file, keeping its warnings. A file not named `*.yaml` or
/// `*.yml` (a secret passed by mistake, say) is never quoted back: a value it holds is
/// described ("a string"), not shown.
pub fn load_policy_checked(path: &Path) -> Result<Loaded, Vec<Diagnostic>> {
    let file = path.display().to_string();
    let text = read_policy_text(path)
        .map_err(|e| vec![Diagnostic::whole_file(&file, &format!("cannot read: {e}"))])??;
    let quote = path.extension().is_some_and(|ext| ext == "yaml" || ext == "yml");
    load_policy_text(&file, &text, quote)
}

/// A policy file's text, read through [`MAX_POLICY_BYTES`]: at most one byte more is ever
/// read, so a huge file costs no memory. The outer error is the I/O failure (a caller can
/// tell a file that is gone from one it could not read); the inner one what is wrong with
/// the bytes (too large, not UTF-8).
pub fn read_policy_text(path: &Path) -> std::io::Result<Result<String, Vec<Diagnostic>>> {
    let file = path.display().to_string();
    let bytes = read_at_most(path, MAX_POLICY_BYTES + 1)?;
    if bytes.len() > MAX_POLICY_BYTES {
        return Ok(Err(vec![too_large(&file)]));
    }
    Ok(String::from_utf8(bytes).map_err(|e| {
        let bytes = e.as_bytes();
        let valid_up_to = e.utf8_error().valid_up_to();
        let valid = String::from_utf8_lossy(&bytes[..valid_up_to]);
        let byte = bytes.get(valid_up_to).copied().unwrap_or_default();
        vec![Diagnostic::new(
            &file,
            end_of(&valid),
            "<file>",
            &format!("not UTF-8 text (byte 0x{byte:02X}); policy files are UTF-8 YAML"),
        )]
    }))
}

fn read_at_most(path: &Path, limit: usize) -> std::io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    let limit = u64::try_from(limit).unwrap_or(u64::MAX);
    crate::file_read::open_regular(path)?.take(limit).read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// The policy files a command-line path stands for; a path that yields none is a problem
/// (a typo in CI should fail, not pass with nothing checked).
pub fn policy_files(path: &Path) -> Vec<Result<PathBuf, Diagnostic>> {
    let name = path.display().to_string();
    let metadata = match std::fs::metadata(path) {
        Ok(metadata) => metadata,
        Err(e) => return vec![Err(Diagnostic::whole_file(&name, &format!("cannot read: {e}")))],
    };
    if !metadata.is_dir() {
        return vec![Ok(path.to_owned())];
    }
    let mut found = Vec::new();
    let mut errors = Vec::new();
    walk(path, &mut found, &mut errors);
    found.sort();
    let mut targets: Vec<_> = found.into_iter().map(Ok).collect();
    targets.extend(errors.into_iter().map(Err));
    if targets.is_empty() {
        targets
            .push(Err(Diagnostic::whole_file(&name, "no *.yaml or *.yml files in this directory")));
    }
    targets
}

/// Every policy file `path` stands for (itself when it is a file), sorted, or every listing
/// that failed. Unlike [`policy_files`] a partial listing is never returned: the daemon
/// removes a policy whose file it no longer finds, and a directory it could not read (too
/// many open files, say) must not read as a directory whose files were all deleted.
pub fn list_policy_files(path: &Path) -> Result<Vec<PathBuf>, Vec<Diagnostic>> {
    let name = path.display().to_string();
    let metadata = std::fs::metadata(path)
        .map_err(|e| vec![Diagnostic::whole_file(&name, &format!("cannot read: {e}"))])?;
    if !metadata.is_dir() {
        return Ok(vec![path.to_owned()]);
    }
    let mut found = Vec::new();
    let mut errors = Vec::new();
    walk(path, &mut found, &mut errors);
    if !errors.is_empty() {
        return Err(errors);
    }
    found.sort();
    Ok(found)
}

/// Collects `*.yaml` / `*.yml` under `dir`. Symlinked directories are not followed, so a
/// link cycle cannot make the walk endless. Hidden entries (`.name`) are skipped: a
/// Kubernetes ConfigMap volume keeps each file twice, as `name.yaml` (a symlink) and inside a
/// hidden `..<timestamp>/` directory it swaps atomically, and reading both would define every
/// policy twice; editors' and VCS files (`.#x.yaml`, `.git/`) are not policies either.
fn walk(dir: &Path, found: &mut Vec<PathBuf>, errors: &mut Vec<Diagnostic>) {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => {
            let message = format!("cannot read directory: {e}");
            errors.push(Diagnostic::whole_file(&dir.display().to_string(), &message));
            return;
        }
    };
    for entry in entries {
        let entry = match entry {
            Ok(entry) => entry,
            Err(e) => {
                let message = format!("cannot read directory: {e}");
                errors.push(Diagnostic::whole_file(&dir.display().to_string(), &message));
                continue;
            }
        };
        if entry.file_name().as_encoded_bytes().starts_with(b".") {
            continue;
        }
        let path = entry.path();
        let is_real_dir = entry.file_type().is_ok_and(|kind| kind.is_dir());
        if is_real_dir {
            walk(&path, found, errors);
        } else if is_policy_file(&path) {
            found.push(path);
        }
    }
}

fn is_policy_file(path: &Path) -> bool {
    let yaml = path.extension().is_some_and(|ext| ext == "yaml" || ext == "yml");
    yaml && path.is_file()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_file_is_a_diagnostic() {
        let missing = Path::new("/nonexistent/policy.yaml");
        let diagnostics = load_policy(missing).expect_err("no such file");
        assert_eq!(diagnostics.len(), 1);
        assert_eq!(
            diagnostics[0].to_string().split(": ").take(2).collect::<Vec<_>>(),
            ["/nonexistent/policy.yaml:1:1", "<file>"]
        );
        assert!(diagnostics[0].message.starts_with("cannot read:"), "{}", diagnostics[0]);
    }

    #[test]
    fn invalid_utf8_is_positioned_at_the_first_bad_byte() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("latin1.yaml");
        std::fs::write(&file, b"apiVersion: x\nkind: caf\xe9\n").expect("write");
        let diagnostics = load_policy(&file).expect_err("not UTF-8");
        assert_eq!(diagnostics.len(), 1);
        assert_eq!((diagnostics[0].line, diagnostics[0].column), (2, 10));
        assert!(
            diagnostics[0].message.contains("not UTF-8 text (byte 0xE9)"),
            "{}",
            diagnostics[0]
        );
    }

    /// The layout the kubelet writes for a ConfigMap volume: the files in a hidden timestamped
    /// directory, `..data` pointing at it, and each key a symlink through `..data`.
    #[test]
    fn a_configmap_volume_yields_each_policy_once() {
        use std::os::unix::fs::symlink;
        let dir = tempfile::tempdir().expect("temp dir");
        let version = dir.path().join("..2025_01_01_00_00_00.000000001");
        std::fs::create_dir(&version).expect("mkdir");
        std::fs::write(version.join("cache.yaml"), "kind: RedisPolicy\n").expect("write");
        symlink(&version, dir.path().join("..data")).expect("link ..data");
        symlink("..data/cache.yaml", dir.path().join("cache.yaml")).expect("link key");
        std::fs::write(dir.path().join(".#cache.yaml"), "an editor's lock file").expect("write");

        let files: Vec<PathBuf> =
            policy_files(dir.path()).into_iter().collect::<Result<_, _>>().expect("no problems");
        assert_eq!(files, [dir.path().join("cache.yaml")]);
    }
}
