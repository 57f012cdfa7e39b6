//! `keel-bench failover`: what a leader failover costs a running job, measured.
//!
//! For each session timeout T (default 2 s and 60 s) it starts a fresh local cluster (a 3-node
//! ZooKeeper ensemble, three dispatchers, two workers) and one job (a sequence source at
//! 10,000 records/s over two subtasks, keyed count, exactly-once file sink, a checkpoint every
//! second), then runs rounds of each fault against the acting leader: `kill -9` and `SIGTERM`.
//! Per round it prints, from the moment of the fault:
//!
//! * **new leader**: a standby acts and every dispatcher agrees on it (`GET /ha/leader`);
//! * **workers**: the new leader has both workers registered (`GET /overview`);
//! * **job running**: the first record processed by the job's tasks under the new leader: by a
//!   newer attempt when the job was restarted, by the old attempt after the new leader acted
//!   when its tasks were adopted; from the tasks' own counters (`keel_task_records_in_total` on
//!   the workers' `/metrics`, polled every ~10 ms). The old leader's tasks keep processing
//!   until the new leader restarts them, so this is not the processing gap;
//! * **processing gap**: the longest interval around the fault in which no subtask processed a
//!   record (same counters; resolution: the polling interval);
//! * **first checkpoint**: the first checkpoint completed after the fault (`GET
//!   /jobs/<id>/checkpoints` on the new leader);
//! * **adopted / restarted**: whether the tasks that ran before the fault kept running (same
//!   attempt) or the job was restarted (a newer attempt). Keel restarts today: task adoption
//!   through a leader change is not built.
//!
//! The killed dispatcher is started again before the next round. Numbers are printed, never
//! asserted: this is a benchmark, not a test. `--json` prints every round as one JSON document
//! on stdout (the table goes to stderr).
//!
//! Each configuration runs twice, side by side: with task adoption
//! (`high-availability.adoption.timeout: 30 s`, the default) and with its baseline, adoption
//! off (`0 s`: every failover restarts the job from its latest checkpoint); `--no-baseline`
//! runs only the first.
//!
//! Usage: `keel-bench failover [--rounds N] [--session-timeouts 2s,60s] [--faults kill9,sigterm]
//! [--no-baseline] [--keel PATH] [--workdir DIR] [--json]`

use std::path::PathBuf;
use std::time::{Duration, Instant};

use chaos_tests::probe::{agreed_leader, poll, workers_registered};
use chaos_tests::progress::{longest_gap, replayed, Sampler};
use chaos_tests::{config_yaml, http_get_json, KeelProcess, ZkEnsemble};
use serde_json::{json, Value};

const USAGE: &str = "usage: keel-bench failover [--rounds N] [--session-timeouts 2s,60s] [--faults kill9,sigterm] [--no-baseline] [--keel PATH] [--workdir DIR] [--json]";
/// Bound on every wait of a round.
const WAIT: Duration = Duration::from_secs(180);

struct Args {
    keel: PathBuf,
    workdir: PathBuf,
    rounds: usize,
    timeouts: Vec<String>,
    faults: Vec<Fault>,
    /// `high-availability.adoption.timeout` values to run (the default pairs adoption with
    /// its baseline, restart from the latest checkpoint).
    adoption: Vec<String>,
    json: bool,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Fault {
    Kill9,
    Sigterm,
}

impl Fault {
    fn name(self) -> &'static str {
        match self {
            Fault::Kill9 => "kill -9",
            Fault::Sigterm => "SIGTERM",
        }
    }
}

fn parse_args() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    match it.next().as_deref() {
        Some("failover") => {}
        Some("-h") | Some("--help") | None => {
            println!("{USAGE}");
            std::process::exit(0);
        }
        Some(other) => return Err(format!("unknown benchmark {other:?}; the one benchmark is `failover`\n{USAGE}")),
    }
    let mut keel: Option<PathBuf> = None;
    let mut workdir = None;
    let mut rounds = 3usize;
    let mut timeouts = vec!["2 s".to_string(), "60 s".to_string()];
    let mut faults = vec![Fault::Kill9, Fault::Sigterm];
    let mut json = false;
    let mut adoption = vec!["30 s".to_string(), "0 s".to_string()];
    while let Some(a) = it.next() {
        let mut value = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value\n{USAGE}"));
        match a.as_str() {
            "--keel" => keel = Some(value("--keel")?.into()),
            "--workdir" => workdir = Some(PathBuf::from(value("--workdir")?)),
            "--rounds" => {
                let v = value("--rounds")?;
                rounds = v
                    .parse()
                    .ok()
                    .filter(|n| (1..=50).contains(n))
                    .ok_or_else(|| format!("--rounds {v:?}: expected a whole number from 1 to 50"))?;
            }
            "--session-timeouts" => {
                timeouts = value("--session-timeouts")?
                    .split(',')
                    .map(|t| {
                        let t = t.trim();
                        let digits = t.trim_end_matches(|c: char| c.is_ascii_alphabetic() || c == ' ');
                        let unit = t[digits.len()..].trim();
                        match (digits.trim().parse::<u64>(), unit) {
                            (Ok(n), "s") if (1..=600).contains(&n) => Ok(format!("{n} s")),
                            (Ok(n), "ms") if (500..=600_000).contains(&n) => Ok(format!("{n} ms")),
                            _ => Err(format!(
                                "--session-timeouts: {t:?} is not a duration like 2s or 60s (1 s to 600 s)"
                            )),
                        }
                    })
                    .collect::<Result<_, _>>()?;
            }
            "--faults" => {
                faults = value("--faults")?
                    .split(',')
                    .map(|f| match f.trim() {
                        "kill9" => Ok(Fault::Kill9),
                        "sigterm" => Ok(Fault::Sigterm),
                        other => Err(format!("--faults: unknown fault {other:?}; expected kill9 or sigterm")),
                    })
                    .collect::<Result<_, _>>()?;
            }
            "--no-baseline" => adoption = vec!["30 s".to_string()],
            "--json" => json = true,
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    let keel = chaos_tests::probe::keel_binary(keel)?;
    let workdir = chaos_tests::probe::run_dir(workdir, ".keel-bench")?;
    Ok(Args { keel, workdir, rounds, timeouts, faults, adoption, json })
}

fn say(msg: &str) {
    eprintln!("[bench] {msg}");
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn job_get(p: &KeelProcess, path: &str) -> Option<Value> {
    let (code, v) = http_get_json(&p.rest_addr()?, path, Duration::from_millis(500)).ok()?;
    (code == 200).then_some(v)
}

fn latest_completed(p: &KeelProcess, job: &str) -> Option<u64> {
    job_get(p, &format!("/jobs/{job}/checkpoints"))?["latest"]["completed"]["id"].as_u64()
}

/// Runs every round for one session timeout on a fresh cluster.
fn run_timeout(args: &Args, timeout: &str, adoption: &str) -> Result<Vec<Value>, String> {
    let dir = args.workdir.join(format!("session-{}-adoption-{}", timeout.replace(' ', ""), adoption.replace(' ', "")));
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    say(&format!(
        "session timeout {timeout}, adoption timeout {adoption}: starting a 3-node ZooKeeper ensemble, 3 dispatchers, 2 workers (logs in {})",
        dir.display()
    ));
    let zk = ZkEnsemble::start(3).map_err(|e| format!("ZooKeeper: {e}"))?;
    let storage = format!("file://{}/storage", dir.display());
    let tmp = format!("{}/tmp", dir.display());
    let cfg = config_yaml(
        &zk.connect_string(),
        "bench",
        &[
            ("high-availability.zookeeper.client.session-timeout", timeout),
            ("high-availability.adoption.timeout", adoption),
            ("heartbeat.interval", "500 ms"),
            ("heartbeat.timeout", "5 s"),
            ("high-availability.storageDir", storage.as_str()),
            ("io.tmp.dirs", tmp.as_str()),
        ],
    );
    let (mut ds, ws) = chaos_tests::probe::start_dispatchers_and_workers(&args.keel, &cfg, &dir)?;
    let all = [0usize, 1, 2];
    let (li, _, _) = poll(WAIT, "a leader", || agreed_leader(&ds, &all))?;
    poll(WAIT, "both workers registered", || workers_registered(&ds[li], 2).then_some(()))?;

    let sink = dir.join("output");
    let spec = format!(
        "name: bench-failover\nparallelism: 2\ncheckpoint-interval: 1 s\nrestart-strategy: {{ type: fixed-delay, attempts: 1000, delay: 0 ms }}\npipeline:\n  - source: {{ type: sequence, count: 100000000000, keys: 64, rate: 10000 }}\n  - count: {{}}\n  - sink: {{ type: file, path: file://{} }}\n",
        sink.display()
    );
    let cfg_path = dir.join("config.yaml");
    let spec_path = dir.join("bench-job.yaml");
    std::fs::write(&cfg_path, &cfg).map_err(|e| e.to_string())?;
    std::fs::write(&spec_path, &spec).map_err(|e| e.to_string())?;
    let out = std::process::Command::new(&args.keel)
        .arg("--config")
        .arg(&cfg_path)
        .arg("run")
        .arg(&spec_path)
        .output()
        .map_err(|e| format!("keel run: {e}"))?;
    if !out.status.success() {
        return Err(format!("keel run failed: {}", String::from_utf8_lossy(&out.stderr)));
    }
    let job = String::from_utf8_lossy(&out.stdout).trim().to_string();
    say(&format!("job {job} submitted: 10,000 records/s over 2 subtasks, a checkpoint every second"));
    let metrics: Vec<String> = ws.iter().filter_map(|w| w.ready()["metrics"].as_str().map(str::to_string)).collect();
    if metrics.len() != ws.len() {
        return Err("a worker has no metrics address (metrics.port)".into());
    }
    let sampler = Sampler::start(metrics, job.clone());

    let mut rows = Vec::new();
    for fault in &args.faults {
        for round in 1..=args.rounds {
            // Settle: one leader, both workers, the job running, two checkpoints completed
            // since the last fault.
            let (li, lid, lepoch) = poll(WAIT, "a leader", || agreed_leader(&ds, &all))?;
            poll(WAIT, "both workers registered", || workers_registered(&ds[li], 2).then_some(()))?;
            let base = poll(WAIT, "a completed checkpoint", || latest_completed(&ds[li], &job))?;
            poll(WAIT, "two more completed checkpoints", || {
                latest_completed(&ds[li], &job).filter(|&c| c >= base + 2)
            })?;
            let before = latest_completed(&ds[li], &job).unwrap_or(base);
            let attempt_before = sampler.snapshot().iter().rev().find_map(|p| p.attempt).unwrap_or(0);

            let t0 = Instant::now();
            match fault {
                Fault::Kill9 => ds[li].kill9(),
                Fault::Sigterm => ds[li].terminate().map_err(|e| format!("SIGTERM: {e}"))?,
            }
            let rest: Vec<usize> = all.iter().copied().filter(|&i| i != li).collect();
            let (ni, nid, nepoch) = poll(WAIT, "a new leader", || agreed_leader(&ds, &rest))?;
            let new_leader = t0.elapsed();
            poll(WAIT, "workers registered with the new leader", || workers_registered(&ds[ni], 2).then_some(()))?;
            let workers = t0.elapsed();
            let checkpoint = poll(WAIT, "a checkpoint completed after the fault", || {
                latest_completed(&ds[ni], &job).filter(|&c| c > before).map(|_| t0.elapsed())
            })?;
            // Running again: the first record processed by a newer attempt (restarted). If no
            // newer attempt appears within two checkpoint intervals of the first checkpoint after
            // the fault, the old attempt's tasks were kept (adopted): the first record they
            // processed after the new leader acted.
            let newer = poll(checkpoint + Duration::from_secs(2), "a newer attempt to process records", || {
                sampler.snapshot().iter().find(|p| p.at > t0 && p.attempt > Some(attempt_before)).map(|p| p.at - t0)
            });
            let adopted = newer.is_err();
            let running = match newer {
                Ok(d) => d,
                Err(_) => poll(WAIT, "the job to process records again", || {
                    sampler.snapshot().iter().find(|p| p.at > t0 + new_leader && p.attempt.is_some()).map(|p| p.at - t0)
                })?,
            };
            // Let a second of steady processing follow, then measure the gap around the fault.
            std::thread::sleep(Duration::from_secs(1));
            let samples = sampler.snapshot();
            let gap = longest_gap(&samples, t0 - Duration::from_millis(500), t0 + running + Duration::from_secs(1))
                .unwrap_or_default();
            let attempt_after = samples.iter().rev().find_map(|p| p.attempt).unwrap_or(0);
            let row = json!({
                "session_timeout": timeout, "adoption_timeout": adoption, "fault": fault.name(), "round": round,
                "old_leader": lid, "old_epoch": lepoch, "new_leader": nid, "new_epoch": nepoch,
                "new_leader_ms": ms(new_leader), "workers_ms": ms(workers),
                "job_running_ms": ms(running), "processing_gap_ms": ms(gap),
                "first_checkpoint_ms": ms(checkpoint),
                "attempt_before": attempt_before, "attempt_after": attempt_after,
                "outcome": if adopted { "adopted" } else { "restarted" },
                "records_replayed": replayed(&sampler.sums(), attempt_before, attempt_after),
            });
            say(&format!(
                "T={timeout} adoption={adoption} {} round {round}: new leader {} ms, workers {} ms, job running {} ms, gap {} ms, first checkpoint {} ms, {}",
                fault.name(), ms(new_leader), ms(workers), ms(running), ms(gap), ms(checkpoint), row["outcome"].as_str().unwrap_or("")
            ));
            rows.push(row);
            ds[li].restart().map_err(|e| format!("restarting {lid}: {e}"))?;
        }
    }
    drop(sampler);
    drop(ws);
    drop(ds);
    drop(zk);
    Ok(rows)
}

fn print_table(rows: &[Value]) {
    eprintln!();
    eprintln!(
        "{:<8} {:<9} {:<8} {:>5} {:>11} {:>9} {:>12} {:>11} {:>11} {:>9} {:>10}",
        "T",
        "adoption",
        "fault",
        "round",
        "new leader",
        "workers",
        "job running",
        "proc. gap",
        "first chk",
        "replayed",
        "tasks"
    );
    for r in rows {
        let n = |k: &str| r[k].as_u64().unwrap_or(0);
        let t = |k: &str| r[k].as_str().unwrap_or("").to_string();
        eprintln!(
            "{:<8} {:<9} {:<8} {:>5} {:>9}ms {:>7}ms {:>10}ms {:>9}ms {:>9}ms {:>9} {:>10}",
            t("session_timeout"),
            t("adoption_timeout"),
            t("fault"),
            n("round"),
            n("new_leader_ms"),
            n("workers_ms"),
            n("job_running_ms"),
            n("processing_gap_ms"),
            n("first_checkpoint_ms"),
            r["records_replayed"].as_u64().map_or("-".to_string(), |v| v.to_string()),
            t("outcome")
        );
    }
    eprintln!(
        "(one job: 10,000 records/s over 2 subtasks, a checkpoint every 1 s; times from the fault; the gap is the longest \
         interval without a processed record, from the tasks' counters polled every ~10 ms; replayed: records read \
         again after a restart, from the same counters)"
    );
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("keel-bench: {e}");
            std::process::exit(2);
        }
    };
    let mut rows = Vec::new();
    for t in &args.timeouts {
        for adoption in &args.adoption {
            match run_timeout(&args, t, adoption) {
                Ok(r) => rows.extend(r),
                Err(e) => {
                    print_table(&rows);
                    eprintln!(
                        "keel-bench: session timeout {t}, adoption timeout {adoption}: {e} (logs under {})",
                        args.workdir.display()
                    );
                    std::process::exit(1);
                }
            }
        }
    }
    print_table(&rows);
    if args.json {
        println!("{}", json!({ "benchmark": "failover", "rounds": rows }));
    }
}
