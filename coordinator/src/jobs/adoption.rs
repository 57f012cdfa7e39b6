//! Whether a recovered job's running subtasks are adopted by the new leader, as a pure engine
//! (issue 7's redesign; the checkpoint coordinator and the lifecycle are the others). No I/O,
//! no clock: the job master ([`super::master`]) gathers the facts (what registered workers
//! reported, the guarded attempt counter, the stored checkpoint pointers), asks here, and
//! carries the answer out (adoption commands, cancels of what is not adopted, the checkpoint
//! announcements).
//!
//! The rules:
//! * only the newest reported attempt is a candidate, and only when every one of its subtasks
//!   is reported exactly once (a subtask reported twice, or out of range, refuses the whole
//!   job); a partial report is waited for until the master gives up;
//! * only the newest attempt ever taken may be adopted: the guarded counter, read after this
//!   leader holds the latch, must name exactly the reported attempt; an unreadable counter
//!   refuses (the job restarts, which takes a newer attempt and fences this one);
//! * no subtask may report a checkpoint committed (its sink output visible) beyond the latest
//!   stored pointer: its output would rest on a checkpoint that is not stored. When the
//!   pointers could not be read nothing is compared (the next completed checkpoint commits the
//!   parts); when they were read and none is stored, any committed checkpoint refuses;
//! * once adopted, the latest stored checkpoint is announced again (the old leader may have
//!   written its pointer without telling the tasks; a repeated commit is a no-op), and the
//!   checkpoints acknowledged beyond it are aborted (at most the last [`MAX_ABORTED`]): read
//!   after this leader holds the latch, no pointer for them can appear later. Not when the
//!   pointers could not be read.

/// What a registered worker reported running: `(worker, attempt, subtask)`.
pub type Reported = (String, u64, u32);

/// How many never-completed checkpoints an adoption aborts at most (older ones' files go when
/// the job ends).
pub const MAX_ABORTED: u64 = 16;

/// The first question: is there an attempt to adopt?
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Candidate {
    /// Not every subtask is reported yet: ask again later (until the master gives up).
    Wait,
    /// Nothing was reported: restart as usual, nothing to cancel.
    Nothing,
    /// Not adoptable: restart as usual, and cancel what was reported of `attempt`.
    Refused { attempt: u64, why: String },
    /// Every subtask of `attempt` is reported exactly once; `assignment[i]` runs subtask `i`.
    Found { attempt: u64, assignment: Vec<String> },
}

/// Looks at what registered workers reported for one job of `parallelism` subtasks.
/// `gave_up`: the master waited long enough; a partial report is then refused.
pub fn candidate(parallelism: u32, reported: &[Reported], gave_up: bool) -> Candidate {
    let Some(newest) = reported.iter().map(|(_, a, _)| *a).max() else {
        return if gave_up { Candidate::Nothing } else { Candidate::Wait };
    };
    let mut by_subtask: Vec<Option<String>> = vec![None; parallelism as usize];
    for (w, a, i) in reported {
        if *a != newest {
            continue;
        }
        match by_subtask.get_mut(*i as usize) {
            Some(slot @ None) => *slot = Some(w.clone()),
            Some(Some(first)) => {
                return Candidate::Refused {
                    attempt: newest,
                    why: format!("subtask {i} reported twice (by {first} and {w})"),
                };
            }
            None => {
                return Candidate::Refused {
                    attempt: newest,
                    why: format!("subtask {i} reported by {w} is out of range (parallelism {parallelism})"),
                };
            }
        }
    }
    match by_subtask.iter().cloned().collect::<Option<Vec<String>>>() {
        Some(assignment) => Candidate::Found { attempt: newest, assignment },
        None if gave_up => {
            let missing: Vec<usize> =
                by_subtask.iter().enumerate().filter(|(_, w)| w.is_none()).map(|(i, _)| i).collect();
            Candidate::Refused { attempt: newest, why: format!("subtasks {missing:?} are not running any more") }
        }
        None => Candidate::Wait,
    }
}

/// What to cancel when a job is not adopted: each reporting worker, once, with the newest
/// attempt *it* reported (its subtasks up to that attempt stop, and no older one may start
/// there). Never another worker's attempt: a report naming a forged, far-future attempt would
/// otherwise cancel every worker's subtasks of the job and fence all its future attempts there.
pub fn cancels(reported: &[Reported]) -> Vec<(String, u64)> {
    let mut out: Vec<(String, u64)> = Vec::new();
    for (w, a, _) in reported {
        match out.iter_mut().find(|(x, _)| x == w) {
            Some((_, newest)) => *newest = (*newest).max(*a),
            None => out.push((w.clone(), *a)),
        }
    }
    out
}

/// The stored checkpoint pointers as this leader read them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    /// The read failed (connection lost, ...): unknown.
    Unread,
    /// Read back: the newest stored checkpoint, if any.
    Latest(Option<u64>),
}

/// What the master checked about a [`Candidate::Found`] attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facts {
    /// The guarded attempt counter: the newest attempt ever taken (`Err`: unreadable).
    pub last_attempt: Result<Option<u64>, String>,
    pub stored: Stored,
    /// Per reported subtask of the attempt: `(subtask, last acknowledged, last committed)`.
    pub checkpoints: Vec<(u32, u64, u64)>,
}

/// How to adopt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub attempt: u64,
    pub assignment: Vec<String>,
    /// One adoption command per worker, in the order of the subtasks' first appearance.
    pub per_worker: Vec<(String, Vec<u32>)>,
    /// Announce this checkpoint as complete again (the latest stored one).
    pub announce: Option<u64>,
    /// Abort these checkpoints (acknowledged, never completed).
    pub abort: Vec<u64>,
    /// The highest checkpoint any subtask acknowledged / committed (for the log).
    pub acked: u64,
    pub committed: u64,
}

/// The second question: may the found attempt be adopted, given the facts? `Err(why)`:
/// restart as usual and cancel what was reported of the attempt.
pub fn decide(attempt: u64, assignment: Vec<String>, facts: &Facts) -> Result<Plan, String> {
    match &facts.last_attempt {
        Ok(Some(last)) if *last == attempt => {}
        Ok(last) => {
            return Err(format!("a newer attempt was taken (the counter names {last:?}, {attempt} was reported)"))
        }
        Err(e) => return Err(format!("cannot read the attempt counter: {e}")),
    }
    let acked = facts.checkpoints.iter().map(|r| r.1).max().unwrap_or(0);
    let committed = facts.checkpoints.iter().map(|r| r.2).max().unwrap_or(0);
    if let Stored::Latest(latest) = facts.stored {
        if let Some((i, _, c)) = facts.checkpoints.iter().find(|r| r.2 > latest.unwrap_or(0)) {
            return Err(match latest {
                Some(l) => {
                    format!("subtask {i} reports checkpoint {c} committed, beyond the latest stored checkpoint {l}")
                }
                None => format!("subtask {i} reports checkpoint {c} committed, but no checkpoint is stored"),
            });
        }
    }
    let mut per_worker: Vec<(String, Vec<u32>)> = Vec::new();
    for (i, w) in assignment.iter().enumerate() {
        match per_worker.iter_mut().find(|(x, _)| x == w) {
            Some((_, v)) => v.push(i as u32),
            None => per_worker.push((w.clone(), vec![i as u32])),
        }
    }
    let (announce, abort) = match facts.stored {
        Stored::Latest(latest) => (latest, never_completed(latest, acked)),
        Stored::Unread => (None, vec![]),
    };
    Ok(Plan { attempt, assignment, per_worker, announce, abort, acked, committed })
}

/// The checkpoints acknowledged (up to `acked`) but never completed when `latest` is the newest
/// stored one: `latest + 1 ..= acked`, at most the last [`MAX_ABORTED`].
fn never_completed(latest: Option<u64>, acked: u64) -> Vec<u64> {
    let first = latest.map_or(1, |l| l + 1).max(acked.saturating_sub(MAX_ABORTED - 1));
    (first..=acked).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(w: &str, attempt: u64, subtask: u32) -> Reported {
        (w.to_string(), attempt, subtask)
    }

    fn facts(last: Option<u64>, stored: Stored, checkpoints: &[(u32, u64, u64)]) -> Facts {
        Facts { last_attempt: Ok(last), stored, checkpoints: checkpoints.to_vec() }
    }

    #[test]
    fn only_a_complete_report_of_the_newest_attempt_is_a_candidate() {
        assert_eq!(candidate(2, &[], false), Candidate::Wait, "nobody registered yet");
        assert_eq!(candidate(2, &[], true), Candidate::Nothing);
        // Partial: wait, then refuse naming what is missing.
        let partial = [r("w1", 5, 0)];
        assert_eq!(candidate(2, &partial, false), Candidate::Wait);
        assert_eq!(
            candidate(2, &partial, true),
            Candidate::Refused { attempt: 5, why: "subtasks [1] are not running any more".into() }
        );
        // An older attempt's leftovers do not count, and do not complete the newer one.
        let mixed = [r("w1", 4, 1), r("w1", 5, 0), r("w2", 4, 0)];
        assert_eq!(candidate(2, &mixed, false), Candidate::Wait);
        let full = [r("w1", 4, 1), r("w1", 5, 0), r("w2", 5, 1)];
        assert_eq!(
            candidate(2, &full, false),
            Candidate::Found { attempt: 5, assignment: vec!["w1".into(), "w2".into()] }
        );
        // Twice, or out of range: refused at once (a stranger's or a stale worker's report).
        let twice = [r("w1", 5, 0), r("w2", 5, 0), r("w2", 5, 1)];
        assert!(matches!(candidate(2, &twice, false), Candidate::Refused { attempt: 5, why } if why.contains("twice")));
        let beyond = [r("w1", 5, 0), r("w1", 5, 1), r("w1", 5, 2)];
        assert!(
            matches!(candidate(2, &beyond, false), Candidate::Refused { attempt: 5, why } if why.contains("out of range"))
        );
    }

    #[test]
    fn each_worker_is_cancelled_up_to_its_own_attempt_only() {
        let reported = [r("w1", 5, 0), r("w1", 4, 1), r("w2", 5, 1), r("w9", u64::MAX, 0)];
        assert_eq!(
            cancels(&reported),
            vec![("w1".to_string(), 5), ("w2".to_string(), 5), ("w9".to_string(), u64::MAX)],
            "the forged attempt of w9 reaches w9 alone"
        );
        assert!(cancels(&[]).is_empty());
    }

    #[test]
    fn only_the_newest_attempt_ever_taken_is_adopted() {
        let a = vec!["w1".to_string(), "w2".to_string()];
        let stored = Stored::Latest(Some(3));
        assert!(decide(5, a.clone(), &facts(Some(5), stored, &[])).is_ok());
        let newer = decide(5, a.clone(), &facts(Some(6), stored, &[])).unwrap_err();
        assert!(newer.contains("newer attempt"), "{newer}");
        assert!(decide(5, a.clone(), &facts(None, stored, &[])).is_err(), "no attempt was ever taken");
        let unread = Facts { last_attempt: Err("connection loss".into()), stored, checkpoints: vec![] };
        assert!(decide(5, a, &unread).unwrap_err().contains("connection loss"));
    }

    #[test]
    fn a_checkpoint_committed_beyond_what_is_stored_refuses() {
        let a = vec!["w1".to_string(), "w2".to_string()];
        // (subtask, last acked, last committed)
        let fine = [(0, 4, 3), (1, 4, 3)];
        assert!(decide(5, a.clone(), &facts(Some(5), Stored::Latest(Some(3)), &fine)).is_ok());
        assert!(
            decide(5, a.clone(), &facts(Some(5), Stored::Latest(Some(4)), &fine)).is_ok(),
            "acked beyond the latest is normal (in flight)"
        );
        let ahead = [(0, 5, 3), (1, 5, 5)];
        let why = decide(5, a.clone(), &facts(Some(5), Stored::Latest(Some(4)), &ahead)).unwrap_err();
        assert!(
            why.contains("subtask 1") && why.contains("checkpoint 5") && why.contains("stored checkpoint 4"),
            "{why}"
        );
        let none = decide(5, a.clone(), &facts(Some(5), Stored::Latest(None), &ahead)).unwrap_err();
        assert!(none.contains("no checkpoint is stored"), "{none}");
        assert!(
            decide(5, a.clone(), &facts(Some(5), Stored::Unread, &ahead)).is_ok(),
            "unread pointers: nothing to compare with"
        );
        assert!(decide(5, a, &facts(Some(5), Stored::Latest(None), &[(0, 0, 0), (1, 2, 0)])).is_ok());
    }

    #[test]
    fn an_adoption_announces_the_latest_and_aborts_what_never_completed() {
        let a = vec!["w1".to_string(), "w2".to_string(), "w1".to_string()];
        let plan = decide(5, a, &facts(Some(5), Stored::Latest(Some(3)), &[(0, 5, 3), (1, 4, 3), (2, 5, 2)])).unwrap();
        assert_eq!(plan.per_worker, vec![("w1".to_string(), vec![0, 2]), ("w2".to_string(), vec![1])]);
        assert_eq!((plan.announce, plan.abort.clone(), plan.acked, plan.committed), (Some(3), vec![4, 5], 5, 3));
        // Nothing stored yet: every acknowledged one was never completed; nothing to announce.
        let plan = decide(1, vec!["w".into()], &facts(Some(1), Stored::Latest(None), &[(0, 2, 0)])).unwrap();
        assert_eq!((plan.announce, plan.abort), (None, vec![1, 2]));
        // Unread pointers: neither (a pointer might exist for an acknowledged one).
        let plan = decide(1, vec!["w".into()], &facts(Some(1), Stored::Unread, &[(0, 2, 0)])).unwrap();
        assert_eq!((plan.announce, plan.abort), (None, vec![]));
        // Bounded to the last 16.
        let plan = decide(1, vec!["w".into()], &facts(Some(1), Stored::Latest(Some(1)), &[(0, 100, 1)])).unwrap();
        assert_eq!(plan.abort, (85..=100).collect::<Vec<u64>>());
        assert!(never_completed(Some(7), 0).is_empty());
        assert!(never_completed(Some(3), 3).is_empty());
    }
}
