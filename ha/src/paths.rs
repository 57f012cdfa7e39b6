//! Znode paths relative to the cluster root (`<path.root>/<cluster-id>`).

/// Parent of the Curator-compatible latch contender nodes.
pub const LATCH_DIR: &str = "/leader/latch";
/// Name prefix of latch contender nodes (Curator's `LeaderLatch` uses `latch-`).
pub const LATCH_NAME: &str = "latch-";
/// Address and epoch of the current leader; ephemeral, written by the leader through its fence.
pub const LEADER_INFO: &str = "/leader/info";

/// Joins the configured root and cluster id into the cluster's namespace (`/keel/default`).
pub fn namespace(root: &str, cluster_id: &str) -> String {
    let root = root.trim_end_matches('/');
    let cluster = cluster_id.trim_matches('/');
    if cluster.is_empty() {
        root.to_string()
    } else {
        format!("{root}/{cluster}")
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn namespace_joins_root_and_cluster_id() {
        assert_eq!(super::namespace("/keel", "/default"), "/keel/default");
        assert_eq!(super::namespace("/keel/", "prod-a"), "/keel/prod-a");
        assert_eq!(super::namespace("/a/b", "/c/d/"), "/a/b/c/d");
    }
}
