//! The keyed state backends, their local snapshots and the on-disk layout they share.
//!
//! Layout under the local directory, for one state `name`:
//!
//! ```text
//! <local_dir>/<name>/db/                     RocksDB working directory (rocksdb only)
//! <local_dir>/<name>/snapshots/chk-<id>/     local snapshot of checkpoint <id>
//! ```

mod hashmap;
mod rocksdb;

use std::fs;
use std::path::{Path, PathBuf};

pub use self::hashmap::{HashMapBackend, HASHMAP_SNAPSHOT_FILE};
pub use self::rocksdb::RocksDbBackend;
use crate::error::StateError;
use crate::options::BackendKind;

/// Keyed state of one task: ordered byte keys to byte values, plus snapshots.
///
/// Object safe: workers hold a `Box<dyn KeyedStateBackend>` from [`open_backend`] or
/// [`restore_backend`] and do not care which kind it is.
pub trait KeyedStateBackend: Send + std::fmt::Debug {
    /// The value stored under `key`, if any.
    ///
    /// # Notable errors
    /// * [`StateError::RocksDb`] when RocksDB fails the read.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StateError>;

    /// Stores `value` under `key`, replacing any previous value. Not durable by itself
    /// (RocksDB runs with its WAL off): durability comes from checkpoints.
    ///
    /// # Notable errors
    /// * [`StateError::RocksDb`] when RocksDB fails the write.
    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), StateError>;

    /// Removes `key`; removing an absent key is not an error.
    ///
    /// # Notable errors
    /// * [`StateError::RocksDb`] when RocksDB fails the write.
    fn delete(&mut self, key: &[u8]) -> Result<(), StateError>;

    /// Calls `f` for every entry in ascending key order.
    ///
    /// # Notable errors
    /// * [`StateError::RocksDb`] when the iteration fails part-way (`f` may have seen a prefix).
    fn for_each(&self, f: &mut dyn FnMut(&[u8], &[u8])) -> Result<(), StateError>;

    /// Writes a consistent local snapshot of the current contents into
    /// `<local_dir>/<name>/snapshots/chk-<checkpoint_id>/` (replacing a leftover directory
    /// of the same id) and lists its files.
    ///
    /// # Notable errors
    /// * [`StateError::Io`] when the snapshot directory cannot be written.
    /// * [`StateError::RocksDb`] when the flush or the RocksDB checkpoint fails.
    fn snapshot(&mut self, checkpoint_id: u64) -> Result<LocalSnapshot, StateError>;

    /// Which kind of backend this is.
    fn kind(&self) -> BackendKind;
}

/// What a file of a local snapshot is, for incremental uploads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FileKind {
    /// An immutable RocksDB data file (`*.sst`, or `*.blob` with blob files): the same name
    /// and size means the same contents, so checkpoints can share it.
    Sst,
    /// A file that belongs to this snapshot only: RocksDB's `MANIFEST-*`, `CURRENT`,
    /// `OPTIONS-*`, or the hashmap backend's snapshot file.
    Meta,
}

impl FileKind {
    /// Classifies a snapshot file by its name.
    pub fn of(name: &str) -> FileKind {
        if name.ends_with(".sst") || name.ends_with(".blob") {
            FileKind::Sst
        } else {
            FileKind::Meta
        }
    }
}

/// One file of a [`LocalSnapshot`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LocalFile {
    /// File name inside the snapshot directory.
    pub name: String,
    /// Full local path.
    pub path: PathBuf,
    /// Size in bytes.
    pub size: u64,
    /// Shareable data file or per-snapshot meta file.
    pub kind: FileKind,
}

/// A snapshot on local disk, as returned by [`KeyedStateBackend::snapshot`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalSnapshot {
    /// The checkpoint this snapshot belongs to.
    pub checkpoint_id: u64,
    /// The backend that wrote it.
    pub backend: BackendKind,
    /// `<local_dir>/<name>/snapshots/chk-<id>/`.
    pub dir: PathBuf,
    /// Every file in `dir`, sorted by name.
    pub files: Vec<LocalFile>,
}

impl LocalSnapshot {
    /// Removes the snapshot directory (after upload, when local recovery is off).
    ///
    /// # Notable errors
    /// * [`StateError::Io`] when the directory cannot be removed.
    pub fn discard(self) -> Result<(), StateError> {
        remove_dir_if_exists(&self.dir)
    }
}

/// Opens an empty backend of `kind` for the state `name` under `local_dir`.
///
/// A leftover RocksDB working directory from an earlier run is deleted first: a task that
/// starts without a checkpoint must start empty. Local snapshots are kept (see
/// [`crate::LocalRecovery`]).
///
/// # Notable errors
/// * [`StateError::InvalidName`] when `name` is empty or not a single path component.
/// * [`StateError::InUse`] when another open backend of this process uses the same
///   `<local_dir>/<name>`.
/// * [`StateError::Io`] / [`StateError::RocksDb`] when the working directory cannot be made
///   or RocksDB cannot open it.
pub fn open_backend(kind: BackendKind, local_dir: &Path, name: &str) -> Result<Box<dyn KeyedStateBackend>, StateError> {
    Ok(match kind {
        BackendKind::RocksDb => Box::new(RocksDbBackend::open(local_dir, name)?),
        BackendKind::HashMap => Box::new(HashMapBackend::open(local_dir, name)?),
    })
}

/// Opens a backend of `kind` for the state `name` under `local_dir`, with the contents of
/// the snapshot files in directory `from` (a download target, or a local snapshot found by
/// [`crate::LocalRecovery::find`]). `from` is left unchanged.
///
/// # Notable errors
/// * [`StateError::Corrupt`] naming the file or directory when `from` does not hold a
///   snapshot of `kind`, or the hashmap snapshot file fails its checks.
/// * [`StateError::InvalidName`], [`StateError::InUse`], [`StateError::Io`],
///   [`StateError::RocksDb`] as for [`open_backend`].
pub fn restore_backend(
    kind: BackendKind,
    local_dir: &Path,
    name: &str,
    from: &Path,
) -> Result<Box<dyn KeyedStateBackend>, StateError> {
    Ok(match kind {
        BackendKind::RocksDb => Box::new(RocksDbBackend::restore(local_dir, name, from)?),
        BackendKind::HashMap => Box::new(HashMapBackend::restore(local_dir, name, from)?),
    })
}

/// `<local_dir>/<name>`, after checking that `name` is one plain path component.
pub(crate) fn state_root(local_dir: &Path, name: &str) -> Result<PathBuf, StateError> {
    let bad = |reason: &str| StateError::InvalidName { name: name.to_string(), reason: reason.to_string() };
    if name.is_empty() {
        return Err(bad("must not be empty"));
    }
    if name == "." || name == ".." || name.contains(['/', '\\', '\0']) {
        return Err(bad("must be a single directory name (no '/', '\\', NUL, '.' or '..')"));
    }
    Ok(local_dir.join(name))
}

/// Exclusive use of one state directory by one open backend of this process; released on
/// drop. Keeps a second backend from wiping or sharing a live one's files.
#[derive(Debug)]
pub(crate) struct RootGuard {
    root: PathBuf,
}

static OPEN_ROOTS: std::sync::Mutex<std::collections::BTreeSet<PathBuf>> =
    std::sync::Mutex::new(std::collections::BTreeSet::new());

impl RootGuard {
    pub(crate) fn acquire(local_dir: &Path, name: &str) -> Result<RootGuard, StateError> {
        let root = state_root(local_dir, name)?;
        let root = std::path::absolute(&root).map_err(|e| StateError::io("resolve path", &root, e))?;
        let mut open = OPEN_ROOTS.lock().unwrap_or_else(|p| p.into_inner());
        if !open.insert(root.clone()) {
            return Err(StateError::InUse { path: root });
        }
        Ok(RootGuard { root })
    }
}

impl Drop for RootGuard {
    fn drop(&mut self) {
        OPEN_ROOTS.lock().unwrap_or_else(|p| p.into_inner()).remove(&self.root);
    }
}

/// `<local_dir>/<name>/snapshots`.
pub(crate) fn snapshots_dir(local_dir: &Path, name: &str) -> Result<PathBuf, StateError> {
    Ok(state_root(local_dir, name)?.join("snapshots"))
}

/// Directory name of the local snapshot of `checkpoint_id`.
pub(crate) fn snapshot_dir_name(checkpoint_id: u64) -> String {
    format!("chk-{checkpoint_id}")
}

/// Parses a `chk-<id>` directory name.
pub(crate) fn parse_snapshot_dir_name(name: &str) -> Option<u64> {
    name.strip_prefix("chk-")?.parse().ok()
}

/// Makes an empty `snapshots/chk-<id>` directory (removing a leftover one) and returns it.
pub(crate) fn fresh_snapshot_dir(local_dir: &Path, name: &str, checkpoint_id: u64) -> Result<PathBuf, StateError> {
    let parent = snapshots_dir(local_dir, name)?;
    fs::create_dir_all(&parent).map_err(|e| StateError::io("create directory", &parent, e))?;
    let dir = parent.join(snapshot_dir_name(checkpoint_id));
    remove_dir_if_exists(&dir)?;
    Ok(dir)
}

/// The regular files of `dir`, sorted by name, classified by [`FileKind::of`].
pub(crate) fn list_snapshot_files(dir: &Path) -> Result<Vec<LocalFile>, StateError> {
    let entries = fs::read_dir(dir).map_err(|e| StateError::io("list directory", dir, e))?;
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| StateError::io("list directory", dir, e))?;
        let path = entry.path();
        let meta = entry.metadata().map_err(|e| StateError::io("stat", &path, e))?;
        if !meta.is_file() {
            continue;
        }
        let name = entry
            .file_name()
            .into_string()
            .map_err(|_| StateError::corrupt(path.display(), "file name is not valid UTF-8"))?;
        files.push(LocalFile { kind: FileKind::of(&name), name, path, size: meta.len() });
    }
    files.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(files)
}

pub(crate) fn remove_dir_if_exists(dir: &Path) -> Result<(), StateError> {
    match fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(StateError::io("remove directory", dir, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_must_be_single_components() {
        assert!(state_root(Path::new("/x"), "op-1_state").is_ok());
        for bad in ["", ".", "..", "a/b", "a\\b"] {
            let err = state_root(Path::new("/x"), bad).unwrap_err();
            assert!(matches!(err, StateError::InvalidName { .. }), "{bad:?}: {err}");
        }
    }

    #[test]
    fn file_kinds_and_dir_names() {
        assert_eq!(FileKind::of("000012.sst"), FileKind::Sst);
        assert_eq!(FileKind::of("000013.blob"), FileKind::Sst);
        for meta in ["CURRENT", "MANIFEST-000005", "OPTIONS-000007", HASHMAP_SNAPSHOT_FILE] {
            assert_eq!(FileKind::of(meta), FileKind::Meta);
        }
        assert_eq!(parse_snapshot_dir_name(&snapshot_dir_name(42)), Some(42));
        assert_eq!(parse_snapshot_dir_name("chk-x"), None);
        assert_eq!(parse_snapshot_dir_name("db"), None);
    }
}
