//! The checkpoint store: what a job's checkpoints and savepoints consist of in the
//! checkpoint directory, in one place (issue 7's "one checkpoint store"). It owns the metadata
//! blobs (where they go, writing, reading and validating them), whether a checkpoint is
//! restorable (its metadata, every subtask's state manifest and files, the sink parts it
//! lists), savepoints (written self-contained, imported into a job's directory), and deleting
//! files ([`discard_checkpoints`], [`discard_job`]). The paths of the files themselves come from
//! [`super::layout`]; what is *stored as the commit point* (the pointer) is the job stores'
//! business (`keel_ha::stores`).
//!
//! Every answer that decides a job's fate distinguishes a definite one (missing, corrupt:
//! [`Unusable::Definite`]) from a failure to get one (I/O, outage: [`Unusable::Unknown`]): only
//! definite answers may fail a job for lack of a checkpoint.

use keel_proto::v1::CheckpointMetadata;
use keel_storage::{BlobKind, StorageDir, StorageError, StorageOptions};
use prost::Message;

use super::discard::{discard_checkpoints, discard_job, DiscardReport};
use super::state::{read_state_manifest, CheckpointFilesError};
use crate::spec::JobSpec;

/// Why a checkpoint (or savepoint) cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unusable {
    /// A definite answer: something is missing or corrupt.
    Definite(String),
    /// No answer could be had (an I/O error, an outage): ask again later.
    Unknown(String),
}

impl std::fmt::Display for Unusable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unusable::Definite(s) | Unusable::Unknown(s) => f.write_str(s),
        }
    }
}

impl From<Unusable> for String {
    fn from(u: Unusable) -> String {
        u.to_string()
    }
}

/// Whether a storage error is a definite answer about the data (missing or corrupt) rather
/// than a failure to get an answer.
pub fn definite(e: &StorageError) -> bool {
    matches!(e, StorageError::NotFound { .. } | StorageError::CorruptBlob { .. } | StorageError::InvalidPath { .. })
}

/// [`definite`] for the errors of checkpoint files (a manifest that does not parse is definite).
pub fn definite_files_error(e: &CheckpointFilesError) -> bool {
    match e {
        CheckpointFilesError::Storage(s) => definite(s),
        _ => true,
    }
}

fn classify(e: StorageError) -> Unusable {
    if definite(&e) {
        Unusable::Definite(e.to_string())
    } else {
        Unusable::Unknown(e.to_string())
    }
}

/// Reads and validates a metadata blob of `kind` (checkpoint or savepoint) at `path` in `dir`.
pub async fn read_metadata(dir: &StorageDir, path: &str, kind: BlobKind) -> Result<CheckpointMetadata, Unusable> {
    let bytes = dir.read_blob(path, kind).await.map_err(classify)?;
    let meta = CheckpointMetadata::decode(bytes.as_slice())
        .map_err(|e| Unusable::Definite(format!("{}: not checkpoint metadata ({e})", dir.location(path))))?;
    if meta.format_version != keel_proto::FORMAT_VERSION {
        return Err(Unusable::Definite(format!(
            "{}: metadata format version {} (expected {})",
            dir.location(path),
            meta.format_version,
            keel_proto::FORMAT_VERSION
        )));
    }
    if meta.subtasks.len() != meta.parallelism as usize {
        return Err(Unusable::Definite(format!(
            "{}: {} subtask snapshots for parallelism {}",
            dir.location(path),
            meta.subtasks.len(),
            meta.parallelism
        )));
    }
    Ok(meta)
}

/// Copies one subtask's state (manifest + files) from `from` to `to` under `prefix`; returns
/// the new manifest path.
async fn copy_state(from: &StorageDir, manifest_path: &str, to: &StorageDir, prefix: &str) -> Result<String, String> {
    let mut manifest = read_state_manifest(from, manifest_path).await.map_err(|e| e.to_string())?;
    for f in manifest.files.iter_mut() {
        let bytes = from.read(&f.remote_path).await.map_err(|e| e.to_string())?;
        let dest = format!("{prefix}/{}", f.name);
        to.write_once(&dest, &bytes).await.map_err(|e| e.to_string())?;
        f.remote_path = dest;
        f.shared = false;
    }
    let dest = format!("{prefix}/{}", keel_storage::unique_name("manifest"));
    to.write_blob(&dest, BlobKind::StateManifest, &manifest.encode()).await.map_err(|e| e.to_string())?;
    Ok(dest)
}

/// A job's checkpoint directory (`state.checkpoints.dir`) and how to reach other storage
/// (sinks, savepoint targets).
#[derive(Debug, Clone)]
pub struct CheckpointStore {
    dir: StorageDir,
    options: StorageOptions,
}

impl CheckpointStore {
    pub fn new(dir: StorageDir, options: StorageOptions) -> Self {
        Self { dir, options }
    }

    pub fn dir(&self) -> &StorageDir {
        &self.dir
    }

    /// The full location of `path` (for messages and the REST API).
    pub fn location(&self, path: &str) -> String {
        self.dir.location(path)
    }

    /// Writes checkpoint `meta` of `job_id` under a new unique name
    /// (`<job>/chk-<id>/<unique>.metadata`) and returns its path. A failed write leaves
    /// nothing behind that a pointer could refer to.
    pub async fn write_metadata(&self, job_id: &str, meta: &CheckpointMetadata) -> Result<String, StorageError> {
        let path = format!("{job_id}/chk-{}/{}.metadata", meta.checkpoint_id, keel_storage::unique_name("_metadata"));
        if let Err(e) = self.dir.write_blob(&path, BlobKind::CheckpointMetadata, &meta.encode_to_vec()).await {
            let _ = self.dir.delete(&path).await;
            return Err(e);
        }
        Ok(path)
    }

    /// Deletes a metadata blob that never became visible (its pointer write was refused).
    pub async fn delete_metadata(&self, path: &str) {
        let _ = self.dir.delete(path).await;
    }

    /// Reads and validates checkpoint metadata at `path`.
    pub async fn read_metadata(&self, path: &str) -> Result<CheckpointMetadata, Unusable> {
        read_metadata(&self.dir, path, BlobKind::CheckpointMetadata).await
    }

    /// Whether checkpoint `meta` of `job_id` can be restored: every subtask's state manifest
    /// reads back and every file it lists exists, and every sink part it lists is present.
    pub async fn check_restorable(
        &self,
        spec: &JobSpec,
        job_id: &str,
        meta: &CheckpointMetadata,
    ) -> Result<(), Unusable> {
        for s in &meta.subtasks {
            if s.state_manifest.is_empty() {
                continue;
            }
            let m = read_state_manifest(&self.dir, &s.state_manifest).await.map_err(|e| {
                if definite_files_error(&e) {
                    Unusable::Definite(e.to_string())
                } else {
                    Unusable::Unknown(e.to_string())
                }
            })?;
            for f in &m.files {
                if !self.dir.exists(&f.remote_path).await.map_err(classify)? {
                    return Err(Unusable::Definite(format!(
                        "subtask {} state file {} listed in {} is missing",
                        s.subtask,
                        self.dir.location(&f.remote_path),
                        self.dir.location(&s.state_manifest)
                    )));
                }
            }
        }
        match super::sink::check_sink_parts(spec, &self.options, job_id, &meta.subtasks).await {
            Ok(()) => Ok(()),
            Err(e) if e.is_temporary() || !definite_files_error(&e) => {
                Err(Unusable::Unknown(format!("sink parts: {e}")))
            }
            Err(e) => Err(Unusable::Definite(format!("sink part missing: {e}"))),
        }
    }

    /// Imports the savepoint at `uri` for `job_id`: its metadata (it must have `parallelism`)
    /// with each subtask's state copied into this job's directory (`<job>/restored/...`), so
    /// tasks always restore from here; sink parts it lists were committed by the job that
    /// took it and are dropped.
    pub async fn import_savepoint(
        &self,
        uri: &str,
        job_id: &str,
        parallelism: u32,
    ) -> Result<CheckpointMetadata, String> {
        let uri = uri.trim_end_matches('/');
        let sp = StorageDir::open(uri, &self.options).map_err(|e| e.to_string())?;
        let meta = read_metadata(&sp, "_metadata", BlobKind::Savepoint).await?;
        if meta.parallelism != parallelism {
            return Err(format!(
                "the savepoint has parallelism {}, the job spec {parallelism}; rescaling is not supported",
                meta.parallelism
            ));
        }
        let mut subtasks = Vec::new();
        for s in &meta.subtasks {
            let mut s = s.clone();
            s.pending.clear();
            if !s.state_manifest.is_empty() {
                let prefix = format!("{job_id}/restored/subtask-{}", s.subtask);
                s.state_manifest = copy_state(&sp, &s.state_manifest, &self.dir, &prefix).await?;
            }
            subtasks.push(s);
        }
        Ok(CheckpointMetadata { subtasks, ..meta })
    }

    /// Writes a self-contained savepoint of checkpoint `meta` under `target`: its state files
    /// copied and a `_metadata` blob (kind Savepoint). Returns the savepoint's URI.
    pub async fn write_savepoint(&self, meta: &CheckpointMetadata, target: &str) -> Result<String, String> {
        let name = format!("savepoint-{}-{}", &meta.job_id[..meta.job_id.len().min(8)], meta.checkpoint_id);
        let root = format!("{}/{name}", target.trim_end_matches('/'));
        let sp = StorageDir::open(&root, &self.options).map_err(|e| e.to_string())?;
        let mut subtasks = Vec::new();
        for s in &meta.subtasks {
            let mut s = s.clone();
            if !s.state_manifest.is_empty() {
                s.state_manifest =
                    copy_state(&self.dir, &s.state_manifest, &sp, &format!("subtask-{}", s.subtask)).await?;
            }
            subtasks.push(s);
        }
        let sp_meta = CheckpointMetadata { subtasks, savepoint: true, ..meta.clone() };
        sp.write_blob("_metadata", BlobKind::Savepoint, &sp_meta.encode_to_vec()).await.map_err(|e| e.to_string())?;
        Ok(sp.uri().to_string())
    }

    /// Deletes what `dropped` checkpoints of `job_id` used and no `retained` one does (see
    /// [`discard_checkpoints`]).
    pub async fn discard(
        &self,
        job_id: &str,
        dropped: &[CheckpointMetadata],
        retained: &[CheckpointMetadata],
    ) -> Result<DiscardReport, CheckpointFilesError> {
        discard_checkpoints(&self.dir, job_id, dropped, retained).await
    }

    /// Deletes every checkpoint file of `job_id` (see [`discard_job`]).
    pub async fn discard_job(&self, job_id: &str) -> Result<(), CheckpointFilesError> {
        discard_job(&self.dir, job_id).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(job: &str, id: u64, parallelism: u32) -> CheckpointMetadata {
        CheckpointMetadata {
            format_version: keel_proto::FORMAT_VERSION,
            job_id: job.into(),
            checkpoint_id: id,
            parallelism,
            subtasks: (0..parallelism)
                .map(|i| keel_proto::v1::SubtaskSnapshot { subtask: i, ..Default::default() })
                .collect(),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn metadata_round_trips_and_bad_metadata_is_definitely_unusable() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = StorageDir::open(&format!("file://{}", tmp.path().display()), &StorageOptions::default()).unwrap();
        let store = CheckpointStore::new(dir.clone(), StorageOptions::default());
        let path = store.write_metadata("j1", &meta("j1", 7, 2)).await.unwrap();
        assert!(path.starts_with("j1/chk-7/") && path.ends_with(".metadata"), "{path}");
        assert_eq!(store.read_metadata(&path).await.unwrap(), meta("j1", 7, 2));

        // Missing: definite. Wrong shape: definite, naming the blob.
        assert!(matches!(store.read_metadata("j1/chk-8/none.metadata").await, Err(Unusable::Definite(_))));
        let mut lying = meta("j1", 9, 2);
        lying.subtasks.pop();
        let p = "j1/chk-9/x.metadata";
        dir.write_blob(p, BlobKind::CheckpointMetadata, &lying.encode_to_vec()).await.unwrap();
        match store.read_metadata(p).await {
            Err(Unusable::Definite(e)) => assert!(e.contains("1 subtask snapshots for parallelism 2"), "{e}"),
            other => panic!("{other:?}"),
        }
        // A savepoint is not a checkpoint: the blob kind is checked.
        let sp = "j1/chk-10/sp.metadata";
        dir.write_blob(sp, BlobKind::Savepoint, &meta("j1", 10, 1).encode_to_vec()).await.unwrap();
        assert!(matches!(store.read_metadata(sp).await, Err(Unusable::Definite(_))));
    }

    #[tokio::test]
    async fn a_savepoint_round_trips_and_a_rescale_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let uri = format!("file://{}/cp", tmp.path().display());
        let store = CheckpointStore::new(
            StorageDir::open(&uri, &StorageOptions::default()).unwrap(),
            StorageOptions::default(),
        );
        let target = format!("file://{}/sp", tmp.path().display());
        let at = store.write_savepoint(&meta("job-abcdefgh-1", 4, 2), &target).await.unwrap();
        assert!(at.ends_with("/sp/savepoint-job-abcd-4"), "{at}");
        let imported = store.import_savepoint(&at, "job-2", 2).await.unwrap();
        assert_eq!(imported.checkpoint_id, 4);
        assert!(imported.savepoint);
        let e = store.import_savepoint(&at, "job-2", 3).await.unwrap_err();
        assert!(e.contains("rescaling is not supported"), "{e}");
    }
}
