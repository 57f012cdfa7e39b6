use std::fmt;

use keel_proto::v1::LeaderInfo;
use prost::Message;
use serde::{Deserialize, Serialize};

use crate::HaError;

/// A leader's fencing epoch: the `czxid` of its latch node. Greater means newer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct LeaderEpoch(pub i64);

impl fmt::Display for LeaderEpoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// What `leader/info` says: who leads, at which epoch, where to reach it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaderView {
    pub leader_id: String,
    pub epoch: LeaderEpoch,
    /// gRPC address of the leader.
    pub address: String,
    pub rest_address: String,
    pub session_id: String,
    pub latch_node: String,
    pub since_unix_ms: i64,
}

impl LeaderView {
    /// Decodes the `leader/info` znode. A record that does not decode, or of an unknown format
    /// version, is an error naming the znode.
    pub fn decode(path: &str, data: &[u8]) -> Result<Self, HaError> {
        let info = LeaderInfo::decode(data).map_err(|e| HaError::CorruptZnode {
            path: path.to_string(),
            reason: format!("not a LeaderInfo record ({e}); {} bytes", data.len()),
        })?;
        if info.format_version != keel_proto::FORMAT_VERSION {
            return Err(HaError::CorruptZnode {
                path: path.to_string(),
                reason: format!(
                    "LeaderInfo format version {} is not supported (expected {})",
                    info.format_version,
                    keel_proto::FORMAT_VERSION
                ),
            });
        }
        if info.epoch <= 0 || info.leader_id.is_empty() {
            return Err(HaError::CorruptZnode {
                path: path.to_string(),
                reason: format!(
                    "LeaderInfo has epoch {} and leader id {:?}; expected a positive epoch and a leader id",
                    info.epoch, info.leader_id
                ),
            });
        }
        Ok(Self {
            leader_id: info.leader_id,
            epoch: LeaderEpoch(info.epoch),
            address: info.rpc_address,
            rest_address: info.rest_address,
            session_id: info.session_id,
            latch_node: info.latch_node,
            since_unix_ms: info.since_unix_ms,
        })
    }

    pub fn encode(&self) -> Vec<u8> {
        LeaderInfo {
            format_version: keel_proto::FORMAT_VERSION,
            leader_id: self.leader_id.clone(),
            epoch: self.epoch.0,
            rpc_address: self.address.clone(),
            rest_address: self.rest_address.clone(),
            session_id: self.session_id.clone(),
            latch_node: self.latch_node.clone(),
            since_unix_ms: self.since_unix_ms,
        }
        .encode_to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view() -> LeaderView {
        LeaderView {
            leader_id: "d1".into(),
            epoch: LeaderEpoch(42),
            address: "127.0.0.1:1".into(),
            rest_address: "127.0.0.1:2".into(),
            session_id: "abc".into(),
            latch_node: "_c_x-latch-0000000001".into(),
            since_unix_ms: 7,
        }
    }

    #[test]
    fn leader_info_round_trips() {
        let v = view();
        assert_eq!(LeaderView::decode("/leader/info", &v.encode()).unwrap(), v);
    }

    #[test]
    fn corrupt_leader_info_names_the_znode() {
        let err = LeaderView::decode("/leader/info", b"\xff\xff\xff").unwrap_err();
        assert!(err.to_string().starts_with("corrupt znode /leader/info: not a LeaderInfo record"), "{err}");
        let mut v = view();
        v.epoch = LeaderEpoch(0);
        let err = LeaderView::decode("/leader/info", &v.encode()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "corrupt znode /leader/info: LeaderInfo has epoch 0 and leader id \"d1\"; expected a positive epoch and a leader id"
        );
    }
}
