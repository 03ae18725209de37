//! Asking a running daemon, from code in the same process, for what its schedule would not do
//! now: a snapshot, or pausing one policy. The demo's keys use it. A request goes through the
//! paths the daemon's own schedule and alerts take (the snapshot gate, the executor's mode),
//! so it can never act beside them: there is one actor per fleet whoever asks.

use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{mpsc, oneshot};

use crate::snapshot::Manifest;

/// What can be asked.
#[derive(Debug)]
pub enum Request {
    /// Take a snapshot of `policy` now, as an alert mapped to `snapshot` does; the answer is
    /// the snapshot, or why none was taken (one in flight, paused, no `spec.snapshots`...).
    Snapshot { policy: String, why: String, answer: oneshot::Sender<Result<Manifest, String>> },
    /// Pause (or resume) acting on `policy`: it goes on sampling, deciding and explaining.
    /// The answer is `Err` for a policy the daemon does not run.
    Pause { policy: String, paused: bool, why: String, answer: oneshot::Sender<Result<(), String>> },
}

/// The sending side, shared with whoever asks, and the receiving side the daemon takes when
/// it starts. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Requests {
    sender: mpsc::Sender<Request>,
    receiver: Arc<Mutex<Option<mpsc::Receiver<Request>>>>,
}

/// A daemon that has stopped, or never started, answers nothing.
#[derive(Debug, thiserror::Error)]
#[error("the daemon is not running")]
pub struct NotRunning;

impl Requests {
    pub fn new() -> Self {
        // Requests come from a person's keys: a few in flight at most.
        let (sender, receiver) = mpsc::channel(8);
        Self { sender, receiver: Arc::new(Mutex::new(Some(receiver))) }
    }

    /// Snapshots `policy` now and waits for the outcome.
    pub async fn snapshot(
        &self,
        policy: &str,
        why: &str,
    ) -> Result<Result<Manifest, String>, NotRunning> {
        let (answer, answered) = oneshot::channel();
        let request = Request::Snapshot { policy: policy.to_owned(), why: why.to_owned(), answer };
        self.sender.send(request).await.map_err(|_| NotRunning)?;
        answered.await.map_err(|_| NotRunning)
    }

    /// Pauses or resumes `policy`.
    pub async fn pause(
        &self,
        policy: &str,
        paused: bool,
        why: &str,
    ) -> Result<Result<(), String>, NotRunning> {
        let (answer, answered) = oneshot::channel();
        let request =
            Request::Pause { policy: policy.to_owned(), paused, why: why.to_owned(), answer };
        self.sender.send(request).await.map_err(|_| NotRunning)?;
        answered.await.map_err(|_| NotRunning)
    }

    /// The daemon's side. Only one daemon serves one `Requests`: a second gets a receiver
    /// that never yields, so it answers nothing rather than racing the first for requests.
    pub(super) fn take_receiver(&self) -> mpsc::Receiver<Request> {
        let taken = self.receiver.lock().unwrap_or_else(PoisonError::into_inner).take();
        taken.unwrap_or_else(|| mpsc::channel(1).1)
    }
}

impl Default for Requests {
    fn default() -> Self {
        Self::new()
    }
}
