//! `keel drill` against a live cluster (real ZooKeeper, real processes): every drill mode,
//! its timed JSON report, the confirmation prompt and the safety refusals.

mod common;

use std::io::Write;
use std::process::Stdio;
use std::time::Duration;

use common::Cluster;
use serde_json::Value;

const T: Duration = Duration::from_secs(60);

fn drill(c: &Cluster, args: &[&str]) -> Value {
    let mut all = vec!["drill"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--yes", "--json", "--timeout", "60 s"]);
    let out = c.keel(&all);
    assert!(out.status.success(), "keel {all:?} failed: {}\n{}", String::from_utf8_lossy(&out.stderr), c.logs());
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    eprintln!("drill report: {report}");
    report
}

fn job_spec(sink: &std::path::Path) -> String {
    format!(
        "name: drilled\nparallelism: 2\ncheckpoint-interval: 300 ms\npipeline:\n  - source: {{ type: sequence, keys: 4, rate: 300 }}\n  - count: {{}}\n  - sink: {{ type: file, path: file://{} }}\n",
        sink.display()
    )
}

#[test]
fn drills_report_failovers_and_refuse_unsafe_ones() {
    let mut c = Cluster::start("it-drill", 3, 3, &[]);
    let leader = c.wait_leader(&[0, 1, 2], T);
    c.wait_workers_follow(&leader, T);
    let id = c.submit(&job_spec(&c.dir.path().join("out")));
    c.wait_job_state(&id, "RUNNING", T);
    c.wait_checkpoints(&id, 2, T);

    // Not confirmed: nothing happens.
    let mut child = std::process::Command::new(common::KEEL)
        .args(["--config", c.cfg_path.to_str().unwrap(), "drill", "kill-leader"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"n\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Continue? [y/N]") && err.contains("not confirmed"), "{err}");
    assert_eq!(c.wait_leader(&[0, 1, 2], T), leader, "an unconfirmed drill does nothing");

    // Hard kill of the leader.
    let r = drill(&c, &["kill-leader", "--mode", "hard"]);
    assert_eq!(r["old_leader"], leader.id.as_str());
    assert!(r["new_epoch"].as_i64().unwrap() > r["old_epoch"].as_i64().unwrap());
    assert!(r["workers_reregistered_ms"].as_i64().is_some(), "{r}");
    let job = &r["jobs"][0];
    assert!(job["running_again_ms"].as_i64().is_some(), "{r}");
    // Both workers survive a leader kill: the new leader adopts the job's tasks.
    assert_eq!(job["outcome"], "adopted", "{r}");
    assert!(job["restored_from_checkpoint"].is_null(), "{r}");
    // The processing gap, from the workers' own counters (their /metrics, registered with the
    // leader and listed by GET /taskmanagers).
    assert!(job["processing_gap_ms"].as_u64().is_some(), "{r}");
    let alive: Vec<usize> = (0..3).filter(|&i| c.dispatchers[i].id() != leader.id).collect();
    let second = c.wait_leader(&alive, T);
    c.wait_checkpoints(&id, 1, T);

    // Pause the new leader past its session: the remaining standby takes over, the paused one
    // comes back fenced.
    let r = drill(&c, &["kill-leader", "--mode", "pause", "--pause", "5 s"]);
    assert_eq!(r["old_leader"], second.id.as_str());
    assert!(r["new_epoch"].as_i64().unwrap() > second.epoch);
    chaos_tests::wait_until(T, Duration::from_millis(100), "the paused leader to come back as standby", || {
        (c.ha_leader(second.index)?["role"] == "standby").then_some(())
    })
    .unwrap();
    let third = c.wait_leader(&alive, T);
    c.wait_checkpoints(&id, 1, T);
    chaos_tests::wait_until(T, Duration::from_millis(100), "the paused dispatcher to contend again", || {
        (c.status_json()["contenders"].as_array()?.len() == 2).then_some(())
    })
    .unwrap();

    // Isolate: the leader drops its session; the other one leads.
    let r = drill(&c, &["isolate-leader"]);
    assert_eq!(r["old_leader"], third.id.as_str());
    assert!(r["new_epoch"].as_i64().unwrap() > third.epoch);
    c.wait_checkpoints(&id, 1, T);

    // Kill a worker that runs a subtask.
    let running = c.job(&id).unwrap();
    let victim = running["subtasks"][0]["worker"].as_str().unwrap().to_string();
    let r = drill(&c, &["kill-worker", &victim]);
    assert!(r["jobs"][0]["running_again_ms"].as_i64().is_some(), "{r}");
    assert!(r["jobs"][0]["processing_gap_ms"].as_u64().is_some(), "{r}");
    c.wait_job_state(&id, "RUNNING", T);

    // Graceful stop of the leader.
    let now = c.wait_leader(&alive, T);
    let r = drill(&c, &["kill-leader", "--mode", "graceful"]);
    assert_eq!(r["old_leader"], now.id.as_str());
    assert!(r["new_leader_ms"].as_i64().unwrap() >= 0);
    // Graceful means: the old leader resigned (deleted its latch, closed its session) and
    // exited cleanly, and the other dispatcher leads with a greater epoch.
    assert!(r["new_epoch"].as_i64().unwrap() > now.epoch, "{r}");
    let exit = c.dispatchers[now.index].wait_exit(T).unwrap().expect("the gracefully stopped leader exits");
    assert!(exit.success(), "a graceful stop exits cleanly: {exit:?}");
    let log = c.dispatchers[now.index].log_tail(400);
    assert!(log.contains("resigned leadership"), "the old leader resigned:\n{log}");
    let rest: Vec<usize> = alive.iter().copied().filter(|&i| i != now.index).collect();
    let next = c.wait_leader(&rest, T);
    assert!(next.epoch > now.epoch && r["new_leader"] == next.id.as_str(), "{r} {next:?}");
    c.wait_checkpoints(&id, 1, T);

    // Only one dispatcher left: no standby, so the drill refuses without --force.
    let out = c.keel(&["drill", "kill-leader", "--yes"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("refusing to run the drill") && err.contains("no standby"), "{err}");
}
