//! `KeelProcess` against a shell script standing in for the `keel` binary.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use chaos_tests::{wait_until, KeelProcess, KeelSpec, Role};

/// A fake `keel`: logs its arguments to stderr, prints noise and then the ready line (its
/// rpc port is the start count, so restarts are visible), exits 0 on SIGTERM.
const FAKE_KEEL: &str = r#"#!/bin/sh
echo "fake-keel args: $*" >&2
n=$(cat starts 2>/dev/null || echo 0); n=$((n+1)); echo $n > starts
trap 'echo "fake-keel got TERM" >&2; exit 0' TERM
echo "some noise before ready"
echo "keel-ready {\"role\":\"$1\",\"rpc\":\"127.0.0.1:$n\",\"id\":\"w1\"}"
echo "noise after ready"
while :; do sleep 0.05; done
"#;

/// Never prints the ready line.
const NEVER_READY: &str = r#"#!/bin/sh
echo $$ > never.pid
echo "still starting up" >&2
exec sleep 30
"#;

/// Exits before it is ready.
const EXITS_EARLY: &str = r#"#!/bin/sh
echo "boom: cannot bind" >&2
exit 3
"#;

fn script(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// Gone or a zombie (an orphan may wait for a non-reaping init in a container).
fn pid_dead(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => proc_state(&stat) == Some('Z'),
    }
}

fn proc_state(stat: &str) -> Option<char> {
    // "pid (comm) S ..." where comm may contain spaces or parentheses.
    stat.rsplit_once(')').and_then(|(_, rest)| rest.trim_start().chars().next())
}

fn state_of(pid: u32) -> Option<char> {
    proc_state(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

fn wait_dead(pid: u32) {
    wait_until(Duration::from_secs(5), Duration::from_millis(20), &format!("pid {pid} to die"), || {
        pid_dead(pid).then_some(())
    })
    .unwrap();
}

#[test]
fn ready_line_signals_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let bin = script(dir.path(), "fake-keel", FAKE_KEEL);
    let work = dir.path().join("work");
    let args = vec!["-D".to_string(), "a.b=c".to_string()];
    let mut p =
        KeelProcess::spawn(&bin, Role::Worker, "rpc.port: 0\n", &args, &work, "w1").expect("fake keel becomes ready");

    // Ready line parsed, skipping the noise before it.
    assert_eq!(p.ready()["role"], "worker");
    assert_eq!(p.rpc_addr(), "127.0.0.1:1");
    assert_eq!(p.id(), "w1");
    assert_eq!(p.rest_addr(), None);
    assert_eq!(p.name(), "w1");
    assert_eq!(p.role(), Role::Worker);
    assert_eq!(std::fs::read_to_string(work.join("w1.yaml")).unwrap(), "rpc.port: 0\n");
    assert!(p.is_running());

    // Arguments, stderr and drained stdout all land in the log.
    let cfg = work.join("w1.yaml");
    wait_until(Duration::from_secs(5), Duration::from_millis(20), "stdout after the ready line in the log", || {
        p.log_tail(50).contains("[stdout] noise after ready").then_some(())
    })
    .unwrap();
    let log = p.log_tail(50);
    assert!(log.contains(&format!("fake-keel args: worker --config {} -D a.b=c", cfg.display())), "{log}");
    assert!(log.contains("[stdout] some noise before ready"), "{log}");

    // SIGSTOP / SIGCONT.
    let pid = p.pid();
    p.stop().unwrap();
    wait_until(Duration::from_secs(5), Duration::from_millis(10), "state T", || {
        (state_of(pid) == Some('T')).then_some(())
    })
    .unwrap();
    assert!(p.is_running(), "a stopped process still runs");
    p.cont().unwrap();
    wait_until(Duration::from_secs(5), Duration::from_millis(10), "state not T", || {
        (state_of(pid) != Some('T')).then_some(())
    })
    .unwrap();

    // SIGTERM: graceful, exit 0.
    p.terminate().unwrap();
    let status = p.wait_exit(Duration::from_secs(5)).unwrap().expect("exits on SIGTERM");
    assert!(status.success(), "{status:?}");
    assert!(!p.is_running());
    assert!(p.terminate().is_err(), "signal to an exited process");
    assert!(p.log_tail(5).contains("fake-keel got TERM"));

    // Restart: same args, fresh ready info.
    p.restart().unwrap();
    assert_ne!(p.pid(), pid);
    assert_eq!(p.rpc_addr(), "127.0.0.1:2");
    assert!(p.restart().is_err(), "restart while running");

    // SIGKILL.
    let pid2 = p.pid();
    p.kill9();
    assert!(!p.is_running());
    let status = p.wait_exit(Duration::from_secs(1)).unwrap().unwrap();
    assert_eq!(status.signal(), Some(libc::SIGKILL));
    assert!(pid_dead(pid2));

    // The log kept both runs.
    p.restart().unwrap();
    assert_eq!(p.rpc_addr(), "127.0.0.1:3");
    let log = std::fs::read_to_string(work.join("w1.log")).unwrap();
    assert_eq!(log.matches("=== chaos-tests: starting worker w1").count(), 3);
}

#[test]
fn drop_kills_a_stopped_process() {
    let dir = tempfile::tempdir().unwrap();
    let bin = script(dir.path(), "fake-keel", FAKE_KEEL);
    let mut p = KeelProcess::spawn(&bin, Role::Dispatcher, "", &[], dir.path(), "d1").unwrap();
    assert_eq!(p.ready()["role"], "dispatcher");
    let pid = p.pid();
    p.stop().unwrap();
    drop(p);
    assert!(pid_dead(pid), "pid {pid} survived drop");
}

#[test]
fn missing_ready_line_times_out_with_log_tail() {
    let dir = tempfile::tempdir().unwrap();
    let bin = script(dir.path(), "never", NEVER_READY);
    let err = KeelSpec::new(&bin, Role::Worker, "", dir.path(), "w")
        .with_ready_timeout(Duration::from_millis(500))
        .spawn()
        .unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
    let msg = err.to_string();
    assert!(msg.contains("keel-ready") && msg.contains("still starting up"), "{msg}");
    let pid: u32 = std::fs::read_to_string(dir.path().join("never.pid")).unwrap().trim().parse().unwrap();
    assert!(pid_dead(pid), "a process that never got ready was left running");
}

#[test]
fn early_exit_is_reported_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let bin = script(dir.path(), "early", EXITS_EARLY);
    let t = std::time::Instant::now();
    let err = KeelProcess::spawn(&bin, Role::Worker, "", &[], dir.path(), "w").unwrap_err();
    eprintln!("early exit reported after {:?}", t.elapsed());
    assert_eq!(err.kind(), std::io::ErrorKind::UnexpectedEof);
    assert!(err.to_string().contains("boom: cannot bind"), "{err}");
}

#[test]
fn spawning_thread_may_exit() {
    // PDEATHSIG fires when the forking thread exits; the harness forks on a thread of its
    // own, so a process started from a short-lived thread keeps running.
    let dir = tempfile::tempdir().unwrap();
    let bin = script(dir.path(), "fake-keel", FAKE_KEEL);
    let work = dir.path().to_path_buf();
    let mut p = std::thread::spawn(move || KeelProcess::spawn(&bin, Role::Worker, "", &[], &work, "w").unwrap())
        .join()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert!(p.is_running(), "{}", p.log_tail(20));
}

const HELPER_ENV: &str = "CHAOS_TESTS_PDEATHSIG_HELPER_DIR";

/// Not a test of its own: run by `children_die_with_the_test_process` in a child copy of
/// this test binary, it starts a fake keel, prints its pid and waits to be killed.
#[test]
fn pdeathsig_helper() {
    let Some(dir) = std::env::var_os(HELPER_ENV) else {
        return;
    };
    let dir = PathBuf::from(dir);
    let bin = script(&dir, "fake-keel", FAKE_KEEL);
    let p = KeelProcess::spawn(&bin, Role::Worker, "", &[], &dir, "orphan").unwrap();
    println!("KEEL_PID {}", p.pid());
    std::thread::sleep(Duration::from_secs(30));
}

#[test]
fn children_die_with_the_test_process() {
    let dir = tempfile::tempdir().unwrap();
    let mut helper = Command::new(std::env::current_exe().unwrap())
        .args(["pdeathsig_helper", "--exact", "--nocapture", "--test-threads=1"])
        .env(HELPER_ENV, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = helper.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(pid) = line.split("KEEL_PID ").nth(1) {
                let _ = tx.send(pid.trim().parse::<u32>().unwrap());
                return;
            }
        }
    });
    let pid = rx.recv_timeout(Duration::from_secs(30));
    let _ = helper.kill();
    let _ = helper.wait();
    let pid = pid.expect("helper printed the fake keel's pid");
    wait_dead(pid);
}
