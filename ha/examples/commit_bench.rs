//! Benchmark: what a checkpoint commit costs in ZooKeeper, next to the raw writes it is made
//! of, measured in the same run on the same real 3-node ensemble.
//!
//! ```text
//! cargo run -p keel-ha --example commit_bench [-- N]
//! ```
//!
//! Rows (each N operations, one at a time, then N with 64 in flight where that makes sense):
//! * `raw create` — a plain znode create (the floor);
//! * `guarded set_data` — the same write as a multi-op checked against the leader's latch
//!   (what every Keel leader write is);
//! * `checkpoint commit` — what the checkpoint coordinator does per checkpoint in ZooKeeper:
//!   take an id (guarded, version-checked counter increment) and publish the pointer
//!   (guarded create), with the metadata blob written to a `file://` storage directory first.
//!
//! Prints a table and one JSON line.

use std::time::{Duration, Instant};

use chaos_tests::ZkEnsemble;
use keel_ha::election::Contender;
use keel_ha::{HaStores, LeaderElection, Leadership, ZkSettings};
use keel_proto::v1::JobGraphRecord;
use zookeeper_client::{Acls, Client, CreateMode};

struct Row {
    name: &'static str,
    ops: usize,
    secs: f64,
}

impl Row {
    fn per_sec(&self) -> f64 {
        self.ops as f64 / self.secs
    }
    fn ms_per_op(&self) -> f64 {
        self.secs * 1000.0 / self.ops as f64
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(500);
    let zk = ZkEnsemble::start(3)?;
    let settings = ZkSettings {
        quorum: zk.connect_string(),
        namespace: "/keel/bench".into(),
        cluster_id: "/bench".into(),
        session_timeout: Duration::from_secs(10),
        connection_timeout: Duration::from_secs(5),
        retry_wait: Duration::from_secs(1),
        tolerate_suspended_connections: false,
        sasl: None,
        acl: keel_ha::session::ZkAcl::Open,
        tls: None,
        kerberos: None,
    };
    let election = LeaderElection::start(
        settings.clone(),
        Contender { id: "bench".into(), rpc_address: "-".into(), rest_address: "-".into() },
    );
    let mut rx = election.subscribe();
    let fence = loop {
        if let Leadership::Leading(f) = &*rx.borrow_and_update() {
            break f.clone();
        }
        rx.changed().await?;
    };
    let client: Client = settings.connect().await?;
    let opts = CreateMode::Persistent.with_acls(Acls::anyone_all());
    client.mkdir("/raw", &opts).await?;
    let mut rows = Vec::new();

    // Raw creates, one at a time.
    let t = Instant::now();
    for i in 0..n {
        client.create(&format!("/raw/a{i}"), b"x", &opts).await?;
    }
    rows.push(Row { name: "raw create (sequential)", ops: n, secs: t.elapsed().as_secs_f64() });

    // Raw creates, 64 in flight (requests are sent in call order; await in batches).
    let t = Instant::now();
    let paths: Vec<String> = (0..n).map(|i| format!("/raw/b{i}")).collect();
    for chunk in paths.chunks(64) {
        let futs: Vec<_> = chunk.iter().map(|p| client.create(p, b"x", &opts)).collect();
        for f in futs {
            f.await?;
        }
    }
    rows.push(Row { name: "raw create (64 in flight)", ops: n, secs: t.elapsed().as_secs_f64() });

    // Guarded writes through the leader's fence.
    fence.create("/guarded", b"0", &opts).await?;
    let t = Instant::now();
    for i in 0..n {
        fence.set_data("/guarded", i.to_string().as_bytes(), None).await?;
    }
    rows.push(Row { name: "guarded set_data (sequential)", ops: n, secs: t.elapsed().as_secs_f64() });

    // Checkpoint commits: id + metadata blob + guarded pointer, retention 1.
    let dir = tempfile::tempdir()?;
    let storage = keel_storage::StorageDir::open(&format!("file://{}", dir.path().display()), &Default::default())?;
    let stores = HaStores::new(storage.clone());
    HaStores::ensure_layout(fence.client()).await?;
    let job = JobGraphRecord {
        format_version: keel_proto::FORMAT_VERSION,
        job_id: "bench".into(),
        name: "bench".into(),
        ..Default::default()
    };
    stores.put_job_graph(&fence, &job).await?;
    let t = Instant::now();
    for _ in 0..n {
        let id = stores.next_checkpoint_id(&fence, "bench").await?;
        let path = format!("bench/chk-{id}/{}.metadata", keel_storage::unique_name("_metadata"));
        storage.write_blob(&path, keel_storage::BlobKind::CheckpointMetadata, b"metadata").await?;
        let dropped = stores.add_checkpoint(&fence, "bench", id, &path, 1).await?;
        for d in dropped {
            storage.delete(&d.metadata_path).await?;
        }
    }
    rows.push(Row { name: "checkpoint commit (id + blob + pointer)", ops: n, secs: t.elapsed().as_secs_f64() });

    println!("\n{:<42} {:>8} {:>12} {:>10}", "operation (3-node loopback ensemble)", "ops", "ops/s", "ms/op");
    for r in &rows {
        println!("{:<42} {:>8} {:>12.0} {:>10.2}", r.name, r.ops, r.per_sec(), r.ms_per_op());
    }
    let json: Vec<serde_json::Value> = rows
        .iter()
        .map(|r| serde_json::json!({"operation": r.name, "ops": r.ops, "ops_per_s": r.per_sec(), "ms_per_op": r.ms_per_op()}))
        .collect();
    println!("{}", serde_json::json!({"benchmark": "keel checkpoint commit vs raw ZooKeeper writes", "results": json}));
    drop(fence);
    election.shutdown().await;
    keel_ha::session::close(client, Duration::from_secs(2)).await;
    Ok(())
}
