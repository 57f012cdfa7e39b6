//! What a new leader's recovery pass does with each stored entry, as pure rules (issue 7's
//! redesign, hole 2: one unreadable entry must never stop the recovery of the others, and a
//! job that may have ended must never run again). No I/O: the job manager
//! ([`super::JobManager`]) reads each entry, turns the answer into a [`Read`] and carries out
//! what these functions say; a pass that is not complete is repeated with backoff while the
//! leader leads.
//!
//! The rules:
//! * a dirty result (the job ended, its cleanup unfinished) is cleaned up before any job is
//!   started: a job whose end was recorded never runs again;
//! * a job is started only when its result entry was read back and is absent, and its graph was
//!   read back: an unreadable result entry means the job *may* have ended, so it is reported
//!   (`RECOVERY_BLOCKED`) and never started on a guess;
//! * a definitely unreadable entry (corrupt, missing) is reported and affects only its own job;
//!   an entry that cannot be read *yet* (connection lost, storage outage) leaves the pass
//!   incomplete: it is retried;
//! * losing leadership ends the pass at once (the next leader starts its own).

/// One read of a stored entry, classified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Read<T> {
    Ok(T),
    /// A definite answer: the entry is corrupt or missing.
    Definite(String),
    /// No answer yet (connection lost, storage outage).
    Unknown(String),
    /// This leader lost its leadership (or its session).
    Lost,
}

/// A result entry as read: `Some(true)` dirty (cleanup unfinished), `Some(false)` clean.
pub type ResultRead = Read<Option<bool>>;

/// What to do after reading one entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Go on with this entry (clean up a dirty result; read the job's graph; start the job).
    Proceed,
    /// Nothing to do for this entry (a clean result; a job that ended).
    Skip,
    /// Reported against the job (`RECOVERY_BLOCKED`), retried in the next pass; others go on.
    Blocked(String),
    /// Logged only (the entry blocks no job: a lone garbage result keeps its id from reuse).
    Logged(String),
    /// Not readable yet: the pass is incomplete and retried.
    Retry(String),
    /// Leadership is gone: end the pass.
    Abort,
}

/// A result entry met in the first phase (results before jobs).
pub fn on_result(read: &ResultRead) -> Action {
    match read {
        Read::Ok(Some(true)) => Action::Proceed,
        Read::Ok(_) => Action::Skip,
        Read::Definite(e) => Action::Logged(format!("unreadable job result entry: {e}")),
        Read::Unknown(e) => Action::Retry(format!("cannot read a job result yet: {e}")),
        Read::Lost => Action::Abort,
    }
}

/// A stored job's result entry, read before its graph: only "absent" lets it run.
pub fn on_job_result(read: &ResultRead) -> Action {
    match read {
        Read::Ok(None) => Action::Proceed,
        Read::Ok(Some(_)) => Action::Skip,
        Read::Definite(e) => {
            Action::Blocked(format!("its result entry is unreadable, so it may have ended; not recovered: {e}"))
        }
        Read::Unknown(e) => Action::Retry(format!("cannot read the job's result entry yet: {e}")),
        Read::Lost => Action::Abort,
    }
}

/// A stored job's graph.
pub fn on_graph<T>(read: &Read<T>) -> Action {
    match read {
        Read::Ok(_) => Action::Proceed,
        Read::Definite(e) => Action::Blocked(format!("cannot load a stored job graph; not recovered (data kept): {e}")),
        Read::Unknown(e) => Action::Retry(format!("cannot load the job graph yet: {e}")),
        Read::Lost => Action::Abort,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hole 2: garbage, an outage or a lost connection on one entry decides that entry only.
    #[test]
    fn one_bad_entry_decides_only_its_own_job() {
        let garbage: ResultRead = Read::Definite("corrupt znode".into());
        let outage: ResultRead = Read::Unknown("connection loss".into());
        assert!(matches!(on_result(&garbage), Action::Logged(_)), "a lone garbage result blocks nothing");
        assert!(matches!(on_result(&outage), Action::Retry(_)));
        assert!(matches!(on_job_result(&garbage), Action::Blocked(m) if m.contains("may have ended")));
        assert!(matches!(on_job_result(&outage), Action::Retry(_)));
        assert!(matches!(on_graph::<()>(&Read::Definite("bad".into())), Action::Blocked(m) if m.contains("data kept")));
        assert!(matches!(on_graph::<()>(&Read::Unknown("outage".into())), Action::Retry(_)));
        for a in [on_result(&Read::Lost), on_job_result(&Read::Lost), on_graph::<()>(&Read::Lost)] {
            assert_eq!(a, Action::Abort);
        }
    }

    /// A job runs again only when its result entry is known absent; a dirty result is cleaned
    /// up first.
    #[test]
    fn only_a_job_known_not_to_have_ended_is_started() {
        assert_eq!(on_result(&Read::Ok(Some(true))), Action::Proceed, "dirty: finish its cleanup");
        assert_eq!(on_result(&Read::Ok(Some(false))), Action::Skip);
        assert_eq!(on_result(&Read::Ok(None)), Action::Skip);
        assert_eq!(on_job_result(&Read::Ok(None)), Action::Proceed);
        assert_eq!(on_job_result(&Read::Ok(Some(true))), Action::Skip, "ended (dirty): never run again");
        assert_eq!(on_job_result(&Read::Ok(Some(false))), Action::Skip, "ended (clean): never run again");
        assert_eq!(on_graph(&Read::Ok(())), Action::Proceed);
    }
}
