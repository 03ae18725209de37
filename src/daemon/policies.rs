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

/// Where policies come from: a directory of files ([`Directory`]), or the RedisPolicy
/// objects of the API server ([`super::resources::Resources`]). Each policy text has a key
/// (its path, or `redispolicy NS/NAME`) that names it in every diagnostic.
pub trait PolicySource: Send {
    /// Every policy text now, by key, or why the source cannot be listed (nothing is then
    /// removed: a failed read is not a deletion).
    fn list(&mut self) -> Result<Vec<(String, Read)>, Vec<Diagnostic>>;
    /// Whether `key`, missing from a listing, is positively gone rather than unlisted for a
    /// moment.
    fn is_gone(&self, key: &str) -> bool;
    /// Loads one text. Files keep their positions; a resource's text is ours, so its
    /// problems name fields only.
    fn load(&self, key: &str, text: &str) -> Result<Loaded, Vec<Diagnostic>> {
        load_policy_str_checked(key, text)
    }
    /// The same, for a problem found beside the loader (a conflict).
    fn present(&self, diagnostic: Diagnostic) -> Diagnostic {
        diagnostic
    }
    /// Whether a problem found when the daemon starts fails the start. A policy directory is
    /// the operator's own deployment, checked before it ships; resources are anyone's, and
    /// one invalid object must not keep the daemon from running the others.
    fn fatal_at_start(&self) -> bool;
    /// The problem of a source with nothing in it when the daemon starts, if that is one.
    fn empty_at_start(&self) -> Option<Diagnostic> {
        None
    }
}

/// One listed entry of a source.
#[derive(Debug, Clone, PartialEq)]
pub enum Read {
    Text(String),
    /// Gone between the listing and the read: the next check for gone keys removes it.
    Vanished,
    /// There, but no policy text can be had from it now (cannot be read, too large, not
    /// UTF-8): its running version stays.
    Unreadable(Vec<Diagnostic>),
}

/// A directory of policy files (`run --policies`), or a single file.
#[derive(Debug)]
pub struct Directory {
    path: PathBuf,
}

impl Directory {
    pub fn new(path: &Path) -> Self {
        Self { path: path.to_owned() }
    }
}

impl PolicySource for Directory {
    fn list(&mut self) -> Result<Vec<(String, Read)>, Vec<Diagnostic>> {
        let paths = list_policy_files(&self.path)?;
        Ok(paths
            .into_iter()
            .map(|path| {
                let name = path.display().to_string();
                let read = match read_policy_text(&path) {
                    Ok(Ok(text)) => Read::Text(text),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Read::Vanished,
                    // Unreadable now (too many open files, permissions).
                    Err(e) => Read::Unreadable(vec![Diagnostic::whole_file(
                        &name,
                        &format!("cannot read: {e}"),
                    )]),
                    // Not text a policy can be (too large, not UTF-8).
                    Ok(Err(diagnostics)) => Read::Unreadable(diagnostics),
                };
                (name, read)
            })
            .collect())
    }

    /// `stat` says `NotFound` (a dangling symlink too, as when a ConfigMap drops a key). Any
    /// other answer keeps the policy running.
    fn is_gone(&self, key: &str) -> bool {
        std::fs::metadata(key).is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound)
    }

    fn fatal_at_start(&self) -> bool {
        true
    }

    fn empty_at_start(&self) -> Option<Diagnostic> {
        // A typo in `--policies` should fail the start, not run a daemon with nothing.
        let name = self.path.display().to_string();
        Some(Diagnostic::whole_file(&name, "no *.yaml or *.yml files in this directory"))
    }
}

/// What a reload changed, one entry per affected policy text.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    Added(Policy),
    /// The text changed and still validates: the new version replaces the old.
    Replaced(Policy),
    /// The text is gone (or renamed its policy): stop this one.
    Removed(String),
    /// The text changed but does not validate: the old version (if any) keeps running.
    Rejected {
        key: String,
        diagnostics: Vec<Diagnostic>,
    },
    /// The text validates but conflicts with a running policy (its target overlaps, or it
    /// defines the same name): not run; the running one and this text's old version (if
    /// any) keep running. Reported once per conflict, retried on every reload.
    Refused {
        key: String,
        conflict: Conflict,
        diagnostic: Diagnostic,
    },
    /// A source could not be listed: nothing of it changed, every policy of it stays.
    /// Reported once until a listing succeeds again.
    Unreadable(Vec<Diagnostic>),
}

/// Why a valid policy was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conflict {
    /// Its target overlaps a running policy's ([`crate::policy::overlap`]).
    Overlap,
    /// Another text already defines a policy of its name.
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

/// How many policy texts are not running their current content, and why.
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
    /// The index of its source.
    source: usize,
}

/// A valid text's version that is not running because it conflicts.
#[derive(Debug, Clone)]
struct Refusal {
    text: String,
    loaded: Loaded,
    conflict: Conflict,
    diagnostic: Diagnostic,
}

/// The policies running now, by key.
#[derive(Default)]
pub struct PolicySet {
    sources: Vec<Box<dyn PolicySource>>,
    running: BTreeMap<String, Current>,
    /// The text of each key whose last version did not validate, and why: it is reported
    /// once, not again on every poll until the text changes.
    rejected: BTreeMap<String, (String, Vec<Diagnostic>)>,
    /// Each key whose last version validates but conflicts with a running policy. Unlike a
    /// rejected text it is checked again on every reload (the other side may have moved);
    /// it is reported again only when the conflict says something new.
    refused: BTreeMap<String, Refusal>,
    /// The last listing failure reported, per source, so a lasting one is not reported on
    /// every poll.
    unreadable: BTreeMap<usize, Vec<Diagnostic>>,
    /// The source that last listed each key.
    origin: BTreeMap<String, usize>,
}

impl std::fmt::Debug for PolicySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicySet").field("running", &self.running.keys()).finish()
    }
}

impl PolicySet {
    /// Loads every policy of `sources`. A problem of a source that is [`fatal_at_start`]
    /// fails the start, with every diagnostic: an invalid file, and two files on one target
    /// or of one policy name (the later file, in sorted order, names the earlier one). The
    /// problems of the other sources are returned as changes, for the caller to report.
    ///
    /// [`fatal_at_start`]: PolicySource::fatal_at_start
    pub fn load(
        sources: Vec<Box<dyn PolicySource>>,
    ) -> Result<(Self, Vec<Change>), Vec<Diagnostic>> {
        let mut set = Self { sources, ..Self::default() };
        let mut fatal = Vec::new();
        let mut reported = Vec::new();
        for change in set.reload() {
            let (key, diagnostics) = match &change {
                Change::Rejected { key, diagnostics } => (Some(key), diagnostics.clone()),
                Change::Refused { key, diagnostic, .. } => (Some(key), vec![diagnostic.clone()]),
                Change::Unreadable(diagnostics) => (None, diagnostics.clone()),
                Change::Added(_) | Change::Replaced(_) | Change::Removed(_) => continue,
            };
            let source_fatal = match key {
                Some(key) => set.origin.get(key).is_none_or(|i| set.sources[*i].fatal_at_start()),
                // Which source failed to list: the one whose failure is remembered.
                None => set
                    .unreadable
                    .iter()
                    .any(|(i, d)| *d == diagnostics && set.sources[*i].fatal_at_start()),
            };
            if source_fatal {
                fatal.extend(diagnostics);
            } else {
                reported.push(change);
            }
        }
        for (index, source) in set.sources.iter().enumerate() {
            if !set.origin.values().any(|origin| *origin == index)
                && !set.unreadable.contains_key(&index)
                && let Some(empty) = source.empty_at_start()
            {
                fatal.push(empty);
            }
        }
        if !fatal.is_empty() {
            return Err(fatal);
        }
        Ok((set, reported))
    }

    pub fn policies(&self) -> impl Iterator<Item = &Policy> {
        self.running.values().map(|current| &current.loaded.policy)
    }

    /// The key of the text the running policy `name` comes from.
    pub fn key_of(&self, name: &str) -> Option<&str> {
        self.running
            .iter()
            .find(|(_, current)| current.loaded.policy.name == name)
            .map(|(key, _)| key.as_str())
    }

    /// The policy texts whose current content is not running, by reason (for a gauge: a
    /// refused or rejected edit leaves the old version running, which nothing else would
    /// show).
    pub fn rejected_counts(&self) -> RejectedCounts {
        let count = |conflict| self.refused.values().filter(|r| r.conflict == conflict).count();
        RejectedCounts {
            invalid: self.rejected.len(),
            overlap: count(Conflict::Overlap),
            duplicate_name: count(Conflict::DuplicateName),
        }
    }

    /// Why the current text of `key` is not running, if it is not: it does not validate
    /// (`None`), or it conflicts with a running policy.
    pub fn problem(&self, key: &str) -> Option<(Option<Conflict>, Vec<Diagnostic>)> {
        if let Some((_, diagnostics)) = self.rejected.get(key) {
            return Some((None, diagnostics.clone()));
        }
        self.refused.get(key).map(|r| (Some(r.conflict), vec![r.diagnostic.clone()]))
    }

    /// Lists every source again and applies what changed. A failed listing changes nothing
    /// of its source; a text that cannot be read keeps its running version; a policy is
    /// removed only when its text is positively gone. Removals come first and new versions
    /// are checked for conflicts only then, against what runs after every other change of
    /// this reload: a policy moved from one file to another, or a fleet moved off the ports
    /// a new one takes, is one reload, not a refusal.
    pub fn reload(&mut self) -> Vec<Change> {
        let mut changes = Vec::new();
        let mut seen: Vec<String> = Vec::new();
        let mut failed: Vec<usize> = Vec::new();
        // Valid new versions, in key order, checked for conflicts once removals are done.
        let mut candidates: Vec<(String, usize, String, Loaded)> = Vec::new();
        for index in 0..self.sources.len() {
            let entries = match self.sources[index].list() {
                Ok(entries) => {
                    self.unreadable.remove(&index);
                    entries
                }
                Err(diagnostics) => {
                    failed.push(index);
                    if self.unreadable.get(&index) != Some(&diagnostics) {
                        self.unreadable.insert(index, diagnostics.clone());
                        changes.push(Change::Unreadable(diagnostics));
                    }
                    continue;
                }
            };
            for (key, read) in entries {
                self.origin.insert(key.clone(), index);
                let text = match read {
                    Read::Text(text) => text,
                    // Deleted since the listing: the check for gone keys below removes it.
                    Read::Vanished => continue,
                    Read::Unreadable(diagnostics) => {
                        self.refused.remove(&key);
                        self.reject_once(&mut changes, key.clone(), diagnostics);
                        seen.push(key);
                        continue;
                    }
                };
                seen.push(key.clone());
                if self.running.get(&key).is_some_and(|current| current.text == text) {
                    // Reverted to the running version: a later bad edit is news again.
                    self.rejected.remove(&key);
                    self.refused.remove(&key);
                    continue;
                }
                if self.rejected.get(&key).is_some_and(|(rejected, _)| *rejected == text) {
                    continue;
                }
                // A refused version is valid: retried without parsing it again.
                let loaded = match self.refused.get(&key).filter(|r| r.text == text) {
                    Some(refused) => refused.loaded.clone(),
                    None => match self.sources[index].load(&key, &text) {
                        Ok(loaded) => {
                            self.rejected.remove(&key);
                            loaded
                        }
                        Err(diagnostics) => {
                            let rejected = Change::Rejected {
                                key: key.clone(),
                                diagnostics: diagnostics.clone(),
                            };
                            changes.push(rejected);
                            self.refused.remove(&key);
                            self.rejected.insert(key, (text, diagnostics));
                            continue;
                        }
                    },
                };
                candidates.push((key, index, text, loaded));
            }
        }
        // Every text of a source that could not be listed stays as it is.
        let kept = |key: &String, set: &Self| {
            seen.contains(key)
                || set.running.get(key).is_some_and(|current| failed.contains(&current.source))
        };
        let rejected = std::mem::take(&mut self.rejected);
        self.rejected = rejected.into_iter().filter(|(key, _)| kept(key, self)).collect();
        let refused = std::mem::take(&mut self.refused);
        self.refused = refused.into_iter().filter(|(key, _)| kept(key, self)).collect();
        let origin = std::mem::take(&mut self.origin);
        self.origin = origin
            .into_iter()
            .filter(|(key, index)| seen.contains(key) || failed.contains(index))
            .collect();
        let gone: Vec<String> = self
            .running
            .iter()
            .filter(|(key, current)| !kept(key, self) && self.sources[current.source].is_gone(key))
            .map(|(key, _)| key.clone())
            .collect();
        for key in gone {
            if let Some(current) = self.running.remove(&key) {
                changes.push(Change::Removed(current.loaded.policy.name));
            }
        }
        self.admit(candidates, &mut changes);
        changes
    }

    /// Runs each candidate that conflicts with nothing running, and refuses the rest. Taken
    /// in passes until none is admitted: a candidate may be free only once another text's
    /// new version (later in key order) moved off its target.
    fn admit(
        &mut self,
        mut pending: Vec<(String, usize, String, Loaded)>,
        changes: &mut Vec<Change>,
    ) {
        loop {
            let before = pending.len();
            let mut waiting = Vec::new();
            for (key, source, text, loaded) in pending {
                if self.conflict(&key, &loaded).is_some() {
                    waiting.push((key, source, text, loaded));
                    continue;
                }
                self.refused.remove(&key);
                let policy = loaded.policy.clone();
                let previous = self.running.insert(key, Current { text, loaded, source });
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
        for (key, source, text, loaded) in pending {
            let Some((conflict, diagnostic)) = self.conflict(&key, &loaded) else { continue };
            let diagnostic = self.sources[source].present(diagnostic);
            let news = self.refused.get(&key).is_none_or(|r| {
                r.text != text || r.conflict != conflict || r.diagnostic != diagnostic
            });
            if news {
                let refused =
                    Change::Refused { key: key.clone(), conflict, diagnostic: diagnostic.clone() };
                changes.push(refused);
            }
            self.refused.insert(key, Refusal { text, loaded, conflict, diagnostic });
        }
    }

    /// Why `loaded` (the new version of `key`) may not run beside the policies of the other
    /// texts: the first running policy it conflicts with.
    fn conflict(&self, key: &str, loaded: &Loaded) -> Option<(Conflict, Diagnostic)> {
        self.running.iter().filter(|(other, _)| other.as_str() != key).find_map(
            |(other, current)| {
                if current.loaded.policy.name == loaded.policy.name {
                    let message =
                        format!("policy `{}` is already defined in {other}", loaded.policy.name,);
                    let diagnostic = Diagnostic::whole_file(&loaded.file, &message);
                    return Some((Conflict::DuplicateName, diagnostic));
                }
                refusal(&current.loaded, loaded).map(|diagnostic| (Conflict::Overlap, diagnostic))
            },
        )
    }

    /// Reports a problem with a text that has no content to remember (it could not be read,
    /// or is no policy text): remembered by its diagnostics instead, so it is reported once.
    fn reject_once(
        &mut self,
        changes: &mut Vec<Change>,
        key: String,
        diagnostics: Vec<Diagnostic>,
    ) {
        let marker: String = diagnostics.iter().map(|d| format!("{d}\n")).collect();
        if self.rejected.get(&key).is_none_or(|(rejected, _)| *rejected != marker) {
            let rejected = Change::Rejected { key: key.clone(), diagnostics: diagnostics.clone() };
            changes.push(rejected);
            self.rejected.insert(key, (marker, diagnostics));
        }
    }
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

    fn load_dir(dir: &Path) -> Result<PolicySet, Vec<Diagnostic>> {
        let (set, reported) = PolicySet::load(vec![Box::new(Directory::new(dir))])?;
        assert!(reported.is_empty(), "a directory's problems fail the start: {reported:?}");
        Ok(set)
    }

    fn names(changes: &[Change]) -> Vec<String> {
        changes
            .iter()
            .map(|c| match c {
                Change::Added(p) => format!("+{}", p.name),
                Change::Replaced(p) => format!("~{}", p.name),
                Change::Removed(name) => format!("-{name}"),
                Change::Rejected { diagnostics, .. } => format!("!{}", diagnostics[0]),
                Change::Refused { conflict, diagnostic, .. } => {
                    format!("x{}: {diagnostic}", conflict.label())
                }
                Change::Unreadable(d) => format!("?{}", d[0]),
            })
            .collect()
    }

    #[test]
    fn reload_reports_additions_replacements_and_removals() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.yaml"), policy_text("a", 3)).unwrap();
        let mut set = load_dir(dir.path()).unwrap();
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
        let mut set = load_dir(dir.path()).unwrap();
        std::fs::write(&file, policy_text("a", 3).replace("maxReplicas: 3", "maxReplicas: 0"))
            .unwrap();
        let changes = set.reload();
        assert_eq!(changes.len(), 1);
        let Change::Rejected { diagnostics, .. } = &changes[0] else { panic!("{changes:?}") };
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
        assert!(matches!(set.reload().as_slice(), [Change::Rejected { .. }]));
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
        let mut set = load_dir(&dir).unwrap();
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
        let mut set = load_dir(dir.path()).unwrap();
        // A path that is there but no readable file: not listed, yet not gone either.
        std::fs::remove_file(&file).unwrap();
        std::fs::create_dir(&file).unwrap();
        assert!(set.reload().is_empty(), "{:?}", set.reload());
        assert_eq!(running(&set), ["a"]);
        std::fs::remove_dir(&file).unwrap();
        // Bytes that are no text: rejected once, the running version stays.
        std::fs::write(&file, b"\xff\xfe").unwrap();
        let changes = set.reload();
        assert!(matches!(changes.as_slice(), [Change::Rejected { .. }]), "{changes:?}");
        assert!(set.reload().is_empty());
        assert_eq!(running(&set), ["a"]);
    }

    #[test]
    fn a_huge_file_is_rejected_without_reading_it() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a.yaml");
        std::fs::write(&file, policy_text("a", 3)).unwrap();
        let mut set = load_dir(dir.path()).unwrap();
        // 2 GiB of holes: read whole, it would take 2 GiB of memory and seconds.
        let huge = std::fs::File::create(&file).unwrap();
        huge.set_len(2 << 30).unwrap();
        let changes = set.reload();
        let [Change::Rejected { diagnostics, .. }] = changes.as_slice() else {
            panic!("{changes:?}")
        };
        assert!(diagnostics[0].to_string().contains("larger than 1024 KiB"), "{diagnostics:?}");
        assert_eq!(running(&set), ["a"]);
        assert!(set.reload().is_empty(), "reported once");
    }

    #[test]
    fn two_files_may_not_define_the_same_policy() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.yaml"), policy_text("a", 3)).unwrap();
        std::fs::write(dir.path().join("b.yaml"), policy_text("a", 3)).unwrap();
        let errors = load_dir(dir.path()).unwrap_err();
        assert!(errors[0].to_string().contains("already defined in"), "{errors:?}");
    }

    #[test]
    fn an_invalid_policy_at_start_fails_with_every_diagnostic() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.yaml"), "kind: Nope\n").unwrap();
        let errors = load_dir(dir.path()).unwrap_err();
        assert!(errors.len() > 1, "{errors:?}");
    }

    #[test]
    fn overlapping_policies_fail_the_start_naming_both_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.yaml"), on_endpoint("a", "10.0.0.1:6379", 3)).unwrap();
        std::fs::write(dir.path().join("b.yaml"), on_endpoint("b", "10.0.0.1:6379", 3)).unwrap();
        let errors = load_dir(dir.path()).unwrap_err();
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
        let mut set = load_dir(dir.path()).unwrap();
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
        assert!(matches!(
            set.reload().as_slice(),
            [Change::Refused { conflict: Conflict::Overlap, .. }]
        ));
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
        let mut set = load_dir(dir.path()).unwrap();
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
        let mut set = load_dir(dir.path()).unwrap();
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
