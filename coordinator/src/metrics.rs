//! The dispatcher's metrics (`GET /metrics`, Prometheus / OpenMetrics text) and the bounded
//! history of leadership changes this dispatcher observed (`GET /ha/history`, the dashboard's
//! timeline).
//!
//! Encoding is `prometheus-client`'s. Two kinds of series:
//!
//! * **events**, counted when they happen: leadership changes seen here, job restarts,
//!   completed checkpoints (count, duration histogram, size of the last one). The job layer
//!   reports them through [`job_events`], a process-wide handle (one dispatcher per process;
//!   dispatchers run in one test process share it).
//! * **state**, read at scrape time by a [`Collector`]: whether this dispatcher leads and the
//!   leader epoch it knows, its ZooKeeper session state, registered workers and slots, jobs by
//!   state, per job restarts, completed checkpoints and the age of the last one.
//!
//! Every series is prefixed `keel_`; the table in the README lists them.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, OnceLock};

use keel_ha::LeaderView;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use serde::Serialize;
use tokio::sync::watch;

use crate::jobs::JobManager;
use crate::resource_manager::ResourceManager;
use crate::role::Role;

/// How many leadership changes [`LeaderHistory`] keeps (the oldest are dropped).
pub const HISTORY_CAPACITY: usize = 64;

/// The content type of `GET /metrics` (`prometheus-client` writes OpenMetrics text).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Events the job layer reports (see the module page).
#[derive(Debug, Clone)]
pub struct JobEvents {
    pub checkpoints_completed: Counter,
    pub checkpoint_duration: Histogram,
    pub checkpoint_size: Gauge,
    pub restarts: Counter,
}

impl JobEvents {
    /// A checkpoint was published: triggered and completed at these Unix ms (a trigger time
    /// of 0 is unknown: no duration is observed), `size_bytes` of its metadata blob.
    pub fn checkpoint_completed(&self, triggered_ms: i64, completed_ms: i64, size_bytes: usize) {
        self.checkpoints_completed.inc();
        if triggered_ms > 0 {
            self.checkpoint_duration.observe((completed_ms - triggered_ms).max(0) as f64 / 1000.0);
        }
        self.checkpoint_size.set(size_bytes as i64);
    }

    /// A job is restarted after a failure.
    pub fn restarted(&self) {
        self.restarts.inc();
    }
}

/// The process-wide [`JobEvents`].
pub fn job_events() -> &'static JobEvents {
    static EVENTS: OnceLock<JobEvents> = OnceLock::new();
    EVENTS.get_or_init(|| JobEvents {
        checkpoints_completed: Counter::default(),
        // 5 ms .. ~82 s
        checkpoint_duration: Histogram::new(exponential_buckets(0.005, 2.0, 15)),
        checkpoint_size: Gauge::default(),
        restarts: Counter::default(),
    })
}

/// One change this dispatcher observed: a new leader (or none), or its own role.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct LeaderChange {
    /// When this dispatcher observed it (Unix ms).
    pub at_unix_ms: i64,
    /// `leader` (the cluster's leader changed) or `role` (this dispatcher's own role).
    pub kind: &'static str,
    /// The leader's id after the change (`None`: no leader known).
    pub leader_id: Option<String>,
    pub epoch: Option<i64>,
    pub rest_address: Option<String>,
    /// This dispatcher's role after the change (`leader`, `standby`, `suspended`).
    pub role: &'static str,
}

/// A bounded ring of [`LeaderChange`]s (at most [`HISTORY_CAPACITY`]). Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct LeaderHistory {
    inner: Arc<Mutex<VecDeque<LeaderChange>>>,
    changes: Counter,
}

impl LeaderHistory {
    pub fn push(&self, change: LeaderChange) {
        if change.kind == "leader" && change.leader_id.is_some() {
            self.changes.inc();
        }
        let mut ring = self.inner.lock().expect("history lock");
        if ring.len() == HISTORY_CAPACITY {
            ring.pop_front();
        }
        ring.push_back(change);
    }

    /// Oldest first.
    pub fn snapshot(&self) -> Vec<LeaderChange> {
        self.inner.lock().expect("history lock").iter().cloned().collect()
    }

    /// Follows this dispatcher's leader view and role until both channels close, recording
    /// every change.
    pub async fn follow(self, mut leader: watch::Receiver<Option<LeaderView>>, mut role: watch::Receiver<Role>) {
        let mut last_leader: Option<(String, i64)> = None;
        let mut last_role = "";
        let mut leader_open = true;
        let mut role_open = true;
        loop {
            let view = leader.borrow_and_update().clone();
            let own = role.borrow_and_update().name();
            let key = view.as_ref().map(|v| (v.leader_id.clone(), v.epoch.0));
            let now = crate::jobs::now_ms();
            if key != last_leader {
                last_leader = key;
                self.push(LeaderChange {
                    at_unix_ms: now,
                    kind: "leader",
                    leader_id: view.as_ref().map(|v| v.leader_id.clone()),
                    epoch: view.as_ref().map(|v| v.epoch.0),
                    rest_address: view.as_ref().map(|v| v.rest_address.clone()),
                    role: own,
                });
            }
            if own != last_role {
                last_role = own;
                self.push(LeaderChange {
                    at_unix_ms: now,
                    kind: "role",
                    leader_id: view.as_ref().map(|v| v.leader_id.clone()),
                    epoch: view.as_ref().map(|v| v.epoch.0),
                    rest_address: view.as_ref().map(|v| v.rest_address.clone()),
                    role: own,
                });
            }
            tokio::select! {
                r = leader.changed(), if leader_open => leader_open = r.is_ok(),
                r = role.changed(), if role_open => role_open = r.is_ok(),
                else => return,
            }
        }
    }
}

/// What the collector reads at scrape time.
#[derive(Clone)]
pub struct Sources {
    pub role: watch::Receiver<Role>,
    pub leader: watch::Receiver<Option<LeaderView>>,
    /// The ZooKeeper session state of the election (`None` with `high-availability.type: none`).
    pub zk_session: Option<watch::Receiver<keel_ha::election::SessionStatus>>,
    pub rm: ResourceManager,
    pub jobs: JobManager,
}

impl std::fmt::Debug for Sources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sources")
    }
}

/// The ZooKeeper session states `keel_zookeeper_session_state` has a series for.
const SESSION_STATES: [&str; 5] = ["connecting", "connected", "disconnected", "expired", "closed"];
/// Job states `keel_jobs` always has a series for (others appear when a job is in them).
const JOB_STATES: [&str; 6] = ["CREATED", "RUNNING", "RESTARTING", "FINISHED", "CANCELED", "FAILED"];

fn gauge(encoder: &mut DescriptorEncoder, name: &str, help: &str, value: i64) -> Result<(), std::fmt::Error> {
    let g = ConstGauge::new(value);
    g.encode(encoder.encode_descriptor(name, help, None, g.metric_type())?)
}

impl Collector for Sources {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let role = self.role.borrow().clone();
        let leader = self.leader.borrow().clone();
        gauge(
            &mut encoder,
            "keel_leader",
            "1 while this dispatcher is the acting leader, else 0",
            i64::from(role.acting_epoch().is_some()),
        )?;
        gauge(
            &mut encoder,
            "keel_leader_epoch",
            "epoch of the leader this dispatcher knows (0: none known)",
            leader.as_ref().map_or(0, |l| l.epoch.0),
        )?;
        gauge(
            &mut encoder,
            "keel_own_epoch",
            "epoch this dispatcher leads (or led while suspended) with; 0 as standby",
            role.epoch().map_or(0, |e| e.0),
        )?;
        if let Some(session) = &self.zk_session {
            let now = session.borrow().name();
            let g = ConstGauge::new(0i64);
            let mut family = encoder.encode_descriptor(
                "keel_zookeeper_session_state",
                "1 for the current state of this dispatcher's election session",
                None,
                g.metric_type(),
            )?;
            for state in SESSION_STATES {
                ConstGauge::new(i64::from(state == now)).encode(family.encode_family(&[("state", state)])?)?;
            }
        }
        // Workers and jobs: what this dispatcher holds as leader (empty as standby).
        let workers = self.rm.workers();
        gauge(&mut encoder, "keel_registered_workers", "workers registered with this leader", workers.len() as i64)?;
        gauge(
            &mut encoder,
            "keel_slots_total",
            "slots offered by the registered workers",
            workers.iter().map(|w| i64::from(w.slots_number)).sum(),
        )?;
        gauge(
            &mut encoder,
            "keel_slots_available",
            "free slots of the registered workers",
            workers.iter().map(|w| i64::from(w.free_slots)).sum(),
        )?;
        let jobs = self.jobs.statuses();
        {
            let mut by_state: std::collections::BTreeMap<String, i64> =
                JOB_STATES.iter().map(|s| (s.to_string(), 0)).collect();
            for j in &jobs {
                *by_state.entry(j.state.clone()).or_default() += 1;
            }
            let g = ConstGauge::new(0i64);
            let mut family =
                encoder.encode_descriptor("keel_jobs", "jobs this leader runs, by state", None, g.metric_type())?;
            for (state, n) in &by_state {
                ConstGauge::new(*n).encode(family.encode_family(&[("state", state.as_str())])?)?;
            }
        }
        if !jobs.is_empty() {
            let c = ConstCounter::new(0u64);
            let mut family = encoder.encode_descriptor(
                "keel_job_restarts",
                "restarts of each job under this leader",
                None,
                c.metric_type(),
            )?;
            for j in &jobs {
                ConstCounter::new(u64::from(j.restarts))
                    .encode(family.encode_family(&[("job_id", j.job_id.as_str())])?)?;
            }
            let mut family = encoder.encode_descriptor(
                "keel_job_checkpoints_completed",
                "checkpoints of each job completed under this leader",
                None,
                c.metric_type(),
            )?;
            for j in &jobs {
                ConstCounter::new(j.completed).encode(family.encode_family(&[("job_id", j.job_id.as_str())])?)?;
            }
            let g = ConstGauge::new(0.0f64);
            let mut family = encoder.encode_descriptor(
                "keel_job_last_checkpoint_age_seconds",
                "seconds since each job's latest completed checkpoint (jobs with one)",
                None,
                g.metric_type(),
            )?;
            let now = crate::jobs::now_ms();
            for j in &jobs {
                if let Some(c) = &j.latest_completed {
                    let age = (now - c.latest_ack_timestamp).max(0) as f64 / 1000.0;
                    ConstGauge::new(age).encode(family.encode_family(&[("job_id", j.job_id.as_str())])?)?;
                }
            }
        }
        Ok(())
    }
}

/// The dispatcher's registry: event series and the scrape-time collector.
pub struct DispatcherMetrics {
    registry: Registry,
    pub history: LeaderHistory,
}

impl DispatcherMetrics {
    pub fn new(sources: Sources) -> Self {
        let mut registry = Registry::default();
        let history = LeaderHistory::default();
        if std::env::var("KEEL_TEST_DISABLE_DISPATCHER_METRICS").is_ok_and(|v| v == "1") {
            tracing::error!(
                "KEEL_TEST_DISABLE_DISPATCHER_METRICS=1: no dispatcher metric is registered (test-only switch)"
            );
            return Self { registry, history };
        }
        let events = job_events();
        registry.register(
            "keel_leadership_changes",
            "changes of the cluster's leader this dispatcher observed",
            history.changes.clone(),
        );
        registry.register(
            "keel_checkpoints_completed",
            "checkpoints completed by this dispatcher as leader (all jobs)",
            events.checkpoints_completed.clone(),
        );
        registry.register(
            "keel_checkpoint_duration_seconds",
            "time from trigger to completion of each completed checkpoint",
            events.checkpoint_duration.clone(),
        );
        registry.register(
            "keel_checkpoint_size_bytes",
            "size of the latest completed checkpoint's metadata blob (state files are written by workers and not \
             counted)",
            events.checkpoint_size.clone(),
        );
        registry.register(
            "keel_restarts",
            "job restarts after failures by this dispatcher as leader (all jobs)",
            events.restarts.clone(),
        );
        registry.register_collector(Box::new(sources));
        Self { registry, history }
    }

    /// The OpenMetrics text of every series.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::warn!(%e, "encoding metrics failed");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(kind: &'static str, leader: Option<&str>, epoch: i64) -> LeaderChange {
        LeaderChange {
            at_unix_ms: epoch,
            kind,
            leader_id: leader.map(str::to_string),
            epoch: leader.map(|_| epoch),
            rest_address: None,
            role: "standby",
        }
    }

    #[test]
    fn history_keeps_the_newest_changes_and_counts_leaders_only() {
        let h = LeaderHistory::default();
        for i in 0..(HISTORY_CAPACITY as i64 + 10) {
            h.push(change("leader", Some("d1"), i));
        }
        h.push(change("leader", None, 0)); // no leader known: not a change of leader
        h.push(change("role", Some("d1"), 0));
        let snap = h.snapshot();
        assert_eq!(snap.len(), HISTORY_CAPACITY);
        assert_eq!(snap[0].at_unix_ms, 12, "the oldest were dropped first");
        assert_eq!(snap.last().unwrap().kind, "role");
        assert_eq!(h.changes.get(), HISTORY_CAPACITY as u64 + 10);
    }

    #[test]
    fn a_checkpoint_without_a_trigger_time_is_counted_but_not_timed() {
        let events = JobEvents {
            checkpoints_completed: Counter::default(),
            checkpoint_duration: Histogram::new(exponential_buckets(0.005, 2.0, 15)),
            checkpoint_size: Gauge::default(),
            restarts: Counter::default(),
        };
        events.checkpoint_completed(0, 5_000, 10);
        events.checkpoint_completed(1_000, 1_250, 42);
        assert_eq!(events.checkpoints_completed.get(), 2);
        assert_eq!(events.checkpoint_size.get(), 42);
        let mut registry = Registry::default();
        registry.register("keel_checkpoint_duration_seconds", "d", events.checkpoint_duration.clone());
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(text.contains("keel_checkpoint_duration_seconds_count 1\n"), "{text}");
        assert!(text.contains("keel_checkpoint_duration_seconds_sum 0.25\n"), "{text}");
    }
}
