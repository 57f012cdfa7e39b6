//! Issue #3's process-level tests: jobs, checkpoints and recovery on a real 3-node ZooKeeper
//! ensemble, real `keel` dispatchers and workers, file:// (and S3-compatible) storage, real
//! RocksDB. Nothing acknowledged may be lost; committed output must be exactly-once.

mod common;

use std::time::{Duration, Instant};

use common::{block_on, committed_lines, expected_counts, files_under, http_post_text, report, zk_connect, Cluster};

const T: Duration = Duration::from_secs(60);

/// `sequence(count, keys) → count → exactly-once file sink`; `rate` 0 = unthrottled.
fn counting_job(name: &str, count: u64, keys: u64, rate: u64, parallelism: u32, sink: &std::path::Path) -> String {
    let rate = if rate == 0 { String::new() } else { format!(", rate: {rate}") };
    format!(
        "name: {name}\nparallelism: {parallelism}\ncheckpoint-interval: 300 ms\nrestart-strategy: {{ type: fixed-delay, attempts: 20, delay: 200 ms }}\npipeline:\n  - source: {{ type: sequence, count: {count}, keys: {keys}{rate} }}\n  - count: {{}}\n  - sink: {{ type: file, path: file://{} }}\n",
        sink.display()
    )
}

#[test]
fn exactly_once_through_two_leader_kills_and_a_worker_kill() {
    let mut c = Cluster::start("it-eo", 3, 3, &[("state.backend", "rocksdb"), ("state.backend.incremental", "true")]);
    let leader = c.wait_leader(&[0, 1, 2], T);
    c.wait_workers_follow(&leader, T);
    let sink = c.dir.path().join("out");
    let (count, keys) = (24_000, 8);
    // Slow enough that the job is still running at the second leader kill.
    let id = c.submit(&counting_job("eo", count, keys, 600, 2, &sink));
    c.wait_job_state(&id, "RUNNING", T);
    c.wait_checkpoints(&id, 2, T);

    // Fault 1: kill -9 the leader, while the job runs.
    let t0 = Instant::now();
    let l1 = c.wait_leader(&[0, 1, 2], T);
    assert_eq!(c.job(&id).map(|j| j["state"].clone()), Some("RUNNING".into()), "the job runs at leader kill 1");
    c.dispatchers[l1.index].kill9();
    let alive: Vec<usize> = (0..3).filter(|&i| i != l1.index).collect();
    let l2 = c.wait_leader(&alive, T);
    c.wait_job_state(&id, "RUNNING", T);
    report("leader kill 1 -> job running again", t0);
    c.wait_checkpoints(&id, 1, T);

    // Fault 2: kill -9 a worker that runs a subtask.
    let job = c.job(&id).unwrap();
    let victim_id = job["subtasks"][0]["worker"].as_str().unwrap().to_string();
    let w = c.workers.iter().position(|w| w.id() == victim_id).unwrap();
    let t1 = Instant::now();
    c.workers[w].kill9();
    chaos_tests::wait_until(T, Duration::from_millis(100), "the job to move off the killed worker", || {
        let j = c.job(&id)?;
        (j["state"] == "RUNNING"
            && j["subtasks"].as_array()?.iter().all(|s| s["worker"] != victim_id.as_str() && s["state"] == "RUNNING"))
        .then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", c.logs()));
    report("worker kill -> job running again on other workers", t1);
    c.wait_checkpoints(&id, 1, T);

    // Fault 3: kill -9 the second leader, while the job runs.
    let t2 = Instant::now();
    let at_kill = c.job(&id).expect("the job at leader kill 2");
    assert_eq!(at_kill["state"], "RUNNING", "the job runs at leader kill 2: {at_kill}");
    c.dispatchers[l2.index].kill9();
    let last: Vec<usize> = alive.iter().copied().filter(|&i| i != l2.index).collect();
    let l3 = c.wait_leader(&last, T);
    assert!(l3.epoch > l2.epoch && l2.epoch > l1.epoch, "epochs grow: {l1:?} {l2:?} {l3:?}");
    report("leader kill 2 -> new leader", t2);
    // The third leader recovered it as an unfinished job (a finished one is never RUNNING again).
    c.wait_job_state(&id, "RUNNING", T);

    let done = c.wait_job_state(&id, "FINISHED", Duration::from_secs(180));
    eprintln!("finished: restarts {}, restored from {:?}", done["restarts"], done["restored-from"]);
    let got = committed_lines(&sink);
    let want = expected_counts(count, keys);
    assert_eq!(got.len(), want.len(), "record count: committed {} vs failure-free {}", got.len(), want.len());
    assert!(got == want, "committed output differs from a failure-free run");
}

#[test]
fn whole_cluster_restart_resumes_unfinished_jobs_and_never_reruns_finished_ones() {
    let mut c = Cluster::start("it-restart", 2, 2, &[]);
    let leader = c.wait_leader(&[0, 1], T);
    c.wait_workers_follow(&leader, T);
    // A short job that finishes, and a long one that keeps running.
    let short_sink = c.dir.path().join("short");
    let short = c.submit(&counting_job("short", 200, 4, 0, 1, &short_sink));
    c.wait_job_state(&short, "FINISHED", T);
    let short_output = committed_lines(&short_sink);
    assert_eq!(short_output, expected_counts(200, 4));
    // Every deployment, restore and state change of the short job so far (process logs are
    // appended across restarts, so later lines can only be added).
    let short_history = job_events(&c, &short);
    assert!(short_history.iter().any(|e| e.contains("task_deployed")), "{short_history:#?}");
    let long_sink = c.dir.path().join("long");
    let long = c.submit(&counting_job("long", 1_000_000, 4, 200, 2, &long_sink));
    c.wait_job_state(&long, "RUNNING", T);
    let before = c.wait_checkpoints(&long, 3, T);
    let latest_before = before["latest"]["completed"]["id"].as_u64().unwrap();

    c.kill_all();
    std::thread::sleep(Duration::from_millis(500));
    c.restart_all();

    let leader = c.wait_leader(&[0, 1], T);
    c.wait_workers_follow(&leader, T);
    c.wait_job_state(&long, "RUNNING", T);
    let cps = c.wait_checkpoints(&long, 1, T);
    let restored = cps["latest"]["restored"]["id"].as_u64().expect("restored from a checkpoint");
    assert!(restored >= latest_before, "restored from {restored}, older than the latest completed {latest_before}");
    // The finished job stays finished and did not run again.
    let s = c.job(&short).expect("the finished job is listed from the result store");
    assert_eq!(s["state"], "FINISHED");
    assert_eq!(committed_lines(&short_sink), short_output);
    // From the event history: nothing was deployed, restored or started for it after it finished.
    let after: Vec<String> = job_events(&c, &short).into_iter().filter(|e| !short_history.contains(e)).collect();
    assert_eq!(after, Vec::<String>::new(), "the finished job ran again after the restart");
}

/// Every deployment (`task_deployed`, workers), restore (`checkpoint_restored`) and state
/// change (`job_state`) event of `job` in every process log of the cluster.
fn job_events(c: &Cluster, job: &str) -> Vec<String> {
    let needle = format!("job={job}");
    let mut out = Vec::new();
    for p in c.dispatchers.iter().chain(c.workers.iter()) {
        let log = std::fs::read_to_string(p.log_path()).unwrap_or_default();
        for line in log.lines().map(common::strip_ansi) {
            let kind = ["task_deployed", "checkpoint_restored", "job_state"]
                .iter()
                .any(|k| line.contains(&format!("event=\"{k}\"")));
            if kind && line.contains(&needle) {
                out.push(format!("{}: {line}", p.name()));
            }
        }
    }
    out
}

/// One checkpoint pointer as ZooKeeper holds it, with the epoch its metadata blob records.
#[derive(Debug)]
struct StoredCheckpoint {
    id: u64,
    pointer_epoch: i64,
    metadata_epoch: i64,
    #[allow(dead_code)] // shown in failure messages
    metadata_path: String,
}

/// Reads every pointer under `jobs/<job>/checkpoints` from ZooKeeper itself, and each one's
/// metadata blob from the checkpoints directory.
async fn stored_checkpoints(zk: &zookeeper_client::Client, c: &Cluster, job: &str) -> Vec<StoredCheckpoint> {
    use prost::Message;
    let uri = format!("file://{}", c.checkpoints_path().display());
    let dir = keel_storage::StorageDir::open(&uri, &keel_storage::StorageOptions::default()).unwrap();
    let stores = keel_ha::HaStores::new(dir.clone());
    let mut out = Vec::new();
    for p in stores.checkpoints(&keel_ha::MetaClient::Zk(zk.clone()), job).await.expect("read the checkpoint pointers")
    {
        let bytes = dir
            .read_blob(&p.metadata_path, keel_storage::BlobKind::CheckpointMetadata)
            .await
            .unwrap_or_else(|e| panic!("pointer {} names unreadable metadata: {e}", p.znode));
        let meta = keel_proto::v1::CheckpointMetadata::decode(bytes.as_slice()).expect("checkpoint metadata");
        assert_eq!(meta.checkpoint_id, p.checkpoint_id, "{}", p.znode);
        out.push(StoredCheckpoint {
            id: p.checkpoint_id,
            pointer_epoch: p.epoch,
            metadata_epoch: meta.epoch,
            metadata_path: p.metadata_path,
        });
    }
    out
}

/// Files the test-only fence barrier (`KEEL_TEST_FENCE_BARRIER`) wrote: `(name, content)`.
fn barrier_files(dir: &std::path::Path, prefix: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with(prefix))
                .map(|e| {
                    (e.file_name().to_string_lossy().to_string(), std::fs::read_to_string(e.path()).unwrap_or_default())
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// A superseded leader attempts a checkpoint commit and a job-graph write, and nothing it
/// writes becomes visible in ZooKeeper.
///
/// The attempt is made certain with the test-only fence barrier: the leader's guarded write
/// of a checkpoint pointer (its metadata blob already uploaded) and of a submitted job graph
/// are held just before they are sent. The leader is then SIGSTOPped and superseded while its
/// ZooKeeper session still lives (the test deletes its latch node, as `keel drill
/// isolate-leader` or an operator would): that is the case in which only the latch check
/// protects ZooKeeper, because a session that expired refuses every write anyway. A standby
/// takes over, recovers the job and completes checkpoints; the zombie is resumed (SIGCONT),
/// stands by, and only then are its held writes released.
///
/// Fails with the guard off: `KEEL_TEST_DISABLE_LATCH_GUARD=1 cargo test -p keel-cli --test
/// jobs a_zombie` (the switch reaches the dispatchers through the environment).
#[test]
fn a_zombie_leader_cannot_complete_checkpoints_or_overwrite_anything() {
    let mut c = Cluster::start(
        "it-zombie-jobs",
        0,
        2,
        &[
            // The zombie's session must outlive its pause: the latch check is then the only
            // thing between its writes and ZooKeeper.
            ("high-availability.zookeeper.client.session-timeout", "40 s"),
            // Retention must not delete what the test looks for.
            ("state.checkpoints.num-retained", "1000"),
        ],
    );
    let barriers: Vec<std::path::PathBuf> = (0..2).map(|i| c.dir.path().join(format!("barrier-d{i}"))).collect();
    for (i, b) in barriers.iter().enumerate() {
        std::fs::create_dir_all(b).unwrap();
        c.add_dispatcher_env(&format!("d{i}"), &[("KEEL_TEST_FENCE_BARRIER", b.to_str().unwrap())]);
    }
    let old = c.wait_leader(&[0, 1], T);
    c.wait_workers_follow(&old, T);
    let other = 1 - old.index;
    let sink = c.dir.path().join("out");
    let id = c.submit(&counting_job("zombie", 10_000_000, 4, 400, 2, &sink));
    c.wait_job_state(&id, "RUNNING", T);
    c.wait_checkpoints(&id, 2, T);
    let ns = c.zk_namespace();
    let quorum = c.zk.connect_string();

    // Hold the leader's next checkpoint pointer write and any job-graph write.
    let barrier = &barriers[old.index];
    std::fs::write(barrier.join("hold"), "/checkpoints/0\n/jobgraphs/\n").unwrap();
    let rest = c.dispatchers[old.index].rest_addr().unwrap();
    let spec = counting_job("zombie-graph", 100, 1, 0, 1, &c.dir.path().join("never"));
    let submission =
        std::thread::spawn(move || http_post_text(&rest, "/jobs?jobId=zombie-graph", &spec, Duration::from_secs(300)));
    let held = chaos_tests::wait_until(T, Duration::from_millis(50), "the leader to hold both guarded writes", || {
        let held = barrier_files(barrier, "held-");
        (held.len() == 2).then_some(held)
    })
    .unwrap_or_else(|e| panic!("{e}: {:?}\n{}", barrier_files(barrier, "held-"), c.logs()));
    eprintln!("held by the leader: {held:?}");
    let checkpoint_write =
        held.iter().map(|h| &h.1).find(|w| w.contains("/checkpoints/")).expect("a held pointer write");
    let graph_write =
        held.iter().map(|h| &h.1).find(|w| w.contains("/jobgraphs/zombie-graph")).expect("a held graph write");
    for w in [checkpoint_write, graph_write] {
        assert!(w.ends_with(&format!(" {}", old.epoch)), "held under the leader's epoch {}: {w}", old.epoch);
    }
    // `create /jobs/<id>/checkpoints/<20 digits> <epoch>`
    let zombie_checkpoint: u64 = checkpoint_write
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.rsplit('/').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("checkpoint id in {checkpoint_write:?}"));

    // Pause the leader, then supersede it while its session lives.
    c.dispatchers[old.index].stop().unwrap();
    let latch = c.status_json()["contenders"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["contender_id"] == old.id.as_str())
        .map(|k| format!("/leader/latch/{}", k["node"].as_str().unwrap()))
        .expect("the paused leader's latch node");
    block_on(async {
        let zk = zk_connect(&quorum, &ns).await;
        zk.delete(&latch, None).await.unwrap_or_else(|e| panic!("delete {latch}: {e}\n{}", c.logs()));
    });
    let new = c.wait_leader(&[other], T);
    assert!(new.epoch > old.epoch, "{new:?} {old:?}");
    c.wait_job_state(&id, "RUNNING", T);
    c.wait_checkpoints(&id, 1, T);

    // Resume the zombie; it learns it was superseded and stands by.
    c.dispatchers[old.index].cont().unwrap();
    chaos_tests::wait_until(T, Duration::from_millis(50), "the zombie to stand by", || {
        (c.ha_leader(old.index)?["role"] == "standby").then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", c.logs()));
    assert!(c.dispatchers[old.index].log_tail(4000).contains("leadership lost"));

    // Now let its held writes go: a superseded leader tries to publish a checkpoint and a job.
    std::fs::remove_file(barrier.join("hold")).unwrap();
    let done = chaos_tests::wait_until(T, Duration::from_millis(50), "the zombie's held writes to be sent", || {
        let done = barrier_files(barrier, "done-");
        (done.len() == 2).then_some(done)
    })
    .unwrap_or_else(|e| panic!("{e}: {:?}\n{}", barrier_files(barrier, "done-"), c.logs()));
    eprintln!("the zombie's writes: {done:?}");
    let answer = submission.join().unwrap();
    eprintln!("the zombie answered the submission with {answer:?}");

    // ZooKeeper itself: nothing the zombie wrote is visible.
    let (checkpoints, graph, graph_job) = block_on(async {
        let zk = zk_connect(&quorum, &ns).await;
        let graph = zk.check_stat("/jobgraphs/zombie-graph").await.unwrap();
        let graph_job = zk.check_stat("/jobs/zombie-graph").await.unwrap();
        (stored_checkpoints(&zk, &c, &id).await, graph, graph_job)
    });
    eprintln!("checkpoint pointers: {checkpoints:?}");
    let mut visible = Vec::new();
    if graph.is_some() || graph_job.is_some() {
        visible.push("its job graph (jobgraphs/zombie-graph, jobs/zombie-graph)".to_string());
    }
    for p in &checkpoints {
        if p.pointer_epoch != p.metadata_epoch {
            visible.push(format!("a pointer whose epoch disagrees with its metadata: {p:?}"));
        }
        if p.id == zombie_checkpoint || (p.id >= zombie_checkpoint && p.metadata_epoch == old.epoch) {
            visible.push(format!("its checkpoint {} (epoch {}): {p:?}", p.id, p.metadata_epoch));
        }
    }
    assert!(visible.is_empty(), "the superseded leader (epoch {}) wrote to ZooKeeper: {visible:#?}", old.epoch);
    assert!(
        checkpoints.iter().any(|p| p.metadata_epoch == new.epoch && p.id > zombie_checkpoint),
        "the new leader's checkpoints are there: {checkpoints:?}"
    );
    // The zombie was told why: its latch was gone.
    for (_, outcome) in &done {
        assert!(outcome.starts_with("err") && outcome.contains("leadership lost"), "{done:?}");
    }
    // The job goes on under the new leader, past the zombie's checkpoint id.
    let before = c.wait_checkpoints(&id, 1, T)["counts"]["completed"].as_u64().unwrap();
    c.wait_checkpoints(&id, before + 1, T);
}

#[test]
fn cancel_leaves_no_znodes_and_no_checkpoint_files() {
    let c = Cluster::start("it-cancel", 1, 1, &[("state.backend", "rocksdb")]);
    let leader = c.wait_leader(&[0], T);
    c.wait_workers_follow(&leader, T);
    let sink = c.dir.path().join("out");
    let id = c.submit(&counting_job("cancel-me", 10_000_000, 4, 500, 2, &sink));
    c.wait_job_state(&id, "RUNNING", T);
    c.wait_checkpoints(&id, 2, T);
    let job_dir = c.checkpoints_path().join(&id);
    assert!(!files_under(&job_dir).is_empty(), "checkpoint files exist while running");

    let out = c.keel(&["cancel", &id]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    c.wait_job_state(&id, "CANCELED", T);
    let inspect = c.keel(&["ha", "inspect", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&inspect.stdout).unwrap();
    let znodes: Vec<String> =
        v["znodes"].as_array().unwrap().iter().map(|z| z["path"].as_str().unwrap().to_string()).collect();
    let of_job: Vec<&String> = znodes.iter().filter(|p| p.contains(&id)).collect();
    // Only the result entry remains: the record that this job must never run again.
    assert_eq!(of_job, vec![&format!("/job-results/{id}")], "{znodes:#?}");
    assert_eq!(files_under(&job_dir), Vec::<String>::new(), "checkpoint files left behind");
    assert!(!c.storage_path().join("ha/jobgraphs").join(&id).exists(), "job graph blob left behind");
}

#[test]
fn bad_specs_are_refused_with_clear_errors_and_nothing_is_stored() {
    let c = Cluster::start("it-badspec", 1, 0, &[]);
    c.wait_leader(&[0], T);
    let cases = [
        ("name: x\nparallelism: 0\npipeline:\n  - source: { type: sequence, count: 1 }\n  - sink: { type: discard }\n", "parallelism"),
        ("name: x\nparallelism: 1\npipeline:\n  - source: { type: sequence, count: 1 }\n  - frobnicate: {}\n  - sink: { type: discard }\n", "frobnicate"),
        ("name: x\nparallelism: [1\n", "YAML"),
    ];
    for (spec, needle) in cases {
        let path = c.dir.path().join(format!("bad-{}.yaml", common::uuid_like()));
        std::fs::write(&path, spec).unwrap();
        let out = c.keel(&["run", path.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(1), "a bad spec is refused");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("HTTP 400") && err.contains("invalid job spec") && err.contains(needle), "{err}");
    }
    let list = c.keel(&["list", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(v["jobs"].as_array().unwrap().len(), 0, "nothing stored: {v}");
    // Nothing stored, as ZooKeeper and the storage directory themselves say.
    let (ns, quorum) = (c.zk_namespace(), c.zk.connect_string());
    let (graphs, jobs) = block_on(async {
        let zk = zk_connect(&quorum, &ns).await;
        let list = |p: &'static str| {
            let zk = zk.clone();
            async move {
                match zk.list_children(p).await {
                    Ok(children) => children,
                    Err(zookeeper_client::Error::NoNode) => vec![],
                    Err(e) => panic!("list {p}: {e}"),
                }
            }
        };
        (list("/jobgraphs").await, list("/jobs").await)
    });
    assert_eq!((graphs, jobs), (vec![], vec![]), "a refused spec left znodes");
    assert_eq!(files_under(&c.storage_path()), Vec::<String>::new(), "a refused spec left files in storage");
}

#[test]
fn corrupt_latest_checkpoint_falls_back_to_the_previous_one() {
    // The restore path under test: no adoption (a restarted dispatcher would adopt the tasks).
    let mut c = Cluster::start(
        "it-corrupt",
        1,
        1,
        &[("state.checkpoints.num-retained", "3"), ("high-availability.adoption.timeout", "0 s")],
    );
    let leader = c.wait_leader(&[0], T);
    c.wait_workers_follow(&leader, T);
    let sink = c.dir.path().join("out");
    let id = c.submit(&counting_job("corrupt", 10_000_000, 4, 300, 1, &sink));
    c.wait_job_state(&id, "RUNNING", T);
    c.wait_checkpoints(&id, 3, T);
    // Stop the dispatcher (no new checkpoints), then corrupt the newest metadata blob.
    c.dispatchers[0].kill9();
    let job_dir = c.checkpoints_path().join(&id);
    let mut metas: Vec<(u64, std::path::PathBuf)> = files_under(&job_dir)
        .into_iter()
        .filter(|f| f.contains(".metadata"))
        .map(|f| {
            let chk: u64 = f.split('/').next().unwrap().trim_start_matches("chk-").parse().unwrap();
            (chk, job_dir.join(f))
        })
        .collect();
    metas.sort();
    assert!(metas.len() >= 2, "{metas:?}");
    let (newest, newest_path) = metas.last().cloned().unwrap();
    let (previous, _) = metas[metas.len() - 2].clone();
    let mut bytes = std::fs::read(&newest_path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&newest_path, bytes).unwrap();

    c.dispatchers[0].restart().unwrap();
    let leader = c.wait_leader(&[0], T);
    c.wait_workers_follow(&leader, T);
    c.wait_job_state(&id, "RUNNING", T);
    let cps = c.wait_checkpoints(&id, 0, T);
    assert_eq!(
        cps["latest"]["restored"]["id"].as_u64(),
        Some(previous),
        "fell back from {newest} to {previous}: {cps}"
    );
    let log = c.dispatchers[0].log_tail(3000);
    assert!(
        log.contains("checksum mismatch") && log.contains(&format!("chk-{newest}")),
        "the error names the corrupt blob:\n{log}"
    );
}

#[test]
fn subtasks_that_finish_early_do_not_stall_checkpoints_or_the_job() {
    // Parallelism 3 over 2 keys: subtask 2 has no input and finishes at once; the others run.
    let c = Cluster::start("it-uneven", 1, 2, &[]);
    let leader = c.wait_leader(&[0], T);
    c.wait_workers_follow(&leader, T);
    let sink = c.dir.path().join("out");
    let id = c.submit(&counting_job("uneven", 3000, 2, 1000, 3, &sink));
    let done = c.wait_job_state(&id, "FINISHED", T);
    assert_eq!(done["state"], "FINISHED");
    assert_eq!(committed_lines(&sink), expected_counts(3000, 2));
}

#[test]
fn the_same_job_runs_with_s3_storage() {
    let s3 = chaos_tests::S3Server::start().expect("S3-compatible server (pip install 'moto[server]')");
    s3.create_bucket("keel").unwrap();
    let endpoint = s3.endpoint();
    let c = Cluster::start(
        "it-s3",
        2,
        2,
        &[
            ("high-availability.storageDir", "s3://keel/ha-root"),
            ("s3.endpoint", &endpoint),
            ("s3.access-key", chaos_tests::S3Server::ACCESS_KEY),
            ("s3.secret-key", chaos_tests::S3Server::SECRET_KEY),
            ("s3.region", chaos_tests::S3Server::REGION),
            ("s3.path.style.access", "true"),
            ("state.backend", "rocksdb"),
            // The restore from S3 is under test: no adoption through the leader kill.
            ("high-availability.adoption.timeout", "0 s"),
        ],
    );
    let mut c = c;
    let leader = c.wait_leader(&[0, 1], T);
    c.wait_workers_follow(&leader, T);
    let sink = c.dir.path().join("out");
    let (count, keys) = (8000, 4);
    let id = c.submit(&counting_job("on-s3", count, keys, 1000, 2, &sink));
    c.wait_job_state(&id, "RUNNING", T);
    c.wait_checkpoints(&id, 2, T);
    // A leader failover in between: recovery reads the job graph and checkpoints from S3.
    c.dispatchers[leader.index].kill9();
    let other = 1 - leader.index;
    c.wait_leader(&[other], T);
    let done = c.wait_job_state(&id, "FINISHED", Duration::from_secs(120));
    assert!(done["restored-from"].as_u64().is_some(), "restored from an S3 checkpoint: {done}");
    assert_eq!(committed_lines(&sink), expected_counts(count, keys));
    // Nothing was written to local disk for HA or checkpoints.
    assert!(!c.storage_path().exists(), "file:// storage unused");
}

/// `part-<job>-<subtask>-<checkpoint>` → checkpoint id.
fn part_checkpoint(name: &str) -> u64 {
    name.rsplit('-').next().unwrap().parse().unwrap()
}

#[test]
fn savepoint_then_run_from_savepoint_continues_exactly_where_it_left_off() {
    let c = Cluster::start("it-savepoint", 1, 2, &[("rest.auth.token", "s3cret"), ("state.backend", "rocksdb")]);
    let leader = c.wait_leader(&[0], T);
    c.wait_workers_follow(&leader, T);
    let rest = c.dispatchers[0].rest_addr().unwrap();
    // Mutating REST calls need the token; the CLI sends the one from the config.
    let (code, body) =
        chaos_tests::http_request_json("POST", &rest, "/jobs", Some(&serde_json::json!("x")), Duration::from_secs(5))
            .unwrap();
    assert_eq!(code, 401, "{body}");

    let (count, keys) = (6000, 4);
    let sink1 = c.dir.path().join("out1");
    let first = c.submit(&counting_job("sp-1", count, keys, 400, 2, &sink1));
    c.wait_job_state(&first, "RUNNING", T);
    c.wait_checkpoints(&first, 2, T);
    let sp_dir = format!("file://{}/savepoints", c.dir.path().display());
    let out = c.keel(&["savepoint", &first, "--dir", &sp_dir]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let location = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(location.starts_with(&sp_dir), "{location}");
    let sp_checkpoint: u64 = location.rsplit('-').next().unwrap().parse().unwrap();
    let out = c.keel(&["cancel", &first]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let sink2 = c.dir.path().join("out2");
    let spec = counting_job("sp-2", count, keys, 0, 2, &sink2);
    let path = c.dir.path().join("sp-2.yaml");
    std::fs::write(&path, spec).unwrap();
    let out = c.keel(&["run", path.to_str().unwrap(), "--from-savepoint", &location]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let second = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let done = c.wait_job_state(&second, "FINISHED", T);
    assert_eq!(done["state"], "FINISHED");

    // The first job's output up to the savepoint plus the second job's output is one run's.
    let mut lines = Vec::new();
    for e in std::fs::read_dir(&sink1).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if name.starts_with("part-") && part_checkpoint(&name) <= sp_checkpoint {
            lines.extend(std::fs::read_to_string(e.path()).unwrap().lines().map(str::to_string));
        }
    }
    lines.extend(committed_lines(&sink2));
    lines.sort();
    assert_eq!(lines, expected_counts(count, keys));
}

#[test]
fn a_corrupt_job_graph_is_reported_by_name_and_kept() {
    let mut c = Cluster::start("it-badgraph", 1, 1, &[]);
    let leader = c.wait_leader(&[0], T);
    c.wait_workers_follow(&leader, T);
    let sink = c.dir.path().join("out");
    let id = c.submit(&counting_job("graph", 1_000_000, 2, 100, 1, &sink));
    c.wait_job_state(&id, "RUNNING", T);
    c.dispatchers[0].kill9();
    let graph_dir = c.storage_path().join("ha/jobgraphs").join(&id);
    let blob = std::fs::read_dir(&graph_dir).unwrap().flatten().next().unwrap().path();
    std::fs::write(&blob, b"not a keel blob at all").unwrap();
    c.dispatchers[0].restart().unwrap();
    c.wait_leader(&[0], T);
    let log = chaos_tests::wait_until(T, Duration::from_millis(100), "the recovery error", || {
        let log = c.dispatchers[0].log_tail(4000);
        log.contains("cannot load a stored job graph").then_some(log)
    })
    .unwrap();
    assert!(
        log.contains(&blob.file_name().unwrap().to_string_lossy().to_string()) && log.contains("bad magic"),
        "{log}"
    );
    // Nothing stored is lost: the graph pointer and its (corrupt) blob stay for an operator.
    let inspect = c.keel(&["ha", "inspect", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&inspect.stdout).unwrap();
    assert!(v["znodes"].as_array().unwrap().iter().any(|z| z["path"] == format!("/jobgraphs/{id}")), "{v}");
    assert!(blob.exists());
}

#[test]
fn a_checkpoint_with_a_missing_state_file_is_skipped_for_the_previous_one() {
    let mut c = Cluster::start(
        "it-missing-sst",
        1,
        1,
        &[
            ("state.checkpoints.num-retained", "3"),
            ("state.backend", "rocksdb"),
            ("state.backend.incremental", "true"),
            // The restore path under test: no adoption.
            ("high-availability.adoption.timeout", "0 s"),
        ],
    );
    let leader = c.wait_leader(&[0], T);
    c.wait_workers_follow(&leader, T);
    let sink = c.dir.path().join("out");
    let id = c.submit(&counting_job("missing", 10_000_000, 4, 300, 1, &sink));
    c.wait_job_state(&id, "RUNNING", T);
    c.wait_checkpoints(&id, 3, T);
    c.dispatchers[0].kill9();
    // Delete one state file only the newest checkpoint references (its exclusive files).
    let job_dir = c.checkpoints_path().join(&id);
    let mut chks: Vec<u64> = files_under(&job_dir)
        .iter()
        .filter(|f| f.contains(".metadata"))
        .map(|f| f.split('/').next().unwrap().trim_start_matches("chk-").parse().unwrap())
        .collect();
    chks.sort();
    let newest = *chks.last().unwrap();
    let previous = chks[chks.len() - 2];
    let victim = files_under(&job_dir)
        .into_iter()
        .find(|f| f.starts_with(&format!("chk-{newest}/subtask-")) && !f.ends_with("state-manifest"))
        .expect("an exclusive state file of the newest checkpoint");
    std::fs::remove_file(job_dir.join(&victim)).unwrap();
    c.dispatchers[0].restart().unwrap();
    let leader = c.wait_leader(&[0], T);
    c.wait_workers_follow(&leader, T);
    c.wait_job_state(&id, "RUNNING", T);
    let cps = c.wait_checkpoints(&id, 0, T);
    assert_eq!(cps["latest"]["restored"]["id"].as_u64(), Some(previous), "fell back from {newest}: {cps}");
    let log = c.dispatchers[0].log_tail(3000);
    assert!(log.contains("is missing") && log.contains(&victim), "the error names the missing file:\n{log}");
}
