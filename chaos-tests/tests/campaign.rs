//! The short chaos suite CI runs: a few seeded campaigns on a real local cluster (3-node
//! ZooKeeper, 3 dispatchers, 3 workers, fault proxies, optionally S3), each bounded in time,
//! every invariant checked; and the proof that the checker catches a broken invariant.
//!
//! Needs the `keel` binary: `cargo test --workspace` builds it; alone, run
//! `cargo build -p keel-cli` first (or set `KEEL_BIN`).

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use chaos_tests::campaign::{self, CampaignOptions, Nemesis};

/// Campaigns are heavy (a whole cluster each): one at a time on a 2-core machine.
static SERIAL: Mutex<()> = Mutex::new(());

fn keel_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("KEEL_BIN") {
        return PathBuf::from(p);
    }
    // target/debug/deps/campaign-<hash> → target/debug/keel
    let exe = std::env::current_exe().expect("test executable");
    let bin = exe.parent().and_then(|d| d.parent()).map(|d| d.join("keel")).expect("target dir");
    assert!(bin.exists(), "no keel binary at {}: run `cargo build -p keel-cli` first, or set KEEL_BIN", bin.display());
    bin
}

fn run(seed: u64, secs: u64, nemeses: &[Nemesis], s3: bool, break_fencing: bool) -> campaign::CampaignResult {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let workdir = dir.path().join(format!("seed-{seed}"));
    let result = campaign::run(CampaignOptions {
        keel: keel_bin(),
        seed,
        duration: Duration::from_secs(secs),
        nemeses: nemeses.to_vec(),
        workdir: workdir.clone(),
        s3,
        break_fencing,
        progress: true,
    })
    .unwrap_or_else(|e| panic!("campaign seed {seed} could not run: {e}"));
    eprintln!("{}", result.report.summary_table());
    if std::env::var_os("KEEL_KEEP_CHAOS").is_some() {
        let keep = std::env::temp_dir().join(format!("keel-chaos-seed-{seed}"));
        let _ = std::fs::remove_dir_all(&keep);
        let _ = std::process::Command::new("cp").arg("-r").arg(&workdir).arg(&keep).status();
        eprintln!("kept {}", keep.display());
    }
    result
}

#[test]
fn campaign_process_faults() {
    let r = run(
        11,
        30,
        &[
            Nemesis::KillLeader,
            Nemesis::TermLeader,
            Nemesis::PauseLeader,
            Nemesis::KillStandby,
            Nemesis::KillWorker,
            Nemesis::PauseWorker,
            Nemesis::PartitionWorker,
        ],
        false,
        false,
    );
    // ok() is false for a FAIL and for an INCONCLUSIVE run (too little happened to judge it).
    assert!(r.report.ok(), "not a PASS:\n{}", r.report.summary_table());
}

#[test]
fn campaign_zookeeper_faults() {
    let r = run(
        12,
        30,
        &[
            Nemesis::KillZkFollower,
            Nemesis::KillZkLeader,
            Nemesis::KillZkMajority,
            Nemesis::PartitionLeaderFromZk,
            Nemesis::ZkLatency,
        ],
        false,
        false,
    );
    // ok() is false for a FAIL and for an INCONCLUSIVE run (too little happened to judge it).
    assert!(r.report.ok(), "not a PASS:\n{}", r.report.summary_table());
}

#[test]
fn campaign_storage_and_whole_cluster_restart_on_s3() {
    let r = run(
        13,
        30,
        &[
            Nemesis::StoragePause,
            Nemesis::StorageCut,
            Nemesis::StorageLatency,
            Nemesis::RestartCluster,
            Nemesis::KillLeader,
        ],
        true,
        false,
    );
    // ok() is false for a FAIL and for an INCONCLUSIVE run (too little happened to judge it).
    assert!(r.report.ok(), "not a PASS:\n{}", r.report.summary_table());
}

#[test]
fn the_checker_catches_a_worker_that_accepts_stale_epochs() {
    // Workers run with the test-only switch that disables epoch checking, and the campaign
    // sends a command stamped with the old epoch after the first leader change.
    let r = run(14, 12, &[Nemesis::KillLeader], false, true);
    assert!(!r.report.ok(), "the checker must fail this run:\n{}", r.report.summary_table());
    let stale = r.report.verdicts.iter().find(|v| v.name == "no_stale_epoch_accepted").expect("verdict present");
    assert!(!stale.ok, "{}", r.report.summary_table());
    // The violation is the command the campaign injected: delivered after the worker had
    // registered the new epoch, and named (kind and stale epoch) in the verdict's detail.
    let (kind, epoch) = r.stale_command.clone().expect("the campaign delivered its stale command");
    let needle = format!("accepted {kind} stamped epoch {epoch} after having seen epoch");
    assert!(stale.details.iter().any(|d| d.contains(&needle)), "no detail with {needle:?}: {:?}", stale.details);
    // Everything else still holds: only the broken invariant is reported.
    for v in r.report.verdicts.iter().filter(|v| v.name != "no_stale_epoch_accepted") {
        assert!(v.ok, "{} failed unexpectedly: {:?}", v.name, v.details);
    }
}
