//! The leadership state machine, free of I/O.
//!
//! The election task ([`crate::election`]) feeds it [`Event`]s (latch acquired, session
//! disconnected, reconnected, expired, latch deleted, a worker reported a newer epoch, ...) and
//! carries out the [`Command`]s it returns. Keeping the decisions here lets them be tested
//! without a ZooKeeper server.

use crate::LeaderEpoch;

/// What this contender is doing right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Not leading (contending, or between sessions).
    Standby,
    /// Holding the latch and acting.
    Leading(LeaderEpoch),
    /// Holding the latch, but the connection is suspended: not acting until it is back.
    Suspended(LeaderEpoch),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// The latch was acquired and `leader/info` written; the epoch is the latch's czxid.
    Acquired(LeaderEpoch),
    /// The session's connection dropped (session may still be alive).
    Disconnected,
    /// The connection is back with the same session.
    Reconnected,
    /// Result of re-reading the latch node after a reconnect.
    LatchVerified { present: bool },
    /// The session expired or was closed under us.
    Expired,
    /// The latch node was deleted (by an operator, or by `keel drill isolate-leader`).
    LatchDeleted,
    /// The connection stayed down for a whole session timeout: the servers have expired us.
    SuspendDeadline,
    /// Someone refused our command because it has seen this (greater) epoch.
    Fenced { seen: LeaderEpoch },
    /// Graceful stop was requested.
    Shutdown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Publish the new role to the rest of the process.
    Publish(Role),
    /// Start the deadline after which a disconnected session counts as expired.
    ArmSuspendDeadline,
    DisarmSuspendDeadline,
    /// Re-read the latch node (after a reconnect watch events may have been lost).
    VerifyLatch,
    /// Give up this session (close it) and contend again with a new one.
    AbandonSession,
    /// Delete the latch, close the session and stop.
    Resign,
}

/// The state machine. `tolerate_suspended` is
/// `high-availability.zookeeper.client.tolerate-suspended-connections`.
#[derive(Debug, Clone)]
pub struct Engine {
    tolerate_suspended: bool,
    role: Role,
}

impl Engine {
    pub fn new(tolerate_suspended: bool) -> Self {
        Self { tolerate_suspended, role: Role::Standby }
    }

    pub fn role(&self) -> Role {
        self.role
    }

    fn epoch(&self) -> Option<LeaderEpoch> {
        match self.role {
            Role::Standby => None,
            Role::Leading(e) | Role::Suspended(e) => Some(e),
        }
    }

    fn step_down(&mut self, last: Command) -> Vec<Command> {
        let was_leading = self.role != Role::Standby;
        self.role = Role::Standby;
        let mut out = vec![Command::DisarmSuspendDeadline];
        if was_leading {
            out.push(Command::Publish(Role::Standby));
        }
        out.push(last);
        out
    }

    fn set(&mut self, role: Role) -> Vec<Command> {
        if self.role == role {
            return vec![];
        }
        self.role = role;
        vec![Command::Publish(role)]
    }

    /// Applies one event and returns what to do, in order.
    pub fn handle(&mut self, event: Event) -> Vec<Command> {
        match (event, self.epoch()) {
            (Event::Shutdown, _) => self.step_down(Command::Resign),
            (Event::Acquired(epoch), _) => self.set(Role::Leading(epoch)),
            // Nothing to decide while standing by: the latch recipe retries on its own.
            (Event::Disconnected, None) => vec![],
            (Event::Disconnected, Some(epoch)) => {
                let mut out = vec![Command::ArmSuspendDeadline];
                if !self.tolerate_suspended {
                    out.extend(self.set(Role::Suspended(epoch)));
                }
                out
            }
            (Event::Reconnected, None) => vec![],
            (Event::Reconnected, Some(_)) => vec![Command::DisarmSuspendDeadline, Command::VerifyLatch],
            (Event::LatchVerified { present: true }, Some(epoch)) => self.set(Role::Leading(epoch)),
            (Event::LatchVerified { present: false }, Some(_)) => self.step_down(Command::AbandonSession),
            (Event::LatchVerified { .. }, None) => vec![],
            (Event::Expired, _) => self.step_down(Command::AbandonSession),
            (Event::LatchDeleted, Some(_)) | (Event::SuspendDeadline, Some(_)) => {
                self.step_down(Command::AbandonSession)
            }
            (Event::LatchDeleted, None) | (Event::SuspendDeadline, None) => vec![],
            (Event::Fenced { seen }, Some(epoch)) if seen > epoch => self.step_down(Command::AbandonSession),
            (Event::Fenced { .. }, _) => vec![],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const E: LeaderEpoch = LeaderEpoch(100);

    fn leading(tolerate: bool) -> Engine {
        let mut engine = Engine::new(tolerate);
        assert_eq!(engine.handle(Event::Acquired(E)), vec![Command::Publish(Role::Leading(E))]);
        engine
    }

    #[test]
    fn disconnect_suspends_by_default_and_resumes_after_the_latch_is_verified() {
        let mut engine = leading(false);
        assert_eq!(
            engine.handle(Event::Disconnected),
            vec![Command::ArmSuspendDeadline, Command::Publish(Role::Suspended(E))]
        );
        assert_eq!(engine.handle(Event::Reconnected), vec![Command::DisarmSuspendDeadline, Command::VerifyLatch]);
        assert_eq!(engine.role(), Role::Suspended(E), "not acting until the latch is verified");
        assert_eq!(engine.handle(Event::LatchVerified { present: true }), vec![Command::Publish(Role::Leading(E))]);
    }

    #[test]
    fn tolerated_disconnect_keeps_acting_until_the_deadline() {
        let mut engine = leading(true);
        assert_eq!(engine.handle(Event::Disconnected), vec![Command::ArmSuspendDeadline]);
        assert_eq!(engine.role(), Role::Leading(E));
        assert_eq!(
            engine.handle(Event::SuspendDeadline),
            vec![Command::DisarmSuspendDeadline, Command::Publish(Role::Standby), Command::AbandonSession]
        );
        assert_eq!(engine.role(), Role::Standby);
    }

    #[test]
    fn latch_gone_after_reconnect_steps_down() {
        let mut engine = leading(false);
        engine.handle(Event::Disconnected);
        engine.handle(Event::Reconnected);
        assert_eq!(
            engine.handle(Event::LatchVerified { present: false }),
            vec![Command::DisarmSuspendDeadline, Command::Publish(Role::Standby), Command::AbandonSession]
        );
    }

    #[test]
    fn expiry_and_latch_deletion_step_down() {
        for event in [Event::Expired, Event::LatchDeleted] {
            let mut engine = leading(true);
            assert_eq!(
                engine.handle(event),
                vec![Command::DisarmSuspendDeadline, Command::Publish(Role::Standby), Command::AbandonSession]
            );
        }
    }

    #[test]
    fn fenced_by_a_newer_epoch_steps_down_but_not_by_an_older_one() {
        let mut engine = leading(false);
        assert_eq!(engine.handle(Event::Fenced { seen: LeaderEpoch(99) }), vec![]);
        assert_eq!(engine.handle(Event::Fenced { seen: E }), vec![]);
        assert_eq!(engine.role(), Role::Leading(E));
        assert_eq!(
            engine.handle(Event::Fenced { seen: LeaderEpoch(101) }),
            vec![Command::DisarmSuspendDeadline, Command::Publish(Role::Standby), Command::AbandonSession]
        );
    }

    #[test]
    fn standby_ignores_connection_noise_and_shutdown_resigns() {
        let mut engine = Engine::new(false);
        assert_eq!(engine.handle(Event::Disconnected), vec![]);
        assert_eq!(engine.handle(Event::Reconnected), vec![]);
        assert_eq!(engine.handle(Event::SuspendDeadline), vec![]);
        assert_eq!(engine.handle(Event::Shutdown), vec![Command::DisarmSuspendDeadline, Command::Resign]);
        let mut engine = leading(false);
        assert_eq!(
            engine.handle(Event::Shutdown),
            vec![Command::DisarmSuspendDeadline, Command::Publish(Role::Standby), Command::Resign]
        );
    }
}
