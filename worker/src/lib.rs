//! The Keel worker process.
//!
//! A worker follows the leader through leader retrieval (a watch on `leader/info` in
//! ZooKeeper, or `jobmanager.rpc.address` with `high-availability.type: none`), registers its
//! `taskmanager.numberOfTaskSlots` slots with it, and answers the leader's heartbeats. It
//! re-registers as soon as a new leader appears (it polls its retrieval view every 100 ms), or
//! when its leader has been silent for `heartbeat.timeout`.
//!
//! **Fencing.** The worker remembers the highest leader epoch it has seen, from ZooKeeper or
//! from an accepted command ([`keel_ha::EpochGate`]). A command stamped with a lower epoch is
//! refused with `FAILED_PRECONDITION`, the epoch it has seen in the `keel-fenced-epoch`
//! metadata, a log line and a counter in its status.
//!
//! | module | owns |
//! | --- | --- |
//! | [`state`] | the worker's registration, counters and epoch gate |
//! | `service` | the gRPC `Worker` service (commands, status) |
//! | `registration` | following the leader and (re-)registering |
//! | [`tasks`] | running deployed subtasks, routing checkpoint commands, reporting to the leader |
//! | [`metrics`] | `GET /metrics` on `metrics.reporter.prom.port` |
//! | [`run`] | wiring and shutdown |

pub mod metrics;
mod registration;
pub mod run;
mod service;
pub mod state;
pub mod tasks;

pub use run::{run_worker, WorkerOptions};
