//! The checkpoint coordinator of one job attempt, as a pure engine: events in (a checkpoint
//! id taken, acknowledgements, declines, subtasks finishing, the deadline, the store's
//! answer), commands out (trigger, publish, notify complete / aborted). No I/O, no clock, no
//! channels: the job master's runtime ([`super::master`]) carries the commands out against
//! workers, storage and ZooKeeper and feeds the results back. Every rule about which
//! acknowledgement counts and when files may be deleted lives here, and the unit tests
//! below pin the exact commands for each interleaving.
//!
//! The rules:
//! * one checkpoint at a time; an event of another attempt, or about another checkpoint
//!   id, changes nothing;
//! * a checkpoint is published once every subtask acknowledged it, a finished subtask's
//!   end-of-input snapshot standing in for its acknowledgement;
//! * once publishing started, the deadline and declines no longer apply: only the store's
//!   answer decides;
//! * the store's answer is [`StoreOutcome::Committed`] (pointer written: notify complete,
//!   sinks commit), [`StoreOutcome::NotPublished`] (definitely invisible: notify aborted, the
//!   subtasks may delete what they uploaded) or [`StoreOutcome::Unknown`] (the pointer may be
//!   in ZooKeeper: tell nobody to delete anything — a later recovery may restore it);
//! * a worker that answers a trigger with "no subtask of this attempt runs here" aborts the
//!   checkpoint; after [`MISSING_AFTER`] such answers in a row for the same (not finished)
//!   subtask, with no acknowledgement from it in between, the subtask is declared missing
//!   ([`Command::SubtaskMissing`]: the runtime fails the attempt over). The job would
//!   otherwise stay RUNNING forever on a subtask that is gone without a report (one answer is
//!   not enough: a subtask that just finished refuses the trigger before its report arrives).

use std::collections::BTreeMap;

/// How many triggers in a row a subtask's worker must deny running it before the subtask is
/// declared missing.
pub const MISSING_AFTER: u32 = 3;

use keel_proto::v1::SubtaskSnapshot;

/// What publishing a checkpoint's pointer came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreOutcome {
    /// The guarded pointer is written: the checkpoint is complete.
    Committed,
    /// Definitely not visible (blob write failed, or the guard refused the pointer).
    NotPublished(String),
    /// May or may not be visible (connection lost mid-write, session expired).
    Unknown(String),
}

/// An input to the coordinator.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A checkpoint id was taken for this attempt (`savepoint`: a savepoint was asked for).
    Triggered { id: u64, savepoint: bool },
    /// A subtask acknowledged checkpoint `id` with its snapshot.
    Ack { attempt: u64, subtask: u32, id: u64, snapshot: SubtaskSnapshot },
    /// A subtask declined checkpoint `id`.
    Declined { attempt: u64, subtask: u32, id: u64, reason: String },
    /// A subtask finished; `end_of_input` is its end-of-input snapshot from the latest
    /// completed checkpoint, if there is one (it stands in for later acknowledgements).
    Finished { attempt: u64, subtask: u32, end_of_input: Option<SubtaskSnapshot> },
    /// The checkpoint's deadline passed.
    Expired { id: u64 },
    /// The attempt ends, or a savepoint supersedes the periodic checkpoint.
    Abort { reason: String },
    /// The store answered the [`Command::Publish`] of checkpoint `id`.
    Published { id: u64, outcome: StoreOutcome },
    /// Sending the trigger of checkpoint `id` to subtask `subtask` failed; `not_running`: its
    /// worker answered that no subtask of this attempt runs there (otherwise: unreachable,
    /// refused for another reason).
    TriggerRefused { id: u64, subtask: u32, not_running: bool, reason: String },
}

/// What the runtime must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Send the trigger of checkpoint `id` to these (not finished) subtasks.
    Trigger { id: u64, subtasks: Vec<u32> },
    /// Write the metadata blob, then the guarded pointer; answer with [`Event::Published`].
    Publish { id: u64, savepoint: bool, snapshots: Vec<SubtaskSnapshot> },
    /// The checkpoint completed: tell the subtasks (sinks commit).
    NotifyComplete { id: u64 },
    /// The checkpoint will never complete and is definitely invisible: tell the subtasks
    /// (they may delete what they uploaded for it).
    NotifyAborted { id: u64, reason: String },
    /// The checkpoint failed with an unknown outcome: record it, delete nothing.
    FailedUnknown { id: u64, reason: String },
    /// Subtask `subtask` is not running where it was deployed or adopted (its worker denied
    /// it [`MISSING_AFTER`] times in a row): fail the attempt over.
    SubtaskMissing { subtask: u32, reason: String },
}

#[derive(Debug, Clone, PartialEq)]
enum Phase {
    /// Waiting for acknowledgements.
    Collecting,
    /// Every acknowledgement is in; the store is being written.
    Publishing,
}

#[derive(Debug, Clone)]
struct Pending {
    id: u64,
    savepoint: bool,
    phase: Phase,
    acks: BTreeMap<u32, SubtaskSnapshot>,
}

/// The coordinator of one attempt with `parallelism` subtasks.
#[derive(Debug, Clone)]
pub struct CheckpointCoordinator {
    attempt: u64,
    parallelism: u32,
    pending: Option<Pending>,
    /// End-of-input snapshots of finished subtasks.
    finished: BTreeMap<u32, Option<SubtaskSnapshot>>,
    /// Per subtask, triggers its worker denied running it since its last acknowledgement.
    denied: BTreeMap<u32, u32>,
}

impl CheckpointCoordinator {
    pub fn new(attempt: u64, parallelism: u32) -> Self {
        Self { attempt, parallelism, pending: None, finished: BTreeMap::new(), denied: BTreeMap::new() }
    }

    /// The checkpoint in flight, if any.
    pub fn pending(&self) -> Option<u64> {
        self.pending.as_ref().map(|p| p.id)
    }

    /// Whether the pending checkpoint is being published (its deadline no longer applies).
    pub fn publishing(&self) -> bool {
        self.pending.as_ref().is_some_and(|p| p.phase == Phase::Publishing)
    }

    /// Whether a new checkpoint may be triggered (none in flight).
    pub fn can_trigger(&self) -> bool {
        self.pending.is_none()
    }

    /// Whether subtask `i` finished.
    pub fn is_finished(&self, subtask: u32) -> bool {
        self.finished.contains_key(&subtask)
    }

    /// Feeds one event; returns the commands to carry out, in order.
    pub fn on(&mut self, event: Event) -> Vec<Command> {
        match event {
            Event::Triggered { id, savepoint } => {
                if self.pending.is_some() {
                    return vec![];
                }
                let mut acks = BTreeMap::new();
                for (i, snap) in &self.finished {
                    if let Some(s) = snap {
                        acks.insert(*i, s.clone());
                    }
                }
                let subtasks: Vec<u32> = (0..self.parallelism).filter(|i| !self.finished.contains_key(i)).collect();
                self.pending = Some(Pending { id, savepoint, phase: Phase::Collecting, acks });
                let mut out = vec![Command::Trigger { id, subtasks }];
                out.extend(self.publish_if_complete());
                out
            }
            Event::Ack { attempt, subtask, id, snapshot } => {
                if attempt != self.attempt || subtask >= self.parallelism {
                    return vec![];
                }
                // It runs: whatever its worker denied before is over.
                self.denied.remove(&subtask);
                match self.pending.as_mut() {
                    Some(p) if p.id == id && p.phase == Phase::Collecting => {
                        p.acks.insert(subtask, snapshot);
                    }
                    _ => return vec![],
                }
                self.publish_if_complete()
            }
            Event::Declined { attempt, subtask, id, reason } => {
                if attempt != self.attempt {
                    return vec![];
                }
                match &self.pending {
                    Some(p) if p.id == id && p.phase == Phase::Collecting => {
                        self.pending = None;
                        vec![Command::NotifyAborted { id, reason: format!("subtask {subtask} declined: {reason}") }]
                    }
                    _ => vec![],
                }
            }
            Event::Finished { attempt, subtask, end_of_input } => {
                if attempt != self.attempt || subtask >= self.parallelism {
                    return vec![];
                }
                if let (Some(p), Some(snap)) = (self.pending.as_mut(), end_of_input.as_ref()) {
                    if p.phase == Phase::Collecting {
                        p.acks.entry(subtask).or_insert_with(|| snap.clone());
                    }
                }
                self.finished.insert(subtask, end_of_input);
                self.denied.remove(&subtask);
                self.publish_if_complete()
            }
            Event::TriggerRefused { id, subtask, not_running, reason } => {
                let mut out = match &self.pending {
                    Some(p) if p.id == id && p.phase == Phase::Collecting => {
                        self.pending = None;
                        vec![Command::NotifyAborted {
                            id,
                            reason: format!("triggering subtask {subtask} failed: {reason}"),
                        }]
                    }
                    _ => vec![],
                };
                if not_running && subtask < self.parallelism && !self.finished.contains_key(&subtask) {
                    let n = self.denied.entry(subtask).or_insert(0);
                    *n += 1;
                    if *n >= MISSING_AFTER {
                        out.push(Command::SubtaskMissing {
                            subtask,
                            reason: format!(
                                "subtask {subtask} of attempt {} is not running on its worker ({n} checkpoint \
                                 triggers in a row denied: {reason})",
                                self.attempt
                            ),
                        });
                    }
                }
                out
            }
            Event::Expired { id } => match &self.pending {
                Some(p) if p.id == id && p.phase == Phase::Collecting => {
                    self.pending = None;
                    vec![Command::NotifyAborted { id, reason: format!("checkpoint {id} expired before completing") }]
                }
                _ => vec![],
            },
            Event::Abort { reason } => match &self.pending {
                // A publish in flight is decided by the store alone.
                Some(p) if p.phase == Phase::Collecting => {
                    let id = p.id;
                    self.pending = None;
                    vec![Command::NotifyAborted { id, reason }]
                }
                _ => vec![],
            },
            Event::Published { id, outcome } => {
                match &self.pending {
                    Some(p) if p.id == id && p.phase == Phase::Publishing => {}
                    _ => return vec![],
                }
                self.pending = None;
                match outcome {
                    StoreOutcome::Committed => vec![Command::NotifyComplete { id }],
                    StoreOutcome::NotPublished(reason) => vec![Command::NotifyAborted { id, reason }],
                    StoreOutcome::Unknown(reason) => vec![Command::FailedUnknown { id, reason }],
                }
            }
        }
    }

    fn publish_if_complete(&mut self) -> Vec<Command> {
        let Some(p) = self.pending.as_mut() else { return vec![] };
        if p.phase != Phase::Collecting || p.acks.len() < self.parallelism as usize {
            return vec![];
        }
        p.phase = Phase::Publishing;
        vec![Command::Publish { id: p.id, savepoint: p.savepoint, snapshots: p.acks.values().cloned().collect() }]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(subtask: u32, tag: u64) -> SubtaskSnapshot {
        SubtaskSnapshot { subtask, source_offset: tag, ..Default::default() }
    }

    fn ack(attempt: u64, subtask: u32, id: u64) -> Event {
        Event::Ack { attempt, subtask, id, snapshot: snap(subtask, id) }
    }

    fn coordinator() -> CheckpointCoordinator {
        CheckpointCoordinator::new(7, 2)
    }

    #[test]
    fn all_acks_publish_and_a_commit_notifies_complete() {
        let mut c = coordinator();
        assert_eq!(
            c.on(Event::Triggered { id: 3, savepoint: false }),
            vec![Command::Trigger { id: 3, subtasks: vec![0, 1] }]
        );
        assert_eq!(c.on(ack(7, 1, 3)), vec![]);
        assert_eq!(
            c.on(ack(7, 0, 3)),
            vec![Command::Publish { id: 3, savepoint: false, snapshots: vec![snap(0, 3), snap(1, 3)] }]
        );
        assert!(c.publishing());
        assert_eq!(
            c.on(Event::Published { id: 3, outcome: StoreOutcome::Committed }),
            vec![Command::NotifyComplete { id: 3 }]
        );
        assert!(c.can_trigger());
    }

    #[test]
    fn acknowledgements_of_another_attempt_or_checkpoint_change_nothing() {
        let mut c = coordinator();
        c.on(Event::Triggered { id: 3, savepoint: false });
        // A stale attempt's ack for the same checkpoint id, an ack for an older checkpoint,
        // and an out-of-range subtask are ignored.
        assert_eq!(c.on(ack(6, 0, 3)), vec![]);
        assert_eq!(c.on(ack(7, 0, 2)), vec![]);
        assert_eq!(c.on(ack(7, 9, 3)), vec![]);
        assert_eq!(c.on(ack(7, 1, 3)), vec![], "one of two subtasks acknowledged: not complete yet");
        assert_eq!(c.on(Event::Declined { attempt: 6, subtask: 0, id: 3, reason: "old".into() }), vec![]);
        assert_eq!(c.pending(), Some(3));
    }

    #[test]
    fn an_unknown_store_outcome_never_tells_anyone_to_delete() {
        // The bug chaos seed 4 found: a pointer written but its answer lost, then the
        // subtasks deleted the checkpoint's files.
        let mut c = coordinator();
        c.on(Event::Triggered { id: 4, savepoint: false });
        c.on(ack(7, 0, 4));
        c.on(ack(7, 1, 4));
        let out = c.on(Event::Published { id: 4, outcome: StoreOutcome::Unknown("connection lost".into()) });
        assert_eq!(out, vec![Command::FailedUnknown { id: 4, reason: "connection lost".into() }]);
        assert!(!out.iter().any(|c| matches!(c, Command::NotifyAborted { .. })));
    }

    #[test]
    fn a_definitely_unpublished_checkpoint_is_aborted() {
        let mut c = coordinator();
        c.on(Event::Triggered { id: 4, savepoint: false });
        c.on(ack(7, 0, 4));
        c.on(ack(7, 1, 4));
        assert_eq!(
            c.on(Event::Published { id: 4, outcome: StoreOutcome::NotPublished("leadership lost".into()) }),
            vec![Command::NotifyAborted { id: 4, reason: "leadership lost".into() }]
        );
    }

    #[test]
    fn once_publishing_only_the_store_decides() {
        let mut c = coordinator();
        c.on(Event::Triggered { id: 5, savepoint: false });
        c.on(ack(7, 0, 5));
        c.on(ack(7, 1, 5));
        assert_eq!(c.on(Event::Expired { id: 5 }), vec![], "the deadline no longer applies");
        assert_eq!(c.on(Event::Declined { attempt: 7, subtask: 0, id: 5, reason: "late".into() }), vec![]);
        assert_eq!(c.on(Event::Abort { reason: "attempt ended".into() }), vec![]);
        assert_eq!(c.on(Event::Triggered { id: 6, savepoint: false }), vec![], "one checkpoint at a time");
        assert_eq!(
            c.on(Event::Published { id: 5, outcome: StoreOutcome::Committed }),
            vec![Command::NotifyComplete { id: 5 }]
        );
    }

    #[test]
    fn decline_expiry_and_abort_while_collecting() {
        let mut c = coordinator();
        c.on(Event::Triggered { id: 1, savepoint: false });
        assert_eq!(
            c.on(Event::Declined { attempt: 7, subtask: 1, id: 1, reason: "disk full".into() }),
            vec![Command::NotifyAborted { id: 1, reason: "subtask 1 declined: disk full".into() }]
        );
        c.on(Event::Triggered { id: 2, savepoint: false });
        assert_eq!(c.on(Event::Expired { id: 1 }), vec![], "an older checkpoint's deadline is stale");
        assert_eq!(
            c.on(Event::Expired { id: 2 }),
            vec![Command::NotifyAborted { id: 2, reason: "checkpoint 2 expired before completing".into() }]
        );
        c.on(Event::Triggered { id: 3, savepoint: true });
        assert_eq!(
            c.on(Event::Abort { reason: "the attempt ended".into() }),
            vec![Command::NotifyAborted { id: 3, reason: "the attempt ended".into() }]
        );
        assert_eq!(c.on(ack(7, 0, 3)), vec![], "acks after the abort are ignored");
    }

    #[test]
    fn a_finished_subtask_stands_in_with_its_end_of_input_snapshot() {
        let mut c = coordinator();
        c.on(Event::Triggered { id: 8, savepoint: false });
        c.on(ack(7, 0, 8));
        // Subtask 1 finishes instead of acknowledging: its final snapshot completes it.
        let fin = SubtaskSnapshot { subtask: 1, end_of_input: true, ..Default::default() };
        assert_eq!(
            c.on(Event::Finished { attempt: 7, subtask: 1, end_of_input: Some(fin.clone()) }),
            vec![Command::Publish { id: 8, savepoint: false, snapshots: vec![snap(0, 8), fin.clone()] }]
        );
        c.on(Event::Published { id: 8, outcome: StoreOutcome::Committed });
        // Later checkpoints trigger only the running subtask and count the final snapshot.
        assert_eq!(
            c.on(Event::Triggered { id: 9, savepoint: false }),
            vec![Command::Trigger { id: 9, subtasks: vec![0] }]
        );
        assert_eq!(
            c.on(ack(7, 0, 9)),
            vec![Command::Publish { id: 9, savepoint: false, snapshots: vec![snap(0, 9), fin] }]
        );
    }

    #[test]
    fn a_finished_subtask_without_a_final_snapshot_does_not_complete_a_checkpoint() {
        let mut c = coordinator();
        c.on(Event::Triggered { id: 1, savepoint: false });
        assert_eq!(c.on(Event::Finished { attempt: 7, subtask: 1, end_of_input: None }), vec![]);
        assert_eq!(c.on(ack(7, 0, 1)), vec![], "subtask 1 has no snapshot to stand in");
        assert_eq!(c.on(Event::Finished { attempt: 6, subtask: 0, end_of_input: None }), vec![], "stale attempt");
        assert!(!c.is_finished(0));
    }

    /// A worker denying a subtask once aborts the checkpoint; three denials in a row with no
    /// acknowledgement between declare it missing; an acknowledgement or a finish resets the
    /// count; other refusals (unreachable) never count.
    #[test]
    fn a_subtask_its_worker_denies_three_times_in_a_row_is_missing() {
        let mut c = coordinator();
        let refused = |id, subtask, not_running| Event::TriggerRefused {
            id,
            subtask,
            not_running,
            reason: "no subtask runs here".into(),
        };
        c.on(Event::Triggered { id: 1, savepoint: false });
        assert_eq!(
            c.on(refused(1, 0, true)),
            vec![Command::NotifyAborted { id: 1, reason: "triggering subtask 0 failed: no subtask runs here".into() }]
        );
        c.on(Event::Triggered { id: 2, savepoint: false });
        assert_eq!(c.on(refused(2, 0, true)).len(), 1, "two denials: only the abort");
        // An acknowledgement in between: it runs, the count starts again.
        c.on(Event::Triggered { id: 3, savepoint: false });
        c.on(ack(7, 0, 3));
        c.on(Event::Expired { id: 3 });
        for id in 4..6 {
            c.on(Event::Triggered { id, savepoint: false });
            assert_eq!(c.on(refused(id, 0, true)).len(), 1, "checkpoint {id}");
        }
        // Unreachable is not a denial.
        c.on(Event::Triggered { id: 6, savepoint: false });
        assert_eq!(c.on(refused(6, 0, false)).len(), 1);
        c.on(Event::Triggered { id: 7, savepoint: false });
        let out = c.on(refused(7, 0, true));
        assert_eq!(out.len(), 2, "{out:?}");
        assert!(
            matches!(&out[1], Command::SubtaskMissing { subtask: 0, reason } if reason.contains("3 checkpoint triggers in a row")),
            "{out:?}"
        );
        // A finished subtask is never missing (its worker dropped it after the finish).
        let mut c = coordinator();
        c.on(Event::Finished { attempt: 7, subtask: 1, end_of_input: None });
        for id in 1..10 {
            c.on(Event::Triggered { id, savepoint: false });
            assert!(c.on(refused(id, 1, true)).iter().all(|x| !matches!(x, Command::SubtaskMissing { .. })));
        }
    }
}
