//! A deterministic model of ZooKeeper for simulation (issue 11, first part): sessions with
//! timeouts and expiry on a simulated clock, persistent, ephemeral and sequential nodes,
//! versions, atomic multi-ops, one-shot data and child watches, and connection loss with
//! *unknown outcomes* (a write applied whose reply is lost). No threads, no clock, no I/O:
//! every answer depends only on the calls made, so a seeded simulation replays exactly.
//!
//! `ha/tests/zk_model_conformance.rs` runs one script against this model and against a real
//! 3-node ensemble; every answer must agree. Not modelled: ACLs and authentication, quotas,
//! containers and TTL nodes, the ensemble's own failures (a leader election inside ZooKeeper),
//! and a client's reconnection to another server (a [`ZkModel::reconnect`] only drops the
//! session's pending watch events, as a real reconnect can lose them). Nothing in Keel's
//! processes uses this model yet: a simulation that runs them against it is not built.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use zookeeper_client::{Error, EventType, Stat};

/// A session id (ZooKeeper's are 64-bit).
pub type SessionId = i64;

/// How a node is created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mode {
    /// Deleted when its session ends.
    pub ephemeral: bool,
    /// The name gets a 10-digit suffix: the number of children created under the parent so far.
    pub sequential: bool,
}

impl Mode {
    pub const PERSISTENT: Mode = Mode { ephemeral: false, sequential: false };
    pub const EPHEMERAL: Mode = Mode { ephemeral: true, sequential: false };
    pub const PERSISTENT_SEQUENTIAL: Mode = Mode { ephemeral: false, sequential: true };
    pub const EPHEMERAL_SEQUENTIAL: Mode = Mode { ephemeral: true, sequential: true };
}

/// One operation of a multi-op.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Create { path: String, data: Vec<u8>, mode: Mode },
    SetData { path: String, data: Vec<u8>, version: Option<i32> },
    Delete { path: String, version: Option<i32> },
    Check { path: String, version: Option<i32> },
}

/// A watch event delivered to a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchEvent {
    pub event_type: EventType,
    pub path: String,
}

/// A fault for the next write request of a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The request never reaches the server: not applied, the client sees `ConnectionLoss`.
    DropRequest,
    /// The server applies the request, the reply is lost: the client sees `ConnectionLoss`
    /// although the write happened (an unknown outcome).
    LoseReply,
}

#[derive(Debug, Clone)]
struct Node {
    data: Vec<u8>,
    czxid: i64,
    mzxid: i64,
    pzxid: i64,
    ctime: i64,
    mtime: i64,
    version: i32,
    /// Child changes: creations and deletions.
    cversion: i32,
    /// Children created (not deleted): the suffix of the next sequential child. ZooKeeper
    /// takes it from its request-preparation stage, which counts creations only; the
    /// conformance suite found the difference from `cversion` against a real 3.8 ensemble.
    created: i32,
    ephemeral_owner: SessionId,
}

#[derive(Debug, Clone)]
struct Session {
    timeout_ms: u64,
    last_heard_ms: u64,
    events: VecDeque<WatchEvent>,
    faults: VecDeque<Fault>,
}

/// The model: one ZooKeeper ensemble as its clients see it.
#[derive(Debug, Clone)]
pub struct ZkModel {
    nodes: BTreeMap<String, Node>,
    sessions: BTreeMap<SessionId, Session>,
    /// One-shot watches: path → sessions. Data watches fire on a change, creation or deletion
    /// of the node; child watches on a change of its children or its deletion.
    data_watches: BTreeMap<String, BTreeSet<SessionId>>,
    child_watches: BTreeMap<String, BTreeSet<SessionId>>,
    zxid: i64,
    now_ms: u64,
    next_session: SessionId,
}

impl Default for ZkModel {
    fn default() -> Self {
        Self::new()
    }
}

/// The bounds a real server enforces that matter to the model: `jute.maxbuffer`'s default.
pub const MAX_DATA: usize = 1 << 20;

fn parent(path: &str) -> Option<&str> {
    match path.rfind('/') {
        Some(0) if path.len() > 1 => Some("/"),
        Some(i) if i > 0 => Some(&path[..i]),
        _ => None,
    }
}

fn valid(path: &str) -> bool {
    path.starts_with('/')
        && (path == "/" || !path.ends_with('/'))
        && !path.contains("//")
        && !path.split('/').any(|c| c == "." || c == "..")
        && !path.contains('\0')
}

impl ZkModel {
    /// An ensemble holding only `/` (and `/zookeeper`, as a real one does).
    pub fn new() -> Self {
        let mut m = ZkModel {
            nodes: BTreeMap::new(),
            sessions: BTreeMap::new(),
            data_watches: BTreeMap::new(),
            child_watches: BTreeMap::new(),
            zxid: 0,
            now_ms: 0,
            next_session: 0x100,
        };
        m.nodes.insert("/".into(), m.new_node(vec![], 0));
        m.nodes.insert("/zookeeper".into(), m.new_node(vec![], 0));
        m
    }

    fn new_node(&self, data: Vec<u8>, owner: SessionId) -> Node {
        Node {
            data,
            czxid: self.zxid,
            mzxid: self.zxid,
            pzxid: self.zxid,
            ctime: self.now_ms as i64,
            mtime: self.now_ms as i64,
            version: 0,
            cversion: 0,
            created: 0,
            ephemeral_owner: owner,
        }
    }

    /// The simulated time, in ms.
    pub fn now_ms(&self) -> u64 {
        self.now_ms
    }

    /// Opens a session with `timeout_ms` (heard from now).
    pub fn open_session(&mut self, timeout_ms: u64) -> SessionId {
        self.next_session += 1;
        let id = self.next_session;
        self.sessions.insert(
            id,
            Session { timeout_ms, last_heard_ms: self.now_ms, events: VecDeque::new(), faults: VecDeque::new() },
        );
        id
    }

    /// Whether the session is alive.
    pub fn alive(&self, s: SessionId) -> bool {
        self.sessions.contains_key(&s)
    }

    /// The client of `s` was heard (a ping or any request).
    pub fn touch(&mut self, s: SessionId) -> Result<(), Error> {
        let now = self.now_ms;
        let session = self.sessions.get_mut(&s).ok_or(Error::SessionExpired)?;
        session.last_heard_ms = now;
        Ok(())
    }

    /// Moves the clock on by `ms`; sessions not heard for longer than their timeout expire
    /// (their ephemeral nodes go, watches fire). Returns the expired sessions, in id order.
    pub fn advance(&mut self, ms: u64) -> Vec<SessionId> {
        self.now_ms += ms;
        let now = self.now_ms;
        let expired: Vec<SessionId> = self
            .sessions
            .iter()
            .filter(|(_, s)| now.saturating_sub(s.last_heard_ms) > s.timeout_ms)
            .map(|(id, _)| *id)
            .collect();
        for id in &expired {
            self.end_session(*id);
        }
        expired
    }

    /// Closes a session (as a client's close does): its ephemeral nodes go at once.
    pub fn close_session(&mut self, s: SessionId) -> Result<(), Error> {
        if !self.sessions.contains_key(&s) {
            return Err(Error::SessionExpired);
        }
        self.end_session(s);
        Ok(())
    }

    fn end_session(&mut self, s: SessionId) {
        let owned: Vec<String> =
            self.nodes.iter().filter(|(_, n)| n.ephemeral_owner == s).map(|(p, _)| p.clone()).collect();
        self.sessions.remove(&s);
        for w in self.data_watches.values_mut().chain(self.child_watches.values_mut()) {
            w.remove(&s);
        }
        for path in owned {
            // Ephemerals have no children: each deletes alone.
            self.zxid += 1;
            self.remove(&path);
        }
    }

    /// The session's client reconnects: pending watch events not yet delivered are lost
    /// (the watches themselves stay registered).
    pub fn reconnect(&mut self, s: SessionId) -> Result<(), Error> {
        let session = self.sessions.get_mut(&s).ok_or(Error::SessionExpired)?;
        session.events.clear();
        Ok(())
    }

    /// Arms a fault for the next write request (create, set, delete, multi) of `s`.
    pub fn inject(&mut self, s: SessionId, fault: Fault) -> Result<(), Error> {
        self.sessions.get_mut(&s).ok_or(Error::SessionExpired)?.faults.push_back(fault);
        Ok(())
    }

    /// Takes the watch events delivered to `s`, oldest first.
    pub fn take_events(&mut self, s: SessionId) -> Vec<WatchEvent> {
        self.sessions.get_mut(&s).map(|x| x.events.drain(..).collect()).unwrap_or_default()
    }

    fn stat(&self, path: &str, n: &Node) -> Stat {
        Stat {
            czxid: n.czxid,
            mzxid: n.mzxid,
            pzxid: n.pzxid,
            ctime: n.ctime,
            mtime: n.mtime,
            version: n.version,
            cversion: n.cversion,
            aversion: 0,
            ephemeral_owner: n.ephemeral_owner,
            data_length: n.data.len() as i32,
            num_children: self.children_of(path).len() as i32,
        }
    }

    fn children_of(&self, path: &str) -> Vec<String> {
        let prefix = if path == "/" { "/".to_string() } else { format!("{path}/") };
        self.nodes
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .map(|(k, _)| &k[prefix.len()..])
            .filter(|rest| !rest.is_empty() && !rest.contains('/'))
            .map(str::to_string)
            .collect()
    }

    fn fire(&mut self, watches: WatchKind, path: &str, event_type: EventType) {
        let table = match watches {
            WatchKind::Data => &mut self.data_watches,
            WatchKind::Child => &mut self.child_watches,
        };
        let Some(sessions) = table.remove(path) else { return };
        for s in sessions {
            if let Some(session) = self.sessions.get_mut(&s) {
                session.events.push_back(WatchEvent { event_type, path: path.to_string() });
            }
        }
    }

    fn remove(&mut self, path: &str) {
        self.nodes.remove(path);
        if let Some(p) = parent(path) {
            let zxid = self.zxid;
            if let Some(pn) = self.nodes.get_mut(p) {
                pn.cversion += 1;
                pn.pzxid = zxid;
            }
            let p = p.to_string();
            self.fire(WatchKind::Child, &p, EventType::NodeChildrenChanged);
        }
        self.fire(WatchKind::Data, path, EventType::NodeDeleted);
        self.fire(WatchKind::Child, path, EventType::NodeDeleted);
    }

    /// The write request's fault, if one is armed; `Err(SessionExpired)` for a dead session.
    fn fault(&mut self, s: SessionId) -> Result<Option<Fault>, Error> {
        let now = self.now_ms;
        let session = self.sessions.get_mut(&s).ok_or(Error::SessionExpired)?;
        session.last_heard_ms = now;
        Ok(session.faults.pop_front())
    }

    /// Runs a write under the session's armed fault; `lost` is its `ConnectionLoss` answer.
    fn write<T, E>(
        &mut self,
        s: SessionId,
        lost: impl Fn(Error) -> E,
        f: impl FnOnce(&mut Self) -> Result<T, E>,
    ) -> Result<T, E> {
        match self.fault(s).map_err(&lost)? {
            Some(Fault::DropRequest) => Err(lost(Error::ConnectionLoss)),
            Some(Fault::LoseReply) => {
                let _ = f(self);
                Err(lost(Error::ConnectionLoss))
            }
            None => f(self),
        }
    }

    /// Validates and applies one op to `self` (part of a multi or alone); returns the created
    /// path for a create.
    fn apply(&mut self, s: SessionId, op: &Op) -> Result<Option<String>, Error> {
        match op {
            Op::Create { path, data, mode } => {
                if !valid(path) || path == "/" {
                    return Err(Error::BadArguments(&"invalid path"));
                }
                if data.len() > MAX_DATA {
                    return Err(Error::BadArguments(&"data too large"));
                }
                let p = parent(path).ok_or(Error::BadArguments(&"invalid path"))?.to_string();
                let Some(pn) = self.nodes.get(&p) else { return Err(Error::NoNode) };
                if pn.ephemeral_owner != 0 {
                    return Err(Error::NoChildrenForEphemerals);
                }
                let created = if mode.sequential { format!("{path}{:010}", pn.created) } else { path.to_string() };
                if self.nodes.contains_key(&created) {
                    return Err(Error::NodeExists);
                }
                self.zxid += 1;
                let owner = if mode.ephemeral { s } else { 0 };
                let node = self.new_node(data.clone(), owner);
                self.nodes.insert(created.clone(), node);
                let zxid = self.zxid;
                let pn = self.nodes.get_mut(&p).expect("parent");
                pn.cversion += 1;
                pn.created += 1;
                pn.pzxid = zxid;
                self.fire(WatchKind::Data, &created, EventType::NodeCreated);
                self.fire(WatchKind::Child, &p, EventType::NodeChildrenChanged);
                Ok(Some(created))
            }
            Op::SetData { path, data, version } => {
                if data.len() > MAX_DATA {
                    return Err(Error::BadArguments(&"data too large"));
                }
                let n = self.nodes.get(path).ok_or(Error::NoNode)?;
                if version.is_some_and(|v| v != n.version) {
                    return Err(Error::BadVersion);
                }
                self.zxid += 1;
                let (zxid, now) = (self.zxid, self.now_ms as i64);
                let n = self.nodes.get_mut(path).expect("node");
                n.data = data.clone();
                n.version += 1;
                n.mzxid = zxid;
                n.mtime = now;
                self.fire(WatchKind::Data, path, EventType::NodeDataChanged);
                Ok(None)
            }
            Op::Delete { path, version } => {
                let n = self.nodes.get(path).ok_or(Error::NoNode)?;
                if version.is_some_and(|v| v != n.version) {
                    return Err(Error::BadVersion);
                }
                if !self.children_of(path).is_empty() {
                    return Err(Error::NotEmpty);
                }
                self.zxid += 1;
                self.remove(path);
                Ok(None)
            }
            Op::Check { path, version } => {
                let n = self.nodes.get(path).ok_or(Error::NoNode)?;
                if version.is_some_and(|v| v != n.version) {
                    return Err(Error::BadVersion);
                }
                Ok(None)
            }
        }
    }

    /// Creates a node; returns its stat and its path (with the suffix of a sequential node).
    pub fn create(&mut self, s: SessionId, path: &str, data: &[u8], mode: Mode) -> Result<(Stat, String), Error> {
        let op = Op::Create { path: path.to_string(), data: data.to_vec(), mode };
        let created = self.write(s, |e| e, |m| m.apply(s, &op))?.expect("a create names its node");
        let n = &self.nodes[&created];
        Ok((self.stat(&created, n), created))
    }

    pub fn set_data(&mut self, s: SessionId, path: &str, data: &[u8], version: Option<i32>) -> Result<Stat, Error> {
        let op = Op::SetData { path: path.to_string(), data: data.to_vec(), version };
        self.write(s, |e| e, |m| m.apply(s, &op))?;
        Ok(self.stat(path, &self.nodes[path]))
    }

    pub fn delete(&mut self, s: SessionId, path: &str, version: Option<i32>) -> Result<(), Error> {
        let op = Op::Delete { path: path.to_string(), version };
        self.write(s, |e| e, |m| m.apply(s, &op)).map(|_| ())
    }

    /// Applies every op or none: `Err((index, error))` names the first that failed.
    pub fn multi(&mut self, s: SessionId, ops: &[Op]) -> Result<Vec<Option<String>>, (usize, Error)> {
        self.write(
            s,
            |e| (0, e),
            |m| {
                // Validate on a copy (its watch events are discarded); apply to `m` only when
                // every op succeeded, so the events fire once, in order.
                let mut trial = m.clone();
                for (i, op) in ops.iter().enumerate() {
                    trial.apply(s, op).map_err(|e| (i, e))?;
                }
                Ok(ops.iter().map(|op| m.apply(s, op).expect("validated on the trial copy")).collect())
            },
        )
    }

    fn read(&mut self, s: SessionId) -> Result<(), Error> {
        self.touch(s)
    }

    /// A node's data and stat; with `watch`, a one-shot data watch (fires on a set or delete).
    pub fn get_data(&mut self, s: SessionId, path: &str, watch: bool) -> Result<(Vec<u8>, Stat), Error> {
        self.read(s)?;
        let n = self.nodes.get(path).ok_or(Error::NoNode)?;
        let out = (n.data.clone(), self.stat(path, n));
        if watch {
            self.data_watches.entry(path.to_string()).or_default().insert(s);
        }
        Ok(out)
    }

    /// A node's stat if it exists; with `watch`, a one-shot data watch (also on an absent node:
    /// it fires on the creation).
    pub fn exists(&mut self, s: SessionId, path: &str, watch: bool) -> Result<Option<Stat>, Error> {
        self.read(s)?;
        let out = self.nodes.get(path).map(|n| self.stat(path, n));
        if watch {
            self.data_watches.entry(path.to_string()).or_default().insert(s);
        }
        Ok(out)
    }

    /// A node's children (unsorted in ZooKeeper; sorted here); with `watch`, a one-shot child
    /// watch.
    pub fn children(&mut self, s: SessionId, path: &str, watch: bool) -> Result<Vec<String>, Error> {
        self.read(s)?;
        if !self.nodes.contains_key(path) {
            return Err(Error::NoNode);
        }
        if watch {
            self.child_watches.entry(path.to_string()).or_default().insert(s);
        }
        Ok(self.children_of(path))
    }
}

#[derive(Clone, Copy)]
enum WatchKind {
    Data,
    Child,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Unknown outcomes: a dropped request changed nothing, a lost reply changed everything,
    /// and both answer `ConnectionLoss`.
    #[test]
    fn a_lost_reply_applies_the_write_a_dropped_request_does_not() {
        let mut m = ZkModel::new();
        let s = m.open_session(1000);
        m.inject(s, Fault::DropRequest).unwrap();
        assert_eq!(m.create(s, "/a", b"x", Mode::PERSISTENT).unwrap_err(), Error::ConnectionLoss);
        assert_eq!(m.exists(s, "/a", false).unwrap(), None);
        m.inject(s, Fault::LoseReply).unwrap();
        assert_eq!(m.create(s, "/a", b"x", Mode::PERSISTENT).unwrap_err(), Error::ConnectionLoss);
        assert!(m.exists(s, "/a", false).unwrap().is_some(), "applied although the client saw an error");
        // The retry of a create whose reply was lost: NodeExists, as in ZooKeeper.
        assert_eq!(m.create(s, "/a", b"x", Mode::PERSISTENT).unwrap_err(), Error::NodeExists);
    }

    /// Sessions expire on the simulated clock unless heard from; their ephemerals go and the
    /// watchers of those nodes hear it once.
    #[test]
    fn an_expired_session_loses_its_ephemerals_and_watchers_hear_it_once() {
        let mut m = ZkModel::new();
        let (a, b) = (m.open_session(2000), m.open_session(2000));
        m.create(a, "/latch", b"", Mode::PERSISTENT).unwrap();
        let (_, node) = m.create(a, "/latch/n-", b"", Mode::EPHEMERAL_SEQUENTIAL).unwrap();
        assert_eq!(node, "/latch/n-0000000000");
        m.get_data(b, &node, true).unwrap();
        m.children(b, "/latch", true).unwrap();
        for _ in 0..2 {
            assert!(m.advance(1000).is_empty(), "silent for at most the timeout: alive");
            m.touch(b).unwrap();
        }
        assert_eq!(m.advance(1000), vec![a], "a was last heard 3 s ago with a 2 s timeout; b is heard");
        assert!(!m.alive(a));
        assert_eq!(m.exists(b, &node, false).unwrap(), None);
        let events = m.take_events(b);
        assert_eq!(
            events,
            vec![
                WatchEvent { event_type: EventType::NodeChildrenChanged, path: "/latch".into() },
                WatchEvent { event_type: EventType::NodeDeleted, path: node.clone() },
            ]
        );
        assert!(m.take_events(b).is_empty(), "one-shot");
        assert_eq!(m.create(a, "/x", b"", Mode::PERSISTENT).unwrap_err(), Error::SessionExpired);
    }

    /// A reconnect loses the events not yet taken.
    #[test]
    fn events_pending_across_a_reconnect_are_lost() {
        let mut m = ZkModel::new();
        let s = m.open_session(1000);
        m.exists(s, "/a", true).unwrap();
        m.create(s, "/a", b"", Mode::PERSISTENT).unwrap();
        m.reconnect(s).unwrap();
        assert!(m.take_events(s).is_empty());
    }

    /// A multi-op with a lost reply applied everything; a failing one nothing, naming the index.
    #[test]
    fn multi_is_all_or_nothing_even_with_an_unknown_outcome() {
        let mut m = ZkModel::new();
        let s = m.open_session(1000);
        let ops = [
            Op::Create { path: "/m".into(), data: vec![], mode: Mode::PERSISTENT },
            Op::Create { path: "/m/c".into(), data: vec![], mode: Mode::PERSISTENT },
        ];
        let bad = [ops[0].clone(), Op::Check { path: "/nope".into(), version: None }];
        assert_eq!(m.multi(s, &bad).unwrap_err(), (1, Error::NoNode));
        assert_eq!(m.exists(s, "/m", false).unwrap(), None);
        m.inject(s, Fault::LoseReply).unwrap();
        assert_eq!(m.multi(s, &ops).unwrap_err(), (0, Error::ConnectionLoss));
        assert_eq!(m.children(s, "/m", false).unwrap(), vec!["c".to_string()]);
    }
}
