//! Invariant 2: a stale leader can change nothing durable.

use super::{detail, Verdict};
use crate::history::{Event, EventKind, History};

/// **no_stale_durable_write** — for every `checkpoint_completed {job, checkpoint, epoch}`
/// logged by process P:
///
/// 1. P's latest `leadership_gained` before it (in history order) has exactly `epoch`: a
///    completion is stamped with the completing leader's own, current epoch (and P led at
///    all);
/// 2. no process gained an epoch greater than `epoch` at a time `t` with
///    `t + skew_ms < w`, where `w` is the completion's `issued_ms` if the writer gives one
///    (when the guarded ZooKeeper write was sent) and its `ts_ms` otherwise.
///
/// Why (2) holds in a correct Keel: the completion is made durable by a multi-op guarded by
/// P's latch node; a later leader gains only after that node is gone, and then the guarded
/// write fails. So a durable write of epoch E happens before any higher epoch is gained.
/// The log line is written after the write returns, so a writer paused between the two
/// (SIGSTOP) can log it after the new leader's gain: give `issued_ms`, or a `skew_ms` larger
/// than such pauses, to rule that out. `skew_ms` 0 is right when `issued_ms` is present.
pub fn no_stale_durable_write(history: &History, skew_ms: i64) -> Verdict {
    let events = history.events();
    // Leadership gains are few: index them once (history order) and scan only them.
    let gains: Vec<(usize, &Event, u64)> = events
        .iter()
        .enumerate()
        .filter_map(|(i, e)| match e.kind {
            EventKind::LeadershipGained { epoch } => Some((i, e, epoch)),
            _ => None,
        })
        .collect();
    let mut violations = Vec::new();
    for (i, e) in events.iter().enumerate() {
        let EventKind::CheckpointCompleted { job, checkpoint, epoch, issued_ms } = &e.kind else { continue };
        let what = format!("checkpoint {checkpoint} of job {job} completed with epoch {epoch}");
        let own = gains.iter().rev().find(|(j, g, _)| *j < i && g.process == e.process);
        match own {
            None => violations.push(detail(e, format!("{what}, but {} never gained leadership before", e.process))),
            Some((_, g, own_epoch)) if own_epoch != epoch => violations.push(detail(
                e,
                format!("{what}, but {}'s current leadership is epoch {own_epoch} (gained at {})", e.process, g.at()),
            )),
            Some(_) => {}
        }
        let written = issued_ms.unwrap_or(e.ts_ms);
        let newer = gains.iter().take_while(|(_, g, _)| g.ts_ms + skew_ms < written).find(|(_, _, ep)| ep > epoch);
        if let Some((_, g, ep)) = newer {
            let when = if issued_ms.is_some() { format!(" (write issued at ts={written})") } else { String::new() };
            violations.push(detail(
                e,
                format!(
                    "{what}{when} after {} had gained the higher epoch {ep} at {}: a stale leader's write became durable",
                    g.process,
                    g.at()
                ),
            ));
        }
    }
    Verdict::from_violations("no_stale_durable_write", violations)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::testing::*;
    use serde_json::json;

    #[test]
    fn clean_history_passes() {
        let h = History::from_values([
            gained(100, "d1", 5),
            completed(150, "d1", "j1", 1, 5),
            completed(199, "d1", "j1", 2, 5),
            gained(200, "d2", 9),
            completed(300, "d2", "j1", 3, 9),
        ]);
        let v = no_stale_durable_write(&h, 0);
        assert!(v.ok, "{v}");
    }

    #[test]
    fn a_zombie_completion_after_a_newer_leader_fails() {
        let h = History::from_values([gained(100, "d1", 5), gained(200, "d2", 9), completed(250, "d1", "j1", 4, 5)]);
        let v = no_stale_durable_write(&h, 0);
        assert!(!v.ok);
        assert_eq!(v.details.len(), 1, "{v}");
        assert!(
            v.details[0].starts_with("ts=250 d1 (value:3): checkpoint 4 of job j1 completed with epoch 5 after d2 had gained the higher epoch 9 at ts=200 d2"),
            "{v}"
        );
        // Tolerance: a skew covering the gap hides it.
        assert!(no_stale_durable_write(&h, 50).ok);
        // So does an issue time before the new leader's gain.
        let h = History::from_values([
            gained(100, "d1", 5),
            gained(200, "d2", 9),
            ev(250, "d1", "checkpoint_completed", json!({"job": "j1", "checkpoint": 4, "epoch": 5, "issued_ms": 190})),
        ]);
        assert!(no_stale_durable_write(&h, 0).ok);
    }

    #[test]
    fn wrong_or_missing_own_epoch_fails() {
        let h = History::from_values([gained(100, "d1", 5), completed(150, "d1", "j1", 1, 4)]);
        let v = no_stale_durable_write(&h, 0);
        assert!(!v.ok);
        assert!(v.details[0].contains("but d1's current leadership is epoch 5"), "{v}");
        let h = History::from_values([completed(150, "d3", "j1", 1, 4)]);
        let v = no_stale_durable_write(&h, 0);
        assert!(v.details[0].contains("d3 never gained leadership"), "{v}");
    }
}
