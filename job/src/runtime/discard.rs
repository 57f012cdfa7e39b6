//! Deleting checkpoint files: when retention drops checkpoints, and when a job ends.

use std::collections::BTreeSet;

use keel_proto::v1::CheckpointMetadata;
use keel_state::{deletable_after_retention, SnapshotManifest};
use keel_storage::{StorageDir, StorageOptions};

use super::layout;
use super::state::{read_state_manifest, CheckpointFilesError};
use crate::spec::{JobSpec, SinkSpec};

/// What [`discard_checkpoints`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DiscardReport {
    /// Paths deleted (relative to the checkpoint directory), sorted.
    pub deleted: Vec<String>,
    /// Manifests of dropped checkpoints that could not be read (missing or corrupt): their
    /// exclusive files were deleted, their shared files (if any) stay until the job's
    /// files are discarded.
    pub unreadable: Vec<String>,
}

fn check(job_id: &str) -> Result<(), CheckpointFilesError> {
    layout::check_job_id(job_id)
        .map_err(|reason| CheckpointFilesError::InvalidJobId { job_id: job_id.to_string(), reason })
}

/// Deletes the files of `dropped` checkpoints of `job_id` that no `retained` checkpoint
/// uses: each dropped checkpoint's exclusive files (everything under `<job>/chk-<id>/`, all
/// attempts, unless a retained checkpoint refers to it) and the shared SST files only
/// dropped checkpoints reference (reference counting through
/// [`keel_state::deletable_after_retention`]).
///
/// Call it after the retained set is durable (the ZooKeeper pointers of `retained` written,
/// those of `dropped` removed). Every retained manifest is read first: if one cannot be
/// read, nothing is deleted (what it references is unknown).
///
/// # Notable errors
/// * [`CheckpointFilesError::InvalidJobId`].
/// * [`CheckpointFilesError::Storage`] / [`CheckpointFilesError::Manifest`] for a retained
///   manifest that cannot be read (nothing deleted), or the first failed list/delete (the
///   other deletions were still tried).
pub async fn discard_checkpoints(
    checkpoints: &StorageDir,
    job_id: &str,
    dropped: &[CheckpointMetadata],
    retained: &[CheckpointMetadata],
) -> Result<DiscardReport, CheckpointFilesError> {
    check(job_id)?;
    let mut in_use: BTreeSet<String> = BTreeSet::new();
    let mut retained_manifests: Vec<SnapshotManifest> = Vec::new();
    for chk in retained {
        for s in chk.subtasks.iter().filter(|s| !s.state_manifest.is_empty()) {
            let m = read_state_manifest(checkpoints, &s.state_manifest).await?;
            in_use.insert(s.state_manifest.clone());
            in_use.extend(m.files.iter().map(|f| f.remote_path.clone()));
            retained_manifests.push(m);
        }
    }
    let mut report = DiscardReport::default();
    let mut dropped_manifests = Vec::new();
    let mut candidates: BTreeSet<String> = BTreeSet::new();
    for chk in dropped {
        for s in chk.subtasks.iter().filter(|s| !s.state_manifest.is_empty()) {
            candidates.insert(s.state_manifest.clone());
            match read_state_manifest(checkpoints, &s.state_manifest).await {
                Ok(m) => dropped_manifests.push(m),
                Err(e) => {
                    tracing::warn!(error = %e, "dropped checkpoint's manifest is unreadable; its shared files stay");
                    report.unreadable.push(s.state_manifest.clone());
                }
            }
        }
    }
    candidates.extend(deletable_after_retention(&retained_manifests, &dropped_manifests));
    let mut first_error = None;
    let mut clean_prefixes = Vec::new();
    for chk in dropped {
        let prefix = layout::checkpoint_prefix(job_id, chk.checkpoint_id);
        match checkpoints.list(&prefix).await {
            Ok(files) => {
                let shared_with_retained = files.iter().any(|f| in_use.contains(f));
                candidates.extend(files);
                if !shared_with_retained {
                    clean_prefixes.push(prefix);
                }
            }
            Err(e) => {
                first_error.get_or_insert(e.into());
            }
        }
    }
    for path in candidates.into_iter().filter(|p| !in_use.contains(p)) {
        match checkpoints.delete(&path).await {
            Ok(()) => report.deleted.push(path),
            Err(e) => {
                first_error.get_or_insert(e.into());
            }
        }
    }
    for prefix in clean_prefixes {
        if let Err(e) = checkpoints.delete_prefix(&prefix).await {
            first_error.get_or_insert(e.into());
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(report),
    }
}

/// Deletes every checkpoint file of `job_id` (`<job>/` in the checkpoint directory): after
/// the job finished or was cancelled and its result is recorded.
///
/// # Notable errors
/// * [`CheckpointFilesError::InvalidJobId`], [`CheckpointFilesError::Storage`].
pub async fn discard_job(checkpoints: &StorageDir, job_id: &str) -> Result<(), CheckpointFilesError> {
    check(job_id)?;
    checkpoints.delete_prefix(job_id).await?;
    Ok(())
}

/// Deletes the file sink's pending parts of `job_id` (`.pending/<job>/` in the sink
/// directory): after a cancel, parts of checkpoints that never completed must not stay.
/// Does nothing for other sinks.
///
/// # Notable errors
/// * [`CheckpointFilesError::InvalidJobId`], [`CheckpointFilesError::Storage`] (also when
///   the sink URI cannot be opened).
pub async fn discard_sink_pending(
    spec: &JobSpec,
    storage_options: &StorageOptions,
    job_id: &str,
) -> Result<(), CheckpointFilesError> {
    check(job_id)?;
    if let SinkSpec::File { uri } = &spec.sink {
        let dir = StorageDir::open(uri, storage_options)?;
        dir.delete_prefix(&layout::pending_job_dir(job_id)).await?;
    }
    Ok(())
}
