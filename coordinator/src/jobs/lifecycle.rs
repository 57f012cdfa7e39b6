//! The job lifecycle as a pure engine (issue 7's redesign, first part; the checkpoint
//! coordinator is the other pure engine, [`super::checkpoint`]): typed job and subtask states,
//! how an attempt can end ([`Outcome`]), and what the job master does next ([`Next`]) under the
//! job's restart strategy. No I/O and no clock: the job master ([`super::master`]) carries out
//! each decision (stopping tasks, recording the end durably, waiting, restoring).
//!
//! The rules it owns:
//! * a failure spends one restart; past the strategy's attempts the job ends FAILED, naming
//!   how many restarts it had;
//! * a suspension of this master's leadership (the session lives, the epoch will act again)
//!   spends no restart: the job is restarted from its latest checkpoint once it may act;
//! * an end (FINISHED, CANCELED, FAILED) is final: no later outcome restarts the job.

use std::time::Duration;

use keel_job::RestartStrategy;

/// A job's state, as the REST API names it (Flink's names, plus `SCHEDULING`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobState {
    Created,
    /// Waiting for slots and deploying an attempt.
    Scheduling,
    Running,
    Restarting,
    Finished,
    Canceled,
    Failed,
}

impl JobState {
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Created => "CREATED",
            JobState::Scheduling => "SCHEDULING",
            JobState::Running => "RUNNING",
            JobState::Restarting => "RESTARTING",
            JobState::Finished => "FINISHED",
            JobState::Canceled => "CANCELED",
            JobState::Failed => "FAILED",
        }
    }
}

/// How a job ended: the states that are never left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Terminal {
    Finished,
    Canceled,
    Failed,
}

impl Terminal {
    pub fn state(self) -> JobState {
        match self {
            Terminal::Finished => JobState::Finished,
            Terminal::Canceled => JobState::Canceled,
            Terminal::Failed => JobState::Failed,
        }
    }

    pub fn as_str(self) -> &'static str {
        self.state().as_str()
    }
}

/// A subtask's state as the job master knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubtaskState {
    Created,
    Deploying,
    Running,
    Finished,
}

impl SubtaskState {
    pub fn as_str(self) -> &'static str {
        match self {
            SubtaskState::Created => "CREATED",
            SubtaskState::Deploying => "DEPLOYING",
            SubtaskState::Running => "RUNNING",
            SubtaskState::Finished => "FINISHED",
        }
    }
}

/// Whether every subtask of an attempt finished (the job then ends FINISHED).
pub fn all_finished(subtasks: &[SubtaskState]) -> bool {
    !subtasks.is_empty() && subtasks.iter().all(|s| *s == SubtaskState::Finished)
}

/// How one attempt of a job ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The job ended with this state and reason.
    Ended(Terminal, String),
    /// A failure (the reason): restart under the strategy.
    Failover(String),
    /// This master cannot act (its leadership is suspended or gone): stop without touching
    /// anything; the runtime finds out which.
    SessionEnded,
}

/// What the job master does after an [`Outcome`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// Wait until this master acts again at its epoch (or its session ends), then restart the
    /// job from its latest checkpoint; no restart is spent.
    ResumeAfterSuspension,
    /// Stop the tasks, mark the job RESTARTING (the reason as its failure), wait `delay`, then
    /// restore from the latest checkpoint. `restart` of `of`.
    Restart { restart: u32, of: u32, delay: Duration, reason: String },
    /// Stop the tasks and record the end durably.
    End(Terminal, String),
}

/// The restart bookkeeping of one job master.
#[derive(Debug, Clone)]
pub struct Lifecycle {
    strategy: RestartStrategy,
    restarts: u32,
    ended: Option<Terminal>,
}

impl Lifecycle {
    pub fn new(strategy: RestartStrategy) -> Self {
        Self { strategy, restarts: 0, ended: None }
    }

    /// Restarts spent so far.
    pub fn restarts(&self) -> u32 {
        self.restarts
    }

    /// The decision for `outcome`. Once an end was decided every later outcome repeats it:
    /// a job whose end was decided never runs again.
    pub fn on_outcome(&mut self, outcome: Outcome) -> Next {
        if let Some(t) = self.ended {
            return Next::End(t, format!("the job already ended {}", t.as_str()));
        }
        match outcome {
            Outcome::SessionEnded => Next::ResumeAfterSuspension,
            Outcome::Ended(t, reason) => {
                self.ended = Some(t);
                Next::End(t, reason)
            }
            Outcome::Failover(reason) => {
                let (attempts, delay) = match self.strategy {
                    RestartStrategy::FixedDelay { attempts, delay } => (attempts, delay),
                    RestartStrategy::None => (0, Duration::ZERO),
                };
                if self.restarts >= attempts {
                    self.ended = Some(Terminal::Failed);
                    return Next::End(
                        Terminal::Failed,
                        format!("{reason} (restart strategy exhausted after {} restart(s))", self.restarts),
                    );
                }
                self.restarts += 1;
                Next::Restart { restart: self.restarts, of: attempts, delay, reason }
            }
        }
    }

    /// A failure before the job could start (its spec no longer parses, its savepoint cannot
    /// be read, no checkpoint is usable): the job ends FAILED without a restart.
    pub fn fail_to_start(&mut self, reason: String) -> Next {
        self.ended = Some(Terminal::Failed);
        Next::End(Terminal::Failed, reason)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixed(attempts: u32) -> RestartStrategy {
        RestartStrategy::FixedDelay { attempts, delay: Duration::from_millis(250) }
    }

    #[test]
    fn failures_spend_restarts_until_the_strategy_is_exhausted() {
        let mut l = Lifecycle::new(fixed(2));
        assert_eq!(
            l.on_outcome(Outcome::Failover("worker w1 was lost".into())),
            Next::Restart { restart: 1, of: 2, delay: Duration::from_millis(250), reason: "worker w1 was lost".into() }
        );
        assert!(matches!(l.on_outcome(Outcome::Failover("x".into())), Next::Restart { restart: 2, of: 2, .. }));
        assert_eq!(
            l.on_outcome(Outcome::Failover("subtask 0 failed".into())),
            Next::End(Terminal::Failed, "subtask 0 failed (restart strategy exhausted after 2 restart(s))".into())
        );
        assert_eq!(l.restarts(), 2);
    }

    #[test]
    fn no_restart_strategy_fails_at_the_first_failure() {
        let mut l = Lifecycle::new(RestartStrategy::None);
        assert_eq!(
            l.on_outcome(Outcome::Failover("boom".into())),
            Next::End(Terminal::Failed, "boom (restart strategy exhausted after 0 restart(s))".into())
        );
    }

    #[test]
    fn a_suspension_spends_no_restart() {
        let mut l = Lifecycle::new(fixed(1));
        assert_eq!(l.on_outcome(Outcome::SessionEnded), Next::ResumeAfterSuspension);
        assert_eq!(l.on_outcome(Outcome::SessionEnded), Next::ResumeAfterSuspension);
        assert!(matches!(l.on_outcome(Outcome::Failover("x".into())), Next::Restart { restart: 1, of: 1, .. }));
        assert_eq!(l.restarts(), 1);
    }

    #[test]
    fn an_end_is_final() {
        let mut l = Lifecycle::new(fixed(3));
        assert_eq!(
            l.on_outcome(Outcome::Ended(Terminal::Canceled, "canceled by request".into())),
            Next::End(Terminal::Canceled, "canceled by request".into())
        );
        // Whatever arrives afterwards (a late failure report, a suspension) never restarts it.
        assert!(matches!(l.on_outcome(Outcome::Failover("late".into())), Next::End(Terminal::Canceled, _)));
        assert!(matches!(l.on_outcome(Outcome::SessionEnded), Next::End(Terminal::Canceled, _)));
        let mut l = Lifecycle::new(fixed(3));
        assert_eq!(
            l.fail_to_start("no usable checkpoint".into()),
            Next::End(Terminal::Failed, "no usable checkpoint".into())
        );
        assert!(matches!(l.on_outcome(Outcome::Failover("x".into())), Next::End(Terminal::Failed, _)));
    }

    #[test]
    fn states_have_flinks_names_and_all_finished_needs_every_subtask() {
        assert_eq!(JobState::Restarting.as_str(), "RESTARTING");
        assert_eq!(Terminal::Canceled.as_str(), "CANCELED");
        assert_eq!(SubtaskState::Deploying.as_str(), "DEPLOYING");
        assert!(!all_finished(&[]));
        assert!(!all_finished(&[SubtaskState::Finished, SubtaskState::Running]));
        assert!(all_finished(&[SubtaskState::Finished, SubtaskState::Finished]));
    }
}
