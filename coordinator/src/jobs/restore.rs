//! Which retained checkpoint a job restarts from, as a pure engine (issue 7's redesign, hole 3:
//! a transient error must never turn into a permanent FAILED). No I/O: the job master
//! ([`super::master`]) lists the pointers, checks the checkpoints this engine asks for (the
//! metadata blob, the state manifests and files, the sink parts) and reports each answer.
//!
//! The rules:
//! * the newest retained checkpoint is tried first; an older one only when every newer one is
//!   *definitely* unusable (missing, corrupt, of another shape), and the fallback is named;
//! * any answer that is not definite (the pointer list unreadable, a blob unreadable for a
//!   reason other than missing or corrupt: connection lost, storage outage) ends the pass with
//!   [`Decision::Retry`]: the whole check is repeated later, nothing is decided on it;
//! * no retained checkpoint: start without one; every retained checkpoint definitely unusable:
//!   the job fails, naming each problem (never silently from scratch).

/// What a check of one checkpoint found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    Usable,
    /// Definitely unusable (missing, corrupt, another parallelism, ...).
    Unusable(String),
    /// No answer (connection lost, storage outage).
    Unknown(String),
}

/// The answer of a search.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Restore from checkpoint `id`; `skipped` names the newer, definitely unusable ones.
    From { id: u64, skipped: Vec<String> },
    /// No checkpoint is retained: start without one.
    Nothing,
    /// Every retained checkpoint is definitely unusable: the job fails with this reason.
    AllUnusable(String),
    /// No definite answer this time: search again later.
    Retry(String),
}

/// What to do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Check checkpoint `id` and report it with [`RestoreSearch::on`].
    Check(u64),
    Done(Decision),
}

/// One search over the retained checkpoints.
#[derive(Debug, Clone)]
pub struct RestoreSearch {
    /// Retained checkpoint ids not checked yet, newest last (popped first).
    left: Vec<u64>,
    any: bool,
    problems: Vec<String>,
}

impl RestoreSearch {
    /// Starts a search over the pointer list as read (`Err`: it could not be read).
    pub fn start(pointers: Result<Vec<u64>, String>) -> (RestoreSearch, Step) {
        let mut search = RestoreSearch { left: vec![], any: false, problems: vec![] };
        let ids = match pointers {
            Ok(ids) => ids,
            Err(e) => return (search, Step::Done(Decision::Retry(format!("cannot list checkpoints: {e}")))),
        };
        search.any = !ids.is_empty();
        search.left = ids;
        search.left.sort_unstable();
        search.left.dedup();
        let step = search.next();
        (search, step)
    }

    /// The answer of the check of checkpoint `id` (the one [`Step::Check`] named).
    pub fn on(&mut self, id: u64, check: Check) -> Step {
        match check {
            Check::Usable => Step::Done(Decision::From { id, skipped: std::mem::take(&mut self.problems) }),
            Check::Unknown(e) => Step::Done(Decision::Retry(format!("checkpoint {id}: {e}"))),
            Check::Unusable(e) => {
                self.problems.push(format!("checkpoint {id}: {e}"));
                self.next()
            }
        }
    }

    fn next(&mut self) -> Step {
        match self.left.pop() {
            Some(id) => Step::Check(id),
            None if !self.any => Step::Done(Decision::Nothing),
            None => Step::Done(Decision::AllUnusable(format!(
                "no usable checkpoint to recover from: {}",
                self.problems.join("; ")
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs a search with the given answers per checkpoint id, returning the ids checked (in
    /// order) and the decision.
    fn run(pointers: Result<Vec<u64>, String>, answer: impl Fn(u64) -> Check) -> (Vec<u64>, Decision) {
        let (mut s, mut step) = RestoreSearch::start(pointers);
        let mut checked = vec![];
        loop {
            match step {
                Step::Check(id) => {
                    checked.push(id);
                    step = s.on(id, answer(id));
                }
                Step::Done(d) => return (checked, d),
            }
        }
    }

    #[test]
    fn the_newest_usable_checkpoint_is_chosen() {
        assert_eq!(run(Ok(vec![3, 4, 5]), |_| Check::Usable), (vec![5], Decision::From { id: 5, skipped: vec![] }));
        assert_eq!(run(Ok(vec![]), |_| Check::Usable), (vec![], Decision::Nothing));
    }

    #[test]
    fn an_older_one_only_when_every_newer_one_is_definitely_unusable() {
        let (checked, d) =
            run(Ok(vec![3, 4, 5]), |id| if id > 3 { Check::Unusable("corrupt".into()) } else { Check::Usable });
        assert_eq!(checked, vec![5, 4, 3]);
        assert_eq!(
            d,
            Decision::From { id: 3, skipped: vec!["checkpoint 5: corrupt".into(), "checkpoint 4: corrupt".into()] }
        );
        let (_, d) = run(Ok(vec![4, 5]), |id| Check::Unusable(format!("missing {id}")));
        assert_eq!(
            d,
            Decision::AllUnusable(
                "no usable checkpoint to recover from: checkpoint 5: missing 5; checkpoint 4: missing 4".into()
            )
        );
    }

    /// Hole 3: a transient error never decides anything, however many checkpoints are left.
    #[test]
    fn an_unknown_answer_or_an_unreadable_list_retries_instead_of_failing() {
        let (checked, d) = run(Ok(vec![3, 4, 5]), |id| match id {
            5 => Check::Unusable("corrupt".into()),
            4 => Check::Unknown("storage outage".into()),
            _ => Check::Usable,
        });
        assert_eq!(checked, vec![5, 4], "stops at the unknown answer: never falls back past it");
        assert_eq!(d, Decision::Retry("checkpoint 4: storage outage".into()));
        let (checked, d) = run(Ok(vec![5]), |_| Check::Unknown("connection loss".into()));
        assert_eq!((checked, d), (vec![5], Decision::Retry("checkpoint 5: connection loss".into())));
        let (checked, d) = run(Err("connection loss".into()), |_| Check::Usable);
        assert_eq!((checked, d), (vec![], Decision::Retry("cannot list checkpoints: connection loss".into())));
    }
}
