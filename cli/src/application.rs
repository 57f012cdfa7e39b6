//! `keel local` and `keel run-application`: a supervisor that runs a dispatcher and workers as
//! its own child processes on this host.
//!
//! * `keel local` starts a session cluster with nothing else installed
//!   (`high-availability.type: none`: the dispatcher keeps its jobs in a local pointer tree
//!   and the storage directory, see `keel_ha::local`) and runs until SIGINT/SIGTERM.
//! * `keel run-application job.yaml` is Flink's application mode (the seed's YARN job mode,
//!   without YARN): a cluster dedicated to one job (its own `high-availability.cluster-id`,
//!   `/application-<job id>`), which submits the job under a fixed id, prints each state the
//!   job reaches, and stops the cluster when the job ends (exit 0 for FINISHED, 1 otherwise).
//!
//! A child that exits unexpectedly is started again while it has starts left:
//! `application-attempts` (Flink's `yarn.application-attempts`) bounds how many times each child
//! is started in all. A restarted dispatcher recovers the job from its stores, so the job goes
//! on. Children get SIGTERM when the supervisor stops, and (Linux) when it dies.
//! Each child logs to `<log dir>/<name>.log` (appended across restarts).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;

/// How long a child may take to print its `keel-ready` line.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a stopping child may take before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the supervisor keeps trying to submit the job (the dispatcher may be restarting).
const SUBMIT_TIMEOUT: Duration = Duration::from_secs(120);
const POLL: Duration = Duration::from_millis(200);

/// What the supervisor starts.
pub struct Plan {
    /// `--config FILE` and `-D key=value` as the user gave them, then the supervisor's own `-D`s.
    pub args: Vec<String>,
    pub workers: usize,
    /// Starts per child in all (at least 1).
    pub attempts: u32,
    pub log_dir: PathBuf,
}

impl Plan {
    /// The children's arguments (`args`, then `-D` for each of `overrides`), `workers`
    /// workers, `application-attempts` starts each, logs in `log_dir` or
    /// `<first io.tmp.dirs entry>/<default_dir>`.
    pub fn new(
        config: &keel_conf::Config,
        mut args: Vec<String>,
        overrides: &[String],
        workers: u32,
        log_dir: Option<PathBuf>,
        default_dir: &str,
    ) -> Plan {
        for d in overrides {
            args.extend(["-D".to_string(), d.clone()]);
        }
        let tmp = config.io_tmp_dirs.first().cloned().unwrap_or_else(|| "/tmp".into());
        Plan {
            args,
            workers: workers as usize,
            attempts: config.application_attempts,
            log_dir: log_dir.unwrap_or_else(|| PathBuf::from(tmp).join(default_dir)),
        }
    }
}

struct Proc {
    name: String,
    role: &'static str,
    child: Child,
    starts: u32,
    ready: serde_json::Value,
}

/// A running set of children (a dispatcher first, then the workers).
pub struct Supervisor {
    plan: Plan,
    exe: PathBuf,
    procs: Vec<Proc>,
    /// The dispatcher's RPC port from its first ready line: workers are pointed at it
    /// (`jobmanager.rpc.port`, how workers find the dispatcher without ZooKeeper), and a
    /// restarted dispatcher binds it again, so `jobmanager.rpc.port: 0` works.
    rpc_port: Option<u16>,
}

impl Supervisor {
    /// Starts the dispatcher, then the workers, each waiting for its ready line.
    pub async fn start(plan: Plan) -> anyhow::Result<Supervisor> {
        std::fs::create_dir_all(&plan.log_dir)
            .with_context(|| format!("cannot create the log directory {}", plan.log_dir.display()))?;
        let exe = std::env::current_exe().context("cannot find the keel binary")?;
        let mut s = Supervisor { plan, exe, procs: Vec::new(), rpc_port: None };
        let names: Vec<(String, &'static str)> = std::iter::once(("dispatcher".to_string(), "dispatcher"))
            .chain((0..s.plan.workers).map(|i| (format!("worker-{i}"), "worker")))
            .collect();
        for (name, role) in names {
            match s.spawn(&name, role).await {
                Ok((child, ready)) => {
                    if role == "dispatcher" {
                        s.rpc_port = ready["rpc"].as_str().and_then(|a| a.rsplit(':').next()?.parse().ok());
                    }
                    s.procs.push(Proc { name, role, child, starts: 1, ready })
                }
                Err(e) => {
                    s.stop().await;
                    return Err(e);
                }
            }
        }
        Ok(s)
    }

    /// The dispatcher's REST address (from its latest ready line).
    pub fn rest(&self) -> String {
        self.procs[0].ready["rest"].as_str().unwrap_or_default().to_string()
    }

    pub fn log_dir(&self) -> &Path {
        &self.plan.log_dir
    }

    /// `name (pid N)` for every child.
    pub fn describe(&self) -> String {
        self.procs
            .iter()
            .map(|p| format!("{} (pid {})", p.name, p.child.id().unwrap_or(0)))
            .collect::<Vec<_>>()
            .join(", ")
    }

    async fn spawn(&self, name: &str, role: &'static str) -> anyhow::Result<(Child, serde_json::Value)> {
        let log_path = self.plan.log_dir.join(format!("{name}.log"));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("cannot open {}", log_path.display()))?;
        let mut cmd = Command::new(&self.exe);
        cmd.args(&self.plan.args);
        if let Some(port) = self.rpc_port {
            cmd.args(["-D".to_string(), format!("jobmanager.rpc.port={port}")]);
        }
        cmd.arg(role)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log.try_clone()?))
            .kill_on_drop(true);
        // SAFETY: prctl is async-signal-safe; it only asks the kernel to SIGTERM this child when
        // the thread that forked it (a runtime worker, alive as long as the supervisor) exits.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
        let mut child = cmd.spawn().with_context(|| format!("cannot start {}", self.exe.display()))?;
        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = BufReader::new(stdout).lines();
        let mut log = tokio::fs::File::from_std(log);
        let deadline = Instant::now() + READY_TIMEOUT;
        let ready = loop {
            let line = tokio::time::timeout_at(deadline.into(), lines.next_line()).await;
            match line {
                Ok(Ok(Some(line))) => {
                    let _ = log.write_all(format!("[stdout] {line}\n").as_bytes()).await;
                    if let Some(json) = line.strip_prefix("keel-ready ") {
                        break serde_json::from_str::<serde_json::Value>(json)
                            .with_context(|| format!("{name}: unreadable ready line {line:?}"))?;
                    }
                }
                Ok(Ok(None)) | Ok(Err(_)) => {
                    let status = child.wait().await.ok();
                    bail!(
                        "{name} exited before it was ready ({}); its log {}:\n{}",
                        status.map_or("unknown status".into(), |s| s.to_string()),
                        log_path.display(),
                        tail(&log_path, 15)
                    );
                }
                Err(_) => {
                    let _ = child.kill().await;
                    bail!(
                        "{name} printed no ready line within {READY_TIMEOUT:?}; its log {}:\n{}",
                        log_path.display(),
                        tail(&log_path, 15)
                    );
                }
            }
        };
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                let _ = log.write_all(format!("[stdout] {line}\n").as_bytes()).await;
            }
        });
        Ok((child, ready))
    }

    /// Restarts every child that exited, while it has starts left; an error once one has none.
    pub async fn watch(&mut self) -> anyhow::Result<()> {
        for i in 0..self.procs.len() {
            let Some(status) = self.procs[i].child.try_wait()? else { continue };
            let (name, role, starts) = (self.procs[i].name.clone(), self.procs[i].role, self.procs[i].starts);
            let log = self.plan.log_dir.join(format!("{name}.log"));
            if starts >= self.plan.attempts {
                bail!(
                    "{name} exited ({status}) and was started {starts} time(s): application-attempts is {}; giving \
                     up (log: {})",
                    self.plan.attempts,
                    log.display()
                );
            }
            eprintln!(
                "{name} exited ({status}); starting it again (start {} of {}, application-attempts)",
                starts + 1,
                self.plan.attempts
            );
            let (child, ready) = self.spawn(&name, role).await?;
            self.procs[i] = Proc { name, role, child, starts: starts + 1, ready };
        }
        Ok(())
    }

    /// SIGTERM to every child (workers first), then waits for each, killing one that takes
    /// longer than [`STOP_TIMEOUT`].
    pub async fn stop(&mut self) {
        for p in self.procs.iter_mut().rev() {
            if let Some(pid) = p.child.id() {
                // SAFETY: signalling our own child by its pid.
                unsafe { libc::kill(pid as i32, libc::SIGTERM) };
            }
            if tokio::time::timeout(STOP_TIMEOUT, p.child.wait()).await.is_err() {
                eprintln!("{} did not stop within {STOP_TIMEOUT:?}; killing it", p.name);
                let _ = p.child.kill().await;
            }
        }
    }
}

fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A job id for an application: 32 hex digits (a random UUID).
pub fn new_job_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

fn is_ended(state: &str) -> bool {
    matches!(state, "FINISHED" | "CANCELED" | "CANCELLED" | "FAILED")
}

/// Runs `keel run-application`: submits `spec_text` as `job_id` to the supervised cluster,
/// follows it to its end and stops the cluster. Ok only for a FINISHED job.
pub async fn run_application(
    mut sup: Supervisor,
    config: &keel_conf::Config,
    job_id: &str,
    spec_name: &str,
    spec_text: String,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let result = follow(&mut sup, config, job_id, spec_name, spec_text, &shutdown).await;
    sup.stop().await;
    match &result {
        Ok(()) => eprintln!("application cluster stopped (logs: {})", sup.log_dir().display()),
        Err(_) => eprintln!("application cluster stopped; logs: {}", sup.log_dir().display()),
    }
    result
}

async fn follow(
    sup: &mut Supervisor,
    config: &keel_conf::Config,
    job_id: &str,
    spec_name: &str,
    spec_text: String,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    // Submit under the fixed id: a retry after an unknown outcome (or a dispatcher restart)
    // is idempotent.
    let path = format!("/jobs?jobId={job_id}&specName={}", crate::url_escape(spec_name));
    let deadline = Instant::now() + SUBMIT_TIMEOUT;
    loop {
        sup.watch().await?;
        let api = crate::client::Rest::new(&sup.rest(), config)?;
        match api.call(reqwest::Method::POST, &path, Some(spec_text.clone())).await {
            Ok(_) => break,
            Err(e) if Instant::now() > deadline => {
                return Err(e.context(format!("could not submit the job within {SUBMIT_TIMEOUT:?}")))
            }
            Err(e) if e.to_string().contains("HTTP 400") => return Err(e.context("the job spec was refused")),
            Err(_) => {}
        }
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            _ = shutdown.cancelled() => bail!("interrupted before the job was submitted"),
        }
    }
    eprintln!("Job has been submitted with JobID {job_id}");
    println!("{job_id}");
    let mut last = String::new();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            _ = shutdown.cancelled() => bail!("interrupted while job {job_id} was {last}; the cluster stops (the job is not cancelled: a later run-application of the same cluster id would recover it)"),
        }
        sup.watch().await.with_context(|| format!("job {job_id} was {last}"))?;
        let Ok(api) = crate::client::Rest::new(&sup.rest(), config) else { continue };
        let Ok(job) = api.call(reqwest::Method::GET, &format!("/jobs/{job_id}"), None).await else { continue };
        let state = job["state"].as_str().unwrap_or_default().to_string();
        if state != last && !state.is_empty() {
            eprintln!("job {job_id}: {state}");
            last = state.clone();
        }
        if is_ended(&state) {
            if state == "FINISHED" {
                return Ok(());
            }
            let reason = job["failure"].as_str().or(job["reason"].as_str()).unwrap_or("");
            bail!(
                "job {job_id} ended {state}{}",
                if reason.is_empty() { String::new() } else { format!(": {reason}") }
            );
        }
    }
}

/// Runs `keel local` until `shutdown`: restarts children within their starts.
pub async fn run_local(mut sup: Supervisor, shutdown: CancellationToken) -> anyhow::Result<()> {
    let result = loop {
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            _ = shutdown.cancelled() => break Ok(()),
        }
        if let Err(e) = sup.watch().await {
            break Err(e);
        }
    };
    sup.stop().await;
    eprintln!("local cluster stopped (logs: {})", sup.log_dir().display());
    result
}

#[cfg(test)]
mod tests {
    #[test]
    fn job_ids_are_valid_and_differ() {
        let (a, b) = (super::new_job_id(), super::new_job_id());
        assert_eq!(a.len(), 32);
        assert!(keel_ha::stores::validate_job_id(&a).is_ok());
        assert_ne!(a, b);
    }
}
