//! Local recovery: keep the local snapshot of the latest completed checkpoint so that a
//! task restarted on the same worker restores from local disk instead of downloading.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use crate::backend::{
    list_snapshot_files, parse_snapshot_dir_name, remove_dir_if_exists, snapshot_dir_name, snapshots_dir,
};
use crate::error::StateError;
use crate::manifest::SnapshotManifest;
use crate::options::StateOptions;

/// Finding and pruning local snapshots under `<local_dir>/<name>/snapshots/`.
#[derive(Debug, Clone, Copy)]
pub struct LocalRecovery;

impl LocalRecovery {
    /// The local snapshot directory of `manifest`'s checkpoint, if it holds exactly the
    /// manifest's files (same names, same sizes), so a restore can skip the download.
    ///
    /// Sizes catch truncation, not every corruption: the hashmap file carries a checksum,
    /// and a restore that fails on a local copy should fall back to [`crate::download`].
    pub fn find(local_dir: &Path, name: &str, manifest: &SnapshotManifest) -> Option<PathBuf> {
        let dir = snapshots_dir(local_dir, name).ok()?.join(snapshot_dir_name(manifest.checkpoint_id));
        let local: BTreeSet<(String, u64)> =
            list_snapshot_files(&dir).ok()?.into_iter().map(|f| (f.name, f.size)).collect();
        let wanted: BTreeSet<(String, u64)> = manifest.files.iter().map(|f| (f.name.clone(), f.size)).collect();
        (local == wanted).then_some(dir)
    }

    /// Checkpoint ids of the local snapshots present, ascending.
    ///
    /// # Notable errors
    /// * [`StateError::InvalidName`], [`StateError::Io`] when the directory cannot be listed.
    pub fn local_snapshots(local_dir: &Path, name: &str) -> Result<Vec<u64>, StateError> {
        let dir = snapshots_dir(local_dir, name)?;
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(StateError::io("list directory", &dir, e)),
        };
        let mut ids = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| StateError::io("list directory", &dir, e))?;
            if let Some(id) = entry.file_name().to_str().and_then(parse_snapshot_dir_name) {
                ids.push(id);
            }
        }
        ids.sort_unstable();
        Ok(ids)
    }

    /// Removes every local snapshot older than `checkpoint_id`; keeps that one and newer
    /// ones (snapshots of checkpoints still in flight). Returns the removed ids.
    ///
    /// # Notable errors
    /// * [`StateError::InvalidName`], [`StateError::Io`].
    pub fn retain_only(local_dir: &Path, name: &str, checkpoint_id: u64) -> Result<Vec<u64>, StateError> {
        Self::remove_where(local_dir, name, |id| id < checkpoint_id)
    }

    /// Removes every local snapshot. Returns the removed ids.
    ///
    /// # Notable errors
    /// * [`StateError::InvalidName`], [`StateError::Io`].
    pub fn discard_all(local_dir: &Path, name: &str) -> Result<Vec<u64>, StateError> {
        Self::remove_where(local_dir, name, |_| true)
    }

    /// What to do once `checkpoint_id` completed: with `state.backend.local-recovery` on,
    /// [`LocalRecovery::retain_only`] it; off, remove it and everything older (it was only
    /// needed for the upload). Returns the removed ids.
    ///
    /// # Notable errors
    /// * [`StateError::InvalidName`], [`StateError::Io`].
    pub fn checkpoint_completed(
        options: &StateOptions,
        name: &str,
        checkpoint_id: u64,
    ) -> Result<Vec<u64>, StateError> {
        if options.local_recovery {
            Self::retain_only(&options.local_dir, name, checkpoint_id)
        } else {
            Self::remove_where(&options.local_dir, name, |id| id <= checkpoint_id)
        }
    }

    fn remove_where(local_dir: &Path, name: &str, remove: impl Fn(u64) -> bool) -> Result<Vec<u64>, StateError> {
        let dir = snapshots_dir(local_dir, name)?;
        let mut removed = Vec::new();
        for id in Self::local_snapshots(local_dir, name)? {
            if remove(id) {
                remove_dir_if_exists(&dir.join(snapshot_dir_name(id)))?;
                removed.push(id);
            }
        }
        Ok(removed)
    }
}
