//! The worker's shared state: identity, registration, epoch gate and counters.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use keel_ha::{EpochGate, LeaderEpoch};
use keel_proto::v1::WorkerStatus;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    pub leader_id: String,
    pub epoch: LeaderEpoch,
    pub address: String,
    pub last_heard: Instant,
}

/// Why the epoch gate refused a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum GateRefusal {
    #[error(transparent)]
    Stale(keel_ha::Fenced),
    #[error(
        "epoch {got} is not confirmed: ZooKeeper names no leader of an epoch above {confirmed} \
         (a forged epoch, or a leader this worker has not learnt about yet)"
    )]
    Unconfirmed { got: LeaderEpoch, confirmed: LeaderEpoch },
}

#[derive(Debug)]
pub struct WorkerState {
    pub id: String,
    pub rpc_address: String,
    pub slots: u32,
    pub gate: EpochGate,
    pub registration: Mutex<Option<Registration>>,
    pub registrations: AtomicU64,
    pub accepted: AtomicU64,
    pub refused: AtomicU64,
    pub last_refusal: Mutex<String>,
    /// How this worker's calls to the leader are secured (`security.internal.*`,
    /// `security.ssl.internal.*`); plaintext unless [`WorkerState::with_security`].
    pub security: keel_proto::security::InternalSecurity,
    /// host:port of this worker's `/metrics` once bound (sent with each registration).
    pub metrics_address: Mutex<String>,
    /// Event counters for `/metrics` (refused commands by reason).
    pub counters: crate::metrics::WorkerCounters,
}

impl WorkerState {
    pub fn new(id: String, rpc_address: String, slots: u32) -> Self {
        Self {
            id,
            rpc_address,
            slots,
            gate: EpochGate::new(),
            registration: Mutex::new(None),
            registrations: AtomicU64::new(0),
            accepted: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            last_refusal: Mutex::new(String::new()),
            metrics_address: Mutex::new(String::new()),
            security: keel_proto::security::InternalSecurity::plaintext(),
            counters: Default::default(),
        }
    }

    /// Secures this worker's calls to the leader.
    #[must_use]
    pub fn with_security(mut self, security: keel_proto::security::InternalSecurity) -> Self {
        self.security = security;
        self
    }

    /// Admits a command or reply stamped with `epoch`, never raising the gate: only epochs
    /// confirmed from ZooKeeper (leader retrieval, [`keel_ha::EpochGate::observe`]) raise it,
    /// so a forged epoch from a stranger cannot fence the real leaders.
    ///
    /// # Notable errors
    /// * [`GateRefusal::Stale`]: older than the highest confirmed epoch (a stale leader).
    /// * [`GateRefusal::Unconfirmed`]: newer than any epoch confirmed from ZooKeeper (forged,
    ///   or a leader this worker has not learnt about yet; the sender may retry).
    pub fn admit_confirmed(&self, epoch: LeaderEpoch) -> Result<(), GateRefusal> {
        let confirmed = self.gate.highest();
        if epoch > confirmed {
            return Err(GateRefusal::Unconfirmed { got: epoch, confirmed });
        }
        // epoch <= confirmed: `admit` cannot raise the gate here.
        self.gate.admit(epoch).map_err(GateRefusal::Stale)
    }

    pub fn registration(&self) -> Option<Registration> {
        self.registration.lock().expect("registration lock").clone()
    }

    pub fn status(&self) -> WorkerStatus {
        let reg = self.registration();
        WorkerStatus {
            worker_id: self.id.clone(),
            rpc_address: self.rpc_address.clone(),
            slots: self.slots,
            highest_epoch: self.gate.highest().0,
            registered_leader_id: reg.as_ref().map(|r| r.leader_id.clone()).unwrap_or_default(),
            registered_epoch: reg.as_ref().map(|r| r.epoch.0).unwrap_or(0),
            registered_leader_address: reg.as_ref().map(|r| r.address.clone()).unwrap_or_default(),
            registrations: self.registrations.load(Ordering::SeqCst),
            commands_accepted: self.accepted.load(Ordering::SeqCst),
            commands_refused: self.refused.load(Ordering::SeqCst),
            last_refusal: self.last_refusal.lock().expect("refusal lock").clone(),
        }
    }
}
