//! The one error type of this crate.

use std::io;
use std::path::{Path, PathBuf};

/// Everything that can go wrong in `keel-state`.
///
/// Every variant says *what* (a key, a file, a remote path) and *why*. Use
/// [`StateError::is_temporary`] to decide whether retrying the same call can help.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    /// A configuration value is not one of the accepted values.
    #[error("invalid value {value:?} for `{key}`: expected {expected}")]
    InvalidConfig {
        /// The configuration key, e.g. `state.backend`.
        key: String,
        /// The rejected value, as written.
        value: String,
        /// What would have been accepted.
        expected: String,
    },
    /// A state name (one backend instance under the local directory) that cannot be a
    /// directory name.
    #[error("invalid state name {name:?}: {reason}")]
    InvalidName {
        /// The rejected name.
        name: String,
        /// Why it was rejected.
        reason: String,
    },
    /// Another open backend of this process already uses this state directory
    /// (`<local_dir>/<name>`): two backends must not share one.
    #[error("state directory {} is already used by an open backend", path.display())]
    InUse {
        /// The state directory.
        path: PathBuf,
    },
    /// A local file-system operation failed.
    #[error("{op} {}: {message}", path.display())]
    Io {
        /// What was being done ("create directory", "read", ...).
        op: &'static str,
        /// The file or directory it was done to.
        path: PathBuf,
        /// The OS error kind, for callers that branch on it.
        kind: io::ErrorKind,
        /// The OS error message.
        message: String,
    },
    /// RocksDB reported an error.
    #[error("rocksdb {op} in {}: {message}", path.display())]
    RocksDb {
        /// What was being done ("open", "put", "checkpoint", ...).
        op: &'static str,
        /// The RocksDB directory.
        path: PathBuf,
        /// RocksDB's message.
        message: String,
    },
    /// A snapshot file (local path or remote path) does not hold what it should.
    #[error("corrupt state file {file}: {reason}")]
    Corrupt {
        /// The local path or remote path of the file.
        file: String,
        /// What is wrong with it, and what was expected.
        reason: String,
    },
    /// A snapshot manifest could not be decoded or is inconsistent.
    #[error("invalid snapshot manifest: {reason}")]
    Manifest {
        /// What is wrong, naming the field (and file entry) concerned.
        reason: String,
    },
    /// The remote store failed an operation.
    #[error("remote {op} {path}: {message}")]
    Remote {
        /// `put`, `get` or `delete`.
        op: &'static str,
        /// The remote path.
        path: String,
        /// The remote store's message.
        message: String,
    },
}

impl StateError {
    /// Whether the same call may succeed when retried unchanged.
    ///
    /// Remote failures are treated as temporary (the remote trait reports plain messages);
    /// local I/O is temporary only for interrupted / timed-out operations. Corruption,
    /// configuration and RocksDB errors are permanent.
    pub fn is_temporary(&self) -> bool {
        match self {
            StateError::Remote { .. } => true,
            StateError::Io { kind, .. } => {
                matches!(kind, io::ErrorKind::Interrupted | io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock)
            }
            _ => false,
        }
    }

    pub(crate) fn io(op: &'static str, path: &Path, err: io::Error) -> Self {
        StateError::Io { op, path: path.to_path_buf(), kind: err.kind(), message: err.to_string() }
    }

    pub(crate) fn rocksdb(op: &'static str, path: &Path, err: rocksdb::Error) -> Self {
        StateError::RocksDb { op, path: path.to_path_buf(), message: err.into_string() }
    }

    pub(crate) fn corrupt(file: impl std::fmt::Display, reason: impl Into<String>) -> Self {
        StateError::Corrupt { file: file.to_string(), reason: reason.into() }
    }

    pub(crate) fn manifest(reason: impl Into<String>) -> Self {
        StateError::Manifest { reason: reason.into() }
    }
}
