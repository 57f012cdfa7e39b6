//! Invariant 1, leader side: one acting leader per epoch, and epochs only grow.

use super::{detail, Verdict};
use crate::history::{Event, EventKind, History};

/// **one_leader_per_epoch** — over every `leadership_gained {epoch}` in time order:
///
/// - no two `leadership_gained` events carry the same epoch (two processes, or one process
///   twice: a new leadership is a new latch node, hence a new epoch);
/// - a gain's epoch is strictly greater than every epoch gained at an *earlier*
///   millisecond. Gains in the same millisecond are unordered, so only the duplicate rule
///   applies between them.
///
/// Each violation names both gains (ts, process, source).
pub fn one_leader_per_epoch(history: &History) -> Verdict {
    let mut violations = Vec::new();
    let mut seen: Vec<(&Event, u64)> = Vec::new();
    for e in history.events() {
        let EventKind::LeadershipGained { epoch } = e.kind else { continue };
        if let Some((prev, _)) = seen.iter().find(|(_, ep)| *ep == epoch) {
            let who = if prev.process == e.process { "the same process" } else { prev.process.as_str() };
            violations
                .push(detail(e, format!("gained epoch {epoch}, which {who} had already gained at {}", prev.at())));
        } else if let Some((prev, prev_epoch)) =
            seen.iter().filter(|(p, ep)| p.ts_ms < e.ts_ms && *ep > epoch).max_by_key(|(_, ep)| *ep)
        {
            violations.push(detail(
                e,
                format!(
                    "gained epoch {epoch} after {} had gained the higher epoch {prev_epoch} at {}: epochs went backwards",
                    prev.process,
                    prev.at()
                ),
            ));
        }
        seen.push((e, epoch));
    }
    Verdict::from_violations("one_leader_per_epoch", violations)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::testing::*;

    #[test]
    fn clean_history_passes() {
        let h = History::from_values([
            gained(100, "d1", 5),
            lost(150, "d1", 5),
            gained(200, "d2", 9),
            gained(300, "d1", 12),
        ]);
        let v = one_leader_per_epoch(&h);
        assert!(v.ok, "{v}");
    }

    #[test]
    fn two_leaders_with_one_epoch_fail() {
        let h = History::from_values([gained(100, "d1", 5), gained(200, "d2", 5)]);
        let v = one_leader_per_epoch(&h);
        assert!(!v.ok);
        assert_eq!(v.details.len(), 1);
        let d = &v.details[0];
        assert!(d.starts_with("ts=200 d2 (value:2): gained epoch 5, which d1 had already gained at ts=100 d1"), "{d}");
    }

    #[test]
    fn epochs_going_backwards_fail() {
        let h = History::from_values([gained(100, "d1", 9), gained(200, "d2", 7)]);
        let v = one_leader_per_epoch(&h);
        assert!(!v.ok);
        assert!(v.details[0].contains("gained epoch 7 after d1 had gained the higher epoch 9"), "{v}");
        assert!(v.details[0].starts_with("ts=200 d2"), "{v}");
    }

    #[test]
    fn same_millisecond_is_unordered_but_duplicates_still_fail() {
        // Written in the "wrong" order within one ms: not a violation.
        let h = History::from_values([gained(100, "d2", 9), gained(100, "d1", 7)]);
        assert!(one_leader_per_epoch(&h).ok);
        let h = History::from_values([gained(100, "d2", 9), gained(100, "d1", 9)]);
        assert!(!one_leader_per_epoch(&h).ok);
        // One process logging the same epoch twice is a violation too.
        let h = History::from_values([gained(100, "d1", 9), gained(300, "d1", 9)]);
        let v = one_leader_per_epoch(&h);
        assert!(v.details[0].contains("the same process"), "{v}");
    }
}
