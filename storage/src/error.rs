//! The crate's one error type.

use crate::blob::BlobError;

/// The URI forms [`StorageDir::open`](crate::StorageDir::open) accepts, as printed in
/// [`StorageError::InvalidUri`].
pub const ACCEPTED_URI_FORMS: &str =
    "file:///absolute/path, s3://bucket[/prefix], hdfs://namenode[:port][/path], swift://container[/prefix]";

/// What went wrong with a storage directory operation.
///
/// Every message names the operation and the full location (`<dir uri>/<path>`). Use
/// [`is_temporary`](Self::is_temporary) to decide whether retrying later can help; do not
/// match on message text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// The storage URI is malformed, has an unknown scheme, or names a backend this build
    /// was compiled without. Permanent.
    #[error("invalid storage URI {uri:?}: {reason}; accepted forms: {ACCEPTED_URI_FORMS}")]
    InvalidUri {
        /// The URI as given.
        uri: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The URI is fine but the options are not (a missing endpoint, say), or the backend
    /// refused its configuration. Permanent.
    #[error("storage directory {uri}: invalid configuration: {message}")]
    Config {
        /// The storage directory.
        uri: String,
        /// What is wrong.
        message: String,
    },
    /// A path argument that does not name a file (or directory prefix) inside the directory.
    /// Permanent.
    #[error(
        "{op} {uri}: invalid path {path:?}: {reason} (paths are relative to the storage directory, \
         '/'-separated, without empty, '.' or '..' segments)"
    )]
    InvalidPath {
        /// The operation.
        op: &'static str,
        /// The storage directory.
        uri: String,
        /// The path as given.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The file does not exist. Permanent.
    #[error("{op} {}: not found", location(uri, path))]
    NotFound {
        /// The operation.
        op: &'static str,
        /// The storage directory.
        uri: String,
        /// The path inside it.
        path: String,
    },
    /// A write-once file already holds different bytes: another writer won the commit
    /// point. The stored bytes are unchanged. Permanent.
    #[error(
        "write_once {}: already exists with different content (a write-once file is never overwritten)",
        location(uri, path)
    )]
    AlreadyExists {
        /// The storage directory.
        uri: String,
        /// The path inside it.
        path: String,
    },
    /// The backend (OpenDAL service) failed; `kind` is OpenDAL's error kind and `message`
    /// its full text. Temporary if OpenDAL said so (also after its retries ran out).
    #[error("{op} {}: {kind} error from the storage backend ({}): {message}", location(uri, path), status(*temporary))]
    Backend {
        /// The operation.
        op: &'static str,
        /// The storage directory.
        uri: String,
        /// The path inside it.
        path: String,
        /// OpenDAL's error kind, e.g. `Unexpected`, `PermissionDenied`.
        kind: String,
        /// Whether retrying later may succeed.
        temporary: bool,
        /// OpenDAL's error text (kind, status, context, source).
        message: String,
    },
    /// A failure injected by a [`FaultInjector`](crate::FaultInjector). Temporary.
    #[error("{op} {}: injected fault (temporary)", location(uri, path))]
    Injected {
        /// The operation.
        op: &'static str,
        /// The storage directory.
        uri: String,
        /// The path inside it.
        path: String,
    },
    /// The file exists but is not an intact blob of the expected kind. Permanent: the blob's
    /// name in `source` is its full location.
    #[error("read_blob: {source}")]
    CorruptBlob {
        /// The storage directory.
        uri: String,
        /// The path inside it.
        path: String,
        /// What is wrong with the bytes.
        source: BlobError,
    },
}

impl StorageError {
    /// Whether retrying the operation later may succeed: backend errors OpenDAL marks
    /// temporary (timeouts, connection failures, 5xx, throttling; also once its own retries
    /// ran out) and injected faults. Everything else is permanent.
    pub fn is_temporary(&self) -> bool {
        match self {
            StorageError::Backend { temporary, .. } => *temporary,
            StorageError::Injected { .. } => true,
            _ => false,
        }
    }

    /// Whether this is [`StorageError::NotFound`].
    pub fn is_not_found(&self) -> bool {
        matches!(self, StorageError::NotFound { .. })
    }

    /// The operation that failed (`"open"` for URI and configuration errors).
    pub fn op(&self) -> &'static str {
        match self {
            StorageError::InvalidUri { .. } | StorageError::Config { .. } => "open",
            StorageError::AlreadyExists { .. } => "write_once",
            StorageError::CorruptBlob { .. } => "read_blob",
            StorageError::InvalidPath { op, .. }
            | StorageError::NotFound { op, .. }
            | StorageError::Backend { op, .. }
            | StorageError::Injected { op, .. } => op,
        }
    }

    /// The path inside the directory the error is about, if any.
    pub fn path(&self) -> Option<&str> {
        match self {
            StorageError::InvalidUri { .. } | StorageError::Config { .. } => None,
            StorageError::InvalidPath { path, .. }
            | StorageError::NotFound { path, .. }
            | StorageError::AlreadyExists { path, .. }
            | StorageError::Backend { path, .. }
            | StorageError::Injected { path, .. }
            | StorageError::CorruptBlob { path, .. } => Some(path),
        }
    }
}

/// `<uri>/<path>` (just `<uri>` for the empty path).
pub(crate) fn location(uri: &str, path: &str) -> String {
    if path.is_empty() {
        uri.to_string()
    } else {
        format!("{}/{path}", uri.trim_end_matches('/'))
    }
}

fn status(temporary: bool) -> &'static str {
    if temporary {
        "temporary"
    } else {
        "permanent"
    }
}
