//! A read-only snapshot of what ZooKeeper holds for one cluster, for `keel status` and
//! `keel ha inspect`. Reads only; never writes.

use keel_proto::v1::ContenderInfo;
use prost::Message;
use serde::Serialize;
use zookeeper_client::Client;

use crate::{paths, HaError, LeaderEpoch, LeaderView};

/// One latch contender (a dispatcher that is leading or standing by).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ContenderView {
    /// Latch node name under `leader/latch`.
    pub node: String,
    pub contender_id: String,
    pub rpc_address: String,
    pub rest_address: String,
    /// The czxid of its latch node: the epoch it has (or would have) as leader.
    pub epoch: LeaderEpoch,
    pub session_id: String,
    /// Whether it holds the latch (lowest sequence number).
    pub leading: bool,
}

/// One znode under the cluster namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ZnodeView {
    /// Path relative to the cluster namespace.
    pub path: String,
    pub ephemeral: bool,
    pub data_length: i32,
    pub version: i32,
    pub children: i32,
    pub modified_unix_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClusterView {
    pub cluster_id: String,
    pub namespace: String,
    pub leader: Option<LeaderView>,
    /// Problems found while reading (corrupt znodes), each naming the znode.
    pub problems: Vec<String>,
    pub contenders: Vec<ContenderView>,
    pub znodes: Vec<ZnodeView>,
}

/// The latch contenders (leading first, then standbys in the order they would take over);
/// a corrupt contender record is added to `problems` naming its znode.
pub async fn contenders(client: &Client, problems: &mut Vec<String>) -> Result<Vec<ContenderView>, HaError> {
    let mut contenders = Vec::new();
    let mut children = match client.list_children(paths::LATCH_DIR).await {
        Ok(c) => c,
        Err(zookeeper_client::Error::NoNode) => vec![],
        Err(e) => return Err(HaError::zk("list_children", paths::LATCH_DIR, e)),
    };
    children.retain(|c| c.contains(paths::LATCH_NAME));
    children.sort_by_key(|c| sequence_of(c));
    for (i, node) in children.iter().enumerate() {
        let path = format!("{}/{}", paths::LATCH_DIR, node);
        let (data, stat) = match client.get_data(&path).await {
            Ok(x) => x,
            Err(zookeeper_client::Error::NoNode) => continue,
            Err(e) => return Err(HaError::zk("get_data", &path, e)),
        };
        let info = match ContenderInfo::decode(data.as_slice()) {
            Ok(info) => info,
            Err(e) => {
                problems.push(format!("corrupt znode {path}: not a ContenderInfo record ({e})"));
                ContenderInfo::default()
            }
        };
        contenders.push(ContenderView {
            node: node.clone(),
            contender_id: info.contender_id,
            rpc_address: info.rpc_address,
            rest_address: info.rest_address,
            epoch: LeaderEpoch(stat.czxid),
            session_id: format!("{:x}", stat.ephemeral_owner),
            leading: i == 0,
        });
    }
    Ok(contenders)
}

/// Reads leader, contenders and every znode (depth-first, bounded to 10 000 nodes).
pub async fn inspect(client: &Client, cluster_id: &str, namespace: &str) -> Result<ClusterView, HaError> {
    let mut problems = Vec::new();
    let leader = match crate::retrieval::read_leader(client).await {
        Ok(l) => l,
        Err(HaError::CorruptZnode { path, reason }) => {
            problems.push(format!("corrupt znode {path}: {reason}"));
            None
        }
        Err(e) => return Err(e),
    };
    let contenders = contenders(client, &mut problems).await?;
    let mut znodes = Vec::new();
    let mut stack = vec!["/".to_string()];
    while let Some(path) = stack.pop() {
        if znodes.len() >= 10_000 {
            problems.push("more than 10000 znodes; listing truncated".to_string());
            break;
        }
        let (mut kids, stat) = match client.get_children(&path).await {
            Ok(x) => x,
            Err(zookeeper_client::Error::NoNode) => continue,
            Err(e) => return Err(HaError::zk("get_children", &path, e)),
        };
        if path != "/" {
            znodes.push(ZnodeView {
                path: path.clone(),
                ephemeral: stat.ephemeral_owner != 0,
                data_length: stat.data_length,
                version: stat.version,
                children: stat.num_children,
                modified_unix_ms: stat.mtime,
            });
        }
        kids.sort();
        for kid in kids.into_iter().rev() {
            stack.push(if path == "/" { format!("/{kid}") } else { format!("{path}/{kid}") });
        }
    }
    // Pointers recovery reads: an unreadable one is reported here by name (recovery skips
    // it for that job only and lists it as RECOVERY_BLOCKED).
    for z in &znodes {
        if !is_pointer(&z.path) {
            continue;
        }
        match client.get_data(&z.path).await {
            Ok((data, _)) => {
                if let Err(e) = crate::stores::decode_pointer(&z.path, &data) {
                    problems.push(e.to_string());
                }
            }
            Err(zookeeper_client::Error::NoNode) => {}
            Err(e) => return Err(HaError::zk("get_data", &z.path, e)),
        }
    }
    Ok(ClusterView {
        cluster_id: cluster_id.to_string(),
        namespace: namespace.to_string(),
        leader,
        problems,
        contenders,
        znodes,
    })
}

/// Whether `path` holds a `BlobPointer` that recovery reads (a job graph, a result, a
/// checkpoint).
fn is_pointer(path: &str) -> bool {
    let depth = path.matches('/').count();
    (depth == 2
        && (path.starts_with(&format!("{}/", crate::stores::JOBGRAPHS))
            || path.starts_with(&format!("{}/", crate::stores::JOB_RESULTS))))
        || (depth == 4 && path.starts_with(&format!("{}/", crate::stores::JOBS)) && path.contains("/checkpoints/"))
}

/// The view of a `high-availability.type: none` dispatcher's local pointer tree (see
/// [`crate::local::LocalMeta::read_snapshot`]): every node, and every unreadable pointer named
/// in `problems`. There is no election: no leader or contenders are listed. `namespace` names
/// the file.
pub fn inspect_local(
    nodes: &[(String, Vec<u8>, zookeeper_client::Stat)],
    cluster_id: &str,
    namespace: &str,
) -> ClusterView {
    let mut problems = Vec::new();
    let mut znodes = Vec::new();
    for (path, data, stat) in nodes {
        znodes.push(ZnodeView {
            path: path.clone(),
            ephemeral: false,
            data_length: stat.data_length,
            version: stat.version,
            children: stat.num_children,
            modified_unix_ms: stat.mtime,
        });
        if is_pointer(path) {
            if let Err(e) = crate::stores::decode_pointer(path, data) {
                problems.push(e.to_string());
            }
        }
    }
    ClusterView {
        cluster_id: cluster_id.to_string(),
        namespace: namespace.to_string(),
        leader: None,
        problems,
        contenders: vec![],
        znodes,
    }
}

/// The ephemeral sequence number at the end of a latch node name (Curator sorts by it).
pub fn sequence_of(node: &str) -> i64 {
    let digits: String = node.chars().rev().take_while(|c| c.is_ascii_digit()).collect();
    digits.chars().rev().collect::<String>().parse().unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    #[test]
    fn sequence_is_the_trailing_number() {
        assert_eq!(super::sequence_of("_c_0b5e-latch-0000000012"), 12);
        assert_eq!(super::sequence_of("garbage"), i64::MAX);
    }
}
