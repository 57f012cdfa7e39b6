//! The Keel dispatcher process.
//!
//! A dispatcher contends for leadership (see `keel_ha`); while it leads and is not suspended it
//! runs the resource manager: workers register over gRPC, the leader heartbeats every registered
//! worker each `heartbeat.interval` with commands stamped with its epoch, and drops a worker
//! that has not answered for `heartbeat.timeout`. A worker that refuses a command because it
//! has seen a newer epoch makes this dispatcher step down at once.
//!
//! Every dispatcher, leading or standing by, serves the REST API (`rest.port`):
//! `GET /overview`, `GET /taskmanagers` (leader only; a standby answers 503 naming the
//! leader) and `GET /ha/leader` (everyone); `GET /metrics` (Prometheus text, see [`metrics`]),
//! `GET /` (the dashboard), `GET /ha/history` (leadership changes this dispatcher saw) and
//! `GET /ha/contenders` (leader and standbys from ZooKeeper) on every dispatcher.
//!
//! | module | owns |
//! | --- | --- |
//! | [`role`] | this dispatcher's role (standby / leading with epoch and fence / suspended) |
//! | [`resource_manager`] | registered workers, heartbeats, worker timeouts |
//! | `rpc` | the gRPC `Dispatcher` service |
//! | `rest` | the REST API |
//! | [`metrics`] | `/metrics` series and the leadership history |
//! | `dashboard` | the web page and the contenders reader |
//! | [`dispatcher`] | wiring: listeners, election, retrieval, shutdown |

mod dashboard;
pub mod dispatcher;
pub mod jobs;
pub mod metrics;
pub mod resource_manager;
mod rest;
mod rest_tls;
pub mod role;
mod rpc;

pub use dispatcher::{run_dispatcher, DispatcherOptions};
