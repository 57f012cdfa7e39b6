//! The result store is what keeps a finished job from running again: a leader that recovers
//! jobs never starts one whose end is recorded under `/job-results`, even when the leader that
//! recorded it died before the job's cleanup (the job graph is still stored then). Real
//! 3-node ZooKeeper ensemble, real `keel` dispatchers and worker, file:// storage.
//!
//! Fails with the check off: `KEEL_TEST_DISABLE_RESULT_CHECK=1 cargo test -p keel-cli --test
//! result_store` (the switch reaches the dispatchers through the environment; see
//! `bin/mutation-check`).

mod common;

use std::time::Duration;

use common::{block_on, zk_connect, Cluster};

const T: Duration = Duration::from_secs(60);

/// Every event line of `kinds` about `job` in every process log of the cluster, prefixed with
/// the process name (logs are appended, so later calls can only see more lines).
fn job_events(c: &Cluster, job: &str, kinds: &[&str]) -> Vec<String> {
    let needle = format!("job={job}");
    let mut out = Vec::new();
    for p in c.dispatchers.iter().chain(c.workers.iter()) {
        let log = std::fs::read_to_string(p.log_path()).unwrap_or_default();
        for line in log.lines().map(common::strip_ansi) {
            if line.contains(&needle) && kinds.iter().any(|k| line.contains(&format!("event=\"{k}\""))) {
                out.push(format!("{}: {line}", p.name()));
            }
        }
    }
    out
}

/// What ZooKeeper and the HA storage directory say about `job`: its result (state, dirty or
/// clean), and whether its graph pointer and `jobs/<id>` subtree exist.
fn stored(c: &Cluster, job: &str) -> (Option<(String, keel_ha::ResultStatus)>, bool, bool) {
    let (ns, quorum) = (c.zk_namespace(), c.zk.connect_string());
    let uri = format!("file://{}/ha", c.storage_path().display());
    block_on(async {
        let zk = zk_connect(&quorum, &ns).await;
        let dir = keel_storage::StorageDir::open(&uri, &keel_storage::StorageOptions::default()).unwrap();
        let stores = keel_ha::HaStores::new(dir);
        let result = stores
            .result(&keel_ha::MetaClient::Zk(zk.clone()), job)
            .await
            .unwrap_or_else(|e| panic!("read the result of {job}: {e}"))
            .map(|(r, s)| (r.state, s));
        let graph = zk.check_stat(&format!("/jobgraphs/{job}")).await.unwrap().is_some();
        let subtree = zk.check_stat(&format!("/jobs/{job}")).await.unwrap().is_some();
        (result, graph, subtree)
    })
}

/// The leader records a job's end (result "dirty") and dies before the cleanup removed the
/// job graph; the next leader finds the graph and the result, finishes the cleanup and never
/// runs the job again.
///
/// The leader's death at that exact point is made certain with the test-only fence barrier
/// (`KEEL_TEST_FENCE_BARRIER`): its guarded write that deletes `/jobgraphs/<id>` (the cleanup)
/// is held, ZooKeeper is checked to hold both the dirty result and the graph, then the leader
/// is killed with SIGKILL. Asserted from the event history of every process: after the kill
/// nothing was deployed, restored or started for the job; and from ZooKeeper: the result is
/// clean, the graph and the job's subtree are gone.
#[test]
fn a_recorded_result_keeps_a_finished_job_from_running_again_after_failover() {
    let mut c = Cluster::start("it-result-store", 0, 1, &[]);
    let barriers: Vec<std::path::PathBuf> = (0..2).map(|i| c.dir.path().join(format!("barrier-d{i}"))).collect();
    for (i, b) in barriers.iter().enumerate() {
        std::fs::create_dir_all(b).unwrap();
        c.add_dispatcher_env(&format!("d{i}"), &[("KEEL_TEST_FENCE_BARRIER", b.to_str().unwrap())]);
    }
    let old = c.wait_leader(&[0, 1], T);
    c.wait_workers_follow(&old, T);
    let other = 1 - old.index;
    let sink = c.dir.path().join("out");
    // Runs a few seconds (4000 records at 1000/s): long enough to set the barrier while it runs.
    let spec = format!(
        "name: finishes\nparallelism: 1\ncheckpoint-interval: 300 ms\npipeline:\n  - source: {{ type: sequence, count: 4000, keys: 2, rate: 1000 }}\n  - count: {{}}\n  - sink: {{ type: file, path: file://{} }}\n",
        sink.display()
    );
    let id = c.submit(&spec);
    c.wait_job_state(&id, "RUNNING", T);

    // Hold the cleanup's deletion of the job graph pointer (nothing else writes that path
    // after the submission).
    let barrier = &barriers[old.index];
    std::fs::write(barrier.join("hold"), format!("/jobgraphs/{id}\n")).unwrap();
    let held = chaos_tests::wait_until(
        Duration::from_secs(120),
        Duration::from_millis(50),
        "the job to finish and its leader to hold the cleanup",
        || {
            let rd = std::fs::read_dir(barrier).ok()?;
            rd.flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with("held-"))
                .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
                .find(|w| w.contains(&format!("/jobgraphs/{id}")))
        },
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", c.logs()));
    eprintln!("held by the leader: {held}");
    let (result, graph, subtree) = stored(&c, &id);
    assert_eq!(
        (result, graph, subtree),
        (Some(("FINISHED".to_string(), keel_ha::ResultStatus::Dirty)), true, true),
        "before the kill: a dirty FINISHED result and the still-stored job graph"
    );
    let kinds = ["task_deployed", "checkpoint_restored", "job_state", "job_submitted"];
    let history = job_events(&c, &id, &kinds);
    assert!(history.iter().any(|e| e.contains("task_deployed")), "the job ran once: {history:#?}");

    // The leader dies between recording the result and the cleanup.
    c.dispatchers[old.index].kill9();
    let new = c.wait_leader(&[other], T);
    assert!(new.epoch > old.epoch, "{new:?} {old:?}");
    chaos_tests::wait_until(T, Duration::from_millis(100), "the new leader to finish the job's cleanup", || {
        (!job_events(&c, &id, &["job_cleaned"]).is_empty()).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", c.logs()));

    // From the event history: nothing ran for the job after the kill.
    let after: Vec<String> = job_events(&c, &id, &kinds).into_iter().filter(|e| !history.contains(e)).collect();
    assert_eq!(after, Vec::<String>::new(), "the finished job ran again under the new leader (epoch {})", new.epoch);
    // From ZooKeeper: the result is clean, the graph and the job's nodes are gone.
    let (result, graph, subtree) = stored(&c, &id);
    assert_eq!(
        (result, graph, subtree),
        (Some(("FINISHED".to_string(), keel_ha::ResultStatus::Clean)), false, false),
        "after recovery: a clean FINISHED result, no job graph, no jobs/{id}"
    );
    let j = c.job(&id).expect("the finished job is listed from the result store");
    assert_eq!(j["state"], "FINISHED", "{j}");
}
