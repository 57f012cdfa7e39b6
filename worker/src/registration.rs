//! Following the leader: register with whoever leader retrieval names, again whenever it
//! changes, and again when the registered leader has been silent for `heartbeat.timeout`.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use keel_ha::LeaderView;
use keel_proto::v1::dispatcher_client::DispatcherClient;
use keel_proto::v1::RegisterWorkerRequest;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::state::{Registration, WorkerState};

pub async fn follow_leader(
    state: Arc<WorkerState>,
    host: Arc<crate::tasks::TaskHost>,
    mut leader_rx: watch::Receiver<Option<LeaderView>>,
    heartbeat_timeout: Duration,
    cancel: CancellationToken,
) {
    let mut last_error: Option<String> = None;
    let mut warned_silent: Option<(String, keel_ha::LeaderEpoch)> = None;
    loop {
        // Without a leader, tasks run on for high-availability.adoption.timeout past
        // heartbeat.timeout (a new leader may adopt them), then stop (0: they run on until the
        // worker registers anew, as before adoption existed).
        let adoption = host.adoption_timeout();
        if let Some(r) = state.registration() {
            if !adoption.is_zero() && r.last_heard.elapsed() > heartbeat_timeout + adoption && host.hosted() > 0 {
                tracing::warn!(
                    target: "keel::events", event = "leaderless_tasks_stopped", leader = %r.leader_id, epoch = %r.epoch,
                    silent_ms = r.last_heard.elapsed().as_millis() as u64,
                    "no leader for heartbeat.timeout + high-availability.adoption.timeout: stopping every subtask"
                );
                host.cancel_all("no leader for heartbeat.timeout + high-availability.adoption.timeout");
            }
        }
        let leader = leader_rx.borrow_and_update().clone();
        if let Some(leader) = leader {
            state.gate.observe(leader.epoch);
            let current = state.registration();
            let needs = match &current {
                None => true,
                Some(r) => {
                    // high-availability.type: none names no leader id (the view is
                    // configured, not read): the leader answering is the one.
                    r.epoch < leader.epoch
                        || (!leader.leader_id.is_empty() && r.leader_id != leader.leader_id)
                        || r.last_heard.elapsed() > heartbeat_timeout
                }
            };
            if needs {
                if let Some(r) = &current {
                    let silent = (r.leader_id.clone(), r.epoch);
                    if r.epoch == leader.epoch
                        && r.last_heard.elapsed() > heartbeat_timeout
                        && warned_silent.as_ref() != Some(&silent)
                    {
                        tracing::warn!(leader = %r.leader_id, epoch = %r.epoch, "leader silent for heartbeat.timeout; registering again");
                        warned_silent = Some(silent);
                    }
                }
                // Commands that arrive between the leader's answer and the switch below are
                // refused (the leader retries) instead of being admitted and then undone.
                host.begin_registration();
                match register(&state, &leader, host.adoptable()).await {
                    Ok(registration) => {
                        if let Some(delay) = registration_switch_delay() {
                            tokio::time::sleep(delay).await;
                        }
                        last_error = None;
                        warned_silent = None;
                        // Atomic with deploys; what ran here is cancelled, or orphaned for the
                        // new leader to adopt (high-availability.adoption.timeout).
                        host.register(registration, "registered anew");
                    }
                    Err(e) => {
                        host.registration_failed();
                        if last_error.as_deref() != Some(e.as_str()) {
                            tracing::warn!(leader = %leader.leader_id, epoch = %leader.epoch, error = %e, "registration failed; retrying");
                        }
                        last_error = Some(e);
                    }
                }
            }
        }
        tokio::select! {
            _ = leader_rx.changed() => {}
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            _ = cancel.cancelled() => return,
        }
    }
}

/// `KEEL_TEST_DELAY_REGISTRATION_SWITCH_MS=<n>` (fault injection, test-only): the worker waits
/// n ms between the leader's answer to a registration and recording it, widening the window in
/// which the leader's first commands can arrive before the switch.
fn registration_switch_delay() -> Option<Duration> {
    static DELAY: std::sync::OnceLock<Option<Duration>> = std::sync::OnceLock::new();
    *DELAY.get_or_init(|| {
        let ms: u64 = std::env::var("KEEL_TEST_DELAY_REGISTRATION_SWITCH_MS").ok()?.parse().ok()?;
        tracing::error!("KEEL_TEST_DELAY_REGISTRATION_SWITCH_MS={ms}: registrations are recorded {ms} ms after the answer (test-only fault)");
        Some(Duration::from_millis(ms))
    })
}

async fn register(
    state: &WorkerState,
    leader: &LeaderView,
    running: Vec<keel_proto::v1::RunningSubtask>,
) -> Result<Registration, String> {
    let endpoint = state
        .security
        .endpoint(&leader.address)
        .map_err(|e| format!("leader address: {e}"))?
        .connect_timeout(Duration::from_secs(1))
        .timeout(Duration::from_secs(2));
    let metrics_address = state.metrics_address.lock().expect("metrics address lock").clone();
    let channel = endpoint.connect().await.map_err(|e| format!("cannot reach leader at {}: {e}", leader.address))?;
    let reply = DispatcherClient::new(state.security.intercept(channel))
        .register_worker(RegisterWorkerRequest {
            worker_id: state.id.clone(),
            rpc_address: state.rpc_address.clone(),
            slots: state.slots,
            leader_epoch: leader.epoch.0,
            running,
            metrics_address,
        })
        .await
        .map_err(|s| format!("{:?}: {}", s.code(), s.message()))?
        .into_inner();
    let epoch = keel_ha::LeaderEpoch(reply.epoch);
    // Only the epoch ZooKeeper named: the gate is never raised by what a peer claims.
    if epoch != leader.epoch {
        return Err(format!(
            "registration answered with epoch {epoch}, but ZooKeeper names epoch {} for leader {}",
            leader.epoch, leader.leader_id
        ));
    }
    if let Err(fenced) = state.admit_confirmed(epoch) {
        return Err(format!("registration answered by a stale leader: {fenced}"));
    }
    let n = state.registrations.fetch_add(1, Ordering::SeqCst) + 1;
    let registration = Registration {
        leader_id: reply.leader_id.clone(),
        epoch,
        address: leader.address.clone(),
        last_heard: Instant::now(),
    };
    tracing::info!(
        target: "keel::events", event = "registered",
        worker = %state.id, leader = %reply.leader_id, epoch = %epoch, registrations = n,
        "registered with leader"
    );
    Ok(registration)
}

/// Leaves the leader this worker is registered with (graceful stop), bounded by `timeout`.
/// The leader drops this worker's slots at once instead of after `heartbeat.timeout`.
pub async fn deregister(state: &WorkerState, reason: &str, timeout: Duration) {
    let Some(reg) = state.registration() else { return };
    let call = async {
        let endpoint = state.security.endpoint(&reg.address)?.connect_timeout(timeout).timeout(timeout);
        let channel = endpoint.connect().await.map_err(|e| e.to_string())?;
        DispatcherClient::new(state.security.intercept(channel))
            .deregister_worker(keel_proto::v1::DeregisterWorkerRequest {
                worker_id: state.id.clone(),
                leader_epoch: reg.epoch.0,
                reason: reason.to_string(),
            })
            .await
            .map(|r| r.into_inner().was_registered)
            .map_err(|s| s.message().to_string())
    };
    match tokio::time::timeout(timeout, call).await {
        Ok(Ok(was)) => {
            tracing::info!(leader = %reg.leader_id, epoch = %reg.epoch, was_registered = was, "deregistered from the leader")
        }
        Ok(Err(e)) => {
            tracing::warn!(leader = %reg.leader_id, error = %e, "could not deregister; the leader notices at heartbeat.timeout")
        }
        Err(_) => {
            tracing::warn!(leader = %reg.leader_id, "deregistration timed out; the leader notices at heartbeat.timeout")
        }
    }
}
