//! The subtask runtime: one tokio task per subtask runs the chained pipeline, takes
//! checkpoints when told, and commits the exactly-once file sink when checkpoints complete.
//!
//! # Storage layout
//!
//! In the checkpoint directory ([`SubtaskContext::checkpoints`], shared by all jobs):
//!
//! ```text
//! <job>/shared/<uuid>-<name>.sst                             incremental SST files, shared across checkpoints
//! <job>/chk-<id>/subtask-<i>/attempt-<a>/state/<file>        files of this checkpoint only
//! <job>/chk-<id>/subtask-<i>/attempt-<a>/state-manifest      the state manifest (blob, kind StateManifest)
//! ```
//!
//! In the file sink's directory:
//!
//! ```text
//! .pending/<job>/<subtask>/<attempt>-<checkpoint>.part       pre-committed part (write-once), invisible
//! part-<subtask:05>-<checkpoint:020>                         committed part (write-once), visible
//! ```
//!
//! `SubtaskSnapshot::state_manifest` is relative to the checkpoint directory;
//! `PendingFile::pending_path` and `final_path` are relative to the sink directory.

mod discard;
mod layout;
mod sink;
mod state;
mod store;
mod task;

use std::sync::Arc;

use keel_proto::v1::SubtaskSnapshot;
use keel_state::StateOptions;
use keel_storage::{StorageDir, StorageOptions};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

pub use self::discard::{discard_checkpoints, discard_job, discard_sink_pending, DiscardReport};
pub use self::layout::{final_part_path, pending_part_path};
pub use self::sink::check_sink_parts;
pub use self::store::{read_metadata, CheckpointStore, Unusable};

/// Test-only: `KEEL_TEST_DISABLE_ATTEMPT_FENCE=1` turns attempt fencing off (sinks delete
/// every attempt's pending parts, workers start stale attempts), so tests can be shown to
/// catch its absence. Logged at error level once. Never set it in production.
pub fn attempt_fence_disabled() -> bool {
    static OFF: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *OFF.get_or_init(|| {
        let off = std::env::var("KEEL_TEST_DISABLE_ATTEMPT_FENCE").is_ok_and(|v| v == "1");
        if off {
            tracing::error!("KEEL_TEST_DISABLE_ATTEMPT_FENCE=1: attempt fencing is OFF (test-only switch)");
        }
        off
    })
}
pub use self::state::{read_state_manifest, CheckpointFilesError};
use crate::operators::OperatorRegistry;
use crate::spec::JobSpec;

/// Everything a subtask needs besides its spec and restore snapshot.
#[derive(Debug, Clone)]
pub struct SubtaskContext {
    /// The job (a single path component: it names directories).
    pub job_id: String,
    /// The attempt: every restart of the job gets a higher one. Names pending sink parts
    /// and exclusive state files, so attempts never overwrite each other.
    pub attempt: u64,
    /// This subtask's index, `0..parallelism`.
    pub subtask: u32,
    /// The job's parallelism (must equal the spec's).
    pub parallelism: u32,
    /// The checkpoint directory root, shared by all jobs; this job's files go under
    /// `<job_id>/`.
    pub checkpoints: StorageDir,
    /// How to open the file sink's URI.
    pub storage_options: StorageOptions,
    /// Keyed state settings (backend, local dir, incremental, local recovery).
    pub state: StateOptions,
    /// The operators this worker can build.
    pub registry: Arc<OperatorRegistry>,
}

/// What the checkpoint coordinator (through the worker) tells a subtask.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Control {
    /// Take checkpoint `id` between two records and answer with
    /// [`SubtaskEvent::CheckpointAck`] or [`SubtaskEvent::CheckpointDeclined`]. Ids must grow;
    /// an id not above the last triggered one is declined.
    TriggerCheckpoint {
        /// The checkpoint id.
        id: u64,
    },
    /// Checkpoint `id` is durably complete (metadata + guarded pointer written): commit
    /// every pending sink part of checkpoints `<= id`; its state becomes the base of the next
    /// incremental checkpoint. Send in increasing id order; completing `id` subsumes older
    /// in-flight checkpoints (their parts are committed with it).
    CheckpointComplete {
        /// The checkpoint id.
        id: u64,
    },
    /// Checkpoint `id` will never complete: its uploaded state files (the ones it did not
    /// share with the base) and manifest are deleted. Its pending sink part stays pending
    /// and is committed with the next completed checkpoint, whose snapshot lists it too
    /// (the part's records come after the previous checkpoint's source position and before
    /// the next one's, so dropping it would lose them).
    CheckpointAborted {
        /// The checkpoint id.
        id: u64,
    },
    /// Stop at once: no further commit, no further events (a commit already in progress
    /// completes first, so no part is left torn). Dropping the control sender does the
    /// same.
    Cancel,
}

/// What a subtask reports.
#[derive(Debug, Clone, PartialEq)]
pub enum SubtaskEvent {
    /// Set up (state restored, restored sink parts committed); processing records.
    Running,
    /// Checkpoint `id` is taken: state uploaded, manifest written, sink part pre-committed.
    CheckpointAck {
        /// The checkpoint id.
        id: u64,
        /// What to store in the checkpoint metadata for this subtask, and to restore from.
        snapshot: SubtaskSnapshot,
    },
    /// Checkpoint `id` failed here; the subtask keeps running on its last good checkpoint.
    CheckpointDeclined {
        /// The checkpoint id.
        id: u64,
        /// Why, naming the file or operation.
        reason: String,
    },
    /// The input ended, the checkpoint marking the end completed and its parts are
    /// committed; the task has ended. Its last acked snapshot (`end_of_input: true`) stands
    /// for it in later checkpoints of the job.
    Finished,
    /// The subtask failed (a record error, a failed commit, a bad restore); the task has
    /// ended. Restart the job from its latest completed checkpoint.
    Failed {
        /// Why, naming the pipeline step and record, or the file.
        reason: String,
    },
}

/// The handle of a running subtask.
///
/// Events arrive in order: `Running` (or `Failed`), then acks/declines, then at most one of
/// `Finished` / `Failed`; after that the channel closes. Dropping `control` cancels the
/// subtask like [`Control::Cancel`].
#[derive(Debug)]
#[must_use = "dropping the handle's control sender cancels the subtask"]
pub struct SubtaskHandle {
    /// Sends [`Control`] messages.
    pub control: mpsc::UnboundedSender<Control>,
    /// Receives [`SubtaskEvent`]s.
    pub events: mpsc::UnboundedReceiver<SubtaskEvent>,
    /// The task; ends after `Finished`, `Failed` or a cancel.
    pub join: JoinHandle<()>,
    /// Live counters (records in/out, busy time), for the worker's `/metrics`.
    pub metrics: Arc<TaskMetrics>,
}

/// Live counters of one subtask, updated by its task after every batch and control message.
/// Records count from the restored snapshot's totals (they continue a restored attempt).
#[derive(Debug, Default)]
pub struct TaskMetrics {
    pub records_in: std::sync::atomic::AtomicU64,
    pub records_out: std::sync::atomic::AtomicU64,
    /// Time spent processing records and control messages (not waiting), in nanoseconds.
    pub busy_nanos: std::sync::atomic::AtomicU64,
    /// The newest checkpoint this subtask acknowledged (0: none yet).
    pub last_acked_checkpoint: std::sync::atomic::AtomicU64,
    /// The newest checkpoint whose completion it was told, its sink parts committed (0: none).
    pub last_committed_checkpoint: std::sync::atomic::AtomicU64,
}

/// Starts one subtask of `spec` on the current tokio runtime.
///
/// With `restore` (a snapshot of this subtask from a *completed* checkpoint), the subtask
/// restores keyed state (from the local copy when local recovery has one, else by
/// download), resumes the source at the snapshot's position, and commits every pending sink
/// part the snapshot lists (idempotent: the checkpoint completed, but its notification may
/// have been lost). In every case it then deletes the leftover pending parts of *older*
/// attempts (`.pending/<job>/<subtask>/<attempt>-<checkpoint>.part`): those belong to
/// checkpoints that never completed and must never become visible. Parts of newer attempts
/// are never touched: an attempt that starts late (a delayed deploy) must not destroy what
/// a newer attempt pre-committed. A snapshot with `end_of_input` finishes right after that.
///
/// Processing runs in batches, yielding to the runtime between batches and looking at
/// control messages between records. A checkpoint pauses processing while the state is
/// uploaded (aligned, synchronous snapshot).
///
/// Only one subtask of a given job and index may run per state local directory at a time:
/// a new attempt waits (up to 10 s) for the previous attempt's state to be released.
///
/// A subtask that panics (a custom operator's bug, say) fails with
/// [`SubtaskEvent::Failed`] naming the panic, like any other failure: without it the events
/// channel would just close, and the leader would wait on a subtask that is gone.
pub fn spawn_subtask(spec: Arc<JobSpec>, ctx: SubtaskContext, restore: Option<SubtaskSnapshot>) -> SubtaskHandle {
    let (control_tx, control_rx) = mpsc::unbounded_channel();
    let (events_tx, events_rx) = mpsc::unbounded_channel();
    let metrics = Arc::new(TaskMetrics::default());
    let on_panic = events_tx.clone();
    let what = format!("subtask {} of job {} (attempt {})", ctx.subtask, ctx.job_id, ctx.attempt);
    let inner = tokio::spawn(task::run(spec, ctx, restore, control_rx, events_tx, metrics.clone()));
    let join = tokio::spawn(async move {
        let Err(e) = inner.await else { return };
        if !e.is_panic() {
            return;
        }
        let payload = e.into_panic();
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic without a message".into());
        tracing::error!(%what, panic = %message, "subtask panicked");
        let _ = on_panic.send(SubtaskEvent::Failed { reason: format!("{what} panicked: {message}") });
    });
    SubtaskHandle { control: control_tx, events: events_rx, join, metrics }
}
