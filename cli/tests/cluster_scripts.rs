//! The Flink-style cluster scripts (issue 9, item 2): `bin/start-cluster.sh` reads
//! `conf/masters` and `conf/workers`, starts a dispatcher per master and a worker per worker
//! line through `bin/keel-daemon.sh` (local hosts directly), with pid files and one plain-text
//! log file per process; the cluster elects a leader and runs a job; `bin/stop-cluster.sh`
//! stops every process gracefully. Real ZooKeeper, real `keel` processes.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use chaos_tests::{config_yaml, free_port, http_get_json, wait_until, ZkEnsemble};
use serde_json::Value;

const KEEL: &str = env!("CARGO_BIN_EXE_keel");
const T: Duration = Duration::from_secs(60);

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf()
}

/// Kills (SIGKILL) whatever the scripts started that is still alive, read from their pid
/// files, when the test ends in any way (the happy path stops everything first).
struct PidFiles(PathBuf);

impl PidFiles {
    fn pids(&self) -> Vec<i32> {
        let mut out = vec![];
        for e in std::fs::read_dir(&self.0).into_iter().flatten().flatten() {
            if e.path().extension().is_some_and(|x| x == "pid") {
                let text = std::fs::read_to_string(e.path()).unwrap_or_default();
                out.extend(text.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
            }
        }
        out
    }
}

impl Drop for PidFiles {
    fn drop(&mut self) {
        for pid in self.pids() {
            // SAFETY-free: a plain signal to a pid our scripts started and recorded.
            let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
        }
    }
}

fn alive(pid: i32) -> bool {
    Command::new("kill")
        .args(["-0", &pid.to_string()])
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn script(name: &str, env: &[(&str, String)], args: &[&str]) -> (bool, String) {
    let mut cmd = Command::new(repo().join("bin").join(name));
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run bin/{name}: {e}"));
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

fn logs(dir: &Path) -> String {
    let mut s = String::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let text = std::fs::read_to_string(e.path()).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(30).collect();
        s.push_str(&format!("---- {}\n", e.path().display()));
        for l in tail.into_iter().rev() {
            s.push_str(l);
            s.push('\n');
        }
    }
    s
}

#[test]
fn start_cluster_runs_a_job_and_stop_cluster_stops_every_process() {
    let zk = ZkEnsemble::start(1).expect("1-node ZooKeeper");
    let dir = tempfile::tempdir().expect("temp dir");
    let conf = dir.path().join("conf");
    let log = dir.path().join("log");
    std::fs::create_dir_all(&conf).unwrap();
    let storage = format!("file://{}/storage", dir.path().display());
    let tmp = format!("{}/tmp", dir.path().display());
    let cfg = config_yaml(
        &zk.connect_string(),
        "/scripts",
        &[("high-availability.storageDir", &storage), ("io.tmp.dirs", &tmp), ("taskmanager.numberOfTaskSlots", "2")],
    );
    std::fs::write(conf.join("config.yaml"), cfg).unwrap();
    let (p1, p2) = (free_port(), free_port());
    std::fs::write(conf.join("masters"), format!("# two dispatchers on this host\n127.0.0.1:{p1}\n127.0.0.1:{p2}\n"))
        .unwrap();
    std::fs::write(conf.join("workers"), "127.0.0.1\nlocalhost   # a comment\n").unwrap();
    let env = vec![
        ("KEEL_CONF_DIR", conf.display().to_string()),
        ("KEEL_LOG_DIR", log.display().to_string()),
        ("KEEL_BIN", KEEL.to_string()),
        ("KEEL_STOP_TIMEOUT", "60".to_string()),
    ];
    let pids = PidFiles(log.clone());

    let (ok, out) = script("start-cluster.sh", &env, &[]);
    assert!(ok, "start-cluster.sh failed:\n{out}\n{}", logs(&log));
    assert_eq!(out.matches("started dispatcher").count(), 2, "{out}");
    assert_eq!(out.matches("started worker").count(), 2, "{out}");
    let started = pids.pids();
    assert_eq!(started.len(), 4, "four pids recorded: {started:?}");

    // The two dispatchers listen on the masters' REST ports; one of them leads and both
    // workers register with it.
    let rests = [format!("127.0.0.1:{p1}"), format!("127.0.0.1:{p2}")];
    let leader_rest = wait_until(T, Duration::from_millis(100), "a leader and two registered workers", || {
        rests.iter().find_map(|r| {
            let (_, v) = http_get_json(r, "/ha/leader", Duration::from_secs(2)).ok()?;
            if v["is_leader"] != true {
                return None;
            }
            let (_, tms) = http_get_json(r, "/taskmanagers", Duration::from_secs(2)).ok()?;
            (tms["taskmanagers"].as_array()?.len() == 2).then(|| r.clone())
        })
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", logs(&log)));
    let standby = rests.iter().find(|r| **r != leader_rest).unwrap();
    let (_, v) = http_get_json(standby, "/ha/leader", Duration::from_secs(2)).expect("the standby answers");
    assert_eq!(v["role"], "standby", "{v}");

    // A job submitted with the cluster's own configuration runs to the end.
    let sink = dir.path().join("out");
    let spec = format!(
        "name: scripts\nparallelism: 2\ncheckpoint-interval: 200 ms\npipeline:\n  - source: {{ type: sequence, count: 2000, keys: 4, rate: 4000 }}\n  - count: {{}}\n  - sink: {{ type: file, path: file://{} }}\n",
        sink.display()
    );
    let spec_path = dir.path().join("job.yaml");
    std::fs::write(&spec_path, spec).unwrap();
    let run = Command::new(KEEL)
        .args(["run", "--config", conf.join("config.yaml").to_str().unwrap(), spec_path.to_str().unwrap()])
        .output()
        .expect("keel run");
    assert!(run.status.success(), "keel run: {}", String::from_utf8_lossy(&run.stderr));
    let id = String::from_utf8_lossy(&run.stdout).trim().to_string();
    let job: Value = wait_until(T, Duration::from_millis(100), "the job to finish", || {
        let (_, v) = http_get_json(&leader_rest, &format!("/jobs/{id}"), Duration::from_secs(2)).ok()?;
        (v["state"] == "FINISHED").then_some(v)
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", logs(&log)));
    assert_eq!(job["state"], "FINISHED");

    let (ok, out) = script("keel-daemon.sh", &env, &["status", "worker"]);
    assert!(ok && out.matches("running").count() == 2, "status worker:\n{out}");

    // One log file per process, each with its ready line, all plain text (no ANSI colour
    // codes: stderr is a file, not a terminal).
    let files: Vec<PathBuf> = std::fs::read_dir(&log)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    assert_eq!(files.len(), 4, "one log per process: {files:?}");
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        assert!(text.contains("keel-ready "), "{} has no keel-ready line", f.display());
        assert!(text.lines().count() > 1, "{} holds no log lines", f.display());
        assert!(
            !text.contains('\u{1b}'),
            "{} contains ANSI escape codes:\n{}",
            f.display(),
            &text[..text.len().min(600)]
        );
    }

    // stop-cluster.sh stops every process gracefully and removes the pid files.
    let (ok, out) = script("stop-cluster.sh", &env, &[]);
    assert!(ok, "stop-cluster.sh failed:\n{out}");
    assert_eq!(out.matches("stopped").count(), 4, "{out}");
    assert!(!out.contains("killing it"), "a process needed SIGKILL:\n{out}");
    for pid in &started {
        assert!(!alive(*pid), "pid {pid} still runs after stop-cluster.sh");
    }
    assert!(pids.pids().is_empty(), "pid files are left: {:?}", pids.pids());
}

#[test]
fn a_bad_masters_line_is_named_with_its_file_and_line() {
    let dir = tempfile::tempdir().expect("temp dir");
    let conf = dir.path().join("conf");
    std::fs::create_dir_all(&conf).unwrap();
    std::fs::write(conf.join("config.yaml"), "rest.port: 0\n").unwrap();
    std::fs::write(conf.join("masters"), "localhost:8081\nlocalhost:80a81\n").unwrap();
    std::fs::write(conf.join("workers"), "localhost\n").unwrap();
    let env = vec![
        ("KEEL_CONF_DIR", conf.display().to_string()),
        ("KEEL_LOG_DIR", dir.path().join("log").display().to_string()),
        ("KEEL_BIN", KEEL.to_string()),
    ];
    let _pids = PidFiles(dir.path().join("log"));
    let (ok, out) = script("start-cluster.sh", &env, &[]);
    assert!(!ok, "a malformed masters file must fail:\n{out}");
    assert!(out.contains("masters:2: 'localhost:80a81' is not host:rest-port"), "{out}");
    // Nothing was started for a file that does not parse.
    assert!(!out.contains("started"), "{out}");
}
