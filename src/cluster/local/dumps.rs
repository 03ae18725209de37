//! What a local fleet keeps across a restart of the whole fleet, and what it refuses to load.
//!
//! Instances run without persistence (`--save ""`), yet files named `dump.rdb` appear: a
//! replica writes the RDB of every full sync to its directory before loading it, and a master
//! writes one on [`super::LocalFleet::shutdown`]. A replica's file is a copy of the data as it
//! was at its last full sync, possibly hours old. Loaded on a restart it would be served as if
//! current (stale reads), and promoted it would roll the data back. So:
//!
//! - **Every start sets `dump.rdb` aside** (`dump.rdb.stale`, the last one kept for a human)
//!   and the instance starts empty and resyncs from the master, except for the one start
//!   below.
//! - **A clean shutdown** stops the replicas, then the master with `SHUTDOWN SAVE`, and
//!   records in `dataDir/saved.json` which instance saved which file at which epoch. On the
//!   next start of a fleet with no instance running, that master starts from that file (and
//!   the daemon promotes it again at the same epoch); the record is consumed before it starts,
//!   and written back if it fails to start (the file was never loaded), while the others wait
//!   for it so the next attempt is a cold start again.
//! - **After an unclean stop** (every process killed) the newest `dump.rdb` of any instance is
//!   the freshest state left: it is moved to the recorded master's directory and restored
//!   there, and the daemon logs how old it is, every write acknowledged after it being lost;
//!   with no file at all, it logs that everything the fleet held is lost.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use super::state::{sync_dir, write_atomically};
use crate::cluster::ClusterError;
use crate::observe::InstanceId;

const DUMP: &str = "dump.rdb";
const SET_ASIDE: &str = "dump.rdb.stale";
/// In `dataDir`: the dump a clean shutdown saved.
const SAVED: &str = "saved.json";

/// One `dump.rdb` on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Dump {
    pub path: PathBuf,
    pub bytes: u64,
    pub modified: SystemTime,
}

impl Dump {
    /// `dir/dump.rdb`, if there is one.
    pub fn find(dir: &Path) -> Option<Self> {
        let path = dir.join(DUMP);
        let metadata = std::fs::metadata(&path).ok().filter(std::fs::Metadata::is_file)?;
        Some(Self { bytes: metadata.len(), modified: metadata.modified().ok()?, path })
    }

    /// `written 2026-12-02T21:40:00Z (80s ago), 1234 bytes`
    pub fn describe(&self) -> String {
        let at = chrono::DateTime::<chrono::Utc>::from(self.modified)
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let age = SystemTime::now().duration_since(self.modified).unwrap_or_default();
        let age = humantime::format_duration(Duration::from_secs(age.as_secs()));
        format!("written {at} ({age} ago), {} bytes", self.bytes)
    }

    fn modified_nanos(&self) -> u128 {
        self.modified.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_nanos()
    }
}

/// `dataDir/saved.json`: the master a clean shutdown saved, and the file it wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Saved {
    pub instance: InstanceId,
    pub epoch: u64,
    pub ordinal: u16,
    pub bytes: u64,
    /// The file's modification time in nanoseconds since the epoch, as a string (JSON numbers
    /// lose precision past 2^53): a file changed since is not the one saved.
    pub modified_nanos: String,
}

impl Saved {
    pub fn new(instance: InstanceId, epoch: u64, ordinal: u16, dump: &Dump) -> Self {
        Self {
            instance,
            epoch,
            ordinal,
            bytes: dump.bytes,
            modified_nanos: dump.modified_nanos().to_string(),
        }
    }

    fn matches(&self, dump: &Dump) -> bool {
        self.bytes == dump.bytes && self.modified_nanos == dump.modified_nanos().to_string()
    }
}

pub(super) fn write_saved(data_dir: &Path, saved: &Saved) -> Result<(), ClusterError> {
    let path = data_dir.join(SAVED);
    let json = serde_json::to_vec_pretty(saved)
        .map_err(|source| ClusterError::StateCorrupt { path: path.clone(), source })?;
    write_atomically(&path, &json)
}

/// Reads and removes `dataDir/saved.json`: it vouches for one start only, since the dump it
/// names is stale as soon as the instance loaded it and took a write. A file that cannot be
/// parsed vouches for nothing.
fn take_saved(data_dir: &Path) -> Result<Option<Saved>, ClusterError> {
    let path = data_dir.join(SAVED);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(ClusterError::StateIo { action: "read", path, source }),
    };
    std::fs::remove_file(&path).map_err(|source| ClusterError::StateIo {
        action: "remove",
        path: path.clone(),
        source,
    })?;
    sync_dir(&path)?;
    match serde_json::from_slice(&bytes) {
        Ok(saved) => Ok(Some(saved)),
        Err(error) => {
            tracing::warn!(path = %path.display(), %error, "ignoring an unreadable record of a clean shutdown");
            Ok(None)
        }
    }
}

/// Moves `dir/dump.rdb` aside so the instance starts empty; returns what was moved.
pub(super) fn set_aside(dir: &Path) -> Result<Option<Dump>, ClusterError> {
    let Some(dump) = Dump::find(dir) else { return Ok(None) };
    let to = dir.join(SET_ASIDE);
    std::fs::rename(&dump.path, &to).map_err(|source| ClusterError::StateIo {
        action: "set aside",
        path: dump.path.clone(),
        source,
    })?;
    Ok(Some(dump))
}

/// What a fleet starting with no instance running restores.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum ColdStart {
    /// The clean shutdown's save: `ordinal` (the recorded master) starts from it. `record`
    /// is what `saved.json` said, consumed: written back ([`write_saved`]) if that start
    /// fails, since the file was then never loaded and still vouches.
    Saved { ordinal: u16, dump: Dump, record: Saved },
    /// No clean shutdown: `dump`, the newest file of any instance (`from`), now in the
    /// recorded master's directory; every write acknowledged after it was written is lost.
    Freshest { ordinal: u16, from: u16, dump: Dump },
    /// No clean shutdown and no file: everything the fleet held is lost.
    Nothing,
    /// No master was ever recorded: the fleet never accepted a write.
    New,
}

impl ColdStart {
    /// The ordinal that keeps its `dump.rdb` on its next start.
    pub fn keeps(&self) -> Option<u16> {
        match self {
            ColdStart::Saved { ordinal, .. } | ColdStart::Freshest { ordinal, .. } => {
                Some(*ordinal)
            }
            ColdStart::Nothing | ColdStart::New => None,
        }
    }
}

/// Decides, before any instance of a stopped fleet starts, what it restores, and moves the
/// file into place. `dirs` are the instances' directories by ordinal; `master` is the
/// recorded master (its id and ordinal) and its epoch.
pub(super) fn prepare(
    data_dir: &Path,
    dirs: &[(u16, PathBuf)],
    master: Option<(&str, u16, u64)>,
) -> Result<ColdStart, ClusterError> {
    let saved = take_saved(data_dir)?;
    let Some((id, ordinal, epoch)) = master else { return Ok(ColdStart::New) };
    let master_dir = data_dir.join(ordinal.to_string());
    if let Some(saved) = saved {
        let dump = Dump::find(&master_dir);
        match dump {
            Some(dump)
                if saved.instance == id
                    && saved.epoch == epoch
                    && saved.ordinal == ordinal
                    && saved.matches(&dump) =>
            {
                return Ok(ColdStart::Saved { ordinal, dump, record: saved });
            }
            _ => tracing::warn!(
                saved = %saved.instance,
                saved_epoch = saved.epoch,
                master = %id,
                epoch,
                "the clean shutdown's save does not match the recorded master or its file changed: restoring the freshest file instead"
            ),
        }
    }
    let freshest = dirs
        .iter()
        .filter_map(|(o, dir)| Dump::find(dir).map(|dump| (*o, dump)))
        .max_by_key(|(_, dump)| dump.modified);
    let Some((from, dump)) = freshest else { return Ok(ColdStart::Nothing) };
    if from == ordinal {
        return Ok(ColdStart::Freshest { ordinal, from, dump });
    }
    std::fs::create_dir_all(&master_dir).map_err(|source| ClusterError::StateIo {
        action: "create",
        path: master_dir.clone(),
        source,
    })?;
    set_aside(&master_dir)?;
    let to = master_dir.join(DUMP);
    std::fs::rename(&dump.path, &to).map_err(|source| ClusterError::StateIo {
        action: "move",
        path: dump.path.clone(),
        source,
    })?;
    sync_dir(&to)?;
    Ok(ColdStart::Freshest { ordinal, from, dump: Dump { path: to, ..dump } })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dirs(data: &Path, count: u16) -> Vec<(u16, PathBuf)> {
        (0..count)
            .map(|o| {
                let dir = data.join(o.to_string());
                std::fs::create_dir_all(&dir).unwrap();
                (o, dir)
            })
            .collect()
    }

    fn write_dump(dir: &Path, text: &str, age: Duration) {
        let path = dir.join(DUMP);
        std::fs::write(&path, text).unwrap();
        let file = std::fs::File::options().write(true).open(&path).unwrap();
        file.set_modified(SystemTime::now() - age).unwrap();
    }

    #[test]
    fn after_an_unclean_stop_the_newest_file_moves_to_the_master() {
        let data = tempfile::tempdir().unwrap();
        let dirs = dirs(data.path(), 3);
        write_dump(&dirs[0].1, "oldest", Duration::from_secs(300));
        write_dump(&dirs[1].1, "newest", Duration::from_secs(10));
        write_dump(&dirs[2].1, "older", Duration::from_secs(80));
        let start = prepare(data.path(), &dirs, Some(("127.0.0.1:7000", 0, 3))).unwrap();
        let ColdStart::Freshest { ordinal: 0, from: 1, dump } = &start else { panic!("{start:?}") };
        assert_eq!(dump.bytes, 6);
        assert_eq!(std::fs::read_to_string(dirs[0].1.join(DUMP)).unwrap(), "newest");
        assert_eq!(std::fs::read_to_string(dirs[0].1.join(SET_ASIDE)).unwrap(), "oldest");
        assert!(!dirs[1].1.join(DUMP).exists());
        assert_eq!(start.keeps(), Some(0));
    }

    #[test]
    fn a_clean_shutdowns_save_is_kept_once_and_only_if_unchanged() {
        let data = tempfile::tempdir().unwrap();
        let dirs = dirs(data.path(), 2);
        write_dump(&dirs[1].1, "saved by the master", Duration::from_secs(5));
        // A replica's older file is not a candidate while the save vouches for the master's.
        write_dump(&dirs[0].1, "a replica's", Duration::from_secs(1));
        let dump = Dump::find(&dirs[1].1).unwrap();
        let master = Some(("127.0.0.1:7001", 1, 4));
        let record = Saved::new("127.0.0.1:7001".into(), 4, 1, &dump);
        write_saved(data.path(), &record).unwrap();
        let start = prepare(data.path(), &dirs, master).unwrap();
        assert_eq!(start, ColdStart::Saved { ordinal: 1, dump, record });
        assert!(!data.path().join(SAVED).exists(), "the record vouches for one start only");

        // Recorded at another epoch (a failover happened since): the freshest file wins.
        let dump = Dump::find(&dirs[1].1).unwrap();
        write_saved(data.path(), &Saved::new("127.0.0.1:7001".into(), 3, 1, &dump)).unwrap();
        let start = prepare(data.path(), &dirs, master).unwrap();
        assert!(matches!(start, ColdStart::Freshest { ordinal: 1, from: 0, .. }), "{start:?}");
    }

    #[test]
    fn nothing_to_restore_is_said_and_a_new_fleet_restores_nothing() {
        let data = tempfile::tempdir().unwrap();
        let dirs = dirs(data.path(), 2);
        let master = Some(("127.0.0.1:7000", 0, 1));
        assert_eq!(prepare(data.path(), &dirs, master).unwrap(), ColdStart::Nothing);
        write_dump(&dirs[1].1, "x", Duration::ZERO);
        assert_eq!(prepare(data.path(), &dirs, None).unwrap(), ColdStart::New);
        assert_eq!(set_aside(&dirs[1].1).unwrap().map(|d| d.bytes), Some(1));
        assert!(Dump::find(&dirs[1].1).is_none());
    }
}
