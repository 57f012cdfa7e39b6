//! The resource manager: which workers are registered with this leader, their slots, and the
//! heartbeats that keep them.
//!
//! It acts only while the dispatcher's role is [`Role::Leading`]; on any other role it stops
//! heartbeating at once, and on standby it forgets every worker (a new leader gets fresh
//! registrations).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use keel_ha::LeaderEpoch;
use keel_proto::security::{InternalChannel, InternalSecurity};
use keel_proto::v1::{leader_command, worker_client::WorkerClient, Disconnect, HeartbeatRequest, LeaderCommand};
use serde::Serialize;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::role::Role;

/// Metadata key on a refused command carrying the epoch the refusing worker has seen.
pub const FENCED_EPOCH_METADATA: &str = "keel-fenced-epoch";
/// Set by a worker on an UNAVAILABLE reply that means "registered, but I have not heard the
/// registration reply yet": the sender may retry shortly (same key as the worker's).
pub const NOT_READY_METADATA: &str = "keel-not-ready";

#[derive(Debug, Clone)]
struct WorkerEntry {
    id: String,
    address: String,
    slots: u32,
    free_slots: u32,
    epoch: LeaderEpoch,
    registered_at_unix_ms: i64,
    last_heartbeat: Instant,
    last_heartbeat_unix_ms: i64,
    client: WorkerClient<InternalChannel>,
    /// The subtasks it ran when it registered (job, attempt, subtask): candidates for adoption.
    reported: Vec<keel_proto::v1::RunningSubtask>,
    /// host:port of its `/metrics`, as it reported it (empty: none).
    metrics: String,
}

/// Most running subtasks one registration may report (beyond it the registration is refused).
pub const MAX_REPORTED_SUBTASKS: usize = 4096;

/// A registered worker, as the REST API shows it (Flink's field names).
#[derive(Debug, Clone, Serialize)]
pub struct WorkerView {
    pub id: String,
    pub path: String,
    #[serde(rename = "slotsNumber")]
    pub slots_number: u32,
    #[serde(rename = "freeSlots")]
    pub free_slots: u32,
    /// Unix ms of the last answered heartbeat (Flink reports a timestamp here too).
    #[serde(rename = "timeSinceLastHeartbeat")]
    pub time_since_last_heartbeat: i64,
    #[serde(rename = "registeredAt")]
    pub registered_at: i64,
    #[serde(rename = "leaderEpoch")]
    pub leader_epoch: LeaderEpoch,
    /// host:port of its `GET /metrics` (`null` when it reported none).
    pub metrics: Option<String>,
}

/// Why a registration was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegisterError {
    #[error("this dispatcher is not the acting leader (role: {role})")]
    NotLeader { role: &'static str },
    #[error("fenced: the worker has seen leader epoch {worker_epoch}, newer than this dispatcher's epoch {own}")]
    StaleLeader { own: LeaderEpoch, worker_epoch: LeaderEpoch },
    #[error("invalid registration: {0}")]
    Invalid(String),
}

/// A worker the leader can use, as the job layer sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerSlots {
    pub id: String,
    pub slots: u32,
}

#[derive(Clone)]
pub struct ResourceManager {
    inner: Arc<Mutex<HashMap<String, WorkerEntry>>>,
    lost_tx: tokio::sync::broadcast::Sender<String>,
    role: watch::Receiver<Role>,
    leader_id: String,
    heartbeat_interval: Duration,
    heartbeat_timeout: Duration,
    /// How the clients to workers are secured (`security.internal.*`, `security.ssl.internal.*`).
    security: InternalSecurity,
}

fn unix_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

impl ResourceManager {
    pub fn new(
        role: watch::Receiver<Role>,
        leader_id: String,
        heartbeat_interval: Duration,
        heartbeat_timeout: Duration,
    ) -> Self {
        let (lost_tx, _) = tokio::sync::broadcast::channel(256);
        Self {
            inner: Arc::default(),
            lost_tx,
            role,
            leader_id,
            heartbeat_interval,
            heartbeat_timeout,
            security: InternalSecurity::plaintext(),
        }
    }

    /// Secures the clients this resource manager makes to workers.
    #[must_use]
    pub fn with_security(mut self, security: InternalSecurity) -> Self {
        self.security = security;
        self
    }

    pub fn heartbeat_interval(&self) -> Duration {
        self.heartbeat_interval
    }

    pub fn heartbeat_timeout(&self) -> Duration {
        self.heartbeat_timeout
    }

    /// Registers (or re-registers) a worker with the acting leader.
    pub fn register(
        &self,
        id: &str,
        address: &str,
        slots: u32,
        worker_epoch: LeaderEpoch,
        running: &[keel_proto::v1::RunningSubtask],
    ) -> Result<LeaderEpoch, RegisterError> {
        let role = self.role.borrow().clone();
        let Some(own) = role.acting_epoch() else {
            return Err(RegisterError::NotLeader { role: role.name() });
        };
        if worker_epoch > own {
            if let Some(fence) = role.fence() {
                fence.report_fenced(worker_epoch);
            }
            return Err(RegisterError::StaleLeader { own, worker_epoch });
        }
        if id.is_empty() || slots == 0 {
            return Err(RegisterError::Invalid(format!(
                "worker_id {id:?} and slots {slots}: expected a non-empty id and at least one slot"
            )));
        }
        if running.len() > MAX_REPORTED_SUBTASKS {
            return Err(RegisterError::Invalid(format!(
                "running: {} subtasks reported; at most {MAX_REPORTED_SUBTASKS} are accepted",
                running.len()
            )));
        }
        if let Some(bad) = running.iter().find(|r| keel_ha::stores::validate_job_id(&r.job_id).is_err()) {
            return Err(RegisterError::Invalid(format!(
                "running: job id {:?} is not a valid job id",
                bad.job_id.chars().take(80).collect::<String>()
            )));
        }
        let reported = running.to_vec();
        let endpoint = self
            .security
            .endpoint(address)
            .map_err(|e| RegisterError::Invalid(format!("rpc_address {address:?}: {e}")))?
            .connect_timeout(self.heartbeat_interval.max(Duration::from_millis(200)))
            .timeout(self.heartbeat_timeout);
        let client = WorkerClient::new(self.security.intercept(endpoint.connect_lazy()));
        let now = unix_ms();
        let entry = WorkerEntry {
            id: id.to_string(),
            address: address.to_string(),
            slots,
            free_slots: slots,
            epoch: own,
            registered_at_unix_ms: now,
            last_heartbeat: Instant::now(),
            last_heartbeat_unix_ms: now,
            client,
            reported,
            metrics: String::new(),
        };
        let previous = self.inner.lock().expect("rm lock").insert(id.to_string(), entry);
        if previous.is_some() {
            // A worker registering again has dropped whatever it ran for us.
            let _ = self.lost_tx.send(id.to_string());
        }
        tracing::info!(
            target: "keel::events", event = "worker_registered",
            worker = id, address, slots, epoch = %own, again = previous.is_some(),
            "worker registered"
        );
        Ok(own)
    }

    /// A worker leaves gracefully: it is dropped at once (its jobs restart elsewhere) and
    /// nothing is scheduled onto it. Ignored unless this dispatcher acts at `epoch` (the
    /// leader the worker registered with). Returns whether it was registered.
    pub fn deregister(&self, id: &str, epoch: LeaderEpoch, reason: &str) -> bool {
        if self.role.borrow().acting_epoch() != Some(epoch) {
            return false;
        }
        let removed = self.inner.lock().expect("rm lock").remove(id).is_some();
        if removed {
            let reason: String = reason.chars().take(200).collect();
            tracing::info!(target: "keel::events", event = "worker_deregistered", worker = id, %reason, "worker left gracefully");
            let _ = self.lost_tx.send(id.to_string());
        }
        removed
    }

    pub fn workers(&self) -> Vec<WorkerView> {
        let mut v: Vec<WorkerView> = self
            .inner
            .lock()
            .expect("rm lock")
            .values()
            .map(|w| WorkerView {
                id: w.id.clone(),
                path: w.address.clone(),
                slots_number: w.slots,
                free_slots: w.free_slots,
                time_since_last_heartbeat: w.last_heartbeat_unix_ms,
                registered_at: w.registered_at_unix_ms,
                leader_epoch: w.epoch,
                metrics: Some(w.metrics.clone()).filter(|m| !m.is_empty()),
            })
            .collect();
        v.sort_by(|a, b| a.id.cmp(&b.id));
        v
    }

    /// Records where a registered worker serves `/metrics` (outside input: kept only when it
    /// is a socket address).
    pub fn note_metrics_address(&self, id: &str, address: &str) {
        if address.len() > 64 || address.parse::<std::net::SocketAddr>().is_err() {
            return;
        }
        if let Some(w) = self.inner.lock().expect("rm lock").get_mut(id) {
            w.metrics = address.to_string();
        }
    }

    /// Registered workers and their slots, sorted by id.
    pub fn worker_slots(&self) -> Vec<WorkerSlots> {
        let mut v: Vec<WorkerSlots> = self
            .inner
            .lock()
            .expect("rm lock")
            .values()
            .map(|w| WorkerSlots { id: w.id.clone(), slots: w.slots })
            .collect();
        v.sort_by(|a, b| a.id.cmp(&b.id));
        v
    }

    /// What registered workers reported running for `job_id` when they registered:
    /// `(worker, attempt, subtask)`, sorted.
    pub fn reported_subtasks(&self, job_id: &str) -> Vec<(String, u64, u32)> {
        let mut v: Vec<(String, u64, u32)> = self
            .inner
            .lock()
            .expect("rm lock")
            .values()
            .flat_map(|w| {
                w.reported.iter().filter(|r| r.job_id == job_id).map(|r| (w.id.clone(), r.attempt, r.subtask))
            })
            .collect();
        v.sort();
        v
    }

    /// The checkpoints the subtasks of `job_id` attempt `attempt` reported when their workers
    /// registered: `(subtask, last acknowledged, last committed)`, sorted.
    pub fn reported_checkpoints(&self, job_id: &str, attempt: u64) -> Vec<(u32, u64, u64)> {
        let mut v: Vec<(u32, u64, u64)> = self
            .inner
            .lock()
            .expect("rm lock")
            .values()
            .flat_map(|w| w.reported.iter())
            .filter(|r| r.job_id == job_id && r.attempt == attempt)
            .map(|r| (r.subtask, r.last_acked_checkpoint, r.last_committed_checkpoint))
            .collect();
        v.sort();
        v
    }

    /// Every (worker, job, attempt) registered workers reported running, deduplicated.
    pub fn all_reported_subtasks(&self) -> Vec<(String, String, u64)> {
        let mut v: Vec<(String, String, u64)> = self
            .inner
            .lock()
            .expect("rm lock")
            .values()
            .flat_map(|w| w.reported.iter().map(|r| (w.id.clone(), r.job_id.clone(), r.attempt)))
            .collect();
        v.sort();
        v.dedup();
        v
    }

    /// Ids of workers dropped from now on (missed heartbeats, refused commands, re-registered
    /// as a new incarnation).
    pub fn subscribe_lost(&self) -> tokio::sync::broadcast::Receiver<String> {
        self.lost_tx.subscribe()
    }

    /// Sends a command stamped with the acting leader's epoch to a registered worker.
    ///
    /// # Notable errors
    /// `FAILED_PRECONDITION` when this dispatcher does not act as leader or the worker refused
    /// a stale epoch (this dispatcher then steps down); `NOT_FOUND` for an unknown worker.
    /// Sends a command stamped with `epoch`: the epoch of the job master that sends it, fixed
    /// when that master was created. Refused without sending unless this dispatcher acts as
    /// leader at exactly that epoch, so a master of an older leadership can never send a
    /// command stamped with a later one (which workers would accept).
    pub async fn send(
        &self,
        epoch: LeaderEpoch,
        worker_id: &str,
        kind: leader_command::Kind,
    ) -> Result<keel_proto::v1::CommandReply, tonic::Status> {
        let role = self.role.borrow().clone();
        match role.acting_epoch() {
            Some(acting) if acting == epoch => {}
            Some(acting) => {
                return Err(tonic::Status::failed_precondition(format!(
                    "a command of epoch {epoch} is not sent: this dispatcher now acts at epoch {acting}"
                )))
            }
            None => {
                return Err(tonic::Status::failed_precondition(format!("not acting as leader (role {})", role.name())))
            }
        }
        let client = self.inner.lock().expect("rm lock").get(worker_id).map(|w| w.client.clone());
        let Some(mut client) = client else {
            return Err(tonic::Status::not_found(format!("worker {worker_id} is not registered")));
        };
        let command = LeaderCommand { epoch: epoch.0, leader_id: self.leader_id.clone(), kind: Some(kind) };
        let result = client.command(command).await;
        if let Err(status) = &result {
            report_if_fenced(status, &role, worker_id, epoch);
        }
        result.map(|r| r.into_inner())
    }

    fn clear(&self) {
        let mut map = self.inner.lock().expect("rm lock");
        if !map.is_empty() {
            tracing::info!(workers = map.len(), "no longer leading: forgetting registered workers");
            map.clear();
        }
    }

    /// Runs the heartbeat loop until `cancel` fires.
    pub async fn run(self, cancel: CancellationToken) {
        let mut role_rx = self.role.clone();
        let mut tick = tokio::time::interval(self.heartbeat_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                changed = role_rx.changed() => {
                    if changed.is_err() { return; }
                    if matches!(*role_rx.borrow(), Role::Standby) { self.clear(); }
                    continue;
                }
                _ = cancel.cancelled() => return,
            }
            let role = role_rx.borrow().clone();
            let Some(epoch) = role.acting_epoch() else { continue };
            self.heartbeat_round(&role, epoch).await;
        }
    }

    async fn heartbeat_round(&self, role: &Role, epoch: LeaderEpoch) {
        let targets: Vec<(String, WorkerClient<InternalChannel>)> =
            self.inner.lock().expect("rm lock").values().map(|w| (w.id.clone(), w.client.clone())).collect();
        let addresses: HashMap<String, String> =
            self.inner.lock().expect("rm lock").values().map(|w| (w.id.clone(), w.address.clone())).collect();
        let mut calls = tokio::task::JoinSet::new();
        let leader_id = self.leader_id.clone();
        for (id, mut client) in targets {
            let command = LeaderCommand {
                epoch: epoch.0,
                leader_id: leader_id.clone(),
                kind: Some(leader_command::Kind::Heartbeat(HeartbeatRequest {})),
            };
            calls.spawn(async move { (id, client.command(command).await) });
        }
        while let Some(joined) = calls.join_next().await {
            let Ok((id, result)) = joined else { continue };
            match result {
                Ok(reply) => {
                    let reply = reply.into_inner();
                    if let Some(w) = self.inner.lock().expect("rm lock").get_mut(&id) {
                        w.last_heartbeat = Instant::now();
                        w.last_heartbeat_unix_ms = unix_ms();
                        w.free_slots = reply.slots_free;
                        w.slots = reply.slots_total.max(1);
                    }
                }
                Err(status) if status.code() == tonic::Code::FailedPrecondition => {
                    report_if_fenced(&status, role, &id, epoch);
                    self.inner.lock().expect("rm lock").remove(&id);
                    let _ = self.lost_tx.send(id.clone());
                }
                Err(status) => {
                    tracing::debug!(worker = %id, %status, "heartbeat failed");
                    // The fast path for a dead worker process: its RPC port refuses connections
                    // (a paused or cut-off worker does not refuse: it waits for heartbeat.timeout).
                    let address = addresses.get(&id).cloned().unwrap_or_default();
                    if status.code() == tonic::Code::Unavailable && port_refuses(&address).await {
                        let removed = self.inner.lock().expect("rm lock").remove(&id).is_some();
                        if removed {
                            let _ = self.lost_tx.send(id.clone());
                            tracing::warn!(
                                target: "keel::events", event = "worker_lost", worker = %id,
                                reason = "rpc port refuses connections",
                                "worker's RPC port {address} refuses connections (its process is gone); dropped without waiting for heartbeat.timeout"
                            );
                        }
                    }
                }
            }
        }
        // Drop workers that missed heartbeat.timeout.
        let expired: Vec<(String, WorkerClient<InternalChannel>)> = {
            let mut map = self.inner.lock().expect("rm lock");
            let dead: Vec<String> = map
                .values()
                .filter(|w| w.last_heartbeat.elapsed() > self.heartbeat_timeout)
                .map(|w| w.id.clone())
                .collect();
            dead.into_iter().filter_map(|id| map.remove(&id).map(|w| (id, w.client))).collect()
        };
        for (id, mut client) in expired {
            let _ = self.lost_tx.send(id.clone());
            tracing::warn!(
                target: "keel::events", event = "worker_lost", worker = %id,
                timeout_ms = self.heartbeat_timeout.as_millis() as u64,
                "worker missed heartbeat.timeout; dropped"
            );
            let command = LeaderCommand {
                epoch: epoch.0,
                leader_id: self.leader_id.clone(),
                kind: Some(leader_command::Kind::Disconnect(Disconnect { reason: "missed heartbeat.timeout".into() })),
            };
            // Its answer matters too: a worker that refuses it has seen a newer leader.
            let role = role.clone();
            tokio::spawn(async move {
                if let Err(status) = client.command(command).await {
                    report_if_fenced(&status, &role, &id, epoch);
                }
            });
        }
    }
}

/// A worker's refusal of a command of ours because it has seen a newer epoch (FAILED_PRECONDITION
/// naming that epoch): logged as `command_fenced` and reported to this leader's fence so the
/// election steps down. Every command path calls it (heartbeats, job commands, the
/// disconnect of a lost worker): any refusal is news that a newer leader exists.
fn report_if_fenced(status: &tonic::Status, role: &Role, worker: &str, epoch: LeaderEpoch) {
    if status.code() != tonic::Code::FailedPrecondition {
        return;
    }
    // Other refusals (a stale task attempt) carry no epoch: they say nothing about leadership.
    let Some(seen) =
        status.metadata().get(FENCED_EPOCH_METADATA).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<i64>().ok())
    else {
        return;
    };
    tracing::warn!(
        target: "keel::events", event = "command_fenced",
        worker = %worker, epoch = %epoch, seen = %seen, message = status.message(),
        "worker refused our command"
    );
    if let Some(fence) = role.fence() {
        fence.report_fenced(LeaderEpoch(seen));
    }
}

/// `true` only when a TCP connect to `address` is refused (nothing listens there); a timeout,
/// an unreachable host or a connect that succeeds is `false`.
async fn port_refuses(address: &str) -> bool {
    let address = address.trim_start_matches("http://").trim_start_matches("https://");
    matches!(
        tokio::time::timeout(Duration::from_secs(1), tokio::net::TcpStream::connect(address)).await,
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rm_at(epoch: i64) -> (watch::Sender<Role>, ResourceManager) {
        let (tx, rx) = watch::channel(Role::Leading { epoch: LeaderEpoch(epoch), fence: None });
        (tx, ResourceManager::new(rx, "d1".into(), Duration::from_millis(200), Duration::from_secs(2)))
    }

    fn heartbeat() -> leader_command::Kind {
        leader_command::Kind::Heartbeat(HeartbeatRequest {})
    }

    /// Issue #7 hole 5: a job master of epoch 5 whose dispatcher now leads at epoch 9 must not
    /// send commands (they would be stamped 9 and accepted by workers).
    #[tokio::test]
    async fn only_a_refused_connect_counts_as_a_dead_worker() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let open = listener.local_addr().unwrap().to_string();
        assert!(!port_refuses(&open).await, "a listening port must not count as refused");
        drop(listener);
        assert!(port_refuses(&open).await, "a closed port on this host refuses");
        assert!(!port_refuses("not an address").await);
    }

    /// What a registering worker reports running is outside input: bounded in count, job ids
    /// checked, and kept per worker for adoption.
    #[tokio::test]
    async fn reported_subtasks_are_bounded_checked_and_kept_per_job() {
        let (_tx, rm) = rm_at(5);
        let sub = |job: &str, attempt, subtask| keel_proto::v1::RunningSubtask {
            job_id: job.into(),
            attempt,
            subtask,
            last_acked_checkpoint: 7,
            last_committed_checkpoint: 6 + u64::from(subtask),
        };
        let too_many = vec![sub("j", 1, 0); MAX_REPORTED_SUBTASKS + 1];
        let e = rm.register("w1", "127.0.0.1:1", 1, LeaderEpoch(5), &too_many).unwrap_err();
        assert!(e.to_string().contains(&format!("at most {MAX_REPORTED_SUBTASKS}")), "{e}");
        let e = rm.register("w1", "127.0.0.1:1", 1, LeaderEpoch(5), &[sub("../x", 1, 0)]).unwrap_err();
        assert!(e.to_string().contains("not a valid job id"), "{e}");
        assert!(rm.worker_slots().is_empty(), "a refused registration registers nothing");
        rm.register("w1", "127.0.0.1:1", 2, LeaderEpoch(5), &[sub("j", 3, 1), sub("k", 1, 0)]).unwrap();
        rm.register("w2", "127.0.0.1:2", 2, LeaderEpoch(5), &[sub("j", 3, 0)]).unwrap();
        assert_eq!(rm.reported_subtasks("j"), vec![("w1".to_string(), 3, 1), ("w2".to_string(), 3, 0)]);
        assert_eq!(rm.reported_subtasks("none"), vec![]);
        assert_eq!(rm.reported_checkpoints("j", 3), vec![(0, 7, 6), (1, 7, 7)]);
        assert_eq!(rm.reported_checkpoints("j", 2), vec![]);
    }

    #[tokio::test]
    async fn a_command_of_another_epoch_is_never_sent() {
        let (tx, rm) = rm_at(5);
        // At its own epoch the command goes out (here: no such worker registered).
        let s = rm.send(LeaderEpoch(5), "w1", heartbeat()).await.unwrap_err();
        assert_eq!(s.code(), tonic::Code::NotFound, "{s:?}");
        tx.send_replace(Role::Leading { epoch: LeaderEpoch(9), fence: None });
        let s = rm.send(LeaderEpoch(5), "w1", heartbeat()).await.unwrap_err();
        assert_eq!(s.code(), tonic::Code::FailedPrecondition, "{s:?}");
        assert!(s.message().contains("now acts at epoch 9"), "{}", s.message());
        tx.send_replace(Role::Suspended { epoch: LeaderEpoch(5) });
        let s = rm.send(LeaderEpoch(5), "w1", heartbeat()).await.unwrap_err();
        assert_eq!(s.code(), tonic::Code::FailedPrecondition, "suspended: nothing is sent ({s:?})");
    }

    #[test]
    fn deregistration_only_counts_for_the_epoch_the_worker_registered_with() {
        let (_tx, rm) = rm_at(5);
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let _guard = rt.enter();
        rm.register("w1", "127.0.0.1:1", 1, LeaderEpoch(5), &[]).unwrap();
        let mut lost = rm.subscribe_lost();
        assert!(!rm.deregister("w1", LeaderEpoch(4), "stopping"), "another leader's worker is not dropped");
        assert_eq!(rm.worker_slots().len(), 1);
        assert!(rm.deregister("w1", LeaderEpoch(5), "stopping"));
        assert!(rm.worker_slots().is_empty());
        assert_eq!(lost.try_recv().ok().as_deref(), Some("w1"), "its jobs restart elsewhere");
    }
}
