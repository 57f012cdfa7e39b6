//! Issue 10 part 2: tasks keep running through a leader change and the new leader adopts
//! them (`high-availability.adoption.timeout`, default 30 s). Real 3-node ZooKeeper, real
//! `keel` processes, the exactly-once file sink.

mod common;

use std::time::Duration;

use chaos_tests::wait_until;
use common::Cluster;

const T: Duration = Duration::from_secs(60);
const COUNT: u64 = 6000;
const KEYS: u64 = 8;

fn counting_job(sink: &std::path::Path) -> String {
    format!(
        "name: adopt-me\nparallelism: 2\ncheckpoint-interval: 300 ms\npipeline:\n  - source: {{ type: sequence, count: {COUNT}, keys: {KEYS}, rate: 500 }}\n  - count: {{}}\n  - sink: {{ type: file, path: file://{} }}\n",
        sink.display()
    )
}

fn assert_exactly_once(sink: &std::path::Path) {
    common::assert_exactly_once(sink, COUNT, KEYS);
}

fn count_in(log: &str, needle: &str) -> usize {
    common::strip_ansi(log).lines().filter(|l| l.contains(needle)).count()
}

/// kill -9 of the leader while a job runs: the new leader adopts the job's tasks (same
/// attempt, no restore, no new deploy, no restart spent), checkpoints continue under the new
/// epoch, and the committed output is exactly a failure-free run's. With
/// `high-availability.adoption.timeout: 0` the job is restarted instead (checked by hand: the
/// attempt grows and the assertions below fail).
#[test]
fn a_killed_leaders_running_job_is_adopted_not_restarted_and_stays_exactly_once() {
    let mut c = Cluster::start("it-adopt", 2, 2, &[]);
    let leader = c.wait_leader(&[0, 1], T);
    c.wait_workers_follow(&leader, T);
    let sink = c.dir.path().join("out");
    let id = c.submit(&counting_job(&sink));
    let before = c.wait_job_state(&id, "RUNNING", T);
    c.wait_checkpoints(&id, 2, T);
    let attempt = before["attempt"].as_u64().expect("an attempt number");
    let deploys_before: usize =
        c.workers.iter().map(|w| count_in(&w.log_tail(100_000), "event=\"task_deployed\"")).sum();
    assert_eq!(deploys_before, 2, "two subtasks deployed once each before the kill");

    c.dispatchers[leader.index].kill9();
    let new = c.wait_leader(&[1 - leader.index], T);
    assert!(new.epoch > leader.epoch);
    wait_until(T, Duration::from_millis(100), "the new leader to adopt the job", || {
        let log = common::strip_ansi(&c.dispatchers[new.index].log_tail(4000));
        log.lines().any(|l| l.contains("event=\"job_adopted\"") && l.contains(&id)).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", c.logs()));
    let job = c.wait_job_state(&id, "RUNNING", T);
    assert_eq!(job["attempt"].as_u64(), Some(attempt), "the same attempt runs on: {job}");
    assert_eq!(job["restarts"], 0, "no restart spent: {job}");
    assert!(job["restored-from"].is_null(), "nothing restored: {job}");
    // Checkpoints complete under the new leader (its own count starts at 0).
    c.wait_checkpoints(&id, 2, T);

    let done = c.wait_job_state(&id, "FINISHED", Duration::from_secs(120));
    assert_eq!(done["attempt"].as_u64(), Some(attempt), "finished by the adopted attempt: {done}");
    let deploys_after: usize =
        c.workers.iter().map(|w| count_in(&w.log_tail(100_000), "event=\"task_deployed\"")).sum();
    assert_eq!(deploys_after, deploys_before, "nothing was deployed again\n{}", c.logs());
    let adopted: usize = c.workers.iter().map(|w| count_in(&w.log_tail(100_000), "event=\"task_adopted\"")).sum();
    assert_eq!(adopted, 2, "both subtasks were adopted\n{}", c.logs());
    assert_exactly_once(&sink);
}

/// The leader dies in the narrowest window of a checkpoint: its pointer is written (the
/// checkpoint is complete) but the tasks were never told (test-only fault
/// `KEEL_TEST_EXIT_AFTER_POINTER`: the dispatcher exits right after the guarded write). The
/// new leader adopts the job and announces that checkpoint again, so every subtask commits its
/// sink parts up to it (`checkpoint_committed` for exactly that id, which only the new leader's
/// announcement can produce), no restart is spent, and the output is exactly once. With
/// `KEEL_TEST_DISABLE_ADOPTION_RENOTIFY=1` the parts wait for the next checkpoint and the test
/// fails (`bin/mutation-check`).
#[test]
fn a_leader_dying_between_a_checkpoint_and_its_announcement_leaves_it_committed_by_the_next() {
    const AT: u64 = 3;
    let mut c = Cluster::start("it-adopt-window", 0, 0, &[]);
    c.add_dispatcher_env("d0", &[("KEEL_TEST_EXIT_AFTER_POINTER", &AT.to_string())]);
    let leader = c.wait_leader(&[0], T);
    c.add_dispatcher("d1");
    for w in ["w0", "w1"] {
        c.add_worker_env(w, &[("RUST_LOG", "info,keel::events=debug")]);
    }
    c.wait_workers_follow(&leader, T);
    let sink = c.dir.path().join("out");
    let id = c.submit(&counting_job(&sink));
    let before = c.wait_job_state(&id, "RUNNING", T);
    wait_until(T, Duration::from_millis(50), "the leader to exit after checkpoint 3's pointer", || {
        (!c.dispatchers[0].is_running()).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", c.logs()));
    let old = common::strip_ansi(&c.dispatchers[0].log_tail(2000));
    assert!(
        old.lines().any(|l| l.contains("exiting between the pointer write and the announcement")
            && l.contains(&format!("checkpoint={AT}"))),
        "the fault fired at checkpoint {AT}:\n{old}"
    );
    let new = c.wait_leader(&[1], T);
    assert!(new.epoch > leader.epoch);
    let adopted = wait_until(T, Duration::from_millis(100), "the new leader to adopt the job", || {
        let log = common::strip_ansi(&c.dispatchers[1].log_tail(4000));
        log.lines().find(|l| l.contains("event=\"job_adopted\"") && l.contains(&id)).map(str::to_string)
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", c.logs()));
    // The workers reported what the subtasks had done: checkpoint 3 acknowledged by all,
    // committed only up to 2 (its announcement never came).
    assert!(
        adopted.contains(&format!("latest_checkpoint={AT}"))
            && adopted.contains(&format!("last_acked={AT}"))
            && adopted.contains(&format!("last_committed={}", AT - 1)),
        "{adopted}"
    );
    // Both subtasks commit their parts up to the checkpoint the old leader completed but never
    // announced.
    wait_until(T, Duration::from_millis(100), "both subtasks to commit checkpoint 3", || {
        let committed: std::collections::BTreeSet<String> = c
            .workers
            .iter()
            .flat_map(|w| common::strip_ansi(&w.log_tail(100_000)).lines().map(str::to_string).collect::<Vec<_>>())
            .filter(|l| {
                l.contains("event=\"checkpoint_committed\"")
                    && l.contains(&format!("job={id}"))
                    && l.contains(&format!("checkpoint={AT}"))
            })
            .filter_map(|l| l.split("subtask=").nth(1).and_then(|r| r.split_whitespace().next()).map(str::to_string))
            .collect();
        (committed.len() == 2).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", c.logs()));
    let done = c.wait_job_state(&id, "FINISHED", Duration::from_secs(120));
    assert_eq!(done["attempt"], before["attempt"], "the same attempt ran to the end: {done}");
    assert_eq!(done["restarts"], 0, "{done}");
    assert_exactly_once(&sink);
}

/// The leader dies after every subtask acknowledged checkpoint 3 but before its pointer write
/// (test-only fault `KEEL_TEST_EXIT_BEFORE_POINTER`): checkpoint 3 never completes. The new
/// leader adopts the job (the workers report 3 acknowledged, 2 the latest stored) and aborts
/// checkpoint 3, so the tasks delete the state they uploaded for it at once, while the job
/// runs on; checkpoint 2's files stay. (Without the abort they stayed until the job ended.)
#[test]
fn a_checkpoint_the_dead_leader_never_completed_is_aborted_by_the_new_one() {
    const AT: u64 = 3;
    let mut c = Cluster::start("it-adopt-abort", 0, 0, &[]);
    c.add_dispatcher_env("d0", &[("KEEL_TEST_EXIT_BEFORE_POINTER", &AT.to_string())]);
    let leader = c.wait_leader(&[0], T);
    c.add_dispatcher("d1");
    c.add_worker("w0");
    c.add_worker("w1");
    c.wait_workers_follow(&leader, T);
    // Long enough to outlast the test: it is cancelled at the end.
    let sink = c.dir.path().join("out");
    let spec = counting_job(&sink).replace(&format!("count: {COUNT}"), "count: 10000000");
    let id = c.submit(&spec);
    c.wait_job_state(&id, "RUNNING", T);
    wait_until(T, Duration::from_millis(50), "the leader to exit before checkpoint 3's pointer", || {
        (!c.dispatchers[0].is_running()).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", c.logs()));
    let uploaded = |chk: u64| -> Vec<String> {
        common::files_under(&c.checkpoints_path().join(&id).join(format!("chk-{chk}")))
            .into_iter()
            .filter(|f| f.contains("subtask-"))
            .collect()
    };
    assert!(!uploaded(AT).is_empty(), "the subtasks uploaded state for checkpoint {AT} before the leader died");
    let new = c.wait_leader(&[1], T);
    let adopted = wait_until(T, Duration::from_millis(100), "the new leader to adopt the job", || {
        let log = common::strip_ansi(&c.dispatchers[new.index].log_tail(4000));
        log.lines().find(|l| l.contains("event=\"job_adopted\"") && l.contains(&id)).map(str::to_string)
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", c.logs()));
    assert!(
        adopted.contains(&format!("latest_checkpoint={}", AT - 1)) && adopted.contains(&format!("last_acked={AT}")),
        "{adopted}"
    );
    wait_until(T, Duration::from_millis(50), "checkpoint 3's uploaded state to be deleted", || {
        uploaded(AT).is_empty().then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}: {:?}\n{}", uploaded(AT), c.logs()));
    let job = c.job(&id).expect("the job");
    assert_eq!(job["state"], "RUNNING", "deleted by the abort, not by the job's end: {job}");
    assert!(!uploaded(AT - 1).is_empty(), "checkpoint {}'s files stay", AT - 1);
    assert!(c.keel(&["cancel", &id]).status.success());
}

/// Nothing to adopt (a subtask's worker died with the leader): the new leader restarts the job
/// from its latest checkpoint, and cancels the surviving orphan at once instead of letting it
/// run until its adoption timeout.
#[test]
fn a_job_missing_a_subtask_is_restarted_and_its_orphans_cancelled() {
    let mut c = Cluster::start("it-adopt-partial", 2, 3, &[("high-availability.adoption.timeout", "10 min")]);
    let leader = c.wait_leader(&[0, 1], T);
    c.wait_workers_follow(&leader, T);
    let sink = c.dir.path().join("out");
    let id = c.submit(&counting_job(&sink));
    let before = c.wait_job_state(&id, "RUNNING", T);
    c.wait_checkpoints(&id, 2, T);
    let attempt = before["attempt"].as_u64().expect("an attempt number");
    // The workers that run the job's two subtasks; kill one of them with the leader.
    let runs: Vec<usize> =
        (0..c.workers.len()).filter(|&w| count_in(&c.workers[w].log_tail(100_000), &format!("job={id}")) > 0).collect();
    assert!(!runs.is_empty(), "some worker runs the job");
    let (victim, survivor) = (runs[0], *runs.last().unwrap());
    c.workers[victim].kill9();
    c.dispatchers[leader.index].kill9();
    let new = c.wait_leader(&[1 - leader.index], T);
    let job = wait_until(T, Duration::from_millis(100), "the job to run a newer attempt", || {
        c.job(&id).filter(|j| j["state"] == "RUNNING" && j["attempt"].as_u64() > Some(attempt))
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", c.logs()));
    assert!(job["restored-from"].as_u64().is_some(), "restarted from a checkpoint: {job}");
    let log = common::strip_ansi(&c.dispatchers[new.index].log_tail(4000));
    assert!(!log.contains("event=\"job_adopted\""), "nothing may be adopted with a subtask gone:\n{log}");
    if survivor != victim {
        // The survivor's orphan of the old attempt is cancelled well before its 10 min timeout.
        wait_until(T, Duration::from_millis(100), "the surviving orphan to be cancelled", || {
            let log = common::strip_ansi(&c.workers[survivor].log_tail(4000));
            log.lines()
                .any(|l| l.contains("orphaned subtask cancelled") && l.contains(&format!("attempt={attempt}")))
                .then_some(())
        })
        .unwrap_or_else(|e| panic!("{e}\n{}", c.logs()));
    }
    let done = c.wait_job_state(&id, "FINISHED", Duration::from_secs(120));
    assert!(done["attempt"].as_u64() > Some(attempt));
    assert_exactly_once(&sink);
}

/// With no leader at all (the only dispatcher paused), tasks run on for heartbeat.timeout +
/// adoption.timeout and then stop; the dispatcher, resumed, restarts the job.
#[test]
fn tasks_without_any_leader_stop_after_the_adoption_timeout() {
    let mut c = Cluster::start("it-leaderless", 1, 1, &[("high-availability.adoption.timeout", "3 s")]);
    let leader = c.wait_leader(&[0], T);
    c.wait_workers_follow(&leader, T);
    let sink = c.dir.path().join("out");
    let id = c.submit(&counting_job(&sink).replace("count: 6000", "count: 600000"));
    let before = c.wait_job_state(&id, "RUNNING", T);
    c.wait_checkpoints(&id, 1, T);
    let t0 = std::time::Instant::now();
    c.dispatchers[0].stop().expect("SIGSTOP the only dispatcher");
    let line = wait_until(T, Duration::from_millis(100), "the worker to stop its leaderless subtasks", || {
        let log = common::strip_ansi(&c.workers[0].log_tail(4000));
        log.lines().find(|l| l.contains("event=\"leaderless_tasks_stopped\"")).map(str::to_string)
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", c.logs()));
    // Mechanism check (a lower bound): the worker had heard nothing from its leader for
    // heartbeat.timeout (2 s) + adoption.timeout (3 s). (Measured from its last heartbeat, up to
    // one heartbeat interval before the pause, so not from the test's clock.)
    let silent_ms: u64 = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("silent_ms="))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no silent_ms in {line}"));
    assert!(silent_ms >= 5000, "stopped after {silent_ms} ms of silence: {line}");
    println!("measured: leaderless tasks stopped {} ms after the pause", t0.elapsed().as_millis());
    c.dispatchers[0].cont().expect("SIGCONT");
    let job = wait_until(T, Duration::from_millis(100), "the job to run a newer attempt", || {
        c.job(&id).filter(|j| j["state"] == "RUNNING" && j["attempt"].as_u64() > before["attempt"].as_u64())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", c.logs()));
    assert!(job["restored-from"].as_u64().is_some(), "restarted from a checkpoint: {job}");
}
