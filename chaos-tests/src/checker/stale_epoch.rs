//! Invariant 1, worker side: a worker refuses commands from an epoch older than one it saw.

use std::collections::BTreeMap;

use super::{detail, Verdict};
use crate::history::{Event, EventKind, History};

/// **no_stale_epoch_accepted** — for each worker process, in its own event order, the
/// highest epoch it has seen is the maximum of the epochs in its earlier `registered
/// {epoch}`, `command_accepted {epoch}` and `command_refused {epoch, highest}` events. A
/// `command_accepted {epoch}` below that maximum is a violation (the detail names the
/// command kind and the event where the higher epoch was seen).
///
/// The process id spans restarts: a restarted worker must learn the current epoch (for
/// example from ZooKeeper's leader info) before it accepts commands, or a zombie leader's
/// command would be accepted, and this check reports it.
pub fn no_stale_epoch_accepted(history: &History) -> Verdict {
    let mut highest: BTreeMap<&str, (u64, &Event)> = BTreeMap::new();
    let mut violations = Vec::new();
    for e in history.events() {
        let seen = match &e.kind {
            EventKind::Registered { epoch, .. } => *epoch,
            EventKind::CommandRefused { epoch, highest, .. } => (*epoch).max(*highest),
            EventKind::CommandAccepted { epoch, kind } => {
                if let Some((h, at)) = highest.get(e.process.as_str()) {
                    if epoch < h {
                        let kind = if kind.is_empty() { "a command" } else { kind.as_str() };
                        violations.push(detail(
                            e,
                            format!("accepted {kind} stamped epoch {epoch} after having seen epoch {h} at {}", at.at()),
                        ));
                    }
                }
                *epoch
            }
            _ => continue,
        };
        let entry = highest.entry(e.process.as_str()).or_insert((seen, e));
        if seen > entry.0 {
            *entry = (seen, e);
        }
    }
    Verdict::from_violations("no_stale_epoch_accepted", violations)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::testing::*;
    use serde_json::json;

    fn accepted(ts: i64, w: &str, epoch: u64, kind: &str) -> serde_json::Value {
        ev(ts, w, "command_accepted", json!({"epoch": epoch, "kind": kind}))
    }

    #[test]
    fn clean_history_passes() {
        let h = History::from_values([
            ev(100, "w1", "registered", json!({"epoch": 5, "leader": "d1"})),
            accepted(110, "w1", 5, "deploy"),
            ev(120, "w1", "command_refused", json!({"epoch": 3, "highest": 5, "from": "d0"})),
            // Another worker with its own view: epoch 3 is fine for it.
            accepted(130, "w2", 3, "heartbeat"),
            accepted(140, "w1", 9, "heartbeat"),
            accepted(150, "w1", 9, "trigger_checkpoint"),
        ]);
        let v = no_stale_epoch_accepted(&h);
        assert!(v.ok, "{v}");
    }

    #[test]
    fn accepting_an_older_epoch_fails() {
        let h = History::from_values([
            ev(100, "w1", "registered", json!({"epoch": 9, "leader": "d2"})),
            accepted(200, "w1", 5, "deploy"),
        ]);
        let v = no_stale_epoch_accepted(&h);
        assert!(!v.ok);
        assert_eq!(
            v.details,
            ["ts=200 w1 (value:2): accepted deploy stamped epoch 5 after having seen epoch 9 at ts=100 w1 (value:1)"]
        );
    }

    #[test]
    fn a_refusals_highest_counts_as_seen() {
        let h = History::from_values([
            ev(100, "w1", "command_refused", json!({"epoch": 4, "highest": "8", "from": "d1"})),
            accepted(200, "w1", 7, "cancel"),
        ]);
        let v = no_stale_epoch_accepted(&h);
        assert!(!v.ok);
        assert!(v.details[0].contains("accepted cancel stamped epoch 7 after having seen epoch 8"), "{v}");
    }
}
