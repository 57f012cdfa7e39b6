//! Keel's local keyed state: the local-state half of Keel's storage layer.
//!
//! A task keeps its keyed state in a [`KeyedStateBackend`] — RocksDB on local disk
//! (`state.backend: rocksdb`) or an in-memory ordered map (`hashmap`) — and at each
//! checkpoint writes a [`LocalSnapshot`], uploads it and records the result in a
//! [`SnapshotManifest`]. This crate owns:
//!
//! * the backends, their local working directories and snapshot formats
//!   ([`open_backend`], [`restore_backend`]);
//! * incremental snapshots as pure logic: [`plan_upload`] reuses the SST files the previous
//!   checkpoint already uploaded, [`deletable_after_retention`] and [`SharedRegistry`] say
//!   which remote files dropped checkpoints free;
//! * the upload/download glue over an abstract [`SnapshotRemote`] ([`upload`],
//!   [`download`], [`delete_remote_files`]);
//! * local recovery ([`LocalRecovery`]): restore from the local copy when it matches the
//!   manifest.
//!
//! It does not own remote storage (the `keel-storage` crate, through OpenDAL, implements
//! [`SnapshotRemote`]), nor where manifests are stored and when checkpoints are retained
//! (the checkpoint coordinator and the ZooKeeper stores).
//!
//! # Why a separate crate
//!
//! RocksDB is a large C++ library with a slow, libclang-dependent build. Keeping it in its
//! own crate keeps it out of every binary and test that does not need local state (the
//! dispatcher, the HA layer, the storage directory, the chaos harness): only the worker
//! links it. The build links the system `librocksdb` (see `.cargo/config.toml`).
//!
//! # Behaviour contract
//!
//! * Writes are not durable by themselves (RocksDB runs with its WAL off): durability
//!   comes from completed checkpoints. [`open_backend`] always starts empty.
//! * A snapshot is consistent: it holds every write made before [`KeyedStateBackend::snapshot`].
//! * Every new remote object gets a unique path; reused objects keep theirs. A remote file
//!   is deletable only when no retained manifest references it.
//! * Bad input is reported with what and where: a corrupt hashmap snapshot names the file
//!   and the check that failed; a bad manifest names the field and file entry.
//!
//! # Layout
//!
//! * `options` — [`BackendKind`], [`StateOptions`] (`state.*` keys)
//! * `backend/` — the trait, the RocksDB and hashmap backends, local snapshots
//! * `manifest` — [`SnapshotManifest`] and its protobuf encoding
//! * `plan` — [`plan_upload`]; `retention` — reference counting of remote files
//! * `transfer` — [`SnapshotRemote`], [`upload`], [`download`]
//! * `local_recovery` — [`LocalRecovery`]
//!
//! # Feature flags
//!
//! None. The `rocksdb` crate is pinned to `=0.20.1` without default features; the system
//! RocksDB brings its own compression libraries.

mod backend;
mod error;
mod local_recovery;
mod manifest;
mod options;
mod plan;
mod retention;
mod transfer;

pub use backend::{
    open_backend, restore_backend, FileKind, HashMapBackend, KeyedStateBackend, LocalFile, LocalSnapshot,
    RocksDbBackend, HASHMAP_SNAPSHOT_FILE,
};
pub use error::StateError;
pub use local_recovery::LocalRecovery;
pub use manifest::{ManifestFile, SnapshotManifest, MANIFEST_VERSION};
pub use options::{BackendKind, StateOptions};
pub use plan::{plan_upload, UploadPlan};
pub use retention::{deletable_after_retention, SharedRegistry};
pub use transfer::{delete_remote_files, download, upload, RemoteFuture, SnapshotRemote};
