//! Backend kinds and the `state.*` configuration this crate reads.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::error::StateError;

/// Which keyed state backend holds a task's state (`state.backend`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BackendKind {
    /// RocksDB on local disk (`rocksdb`): state may exceed memory; snapshots are
    /// RocksDB checkpoints whose SST files can be shared between checkpoints.
    RocksDb,
    /// An in-memory ordered map (`hashmap`): fastest, bounded by memory; every snapshot
    /// is one full file.
    HashMap,
}

impl BackendKind {
    /// Every kind, in the order they are listed in errors.
    pub const ALL: [BackendKind; 2] = [BackendKind::RocksDb, BackendKind::HashMap];

    /// The configuration value naming this kind.
    pub fn as_str(self) -> &'static str {
        match self {
            BackendKind::RocksDb => "rocksdb",
            BackendKind::HashMap => "hashmap",
        }
    }

    /// Parses a `state.backend` value (`rocksdb` or `hashmap`, case-insensitive,
    /// surrounding blanks ignored).
    ///
    /// # Notable errors
    /// * [`StateError::InvalidConfig`] naming the key, the value and the accepted values.
    pub fn parse(value: &str) -> Result<BackendKind, StateError> {
        let v = value.trim();
        BackendKind::ALL.into_iter().find(|k| k.as_str().eq_ignore_ascii_case(v)).ok_or_else(|| {
            StateError::InvalidConfig {
                key: StateOptions::KEY_BACKEND.to_string(),
                value: value.to_string(),
                expected: "one of: rocksdb, hashmap".to_string(),
            }
        })
    }
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The `state.*` settings of one worker, with Flink's defaults.
///
/// The `conf` crate parses the file; this type is what the state layer needs from it.
/// Defaults: backend `hashmap`, local directory `<first io.tmp.dirs entry>/keel-state`,
/// incremental snapshots off, local recovery off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateOptions {
    /// `state.backend`.
    pub backend: BackendKind,
    /// `state.backend.rocksdb.localdir`: where working directories and local snapshots live
    /// (both backends use it for their local snapshots).
    pub local_dir: PathBuf,
    /// `state.backend.incremental`: upload only SST files the previous checkpoint lacks.
    pub incremental: bool,
    /// `state.backend.local-recovery`: keep the latest completed local snapshot so a restore
    /// on the same worker can skip the download.
    pub local_recovery: bool,
}

impl StateOptions {
    /// Key of [`StateOptions::backend`].
    pub const KEY_BACKEND: &'static str = "state.backend";
    /// Key of [`StateOptions::local_dir`].
    pub const KEY_LOCAL_DIR: &'static str = "state.backend.rocksdb.localdir";
    /// Key of [`StateOptions::incremental`].
    pub const KEY_INCREMENTAL: &'static str = "state.backend.incremental";
    /// Key of [`StateOptions::local_recovery`].
    pub const KEY_LOCAL_RECOVERY: &'static str = "state.backend.local-recovery";
    /// Name of the directory created under `io.tmp.dirs` when no local dir is configured.
    pub const DEFAULT_LOCAL_SUBDIR: &'static str = "keel-state";

    /// The defaults, with the local directory under `io_tmp_dir` (the first `io.tmp.dirs`
    /// entry).
    pub fn new(io_tmp_dir: &Path) -> StateOptions {
        StateOptions {
            backend: BackendKind::HashMap,
            local_dir: io_tmp_dir.join(Self::DEFAULT_LOCAL_SUBDIR),
            incremental: false,
            local_recovery: false,
        }
    }

    /// Sets the backend kind (default `hashmap`).
    pub fn with_backend(mut self, backend: BackendKind) -> Self {
        self.backend = backend;
        self
    }

    /// Sets the local directory (default `<io.tmp.dirs>/keel-state`).
    pub fn with_local_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.local_dir = dir.into();
        self
    }

    /// Turns incremental snapshots on or off (default off).
    pub fn with_incremental(mut self, incremental: bool) -> Self {
        self.incremental = incremental;
        self
    }

    /// Turns local recovery on or off (default off).
    pub fn with_local_recovery(mut self, local_recovery: bool) -> Self {
        self.local_recovery = local_recovery;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_accepts_both_kinds_and_names_the_key_on_error() {
        assert_eq!(BackendKind::parse("rocksdb").unwrap(), BackendKind::RocksDb);
        assert_eq!(BackendKind::parse(" HashMap ").unwrap(), BackendKind::HashMap);
        let err = BackendKind::parse("rocks").unwrap_err();
        assert_eq!(err.to_string(), "invalid value \"rocks\" for `state.backend`: expected one of: rocksdb, hashmap");
        for k in BackendKind::ALL {
            assert_eq!(BackendKind::parse(&k.to_string()).unwrap(), k);
        }
    }

    #[test]
    fn defaults_follow_flink() {
        let o = StateOptions::new(Path::new("/tmp"));
        assert_eq!(o.backend, BackendKind::HashMap);
        assert_eq!(o.local_dir, Path::new("/tmp/keel-state"));
        assert!(!o.incremental && !o.local_recovery);
        let o = o.with_backend(BackendKind::RocksDb).with_incremental(true).with_local_dir("/data");
        assert_eq!((o.backend, o.incremental, o.local_dir.as_path()), (BackendKind::RocksDb, true, Path::new("/data")));
    }
}
