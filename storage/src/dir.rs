//! The storage directory handle.

use opendal::{ErrorKind, Operator};

use crate::blob::{self, BlobKind};
use crate::error::{location, StorageError};
use crate::faults::{FaultInjector, OpClass};
use crate::options::StorageOptions;
use crate::{backend, uri};

/// Test-only: `KEEL_TEST_DISABLE_WRITE_ONCE=1` turns the write-once commit point off:
/// [`StorageDir::write_once`] then overwrites whatever the file holds, like a plain write.
/// It exists so tests can show that they catch a commit point that is not write-once (a
/// second commit to the same path must be refused). Read once per process; never set it in
/// production: the first write with it logs an error saying the commit point is off.
pub const DISABLE_WRITE_ONCE_ENV: &str = "KEEL_TEST_DISABLE_WRITE_ONCE";

fn write_once_disabled() -> bool {
    static OFF: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *OFF.get_or_init(|| {
        let off = std::env::var(DISABLE_WRITE_ONCE_ENV).is_ok_and(|v| v == "1");
        if off {
            tracing::error!("{DISABLE_WRITE_ONCE_ENV}=1: write_once OVERWRITES existing files (test-only switch; the commit point is off)");
        }
        off
    })
}

/// A storage directory: a root in a filesystem, bucket, HDFS or Swift container, reached
/// through OpenDAL. Cheap to clone (the operator is shared).
///
/// Every path argument is relative to the root, `/`-separated, with no leading slash and no
/// empty, `.` or `..` segments (else [`StorageError::InvalidPath`]). Directory prefixes may
/// end with `/`; files may not.
#[derive(Clone)]
pub struct StorageDir {
    op: Operator,
    uri: String,
    faults: Option<FaultInjector>,
    /// Whether the backend can create a file only if it is absent (fs, S3). Without it
    /// (HDFS, Swift in OpenDAL 0.59) `write_once` checks, then writes.
    conditional_create: bool,
}

impl std::fmt::Debug for StorageDir {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StorageDir").field("uri", &self.uri).field("faults", &self.faults.is_some()).finish()
    }
}

impl StorageDir {
    /// Opens the storage directory at `uri`:
    ///
    /// | URI | backend | cargo feature |
    /// | --- | --- | --- |
    /// | `file:///absolute/path` | OpenDAL `fs` | always |
    /// | `s3://bucket[/prefix]` | OpenDAL `s3` | `s3` (default) |
    /// | `hdfs://namenode[:port][/path]` | OpenDAL `hdfs-native` | `hdfs` |
    /// | `swift://container[/prefix]` | OpenDAL `swift` | `swift` |
    ///
    /// S3 settings left `None` in `options` fall back to `AWS_ENDPOINT_URL`,
    /// `AWS_REGION`/`AWS_DEFAULT_REGION` (then `us-east-1`), `AWS_ACCESS_KEY_ID` and
    /// `AWS_SECRET_ACCESS_KEY`; without keys OpenDAL's default credential chain applies.
    /// A `file://` root is created if missing. Nothing else touches the backend: a wrong
    /// endpoint or bucket shows on the first operation.
    ///
    /// # Notable errors
    ///
    /// - [`StorageError::InvalidUri`]: malformed URI, unknown scheme, or a scheme whose
    ///   feature is not compiled in; the message lists the accepted forms.
    /// - [`StorageError::Config`]: missing Swift endpoint, half of an S3 key pair, or the
    ///   backend refused its configuration (e.g. cannot create the `file://` root).
    pub fn open(uri: &str, options: &StorageOptions) -> Result<StorageDir, StorageError> {
        let loc = uri::parse(uri)?;
        let op = backend::build(&loc, options)?;
        let conditional_create = op.info().capability().write_with_if_not_exists;
        Ok(StorageDir { op, uri: loc.uri().to_string(), faults: None, conditional_create })
    }

    /// This directory, consulting `faults` before every operation (see [`FaultInjector`]).
    pub fn with_faults(mut self, faults: FaultInjector) -> StorageDir {
        self.faults = Some(faults);
        self
    }

    /// The canonical URI of the root (no trailing slash), e.g. `s3://bucket/prefix`.
    pub fn uri(&self) -> &str {
        &self.uri
    }

    /// `<uri>/<path>`: how errors and logs name a file.
    pub fn location(&self, path: &str) -> String {
        location(&self.uri, path)
    }

    /// Writes `bytes` to `path` once: the file must not exist yet. This is a commit point:
    /// on `file://` the file is created with `O_CREAT|O_EXCL`, on S3 with
    /// `If-None-Match: *`; never through a rename.
    ///
    /// If the backend reports that the file exists (another writer, or an earlier attempt of
    /// this very write whose success was lost), the stored bytes are read back: identical
    /// bytes mean the write had happened and this returns `Ok`.
    ///
    /// On `file://` the file is visible from its creation, before its bytes are complete;
    /// a writer that dies mid-write leaves a short file (and a concurrent identical write
    /// may read it back and report `AlreadyExists`). Write blobs (whose length and checksum
    /// catch that) under unique names, and publish them through a guarded ZooKeeper pointer
    /// only after this returned `Ok`.
    ///
    /// HDFS and Swift: OpenDAL 0.59 offers no create-if-absent for them, so this checks for
    /// the file, then writes. On HDFS the create itself refuses a file that appeared in the
    /// meantime, except in the short window inside OpenDAL between its own check and the
    /// create; Swift has no guard. Safe with unique names (two writers never share one),
    /// not a lock between writers of the same name.
    ///
    /// # Notable errors
    ///
    /// - [`StorageError::AlreadyExists`]: the file holds different bytes; they are unchanged.
    /// - [`StorageError::Backend`] (check [`is_temporary`](StorageError::is_temporary)),
    ///   [`StorageError::Injected`], [`StorageError::InvalidPath`].
    pub async fn write_once(&self, path: &str, bytes: &[u8]) -> Result<(), StorageError> {
        const OP: &str = "write_once";
        check_file_path(OP, &self.uri, path)?;
        self.inject(OP, path, OpClass::Write).await?;
        let res = if write_once_disabled() {
            self.op.write(path, bytes.to_vec()).await
        } else if self.conditional_create {
            self.op.write_with(path, bytes.to_vec()).if_not_exists(true).await
        } else {
            // Check, then write: OpenDAL's HDFS service then creates without overwrite (the
            // NameNode refuses a concurrent creator); Swift has no such guard.
            match self.op.exists(path).await {
                Ok(true) => Err(opendal::Error::new(ErrorKind::AlreadyExists, "exists (checked before writing)")),
                Ok(false) => self.op.write(path, bytes.to_vec()).await,
                Err(e) => Err(e),
            }
        };
        match res {
            Ok(_) => {
                if self.faults.as_ref().is_some_and(FaultInjector::lose_ack) {
                    return Err(self.injected(OP, path));
                }
                tracing::debug!(location = %self.location(path), len = bytes.len(), "write_once committed");
                Ok(())
            }
            Err(e) if matches!(e.kind(), ErrorKind::ConditionNotMatch | ErrorKind::AlreadyExists) => {
                let stored = self.op.read(path).await.map_err(|e| self.map_err(OP, path, e))?.to_vec();
                if stored == bytes {
                    tracing::info!(
                        location = %self.location(path),
                        "write_once: file already holds these bytes (an earlier attempt succeeded)"
                    );
                    Ok(())
                } else {
                    Err(StorageError::AlreadyExists { uri: self.uri.clone(), path: path.to_string() })
                }
            }
            Err(e) => Err(self.map_err(OP, path, e)),
        }
    }

    /// [`write_once`](Self::write_once) of `payload` framed as a blob of `kind`
    /// ([`blob::encode`]).
    ///
    /// # Notable errors
    ///
    /// As [`write_once`](Self::write_once).
    pub async fn write_blob(&self, path: &str, kind: BlobKind, payload: &[u8]) -> Result<(), StorageError> {
        self.write_once(path, &blob::encode(kind, payload)).await
    }

    /// The whole content of the file at `path`.
    ///
    /// # Notable errors
    ///
    /// - [`StorageError::NotFound`] names the full location.
    /// - [`StorageError::Backend`], [`StorageError::Injected`], [`StorageError::InvalidPath`].
    pub async fn read(&self, path: &str) -> Result<Vec<u8>, StorageError> {
        self.read_op("read", path).await
    }

    /// Reads the blob at `path` and returns its payload after checking its framing, checksum
    /// and kind ([`blob::decode`]).
    ///
    /// # Notable errors
    ///
    /// - [`StorageError::CorruptBlob`]: truncated, not a blob, wrong version or kind, or a
    ///   checksum mismatch; the inner [`BlobError`](crate::BlobError) is named by the full
    ///   location.
    /// - As [`read`](Self::read).
    pub async fn read_blob(&self, path: &str, expected: BlobKind) -> Result<Vec<u8>, StorageError> {
        let bytes = self.read_op("read_blob", path).await?;
        match blob::decode(&self.location(path), &bytes, expected) {
            Ok(payload) => Ok(payload.to_vec()),
            Err(source) => Err(StorageError::CorruptBlob { uri: self.uri.clone(), path: path.to_string(), source }),
        }
    }

    /// Whether a file exists at `path`.
    ///
    /// # Notable errors
    ///
    /// [`StorageError::Backend`], [`StorageError::Injected`], [`StorageError::InvalidPath`].
    pub async fn exists(&self, path: &str) -> Result<bool, StorageError> {
        const OP: &str = "exists";
        check_file_path(OP, &self.uri, path)?;
        self.inject(OP, path, OpClass::Read).await?;
        self.op.exists(path).await.map_err(|e| self.map_err(OP, path, e))
    }

    /// Deletes the file at `path`; a missing file is not an error.
    ///
    /// # Notable errors
    ///
    /// [`StorageError::Backend`], [`StorageError::Injected`], [`StorageError::InvalidPath`].
    pub async fn delete(&self, path: &str) -> Result<(), StorageError> {
        const OP: &str = "delete";
        check_file_path(OP, &self.uri, path)?;
        self.inject(OP, path, OpClass::Write).await?;
        match self.op.delete(path).await {
            Err(e) if e.kind() != ErrorKind::NotFound => Err(self.map_err(OP, path, e)),
            _ => Ok(()),
        }
    }

    /// Deletes everything under the directory `prefix` (`"jobs/j1"` and `"jobs/j1/"` are the
    /// same); a missing directory is not an error.
    ///
    /// # Notable errors
    ///
    /// - [`StorageError::InvalidPath`] also for the empty prefix: deleting the whole storage
    ///   directory is refused.
    /// - [`StorageError::Backend`], [`StorageError::Injected`].
    pub async fn delete_prefix(&self, prefix: &str) -> Result<(), StorageError> {
        const OP: &str = "delete_prefix";
        let dir = dir_prefix(OP, &self.uri, prefix)?;
        if dir.is_empty() {
            return Err(invalid_path(
                OP,
                &self.uri,
                prefix,
                "the empty prefix would delete the whole storage directory",
            ));
        }
        self.inject(OP, &dir, OpClass::Write).await?;
        match self.op.delete_with(&dir).recursive(true).await {
            Err(e) if e.kind() != ErrorKind::NotFound => Err(self.map_err(OP, &dir, e)),
            _ => Ok(()),
        }
    }

    /// Every file under the directory `prefix` (recursively; `""` is the whole directory),
    /// as paths relative to the root, sorted. A missing directory gives an empty list.
    ///
    /// # Notable errors
    ///
    /// [`StorageError::Backend`], [`StorageError::Injected`], [`StorageError::InvalidPath`].
    pub async fn list(&self, prefix: &str) -> Result<Vec<String>, StorageError> {
        const OP: &str = "list";
        let dir = dir_prefix(OP, &self.uri, prefix)?;
        self.inject(OP, &dir, OpClass::Read).await?;
        let entries = match self.op.list_with(if dir.is_empty() { "/" } else { &dir }).recursive(true).await {
            Ok(entries) => entries,
            Err(e) if e.kind() == ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(self.map_err(OP, &dir, e)),
        };
        let mut files: Vec<String> = entries
            .into_iter()
            .filter(|e| e.metadata().is_file() && !e.path().ends_with('/'))
            .map(|e| e.path().trim_start_matches('/').to_string())
            .collect();
        files.sort();
        files.dedup();
        Ok(files)
    }

    async fn read_op(&self, op: &'static str, path: &str) -> Result<Vec<u8>, StorageError> {
        check_file_path(op, &self.uri, path)?;
        self.inject(op, path, OpClass::Read).await?;
        match self.op.read(path).await {
            Ok(buf) => Ok(buf.to_vec()),
            Err(e) => Err(self.map_err(op, path, e)),
        }
    }

    async fn inject(&self, op: &'static str, path: &str, class: OpClass) -> Result<(), StorageError> {
        match &self.faults {
            Some(f) if f.before(class).await => Err(self.injected(op, path)),
            _ => Ok(()),
        }
    }

    fn injected(&self, op: &'static str, path: &str) -> StorageError {
        tracing::debug!(op, location = %self.location(path), "injected storage fault");
        StorageError::Injected { op, uri: self.uri.clone(), path: path.to_string() }
    }

    fn map_err(&self, op: &'static str, path: &str, e: opendal::Error) -> StorageError {
        let (uri, path) = (self.uri.clone(), path.to_string());
        if e.kind() == ErrorKind::NotFound {
            return StorageError::NotFound { op, uri, path };
        }
        StorageError::Backend {
            op,
            uri,
            path,
            kind: e.kind().to_string(),
            // OpenDAL marks an error "persistent" once its retries ran out on a temporary one.
            temporary: e.is_temporary() || e.is_persistent(),
            message: e.to_string(),
        }
    }
}

fn invalid_path(op: &'static str, uri: &str, path: &str, reason: &str) -> StorageError {
    StorageError::InvalidPath { op, uri: uri.to_string(), path: path.to_string(), reason: reason.to_string() }
}

/// Checks the segments of a relative path (the empty path passes).
fn check_segments(op: &'static str, uri: &str, path: &str) -> Result<(), StorageError> {
    if path.starts_with('/') {
        return Err(invalid_path(op, uri, path, "starts with '/'"));
    }
    if let Some(c) = path.chars().find(|c| c.is_control() || *c == '\\') {
        return Err(invalid_path(op, uri, path, &format!("contains {c:?}")));
    }
    let body = path.strip_suffix('/').unwrap_or(path);
    if body.is_empty() {
        return if path.is_empty() { Ok(()) } else { Err(invalid_path(op, uri, path, "empty segment")) };
    }
    for seg in body.split('/') {
        match seg {
            "" => return Err(invalid_path(op, uri, path, "empty segment")),
            "." | ".." => return Err(invalid_path(op, uri, path, &format!("segment {seg:?}"))),
            s if s.trim() != s => {
                return Err(invalid_path(op, uri, path, "segment with leading or trailing whitespace"))
            }
            _ => {}
        }
    }
    Ok(())
}

fn check_file_path(op: &'static str, uri: &str, path: &str) -> Result<(), StorageError> {
    if path.is_empty() {
        return Err(invalid_path(op, uri, path, "empty"));
    }
    if path.ends_with('/') {
        return Err(invalid_path(op, uri, path, "ends with '/' (names a directory, not a file)"));
    }
    check_segments(op, uri, path)
}

/// `prefix` as an OpenDAL directory path: `""` for the root, else ending with `/`.
fn dir_prefix(op: &'static str, uri: &str, prefix: &str) -> Result<String, StorageError> {
    check_segments(op, uri, prefix)?;
    Ok(if prefix.is_empty() || prefix.ends_with('/') { prefix.to_string() } else { format!("{prefix}/") })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The check-then-write path (HDFS, Swift) exercised on the fs backend.
    #[tokio::test]
    async fn write_once_without_conditional_create() {
        let tmp = tempfile::tempdir().unwrap();
        let uri = format!("file://{}", tmp.path().display());
        let mut dir = StorageDir::open(&uri, &StorageOptions::default()).unwrap();
        assert!(dir.conditional_create, "fs supports if_not_exists");
        dir.conditional_create = false;
        dir.write_once("a/b", b"one").await.unwrap();
        dir.write_once("a/b", b"one").await.expect("identical bytes: Ok");
        let err = dir.write_once("a/b", b"two").await.unwrap_err();
        assert_eq!(err, StorageError::AlreadyExists { uri: dir.uri().to_string(), path: "a/b".into() });
        assert_eq!(dir.read("a/b").await.unwrap(), b"one");
    }

    #[test]
    fn path_checks() {
        let u = "file:///d";
        assert!(check_file_path("read", u, "a/b.blob").is_ok());
        for bad in ["", "/a", "a/", "a//b", "./a", "a/../b", "a/ b", "a\\b", "a\nb"] {
            assert!(
                matches!(check_file_path("read", u, bad), Err(StorageError::InvalidPath { .. })),
                "{bad:?} should be rejected"
            );
        }
        assert_eq!(dir_prefix("list", u, "").unwrap(), "");
        assert_eq!(dir_prefix("list", u, "jobs").unwrap(), "jobs/");
        assert_eq!(dir_prefix("list", u, "jobs/j1/").unwrap(), "jobs/j1/");
        assert!(dir_prefix("list", u, "/").is_err());
        assert_eq!(
            check_file_path("read", u, "a/../b").unwrap_err().to_string(),
            "read file:///d: invalid path \"a/../b\": segment \"..\" (paths are relative to the storage \
             directory, '/'-separated, without empty, '.' or '..' segments)"
        );
    }
}
