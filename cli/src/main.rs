//! `keel`: the one binary of Keel.
//!
//! `keel dispatcher` / `keel worker` run the processes; `keel status`, `keel ha inspect` read
//! ZooKeeper directly; `keel config show` prints the effective configuration and where each
//! value came from. Every subcommand takes `--config FILE` and repeated `-D key=value`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use tokio_util::sync::CancellationToken;

mod application;
mod client;
mod drill;
mod events;
mod habits;
mod inspect;

#[derive(Parser)]
#[command(name = "keel", version, about = "Keel: a ZooKeeper-coordinated HA runtime for checkpointed stream jobs")]
struct Cli {
    #[command(flatten)]
    conf: ConfArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Clone)]
struct ConfArgs {
    /// Configuration file (Flink-style config.yaml). Default: $KEEL_CONF_DIR/config.yaml, else
    /// conf/config.yaml when it exists, else built-in defaults only.
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Override one key, `-D key=value` (repeatable; beats the file).
    #[arg(short = 'D', global = true, value_name = "KEY=VALUE")]
    define: Vec<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Run a dispatcher: contend for leadership, lead the workers, serve REST.
    Dispatcher {
        /// Contender id (default: dispatcher-<pid>-<random>).
        #[arg(long)]
        id: Option<String>,
        /// Append this process's history (leadership, commands, checkpoints, job states) as
        /// JSON lines to FILE.
        #[arg(long, value_name = "FILE")]
        events: Option<PathBuf>,
    },
    /// Run a worker: follow the leader, register, offer slots, run subtasks.
    Worker {
        /// Append this process's history as JSON lines to FILE.
        #[arg(long, value_name = "FILE")]
        events: Option<PathBuf>,
    },
    /// A local cluster with nothing else installed: a dispatcher and workers on this host as
    /// children of this process, with high-availability.type none (jobs kept under
    /// io.tmp.dirs, recovered when it starts again). Runs until Ctrl-C / SIGTERM.
    Local {
        /// How many workers to start.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=64))]
        workers: u32,
        /// Where the children's logs go (default: <io.tmp.dirs>/keel-local).
        #[arg(long, value_name = "DIR")]
        log_dir: Option<PathBuf>,
    },
    /// Application mode: start a cluster dedicated to one job (its own cluster id), submit the
    /// job, print its states, and stop the cluster when the job ends (exit 0 for FINISHED).
    /// The dispatcher (and each worker) is started at most application-attempts times.
    RunApplication {
        /// The job spec file.
        spec: PathBuf,
        /// The job id (default: generated); the cluster id is /application-<job id>.
        #[arg(long)]
        job_id: Option<String>,
        /// Run with this parallelism, replacing the spec's (Flink's `-p`).
        #[arg(long, short = 'p', value_name = "N")]
        parallelism: Option<u32>,
        /// How many workers to start (slots per worker grow to fit the job's parallelism).
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=64))]
        workers: u32,
        /// Where the children's logs go (default: <io.tmp.dirs>/keel-application-<job id>).
        #[arg(long, value_name = "DIR")]
        log_dir: Option<PathBuf>,
    },
    /// Submit a job spec (YAML) to the leader; prints the job id. Always detached: it returns
    /// once the job is accepted (Flink's `-d` is accepted and changes nothing).
    Run {
        /// The job spec file.
        spec: PathBuf,
        /// Start from this savepoint: the URI `keel savepoint` printed, or an absolute path
        /// (read as file://). Flink's `-s` / `--fromSavepoint` work too.
        #[arg(long, short = 's', visible_alias = "fromSavepoint", value_name = "SAVEPOINT")]
        from_savepoint: Option<String>,
        /// Choose the job id (1-64 of [A-Za-z0-9_-]): submitting the same spec under the same
        /// id again is idempotent, so a retry after an unknown outcome never runs it twice.
        #[arg(long)]
        job_id: Option<String>,
        /// Run with this parallelism, replacing the spec's (Flink's `-p`).
        #[arg(long, short = 'p', value_name = "N")]
        parallelism: Option<u32>,
        /// Accepted for Flink's `-d`: `keel run` never waits for the job to end.
        #[arg(long, short = 'd')]
        detached: bool,
        /// Only check the spec, offline (built-in operators, this configuration's defaults):
        /// prints a summary, or the error with the file and line; submits nothing.
        #[arg(long)]
        check: bool,
        /// REST address of a dispatcher, HOST:PORT (default: the leader, found through
        /// ZooKeeper). Flink's `-m` / `--jobmanager` work too.
        #[arg(long, short = 'm', visible_alias = "jobmanager", value_name = "HOST:PORT")]
        rest: Option<String>,
    },
    /// List jobs (running, and ended ones from the result store) with the failure reason.
    List {
        #[arg(long)]
        json: bool,
        /// Only jobs that are not ended (Flink's `-r`).
        #[arg(long, short = 'r', conflicts_with = "all")]
        running: bool,
        /// Every job, ended ones too (the default; Flink's `-a`).
        #[arg(long, short = 'a')]
        all: bool,
        /// REST address of a dispatcher, HOST:PORT (Flink's `-m`).
        #[arg(long, short = 'm', visible_alias = "jobmanager", value_name = "HOST:PORT")]
        rest: Option<String>,
    },
    /// Cancel a job: its tasks stop, its result is recorded, its checkpoints are deleted.
    Cancel {
        job_id: String,
        /// REST address of a dispatcher, HOST:PORT (Flink's `-m`).
        #[arg(long, short = 'm', visible_alias = "jobmanager", value_name = "HOST:PORT")]
        rest: Option<String>,
    },
    /// Stop a job with a savepoint (Flink's `stop`): take a savepoint, then cancel the job once
    /// the savepoint is written; the cancel is durable when this returns. Prints the savepoint.
    Stop {
        job_id: String,
        /// Where the savepoint goes: a URI or an absolute path (default: state.savepoints.dir,
        /// else <checkpoints dir>/savepoints). Flink's `-p` / `--savepointPath`.
        #[arg(long, short = 'p', visible_alias = "savepointPath", value_name = "DIR")]
        savepoint_path: Option<String>,
        /// REST address of a dispatcher, HOST:PORT (Flink's `-m`).
        #[arg(long, short = 'm', visible_alias = "jobmanager", value_name = "HOST:PORT")]
        rest: Option<String>,
    },
    /// Take a savepoint of a running job; prints its location.
    Savepoint {
        job_id: String,
        /// Target directory: a URI or an absolute path, as in Flink's `savepoint <id> <dir>`
        /// (default: state.savepoints.dir, else <checkpoints dir>/savepoints).
        target: Option<String>,
        /// Target directory (same as the positional one).
        #[arg(long, conflicts_with = "target")]
        dir: Option<String>,
        /// REST address of a dispatcher, HOST:PORT (Flink's `-m`).
        #[arg(long, short = 'm', visible_alias = "jobmanager", value_name = "HOST:PORT")]
        rest: Option<String>,
    },
    /// Who leads, at which epoch, and the standbys (read from ZooKeeper).
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Failover drills against a live cluster, with a timed report.
    Drill {
        #[command(subcommand)]
        command: DrillCommand,
        /// Do not ask for confirmation.
        #[arg(long, global = true)]
        yes: bool,
        /// Run even without a standby or without completed checkpoints.
        #[arg(long, global = true)]
        force: bool,
        /// Print the report as JSON.
        #[arg(long, global = true)]
        json: bool,
        /// Give up watching after this long (e.g. 120s).
        #[arg(long, global = true, default_value = "120 s", value_parser = parse_duration)]
        timeout: std::time::Duration,
    },
    /// A chaos campaign on a local cluster this command starts (ZooKeeper, dispatchers,
    /// workers, fault proxies): seeded faults, a workload, a verdict on every invariant, and
    /// report.json / report.html.
    Chaos {
        /// Seed of the fault schedule (replay a failing run with the same seed).
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// How long faults are injected (then the jobs finish and the checker runs).
        #[arg(long, default_value = "60 s", value_parser = parse_duration)]
        duration: std::time::Duration,
        /// Comma-separated nemeses, or `all`.
        #[arg(long, default_value = "all")]
        nemesis: String,
        /// Where logs, histories and the report go (default: .keel-chaos/seed-<seed>).
        #[arg(long)]
        workdir: Option<PathBuf>,
        /// Keep HA storage and checkpoints on an S3-compatible server (moto).
        #[arg(long)]
        s3: bool,
    },
    /// Debugging tools for operators and tests.
    #[command(hide = true)]
    Debug {
        #[command(subcommand)]
        command: DebugCommand,
    },
    /// High-availability tools.
    Ha {
        #[command(subcommand)]
        command: HaCommand,
    },
    /// Configuration tools.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
}

#[derive(Subcommand)]
enum DrillCommand {
    /// Kill the leader (hard = SIGKILL, graceful = SIGTERM, pause = SIGSTOP past the session).
    KillLeader {
        #[arg(long, value_enum, default_value = "hard")]
        mode: drill::Mode,
        /// How long a pause lasts (default: twice the session timeout plus 1 s).
        #[arg(long, value_parser = parse_duration)]
        pause: Option<std::time::Duration>,
    },
    /// Make the leader drop its ZooKeeper session (it contends again as a standby).
    IsolateLeader,
    /// Kill one worker (SIGKILL); its tasks restart from the latest checkpoint elsewhere.
    KillWorker { id: String },
}

fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    keel_conf::parse_duration(s)
}

#[derive(Subcommand)]
enum DebugCommand {
    /// Send one heartbeat command stamped with EPOCH to a worker, as a (possibly stale)
    /// leader would; prints whether the worker accepted or refused it.
    SendCommand {
        /// The worker's gRPC address (host:port).
        #[arg(long)]
        worker: String,
        #[arg(long)]
        epoch: i64,
        #[arg(long, default_value = "keel-debug")]
        from: String,
    },
}

#[derive(Subcommand)]
enum HaCommand {
    /// Everything ZooKeeper holds for this cluster: leader, contenders, znodes.
    Inspect {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// The effective configuration and where each value came from.
    Show {
        #[arg(long)]
        json: bool,
    },
    /// The configuration reference (markdown), generated from the key list.
    Reference,
}

fn config_file(args: &ConfArgs) -> Option<PathBuf> {
    if let Some(p) = &args.config {
        return Some(p.clone());
    }
    if let Some(dir) = std::env::var_os("KEEL_CONF_DIR") {
        let p = PathBuf::from(dir).join("config.yaml");
        if p.exists() {
            return Some(p);
        }
    }
    let p = PathBuf::from("conf/config.yaml");
    p.exists().then_some(p)
}

/// A client to a worker's gRPC service, secured as the configuration says
/// (`security.internal.secret`, `security.ssl.internal.*`).
pub(crate) async fn internal_worker_client(
    config: &keel_conf::Config,
    worker: &str,
) -> anyhow::Result<keel_proto::v1::worker_client::WorkerClient<keel_proto::security::InternalChannel>> {
    let security = keel_proto::security::InternalSecurity::from_config(config).map_err(anyhow::Error::msg)?;
    let channel = security
        .endpoint(worker)
        .map_err(anyhow::Error::msg)?
        .connect()
        .await
        .with_context(|| format!("cannot reach worker {worker}"))?;
    Ok(keel_proto::v1::worker_client::WorkerClient::new(security.intercept(channel)))
}

fn load(args: &ConfArgs) -> anyhow::Result<keel_conf::Loaded> {
    let file = config_file(args);
    let loaded = keel_conf::load(file.as_deref(), &args.define).map_err(|e| anyhow::anyhow!("{e}"))?;
    for w in &loaded.warnings {
        eprintln!("warning: {w}");
    }
    Ok(loaded)
}

/// [`load`] for one process: prints only the warnings about keys `process` reads (a client
/// command does not repeat a dispatcher's or a worker's warnings).
fn load_as(args: &ConfArgs, process: keel_conf::Process) -> anyhow::Result<keel_conf::Loaded> {
    let file = config_file(args);
    let loaded = keel_conf::load(file.as_deref(), &args.define).map_err(|e| anyhow::anyhow!("{e}"))?;
    for w in loaded.warnings_for(process) {
        eprintln!("warning: {w}");
    }
    Ok(loaded)
}

/// `--config FILE` and the `-D`s as given, for the children of `keel local` / `run-application`.
fn child_args(args: &ConfArgs) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(file) = config_file(args) {
        let file = std::fs::canonicalize(&file).unwrap_or(file);
        out.extend(["--config".to_string(), file.display().to_string()]);
    }
    for d in &args.define {
        out.extend(["-D".to_string(), d.clone()]);
    }
    out
}

fn init_logging(events: Option<(&std::path::Path, &str, &'static str)>) -> anyhow::Result<()> {
    use tracing_subscriber::layer::{Layer, SubscriberExt};
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    // Colour only on a terminal: logs redirected to a file (cluster scripts, systemd, a
    // container's log driver) are plain text. NO_COLOR turns colour off on a terminal too.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr()) && std::env::var_os("NO_COLOR").is_none();
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .with_target(false)
        .with_filter(filter);
    let history = match events {
        Some((path, process, role)) => Some(
            events::EventsLayer::open(path, process, role)
                .with_context(|| format!("cannot open the events file {}", path.display()))?,
        ),
        None => None,
    };
    tracing_subscriber::registry().with(fmt).with(history).init();
    Ok(())
}

fn generated_id(prefix: &str) -> String {
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    format!("{prefix}-{}-{:06x}", std::process::id(), nanos & 0xff_ffff)
}

/// Cancels on SIGTERM or SIGINT.
fn shutdown_on_signals() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
        let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: stopping gracefully"),
            _ = int.recv() => tracing::info!("SIGINT: stopping gracefully"),
        }
        t.cancel();
    });
    token
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Config { command: ConfigCommand::Reference } => {
            print!("{}", keel_conf::reference_markdown());
            Ok(())
        }
        Command::Config { command: ConfigCommand::Show { json } } => {
            let loaded = load(&cli.conf)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&loaded.to_json())?);
            } else {
                print!("{}", loaded.show());
            }
            Ok(())
        }
        Command::Dispatcher { id, events } => {
            let loaded = load_as(&cli.conf, keel_conf::Process::Dispatcher)?;
            let id = id.unwrap_or_else(|| generated_id("dispatcher"));
            init_logging(events.as_deref().map(|p| (p, id.as_str(), "dispatcher")))?;
            let shutdown = shutdown_on_signals();
            keel_coordinator::run_dispatcher(
                loaded.config,
                keel_coordinator::DispatcherOptions { id: Some(id), registry: None },
                shutdown,
            )
            .await
        }
        Command::Worker { events } => {
            let mut loaded = load_as(&cli.conf, keel_conf::Process::Worker)?;
            let id = loaded.config.taskmanager_resource_id.clone().unwrap_or_else(|| generated_id("worker"));
            loaded.config.taskmanager_resource_id = Some(id.clone());
            init_logging(events.as_deref().map(|p| (p, id.as_str(), "worker")))?;
            let shutdown = shutdown_on_signals();
            keel_worker::run_worker(loaded.config, keel_worker::WorkerOptions::default(), shutdown).await
        }
        Command::Local { workers, log_dir } => {
            let loaded = load_as(&cli.conf, keel_conf::Process::Client)?;
            let plan = application::Plan::new(
                &loaded.config,
                child_args(&cli.conf),
                &["high-availability.type=none".to_string()],
                workers,
                log_dir,
                "keel-local",
            );
            let shutdown = shutdown_on_signals();
            let sup = application::Supervisor::start(plan).await?;
            eprintln!(
                "Keel local cluster (high-availability.type none, no standby): {}\n  REST: http://{}\n  submit: keel run -m {} job.yaml\n  logs: {}\n  Ctrl-C stops it; jobs are kept and recovered at the next start",
                sup.describe(),
                sup.rest(),
                sup.rest(),
                sup.log_dir().display()
            );
            println!("rest: {}", sup.rest());
            application::run_local(sup, shutdown).await
        }
        Command::RunApplication { spec, job_id, parallelism, workers, log_dir } => {
            let loaded = load_as(&cli.conf, keel_conf::Process::Client)?;
            let mut text =
                std::fs::read_to_string(&spec).with_context(|| format!("cannot read job spec {}", spec.display()))?;
            if let Some(p) = parallelism {
                text = habits::with_parallelism(&text, p)?;
            }
            let parallelism = habits::spec_parallelism(&loaded.config, &spec, &text)?;
            let job_id = job_id.unwrap_or_else(application::new_job_id);
            keel_ha::stores::validate_job_id(&job_id).map_err(|e| anyhow::anyhow!("--job-id: {e}"))?;
            let slots = loaded.config.taskmanager_slots.max(parallelism.div_ceil(workers));
            let overrides = [
                format!("high-availability.cluster-id=/application-{job_id}"),
                format!("taskmanager.numberOfTaskSlots={slots}"),
            ];
            let dir = format!("keel-application-{job_id}");
            let plan =
                application::Plan::new(&loaded.config, child_args(&cli.conf), &overrides, workers, log_dir, &dir);
            let shutdown = shutdown_on_signals();
            let sup = application::Supervisor::start(plan).await?;
            eprintln!(
                "application cluster /application-{job_id} ({}, REST http://{}, logs {}); application-attempts {}",
                sup.describe(),
                sup.rest(),
                sup.log_dir().display(),
                loaded.config.application_attempts
            );
            let name = spec.display().to_string();
            application::run_application(sup, &loaded.config, &job_id, &name, text, shutdown).await
        }
        Command::Run { spec, from_savepoint, job_id, parallelism, detached: _, check, rest } => {
            let loaded = load_as(&cli.conf, keel_conf::Process::Client)?;
            let mut text =
                std::fs::read_to_string(&spec).with_context(|| format!("cannot read job spec {}", spec.display()))?;
            if let Some(p) = parallelism {
                text = habits::with_parallelism(&text, p)?;
            }
            if check {
                println!("{}", habits::check_spec(&loaded.config, &spec, &text)?);
                return Ok(());
            }
            let from_savepoint = from_savepoint.map(|sp| habits::location_uri("--from-savepoint", &sp)).transpose()?;
            let addr = client::leader_rest(&loaded.config, rest.as_deref()).await?;
            let api = client::Rest::new(&addr, &loaded.config)?;
            let mut path = "/jobs".to_string();
            let mut query = vec![format!("specName={}", url_escape(&spec.display().to_string()))];
            if let Some(sp) = from_savepoint {
                query.push(format!("fromSavepoint={}", url_escape(&sp)));
            }
            if let Some(id) = job_id {
                query.push(format!("jobId={}", url_escape(&id)));
            }
            if !query.is_empty() {
                path.push('?');
                path.push_str(&query.join("&"));
            }
            let v = api.call(reqwest::Method::POST, &path, Some(text)).await?;
            let id = v["jobid"].as_str().unwrap_or_default();
            eprintln!("Job has been submitted with JobID {id}");
            println!("{id}");
            Ok(())
        }
        Command::List { json, running, all: _, rest } => {
            let loaded = load_as(&cli.conf, keel_conf::Process::Client)?;
            let addr = client::leader_rest(&loaded.config, rest.as_deref()).await?;
            let mut v =
                client::Rest::new(&addr, &loaded.config)?.call(reqwest::Method::GET, "/jobs/overview", None).await?;
            if running {
                if let Some(jobs) = v["jobs"].as_array_mut() {
                    jobs.retain(|j| habits::is_active(j["state"].as_str().unwrap_or("")));
                }
            }
            if json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                print!("{}", habits::jobs_table(&v, running));
            }
            Ok(())
        }
        Command::Stop { job_id, savepoint_path, rest } => {
            let loaded = load_as(&cli.conf, keel_conf::Process::Client)?;
            let dir = savepoint_path.map(|d| habits::location_uri("--savepointPath", &d)).transpose()?;
            let addr = client::leader_rest(&loaded.config, rest.as_deref()).await?;
            let body = serde_json::json!({ "target-directory": dir, "cancel-job": true }).to_string();
            let v = client::Rest::new(&addr, &loaded.config)?
                .call(reqwest::Method::POST, &format!("/jobs/{job_id}/savepoints"), Some(body))
                .await?;
            let location = v["operation"]["location"].as_str().unwrap_or_default();
            eprintln!("Savepoint completed. Path: {location}");
            eprintln!("Stopped job {job_id} (cancelled after the savepoint).");
            println!("{location}");
            Ok(())
        }
        Command::Cancel { job_id, rest } => {
            let loaded = load_as(&cli.conf, keel_conf::Process::Client)?;
            let addr = client::leader_rest(&loaded.config, rest.as_deref()).await?;
            client::Rest::new(&addr, &loaded.config)?
                .call(reqwest::Method::POST, &format!("/jobs/{job_id}/cancel"), None)
                .await?;
            println!("Cancelled job {job_id}.");
            Ok(())
        }
        Command::Savepoint { job_id, target, dir, rest } => {
            let loaded = load_as(&cli.conf, keel_conf::Process::Client)?;
            let dir = target.or(dir).map(|d| habits::location_uri("the savepoint directory", &d)).transpose()?;
            let addr = client::leader_rest(&loaded.config, rest.as_deref()).await?;
            let body = serde_json::json!({ "target-directory": dir }).to_string();
            let v = client::Rest::new(&addr, &loaded.config)?
                .call(reqwest::Method::POST, &format!("/jobs/{job_id}/savepoints"), Some(body))
                .await?;
            let location = v["operation"]["location"].as_str().unwrap_or_default();
            eprintln!("Savepoint completed. Path: {location}");
            println!("{location}");
            Ok(())
        }
        Command::Debug { command: DebugCommand::SendCommand { worker, epoch, from } } => {
            let loaded = load_as(&cli.conf, keel_conf::Process::Client)?;
            let mut client = internal_worker_client(&loaded.config, &worker).await?;
            let command = keel_proto::v1::LeaderCommand {
                epoch,
                leader_id: from,
                kind: Some(keel_proto::v1::leader_command::Kind::Heartbeat(keel_proto::v1::HeartbeatRequest {})),
            };
            let result = client.command(command).await;
            let v = match result {
                Ok(_) => serde_json::json!({"accepted": true}),
                Err(s) => {
                    serde_json::json!({"accepted": false, "code": format!("{:?}", s.code()), "message": s.message()})
                }
            };
            println!("{v}");
            Ok(())
        }
        Command::Chaos { seed, duration, nemesis, workdir, s3 } => {
            let nemeses = chaos_tests::campaign::Nemesis::parse_list(&nemesis).map_err(|e| anyhow::anyhow!(e))?;
            let keel = std::env::current_exe().context("locating the keel binary")?;
            let workdir = workdir.unwrap_or_else(|| PathBuf::from(format!(".keel-chaos/seed-{seed}")));
            let opts = chaos_tests::campaign::CampaignOptions {
                keel,
                seed,
                duration,
                nemeses,
                workdir,
                s3,
                break_fencing: false,
                progress: true,
            };
            let result = tokio::task::spawn_blocking(move || chaos_tests::campaign::run(opts))
                .await
                .context("the chaos campaign panicked")?
                .map_err(|e| anyhow::anyhow!("chaos campaign: {e}"))?;
            print!("{}", result.report.summary_table());
            println!("report: {} and {}", result.report_json.display(), result.report_html.display());
            if !result.report.ok() {
                anyhow::bail!("invariants violated (see the report)");
            }
            Ok(())
        }
        Command::Drill { command, yes, force, json, timeout } => {
            let loaded = load_as(&cli.conf, keel_conf::Process::Client)?;
            let (target, pause) = match command {
                DrillCommand::KillLeader { mode, pause } => (drill::Target::KillLeader(mode), pause),
                DrillCommand::IsolateLeader => (drill::Target::IsolateLeader, None),
                DrillCommand::KillWorker { id } => (drill::Target::KillWorker(id), None),
            };
            drill::run(&loaded.config, target, drill::Options { yes, force, json, timeout, pause }).await
        }
        Command::Status { json } => {
            let loaded = load_as(&cli.conf, keel_conf::Process::Client)?;
            let view = inspect::read(&loaded.config).await.context("keel status")?;
            // The workers, as the leader has them registered (ZooKeeper does not list them).
            // Bounded: a paused or cut-off leader must not hold up `keel status` (an operator
            // runs it in exactly that situation), and the rest of the report is from ZooKeeper.
            const WORKERS_WAIT: std::time::Duration = std::time::Duration::from_secs(3);
            let workers = match &view.leader {
                Some(l) => match client::Rest::new(&l.rest_address, &loaded.config) {
                    Ok(api) => {
                        match tokio::time::timeout(WORKERS_WAIT, api.call(reqwest::Method::GET, "/taskmanagers", None))
                            .await
                        {
                            Ok(r) => r.map_err(|e| format!("{e:#}")),
                            Err(_) => Err(format!(
                                "the leader's REST API ({}) did not answer within {WORKERS_WAIT:?}",
                                l.rest_address
                            )),
                        }
                    }
                    Err(e) => Err(format!("{e:#}")),
                },
                None => Err("no leader to ask".to_owned()),
            };
            if json {
                let mut v = inspect::status_json(&view);
                match &workers {
                    Ok(w) => v["workers"] = w["taskmanagers"].clone(),
                    Err(e) => v["workers_error"] = serde_json::json!(e),
                }
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                print!("{}", inspect::status_table(&view));
                match &workers {
                    Ok(w) => print!("{}", habits::workers_table(w)),
                    Err(e) => println!("\nworkers   unknown: {e}"),
                }
            }
            Ok(())
        }
        Command::Ha { command: HaCommand::Inspect { json } } => {
            let loaded = load_as(&cli.conf, keel_conf::Process::Client)?;
            if loaded.config.ha_type == keel_conf::HaType::None {
                // One dispatcher, no election: its local pointer tree.
                let dir = loaded.config.local_pointers_dir();
                let nodes = keel_ha::LocalMeta::read_snapshot(&dir).context("keel ha inspect")?;
                let file = dir.join("pointers.bin").display().to_string();
                let view = keel_ha::inspect::inspect_local(&nodes, &loaded.config.cluster_id, &file);
                if json {
                    println!("{}", serde_json::to_string_pretty(&view)?);
                } else {
                    println!(
                        "cluster   {} (high-availability.type none: one dispatcher, no election; pointer tree {file})",
                        view.cluster_id
                    );
                    for p in &view.problems {
                        println!("problem   {p}");
                    }
                    print!("{}", inspect::znode_table(&view));
                }
                return Ok(());
            }
            let view = inspect::read(&loaded.config).await.context("keel ha inspect")?;
            if json {
                println!("{}", serde_json::to_string_pretty(&view)?);
            } else {
                print!("{}", inspect::status_table(&view));
                print!("{}", inspect::znode_table(&view));
            }
            Ok(())
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Percent-escapes a query value.
fn url_escape(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
