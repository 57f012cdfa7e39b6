//! Leader election: one background task per contender.
//!
//! The task opens a session, contends with a Curator-compatible latch under `leader/latch`
//! (`_c_<uuid>-latch-<seq>`), and once it holds the latch derives the epoch from the latch
//! node's `czxid`, writes `leader/info` through its [`Fence`] and publishes
//! [`Leadership::Leading`]. Session events go through the pure [`Engine`]; its commands are
//! carried out here. A session that expires is dropped and a new one contends again.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use keel_proto::v1::ContenderInfo;
use prost::Message;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use zookeeper_client::{Client, CreateMode, EventType, LockOptions, LockPrefix, OneshotWatcher, SessionState};

use crate::engine::{Command, Engine, Event, Role};
use crate::session::{close, session_hex};
use crate::{paths, Fence, LeaderEpoch, LeaderView, ZkSettings};

/// This contender's view of its own leadership.
#[derive(Debug, Clone)]
pub enum Leadership {
    Standby,
    /// Leading and acting; write through the fence, stamp commands with its epoch.
    Leading(Fence),
    /// Still holding the latch but the connection is suspended: do not act.
    Suspended(LeaderEpoch),
}

impl Leadership {
    pub fn fence(&self) -> Option<&Fence> {
        match self {
            Leadership::Leading(f) => Some(f),
            _ => None,
        }
    }

    pub fn is_leading(&self) -> bool {
        matches!(self, Leadership::Leading(_))
    }

    pub fn epoch(&self) -> Option<LeaderEpoch> {
        match self {
            Leadership::Standby => None,
            Leadership::Leading(f) => Some(f.epoch()),
            Leadership::Suspended(e) => Some(*e),
        }
    }
}

/// Who is contending.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contender {
    pub id: String,
    pub rpc_address: String,
    pub rest_address: String,
}

/// The state of the election's ZooKeeper session, for metrics
/// ([`ElectionHandle::session_status`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionStatus {
    /// No session yet (connecting, or between sessions).
    Connecting,
    Connected,
    Disconnected,
    Expired,
    Closed,
}

impl SessionStatus {
    /// Lower-case name (`connecting`, `connected`, `disconnected`, `expired`, `closed`).
    pub fn name(&self) -> &'static str {
        match self {
            SessionStatus::Connecting => "connecting",
            SessionStatus::Connected => "connected",
            SessionStatus::Disconnected => "disconnected",
            SessionStatus::Expired => "expired",
            SessionStatus::Closed => "closed",
        }
    }
}

/// Mirrors a session's states into `tx` until a terminal state or `stop`.
async fn mirror_session(
    mut states: zookeeper_client::StateWatcher,
    tx: watch::Sender<SessionStatus>,
    stop: CancellationToken,
) {
    loop {
        let state = tokio::select! {
            s = states.changed() => s,
            _ = stop.cancelled() => return,
        };
        let status = match state {
            SessionState::Disconnected => SessionStatus::Disconnected,
            SessionState::SyncConnected | SessionState::ConnectedReadOnly => SessionStatus::Connected,
            SessionState::Expired => SessionStatus::Expired,
            SessionState::Closed | SessionState::AuthFailed => SessionStatus::Closed,
        };
        tx.send_replace(status);
        if matches!(status, SessionStatus::Expired | SessionStatus::Closed) {
            return;
        }
    }
}

/// Starts election tasks.
pub struct LeaderElection;

impl LeaderElection {
    /// Spawns the contender task on the current tokio runtime.
    pub fn start(settings: ZkSettings, contender: Contender) -> ElectionHandle {
        let (tx, rx) = watch::channel(Leadership::Standby);
        let cancel = CancellationToken::new();
        let (isolate_tx, isolate_rx) = mpsc::unbounded_channel();
        let (session_tx, session_rx) = watch::channel(SessionStatus::Connecting);
        let task = Task { settings, contender, tx, cancel: cancel.clone(), isolate_rx, session_tx };
        let join = tokio::spawn(task.run());
        ElectionHandle { rx, cancel, join, isolate_tx, session_rx }
    }
}

/// Handle to a running contender. Dropping it without [`ElectionHandle::shutdown`] leaves the
/// task running until the runtime stops.
#[must_use = "dropping the handle does not resign; call shutdown()"]
pub struct ElectionHandle {
    rx: watch::Receiver<Leadership>,
    cancel: CancellationToken,
    join: JoinHandle<()>,
    isolate_tx: mpsc::UnboundedSender<()>,
    session_rx: watch::Receiver<SessionStatus>,
}

impl ElectionHandle {
    pub fn subscribe(&self) -> watch::Receiver<Leadership> {
        self.rx.clone()
    }

    pub fn current(&self) -> Leadership {
        self.rx.borrow().clone()
    }

    /// The state of the election's current ZooKeeper session.
    pub fn session_status(&self) -> watch::Receiver<SessionStatus> {
        self.session_rx.clone()
    }

    /// Drops the current session (if leading, leadership goes to a standby) and contends
    /// again with a new session. Used by `keel drill isolate-leader`.
    pub fn isolate(&self) {
        let _ = self.isolate_tx.send(());
    }

    /// A handle that can [`isolate`](Self::isolate) from elsewhere (the admin endpoint).
    pub fn isolator(&self) -> Isolator {
        Isolator(self.isolate_tx.clone())
    }

    /// Resigns: deletes `leader/info` and the latch node, closes the session, and waits for
    /// the task to end.
    pub async fn shutdown(self) {
        self.cancel.cancel();
        let _ = self.join.await;
    }
}

/// See [`ElectionHandle::isolator`].
#[derive(Clone, Debug)]
pub struct Isolator(mpsc::UnboundedSender<()>);

impl Isolator {
    pub fn isolate(&self) {
        let _ = self.0.send(());
    }
}

struct Task {
    settings: ZkSettings,
    contender: Contender,
    tx: watch::Sender<Leadership>,
    cancel: CancellationToken,
    isolate_rx: mpsc::UnboundedReceiver<()>,
    session_tx: watch::Sender<SessionStatus>,
}

/// How a session ended.
enum End {
    Again,
    Stop,
}

impl Task {
    async fn run(mut self) {
        let (fenced_tx, mut fenced_rx) = mpsc::unbounded_channel();
        let mut backoff = Duration::from_millis(100);
        loop {
            self.session_tx.send_replace(SessionStatus::Connecting);
            let Some(client) = self.settings.connect_with_retry(&self.cancel, "leader election").await else {
                break;
            };
            let started = Instant::now();
            match self.session(client, &fenced_tx, &mut fenced_rx).await {
                End::Stop => break,
                End::Again => {
                    // A session that ended quickly (lock error, broken cluster) must not spin.
                    if started.elapsed() < Duration::from_secs(1) {
                        tokio::select! {
                            _ = tokio::time::sleep(backoff) => {},
                            _ = self.cancel.cancelled() => break,
                        }
                        backoff = (backoff * 2).min(self.settings.retry_wait.max(Duration::from_millis(100)));
                    } else {
                        backoff = Duration::from_millis(100);
                    }
                }
            }
        }
        self.tx.send_replace(Leadership::Standby);
        self.session_tx.send_replace(SessionStatus::Closed);
        tracing::info!("leader election stopped");
    }

    async fn session(
        &mut self,
        client: Client,
        fenced_tx: &mpsc::UnboundedSender<LeaderEpoch>,
        fenced_rx: &mut mpsc::UnboundedReceiver<LeaderEpoch>,
    ) -> End {
        let session = session_hex(&client);
        let mut states = client.state_watcher();
        self.session_tx.send_replace(SessionStatus::Connected);
        let mirror_stop = CancellationToken::new();
        let _mirror_guard = mirror_stop.clone().drop_guard();
        tokio::spawn(mirror_session(client.state_watcher(), self.session_tx.clone(), mirror_stop));
        let mut engine = Engine::new(self.settings.tolerate_suspended_connections);
        let data = ContenderInfo {
            format_version: keel_proto::FORMAT_VERSION,
            contender_id: self.contender.id.clone(),
            rpc_address: self.contender.rpc_address.clone(),
            rest_address: self.contender.rest_address.clone(),
        }
        .encode_to_vec();
        tracing::info!(session = %session, "contending for leadership");

        let prefix = LockPrefix::new_curator(paths::LATCH_DIR, paths::LATCH_NAME).expect("static latch path is valid");
        let options = LockOptions::new(self.settings.acls())
            .with_ancestor_options(CreateMode::Persistent.with_acls(self.settings.acls()))
            .expect("persistent ancestors are valid");
        enum Contend<T> {
            Done(T),
            SessionEnded,
            Isolate,
            Cancel,
        }
        let contended = tokio::select! {
            r = client.lock(prefix, &data, options) => Contend::Done(r.map(|l| l.into_owned())),
            _ = wait_terminal(&mut states) => Contend::SessionEnded,
            Some(()) = self.isolate_rx.recv() => Contend::Isolate,
            _ = self.cancel.cancelled() => Contend::Cancel,
        };
        let locked = match contended {
            Contend::Done(r) => r,
            Contend::SessionEnded => {
                tracing::warn!(session = %session, "session ended while contending");
                close(client, Duration::from_millis(500)).await;
                return End::Again;
            }
            Contend::Isolate => {
                tracing::warn!(session = %session, "isolate requested while standing by; new session");
                close(client, Duration::from_secs(2)).await;
                return End::Again;
            }
            Contend::Cancel => {
                close(client, Duration::from_secs(2)).await;
                return End::Stop;
            }
        };
        let lock = match locked {
            Ok(lock) => lock,
            Err(err) => {
                tracing::warn!(session = %session, %err, "contending failed; new session");
                close(client, Duration::from_millis(500)).await;
                return End::Again;
            }
        };
        let latch = lock.lock_path().to_string();
        let epoch = match client.check_stat(&latch).await {
            Ok(Some(stat)) => LeaderEpoch(stat.czxid),
            other => {
                tracing::warn!(session = %session, latch = %latch, result = ?other.map(|s| s.is_some()), "latch vanished right after acquiring it");
                drop(lock);
                close(client, Duration::from_millis(500)).await;
                return End::Again;
            }
        };
        let fence = Fence::new(lock, epoch, fenced_tx.clone(), self.settings.acl);
        let view = LeaderView {
            leader_id: self.contender.id.clone(),
            epoch,
            address: self.contender.rpc_address.clone(),
            rest_address: self.contender.rest_address.clone(),
            session_id: session.clone(),
            latch_node: latch.rsplit('/').next().unwrap_or_default().to_string(),
            since_unix_ms: SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0),
        };
        if let Err(err) = fence.replace_ephemeral(paths::LEADER_INFO, &view.encode()).await {
            tracing::warn!(%epoch, %err, "could not publish leader/info; new session");
            drop(fence);
            close(client, Duration::from_millis(500)).await;
            return End::Again;
        }
        tracing::info!(target: "keel::events", event = "leadership_gained", %epoch, latch = %latch, session = %session, "leadership gained");

        let mut latch_watch = match arm_latch_watch(&client, &latch).await {
            Some(w) => Box::pin(w.changed()),
            None => {
                tracing::warn!(%epoch, "latch vanished before it could be watched");
                drop(fence);
                close(client, Duration::from_millis(500)).await;
                return End::Again;
            }
        };
        let mut pending = engine.handle(Event::Acquired(epoch));
        let mut deadline: Option<Instant> = None;
        loop {
            while !pending.is_empty() {
                let command = pending.remove(0);
                match command {
                    Command::Publish(role) => {
                        let leadership = match role {
                            Role::Leading(_) => Leadership::Leading(fence.clone()),
                            Role::Suspended(e) => Leadership::Suspended(e),
                            Role::Standby => Leadership::Standby,
                        };
                        match role {
                            Role::Leading(_) => tracing::info!(%epoch, "acting as leader"),
                            Role::Suspended(_) => {
                                tracing::warn!(%epoch, "connection suspended: leader stops acting until it is back")
                            }
                            Role::Standby => {
                                tracing::warn!(target: "keel::events", event = "leadership_lost", %epoch, "leadership lost; standing by")
                            }
                        }
                        self.tx.send_replace(leadership);
                    }
                    Command::ArmSuspendDeadline => deadline = Some(Instant::now() + self.settings.session_timeout),
                    Command::DisarmSuspendDeadline => deadline = None,
                    Command::VerifyLatch => match arm_latch_watch(&client, &latch).await {
                        Some(w) => {
                            latch_watch = Box::pin(w.changed());
                            pending.extend(engine.handle(Event::LatchVerified { present: true }));
                        }
                        None => pending.extend(engine.handle(Event::LatchVerified { present: false })),
                    },
                    Command::AbandonSession => {
                        // Delete our latch if the session still lives (fenced, isolated): a
                        // Fence clone held elsewhere keeps the session open, and its latch
                        // would block every other contender.
                        match client.delete(&latch, None).await {
                            Ok(()) => tracing::info!(latch = %latch, "deleted own latch node"),
                            Err(err) => tracing::debug!(%err, "own latch not deleted (already gone with the session)"),
                        }
                        drop(fence);
                        close(client, Duration::from_millis(500)).await;
                        return End::Again;
                    }
                    Command::Resign => {
                        if let Err(err) = fence.delete(paths::LEADER_INFO, None).await {
                            tracing::debug!(%err, "leader/info not deleted on resign");
                        }
                        if let Err(err) = client.delete(&latch, None).await {
                            tracing::debug!(%err, "latch not deleted on resign");
                        }
                        drop(fence);
                        close(client, Duration::from_secs(2)).await;
                        tracing::info!(%epoch, "resigned leadership");
                        return End::Stop;
                    }
                }
            }
            let event = tokio::select! {
                state = states.changed() => match state {
                    SessionState::Disconnected => Event::Disconnected,
                    SessionState::SyncConnected | SessionState::ConnectedReadOnly => Event::Reconnected,
                    SessionState::Expired | SessionState::Closed | SessionState::AuthFailed => Event::Expired,
                },
                fired = &mut latch_watch => match fired.event_type {
                    EventType::NodeDeleted => Event::LatchDeleted,
                    EventType::Session => match fired.session_state {
                        SessionState::Expired | SessionState::Closed | SessionState::AuthFailed => Event::Expired,
                        _ => Event::Reconnected,
                    },
                    // Data changes on the latch do not matter; watch again.
                    _ => Event::Reconnected,
                },
                _ = sleep_until_opt(deadline) => Event::SuspendDeadline,
                Some(seen) = fenced_rx.recv() => {
                    if seen > epoch {
                        tracing::warn!(%epoch, %seen, "a peer has seen a newer epoch: stepping down");
                    }
                    Event::Fenced { seen }
                }
                Some(()) = self.isolate_rx.recv() => {
                    tracing::warn!(%epoch, "isolate requested: dropping the session");
                    Event::LatchDeleted
                }
                _ = self.cancel.cancelled() => Event::Shutdown,
            };
            if !matches!(event, Event::Fenced { .. } | Event::Shutdown) {
                hold_session_event(&event).await;
            }
            tracing::debug!(?event, "leadership event");
            pending.extend(engine.handle(event));
        }
    }
}

/// Test-only: `KEEL_TEST_HOLD_SESSION_EVENTS=<file>` lets a test hold the leading election's
/// session and latch events (disconnected, expired, latch deleted, suspend deadline) while
/// `<file>` exists, as a leader whose event loop is slow to notice would. It makes certain an
/// interleaving that real timing produces only sometimes: a zombie leader resumed after a
/// pause acts (heartbeats its workers with its old epoch) before it learns that its session
/// expired, so a test can show that the workers refuse it. A refusal (`Fenced`) and a
/// shutdown are never held. Logs at error level while holding; bounded to 5 minutes. Without
/// the variable nothing changes.
pub const HOLD_SESSION_EVENTS_ENV: &str = "KEEL_TEST_HOLD_SESSION_EVENTS";

async fn hold_session_event(event: &Event) {
    static FILE: std::sync::OnceLock<Option<std::path::PathBuf>> = std::sync::OnceLock::new();
    let Some(file) = FILE
        .get_or_init(|| std::env::var_os(HOLD_SESSION_EVENTS_ENV).filter(|v| !v.is_empty()).map(Into::into))
        .as_deref()
    else {
        return;
    };
    if !file.exists() {
        return;
    }
    tracing::error!(
        ?event,
        "{HOLD_SESSION_EVENTS_ENV}: holding a leadership event until {} is removed (test-only)",
        file.display()
    );
    let give_up = Instant::now() + Duration::from_secs(300);
    while file.exists() && Instant::now() < give_up {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tracing::error!(?event, "{HOLD_SESSION_EVENTS_ENV}: releasing the held leadership event (test-only)");
}

async fn arm_latch_watch(client: &Client, latch: &str) -> Option<OneshotWatcher> {
    match client.check_and_watch_stat(latch).await {
        Ok((Some(_), watcher)) => Some(watcher),
        Ok((None, _)) => None,
        Err(err) => {
            tracing::warn!(%err, latch, "cannot watch latch");
            None
        }
    }
}

async fn wait_terminal(states: &mut zookeeper_client::StateWatcher) {
    loop {
        match states.changed().await {
            SessionState::Expired | SessionState::Closed | SessionState::AuthFailed => return,
            _ => continue,
        }
    }
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}
