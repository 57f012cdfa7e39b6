use crate::LeaderEpoch;

/// Errors of the HA services.
///
/// Retry guidance: [`HaError::ConnectionLoss`] and [`HaError::Connect`] are temporary;
/// [`HaError::LeadershipLost`] and [`HaError::SessionExpired`] are final for the leadership or
/// session that saw them (contend again with a new session); [`HaError::CorruptZnode`] needs an
/// operator.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum HaError {
    /// Could not establish a ZooKeeper session.
    #[error("cannot connect to ZooKeeper quorum {quorum:?}: {source}")]
    Connect { quorum: String, source: zookeeper_client::Error },
    /// The ZooKeeper servers refused the session's SASL authentication (wrong user or
    /// password, or the servers do not know the user). Never carries the password.
    #[error(
        "ZooKeeper quorum {quorum:?} refused SASL DIGEST-MD5 authentication as user '{user}' ({source}): check \
         high-availability.zookeeper.client.sasl.username / .password against the servers' JAAS 'Server' section"
    )]
    ZkAuth { quorum: String, user: String, source: zookeeper_client::Error },
    /// The Kerberos (SASL GSSAPI) login to ZooKeeper failed or is not available in this build.
    #[error("ZooKeeper quorum {quorum:?}: Kerberos login as '{principal}' failed: {problem}")]
    ZkKerberos { quorum: String, principal: String, problem: String },
    /// A PEM file for TLS to ZooKeeper could not be used.
    #[error("cannot use ZooKeeper TLS file {path}: {problem}")]
    ZkTls { path: String, problem: String },
    /// A ZooKeeper operation failed.
    #[error("ZooKeeper {op} {path} failed: {source}")]
    Zk { op: &'static str, path: String, source: zookeeper_client::Error },
    /// The connection dropped while a request was in flight; whether a write happened is unknown.
    #[error("ZooKeeper {op} {path}: connection lost, outcome unknown")]
    ConnectionLoss { op: &'static str, path: String },
    /// The session is expired or closed; everything it owned (latch, ephemerals) is gone.
    #[error("ZooKeeper session expired")]
    SessionExpired,
    /// A guarded write found the leader's latch node gone: this process no longer leads.
    #[error("leadership lost (epoch {epoch}): guarded {op} {path} refused because the latch node is gone")]
    LeadershipLost { epoch: LeaderEpoch, op: &'static str, path: String },
    /// A blob in the storage directory could not be written or read (corrupt, missing, I/O).
    #[error("{0}")]
    Storage(#[from] keel_storage::StorageError),
    /// A job id that is already stored was submitted again.
    #[error("job {job_id} already exists (znode {path})")]
    JobExists { job_id: String, path: String },
    /// A job, checkpoint or result that is not stored.
    #[error("{what} not found (znode {path})")]
    NotFound { what: String, path: String },
    /// A znode holds something Keel cannot read.
    #[error("corrupt znode {path}: {reason}")]
    CorruptZnode { path: String, reason: String },
}

impl HaError {
    pub(crate) fn zk(op: &'static str, path: &str, source: zookeeper_client::Error) -> Self {
        use zookeeper_client::Error as E;
        match source {
            E::ConnectionLoss => HaError::ConnectionLoss { op, path: path.to_string() },
            E::SessionExpired | E::ClientClosed => HaError::SessionExpired,
            source => HaError::Zk { op, path: path.to_string(), source },
        }
    }

    /// Whether retrying the same operation may succeed.
    pub fn is_temporary(&self) -> bool {
        matches!(self, HaError::ConnectionLoss { .. } | HaError::Connect { .. })
    }
}
