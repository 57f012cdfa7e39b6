//! Flink users' habits (issue 9, items 4 and 5) against a real cluster: cluster-wide job
//! defaults from Flink's keys, `rest.bind-port` ranges shared by two dispatchers, `keel run
//! -d -p -s -m`, `keel savepoint <id> <dir>`, `keel stop --savepointPath`, plain absolute
//! paths, `keel list -r/-a` with aligned columns and the failure reason, `keel status` with
//! workers, ended jobs keeping their name and parallelism after a leader change; and,
//! without a cluster, `keel run --check` and client commands printing only their warnings.

mod common;

use std::process::Command;
use std::time::Duration;

use chaos_tests::free_port;
use common::{Cluster, KEEL};

const T: Duration = Duration::from_secs(60);

/// Polls `f` (bounded: [`T`], every 200 ms) until it gives a value.
fn wait_for<R>(what: &str, mut f: impl FnMut() -> Option<R>) -> R {
    chaos_tests::wait_until(T, Duration::from_millis(200), what, &mut f).unwrap_or_else(|e| panic!("{e}"))
}

fn text(out: &std::process::Output) -> (String, String) {
    (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// A counting job that runs until stopped, without parallelism or restart strategy: the
/// cluster's defaults apply.
fn endless_job(name: &str, sink: &std::path::Path) -> String {
    format!(
        "name: {name}\ncheckpoint-interval: 200 ms\npipeline:\n  - source: {{ type: sequence, keys: 4, rate: 200 }}\n  \
         - count: {{}}\n  - sink: {{ type: file, path: file://{} }}\n",
        sink.display()
    )
}

#[test]
fn flink_cli_habits_against_a_cluster() {
    let base = free_port();
    let range = format!("{base}-{}", base + 9);
    // Flink 2.x's name for state.savepoints.dir: where savepoints go when none is named.
    let default_sp = tempfile::tempdir().unwrap();
    let default_sp_dir = default_sp.path().display().to_string();
    let mut c = Cluster::start(
        "it-flink-habits",
        0,
        0,
        &[
            ("rest.bind-port", range.as_str()),
            ("parallelism.default", "2"),
            ("restart-strategy.type", "none"),
            // Flink's bind keys: listeners bind the wildcard, others are told the configured
            // addresses; a worker binds and registers taskmanager.host.
            ("rest.bind-address", "0.0.0.0"),
            ("jobmanager.bind-host", "0.0.0.0"),
            ("rpc.address", "127.0.0.3"),
            ("taskmanager.host", "127.0.0.2"),
            ("execution.checkpointing.savepoint-dir", default_sp_dir.as_str()),
        ],
    );
    // Two dispatchers from one configuration: each binds the first free port of the range.
    c.add_dispatcher("d0");
    c.add_dispatcher("d1");
    c.add_worker("w0");
    c.add_worker("w1");
    let ports: Vec<u16> =
        c.dispatchers.iter().map(|d| d.rest_addr().unwrap().rsplit_once(':').unwrap().1.parse().unwrap()).collect();
    assert_ne!(ports[0], ports[1], "two dispatchers share one rest.bind-port range");
    for p in &ports {
        assert!((base..=base + 9).contains(p), "REST port {p} is outside rest.bind-port {range}");
    }
    for d in &c.dispatchers {
        assert!(d.rest_addr().unwrap().starts_with("0.0.0.0:"), "REST binds rest.bind-address");
        assert!(d.rpc_addr().starts_with("0.0.0.0:"), "gRPC binds jobmanager.bind-host");
    }
    for w in &c.workers {
        assert!(w.rpc_addr().starts_with("127.0.0.2:"), "a worker binds taskmanager.host: {}", w.rpc_addr());
    }
    let leader = c.wait_leader(&[0, 1], T);
    c.wait_workers_follow(&leader, T);
    let rest = c.dispatchers[leader.index].rest_addr().unwrap();
    // ZooKeeper holds the configured addresses, not the wildcard.
    let zk_view = c.status_json();
    let published = zk_view["leader"]["rest_address"].as_str().unwrap_or_default().to_owned();
    assert_eq!(published, format!("127.0.0.1:{}", rest.rsplit_once(':').unwrap().1), "{zk_view}");
    let published_rpc = zk_view["leader"]["address"].as_str().unwrap_or_default().to_owned();
    assert!(published_rpc.starts_with("127.0.0.3:"), "{zk_view}");

    // keel status lists the workers the leader has registered.
    wait_for("keel status to list both workers", || {
        let (out, _) = text(&c.keel(&["status"]));
        (out.contains("workers   2 registered") && out.contains("w0") && out.contains("w1")).then_some(out)
    });
    let status = c.status_json();
    assert_eq!(status["workers"].as_array().map(Vec::len), Some(2), "{status}");
    for w in status["workers"].as_array().unwrap() {
        assert!(
            w["path"].as_str().unwrap_or_default().starts_with("127.0.0.2:"),
            "registered at taskmanager.host: {w}"
        );
    }

    // A spec without parallelism runs with parallelism.default (2); `-p 1` overrides; `-d`
    // and `-m HOST:PORT` are accepted as in Flink.
    let dir = c.dir.path().to_path_buf();
    let spec_a = dir.join("a.yaml");
    std::fs::write(&spec_a, endless_job("job-a", &dir.join("out-a"))).unwrap();
    let out = c.keel(&["run", "-d", "-m", &rest, spec_a.to_str().unwrap()]);
    let (a, err) = text(&out);
    assert!(out.status.success(), "{err}");
    let a = a.trim().to_owned();
    let spec_b = dir.join("b.yaml");
    std::fs::write(&spec_b, endless_job("job-b", &dir.join("out-b"))).unwrap();
    let out = c.keel(&["run", "-p", "1", spec_b.to_str().unwrap()]);
    let (b, err) = text(&out);
    assert!(out.status.success(), "{err}");
    let b = b.trim().to_owned();
    let job_a = c.wait_job_state(&a, "RUNNING", T);
    let job_b = c.wait_job_state(&b, "RUNNING", T);
    assert_eq!(job_a["parallelism"], 2, "parallelism.default applies when the spec has none: {job_a}");
    assert_eq!(job_b["parallelism"], 1, "-p overrides: {job_b}");
    c.wait_checkpoints(&a, 1, T);

    // `keel savepoint <id> <dir>` with a plain absolute path.
    let sp_dir = dir.join("savepoints");
    let out = c.keel(&["savepoint", &b, sp_dir.to_str().unwrap()]);
    let (location, err) = text(&out);
    assert!(out.status.success(), "{err}");
    assert!(location.trim().starts_with(&format!("file://{}/", sp_dir.display())), "{location}");

    // Without a directory: the configured default.
    let out = c.keel(&["savepoint", &b]);
    let (location, err) = text(&out);
    assert!(out.status.success(), "{err}");
    assert!(location.trim().starts_with(&format!("file://{default_sp_dir}/")), "{location}");

    // `keel stop --savepointPath DIR <id>`: a savepoint, then the job is cancelled, durably.
    let stop_dir = dir.join("stop-savepoints");
    let out = c.keel(&["stop", "--savepointPath", stop_dir.to_str().unwrap(), &a]);
    let (stopped_at, err) = text(&out);
    assert!(out.status.success(), "{err}");
    let stopped_at = stopped_at.trim().to_owned();
    assert!(stopped_at.starts_with(&format!("file://{}/", stop_dir.display())), "{stopped_at}");
    assert_eq!(c.job(&a).map(|j| j["state"].clone()), Some("CANCELED".into()), "stop cancels the job");

    // Restart it from that savepoint with Flink's `-s` and a plain absolute path.
    let plain = stopped_at.strip_prefix("file://").unwrap();
    let out = c.keel(&["run", "-s", plain, spec_a.to_str().unwrap()]);
    let (a2, err) = text(&out);
    assert!(out.status.success(), "{err}");
    let a2 = a2.trim().to_owned();
    c.wait_job_state(&a2, "RUNNING", T);
    c.wait_checkpoints(&a2, 1, T);
    // A relative path is refused at the client, before anything is sent.
    let out = c.keel(&["run", "-s", "relative/sp", spec_a.to_str().unwrap()]);
    let (_, err) = text(&out);
    assert_eq!(out.status.code(), Some(1));
    assert!(err.contains("--from-savepoint 'relative/sp' is a relative path"), "{err}");

    // The cluster's restart strategy (none) applies to a spec without one: a job whose input
    // file is missing fails at once, and `keel list` shows why.
    let spec_c = dir.join("c.yaml");
    std::fs::write(
        &spec_c,
        format!(
            "name: job-c-reads-a-file-that-is-not-there\nparallelism: 1\npipeline:\n  - source: {{ type: file, path: {}/missing.txt }}\n  - count: {{}}\n  \
             - sink: {{ type: file, path: file://{}/out-c }}\n",
            dir.display(),
            dir.display()
        ),
    )
    .unwrap();
    let out = c.keel(&["run", spec_c.to_str().unwrap()]);
    let (cid, err) = text(&out);
    assert!(out.status.success(), "{err}");
    let cid = cid.trim().to_owned();
    let failed = c.wait_job_state(&cid, "FAILED", T);
    // (The built-in default, fixed-delay with 3 attempts, would say "after 3 restart(s)".)
    assert!(
        failed["failure"].as_str().unwrap_or("").contains("exhausted after 0 restart(s)"),
        "restart-strategy.type: none means no restart: {failed}"
    );

    // A bad spec is reported with the file's name and line, not "the submitted job spec".
    let bad = dir.join("bad.yaml");
    std::fs::write(&bad, "name: bad\nparallelism: 2\npipeline:\n  - source: { type: sequence, count: -1 }\n").unwrap();
    let out = c.keel(&["run", bad.to_str().unwrap()]);
    let (_, err) = text(&out);
    assert_eq!(out.status.code(), Some(1));
    assert!(err.contains(&format!("{}:", bad.display())), "{err}");

    // keel list: aligned columns (job-c's name is longer than the old fixed 24-character
    // column), the failure reason; -r keeps the running jobs; -a all.
    let out = c.keel(&["list", "-a"]);
    let (list, err) = text(&out);
    assert!(out.status.success(), "{err}");
    let lines: Vec<&str> = list.lines().collect();
    let state_col = lines[0].find("STATE").unwrap();
    let reason_col = lines[0].find("REASON").unwrap();
    for id in [&a, &b, &a2, &cid] {
        let line = lines.iter().find(|l| l.starts_with(id.as_str())).unwrap_or_else(|| panic!("{id} in\n{list}"));
        let state = &line[state_col..];
        assert!(
            ["RUNNING", "CANCELED", "FAILED"].iter().any(|s| state.starts_with(s)),
            "the STATE column is aligned:\n{list}"
        );
    }
    let c_line = lines.iter().find(|l| l.starts_with(cid.as_str())).unwrap();
    assert!(c_line[reason_col..].contains("missing.txt"), "the failure reason is shown:\n{list}");
    let out = c.keel(&["list", "-r"]);
    let (running, _) = text(&out);
    assert!(running.contains(&b) && running.contains(&a2), "{running}");
    assert!(!running.lines().any(|l| l.starts_with(a.as_str())), "-r leaves out the stopped job:\n{running}");
    assert!(!running.contains(&cid), "-r leaves out ended jobs:\n{running}");

    // After a leader change, ended jobs keep their name and parallelism (from the result
    // store) in keel list.
    c.dispatchers[leader.index].kill9();
    let other = 1 - leader.index;
    c.wait_leader(&[other], T);
    let v = wait_for("the new leader to list the stopped job", || {
        let out = c.keel(&["list", "--json"]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        let jobs = v["jobs"].as_array()?.clone();
        jobs.iter().find(|j| j["jid"] == a.as_str()).cloned()
    });
    assert_eq!(v["name"], "job-a", "{v}");
    assert_eq!(v["parallelism"], 2, "{v}");
    assert_eq!(v["state"], "CANCELED", "{v}");
}

#[test]
fn run_check_validates_offline_and_client_commands_print_only_their_warnings() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.yaml");
    // A Flink-style file with server-side keys a client does not read.
    std::fs::write(
        &cfg,
        "parallelism.default: 3\nstate.backend.incremental: true\ntaskmanager.memory.process.size: 1728m\n\
         jobmanager.memory.process.size: 1600m\nrestart-strategy: fixed-delay\nsome.other.tool.key: 1\n",
    )
    .unwrap();
    let good = dir.path().join("good.yaml");
    std::fs::write(
        &good,
        "name: counts\npipeline:\n  - source: { type: sequence, count: 10 }\n  - count: {}\n  - sink: { type: file, path: /tmp/x }\n",
    )
    .unwrap();
    let out = Command::new(KEEL)
        .args(["--config", cfg.to_str().unwrap(), "run", "--check", good.to_str().unwrap()])
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(
        stdout.trim(),
        format!("{}: OK: job 'counts', parallelism 3, checkpoint interval 10s, 1 operator(s), bounded", good.display())
    );
    assert!(!stderr.contains("warning"), "a client command prints no server-side warnings: {stderr}");

    // `keel config show` still shows every warning.
    let out = Command::new(KEEL).args(["--config", cfg.to_str().unwrap(), "config", "show"]).output().unwrap();
    let (_, stderr) = text(&out);
    assert_eq!(stderr.matches("warning: ").count(), 5, "{stderr}");

    // An error names the file and the line.
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "name: counts\nparallelism: 0\npipeline: []\n").unwrap();
    let out = Command::new(KEEL)
        .args(["--config", cfg.to_str().unwrap(), "run", "--check", bad.to_str().unwrap()])
        .output()
        .unwrap();
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr.contains(&format!("{}:2", bad.display())), "{stderr}");
}
