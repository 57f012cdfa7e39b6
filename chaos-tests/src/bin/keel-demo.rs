//! `keel-demo`: the README's first command. Starts a local HA cluster (a 3-node ZooKeeper
//! ensemble, three dispatchers, two workers), submits an exactly-once counting job, kills the
//! leader with SIGKILL while the job runs, and reports the failover: old and new epoch, time to
//! a new leader, time until every worker re-registered, time until the job ran again and the
//! checkpoint it restored from. Then it stops the new leader gracefully (SIGTERM) and reports
//! that handover too, lets the job finish and verifies its committed output record for record
//! against a failure-free run. Everything it starts is stopped when it ends (also on Ctrl-C:
//! children get SIGKILL through PDEATHSIG).
//!
//! Usage: `keel-demo [--keel PATH] [--workdir DIR] [--session-timeout 3s] [--json]`
//! (`bin/demo` builds everything and runs it).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use chaos_tests::probe::{agreed_leader, poll, workers_registered};
use chaos_tests::{config_yaml, http_get_json, KeelProcess, ZkEnsemble};
use serde_json::{json, Value};

struct Args {
    keel: PathBuf,
    workdir: PathBuf,
    session_timeout: String,
    json: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut keel: Option<PathBuf> = None;
    let mut workdir = None;
    let mut session_timeout = "3 s".to_string();
    let mut json = false;
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--keel" => keel = Some(it.next().ok_or("--keel needs a path")?.into()),
            "--workdir" => workdir = Some(PathBuf::from(it.next().ok_or("--workdir needs a directory")?)),
            "--session-timeout" => session_timeout = it.next().ok_or("--session-timeout needs a duration")?,
            "--json" => json = true,
            "-h" | "--help" => {
                println!("usage: keel-demo [--keel PATH] [--workdir DIR] [--session-timeout 3s] [--json]");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?}; see --help")),
        }
    }
    let keel = chaos_tests::probe::keel_binary(keel)?;
    let workdir = chaos_tests::probe::run_dir(workdir, ".keel-demo")?;
    Ok(Args { keel, workdir, session_timeout, json })
}

fn say(msg: &str) {
    eprintln!("[demo] {msg}");
}

fn run(args: Args) -> Result<Value, String> {
    std::fs::create_dir_all(&args.workdir).map_err(|e| format!("cannot create {}: {e}", args.workdir.display()))?;
    say(&format!("logs go to {}", args.workdir.display()));
    say("starting a 3-node ZooKeeper ensemble on free loopback ports ...");
    let mut zk = ZkEnsemble::start(3).map_err(|e| format!("ZooKeeper: {e}"))?;
    say(&format!("ZooKeeper serving at {}", zk.connect_string()));
    let storage =
        format!("file://{}/storage", std::fs::canonicalize(&args.workdir).map_err(|e| e.to_string())?.display());
    let tmp = format!("{}/tmp", std::fs::canonicalize(&args.workdir).map_err(|e| e.to_string())?.display());
    let cfg = config_yaml(
        &zk.connect_string(),
        "demo",
        &[
            ("high-availability.zookeeper.client.session-timeout", args.session_timeout.as_str()),
            ("heartbeat.interval", "500 ms"),
            ("heartbeat.timeout", "5 s"),
            ("high-availability.storageDir", storage.as_str()),
            ("io.tmp.dirs", tmp.as_str()),
            ("state.backend", "rocksdb"),
            ("state.backend.incremental", "true"),
            // So that `keel drill` can be tried against the demo cluster (admin endpoint).
            ("rest.admin.enabled", "true"),
        ],
    );
    let cfg_path = args.workdir.join("config.yaml");
    std::fs::write(&cfg_path, &cfg).map_err(|e| e.to_string())?;
    let (mut ds, ws) = chaos_tests::probe::start_dispatchers_and_workers(&args.keel, &cfg, &args.workdir)?;
    say("3 dispatchers and 2 workers started; waiting for a leader ...");
    let (li, lid, lepoch) = poll(Duration::from_secs(30), "a leader", || agreed_leader(&ds, &[0, 1, 2]))?;
    poll(Duration::from_secs(30), "both workers registered", || workers_registered(&ds[li], 2).then_some(()))?;
    let status = std::process::Command::new(&args.keel)
        .args(["--config", cfg_path.to_str().unwrap_or_default(), "status"])
        .output()
        .map_err(|e| e.to_string())?;
    eprintln!("\n$ keel status\n{}", String::from_utf8_lossy(&status.stdout));

    // An exactly-once counting job: sequence -> keyed count -> file sink.
    let (count, keys) = (12_000u64, 8u64);
    let sink = std::fs::canonicalize(&args.workdir).map_err(|e| e.to_string())?.join("output");
    let spec = format!(
        "name: demo-counts\nparallelism: 2\ncheckpoint-interval: 500 ms\npipeline:\n  - source: {{ type: sequence, count: {count}, keys: {keys}, rate: 600 }}\n  - count: {{}}\n  - sink: {{ type: file, path: file://{} }}\n",
        sink.display()
    );
    let spec_path = args.workdir.join("demo-job.yaml");
    std::fs::write(&spec_path, &spec).map_err(|e| e.to_string())?;
    let run = std::process::Command::new(&args.keel)
        .args(["--config", cfg_path.to_str().unwrap_or_default(), "run", spec_path.to_str().unwrap_or_default()])
        .output()
        .map_err(|e| e.to_string())?;
    if !run.status.success() {
        return Err(format!("keel run failed: {}", String::from_utf8_lossy(&run.stderr)));
    }
    let job = String::from_utf8_lossy(&run.stdout).trim().to_string();
    say(&format!("$ keel run demo-job.yaml -> job {job} ({count} records over {keys} keys, exactly-once file sink)"));
    let job_view = |p: &KeelProcess| -> Option<Value> {
        let (code, v) = http_get_json(&p.rest_addr()?, &format!("/jobs/{job}"), Duration::from_millis(500)).ok()?;
        (code == 200).then_some(v)
    };
    let checkpoints = |p: &KeelProcess| -> Option<Value> {
        let (code, v) =
            http_get_json(&p.rest_addr()?, &format!("/jobs/{job}/checkpoints"), Duration::from_millis(500)).ok()?;
        (code == 200).then_some(v)
    };
    poll(Duration::from_secs(60), "two completed checkpoints", || {
        checkpoints(&ds[li]).filter(|c| c["counts"]["completed"].as_u64().unwrap_or(0) >= 2)
    })?;
    let before_cp = checkpoints(&ds[li]).and_then(|c| c["latest"]["completed"]["id"].as_u64()).unwrap_or(0);
    let attempt_before = job_view(&ds[li]).and_then(|j| j["attempt"].as_u64()).unwrap_or(0);

    say(&format!("kill -9 the leader {lid} (epoch {lepoch}) ..."));
    let t0 = Instant::now();
    ds[li].kill9();
    let rest: Vec<usize> = (0..3).filter(|&i| i != li).collect();
    let (ni, nid, nepoch) = poll(Duration::from_secs(60), "a new leader", || agreed_leader(&ds, &rest))?;
    let to_leader = t0.elapsed();
    poll(Duration::from_secs(60), "workers re-registered", || workers_registered(&ds[ni], 2).then_some(()))?;
    let to_workers = t0.elapsed();
    let (restored, attempt_after) = poll(Duration::from_secs(60), "the job running again", || {
        let j = job_view(&ds[ni])?;
        (j["state"] == "RUNNING" || j["state"] == "FINISHED")
            .then(|| (j["restored-from"].as_u64(), j["attempt"].as_u64().unwrap_or(0)))
    })?;
    let adopted = restored.is_none() && attempt_after == attempt_before;
    let to_job = t0.elapsed();
    if nepoch <= lepoch {
        return Err(format!("epoch did not grow: {lepoch} -> {nepoch}"));
    }

    say(&format!("SIGTERM the new leader {nid} (graceful: it resigns and closes its session) ..."));
    let t1 = Instant::now();
    ds[ni].terminate().map_err(|e| e.to_string())?;
    let last: Vec<usize> = rest.iter().copied().filter(|&i| i != ni).collect();
    let (gi, gid, gepoch) =
        poll(Duration::from_secs(60), "a leader after the graceful stop", || agreed_leader(&ds, &last))?;
    let to_graceful = t1.elapsed();
    poll(Duration::from_secs(60), "workers re-registered", || workers_registered(&ds[gi], 2).then_some(()))?;
    let to_graceful_workers = t1.elapsed();

    let done =
        poll(Duration::from_secs(120), "the job to finish", || job_view(&ds[gi]).filter(|j| j["state"] == "FINISHED"))?;
    let mut committed = Vec::new();
    for e in std::fs::read_dir(&sink).map_err(|e| e.to_string())?.flatten() {
        if e.file_name().to_string_lossy().starts_with("part-") {
            committed.extend(std::fs::read_to_string(e.path()).map_err(|e| e.to_string())?.lines().map(str::to_string));
        }
    }
    committed.sort();
    let expected = chaos_tests::campaign::expected_counts(count, keys);
    let exactly_once = committed == expected;
    let report = json!({
        "session_timeout": args.session_timeout,
        "hard_kill": {
            "old_leader": lid, "old_epoch": lepoch, "new_leader": nid, "new_epoch": nepoch,
            "new_leader_ms": to_leader.as_millis() as u64, "workers_reregistered_ms": to_workers.as_millis() as u64,
            "job_running_again_ms": to_job.as_millis() as u64,
            "latest_checkpoint_before": before_cp, "restored_from_checkpoint": restored,
            "adopted": adopted, "attempt_before": attempt_before, "attempt_after": attempt_after,
        },
        "job": {
            "id": job, "state": done["state"], "restarts": done["restarts"],
            "committed_records": committed.len(), "expected_records": expected.len(), "exactly_once": exactly_once,
        },
        "graceful_stop": {
            "old_leader": nid, "old_epoch": nepoch, "new_leader": gid, "new_epoch": gepoch,
            "new_leader_ms": to_graceful.as_millis() as u64, "workers_reregistered_ms": to_graceful_workers.as_millis() as u64,
        },
        "workdir": args.workdir.display().to_string(),
    });
    eprintln!();
    eprintln!(
        "{:<16} {:<14} {:>14} {:<14} {:>14} {:>12} {:>16}",
        "fault", "old leader", "old epoch", "new leader", "new epoch", "new leader", "workers follow"
    );
    eprintln!(
        "{:<16} {:<14} {:>14} {:<14} {:>14} {:>10}ms {:>14}ms",
        "kill -9",
        lid,
        lepoch,
        nid,
        nepoch,
        to_leader.as_millis(),
        to_workers.as_millis()
    );
    eprintln!(
        "{:<16} {:<14} {:>14} {:<14} {:>14} {:>10}ms {:>14}ms",
        "SIGTERM",
        nid,
        nepoch,
        gid,
        gepoch,
        to_graceful.as_millis(),
        to_graceful_workers.as_millis()
    );
    eprintln!(
        "(session timeout {}: a standby closes a killed leader's session at once (fast failover: its RPC port \
         refuses), a graceful stop resigns; only a paused or cut-off leader waits for the timeout)",
        args.session_timeout
    );
    if adopted {
        eprintln!(
            "job {job}: its tasks kept running; the new leader adopted them {} ms after the kill (attempt {attempt_after}, \
             nothing restored, nothing replayed; high-availability.adoption.timeout)",
            to_job.as_millis()
        );
    } else {
        eprintln!(
            "job {job}: running again {} ms after the kill (attempt {attempt_before} -> {attempt_after}), restored from \
             checkpoint {} (latest before the kill: {before_cp})",
            to_job.as_millis(),
            restored.map(|r| r.to_string()).unwrap_or_else(|| "-".into())
        );
    }
    eprintln!(
        "job output: {} committed records, a failure-free run has {}: {}\n",
        committed.len(),
        expected.len(),
        if exactly_once { "identical, record for record (exactly once)" } else { "DIFFERENT" }
    );
    if !exactly_once {
        return Err("the job's committed output differs from a failure-free run".into());
    }
    drop(ws);
    drop(ds);
    zk.kill(0);
    Ok(report)
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("keel-demo: {e}");
            std::process::exit(2);
        }
    };
    let json = args.json;
    match run(args) {
        Ok(report) => {
            if json {
                println!("{report}");
            }
            say("done; every process it started is stopped");
        }
        Err(e) => {
            eprintln!("keel-demo: FAILED: {e}");
            std::process::exit(1);
        }
    }
}
