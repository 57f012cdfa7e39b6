//! Fast failover when the leader's *process* is gone (issue 10, part 1).
//!
//! When a leader process dies (kill -9, OOM kill, panic), its host's kernel closes its
//! sockets at once, but ZooKeeper keeps its session — and its latch node — until the session
//! timeout. ZooKeeper lets any client that knows a session's id and password re-attach to that
//! session and close it, which deletes its ephemeral nodes at once: exactly what expiry would
//! do a session timeout later. This module does that, and only when the process is gone:
//!
//! * **The leader** publishes its session id and password in the ephemeral znode
//!   [`SESSION_ZNODE`], written through its [`Fence`] (so only the acting leader can write it)
//!   with the cluster's ACL (`high-availability.zookeeper.client.acl: creator` makes it
//!   readable only with the cluster's credentials; with `open` ACLs any ZooKeeper client of
//!   the ensemble can read it — and could as well delete the latch node itself).
//! * **Each standby** keeps a TCP connection to the leader's RPC port. When that connection
//!   drops, it connects again: if the connection is **refused** (nothing listens: the process
//!   is gone), and the latch node named in `leader/info` is still owned by the published
//!   session, the standby re-attaches to that session and closes it. The latch disappears and
//!   the election proceeds as on expiry.
//! * **Nothing else triggers it.** A paused leader (SIGSTOP) keeps its listening socket, so
//!   the kernel still accepts connections; a partitioned leader (packets dropped) makes a
//!   connect time out, not fail with a refusal; a connection that merely broke (the standby
//!   restarted, a proxy dropped it) reconnects. Each of these still takes the session timeout.
//!
//! Safety is unchanged: closing the session is what expiry does, and every write and command
//! of the old leader stays fenced by its latch node and epoch.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use zookeeper_client::{Client, SessionId, SessionInfo};

use crate::{Fence, HaError, LeaderEpoch, LeaderView, Leadership, ZkSettings};

/// The leader's session, for standbys to close it when the leader's process is gone.
pub const SESSION_ZNODE: &str = "/leader/session";

/// How long a probe connect may take before it counts as "no answer" (never as refused).
const CONNECT_TIMEOUT: Duration = Duration::from_millis(1000);
/// Pause between probes when the leader does not answer or no leader is known.
const RETRY: Duration = Duration::from_millis(200);

/// What [`SESSION_ZNODE`] holds (JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishedSession {
    pub leader_id: String,
    pub epoch: LeaderEpoch,
    /// Session id in hex, as `leader/info` and ZooKeeper's tools show it.
    pub session_id: String,
    /// Session password in hex.
    pub password: String,
}

impl PublishedSession {
    /// Decodes the znode, naming what is wrong; at most 4 KiB are looked at.
    pub fn decode(data: &[u8]) -> Result<Self, HaError> {
        if data.len() > 4096 {
            return Err(HaError::CorruptZnode {
                path: SESSION_ZNODE.into(),
                reason: format!("{} bytes; expected a small JSON record", data.len()),
            });
        }
        serde_json::from_slice(data).map_err(|e| HaError::CorruptZnode {
            path: SESSION_ZNODE.into(),
            reason: format!("not a session record ({e}); expected {{leader_id, epoch, session_id, password}}"),
        })
    }

    fn session(&self) -> Option<SessionInfo> {
        let id = i64::from_str_radix(&self.session_id, 16).ok().or_else(|| {
            // Ids with the top bit set print as 16 hex digits; parse them as u64.
            u64::from_str_radix(&self.session_id, 16).ok().map(|v| v as i64)
        })?;
        let password = hex_decode(&self.password)?;
        Some(SessionInfo::from_parts(SessionId(id), password))
    }
}

fn hex_encode(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn hex_decode(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || s.len() > 256 {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()).collect()
}

/// Publishes this leader's session in [`SESSION_ZNODE`] (guarded by its latch).
pub async fn publish(fence: &Fence, leader_id: &str) -> Result<(), HaError> {
    let Some(client) = fence.zk_client() else {
        return Ok(()); // high-availability.type: none: no session to publish
    };
    let session = client.session();
    let record = PublishedSession {
        leader_id: leader_id.to_string(),
        epoch: fence.epoch(),
        session_id: format!("{:x}", session.id().0),
        password: hex_encode(session.password()),
    };
    let data = serde_json::to_vec(&record).expect("a session record serializes");
    fence.replace_ephemeral(SESSION_ZNODE, &data).await
}

/// What one probe of the leader's RPC port found.
#[derive(Debug)]
enum Probe {
    /// Connected: the process (or at least its kernel) is there.
    Connected(TcpStream),
    /// Connection refused: nothing listens on that port.
    Refused,
    /// No answer in time, unreachable, or another error: not evidence of a dead process.
    NoAnswer(String),
}

async fn probe(address: &str) -> Probe {
    match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(address)).await {
        Ok(Ok(stream)) => Probe::Connected(stream),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => Probe::Refused,
        Ok(Err(e)) => Probe::NoAnswer(e.to_string()),
        Err(_) => Probe::NoAnswer(format!("no answer within {CONNECT_TIMEOUT:?}")),
    }
}

/// Waits until `stream` is closed by the other side (or fails).
async fn closed(mut stream: TcpStream) {
    let mut buf = [0u8; 1024];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => continue,
        }
    }
}

/// The fast path of one dispatcher: publishes the session while it leads, watches the leader
/// while it stands by. Runs until `cancel` fires.
pub async fn run(
    settings: ZkSettings,
    my_id: String,
    mut leadership: watch::Receiver<Leadership>,
    mut leader: watch::Receiver<Option<LeaderView>>,
    cancel: CancellationToken,
) {
    let mut published: Option<LeaderEpoch> = None;
    let mut zk: Option<Client> = None;
    let mut watching: Option<(String, LeaderEpoch)> = None;
    loop {
        if cancel.is_cancelled() {
            return;
        }
        let me = leadership.borrow_and_update().clone();
        match me {
            Leadership::Leading(fence) => {
                if published != Some(fence.epoch()) {
                    match publish(&fence, &my_id).await {
                        Ok(()) => {
                            published = Some(fence.epoch());
                            tracing::debug!(epoch = %fence.epoch(), "leader session published for the fast failover path");
                        }
                        Err(err) => {
                            tracing::warn!(%err, "could not publish the leader session; standbys fall back to the session timeout")
                        }
                    }
                }
                tokio::select! {
                    _ = leadership.changed() => {}
                    _ = cancel.cancelled() => return,
                }
            }
            Leadership::Suspended(_) => {
                tokio::select! {
                    _ = leadership.changed() => {}
                    _ = cancel.cancelled() => return,
                }
            }
            Leadership::Standby => {
                published = None;
                let view = leader.borrow_and_update().clone();
                let Some(view) = view.filter(|v| v.leader_id != my_id && !v.address.is_empty()) else {
                    tokio::select! {
                        _ = leader.changed() => {}
                        _ = leadership.changed() => {}
                        _ = cancel.cancelled() => return,
                    }
                    continue;
                };
                match probe(&view.address).await {
                    Probe::Connected(stream) => {
                        if watching.as_ref() != Some(&(view.leader_id.clone(), view.epoch)) {
                            tracing::info!(
                                leader = %view.leader_id,
                                epoch = %view.epoch,
                                address = %view.address,
                                "fast failover: watching the leader (connected to its RPC port)"
                            );
                            watching = Some((view.leader_id.clone(), view.epoch));
                        }
                        // Hold the connection until it drops, the leader changes, or we lead.
                        tokio::select! {
                            _ = closed(stream) => {
                                tracing::debug!(leader = %view.leader_id, address = %view.address, "connection to the leader dropped; probing again");
                            }
                            _ = leader.changed() => {}
                            _ = leadership.changed() => {}
                            _ = cancel.cancelled() => return,
                        }
                    }
                    Probe::Refused => {
                        let started = Instant::now();
                        if zk.is_none() {
                            zk = settings
                                .connect()
                                .await
                                .map_err(|e| tracing::warn!(%e, "fast failover: no ZooKeeper session"))
                                .ok();
                        }
                        if let Some(client) = &zk {
                            match close_dead_leader(&settings, client, &view).await {
                                Ok(true) => {
                                    tracing::info!(
                                        event = "fast_failover",
                                        leader = %view.leader_id,
                                        epoch = %view.epoch,
                                        session = %view.session_id,
                                        elapsed_ms = started.elapsed().as_millis() as u64,
                                        "the leader's RPC port refuses connections (its process is gone): closed its ZooKeeper session"
                                    );
                                }
                                Ok(false) => {}
                                Err(err) => {
                                    tracing::warn!(%err, leader = %view.leader_id, "fast failover: could not close the dead leader's session; waiting for its session timeout")
                                }
                            }
                        }
                        // Whatever happened, wait for the view to change (or retry after a pause).
                        tokio::select! {
                            _ = leader.changed() => {}
                            _ = leadership.changed() => {}
                            _ = tokio::time::sleep(RETRY * 5) => {}
                            _ = cancel.cancelled() => return,
                        }
                    }
                    Probe::NoAnswer(why) => {
                        tracing::trace!(leader = %view.leader_id, %why, "leader RPC port does not answer; not a refusal, no fast path");
                        tokio::select! {
                            _ = tokio::time::sleep(RETRY) => {}
                            _ = leader.changed() => {}
                            _ = leadership.changed() => {}
                            _ = cancel.cancelled() => return,
                        }
                    }
                }
            }
        }
    }
}

/// Closes the session of the leader `view` names if, and only if, the published session is
/// that leader's at that epoch and still owns the latch node. `Ok(false)`: nothing to do (the
/// leader changed, or its session is already gone).
async fn close_dead_leader(settings: &ZkSettings, client: &Client, view: &LeaderView) -> Result<bool, HaError> {
    let data = match client.get_data(SESSION_ZNODE).await {
        Ok((data, _)) => data,
        Err(zookeeper_client::Error::NoNode) => return Ok(false),
        Err(e) => return Err(HaError::zk("get_data", SESSION_ZNODE, e)),
    };
    let published = PublishedSession::decode(&data)?;
    if published.epoch != view.epoch || published.leader_id != view.leader_id || published.session_id != view.session_id
    {
        // Someone else leads now (or is about to); not the process we found gone.
        return Ok(false);
    }
    let latch = format!("{}/{}", crate::paths::LATCH_DIR, view.latch_node.rsplit('/').next().unwrap_or_default());
    let Some(stat) = client.check_stat(&latch).await.map_err(|e| HaError::zk("exists", &latch, e))? else {
        return Ok(false);
    };
    let Some(session) = published.session() else {
        return Err(HaError::CorruptZnode {
            path: SESSION_ZNODE.into(),
            reason: "session id or password is not hex".into(),
        });
    };
    if stat.ephemeral_owner != session.id().0 || stat.czxid != view.epoch.0 {
        return Ok(false);
    }
    match settings.connect_to_session(session).await {
        Ok(dead) => {
            crate::session::close(dead, settings.session_timeout.min(Duration::from_secs(10))).await;
            Ok(true)
        }
        // Already expired (or closed by another standby): the latch is going away anyway.
        Err(HaError::Connect { source: zookeeper_client::Error::SessionExpired, .. }) => Ok(false),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_record_round_trips_and_garbage_is_named() {
        let r = PublishedSession {
            leader_id: "d1".into(),
            epoch: LeaderEpoch(42),
            session_id: "100000a2b3c0001".into(),
            password: hex_encode(&[0, 1, 0xab, 0xff]),
        };
        let back = PublishedSession::decode(&serde_json::to_vec(&r).unwrap()).unwrap();
        assert_eq!(back, r);
        let s = back.session().unwrap();
        assert_eq!(s.id().0, 0x100000a2b3c0001);
        assert_eq!(s.password(), &[0, 1, 0xab, 0xff]);
        let err = PublishedSession::decode(b"{nope").unwrap_err().to_string();
        assert!(err.contains("/leader/session"), "{err}");
        assert!(PublishedSession::decode(&vec![b' '; 5000]).is_err());
        let bad = PublishedSession { password: "zz".into(), ..r };
        assert!(bad.session().is_none());
    }

    #[test]
    fn session_ids_with_the_top_bit_set_parse() {
        let r = PublishedSession {
            leader_id: "d".into(),
            epoch: LeaderEpoch(1),
            session_id: format!("{:x}", -5i64),
            password: "00".into(),
        };
        assert_eq!(r.session().unwrap().id().0, -5);
    }
}
