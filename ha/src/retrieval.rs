//! Leader retrieval: a background task that watches `leader/info` and yields every change of
//! leader to dispatchers, workers and clients.
//!
//! Watch events can be lost across a reconnect, so the node is re-read after every
//! Disconnected → SyncConnected; an expired session is replaced by a new one.

use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use zookeeper_client::{Client, SessionState};

use crate::session::close;
use crate::{paths, LeaderView, ZkSettings};

/// A running leader retrieval. `None` means no leader is known right now.
#[must_use = "dropping the handle leaves the watch task running until shutdown()"]
pub struct LeaderRetrieval {
    rx: watch::Receiver<Option<LeaderView>>,
    cancel: CancellationToken,
    join: JoinHandle<()>,
}

impl LeaderRetrieval {
    pub fn start(settings: ZkSettings) -> Self {
        let (tx, rx) = watch::channel(None);
        let cancel = CancellationToken::new();
        let join = tokio::spawn(run(settings, tx, cancel.clone()));
        Self { rx, cancel, join }
    }

    pub fn subscribe(&self) -> watch::Receiver<Option<LeaderView>> {
        self.rx.clone()
    }

    pub fn current(&self) -> Option<LeaderView> {
        self.rx.borrow().clone()
    }

    pub async fn shutdown(self) {
        self.cancel.cancel();
        let _ = self.join.await;
    }
}

/// Reads `leader/info` once. A corrupt record is an error naming the znode.
pub async fn read_leader(client: &Client) -> Result<Option<LeaderView>, crate::HaError> {
    match client.get_data(paths::LEADER_INFO).await {
        Ok((data, _)) => LeaderView::decode(paths::LEADER_INFO, &data).map(Some),
        Err(zookeeper_client::Error::NoNode) => Ok(None),
        Err(e) => Err(crate::HaError::zk("get_data", paths::LEADER_INFO, e)),
    }
}

async fn run(settings: ZkSettings, tx: watch::Sender<Option<LeaderView>>, cancel: CancellationToken) {
    'sessions: loop {
        let Some(client) = settings.connect_with_retry(&cancel, "leader retrieval").await else {
            break;
        };
        let mut states = client.state_watcher();
        loop {
            // Read and arm a watch in one step: data watch when the node exists, exists-watch
            // when it does not.
            let armed = match client.get_and_watch_data(paths::LEADER_INFO).await {
                Ok((data, _, watcher)) => {
                    let view = match LeaderView::decode(paths::LEADER_INFO, &data) {
                        Ok(v) => Some(v),
                        Err(err) => {
                            tracing::error!(%err, "ignoring unreadable leader/info");
                            None
                        }
                    };
                    publish(&tx, view);
                    Ok(watcher)
                }
                Err(zookeeper_client::Error::NoNode) => match client.check_and_watch_stat(paths::LEADER_INFO).await {
                    Ok((None, watcher)) => {
                        publish(&tx, None);
                        Ok(watcher)
                    }
                    // It appeared in between: read it.
                    Ok((Some(_), _)) => continue,
                    Err(e) => Err(e),
                },
                Err(e) => Err(e),
            };
            let watcher = match armed {
                Ok(w) => w,
                Err(err) => {
                    tracing::warn!(%err, "leader retrieval read failed");
                    if matches!(
                        states.peek_state(),
                        SessionState::Expired | SessionState::Closed | SessionState::AuthFailed
                    ) {
                        close(client, Duration::from_millis(200)).await;
                        continue 'sessions;
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(100)) => continue,
                        _ = cancel.cancelled() => break 'sessions,
                    }
                }
            };
            tokio::select! {
                _ = watcher.changed() => {}
                state = states.changed() => match state {
                    SessionState::Expired | SessionState::Closed | SessionState::AuthFailed => {
                        tracing::warn!(?state, "leader retrieval session ended; reconnecting");
                        close(client, Duration::from_millis(200)).await;
                        continue 'sessions;
                    }
                    // Re-read after every reconnect: watch events may have been lost.
                    _ => {}
                },
                _ = cancel.cancelled() => {
                    close(client, Duration::from_secs(1)).await;
                    break 'sessions;
                }
            }
        }
    }
}

fn publish(tx: &watch::Sender<Option<LeaderView>>, view: Option<LeaderView>) {
    tx.send_if_modified(|current| {
        if *current != view {
            match &view {
                Some(v) => {
                    tracing::info!(leader = %v.leader_id, epoch = %v.epoch, address = %v.address, "leader changed")
                }
                None => tracing::info!("no leader"),
            }
            *current = view;
            true
        } else {
            false
        }
    });
}
