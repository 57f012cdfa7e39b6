//! History files → checker → report, on synthetic runs written the way Keel processes and the
//! harness write them: one clean run where every verdict passes, one broken run where each
//! invariant is violated once and the report says so.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;
use std::time::Duration;

use chaos_tests::checker::{self, FinalState};
use chaos_tests::{FaultLog, History, Report};
use serde_json::{json, Value};

const T0: i64 = 1_700_000_000_000;

/// Appends events to `<dir>/<process>.jsonl` the way `keel --events` does.
fn write(dir: &Path, process: &str, events: &[(i64, &str, Value)]) {
    let role = if process.starts_with('d') { "dispatcher" } else { "worker" };
    let mut f = OpenOptions::new().create(true).append(true).open(dir.join(format!("{process}.jsonl"))).unwrap();
    for (ts, event, fields) in events {
        let mut line = json!({"ts_ms": T0 + ts, "process": process, "role": role, "event": event});
        line.as_object_mut().unwrap().extend(fields.as_object().unwrap().clone());
        writeln!(f, "{line}").unwrap();
    }
}

/// A run: d1 leads (epoch 100), runs job j1 with checkpoints; d1 is killed at +10 s, d2
/// leads (epoch 200) from +13 s and restores j1 from checkpoint 3; w1 follows. A second job
/// j2 is submitted and cancelled on request.
fn clean_run(dir: &Path) {
    write(
        dir,
        "d1",
        &[
            (0, "leadership_gained", json!({"epoch": 100})),
            (100, "job_submitted", json!({"job": "j1"})),
            (200, "job_state", json!({"job": "j1", "from": "CREATED", "to": "SCHEDULING"})),
            (400, "job_state", json!({"job": "j1", "from": "SCHEDULING", "to": "RUNNING"})),
            (2_000, "checkpoint_triggered", json!({"job": "j1", "checkpoint": 1})),
            (2_100, "checkpoint_completed", json!({"job": "j1", "checkpoint": 1, "epoch": 100})),
            (4_100, "checkpoint_completed", json!({"job": "j1", "checkpoint": 2, "epoch": "100"})),
            (6_100, "checkpoint_completed", json!({"job": "j1", "checkpoint": 3, "epoch": 100})),
            (7_000, "job_submitted", json!({"job": "j2"})),
            (7_100, "job_state", json!({"job": "j2", "from": "CREATED", "to": "RUNNING"})),
            (8_000, "job_state", json!({"job": "j2", "from": "RUNNING", "to": "CANCELED"})),
            (8_000, "job_ended", json!({"job": "j2", "state": "CANCELED"})),
            (8_100, "job_cleaned", json!({"job": "j2"})),
        ],
    );
    write(dir, "d3", &[(50, "job_state_probe_unknown_event", json!({"x": 1}))]);
    write(
        dir,
        "d2",
        &[
            (13_000, "leadership_gained", json!({"epoch": 200})),
            (13_050, "checkpoint_restored", json!({"job": "j1", "checkpoint": 3, "attempt": 2})),
            (13_100, "job_state", json!({"job": "j1", "from": "CREATED", "to": "SCHEDULING"})),
            (13_600, "job_state", json!({"job": "j1", "from": "SCHEDULING", "to": "RUNNING"})),
            (15_600, "checkpoint_completed", json!({"job": "j1", "checkpoint": 4, "epoch": 200})),
        ],
    );
    write(
        dir,
        "w1",
        &[
            (10, "registered", json!({"epoch": 100, "leader": "d1"})),
            (300, "command_accepted", json!({"epoch": 100, "kind": "deploy"})),
            (300, "task_deployed", json!({"job": "j1", "subtask": 0, "attempt": 1, "epoch": 100})),
            (2_050, "command_accepted", json!({"epoch": 100, "kind": "trigger_checkpoint"})),
            (2_120, "sink_committed", json!({"job": "j1", "subtask": 0, "checkpoint": 1})),
            (13_020, "registered", json!({"epoch": 200, "leader": "d2"})),
            (13_300, "command_accepted", json!({"epoch": 200, "kind": "deploy"})),
            (13_300, "task_deployed", json!({"job": "j1", "subtask": 0, "attempt": 2, "epoch": 200})),
        ],
    );
}

/// The final state a clean run ends in.
fn clean_final() -> FinalState {
    FinalState {
        jobs: vec![("j1".into(), "RUNNING".into())],
        cancelled_by_request: vec!["j2".into()],
        acknowledged: vec!["j1".into(), "j2".into()],
        expected_running: vec!["j1".into()],
    }
}

fn all_verdicts(
    h: &History,
    f: &FinalState,
    expected: &[&str],
    committed: &[&str],
    leaks: (&[&str], &[&str]),
) -> Vec<checker::Verdict> {
    let mut v = checker::history_verdicts(h, 0);
    v.push(checker::no_acknowledged_job_lost(h, f));
    v.push(checker::exactly_once(expected, committed));
    v.push(checker::no_leaks(leaks.0, leaks.1));
    v.push(checker::converged(h, f));
    v
}

fn faults(dir: &Path) {
    // The harness log, with real timestamps rewritten to the synthetic clock.
    let path = dir.join("harness.jsonl");
    let log = FaultLog::create(&path).unwrap();
    let a = log.start("kill9", "d1").unwrap();
    log.end(a).unwrap();
    let b = log.start("partition-zk", "w1").unwrap();
    log.end(b).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    let times = [10_000, 10_001, 20_000, 25_000];
    let mut out = String::new();
    for (line, ts) in text.lines().zip(times) {
        let mut v: Value = serde_json::from_str(line).unwrap();
        v["ts_ms"] = json!(T0 + ts);
        out.push_str(&format!("{v}\n"));
    }
    std::fs::write(&path, out).unwrap();
}

#[test]
fn clean_run_passes_and_reports() {
    let dir = tempfile::tempdir().unwrap();
    clean_run(dir.path());
    faults(dir.path());
    let h = History::load_dir(dir.path()).unwrap();
    assert_eq!(h.malformed, 0, "{:?}", h.malformed_lines);
    assert_eq!(h.dispatchers(), ["d1", "d2", "d3"]);
    let lines = ["a,1", "b,2", "a,1"];
    let verdicts = all_verdicts(&h, &clean_final(), &lines, &["a,1", "a,1", "b,2"], (&[], &[]));
    for v in &verdicts {
        assert!(v.ok, "{v}");
    }
    assert_eq!(verdicts.len(), 10);

    let timings = checker::failover_times(&h);
    assert_eq!(timings.len(), 2);
    assert_eq!(timings[0].time_to_new_leader_ms(), Some(3_000));
    assert_eq!((timings[0].old_epoch, timings[0].new_epoch), (Some(100), Some(200)));
    assert_eq!(timings[0].time_to_running_again_ms(), Some(3_600));
    assert_eq!(timings[0].workers_registered_at, Some(T0 + 13_020));

    let report = Report::new(7, Duration::from_secs(120), &h, &verdicts).with_note("nemesis: kill9, partition-zk");
    assert!(report.ok());
    let table = report.summary_table();
    println!("{table}");
    assert!(table.contains("seed=7") && table.contains("result=PASS"), "{table}");
    assert!(table.contains("one_leader_per_epoch") && table.contains("PASS"));
    assert!(table.contains("kill9") && table.contains("3.000s") && table.contains("100 → 200"), "{table}");

    // JSON round-trips.
    let json = report.to_json();
    assert_eq!(json["seed"], 7);
    assert_eq!(json["duration_ms"], 120_000);
    let back = Report::from_json(&json).unwrap();
    assert_eq!(back, report);
    let text = serde_json::to_string(&json).unwrap();
    assert_eq!(Report::from_json(&serde_json::from_str(&text).unwrap()).unwrap(), report);
    assert!(Report::from_json(&json!({"seed": 1})).is_err());

    // HTML: self-contained, verdict table, svg with every lane.
    let html = report.to_html();
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(html.contains("<svg") && html.contains("</svg>"));
    assert!(html.contains("data-kind=\"faults\""));
    for d in ["d1", "d2", "d3"] {
        assert!(html.contains(&format!("data-kind=\"dispatcher\" data-name=\"{d}\"")), "lane {d}");
    }
    for j in ["j1", "j2"] {
        assert!(html.contains(&format!("data-kind=\"job\" data-name=\"{j}\"")), "lane {j}");
    }
    assert!(html.contains(">epoch 100<") && html.contains(">epoch 200<"), "leadership labelled with epochs");
    assert!(html.contains("class=\"checkpoint\"") && html.contains("class=\"restore\""));
    assert!(html.contains("state-RUNNING") && html.contains("state-CANCELED"));
    assert!(html.contains("class=\"zombie\""), "d1 was superseded without logging leadership_lost");
    assert!(!html.contains("<script") && !html.contains("src=") && !html.contains("href="), "no external assets");
    assert!(!html.contains("http://") || html.matches("http://").count() == 1, "only the SVG namespace");

    let out = dir.path().join("out");
    let (jp, hp) = report.write(&out).unwrap();
    let read: Value = serde_json::from_str(&std::fs::read_to_string(jp).unwrap()).unwrap();
    assert_eq!(Report::from_json(&read).unwrap(), report);
    assert_eq!(std::fs::read_to_string(hp).unwrap(), html);
}

#[test]
fn broken_run_fails_every_verdict_with_details() {
    let dir = tempfile::tempdir().unwrap();
    clean_run(dir.path());
    faults(dir.path());
    // Break each invariant once.
    write(
        dir.path(),
        "d1",
        &[
            // A zombie d1 completes a checkpoint with its old epoch after d2 took over...
            (14_000, "checkpoint_completed", json!({"job": "j1", "checkpoint": 5, "epoch": 100})),
            // ...and later "gains" leadership with an epoch that went backwards.
            (30_000, "leadership_gained", json!({"epoch": 150})),
        ],
    );
    write(
        dir.path(),
        "d2",
        &[
            // Recovery from an older checkpoint than the latest completed (4).
            (20_500, "checkpoint_restored", json!({"job": "j1", "checkpoint": 2, "attempt": 3})),
        ],
    );
    write(
        dir.path(),
        "w1",
        &[
            // A stale command accepted; the cancelled job deployed again.
            (14_100, "command_accepted", json!({"epoch": 100, "kind": "trigger_checkpoint"})),
            (14_200, "task_deployed", json!({"job": "j2", "subtask": 0, "attempt": 2, "epoch": 200})),
            // A late Deploy of an older attempt of j1 started after attempt 2.
            (14_300, "task_deployed", json!({"job": "j1", "subtask": 0, "attempt": 1, "epoch": 200})),
        ],
    );
    // A malformed and a truncated line.
    std::fs::write(dir.path().join("w2.jsonl"), "{oops\n{\"ts_ms\": 1, \"process\": \"w2\"").unwrap();
    let h = History::load_dir(dir.path()).unwrap();
    assert_eq!(h.malformed, 2, "{:?}", h.malformed_lines);
    assert!(h.malformed_lines[1].contains("w2.jsonl:2: truncated last line"), "{:?}", h.malformed_lines);

    let final_state = FinalState { jobs: vec![("j1".into(), "RESTARTING".into())], ..clean_final() };
    let verdicts =
        all_verdicts(&h, &final_state, &["a", "b"], &["a", "a"], (&["/keel/c/jobs/j2"], &["file:///tmp/s/j2/chk-1"]));
    for v in &verdicts {
        assert!(!v.ok, "{} should fail", v.name);
        let first = v.first_detail().unwrap();
        println!("{}: {first}", v.name);
    }
    let find = |name: &str| verdicts.iter().find(|v| v.name == name).unwrap();
    assert!(
        find("one_leader_per_epoch").details[0].contains("gained epoch 150 after d2 had gained the higher epoch 200")
    );
    assert!(find("no_stale_epoch_accepted").details[0].contains(&format!("ts={} w1", T0 + 14_100)));
    let stale = &find("no_stale_durable_write").details;
    assert!(stale.iter().any(|d| d.contains("checkpoint 5 of job j1 completed with epoch 100 after d2")), "{stale:?}");
    assert!(find("recovery_never_older_than_latest_completed").details[0]
        .contains("restored from checkpoint 2, but checkpoint 5"));
    assert!(find("no_stale_attempt_started").details[0].contains("job j1 for attempt 1 after having started attempt 2"));
    assert!(find("finished_jobs_never_rerun").details[0].contains("job j2, which had ended CANCELED"));
    assert!(find("no_acknowledged_job_lost").details[0].contains("is RESTARTING at the end"));
    assert!(find("exactly_once").details.iter().any(|d| d.starts_with("missing: \"b\"")));
    assert_eq!(find("no_leaks").details.len(), 2);
    assert!(find("converged").details[0].contains("job j1 is RESTARTING"));

    let report = Report::new(8, Duration::from_secs(60), &h, &verdicts);
    assert!(!report.ok());
    assert_eq!(report.failed().len(), 10);
    let table = report.summary_table();
    println!("{table}");
    assert!(table.contains("result=FAIL (10 of 10 verdicts failed)"), "{table}");
    assert!(table.contains("2 malformed history lines"), "{table}");
    let html = report.to_html();
    assert!(html.contains("class=\"fail\">FAIL"));
    assert!(html.contains("Malformed history lines (2)"));
    assert_eq!(Report::from_json(&report.to_json()).unwrap(), report);
}

#[test]
fn a_run_with_too_little_activity_is_inconclusive_never_pass() {
    let history = chaos_tests::History::from_events(vec![]);
    let passing = [chaos_tests::Verdict::from_violations("one_leader_per_epoch", vec![])];
    let report = chaos_tests::Report::new(1, std::time::Duration::from_secs(1), &history, &passing);
    assert!(report.ok() && report.result() == "PASS");
    let report = report.with_inconclusive("no checkpoint completed");
    assert!(!report.ok(), "an INCONCLUSIVE run is not a PASS");
    assert_eq!(report.result(), "INCONCLUSIVE (no checkpoint completed)");
    assert!(
        report.summary_table().contains("result=INCONCLUSIVE (no checkpoint completed)"),
        "{}",
        report.summary_table()
    );
    assert!(report.to_html().contains("INCONCLUSIVE"));
    let back = chaos_tests::Report::from_json(&report.to_json()).unwrap();
    assert_eq!(back.inconclusive, report.inconclusive);
    // A failed verdict wins over too little activity.
    let failing = [chaos_tests::Verdict::from_violations("exactly_once", vec!["x".into()])];
    let report =
        chaos_tests::Report::new(1, std::time::Duration::from_secs(1), &history, &failing).with_inconclusive("y");
    assert!(report.result().starts_with("FAIL"), "{}", report.result());
}
