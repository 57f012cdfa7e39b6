//! The gRPC `Worker` service: fenced leader commands and a read-only status.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use keel_ha::LeaderEpoch;
use keel_proto::v1::worker_server::Worker;
use keel_proto::v1::{
    leader_command, AdminReply, AdminRequest, CommandReply, LeaderCommand, StatusRequest, WorkerStatus,
};
use tonic::{Request, Response, Status};

use crate::metrics::Refusal;
use crate::state::{GateRefusal, WorkerState};
use crate::tasks::DeployRefused;

/// Same key as the coordinator's `FENCED_EPOCH_METADATA`.
pub const FENCED_EPOCH_METADATA: &str = "keel-fenced-epoch";
/// Same key as the coordinator's `NOT_READY_METADATA`: "retry shortly".
pub const NOT_READY_METADATA: &str = "keel-not-ready";

/// At most `max` characters of a peer-supplied string, for logs and replies.
fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        format!("{}…({} bytes)", s.chars().take(max).collect::<String>(), s.len())
    }
}

pub struct WorkerService {
    pub state: Arc<WorkerState>,
    pub host: Arc<crate::tasks::TaskHost>,
    /// `rest.auth.token`: required by the admin call when set.
    pub admin_token: Option<String>,
    pub shutdown: tokio_util::sync::CancellationToken,
    /// Test-only: `KEEL_TEST_DISABLE_EPOCH_CHECK=1` makes this worker accept stale epochs, so
    /// the chaos checker can be shown to catch the violation. Never set it in production.
    pub disable_epoch_check: bool,
}

/// Reads the test-only switch (see [`WorkerService::disable_epoch_check`]).
pub fn epoch_check_disabled() -> bool {
    let off = std::env::var("KEEL_TEST_DISABLE_EPOCH_CHECK").is_ok_and(|v| v == "1");
    if off {
        tracing::error!(
            "KEEL_TEST_DISABLE_EPOCH_CHECK=1: this worker ACCEPTS STALE EPOCHS (test-only switch; fencing is off)"
        );
    }
    off
}

impl WorkerService {
    /// Counts a refused deploy or adoption by its reason and turns it into the answer.
    fn refused(&self, r: DeployRefused) -> Status {
        self.state.counters.refused(match &r {
            DeployRefused::NotRegistered { .. } => Refusal::NotRegistered,
            DeployRefused::StaleAttempt { .. } => Refusal::StaleAttempt,
            DeployRefused::Invalid(_) => Refusal::Invalid,
            DeployRefused::NotRunning { .. } => Refusal::NotRunning,
        });
        Status::from(r)
    }
}

#[tonic::async_trait]
impl Worker for WorkerService {
    async fn command(&self, request: Request<LeaderCommand>) -> Result<Response<CommandReply>, Status> {
        let command = request.into_inner();
        let epoch = LeaderEpoch(command.epoch);
        // A (re)started worker first learns the current leader from ZooKeeper: until then it
        // cannot tell a stale leader from the current one and accepts nothing.
        if self.state.gate.highest().0 == 0 && !self.disable_epoch_check {
            self.state.counters.refused(Refusal::LeaderUnknown);
            return Err(Status::unavailable(format!(
                "worker {} has not learnt the current leader yet; command from epoch {epoch} not accepted",
                self.state.id
            )));
        }
        let admitted = self.state.admit_confirmed(epoch);
        if let (Err(_), true) = (&admitted, self.disable_epoch_check) {
            tracing::warn!(epoch = %epoch, "stale epoch accepted: epoch checking is disabled (test-only switch)");
        } else if let Err(GateRefusal::Unconfirmed { got, confirmed }) = admitted {
            let n = self.state.refused.fetch_add(1, Ordering::SeqCst) + 1;
            self.state.counters.refused(Refusal::UnconfirmedEpoch);
            let message = format!(
                "{} (command from {:?})",
                GateRefusal::Unconfirmed { got, confirmed },
                truncate(&command.leader_id, 80)
            );
            tracing::warn!(
                target: "keel::events", event = "command_refused",
                worker = %self.state.id, from = %truncate(&command.leader_id, 80), epoch = %epoch,
                highest = %confirmed, refused_total = n, unconfirmed = true, "{message}"
            );
            *self.state.last_refusal.lock().expect("refusal lock") = message.clone();
            // No fenced-epoch metadata: the gate was not raised, nobody must step down.
            return Err(Status::unavailable(message));
        } else if let Err(GateRefusal::Stale(fenced)) = admitted {
            let n = self.state.refused.fetch_add(1, Ordering::SeqCst) + 1;
            self.state.counters.refused(Refusal::StaleEpoch);
            let message = format!("{fenced} (command from {:?})", command.leader_id);
            tracing::warn!(
                target: "keel::events", event = "command_refused",
                worker = %self.state.id, from = %command.leader_id, epoch = %epoch,
                highest = %fenced.highest, refused_total = n, "{message}"
            );
            *self.state.last_refusal.lock().expect("refusal lock") = message.clone();
            let mut status = Status::failed_precondition(message);
            if let Ok(v) = fenced.highest.0.to_string().parse() {
                status.metadata_mut().insert(FENCED_EPOCH_METADATA, v);
            }
            return Err(status);
        }
        self.state.accepted.fetch_add(1, Ordering::SeqCst);
        let kind = match &command.kind {
            Some(leader_command::Kind::Heartbeat(_)) => "heartbeat",
            Some(leader_command::Kind::Disconnect(_)) => "disconnect",
            Some(leader_command::Kind::Deploy(_)) => "deploy",
            Some(leader_command::Kind::TriggerCheckpoint(_)) => "trigger_checkpoint",
            Some(leader_command::Kind::NotifyCheckpoint(_)) => "notify_checkpoint",
            Some(leader_command::Kind::Cancel(_)) => "cancel",
            Some(leader_command::Kind::Adopt(_)) => "adopt",
            None => "none",
        };
        tracing::debug!(target: "keel::events", event = "command_accepted", epoch = %epoch, kind, from = %command.leader_id, "command accepted");
        match command.kind {
            Some(leader_command::Kind::Heartbeat(_)) => {
                let mut reg = self.state.registration.lock().expect("registration lock");
                if let Some(r) = reg.as_mut() {
                    if r.epoch == epoch {
                        r.last_heard = Instant::now();
                    }
                }
            }
            Some(leader_command::Kind::Disconnect(d)) => {
                let mut reg = self.state.registration.lock().expect("registration lock");
                if reg.as_ref().is_some_and(|r| r.epoch == epoch) {
                    tracing::warn!(from = %command.leader_id, reason = %d.reason, "leader disconnected us; will register again");
                    *reg = None;
                }
            }
            Some(leader_command::Kind::Deploy(d)) => self.host.deploy(epoch, d).map_err(|r| self.refused(r))?,
            Some(leader_command::Kind::Adopt(a)) => self.host.adopt(epoch, a).map_err(|r| self.refused(r))?,
            Some(leader_command::Kind::TriggerCheckpoint(t)) => {
                let triggered_subtasks = self.host.trigger(t)?;
                return Ok(Response::new(CommandReply {
                    worker_id: self.state.id.clone(),
                    slots_total: self.state.slots,
                    slots_free: self.state.slots.saturating_sub(self.host.running() as u32),
                    triggered_subtasks,
                    lists_triggered: true,
                }));
            }
            Some(leader_command::Kind::NotifyCheckpoint(n)) => self.host.notify(n)?,
            Some(leader_command::Kind::Cancel(c)) => self.host.cancel(c),
            None => return Err(Status::invalid_argument("command has no kind; expected heartbeat or disconnect")),
        }
        Ok(Response::new(CommandReply {
            worker_id: self.state.id.clone(),
            slots_total: self.state.slots,
            slots_free: self.state.slots.saturating_sub(self.host.running() as u32),
            ..Default::default()
        }))
    }

    async fn status(&self, _request: Request<StatusRequest>) -> Result<Response<WorkerStatus>, Status> {
        Ok(Response::new(self.state.status()))
    }

    async fn admin(&self, request: Request<AdminRequest>) -> Result<Response<AdminReply>, Status> {
        let r = request.into_inner();
        if let Some(token) = &self.admin_token {
            if &r.token != token {
                return Err(Status::unauthenticated("the admin call needs the cluster's rest.auth.token"));
            }
        }
        let fault = keel_ha::drill::Fault::parse(&r.fault, (r.pause_ms > 0).then_some(r.pause_ms))
            .map_err(Status::invalid_argument)?;
        if fault == keel_ha::drill::Fault::Isolate {
            return Err(Status::invalid_argument(
                "isolate is a dispatcher fault; workers support kill, terminate, pause",
            ));
        }
        keel_ha::drill::inflict(fault, self.shutdown.clone());
        Ok(Response::new(AdminReply { worker_id: self.state.id.clone(), pid: std::process::id() as i32 }))
    }
}
