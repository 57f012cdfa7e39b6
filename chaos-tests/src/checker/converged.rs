//! After the faults: the cluster comes back.

use super::{FinalState, Verdict};
use crate::history::History;

/// **converged** — every fault the harness started has a matching `fault_end` (a fault
/// never healed is a harness bug, and then convergence means nothing), and every job in
/// [`FinalState::expected_running`] is RUNNING in [`FinalState::jobs`].
pub fn converged(history: &History, final_state: &FinalState) -> Verdict {
    let mut violations = Vec::new();
    for w in history.fault_windows() {
        if w.end_ms.is_none() {
            let id = w.id.map_or(String::new(), |i| format!(" (id {i})"));
            violations
                .push(format!("ts={} harness: fault {} on {}{id} was never healed", w.start_ms, w.fault, w.target));
        }
    }
    for job in &final_state.expected_running {
        match final_state.state_of(job).as_deref() {
            Some("RUNNING") => {}
            Some(s) => violations.push(format!("job {job} is {s} after every fault healed, expected RUNNING")),
            None => violations.push(format!("job {job} is missing after every fault healed, expected RUNNING")),
        }
    }
    Verdict::from_violations("converged", violations)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::testing::*;

    #[test]
    fn healed_and_running_passes_else_fails() {
        let h = History::from_values([fault(100, true, "kill9", "d1", 1), fault(200, false, "kill9", "d1", 1)]);
        let mut f = FinalState {
            jobs: vec![("a".into(), "RUNNING".into()), ("b".into(), "RESTARTING".into())],
            expected_running: vec!["a".into()],
            ..FinalState::default()
        };
        assert!(converged(&h, &f).ok);
        f.expected_running = vec!["a".into(), "b".into(), "c".into()];
        let h = History::from_values([fault(100, true, "kill9", "d1", 1), fault(150, true, "partition", "w1", 2)]);
        let v = converged(&h, &f);
        assert!(!v.ok);
        assert_eq!(
            v.details,
            [
                "ts=100 harness: fault kill9 on d1 (id 1) was never healed",
                "ts=150 harness: fault partition on w1 (id 2) was never healed",
                "job b is RESTARTING after every fault healed, expected RUNNING",
                "job c is missing after every fault healed, expected RUNNING",
            ]
        );
    }
}
