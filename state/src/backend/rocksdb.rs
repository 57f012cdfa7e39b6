//! The RocksDB backend: one RocksDB instance per state, WAL off, snapshots through
//! RocksDB's Checkpoint API (hard links to the immutable SST files).

use std::fs;
use std::path::{Path, PathBuf};

use rocksdb::checkpoint::Checkpoint;
use rocksdb::{IteratorMode, Options, WriteOptions, DB};

use super::{
    fresh_snapshot_dir, list_snapshot_files, remove_dir_if_exists, state_root, FileKind, KeyedStateBackend,
    LocalSnapshot, RootGuard,
};
use crate::error::StateError;
use crate::options::BackendKind;

/// Keyed state in a RocksDB instance at `<local_dir>/<name>/db/`.
pub struct RocksDbBackend {
    db: DB,
    local_dir: PathBuf,
    name: String,
    db_dir: PathBuf,
    write: WriteOptions,
    _guard: RootGuard,
}

impl std::fmt::Debug for RocksDbBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RocksDbBackend").field("db_dir", &self.db_dir).finish_non_exhaustive()
    }
}

impl RocksDbBackend {
    /// Opens an empty instance, deleting a leftover working directory.
    ///
    /// # Notable errors
    /// * [`StateError::InvalidName`], [`StateError::InUse`], [`StateError::Io`],
    ///   [`StateError::RocksDb`].
    pub fn open(local_dir: &Path, name: &str) -> Result<RocksDbBackend, StateError> {
        let guard = RootGuard::acquire(local_dir, name)?;
        let db_dir = Self::fresh_db_dir(local_dir, name)?;
        Self::open_dir(local_dir, name, db_dir, true, guard)
    }

    /// Opens an instance holding the RocksDB checkpoint in `from` (left unchanged: SST
    /// files are hard-linked when `from` is on the same file system, or copied; meta files
    /// are always copied because RocksDB rewrites them).
    ///
    /// # Notable errors
    /// * [`StateError::Corrupt`] naming `from` when it holds no `CURRENT` file.
    /// * [`StateError::InvalidName`], [`StateError::InUse`], [`StateError::Io`],
    ///   [`StateError::RocksDb`].
    pub fn restore(local_dir: &Path, name: &str, from: &Path) -> Result<RocksDbBackend, StateError> {
        if !from.join("CURRENT").is_file() {
            return Err(StateError::corrupt(
                from.display(),
                "not a RocksDB snapshot: no CURRENT file (expected the files of a rocksdb checkpoint)",
            ));
        }
        let guard = RootGuard::acquire(local_dir, name)?;
        let db_dir = Self::fresh_db_dir(local_dir, name)?;
        fs::create_dir_all(&db_dir).map_err(|e| StateError::io("create directory", &db_dir, e))?;
        for file in list_snapshot_files(from)? {
            let target = db_dir.join(&file.name);
            let linked = file.kind == FileKind::Sst && fs::hard_link(&file.path, &target).is_ok();
            if !linked {
                fs::copy(&file.path, &target).map_err(|e| StateError::io("copy", &file.path, e))?;
            }
        }
        Self::open_dir(local_dir, name, db_dir, false, guard)
    }

    /// Compacts the whole key range (rewrites SST files). Exposed for tests and tools that
    /// want to see incremental snapshots after a compaction.
    pub fn compact(&mut self) {
        self.db.compact_range::<&[u8], &[u8]>(None, None);
    }

    /// The RocksDB working directory.
    pub fn db_dir(&self) -> &Path {
        &self.db_dir
    }

    fn fresh_db_dir(local_dir: &Path, name: &str) -> Result<PathBuf, StateError> {
        let root = state_root(local_dir, name)?;
        fs::create_dir_all(&root).map_err(|e| StateError::io("create directory", &root, e))?;
        let db_dir = root.join("db");
        remove_dir_if_exists(&db_dir)?;
        Ok(db_dir)
    }

    fn open_dir(
        local_dir: &Path,
        name: &str,
        db_dir: PathBuf,
        create: bool,
        guard: RootGuard,
    ) -> Result<RocksDbBackend, StateError> {
        let mut opts = Options::default();
        opts.create_if_missing(create);
        opts.set_keep_log_file_num(2);
        let db = DB::open(&opts, &db_dir).map_err(|e| StateError::rocksdb("open", &db_dir, e))?;
        let mut write = WriteOptions::default();
        // Durability comes from checkpoints; the WAL would only slow every write down.
        write.disable_wal(true);
        Ok(RocksDbBackend {
            db,
            local_dir: local_dir.to_path_buf(),
            name: name.to_string(),
            db_dir,
            write,
            _guard: guard,
        })
    }
}

impl KeyedStateBackend for RocksDbBackend {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        self.db.get(key).map_err(|e| StateError::rocksdb("get", &self.db_dir, e))
    }

    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), StateError> {
        self.db.put_opt(key, value, &self.write).map_err(|e| StateError::rocksdb("put", &self.db_dir, e))
    }

    fn delete(&mut self, key: &[u8]) -> Result<(), StateError> {
        self.db.delete_opt(key, &self.write).map_err(|e| StateError::rocksdb("delete", &self.db_dir, e))
    }

    fn for_each(&self, f: &mut dyn FnMut(&[u8], &[u8])) -> Result<(), StateError> {
        for item in self.db.iterator(IteratorMode::Start) {
            let (k, v) = item.map_err(|e| StateError::rocksdb("iterate", &self.db_dir, e))?;
            f(&k, &v);
        }
        Ok(())
    }

    fn snapshot(&mut self, checkpoint_id: u64) -> Result<LocalSnapshot, StateError> {
        // With the WAL off, everything must be in SST files before the checkpoint.
        self.db.flush().map_err(|e| StateError::rocksdb("flush", &self.db_dir, e))?;
        let dir = fresh_snapshot_dir(&self.local_dir, &self.name, checkpoint_id)?;
        let checkpoint = Checkpoint::new(&self.db).map_err(|e| StateError::rocksdb("checkpoint", &self.db_dir, e))?;
        checkpoint.create_checkpoint(&dir).map_err(|e| StateError::rocksdb("checkpoint", &dir, e))?;
        let files = list_snapshot_files(&dir)?;
        Ok(LocalSnapshot { checkpoint_id, backend: BackendKind::RocksDb, dir, files })
    }

    fn kind(&self) -> BackendKind {
        BackendKind::RocksDb
    }
}
