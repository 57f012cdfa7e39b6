//! Issue 9, items 1 and 3: `keel local` (a session cluster with nothing else installed) and
//! `keel run-application` (a cluster dedicated to one job that stops when the job ends, its
//! dispatcher started at most `application-attempts` times). No ZooKeeper: both run with
//! `high-availability.type: none`, so a restarted dispatcher recovers the job from its local
//! pointer tree.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use chaos_tests::{http_get_json, wait_until};
use common::KEEL;

const T: Duration = Duration::from_secs(90);
const COUNT: u64 = 8000;
const KEYS: u64 = 8;

/// The supervisor process; SIGKILLed on drop (its children get SIGTERM from the kernel).
struct Supervisor {
    child: Child,
    stderr: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Supervisor {
    fn start(dir: &std::path::Path, extra: &[&str], args: &[&str]) -> Supervisor {
        let cfg = dir.join("config.yaml");
        std::fs::write(
            &cfg,
            format!(
                "high-availability.type: none\njobmanager.rpc.port: 0\nrest.port: 0\nrpc.port: 0\n\
                 heartbeat.interval: 200 ms\nheartbeat.timeout: 2 s\nio.tmp.dirs: {}\nmetrics.reporter.prom.port: 0\n{}",
                dir.join("tmp").display(),
                extra.join("\n")
            ),
        )
        .unwrap();
        let mut child = Command::new(KEEL)
            .arg("--config")
            .arg(&cfg)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, rx) = mpsc::channel();
        for out in [
            Box::new(child.stderr.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stdout.take().unwrap()),
        ] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(out).lines().map_while(Result::ok) {
                    let _ = tx.send(line);
                }
            });
        }
        Supervisor { child, stderr: rx, seen: Vec::new() }
    }

    /// Waits for an output line containing `needle`; returns it.
    fn wait_line(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + T;
        if let Some(l) = self.seen.iter().find(|l| l.contains(needle)) {
            return l.clone();
        }
        while Instant::now() < deadline {
            match self.stderr.recv_timeout(Duration::from_millis(200)) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                // Every line read and the process gone: the line will never come.
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = self.child.try_wait().ok().flatten();
                    panic!("no line with {needle:?}; the process ended ({status:?}):\n{}", self.seen.join("\n"));
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
            }
        }
        panic!("no line with {needle:?} within {T:?}; output so far:\n{}", self.seen.join("\n"));
    }

    /// Waits for the process to exit; its exit code and every output line.
    fn wait_exit(&mut self) -> (Option<i32>, String) {
        let status = wait_until(T, Duration::from_millis(100), "the supervisor to exit", || {
            self.child.try_wait().ok().flatten()
        })
        .unwrap_or_else(|e| panic!("{e}\n{}", self.seen.join("\n")));
        while let Ok(line) = self.stderr.recv_timeout(Duration::from_millis(300)) {
            self.seen.push(line);
        }
        (status.code(), self.seen.join("\n"))
    }
}

/// `name (pid N)` in the banner → N.
fn pid_of(banner: &str, name: &str) -> u32 {
    let at = banner.find(&format!("{name} (pid ")).unwrap_or_else(|| panic!("no {name} in {banner}"));
    let rest = &banner[at + name.len() + 6..];
    rest[..rest.find(')').unwrap()].parse().unwrap()
}

fn rest_of(banner: &str) -> String {
    let at = banner.find("http://").unwrap_or_else(|| panic!("no REST address in {banner}"));
    banner[at + 7..].split([',', ' ', ')']).next().unwrap().to_string()
}

fn alive(pid: u32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    unsafe { libc::kill(pid as i32, 0) == 0 }
}

fn spec(dir: &std::path::Path, sink: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("job.yaml");
    std::fs::write(
        &path,
        format!(
            "name: app-counts\nparallelism: 2\ncheckpoint-interval: 300 ms\npipeline:\n  - source: {{ type: sequence, count: {COUNT}, keys: {KEYS}, rate: 400 }}\n  - count: {{}}\n  - sink: {{ type: file, path: file://{} }}\n",
            sink.display()
        ),
    )
    .unwrap();
    path
}

fn wait_checkpoints(rest: &str, id: &str, n: u64) {
    wait_until(T, Duration::from_millis(100), &format!("{n} completed checkpoints of {id}"), || {
        let (_, v) = http_get_json(rest, &format!("/jobs/{id}/checkpoints"), Duration::from_secs(2)).ok()?;
        (v["counts"]["completed"].as_u64().unwrap_or(0) >= n).then_some(())
    })
    .unwrap();
}

/// The application's dispatcher is killed with -9 mid-job: the supervisor starts it again
/// (start 2 of 2), the restarted dispatcher recovers the job, it finishes exactly once, and the
/// cluster stops by itself (exit 0, no child left).
#[test]
fn an_application_survives_its_dispatcher_and_stops_when_the_job_ends() {
    let dir = tempfile::tempdir().unwrap();
    let sink = dir.path().join("out");
    let spec = spec(dir.path(), &sink);
    let mut app = Supervisor::start(dir.path(), &[], &["run-application", spec.to_str().unwrap(), "--job-id", "app-1"]);
    let banner = app.wait_line("application cluster /application-app-1");
    let (dispatcher, worker) = (pid_of(&banner, "dispatcher"), pid_of(&banner, "worker-0"));
    app.wait_line("job app-1: RUNNING");
    wait_checkpoints(&rest_of(&banner), "app-1", 2);
    // SAFETY: the application's dispatcher, a child of the supervisor this test started.
    unsafe { libc::kill(dispatcher as i32, libc::SIGKILL) };
    app.wait_line("starting it again (start 2 of 2, application-attempts)");
    let (code, out) = app.wait_exit();
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("job app-1: FINISHED"), "{out}");
    common::assert_exactly_once(&sink, COUNT, KEYS);
    assert!(!alive(worker), "the worker outlived its application");
    let logs = dir.path().join("tmp/keel-application-app-1");
    let log = std::fs::read_to_string(logs.join("dispatcher.log")).unwrap();
    assert_eq!(log.matches("recovering jobs epoch=1 jobs=1").count(), 1, "the restarted dispatcher recovered the job");
}

/// With `application-attempts: 1` a dispatcher that dies is not started again: the supervisor
/// says so, stops the worker and exits 1.
#[test]
fn an_application_gives_up_when_its_attempts_are_spent() {
    let dir = tempfile::tempdir().unwrap();
    let sink = dir.path().join("out");
    let spec = spec(dir.path(), &sink);
    let mut app = Supervisor::start(
        dir.path(),
        &["application-attempts: 1"],
        &["run-application", spec.to_str().unwrap(), "--job-id", "app-2"],
    );
    let banner = app.wait_line("application cluster /application-app-2");
    let (dispatcher, worker) = (pid_of(&banner, "dispatcher"), pid_of(&banner, "worker-0"));
    app.wait_line("job app-2: RUNNING");
    // SAFETY: the application's dispatcher, a child of the supervisor this test started.
    unsafe { libc::kill(dispatcher as i32, libc::SIGKILL) };
    let (code, out) = app.wait_exit();
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("application-attempts is 1; giving up"), "{out}");
    assert!(!out.contains("starting it again"), "{out}");
    assert!(!alive(worker), "the worker outlived its application");
}

/// `keel local` runs a session cluster: a job submitted with `keel run -m` finishes exactly
/// once; SIGTERM stops the cluster (exit 0, no child left).
#[test]
fn keel_local_runs_submitted_jobs_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let sink = dir.path().join("out");
    let spec = spec(dir.path(), &sink);
    let mut local = Supervisor::start(dir.path(), &["taskmanager.numberOfTaskSlots: 2"], &["local"]);
    let banner = local.wait_line("Keel local cluster");
    let worker = pid_of(&banner, "worker-0");
    let rest = local.wait_line("rest: ").trim_start_matches("rest: ").to_string();
    let out = Command::new(KEEL)
        .args(["--config", dir.path().join("config.yaml").to_str().unwrap(), "run", "-m", &rest, "--job-id", "local-1"])
        .arg(&spec)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    wait_until(T, Duration::from_millis(100), "the job to finish", || {
        let (_, v) = http_get_json(&rest, "/jobs/local-1", Duration::from_secs(2)).ok()?;
        (v["state"] == "FINISHED").then_some(())
    })
    .unwrap();
    common::assert_exactly_once(&sink, COUNT, KEYS);
    // SAFETY: the supervisor this test started.
    unsafe { libc::kill(local.child.id() as i32, libc::SIGTERM) };
    let (code, out) = local.wait_exit();
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("local cluster stopped"), "{out}");
    assert!(!alive(worker), "the worker outlived keel local");
}
