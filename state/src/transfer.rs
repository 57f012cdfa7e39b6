//! Moving snapshots to and from remote storage, over an abstract remote so the storage
//! crate (OpenDAL) can plug in without this crate depending on it.

use std::future::Future;
use std::path::Path;
use std::pin::Pin;

use crate::backend::{list_snapshot_files, remove_dir_if_exists, FileKind, LocalSnapshot};
use crate::error::StateError;
use crate::manifest::{ManifestFile, SnapshotManifest};
use crate::plan::UploadPlan;

/// The future a [`SnapshotRemote`] method returns; errors are the store's message.
pub type RemoteFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, String>> + Send + 'a>>;

/// Remote storage as the state layer needs it: whole-object put, get and delete by path.
///
/// Implementations should make `put` write-once (S3 `if_not_exists`, fs `create_new`):
/// [`plan_upload`](crate::plan_upload) gives every new object a unique path, so an existing
/// object means a bug or a zombie writer, never a legitimate overwrite.
pub trait SnapshotRemote: Send + Sync {
    /// Stores `bytes` at `path`.
    fn put<'a>(&'a self, path: &'a str, bytes: Vec<u8>) -> RemoteFuture<'a, ()>;
    /// Reads the whole object at `path`.
    fn get<'a>(&'a self, path: &'a str) -> RemoteFuture<'a, Vec<u8>>;
    /// Deletes the object at `path`; deleting a missing object should succeed.
    fn delete<'a>(&'a self, path: &'a str) -> RemoteFuture<'a, ()>;
}

/// Carries out `plan`: uploads its files one after another and returns the manifest of
/// the checkpoint (reused + uploaded files, sorted by name).
///
/// The manifest is not stored anywhere: the caller writes it (through the storage crate's
/// checksummed blob format) and makes it visible through a guarded ZooKeeper pointer. On
/// failure, the files this call already uploaded are deleted, best effort.
///
/// # Notable errors
/// * [`StateError::Io`] when a local file cannot be read.
/// * [`StateError::Corrupt`] naming the local file when its size differs from the snapshot
///   listing (something changed the snapshot directory).
/// * [`StateError::Remote`] naming the remote path when a put fails (temporary).
pub async fn upload(plan: &UploadPlan, remote: &dyn SnapshotRemote) -> Result<SnapshotManifest, StateError> {
    let mut done: Vec<&str> = Vec::with_capacity(plan.upload.len());
    let mut files = plan.reuse.clone();
    for (file, remote_path) in &plan.upload {
        let result = async {
            let bytes = tokio::fs::read(&file.path).await.map_err(|e| StateError::io("read", &file.path, e))?;
            if bytes.len() as u64 != file.size {
                return Err(StateError::corrupt(
                    file.path.display(),
                    format!("changed since the snapshot: listed {} bytes, read {}", file.size, bytes.len()),
                ));
            }
            remote.put(remote_path, bytes).await.map_err(|message| StateError::Remote {
                op: "put",
                path: remote_path.clone(),
                message,
            })
        }
        .await;
        if let Err(err) = result {
            for path in done {
                let _ = remote.delete(path).await;
            }
            return Err(err);
        }
        done.push(remote_path);
        files.push(ManifestFile {
            name: file.name.clone(),
            remote_path: remote_path.clone(),
            size: file.size,
            shared: plan.incremental && file.kind == FileKind::Sst,
        });
    }
    files.sort();
    let manifest = SnapshotManifest { checkpoint_id: plan.checkpoint_id, backend: plan.backend, files };
    manifest.validate()?;
    Ok(manifest)
}

/// Downloads every file of `manifest` into `into_dir` (replaced if it exists) and returns
/// the result as a local snapshot, ready for [`restore_backend`](crate::restore_backend).
///
/// # Notable errors
/// * [`StateError::Manifest`] when the manifest fails validation (unsafe file names).
/// * [`StateError::Remote`] naming the remote path when a get fails (temporary).
/// * [`StateError::Corrupt`] naming the remote path when its size differs from the
///   manifest: fall back to an older retained checkpoint.
/// * [`StateError::Io`] when `into_dir` cannot be written.
pub async fn download(
    manifest: &SnapshotManifest,
    remote: &dyn SnapshotRemote,
    into_dir: &Path,
) -> Result<LocalSnapshot, StateError> {
    manifest.validate()?;
    remove_dir_if_exists(into_dir)?;
    tokio::fs::create_dir_all(into_dir).await.map_err(|e| StateError::io("create directory", into_dir, e))?;
    for f in &manifest.files {
        let bytes = remote.get(&f.remote_path).await.map_err(|message| StateError::Remote {
            op: "get",
            path: f.remote_path.clone(),
            message,
        })?;
        if bytes.len() as u64 != f.size {
            return Err(StateError::corrupt(
                &f.remote_path,
                format!("{} bytes, the manifest of checkpoint {} says {}", bytes.len(), manifest.checkpoint_id, f.size),
            ));
        }
        let path = into_dir.join(&f.name);
        tokio::fs::write(&path, bytes).await.map_err(|e| StateError::io("write", &path, e))?;
    }
    let files = list_snapshot_files(into_dir)?;
    Ok(LocalSnapshot {
        checkpoint_id: manifest.checkpoint_id,
        backend: manifest.backend,
        dir: into_dir.to_path_buf(),
        files,
    })
}

/// Deletes `paths` (from [`deletable_after_retention`](crate::deletable_after_retention) or
/// [`SharedRegistry::release`](crate::SharedRegistry::release)), trying every path even
/// after a failure.
///
/// # Notable errors
/// * [`StateError::Remote`] for the first path whose delete failed (temporary).
pub async fn delete_remote_files(paths: &[String], remote: &dyn SnapshotRemote) -> Result<(), StateError> {
    let mut first = None;
    for path in paths {
        if let Err(message) = remote.delete(path).await {
            first.get_or_insert(StateError::Remote { op: "delete", path: path.clone(), message });
        }
    }
    first.map_or(Ok(()), Err)
}
