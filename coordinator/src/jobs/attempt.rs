//! One running attempt of a job as a pure engine (issue 7's redesign): which task reports count,
//! how subtask states move, when the attempt ends, and what goes to its checkpoint coordinator
//! ([`super::checkpoint`], owned here). No I/O: the job master's runtime ([`super::master`])
//! feeds reports and lost workers in and carries out what comes back.
//!
//! The rules:
//! * a report counts only for this attempt, for a subtask in range, and from the worker the
//!   subtask is assigned to (deployed there or adopted from there); anything else is ignored
//!   (a late report of an older attempt, a misrouted or forged one) and changes nothing;
//! * a subtask that failed fails the attempt over; a worker lost that runs any subtask of the
//!   attempt fails it over; a worker that runs none of it changes nothing;
//! * a subtask that finished stands in for later checkpoints with its end-of-input snapshot;
//!   when every subtask finished, the job ends FINISHED.

use keel_proto::v1::SubtaskSnapshot;

use super::checkpoint::{CheckpointCoordinator, Command, Event};
use super::lifecycle::{all_finished, Outcome, SubtaskState, Terminal};

/// What a task reported about its subtask.
#[derive(Debug, Clone, PartialEq)]
pub enum Report {
    Running,
    Failed(String),
    /// `end_of_input`: its end-of-input snapshot from the latest completed checkpoint, if any.
    Finished {
        end_of_input: Option<SubtaskSnapshot>,
    },
    Declined {
        id: u64,
        reason: String,
    },
    Ack {
        id: u64,
        snapshot: SubtaskSnapshot,
    },
}

/// What the runtime does about a report.
#[derive(Debug, Clone, PartialEq)]
pub enum Reaction {
    /// Not this attempt's, or not from the subtask's worker: nothing changed.
    Ignored(String),
    /// `states_changed`: publish the subtask states; then carry out the coordinator's
    /// commands in order.
    Go { states_changed: bool, commands: Vec<Command> },
    /// The attempt ends.
    End(Outcome),
}

/// One attempt: its number, where each subtask runs, their states, its checkpoints.
#[derive(Debug, Clone)]
pub struct Attempt {
    number: u64,
    assignment: Vec<String>,
    states: Vec<SubtaskState>,
    /// The checkpoint coordinator of this attempt.
    pub coord: CheckpointCoordinator,
}

impl Attempt {
    /// Attempt `number` with subtask `i` on `assignment[i]`, every subtask in `state`.
    pub fn new(number: u64, assignment: Vec<String>, state: SubtaskState) -> Self {
        let p = assignment.len() as u32;
        Self { number, states: vec![state; p as usize], assignment, coord: CheckpointCoordinator::new(number, p) }
    }

    /// No attempt yet (number 0, no subtasks).
    pub fn none() -> Self {
        Self::new(0, vec![], SubtaskState::Created)
    }

    pub fn number(&self) -> u64 {
        self.number
    }

    pub fn assignment(&self) -> &[String] {
        &self.assignment
    }

    pub fn states(&self) -> &[SubtaskState] {
        &self.states
    }

    /// The worker of subtask `i`.
    pub fn worker(&self, subtask: u32) -> Option<&str> {
        self.assignment.get(subtask as usize).map(String::as_str)
    }

    /// Whether `worker` runs any subtask of this attempt.
    pub fn runs_on(&self, worker: &str) -> bool {
        self.assignment.iter().any(|w| w == worker)
    }

    /// The workers running `subtasks`, each once, with those of the subtasks it runs, in the
    /// order of first appearance. A worker's checkpoint commands reach every subtask of the
    /// attempt it runs, so each worker gets one command per checkpoint: one per subtask would
    /// trigger a worker's subtasks several times, and a subtask declines a repeated trigger
    /// (measured before: with 4 subtasks on one worker, 9 of 11 checkpoints aborted).
    pub fn workers_of(&self, subtasks: impl IntoIterator<Item = u32>) -> Vec<(String, Vec<u32>)> {
        let mut out: Vec<(String, Vec<u32>)> = Vec::new();
        for i in subtasks {
            let Some(w) = self.worker(i) else { continue };
            match out.iter_mut().find(|(x, _)| x == w) {
                Some((_, mine)) => mine.push(i),
                None => out.push((w.to_string(), vec![i])),
            }
        }
        out
    }

    /// The first of `mine` (subtasks assigned to one worker) that its worker's trigger did not
    /// reach (`reached`, from its reply): that subtask is not running there although no report
    /// said so.
    pub fn unreached(mine: &[u32], reached: &[u32]) -> Option<u32> {
        mine.iter().copied().find(|i| !reached.contains(i))
    }

    /// A worker was lost (missed heartbeats, refused commands, registered anew).
    pub fn on_worker_lost(&self, worker: &str) -> Option<Outcome> {
        self.runs_on(worker).then(|| Outcome::Failover(format!("worker {worker} was lost")))
    }

    /// A task report from `worker` about `subtask` of attempt `attempt`.
    pub fn on_report(&mut self, worker: &str, attempt: u64, subtask: u32, report: Report) -> Reaction {
        if attempt != self.number {
            return Reaction::Ignored(format!("a report of attempt {attempt}; the current one is {}", self.number));
        }
        match self.worker(subtask) {
            None => return Reaction::Ignored(format!("subtask {subtask} is out of range")),
            Some(w) if w != worker => {
                return Reaction::Ignored(format!("subtask {subtask} runs on {w}, not on {worker}"));
            }
            Some(_) => {}
        }
        let i = subtask as usize;
        let event = match report {
            Report::Running => {
                let changed = self.states[i] != SubtaskState::Running && self.states[i] != SubtaskState::Finished;
                if changed {
                    self.states[i] = SubtaskState::Running;
                }
                return Reaction::Go { states_changed: changed, commands: vec![] };
            }
            Report::Failed(reason) => {
                return Reaction::End(Outcome::Failover(format!(
                    "subtask {subtask} failed on worker {worker}: {reason}"
                )));
            }
            Report::Finished { end_of_input } => {
                self.states[i] = SubtaskState::Finished;
                if all_finished(&self.states) {
                    return Reaction::End(Outcome::Ended(Terminal::Finished, String::new()));
                }
                // A checkpoint in flight will get no ack from it: its final snapshot stands in.
                let commands = self.coord.on(Event::Finished { attempt, subtask, end_of_input });
                return Reaction::Go { states_changed: true, commands };
            }
            Report::Declined { id, reason } => Event::Declined { attempt, subtask, id, reason },
            Report::Ack { id, snapshot } => Event::Ack { attempt, subtask, id, snapshot },
        };
        Reaction::Go { states_changed: false, commands: self.coord.on(event) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attempt() -> Attempt {
        Attempt::new(7, vec!["w1".into(), "w2".into()], SubtaskState::Deploying)
    }

    #[test]
    fn only_the_assigned_worker_of_this_attempt_is_heard() {
        let mut a = attempt();
        assert!(
            matches!(a.on_report("w1", 6, 0, Report::Failed("old".into())), Reaction::Ignored(m) if m.contains("attempt 6"))
        );
        assert!(
            matches!(a.on_report("w2", 7, 0, Report::Failed("forged".into())), Reaction::Ignored(m) if m.contains("runs on w1"))
        );
        assert!(
            matches!(a.on_report("w1", 7, 2, Report::Failed("range".into())), Reaction::Ignored(m) if m.contains("out of range"))
        );
        let finished = Report::Finished { end_of_input: None };
        assert!(matches!(a.on_report("w2", 7, 0, finished.clone()), Reaction::Ignored(_)));
        assert_eq!(a.states(), &[SubtaskState::Deploying, SubtaskState::Deploying], "nothing changed");
        assert!(matches!(
            a.on_report("w1", 7, 0, Report::Failed("disk full".into())),
            Reaction::End(Outcome::Failover(m)) if m == "subtask 0 failed on worker w1: disk full"
        ));
    }

    #[test]
    fn states_move_and_the_last_finish_ends_the_job() {
        let mut a = attempt();
        assert_eq!(a.on_report("w1", 7, 0, Report::Running), Reaction::Go { states_changed: true, commands: vec![] });
        assert_eq!(a.on_report("w1", 7, 0, Report::Running), Reaction::Go { states_changed: false, commands: vec![] });
        assert_eq!(a.states(), &[SubtaskState::Running, SubtaskState::Deploying]);
        // A checkpoint in flight: the finished subtask's end-of-input snapshot stands in.
        assert_eq!(a.coord.on(Event::Triggered { id: 3, savepoint: false }).len(), 1);
        let snap = SubtaskSnapshot { subtask: 0, end_of_input: true, ..Default::default() };
        assert_eq!(
            a.on_report("w1", 7, 0, Report::Finished { end_of_input: Some(snap) }),
            Reaction::Go { states_changed: true, commands: vec![] }
        );
        let ack = SubtaskSnapshot { subtask: 1, ..Default::default() };
        match a.on_report("w2", 7, 1, Report::Ack { id: 3, snapshot: ack }) {
            Reaction::Go { commands, .. } => {
                assert!(matches!(commands.as_slice(), [Command::Publish { id: 3, .. }]), "{commands:?}")
            }
            r => panic!("{r:?}"),
        }
        assert_eq!(a.on_report("w2", 7, 1, Report::Running), Reaction::Go { states_changed: true, commands: vec![] });
        assert_eq!(
            a.on_report("w2", 7, 1, Report::Finished { end_of_input: None }),
            Reaction::End(Outcome::Ended(Terminal::Finished, String::new()))
        );
    }

    #[test]
    fn each_worker_gets_one_checkpoint_command() {
        let a = Attempt::new(3, vec!["w1".into(), "w1".into(), "w2".into(), "w1".into()], SubtaskState::Running);
        assert_eq!(a.workers_of(0..4), vec![("w1".to_string(), vec![0, 1, 3]), ("w2".to_string(), vec![2])]);
        assert_eq!(a.workers_of([1, 2, 3]), vec![("w1".to_string(), vec![1, 3]), ("w2".to_string(), vec![2])]);
        assert_eq!(a.workers_of([3, 9]), vec![("w1".to_string(), vec![3])], "out of range: nobody");
    }

    #[test]
    fn a_subtask_the_trigger_did_not_reach_is_named() {
        assert_eq!(Attempt::unreached(&[0, 1, 3], &[0, 1, 3]), None);
        assert_eq!(Attempt::unreached(&[0, 1, 3], &[0, 3]), Some(1));
        assert_eq!(Attempt::unreached(&[0], &[0, 7]), None, "more reached than assigned: nothing missing");
    }

    #[test]
    fn only_a_lost_worker_of_this_attempt_fails_it_over() {
        let a = attempt();
        assert_eq!(a.on_worker_lost("w3"), None);
        assert_eq!(a.on_worker_lost("w2"), Some(Outcome::Failover("worker w2 was lost".into())));
        assert_eq!(Attempt::none().on_worker_lost("w1"), None);
    }
}
