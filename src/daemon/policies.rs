//! The daemon's policy directory: every policy loaded at start, and on reload exactly what
//! changed. A file that no longer validates is rejected with the same diagnostics `check`
//! prints, and the version already running keeps running: a typo never stops autopilot.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::policy::{Diagnostic, Policy, load_policy_str, policy_files};

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
}

impl PolicySet {
    /// Loads every policy under `dir`; any problem fails the start, with every diagnostic.
    pub fn load(dir: &Path) -> Result<Self, Vec<Diagnostic>> {
        let mut set = Self { dir: dir.to_owned(), ..Self::default() };
        let rejected: Vec<Diagnostic> = set
            .reload()
            .into_iter()
            .flat_map(|change| match change {
                Change::Rejected(diagnostics) => diagnostics,
                _ => Vec::new(),
            })
            .collect();
        if rejected.is_empty() { Ok(set) } else { Err(rejected) }
    }

    pub fn policies(&self) -> impl Iterator<Item = &Policy> {
        self.files.values().map(|loaded| &loaded.policy)
    }

    /// Reads the directory again and applies what changed.
    pub fn reload(&mut self) -> Vec<Change> {
        let mut changes = Vec::new();
        let mut seen = Vec::new();
        for file in policy_files(&self.dir) {
            let path = match file {
                Ok(path) => path,
                Err(diagnostic) => {
                    changes.push(Change::Rejected(vec![diagnostic]));
                    continue;
                }
            };
            seen.push(path.clone());
            let name = path.display().to_string();
            let text = match std::fs::read_to_string(&path) {
                Ok(text) => text,
                Err(e) => {
                    let diagnostic = Diagnostic::whole_file(&name, &format!("cannot read: {e}"));
                    changes.push(Change::Rejected(vec![diagnostic]));
                    continue;
                }
            };
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
        let gone: Vec<PathBuf> = self.files.keys().filter(|p| !seen.contains(p)).cloned().collect();
        for path in gone {
            if let Some(loaded) = self.files.remove(&path) {
                changes.push(Change::Removed(loaded.policy.name));
            }
        }
        changes
    }

    /// Another file that already defines a policy of this name.
    fn owner_of(&self, name: &str, except: &Path) -> Option<String> {
        self.files
            .iter()
            .find(|(path, loaded)| path.as_path() != except && loaded.policy.name == name)
            .map(|(path, _)| path.display().to_string())
    }
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
