//! Invariant 1, attempts: a worker never starts a task of an attempt older than one it
//! already started for the same job (issue 7, hole 1: a delayed Deploy of an older attempt
//! whose sink would delete a newer attempt's pending parts).

use std::collections::BTreeMap;

use super::{detail, Verdict};
use crate::history::{Event, EventKind, History};

/// **no_stale_attempt_started** — for each worker process and job, in the worker's own event
/// order, a `task_deployed {attempt}` below the highest attempt of an earlier
/// `task_deployed` of that job on that worker is a violation (the detail names both
/// attempts and where the newer one started). A refused stale deploy
/// (`stale_attempt_refused`) is the mechanism working and is not a violation.
///
/// The process id spans restarts, as in [`super::no_stale_epoch_accepted`]: commands of a
/// killed worker's old connections never reach its successor, and every attempt is newer
/// than all earlier ones of the job, so a restarted worker only ever sees newer attempts.
pub fn no_stale_attempt_started(history: &History) -> Verdict {
    let mut newest: BTreeMap<(&str, &str), (u64, &Event)> = BTreeMap::new();
    let mut violations = Vec::new();
    for e in history.events() {
        let EventKind::TaskDeployed { job, subtask, attempt, .. } = &e.kind else { continue };
        let key = (e.process.as_str(), job.as_str());
        match newest.get(&key) {
            Some((n, at)) if attempt < n => violations.push(detail(
                e,
                format!(
                    "started subtask {subtask} of job {job} for attempt {attempt} after having started attempt {n} at {}",
                    at.at()
                ),
            )),
            Some((n, _)) if attempt == n => {}
            _ => {
                newest.insert(key, (*attempt, e));
            }
        }
    }
    Verdict::from_violations("no_stale_attempt_started", violations)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::testing::*;
    use serde_json::json;

    fn deployed(ts: i64, w: &str, job: &str, subtask: u64, attempt: u64) -> serde_json::Value {
        ev(ts, w, "task_deployed", json!({"job": job, "subtask": subtask, "attempt": attempt, "epoch": 5}))
    }

    #[test]
    fn newer_attempts_and_other_workers_and_jobs_pass() {
        let h = History::from_values([
            deployed(100, "w1", "a", 0, 7),
            deployed(101, "w1", "a", 1, 7),
            deployed(200, "w1", "a", 0, 9),
            deployed(210, "w2", "a", 0, 8),
            deployed(220, "w1", "b", 0, 3),
        ]);
        let v = no_stale_attempt_started(&h);
        assert!(v.ok, "{:?}", v.details);
    }

    #[test]
    fn an_older_attempt_started_after_a_newer_one_fails_and_is_named() {
        let h = History::from_values([deployed(100, "w1", "a", 0, 9), deployed(300, "w1", "a", 1, 8)]);
        let v = no_stale_attempt_started(&h);
        assert!(!v.ok);
        assert_eq!(v.details.len(), 1);
        assert!(v.details[0].contains("job a for attempt 8 after having started attempt 9"), "{:?}", v.details);
    }
}
