//! Invariant 3, jobs: nothing acknowledged is lost.

use super::{FinalState, Verdict};
use crate::history::{Event, EventKind, History};

/// **no_acknowledged_job_lost** — the acknowledged jobs are those with a `job_submitted`
/// event plus [`FinalState::acknowledged`]. Each must be, in [`FinalState::jobs`]:
///
/// - RUNNING or FINISHED; or
/// - CANCELED, and listed in [`FinalState::cancelled_by_request`];
/// - or absent from the list *only if* the history shows it ended that way (`job_ended`
///   FINISHED, or CANCELED on request): a cleaned-up finished job may leave the job list.
///
/// Anything else is a violation: missing, FAILED, CANCELED without a request, or stuck in
/// CREATED / SCHEDULING / RESTARTING at the end.
pub fn no_acknowledged_job_lost(history: &History, final_state: &FinalState) -> Verdict {
    let mut acked: Vec<(String, Option<&Event>)> = Vec::new();
    for e in history.events() {
        if let EventKind::JobSubmitted { job } = &e.kind {
            if !acked.iter().any(|(j, _)| j == job) {
                acked.push((job.clone(), Some(e)));
            }
        }
    }
    for job in &final_state.acknowledged {
        if !acked.iter().any(|(j, _)| j == job) {
            acked.push((job.clone(), None));
        }
    }
    let requested = |job: &str| final_state.cancelled_by_request.iter().any(|j| j == job);
    let mut violations = Vec::new();
    for (job, submitted) in &acked {
        let how = match submitted {
            Some(e) => format!("submitted at {}", e.at()),
            None => "acknowledged to the client".to_string(),
        };
        let problem = match final_state.state_of(job).as_deref() {
            Some("RUNNING" | "FINISHED") => None,
            Some("CANCELED" | "CANCELLED") if requested(job) => None,
            Some("CANCELED" | "CANCELLED") => Some("is CANCELED but nobody asked to cancel it".to_string()),
            Some(other) => Some(format!("is {other} at the end, expected RUNNING or FINISHED")),
            None => {
                let ended = history.of_job(job).find_map(|e| match &e.kind {
                    EventKind::JobEnded { state, .. } => Some(state.as_str()),
                    _ => None,
                });
                match ended {
                    Some("FINISHED") => None,
                    Some("CANCELED" | "CANCELLED") if requested(job) => None,
                    Some(s) => Some(format!("is missing from the final job list (it ended {s})")),
                    None => Some("is missing from the final job list".to_string()),
                }
            }
        };
        if let Some(p) = problem {
            violations.push(format!("job {job} ({how}) {p}"));
        }
    }
    Verdict::from_violations("no_acknowledged_job_lost", violations)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::testing::*;
    use serde_json::json;

    fn submitted(ts: i64, job: &str) -> serde_json::Value {
        ev(ts, "d1", "job_submitted", json!({"job": job}))
    }

    fn fin(jobs: &[(&str, &str)], cancelled: &[&str]) -> FinalState {
        FinalState {
            jobs: jobs.iter().map(|(j, s)| (j.to_string(), s.to_string())).collect(),
            cancelled_by_request: cancelled.iter().map(|s| s.to_string()).collect(),
            ..FinalState::default()
        }
    }

    #[test]
    fn clean_history_passes() {
        let h = History::from_values([
            submitted(100, "a"),
            submitted(110, "b"),
            submitted(120, "c"),
            submitted(130, "d"),
            ev(500, "d1", "job_ended", json!({"job": "d", "state": "FINISHED"})),
        ]);
        let v = no_acknowledged_job_lost(&h, &fin(&[("a", "running"), ("b", "FINISHED"), ("c", "CANCELED")], &["c"]));
        assert!(v.ok, "{v}");
    }

    #[test]
    fn missing_failed_and_unrequested_cancel_fail() {
        let h =
            History::from_values([submitted(100, "a"), submitted(110, "b"), submitted(120, "c"), submitted(130, "d")]);
        let mut f = fin(&[("b", "FAILED"), ("c", "CANCELED"), ("d", "RESTARTING")], &[]);
        f.acknowledged = vec!["e".into()];
        let v = no_acknowledged_job_lost(&h, &f);
        assert!(!v.ok);
        assert_eq!(v.details.len(), 5, "{v}");
        assert_eq!(v.details[0], "job a (submitted at ts=100 d1 (value:1)) is missing from the final job list");
        assert!(v.details[1].contains("job b") && v.details[1].contains("is FAILED at the end"), "{v}");
        assert!(v.details[2].contains("nobody asked to cancel it"), "{v}");
        assert!(v.details[3].contains("is RESTARTING at the end"), "{v}");
        assert_eq!(v.details[4], "job e (acknowledged to the client) is missing from the final job list");
    }
}
