//! `keel drill`: failover drills against a live cluster, with a timed report.
//!
//! The drill finds the leader through ZooKeeper, checks that the cluster can survive the
//! fault (a standby exists, every running job has a completed checkpoint) unless `--force`,
//! asks for confirmation unless `--yes`, asks the targeted process to fail through its admin
//! endpoint (`POST /admin/fault` on a dispatcher, the `Admin` gRPC call on a worker), then
//! watches the cluster and reports when a new leader acted, when the workers re-registered,
//! and when each job ran again and from which checkpoint.

use std::io::{BufRead, Write};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use keel_conf::Config;
use keel_ha::inspect::ClusterView;
use serde_json::{json, Value};

use crate::client::Rest;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// SIGKILL: the leader dies; a standby leads after the session timeout.
    Hard,
    /// SIGTERM: the leader resigns; a standby leads at once.
    Graceful,
    /// SIGSTOP past the session timeout, then SIGCONT: the old leader must find itself fenced.
    Pause,
}

#[derive(Debug, Clone)]
pub enum Target {
    KillLeader(Mode),
    IsolateLeader,
    KillWorker(String),
}

pub struct Options {
    pub yes: bool,
    pub force: bool,
    pub json: bool,
    pub timeout: Duration,
    pub pause: Option<Duration>,
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

struct JobBefore {
    id: String,
    attempt: u64,
    latest_checkpoint: Option<u64>,
    latest_completed_ms: Option<i64>,
}

async fn get(rest: &Rest, path: &str) -> Option<Value> {
    rest.call(reqwest::Method::GET, path, None).await.ok()
}

pub async fn run(config: &Config, target: Target, opts: Options) -> anyhow::Result<()> {
    let view: ClusterView = crate::inspect::read(config).await.context("reading the cluster from ZooKeeper")?;
    let leader = view.leader.clone().context("no leader: nothing to drill against (see keel status)")?;
    let token = config.rest_auth_token.clone();
    let api = Rest::new(&leader.rest_address, config)?;
    let standbys: Vec<_> = view.contenders.iter().filter(|c| c.contender_id != leader.leader_id).collect();
    let workers: Vec<Value> =
        get(&api, "/taskmanagers").await.and_then(|v| v["taskmanagers"].as_array().cloned()).unwrap_or_default();
    let mut jobs = Vec::new();
    for j in get(&api, "/jobs/overview").await.and_then(|v| v["jobs"].as_array().cloned()).unwrap_or_default() {
        if j["state"] != "RUNNING" {
            continue;
        }
        let id = j["jid"].as_str().unwrap_or_default().to_string();
        let cps = get(&api, &format!("/jobs/{id}/checkpoints")).await.unwrap_or(Value::Null);
        jobs.push(JobBefore {
            attempt: j["attempt"].as_u64().unwrap_or(0),
            latest_checkpoint: cps["latest"]["completed"]["id"].as_u64(),
            latest_completed_ms: cps["latest"]["completed"]["latest_ack_timestamp"].as_i64(),
            id,
        });
    }

    // The leader's admin endpoint must be on (`rest.admin.enabled`, off by default); a
    // dispatcher that does not say is asked anyway (its 403 says the same).
    if !matches!(target, Target::KillWorker(_)) {
        if let Some(v) = get(&api, "/ha/leader").await {
            if v["admin_enabled"] == false {
                bail!(
                    "the leader {} has its admin endpoint (POST /admin/fault) disabled, so it cannot be asked to \
                     fail: set rest.admin.enabled: true in the dispatchers' configuration and restart them; \
                     nothing was done",
                    leader.leader_id
                );
            }
        }
    }

    // Preconditions.
    let mut refusals = Vec::new();
    if matches!(target, Target::KillLeader(_) | Target::IsolateLeader) && standbys.is_empty() {
        refusals.push("the leader has no standby: nobody would take over".to_string());
    }
    for j in jobs.iter().filter(|j| j.latest_checkpoint.is_none()) {
        refusals.push(format!("job {} has no completed checkpoint: it would restart from scratch", j.id));
    }
    let victim_worker = match &target {
        Target::KillWorker(id) => {
            let w = workers.iter().find(|w| w["id"] == id.as_str()).with_context(|| {
                format!(
                    "worker {id} is not registered with the leader; registered: {}",
                    workers.iter().filter_map(|w| w["id"].as_str()).collect::<Vec<_>>().join(", ")
                )
            })?;
            if workers.len() < 2 {
                refusals.push(format!("worker {id} is the only worker: its tasks would have nowhere to go"));
            }
            Some((id.clone(), w["path"].as_str().unwrap_or_default().to_string()))
        }
        _ => None,
    };
    if !refusals.is_empty() && !opts.force {
        bail!("refusing to run the drill (pass --force to run it anyway):\n  - {}", refusals.join("\n  - "));
    }

    let session = config.zk_session_timeout.duration;
    let pause = opts.pause.unwrap_or(session * 2 + Duration::from_secs(1));
    let what = match &target {
        Target::KillLeader(Mode::Hard) => format!("kill -9 the leader {} (epoch {})", leader.leader_id, leader.epoch),
        Target::KillLeader(Mode::Graceful) => {
            format!("stop the leader {} (epoch {}) gracefully", leader.leader_id, leader.epoch)
        }
        Target::KillLeader(Mode::Pause) => {
            format!(
                "pause the leader {} (epoch {}) for {:?} (session timeout {:?})",
                leader.leader_id, leader.epoch, pause, session
            )
        }
        Target::IsolateLeader => {
            format!("make the leader {} (epoch {}) drop its ZooKeeper session", leader.leader_id, leader.epoch)
        }
        Target::KillWorker(id) => format!("kill -9 the worker {id}"),
    };
    if !opts.yes {
        eprint!(
            "About to {what} in cluster {} ({} standby(s), {} worker(s), {} running job(s)). Continue? [y/N] ",
            view.cluster_id,
            standbys.len(),
            workers.len(),
            jobs.len()
        );
        std::io::stderr().flush()?;
        let mut answer = String::new();
        std::io::stdin().lock().read_line(&mut answer)?;
        if !matches!(answer.trim(), "y" | "Y" | "yes" | "YES") {
            bail!("drill not confirmed; nothing was done");
        }
    }

    // The jobs' progress from the workers' own counters (their /metrics, about every 10 ms),
    // from half a second before the fault: the processing gap.
    let metrics: Vec<String> = workers.iter().filter_map(|w| w["metrics"].as_str().map(str::to_string)).collect();
    let samplers: Vec<(String, chaos_tests::progress::Sampler)> = if metrics.is_empty() {
        Vec::new()
    } else {
        jobs.iter()
            .map(|j| (j.id.clone(), chaos_tests::progress::Sampler::start(metrics.clone(), j.id.clone())))
            .collect()
    };
    if !samplers.is_empty() {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // The fault.
    let fault_at = now_ms();
    let start = Instant::now();
    match &target {
        Target::KillWorker(_) => {
            let (id, addr) = victim_worker.clone().expect("victim");
            let mut client = crate::internal_worker_client(config, &addr)
                .await
                .with_context(|| format!("cannot reach worker {id} at {addr}"))?;
            client
                .admin(keel_proto::v1::AdminRequest {
                    token: token.clone().unwrap_or_default(),
                    fault: "kill".into(),
                    pause_ms: 0,
                })
                .await
                .map_err(|s| anyhow::anyhow!("worker {id} refused the fault: {}", s.message()))?;
        }
        _ => {
            let body = match &target {
                Target::KillLeader(Mode::Hard) => json!({"fault": "kill"}),
                Target::KillLeader(Mode::Graceful) => json!({"fault": "terminate"}),
                Target::KillLeader(Mode::Pause) => json!({"fault": "pause", "pause_ms": pause.as_millis() as u64}),
                _ => json!({"fault": "isolate"}),
            };
            api.call(reqwest::Method::POST, "/admin/fault", Some(body.to_string())).await.map_err(|e| {
                if e.to_string().contains("HTTP 403") {
                    e.context(
                        "asking the leader to fail: its admin endpoint is disabled; set rest.admin.enabled: true \
                         in the dispatchers' configuration and restart them",
                    )
                } else {
                    e.context("asking the leader to fail")
                }
            })?;
        }
    }
    if !opts.json {
        eprintln!("[drill] fault injected: {what}");
    }

    // Watch.
    let deadline = start + opts.timeout;
    let leader_change = !matches!(target, Target::KillWorker(_));
    let contenders: Vec<String> = view.contenders.iter().map(|c| c.rest_address.clone()).collect();
    let mut new_leader: Option<(String, i64, String, i64)> = None; // id, epoch, rest, at
    if leader_change {
        while Instant::now() < deadline && new_leader.is_none() {
            for addr in &contenders {
                let Ok(r) = Rest::new(addr, config) else { continue };
                let Some(v) =
                    tokio::time::timeout(Duration::from_millis(300), get(&r, "/ha/leader")).await.ok().flatten()
                else {
                    continue;
                };
                if v["is_leader"] == true && v["own_epoch"].as_i64().is_some_and(|e| e > leader.epoch.0) {
                    new_leader = Some((
                        v["id"].as_str().unwrap_or_default().to_string(),
                        v["own_epoch"].as_i64().unwrap_or(0),
                        addr.clone(),
                        now_ms(),
                    ));
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    } else {
        new_leader = Some((leader.leader_id.clone(), leader.epoch.0, leader.rest_address.clone(), fault_at));
    }
    let Some((new_id, new_epoch, new_rest, leader_at)) = new_leader.clone() else {
        bail!("no new leader within {:?} (the drill's --timeout); the cluster needs attention", opts.timeout);
    };
    let new_api = Rest::new(&new_rest, config)?;
    let expect_workers: Vec<String> = workers
        .iter()
        .filter_map(|w| w["id"].as_str().map(str::to_string))
        .filter(|id| victim_worker.as_ref().is_none_or(|(v, _)| v != id))
        .collect();
    let mut workers_at = None;
    while Instant::now() < deadline {
        let registered: Vec<String> = get(&new_api, "/taskmanagers")
            .await
            .and_then(|v| v["taskmanagers"].as_array().cloned())
            .unwrap_or_default()
            .iter()
            .filter_map(|w| w["id"].as_str().map(str::to_string))
            .collect();
        let all = expect_workers.iter().all(|w| registered.contains(w));
        let gone = victim_worker.as_ref().is_none_or(|(v, _)| !registered.contains(v));
        if all && gone {
            workers_at = Some(now_ms());
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut job_reports = Vec::new();
    let mut last_running = fault_at;
    for j in &jobs {
        let mut running_at = None;
        let mut restored = None;
        let mut outcome = Value::Null;
        while Instant::now() < deadline {
            if let Some(v) = get(&new_api, &format!("/jobs/{}", j.id)).await {
                let all_running = v["subtasks"]
                    .as_array()
                    .is_some_and(|s| s.iter().all(|s| s["state"] == "RUNNING" || s["state"] == "FINISHED"));
                // The new leader's master shows attempt 0 until it has adopted the job's tasks
                // (the same attempt runs on) or restarted it (a newer attempt).
                // (A killed worker leaves the leader in place: only a newer attempt counts.)
                let attempt = v["attempt"].as_u64().unwrap_or(0);
                let moved_on = attempt != 0 && (attempt != j.attempt || victim_worker.is_none());
                if (v["state"] == "RUNNING" && all_running && moved_on) || v["state"] == "FINISHED" {
                    running_at = Some(now_ms());
                    restored = v["restored-from"].as_u64();
                    outcome = json!(if attempt == j.attempt && restored.is_none() { "adopted" } else { "restarted" });
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        last_running = last_running.max(running_at.unwrap_or(fault_at));
        job_reports.push(json!({
            "job": j.id,
            "running_again_ms": running_at.map(|t| t - fault_at),
            "outcome": outcome,
            "restored_from_checkpoint": restored,
            "latest_checkpoint_before_fault": j.latest_checkpoint,
            "input_since_restored_checkpoint_ms": j.latest_completed_ms.filter(|_| restored == j.latest_checkpoint).map(|t| fault_at - t),
            "records_reprocessed": Value::Null,
        }));
    }
    // A second of steady processing after the last job ran again, then the longest interval
    // around the fault in which no subtask of the job processed a record.
    if !samplers.is_empty() {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let until = start + Duration::from_millis(u64::try_from(last_running - fault_at).unwrap_or(0) + 1000);
        for r in &mut job_reports {
            let gap = samplers.iter().find(|(id, _)| r["job"] == id.as_str()).and_then(|(_, s)| {
                chaos_tests::progress::longest_gap(&s.snapshot(), start - Duration::from_millis(500), until)
            });
            r["processing_gap_ms"] = json!(gap.map(|g| g.as_millis() as u64));
        }
    }
    drop(samplers);
    let report = json!({
        "drill": what,
        "cluster_id": view.cluster_id,
        "fault_at_unix_ms": fault_at,
        "old_leader": leader.leader_id, "old_epoch": leader.epoch.0,
        "new_leader": new_id, "new_epoch": new_epoch,
        "new_leader_ms": leader_at - fault_at,
        "workers_reregistered_ms": workers_at.map(|t| t - fault_at),
        "jobs": job_reports,
    });
    if opts.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        let ms = |v: &Value| v.as_i64().map(|m| format!("+{m} ms")).unwrap_or_else(|| "not within the timeout".into());
        println!("drill             {what}");
        println!("fault at          {fault_at} (unix ms)");
        println!(
            "new leader at     {}   {} (epoch {}) -> {} (epoch {})",
            ms(&report["new_leader_ms"]),
            leader.leader_id,
            leader.epoch,
            new_id,
            new_epoch
        );
        println!("workers back at   {}   ({} worker(s))", ms(&report["workers_reregistered_ms"]), expect_workers.len());
        for j in report["jobs"].as_array().into_iter().flatten() {
            let gap = j["processing_gap_ms"]
                .as_u64()
                .map(|g| format!("{g} ms"))
                .unwrap_or_else(|| "not measured (no readable worker /metrics)".into());
            if j["outcome"] == "adopted" {
                println!(
                    "job {}  running again at {}, adopted by the new leader: its tasks kept running (nothing restored, nothing reprocessed); processing gap {gap}",
                    j["job"].as_str().unwrap_or(""),
                    ms(&j["running_again_ms"]),
                );
                continue;
            }
            println!(
                "job {}  running again at {}, restarted from checkpoint {} (latest before the fault: {}), input since that checkpoint: {}",
                j["job"].as_str().unwrap_or(""),
                ms(&j["running_again_ms"]),
                j["restored_from_checkpoint"],
                j["latest_checkpoint_before_fault"],
                j["input_since_restored_checkpoint_ms"].as_i64().map(|m| format!("{m} ms")).unwrap_or_else(|| "-".into()),
            );
            println!("      processing gap {gap}");
        }
        println!("(records reprocessed are not measured: tasks report no live record counts yet; the input window above bounds them)");
    }
    Ok(())
}
