//! `dataDir/state.json`, the local fleet's durable record: the master, its epoch and the
//! requested number of instances, replaced atomically.

use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::cluster::{Claim, ClusterError, MasterRecord};
use crate::observe::InstanceId;

/// `dataDir/state.json`: what must survive a daemon restart.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct State {
    /// The recorded master's instance id, `null` until the health core chose the first.
    pub master: Option<InstanceId>,
    pub epoch: u64,
    /// Instances requested by the last [`crate::cluster::Cluster::scale`] that completed.
    pub replicas: u16,
    /// The claim of whoever last changed roles ([`crate::cluster::Claim`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claim: Option<Claim>,
}

impl State {
    pub fn record(&self) -> Option<MasterRecord> {
        MasterRecord::stored(self.master.as_ref(), self.epoch, self.claim.as_ref())
    }

    /// `127.0.0.1:7000 at epoch 3`, or `nothing (epoch 0)`.
    pub fn describe(&self) -> String {
        MasterRecord::describe(self.record().as_ref())
    }
}

/// The record in `dataDir/state.json` as it is now, for readers outside the fleet (the demo's
/// view); `None` before the first master is chosen.
pub async fn read_record(data_dir: &Path) -> Result<Option<MasterRecord>, ClusterError> {
    Ok(read_state_async(&data_dir.join("state.json")).await?.record())
}

/// Holds an exclusive lock on `dataDir/state.lock` while a record is read, checked and
/// written: the daemon and a `redis-autopilot failover` run by hand are two processes, and
/// the epoch rule only holds if neither writes between the other's read and write. A lock
/// file of its own, because `state.json` is replaced by rename.
pub(super) fn lock_state(path: &Path) -> Result<std::fs::File, ClusterError> {
    let lock = path.with_extension("lock");
    let io = |action: &'static str| {
        let path = lock.clone();
        move |source| ClusterError::StateIo { action, path, source }
    };
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock)
        .map_err(io("open"))?;
    file.lock().map_err(io("lock"))?;
    Ok(file)
}

/// Under [`lock_state`], reads the state, lets `change` edit it (`true`: write it back), and
/// replaces it atomically if so. Returns the state as it stands after. Blocking (a file lock
/// another process may hold, fsyncs): run it off the async workers.
pub(super) fn update_state(
    path: &Path,
    change: impl FnOnce(&mut State) -> Result<bool, ClusterError>,
) -> Result<State, ClusterError> {
    let _locked = lock_state(path)?;
    let mut state = read_state(path)?;
    if change(&mut state)? {
        write_state(path, &state)?;
    }
    Ok(state)
}

/// Reads the state file; a missing file is the empty state of a new fleet.
pub(super) fn read_state(path: &Path) -> Result<State, ClusterError> {
    match std::fs::read(path) {
        Ok(bytes) => parse_state(path, &bytes),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(State::default()),
        Err(source) => Err(ClusterError::StateIo { action: "read", path: path.to_owned(), source }),
    }
}

/// [`read_state`] off the async workers: the health probe reads the record several times a
/// second.
pub(super) async fn read_state_async(path: &Path) -> Result<State, ClusterError> {
    match tokio::fs::read(path).await {
        Ok(bytes) => parse_state(path, &bytes),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(State::default()),
        Err(source) => Err(ClusterError::StateIo { action: "read", path: path.to_owned(), source }),
    }
}

fn parse_state(path: &Path, bytes: &[u8]) -> Result<State, ClusterError> {
    serde_json::from_slice(bytes)
        .map_err(|source| ClusterError::StateCorrupt { path: path.to_owned(), source })
}

/// Replaces `path` atomically with `json`: a temp file is written and fsynced, renamed over
/// the old one, and the directory fsynced, so a crash at any point leaves either the old or
/// the new file on disk, never a torn one.
pub(super) fn write_atomically(path: &Path, json: &[u8]) -> Result<(), ClusterError> {
    let io = |action: &'static str, path: &Path| {
        let path = path.to_owned();
        move |source| ClusterError::StateIo { action, path, source }
    };
    let temp = path.with_extension("json.tmp");
    let mut file = std::fs::File::create(&temp).map_err(io("create", &temp))?;
    file.write_all(json).map_err(io("write", &temp))?;
    file.sync_all().map_err(io("fsync", &temp))?;
    drop(file);
    std::fs::rename(&temp, path).map_err(io("rename into place", path))?;
    sync_dir(path)
}

/// Makes a rename or removal in `path`'s directory durable.
pub(super) fn sync_dir(path: &Path) -> Result<(), ClusterError> {
    let Some(dir) = path.parent() else { return Ok(()) };
    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(|source| ClusterError::StateIo {
        action: "fsync",
        path: dir.to_owned(),
        source,
    })
}

/// Replaces the state file atomically ([`write_atomically`]).
pub(super) fn write_state(path: &Path, state: &State) -> Result<(), ClusterError> {
    let json = serde_json::to_vec_pretty(state)
        .map_err(|source| ClusterError::StateCorrupt { path: path.to_owned(), source })?;
    write_atomically(path, &json)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trips_and_replaces_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        assert_eq!(read_state(&path).unwrap(), State::default());
        let state =
            State { master: Some("127.0.0.1:7000".into()), epoch: 3, replicas: 2, claim: None };
        write_state(&path, &state).unwrap();
        assert_eq!(read_state(&path).unwrap(), state);
        let next = State { epoch: 4, ..state };
        write_state(&path, &next).unwrap();
        assert_eq!(read_state(&path).unwrap(), next);
        // No temp file is left behind once the new state is in place.
        let names: Vec<_> =
            std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, ["state.json"]);
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"master": "127.0.0.1:7000", "epoch": 4, "replicas": 2})
        );
    }

    #[test]
    fn a_corrupt_state_file_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        for text in [
            "{\"master\": \"a\", \"epo",
            "{\"master\": null, \"epoch\": 1, \"replicas\": 1, \"x\": 1}",
            "",
        ] {
            std::fs::write(&path, text).unwrap();
            let error = read_state(&path).unwrap_err();
            assert_eq!(error.category(), "state_corrupt");
            let message = error.to_string();
            assert!(message.contains("state.json") && message.contains("not valid"), "{message}");
        }
    }
}
