//! Task hosting: runs the subtasks a leader deploys, routes checkpoint commands to them, and
//! reports what they do back to the leader that deployed them.
//!
//! Every subtask belongs to one job attempt and was deployed by one leader epoch. A deploy of
//! a newer attempt replaces an older one; every (re-)registration cancels every subtask (to the
//! leader the worker is a new incarnation; it restarts the affected jobs from their latest
//! completed checkpoint).

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
}

/// Settings the host needs from the configuration.
#[derive(Clone, Debug)]
pub struct HostSettings {
    pub storage_options: StorageOptions,
    pub state: StateOptions,
}

pub struct TaskHost {
    worker: Arc<WorkerState>,
    settings: HostSettings,
    registry: Arc<OperatorRegistry>,
    tasks: Mutex<HashMap<(String, u32), RunningTask>>,
}

impl TaskHost {
    pub fn new(worker: Arc<WorkerState>, settings: HostSettings, registry: Arc<OperatorRegistry>) -> Self {
        Self { worker, settings, registry, tasks: Mutex::new(HashMap::new()) }
    }

    /// Number of subtasks running now.
    pub fn running(&self) -> usize {
        self.tasks.lock().expect("tasks lock").len()
    }

    pub fn deploy(self: &Arc<Self>, epoch: LeaderEpoch, leader_address: String, d: DeployTask) -> Result<(), Status> {
        let key = (d.job_id.clone(), d.subtask);
        {
            let mut tasks = self.tasks.lock().expect("tasks lock");
            if let Some(existing) = tasks.get(&key) {
                if existing.attempt > d.attempt {
                    return Err(Status::failed_precondition(format!(
                        "subtask {} of job {} already runs attempt {}, newer than {}",
                        d.subtask, d.job_id, existing.attempt, d.attempt
                    )));
                }
                let _ = existing.control.send(Control::Cancel);
                tasks.remove(&key);
            }
        }
        let spec = keel_job::parse_job_spec_with(&d.spec_yaml, &format!("job {}", d.job_id), &self.registry)
            .map_err(|e| Status::invalid_argument(format!("job {}: {e}", d.job_id)))?;
        let checkpoints = StorageDir::open(&d.checkpoints_uri, &self.settings.storage_options)
            .map_err(|e| Status::invalid_argument(format!("checkpoints directory: {e}")))?;
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
        self.tasks.lock().expect("tasks lock").insert(key.clone(), RunningTask { attempt: d.attempt, epoch, control });
        tracing::info!(
            target: "keel::events", event = "task_deployed",
            job = %d.job_id, subtask = d.subtask, attempt = d.attempt, %epoch,
            restore_checkpoint = d.restore_checkpoint_id, "subtask deployed"
        );
        let host = self.clone();
        let mut events = handle.events;
        tokio::spawn(async move {
            let mut reporter = Reporter::new(leader_address);
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
                let report = TaskReport {
                    worker_id: host.worker.id.clone(),
                    epoch: epoch.0,
                    job_id: key.0.clone(),
                    attempt: d.attempt,
                    subtask: key.1,
                    kind: Some(kind),
                };
                reporter.send(report).await;
                if ended {
                    break;
                }
            }
            let mut tasks = host.tasks.lock().expect("tasks lock");
            if tasks.get(&key).is_some_and(|t| t.attempt == d.attempt) {
                tasks.remove(&key);
            }
        });
        Ok(())
    }

    fn route(&self, job_id: &str, attempt: u64, control: impl Fn() -> Control) -> usize {
        let tasks = self.tasks.lock().expect("tasks lock");
        let mut n = 0;
        for ((job, _), t) in tasks.iter() {
            if job == job_id && t.attempt == attempt {
                let _ = t.control.send(control());
                n += 1;
            }
        }
        n
    }

    pub fn trigger(&self, t: TriggerCheckpoint) -> Result<(), Status> {
        let id = t.checkpoint_id;
        if self.route(&t.job_id, t.attempt, || Control::TriggerCheckpoint { id }) == 0 {
            return Err(Status::not_found(format!("no subtask of job {} attempt {} runs here", t.job_id, t.attempt)));
        }
        Ok(())
    }

    pub fn notify(&self, n: NotifyCheckpoint) -> Result<(), Status> {
        let id = n.checkpoint_id;
        let routed = if n.complete {
            self.route(&n.job_id, n.attempt, || Control::CheckpointComplete { id })
        } else {
            self.route(&n.job_id, n.attempt, || Control::CheckpointAborted { id })
        };
        if routed == 0 {
            return Err(Status::not_found(format!("no subtask of job {} attempt {} runs here", n.job_id, n.attempt)));
        }
        Ok(())
    }

    pub fn cancel(&self, c: CancelTask) {
        let mut tasks = self.tasks.lock().expect("tasks lock");
        tasks.retain(|(job, subtask), t| {
            if *job == c.job_id && t.attempt <= c.attempt {
                tracing::info!(job = %job, subtask, attempt = t.attempt, "subtask cancelled");
                let _ = t.control.send(Control::Cancel);
                false
            } else {
                true
            }
        });
    }

    /// Cancels every subtask: a worker that (re-)registers is a new incarnation to the
    /// leader, which restarts the affected jobs from their latest checkpoint itself.
    pub fn cancel_all(&self, why: &str) {
        let mut tasks = self.tasks.lock().expect("tasks lock");
        for ((job, subtask), t) in tasks.drain() {
            tracing::info!(job = %job, subtask, attempt = t.attempt, epoch = %t.epoch, why, "subtask cancelled");
            let _ = t.control.send(Control::Cancel);
        }
    }
}

/// Sends task reports to the leader that deployed the task, retrying briefly.
struct Reporter {
    address: String,
    client: Option<DispatcherClient<tonic::transport::Channel>>,
}

impl Reporter {
    fn new(address: String) -> Self {
        Self { address, client: None }
    }

    async fn send(&mut self, report: TaskReport) {
        for attempt in 0..5u32 {
            if self.client.is_none() {
                if let Ok(endpoint) = tonic::transport::Endpoint::from_shared(format!("http://{}", self.address)) {
                    let endpoint = endpoint.connect_timeout(Duration::from_secs(1)).timeout(Duration::from_secs(5));
                    self.client = Some(DispatcherClient::new(endpoint.connect_lazy()));
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
