//! Fencing: the leader's guarded ZooKeeper writes, and the worker-side epoch gate.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use tokio::sync::mpsc;
use zookeeper_client::{CreateOptions, OwnedLockClient, Stat};

use crate::{HaError, LeaderEpoch};

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
    lock: OwnedLockClient,
    epoch: LeaderEpoch,
    fenced_tx: mpsc::UnboundedSender<LeaderEpoch>,
}

impl std::fmt::Debug for Fence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fence").field("epoch", &self.inner.epoch).field("latch", &self.inner.lock.lock_path()).finish()
    }
}

impl Fence {
    pub(crate) fn new(
        lock: OwnedLockClient,
        epoch: LeaderEpoch,
        fenced_tx: mpsc::UnboundedSender<LeaderEpoch>,
    ) -> Self {
        Self { inner: Arc::new(Inner { lock, epoch, fenced_tx }) }
    }

    pub fn epoch(&self) -> LeaderEpoch {
        self.inner.epoch
    }

    /// Path of the latch node (relative to the cluster namespace).
    pub fn latch_path(&self) -> &str {
        self.inner.lock.lock_path()
    }

    /// The underlying session, for reads.
    pub fn client(&self) -> &zookeeper_client::Client {
        self.inner.lock.client()
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
        self.inner.lock.set_data(path, data, version).await.map_err(|e| self.map("set_data", path, e))
    }

    /// Guarded `create`.
    ///
    /// # Notable errors
    /// * [`HaError::LeadershipLost`] if this leader's latch node is gone.
    /// * [`HaError::Zk`] with `NodeExists` / `NoNode` as for a plain create.
    pub async fn create(&self, path: &str, data: &[u8], options: &CreateOptions<'_>) -> Result<Stat, HaError> {
        self.inner.lock.create(path, data, options).await.map(|(stat, _)| stat).map_err(|e| self.map("create", path, e))
    }

    /// Guarded `delete`.
    ///
    /// # Notable errors
    /// * [`HaError::LeadershipLost`] if this leader's latch node is gone.
    pub async fn delete(&self, path: &str, version: Option<i32>) -> Result<(), HaError> {
        self.inner.lock.delete(path, version).await.map_err(|e| self.map("delete", path, e))
    }

    /// Guarded replace of an ephemeral node owned by whoever led before: delete it (if present)
    /// and create it anew with `data`, in one multi-op checked against the latch.
    pub(crate) async fn replace_ephemeral(&self, path: &str, data: &[u8]) -> Result<(), HaError> {
        use zookeeper_client::{Acls, CreateMode};
        loop {
            let existing = self.client().check_stat(path).await.map_err(|e| HaError::zk("exists", path, e))?;
            let mut writer = self.inner.lock.new_check_writer();
            let options = CreateMode::Ephemeral.with_acls(Acls::anyone_all());
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
        Transaction { fence: self, writer: self.inner.lock.new_check_writer(), ops: Vec::new() }
    }

    /// Reports that a peer refused one of this leader's commands because it has seen `seen`.
    /// When `seen` is greater than this leader's epoch, a newer leader exists and this one
    /// steps down at once, without waiting for ZooKeeper to tell it.
    pub fn report_fenced(&self, seen: LeaderEpoch) {
        let _ = self.inner.fenced_tx.send(seen);
    }
}

/// A guarded multi-op being built (see [`Fence::transaction`]).
#[must_use = "a transaction does nothing until committed"]
pub struct Transaction<'a> {
    fence: &'a Fence,
    writer: zookeeper_client::CheckWriter<'a>,
    ops: Vec<(&'static str, String)>,
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
        match writer.commit().await {
            Ok(_) => Ok(()),
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
