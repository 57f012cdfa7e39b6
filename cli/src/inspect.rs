//! `keel status` and `keel ha inspect`: read ZooKeeper directly, print a table or JSON.

use std::fmt::Write;
use std::time::Duration;

use anyhow::Context;
use keel_conf::{Config, HaType};
use keel_ha::inspect::ClusterView;
use keel_ha::ZkSettings;
use serde_json::json;

pub async fn read(config: &Config) -> anyhow::Result<ClusterView> {
    if config.ha_type != HaType::Zookeeper {
        anyhow::bail!(
            "high-availability.type is {}: there is nothing in ZooKeeper to read (one dispatcher, no election; `keel ha inspect` lists its local pointer tree); for a highly available cluster set high-availability.type: zookeeper and high-availability.zookeeper.quorum",
            config.ha_type
        );
    }
    let mut settings = ZkSettings::from_config(config).context("no high-availability.zookeeper.quorum set")?;
    // A status read should not hang for a production session timeout.
    settings.session_timeout = settings.session_timeout.min(Duration::from_secs(10));
    let client = settings.connect().await?;
    let view = keel_ha::inspect::inspect(&client, &settings.cluster_id, &settings.namespace).await?;
    keel_ha::session::close(client, Duration::from_secs(1)).await;
    Ok(view)
}

pub fn status_json(view: &ClusterView) -> serde_json::Value {
    json!({
        "cluster_id": view.cluster_id,
        "namespace": view.namespace,
        "leader": view.leader,
        "leader_id": view.leader.as_ref().map(|l| l.leader_id.clone()),
        "epoch": view.leader.as_ref().map(|l| l.epoch),
        "contenders": view.contenders,
        "standbys": view.contenders.iter().filter(|c| !c.leading).map(|c| c.contender_id.clone()).collect::<Vec<_>>(),
        "problems": view.problems,
    })
}

pub fn status_table(view: &ClusterView) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "cluster   {} (znode {})", view.cluster_id, view.namespace);
    match &view.leader {
        Some(l) => {
            let _ = writeln!(
                out,
                "leader    {}  epoch {}  rpc {}  rest {}  session 0x{}",
                l.leader_id, l.epoch, l.address, l.rest_address, l.session_id
            );
        }
        None => {
            let _ = writeln!(out, "leader    none (no leader/info: no dispatcher is leading right now)");
        }
    }
    let _ = writeln!(
        out,
        "\n{:<10} {:<34} {:<22} {:<22} {:>14}  latch node",
        "ROLE", "CONTENDER", "RPC", "REST", "EPOCH(czxid)"
    );
    for c in &view.contenders {
        let _ = writeln!(
            out,
            "{:<10} {:<34} {:<22} {:<22} {:>14}  {}",
            if c.leading { "leader" } else { "standby" },
            c.contender_id,
            c.rpc_address,
            c.rest_address,
            c.epoch.0,
            c.node
        );
    }
    if view.contenders.is_empty() {
        let _ = writeln!(out, "(no contenders: no dispatcher is running)");
    }
    for p in &view.problems {
        let _ = writeln!(out, "problem: {p}");
    }
    out
}

pub fn znode_table(view: &ClusterView) -> String {
    let mut out = String::new();
    let _ =
        writeln!(out, "\n{:<70} {:>9} {:>7} {:>8}  kind", "ZNODE (under namespace)", "BYTES", "VERSION", "CHILDREN");
    for z in &view.znodes {
        let _ = writeln!(
            out,
            "{:<70} {:>9} {:>7} {:>8}  {}",
            z.path,
            z.data_length,
            z.version,
            z.children,
            if z.ephemeral { "ephemeral" } else { "persistent" }
        );
    }
    out
}
