//! Task hosting: runs the subtasks a leader deploys, routes checkpoint commands to them, and
//! reports what they do back to the leader that deployed them.
//!
//! Every subtask belongs to one job attempt and is bound to one leader epoch (the leader that
//! deployed or adopted it: it reports there and takes commands from there). A deploy of a newer
//! attempt replaces an older one.
//!
//! A (re-)registration unbinds every subtask. With `high-availability.adoption.timeout` at 0 it
//! cancels them (to the leader the worker is a new incarnation; it restarts the affected jobs
//! from their latest completed checkpoint). Otherwise they keep running as **orphans**: listed in
//! the registration, reporting nowhere, taking no checkpoint commands, until the new leader
//! adopts them (`AdoptTasks`, binding them to its epoch) or the timeout passes (cancelled).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use keel_ha::LeaderEpoch;
use keel_job::{Control, OperatorRegistry, SubtaskContext, SubtaskEvent};
use keel_proto::v1::dispatcher_client::DispatcherClient;
use keel_proto::v1::{
    task_report, CancelTask, CheckpointAck, CheckpointDeclined, DeployTask, NotifyCheckpoint, TaskFailed, TaskFinished,
    TaskReport, TaskRunning, TriggerCheckpoint,
};
use keel_state::StateOptions;
use keel_storage::{StorageDir, StorageOptions};
use tokio::sync::mpsc;
use tonic::Status;

use crate::state::WorkerState;

struct RunningTask {
    attempt: u64,
    epoch: LeaderEpoch,
    control: mpsc::UnboundedSender<Control>,
    metrics: Arc<keel_job::TaskMetrics>,
    /// Where its reports go: the leader it is bound to; `None` while orphaned.
    binding: Arc<Mutex<Option<Binding>>>,
}

/// The leader a subtask reports to.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Binding {
    epoch: LeaderEpoch,
    address: String,
}

/// A subtask whose leader is gone, kept running for adoption.
struct Orphan {
    task: RunningTask,
    since: std::time::Instant,
}

/// One running subtask's counters (see [`TaskHost::task_metrics`]).
pub struct TaskMetricsView {
    pub job_id: String,
    pub subtask: u32,
    pub attempt: u64,
    pub metrics: Arc<keel_job::TaskMetrics>,
}

/// Settings the host needs from the configuration.
#[derive(Clone, Debug)]
pub struct HostSettings {
    pub storage_options: StorageOptions,
    pub state: StateOptions,
    /// `high-availability.adoption.timeout`: how long orphaned subtasks wait for adoption
    /// (zero: a registration cancels them at once).
    pub adoption_timeout: Duration,
}

/// How many jobs' newest attempt numbers a worker remembers (oldest forgotten first).
const REMEMBERED_JOBS: usize = 10_000;

/// The subtasks and what the host knows about attempts, under one lock: deploying, and
/// switching the registration (which cancels everything), are atomic with respect to each
/// other.
#[derive(Default)]
struct Tasks {
    /// Subtasks bound to a leader.
    running: HashMap<(String, u32), RunningTask>,
    /// Subtasks whose leader is gone, waiting for adoption.
    orphans: HashMap<(String, u32), Orphan>,
    /// Per job, the oldest attempt that may still start: the newest deployed one, or the one
    /// after the newest cancelled one. An older attempt never starts (attempts are fenced like
    /// leader epochs).
    newest_attempt: HashMap<String, u64>,
    /// Jobs in `newest_attempt`, oldest first (bounds its size).
    remembered: std::collections::VecDeque<String>,
    /// A registration is in flight ([`TaskHost::begin_registration`]): every deploy and
    /// adoption is refused (the sender retries) until it is recorded or has failed. A leader
    /// answers a registration before the worker records it; a command sent in that gap would
    /// otherwise be admitted under the old registration (same epoch: `high-availability.type:
    /// none`, or the same leader registered again) and then undone by the switch, leaving the
    /// leader sure of subtasks that are orphaned or cancelled.
    registering: bool,
}

impl Tasks {
    fn see_attempt(&mut self, job_id: &str, attempt: u64) {
        match self.newest_attempt.get_mut(job_id) {
            Some(a) => *a = (*a).max(attempt),
            None => {
                self.newest_attempt.insert(job_id.to_string(), attempt);
                self.remembered.push_back(job_id.to_string());
                while self.remembered.len() > REMEMBERED_JOBS {
                    if let Some(old) = self.remembered.pop_front() {
                        self.newest_attempt.remove(&old);
                    }
                }
            }
        }
    }
}

/// Why a deploy was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeployRefused {
    /// Not registered with the leader of the command's epoch (yet).
    #[error("worker {worker} is not registered with the leader of epoch {epoch}; register first")]
    NotRegistered { worker: String, epoch: LeaderEpoch },
    /// A newer attempt of the job was already seen here.
    #[error("job {job_id} attempt {attempt} is stale: attempts before {newest} are over on this worker (a newer one was deployed or an older one cancelled)")]
    StaleAttempt { job_id: String, attempt: u64, newest: u64 },
    /// The deploy itself is malformed.
    #[error("{0}")]
    Invalid(String),
    /// An adoption names subtasks that do not run here (any more) for that attempt.
    #[error(
        "job {job_id} attempt {attempt}: subtasks {missing:?} are not running on worker {worker}; nothing adopted"
    )]
    NotRunning { worker: String, job_id: String, attempt: u64, missing: Vec<u32> },
}

impl From<DeployRefused> for Status {
    fn from(r: DeployRefused) -> Status {
        match &r {
            DeployRefused::NotRegistered { .. } => {
                let mut s = Status::unavailable(r.to_string());
                s.metadata_mut()
                    .insert(crate::service::NOT_READY_METADATA, tonic::metadata::MetadataValue::from_static("1"));
                s
            }
            DeployRefused::StaleAttempt { .. } => Status::failed_precondition(r.to_string()),
            DeployRefused::Invalid(m) => Status::invalid_argument(m.clone()),
            DeployRefused::NotRunning { .. } => Status::not_found(r.to_string()),
        }
    }
}

pub struct TaskHost {
    worker: Arc<WorkerState>,
    settings: HostSettings,
    registry: Arc<OperatorRegistry>,
    tasks: Mutex<Tasks>,
}

impl TaskHost {
    pub fn new(worker: Arc<WorkerState>, settings: HostSettings, registry: Arc<OperatorRegistry>) -> Self {
        Self { worker, settings, registry, tasks: Mutex::new(Tasks::default()) }
    }

    /// `high-availability.adoption.timeout`.
    pub fn adoption_timeout(&self) -> Duration {
        self.settings.adoption_timeout
    }

    /// Number of subtasks on this worker, bound to a leader or orphaned.
    pub fn hosted(&self) -> usize {
        let tasks = self.tasks.lock().expect("tasks lock");
        tasks.running.len() + tasks.orphans.len()
    }

    /// Number of subtasks running now bound to a leader.
    pub fn running(&self) -> usize {
        self.tasks.lock().expect("tasks lock").running.len()
    }

    /// The counters of every subtask running now (for `/metrics`).
    pub fn task_metrics(&self) -> Vec<TaskMetricsView> {
        let tasks = self.tasks.lock().expect("tasks lock");
        tasks
            .running
            .iter()
            .chain(tasks.orphans.iter().map(|(k, o)| (k, &o.task)))
            .map(|((job_id, subtask), t)| TaskMetricsView {
                job_id: job_id.clone(),
                subtask: *subtask,
                attempt: t.attempt,
                metrics: t.metrics.clone(),
            })
            .collect()
    }

    /// The oldest attempt of `job_id` that may still start here, if the job was seen.
    pub fn newest_attempt(&self, job_id: &str) -> Option<u64> {
        self.tasks.lock().expect("tasks lock").newest_attempt.get(job_id).copied()
    }

    /// The checks a deploy and an adoption share, under the tasks lock: this worker is
    /// registered with the leader of `epoch` (its address is returned), and `attempt` is not
    /// older than the newest seen for the job.
    fn admit(
        &self,
        tasks: &Tasks,
        epoch: LeaderEpoch,
        job_id: &str,
        attempt: u64,
        what: &str,
    ) -> Result<String, DeployRefused> {
        if tasks.registering && !registration_gate_disabled() {
            return Err(DeployRefused::NotRegistered { worker: self.worker.id.clone(), epoch });
        }
        let Some(address) = self.worker.registration().filter(|r| r.epoch == epoch).map(|r| r.address) else {
            return Err(DeployRefused::NotRegistered { worker: self.worker.id.clone(), epoch });
        };
        if let Some(&newest) = tasks.newest_attempt.get(job_id) {
            if attempt < newest && !keel_job::attempt_fence_disabled() {
                tracing::warn!(
                    target: "keel::events", event = "stale_attempt_refused",
                    job = %job_id, attempt, newest, %epoch, "{what} of a stale attempt refused"
                );
                return Err(DeployRefused::StaleAttempt { job_id: job_id.to_string(), attempt, newest });
            }
        }
        Ok(address)
    }

    /// Deploys a subtask for the leader of `epoch`. Refused unless this worker is registered
    /// with that leader, and refused for an attempt older than the newest one seen for the
    /// job. The check and the start are atomic with respect to [`TaskHost::register`].
    pub fn deploy(self: &Arc<Self>, epoch: LeaderEpoch, d: DeployTask) -> Result<(), DeployRefused> {
        let key = (d.job_id.clone(), d.subtask);
        let spec = keel_job::parse_job_spec_with(&d.spec_yaml, &format!("job {}", d.job_id), &self.registry)
            .map_err(|e| DeployRefused::Invalid(format!("job {}: {e}", d.job_id)))?;
        let checkpoints = StorageDir::open(&d.checkpoints_uri, &self.settings.storage_options)
            .map_err(|e| DeployRefused::Invalid(format!("checkpoints directory: {e}")))?;
        let mut tasks = self.tasks.lock().expect("tasks lock");
        let leader_address = self.admit(&tasks, epoch, &d.job_id, d.attempt, "deploy")?;
        tasks.see_attempt(&d.job_id, d.attempt);
        if let Some(existing) = tasks.running.remove(&key) {
            let _ = existing.control.send(Control::Cancel);
        }
        if let Some(orphan) = tasks.orphans.remove(&key) {
            let _ = orphan.task.control.send(Control::Cancel);
        }
        let ctx = SubtaskContext {
            job_id: d.job_id.clone(),
            attempt: d.attempt,
            subtask: d.subtask,
            parallelism: d.parallelism,
            checkpoints,
            storage_options: self.settings.storage_options.clone(),
            state: self.settings.state.clone(),
            registry: self.registry.clone(),
        };
        let handle = keel_job::spawn_subtask(Arc::new(spec), ctx, d.restore.clone());
        let control = handle.control.clone();
        let metrics = handle.metrics.clone();
        let binding = Arc::new(Mutex::new(Some(Binding { epoch, address: leader_address })));
        tasks
            .running
            .insert(key.clone(), RunningTask { attempt: d.attempt, epoch, control, metrics, binding: binding.clone() });
        drop(tasks);
        tracing::info!(
            target: "keel::events", event = "task_deployed",
            job = %d.job_id, subtask = d.subtask, attempt = d.attempt, %epoch,
            restore_checkpoint = d.restore_checkpoint_id, "subtask deployed"
        );
        let host = self.clone();
        let mut events = handle.events;
        tokio::spawn(async move {
            let mut reporter: Option<(Binding, Reporter)> = None;
            while let Some(event) = events.recv().await {
                let ended = matches!(event, SubtaskEvent::Finished | SubtaskEvent::Failed { .. });
                let kind = match event {
                    SubtaskEvent::Running => task_report::Kind::Running(TaskRunning {}),
                    SubtaskEvent::CheckpointAck { id, snapshot } => {
                        task_report::Kind::CheckpointAck(CheckpointAck { checkpoint_id: id, snapshot: Some(snapshot) })
                    }
                    SubtaskEvent::CheckpointDeclined { id, reason } => {
                        task_report::Kind::CheckpointDeclined(CheckpointDeclined { checkpoint_id: id, reason })
                    }
                    SubtaskEvent::Finished => task_report::Kind::Finished(TaskFinished {}),
                    SubtaskEvent::Failed { reason } => {
                        tracing::warn!(job = %key.0, subtask = key.1, %reason, "subtask failed");
                        task_report::Kind::Failed(TaskFailed { reason })
                    }
                };
                // To the leader the subtask is bound to now; an orphan's reports go nowhere (a
                // leader that adopts it learns its state from what it does next).
                let bound = binding.lock().expect("binding lock").clone();
                let Some(bound) = bound else {
                    tracing::debug!(job = %key.0, subtask = key.1, "orphaned subtask: report dropped");
                    if ended {
                        break;
                    }
                    continue;
                };
                if reporter.as_ref().is_none_or(|(b, _)| *b != bound) {
                    reporter =
                        Some((bound.clone(), Reporter::new(bound.address.clone(), host.worker.security.clone())));
                }
                let report = TaskReport {
                    worker_id: host.worker.id.clone(),
                    epoch: bound.epoch.0,
                    job_id: key.0.clone(),
                    attempt: d.attempt,
                    subtask: key.1,
                    kind: Some(kind),
                };
                if let Some((_, r)) = reporter.as_mut() {
                    r.send(report).await;
                }
                if ended {
                    break;
                }
            }
            let mut tasks = host.tasks.lock().expect("tasks lock");
            if tasks.running.get(&key).is_some_and(|t| t.attempt == d.attempt) {
                tasks.running.remove(&key);
            }
            if tasks.orphans.get(&key).is_some_and(|o| o.task.attempt == d.attempt) {
                tasks.orphans.remove(&key);
            }
        });
        Ok(())
    }

    /// Sends `control` to every bound subtask of `job_id` attempt `attempt`; returns the
    /// subtasks reached, ascending.
    fn route(&self, job_id: &str, attempt: u64, control: impl Fn() -> Control) -> Vec<u32> {
        let tasks = self.tasks.lock().expect("tasks lock");
        let mut reached = Vec::new();
        for ((job, subtask), t) in tasks.running.iter() {
            if job == job_id && t.attempt == attempt {
                let _ = t.control.send(control());
                reached.push(*subtask);
            }
        }
        reached.sort_unstable();
        reached
    }

    /// Triggers a checkpoint on every subtask of the attempt here; returns the subtasks
    /// reached (the leader fails over one it assigned here that is not among them).
    pub fn trigger(&self, t: TriggerCheckpoint) -> Result<Vec<u32>, Status> {
        let id = t.checkpoint_id;
        test_vanish_subtask(self, &t.job_id, t.attempt);
        let reached = self.route(&t.job_id, t.attempt, || Control::TriggerCheckpoint { id });
        if reached.is_empty() {
            return Err(Status::not_found(format!("no subtask of job {} attempt {} runs here", t.job_id, t.attempt)));
        }
        Ok(reached)
    }

    pub fn notify(&self, n: NotifyCheckpoint) -> Result<(), Status> {
        let id = n.checkpoint_id;
        let routed = if n.complete {
            self.route(&n.job_id, n.attempt, || Control::CheckpointComplete { id })
        } else {
            self.route(&n.job_id, n.attempt, || Control::CheckpointAborted { id })
        };
        if routed.is_empty() {
            return Err(Status::not_found(format!("no subtask of job {} attempt {} runs here", n.job_id, n.attempt)));
        }
        Ok(())
    }

    /// Cancels every subtask of `c.job_id` up to attempt `c.attempt`; a later deploy of any
    /// of those attempts is refused.
    pub fn cancel(&self, c: CancelTask) {
        let mut tasks = self.tasks.lock().expect("tasks lock");
        // Every attempt up to the cancelled one is over: none of them may start later.
        tasks.see_attempt(&c.job_id, c.attempt.saturating_add(1));
        tasks.running.retain(|(job, subtask), t| {
            if *job == c.job_id && t.attempt <= c.attempt {
                tracing::info!(job = %job, subtask, attempt = t.attempt, "subtask cancelled");
                let _ = t.control.send(Control::Cancel);
                false
            } else {
                true
            }
        });
        tasks.orphans.retain(|(job, subtask), o| {
            if *job == c.job_id && o.task.attempt <= c.attempt {
                tracing::info!(job = %job, subtask, attempt = o.task.attempt, "orphaned subtask cancelled");
                let _ = o.task.control.send(Control::Cancel);
                false
            } else {
                true
            }
        });
    }

    /// The subtasks running here (bound or orphaned), for the registration request.
    pub fn adoptable(&self) -> Vec<keel_proto::v1::RunningSubtask> {
        if self.settings.adoption_timeout.is_zero() {
            return vec![];
        }
        let tasks = self.tasks.lock().expect("tasks lock");
        let mut out: Vec<keel_proto::v1::RunningSubtask> = tasks
            .running
            .iter()
            .chain(tasks.orphans.iter().map(|(k, o)| (k, &o.task)))
            .map(|((job_id, subtask), t)| keel_proto::v1::RunningSubtask {
                job_id: job_id.clone(),
                attempt: t.attempt,
                subtask: *subtask,
                last_acked_checkpoint: t.metrics.last_acked_checkpoint.load(std::sync::atomic::Ordering::Relaxed),
                last_committed_checkpoint: t
                    .metrics
                    .last_committed_checkpoint
                    .load(std::sync::atomic::Ordering::Relaxed),
            })
            .collect();
        out.sort_by(|a, b| (&a.job_id, a.subtask).cmp(&(&b.job_id, b.subtask)));
        out
    }

    /// The leader of `epoch` adopts subtasks of one job attempt that kept running through the
    /// leader change: they are bound to it (report to it, take its checkpoint commands). All or
    /// nothing: refused unless every listed subtask of that attempt runs here (orphaned, or
    /// already bound to this epoch: a retried adoption). Refused like a deploy unless this
    /// worker is registered with that leader, and for an attempt older than the newest seen.
    pub fn adopt(&self, epoch: LeaderEpoch, a: keel_proto::v1::AdoptTasks) -> Result<(), DeployRefused> {
        let mut tasks = self.tasks.lock().expect("tasks lock");
        let address = self.admit(&tasks, epoch, &a.job_id, a.attempt, "adoption")?;
        let missing: Vec<u32> = a
            .subtasks
            .iter()
            .copied()
            .filter(|&i| {
                let key = (a.job_id.clone(), i);
                let orphaned = tasks.orphans.get(&key).is_some_and(|o| o.task.attempt == a.attempt);
                let bound_here = tasks.running.get(&key).is_some_and(|t| t.attempt == a.attempt && t.epoch == epoch);
                !(orphaned || bound_here)
            })
            .collect();
        if !missing.is_empty() || a.subtasks.is_empty() {
            return Err(DeployRefused::NotRunning {
                worker: self.worker.id.clone(),
                job_id: a.job_id.clone(),
                attempt: a.attempt,
                missing,
            });
        }
        for &i in &a.subtasks {
            let key = (a.job_id.clone(), i);
            if let Some(mut o) = tasks.orphans.remove(&key) {
                o.task.epoch = epoch;
                *o.task.binding.lock().expect("binding lock") = Some(Binding { epoch, address: address.clone() });
                tracing::info!(
                    target: "keel::events", event = "task_adopted",
                    job = %a.job_id, subtask = i, attempt = a.attempt, %epoch,
                    orphaned_ms = o.since.elapsed().as_millis() as u64, "subtask adopted by the new leader"
                );
                tasks.running.insert(key, o.task);
            }
        }
        Ok(())
    }

    /// Records a new registration and cancels every subtask, atomically with respect to
    /// [`TaskHost::deploy`]: a deploy of the old registration's epoch either ran before (and
    /// is cancelled here) or is refused after; a deploy of the new epoch is never cancelled
    /// by this switch. To the leader a worker that (re-)registers is a new incarnation; it
    /// restarts the affected jobs from their latest checkpoints itself.
    ///
    /// With an adoption timeout, the subtasks are not cancelled but orphaned (see the module
    /// docs): unbound at once, so nothing they do reaches the old leader, and cancelled once
    /// they have waited the timeout without being adopted.
    pub fn register(self: &Arc<Self>, registration: crate::state::Registration, why: &str) {
        let mut tasks = self.tasks.lock().expect("tasks lock");
        tasks.registering = false;
        // Registering again with the same leader (it was silent for heartbeat.timeout): to it
        // the worker is a new incarnation and it restarts the affected jobs itself, so nothing
        // waits for adoption (a cancelled subtask's last report still reaches that leader).
        let same_leader = {
            let mut reg = self.worker.registration.lock().expect("registration lock");
            let same =
                reg.as_ref().is_some_and(|r| r.epoch == registration.epoch && r.leader_id == registration.leader_id);
            *reg = Some(registration);
            same
        };
        let timeout = if same_leader { Duration::ZERO } else { self.settings.adoption_timeout };
        let drained: Vec<((String, u32), RunningTask)> = tasks.running.drain().collect();
        for ((job, subtask), t) in drained {
            if timeout.is_zero() {
                tracing::info!(job = %job, subtask, attempt = t.attempt, epoch = %t.epoch, why, "subtask cancelled");
                let _ = t.control.send(Control::Cancel);
                continue;
            }
            *t.binding.lock().expect("binding lock") = None;
            tracing::info!(
                job = %job, subtask, attempt = t.attempt, epoch = %t.epoch, why,
                timeout_ms = timeout.as_millis() as u64, "subtask orphaned: kept running for the new leader to adopt"
            );
            tasks.orphans.insert((job, subtask), Orphan { task: t, since: std::time::Instant::now() });
        }
        if !timeout.is_zero() && !tasks.orphans.is_empty() {
            let host = Arc::downgrade(self);
            tokio::spawn(async move {
                tokio::time::sleep(timeout).await;
                if let Some(host) = host.upgrade() {
                    host.cancel_overdue_orphans(timeout);
                }
            });
        }
    }

    /// A registration request is about to be sent: deploys and adoptions are refused (as not
    /// registered; leaders retry) until [`TaskHost::register`] records its answer or
    /// [`TaskHost::registration_failed`] is called.
    pub fn begin_registration(&self) {
        self.tasks.lock().expect("tasks lock").registering = true;
    }

    /// The registration in flight failed: the previous one (if any) stands again.
    pub fn registration_failed(&self) {
        self.tasks.lock().expect("tasks lock").registering = false;
    }

    /// Cancels the orphans that waited `timeout` without being adopted.
    fn cancel_overdue_orphans(&self, timeout: Duration) {
        let mut tasks = self.tasks.lock().expect("tasks lock");
        tasks.orphans.retain(|(job, subtask), o| {
            if o.since.elapsed() < timeout {
                return true;
            }
            tracing::warn!(
                target: "keel::events", event = "orphan_cancelled",
                job = %job, subtask, attempt = o.task.attempt,
                "subtask not adopted within high-availability.adoption.timeout; cancelled"
            );
            let _ = o.task.control.send(Control::Cancel);
            false
        });
    }

    /// Cancels every subtask (the worker is stopping).
    pub fn cancel_all(&self, why: &str) {
        let mut tasks = self.tasks.lock().expect("tasks lock");
        let orphans: Vec<((String, u32), RunningTask)> = tasks.orphans.drain().map(|(k, o)| (k, o.task)).collect();
        for ((job, subtask), t) in tasks.running.drain().chain(orphans) {
            tracing::info!(job = %job, subtask, attempt = t.attempt, epoch = %t.epoch, why, "subtask cancelled");
            let _ = t.control.send(Control::Cancel);
        }
    }
}

/// `KEEL_TEST_DISABLE_REGISTRATION_GATE=1` (test-only switch): deploys and adoptions are
/// admitted while a registration is in flight (under the registration it replaces), as before
/// the gate; with `KEEL_TEST_DELAY_REGISTRATION_SWITCH_MS` a restarted none-mode dispatcher's
/// adoption is then undone by the switch.
pub fn registration_gate_disabled() -> bool {
    static OFF: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *OFF.get_or_init(|| {
        let off = std::env::var("KEEL_TEST_DISABLE_REGISTRATION_GATE").is_ok_and(|v| v == "1");
        if off {
            tracing::error!("KEEL_TEST_DISABLE_REGISTRATION_GATE=1: commands are admitted while a registration is in flight (test-only switch)");
        }
        off
    })
}

/// `KEEL_TEST_VANISH_SUBTASK_FILE=<path>` (fault injection, test-only): while the file
/// exists, the next checkpoint trigger for a job first deletes it and makes the job's
/// highest-numbered subtask here vanish without a report (cancelled, unbound: as if its last
/// report was lost), leaving the others running.
fn test_vanish_subtask(host: &TaskHost, job_id: &str, attempt: u64) {
    static FILE: std::sync::OnceLock<Option<std::path::PathBuf>> = std::sync::OnceLock::new();
    let file = FILE.get_or_init(|| std::env::var_os("KEEL_TEST_VANISH_SUBTASK_FILE").map(std::path::PathBuf::from));
    let Some(file) = file else { return };
    if std::fs::remove_file(file).is_err() {
        return;
    }
    let mut tasks = host.tasks.lock().expect("tasks lock");
    let victim = tasks.running.keys().filter(|(job, _)| job == job_id).map(|(_, i)| *i).max();
    if let Some(task) = victim.and_then(|i| tasks.running.remove(&(job_id.to_string(), i))) {
        *task.binding.lock().expect("binding lock") = None;
        let _ = task.control.send(Control::Cancel);
        tracing::error!(job = %job_id, attempt, subtask = ?victim, "test-only fault: a subtask vanishes without a report");
    }
}

/// Sends task reports to the leader that deployed the task, retrying briefly.
struct Reporter {
    address: String,
    client: Option<DispatcherClient<keel_proto::security::InternalChannel>>,
    security: keel_proto::security::InternalSecurity,
}

impl Reporter {
    fn new(address: String, security: keel_proto::security::InternalSecurity) -> Self {
        Self { address, client: None, security }
    }

    async fn send(&mut self, report: TaskReport) {
        for attempt in 0..5u32 {
            if self.client.is_none() {
                match self.security.endpoint(&self.address) {
                    Ok(endpoint) => {
                        let endpoint = endpoint.connect_timeout(Duration::from_secs(1)).timeout(Duration::from_secs(5));
                        self.client = Some(DispatcherClient::new(self.security.intercept(endpoint.connect_lazy())));
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot send task reports to the leader"),
                }
            }
            let Some(client) = self.client.as_mut() else { return };
            match client.report_task(report.clone()).await {
                Ok(_) => return,
                // The leader answered: it does not want this report (another epoch, job gone).
                Err(s) if matches!(s.code(), tonic::Code::FailedPrecondition | tonic::Code::NotFound) => {
                    tracing::debug!(status = %s, "task report refused by the leader");
                    return;
                }
                Err(s) => {
                    tracing::debug!(status = %s, attempt, "task report failed; retrying");
                    self.client = None;
                    tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::Registration;

    fn host(dir: &std::path::Path) -> Arc<TaskHost> {
        host_adopting(dir, Duration::ZERO)
    }

    /// A host whose orphans wait `adoption_timeout` for adoption.
    fn host_adopting(dir: &std::path::Path, adoption_timeout: Duration) -> Arc<TaskHost> {
        let worker = Arc::new(WorkerState::new("w1".into(), "127.0.0.1:1".into(), 4));
        let settings = HostSettings {
            storage_options: StorageOptions::default(),
            state: StateOptions::new(&dir.join("tmp")).with_local_dir(dir.join("local")),
            adoption_timeout,
        };
        Arc::new(TaskHost::new(worker, settings, Arc::new(OperatorRegistry::default())))
    }

    fn deploy(dir: &std::path::Path, attempt: u64) -> DeployTask {
        DeployTask {
            job_id: "job-1".into(),
            attempt,
            subtask: 0,
            parallelism: 1,
            spec_yaml:
                "name: t\npipeline:\n  - source: { type: sequence, keys: 2, rate: 10 }\n  - sink: { type: discard }\n"
                    .into(),
            checkpoints_uri: format!("file://{}/chk", dir.display()),
            restore: None,
            restore_checkpoint_id: 0,
        }
    }

    fn registration(epoch: i64) -> Registration {
        Registration {
            leader_id: "d1".into(),
            epoch: LeaderEpoch(epoch),
            address: "127.0.0.1:1".into(),
            last_heard: std::time::Instant::now(),
        }
    }

    /// Issue #7 hole 1: a deploy of an attempt older than one already seen for the job never
    /// starts (a delayed Deploy arriving after a newer one, or after its own cancel).
    #[tokio::test]
    async fn an_older_attempt_never_starts_after_a_newer_one() {
        let dir = tempfile::tempdir().unwrap();
        let host = host(dir.path());
        let e = LeaderEpoch(7);
        assert!(matches!(host.deploy(e, deploy(dir.path(), 3)), Err(DeployRefused::NotRegistered { .. })));
        host.register(registration(7), "test");
        host.deploy(e, deploy(dir.path(), 3)).expect("attempt 3 starts");
        host.deploy(e, deploy(dir.path(), 5)).expect("attempt 5 replaces it");
        assert_eq!(
            host.deploy(e, deploy(dir.path(), 4)),
            Err(DeployRefused::StaleAttempt { job_id: "job-1".into(), attempt: 4, newest: 5 })
        );
        assert_eq!(host.running(), 1);
        // A cancel of attempt 6 fences every attempt up to 6, even one never deployed here.
        host.cancel(CancelTask { job_id: "job-1".into(), attempt: 6 });
        assert_eq!(host.running(), 0);
        assert!(matches!(host.deploy(e, deploy(dir.path(), 6)), Err(DeployRefused::StaleAttempt { .. })));
        host.deploy(e, deploy(dir.path(), 7)).expect("a newer attempt starts");
        // A new registration cancels everything; a deploy of the old epoch is then refused.
        host.register(registration(9), "test");
        assert_eq!(host.running(), 0);
        assert!(matches!(host.deploy(e, deploy(dir.path(), 8)), Err(DeployRefused::NotRegistered { .. })));
        host.cancel_all("test end");
    }

    /// Adoption (issue 10 part 2): with an adoption timeout a re-registration orphans the
    /// subtasks instead of cancelling them; they are listed for the new leader, adopted all or
    /// nothing by the leader the worker registered with, and cancelled once the timeout passes.
    #[tokio::test]
    async fn orphans_are_listed_adopted_all_or_nothing_and_cancelled_after_the_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let host = host_adopting(dir.path(), Duration::from_millis(300));
        let adopt =
            |attempt, subtasks: Vec<u32>| keel_proto::v1::AdoptTasks { job_id: "job-1".into(), attempt, subtasks };
        host.register(registration(7), "test");
        host.deploy(LeaderEpoch(7), deploy(dir.path(), 3)).expect("attempt 3 starts");
        assert!(
            host.adopt(LeaderEpoch(7), adopt(3, vec![0])).is_ok(),
            "already bound to this epoch: a retry is a no-op"
        );

        // A new leader: the subtask keeps running, unbound, and is listed for adoption.
        host.register(registration(9), "test");
        assert_eq!(host.running(), 0, "nothing is bound to a leader any more");
        let listed = host.adoptable();
        assert_eq!(listed.len(), 1);
        assert_eq!((listed[0].job_id.as_str(), listed[0].attempt, listed[0].subtask), ("job-1", 3, 0));
        // Only the leader the worker registered with may adopt, only that attempt, only all of it.
        assert!(matches!(host.adopt(LeaderEpoch(8), adopt(3, vec![0])), Err(DeployRefused::NotRegistered { .. })));
        assert!(matches!(host.adopt(LeaderEpoch(9), adopt(2, vec![0])), Err(DeployRefused::StaleAttempt { .. })));
        assert!(matches!(host.adopt(LeaderEpoch(9), adopt(4, vec![0])), Err(DeployRefused::NotRunning { .. })));
        assert!(matches!(host.adopt(LeaderEpoch(9), adopt(3, vec![0, 1])), Err(DeployRefused::NotRunning { .. })));
        assert_eq!(host.running(), 0, "a refused adoption adopts nothing");
        host.adopt(LeaderEpoch(9), adopt(3, vec![0])).expect("the new leader adopts attempt 3");
        assert_eq!(host.running(), 1);
        assert_eq!(host.tasks.lock().unwrap().running[&("job-1".to_string(), 0)].epoch, LeaderEpoch(9));

        // Orphaned again and never adopted: cancelled once the timeout has passed.
        host.register(registration(11), "test");
        assert_eq!(host.adoptable().len(), 1);
        // A bounded wait (up to 60 s, for a 300 ms timer), not a timing assertion.
        for _ in 0..3000 {
            if host.adoptable().is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(host.adoptable().is_empty(), "the orphan was still there 60 s after its 300 ms adoption timeout");
        assert!(matches!(host.adopt(LeaderEpoch(11), adopt(3, vec![0])), Err(DeployRefused::NotRunning { .. })));

        // Registering again with the same leader at the same epoch: it restarts the job itself,
        // so nothing is orphaned; the subtask is cancelled at once.
        host.deploy(LeaderEpoch(11), deploy(dir.path(), 5)).expect("attempt 5 starts");
        host.register(registration(11), "test");
        assert_eq!((host.running(), host.adoptable().len()), (0, 0), "cancelled, not orphaned");
        host.cancel_all("test end");
    }

    /// The CI failure of 2026-12-07 (`local_mode`, 1 run in 8 under load): a restarted
    /// dispatcher (`high-availability.type: none`, so the same epoch) answered the worker's
    /// registration and sent its adoption before the worker had recorded that answer. The
    /// adoption was admitted under the old registration (same epoch: "already bound here"),
    /// then the switch orphaned the subtasks: the leader believed them adopted, they reported
    /// nowhere and refused every checkpoint. While a registration is in flight every deploy
    /// and adoption is refused as not registered (the leader retries); after the switch the
    /// adoption binds the orphans.
    #[tokio::test]
    async fn commands_wait_while_a_registration_is_in_flight() {
        let dir = tempfile::tempdir().unwrap();
        let host = host_adopting(dir.path(), Duration::from_secs(60));
        let adopt = keel_proto::v1::AdoptTasks { job_id: "job-1".into(), attempt: 3, subtasks: vec![0] };
        let e = LeaderEpoch(1);
        host.register(registration(1), "test");
        host.deploy(e, deploy(dir.path(), 3)).expect("attempt 3 starts");

        // The dispatcher restarted (same epoch, a new leader id); the worker registers again.
        host.begin_registration();
        assert!(
            matches!(host.adopt(e, adopt.clone()), Err(DeployRefused::NotRegistered { .. })),
            "an adoption answered before the registration is recorded must wait for it"
        );
        assert!(matches!(host.deploy(e, deploy(dir.path(), 4)), Err(DeployRefused::NotRegistered { .. })));
        host.register(Registration { leader_id: "d1-restarted".into(), ..registration(1) }, "test");
        assert_eq!((host.running(), host.adoptable().len()), (0, 1), "orphaned by the switch");
        host.adopt(e, adopt.clone()).expect("adopted once the registration is recorded");
        assert_eq!(host.running(), 1, "bound to the leader that adopted it");

        // A registration that fails leaves the previous one standing.
        host.begin_registration();
        host.registration_failed();
        host.adopt(e, adopt).expect("a retried adoption after a failed re-registration is a no-op");
        assert_eq!(host.running(), 1);
        host.cancel_all("test end");
    }

    /// Issue #7 hole 6: a deploy and a re-registration are atomic with respect to each other.
    /// Two threads race (bounded: 300 rounds): one re-registers with ever newer epochs, the
    /// other deploys for the epoch it last saw. Whenever the registrar holds the state still,
    /// no subtask of an older epoch may be running (it would survive the re-registration's
    /// cancel-all and run unreported).
    #[test]
    fn a_deploy_never_survives_a_concurrent_re_registration() {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let _guard = rt.enter();
        let dir = tempfile::tempdir().unwrap();
        let host = host(dir.path());
        host.register(registration(1), "test");
        let epoch = Arc::new(std::sync::atomic::AtomicI64::new(1));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let deployer = {
            let (host, epoch, stop, dir) = (host.clone(), epoch.clone(), stop.clone(), dir.path().to_path_buf());
            let handle = rt.handle().clone();
            std::thread::spawn(move || {
                let _guard = handle.enter();
                let mut attempt = 1;
                let mut deployed = 0u64;
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    let e = LeaderEpoch(epoch.load(std::sync::atomic::Ordering::SeqCst));
                    attempt += 1;
                    // A job per deploy, so no deploy replaces another's subtask.
                    let d = DeployTask { job_id: format!("job-{attempt}"), ..deploy(&dir, attempt) };
                    if host.deploy(e, d).is_ok() {
                        deployed += 1;
                    }
                }
                deployed
            })
        };
        // Let the deployer get going before the race starts.
        while host.running() == 0 {
            std::thread::yield_now();
        }
        for e in 2..300i64 {
            epoch.store(e, std::sync::atomic::Ordering::SeqCst);
            host.register(registration(e), "test");
            // Wait (bounded) until the deployer deployed at the new epoch, then look: every
            // subtask must be of the new epoch. One of an older epoch was deployed after the
            // switch's cancel-all: it runs unreported and is never cancelled.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            loop {
                let tasks = host.tasks.lock().expect("tasks lock");
                if tasks.running.values().any(|t| t.epoch == LeaderEpoch(e)) {
                    for ((job, _), t) in tasks.running.iter() {
                        assert_eq!(
                            t.epoch,
                            LeaderEpoch(e),
                            "job {job}: a subtask of an older epoch survived the switch to {e}"
                        );
                    }
                    break;
                }
                drop(tasks);
                assert!(std::time::Instant::now() < deadline, "no deploy at epoch {e} within 10 s");
                std::thread::yield_now();
            }
        }
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let deployed = deployer.join().unwrap();
        assert!(deployed >= 298, "the race ran: {deployed} deploys succeeded across 298 re-registrations");
        host.cancel_all("test end");
    }
}
