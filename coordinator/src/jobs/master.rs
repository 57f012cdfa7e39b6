//! One job master per job: scheduling, adoption of a recovered job's running tasks after a
//! leader change ([`JobMaster::run`], `high-availability.adoption.timeout`), the runtime of
//! the checkpoint coordinator (whose rules live in the pure engine [`super::checkpoint`]: this
//! file carries out its commands), failover (what follows each attempt is decided by the pure
//! lifecycle engine [`super::lifecycle`]: restart strategy, suspension, final end), savepoints,
//! and the end of the job (result dirty → cleanup → clean).
//!
//! Only the leader session of one epoch runs a master. Every durable step goes through the
//! leader's fence; every command to a worker carries the epoch. A checkpoint completes in
//! this order: all subtasks acknowledged → metadata blob written under a unique name →
//! guarded ZooKeeper pointer created (the commit point) → subtasks notified (sinks commit) →
//! checkpoints beyond `state.checkpoints.num-retained` dropped (pointer first, files after).

use std::collections::VecDeque;
use std::time::Duration;

use keel_ha::{Fence, HaError, HaStores, LeaderEpoch};
use keel_job::{CheckpointStore, JobSpec, Unusable};
use keel_proto::v1::{
    leader_command, task_report, CancelTask, CheckpointMetadata, DeployTask, JobGraphRecord, JobResultRecord,
    NotifyCheckpoint, SubtaskSnapshot, TaskReport, TriggerCheckpoint,
};
use prost::Message;
use serde::Serialize;
use serde_json::json;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::adoption;
use super::attempt::{Attempt, Reaction, Report};
use super::checkpoint::{Command, Event, StoreOutcome};
use super::lifecycle::{JobState, Lifecycle, Next, Outcome, SubtaskState, Terminal};
use super::restore;
use super::slots::SlotPool;
use super::{now_ms, JobError, JobSettings, JobView};
use crate::resource_manager::ResourceManager;
use crate::role::Role;

pub enum JobMsg {
    Report(TaskReport),
    Cancel(oneshot::Sender<Result<(), JobError>>),
    Savepoint { target: Option<String>, reply: oneshot::Sender<Result<String, JobError>> },
}

#[derive(Debug, Clone, Serialize)]
pub struct SubtaskView {
    pub subtask: u32,
    pub worker: String,
    pub state: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct CheckpointEntry {
    pub id: u64,
    pub status: String,
    pub trigger_timestamp: i64,
    pub latest_ack_timestamp: i64,
    pub external_path: String,
    pub is_savepoint: bool,
    pub failure_message: Option<String>,
}

/// A job's status, published to the REST API through a watch channel.
#[derive(Debug, Clone)]
pub struct JobStatus {
    pub job_id: String,
    pub name: String,
    pub state: String,
    pub start_time: i64,
    pub end_time: i64,
    pub parallelism: u32,
    pub attempt: u64,
    pub restarts: u32,
    pub failure: Option<String>,
    pub subtasks: Vec<SubtaskView>,
    pub completed: u64,
    pub failed: u64,
    pub restored: u64,
    pub latest_completed: Option<CheckpointEntry>,
    pub latest_restored: Option<(u64, i64, String)>,
    pub history: VecDeque<CheckpointEntry>,
    /// Result written and cleanup finished.
    pub cleaned: bool,
}

impl JobStatus {
    pub fn new(graph: &JobGraphRecord) -> Self {
        Self {
            job_id: graph.job_id.clone(),
            name: graph.name.clone(),
            state: "CREATED".into(),
            start_time: graph.submitted_unix_ms,
            end_time: -1,
            parallelism: 0,
            attempt: 0,
            restarts: 0,
            failure: None,
            subtasks: vec![],
            completed: 0,
            failed: 0,
            restored: 0,
            latest_completed: None,
            latest_restored: None,
            history: VecDeque::new(),
            cleaned: false,
        }
    }

    pub fn view(&self) -> JobView {
        let end = if self.end_time > 0 { self.end_time } else { now_ms() };
        JobView {
            jid: self.job_id.clone(),
            name: self.name.clone(),
            state: self.state.clone(),
            start_time: self.start_time,
            end_time: self.end_time,
            duration: end - self.start_time,
            parallelism: self.parallelism,
            attempt: self.attempt,
            restarts: self.restarts,
            failure: self.failure.clone(),
            restored_from: self.latest_restored.as_ref().map(|r| r.0),
            subtasks: self.subtasks.clone(),
        }
    }

    /// Flink's `/jobs/:id/checkpoints` shape.
    pub fn checkpoints_json(&self) -> serde_json::Value {
        json!({
            "counts": {
                "completed": self.completed,
                "failed": self.failed,
                "in_progress": self.history.iter().filter(|h| h.status == "IN_PROGRESS").count(),
                "restored": self.restored,
                "total": self.completed + self.failed,
            },
            "latest": {
                "completed": self.latest_completed,
                "restored": self.latest_restored.as_ref().map(|(id, ts, path)| json!({
                    "id": id, "restore_timestamp": ts, "external_path": path,
                })),
            },
            "history": self.history,
        })
    }
}

/// Runtime data of the checkpoint in flight (the engine holds the acknowledgements).
struct Inflight {
    id: u64,
    savepoint: Option<(String, oneshot::Sender<Result<String, JobError>>)>,
    triggered: i64,
    deadline: Instant,
}

/// A published checkpoint, between the store's answer and the notification.
struct Committed {
    meta: CheckpointMetadata,
    path: String,
    dropped: Vec<keel_ha::CheckpointPointer>,
}

/// What a restart restores from.
#[derive(Clone)]
struct RestorePoint {
    checkpoint_id: u64,
    path: String,
    metadata: CheckpointMetadata,
}

/// What every job master of a leader session shares.
#[derive(Clone)]
pub struct MasterContext {
    pub epoch: LeaderEpoch,
    pub settings: JobSettings,
    pub rm: ResourceManager,
    pub role: watch::Receiver<Role>,
    pub pool: SlotPool,
}

pub struct JobMaster {
    graph: JobGraphRecord,
    epoch: LeaderEpoch,
    settings: JobSettings,
    rm: ResourceManager,
    role: watch::Receiver<Role>,
    pool: SlotPool,
    status: watch::Sender<JobStatus>,
    rx: mpsc::UnboundedReceiver<JobMsg>,
    recovered: bool,
    // runtime
    /// The current attempt (pure: see [`super::attempt`]), with its checkpoint coordinator.
    cur: Attempt,
    inflight: Option<Inflight>,
    restore: Option<RestorePoint>,
}

/// Parses a stored job graph's spec, with the cluster's defaults for what it leaves out.
fn parse_spec(graph: &JobGraphRecord, settings: &JobSettings) -> Result<JobSpec, String> {
    let origin = format!("job {}", graph.job_id);
    keel_job::parse_job_spec_with_defaults(&graph.spec_yaml, &origin, &settings.registry, &settings.job_defaults)
        .map_err(|e| e.to_string())
}

impl JobMaster {
    pub fn new(
        graph: JobGraphRecord,
        ctx: MasterContext,
        status: watch::Sender<JobStatus>,
        rx: mpsc::UnboundedReceiver<JobMsg>,
        recovered: bool,
    ) -> Self {
        let MasterContext { epoch, settings, rm, role, pool } = ctx;
        Self {
            graph,
            epoch,
            settings,
            rm,
            role,
            pool,
            status,
            rx,
            recovered,
            cur: Attempt::none(),
            inflight: None,
            restore: None,
        }
    }

    fn job_id(&self) -> &str {
        &self.graph.job_id
    }

    /// The fence of this master's epoch, if this dispatcher still acts at that epoch.
    fn fence(&self) -> Option<Fence> {
        let role = self.role.borrow();
        match &*role {
            Role::Leading { epoch, fence: Some(f) } if *epoch == self.epoch => Some(f.clone()),
            _ => None,
        }
    }

    fn can_act(&self) -> bool {
        self.fence().is_some()
    }

    fn stores(&self) -> Option<HaStores> {
        self.settings.ha_storage.clone().map(HaStores::new)
    }

    /// The job's checkpoint store (files, metadata, savepoints: [`keel_job::CheckpointStore`]).
    fn checkpoint_store(&self) -> Option<CheckpointStore> {
        self.settings.checkpoints.clone().map(|d| CheckpointStore::new(d, self.settings.storage_options.clone()))
    }

    fn set_state(&self, state: JobState) {
        let state = state.as_str();
        self.status.send_modify(|s| {
            if s.state != state {
                tracing::info!(target: "keel::events", event = "job_state", job = %s.job_id, from = %s.state, to = state, "job state changed");
                s.state = state.to_string();
            }
        });
    }

    fn publish_subtasks(&self) {
        let views: Vec<SubtaskView> = self
            .cur
            .assignment()
            .iter()
            .enumerate()
            .map(|(i, w)| SubtaskView {
                subtask: i as u32,
                worker: w.clone(),
                state: self.cur.states().get(i).copied().unwrap_or(SubtaskState::Created).as_str().to_string(),
            })
            .collect();
        self.status.send_modify(|s| s.subtasks = views);
    }

    pub async fn run(mut self, session: CancellationToken) {
        let spec = match parse_spec(&self.graph, &self.settings) {
            Ok(s) => s,
            Err(e) => {
                let reason = format!("the stored job spec no longer parses: {e}");
                tracing::error!(job = %self.job_id(), %reason);
                self.end(Terminal::Failed, reason, &session).await;
                return;
            }
        };
        self.status.send_modify(|s| s.parallelism = spec.parallelism);
        // A recovered job whose tasks kept running through the leader change is adopted
        // instead of restarted (high-availability.adoption.timeout); nothing is restored then.
        let mut adopted = self.try_adopt(&spec, &session).await;
        // Where to start otherwise: the latest usable checkpoint (recovery), or a savepoint.
        let picked = if adopted.is_some() { Ok(()) } else { self.pick_restore(&spec, &session).await };
        match picked {
            Ok(()) => {
                if adopted.is_none() && self.restore.is_none() && !self.graph.restore_from.is_empty() {
                    match self.load_savepoint(&spec).await {
                        Ok(point) => self.restore = Some(point),
                        Err(e) => {
                            self.end(
                                Terminal::Failed,
                                format!("cannot restore from savepoint {}: {e}", self.graph.restore_from),
                                &session,
                            )
                            .await;
                            return;
                        }
                    }
                }
            }
            Err(Some(reason)) => {
                self.end(Terminal::Failed, reason, &session).await;
                return;
            }
            Err(None) => {
                tracing::info!(job = %self.job_id(), "job master stops before starting: leader session ended");
                return;
            }
        }
        if self.recovered {
            tracing::info!(job = %self.job_id(), restore = ?self.restore.as_ref().map(|r| r.checkpoint_id), "recovered job");
        }
        // What happens after each attempt is the lifecycle engine's decision (restart strategy,
        // suspension, final end); this loop carries it out.
        let mut lifecycle = Lifecycle::new(spec.restart_strategy);
        loop {
            let outcome = match adopted.take() {
                Some(o) => o,
                None => self.run_attempt(&spec, &session).await,
            };
            match lifecycle.on_outcome(outcome) {
                Next::ResumeAfterSuspension => {
                    // Either the leader session ended (superseded, stopped: the session token
                    // is cancelled) or this dispatcher was only suspended at this master's
                    // epoch (ZooKeeper connection lost for a moment). In the second case the
                    // job is this master's to run: once it may act again, it restarts the job
                    // from its latest checkpoint (not a failure: no restart is spent).
                    if !self.wait_to_act_again(&session).await {
                        tracing::info!(job = %self.job_id(), "job master stops: leader session ended");
                        return;
                    }
                    tracing::warn!(
                        target: "keel::events", event = "job_resumed_after_suspension", job = %self.job_id(),
                        epoch = %self.epoch,
                        "the leader acts again at the same epoch after a suspension; restarting the job from its latest checkpoint"
                    );
                    self.stop_tasks().await;
                    self.set_state(JobState::Restarting);
                    if !self.restore_or_end(&spec, &session).await {
                        return;
                    }
                }
                Next::End(terminal, reason) => {
                    self.stop_tasks().await;
                    self.end(terminal, reason, &session).await;
                    return;
                }
                Next::Restart { restart, of, delay, reason } => {
                    self.stop_tasks().await;
                    self.set_state(JobState::Restarting);
                    crate::metrics::job_events().restarted();
                    self.status.send_modify(|s| {
                        s.restarts = restart;
                        s.failure = Some(reason.clone());
                    });
                    tracing::warn!(job = %self.job_id(), restart, of, %reason, "restarting job from its latest checkpoint");
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = session.cancelled() => return,
                    }
                    if !self.restore_or_end(&spec, &session).await {
                        return;
                    }
                }
            }
        }
    }

    /// `can_act()` turned false while the leader session lives: this dispatcher is suspended
    /// at this master's epoch, not superseded (superseding or stopping cancels `session`).
    /// Waits until it acts at the epoch again (`true`) or the session ends (`false`).
    async fn wait_to_act_again(&self, session: &CancellationToken) -> bool {
        let mut role = self.role.clone();
        loop {
            if session.is_cancelled() {
                return false;
            }
            if self.can_act() {
                return true;
            }
            tokio::select! {
                r = role.changed() => if r.is_err() { return false },
                _ = session.cancelled() => return false,
            }
        }
    }

    /// Before a restart: [`Self::pick_restore`], ending the job FAILED when every retained
    /// checkpoint is definitely unusable. `false`: stop this master (ended, or session over).
    async fn restore_or_end(&mut self, spec: &JobSpec, session: &CancellationToken) -> bool {
        match self.pick_restore(spec, session).await {
            Ok(()) => true,
            Err(Some(reason)) => {
                self.end(Terminal::Failed, reason, session).await;
                false
            }
            Err(None) => false,
        }
    }

    /// Sets `self.restore` to the latest restorable checkpoint (unchanged when there is none),
    /// waiting out a suspension of this dispatcher at this master's epoch. `Err(Some(reason))`:
    /// every retained checkpoint is definitely unusable; `Err(None)`: the session ended.
    async fn pick_restore(&mut self, spec: &JobSpec, session: &CancellationToken) -> Result<(), Option<String>> {
        loop {
            match self.latest_restorable(spec, session).await {
                Ok(Some(p)) => {
                    self.restore = Some(p);
                    return Ok(());
                }
                Ok(None) => return Ok(()),
                Err(Some(reason)) => return Err(Some(reason)),
                Err(None) => {
                    if !self.wait_to_act_again(session).await {
                        return Err(None);
                    }
                }
            }
        }
    }

    /// Latest completed checkpoint that is restorable: its metadata, its state manifests and
    /// their files, and its sink parts all read back. Older retained ones are tried when a
    /// newer one is *definitely* unusable (loudly). Only definite answers count: when the
    /// pointer list cannot be read, or a blob cannot be read for a reason that is not "it is
    /// missing or corrupt" (connection lost, storage outage), the whole check is retried with
    /// backoff while this master may act. `Err(Some(reason))` when checkpoints exist and
    /// every one is definitely unusable: the job must fail rather than silently start from
    /// scratch; `Err(None)` when the leader session ended.
    async fn latest_restorable(
        &self,
        spec: &JobSpec,
        session: &CancellationToken,
    ) -> Result<Option<RestorePoint>, Option<String>> {
        let mut delay = Duration::from_millis(100);
        loop {
            let (Some(stores), Some(fence), Some(store)) = (self.stores(), self.fence(), self.checkpoint_store())
            else {
                if self.stores().is_none() || self.settings.checkpoints.is_none() {
                    return Ok(self.restore.clone());
                }
                return Err(None);
            };
            match self.find_restorable(&stores, &fence, &store, spec).await {
                Ok(found) => return found.map_err(Some),
                Err(unknown) => {
                    tracing::warn!(job = %self.job_id(), error = %unknown, retry_in = ?delay, "cannot decide which checkpoint to restore yet (outcome unknown); retrying");
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = session.cancelled() => return Err(None),
            }
            delay = (delay * 2).min(Duration::from_secs(5));
        }
    }

    /// One pass of [`Self::latest_restorable`]: `Err(unknown)` when no definite answer could be
    /// had; `Ok(Err(reason))` when every retained checkpoint is definitely unusable. The rules
    /// are the restore search's ([`super::restore`]); this reads and checks what it asks for.
    async fn find_restorable(
        &self,
        stores: &HaStores,
        fence: &Fence,
        store: &CheckpointStore,
        spec: &JobSpec,
    ) -> Result<Result<Option<RestorePoint>, String>, String> {
        let pointers = stores.checkpoints(fence.client(), self.job_id()).await;
        let ids = pointers.as_ref().map(|p| p.iter().map(|p| p.checkpoint_id).collect()).map_err(|e| e.to_string());
        let pointers = pointers.unwrap_or_default();
        let (mut search, mut step) = restore::RestoreSearch::start(ids);
        let mut usable = None;
        loop {
            let id = match step {
                restore::Step::Check(id) => id,
                restore::Step::Done(decision) => {
                    return match decision {
                        restore::Decision::From { id, skipped } => {
                            // The search ends on the check that found it usable: the last one.
                            let Some((checked, path, meta)) = usable.filter(|u: &(u64, _, _)| u.0 == id) else {
                                return Err(format!("checkpoint {id} was chosen but not read"));
                            };
                            if !skipped.is_empty() {
                                tracing::error!(
                                    job = %self.job_id(), using = id, ?skipped,
                                    "newer checkpoints are unusable; falling back to an older retained one \
                                     (output a file sink committed after checkpoint {id} will be produced again)"
                                );
                            }
                            Ok(Ok(Some(RestorePoint { checkpoint_id: checked, path, metadata: meta })))
                        }
                        restore::Decision::Nothing => Ok(Ok(None)),
                        restore::Decision::AllUnusable(reason) => Ok(Err(reason)),
                        restore::Decision::Retry(unknown) => Err(unknown),
                    };
                }
            };
            let Some(p) = pointers.iter().find(|p| p.checkpoint_id == id) else {
                return Err(format!("checkpoint {id} is not in the pointer list"));
            };
            let check = match store.read_metadata(&p.metadata_path).await {
                Ok(meta) => match store.check_restorable(spec, self.job_id(), &meta).await {
                    Ok(()) => {
                        usable = Some((id, p.metadata_path.clone(), meta));
                        restore::Check::Usable
                    }
                    Err(Unusable::Unknown(e)) => restore::Check::Unknown(e.to_string()),
                    Err(Unusable::Definite(e)) => {
                        restore::Check::Unusable(format!("{} ({})", e, store.location(&p.metadata_path)))
                    }
                },
                Err(Unusable::Unknown(e)) => restore::Check::Unknown(e.to_string()),
                Err(Unusable::Definite(e)) => restore::Check::Unusable(e.to_string()),
            };
            if let restore::Check::Unusable(problem) = &check {
                tracing::error!(job = %self.job_id(), checkpoint = id, %problem, "checkpoint unusable");
            }
            step = search.on(id, check);
        }
    }

    async fn load_savepoint(&self, spec: &JobSpec) -> Result<RestorePoint, String> {
        // Imported into this job's checkpoint directory, so tasks always restore from there.
        let store = self.checkpoint_store().ok_or("no checkpoints directory configured")?;
        let uri = self.graph.restore_from.trim_end_matches('/');
        let metadata = store.import_savepoint(uri, self.job_id(), spec.parallelism).await?;
        tracing::info!(job = %self.job_id(), savepoint = %uri, "restoring from savepoint");
        Ok(RestorePoint { checkpoint_id: metadata.checkpoint_id, path: format!("{uri}/_metadata"), metadata })
    }

    /// Adoption: when this master recovered the job from a previous leader and every subtask
    /// of the job's newest attempt still runs on a registered worker (reported at
    /// registration), it takes them over instead of restarting the job: the same attempt, now
    /// commanded under this master's epoch, with no restore and no replay. Returns the
    /// attempt's outcome once adopted (it then ran), `None` when the job must be (re)started
    /// as usual: nothing to adopt, an attempt newer than the reported one was taken, or a
    /// worker refused (its subtask is gone); the reported subtasks are then cancelled.
    ///
    /// Safe against an older leader: the attempt is compared with the guarded attempt counter
    /// after this master holds the latch (no newer attempt can exist), every command carries
    /// this master's epoch, and a worker adopts only subtasks of that attempt that still run.
    /// A checkpoint the old leader completed but may not have announced is announced again
    /// (committing twice is a no-op); parts of checkpoints it never completed are committed only
    /// with a later completed checkpoint that covers them.
    async fn try_adopt(&mut self, spec: &JobSpec, session: &CancellationToken) -> Option<Outcome> {
        if !self.recovered || self.settings.adoption_timeout.is_zero() {
            return None;
        }
        // The rules are the adoption engine's ([`super::adoption`]); this gathers the facts and
        // carries its answers out.
        // The recovery started masters once enough slots had registered (recovery.worker-wait);
        // give the workers that ran the job a short while (at most 2 s) to register too.
        let give_up = Instant::now() + self.settings.recovery_worker_wait.min(Duration::from_secs(2));
        let (attempt, assignment) = loop {
            let gave_up = Instant::now() >= give_up || session.is_cancelled();
            match adoption::candidate(spec.parallelism, &self.rm.reported_subtasks(self.job_id()), gave_up) {
                adoption::Candidate::Found { attempt, assignment } => break (attempt, assignment),
                adoption::Candidate::Nothing => return None,
                adoption::Candidate::Refused { attempt, why } => {
                    tracing::info!(job = %self.job_id(), attempt, "not adopted: {why}");
                    self.cancel_reported().await;
                    return None;
                }
                adoption::Candidate::Wait => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        };
        let (Some(fence), Some(stores)) = (self.fence(), self.stores()) else { return None };
        // Read after this master's leader holds the latch: the counter and the pointers.
        let last_attempt = stores.last_attempt(fence.client(), self.job_id()).await.map_err(|e| e.to_string());
        let stored = match stores.checkpoints(fence.client(), self.job_id()).await {
            Ok(pointers) => adoption::Stored::Latest(pointers.last().map(|p| p.checkpoint_id)),
            Err(e) => {
                tracing::warn!(job = %self.job_id(), error = %e, "cannot read the latest checkpoint pointer; the next completed checkpoint commits its parts");
                adoption::Stored::Unread
            }
        };
        let facts =
            adoption::Facts { last_attempt, stored, checkpoints: self.rm.reported_checkpoints(self.job_id(), attempt) };
        let plan = match adoption::decide(attempt, assignment, &facts) {
            Ok(plan) => plan,
            Err(why) => {
                tracing::warn!(job = %self.job_id(), attempt, "not adopted: {why}; restarting from what is stored");
                self.cancel_reported().await;
                return None;
            }
        };
        let mut lost_rx = self.rm.subscribe_lost();
        for (w, subtasks) in &plan.per_worker {
            let cmd =
                keel_proto::v1::AdoptTasks { job_id: self.graph.job_id.clone(), attempt, subtasks: subtasks.clone() };
            if let Err(status) = self.send_when_ready(w, leader_command::Kind::Adopt(cmd), session).await {
                tracing::info!(job = %self.job_id(), attempt, worker = %w, status = %status.message(), "not adopted: a worker refused");
                self.cancel_reported().await;
                return None;
            }
        }
        self.pool.assign(&self.graph.job_id, plan.assignment.clone());
        self.begin_attempt(attempt, plan.assignment.clone(), SubtaskState::Running);
        tracing::info!(
            target: "keel::events", event = "job_adopted", job = %self.job_id(), attempt, epoch = %self.epoch,
            latest_checkpoint = plan.announce.unwrap_or(0), last_acked = plan.acked, last_committed = plan.committed,
            "job adopted: its tasks kept running through the leader change"
        );
        // Announce the latest completed checkpoint again: the old leader may have written its
        // pointer without telling the tasks (they commit its sink parts now; again is a no-op).
        if let Some(id) = plan.announce.filter(|_| !super::test_switches::adoption_renotify_disabled()) {
            self.notify_workers(&plan.per_worker, attempt, id, true).await;
        }
        // Checkpoints the tasks acknowledged that the old leader never completed are aborted:
        // the tasks delete what they uploaded for them. Their sink parts stay pending and are
        // committed with the next completed checkpoint, which covers them.
        for id in &plan.abort {
            self.notify_workers(&plan.per_worker, attempt, *id, false).await;
        }
        if !plan.abort.is_empty() {
            tracing::info!(job = %self.job_id(), attempt, aborted = ?plan.abort, "checkpoints the old leader never completed are aborted");
        }
        Some(self.supervise(spec, session, &mut lost_rx).await)
    }

    /// Tells each worker's subtasks of `attempt` that checkpoint `id` completed or was aborted
    /// (best effort: a subtask that misses it learns with the next one).
    async fn notify_workers(&self, per_worker: &[(String, Vec<u32>)], attempt: u64, id: u64, complete: bool) {
        for (w, _) in per_worker {
            let n = NotifyCheckpoint { job_id: self.graph.job_id.clone(), attempt, checkpoint_id: id, complete };
            let _ = self.rm.send(self.epoch, w, leader_command::Kind::NotifyCheckpoint(n)).await;
        }
    }

    /// Makes `attempt` on `assignment` (one worker per subtask) the current one, with a fresh
    /// checkpoint coordinator and every subtask in `state`.
    fn begin_attempt(&mut self, attempt: u64, assignment: Vec<String>, state: SubtaskState) {
        self.cur = Attempt::new(attempt, assignment, state);
        self.inflight = None;
        self.status.send_modify(|s| s.attempt = attempt);
        self.publish_subtasks();
    }

    /// Cancels, on every worker that reported subtasks of this job, what it reported (up to the
    /// newest attempt it reported itself: [`adoption::cancels`]) and was not adopted, so they
    /// stop before their adoption timeout.
    async fn cancel_reported(&self) {
        for (w, attempt) in adoption::cancels(&self.rm.reported_subtasks(self.job_id())) {
            let cmd = CancelTask { job_id: self.graph.job_id.clone(), attempt };
            let _ = self.rm.send(self.epoch, &w, leader_command::Kind::Cancel(cmd)).await;
        }
    }

    /// Allocates, deploys and runs one attempt until it ends, fails or the session ends.
    async fn run_attempt(&mut self, spec: &JobSpec, session: &CancellationToken) -> Outcome {
        let p = spec.parallelism;
        self.set_state(JobState::Scheduling);
        // Wait for slots (bounded only by cancellation; the REST API shows SCHEDULING).
        let mut lost_rx = self.rm.subscribe_lost();
        let mut waited_log = Instant::now();
        let assignment = loop {
            if let Some(a) = self.can_act().then(|| self.pool.allocate(&self.graph.job_id, p)).flatten() {
                break a;
            }
            if waited_log.elapsed() > Duration::from_secs(5) {
                tracing::warn!(job = %self.job_id(), need = p, "waiting for free slots");
                waited_log = Instant::now();
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                msg = self.rx.recv() => match msg {
                    Some(JobMsg::Cancel(reply)) => {
                        if let Some(o) = self.accept_cancel(reply, session).await { return o; }
                    }
                    Some(JobMsg::Savepoint { reply, .. }) => {
                        let _ = reply.send(Err(JobError::WrongState { job_id: self.job_id().into(), state: "SCHEDULING".into(), action: "a savepoint" }));
                    }
                    Some(JobMsg::Report(_)) => {}
                    None => return Outcome::SessionEnded,
                },
                _ = session.cancelled() => return Outcome::SessionEnded,
            }
        };
        // A new attempt number from ZooKeeper (guarded): it grows across attempts and leaders,
        // so workers and sinks can fence every older attempt by comparing numbers.
        let attempt = match self.next_attempt(session).await {
            Ok(a) => a,
            Err(o) => {
                self.pool.release(&self.graph.job_id);
                return o;
            }
        };
        self.begin_attempt(attempt, assignment, SubtaskState::Deploying);
        let restore = self.restore.clone();
        if let Some(r) = &restore {
            self.status.send_modify(|s| {
                s.restored += 1;
                s.latest_restored = Some((r.checkpoint_id, now_ms(), r.path.clone()));
            });
            tracing::info!(target: "keel::events", event = "checkpoint_restored", job = %self.job_id(), checkpoint = r.checkpoint_id, attempt, "restoring from checkpoint");
        }
        let checkpoints_uri = self.settings.checkpoints_uri.clone();
        for i in 0..p {
            let snapshot = restore.as_ref().and_then(|r| r.metadata.subtasks.iter().find(|s| s.subtask == i).cloned());
            let deploy = DeployTask {
                job_id: self.graph.job_id.clone(),
                attempt,
                subtask: i,
                parallelism: p,
                spec_yaml: self.graph.spec_yaml.clone(),
                checkpoints_uri: checkpoints_uri.clone(),
                restore: snapshot,
                restore_checkpoint_id: restore.as_ref().map(|r| r.checkpoint_id).unwrap_or(0),
            };
            let worker = self.cur.assignment()[i as usize].clone();
            if let Err(status) = self.deploy(&worker, deploy, session).await {
                if !self.can_act() {
                    return Outcome::SessionEnded;
                }
                return Outcome::Failover(format!(
                    "deploying subtask {i} to worker {worker} failed: {}",
                    status.message()
                ));
            }
        }
        self.supervise(spec, session, &mut lost_rx).await
    }

    /// Runs the current attempt (deployed or adopted) until it ends, fails or the session
    /// ends: periodic checkpoints, reports, cancels, savepoints, lost workers.
    async fn supervise(
        &mut self,
        spec: &JobSpec,
        session: &CancellationToken,
        lost_rx: &mut tokio::sync::broadcast::Receiver<String>,
    ) -> Outcome {
        self.set_state(JobState::Running);
        let mut tick = tokio::time::interval(spec.checkpoint_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            let deadline = self.inflight.as_ref().filter(|_| !self.cur.coord.publishing()).map(|p| p.deadline);
            tokio::select! {
                _ = tick.tick() => {
                    if self.cur.coord.can_trigger() && self.can_act() {
                        if let Err(o) = self.trigger(None).await { return o; }
                    }
                }
                _ = sleep_until_opt(deadline) => {
                    let id = self.inflight.as_ref().map(|p| p.id).unwrap_or(0);
                    if let Err(o) = self.apply(Event::Expired { id }).await { return o; }
                }
                lost = lost_rx.recv() => {
                    if let Some(o) = lost.ok().and_then(|worker| self.cur.on_worker_lost(&worker)) {
                        return o;
                    }
                }
                msg = self.rx.recv() => match msg {
                    None => return Outcome::SessionEnded,
                    Some(JobMsg::Cancel(reply)) => {
                        if let Some(o) = self.accept_cancel(reply, session).await { return o; }
                    }
                    Some(JobMsg::Savepoint { target, reply }) => {
                        // One checkpoint at a time: abort the periodic one in favour of the savepoint.
                        if let Err(o) = self.apply(Event::Abort { reason: "superseded by a savepoint".into() }).await { return o; }
                        let target = target.or_else(|| self.settings.savepoints_uri.clone()).unwrap_or_else(|| {
                            format!("{}/savepoints", self.settings.checkpoints_uri)
                        });
                        if let Err(o) = self.trigger(Some((target, reply))).await { return o; }
                    }
                    Some(JobMsg::Report(r)) => {
                        if let Some(o) = self.on_report(r).await { return o; }
                    }
                },
                _ = session.cancelled() => return Outcome::SessionEnded,
            }
        }
    }

    /// A cancel is answered only once it is durable: the job's result (CANCELED, dirty) is
    /// written through the fence first, so every later leader finishes the cancel instead of
    /// recovering the job. If it cannot be written (leadership suspended or lost), the cancel
    /// is refused and the job keeps running.
    async fn accept_cancel(
        &mut self,
        reply: oneshot::Sender<Result<(), JobError>>,
        session: &CancellationToken,
    ) -> Option<Outcome> {
        let reason = "canceled by request".to_string();
        // TEST-ONLY (KEEL_TEST_DISABLE_DURABLE_CANCEL): answer first, as before the fix.
        if super::test_switches::durable_cancel_disabled() {
            let _ = reply.send(Ok(()));
            return Some(Outcome::Ended(Terminal::Canceled, reason));
        }
        match self.record_result(Terminal::Canceled, &reason, session, false).await {
            Ok(()) => {
                let _ = reply.send(Ok(()));
                Some(Outcome::Ended(Terminal::Canceled, reason))
            }
            Err(e) => {
                tracing::warn!(job = %self.job_id(), error = %e, "cancel refused: its result could not be recorded");
                let _ = reply.send(Err(e));
                None
            }
        }
    }

    /// Writes the job's result (dirty) through this master's fence. With `wait`, retries
    /// temporary failures and waits out a suspension of this master's leadership for as long
    /// as the leader session lasts (a decided end must be recorded, or the next leader would
    /// run the job again); without it, one attempt (with the retries for an unknown outcome).
    async fn record_result(
        &self,
        state: Terminal,
        reason: &str,
        session: &CancellationToken,
        wait: bool,
    ) -> Result<(), JobError> {
        let record = JobResultRecord {
            format_version: keel_proto::FORMAT_VERSION,
            job_id: self.graph.job_id.clone(),
            state: state.as_str().to_string(),
            reason: reason.to_string(),
            at_unix_ms: now_ms(),
            name: self.graph.name.clone(),
            parallelism: self.status.borrow().parallelism,
            restarts: self.status.borrow().restarts,
            start_unix_ms: self.graph.submitted_unix_ms,
        };
        let Some(stores) = self.stores() else {
            return Err(JobError::NotConfigured("no high-availability.storageDir".into()));
        };
        let mut delay = Duration::from_millis(50);
        let mut role = self.role.clone();
        let mut tries = 0u32;
        loop {
            tries += 1;
            let Some(fence) = self.fence() else {
                let suspended_here = matches!(&*role.borrow(), Role::Suspended { epoch } if *epoch == self.epoch);
                if !(wait && suspended_here) {
                    return Err(JobError::NotLeader(format!(
                        "this dispatcher does not act as the leader of epoch {}; the job's end is not recorded",
                        self.epoch
                    )));
                }
                tokio::select! {
                    r = role.changed() => if r.is_err() { return Err(JobError::NotLeader("dispatcher stopping".into())) },
                    _ = session.cancelled() => return Err(JobError::NotLeader("the leader session ended".into())),
                }
                continue;
            };
            match stores.put_result(&fence, &record).await {
                Ok(()) => {
                    tracing::info!(target: "keel::events", event = "job_result_recorded", job = %self.job_id(), state = state.as_str(), "job result recorded (dirty)");
                    return Ok(());
                }
                Err(e @ (HaError::LeadershipLost { .. } | HaError::SessionExpired)) => return Err(JobError::Ha(e)),
                Err(e) if !wait && tries >= 5 => return Err(JobError::Ha(e)),
                Err(e) => {
                    tracing::warn!(job = %self.job_id(), error = %e, "cannot record the job result yet; retrying");
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = session.cancelled() => return Err(JobError::NotLeader("the leader session ended".into())),
            }
            delay = (delay * 2).min(Duration::from_secs(2));
        }
    }

    /// Takes a new attempt number; retries an unknown outcome (connection lost) with backoff
    /// while this master may act.
    async fn next_attempt(&self, session: &CancellationToken) -> Result<u64, Outcome> {
        let mut delay = Duration::from_millis(50);
        loop {
            let (Some(fence), Some(stores)) = (self.fence(), self.stores()) else {
                return Err(Outcome::SessionEnded);
            };
            match stores.next_attempt(&fence, self.job_id()).await {
                Ok(a) => return Ok(a),
                Err(HaError::LeadershipLost { .. }) | Err(HaError::SessionExpired) => {
                    return Err(Outcome::SessionEnded)
                }
                Err(e) if e.is_temporary() => {
                    tracing::warn!(job = %self.job_id(), error = %e, "cannot take an attempt number yet; retrying");
                }
                Err(e) => return Err(Outcome::Failover(format!("cannot take an attempt number: {e}"))),
            }
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = session.cancelled() => return Err(Outcome::SessionEnded),
            }
            delay = (delay * 2).min(Duration::from_secs(2));
        }
    }

    /// Sends a command (a deploy, an adoption), waiting (bounded by `heartbeat.timeout`) for a
    /// worker that this leader has registered but that has not heard the registration reply
    /// yet ("register first", UNAVAILABLE) instead of spending a restart on it.
    async fn send_when_ready(
        &self,
        worker: &str,
        kind: leader_command::Kind,
        session: &CancellationToken,
    ) -> Result<(), tonic::Status> {
        let give_up = Instant::now() + self.rm.heartbeat_timeout();
        let mut delay = Duration::from_millis(20);
        loop {
            match self.rm.send(self.epoch, worker, kind.clone()).await {
                Ok(_) => return Ok(()),
                Err(s)
                    if s.code() == tonic::Code::Unavailable
                        && s.metadata().get(crate::resource_manager::NOT_READY_METADATA).is_some()
                        && Instant::now() < give_up
                        && self.can_act() =>
                {
                    tracing::debug!(job = %self.job_id(), worker, status = %s, "worker not ready for the command yet; retrying");
                }
                Err(s) => return Err(s),
            }
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = session.cancelled() => return Err(tonic::Status::cancelled("the leader session ended")),
            }
            delay = (delay * 2).min(Duration::from_millis(500));
        }
    }

    /// Deploys one subtask. A worker that this leader has registered may not have heard the
    /// registration reply yet ("register first", UNAVAILABLE): wait for it (bounded by
    /// `heartbeat.timeout`) instead of spending a restart on it.
    async fn deploy(&self, worker: &str, deploy: DeployTask, session: &CancellationToken) -> Result<(), tonic::Status> {
        self.send_when_ready(worker, leader_command::Kind::Deploy(deploy), session).await
    }

    async fn trigger(
        &mut self,
        savepoint: Option<(String, oneshot::Sender<Result<String, JobError>>)>,
    ) -> Result<(), Outcome> {
        let (Some(fence), Some(stores)) = (self.fence(), self.stores()) else {
            if let Some((_, reply)) = savepoint {
                let _ = reply.send(Err(JobError::NotLeader("not acting as leader".into())));
            }
            return Ok(());
        };
        if !self.cur.coord.can_trigger() {
            if let Some((_, reply)) = savepoint {
                let _ = reply.send(Err(JobError::Failed("another checkpoint is being published; retry".into())));
            }
            return Ok(());
        }
        let id = match stores.next_checkpoint_id(&fence, self.job_id()).await {
            Ok(id) => id,
            Err(HaError::LeadershipLost { .. }) | Err(HaError::SessionExpired) => return Err(Outcome::SessionEnded),
            Err(e) => {
                tracing::warn!(job = %self.job_id(), error = %e, "cannot take a checkpoint id; checkpoint skipped");
                if let Some((_, reply)) = savepoint {
                    let _ = reply.send(Err(JobError::Ha(e)));
                }
                return Ok(());
            }
        };
        let now = now_ms();
        let is_savepoint = savepoint.is_some();
        tracing::info!(target: "keel::events", event = "checkpoint_triggered", job = %self.job_id(), checkpoint = id, savepoint = is_savepoint, "checkpoint triggered");
        self.inflight = Some(Inflight {
            id,
            savepoint,
            triggered: now,
            deadline: Instant::now() + self.settings.checkpoint_timeout,
        });
        self.status.send_modify(|s| {
            s.history.push_back(CheckpointEntry {
                id,
                status: "IN_PROGRESS".into(),
                trigger_timestamp: now,
                latest_ack_timestamp: 0,
                external_path: String::new(),
                is_savepoint: false,
                failure_message: None,
            });
            while s.history.len() > 10 {
                s.history.pop_front();
            }
        });
        self.apply(Event::Triggered { id, savepoint: is_savepoint }).await
    }

    /// Feeds an event to the checkpoint coordinator and carries out what it commands (a
    /// publish's answer is fed back in turn).
    async fn apply(&mut self, event: Event) -> Result<(), Outcome> {
        let commands = self.cur.coord.on(event);
        self.run_commands(commands).await
    }

    /// Carries out the checkpoint coordinator's commands (and those they lead to), in order.
    async fn run_commands(&mut self, commands: Vec<Command>) -> Result<(), Outcome> {
        let mut queue: VecDeque<Command> = commands.into();
        let mut committed: Option<Committed> = None;
        let mut lost = false;
        while let Some(command) = queue.pop_front() {
            match command {
                Command::Trigger { id, subtasks } => {
                    // One trigger per worker: it reaches every subtask of the attempt there,
                    // and the worker answers which ones it reached.
                    for (worker, mine) in self.cur.workers_of(subtasks) {
                        let cmd = TriggerCheckpoint {
                            job_id: self.graph.job_id.clone(),
                            attempt: self.cur.number(),
                            checkpoint_id: id,
                        };
                        let failover = !super::test_switches::missing_subtask_failover_disabled();
                        let refused =
                            match self.rm.send(self.epoch, &worker, leader_command::Kind::TriggerCheckpoint(cmd)).await
                            {
                                // NOT_FOUND: the worker (or the resource manager) says no subtask
                                // of this attempt runs there.
                                Err(status) => Some((
                                    mine[0],
                                    status.code() == tonic::Code::NotFound && failover,
                                    format!("on {worker}: {}", status.message()),
                                )),
                                // A subtask assigned there that the trigger did not reach is gone.
                                Ok(reply) if reply.lists_triggered => {
                                    Attempt::unreached(&mine, &reply.triggered_subtasks).map(|i| {
                                        (
                                            i,
                                            failover,
                                            format!("on {worker}: subtask {i} of this attempt does not run there"),
                                        )
                                    })
                                }
                                Ok(_) => None,
                            };
                        if let Some((subtask, not_running, reason)) = refused {
                            queue.extend(self.cur.coord.on(Event::TriggerRefused { id, subtask, not_running, reason }));
                            break;
                        }
                    }
                }
                Command::Publish { id, savepoint: _, snapshots } => {
                    let outcome = match self.publish(id, snapshots).await {
                        Ok(c) => {
                            committed = Some(c);
                            StoreOutcome::Committed
                        }
                        Err(not_committed) => not_committed,
                    };
                    lost |= !self.can_act();
                    queue.extend(self.cur.coord.on(Event::Published { id, outcome }));
                }
                Command::NotifyComplete { id } => {
                    let Some(c) = committed.take() else { continue };
                    self.on_committed(id, c).await;
                }
                Command::NotifyAborted { id, reason } => {
                    tracing::warn!(target: "keel::events", event = "checkpoint_aborted", job = %self.job_id(), checkpoint = id, reason = %reason, "checkpoint aborted");
                    self.checkpoint_failed(id, &reason);
                    self.notify_all(id, false).await;
                }
                Command::SubtaskMissing { subtask, reason } => {
                    tracing::warn!(target: "keel::events", event = "subtask_missing", job = %self.job_id(), subtask, %reason, "a subtask is gone without a report; failing over");
                    return Err(Outcome::Failover(reason));
                }
                Command::FailedUnknown { id, reason } => {
                    // The pointer may be in ZooKeeper: keep every file it could reference (at
                    // worst garbage) and tell nobody to delete anything.
                    tracing::warn!(job = %self.job_id(), checkpoint = id, %reason, "checkpoint outcome unknown; its files are kept");
                    self.checkpoint_failed(id, &reason);
                }
            }
        }
        if lost {
            return Err(Outcome::SessionEnded);
        }
        Ok(())
    }

    fn history_update(&self, id: u64, f: impl FnOnce(&mut CheckpointEntry)) {
        self.status.send_modify(|s| {
            if let Some(h) = s.history.iter_mut().find(|h| h.id == id) {
                f(h);
            }
        });
    }

    /// Records a failed checkpoint (history, counts, a waiting savepoint request).
    fn checkpoint_failed(&mut self, id: u64, reason: &str) {
        self.history_update(id, |h| {
            h.status = "FAILED".into();
            h.failure_message = Some(reason.to_string());
        });
        self.status.send_modify(|s| s.failed += 1);
        if let Some(inflight) = self.inflight.take().filter(|p| p.id == id) {
            if let Some((_, reply)) = inflight.savepoint {
                let _ = reply.send(Err(JobError::Failed(format!("savepoint {id} failed: {reason}"))));
            }
        }
    }

    /// The end-of-input snapshot of a finished subtask (from the latest completed checkpoint).
    fn final_snapshot(&self, subtask: u32) -> Option<SubtaskSnapshot> {
        self.restore.as_ref()?.metadata.subtasks.iter().find(|s| s.subtask == subtask && s.end_of_input).cloned()
    }

    async fn notify_all(&self, checkpoint_id: u64, complete: bool) {
        let running = (0..self.cur.assignment().len() as u32).filter(|i| !self.cur.coord.is_finished(*i));
        for (worker, _) in self.cur.workers_of(running) {
            let cmd = NotifyCheckpoint {
                job_id: self.graph.job_id.clone(),
                attempt: self.cur.number(),
                checkpoint_id,
                complete,
            };
            if let Err(status) = self.rm.send(self.epoch, &worker, leader_command::Kind::NotifyCheckpoint(cmd)).await {
                tracing::warn!(job = %self.job_id(), checkpoint_id, worker = %worker, %status, "checkpoint notification not delivered (the sink commits again on restore)");
            }
        }
    }

    async fn on_report(&mut self, r: TaskReport) -> Option<Outcome> {
        let report = match r.kind? {
            task_report::Kind::Running(_) => Report::Running,
            task_report::Kind::Failed(f) => Report::Failed(f.reason),
            task_report::Kind::Finished(_) => Report::Finished { end_of_input: self.final_snapshot(r.subtask) },
            task_report::Kind::CheckpointDeclined(d) => Report::Declined { id: d.checkpoint_id, reason: d.reason },
            task_report::Kind::CheckpointAck(ack) => Report::Ack { id: ack.checkpoint_id, snapshot: ack.snapshot? },
        };
        match self.cur.on_report(&r.worker_id, r.attempt, r.subtask, report) {
            Reaction::Ignored(why) => {
                tracing::debug!(job = %self.job_id(), worker = %r.worker_id, "task report ignored: {why}");
                None
            }
            Reaction::End(outcome) => {
                if matches!(outcome, Outcome::Ended(..)) {
                    self.publish_subtasks();
                }
                Some(outcome)
            }
            Reaction::Go { states_changed, commands } => {
                if states_changed {
                    self.publish_subtasks();
                }
                self.run_commands(commands).await.err()
            }
        }
    }

    /// Writes the metadata blob, then the guarded pointer (the commit point).
    /// `Err` is the store outcome when not committed: [`StoreOutcome::NotPublished`] (definitely
    /// not visible) or [`StoreOutcome::Unknown`].
    async fn publish(&mut self, id: u64, mut subtasks: Vec<SubtaskSnapshot>) -> Result<Committed, StoreOutcome> {
        let (Some(fence), Some(stores), Some(store)) = (self.fence(), self.stores(), self.checkpoint_store()) else {
            return Err(StoreOutcome::NotPublished("leadership lost before publishing".into()));
        };
        subtasks.sort_by_key(|s| s.subtask);
        let (triggered, savepoint) = self
            .inflight
            .as_ref()
            .filter(|p| p.id == id)
            .map(|p| (p.triggered, p.savepoint.is_some()))
            .unwrap_or((0, false));
        let meta = CheckpointMetadata {
            format_version: keel_proto::FORMAT_VERSION,
            job_id: self.graph.job_id.clone(),
            checkpoint_id: id,
            attempt: self.cur.number(),
            epoch: self.epoch.0,
            triggered_unix_ms: triggered,
            completed_unix_ms: now_ms(),
            parallelism: self.cur.assignment().len() as u32,
            subtasks,
            savepoint,
        };
        let path = match store.write_metadata(self.job_id(), &meta).await {
            Ok(path) => path,
            Err(e) => return Err(StoreOutcome::NotPublished(format!("writing checkpoint metadata failed: {e}"))),
        };
        if super::test_switches::exit_before_pointer_now(id) {
            tracing::error!(job = %self.job_id(), checkpoint = id, "test-only fault: exiting before the pointer write");
            std::process::exit(137);
        }
        // When the guarded pointer write is sent, after the blob upload (the history checker
        // orders it by this; storage latency must not widen its tolerance).
        let issued_ms = now_ms();
        match stores.add_checkpoint(&fence, self.job_id(), id, &path, self.settings.num_retained).await {
            Ok(dropped) => {
                tracing::info!(target: "keel::events", event = "checkpoint_completed", job = %self.job_id(), checkpoint = id, epoch = %self.epoch, issued_ms, "checkpoint completed");
                if super::test_switches::exit_after_pointer_now(id) {
                    tracing::error!(job = %self.job_id(), checkpoint = id, "test-only fault: exiting between the pointer write and the announcement");
                    std::process::exit(137);
                }
                Ok(Committed { meta, path, dropped })
            }
            Err(e @ HaError::LeadershipLost { .. }) => {
                // Nothing became visible: the blob is garbage, the subtasks may drop their files.
                store.delete_metadata(&path).await;
                Err(StoreOutcome::NotPublished(format!("publishing checkpoint {id} failed: {e}")))
            }
            Err(e) => Err(StoreOutcome::Unknown(format!("publishing checkpoint {id} has an unknown outcome: {e}"))),
        }
    }

    /// A checkpoint is committed: it becomes the restore point; the subtasks are told (sinks
    /// commit); a savepoint is written; checkpoints beyond retention lose their files.
    async fn on_committed(&mut self, id: u64, c: Committed) {
        let Committed { meta, path, dropped } = c;
        let Some(store) = self.checkpoint_store() else { return };
        self.restore = Some(RestorePoint { checkpoint_id: id, path: path.clone(), metadata: meta.clone() });
        let external = store.location(&path);
        crate::metrics::job_events().checkpoint_completed(
            meta.triggered_unix_ms,
            meta.completed_unix_ms,
            meta.encoded_len(),
        );
        self.status.send_modify(|s| {
            s.completed += 1;
            let entry = CheckpointEntry {
                id,
                status: "COMPLETED".into(),
                trigger_timestamp: meta.triggered_unix_ms,
                latest_ack_timestamp: meta.completed_unix_ms,
                external_path: external.clone(),
                is_savepoint: meta.savepoint,
                failure_message: None,
            };
            if let Some(h) = s.history.iter_mut().find(|h| h.id == id) {
                *h = entry.clone();
            }
            s.latest_completed = Some(entry);
        });
        self.notify_all(id, true).await;
        if let Some(inflight) = self.inflight.take().filter(|p| p.id == id) {
            if let Some((target, reply)) = inflight.savepoint {
                let r = store.write_savepoint(&meta, &target).await.map_err(JobError::Failed);
                if let Ok(location) = &r {
                    tracing::info!(target: "keel::events", event = "savepoint_written", job = %meta.job_id, checkpoint = meta.checkpoint_id, %location, "savepoint written");
                }
                let _ = reply.send(r);
            }
        }
        // Retention: pointers are gone; now their files (shared files only when no retained
        // checkpoint references them).
        if dropped.is_empty() {
            return;
        }
        let (Some(stores), Some(fence)) = (self.stores(), self.fence()) else { return };
        // Delete only what is certainly unused: every retained checkpoint's metadata must
        // read back, and this dispatcher must still lead; otherwise the files stay.
        let retained = match self.retained_metadata(&stores, &fence, &store).await {
            Ok(r) if self.can_act() => r,
            Ok(_) => return,
            Err(e) => {
                tracing::warn!(job = %self.job_id(), error = %e, "retained checkpoints unreadable; dropped checkpoints' files are kept");
                return;
            }
        };
        for d in dropped {
            match store.read_metadata(&d.metadata_path).await {
                Ok(old) => {
                    if let Err(e) = store.discard(self.job_id(), &[old], &retained).await {
                        tracing::warn!(job = %self.job_id(), checkpoint = d.checkpoint_id, error = %e, "could not delete a dropped checkpoint's files");
                    }
                }
                Err(e) => {
                    tracing::warn!(job = %self.job_id(), checkpoint = d.checkpoint_id, error = %e, "dropped checkpoint's metadata unreadable; its files stay")
                }
            }
            store.delete_metadata(&d.metadata_path).await;
        }
    }

    async fn retained_metadata(
        &self,
        stores: &HaStores,
        fence: &Fence,
        store: &CheckpointStore,
    ) -> Result<Vec<CheckpointMetadata>, String> {
        let mut out = Vec::new();
        for p in stores.checkpoints(fence.client(), self.job_id()).await.map_err(|e| e.to_string())? {
            out.push(store.read_metadata(&p.metadata_path).await?);
        }
        Ok(out)
    }

    /// Cancels every subtask of the current attempt (best effort; workers also drop tasks of
    /// older attempts and older epochs on their own).
    async fn stop_tasks(&mut self) {
        let _ = self.apply(Event::Abort { reason: "the attempt ended".into() }).await;
        let mut workers = self.cur.assignment().to_vec();
        workers.dedup();
        for w in workers {
            let cmd = CancelTask { job_id: self.graph.job_id.clone(), attempt: self.cur.number() };
            let _ = self.rm.send(self.epoch, &w, leader_command::Kind::Cancel(cmd)).await;
        }
        self.pool.release(&self.graph.job_id);
    }

    /// The end of a job: result (dirty) → cleanup → clean. The result is written while this
    /// master's leadership lasts (waiting out a suspension, retrying temporary errors): a job
    /// whose end was decided never runs again. If leadership is lost first, the next leader
    /// decides (and finishes the cleanup of a dirty result).
    async fn end(&mut self, terminal: Terminal, reason: String, session: &CancellationToken) {
        self.set_state(terminal.state());
        let state = terminal.as_str();
        self.status.send_modify(|s| {
            s.end_time = now_ms();
            if !reason.is_empty() {
                s.failure = Some(reason.clone());
            }
        });
        if self.stores().is_none() {
            return;
        }
        tracing::info!(target: "keel::events", event = "job_ended", job = %self.job_id(), state, %reason, "job ended");
        // TEST-ONLY (KEEL_TEST_DISABLE_DURABLE_CANCEL): the cancel's result is never written,
        // as when the leader was suspended or put_result failed before the fix.
        if terminal == Terminal::Canceled && super::test_switches::durable_cancel_disabled() {
            tracing::error!(job = %self.job_id(), "the cancel's result is not recorded (durable cancel is off)");
            self.status.send_modify(|s| s.cleaned = true);
            return;
        }
        if let Err(e) = self.record_result(terminal, &reason, session, true).await {
            tracing::error!(job = %self.job_id(), error = %e, "cannot write the job result; the job stays stored and the next leader decides");
            return;
        }
        let (Some(fence), Some(stores)) = (self.fence(), self.stores()) else {
            tracing::warn!(job = %self.job_id(), state, "leadership lost after the result was recorded; the next leader finishes the cleanup");
            return;
        };
        match cleanup(&stores, &fence, &self.settings, self.job_id()).await {
            Ok(()) => self.status.send_modify(|s| s.cleaned = true),
            Err(e) => {
                tracing::error!(job = %self.job_id(), error = %e, "cleanup failed; the result stays dirty and the next leader session retries")
            }
        }
    }
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// Deletes an ended job's ZooKeeper nodes and checkpoint files, then marks its result clean.
pub async fn cleanup(stores: &HaStores, fence: &Fence, settings: &JobSettings, job_id: &str) -> Result<(), JobError> {
    // Sink parts that never committed (a cancelled attempt's) must never become visible.
    if let Ok(graph) = stores.get_job_graph(fence.client(), job_id).await {
        if let Ok(spec) = parse_spec(&graph, settings) {
            if let Err(e) = keel_job::discard_sink_pending(&spec, &settings.storage_options, job_id).await {
                tracing::warn!(job = %job_id, error = %e, "could not delete the sink's pending parts");
            }
        }
    }
    stores.remove_job(fence, job_id).await?;
    if let Some(dir) = &settings.checkpoints {
        CheckpointStore::new(dir.clone(), settings.storage_options.clone())
            .discard_job(job_id)
            .await
            .map_err(|e| JobError::Failed(format!("deleting checkpoint files: {e}")))?;
    }
    stores.mark_result_clean(fence, job_id).await?;
    tracing::info!(target: "keel::events", event = "job_cleaned", job = %job_id, "job cleaned up");
    Ok(())
}
