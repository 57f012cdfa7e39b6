//! The job layer of the leader: submission, one [`master`] per job (its checkpoint rules in
//! the pure engine [`checkpoint`]), recovery after a leader change (per job, retried), results
//! and cleanup.
//!
//! The [`JobManager`] follows this dispatcher's role. When it starts leading at epoch E it
//! opens a *leader session*: it recovers every stored job graph without a result from
//! ZooKeeper + storage, finishes the cleanup of results still marked dirty, and accepts new
//! submissions. A recovered job whose tasks kept running on the workers is adopted rather than
//! restarted; after recovery, subtasks workers report of jobs this session does not run are
//! cancelled. The session ends when the role becomes standby or a different epoch: every job
//! master stops at once (they hold the fence of epoch E only). While the role is suspended the
//! masters keep their state but do not act.

pub mod adoption;
pub mod attempt;
pub mod checkpoint;
pub mod lifecycle;
pub mod master;
pub mod recovery;
pub mod restore;
pub mod slots;
mod test_switches;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use keel_ha::{HaError, HaStores, LeaderEpoch};
use keel_proto::v1::{JobGraphRecord, TaskReport};
use keel_storage::{StorageDir, StorageOptions};
use serde::Serialize;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::resource_manager::ResourceManager;
use crate::role::Role;
use master::{JobMaster, JobMsg, JobStatus};
use slots::SlotPool;

/// What the job layer needs from the configuration.
#[derive(Clone, Debug)]
pub struct JobSettings {
    /// `high-availability.storageDir`: job graphs and results.
    pub ha_storage: Option<StorageDir>,
    /// `state.checkpoints.dir` (or `<storageDir>/checkpoints`).
    pub checkpoints: Option<StorageDir>,
    pub checkpoints_uri: String,
    pub storage_options: StorageOptions,
    pub num_retained: usize,
    pub checkpoint_timeout: Duration,
    pub recovery_worker_wait: Duration,
    /// `high-availability.adoption.timeout`; zero: a recovered job is always restarted, never
    /// adopted.
    pub adoption_timeout: Duration,
    /// The operators job specs may use (the built-ins, plus a custom build's own).
    pub registry: std::sync::Arc<keel_job::OperatorRegistry>,
    /// What a spec leaves out (`parallelism.default`, `execution.checkpointing.interval`,
    /// `restart-strategy.*`).
    pub job_defaults: keel_job::JobDefaults,
    /// `state.savepoints.dir`: where a savepoint goes when the request names no directory
    /// (`None`: `<checkpoints_uri>/savepoints`).
    pub savepoints_uri: Option<String>,
}

/// Why a request to the job layer failed; REST maps these to status codes.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum JobError {
    #[error("{0}")]
    NotLeader(String),
    #[error("invalid job spec: {0}")]
    InvalidSpec(String),
    #[error("job {0} not found")]
    NotFound(String),
    #[error("job {job_id} is {state}; {action} needs a running job")]
    WrongState { job_id: String, state: String, action: &'static str },
    #[error("{0}")]
    NotConfigured(String),
    #[error("{0}")]
    Ha(#[from] HaError),
    #[error("{0}")]
    Failed(String),
    /// The request may or may not have taken effect (connection lost mid-write, no answer
    /// in time); retrying with the same job id is safe.
    #[error("outcome unknown: {0}")]
    OutcomeUnknown(String),
}

/// One job as the REST API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct JobView {
    pub jid: String,
    pub name: String,
    pub state: String,
    #[serde(rename = "start-time")]
    pub start_time: i64,
    #[serde(rename = "end-time")]
    pub end_time: i64,
    pub duration: i64,
    pub parallelism: u32,
    pub attempt: u64,
    pub restarts: u32,
    pub failure: Option<String>,
    #[serde(rename = "restored-from")]
    pub restored_from: Option<u64>,
    pub subtasks: Vec<master::SubtaskView>,
}

struct Session {
    epoch: LeaderEpoch,
    cancel: CancellationToken,
    jobs: HashMap<String, (mpsc::UnboundedSender<JobMsg>, watch::Receiver<JobStatus>)>,
}

/// The leader's job layer. Cheap to clone.
#[derive(Clone)]
pub struct JobManager {
    inner: Arc<Inner>,
}

struct Inner {
    settings: JobSettings,
    rm: ResourceManager,
    role: watch::Receiver<Role>,
    pool: SlotPool,
    session: Mutex<Option<Session>>,
    /// Stored entries recovery could not use (job id → what is wrong), shown by
    /// `/jobs/overview` as state `RECOVERY_BLOCKED`; cleared when an entry recovers.
    problems: Mutex<std::collections::BTreeMap<String, String>>,
}

/// A submission error: one whose outcome is unknown says so, naming the id to retry with.
fn unknown_or(e: HaError, job_id: &str, client_chosen: bool) -> JobError {
    if matches!(e, HaError::ConnectionLoss { .. }) || e.is_temporary() {
        let how = if client_chosen {
            "submit again with the same job id".to_string()
        } else {
            format!("submit again with jobId={job_id} (keel run --job-id {job_id}) to make the retry idempotent")
        };
        JobError::OutcomeUnknown(format!("job {job_id} may or may not be stored ({e}); {how}"))
    } else {
        JobError::Ha(e)
    }
}

/// An HA read's answer as the recovery rules see it.
fn classify<T>(r: Result<T, HaError>) -> recovery::Read<T> {
    match r {
        Ok(v) => recovery::Read::Ok(v),
        Err(HaError::LeadershipLost { .. } | HaError::SessionExpired) => recovery::Read::Lost,
        Err(e) if definite(&e) => recovery::Read::Definite(e.to_string()),
        Err(e) => recovery::Read::Unknown(e.to_string()),
    }
}

/// Whether an HA error is a definite answer about the stored entry (corrupt, missing) rather
/// than a failure to get an answer (connection lost, storage outage).
fn definite(e: &HaError) -> bool {
    match e {
        HaError::CorruptZnode { .. } | HaError::NotFound { .. } => true,
        HaError::Storage(s) => {
            matches!(s, keel_storage::StorageError::NotFound { .. } | keel_storage::StorageError::CorruptBlob { .. })
        }
        _ => false,
    }
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

impl JobManager {
    pub fn new(settings: JobSettings, rm: ResourceManager, role: watch::Receiver<Role>) -> Self {
        let pool = SlotPool::new(rm.clone());
        Self {
            inner: Arc::new(Inner {
                settings,
                rm,
                role,
                pool,
                session: Mutex::new(None),
                problems: Mutex::new(Default::default()),
            }),
        }
    }

    fn stores(&self) -> Result<HaStores, JobError> {
        self.inner.settings.ha_storage.clone().map(HaStores::new).ok_or_else(|| {
            JobError::NotConfigured(
                "jobs need high-availability.storageDir (job graphs and results are stored there)".into(),
            )
        })
    }

    /// Follows the role until `cancel` fires.
    pub async fn run(self, cancel: CancellationToken) {
        let mut role_rx = self.inner.role.clone();
        loop {
            let role = role_rx.borrow_and_update().clone();
            self.on_role(role);
            tokio::select! {
                r = role_rx.changed() => if r.is_err() { break },
                _ = cancel.cancelled() => break,
            }
        }
        self.end_session("dispatcher stopping");
    }

    fn end_session(&self, why: &str) {
        if let Some(s) = self.inner.session.lock().expect("session lock").take() {
            tracing::info!(epoch = %s.epoch, jobs = s.jobs.len(), "leader session ends ({why}): job masters stop");
            s.cancel.cancel();
            self.inner.pool.clear();
            self.inner.problems.lock().expect("problems lock").clear();
        }
    }

    fn on_role(&self, role: Role) {
        match role {
            Role::Leading { epoch, fence: Some(_) } => {
                let same = self.inner.session.lock().expect("session lock").as_ref().map(|s| s.epoch) == Some(epoch);
                if !same {
                    self.end_session("new epoch");
                    self.start_session(epoch);
                }
            }
            Role::Leading { fence: None, .. } => {
                // high-availability.type none: no ZooKeeper stores; jobs are not supported.
            }
            Role::Suspended { epoch } => {
                let same = self.inner.session.lock().expect("session lock").as_ref().map(|s| s.epoch) == Some(epoch);
                if !same {
                    self.end_session("suspended at another epoch");
                }
            }
            Role::Standby => self.end_session("standby"),
        }
    }

    fn start_session(&self, epoch: LeaderEpoch) {
        let cancel = CancellationToken::new();
        *self.inner.session.lock().expect("session lock") =
            Some(Session { epoch, cancel: cancel.clone(), jobs: HashMap::new() });
        let me = self.clone();
        tokio::spawn(async move { me.recover(epoch, cancel).await });
    }

    fn fence(&self) -> Result<keel_ha::Fence, JobError> {
        let role = self.inner.role.borrow().clone();
        if let Role::Leading { fence: None, .. } = role {
            return Err(JobError::NotConfigured(
                "jobs need high-availability.type: zookeeper (job graphs, checkpoints and results are \
                 stored through ZooKeeper); this dispatcher runs with high-availability.type: none"
                    .into(),
            ));
        }
        role.fence()
            .cloned()
            .ok_or_else(|| JobError::NotLeader(format!("this dispatcher is {}, not the acting leader", role.name())))
    }

    /// Recovery at the start of a leader session, per job and retried with backoff while this
    /// session lasts: every stored job without a result is started, every dirty result's
    /// cleanup is finished. One unreadable entry (a garbage znode, a corrupt blob) is reported
    /// (log, `/jobs/overview` state `RECOVERY_BLOCKED`) and never blocks the other jobs; an
    /// entry that cannot be read *yet* (connection lost, storage outage) is retried.
    async fn recover(&self, epoch: LeaderEpoch, cancel: CancellationToken) {
        let mut delay = Duration::from_millis(100);
        let mut first = true;
        loop {
            if cancel.is_cancelled() {
                return;
            }
            match self.recover_pass(epoch, &cancel, first).await {
                Ok(true) => {
                    tracing::info!(%epoch, "recovery complete");
                    self.sweep_orphans(epoch, cancel).await;
                    return;
                }
                Ok(false) => {}
                Err(HaError::LeadershipLost { .. } | HaError::SessionExpired) => return,
                Err(e) => tracing::warn!(%epoch, error = %e, retry_in = ?delay, "job recovery pass failed; retrying"),
            }
            // TEST-ONLY (KEEL_TEST_DISABLE_PER_JOB_RECOVERY): no retry, as before the fix.
            if test_switches::per_job_recovery_disabled() {
                tracing::error!(%epoch, "job recovery aborted; will retry when leadership is regained (per-job recovery is off)");
                return;
            }
            first = false;
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = cancel.cancelled() => return,
            }
            delay = (delay * 2).min(Duration::from_secs(10));
        }
    }

    /// After recovery, for as long as the session lasts: subtasks that workers reported running
    /// when they registered, of jobs this leader does not run (ended, cancelled, unknown) or of
    /// an attempt older than the job's current one (a worker that registered after the job was
    /// restarted), are cancelled (once each) instead of running on until their adoption timeout.
    async fn sweep_orphans(&self, epoch: LeaderEpoch, cancel: CancellationToken) {
        if self.inner.settings.adoption_timeout.is_zero() {
            return;
        }
        let mut done: std::collections::HashSet<(String, String, u64)> = std::collections::HashSet::new();
        loop {
            let reported: Vec<(String, String, u64)> = self
                .inner
                .rm
                .all_reported_subtasks()
                .into_iter()
                .filter(|(_, job, attempt)| !self.runs_attempt_here(epoch, job, *attempt))
                .collect();
            for (worker, job, attempt) in reported {
                if done.insert((worker.clone(), job.clone(), attempt)) {
                    tracing::info!(job = %job, attempt, worker = %worker, "cancelling subtasks of a job this leader does not run");
                    let cmd = keel_proto::v1::CancelTask { job_id: job, attempt };
                    let _ = self.inner.rm.send(epoch, &worker, keel_proto::v1::leader_command::Kind::Cancel(cmd)).await;
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = cancel.cancelled() => return,
            }
        }
    }

    fn set_problem(&self, job_id: &str, problem: Option<String>) {
        let mut problems = self.inner.problems.lock().expect("problems lock");
        match problem {
            Some(p) => {
                if problems.get(job_id) != Some(&p) {
                    tracing::error!(target: "keel::events", event = "recovery_blocked", job = %job_id, problem = %p, "a stored job cannot be recovered; the others are not affected");
                }
                problems.insert(job_id.to_string(), p);
            }
            None => {
                problems.remove(job_id);
            }
        }
    }

    /// Whether `attempt` of `job_id` may still be this session's: the job runs here and has
    /// not moved to a newer attempt (0: its master has not chosen one yet).
    fn runs_attempt_here(&self, epoch: LeaderEpoch, job_id: &str, attempt: u64) -> bool {
        self.inner.session.lock().expect("session lock").as_ref().is_some_and(|s| {
            s.epoch == epoch
                && s.jobs.get(job_id).is_some_and(|(_, status)| {
                    let current = status.borrow().attempt;
                    current == 0 || current <= attempt
                })
        })
    }

    fn is_running_here(&self, epoch: LeaderEpoch, job_id: &str) -> bool {
        self.inner
            .session
            .lock()
            .expect("session lock")
            .as_ref()
            .is_some_and(|s| s.epoch == epoch && s.jobs.contains_key(job_id))
    }

    /// One recovery pass. `Ok(true)` when every entry was dealt with; `Ok(false)` when some
    /// must be tried again; `Err` when the lists themselves could not be read.
    async fn recover_pass(&self, epoch: LeaderEpoch, cancel: &CancellationToken, first: bool) -> Result<bool, HaError> {
        let Ok(fence) = self.fence() else {
            // Not acting right now (suspended): try again later, the session may resume.
            return Ok(false);
        };
        if fence.epoch() != epoch {
            return Err(HaError::SessionExpired);
        }
        let Ok(stores) = self.stores() else {
            tracing::info!("no high-availability.storageDir: nothing to recover");
            return Ok(true);
        };
        HaStores::ensure_layout(fence.client()).await?;
        let mut complete = true;
        let consult_results = !test_switches::result_check_disabled();
        // The rules per entry are the recovery module's ([`recovery`]); this reads and acts.
        // Results still dirty: finish their cleanup first (a finished job is never run again).
        let result_ids = if consult_results { stores.result_ids(fence.client()).await? } else { Vec::new() };
        for id in result_ids {
            let raw = stores.result(fence.client(), &id).await;
            // TEST-ONLY (KEEL_TEST_DISABLE_PER_JOB_RECOVERY): the first bad entry aborts.
            let raw = match raw {
                Err(e) if definite(&e) && test_switches::per_job_recovery_disabled() => return Err(e),
                raw => raw,
            };
            let state = raw.as_ref().ok().and_then(|r| r.as_ref()).map(|(record, _)| record.state.clone());
            match recovery::on_result(&classify(raw.map(|r| r.map(|(_, s)| s == keel_ha::ResultStatus::Dirty)))) {
                recovery::Action::Proceed => {
                    tracing::info!(job = %id, state = %state.unwrap_or_default(), "finishing the cleanup of an ended job");
                    if let Err(e) = master::cleanup(&stores, &fence, &self.inner.settings, &id).await {
                        tracing::error!(job = %id, error = %e, "cleanup failed; retried");
                        complete = false;
                    }
                }
                recovery::Action::Skip => {}
                recovery::Action::Blocked(m) | recovery::Action::Logged(m) => tracing::error!(job = %id, "{m}"),
                recovery::Action::Retry(m) => {
                    tracing::warn!(job = %id, "{m}; retried");
                    complete = false;
                }
                recovery::Action::Abort => return Err(HaError::SessionExpired),
            }
        }
        let mut recovered = Vec::new();
        for id in stores.job_ids(fence.client()).await? {
            if self.is_running_here(epoch, &id) {
                continue;
            }
            let result = if consult_results { stores.result(fence.client(), &id).await } else { Ok(None) };
            let action =
                recovery::on_job_result(&classify(result.map(|r| r.map(|(_, s)| s == keel_ha::ResultStatus::Dirty))));
            let action = match action {
                recovery::Action::Proceed => {
                    let graph = classify(stores.get_job_graph(fence.client(), &id).await);
                    match (recovery::on_graph(&graph), graph) {
                        (recovery::Action::Proceed, recovery::Read::Ok(graph)) => {
                            recovered.push(graph);
                            continue;
                        }
                        (action, _) => action,
                    }
                }
                action => action,
            };
            match action {
                recovery::Action::Proceed | recovery::Action::Skip => {}
                recovery::Action::Blocked(problem) => {
                    // Reported, retried (an operator may repair or remove the entry).
                    self.set_problem(&id, Some(problem));
                    complete = false;
                }
                recovery::Action::Logged(m) => tracing::error!(job = %id, "{m}"),
                recovery::Action::Retry(m) => {
                    tracing::warn!(job = %id, "{m}; retried");
                    complete = false;
                }
                recovery::Action::Abort => return Err(HaError::SessionExpired),
            }
        }
        if !recovered.is_empty() && first {
            tracing::info!(%epoch, jobs = recovered.len(), "recovering jobs");
            // Let workers re-register (bounded) before scheduling.
            let need: u32 = recovered
                .iter()
                .map(|g| {
                    keel_job::parse_job_spec_with_defaults(
                        &g.spec_yaml,
                        &g.job_id,
                        &self.inner.settings.registry,
                        &self.inner.settings.job_defaults,
                    )
                    .map(|s| s.parallelism)
                    .unwrap_or(1)
                })
                .sum();
            let wait = self.inner.settings.recovery_worker_wait;
            let start = tokio::time::Instant::now();
            while start.elapsed() < wait {
                let have: u32 = self.inner.rm.worker_slots().iter().map(|w| w.slots).sum();
                if have >= need {
                    break;
                }
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                    _ = cancel.cancelled() => return Ok(true),
                }
            }
        }
        for graph in recovered {
            self.set_problem(&graph.job_id, None);
            self.start_master(epoch, graph, true);
        }
        Ok(complete)
    }

    fn start_master(&self, epoch: LeaderEpoch, graph: JobGraphRecord, recovered: bool) {
        let mut guard = self.inner.session.lock().expect("session lock");
        let Some(session) = guard.as_mut().filter(|s| s.epoch == epoch) else { return };
        if session.jobs.contains_key(&graph.job_id) {
            return;
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let (status_tx, status_rx) = watch::channel(JobStatus::new(&graph));
        session.jobs.insert(graph.job_id.clone(), (tx, status_rx));
        let ctx = master::MasterContext {
            epoch,
            settings: self.inner.settings.clone(),
            rm: self.inner.rm.clone(),
            role: self.inner.role.clone(),
            pool: self.inner.pool.clone(),
        };
        let master = JobMaster::new(graph, ctx, status_tx, rx, recovered);
        tokio::spawn(master.run(session.cancel.child_token()));
    }

    /// Submits a job: validates the spec, stores the graph (guarded), then starts it.
    /// Returns the job id only after the job graph is durably stored.
    ///
    /// With a client-chosen `job_id` the submission is idempotent: submitting the same spec
    /// (and savepoint) under the same id again answers with that id (and starts the job here
    /// if a first try stored it but did not start it); another spec under a taken id, or the
    /// id of an ended job, is a conflict.
    ///
    /// # Notable errors
    /// * [`JobError::OutcomeUnknown`]: the write's outcome is unknown (connection lost); the
    ///   job may be stored and run. Retry with the same job id (the message names it).
    /// * [`JobError::WrongState`]: the id belongs to another job, or to an ended one.
    pub async fn submit(
        &self,
        spec_yaml: &str,
        restore_from: Option<String>,
        job_id: Option<String>,
    ) -> Result<String, JobError> {
        self.submit_named(spec_yaml, "the submitted job spec", restore_from, job_id).await
    }

    /// [`JobManager::submit`], naming the spec `origin` in errors (the file `keel run` read).
    ///
    /// # Notable errors
    /// As [`JobManager::submit`].
    pub async fn submit_named(
        &self,
        spec_yaml: &str,
        origin: &str,
        restore_from: Option<String>,
        job_id: Option<String>,
    ) -> Result<String, JobError> {
        let fence = self.fence()?;
        let settings = &self.inner.settings;
        let spec =
            keel_job::parse_job_spec_with_defaults(spec_yaml, origin, &settings.registry, &settings.job_defaults)
                .map_err(|e| JobError::InvalidSpec(e.to_string()))?;
        // The stored spec carries the cluster's defaults for what it left out, so workers and
        // later leaders run it as this one parsed it.
        let pinned = keel_job::pin_job_defaults(spec_yaml, &settings.job_defaults);
        let spec_yaml = pinned.as_deref().unwrap_or(spec_yaml);
        let epoch = fence.epoch();
        let stores = self.stores()?;
        if self.inner.settings.checkpoints.is_none() {
            return Err(JobError::NotConfigured(
                "jobs need state.checkpoints.dir or high-availability.storageDir".into(),
            ));
        }
        let client_chosen = job_id.is_some();
        let job_id = match job_id {
            Some(id) => {
                keel_ha::stores::validate_job_id(&id).map_err(|_| {
                    JobError::InvalidSpec(format!(
                        "job id {:?} is malformed; expected 1-64 characters of [A-Za-z0-9_-]",
                        id.chars().take(80).collect::<String>()
                    ))
                })?;
                id
            }
            None => uuid::Uuid::new_v4().simple().to_string(),
        };
        HaStores::ensure_layout(fence.client()).await.map_err(|e| unknown_or(e, &job_id, client_chosen))?;
        let record = JobGraphRecord {
            format_version: keel_proto::FORMAT_VERSION,
            job_id: job_id.clone(),
            name: spec.name.clone(),
            spec_yaml: spec_yaml.to_string(),
            submitted_unix_ms: now_ms(),
            restore_from: restore_from.unwrap_or_default(),
        };
        match stores.put_job_graph(&fence, &record).await {
            Ok(()) => {}
            Err(HaError::JobExists { .. }) if client_chosen => {
                // A retry of a submission whose first try may have succeeded.
                if let Ok(Some((r, _))) = stores.result(fence.client(), &job_id).await {
                    return Err(JobError::WrongState { job_id, state: r.state, action: "a new submission" });
                }
                let stored =
                    stores.get_job_graph(fence.client(), &job_id).await.map_err(|e| unknown_or(e, &job_id, true))?;
                if stored.spec_yaml != record.spec_yaml || stored.restore_from != record.restore_from {
                    return Err(JobError::WrongState {
                        job_id,
                        state: "taken by a job with another spec".into(),
                        action: "a new submission under this id",
                    });
                }
                tracing::info!(job = %job_id, "job submitted again with the same spec: already stored (idempotent)");
                self.start_master(epoch, stored, false);
                return Ok(job_id);
            }
            Err(e) => return Err(unknown_or(e, &job_id, client_chosen)),
        }
        tracing::info!(target: "keel::events", event = "job_submitted", job = %job_id, name = %spec.name, %epoch, "job submitted");
        self.start_master(epoch, record, false);
        Ok(job_id)
    }

    fn job_channel(&self, job_id: &str) -> Option<(mpsc::UnboundedSender<JobMsg>, watch::Receiver<JobStatus>)> {
        self.inner.session.lock().expect("session lock").as_ref().and_then(|s| s.jobs.get(job_id).cloned())
    }

    /// Routes a worker's task report to its job master.
    pub fn report(&self, report: TaskReport) -> Result<(), tonic::Status> {
        let session_epoch = self.inner.session.lock().expect("session lock").as_ref().map(|s| s.epoch);
        if session_epoch != Some(LeaderEpoch(report.epoch)) {
            return Err(tonic::Status::failed_precondition(format!(
                "task report for epoch {} but this dispatcher leads epoch {:?}",
                report.epoch,
                session_epoch.map(|e| e.0)
            )));
        }
        match self.job_channel(&report.job_id) {
            Some((tx, _)) => {
                let _ = tx.send(JobMsg::Report(report));
                Ok(())
            }
            None => Err(tonic::Status::not_found(format!("job {} is not running here", report.job_id))),
        }
    }

    pub async fn cancel(&self, job_id: &str) -> Result<(), JobError> {
        let _ = self.fence()?;
        let Some((tx, mut status)) = self.job_channel(job_id) else {
            return Err(self.not_running(job_id).await);
        };
        let (reply_tx, reply_rx) = tokio::sync::oneshot::channel();
        tx.send(JobMsg::Cancel(reply_tx)).map_err(|_| JobError::NotFound(job_id.into()))?;
        // The master answers once the cancel is durable (result recorded) or refused.
        match tokio::time::timeout(Duration::from_secs(60), reply_rx).await {
            Ok(Ok(r)) => r?,
            Ok(Err(_)) => {
                return Err(JobError::OutcomeUnknown(format!(
                    "the job master of {job_id} stopped before answering the cancel (leadership changed?); \
                     check the job's state and cancel again"
                )))
            }
            Err(_) => {
                return Err(JobError::OutcomeUnknown(format!(
                    "the cancel of {job_id} was not recorded within 60 s; it stays queued and is applied \
                     when the job master gets to it; check the job's state"
                )))
            }
        }
        // Wait (bounded) until the result is written and the job is cleaned up.
        let _ = tokio::time::timeout(Duration::from_secs(30), async {
            while !status.borrow_and_update().cleaned {
                if status.changed().await.is_err() {
                    break;
                }
            }
        })
        .await;
        Ok(())
    }

    pub async fn savepoint(&self, job_id: &str, target: Option<String>) -> Result<String, JobError> {
        let _ = self.fence()?;
        let Some((tx, _)) = self.job_channel(job_id) else {
            return Err(self.not_running(job_id).await);
        };
        let (reply_tx, reply_rx) = tokio::sync::oneshot::channel();
        tx.send(JobMsg::Savepoint { target, reply: reply_tx }).map_err(|_| JobError::NotFound(job_id.into()))?;
        reply_rx.await.map_err(|_| JobError::Failed("the job master stopped".into()))?
    }

    async fn not_running(&self, job_id: &str) -> JobError {
        if let (Ok(stores), Ok(fence)) = (self.stores(), self.fence()) {
            if let Ok(Some((r, _))) = stores.result(fence.client(), job_id).await {
                return JobError::WrongState { job_id: job_id.into(), state: r.state, action: "this" };
            }
        }
        JobError::NotFound(job_id.into())
    }

    /// Every job this leader runs, plus ended jobs from the result store.
    pub async fn jobs(&self) -> Result<Vec<JobView>, JobError> {
        let fence = self.fence()?;
        let live: Vec<watch::Receiver<JobStatus>> = self
            .inner
            .session
            .lock()
            .expect("session lock")
            .as_ref()
            .map(|s| s.jobs.values().map(|(_, st)| st.clone()).collect())
            .unwrap_or_default();
        let mut out: Vec<JobView> = live.iter().map(|st| st.borrow().view()).collect();
        if let Ok(stores) = self.stores() {
            for id in stores.result_ids(fence.client()).await.unwrap_or_default() {
                if out.iter().any(|j| j.jid == id) {
                    continue;
                }
                if let Ok(Some((r, _))) = stores.result(fence.client(), &id).await {
                    // Name, parallelism and restarts travel in the result record (empty / 0
                    // in records written before they were added).
                    out.push(JobView {
                        jid: id.clone(),
                        name: r.name,
                        state: r.state,
                        start_time: r.start_unix_ms,
                        end_time: r.at_unix_ms,
                        duration: if r.start_unix_ms > 0 { r.at_unix_ms - r.start_unix_ms } else { 0 },
                        parallelism: r.parallelism,
                        attempt: 0,
                        restarts: r.restarts,
                        failure: (!r.reason.is_empty()).then_some(r.reason),
                        restored_from: None,
                        subtasks: vec![],
                    });
                }
            }
        }
        for (id, problem) in self.inner.problems.lock().expect("problems lock").iter() {
            if out.iter().any(|j| &j.jid == id) {
                continue;
            }
            out.push(JobView {
                jid: id.clone(),
                name: String::new(),
                state: "RECOVERY_BLOCKED".into(),
                start_time: 0,
                end_time: -1,
                duration: 0,
                parallelism: 0,
                attempt: 0,
                restarts: 0,
                failure: Some(problem.clone()),
                restored_from: None,
                subtasks: vec![],
            });
        }
        out.sort_by(|a, b| a.jid.cmp(&b.jid));
        Ok(out)
    }

    pub async fn job(&self, job_id: &str) -> Result<JobView, JobError> {
        self.jobs().await?.into_iter().find(|j| j.jid == job_id).ok_or_else(|| JobError::NotFound(job_id.into()))
    }

    pub async fn checkpoints(&self, job_id: &str) -> Result<serde_json::Value, JobError> {
        let _ = self.fence()?;
        match self.job_channel(job_id) {
            Some((_, st)) => Ok(st.borrow().checkpoints_json()),
            None => Err(self.not_running(job_id).await),
        }
    }

    /// Snapshots of the jobs this leader runs now (for `/metrics`).
    pub fn statuses(&self) -> Vec<JobStatus> {
        let guard = self.inner.session.lock().expect("session lock");
        guard.as_ref().map(|s| s.jobs.values().map(|(_, st)| st.borrow().clone()).collect()).unwrap_or_default()
    }

    /// Counts for `/overview`.
    pub fn counts(&self) -> (usize, usize, usize, usize) {
        let guard = self.inner.session.lock().expect("session lock");
        let mut c = (0, 0, 0, 0);
        if let Some(s) = guard.as_ref() {
            for (_, st) in s.jobs.values() {
                match st.borrow().state.as_str() {
                    "FINISHED" => c.1 += 1,
                    "CANCELED" => c.2 += 1,
                    "FAILED" => c.3 += 1,
                    _ => c.0 += 1,
                }
            }
        }
        c
    }
}
