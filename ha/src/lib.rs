//! Keel's high-availability services on ZooKeeper.
//!
//! This crate owns everything Keel keeps in ZooKeeper under
//! `high-availability.zookeeper.path.root` + `high-availability.cluster-id`:
//!
//! | module | owns |
//! | --- | --- |
//! | [`session`] | connecting with the configured quorum and timeouts, chrooted at the cluster root |
//! | [`engine`] | the pure leadership state machine (no I/O): when a leader acts, suspends, steps down |
//! | [`election`] | the contender task: Curator-compatible latch under `leader/latch`, the epoch, `leader/info` |
//! | [`fence`] | [`Fence`]: writes guarded by the leader's latch node, and the worker-side [`EpochGate`] |
//! | [`retrieval`] | [`LeaderRetrieval`]: a watch on `leader/info` yielding every change of leader |
//! | [`fastpath`] | fast failover: the leader publishes its session; a standby closes it when the leader's RPC port refuses connections (process gone) |
//! | [`local`] | `high-availability.type: none`: the single dispatcher's pointer tree in a local file ([`LocalMeta`]), and [`MetaClient`], the reads the stores make of either tree |
//! | [`inspect`] | a read-only snapshot of the cluster's znodes for `keel status` / `keel ha inspect` |
//!
//! # Contract
//!
//! * **Epochs only grow.** A leader's [`LeaderEpoch`] is the `czxid` of its latch node; a later
//!   leader's latch node was always created later, so its epoch is greater.
//! * **A stale leader changes nothing durable.** Every ZooKeeper write a leader makes goes
//!   through its [`Fence`], a multi-op that first checks the leader's own latch node exists.
//!   Once the latch is gone (session expired, node deleted) every guarded write fails with
//!   [`HaError::LeadershipLost`].
//! * **Suspension.** While the session is disconnected the leader stops acting
//!   ([`Leadership::Suspended`]) unless `tolerate-suspended-connections` is set; either way, if
//!   the connection is not back within the session timeout the leader steps down, because the
//!   servers have expired the session by then.
//! * **Graceful stop** deletes the latch node and closes the session, so a standby takes over
//!   at once instead of after a session timeout.

pub mod drill;
pub mod election;
pub mod engine;
mod error;
pub mod fastpath;
pub mod fence;
pub mod inspect;
pub mod local;
pub mod paths;
pub mod retrieval;
pub mod session;
pub mod sim_zk;
pub mod stores;
mod types;

pub use election::{ElectionHandle, LeaderElection, Leadership};
pub use error::HaError;
pub use fence::{EpochGate, Fence, Fenced, MetaClient, Transaction};
pub use local::LocalMeta;
pub use retrieval::LeaderRetrieval;
pub use session::ZkSettings;
pub use stores::{CheckpointPointer, HaStores, ResultStatus};
pub use types::{LeaderEpoch, LeaderView};
