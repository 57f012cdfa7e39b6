//! ZooKeeper sessions: connect with the configured quorum and timeouts, chrooted at the
//! cluster's namespace (`<path.root>/<cluster-id>`), which is created when missing.

use std::time::Duration;

use keel_conf::Config;
use zookeeper_client::{Acls, Client, CreateMode, SessionState};

use crate::{paths, HaError};

/// Everything needed to open a session for one cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZkSettings {
    /// `host:port,host:port,...`
    pub quorum: String,
    /// `<path.root>/<cluster-id>`, for example `/keel/default`.
    pub namespace: String,
    /// The cluster id as configured (for display).
    pub cluster_id: String,
    pub session_timeout: Duration,
    pub connection_timeout: Duration,
    /// Cap on the reconnect backoff.
    pub retry_wait: Duration,
    pub tolerate_suspended_connections: bool,
}

impl ZkSettings {
    /// Settings from the configuration; `None` when `high-availability.type` is not `zookeeper`.
    pub fn from_config(config: &Config) -> Option<Self> {
        let quorum = config.zk_quorum.clone()?;
        if config.ha_type != keel_conf::HaType::Zookeeper {
            return None;
        }
        Some(Self {
            quorum,
            namespace: paths::namespace(&config.zk_path_root, &config.cluster_id),
            cluster_id: config.cluster_id.clone(),
            session_timeout: config.zk_session_timeout.duration,
            connection_timeout: config.zk_connection_timeout.duration,
            retry_wait: config.zk_retry_wait.duration,
            tolerate_suspended_connections: config.zk_tolerate_suspended_connections,
        })
    }

    /// Opens a new session chrooted at [`ZkSettings::namespace`], creating it when missing.
    ///
    /// # Notable errors
    /// * [`HaError::Connect`] when no session could be established within the session timeout
    ///   plus the connection timeout.
    pub async fn connect(&self) -> Result<Client, HaError> {
        let connect = Client::connector()
            .with_session_timeout(self.session_timeout)
            .with_connection_timeout(self.connection_timeout)
            .connect(&self.quorum);
        let bound = self.session_timeout + self.connection_timeout;
        let client = match tokio::time::timeout(bound, connect).await {
            Ok(Ok(client)) => client,
            Ok(Err(source)) => return Err(HaError::Connect { quorum: self.quorum.clone(), source }),
            Err(_) => {
                return Err(HaError::Connect { quorum: self.quorum.clone(), source: zookeeper_client::Error::Timeout })
            }
        };
        client
            .mkdir(&self.namespace, &CreateMode::Persistent.with_acls(Acls::anyone_all()))
            .await
            .map_err(|e| HaError::zk("mkdir", &self.namespace, e))?;
        client.chroot(self.namespace.clone()).map_err(|_| HaError::Zk {
            op: "chroot",
            path: self.namespace.clone(),
            source: zookeeper_client::Error::BadArguments(&"invalid chroot path"),
        })
    }

    /// Connects, retrying with a backoff that doubles from 100 ms up to `retry_wait`, until
    /// connected or `cancel` fires (then `None`).
    pub async fn connect_with_retry(&self, cancel: &tokio_util::sync::CancellationToken, what: &str) -> Option<Client> {
        let mut backoff = Duration::from_millis(100);
        loop {
            let attempt = tokio::select! {
                r = self.connect() => r,
                _ = cancel.cancelled() => return None,
            };
            match attempt {
                Ok(client) => return Some(client),
                Err(err) => {
                    tracing::warn!(%err, retry_in_ms = backoff.as_millis() as u64, "{what}: ZooKeeper connect failed");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {},
                        _ = cancel.cancelled() => return None,
                    }
                    backoff = (backoff * 2).min(self.retry_wait.max(Duration::from_millis(100)));
                }
            }
        }
    }
}

/// Closes a session and waits (bounded) until the servers confirmed it, so its ephemeral nodes
/// are gone when this returns.
pub async fn close(client: Client, bound: Duration) {
    let mut state = client.state_watcher();
    drop(client);
    let _ = tokio::time::timeout(bound, async {
        loop {
            match state.changed().await {
                SessionState::Closed | SessionState::Expired | SessionState::AuthFailed => break,
                _ => continue,
            }
        }
    })
    .await;
}

/// Hex form of a session id, as ZooKeeper's own tools print it.
pub fn session_hex(client: &Client) -> String {
    format!("{:x}", client.session_id().0)
}
