//! A subtask's keyed state across checkpoints: snapshot, incremental upload, manifest,
//! completion, abort, and restore (local recovery first, download otherwise).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use keel_state::{
    open_backend, plan_upload, restore_backend, upload, KeyedStateBackend, LocalRecovery, LocalSnapshot, RemoteFuture,
    SnapshotManifest, SnapshotRemote, StateError, StateOptions,
};
use keel_storage::{BlobKind, StorageDir, StorageError};

use super::layout;

/// Why reading or deleting checkpoint files failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CheckpointFilesError {
    /// The storage directory failed (the message names the operation and location; a
    /// corrupt manifest blob is [`StorageError::CorruptBlob`] naming the file).
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The manifest blob is intact but its content is not a valid manifest.
    #[error("state manifest {location}: {source}")]
    Manifest {
        /// The full location of the manifest.
        location: String,
        /// What is wrong with it.
        source: StateError,
    },
    /// A job id that cannot name a directory.
    #[error("invalid job id {job_id:?}: {reason}")]
    InvalidJobId {
        /// The job id.
        job_id: String,
        /// Why.
        reason: String,
    },
}

impl CheckpointFilesError {
    /// Whether retrying later may help (a temporary storage failure).
    pub fn is_temporary(&self) -> bool {
        matches!(self, CheckpointFilesError::Storage(e) if e.is_temporary())
    }
}

/// Reads and decodes the state manifest at `path` (as in `SubtaskSnapshot::state_manifest`,
/// relative to `checkpoints`).
///
/// # Notable errors
/// * [`CheckpointFilesError::Storage`]: missing, unreadable or corrupt blob (named).
/// * [`CheckpointFilesError::Manifest`]: a valid blob holding an invalid manifest (named).
pub async fn read_state_manifest(
    checkpoints: &StorageDir,
    path: &str,
) -> Result<SnapshotManifest, CheckpointFilesError> {
    let payload = checkpoints.read_blob(path, BlobKind::StateManifest).await?;
    SnapshotManifest::decode(&payload)
        .map_err(|source| CheckpointFilesError::Manifest { location: checkpoints.location(path), source })
}

/// [`SnapshotRemote`] over the checkpoint directory: puts are write-once.
pub(crate) struct CheckpointRemote<'a>(pub(crate) &'a StorageDir);

impl SnapshotRemote for CheckpointRemote<'_> {
    fn put<'a>(&'a self, path: &'a str, bytes: Vec<u8>) -> RemoteFuture<'a, ()> {
        Box::pin(async move { self.0.write_once(path, &bytes).await.map_err(|e| e.to_string()) })
    }

    fn get<'a>(&'a self, path: &'a str) -> RemoteFuture<'a, Vec<u8>> {
        Box::pin(async move { self.0.read(path).await.map_err(|e| e.to_string()) })
    }

    fn delete<'a>(&'a self, path: &'a str) -> RemoteFuture<'a, ()> {
        Box::pin(async move { self.0.delete(path).await.map_err(|e| e.to_string()) })
    }
}

/// A checkpoint taken but neither completed nor aborted yet.
struct Inflight {
    manifest: SnapshotManifest,
    manifest_path: String,
    /// Remote files this checkpoint uploaded (not reused from the base).
    uploaded: Vec<String>,
    /// The local snapshot, kept for local recovery.
    local: Option<LocalSnapshot>,
}

/// Identifies this subtask's files.
#[derive(Debug, Clone)]
pub(crate) struct Owner {
    pub job_id: String,
    pub subtask: u32,
    pub attempt: u64,
}

/// The keyed state of one subtask.
pub(crate) struct KeyedState {
    backend: Option<Box<dyn KeyedStateBackend>>,
    name: String,
    options: StateOptions,
    /// The manifest of the latest completed checkpoint (or the restored one): the base of
    /// incremental plans.
    base: Option<SnapshotManifest>,
    inflight: BTreeMap<u64, Inflight>,
}

/// How long a new attempt waits for the previous attempt's backend to be released.
const IN_USE_WAIT: Duration = Duration::from_secs(10);

impl KeyedState {
    /// The local state name: stable across attempts so local recovery finds its copies.
    fn state_name(owner: &Owner) -> String {
        format!("{}-subtask-{}", owner.job_id, owner.subtask)
    }

    /// Opens an empty backend, or restores the one of the manifest at `restore_from`.
    pub(crate) async fn open(
        options: &StateOptions,
        checkpoints: &StorageDir,
        owner: &Owner,
        restore_from: Option<&str>,
    ) -> Result<KeyedState, String> {
        let name = Self::state_name(owner);
        let mut me =
            KeyedState { backend: None, name, options: options.clone(), base: None, inflight: BTreeMap::new() };
        match restore_from {
            None => {
                let backend =
                    with_in_use_retry(options, &me.name, |o, n| open_backend(o.backend, &o.local_dir, n)).await?;
                me.backend = Some(backend);
            }
            Some(path) => {
                let manifest =
                    read_state_manifest(checkpoints, path).await.map_err(|e| format!("restore keyed state: {e}"))?;
                if manifest.backend != options.backend {
                    tracing::warn!(
                        manifest = %checkpoints.location(path),
                        snapshot_backend = %manifest.backend,
                        configured_backend = %options.backend,
                        "restoring keyed state with the backend that wrote the snapshot, not the configured one"
                    );
                }
                let backend = restore(options, &me.name, checkpoints, &manifest).await?;
                me.backend = Some(backend);
                me.base = Some(manifest);
            }
        }
        Ok(me)
    }

    pub(crate) fn backend_mut(&mut self) -> Option<&mut dyn KeyedStateBackend> {
        match &mut self.backend {
            Some(b) => Some(b.as_mut()),
            None => None,
        }
    }

    /// Snapshots, uploads (incrementally against the base when enabled) and writes the
    /// manifest of checkpoint `id`; returns the manifest path. On failure everything this
    /// call uploaded is deleted (best effort).
    pub(crate) async fn checkpoint(
        &mut self,
        checkpoints: &StorageDir,
        owner: &Owner,
        id: u64,
    ) -> Result<String, String> {
        // The local snapshot (a RocksDB flush + checkpoint: disk I/O) runs on a blocking
        // thread, so a large one cannot stall heartbeats and ZooKeeper pings.
        let mut backend = self.backend.take().ok_or("keyed state is closed")?;
        let (backend, snapshot) = tokio::task::spawn_blocking(move || {
            let r = backend.snapshot(id);
            (backend, r)
        })
        .await
        .map_err(|e| format!("snapshot keyed state: the snapshot thread failed: {e}"))?;
        self.backend = Some(backend);
        let local = snapshot.map_err(|e| format!("snapshot keyed state: {e}"))?;
        let plan = plan_upload(
            &local,
            self.base.as_ref(),
            self.options.incremental,
            &layout::shared_prefix(&owner.job_id),
            &layout::exclusive_prefix(&owner.job_id, id, owner.subtask, owner.attempt),
        );
        let remote = CheckpointRemote(checkpoints);
        let uploaded: Vec<String> = plan.upload.iter().map(|(_, p)| p.clone()).collect();
        let manifest = match upload(&plan, &remote).await {
            Ok(m) => m,
            Err(e) => {
                discard_local(local);
                return Err(format!("upload keyed state: {e}"));
            }
        };
        let manifest_path = layout::manifest_path(&owner.job_id, id, owner.subtask, owner.attempt);
        if let Err(e) = checkpoints.write_blob(&manifest_path, BlobKind::StateManifest, &manifest.encode()).await {
            let _ = keel_state::delete_remote_files(&uploaded, &remote).await;
            discard_local(local);
            return Err(format!("write state manifest: {e}"));
        }
        tracing::debug!(
            checkpoint = id,
            uploaded = plan.upload.len(),
            reused = plan.reuse.len(),
            bytes = plan.upload_bytes(),
            "keyed state uploaded"
        );
        let local = if self.options.local_recovery {
            Some(local)
        } else {
            discard_local(local);
            None
        };
        self.inflight.insert(id, Inflight { manifest, manifest_path: manifest_path.clone(), uploaded, local });
        Ok(manifest_path)
    }

    /// Checkpoint `id` completed: it becomes the incremental base; older in-flight ones are
    /// subsumed (their remote files stay: the coordinator may retain them); local snapshots
    /// older than `id` go.
    pub(crate) fn completed(&mut self, id: u64) {
        if let Some(done) = self.inflight.remove(&id) {
            self.base = Some(done.manifest);
            if let Some(local) = done.local {
                // Kept on disk for local recovery; LocalRecovery finds it by id.
                drop(local);
            }
        }
        let older: Vec<u64> = self.inflight.range(..id).map(|(k, _)| *k).collect();
        for k in older {
            if let Some(sub) = self.inflight.remove(&k) {
                if let Some(local) = sub.local {
                    discard_local(local);
                }
            }
        }
        if let Err(e) = LocalRecovery::checkpoint_completed(&self.options, &self.name, id) {
            tracing::warn!(error = %e, "could not prune local snapshots");
        }
    }

    /// Checkpoint `id` will never complete: delete what it uploaded and its manifest.
    pub(crate) async fn aborted(&mut self, checkpoints: &StorageDir, id: u64) {
        let Some(gone) = self.inflight.remove(&id) else { return };
        let mut paths = gone.uploaded;
        paths.push(gone.manifest_path);
        if let Err(e) = keel_state::delete_remote_files(&paths, &CheckpointRemote(checkpoints)).await {
            tracing::warn!(checkpoint = id, error = %e, "could not delete the files of an aborted checkpoint");
        }
        if let Some(local) = gone.local {
            discard_local(local);
        }
    }

    /// The subtask finished: drop the backend and every local file of this state.
    pub(crate) fn close_and_remove_local(mut self) {
        self.backend = None;
        for (_, f) in std::mem::take(&mut self.inflight) {
            if let Some(local) = f.local {
                discard_local(local);
            }
        }
        let root = self.options.local_dir.join(&self.name);
        if let Err(e) = std::fs::remove_dir_all(&root) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::debug!(dir = %root.display(), error = %e, "could not remove local state");
            }
        }
    }
}

/// Runs `f` (opening or restoring a backend: disk I/O) on a blocking thread, retrying while
/// the previous attempt still holds the state (bounded by [`IN_USE_WAIT`]).
async fn with_in_use_retry<T: Send + 'static>(
    options: &StateOptions,
    name: &str,
    f: impl Fn(&StateOptions, &str) -> Result<T, StateError> + Send + Sync + 'static,
) -> Result<T, String> {
    let deadline = tokio::time::Instant::now() + IN_USE_WAIT;
    let f = std::sync::Arc::new(f);
    loop {
        let (f2, o, n) = (f.clone(), options.clone(), name.to_string());
        let result = tokio::task::spawn_blocking(move || f2(&o, &n))
            .await
            .map_err(|e| format!("open keyed state: the opening thread failed: {e}"))?;
        match result {
            Err(StateError::InUse { .. }) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => return Err(format!("open keyed state: {e}")),
            Ok(v) => return Ok(v),
        }
    }
}

async fn restore(
    options: &StateOptions,
    name: &str,
    checkpoints: &StorageDir,
    manifest: &SnapshotManifest,
) -> Result<Box<dyn KeyedStateBackend>, String> {
    let local_dir = options.local_dir.clone();
    if options.local_recovery {
        if let Some(dir) = LocalRecovery::find(&local_dir, name, manifest) {
            let kind = manifest.backend;
            let (ld, d) = (local_dir.clone(), dir.clone());
            match with_in_use_retry(options, name, move |_, n| restore_backend(kind, &ld, n, &d)).await {
                Ok(b) => {
                    tracing::info!(checkpoint = manifest.checkpoint_id, dir = %dir.display(), "keyed state restored from the local copy");
                    return Ok(b);
                }
                Err(e) => tracing::warn!(error = %e, "local recovery failed; downloading the checkpoint instead"),
            }
        }
    }
    let into: PathBuf = local_dir.join(name).join(format!("restore-chk-{}", manifest.checkpoint_id));
    keel_state::download(manifest, &CheckpointRemote(checkpoints), &into)
        .await
        .map_err(|e| format!("restore keyed state of checkpoint {}: {e}", manifest.checkpoint_id))?;
    let kind = manifest.backend;
    let (ld, into2) = (local_dir.clone(), into.clone());
    let result = with_in_use_retry(options, name, move |_, n| restore_backend(kind, &ld, n, &into2)).await;
    let into2 = into.clone();
    let _ = tokio::task::spawn_blocking(move || {
        if let Err(e) = std::fs::remove_dir_all(&into2) {
            tracing::debug!(dir = %into2.display(), error = %e, "could not remove the download directory");
        }
    })
    .await;
    result.map_err(|e| format!("restore keyed state of checkpoint {}: {e}", manifest.checkpoint_id))
}

fn discard_local(local: LocalSnapshot) {
    let dir = local.dir.clone();
    if let Err(e) = local.discard() {
        tracing::debug!(dir = %dir.display(), error = %e, "could not remove a local snapshot");
    }
}
