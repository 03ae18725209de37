//! The daemon's policy directory: every policy loaded at start, and on reload exactly what
//! changed. A file that no longer validates is rejected with the same diagnostics `check`
//! prints, and the version already running keeps running: a typo never stops autopilot.
//! Nor does a directory or a file that cannot be read (too many open files, a permission
//! slip): a policy stops only when its file is positively gone.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::policy::load::{list_policy_files, read_policy_text};
use crate::policy::{Diagnostic, Policy, load_policy_str};

/// What a reload changed, one entry per affected file.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    Added(Policy),
    /// The file changed and still validates: the new version replaces the old.
    Replaced(Policy),
    /// The file is gone (or renamed its policy): stop this one.
    Removed(String),
    /// The file changed but does not validate: the old version (if any) keeps running.
    Rejected(Vec<Diagnostic>),
    /// The directory could not be listed: nothing changed, every running policy stays.
    /// Reported once until a listing succeeds again.
    Unreadable(Vec<Diagnostic>),
}

#[derive(Debug, Clone)]
struct Loaded {
    text: String,
    policy: Policy,
}

/// The policies running now, by file.
#[derive(Debug, Default)]
pub struct PolicySet {
    dir: PathBuf,
    files: BTreeMap<PathBuf, Loaded>,
    /// The text of each file whose last version did not validate: it is reported once, not
    /// again on every poll until the file changes.
    rejected: BTreeMap<PathBuf, String>,
    /// The last listing failure reported, so a lasting one is not reported on every poll.
    unreadable: Option<Vec<Diagnostic>>,
}

impl PolicySet {
    /// Loads every policy under `dir`; any problem fails the start, with every diagnostic.
    pub fn load(dir: &Path) -> Result<Self, Vec<Diagnostic>> {
        let mut set = Self { dir: dir.to_owned(), ..Self::default() };
        let rejected: Vec<Diagnostic> = set
            .reload()
            .into_iter()
            .flat_map(|change| match change {
                Change::Rejected(diagnostics) | Change::Unreadable(diagnostics) => diagnostics,
                _ => Vec::new(),
            })
            .collect();
        if !rejected.is_empty() {
            return Err(rejected);
        }
        if set.files.is_empty() {
            // A typo in `--policies` should fail the start, not run a daemon with nothing.
            let name = dir.display().to_string();
            let message = "no *.yaml or *.yml files in this directory";
            return Err(vec![Diagnostic::whole_file(&name, message)]);
        }
        Ok(set)
    }

    pub fn policies(&self) -> impl Iterator<Item = &Policy> {
        self.files.values().map(|loaded| &loaded.policy)
    }

    /// Reads the directory again and applies what changed. A failed listing changes nothing;
    /// a file that cannot be read keeps its running version; a policy is removed only when
    /// its file is gone (`NotFound`).
    pub fn reload(&mut self) -> Vec<Change> {
        let paths = match list_policy_files(&self.dir) {
            Ok(paths) => {
                self.unreadable = None;
                paths
            }
            Err(diagnostics) => {
                if self.unreadable.as_ref() == Some(&diagnostics) {
                    return Vec::new();
                }
                self.unreadable = Some(diagnostics.clone());
                return vec![Change::Unreadable(diagnostics)];
            }
        };
        let mut changes = Vec::new();
        let mut seen = Vec::new();
        for path in paths {
            let name = path.display().to_string();
            let text = match read_policy_text(&path) {
                Ok(Ok(text)) => text,
                // Deleted since the listing: the check for gone files below removes it.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                // Unreadable now (too many open files, permissions): the running version
                // stays, whatever the file holds.
                Err(e) => {
                    let diagnostic = Diagnostic::whole_file(&name, &format!("cannot read: {e}"));
                    self.reject_once(&mut changes, path.clone(), vec![diagnostic]);
                    seen.push(path);
                    continue;
                }
                // Not text a policy can be (too large, not UTF-8).
                Ok(Err(diagnostics)) => {
                    self.reject_once(&mut changes, path.clone(), diagnostics);
                    seen.push(path);
                    continue;
                }
            };
            seen.push(path.clone());
            if self.files.get(&path).is_some_and(|loaded| loaded.text == text) {
                // Reverted to the running version: a later bad edit is news again.
                self.rejected.remove(&path);
                continue;
            }
            if self.rejected.get(&path) == Some(&text) {
                continue;
            }
            let policy = match load_policy_str(&name, &text) {
                Ok(policy) => {
                    self.rejected.remove(&path);
                    policy
                }
                Err(diagnostics) => {
                    changes.push(Change::Rejected(diagnostics));
                    self.rejected.insert(path, text);
                    continue;
                }
            };
            if let Some(other) = self.owner_of(&policy.name, &path) {
                let message = format!("policy `{}` is already defined in {other}", policy.name);
                changes.push(Change::Rejected(vec![Diagnostic::whole_file(&name, &message)]));
                continue;
            }
            let previous = self.files.insert(path, Loaded { text, policy: policy.clone() });
            match previous {
                Some(old) if old.policy.name != policy.name => {
                    changes.push(Change::Removed(old.policy.name));
                    changes.push(Change::Added(policy));
                }
                Some(_) => changes.push(Change::Replaced(policy)),
                None => changes.push(Change::Added(policy)),
            }
        }
        self.rejected.retain(|path, _| seen.contains(path));
        let gone: Vec<PathBuf> = self
            .files
            .keys()
            .filter(|path| !seen.contains(path) && is_gone(path))
            .cloned()
            .collect();
        for path in gone {
            if let Some(loaded) = self.files.remove(&path) {
                changes.push(Change::Removed(loaded.policy.name));
            }
        }
        changes
    }

    /// Reports a problem with a file that has no text to remember (it could not be read, or
    /// is no policy text): remembered by its diagnostics instead, so it is reported once.
    fn reject_once(
        &mut self,
        changes: &mut Vec<Change>,
        path: PathBuf,
        diagnostics: Vec<Diagnostic>,
    ) {
        let marker: String = diagnostics.iter().map(|d| format!("{d}\n")).collect();
        if self.rejected.get(&path) != Some(&marker) {
            changes.push(Change::Rejected(diagnostics));
            self.rejected.insert(path, marker);
        }
    }

    /// Another file that already defines a policy of this name.
    fn owner_of(&self, name: &str, except: &Path) -> Option<String> {
        self.files
            .iter()
            .find(|(path, loaded)| path.as_path() != except && loaded.policy.name == name)
            .map(|(path, _)| path.display().to_string())
    }
}

/// Whether `path` is positively gone: `stat` says `NotFound` (a dangling symlink too, as
/// when a ConfigMap drops a key). Any other answer keeps the policy running.
fn is_gone(path: &Path) -> bool {
    std::fs::metadata(path).is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy_text(name: &str, max: u16) -> String {
        format!(
            "apiVersion: autopilot.redis.io/v1alpha1\nkind: RedisPolicy\nmetadata: {{name: {name}}}\n\
             spec:\n  target: {{endpoints: ['127.0.0.1:6379']}}\n  scaling:\n    minReplicas: 1\n    \
             maxReplicas: {max}\n    metrics:\n      - {{redis: instantaneous_ops_per_sec, target: 1000}}\n"
        )
    }

    fn names(changes: &[Change]) -> Vec<String> {
        changes
            .iter()
            .map(|c| match c {
                Change::Added(p) => format!("+{}", p.name),
                Change::Replaced(p) => format!("~{}", p.name),
                Change::Removed(name) => format!("-{name}"),
                Change::Rejected(d) => format!("!{}", d[0]),
                Change::Unreadable(d) => format!("?{}", d[0]),
            })
            .collect()
    }

    #[test]
    fn reload_reports_additions_replacements_and_removals() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.yaml"), policy_text("a", 3)).unwrap();
        let mut set = PolicySet::load(dir.path()).unwrap();
        assert_eq!(set.policies().map(|p| p.name.as_str()).collect::<Vec<_>>(), ["a"]);
        assert!(set.reload().is_empty(), "nothing changed");

        std::fs::write(dir.path().join("a.yaml"), policy_text("a", 5)).unwrap();
        std::fs::write(dir.path().join("b.yaml"), policy_text("b", 2)).unwrap();
        assert_eq!(names(&set.reload()), ["~a", "+b"]);
        std::fs::remove_file(dir.path().join("b.yaml")).unwrap();
        assert_eq!(names(&set.reload()), ["-b"]);
    }

    #[test]
    fn an_invalid_edit_is_rejected_and_the_old_policy_keeps_running() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a.yaml");
        std::fs::write(&file, policy_text("a", 3)).unwrap();
        let mut set = PolicySet::load(dir.path()).unwrap();
        std::fs::write(&file, policy_text("a", 3).replace("maxReplicas: 3", "maxReplicas: 0"))
            .unwrap();
        let changes = set.reload();
        assert_eq!(changes.len(), 1);
        let Change::Rejected(diagnostics) = &changes[0] else { panic!("{changes:?}") };
        assert!(diagnostics[0].to_string().contains("spec.scaling.maxReplicas"), "{diagnostics:?}");
        let running: Vec<u16> =
            set.policies().map(|p| p.scaling.as_ref().unwrap().max_replicas).collect();
        assert_eq!(running, [3], "the old version keeps running");
        assert!(set.reload().is_empty(), "the same invalid text is reported once, not per poll");
        // Reverting and making the same mistake again is reported again.
        std::fs::write(&file, policy_text("a", 3)).unwrap();
        assert!(set.reload().is_empty(), "the running version: nothing changed");
        std::fs::write(&file, policy_text("a", 3).replace("maxReplicas: 3", "maxReplicas: 0"))
            .unwrap();
        assert!(matches!(set.reload().as_slice(), [Change::Rejected(_)]));
        // Fixing the file replaces it.
        std::fs::write(&file, policy_text("a", 4)).unwrap();
        assert_eq!(names(&set.reload()), ["~a"]);
    }

    fn running(set: &PolicySet) -> Vec<&str> {
        set.policies().map(|p| p.name.as_str()).collect()
    }

    #[test]
    fn a_directory_that_cannot_be_listed_removes_nothing() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("policies");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("a.yaml"), policy_text("a", 3)).unwrap();
        let mut set = PolicySet::load(&dir).unwrap();
        // The path cannot be read now (a symlink loop, ELOOP), as it cannot with EMFILE.
        std::fs::rename(&dir, root.path().join("elsewhere")).unwrap();
        std::os::unix::fs::symlink(&dir, &dir).unwrap();
        let changes = set.reload();
        assert!(matches!(changes.as_slice(), [Change::Unreadable(_)]), "{changes:?}");
        assert_eq!(running(&set), ["a"], "a failed listing is not a deletion");
        assert!(set.reload().is_empty(), "a lasting failure is reported once");
        // Gone altogether: still only a listing that failed.
        std::fs::remove_file(&dir).unwrap();
        assert!(matches!(set.reload().as_slice(), [Change::Unreadable(_)]));
        assert_eq!(running(&set), ["a"]);
        // Back, unchanged: nothing to do; then the file really goes.
        std::fs::rename(root.path().join("elsewhere"), &dir).unwrap();
        assert!(set.reload().is_empty());
        std::fs::remove_file(dir.join("a.yaml")).unwrap();
        assert_eq!(names(&set.reload()), ["-a"]);
    }

    #[test]
    fn a_file_that_cannot_be_read_keeps_its_running_version() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a.yaml");
        std::fs::write(&file, policy_text("a", 3)).unwrap();
        let mut set = PolicySet::load(dir.path()).unwrap();
        // A path that is there but no readable file: not listed, yet not gone either.
        std::fs::remove_file(&file).unwrap();
        std::fs::create_dir(&file).unwrap();
        assert!(set.reload().is_empty(), "{:?}", set.reload());
        assert_eq!(running(&set), ["a"]);
        std::fs::remove_dir(&file).unwrap();
        // Bytes that are no text: rejected once, the running version stays.
        std::fs::write(&file, b"\xff\xfe").unwrap();
        let changes = set.reload();
        assert!(matches!(changes.as_slice(), [Change::Rejected(_)]), "{changes:?}");
        assert!(set.reload().is_empty());
        assert_eq!(running(&set), ["a"]);
    }

    #[test]
    fn a_huge_file_is_rejected_without_reading_it() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a.yaml");
        std::fs::write(&file, policy_text("a", 3)).unwrap();
        let mut set = PolicySet::load(dir.path()).unwrap();
        // 2 GiB of holes: read whole, it would take 2 GiB of memory and seconds.
        let huge = std::fs::File::create(&file).unwrap();
        huge.set_len(2 << 30).unwrap();
        let changes = set.reload();
        let [Change::Rejected(diagnostics)] = changes.as_slice() else { panic!("{changes:?}") };
        assert!(diagnostics[0].to_string().contains("larger than 1024 KiB"), "{diagnostics:?}");
        assert_eq!(running(&set), ["a"]);
        assert!(set.reload().is_empty(), "reported once");
    }

    #[test]
    fn two_files_may_not_define_the_same_policy() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.yaml"), policy_text("a", 3)).unwrap();
        std::fs::write(dir.path().join("b.yaml"), policy_text("a", 3)).unwrap();
        let errors = PolicySet::load(dir.path()).unwrap_err();
        assert!(errors[0].to_string().contains("already defined in"), "{errors:?}");
    }

    #[test]
    fn an_invalid_policy_at_start_fails_with_every_diagnostic() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.yaml"), "kind: Nope\n").unwrap();
        let errors = PolicySet::load(dir.path()).unwrap_err();
        assert!(errors.len() > 1, "{errors:?}");
    }
}
