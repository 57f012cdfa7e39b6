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

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chaos_tests::probe::{agreed_leader, poll, workers_registered};
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

/// One sample of every running subtask's `keel_task_records_in_total`, keyed by
/// (job, subtask, attempt).
type Counters = HashMap<(String, u32, u64), f64>;

/// Parses the task record counters out of a Prometheus text exposition.
fn parse_counters(text: &str, job: &str, into: &mut Counters) {
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("keel_task_records_in_total{") else { continue };
        let Some((labels, value)) = rest.split_once("} ") else { continue };
        let mut id = None;
        let mut subtask = None;
        let mut attempt = None;
        for kv in labels.split(',') {
            let Some((k, v)) = kv.split_once('=') else { continue };
            let v = v.trim_matches('"');
            match k {
                "job_id" => id = Some(v),
                "subtask" => subtask = v.parse().ok(),
                "attempt" => attempt = v.parse().ok(),
                _ => {}
            }
        }
        if let (Some(j), Some(s), Some(a), Ok(n)) = (id, subtask, attempt, value.trim().parse::<f64>()) {
            if j == job {
                into.insert((j.to_string(), s, a), n);
            }
        }
    }
}

/// A progress sample: when, and the highest attempt that processed a record since the
/// previous sample (`None`: nothing was processed in between).
#[derive(Clone, Copy, Debug)]
struct Progress {
    at: Instant,
    attempt: Option<u64>,
}

/// Turns successive counter samples into progress samples: a subtask progressed when its
/// counter for the same attempt grew. A series seen for the first time does not count (its
/// first value may be a restored count).
fn progress(prev: &Counters, now: &Counters, at: Instant) -> Progress {
    let attempt = now.iter().filter(|(k, v)| prev.get(*k).is_some_and(|p| *v > p)).map(|((_, _, a), _)| *a).max();
    Progress { at, attempt }
}

/// Per (attempt, subtask), the records it had read in one sample.
type Sums = Vec<((u64, u32), f64)>;

fn sums(now: &Counters) -> Sums {
    let mut v: Sums = now.iter().map(|((_, i, a), n)| ((*a, *i), *n)).collect();
    v.sort_by_key(|x| x.0);
    v
}

/// Records read twice because of a restart, summed over subtasks: what subtask `i` of attempt
/// `before` had read at most, minus what subtask `i` of attempt `after` started from (its
/// restored count: its first non-zero sample, which may include the records of its first
/// ~10 ms, so this errs low by those). 0 when the same attempt ran on (adopted); `None` when a
/// subtask of either attempt was never seen.
fn replayed(samples: &[Sums], before: u64, after: u64) -> Option<u64> {
    if before == after {
        return Some(0);
    }
    let subtasks: std::collections::BTreeSet<u32> =
        samples.iter().flatten().filter(|((a, _), _)| *a == after).map(|((_, i), _)| *i).collect();
    if subtasks.is_empty() {
        return None;
    }
    let mut total = 0.0;
    for i in subtasks {
        let get = |s: &Sums, a: u64| s.iter().find(|(k, _)| *k == (a, i)).map(|(_, v)| *v);
        let old = samples
            .iter()
            .filter_map(|s| get(s, before))
            .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))))?;
        // A new task publishes its (restored) counter with its first batch: before that it reads 0.
        let new = samples.iter().filter_map(|s| get(s, after)).find(|v| *v > 0.0)?;
        total += (old - new).max(0.0);
    }
    Some(total as u64)
}

/// The longest interval between two consecutive progress samples within `[from, to]`
/// (the ends of the window count as progress only if a sample there progressed).
fn longest_gap(samples: &[Progress], from: Instant, to: Instant) -> Option<Duration> {
    let moving: Vec<Instant> =
        samples.iter().filter(|s| s.at >= from && s.at <= to && s.attempt.is_some()).map(|s| s.at).collect();
    moving.windows(2).map(|w| w[1] - w[0]).max()
}

/// Polls every worker's `/metrics` about every 10 ms on its own thread until stopped.
struct Sampler {
    samples: Arc<Mutex<Vec<Progress>>>,
    sums: Arc<Mutex<Vec<Sums>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Sampler {
    fn start(metrics: Vec<String>, job: String) -> Sampler {
        let samples = Arc::new(Mutex::new(Vec::new()));
        let sums_all = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st, su) = (samples.clone(), stop.clone(), sums_all.clone());
        let thread = std::thread::spawn(move || {
            let mut prev = Counters::new();
            while !st.load(Ordering::Relaxed) {
                let mut now = Counters::new();
                for m in &metrics {
                    if let Ok((200, Value::String(text))) = http_get_json(m, "/metrics", Duration::from_millis(500)) {
                        parse_counters(&text, &job, &mut now);
                    }
                }
                let p = progress(&prev, &now, Instant::now());
                s.lock().expect("samples").push(p);
                su.lock().expect("sums").push(sums(&now));
                prev = now;
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        Sampler { samples, sums: sums_all, stop, thread: Some(thread) }
    }

    fn snapshot(&self) -> Vec<Progress> {
        self.samples.lock().expect("samples").clone()
    }

    fn sums(&self) -> Vec<Sums> {
        self.sums.lock().expect("sums").clone()
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_parsed_for_the_job_only() {
        let text = "# HELP x\nkeel_task_records_in_total{job_id=\"j1\",subtask=\"0\",attempt=\"3\"} 120\n\
                    keel_task_records_in_total{job_id=\"j2\",subtask=\"0\",attempt=\"1\"} 7\n\
                    keel_task_records_out_total{job_id=\"j1\",subtask=\"0\",attempt=\"3\"} 99\n";
        let mut c = Counters::new();
        parse_counters(text, "j1", &mut c);
        assert_eq!(c.len(), 1);
        assert_eq!(c[&("j1".to_string(), 0, 3)], 120.0);
    }

    #[test]
    fn progress_needs_growth_of_the_same_attempt_and_the_gap_is_the_longest_pause() {
        let t = Instant::now();
        let key = |a| ("j".to_string(), 0u32, a);
        let c = |pairs: &[(u64, f64)]| pairs.iter().map(|&(a, v)| (key(a), v)).collect::<Counters>();
        // Grew: progress at attempt 1. Unchanged: none. A new attempt's first value: none.
        assert_eq!(progress(&c(&[(1, 5.0)]), &c(&[(1, 9.0)]), t).attempt, Some(1));
        assert_eq!(progress(&c(&[(1, 9.0)]), &c(&[(1, 9.0)]), t).attempt, None);
        assert_eq!(progress(&c(&[(1, 9.0)]), &c(&[(2, 4.0)]), t).attempt, None);
        assert_eq!(progress(&c(&[(2, 4.0)]), &c(&[(2, 6.0)]), t).attempt, Some(2));
        let at = |ms: u64, moving: bool| Progress { at: t + Duration::from_millis(ms), attempt: moving.then_some(1) };
        let samples = [at(0, true), at(10, true), at(20, false), at(300, false), at(310, true), at(320, true)];
        assert_eq!(longest_gap(&samples, t, t + Duration::from_secs(1)), Some(Duration::from_millis(300)));
        assert_eq!(
            longest_gap(&samples, t + Duration::from_millis(305), t + Duration::from_secs(1)),
            Some(Duration::from_millis(10))
        );
    }

    #[test]
    fn replayed_records_are_what_the_old_attempt_read_beyond_the_new_ones_start() {
        // Two subtasks; the new attempt's subtask 1 shows up two samples after subtask 0 (a
        // sum over the attempt would count subtask 1's whole old count as replayed).
        let s = vec![
            vec![((3, 0), 100.0), ((3, 1), 90.0)],
            vec![((3, 0), 180.0), ((3, 1), 170.0)],
            vec![((3, 0), 180.0), ((3, 1), 170.0), ((4, 0), 0.0)],
            vec![((4, 0), 150.0)],
            vec![((4, 0), 170.0), ((4, 1), 160.0)],
        ];
        assert_eq!(replayed(&s, 3, 4), Some(30 + 10));
        assert_eq!(replayed(&s, 3, 3), Some(0), "the same attempt ran on");
        assert_eq!(replayed(&s, 3, 9), None);
    }
}
