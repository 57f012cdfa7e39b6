//! The subtask runtime end to end: real RocksDB and hashmap state, real `file://` storage
//! in temp dirs, and a test driver playing the checkpoint coordinator.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use keel_job::{
    discard_checkpoints, discard_job, final_part_path, parse_job_spec, read_state_manifest, spawn_subtask, Control,
    JobSpec, OperatorRegistry, SubtaskContext, SubtaskEvent, SubtaskHandle,
};
use keel_proto::v1::{CheckpointMetadata, SubtaskSnapshot};
use keel_state::{BackendKind, StateOptions};
use keel_storage::{StorageDir, StorageOptions};
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(15);

/// Directories of one test job: checkpoints, sink output, local state.
struct Env {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    checkpoints: StorageDir,
    state: StateOptions,
    job_id: String,
}

impl Env {
    fn new(backend: BackendKind, incremental: bool, local_recovery: bool) -> Env {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().to_path_buf();
        let checkpoints =
            StorageDir::open(&format!("file://{}/checkpoints", root.display()), &StorageOptions::default()).unwrap();
        let state = StateOptions::new(&root.join("tmp"))
            .with_backend(backend)
            .with_incremental(incremental)
            .with_local_recovery(local_recovery);
        Env { _tmp: tmp, root, checkpoints, state, job_id: "job-1".to_string() }
    }

    fn out_dir(&self) -> PathBuf {
        self.root.join("out")
    }

    fn out_uri(&self) -> String {
        format!("file://{}", self.out_dir().display())
    }

    fn ctx(&self, attempt: u64, subtask: u32, parallelism: u32, registry: &Arc<OperatorRegistry>) -> SubtaskContext {
        SubtaskContext {
            job_id: self.job_id.clone(),
            attempt,
            subtask,
            parallelism,
            checkpoints: self.checkpoints.clone(),
            storage_options: StorageOptions::default(),
            state: self.state.clone(),
            registry: registry.clone(),
        }
    }

    /// Sorted lines of every committed part file.
    fn committed_lines(&self) -> Vec<String> {
        let mut lines = Vec::new();
        for part in self.committed_parts() {
            let text = std::fs::read_to_string(self.out_dir().join(&part)).unwrap();
            lines.extend(text.lines().map(str::to_string));
        }
        lines.sort();
        lines
    }

    fn committed_parts(&self) -> BTreeSet<String> {
        let Ok(entries) = std::fs::read_dir(self.out_dir()) else { return BTreeSet::new() };
        entries.map(|e| e.unwrap().file_name().into_string().unwrap()).filter(|n| n.starts_with("part-")).collect()
    }

    fn pending_files(&self) -> Vec<PathBuf> {
        files_under(&self.out_dir().join(".pending").join(&self.job_id))
    }

    fn checkpoint_files(&self, sub: &str) -> Vec<PathBuf> {
        files_under(&self.root.join("checkpoints").join(&self.job_id).join(sub))
    }
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else { return out };
    for e in entries {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out.sort();
    out
}

/// The test's checkpoint coordinator for one job attempt.
struct Attempt {
    handles: Vec<SubtaskHandle>,
    /// The end-of-input snapshot of subtasks that finished; it stands for them afterwards.
    finished: Vec<Option<SubtaskSnapshot>>,
    /// Per subtask, `records_in` at the restore point or at the last checkpoint taken with
    /// [`Attempt::trigger_after_progress`].
    seen: Vec<u64>,
}

/// Checkpoint ids and completed checkpoints across attempts (the ZooKeeper stores' role).
#[derive(Default)]
struct Coordinator {
    next_id: u64,
    completed: Vec<CheckpointMetadata>,
}

async fn next_event(h: &mut SubtaskHandle) -> SubtaskEvent {
    timeout(WAIT, h.events.recv()).await.expect("subtask event in time").expect("event channel open")
}

impl Attempt {
    /// Spawns every subtask, restoring from `restore` when given, and waits for `Running`.
    async fn start(
        env: &Env,
        spec: &Arc<JobSpec>,
        attempt: u64,
        restore: Option<&CheckpointMetadata>,
    ) -> Result<Attempt, (u32, String)> {
        let registry = Arc::new(OperatorRegistry::new());
        let p = spec.parallelism;
        let mut handles: Vec<SubtaskHandle> = (0..p)
            .map(|i| {
                let snap = restore.map(|m| m.subtasks[i as usize].clone());
                spawn_subtask(spec.clone(), env.ctx(attempt, i, p, &registry), snap)
            })
            .collect();
        let mut finished = vec![None; p as usize];
        for (i, h) in handles.iter_mut().enumerate() {
            match next_event(h).await {
                SubtaskEvent::Running => {}
                SubtaskEvent::Failed { reason } => return Err((i as u32, reason)),
                other => panic!("subtask {i}: expected Running, got {other:?}"),
            }
            if let Some(snap) = restore.map(|m| &m.subtasks[i]).filter(|s| s.end_of_input) {
                assert_eq!(next_event(h).await, SubtaskEvent::Finished);
                finished[i] = Some(snap.clone());
            }
        }
        let seen = (0..p as usize).map(|i| restore.map_or(0, |m| m.subtasks[i].records_in)).collect();
        Ok(Attempt { handles, finished, seen })
    }

    /// Triggers a checkpoint once every running subtask not yet at the end of its input has
    /// processed records since the restore point or the last checkpoint taken this way (its
    /// `records_in` grew), instead of sleeping and hoping the sources emitted something: a
    /// checkpoint showing no such progress is aborted (as a coordinator aborts a declined one)
    /// and another is triggered, bounded by [`WAIT`]. Returns the checkpoint, neither
    /// completed nor aborted.
    async fn trigger_after_progress(&mut self, coord: &mut Coordinator) -> CheckpointMetadata {
        let deadline = tokio::time::Instant::now() + WAIT;
        let mut probes = 0u32;
        loop {
            let meta = self.trigger(coord).await;
            let stalled: Vec<usize> = (0..self.handles.len())
                .filter(|&i| {
                    // A subtask at the end of its input has nothing left to process.
                    let s = &meta.subtasks[i];
                    self.finished[i].is_none() && !s.end_of_input && s.records_in <= self.seen[i]
                })
                .collect();
            if stalled.is_empty() {
                self.seen = meta.subtasks.iter().map(|s| s.records_in).collect();
                return meta;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "subtasks {stalled:?} processed no record past {:?} within {WAIT:?} ({probes} checkpoints tried)",
                self.seen
            );
            probes += 1;
            for (i, h) in self.handles.iter().enumerate() {
                if self.finished[i].is_none() {
                    h.control.send(Control::CheckpointAborted { id: meta.checkpoint_id }).unwrap();
                }
            }
            tokio::task::yield_now().await;
        }
    }

    /// Triggers checkpoint `next_id` on every running subtask and collects the acks.
    async fn trigger(&mut self, coord: &mut Coordinator) -> CheckpointMetadata {
        coord.next_id += 1;
        let id = coord.next_id;
        let mut subtasks = Vec::new();
        for (i, h) in self.handles.iter_mut().enumerate() {
            if let Some(snap) = &self.finished[i] {
                subtasks.push(snap.clone());
                continue;
            }
            h.control.send(Control::TriggerCheckpoint { id }).unwrap();
            match next_event(h).await {
                SubtaskEvent::CheckpointAck { id: acked, snapshot } => {
                    assert_eq!(acked, id);
                    assert_eq!(snapshot.subtask, i as u32);
                    subtasks.push(snapshot);
                }
                other => panic!("subtask {i}: expected the ack of checkpoint {id}, got {other:?}"),
            }
        }
        CheckpointMetadata { checkpoint_id: id, parallelism: subtasks.len() as u32, subtasks, ..Default::default() }
    }

    /// Records `meta` as completed and notifies the subtasks; waits for the ones whose
    /// snapshot marked the end of input to finish.
    async fn complete(&mut self, coord: &mut Coordinator, meta: CheckpointMetadata) {
        let id = meta.checkpoint_id;
        for (i, h) in self.handles.iter_mut().enumerate() {
            if self.finished[i].is_some() {
                continue;
            }
            h.control.send(Control::CheckpointComplete { id }).unwrap();
            if meta.subtasks[i].end_of_input {
                assert_eq!(next_event(h).await, SubtaskEvent::Finished, "subtask {i}");
                self.finished[i] = Some(meta.subtasks[i].clone());
            }
        }
        coord.completed.push(meta);
    }

    fn all_finished(&self) -> bool {
        self.finished.iter().all(Option::is_some)
    }

    /// Checkpoints every `interval` until every subtask finished.
    async fn run_to_end(&mut self, coord: &mut Coordinator, interval: Duration) {
        let deadline = tokio::time::Instant::now() + WAIT;
        while !self.all_finished() {
            assert!(tokio::time::Instant::now() < deadline, "job did not finish in time");
            tokio::time::sleep(interval).await;
            let meta = self.trigger(coord).await;
            self.complete(coord, meta).await;
        }
        for h in self.handles.drain(..) {
            timeout(WAIT, h.join).await.unwrap().unwrap();
        }
    }

    /// Simulates a crash: cancels every subtask and waits for the tasks to end.
    async fn crash(self) {
        for h in self.handles {
            let _ = h.control.send(Control::Cancel);
            timeout(WAIT, h.join).await.unwrap().unwrap();
        }
    }
}

fn spec(yaml: &str) -> Arc<JobSpec> {
    Arc::new(parse_job_spec(yaml, "test.yaml").unwrap())
}

/// `sequence → count → file sink`; `rate` records/s per subtask (`None`: unthrottled). The
/// rate changes timing only, never the output, so a test may restore a throttled attempt
/// into an unthrottled one.
fn count_job(out: &str, count: u64, keys: u64, rate: Option<u64>) -> Arc<JobSpec> {
    let rate = rate.map(|r| format!(", rate: {r}")).unwrap_or_default();
    spec(&format!(
        "name: counts\nparallelism: 2\ncheckpoint-interval: 50 ms\npipeline:\n  \
         - source: {{ type: sequence, count: {count}, keys: {keys}{rate} }}\n  - count: {{}}\n  \
         - sink: {{ type: file, path: \"{out}\" }}\n"
    ))
}

/// What `sequence → count` must produce: every (key, running count) exactly once.
fn expected_counts(count: u64, keys: u64) -> Vec<String> {
    let mut per_key = vec![0u64; keys as usize];
    let mut lines = Vec::new();
    for n in 0..count {
        let k = (n % keys) as usize;
        per_key[k] += 1;
        lines.push(format!("k{k},{}", per_key[k]));
    }
    lines.sort();
    lines
}

/// A failure-free run of `spec` in a fresh environment; returns its committed lines.
async fn failure_free_run(yaml_for: impl Fn(&str) -> Arc<JobSpec>) -> Vec<String> {
    let env = Env::new(BackendKind::HashMap, false, false);
    let spec = yaml_for(&env.out_uri());
    let mut coord = Coordinator::default();
    let mut attempt = Attempt::start(&env, &spec, 1, None).await.unwrap();
    attempt.run_to_end(&mut coord, Duration::from_millis(20)).await;
    env.committed_lines()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bounded_count_job_runs_to_finished_with_every_pair_exactly_once() {
    let env = Env::new(BackendKind::HashMap, false, false);
    let spec = count_job(&env.out_uri(), 4000, 16, Some(5000));
    let mut coord = Coordinator::default();
    let mut attempt = Attempt::start(&env, &spec, 1, None).await.unwrap();
    attempt.run_to_end(&mut coord, Duration::from_millis(30)).await;
    assert_eq!(env.committed_lines(), expected_counts(4000, 16));
    // Several checkpoints carried data, each committed under its deterministic name.
    let parts = env.committed_parts();
    assert!(parts.len() >= 4, "{parts:?}");
    let last = coord.completed.last().unwrap();
    assert!(last.subtasks.iter().all(|s| s.end_of_input && s.records_in == 2000 && s.records_out == 2000));
    // Nothing pending is left, and the local state is gone.
    assert_eq!(env.pending_files(), Vec::<PathBuf>::new());
    assert!(!env.root.join("tmp/keel-state/job-1-subtask-0").exists());
}

/// A subtask whose operator panics (a custom operator's bug) fails with a report naming the
/// panic, as any failed subtask does; before, its events channel simply closed and the leader
/// waited forever on a subtask that was gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_operator_fails_its_subtask_naming_the_panic() {
    struct Boom;
    impl keel_job::Operator for Boom {
        fn process(
            &mut self,
            record: keel_job::Record,
            _ctx: &mut keel_job::OperatorContext<'_>,
        ) -> Result<(), keel_job::OperatorError> {
            if record.seq >= 3 {
                panic!("boom at record {}", record.seq);
            }
            Ok(())
        }

        fn is_stateful(&self) -> bool {
            false
        }
    }
    let mut registry = OperatorRegistry::new();
    registry.register("boom", |_| Ok(Box::new(Boom) as Box<dyn keel_job::Operator>)).unwrap();
    let registry = Arc::new(registry);
    let env = Env::new(BackendKind::HashMap, false, false);
    let spec = keel_job::parse_job_spec_with(
        "name: b\npipeline:\n  - source: { type: sequence, count: 100 }\n  - boom: {}\n  - sink: { type: discard }\n",
        "b.yaml",
        &registry,
    )
    .unwrap();
    let mut h = spawn_subtask(Arc::new(spec), env.ctx(1, 0, 1, &registry), None);
    assert_eq!(next_event(&mut h).await, SubtaskEvent::Running);
    match next_event(&mut h).await {
        SubtaskEvent::Failed { reason } => {
            assert!(reason.contains("panicked") && reason.contains("boom at record 3"), "{reason}")
        }
        other => panic!("expected Failed naming the panic, got {other:?}"),
    }
    timeout(WAIT, h.join).await.unwrap().unwrap();
}

/// A trigger delivered twice is answered once (the second is ignored, not declined: a
/// decline would abort a checkpoint the subtask acknowledged); a trigger older than the last
/// one is declined.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_trigger_is_answered_once_and_an_older_one_declined() {
    let env = Env::new(BackendKind::HashMap, false, false);
    let spec = count_job(&env.out_uri(), 1_000_000, 4, Some(200));
    let attempt = Attempt::start(&env, &spec, 1, None).await.unwrap();
    let mut handles = attempt.handles;
    let h = &mut handles[0];
    for id in [1, 1, 2] {
        h.control.send(Control::TriggerCheckpoint { id }).unwrap();
    }
    h.control.send(Control::TriggerCheckpoint { id: 1 }).unwrap();
    let mut events = Vec::new();
    for _ in 0..3 {
        events.push(match next_event(h).await {
            SubtaskEvent::CheckpointAck { id, .. } => format!("ack {id}"),
            SubtaskEvent::CheckpointDeclined { id, .. } => format!("declined {id}"),
            other => format!("{other:?}"),
        });
    }
    assert_eq!(events, ["ack 1", "ack 2", "declined 1"]);
    for h in handles {
        let _ = h.control.send(Control::Cancel);
        timeout(WAIT, h.join).await.unwrap().unwrap();
    }
}

/// Runs attempt 1 with `completed_before_crash` normally completed checkpoints, then takes
/// one more checkpoint that is acknowledged but never notified, and crashes. When
/// `last_completed` is true, the coordinator had completed that checkpoint (its notification
/// was lost); else it never completed. Attempt 2 restores from the latest completed
/// checkpoint and runs to the end.
async fn failover(env: &Env, last_completed: bool, check_incremental: bool) -> Coordinator {
    // Attempt 1 would need 5 s to finish; it crashes long before. Attempt 2 runs unthrottled.
    let (count, keys) = (40_000, 16);
    let spec = count_job(&env.out_uri(), count, keys, Some(4000));
    let unthrottled = count_job(&env.out_uri(), count, keys, None);
    let mut coord = Coordinator::default();
    let mut a1 = Attempt::start(env, &spec, 1, None).await.unwrap();
    for _ in 0..2 {
        let meta = a1.trigger_after_progress(&mut coord).await;
        a1.complete(&mut coord, meta).await;
    }
    if check_incremental {
        // The second checkpoint reuses the first one's SST files and uploads only new ones.
        for s in 0..2 {
            let m1 =
                read_state_manifest(&env.checkpoints, &coord.completed[0].subtasks[s].state_manifest).await.unwrap();
            let m2 =
                read_state_manifest(&env.checkpoints, &coord.completed[1].subtasks[s].state_manifest).await.unwrap();
            let first: BTreeSet<&str> = m1.files.iter().map(|f| f.remote_path.as_str()).collect();
            let reused = m2.files.iter().filter(|f| first.contains(f.remote_path.as_str())).count();
            let uploaded = m2.files.len() - reused;
            assert!(reused >= 1 && m2.files.iter().any(|f| f.shared && first.contains(f.remote_path.as_str())));
            assert!(uploaded < m2.files.len(), "checkpoint 2 uploaded {uploaded} of {} files", m2.files.len());
            assert!(m1.files.iter().any(|f| f.name.ends_with(".sst")), "{m1:?}");
        }
    }
    let unnotified = a1.trigger_after_progress(&mut coord).await;
    assert!(unnotified.subtasks.iter().all(|s| !s.end_of_input), "the job must not end before the crash");
    let unnotified_id = unnotified.checkpoint_id;
    if last_completed {
        coord.completed.push(unnotified.clone());
    }
    a1.crash().await;

    // Whatever the crash, no part of an un-notified checkpoint is visible yet, but its
    // pending parts exist.
    let parts = env.committed_parts();
    for s in 0..2 {
        assert!(!parts.contains(&final_part_path(&env.job_id, s, unnotified_id)), "{parts:?}");
    }
    assert!(!env.pending_files().is_empty());

    let restore = coord.completed.last().unwrap().clone();
    let mut a2 = Attempt::start(env, &unthrottled, 2, Some(&restore)).await.unwrap();
    let parts = env.committed_parts();
    for s in 0..2 {
        // Committed on restore exactly when that checkpoint completed.
        assert_eq!(parts.contains(&final_part_path(&env.job_id, s, unnotified_id)), last_completed, "{parts:?}");
    }
    // Attempt 1's leftovers are gone: nothing of it is pending any more.
    assert!(
        env.pending_files().iter().all(|p| !p.file_name().unwrap().to_str().unwrap().starts_with("1-")),
        "{:?}",
        env.pending_files()
    );
    a2.run_to_end(&mut coord, Duration::from_millis(40)).await;

    let expected = expected_counts(count, keys);
    assert_eq!(env.committed_lines(), expected);
    assert_eq!(env.pending_files(), Vec::<PathBuf>::new());
    coord
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_once_across_a_crash_with_a_lost_completion_notification_hashmap() {
    let env = Env::new(BackendKind::HashMap, false, false);
    failover(&env, true, false).await;
    let reference = failure_free_run(|out| count_job(out, 40_000, 16, None)).await;
    assert_eq!(env.committed_lines(), reference, "record for record equal to a failure-free run");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_once_across_a_crash_before_completion_rocksdb() {
    let env = Env::new(BackendKind::RocksDb, false, false);
    failover(&env, false, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_once_across_crashes_rocksdb_incremental_with_local_recovery() {
    let env = Env::new(BackendKind::RocksDb, true, true);
    failover(&env, true, true).await;
    let env = Env::new(BackendKind::RocksDb, true, false);
    failover(&env, false, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parts_of_an_aborted_attempt_never_become_visible() {
    let env = Env::new(BackendKind::RocksDb, true, false);
    let (count, keys) = (3000, 8);
    let spec = count_job(&env.out_uri(), count, keys, Some(4000));
    let mut coord = Coordinator::default();

    // Attempt 1 takes two checkpoints that never complete, then dies.
    let mut a1 = Attempt::start(&env, &spec, 1, None).await.unwrap();
    for _ in 0..2 {
        a1.trigger_after_progress(&mut coord).await;
    }
    a1.crash().await;
    assert!(env.committed_parts().is_empty());
    assert!(env.pending_files().len() >= 2, "{:?}", env.pending_files());

    // Attempt 2 starts fresh (nothing completed): attempt 1's parts are deleted, never committed.
    let mut a2 = Attempt::start(&env, &spec, 2, None).await.unwrap();
    assert!(env.committed_parts().is_empty());
    assert_eq!(env.pending_files(), Vec::<PathBuf>::new());

    // An aborted checkpoint: its state files go, its sink part stays pending and is
    // committed with the next completed checkpoint.
    let aborted = a2.trigger_after_progress(&mut coord).await;
    let chk_dir = format!("chk-{}", aborted.checkpoint_id);
    assert!(!env.checkpoint_files(&chk_dir).is_empty());
    let mut aborted_files = Vec::new();
    for snap in &aborted.subtasks {
        let m = read_state_manifest(&env.checkpoints, &snap.state_manifest).await.unwrap();
        aborted_files.extend(m.files.into_iter().map(|f| f.remote_path));
    }
    assert!(aborted_files.iter().any(|p| p.contains("/shared/")), "{aborted_files:?}");
    for h in &a2.handles {
        h.control.send(Control::CheckpointAborted { id: aborted.checkpoint_id }).unwrap();
    }
    let next = a2.trigger_after_progress(&mut coord).await;
    assert_eq!(env.checkpoint_files(&chk_dir), Vec::<PathBuf>::new(), "aborted checkpoint's files deleted");
    for path in &aborted_files {
        // Nothing completed before it in this attempt: every file it uploaded was its own.
        assert!(!env.checkpoints.exists(path).await.unwrap(), "{path} should be deleted");
    }
    for (s, snap) in next.subtasks.iter().enumerate() {
        let ids: Vec<u64> = snap.pending.iter().map(|p| p.checkpoint_id).collect();
        if aborted.subtasks[s].pending.iter().any(|p| p.checkpoint_id == aborted.checkpoint_id) {
            assert!(ids.contains(&aborted.checkpoint_id), "subtask {s}: {ids:?}");
        }
    }
    a2.complete(&mut coord, next).await;
    a2.run_to_end(&mut coord, Duration::from_millis(30)).await;
    for (s, snap) in aborted.subtasks.iter().enumerate() {
        let had_part = snap.pending.iter().any(|p| p.checkpoint_id == aborted.checkpoint_id);
        assert_eq!(
            env.committed_parts().contains(&final_part_path(&env.job_id, s as u32, aborted.checkpoint_id)),
            had_part
        );
    }
    assert_eq!(env.committed_lines(), expected_counts(count, keys));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn window_job_emits_every_window_once() {
    let env = Env::new(BackendKind::RocksDb, false, false);
    let spec = spec(&format!(
        "name: windows\nparallelism: 2\npipeline:\n  - source: {{ type: sequence, count: 1000, keys: 4, rate: 5000 }}\n  \
         - window: {{ type: tumbling, size: 100 }}\n  - sink: {{ type: file, path: \"{}\" }}\n",
        env.out_uri()
    ));
    let mut coord = Coordinator::default();
    let mut a = Attempt::start(&env, &spec, 1, None).await.unwrap();
    a.run_to_end(&mut coord, Duration::from_millis(25)).await;
    let mut expected: Vec<String> = (0..4).flat_map(|k| (0..10).map(move |w| format!("k{k},{},25", w * 100))).collect();
    expected.sort();
    assert_eq!(env.committed_lines(), expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_source_job_counts_lines_per_key() {
    let env = Env::new(BackendKind::HashMap, false, false);
    let input = env.root.join("input.txt");
    let mut text = String::new();
    for i in 0..500 {
        text.push_str(&format!("user{},{}\n", i % 7, i));
        if i % 50 == 0 {
            text.push('\n');
        }
    }
    std::fs::write(&input, text).unwrap();
    let spec = spec(&format!(
        "name: users\nparallelism: 3\npipeline:\n  - source: {{ type: file, path: {}, key-field: 0 }}\n  \
         - filter: {{ expr: \"key != 'user3'\" }}\n  - count: {{}}\n  - map: {{ expr: \"value * 10\" }}\n  \
         - sink: {{ type: file, path: \"{}\" }}\n",
        input.display(),
        env.out_uri()
    ));
    let mut coord = Coordinator::default();
    let mut a = Attempt::start(&env, &spec, 1, None).await.unwrap();
    a.run_to_end(&mut coord, Duration::from_millis(20)).await;
    let mut expected = Vec::new();
    for u in (0..7).filter(|u| *u != 3) {
        let lines = (0..500).filter(|i| i % 7 == u).count();
        expected.extend((1..=lines).map(|c| format!("user{u},{}", c * 10)));
    }
    expected.sort();
    assert_eq!(env.committed_lines(), expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_state_manifest_fails_the_restore_naming_the_file() {
    let env = Env::new(BackendKind::RocksDb, false, false);
    let spec = count_job(&env.out_uri(), 100_000, 16, Some(5000));
    let mut coord = Coordinator::default();
    let mut a1 = Attempt::start(&env, &spec, 1, None).await.unwrap();
    let meta = a1.trigger_after_progress(&mut coord).await;
    a1.complete(&mut coord, meta.clone()).await;
    a1.crash().await;
    let manifest = &meta.subtasks[1].state_manifest;
    let path = env.root.join("checkpoints").join(manifest);
    let mut bytes = std::fs::read(&path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&path, bytes).unwrap();

    let (subtask, reason) = Attempt::start(&env, &spec, 2, Some(&meta)).await.err().expect("restore fails");
    assert_eq!(subtask, 1);
    let location = format!("{}/{manifest}", env.checkpoints.uri());
    assert!(
        reason.starts_with(&format!("restore keyed state: read_blob: blob {location}: checksum mismatch")),
        "{reason}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_error_fails_the_subtask_naming_step_and_record() {
    let env = Env::new(BackendKind::HashMap, false, false);
    let spec = spec(
        "name: div\npipeline:\n  - source: { type: sequence, count: 100, keys: 16 }\n  \
                     - map: { expr: \"100 / (value - 7)\" }\n  - sink: { type: discard }\n",
    );
    let registry = Arc::new(OperatorRegistry::new());
    let mut h = spawn_subtask(spec, env.ctx(1, 0, 1, &registry), None);
    assert_eq!(next_event(&mut h).await, SubtaskEvent::Running);
    assert_eq!(
        next_event(&mut h).await,
        SubtaskEvent::Failed {
            reason: "pipeline[1] map failed on record (key k7, value 7, seq 7): division by zero at column 5 of \
                     expression \"100 / (value - 7)\""
                .into()
        }
    );
    timeout(WAIT, h.join).await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_deletes_exactly_what_no_retained_checkpoint_needs() {
    let env = Env::new(BackendKind::RocksDb, true, false);
    let spec = count_job(&env.out_uri(), 100_000, 16, Some(8000));
    let mut coord = Coordinator::default();
    let mut a = Attempt::start(&env, &spec, 1, None).await.unwrap();
    for round in 0..4 {
        let meta = a.trigger_after_progress(&mut coord).await;
        a.complete(&mut coord, meta).await;
        if round == 0 {
            continue;
        }
        let retained = &coord.completed[coord.completed.len() - 1..];
        let dropped = &coord.completed[coord.completed.len() - 2..coord.completed.len() - 1];
        let report = discard_checkpoints(&env.checkpoints, &env.job_id, dropped, retained).await.unwrap();
        assert!(report.unreadable.is_empty());
        // Everything the retained checkpoint references is still there...
        let mut needed = BTreeSet::new();
        for s in &retained[0].subtasks {
            let m = read_state_manifest(&env.checkpoints, &s.state_manifest).await.unwrap();
            needed.insert(s.state_manifest.clone());
            needed.extend(m.files.iter().map(|f| f.remote_path.clone()));
        }
        let present: BTreeSet<String> = env.checkpoints.list(&env.job_id).await.unwrap().into_iter().collect();
        assert!(needed.is_subset(&present), "missing: {:?}", needed.difference(&present).collect::<Vec<_>>());
        // ... and nothing else is.
        assert_eq!(present, needed, "left behind: {:?}", present.difference(&needed).collect::<Vec<_>>());
        assert!(!report.deleted.is_empty());
    }
    a.crash().await;
    discard_job(&env.checkpoints, &env.job_id).await.unwrap();
    assert!(env.checkpoints.list(&env.job_id).await.unwrap().is_empty());
}

/// Runs one checkpoint, crashes, deletes the checkpoint's remote state files (keeping the
/// manifests), and restores: only a local copy can make that work. Returns the checkpoint's
/// id and how the restore went.
async fn restore_without_remote_state_files(local_recovery: bool) -> (u64, Result<(), (u32, String)>) {
    let env = Env::new(BackendKind::RocksDb, false, local_recovery);
    let spec = count_job(&env.out_uri(), 100_000, 16, Some(5000));
    let mut coord = Coordinator::default();
    let mut a1 = Attempt::start(&env, &spec, 1, None).await.unwrap();
    let meta = a1.trigger_after_progress(&mut coord).await;
    a1.complete(&mut coord, meta.clone()).await;
    a1.crash().await;
    let id = meta.checkpoint_id;
    let files = env.checkpoint_files(&format!("chk-{id}"));
    assert!(files.iter().any(|f| !f.ends_with("state-manifest")), "checkpoint {id} has state files: {files:?}");
    for f in files {
        if !f.ends_with("state-manifest") {
            std::fs::remove_file(f).unwrap();
        }
    }
    let mut a2 = match Attempt::start(&env, &spec, 2, Some(&meta)).await {
        Ok(a2) => a2,
        Err(e) => return (id, Err(e)),
    };
    // The restored attempt processes records beyond the checkpoint (waited for, bounded).
    a2.trigger_after_progress(&mut coord).await;
    a2.crash().await;
    (id, Ok(()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_recovery_restores_from_the_local_copy() {
    restore_without_remote_state_files(true).await.1.expect("restored from the local copies");
    let (id, restored) = restore_without_remote_state_files(false).await;
    let (subtask, reason) = restored.unwrap_err();
    assert_eq!(subtask, 0);
    assert!(
        reason.starts_with(&format!(
            "restore keyed state of checkpoint {id}: remote get job-1/chk-{id}/subtask-0/attempt-1/state/"
        )),
        "{reason}"
    );
    assert!(reason.contains(": not found"), "{reason}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_part_torn_by_a_crash_mid_commit_is_repaired_on_restore() {
    let env = Env::new(BackendKind::HashMap, false, false);
    let (count, keys) = (3000, 8);
    let spec = count_job(&env.out_uri(), count, keys, Some(6000));
    let mut coord = Coordinator::default();
    let mut a1 = Attempt::start(&env, &spec, 1, None).await.unwrap();
    let meta = a1.trigger_after_progress(&mut coord).await;
    a1.complete(&mut coord, meta.clone()).await;
    a1.crash().await;
    // Recreate the state of a crash in the middle of writing the final part: the pending
    // object still there, the final one cut short.
    let pending = &meta.subtasks[0].pending[0];
    let final_file = env.out_dir().join(&pending.final_path);
    let bytes = std::fs::read(&final_file).unwrap();
    let pending_file = env.out_dir().join(&pending.pending_path);
    std::fs::create_dir_all(pending_file.parent().unwrap()).unwrap();
    std::fs::write(&pending_file, &bytes).unwrap();
    std::fs::write(&final_file, &bytes[..bytes.len() / 2]).unwrap();

    let mut a2 = Attempt::start(&env, &spec, 2, Some(&meta)).await.unwrap();
    assert_eq!(std::fs::read(&final_file).unwrap(), bytes, "the torn part was rewritten in full");
    assert!(!pending_file.exists());
    a2.run_to_end(&mut coord, Duration::from_millis(30)).await;
    assert_eq!(env.committed_lines(), expected_counts(count, keys));

    // A final part with other content is never overwritten.
    std::fs::create_dir_all(pending_file.parent().unwrap()).unwrap();
    std::fs::write(&pending_file, b"k0,1\n").unwrap();
    std::fs::write(&final_file, b"k9,9\n").unwrap();
    let (_, reason) = Attempt::start(&env, &spec, 3, Some(&meta)).await.err().expect("refused");
    assert!(reason.contains("already exists with other content than pending part"), "{reason}");
}
