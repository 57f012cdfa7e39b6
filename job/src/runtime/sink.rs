//! The sinks. The file sink is exactly-once through two-phase commit:
//!
//! 1. Records of the current checkpoint period collect in memory (one part).
//! 2. Pre-commit (checkpoint `n` triggered): the part is written once to
//!    `.pending/<job>/<subtask>/<attempt>-<n>.part` (only if it holds records) and listed
//!    as a `PendingFile` in the snapshot, together with older parts not committed yet.
//! 3. Commit (checkpoint `n` completed, or restore from it): every pending part of a
//!    checkpoint `<= n` is read and written once to `part-<subtask:05>-<n:020>`; identical
//!    bytes already there count as done (a repeated commit); then the pending object is
//!    deleted. A part whose pending object is gone but whose final object exists was
//!    committed before. A final object holding a strict prefix of its pending part is a
//!    commit torn by a crash (`file://` shows a file while it is being written): it is
//!    replaced. Commits are not cancellable, so a cancel never tears one.
//!
//! Parts of checkpoints that never complete are never committed and are deleted at the next
//! restore or start of the subtask.

use keel_proto::v1::PendingFile;
use keel_storage::{StorageDir, StorageError, StorageOptions};

use super::layout;
use crate::operators::Record;

/// Where a subtask's output goes.
pub(crate) enum Sink {
    Discard,
    Print { subtask: u32 },
    File(Box<FileSink>),
}

impl Sink {
    pub(crate) fn write(&mut self, record: &Record) {
        match self {
            Sink::Discard => {}
            Sink::Print { subtask } => println!("{subtask}> {}", record.to_line()),
            Sink::File(f) => f.write(record),
        }
    }

    pub(crate) async fn pre_commit(&mut self, checkpoint_id: u64) -> Result<(), String> {
        match self {
            Sink::File(f) => f.pre_commit(checkpoint_id).await,
            _ => Ok(()),
        }
    }

    pub(crate) fn pending(&self) -> Vec<PendingFile> {
        match self {
            Sink::File(f) => f.pending.clone(),
            _ => Vec::new(),
        }
    }

    pub(crate) async fn commit_upto(&mut self, checkpoint_id: u64) -> Result<(), String> {
        match self {
            Sink::File(f) => f.commit_upto(checkpoint_id).await,
            _ => Ok(()),
        }
    }

    /// Commits `restored` (the pending parts of the snapshot restored from), then deletes
    /// every other pending object of this subtask.
    pub(crate) async fn recover(&mut self, restored: &[PendingFile]) -> Result<(), String> {
        match self {
            Sink::File(f) => f.recover(restored).await,
            _ => Ok(()),
        }
    }

    /// Deletes this subtask's pending parts of this and older attempts (after the last
    /// commit). Parts of newer attempts are never touched: a late-running older attempt
    /// must not destroy what a newer one pre-committed.
    pub(crate) async fn clean_up(&self) {
        if let Sink::File(f) = self {
            if let Err(e) = f.delete_parts_of_older_attempts(true).await {
                tracing::warn!(error = %e, "could not delete the sink's pending parts");
            }
        }
    }
}

/// The exactly-once file sink of one subtask.
pub(crate) struct FileSink {
    dir: StorageDir,
    job_id: String,
    subtask: u32,
    attempt: u64,
    part: Vec<u8>,
    part_records: u64,
    /// Pre-committed parts not committed yet, ascending by checkpoint id.
    pending: Vec<PendingFile>,
}

impl FileSink {
    pub(crate) fn open(
        uri: &str,
        options: &StorageOptions,
        job_id: &str,
        subtask: u32,
        attempt: u64,
    ) -> Result<FileSink, String> {
        let dir = StorageDir::open(uri, options).map_err(|e| format!("file sink: {e}"))?;
        Ok(FileSink {
            dir,
            job_id: job_id.to_string(),
            subtask,
            attempt,
            part: Vec::new(),
            part_records: 0,
            pending: Vec::new(),
        })
    }

    fn write(&mut self, record: &Record) {
        self.part.extend_from_slice(record.to_line().as_bytes());
        self.part.push(b'\n');
        self.part_records += 1;
    }

    async fn pre_commit(&mut self, checkpoint_id: u64) -> Result<(), String> {
        if self.part_records == 0 {
            return Ok(());
        }
        let pending_path = layout::pending_part_path(&self.job_id, self.subtask, self.attempt, checkpoint_id);
        // On failure the records stay in the current part and go into the next checkpoint's.
        self.dir.write_once(&pending_path, &self.part).await.map_err(|e| format!("file sink pre-commit: {e}"))?;
        self.pending.push(PendingFile {
            checkpoint_id,
            pending_path,
            final_path: layout::final_part_path(&self.job_id, self.subtask, checkpoint_id),
            records: self.part_records,
        });
        self.part.clear();
        self.part_records = 0;
        Ok(())
    }

    async fn commit_upto(&mut self, checkpoint_id: u64) -> Result<(), String> {
        while let Some(first) = self.pending.first() {
            if first.checkpoint_id > checkpoint_id {
                break;
            }
            commit(&self.dir, first).await?;
            self.pending.remove(0);
        }
        Ok(())
    }

    async fn recover(&mut self, restored: &[PendingFile]) -> Result<(), String> {
        for f in restored {
            check_restored(&self.job_id, self.subtask, f)?;
        }
        for f in restored {
            commit(&self.dir, f).await?;
        }
        self.delete_parts_of_older_attempts(false).await
    }

    /// Deletes the pending parts of attempts older than this one (and, with `own`, of this
    /// attempt too). A part of a newer attempt is left alone, and so is a file whose name
    /// does not parse as `<attempt>-<checkpoint>.part` (logged): attempts are fenced like
    /// leader epochs, so an older attempt never deletes what a newer one wrote.
    async fn delete_parts_of_older_attempts(&self, own: bool) -> Result<(), String> {
        let prefix = layout::pending_dir(&self.job_id, self.subtask);
        let leftovers = self.dir.list(&prefix).await.map_err(|e| format!("file sink: list leftover parts: {e}"))?;
        let unfenced = crate::attempt_fence_disabled();
        for path in leftovers {
            let name = path.rsplit('/').next().unwrap_or(&path);
            match layout::parse_pending_part_name(name) {
                Some((attempt, _)) if unfenced || attempt < self.attempt || (own && attempt == self.attempt) => {
                    tracing::info!(location = %self.dir.location(&path), attempt, "deleting a pending part of a checkpoint that never completed");
                    self.dir.delete(&path).await.map_err(|e| format!("file sink: delete leftover part: {e}"))?;
                }
                Some((attempt, _)) if attempt > self.attempt => {
                    tracing::warn!(
                        location = %self.dir.location(&path), attempt, own_attempt = self.attempt,
                        "leaving a pending part of a NEWER attempt alone (this attempt is stale)"
                    );
                }
                Some(_) => {}
                None => {
                    tracing::warn!(location = %self.dir.location(&path), "leaving an unrecognised file in the pending directory alone")
                }
            }
        }
        Ok(())
    }
}

/// Checks that every sink part a checkpoint lists can still be committed: its pending
/// object or its final object exists. A checkpoint whose parts are gone is not restorable
/// (restoring it would fail every attempt with "pending part … missing").
///
/// # Notable errors
/// * [`CheckpointFilesError::Storage`] with [`StorageError::NotFound`] naming the part when
///   one is definitely missing (permanent); other storage errors as they come (check
///   [`CheckpointFilesError::is_temporary`]).
pub async fn check_sink_parts(
    spec: &crate::JobSpec,
    storage_options: &StorageOptions,
    job_id: &str,
    subtasks: &[keel_proto::v1::SubtaskSnapshot],
) -> Result<(), super::CheckpointFilesError> {
    let crate::SinkSpec::File { uri } = &spec.sink else { return Ok(()) };
    if subtasks.iter().all(|s| s.pending.is_empty()) {
        return Ok(());
    }
    let dir = StorageDir::open(uri, storage_options)?;
    for s in subtasks {
        for f in &s.pending {
            if check_restored(job_id, s.subtask, f).is_err() {
                return Err(StorageError::NotFound {
                    op: "check sink part",
                    uri: dir.uri().to_string(),
                    path: f.pending_path.clone(),
                }
                .into());
            }
            if dir.exists(&f.pending_path).await? || dir.exists(&f.final_path).await? {
                continue;
            }
            return Err(StorageError::NotFound {
                op: "check sink part",
                uri: dir.uri().to_string(),
                path: format!("{} (nor {})", f.pending_path, f.final_path),
            }
            .into());
        }
    }
    Ok(())
}

/// A restored pending file must point into this subtask's pending directory and at one of
/// its final names, so a damaged snapshot cannot make the sink write elsewhere.
fn check_restored(job_id: &str, subtask: u32, f: &PendingFile) -> Result<(), String> {
    let pending_ok =
        f.pending_path.starts_with(&layout::pending_dir(job_id, subtask)) && !f.pending_path.contains("..");
    let final_ok = f.final_path == layout::final_part_path(job_id, subtask, f.checkpoint_id);
    if pending_ok && final_ok {
        Ok(())
    } else {
        Err(format!(
            "file sink: the snapshot lists pending part {:?} → {:?} of checkpoint {}, expected {}… → {}",
            f.pending_path,
            f.final_path,
            f.checkpoint_id,
            layout::pending_dir(job_id, subtask),
            layout::final_part_path(job_id, subtask, f.checkpoint_id)
        ))
    }
}

/// Makes one pending part visible; idempotent.
async fn commit(dir: &StorageDir, f: &PendingFile) -> Result<(), String> {
    let bytes = match dir.read(&f.pending_path).await {
        Ok(bytes) => bytes,
        Err(StorageError::NotFound { .. }) => {
            // Committed (and its pending object deleted) before: by this attempt before a
            // lost notification, or by an earlier recovery.
            return match dir.exists(&f.final_path).await {
                Ok(true) => Ok(()),
                Ok(false) => Err(format!(
                    "file sink: commit of checkpoint {}: pending part {} is missing and {} does not exist; \
                     the output of that checkpoint is lost",
                    f.checkpoint_id,
                    dir.location(&f.pending_path),
                    dir.location(&f.final_path)
                )),
                Err(e) => Err(format!("file sink: commit of checkpoint {}: {e}", f.checkpoint_id)),
            };
        }
        Err(e) => return Err(format!("file sink: commit of checkpoint {}: {e}", f.checkpoint_id)),
    };
    let fail = |e: StorageError| format!("file sink: commit of checkpoint {}: {e}", f.checkpoint_id);
    match dir.write_once(&f.final_path, &bytes).await {
        Ok(()) => {}
        Err(StorageError::AlreadyExists { .. }) => {
            // Only this pending part is ever written to this final name (checkpoint ids are
            // unique), so a final object holding a strict prefix of it is a commit that was
            // cut short mid-write (a crash; `file://` shows a file while it is written).
            // Replace it; anything else is not ours to touch.
            let existing = dir.read(&f.final_path).await.map_err(fail)?;
            if existing.len() < bytes.len() && bytes.starts_with(&existing) {
                tracing::warn!(
                    location = %dir.location(&f.final_path),
                    have = existing.len(),
                    want = bytes.len(),
                    "repairing a part file torn by an interrupted commit"
                );
                dir.delete(&f.final_path).await.map_err(fail)?;
                dir.write_once(&f.final_path, &bytes).await.map_err(fail)?;
            } else {
                return Err(format!(
                    "file sink: commit of checkpoint {}: {} already exists with other content than pending part {}",
                    f.checkpoint_id,
                    dir.location(&f.final_path),
                    dir.location(&f.pending_path)
                ));
            }
        }
        Err(e) => return Err(fail(e)),
    }
    dir.delete(&f.pending_path)
        .await
        .map_err(|e| format!("file sink: commit of checkpoint {}: {e}", f.checkpoint_id))?;
    tracing::debug!(location = %dir.location(&f.final_path), records = f.records, "sink part committed");
    Ok(())
}
