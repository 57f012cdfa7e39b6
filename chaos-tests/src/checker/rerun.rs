//! Invariant 3, results: a finished job is never run again.

use std::collections::BTreeMap;

use super::{detail, Verdict};
use crate::history::{Event, EventKind, History};

/// Terminal states after which a job must never run again.
const TERMINAL: [&str; 4] = ["FINISHED", "CANCELED", "CANCELLED", "FAILED"];

/// **finished_jobs_never_rerun** — after the first `job_ended {job, state}` with a terminal
/// state (FINISHED, CANCELED or FAILED: globally terminal, recorded in the job result
/// store), no `task_deployed` and no `checkpoint_restored` for that job is logged at a later
/// millisecond (same-millisecond events are unordered and not counted).
pub fn finished_jobs_never_rerun(history: &History) -> Verdict {
    let mut ended: BTreeMap<&str, (&Event, &str)> = BTreeMap::new();
    let mut violations = Vec::new();
    for e in history.events() {
        match &e.kind {
            EventKind::JobEnded { job, state } if TERMINAL.contains(&state.as_str()) => {
                ended.entry(job.as_str()).or_insert((e, state.as_str()));
            }
            EventKind::TaskDeployed { job, subtask, attempt, epoch } => {
                if let Some((end, state)) = ended.get(job.as_str()).filter(|(end, _)| end.ts_ms < e.ts_ms) {
                    violations.push(detail(
                        e,
                        format!(
                            "deployed subtask {subtask} (attempt {attempt}, epoch {epoch}) of job {job}, which had ended {state} at {}",
                            end.at()
                        ),
                    ));
                }
            }
            EventKind::CheckpointRestored { job, checkpoint, .. } => {
                if let Some((end, state)) = ended.get(job.as_str()).filter(|(end, _)| end.ts_ms < e.ts_ms) {
                    let from = checkpoint.map_or("no checkpoint".to_string(), |c| format!("checkpoint {c}"));
                    violations.push(detail(
                        e,
                        format!("restored job {job} from {from}, but it had ended {state} at {}", end.at()),
                    ));
                }
            }
            EventKind::JobAdopted { job, attempt, epoch } => {
                if let Some((end, state)) = ended.get(job.as_str()).filter(|(end, _)| end.ts_ms < e.ts_ms) {
                    violations.push(detail(
                        e,
                        format!(
                            "adopted attempt {attempt} of job {job} under epoch {epoch}, but it had ended {state} at {}",
                            end.at()
                        ),
                    ));
                }
            }
            _ => {}
        }
    }
    Verdict::from_violations("finished_jobs_never_rerun", violations)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::testing::*;
    use serde_json::json;

    fn deployed(ts: i64, w: &str, job: &str) -> serde_json::Value {
        ev(ts, w, "task_deployed", json!({"job": job, "subtask": 0, "attempt": 2, "epoch": 9}))
    }

    fn ended(ts: i64, job: &str, state: &str) -> serde_json::Value {
        ev(ts, "d1", "job_ended", json!({"job": job, "state": state}))
    }

    #[test]
    fn clean_history_passes() {
        let h = History::from_values([
            deployed(100, "w1", "j1"),
            ended(200, "j1", "FINISHED"),
            ev(210, "d1", "job_cleaned", json!({"job": "j1"})),
            deployed(300, "w1", "j2"),
            deployed(400, "w1", "j3"),
            ended(400, "j3", "CANCELED"),
        ]);
        let v = finished_jobs_never_rerun(&h);
        assert!(v.ok, "{v}");
    }

    #[test]
    fn deploying_or_restoring_an_ended_job_fails() {
        let h = History::from_values([
            ended(200, "j1", "FINISHED"),
            ev(300, "d2", "checkpoint_restored", json!({"job": "j1", "checkpoint": 7})),
            deployed(310, "w2", "j1"),
            ended(400, "j2", "canceled"),
            deployed(500, "w1", "j2"),
        ]);
        let v = finished_jobs_never_rerun(&h);
        assert!(!v.ok);
        assert_eq!(v.details.len(), 3, "{v}");
        assert_eq!(
            v.details[0],
            "ts=300 d2 (value:2): restored job j1 from checkpoint 7, but it had ended FINISHED at ts=200 d1 (value:1)"
        );
        assert!(v.details[1].starts_with("ts=310 w2"), "{v}");
        assert!(v.details[2].contains("job j2, which had ended CANCELED"), "{v}");
    }

    #[test]
    fn adopting_an_ended_job_fails() {
        let h = History::from_values([
            ev(100, "d2", "job_adopted", json!({"job": "j1", "attempt": 3, "epoch": 9})),
            ended(200, "j1", "CANCELED"),
            ev(300, "d3", "job_adopted", json!({"job": "j1", "attempt": 3, "epoch": 12})),
        ]);
        let v = finished_jobs_never_rerun(&h);
        assert_eq!(v.details.len(), 1, "{v}");
        assert!(v.details[0].contains("adopted attempt 3 of job j1 under epoch 12"), "{v}");
    }
}
