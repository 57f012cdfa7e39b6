//! Attempt fencing in the exactly-once file sink: an older attempt that starts late never
//! deletes what a newer attempt pre-committed, and a checkpoint whose sink parts are gone is
//! reported as not restorable. Real `file://` storage in temp dirs.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use keel_job::{
    check_sink_parts, parse_job_spec, spawn_subtask, Control, JobSpec, OperatorRegistry, SubtaskContext, SubtaskEvent,
    SubtaskHandle,
};
use keel_proto::v1::SubtaskSnapshot;
use keel_state::{BackendKind, StateOptions};
use keel_storage::{StorageDir, StorageOptions};
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(15);

struct Env {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    checkpoints: StorageDir,
    state: StateOptions,
}

impl Env {
    fn new() -> Env {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().to_path_buf();
        let checkpoints =
            StorageDir::open(&format!("file://{}/checkpoints", root.display()), &StorageOptions::default()).unwrap();
        let state = StateOptions::new(&root.join("tmp")).with_backend(BackendKind::HashMap);
        Env { _tmp: tmp, root, checkpoints, state }
    }

    fn spec(&self) -> Arc<JobSpec> {
        let yaml = format!(
            "name: fenced\npipeline:\n  - source: {{ type: sequence, keys: 4, rate: 2000 }}\n  \
             - map: {{ expr: \"value + 1\" }}\n  - sink: {{ type: file, path: file://{}/out }}\n",
            self.root.display()
        );
        Arc::new(parse_job_spec(&yaml, "attempts.yaml").unwrap())
    }

    fn ctx(&self, attempt: u64) -> SubtaskContext {
        SubtaskContext {
            job_id: "job-a".into(),
            attempt,
            subtask: 0,
            parallelism: 1,
            checkpoints: self.checkpoints.clone(),
            storage_options: StorageOptions::default(),
            state: self.state.clone(),
            registry: Arc::new(OperatorRegistry::default()),
        }
    }

    fn pending(&self) -> Vec<String> {
        let dir = self.root.join("out/.pending/job-a/0");
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .map(|d| d.map(|e| e.unwrap().file_name().into_string().unwrap()).collect())
            .unwrap_or_default();
        names.sort();
        names
    }
}

async fn next_event(h: &mut SubtaskHandle, what: &str) -> SubtaskEvent {
    timeout(WAIT, h.events.recv())
        .await
        .unwrap_or_else(|_| panic!("no subtask event within {WAIT:?} while waiting for {what}"))
        .expect("event channel open")
}

/// Triggers checkpoints from `first` on until one pre-commits a sink part (records must
/// have arrived); returns its id and snapshot.
async fn checkpoint_with_part(h: &mut SubtaskHandle, first: u64) -> (u64, SubtaskSnapshot) {
    for id in first..first + 200 {
        let snapshot = checkpoint(h, id).await;
        if !snapshot.pending.is_empty() {
            return (id, snapshot);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("200 checkpoints and no sink part: the source produced no records");
}

/// Triggers checkpoint `id` and returns the acknowledged snapshot (skipping `Running`).
async fn checkpoint(h: &mut SubtaskHandle, id: u64) -> SubtaskSnapshot {
    h.control.send(Control::TriggerCheckpoint { id }).unwrap();
    loop {
        match next_event(h, &format!("the ack of checkpoint {id}")).await {
            SubtaskEvent::Running => continue,
            SubtaskEvent::CheckpointAck { id: got, snapshot } if got == id => return snapshot,
            other => panic!("expected the ack of checkpoint {id}, got {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_older_attempt_never_deletes_a_newer_attempts_pending_part() {
    let env = Env::new();
    let spec = env.spec();
    // Attempt 7 runs and pre-commits a part for checkpoint `id`.
    let mut newer = spawn_subtask(spec.clone(), env.ctx(7), None);
    let (id, snapshot) = checkpoint_with_part(&mut newer, 5).await;
    assert_eq!(snapshot.pending.len(), 1, "attempt 7 pre-committed one part: {snapshot:?}");
    let newer_part = format!("7-{id}.part");
    assert_eq!(env.pending(), vec![newer_part.clone()]);

    // A leftover of an older attempt (3) is there too. Then attempt 4 starts late (a delayed
    // deploy) and runs its start-up recovery.
    std::fs::write(env.root.join("out/.pending/job-a/0/3-4.part"), b"old\n").unwrap();
    let mut stale = spawn_subtask(spec.clone(), env.ctx(4), None);
    match next_event(&mut stale, "the stale attempt to start").await {
        SubtaskEvent::Running => {}
        other => panic!("expected the stale attempt to start, got {other:?}"),
    }
    assert_eq!(
        env.pending(),
        vec![newer_part],
        "the stale attempt 4 must delete the part of older attempt 3 and keep newer attempt 7's"
    );
    stale.control.send(Control::Cancel).unwrap();

    // The checkpoint completes: attempt 7 commits its part; the output is there.
    check_sink_parts(&spec, &StorageOptions::default(), "job-a", std::slice::from_ref(&snapshot))
        .await
        .expect("the checkpoint's sink part is restorable");
    newer.control.send(Control::CheckpointComplete { id }).unwrap();
    let final_part = env.root.join("out").join(keel_job::final_part_path("job-a", 0, id));
    let deadline = tokio::time::Instant::now() + WAIT;
    while !final_part.exists() {
        if let Ok(Some(SubtaskEvent::Failed { reason })) = timeout(Duration::from_millis(20), newer.events.recv()).await
        {
            panic!("attempt 7 failed to commit checkpoint {id}: {reason}");
        }
        assert!(tokio::time::Instant::now() < deadline, "checkpoint {id}'s part was not committed within {WAIT:?}");
    }
    newer.control.send(Control::Cancel).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkpoint_whose_sink_part_is_gone_is_not_restorable() {
    let env = Env::new();
    let spec = env.spec();
    let mut h = spawn_subtask(spec.clone(), env.ctx(1), None);
    let (id, snapshot) = checkpoint_with_part(&mut h, 2).await;
    h.control.send(Control::Cancel).unwrap();
    let _ = timeout(WAIT, h.join).await;
    let snaps = [snapshot];
    check_sink_parts(&spec, &StorageOptions::default(), "job-a", &snaps).await.expect("part present");
    let part = format!("1-{id}.part");
    std::fs::remove_file(env.root.join("out/.pending/job-a/0").join(&part)).unwrap();
    let err = check_sink_parts(&spec, &StorageOptions::default(), "job-a", &snaps)
        .await
        .expect_err("a checkpoint whose pending part is gone (and never committed) is not restorable");
    assert!(!err.is_temporary(), "a missing part is a definite answer: {err}");
    assert!(err.to_string().contains(&part), "the error names the part: {err}");
}
