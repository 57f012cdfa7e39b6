//! Chaos campaigns: a whole cluster under test, a seeded fault schedule, a workload, and a
//! verdict on every invariant.
//!
//! The cluster: a ZooKeeper ensemble (3 members), 3 dispatchers, 3 workers, optionally an
//! S3-compatible server holding the HA storage and checkpoints, and one [`ProxyMesh`] per
//! Keel process in front of ZooKeeper, so any process can be partitioned from ZooKeeper
//! without touching its other links. Every process writes its history (`--events`); the
//! harness writes the faults it injects to `harness.jsonl`.
//!
//! The workload: two exactly-once counting jobs that run through the faults and finish, and
//! short-lived jobs submitted and cancelled during faults.
//!
//! The schedule: derived from one seed ([`Rng`]), so a failing run replays with `--seed`.
//! Every fault is bounded in time and healed; after the last one the campaign waits for the
//! jobs to finish, then runs the checker and writes `report.json` / `report.html`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::checker::{self, FinalState, Verdict};
use crate::history::{EventKind, FaultLog, History};
use crate::process::{config_yaml, KeelProcess, Role};
use crate::proxy::{FaultProxy, ProxyMesh};
use crate::report::Report;
use crate::s3::S3Server;
use crate::util::http_get_json;
use crate::zk::ZkEnsemble;

/// Every fault the campaign can inject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nemesis {
    KillLeader,
    TermLeader,
    PauseLeader,
    KillStandby,
    PauseStandby,
    KillWorker,
    PauseWorker,
    PartitionWorker,
    KillZkFollower,
    KillZkLeader,
    KillZkMajority,
    PartitionLeaderFromZk,
    ZkLatency,
    StoragePause,
    StorageCut,
    StorageLatency,
    RestartCluster,
    CommandLatency,
    CorruptEntry,
    ZkLossDuringRecovery,
    StorageErrorDuringRecovery,
    TermWorker,
    KillLeaderAfterPointer,
    KillLeaderBeforePointer,
}

impl Nemesis {
    pub const ALL: &'static [Nemesis] = &[
        Nemesis::KillLeader,
        Nemesis::TermLeader,
        Nemesis::PauseLeader,
        Nemesis::KillStandby,
        Nemesis::PauseStandby,
        Nemesis::KillWorker,
        Nemesis::PauseWorker,
        Nemesis::PartitionWorker,
        Nemesis::KillZkFollower,
        Nemesis::KillZkLeader,
        Nemesis::KillZkMajority,
        Nemesis::PartitionLeaderFromZk,
        Nemesis::ZkLatency,
        Nemesis::StoragePause,
        Nemesis::StorageCut,
        Nemesis::StorageLatency,
        Nemesis::RestartCluster,
        Nemesis::CommandLatency,
        Nemesis::CorruptEntry,
        Nemesis::ZkLossDuringRecovery,
        Nemesis::StorageErrorDuringRecovery,
        Nemesis::TermWorker,
        Nemesis::KillLeaderAfterPointer,
        Nemesis::KillLeaderBeforePointer,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Nemesis::KillLeader => "kill-leader",
            Nemesis::TermLeader => "term-leader",
            Nemesis::PauseLeader => "pause-leader",
            Nemesis::KillStandby => "kill-standby",
            Nemesis::PauseStandby => "pause-standby",
            Nemesis::KillWorker => "kill-worker",
            Nemesis::PauseWorker => "pause-worker",
            Nemesis::PartitionWorker => "partition-worker",
            Nemesis::KillZkFollower => "kill-zk-follower",
            Nemesis::KillZkLeader => "kill-zk-leader",
            Nemesis::KillZkMajority => "kill-zk-majority",
            Nemesis::PartitionLeaderFromZk => "partition-leader-zk",
            Nemesis::ZkLatency => "zk-latency",
            Nemesis::StoragePause => "storage-pause",
            Nemesis::StorageCut => "storage-cut",
            Nemesis::StorageLatency => "storage-latency",
            Nemesis::RestartCluster => "restart-cluster",
            Nemesis::CommandLatency => "command-latency",
            Nemesis::CorruptEntry => "corrupt-entry",
            Nemesis::ZkLossDuringRecovery => "zk-loss-during-recovery",
            Nemesis::StorageErrorDuringRecovery => "storage-error-during-recovery",
            Nemesis::TermWorker => "term-worker",
            Nemesis::KillLeaderAfterPointer => "kill-leader-after-pointer",
            Nemesis::KillLeaderBeforePointer => "kill-leader-before-pointer",
        }
    }

    /// Parses a comma-separated list of names (`all` for every nemesis).
    pub fn parse_list(text: &str) -> Result<Vec<Nemesis>, String> {
        let mut out = Vec::new();
        for name in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            if name == "all" {
                out.extend_from_slice(Nemesis::ALL);
                continue;
            }
            match Nemesis::ALL.iter().find(|n| n.name() == name) {
                Some(n) => out.push(*n),
                None => {
                    let known: Vec<&str> = Nemesis::ALL.iter().map(|n| n.name()).collect();
                    return Err(format!("unknown nemesis {name:?}; expected all or any of: {}", known.join(", ")));
                }
            }
        }
        if out.is_empty() {
            return Err("no nemesis given; expected all or a comma-separated list".into());
        }
        Ok(out)
    }
}

/// A job-layer safety mechanism a campaign can run without (test-only switches), to show the
/// checker catches its absence. The campaign then provokes the interleaving the mechanism
/// exists for, deterministically, before its random faults (see [`run_broken`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Broken {
    /// `KEEL_TEST_DISABLE_PER_JOB_RECOVERY`: a garbage `job-results/<other>` znode is planted
    /// and the leader stopped; the new leader's recovery aborts on it and recovers nothing.
    PerJobRecovery,
    /// `KEEL_TEST_DISABLE_DURABLE_CANCEL`: a job is cancelled (answered 2xx) and the leader
    /// stopped; the next leader runs the cancelled job again.
    DurableCancel,
    /// `KEEL_TEST_DISABLE_ATTEMPT_FENCE`: a Deploy of an older attempt is held back in the
    /// worker's command link and delivered after a newer attempt started there.
    AttemptFence,
}

impl Broken {
    /// The test-only switch that turns the mechanism off.
    pub fn env(self) -> &'static str {
        match self {
            Broken::PerJobRecovery => "KEEL_TEST_DISABLE_PER_JOB_RECOVERY",
            Broken::DurableCancel => "KEEL_TEST_DISABLE_DURABLE_CANCEL",
            Broken::AttemptFence => "KEEL_TEST_DISABLE_ATTEMPT_FENCE",
        }
    }
}

/// A small deterministic PRNG (xorshift64*): the whole schedule derives from the seed.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo + 1)
    }

    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[(self.next_u64() % items.len() as u64) as usize]
    }
}

#[derive(Debug, Clone)]
pub struct CampaignOptions {
    pub keel: PathBuf,
    pub seed: u64,
    /// How long faults are injected; the run then waits (bounded) for the jobs to finish.
    pub duration: Duration,
    pub nemeses: Vec<Nemesis>,
    pub workdir: PathBuf,
    /// Keep HA storage and checkpoints on an S3-compatible server (needed by `storage-pause`).
    pub s3: bool,
    /// Test-only: workers accept stale epochs (`KEEL_TEST_DISABLE_EPOCH_CHECK=1`), and the
    /// campaign sends a stale command after the first leader change, so the checker must
    /// report a violation.
    pub break_fencing: bool,
    /// Print a progress line to stderr.
    pub progress: bool,
}

/// The outcome of a campaign.
pub struct CampaignResult {
    pub report: Report,
    pub report_json: PathBuf,
    pub report_html: PathBuf,
    pub faults: usize,
    /// With `break_fencing`: the stale command the campaign delivered (`heartbeat`, its epoch).
    pub stale_command: Option<(String, i64)>,
    /// With [`run_broken`] or [`run_provoked`]: what the campaign provoked and saw happen,
    /// one line per interleaving it could provoke (one it could not makes the run
    /// INCONCLUSIVE).
    pub provoked: Vec<String>,
}

struct Member {
    name: String,
    proc: KeelProcess,
    /// This process's links to every ZooKeeper member.
    mesh: ProxyMesh,
    /// Workers: the link leaders use to reach it (its advertised rpc address).
    rpc_proxy: Option<FaultProxy>,
}

struct Cluster {
    opts: CampaignOptions,
    zk: ZkEnsemble,
    s3: Option<S3Server>,
    /// Every process reaches S3 through this proxy.
    s3_proxy: Option<FaultProxy>,
    dispatchers: Vec<Member>,
    workers: Vec<Member>,
    client_cfg: PathBuf,
    faults: FaultLog,
    sinks: PathBuf,
    /// The mechanism turned off in every Keel process, if any.
    broken: Option<Broken>,
    /// Bounded waits for recovery (shorter when a mechanism is off: the run fails anyway).
    patience: Duration,
    /// The counting jobs, once submitted (faults wait for their recovery).
    watch_jobs: Vec<String>,
    /// Garbage znodes planted by `corrupt-entry` and not removed yet.
    planted: Vec<String>,
    /// The short-lived (churn) job running now, if any: `corrupt-entry` may corrupt its
    /// checkpoint metadata (it is not checked for exactly-once output).
    churn_job: Option<String>,
    /// Checkpoints whose metadata `corrupt-entry` bit-flipped: `(job, checkpoint)`. A restore
    /// falling back past one of them is expected and reported as planted, not as a violation.
    planted_checkpoints: Vec<(String, u64)>,
}

/// The ZooKeeper namespace of the campaign's cluster (`high-availability.cluster-id: chaos`).
const ZK_ROOT: &str = "/keel/chaos";

const SESSION_MS: u64 = 2000;

fn base_extra(
    opts: &CampaignOptions,
    s3: Option<(&S3Server, &FaultProxy)>,
    provoke: &[Broken],
) -> Vec<(String, String)> {
    let mut extra: Vec<(String, String)> = vec![
        ("state.backend".into(), "rocksdb".into()),
        ("state.backend.incremental".into(), "true".into()),
        ("state.checkpoints.num-retained".into(), "2".into()),
        ("execution.checkpointing.timeout".into(), "10 s".into()),
        ("high-availability.recovery.worker-wait".into(), "5 s".into()),
        ("io.tmp.dirs".into(), opts.workdir.join("tmp").display().to_string()),
    ];
    match s3 {
        Some((_, proxy)) => {
            extra.push(("high-availability.storageDir".into(), "s3://keel/chaos".into()));
            extra.push(("s3.endpoint".into(), format!("http://{}", proxy.addr())));
            extra.push(("s3.access-key".into(), S3Server::ACCESS_KEY.into()));
            extra.push(("s3.secret-key".into(), S3Server::SECRET_KEY.into()));
            extra.push(("s3.region".into(), S3Server::REGION.into()));
            extra.push(("s3.path.style.access".into(), "true".into()));
        }
        None => {
            extra.push(("high-availability.storageDir".into(), format!("file://{}/storage", opts.workdir.display())))
        }
    }
    if provoke.contains(&Broken::AttemptFence) {
        // Command links are held for a few seconds; workers must not give up on the leader.
        extra.push(("heartbeat.timeout".into(), "10 s".into()));
    }
    extra
}

impl Cluster {
    fn start(opts: &CampaignOptions, broken: Option<Broken>, provoke: &[Broken]) -> Result<Cluster, String> {
        std::fs::create_dir_all(&opts.workdir).map_err(|e| format!("{}: {e}", opts.workdir.display()))?;
        let zk = ZkEnsemble::start(3).map_err(|e| format!("ZooKeeper: {e}"))?;
        let s3 = if opts.s3 {
            let s = S3Server::start().map_err(|e| format!("S3 server: {e}"))?;
            s.create_bucket("keel").map_err(|e| format!("S3 bucket: {e}"))?;
            Some(s)
        } else {
            None
        };
        let s3_proxy = match &s3 {
            Some(s) => {
                let upstream = format!("127.0.0.1:{}", s.port()).parse().map_err(|e| format!("{e}"))?;
                Some(FaultProxy::start(upstream).map_err(|e| format!("S3 proxy: {e}"))?)
            }
            None => None,
        };
        let extra = base_extra(opts, s3.as_ref().zip(s3_proxy.as_ref()), provoke);
        let extra_ref: Vec<(&str, &str)> = extra.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let client_cfg = opts.workdir.join("client.yaml");
        std::fs::write(&client_cfg, config_yaml(&zk.connect_string(), "chaos", &extra_ref))
            .map_err(|e| e.to_string())?;
        let faults = FaultLog::create(&opts.workdir.join("harness.jsonl")).map_err(|e| e.to_string())?;
        let mut c = Cluster {
            opts: opts.clone(),
            zk,
            s3,
            s3_proxy,
            dispatchers: vec![],
            workers: vec![],
            client_cfg,
            faults,
            sinks: opts.workdir.join("sinks"),
            broken,
            patience: Duration::from_secs(if broken.is_some() { 20 } else { 60 }),
            watch_jobs: vec![],
            planted: vec![],
            churn_job: None,
            planted_checkpoints: vec![],
        };
        for i in 1..=3 {
            let m = c.spawn(Role::Dispatcher, &format!("d{i}"), &extra)?;
            c.dispatchers.push(m);
        }
        for i in 1..=3 {
            let m = c.spawn(Role::Worker, &format!("w{i}"), &extra)?;
            c.workers.push(m);
        }
        Ok(c)
    }

    fn spawn(&self, role: Role, name: &str, extra: &[(String, String)]) -> Result<Member, String> {
        let mesh = ProxyMesh::for_zk(&self.zk).map_err(|e| format!("proxy for {name}: {e}"))?;
        let mut extra = extra.to_vec();
        // A worker listens on a fixed port behind a proxy and advertises the proxy, so the
        // leader's commands to it can be cut.
        let rpc_proxy = if role == Role::Worker {
            let port = crate::ports::free_port();
            let proxy = FaultProxy::start(format!("127.0.0.1:{port}").parse().map_err(|e| format!("{e}"))?)
                .map_err(|e| format!("rpc proxy for {name}: {e}"))?;
            extra.push(("rpc.port".into(), port.to_string()));
            extra.push(("rpc.advertised-address".into(), proxy.addr().to_string()));
            // A fixed /metrics port, kept across restarts, for the campaign's progress sampler.
            extra.push(("metrics.reporter.prom.port".into(), crate::ports::free_port().to_string()));
            Some(proxy)
        } else {
            None
        };
        let extra_ref: Vec<(&str, &str)> = extra.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let cfg = config_yaml(&mesh.connect_string(), "chaos", &extra_ref);
        let events = self.opts.workdir.join(format!("{name}.jsonl")).display().to_string();
        let mut args = vec!["--events".to_string(), events];
        match role {
            Role::Dispatcher => args.extend(["--id".to_string(), name.to_string()]),
            Role::Worker => args.extend([
                "-D".to_string(),
                format!("taskmanager.resource-id={name}"),
                "-D".to_string(),
                "taskmanager.numberOfTaskSlots=3".to_string(),
            ]),
        }
        let mut spec =
            crate::process::KeelSpec::new(&self.opts.keel, role, &cfg, &self.opts.workdir, name).with_args(args);
        if self.opts.break_fencing && role == Role::Worker {
            spec = spec.with_env("KEEL_TEST_DISABLE_EPOCH_CHECK", "1");
        }
        if let Some(b) = self.broken {
            spec = spec.with_env(b.env(), "1");
        }
        if role == Role::Dispatcher {
            // kill-leader-after-pointer's trigger (test-only fault injection).
            spec = spec.with_env("KEEL_TEST_EXIT_AFTER_POINTER_FILE", self.exit_trigger(name).display().to_string());
            spec = spec
                .with_env("KEEL_TEST_EXIT_BEFORE_POINTER_FILE", self.exit_before_trigger(name).display().to_string());
        }
        let proc = spec.spawn().map_err(|e| format!("{name}: {e}"))?;
        Ok(Member { name: name.to_string(), proc, mesh, rpc_proxy })
    }

    /// The trigger file of `kill-leader-after-pointer` for dispatcher `name`.
    fn exit_trigger(&self, name: &str) -> PathBuf {
        self.opts.workdir.join(format!("{name}.exit-after-pointer"))
    }

    /// The trigger file of `kill-leader-before-pointer` for dispatcher `name`.
    fn exit_before_trigger(&self, name: &str) -> PathBuf {
        self.opts.workdir.join(format!("{name}.exit-before-pointer"))
    }

    fn ha_leader(&self, i: usize) -> Option<Value> {
        let addr = self.dispatchers[i].proc.rest_addr()?;
        match http_get_json(&addr, "/ha/leader", Duration::from_millis(300)) {
            Ok((200, v)) => Some(v),
            _ => None,
        }
    }

    /// Index, id and epoch of the one dispatcher acting as leader.
    fn leader(&self) -> Option<(usize, String, i64)> {
        let acting: Vec<(usize, i64)> = (0..self.dispatchers.len())
            .filter_map(|i| {
                let v = self.ha_leader(i)?;
                (v["is_leader"] == true).then(|| (i, v["own_epoch"].as_i64().unwrap_or(0)))
            })
            .collect();
        match acting.as_slice() {
            [(i, e)] => Some((*i, self.dispatchers[*i].name.clone(), *e)),
            _ => None,
        }
    }

    fn leader_rest(&self) -> Option<String> {
        self.leader().and_then(|(i, _, _)| self.dispatchers[i].proc.rest_addr())
    }

    fn keel(&self, args: &[&str]) -> std::process::Output {
        std::process::Command::new(&self.opts.keel)
            .arg("--config")
            .arg(&self.client_cfg)
            .args(args)
            .output()
            .expect("run keel")
    }

    fn job_state(&self, id: &str) -> Option<String> {
        let rest = self.leader_rest()?;
        match http_get_json(&rest, &format!("/jobs/{id}"), Duration::from_secs(2)) {
            Ok((200, v)) => v["state"].as_str().map(str::to_string),
            _ => None,
        }
    }

    fn submit(&self, spec: &str) -> Option<String> {
        let path = self.opts.workdir.join(format!("spec-{}.yaml", crate::ports::free_port()));
        std::fs::write(&path, spec).ok()?;
        let out = self.keel(&["run", path.to_str()?]);
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// Waits (bounded) until a leader acts and every listed job is RUNNING or FINISHED.
    fn wait_recovered(&self, jobs: &[String], timeout: Duration) -> bool {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if self.leader().is_some()
                && jobs.iter().all(|j| matches!(self.job_state(j).as_deref(), Some("RUNNING" | "FINISHED")))
            {
                return true;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        false
    }

    /// Waits (bounded, polling every 50 ms) for a leader other than dispatcher `old`.
    fn wait_new_leader(&self, old: usize, timeout: Duration) -> Option<(usize, String, i64)> {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if let Some(l) = self.leader().filter(|(i, _, _)| *i != old) {
                return Some(l);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// Removes planted garbage znodes; returns the ones that could not be removed.
    fn remove_planted(&mut self) -> Vec<String> {
        let planted = std::mem::take(&mut self.planted);
        for z in planted {
            if let Err(e) = self.zk.cli(&["delete", &z], Duration::from_secs(30)) {
                self.planted.push(format!("{z} ({e})"));
            }
        }
        self.planted.clone()
    }

    fn heal_all(&mut self) {
        if let Some(p) = &self.s3_proxy {
            p.heal();
        }
        for m in self.dispatchers.iter_mut().chain(self.workers.iter_mut()) {
            m.mesh.heal();
            if let Some(p) = &m.rpc_proxy {
                p.heal();
            }
            if !m.proc.is_running() {
                let _ = m.proc.restart();
            } else {
                let _ = m.proc.cont();
            }
        }
        for i in 0..self.zk.len() {
            if !self.zk.is_running(i) {
                let _ = self.zk.restart(i);
            } else if self.zk.is_paused(i) {
                let _ = self.zk.resume(i);
            }
        }
        if let Some(s3) = self.s3.as_mut() {
            let _ = s3.resume();
        }
    }

    /// Injects one fault, holds it, heals it. Returns a description.
    fn inject(&mut self, n: Nemesis, rng: &mut Rng) -> Result<String, String> {
        let hold = Duration::from_millis(rng.range(1000, 3000));
        let long_hold = Duration::from_millis(SESSION_MS * 2 + rng.range(0, 1000));
        let leader = self.leader().map(|(i, _, _)| i);
        let standby = leader.map(|l| (l + 1 + rng.range(0, 1) as usize) % self.dispatchers.len());
        match n {
            Nemesis::KillLeader
            | Nemesis::TermLeader
            | Nemesis::PauseLeader
            | Nemesis::KillStandby
            | Nemesis::PauseStandby => {
                let target = if matches!(n, Nemesis::KillStandby | Nemesis::PauseStandby) { standby } else { leader };
                let Some(t) = target else { return Ok(format!("{}: skipped (no leader)", n.name())) };
                let name = self.dispatchers[t].name.clone();
                let id = self.faults.start(n.name(), &name).map_err(|e| e.to_string())?;
                let p = &mut self.dispatchers[t].proc;
                match n {
                    Nemesis::KillLeader | Nemesis::KillStandby => {
                        p.kill9();
                        std::thread::sleep(hold);
                        p.restart().map_err(|e| e.to_string())?;
                    }
                    Nemesis::TermLeader => {
                        p.terminate().map_err(|e| e.to_string())?;
                        let _ = p.wait_exit(Duration::from_secs(15));
                        std::thread::sleep(hold);
                        p.restart().map_err(|e| e.to_string())?;
                    }
                    _ => {
                        p.stop().map_err(|e| e.to_string())?;
                        std::thread::sleep(long_hold);
                        p.cont().map_err(|e| e.to_string())?;
                    }
                }
                self.faults.end(id).map_err(|e| e.to_string())?;
                Ok(format!("{} {name}", n.name()))
            }
            Nemesis::KillLeaderAfterPointer | Nemesis::KillLeaderBeforePointer => {
                // The leader exits right after its next checkpoint pointer write, before it
                // tells the tasks (the new leader must announce it), or right before it, after
                // every acknowledgement (the new leader must abort it).
                let Some(t) = leader else { return Ok(format!("{}: skipped (no leader)", n.name())) };
                let name = self.dispatchers[t].name.clone();
                let after = n == Nemesis::KillLeaderAfterPointer;
                let trigger = if after { self.exit_trigger(&name) } else { self.exit_before_trigger(&name) };
                let id = self.faults.start(n.name(), &name).map_err(|e| e.to_string())?;
                std::fs::write(&trigger, b"").map_err(|e| format!("{}: {e}", trigger.display()))?;
                let deadline = Instant::now() + Duration::from_secs(10);
                let p = &mut self.dispatchers[t].proc;
                while p.is_running() && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(20));
                }
                let fired = !p.is_running();
                let _ = std::fs::remove_file(&trigger);
                if fired {
                    std::thread::sleep(hold);
                    p.restart().map_err(|e| e.to_string())?;
                }
                self.faults.end(id).map_err(|e| e.to_string())?;
                Ok(if fired {
                    let when = if after { "right after" } else { "right before" };
                    format!("{} {name} (exited {when} a checkpoint pointer write)", n.name())
                } else {
                    format!("{}: skipped ({name} completed no checkpoint within 10 s)", n.name())
                })
            }
            Nemesis::KillWorker | Nemesis::PauseWorker => {
                let w = rng.range(0, self.workers.len() as u64 - 1) as usize;
                let name = self.workers[w].name.clone();
                let id = self.faults.start(n.name(), &name).map_err(|e| e.to_string())?;
                let p = &mut self.workers[w].proc;
                if n == Nemesis::KillWorker {
                    p.kill9();
                    std::thread::sleep(hold);
                    p.restart().map_err(|e| e.to_string())?;
                } else {
                    p.stop().map_err(|e| e.to_string())?;
                    std::thread::sleep(long_hold);
                    p.cont().map_err(|e| e.to_string())?;
                }
                self.faults.end(id).map_err(|e| e.to_string())?;
                Ok(format!("{} {name}", n.name()))
            }
            Nemesis::PartitionWorker => {
                let w = rng.range(0, self.workers.len() as u64 - 1) as usize;
                let name = self.workers[w].name.clone();
                let id = self.faults.start(n.name(), &name).map_err(|e| e.to_string())?;
                // Cut from the leader's commands and from ZooKeeper; storage stays reachable.
                if let Some(p) = &self.workers[w].rpc_proxy {
                    p.cut();
                }
                self.workers[w].mesh.cut();
                std::thread::sleep(long_hold);
                if let Some(p) = &self.workers[w].rpc_proxy {
                    p.heal();
                }
                self.workers[w].mesh.heal();
                self.faults.end(id).map_err(|e| e.to_string())?;
                Ok(format!("{} {name}", n.name()))
            }
            Nemesis::StorageCut | Nemesis::StorageLatency => {
                let Some(proxy) = self.s3_proxy.as_ref() else {
                    return Ok(format!("{}: skipped (no S3 storage; run with --s3)", n.name()));
                };
                let what = if n == Nemesis::StorageCut {
                    proxy.cut();
                    "s3 (connections cut)".to_string()
                } else {
                    let ms = rng.range(100, 400);
                    proxy.latency(Duration::from_millis(ms));
                    format!("s3 ({ms} ms)")
                };
                let id = self.faults.start(n.name(), &what).map_err(|e| e.to_string())?;
                std::thread::sleep(hold * 2);
                proxy.heal();
                self.faults.end(id).map_err(|e| e.to_string())?;
                Ok(format!("{} {what}", n.name()))
            }
            Nemesis::KillZkFollower | Nemesis::KillZkLeader | Nemesis::KillZkMajority => {
                let Some(zl) = self.zk.leader_index() else {
                    return Ok(format!("{}: skipped (no ZooKeeper leader)", n.name()));
                };
                let victims: Vec<usize> = match n {
                    Nemesis::KillZkLeader => vec![zl],
                    Nemesis::KillZkFollower => vec![(zl + 1 + rng.range(0, 1) as usize) % 3],
                    _ => vec![zl, (zl + 1) % 3],
                };
                let target = victims.iter().map(|v| format!("zk{}", v + 1)).collect::<Vec<_>>().join("+");
                let id = self.faults.start(n.name(), &target).map_err(|e| e.to_string())?;
                for &v in &victims {
                    self.zk.kill(v);
                }
                std::thread::sleep(if n == Nemesis::KillZkMajority { long_hold } else { hold });
                for &v in &victims {
                    self.zk.restart(v).map_err(|e| e.to_string())?;
                }
                let _ = self.zk.wait_serving(Duration::from_secs(30));
                self.faults.end(id).map_err(|e| e.to_string())?;
                Ok(format!("{} {target}", n.name()))
            }
            Nemesis::PartitionLeaderFromZk => {
                let Some(l) = leader else { return Ok(format!("{}: skipped (no leader)", n.name())) };
                let name = self.dispatchers[l].name.clone();
                let id = self.faults.start(n.name(), &name).map_err(|e| e.to_string())?;
                self.dispatchers[l].mesh.blackhole();
                std::thread::sleep(long_hold + Duration::from_millis(SESSION_MS / 2));
                self.dispatchers[l].mesh.heal();
                self.faults.end(id).map_err(|e| e.to_string())?;
                Ok(format!("{} {name}", n.name()))
            }
            Nemesis::ZkLatency => {
                let ms = rng.range(20, 120);
                let id = self.faults.start(n.name(), &format!("all ({ms} ms)")).map_err(|e| e.to_string())?;
                for m in self.dispatchers.iter().chain(self.workers.iter()) {
                    m.mesh.latency(Duration::from_millis(ms));
                }
                std::thread::sleep(hold * 2);
                for m in self.dispatchers.iter().chain(self.workers.iter()) {
                    m.mesh.heal();
                }
                self.faults.end(id).map_err(|e| e.to_string())?;
                Ok(format!("{} {ms} ms", n.name()))
            }
            Nemesis::StoragePause => {
                let Some(s3) = self.s3.as_mut() else {
                    return Ok(format!("{}: skipped (no S3 storage; run with --s3)", n.name()));
                };
                let id = self.faults.start(n.name(), "s3").map_err(|e| e.to_string())?;
                s3.pause().map_err(|e| e.to_string())?;
                std::thread::sleep(hold * 2);
                s3.resume().map_err(|e| e.to_string())?;
                self.faults.end(id).map_err(|e| e.to_string())?;
                Ok(n.name().to_string())
            }
            Nemesis::TermWorker => {
                // Graceful: the worker deregisters, so its jobs move elsewhere at once.
                let w = rng.range(0, self.workers.len() as u64 - 1) as usize;
                let name = self.workers[w].name.clone();
                let id = self.faults.start(n.name(), &name).map_err(|e| e.to_string())?;
                let p = &mut self.workers[w].proc;
                p.terminate().map_err(|e| e.to_string())?;
                let _ = p.wait_exit(Duration::from_secs(15));
                std::thread::sleep(hold);
                p.restart().map_err(|e| e.to_string())?;
                self.faults.end(id).map_err(|e| e.to_string())?;
                Ok(format!("{} {name}", n.name()))
            }
            Nemesis::CommandLatency => {
                // One worker's command link (leader → worker): each connection gets its own
                // delay of 0.5-5 s; then the open connections are orphaned, so the leader
                // reconnects (new delay) while what it already sent still arrives late:
                // commands sent later on the new connection can overtake older ones.
                let w = rng.range(0, self.workers.len() as u64 - 1) as usize;
                let name = self.workers[w].name.clone();
                let Some(proxy) = self.workers[w].rpc_proxy.as_ref() else {
                    return Ok(format!("{}: skipped (no command proxy)", n.name()));
                };
                let seed = rng.next_u64();
                let delays =
                    proxy.latency_per_connection(Duration::from_millis(500), Duration::from_millis(5000), seed);
                let what = format!(
                    "{name} (open connections delayed {:?}, new ones 0.5-5 s each)",
                    delays.iter().map(|d| d.as_millis()).collect::<Vec<_>>()
                );
                let id = self.faults.start(n.name(), &what).map_err(|e| e.to_string())?;
                std::thread::sleep(hold + Duration::from_secs(2));
                let late_before = proxy.late_bytes_delivered();
                let orphaned = proxy.orphan_connections();
                std::thread::sleep(hold);
                proxy.heal();
                self.faults.end(id).map_err(|e| e.to_string())?;
                let late = proxy.late_bytes_delivered() - late_before;
                Ok(format!(
                    "{} {what}; {orphaned} connection(s) orphaned, {late} bytes of their commands delivered after the \
                     leader reconnected",
                    n.name()
                ))
            }
            Nemesis::CorruptEntry => {
                // A garbage job-results/<other> znode right before a leader failover: the new
                // leader must still recover every job. Removed once the jobs run again.
                let Some(l) = leader else { return Ok(format!("{}: skipped (no leader)", n.name())) };
                let name = self.dispatchers[l].name.clone();
                let znode = format!("{ZK_ROOT}/job-results/plantedresult{}", rng.range(1000, 9999));
                self.zk
                    .cli(&["create", &znode, "garbage-not-a-job-result-pointer"], Duration::from_secs(30))
                    .map_err(|e| format!("planting {znode}: {e}"))?;
                self.planted.push(znode.clone());
                // With file:// storage and a churn job running: also bit-flip the churn job's
                // newest checkpoint metadata, with the leader frozen (so no newer checkpoint
                // completes), then kill it; the next leader must fall back to an older one
                // for that job and recover the others untouched.
                let flip = match (&self.churn_job, self.opts.s3) {
                    (Some(job), false) => Some(job.clone()),
                    _ => None,
                };
                let mut what = format!("{name} stopped after planting {znode}");
                if let Some(job) = flip {
                    self.dispatchers[l].proc.stop().map_err(|e| e.to_string())?;
                    match flip_newest_metadata(&self.opts.workdir.join("storage/checkpoints").join(&job)) {
                        Some((cp, path)) => {
                            self.planted_checkpoints.push((job.clone(), cp));
                            what = format!("{name} killed after planting {znode} and bit-flipping {}", path.display());
                        }
                        None => {
                            what = format!("{name} killed after planting {znode} (job {job} had no checkpoint to flip)")
                        }
                    }
                    self.dispatchers[l].proc.kill9();
                }
                let id = self.faults.start(n.name(), &what).map_err(|e| e.to_string())?;
                let p = &mut self.dispatchers[l].proc;
                if p.is_running() {
                    p.terminate().map_err(|e| e.to_string())?;
                    let _ = p.wait_exit(Duration::from_secs(15));
                }
                let recovered = self.wait_new_leader(l, Duration::from_secs(30)).is_some()
                    && self.wait_recovered(&self.watch_jobs, self.patience);
                self.dispatchers[l].proc.restart().map_err(|e| e.to_string())?;
                let left = self.remove_planted();
                self.faults.end(id).map_err(|e| e.to_string())?;
                if !left.is_empty() {
                    return Err(format!("planted entries could not be removed: {left:?}"));
                }
                Ok(format!(
                    "{} {what}; jobs {}recovered within {:?}; garbage removed",
                    n.name(),
                    if recovered { "" } else { "NOT " },
                    self.patience
                ))
            }
            Nemesis::ZkLossDuringRecovery | Nemesis::StorageErrorDuringRecovery => {
                let Some(l) = leader else { return Ok(format!("{}: skipped (no leader)", n.name())) };
                if n == Nemesis::StorageErrorDuringRecovery && self.s3_proxy.is_none() {
                    return Ok(format!("{}: skipped (no S3 storage; run with --s3)", n.name()));
                }
                let name = self.dispatchers[l].name.clone();
                let id = self.faults.start(n.name(), &name).map_err(|e| e.to_string())?;
                self.dispatchers[l].proc.kill9();
                if let (Nemesis::StorageErrorDuringRecovery, Some(p)) = (n, &self.s3_proxy) {
                    // Storage is cut from before the election to after the recovery starts.
                    p.cut();
                }
                let new = self.wait_new_leader(l, Duration::from_secs(30));
                let what = match (&new, n) {
                    (Some((i, new_name, epoch)), Nemesis::ZkLossDuringRecovery) => {
                        // Right after its election: the new leader loses ZooKeeper.
                        self.dispatchers[*i].mesh.blackhole();
                        std::thread::sleep(long_hold + Duration::from_millis(SESSION_MS / 2));
                        self.dispatchers[*i].mesh.heal();
                        format!("{name} killed; new leader {new_name} (epoch {epoch}) cut from ZooKeeper at once")
                    }
                    (Some((_, new_name, epoch)), _) => {
                        std::thread::sleep(hold);
                        format!("{name} killed with S3 cut; new leader {new_name} (epoch {epoch}) recovered without storage for {hold:?}")
                    }
                    (None, _) => format!("{name} killed; no new leader within 30 s"),
                };
                if let Some(p) = &self.s3_proxy {
                    p.heal();
                }
                self.dispatchers[l].proc.restart().map_err(|e| e.to_string())?;
                self.faults.end(id).map_err(|e| e.to_string())?;
                Ok(format!("{} {what}", n.name()))
            }
            Nemesis::RestartCluster => {
                let id = self.faults.start(n.name(), "all keel processes").map_err(|e| e.to_string())?;
                for m in self.dispatchers.iter_mut().chain(self.workers.iter_mut()) {
                    m.proc.kill9();
                }
                std::thread::sleep(Duration::from_millis(500));
                for m in self.dispatchers.iter_mut().chain(self.workers.iter_mut()) {
                    m.proc.restart().map_err(|e| e.to_string())?;
                }
                self.faults.end(id).map_err(|e| e.to_string())?;
                Ok(n.name().to_string())
            }
        }
    }
}

fn counting_spec(name: &str, count: u64, rate: u64, parallelism: u32, sink: &Path) -> String {
    format!(
        "name: {name}\nparallelism: {parallelism}\ncheckpoint-interval: 500 ms\nrestart-strategy: {{ type: fixed-delay, attempts: 1000, delay: 200 ms }}\npipeline:\n  - source: {{ type: sequence, count: {count}, keys: 8, rate: {rate} }}\n  - count: {{}}\n  - sink: {{ type: file, path: file://{} }}\n",
        sink.display()
    )
}

/// What `sequence(count, keys) → count` outputs in a failure-free run.
pub fn expected_counts(count: u64, keys: u64) -> Vec<String> {
    let mut per_key = vec![0u64; keys as usize];
    let mut lines: Vec<String> = (0..count)
        .map(|n| {
            let k = (n % keys) as usize;
            per_key[k] += 1;
            format!("k{k},{}", per_key[k])
        })
        .collect();
    lines.sort();
    lines
}

/// Every committed line of a file sink directory (`part-*` files), sorted.
pub fn committed_lines(dir: &Path) -> Vec<String> {
    let mut lines = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.file_name().to_string_lossy().starts_with("part-") {
            lines.extend(std::fs::read_to_string(e.path()).unwrap_or_default().lines().map(str::to_string));
        }
    }
    lines.sort();
    lines
}

/// Cancels a job through `keel cancel`, retrying (bounded: 40 tries, 0.5 s apart) across
/// leader changes, recoveries and refusals (a cancel whose result cannot be recorded yet is
/// refused); it stops once the job is seen ended. True if a cancel was answered 2xx.
fn cancel(c: &Cluster, id: &str) -> bool {
    for _ in 0..40 {
        let out = c.keel(&["cancel", id]);
        if out.status.success() {
            return true;
        }
        if String::from_utf8_lossy(&out.stderr).contains("HTTP 409")
            && matches!(c.job_state(id).as_deref(), Some("CANCELED" | "FINISHED" | "FAILED"))
        {
            return false;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    false
}

/// Faults that stop or replace the leader (the leader-change activity gate counts them).
fn is_leader_fault(n: Nemesis) -> bool {
    matches!(
        n,
        Nemesis::KillLeader
            | Nemesis::TermLeader
            | Nemesis::PauseLeader
            | Nemesis::RestartCluster
            | Nemesis::CorruptEntry
            | Nemesis::ZkLossDuringRecovery
            | Nemesis::StorageErrorDuringRecovery
            | Nemesis::KillLeaderAfterPointer
            | Nemesis::KillLeaderBeforePointer
    )
}

/// Waits (bounded) until `ok` holds for the history on disk.
fn wait_history(dir: &Path, timeout: Duration, ok: impl Fn(&History) -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if History::load_dir(dir).ok().is_some_and(|h| ok(&h)) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    false
}

/// Runs a campaign and writes its report.
/// The processing gap of one fault (see [`crate::FailoverTiming::processing_gap_ms`]): the
/// longest over the jobs it interrupted or that were adopted in its window. `from` pairs an
/// instant with the unix ms it was taken at (history times are unix ms).
fn processing_gap(
    t: &crate::FailoverTiming,
    progress: &[(String, Vec<crate::progress::Progress>)],
    from: (Instant, i64),
) -> Option<u64> {
    let at = |unix_ms: i64| {
        let d = unix_ms - from.1;
        if d >= 0 {
            from.0 + Duration::from_millis(d as u64)
        } else {
            from.0.checked_sub(Duration::from_millis(d.unsigned_abs())).unwrap_or(from.0)
        }
    };
    let again = t.job_running_again_at?;
    let jobs: Vec<&String> = t.jobs_interrupted.iter().chain(&t.jobs_adopted).collect();
    progress
        .iter()
        .filter(|(j, _)| jobs.contains(&j))
        .filter_map(|(_, samples)| crate::progress::longest_gap(samples, at(t.fault_at - 500), at(again + 1000)))
        .max()
        .map(|g| g.as_millis() as u64)
}

pub fn run(opts: CampaignOptions) -> Result<CampaignResult, String> {
    run_inner(opts, None, vec![])
}

/// Runs a campaign with one job-layer safety mechanism turned off in every Keel process
/// ([`Broken::env`]). Before the random faults the campaign provokes the interleaving the
/// mechanism guards against and waits (bounded) until it happened, so the checker must
/// report a violation; [`CampaignResult::provoked`] says what was provoked. If it could
/// not be provoked the run is INCONCLUSIVE. Waits for recovery are shorter (20 s).
pub fn run_broken(opts: CampaignOptions, broken: Broken) -> Result<CampaignResult, String> {
    run_inner(opts, Some(broken), vec![broken])
}

/// Runs a campaign that first provokes each listed interleaving with every mechanism on (the
/// passing counterpart of [`run_broken`]), then injects its random faults.
pub fn run_provoked(opts: CampaignOptions, provoke: &[Broken]) -> Result<CampaignResult, String> {
    run_inner(opts, None, provoke.to_vec())
}

fn run_inner(
    mut opts: CampaignOptions,
    broken: Option<Broken>,
    provoke_list: Vec<Broken>,
) -> Result<CampaignResult, String> {
    // Processes run in the work directory: every path handed to them must be absolute.
    std::fs::create_dir_all(&opts.workdir).map_err(|e| format!("{}: {e}", opts.workdir.display()))?;
    opts.workdir = std::fs::canonicalize(&opts.workdir).map_err(|e| format!("{}: {e}", opts.workdir.display()))?;
    opts.keel = std::fs::canonicalize(&opts.keel).map_err(|e| format!("keel binary {}: {e}", opts.keel.display()))?;
    let mut rng = Rng::new(opts.seed);
    let started = Instant::now();
    let mut c = Cluster::start(&opts, broken, &provoke_list)?;
    let mut waited = Instant::now();
    while c.leader().is_none() {
        if waited.elapsed() > Duration::from_secs(60) {
            return Err("no leader within 60 s of starting".into());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(500));
    // Workload: two counting jobs that finish after the faults stop.
    let rate = 200;
    // Long enough to run through the faults, short enough to finish soon after them.
    let count = (rate * 2 * opts.duration.as_secs() * 3 / 4).max(2000);
    let mut jobs: Vec<(String, PathBuf, u64)> = Vec::new();
    for name in ["eo-a", "eo-b"] {
        let sink = c.sinks.join(name);
        waited = Instant::now();
        let id = loop {
            if let Some(id) = c.submit(&counting_spec(name, count, rate, 2, &sink)) {
                break id;
            }
            if waited.elapsed() > Duration::from_secs(30) {
                return Err(format!("could not submit {name}"));
            }
            std::thread::sleep(Duration::from_millis(500));
        };
        jobs.push((id, sink, count));
    }
    let job_ids: Vec<String> = jobs.iter().map(|j| j.0.clone()).collect();
    if !c.wait_recovered(&job_ids, Duration::from_secs(60)) {
        return Err("the workload did not start running within 60 s".into());
    }
    c.watch_jobs = job_ids.clone();
    // The counting jobs' progress from the workers' own counters: the processing gap per fault.
    let metrics: Vec<String> =
        c.workers.iter().filter_map(|w| w.proc.ready()["metrics"].as_str().map(str::to_string)).collect();
    let sampled_from = (Instant::now(), crate::util::now_unix_ms());
    let samplers: Vec<(String, crate::progress::Sampler)> =
        job_ids.iter().map(|j| (j.clone(), crate::progress::Sampler::start(metrics.clone(), j.clone()))).collect();
    let mut cancelled = Vec::new();
    let mut acknowledged = job_ids.clone();
    let mut faults = 0;
    let (mut applied, mut skipped, mut leader_faults) = (0usize, 0usize, 0usize);
    // Faults that failed midway: healed, closed in the fault log, and a failed verdict.
    let mut fault_errors: Vec<String> = Vec::new();
    let mut stale_sent = false;
    let mut stale_command: Option<(String, i64)> = None;
    let mut churn: Option<String> = None;
    // A mechanism turned off: provoke the interleaving it guards against, and wait for it.
    let mut provoked: Vec<String> = Vec::new();
    let mut not_provoked: Vec<Broken> = Vec::new();
    for &b in &provoke_list {
        let before_applied = applied;
        let what = provoke(&mut c, b, &mut rng, &mut acknowledged, &mut cancelled, &mut fault_errors, &mut applied);
        faults += applied - before_applied;
        if b != Broken::AttemptFence {
            leader_faults += applied - before_applied;
        }
        if opts.progress {
            eprintln!("[chaos {:>4}s] provoked ({}): {what:?}", started.elapsed().as_secs(), b.env());
        }
        match what {
            Some(w) => provoked.push(w),
            None => not_provoked.push(b),
        }
    }
    // The fault window starts once the workload runs (not when the cluster was started).
    let end = Instant::now() + opts.duration;
    while Instant::now() + Duration::from_secs(4) < end {
        std::thread::sleep(Duration::from_millis(rng.range(500, 2000)));
        let n = rng.pick(&opts.nemeses);
        let before = c.leader();
        let what = match c.inject(n, &mut rng) {
            Ok(what) => {
                if what.contains(": skipped") {
                    skipped += 1;
                } else {
                    applied += 1;
                    if is_leader_fault(n) {
                        leader_faults += 1;
                    }
                }
                what
            }
            Err(e) => {
                // Heal, and close whatever the fault had opened, so the history stays whole.
                c.heal_all();
                for id in c.faults.open_faults() {
                    let _ = c.faults.end(id);
                }
                fault_errors.push(format!("{}: {e}", n.name()));
                format!("{}: FAILED midway ({e}); healed", n.name())
            }
        };
        faults += 1;
        // Churn: the previous short-lived job is cancelled in this fault's aftermath, and a
        // new one may be submitted (one at a time, parallelism 1, so the counting jobs always
        // find slots).
        if let Some(id) = churn.take() {
            c.churn_job = None;
            cancel(&c, &id);
        }
        if rng.range(0, 1) == 0 {
            let sink = c.sinks.join(format!("churn-{faults}"));
            if let Some(id) = c.submit(&counting_spec("churn", 10_000_000, 100, 1, &sink)) {
                acknowledged.push(id.clone());
                cancelled.push(id.clone());
                c.churn_job = Some(id.clone());
                churn = Some(id);
            }
        }
        let recovered = c.wait_recovered(&job_ids, c.patience);
        if opts.break_fencing && !stale_sent {
            if let (Some((_, _, old)), Some((_, _, new))) = (before, c.leader()) {
                if new > old {
                    // The worker must have registered the new epoch first, or the command is
                    // not stale to it: wait (bounded) for its `registered` event.
                    let worker = c.workers[0].name.clone();
                    let wait = Instant::now() + Duration::from_secs(60);
                    while Instant::now() < wait {
                        let seen = History::load_dir(&opts.workdir).ok().is_some_and(|h| {
                            h.of_process(&worker)
                                .any(|e| matches!(e.kind, EventKind::Registered { epoch, .. } if epoch as i64 >= new))
                        });
                        if seen {
                            break;
                        }
                        std::thread::sleep(Duration::from_millis(100));
                    }
                    // A command stamped with the old epoch, as a zombie leader would send it.
                    let w = c.workers[0].proc.rpc_addr();
                    let out = c.keel(&[
                        "debug",
                        "send-command",
                        "--worker",
                        &w,
                        "--epoch",
                        &old.to_string(),
                        "--from",
                        "zombie",
                    ]);
                    // Sent means the worker answered (accepted, or refused as stale).
                    stale_sent = out.status.success()
                        || String::from_utf8_lossy(&out.stderr).contains("fenced")
                        || String::from_utf8_lossy(&out.stdout).contains("fenced");
                    if stale_sent {
                        stale_command = Some(("heartbeat".into(), old));
                    }
                }
            }
        }
        if opts.progress {
            let leader = c.leader().map(|(_, n, e)| format!("{n} epoch {e}")).unwrap_or_else(|| "none".into());
            eprintln!(
                "[chaos {:>4}s/{}s] fault {faults}: {what}; leader {leader}; jobs {}{}",
                started.elapsed().as_secs(),
                opts.duration.as_secs(),
                job_ids.iter().map(|j| c.job_state(j).unwrap_or_else(|| "?".into())).collect::<Vec<_>>().join(","),
                if recovered { "" } else { " (NOT recovered in time)" }
            );
        }
    }
    // Cancel the last churn job, heal everything, wait for the counting jobs to finish.
    if let Some(id) = churn.take() {
        cancel(&c, &id);
    }
    c.heal_all();
    // Convergence: once every fault healed, the counting jobs run again (or already finished).
    // One snapshot after a bounded wait: a job that is FINISHED need not run, every other one must.
    c.wait_recovered(&job_ids, c.patience);
    let at_heal: Vec<(String, String)> =
        job_ids.iter().map(|j| (j.clone(), c.job_state(j).unwrap_or_else(|| "MISSING".into()))).collect();
    let finish_deadline = Instant::now() + Duration::from_secs(if broken.is_some() { 30 } else { 180 });
    while Instant::now() < finish_deadline {
        if job_ids.iter().all(|j| c.job_state(j).as_deref() == Some("FINISHED")) {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    // Planted garbage still there (its removal failed midway) is named, never counted as a leak.
    let planted_left = c.remove_planted();
    let final_jobs: Vec<(String, String)> =
        acknowledged.iter().map(|j| (j.clone(), c.job_state(j).unwrap_or_else(|| "MISSING".into()))).collect();
    // Leftovers of ended jobs (cancelled churn jobs and finished counting jobs): znodes and
    // checkpoint files. An inspect that fails is a leak check that failed, not an empty list.
    let inspect = c.keel(&["ha", "inspect", "--json"]);
    let mut leftover_znodes = Vec::new();
    let znodes: Vec<String> =
        match serde_json::from_slice::<Value>(&inspect.stdout).ok().and_then(|v| v["znodes"].as_array().cloned()) {
            Some(list) if inspect.status.success() => {
                list.iter().filter_map(|z| z["path"].as_str().map(str::to_string)).collect()
            }
            _ => {
                leftover_znodes.push(format!(
                    "(unknown: keel ha inspect failed: {})",
                    String::from_utf8_lossy(&inspect.stderr).trim()
                ));
                vec![]
            }
        };
    let mut leftover_files = Vec::new();
    // A churn job whose cancel gave up is still running: it leaks everything it holds.
    for (id, state) in final_jobs.iter().filter(|(j, _)| cancelled.contains(j)) {
        if state != "CANCELED" {
            leftover_znodes.push(format!("(job {id} was cancelled but is {state})"));
        }
    }
    let ended: Vec<&String> = final_jobs
        .iter()
        .filter(|(j, s)| (cancelled.contains(j) && s == "CANCELED") || (job_ids.contains(j) && s == "FINISHED"))
        .map(|(j, _)| j)
        .collect();
    for id in ended.iter().copied() {
        leftover_znodes
            .extend(znodes.iter().filter(|z| z.contains(id.as_str()) && !z.starts_with("/job-results/")).cloned());
        if !opts.s3 {
            let dir = opts.workdir.join("storage/checkpoints").join(id);
            leftover_files.extend(crate::util::files_under(&dir));
        }
    }
    let progress: Vec<(String, Vec<crate::progress::Progress>)> =
        samplers.iter().map(|(j, s)| (j.clone(), s.snapshot())).collect();
    drop(samplers);
    let history = History::load_dir(&opts.workdir)?;
    let mut verdicts: Vec<Verdict> = checker::history_verdicts(&history, 0);
    // The history itself: no malformed line, and every event kind a run must produce.
    let mut bad_history: Vec<String> = history.malformed_lines.clone();
    if history.malformed > history.malformed_lines.len() {
        bad_history.push(format!("{} malformed lines in all", history.malformed));
    }
    let kinds: std::collections::BTreeSet<&'static str> =
        history.events().iter().map(|e| event_kind_name(&e.kind)).collect();
    for want in
        ["leadership_gained", "job_submitted", "task_deployed", "checkpoint_completed", "fault_start", "fault_end"]
    {
        if !kinds.contains(want) {
            bad_history.push(format!("no {want} event in the history"));
        }
    }
    verdicts.push(Verdict::from_violations("history_well_formed", bad_history));
    verdicts.push(Verdict::from_violations("faults_injected_cleanly", fault_errors));
    let final_state = FinalState {
        jobs: final_jobs.clone(),
        cancelled_by_request: cancelled.clone(),
        acknowledged: acknowledged.clone(),
        expected_running: vec![],
    };
    verdicts.push(checker::no_acknowledged_job_lost(&history, &final_state));
    let mut expected = Vec::new();
    let mut committed = Vec::new();
    for (id, sink, count) in &jobs {
        expected.extend(expected_counts(*count, 8).into_iter().map(|l| format!("{id}:{l}")));
        committed.extend(committed_lines(sink).into_iter().map(|l| format!("{id}:{l}")));
    }
    verdicts.push(checker::exactly_once(&expected, &committed));
    verdicts.push(checker::no_leaks(&leftover_znodes, &leftover_files));
    let healed = FinalState {
        expected_running: at_heal.iter().filter(|(_, s)| s != "FINISHED").map(|(j, _)| j.clone()).collect(),
        jobs: at_heal.clone(),
        ..FinalState::default()
    };
    verdicts.push(checker::converged(&history, &healed));
    // A fallback past a checkpoint `corrupt-entry` corrupted on purpose is expected: named
    // in the report as planted, not counted as a violation.
    let mut planted_fallbacks = Vec::new();
    if let Some(v) = verdicts.iter_mut().find(|v| v.name == "recovery_never_older_than_latest_completed") {
        let (planted, kept): (Vec<String>, Vec<String>) = v.details.iter().cloned().partition(|d| {
            c.planted_checkpoints.iter().any(|(job, cp)| {
                d.contains(&format!("job {job} restored from"))
                    && d.contains(&format!("but checkpoint {cp} had completed"))
            })
        });
        if !planted.is_empty() {
            *v = Verdict::from_violations(v.name, kept);
            planted_fallbacks = planted;
        }
    }
    let unfinished: Vec<String> = jobs
        .iter()
        .filter_map(|(id, _, _)| {
            let s = final_jobs.iter().find(|(j, _)| j == id).map(|(_, s)| s.clone()).unwrap_or_default();
            (s != "FINISHED").then(|| format!("job {id} is {s}, expected FINISHED after every fault healed"))
        })
        .collect();
    verdicts.push(Verdict::from_violations("jobs_finished_after_healing", unfinished));
    let mut report = Report::new(opts.seed, started.elapsed(), &history, &verdicts);
    for t in &mut report.timings {
        t.processing_gap_ms = processing_gap(t, &progress, sampled_from);
    }
    let mut report = report.with_note(format!(
        "nemeses: {}; faults injected: {faults}; s3: {}; break_fencing: {}; mechanism off: {}",
        opts.nemeses.iter().map(|n| n.name()).collect::<Vec<_>>().join(","),
        opts.s3,
        opts.break_fencing,
        broken.map(|b| b.env()).unwrap_or("none")
    ));
    for (job, cp) in &c.planted_checkpoints {
        report = report.with_note(format!("planted: checkpoint {cp} of churn job {job} bit-flipped"));
    }
    for d in &planted_fallbacks {
        report = report.with_note(format!("expected fallback past a planted corrupt checkpoint: {d}"));
    }
    if !planted_left.is_empty() {
        report = report.with_note(format!("planted garbage znodes left in place (not leaks): {planted_left:?}"));
    }
    for p in &provoked {
        report = report.with_note(format!("provoked: {p}"));
    }
    // Activity: what this run exercised. Below the minimum for its length it proves nothing.
    let count = |f: &dyn Fn(&EventKind) -> bool| history.events().iter().filter(|e| f(&e.kind)).count();
    let leader_changes = count(&|k| matches!(k, EventKind::LeadershipGained { .. })).saturating_sub(1);
    let restores = count(&|k| matches!(k, EventKind::CheckpointRestored { .. }));
    let adoptions = count(&|k| matches!(k, EventKind::JobAdopted { .. }));
    let completed = count(&|k| matches!(k, EventKind::CheckpointCompleted { .. }));
    let refused = count(&|k| matches!(k, EventKind::CommandRefused { .. }));
    let stale_attempts = history.events().iter().filter(|e| e.name == "stale_attempt_refused").count();
    let churn_cancelled = final_jobs.iter().filter(|(j, s)| cancelled.contains(j) && s == "CANCELED").count();
    let records = committed.len();
    let activity = format!(
        "activity: faults applied {applied}, skipped {skipped}, failed {}; leader changes {leader_changes}; \
         restores {restores}; adoptions {adoptions}; checkpoints completed {completed}; stale commands refused {refused}; \
         stale attempts refused {stale_attempts}; \
         churn jobs cancelled {churn_cancelled} of {}; records committed {records}",
        verdicts.iter().find(|v| v.name == "faults_injected_cleanly").map(|v| v.details.len()).unwrap_or(0),
        cancelled.len()
    );
    let mut short: Vec<String> = Vec::new();
    let min_faults = (opts.duration.as_secs() / 20).max(1) as usize;
    if applied < min_faults {
        short.push(format!("{applied} faults applied, fewer than {min_faults} for {} s", opts.duration.as_secs()));
    }
    if completed == 0 {
        short.push("no checkpoint completed".into());
    }
    if records == 0 {
        short.push("no record committed".into());
    }
    if leader_faults > 0 && leader_changes == 0 {
        short.push(format!("{leader_faults} leader faults were applied but the leader never changed"));
    }
    if leader_changes > 0 && restores == 0 && adoptions == 0 {
        short.push("leaders changed but no job was restored from a checkpoint or adopted".into());
    }
    if !cancelled.is_empty() && churn_cancelled == 0 {
        short.push("no churn job was cancelled".into());
    }
    if opts.break_fencing && (!stale_sent || refused + count(&|k| matches!(k, EventKind::CommandAccepted { .. })) == 0)
    {
        short.push("the stale command was never delivered".into());
    }
    if ended.is_empty() {
        short.push("no_leaks: vacuous (no job ended, nothing to check)".into());
    }
    for b in &not_provoked {
        short.push(format!("the interleaving {} guards against was never provoked", b.env()));
    }
    let mut report = report.with_note(activity);
    for why in short {
        report = report.with_inconclusive(why);
    }
    let (json, html) = report.write(&opts.workdir).map_err(|e| e.to_string())?;
    Ok(CampaignResult { report, report_json: json, report_html: html, faults, stale_command, provoked })
}

/// The history name of an event kind (as in the JSONL `event` field).
fn event_kind_name(k: &EventKind) -> &'static str {
    match k {
        EventKind::LeadershipGained { .. } => "leadership_gained",
        EventKind::JobSubmitted { .. } => "job_submitted",
        EventKind::TaskDeployed { .. } => "task_deployed",
        EventKind::CheckpointCompleted { .. } => "checkpoint_completed",
        EventKind::FaultStart { .. } => "fault_start",
        EventKind::FaultEnd { .. } => "fault_end",
        _ => "other",
    }
}

/// Flips one bit in the middle of the newest `chk-<n>/_metadata-*` blob under a job's
/// checkpoint directory (`file://` storage). Returns the checkpoint and the file.
fn flip_newest_metadata(job_dir: &Path) -> Option<(u64, PathBuf)> {
    let newest = std::fs::read_dir(job_dir)
        .ok()?
        .flatten()
        .filter_map(|e| {
            let n = e.file_name().to_string_lossy().strip_prefix("chk-")?.parse::<u64>().ok()?;
            let meta = std::fs::read_dir(e.path())
                .ok()?
                .flatten()
                .find(|m| m.file_name().to_string_lossy().starts_with("_metadata"))?;
            Some((n, meta.path()))
        })
        .max_by_key(|(n, _)| *n)?;
    let mut bytes = std::fs::read(&newest.1).ok()?;
    if bytes.is_empty() {
        return None;
    }
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x10;
    std::fs::write(&newest.1, bytes).ok()?;
    Some(newest)
}

/// The job view on the leader (`GET /jobs/<id>`).
fn job_view(c: &Cluster, id: &str) -> Option<Value> {
    let rest = c.leader_rest()?;
    match http_get_json(&rest, &format!("/jobs/{id}"), Duration::from_secs(2)) {
        Ok((200, v)) => Some(v),
        _ => None,
    }
}

/// Provokes, deterministically, the interleaving the mechanism `b` guards against, and waits
/// (bounded) until it happened. Returns what happened, or `None` if it could not be provoked.
fn provoke(
    c: &mut Cluster,
    b: Broken,
    rng: &mut Rng,
    acknowledged: &mut Vec<String>,
    cancelled: &mut Vec<String>,
    fault_errors: &mut Vec<String>,
    applied: &mut usize,
) -> Option<String> {
    let dir = c.opts.workdir.clone();
    let jobs = c.watch_jobs.clone();
    // Every counting job has completed a checkpoint: a recovery is a restore.
    let checkpointed = |h: &History, j: &str| {
        h.events().iter().any(|e| matches!(&e.kind, EventKind::CheckpointCompleted { job, .. } if job == j))
    };
    if !wait_history(&dir, Duration::from_secs(60), |h| jobs.iter().all(|j| checkpointed(h, j))) {
        return None;
    }
    let mut inject = |c: &mut Cluster, n: Nemesis, rng: &mut Rng| inject_counted(c, n, rng, applied, fault_errors);
    match b {
        Broken::PerJobRecovery => {
            // Garbage job-results/<other> znode, then the leader stops: a new leader must
            // be elected (its recovery then meets the garbage).
            // With the mechanism on and file:// storage, a short-lived probe job runs too, so
            // corrupt-entry also bit-flips its newest checkpoint metadata.
            let mut probe = None;
            if c.broken.is_none() && !c.opts.s3 {
                let sink = c.sinks.join("corrupt-probe");
                if let Some(id) = c.submit(&counting_spec("churn", 10_000_000, 100, 1, &sink)) {
                    acknowledged.push(id.clone());
                    cancelled.push(id.clone());
                    let two = |h: &History| {
                        h.events()
                            .iter()
                            .filter(|e| matches!(&e.kind, EventKind::CheckpointCompleted { job, .. } if *job == id))
                            .count()
                            >= 2
                    };
                    wait_history(&dir, Duration::from_secs(60), two);
                    c.churn_job = Some(id.clone());
                    probe = Some(id);
                }
            }
            let (_, _, old) = c.leader()?;
            let what = inject(c, Nemesis::CorruptEntry, rng);
            c.churn_job = None;
            if let Some(id) = probe {
                cancel(c, &id);
            }
            let what = what?;
            let (_, name, new) = c.leader()?;
            (new > old).then(|| format!("{what}; new leader {name} at epoch {new} (was {old})"))
        }
        Broken::DurableCancel => {
            // A job cancelled with a 2xx answer, then the leader stops: the next leader must
            // not run it again.
            let sink = c.sinks.join("cancel-probe");
            let id = c.submit(&counting_spec("churn", 10_000_000, 100, 1, &sink))?;
            acknowledged.push(id.clone());
            cancelled.push(id.clone());
            let start = Instant::now();
            while c.job_state(&id).as_deref() != Some("RUNNING") && start.elapsed() < Duration::from_secs(60) {
                std::thread::sleep(Duration::from_millis(200));
            }
            if c.job_state(&id).as_deref() != Some("RUNNING") {
                eprintln!(
                    "chaos: cancel probe {id} was not RUNNING within 60 s (state {:?}); cancelling anyway",
                    c.job_state(&id)
                );
            }
            if !cancel(c, &id) {
                return None;
            }
            let what = inject(c, Nemesis::TermLeader, rng)?;
            // The next leader deploys it again: a task_deployed after its job_ended.
            let rerun = |h: &History| {
                let ended = h.events().iter().find_map(|e| match &e.kind {
                    EventKind::JobEnded { job, .. } if *job == id => Some(e.ts_ms),
                    _ => None,
                });
                ended.is_some_and(|t| {
                    h.events()
                        .iter()
                        .any(|e| matches!(&e.kind, EventKind::TaskDeployed { job, .. } if *job == id) && e.ts_ms > t)
                })
            };
            if c.broken == Some(Broken::DurableCancel) {
                wait_history(&dir, Duration::from_secs(60), rerun)
                    .then(|| format!("job {id} cancelled (answered 2xx), then {what}; the job was deployed again"))
            } else {
                // With the mechanism on: the next leader reports it CANCELED.
                let start = Instant::now();
                while start.elapsed() < Duration::from_secs(60) {
                    if c.job_state(&id).as_deref() == Some("CANCELED") {
                        return Some(format!("job {id} cancelled (answered 2xx), then {what}; still CANCELED"));
                    }
                    std::thread::sleep(Duration::from_millis(200));
                }
                None
            }
        }
        Broken::AttemptFence => provoke_stale_deploy(c, acknowledged, cancelled, applied),
    }
}

/// Injects `n`; counts it if applied; a fault failing midway is healed, closed and recorded.
fn inject_counted(
    c: &mut Cluster,
    n: Nemesis,
    rng: &mut Rng,
    applied: &mut usize,
    fault_errors: &mut Vec<String>,
) -> Option<String> {
    match c.inject(n, rng) {
        Ok(what) if what.contains(": skipped") => None,
        Ok(what) => {
            *applied += 1;
            Some(what)
        }
        Err(e) => {
            c.heal_all();
            for id in c.faults.open_faults() {
                let _ = c.faults.end(id);
            }
            fault_errors.push(format!("{}: {e}", n.name()));
            None
        }
    }
}

/// The attempt-fencing interleaving (issue 7, hole 1), on a probe job of parallelism 1: its
/// worker is killed while the command links of the two others are held, so the Deploy of
/// the next attempt A is held in one of them; that link is then orphaned (the leader's call
/// fails and it reconnects, the held bytes stay in flight), the job fails over to attempt
/// A' > A on the same worker over the new connection, and only then is the Deploy of A
/// delivered.
fn provoke_stale_deploy(
    c: &mut Cluster,
    acknowledged: &mut Vec<String>,
    cancelled: &mut Vec<String>,
    applied: &mut usize,
) -> Option<String> {
    let dir = c.opts.workdir.clone();
    let sink = c.sinks.join("attempt-probe");
    // A 3 s restart delay: time to hold the links between the failover and the redeploy.
    let spec = counting_spec("churn", 10_000_000, 100, 1, &sink).replace("delay: 200 ms", "delay: 3 s");
    let probe = c.submit(&spec)?;
    acknowledged.push(probe.clone());
    cancelled.push(probe.clone());
    let placed = |v: &Value| -> Option<(u64, String, String)> {
        let s = v["subtasks"].as_array()?.first()?;
        Some((v["attempt"].as_u64()?, s["worker"].as_str()?.to_string(), s["state"].as_str()?.to_string()))
    };
    let start = Instant::now();
    let mut running = None;
    while running.is_none() && start.elapsed() < Duration::from_secs(60) {
        running = job_view(c, &probe).and_then(|v| placed(&v)).filter(|(_, _, st)| st == "RUNNING");
        std::thread::sleep(Duration::from_millis(200));
    }
    let (attempt, host, _) = running?;
    let victim = c.workers.iter().position(|w| w.name == host)?;
    let id = c.faults.start("stale-deploy", &format!("{host} killed, the other workers' command links held")).ok()?;
    *applied += 1;
    c.workers[victim].proc.kill9();
    // Once the job fails over (the redeploy is 3 s away), hold the other workers' links
    // (briefly: they re-register after heartbeat.timeout, 10 s in this mode, without them).
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(30) && c.job_state(&probe).as_deref() != Some("RESTARTING") {
        std::thread::sleep(Duration::from_millis(50));
    }
    if c.job_state(&probe).as_deref() != Some("RESTARTING") {
        eprintln!("chaos: stale-deploy probe {probe} was not RESTARTING within 30 s of the kill; holding links anyway");
    }
    for (i, w) in c.workers.iter().enumerate() {
        if let (true, Some(p)) = (i != victim, &w.rpc_proxy) {
            p.hold_open_connections();
        }
    }
    // The next attempt's Deploy is under way to a held worker.
    let start = Instant::now();
    let mut held = None;
    while held.is_none() && start.elapsed() < Duration::from_secs(30) {
        held = job_view(c, &probe)
            .and_then(|v| placed(&v))
            .filter(|(a, w, st)| *a > attempt && *w != host && st == "DEPLOYING");
        std::thread::sleep(Duration::from_millis(100));
    }
    let target = held.as_ref().and_then(|(_, w, _)| c.workers.iter().position(|m| m.name == *w));
    for (i, w) in c.workers.iter().enumerate() {
        if let (true, Some(p)) = (Some(i) != target, &w.rpc_proxy) {
            p.release_held();
        }
    }
    let mut outcome = None;
    if let (Some((held, tname, _)), Some(t)) = (held, target) {
        // Let the Deploy reach the held link, then orphan it: the leader's call fails, the
        // job fails over, and the next attempt reaches the worker first.
        std::thread::sleep(Duration::from_millis(300));
        let proxy = c.workers[t].rpc_proxy.as_ref()?;
        proxy.orphan_connections();
        let deployed = |h: &History, newer: bool| {
            h.of_process(&tname).any(|e| match &e.kind {
                EventKind::TaskDeployed { job, attempt: a, .. } if *job == probe => {
                    if newer {
                        *a > held
                    } else {
                        *a == held
                    }
                }
                _ => {
                    !newer
                        && e.name == "stale_attempt_refused"
                        && e.fields.get("attempt").and_then(Value::as_u64) == Some(held)
                }
            })
        };
        let overtaken = wait_history(&dir, Duration::from_secs(30), |h| deployed(h, true));
        proxy.release_held();
        if overtaken && wait_history(&dir, Duration::from_secs(30), |h| deployed(h, false)) {
            outcome = Some(format!(
                "job {probe}: the Deploy of attempt {held} to {tname} was held, overtaken by a newer attempt, then delivered"
            ));
        }
    }
    let _ = c.workers[victim].proc.restart();
    let _ = c.faults.end(id);
    cancel(c, &probe);
    outcome
}
