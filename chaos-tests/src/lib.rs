//! Keel's test harness: real ZooKeeper ensembles and real Keel processes, started, faulted
//! and cleaned up from synchronous test code.
//!
//! Other crates' integration tests use it as a dev-dependency. It is blocking on purpose (no
//! async runtime): a test drives the system under test from the outside, the way an operator
//! or a failure would.
//!
//! # What the harness owns
//!
//! - [`ZkEnsemble`]: 1, 3 or 5 ZooKeeper JVMs (Debian's `zookeeper` package, `java` on
//!   `PATH`) on 127.0.0.1 with fresh ports and a temporary directory holding each member's
//!   `zoo.cfg`, data and log. Faults: [`kill`](ZkEnsemble::kill) (SIGKILL),
//!   [`restart`](ZkEnsemble::restart), [`pause`](ZkEnsemble::pause) (SIGSTOP) /
//!   [`resume`](ZkEnsemble::resume). Observation: [`mode`](ZkEnsemble::mode) through the
//!   `srvr` four-letter word, [`leader_index`](ZkEnsemble::leader_index),
//!   [`wait_serving`](ZkEnsemble::wait_serving), [`log_tail`](ZkEnsemble::log_tail).
//! - [`KeelProcess`]: a `keel dispatcher` or `keel worker` started from a binary path (in a
//!   test: `env!("CARGO_BIN_EXE_keel")`), ready once it printed `keel-ready {json}` on
//!   stdout. Faults: [`kill9`](KeelProcess::kill9), [`terminate`](KeelProcess::terminate)
//!   (SIGTERM), [`stop`](KeelProcess::stop) / [`cont`](KeelProcess::cont),
//!   [`restart`](KeelProcess::restart). [`config_yaml`] writes a config with short timeouts.
//! - Helpers: [`free_port`], [`wait_until`], [`http_get_json`] / [`http_request_json`].
//!
//! # Cleanup guarantees
//!
//! - Dropping a [`ZkEnsemble`] or [`KeelProcess`] SIGKILLs (after SIGCONT) every process it
//!   started that still runs, reaps it, and (for the ensemble) deletes the temporary
//!   directory. Drop runs during a panic's unwinding too, so a failing assertion leaves no
//!   JVM behind. Set `KEEL_TEST_KEEP_DIRS=1` to keep ensemble directories for a post-mortem.
//! - If the test process itself dies (SIGKILL, abort, `panic = "abort"`), the kernel sends
//!   SIGKILL to every child: each is started with `prctl(PR_SET_PDEATHSIG, SIGKILL)`.
//!
//! **PDEATHSIG caveat.** Linux sends the death signal when the *thread* that forked the
//! child exits, not when the process exits. Forking from a short-lived thread (a tokio
//! `spawn_blocking` thread, a helper `std::thread`) would kill the child as soon as that
//! thread ends. This harness therefore forks every child on one internal thread that lives as
//! long as the test process, so ensembles and processes may be started from any thread. If
//! you add code that spawns children yourself, do it from a long-lived thread (the test's own
//! thread, which lives as long as the test) or you will see them die "for no reason".
//!
//! Nothing survives the test process except what it leaked itself: grandchildren that a
//! child started (a shell script's `sleep`, say) do not get the death signal.
//!
//! # How tests use it
//!
//! ```no_run
//! use std::time::Duration;
//! use chaos_tests::{config_yaml, KeelProcess, Role, ZkEnsemble};
//!
//! let mut zk = ZkEnsemble::start(3)?;               // ~6 s; waits for a leader
//! let dir = tempfile::tempdir()?;
//! let cfg = config_yaml(&zk.connect_string(), "it-failover", &[]);
//! let keel = std::path::Path::new("target/debug/keel"); // env!("CARGO_BIN_EXE_keel") in a test
//! let mut d1 = KeelProcess::spawn(keel, Role::Dispatcher, &cfg, &[], dir.path(), "d1")?;
//! let (status, _body) =
//!     chaos_tests::http_get_json(&d1.rest_addr().unwrap(), "/jobs", Duration::from_secs(2))
//!         .map_err(std::io::Error::other)?;
//! assert_eq!(status, 200);
//!
//! let leader = zk.leader_index().expect("a ZooKeeper leader");
//! zk.kill(leader);                                   // a ZooKeeper member dies
//! zk.wait_serving(Duration::from_secs(30))?;         // the other two elect a new leader
//! d1.kill9();                                        // a dispatcher dies hard
//! d1.restart()?;                                     // and comes back
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! Every wait in the harness is bounded; errors carry the tail of the relevant logs. Logs:
//! each ZooKeeper member writes `<ensemble dir>/zk<myid>/zookeeper.log`; each Keel process
//! writes stderr and stdout to `<workdir>/<name>.log`, never to the test's output.
//!
//! Environment: `KEEL_TEST_JAVA` (default `java`), `KEEL_TEST_ZK_CLASSPATH` (default: the
//! Debian jars, see [`zk`]), `KEEL_TEST_KEEP_DIRS`, and `RUST_LOG` (passed to Keel processes,
//! default `info`).
//!
//! # Link faults, history, checker, report
//!
//! - [`FaultProxy`] ([`proxy`]): a TCP proxy in front of one upstream with
//!   [`cut`](FaultProxy::cut), [`blackhole`](FaultProxy::blackhole),
//!   [`latency`](FaultProxy::latency), [`bandwidth`](FaultProxy::bandwidth) and
//!   [`heal`](FaultProxy::heal); [`ProxyMesh`] puts one in front of every ZooKeeper member
//!   for one Keel process ([`ProxyMesh::connect_string`]).
//! - [`History`] ([`history`]): the merged JSON-lines event logs of a run (`keel ... --events
//!   FILE`), with typed [`EventKind`]s; [`FaultLog`] writes the harness's own fault events.
//! - [`checker`]: one function per invariant, each returning a named [`Verdict`], plus
//!   [`failover_times`]. Every check has unit tests that feed it a violating history.
//! - [`Report`] ([`report`]): terminal summary table, `report.json`, and `report.html` with an
//!   SVG timeline.

pub mod campaign;
pub mod checker;
mod child;
pub mod history;
pub mod ports;
pub mod probe;
pub mod process;
pub mod progress;
pub mod proxy;
pub mod report;
pub mod s3;
pub mod util;
pub mod zk;

pub use checker::{failover_times, FailoverTiming, FinalState, Verdict};
pub use history::{Event, EventKind, FaultLog, History};
pub use ports::free_port;
pub use process::{config_yaml, KeelProcess, KeelSpec, Role};
pub use proxy::{FaultProxy, ProxyMesh, ProxyStats};
pub use report::Report;
pub use s3::S3Server;
pub use util::{http_get_json, http_request_json, wait_until};
pub use zk::{ZkEnsemble, ZkEnsembleBuilder};
