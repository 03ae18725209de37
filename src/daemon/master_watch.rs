//! Hears the moment the recorded master's process goes away, so the health probe runs then
//! rather than up to a probe interval later.
//!
//! Why: when a master dies and something restarts on its address holding no data (as a
//! master: a misconfigured boot), its replicas reconnect and fully resync from it, emptying
//! themselves, 100-200 ms after it listens. A probe on a 250 ms clock loses that race about
//! half the time; once nobody holds data, nothing can tell that anything was lost. A dead
//! process closes its sockets at once, so an idle TCP connection to the master sees the end
//! of the stream within a millisecond of the death, and the probe it triggers detaches the
//! replicas (see [`crate::decide::health`]) before anything can restart there.
//!
//! The connection is plain TCP and sends nothing: no credentials, no commands, so it needs no
//! ACL and works in front of TLS. It only *triggers* a probe; every conclusion is the health
//! core's, from a real probe. A connection the server closes for its own reasons (an idle
//! `timeout`, a restart with data) costs one extra probe.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

/// How long to wait before connecting again after a connection ended or was refused: the
/// probes see a dead master meanwhile, and a refused address is not worth hammering.
const RECONNECT: Duration = Duration::from_millis(200);

/// One policy's watch on its recorded master. Dropping it stops the task.
pub struct MasterWatch {
    target: watch::Sender<Option<(String, u16)>>,
    dropped: Arc<Notify>,
    task: JoinHandle<()>,
}

impl MasterWatch {
    pub fn start() -> Self {
        let (target, receiver) = watch::channel(None);
        let dropped = Arc::new(Notify::new());
        let task = tokio::spawn(watch_loop(receiver, Arc::clone(&dropped)));
        Self { target, dropped, task }
    }

    /// Watches `host:port` from now on (`None`: nothing); a no-op when unchanged.
    pub fn follow(&self, target: Option<(String, u16)>) {
        self.target.send_if_modified(|current| {
            let changed = *current != target;
            *current = target;
            changed
        });
    }

    /// Resolves when a watched connection ended.
    pub async fn dropped(&self) {
        self.dropped.notified().await;
    }
}

impl Drop for MasterWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn watch_loop(mut target: watch::Receiver<Option<(String, u16)>>, dropped: Arc<Notify>) {
    loop {
        let current = target.borrow_and_update().clone();
        let Some((host, port)) = current else {
            if target.changed().await.is_err() {
                return;
            }
            continue;
        };
        let held = async {
            let Ok(mut stream) = tokio::net::TcpStream::connect((host.as_str(), port)).await else {
                return false;
            };
            // Nothing is ever sent, so nothing is expected back: any read result is the end
            // of the connection (0 bytes, or a reset).
            let mut byte = [0_u8; 1];
            let _ = stream.read(&mut byte).await;
            true
        };
        tokio::select! {
            connected = held => {
                if connected {
                    dropped.notify_one();
                }
                tokio::time::sleep(RECONNECT).await;
            }
            changed = target.changed() => if changed.is_err() { return },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_closed_connection_is_heard_and_a_new_target_followed() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let watch = MasterWatch::start();
        watch.follow(Some(("127.0.0.1".into(), port)));
        let (accepted, _) = listener.accept().await.expect("the watch connects");
        drop(accepted);
        tokio::time::timeout(Duration::from_secs(10), watch.dropped())
            .await
            .expect("the closed connection is heard");
        // It connects again, and a change of target moves it.
        let (_again, _) = listener.accept().await.expect("connects again");
        let other = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        watch.follow(Some(("127.0.0.1".into(), other.local_addr().expect("addr").port())));
        let (_moved, _) = tokio::time::timeout(Duration::from_secs(10), other.accept())
            .await
            .expect("follows the new target")
            .expect("accept");
    }
}
