//! Measurement: per fault, time to a new leader and to the jobs running again.

use serde::{Deserialize, Serialize};

use crate::history::{EventKind, History};

/// What one fault did to leadership and jobs. Times are unix ms from the history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailoverTiming {
    pub fault_id: Option<u64>,
    pub fault: String,
    pub target: String,
    /// `fault_start`.
    pub fault_at: i64,
    /// `fault_end`, if any.
    pub healed_at: Option<i64>,
    /// Highest epoch gained at or before `fault_at`.
    pub old_epoch: Option<u64>,
    /// The first epoch above `old_epoch` gained in this fault's window.
    pub new_epoch: Option<u64>,
    /// Who gained `new_epoch`.
    pub new_leader: Option<String>,
    /// When `new_epoch` was gained.
    pub new_leader_at: Option<i64>,
    /// When every worker seen before the fault had registered with `new_epoch`.
    pub workers_registered_at: Option<i64>,
    /// Jobs RUNNING at `fault_at` that the fault interrupted (left RUNNING in the window, or
    /// a new leader took over and recovered them).
    pub jobs_interrupted: Vec<String>,
    /// When the last interrupted job was RUNNING again; `None` if one never was, or if no
    /// job was interrupted.
    pub job_running_again_at: Option<i64>,
    /// Jobs a new leader adopted in the window (`job_adopted`: their tasks ran on).
    pub jobs_adopted: Vec<String>,
    /// The longest interval, from 0.5 s before the fault to 1 s after the interrupted jobs ran
    /// again, in which no subtask of an interrupted job processed a record (from the workers'
    /// counters, sampled by the campaign for its two counting jobs; not in the history, so
    /// `None` when computed from a history alone, when a job never ran again, or when only a
    /// churn job was interrupted).
    #[serde(default)]
    pub processing_gap_ms: Option<u64>,
}

impl FailoverTiming {
    /// `new_leader_at - fault_at`.
    pub fn time_to_new_leader_ms(&self) -> Option<i64> {
        self.new_leader_at.map(|t| t - self.fault_at)
    }

    /// `job_running_again_at - fault_at`.
    pub fn time_to_running_again_ms(&self) -> Option<i64> {
        self.job_running_again_at.map(|t| t - self.fault_at)
    }
}

/// One [`FailoverTiming`] per fault the harness recorded, in start order.
///
/// A fault's *window* runs from its `fault_start` to the next fault's start (or the end of
/// the history), so with a serial schedule each leader change and each job interruption is
/// attributed to the fault that caused it:
///
/// - `old_epoch`: the highest `leadership_gained` epoch at or before the fault;
/// - `new_leader_at` / `new_epoch`: the first gain in the window with a higher epoch;
/// - interrupted jobs: RUNNING at the fault, and in the window either a `job_state` away
///   from RUNNING or a new leader; such a job runs again at its first `job_state {to:
///   RUNNING}` after the interruption (searched to the end of the history);
/// - `workers_registered_at`: every worker that logged anything before the fault has a
///   `registered {epoch: new_epoch}` after the new leader gained.
pub fn failover_times(history: &History) -> Vec<FailoverTiming> {
    let events = history.events();
    let windows = history.fault_windows();
    let timelines = history.job_timelines();
    let mut out = Vec::new();
    for (k, w) in windows.iter().enumerate() {
        let t0 = w.start_ms;
        let t1 = windows[k + 1..].iter().map(|n| n.start_ms).find(|&s| s > t0).unwrap_or(i64::MAX);
        let old_epoch = events
            .iter()
            .take_while(|e| e.ts_ms <= t0)
            .filter_map(|e| match e.kind {
                EventKind::LeadershipGained { epoch } => Some(epoch),
                _ => None,
            })
            .max();
        let gain = events.iter().filter(|e| e.ts_ms >= t0 && e.ts_ms < t1).find_map(|e| match e.kind {
            EventKind::LeadershipGained { epoch } if old_epoch.is_none_or(|o| epoch > o) => Some((e, epoch)),
            _ => None,
        });
        let new_leader_at = gain.map(|(e, _)| e.ts_ms);

        let mut jobs_interrupted = Vec::new();
        let mut running_again = Vec::new();
        for t in &timelines {
            if t.state_at(t0) != Some("RUNNING") || t.ended.as_ref().is_some_and(|e| e.ts_ms <= t0) {
                continue;
            }
            let left = t.states.iter().position(|s| s.ts_ms >= t0 && s.ts_ms < t1 && s.to != "RUNNING");
            // Finishing or a requested cancel is an end, not an interruption by the fault.
            if left.is_some_and(|i| matches!(t.states[i].to.as_str(), "FINISHED" | "CANCELED")) {
                continue;
            }
            let interrupted_at = match (left.map(|i| t.states[i].ts_ms), new_leader_at) {
                (Some(a), Some(b)) => a.min(b),
                (a, b) => match a.or(b) {
                    Some(x) => x,
                    None => continue,
                },
            };
            jobs_interrupted.push(t.job.clone());
            let again = t
                .states
                .iter()
                .enumerate()
                .find(|(i, s)| {
                    s.to == "RUNNING"
                        && s.ts_ms >= interrupted_at
                        && left.is_none_or(|l| *i > l || s.ts_ms > t.states[l].ts_ms)
                })
                .map(|(_, s)| s.ts_ms);
            running_again.push(again);
        }
        let job_running_again_at = if running_again.is_empty() || running_again.iter().any(Option::is_none) {
            None
        } else {
            running_again.into_iter().flatten().max()
        };

        let workers_registered_at = gain.and_then(|(g, epoch)| {
            let before: Vec<String> =
                history.workers().into_iter().filter(|wk| history.of_process(wk).any(|e| e.ts_ms <= t0)).collect();
            if before.is_empty() {
                return None;
            }
            let mut last = g.ts_ms;
            for wk in &before {
                let at = history
                    .of_process(wk)
                    .find(|e| {
                        e.ts_ms >= g.ts_ms && matches!(e.kind, EventKind::Registered { epoch: ep, .. } if ep == epoch)
                    })?
                    .ts_ms;
                last = last.max(at);
            }
            Some(last)
        });

        let mut jobs_adopted: Vec<String> = events
            .iter()
            .filter(|e| e.ts_ms >= t0 && e.ts_ms < t1)
            .filter_map(|e| match &e.kind {
                EventKind::JobAdopted { job, .. } => Some(job.clone()),
                _ => None,
            })
            .collect();
        jobs_adopted.sort();
        jobs_adopted.dedup();
        out.push(FailoverTiming {
            fault_id: w.id,
            fault: w.fault.clone(),
            target: w.target.clone(),
            fault_at: t0,
            healed_at: w.end_ms,
            old_epoch,
            new_epoch: gain.map(|(_, e)| e),
            new_leader: gain.map(|(e, _)| e.process.clone()),
            new_leader_at,
            workers_registered_at,
            jobs_interrupted,
            job_running_again_at,
            jobs_adopted,
            processing_gap_ms: None,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::testing::*;
    use serde_json::json;

    #[test]
    fn an_adoption_is_counted_in_its_faults_window() {
        let h = History::from_values([
            gained(1_000, "d1", 5),
            state(1_200, "d1", "j1", "CREATED", "RUNNING"),
            fault(2_000, true, "kill9", "d1", 1),
            gained(2_100, "d2", 9),
            ev(2_150, "d2", "job_adopted", json!({"job": "j1", "attempt": 3, "epoch": 9})),
            state(2_160, "d2", "j1", "CREATED", "RUNNING"),
            fault(4_000, true, "kill9", "w1", 2),
        ]);
        let t = failover_times(&h);
        assert_eq!(t[0].jobs_adopted, ["j1"]);
        assert!(t[1].jobs_adopted.is_empty());
    }

    #[test]
    fn leader_kill_then_standby_kill() {
        let h = History::from_values([
            gained(1_000, "d1", 5),
            ev(1_100, "w1", "registered", json!({"epoch": 5, "leader": "d1"})),
            state(1_200, "d1", "j1", "CREATED", "RUNNING"),
            // Fault 1: the leader dies; d2 takes over and recovers j1.
            fault(2_000, true, "kill9", "d1", 1),
            fault(2_001, false, "kill9", "d1", 1),
            gained(5_000, "d2", 9),
            ev(5_100, "w1", "registered", json!({"epoch": 9, "leader": "d2"})),
            state(5_200, "d2", "j1", "CREATED", "SCHEDULING"),
            state(5_900, "d2", "j1", "SCHEDULING", "RUNNING"),
            // Fault 2: a standby dies; nothing changes.
            fault(8_000, true, "kill9", "d3", 2),
            fault(8_001, false, "kill9", "d3", 2),
            // Fault 3: a worker dies; j1 restarts under the same leader.
            fault(9_000, true, "kill9", "w1", 3),
            state(9_300, "d2", "j1", "RUNNING", "RESTARTING"),
            state(9_800, "d2", "j1", "RESTARTING", "RUNNING"),
            fault(9_900, false, "kill9", "w1", 3),
        ]);
        let t = failover_times(&h);
        assert_eq!(t.len(), 3);
        let a = &t[0];
        assert_eq!((a.fault_id, a.fault.as_str(), a.target.as_str()), (Some(1), "kill9", "d1"));
        assert_eq!((a.old_epoch, a.new_epoch, a.new_leader.as_deref()), (Some(5), Some(9), Some("d2")));
        assert_eq!(a.time_to_new_leader_ms(), Some(3_000));
        assert_eq!(a.workers_registered_at, Some(5_100));
        assert_eq!(a.jobs_interrupted, ["j1"]);
        assert_eq!(a.job_running_again_at, Some(5_900));
        assert_eq!(a.time_to_running_again_ms(), Some(3_900));
        assert!(a.jobs_adopted.is_empty(), "restarted, not adopted");
        let b = &t[1];
        assert_eq!((b.old_epoch, b.new_epoch, b.new_leader_at), (Some(9), None, None));
        assert!(b.jobs_interrupted.is_empty());
        assert_eq!(b.job_running_again_at, None);
        let c = &t[2];
        assert_eq!(c.new_leader_at, None);
        assert_eq!(c.jobs_interrupted, ["j1"]);
        assert_eq!(c.job_running_again_at, Some(9_800));
        assert_eq!(c.healed_at, Some(9_900));
    }

    #[test]
    fn a_job_that_never_comes_back_has_no_time() {
        let h = History::from_values([
            gained(1_000, "d1", 5),
            state(1_200, "d1", "j1", "CREATED", "RUNNING"),
            fault(2_000, true, "kill9", "d1", 1),
            gained(5_000, "d2", 9),
        ]);
        let t = failover_times(&h);
        assert_eq!(t[0].jobs_interrupted, ["j1"]);
        assert_eq!(t[0].job_running_again_at, None);
        assert_eq!(t[0].healed_at, None);
    }
}
