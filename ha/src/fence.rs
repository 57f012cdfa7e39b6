//! Fencing: the leader's guarded ZooKeeper writes, and the worker-side epoch gate.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use tokio::sync::mpsc;
use zookeeper_client::{CreateMode, CreateOptions, OwnedLockClient, Stat};

use crate::local::{LocalMeta, LocalOp};
use crate::{HaError, LeaderEpoch};

/// Test-only: `KEEL_TEST_DISABLE_LATCH_GUARD=1` makes every [`Fence`] write a plain ZooKeeper
/// write, without the check on the leader's latch node. It exists so tests can show that they
/// catch a missing guard (a superseded leader's writes then land). Never set it in production:
/// every fence built with it logs an error saying the guard is off.
pub const DISABLE_LATCH_GUARD_ENV: &str = "KEEL_TEST_DISABLE_LATCH_GUARD";

/// Test-only: `KEEL_TEST_FENCE_BARRIER=<dir>` lets a test hold chosen guarded writes just
/// before they are sent, to make a superseded leader's write attempt certain. While the file
/// `<dir>/hold` exists, a write touching a path that contains one of its lines waits: the
/// fence writes `<dir>/held-<n>` (`<op> <path> <epoch>`) and logs at error level, and once
/// `hold` is removed it sends the write and records the outcome in `<dir>/done-<n>`
/// (`ok` or `err <error>`). Without the variable nothing changes.
pub const FENCE_BARRIER_ENV: &str = "KEEL_TEST_FENCE_BARRIER";

fn latch_guard_disabled() -> bool {
    static OFF: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *OFF.get_or_init(|| std::env::var(DISABLE_LATCH_GUARD_ENV).is_ok_and(|v| v == "1"))
}

fn barrier_dir() -> Option<&'static std::path::Path> {
    static DIR: std::sync::OnceLock<Option<std::path::PathBuf>> = std::sync::OnceLock::new();
    DIR.get_or_init(|| std::env::var_os(FENCE_BARRIER_ENV).filter(|v| !v.is_empty()).map(std::path::PathBuf::from))
        .as_deref()
}

/// A write held by the test barrier (see [`FENCE_BARRIER_ENV`]): records its outcome.
struct Held {
    done: std::path::PathBuf,
    what: String,
}

impl Held {
    fn finish<T>(self, result: &Result<T, HaError>) {
        let outcome = match result {
            Ok(_) => "ok".to_string(),
            Err(e) => format!("err {e}"),
        };
        tracing::error!(held = %self.what, %outcome, "{FENCE_BARRIER_ENV}: a held guarded write was sent (test-only barrier)");
        let _ = std::fs::write(&self.done, outcome);
    }
}

/// Waits while the test barrier holds a write touching one of `paths`; `None` when not held.
async fn barrier(op: &str, paths: &[&str], epoch: LeaderEpoch) -> Option<Held> {
    let dir = barrier_dir()?;
    let hold = dir.join("hold");
    let patterns = std::fs::read_to_string(&hold).ok()?;
    let path =
        paths.iter().find(|p| patterns.lines().map(str::trim).any(|l| !l.is_empty() && p.contains(l)))?.to_string();
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = N.fetch_add(1, Ordering::SeqCst);
    let what = format!("{op} {path} {}", epoch.0);
    tracing::error!(held = %what, "{FENCE_BARRIER_ENV}: holding a guarded write until {} is removed (test-only barrier)", hold.display());
    let _ = std::fs::write(dir.join(format!("held-{n}")), &what);
    while hold.exists() {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    Some(Held { done: dir.join(format!("done-{n}")), what })
}

/// The acting leader's right to write. Every write is a ZooKeeper multi-op that first checks
/// that this leader's latch node still exists, so once the latch is gone (session expired,
/// node deleted, another leader elected) nothing written through a stale `Fence` can land.
///
/// Cloning is cheap; all clones share one latch. Dropping the last clone does not resign:
/// resignation is the election task's job.
#[derive(Clone)]
#[must_use = "a Fence is the leader's only way to write; dropping it silently loses leadership's write path"]
pub struct Fence {
    inner: Arc<Inner>,
}

struct Inner {
    backend: Backend,
    /// Reads of the same tree the writes go to.
    reader: MetaClient,
    epoch: LeaderEpoch,
    fenced_tx: mpsc::UnboundedSender<LeaderEpoch>,
}

enum Backend {
    /// Writes are ZooKeeper multi-ops checked against the latch node.
    Zk {
        lock: OwnedLockClient,
        /// `high-availability.zookeeper.client.acl`, for every znode created through this fence.
        acl: crate::session::ZkAcl,
    },
    /// `high-availability.type: none`: the only dispatcher writes its local pointer tree, whose
    /// file lock keeps any other process out; there is no latch to check.
    Local(Arc<LocalMeta>),
}

/// Where the job stores read: the leader's ZooKeeper session, or the local pointer tree of a
/// dispatcher with `high-availability.type: none`. Both answer with ZooKeeper's results and
/// errors (`NoNode`, ...), so the stores read either the same way.
#[derive(Clone, Debug)]
pub enum MetaClient {
    Zk(zookeeper_client::Client),
    Local(Arc<LocalMeta>),
}

impl MetaClient {
    pub async fn get_data(&self, path: &str) -> Result<(Vec<u8>, Stat), zookeeper_client::Error> {
        match self {
            MetaClient::Zk(c) => c.get_data(path).await,
            MetaClient::Local(m) => m.get_data(path),
        }
    }

    pub async fn list_children(&self, path: &str) -> Result<Vec<String>, zookeeper_client::Error> {
        match self {
            MetaClient::Zk(c) => c.list_children(path).await,
            MetaClient::Local(m) => m.list_children(path),
        }
    }

    pub async fn check_stat(&self, path: &str) -> Result<Option<Stat>, zookeeper_client::Error> {
        match self {
            MetaClient::Zk(c) => c.check_stat(path).await,
            MetaClient::Local(m) => m.check_stat(path),
        }
    }

    /// Creates a structural (unguarded, stateless) node if it is missing: with the ACL of the
    /// cluster's namespace in ZooKeeper.
    pub async fn ensure_node(&self, path: &str) -> Result<(), HaError> {
        match self {
            MetaClient::Zk(client) => {
                if client.check_stat(path).await.map_err(|e| HaError::zk("exists", path, e))?.is_some() {
                    return Ok(());
                }
                let (acls, _) = client.get_acl("/").await.map_err(|e| HaError::zk("getAcl", "/", e))?;
                let options = CreateMode::Persistent.with_acls(zookeeper_client::Acls::new(&acls));
                match client.create(path, b"", &options).await {
                    Ok(_) | Err(zookeeper_client::Error::NodeExists) => Ok(()),
                    Err(e) => Err(HaError::zk("create", path, e)),
                }
            }
            MetaClient::Local(m) => match m.create(path, b"") {
                Ok(_) | Err(zookeeper_client::Error::NodeExists) => Ok(()),
                Err(e) => Err(HaError::zk("create", path, e)),
            },
        }
    }
}

impl std::fmt::Debug for Fence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fence").field("epoch", &self.inner.epoch).field("latch", &self.latch_path()).finish()
    }
}

impl Fence {
    pub(crate) fn new(
        lock: OwnedLockClient,
        epoch: LeaderEpoch,
        fenced_tx: mpsc::UnboundedSender<LeaderEpoch>,
        acl: crate::session::ZkAcl,
    ) -> Self {
        if latch_guard_disabled() {
            tracing::error!(
                %epoch,
                "{DISABLE_LATCH_GUARD_ENV}=1: this leader's ZooKeeper writes are NOT GUARDED by its latch \
                 (test-only switch; a superseded leader's writes will land)"
            );
        }
        let reader = MetaClient::Zk(lock.client().clone());
        Self { inner: Arc::new(Inner { backend: Backend::Zk { lock, acl }, reader, epoch, fenced_tx }) }
    }

    /// The fence of the only dispatcher of `high-availability.type: none`: writes go to its
    /// local pointer tree, which its file lock keeps to this process alone.
    pub fn local(meta: Arc<LocalMeta>, epoch: LeaderEpoch) -> Self {
        let (fenced_tx, _) = mpsc::unbounded_channel();
        let reader = MetaClient::Local(meta.clone());
        Self { inner: Arc::new(Inner { backend: Backend::Local(meta), reader, epoch, fenced_tx }) }
    }

    fn zk(&self) -> Option<(&OwnedLockClient, crate::session::ZkAcl)> {
        match &self.inner.backend {
            Backend::Zk { lock, acl } => Some((lock, *acl)),
            Backend::Local(_) => None,
        }
    }

    /// Options for a persistent znode with the cluster's ACL
    /// (`high-availability.zookeeper.client.acl`).
    pub fn persistent(&self) -> CreateOptions<'static> {
        let acl = self.zk().map_or(crate::session::ZkAcl::Open, |(_, acl)| acl);
        CreateMode::Persistent.with_acls(crate::session::acls_of(acl))
    }

    pub fn epoch(&self) -> LeaderEpoch {
        self.inner.epoch
    }

    /// Path of the latch node (relative to the cluster namespace).
    pub fn latch_path(&self) -> &str {
        self.zk().map_or("(none: local pointer tree)", |(lock, _)| lock.lock_path())
    }

    /// Where to read what this fence writes.
    pub fn client(&self) -> &MetaClient {
        &self.inner.reader
    }

    /// The underlying ZooKeeper session; `None` with `high-availability.type: none`.
    pub fn zk_client(&self) -> Option<&zookeeper_client::Client> {
        self.zk().map(|(lock, _)| lock.client())
    }

    fn map(&self, op: &'static str, path: &str, err: zookeeper_client::Error) -> HaError {
        match err {
            zookeeper_client::Error::RuntimeInconsistent => {
                HaError::LeadershipLost { epoch: self.inner.epoch, op, path: path.to_string() }
            }
            err => HaError::zk(op, path, err),
        }
    }

    /// Guarded `set_data`.
    ///
    /// # Notable errors
    /// * [`HaError::LeadershipLost`] if this leader's latch node is gone.
    /// * [`HaError::ConnectionLoss`]: the outcome is unknown; read back before retrying a
    ///   conditional write.
    pub async fn set_data(&self, path: &str, data: &[u8], version: Option<i32>) -> Result<Stat, HaError> {
        let held = barrier("set_data", &[path], self.inner.epoch).await;
        let result = match self.zk() {
            None => self.local_meta().set_data(path, data, version),
            Some((lock, _)) if latch_guard_disabled() => lock.client().set_data(path, data, version).await,
            Some((lock, _)) => lock.set_data(path, data, version).await,
        }
        .map_err(|e| self.map("set_data", path, e));
        if let Some(h) = held {
            h.finish(&result);
        }
        result
    }

    /// Guarded `create`.
    ///
    /// # Notable errors
    /// * [`HaError::LeadershipLost`] if this leader's latch node is gone.
    /// * [`HaError::Zk`] with `NodeExists` / `NoNode` as for a plain create.
    pub async fn create(&self, path: &str, data: &[u8], options: &CreateOptions<'_>) -> Result<Stat, HaError> {
        let held = barrier("create", &[path], self.inner.epoch).await;
        let result = match self.zk() {
            None => self.local_meta().create(path, data),
            Some((lock, _)) if latch_guard_disabled() => lock.client().create(path, data, options).await.map(|r| r.0),
            Some((lock, _)) => lock.create(path, data, options).await.map(|r| r.0),
        }
        .map_err(|e| self.map("create", path, e));
        if let Some(h) = held {
            h.finish(&result);
        }
        result
    }

    /// Guarded `delete`.
    ///
    /// # Notable errors
    /// * [`HaError::LeadershipLost`] if this leader's latch node is gone.
    pub async fn delete(&self, path: &str, version: Option<i32>) -> Result<(), HaError> {
        let held = barrier("delete", &[path], self.inner.epoch).await;
        let result = match self.zk() {
            None => self.local_meta().delete(path, version),
            Some((lock, _)) if latch_guard_disabled() => lock.client().delete(path, version).await,
            Some((lock, _)) => lock.delete(path, version).await,
        }
        .map_err(|e| self.map("delete", path, e));
        if let Some(h) = held {
            h.finish(&result);
        }
        result
    }

    /// Guarded replace of an ephemeral node owned by whoever led before: delete it (if present)
    /// and create it anew with `data`, in one multi-op checked against the latch.
    pub(crate) async fn replace_ephemeral(&self, path: &str, data: &[u8]) -> Result<(), HaError> {
        let (_, acl) = self.zk().expect("ephemeral nodes exist only in ZooKeeper");
        loop {
            let existing = self.client().check_stat(path).await.map_err(|e| HaError::zk("exists", path, e))?;
            let mut writer = self.transaction().writer;
            let options = CreateMode::Ephemeral.with_acls(crate::session::acls_of(acl));
            if let Some(stat) = existing {
                writer.add_delete(path, Some(stat.version)).map_err(|e| self.map("delete", path, e))?;
            }
            writer.add_create(path, data, &options).map_err(|e| self.map("create", path, e))?;
            match writer.commit().await.map_err(zookeeper_client::Error::from) {
                Ok(_) => return Ok(()),
                // Someone else's node appeared or changed in between: look again.
                Err(
                    zookeeper_client::Error::NodeExists
                    | zookeeper_client::Error::BadVersion
                    | zookeeper_client::Error::NoNode,
                ) => continue,
                Err(err) => return Err(self.map("replace", path, err)),
            }
        }
    }

    /// Starts a guarded multi-op: every operation added commits together, and only if this
    /// leader's latch node still exists.
    pub fn transaction(&self) -> Transaction<'_> {
        let writer = match self.zk() {
            None => Writer::Local(self.local_meta().clone(), Vec::new()),
            Some((lock, _)) if latch_guard_disabled() => Writer::Unguarded(lock.client().new_multi_writer()),
            Some((lock, _)) => Writer::Guarded(lock.new_check_writer()),
        };
        Transaction { fence: self, writer, ops: Vec::new() }
    }

    /// Reports that a peer refused one of this leader's commands because it has seen `seen`.
    /// When `seen` is greater than this leader's epoch, a newer leader exists and this one
    /// steps down at once, without waiting for ZooKeeper to tell it.
    fn local_meta(&self) -> &Arc<LocalMeta> {
        match &self.inner.backend {
            Backend::Local(meta) => meta,
            Backend::Zk { .. } => unreachable!("local() is called only without ZooKeeper"),
        }
    }

    pub fn report_fenced(&self, seen: LeaderEpoch) {
        let _ = self.inner.fenced_tx.send(seen);
    }
}

/// A guarded multi-op being built (see [`Fence::transaction`]).
#[must_use = "a transaction does nothing until committed"]
pub struct Transaction<'a> {
    fence: &'a Fence,
    writer: Writer<'a>,
    ops: Vec<(&'static str, String)>,
}

/// A multi-op checked against the latch, or (test-only, [`DISABLE_LATCH_GUARD_ENV`]) not.
enum Writer<'a> {
    Guarded(zookeeper_client::CheckWriter<'a>),
    Unguarded(zookeeper_client::MultiWriter<'a>),
    /// `high-availability.type: none`: applied atomically to the local pointer tree.
    Local(Arc<LocalMeta>, Vec<LocalOp>),
}

impl<'a> Writer<'a> {
    fn add_create(
        &mut self,
        path: &str,
        data: &[u8],
        options: &CreateOptions<'_>,
    ) -> Result<(), zookeeper_client::Error> {
        match self {
            Writer::Guarded(w) => w.add_create(path, data, options),
            Writer::Unguarded(w) => w.add_create(path, data, options),
            Writer::Local(_, ops) => {
                ops.push(LocalOp::Create { path: path.to_string(), data: data.to_vec() });
                Ok(())
            }
        }
    }

    fn add_set_data(&mut self, path: &str, data: &[u8], version: Option<i32>) -> Result<(), zookeeper_client::Error> {
        match self {
            Writer::Guarded(w) => w.add_set_data(path, data, version),
            Writer::Unguarded(w) => w.add_set_data(path, data, version),
            Writer::Local(_, ops) => {
                ops.push(LocalOp::SetData { path: path.to_string(), data: data.to_vec(), version });
                Ok(())
            }
        }
    }

    fn add_delete(&mut self, path: &str, version: Option<i32>) -> Result<(), zookeeper_client::Error> {
        match self {
            Writer::Guarded(w) => w.add_delete(path, version),
            Writer::Unguarded(w) => w.add_delete(path, version),
            Writer::Local(_, ops) => {
                ops.push(LocalOp::Delete { path: path.to_string(), version });
                Ok(())
            }
        }
    }

    /// Commits; an unguarded writer's failures map to the guarded writer's error shape.
    async fn commit(self) -> Result<(), zookeeper_client::CheckWriteError> {
        use zookeeper_client::{CheckWriteError, MultiWriteError};
        match self {
            Writer::Guarded(w) => w.commit().await.map(|_| ()),
            Writer::Unguarded(mut w) => w.commit().await.map(|_| ()).map_err(|e| match e {
                MultiWriteError::RequestFailed { source } => CheckWriteError::RequestFailed { source },
                MultiWriteError::OperationFailed { index, source } => {
                    CheckWriteError::OperationFailed { index, source }
                }
            }),
            Writer::Local(meta, ops) => {
                meta.multi(&ops).map_err(|(index, source)| CheckWriteError::OperationFailed { index, source })
            }
        }
    }
}

impl Transaction<'_> {
    pub fn create(&mut self, path: &str, data: &[u8], options: &CreateOptions<'_>) -> Result<&mut Self, HaError> {
        self.writer.add_create(path, data, options).map_err(|e| HaError::zk("create", path, e))?;
        self.ops.push(("create", path.to_string()));
        Ok(self)
    }

    pub fn set_data(&mut self, path: &str, data: &[u8], version: Option<i32>) -> Result<&mut Self, HaError> {
        self.writer.add_set_data(path, data, version).map_err(|e| HaError::zk("set_data", path, e))?;
        self.ops.push(("set_data", path.to_string()));
        Ok(self)
    }

    pub fn delete(&mut self, path: &str, version: Option<i32>) -> Result<&mut Self, HaError> {
        self.writer.add_delete(path, version).map_err(|e| HaError::zk("delete", path, e))?;
        self.ops.push(("delete", path.to_string()));
        Ok(self)
    }

    /// Commits every operation atomically.
    ///
    /// # Notable errors
    /// * [`HaError::LeadershipLost`] if the latch is gone (nothing was applied).
    /// * [`HaError::Zk`] naming the first operation that failed (nothing was applied).
    /// * [`HaError::ConnectionLoss`]: outcome unknown; read back before retrying.
    pub async fn commit(self) -> Result<(), HaError> {
        let Transaction { fence, writer, ops } = self;
        let epoch = fence.epoch();
        let paths: Vec<&str> = ops.iter().map(|o| o.1.as_str()).collect();
        let held = barrier("multi", &paths, epoch).await;
        let result = Self::finish(fence, writer, &ops).await;
        if let Some(h) = held {
            h.finish(&result);
        }
        result
    }

    async fn finish(fence: &Fence, writer: Writer<'_>, ops: &[(&'static str, String)]) -> Result<(), HaError> {
        let epoch = fence.epoch();
        match writer.commit().await {
            Ok(()) => Ok(()),
            Err(zookeeper_client::CheckWriteError::CheckFailed { source }) => match source {
                zookeeper_client::Error::NoNode | zookeeper_client::Error::BadVersion => Err(HaError::LeadershipLost {
                    epoch,
                    op: "multi",
                    path: ops.first().map(|o| o.1.clone()).unwrap_or_default(),
                }),
                other => Err(HaError::zk("multi", fence.latch_path(), other)),
            },
            Err(zookeeper_client::CheckWriteError::OperationFailed { index, source }) => {
                let (op, path) = ops.get(index).cloned().unwrap_or(("multi", String::new()));
                Err(HaError::zk(op, &path, source))
            }
            Err(zookeeper_client::CheckWriteError::RequestFailed { source }) => {
                Err(HaError::zk("multi", ops.first().map(|o| o.1.as_str()).unwrap_or(""), source))
            }
        }
    }
}

/// A command was refused because its epoch is older than the newest one seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("fenced: command from epoch {got} refused, this process has seen epoch {highest}")]
pub struct Fenced {
    pub got: LeaderEpoch,
    pub highest: LeaderEpoch,
}

/// The highest leader epoch a process has seen; commands from lower epochs are refused.
#[derive(Debug, Default)]
pub struct EpochGate {
    highest: AtomicI64,
}

impl EpochGate {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn highest(&self) -> LeaderEpoch {
        LeaderEpoch(self.highest.load(Ordering::SeqCst))
    }

    /// Records an epoch learnt elsewhere (for example from leader retrieval).
    pub fn observe(&self, epoch: LeaderEpoch) {
        self.highest.fetch_max(epoch.0, Ordering::SeqCst);
    }

    /// Admits a command from `epoch` (raising the highest seen) or refuses it.
    pub fn admit(&self, epoch: LeaderEpoch) -> Result<(), Fenced> {
        let prev = self.highest.fetch_max(epoch.0, Ordering::SeqCst);
        if epoch.0 < prev {
            Err(Fenced { got: epoch, highest: LeaderEpoch(prev) })
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gate_admits_equal_and_newer_and_refuses_older() {
        let gate = EpochGate::new();
        assert_eq!(gate.admit(LeaderEpoch(5)), Ok(()));
        assert_eq!(gate.admit(LeaderEpoch(5)), Ok(()));
        assert_eq!(gate.admit(LeaderEpoch(9)), Ok(()));
        let refused = gate.admit(LeaderEpoch(5)).unwrap_err();
        assert_eq!(refused, Fenced { got: LeaderEpoch(5), highest: LeaderEpoch(9) });
        assert_eq!(refused.to_string(), "fenced: command from epoch 5 refused, this process has seen epoch 9");
        gate.observe(LeaderEpoch(12));
        assert!(gate.admit(LeaderEpoch(9)).is_err());
        gate.observe(LeaderEpoch(3));
        assert_eq!(gate.highest(), LeaderEpoch(12), "observing an older epoch never lowers the gate");
    }
}
