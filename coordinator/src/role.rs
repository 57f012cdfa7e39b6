//! This dispatcher's role, unified over `high-availability.type` `zookeeper` (from the
//! election) and `none` (always leading, epoch 1, no fence).

use keel_ha::{Fence, LeaderEpoch, Leadership};

#[derive(Debug, Clone)]
pub enum Role {
    Standby,
    Leading { epoch: LeaderEpoch, fence: Option<Fence> },
    Suspended { epoch: LeaderEpoch },
}

impl Role {
    pub fn name(&self) -> &'static str {
        match self {
            Role::Standby => "standby",
            Role::Leading { .. } => "leader",
            Role::Suspended { .. } => "suspended",
        }
    }

    /// The epoch while acting as leader, `None` otherwise.
    pub fn acting_epoch(&self) -> Option<LeaderEpoch> {
        match self {
            Role::Leading { epoch, .. } => Some(*epoch),
            _ => None,
        }
    }

    pub fn epoch(&self) -> Option<LeaderEpoch> {
        match self {
            Role::Standby => None,
            Role::Leading { epoch, .. } | Role::Suspended { epoch } => Some(*epoch),
        }
    }

    pub fn fence(&self) -> Option<&Fence> {
        match self {
            Role::Leading { fence, .. } => fence.as_ref(),
            _ => None,
        }
    }
}

impl From<&Leadership> for Role {
    fn from(l: &Leadership) -> Self {
        match l {
            Leadership::Standby => Role::Standby,
            Leadership::Leading(f) => Role::Leading { epoch: f.epoch(), fence: Some(f.clone()) },
            Leadership::Suspended(e) => Role::Suspended { epoch: *e },
        }
    }
}
