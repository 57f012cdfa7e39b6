//! Named verdicts over a run's [`History`] and final state, one module per invariant.
//!
//! Each check is a plain function returning a [`Verdict`]: its name, whether it held, and one
//! detail per violation (`ts=<ms> <process> (<file:line>): what went wrong`). The invariants
//! are DESIGN.md's; what exactly each function checks is in its own docs:
//!
//! | verdict | over | invariant |
//! | --- | --- | --- |
//! | [`one_leader_per_epoch`] | history | no epoch gained twice; gained epochs strictly increase |
//! | [`no_stale_epoch_accepted`] | history | a worker never accepts a command below the highest epoch it saw |
//! | [`no_stale_attempt_started`] | history | a worker never starts a task of an attempt older than one it started for the job |
//! | [`no_stale_durable_write`] | history | a completed checkpoint carries its leader's current epoch, and no higher epoch was gained before it |
//! | [`no_acknowledged_job_lost`] | history + [`FinalState`] | every acknowledged job is RUNNING, FINISHED or CANCELED on request |
//! | [`recovery_never_older_than_latest_completed`] | history | a restore uses at least the latest completed checkpoint |
//! | [`finished_jobs_never_rerun`] | history | nothing is deployed or restored for a job after it ended |
//! | [`exactly_once`] | committed output | committed lines equal the expected lines as a multiset |
//! | [`no_leaks`] | leftovers | no znode and no storage file left after the jobs ended |
//! | [`converged`] | history + [`FinalState`] | every fault healed and every job that should run is RUNNING |
//!
//! [`history_verdicts`] runs the history-only checks; [`failover_times`] measures, per fault,
//! the time to a new leader and to the jobs running again.
//!
//! **Time.** All processes share one machine clock, so `ts_ms` values are comparable across
//! files. Checks that compare events of different processes treat equal milliseconds as
//! unordered (never a violation by themselves). [`no_stale_durable_write`] takes an explicit
//! skew allowance for the gap between a write and its log line.

use serde::Serialize;

use crate::history::{Event, History};

mod converged;
mod durable_write;
mod exactly_once;
mod jobs_lost;
mod leadership;
mod leaks;
mod recovery;
mod rerun;
mod stale_attempt;
mod stale_epoch;
mod timing;

pub use converged::converged;
pub use durable_write::no_stale_durable_write;
pub use exactly_once::exactly_once;
pub use jobs_lost::no_acknowledged_job_lost;
pub use leadership::one_leader_per_epoch;
pub use leaks::no_leaks;
pub use recovery::recovery_never_older_than_latest_completed;
pub use rerun::finished_jobs_never_rerun;
pub use stale_attempt::no_stale_attempt_started;
pub use stale_epoch::no_stale_epoch_accepted;
pub use timing::{failover_times, FailoverTiming};

/// At most this many violations are listed per verdict (all are counted).
pub const MAX_DETAILS: usize = 100;

/// The outcome of one invariant check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verdict {
    /// The invariant's name (the function's name).
    pub name: &'static str,
    /// True if no violation was found.
    pub ok: bool,
    /// One line per violation, each with `ts=`, process and source; at most
    /// [`MAX_DETAILS`] plus a final "... more" line.
    pub details: Vec<String>,
}

impl Verdict {
    /// A verdict that holds iff `violations` is empty; long lists are capped.
    pub fn from_violations(name: &'static str, mut violations: Vec<String>) -> Verdict {
        let ok = violations.is_empty();
        if violations.len() > MAX_DETAILS {
            let more = violations.len() - MAX_DETAILS;
            violations.truncate(MAX_DETAILS);
            violations.push(format!("... and {more} more violations"));
        }
        Verdict { name, ok, details: violations }
    }

    /// The first detail, if any.
    pub fn first_detail(&self) -> Option<&str> {
        self.details.first().map(String::as_str)
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.name, if self.ok { "PASS" } else { "FAIL" })?;
        for d in &self.details {
            write!(f, "\n  - {d}")?;
        }
        Ok(())
    }
}

/// What the harness observed after the run, for the checks that need more than the history.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FinalState {
    /// `(job id, state)` as the REST API lists them after every fault healed (states are
    /// compared case-insensitively).
    pub jobs: Vec<(String, String)>,
    /// Jobs the workload cancelled on purpose: CANCELED is a right end for them only.
    pub cancelled_by_request: Vec<String>,
    /// Jobs whose submission the client saw acknowledged, in addition to the history's
    /// `job_submitted` events.
    pub acknowledged: Vec<String>,
    /// Jobs that must be RUNNING at the end ([`converged`]).
    pub expected_running: Vec<String>,
}

impl FinalState {
    /// The final state of `job`, upper-cased; `None` if the job is not listed.
    pub fn state_of(&self, job: &str) -> Option<String> {
        self.jobs.iter().find(|(j, _)| j == job).map(|(_, s)| s.to_ascii_uppercase())
    }
}

/// The history-only verdicts, in table order, with `skew_ms` for
/// [`no_stale_durable_write`].
pub fn history_verdicts(history: &History, skew_ms: i64) -> Vec<Verdict> {
    vec![
        one_leader_per_epoch(history),
        no_stale_epoch_accepted(history),
        no_stale_attempt_started(history),
        no_stale_durable_write(history, skew_ms),
        recovery_never_older_than_latest_completed(history),
        finished_jobs_never_rerun(history),
    ]
}

/// `"<msg> [ts=.. process (source)]"`-style detail for a violation found at `e`.
fn detail(e: &Event, msg: impl std::fmt::Display) -> String {
    format!("{}: {msg}", e.at())
}

#[cfg(test)]
pub(crate) mod testing {
    //! Tiny builders for synthetic histories.
    use serde_json::{json, Value};

    pub fn ev(ts: i64, process: &str, event: &str, fields: Value) -> Value {
        let role = if process.starts_with('d') {
            "dispatcher"
        } else if process.starts_with('w') {
            "worker"
        } else {
            ""
        };
        let mut v = json!({"ts_ms": ts, "process": process, "event": event});
        if !role.is_empty() {
            v["role"] = json!(role);
        }
        if let (Some(obj), Value::Object(f)) = (v.as_object_mut(), fields) {
            obj.extend(f);
        }
        v
    }

    pub fn gained(ts: i64, p: &str, epoch: u64) -> Value {
        ev(ts, p, "leadership_gained", json!({"epoch": epoch}))
    }

    pub fn lost(ts: i64, p: &str, epoch: u64) -> Value {
        ev(ts, p, "leadership_lost", json!({"epoch": epoch}))
    }

    pub fn completed(ts: i64, p: &str, job: &str, cp: u64, epoch: u64) -> Value {
        ev(ts, p, "checkpoint_completed", json!({"job": job, "checkpoint": cp, "epoch": epoch}))
    }

    pub fn state(ts: i64, p: &str, job: &str, from: &str, to: &str) -> Value {
        ev(ts, p, "job_state", json!({"job": job, "from": from, "to": to}))
    }

    pub fn fault(ts: i64, start: bool, fault: &str, target: &str, id: u64) -> Value {
        let name = if start { "fault_start" } else { "fault_end" };
        ev(ts, "harness", name, json!({"fault": fault, "target": target, "id": id}))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdict_caps_details_and_displays() {
        let v = Verdict::from_violations("x", (0..150).map(|i| format!("v{i}")).collect());
        assert!(!v.ok);
        assert_eq!(v.details.len(), MAX_DETAILS + 1);
        assert_eq!(v.details.last().unwrap(), "... and 50 more violations");
        assert_eq!(v.first_detail(), Some("v0"));
        let ok = Verdict::from_violations("y", vec![]);
        assert!(ok.ok && ok.details.is_empty());
        assert_eq!(ok.to_string(), "y: PASS");
        assert!(v.to_string().starts_with("x: FAIL\n  - v0"));
    }
}
