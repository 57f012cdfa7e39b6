//! Invariant 3, checkpoints: a completed checkpoint is never replaced by an older one.

use std::collections::BTreeMap;

use super::{detail, Verdict};
use crate::history::{Event, EventKind, History};

/// **recovery_never_older_than_latest_completed** — every `checkpoint_restored {job,
/// checkpoint}` uses a checkpoint id at least the highest `checkpoint_completed` of that job
/// (by any process) logged at an earlier millisecond. Restoring from no checkpoint
/// (`checkpoint` absent or null) after one completed is a violation too. Completions in the
/// same millisecond as the restore are unordered and not counted.
///
/// A deliberate fallback past a corrupt checkpoint (invariant 5) also shows here; a run that
/// injects corruption must expect this verdict to name it.
pub fn recovery_never_older_than_latest_completed(history: &History) -> Verdict {
    let events = history.events();
    let mut violations = Vec::new();
    // Latest completion per job among events at strictly earlier milliseconds.
    let mut latest: BTreeMap<&str, (u64, &Event)> = BTreeMap::new();
    let mut pending = 0; // events[pending..] not yet folded into `latest`
    for (i, e) in events.iter().enumerate() {
        while pending < i && events[pending].ts_ms < e.ts_ms {
            if let EventKind::CheckpointCompleted { job, checkpoint, .. } = &events[pending].kind {
                let entry = latest.entry(job.as_str()).or_insert((*checkpoint, &events[pending]));
                if *checkpoint > entry.0 {
                    *entry = (*checkpoint, &events[pending]);
                }
            }
            pending += 1;
        }
        let EventKind::CheckpointRestored { job, checkpoint, .. } = &e.kind else { continue };
        let Some((best, c)) = latest.get(job.as_str()) else { continue };
        if checkpoint.is_none_or(|cp| cp < *best) {
            let from = checkpoint.map_or("no checkpoint".to_string(), |cp| format!("checkpoint {cp}"));
            violations.push(detail(
                e,
                format!(
                    "job {job} restored from {from}, but checkpoint {best} had completed at {} (a completed checkpoint was lost)",
                    c.at()
                ),
            ));
        }
    }
    Verdict::from_violations("recovery_never_older_than_latest_completed", violations)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::testing::*;
    use serde_json::json;

    fn restored(ts: i64, p: &str, job: &str, cp: Option<u64>) -> serde_json::Value {
        ev(ts, p, "checkpoint_restored", json!({"job": job, "checkpoint": cp, "attempt": 1}))
    }

    #[test]
    fn clean_history_passes() {
        let h = History::from_values([
            restored(50, "d1", "j1", None),
            completed(100, "d1", "j1", 3, 5),
            completed(110, "d1", "j2", 9, 5),
            restored(200, "d2", "j1", Some(3)),
            completed(300, "d2", "j1", 4, 9),
            // Same millisecond: unordered, not counted.
            completed(400, "d2", "j1", 5, 9),
            restored(400, "d3", "j1", Some(4)),
        ]);
        let v = recovery_never_older_than_latest_completed(&h);
        assert!(v.ok, "{v}");
    }

    #[test]
    fn restoring_an_older_checkpoint_fails() {
        let h = History::from_values([
            completed(100, "d1", "j1", 3, 5),
            completed(150, "d1", "j1", 4, 5),
            restored(200, "d2", "j1", Some(3)),
            restored(210, "d2", "j1", None),
        ]);
        let v = recovery_never_older_than_latest_completed(&h);
        assert!(!v.ok);
        assert_eq!(v.details.len(), 2, "{v}");
        assert_eq!(
            v.details[0],
            "ts=200 d2 (value:3): job j1 restored from checkpoint 3, but checkpoint 4 had completed at ts=150 d1 (value:2) (a completed checkpoint was lost)"
        );
        assert!(v.details[1].contains("restored from no checkpoint"), "{v}");
    }
}
