//! The daemon's policy directory: every policy loaded at start, and on reload exactly what
//! changed. A file that no longer validates is rejected with the same diagnostics `check`
//! prints, and the version already running keeps running: a typo never stops autopilot.
//! Nor does a directory or a file that cannot be read (too many open files, a permission
//! slip): a policy stops only when its file is positively gone.
//!
//! Two policies on one target fight (each scales and fails over by its own view, undoing the
//! other's), so the set never holds two that overlap ([`crate::policy::overlap`], the rule
//! `check` applies) or two of one name. At start, such a pair fails the start, naming both
//! files. On reload, a new or edited file that conflicts with a running policy is
//! [`Change::Refused`]: the running policy keeps running untouched (and so does the refused
//! file's previous version, if it had one). A refused file is tried again on every reload,
//! so once the conflict is gone (either file edited away, or the other removed) it loads.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::policy::overlap::refusal;
use crate::policy::{Diagnostic, Loaded, Policy, load_policy_str_checked};
use crate::policy_files::{list_policy_files, read_policy_text};

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
    /// The file validates but conflicts with a running policy (its target overlaps, or it
    /// defines the same name): not run; the running one and this file's old version (if
    /// any) keep running. Reported once per conflict, retried on every reload.
    Refused(Conflict, Diagnostic),
    /// The directory could not be listed: nothing changed, every running policy stays.
    /// Reported once until a listing succeeds again.
    Unreadable(Vec<Diagnostic>),
}

/// Why a valid policy was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conflict {
    /// Its target overlaps a running policy's ([`crate::policy::overlap`]).
    Overlap,
    /// Another file already defines a policy of its name.
    DuplicateName,
}

impl Conflict {
    /// A bounded metric label.
    pub fn label(self) -> &'static str {
        match self {
            Conflict::Overlap => "overlap",
            Conflict::DuplicateName => "duplicate_name",
        }
    }
}

/// How many policy files are not running their current content, and why.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RejectedCounts {
    /// Does not validate, or cannot be read.
    pub invalid: usize,
    pub overlap: usize,
    pub duplicate_name: usize,
}

#[derive(Debug, Clone)]
struct Current {
    text: String,
    loaded: Loaded,
}

/// A valid file's version that is not running because it conflicts.
#[derive(Debug, Clone)]
struct Refusal {
    text: String,
    loaded: Loaded,
    conflict: Conflict,
    diagnostic: Diagnostic,
}

/// The policies running now, by file.
#[derive(Debug, Default)]
pub struct PolicySet {
    dir: PathBuf,
    files: BTreeMap<PathBuf, Current>,
    /// The text of each file whose last version did not validate: it is reported once, not
    /// again on every poll until the file changes.
    rejected: BTreeMap<PathBuf, String>,
    /// Each file whose last version validates but conflicts with a running policy. Unlike a
    /// rejected text it is checked again on every reload (the other side may have moved);
    /// it is reported again only when the conflict says something new.
    refused: BTreeMap<PathBuf, Refusal>,
    /// The last listing failure reported, so a lasting one is not reported on every poll.
    unreadable: Option<Vec<Diagnostic>>,
}

impl PolicySet {
    /// Loads every policy under `dir`; any problem fails the start, with every diagnostic:
    /// an invalid file, and two files on one target or of one policy name (the later file,
    /// in sorted order, names the earlier one).
    pub fn load(dir: &Path) -> Result<Self, Vec<Diagnostic>> {
        let mut set = Self { dir: dir.to_owned(), ..Self::default() };
        let rejected: Vec<Diagnostic> = set
            .reload()
            .into_iter()
            .flat_map(|change| match change {
                Change::Rejected(diagnostics) | Change::Unreadable(diagnostics) => diagnostics,
                Change::Refused(_, diagnostic) => vec![diagnostic],
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
        self.files.values().map(|current| &current.loaded.policy)
    }

    /// The files whose current content is not running, by reason (for a gauge: a refused
    /// or rejected edit leaves the old version running, which nothing else would show).
    pub fn rejected_counts(&self) -> RejectedCounts {
        let count = |conflict| self.refused.values().filter(|r| r.conflict == conflict).count();
        RejectedCounts {
            invalid: self.rejected.len(),
            overlap: count(Conflict::Overlap),
            duplicate_name: count(Conflict::DuplicateName),
        }
    }

    /// Reads the directory again and applies what changed. A failed listing changes nothing;
    /// a file that cannot be read keeps its running version; a policy is removed only when
    /// its file is gone (`NotFound`). Removals come first and new versions are checked for
    /// conflicts only then, against what runs after every other change of this reload: a
    /// policy moved from one file to another, or a fleet moved off the ports a new one
    /// takes, is one reload, not a refusal.
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
        // Valid new versions, in path order, checked for conflicts once removals are done.
        let mut candidates: Vec<(PathBuf, String, Loaded)> = Vec::new();
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
                    self.refused.remove(&path);
                    self.reject_once(&mut changes, path.clone(), vec![diagnostic]);
                    seen.push(path);
                    continue;
                }
                // Not text a policy can be (too large, not UTF-8).
                Ok(Err(diagnostics)) => {
                    self.refused.remove(&path);
                    self.reject_once(&mut changes, path.clone(), diagnostics);
                    seen.push(path);
                    continue;
                }
            };
            seen.push(path.clone());
            if self.files.get(&path).is_some_and(|current| current.text == text) {
                // Reverted to the running version: a later bad edit is news again.
                self.rejected.remove(&path);
                self.refused.remove(&path);
                continue;
            }
            if self.rejected.get(&path) == Some(&text) {
                continue;
            }
            // A refused version is valid: retried without parsing it again.
            let loaded = match self.refused.get(&path).filter(|r| r.text == text) {
                Some(refused) => refused.loaded.clone(),
                None => match load_policy_str_checked(&name, &text) {
                    Ok(loaded) => {
                        self.rejected.remove(&path);
                        loaded
                    }
                    Err(diagnostics) => {
                        changes.push(Change::Rejected(diagnostics));
                        self.refused.remove(&path);
                        self.rejected.insert(path, text);
                        continue;
                    }
                },
            };
            candidates.push((path, text, loaded));
        }
        self.rejected.retain(|path, _| seen.contains(path));
        self.refused.retain(|path, _| seen.contains(path));
        let gone: Vec<PathBuf> = self
            .files
            .keys()
            .filter(|path| !seen.contains(path) && is_gone(path))
            .cloned()
            .collect();
        for path in gone {
            if let Some(current) = self.files.remove(&path) {
                changes.push(Change::Removed(current.loaded.policy.name));
            }
        }
        self.admit(candidates, &mut changes);
        changes
    }

    /// Runs each candidate that conflicts with nothing running, and refuses the rest. Taken
    /// in passes until none is admitted: a candidate may be free only once another file's
    /// new version (later in path order) moved off its target.
    fn admit(&mut self, mut pending: Vec<(PathBuf, String, Loaded)>, changes: &mut Vec<Change>) {
        loop {
            let before = pending.len();
            let mut waiting = Vec::new();
            for (path, text, loaded) in pending {
                if self.conflict(&path, &loaded).is_some() {
                    waiting.push((path, text, loaded));
                    continue;
                }
                self.refused.remove(&path);
                let policy = loaded.policy.clone();
                let previous = self.files.insert(path, Current { text, loaded });
                match previous {
                    Some(old) if old.loaded.policy.name != policy.name => {
                        changes.push(Change::Removed(old.loaded.policy.name));
                        changes.push(Change::Added(policy));
                    }
                    Some(_) => changes.push(Change::Replaced(policy)),
                    None => changes.push(Change::Added(policy)),
                }
            }
            pending = waiting;
            if pending.is_empty() || pending.len() == before {
                break;
            }
        }
        for (path, text, loaded) in pending {
            let Some((conflict, diagnostic)) = self.conflict(&path, &loaded) else { continue };
            let news = self.refused.get(&path).is_none_or(|r| {
                r.text != text || r.conflict != conflict || r.diagnostic != diagnostic
            });
            if news {
                changes.push(Change::Refused(conflict, diagnostic.clone()));
            }
            self.refused.insert(path, Refusal { text, loaded, conflict, diagnostic });
        }
    }

    /// Why `loaded` (the new version of `path`) may not run beside the policies of the other
    /// files: the first running policy it conflicts with.
    fn conflict(&self, path: &Path, loaded: &Loaded) -> Option<(Conflict, Diagnostic)> {
        self.files.iter().filter(|(other, _)| other.as_path() != path).find_map(
            |(other, current)| {
                if current.loaded.policy.name == loaded.policy.name {
                    let message = format!(
                        "policy `{}` is already defined in {}",
                        loaded.policy.name,
                        other.display()
                    );
                    let diagnostic = Diagnostic::whole_file(&loaded.file, &message);
                    return Some((Conflict::DuplicateName, diagnostic));
                }
                refusal(&current.loaded, loaded).map(|diagnostic| (Conflict::Overlap, diagnostic))
            },
        )
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
}

/// Whether `path` is positively gone: `stat` says `NotFound` (a dangling symlink too, as
/// when a ConfigMap drops a key). Any other answer keeps the policy running.
fn is_gone(path: &Path) -> bool {
    std::fs::metadata(path).is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A policy on an endpoint of its own (`NAME:6379`): policies of different names never
    /// overlap.
    fn policy_text(name: &str, max: u16) -> String {
        on_endpoint(name, &format!("{name}:6379"), max)
    }

    fn on_endpoint(name: &str, endpoint: &str, max: u16) -> String {
        format!(
            "apiVersion: autopilot.redis.io/v1alpha1\nkind: RedisPolicy\nmetadata: {{name: {name}}}\n\
             spec:\n  target: {{endpoints: ['{endpoint}']}}\n  scaling:\n    minReplicas: 1\n    \
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
                Change::Refused(conflict, d) => format!("x{}: {d}", conflict.label()),
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

    #[test]
    fn overlapping_policies_fail_the_start_naming_both_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.yaml"), on_endpoint("a", "10.0.0.1:6379", 3)).unwrap();
        std::fs::write(dir.path().join("b.yaml"), on_endpoint("b", "10.0.0.1:6379", 3)).unwrap();
        let errors = PolicySet::load(dir.path()).unwrap_err();
        let [error] = errors.as_slice() else { panic!("{errors:?}") };
        let text = error.to_string();
        let (a, b) = (dir.path().join("a.yaml"), dir.path().join("b.yaml"));
        assert!(text.starts_with(&format!("{}:5:", b.display())), "at b's target: {text}");
        assert!(text.contains(&format!("overlaps policy `a` ({})", a.display())), "{text}");
        assert!(text.contains("endpoint `10.0.0.1:6379`"), "{text}");
    }

    #[test]
    fn an_overlapping_policy_is_refused_until_the_overlap_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.yaml"), on_endpoint("a", "10.0.0.1:6379", 3)).unwrap();
        let mut set = PolicySet::load(dir.path()).unwrap();
        assert_eq!(set.rejected_counts(), RejectedCounts::default());

        // A new file on a's endpoint: refused, a untouched, reported once.
        std::fs::write(dir.path().join("b.yaml"), on_endpoint("b", "10.0.0.1:6379", 5)).unwrap();
        let changes = names(&set.reload());
        let [refused] = changes.as_slice() else { panic!("{changes:?}") };
        assert!(refused.starts_with("xoverlap: "), "{refused}");
        assert!(refused.contains("b.yaml") && refused.contains("a.yaml"), "{refused}");
        assert_eq!(running(&set), ["a"]);
        assert_eq!(set.rejected_counts().overlap, 1);
        assert!(set.reload().is_empty(), "a lasting overlap is reported once");

        // Moved off a's endpoint: it loads on the next reload.
        std::fs::write(dir.path().join("b.yaml"), on_endpoint("b", "10.0.0.2:6379", 5)).unwrap();
        assert_eq!(names(&set.reload()), ["+b"]);
        assert_eq!(set.rejected_counts(), RejectedCounts::default());

        // An edit of running b onto a's endpoint: refused, b's old version keeps running.
        std::fs::write(dir.path().join("b.yaml"), on_endpoint("b", "10.0.0.1:6379", 7)).unwrap();
        assert!(matches!(set.reload().as_slice(), [Change::Refused(Conflict::Overlap, _)]));
        let b = set.policies().find(|p| p.name == "b").unwrap();
        assert_eq!(b.scaling.as_ref().unwrap().max_replicas, 5, "b's old version runs");
        // a goes: b's new version takes its place in the same reload.
        std::fs::remove_file(dir.path().join("a.yaml")).unwrap();
        assert_eq!(names(&set.reload()), ["-a", "~b"]);
        let b = set.policies().find(|p| p.name == "b").unwrap();
        assert_eq!(b.scaling.as_ref().unwrap().max_replicas, 7);
        assert_eq!(set.rejected_counts(), RejectedCounts::default());
    }

    #[test]
    fn a_policy_may_move_to_another_file_or_off_a_target_in_one_reload() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("b.yaml"), on_endpoint("b", "10.0.0.1:6379", 3)).unwrap();
        let mut set = PolicySet::load(dir.path()).unwrap();
        // Renamed b.yaml -> c.yaml: the old file's removal comes first, so no conflict.
        std::fs::rename(dir.path().join("b.yaml"), dir.path().join("c.yaml")).unwrap();
        assert_eq!(names(&set.reload()), ["-b", "+b"]);
        // a (earlier in path order) takes the endpoint c moves off in the same reload.
        std::fs::write(dir.path().join("a.yaml"), on_endpoint("a", "10.0.0.1:6379", 3)).unwrap();
        std::fs::write(dir.path().join("c.yaml"), on_endpoint("b", "10.0.0.2:6379", 3)).unwrap();
        assert_eq!(names(&set.reload()), ["~b", "+a"]);
        assert_eq!(set.rejected_counts(), RejectedCounts::default());
    }

    #[test]
    fn a_duplicate_name_on_reload_is_refused_once_and_loads_when_the_other_goes() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.yaml"), on_endpoint("a", "10.0.0.1:6379", 3)).unwrap();
        let mut set = PolicySet::load(dir.path()).unwrap();
        std::fs::write(dir.path().join("b.yaml"), on_endpoint("a", "10.0.0.2:6379", 3)).unwrap();
        let changes = names(&set.reload());
        assert!(changes.len() == 1 && changes[0].contains("already defined in"), "{changes:?}");
        assert!(set.reload().is_empty(), "reported once, not on every poll");
        assert_eq!(set.rejected_counts().duplicate_name, 1);
        std::fs::remove_file(dir.path().join("a.yaml")).unwrap();
        assert_eq!(names(&set.reload()), ["-a", "+a"]);
        assert_eq!(
            set.policies().next().unwrap().target,
            crate::policy::Target::Endpoints(vec![crate::model::Endpoint {
                id: "10.0.0.2:6379".into(),
                host: "10.0.0.2".into(),
                port: 6379
            }])
        );
    }
}
