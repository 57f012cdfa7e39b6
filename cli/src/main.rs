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
    },
    /// Run a worker: follow the leader, register, offer slots.
    Worker,
    /// Who leads, at which epoch, and the standbys (read from ZooKeeper).
    Status {
        #[arg(long)]
        json: bool,
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

fn load(args: &ConfArgs) -> anyhow::Result<keel_conf::Loaded> {
    let file = config_file(args);
    let loaded = keel_conf::load(file.as_deref(), &args.define).map_err(|e| anyhow::anyhow!("{e}"))?;
    for w in &loaded.warnings {
        eprintln!("warning: {w}");
    }
    Ok(loaded)
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_target(false).init();
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
        Command::Dispatcher { id } => {
            init_logging();
            let loaded = load(&cli.conf)?;
            let shutdown = shutdown_on_signals();
            keel_coordinator::run_dispatcher(loaded.config, keel_coordinator::DispatcherOptions { id }, shutdown).await
        }
        Command::Worker => {
            init_logging();
            let loaded = load(&cli.conf)?;
            let shutdown = shutdown_on_signals();
            keel_worker::run_worker(loaded.config, keel_worker::WorkerOptions::default(), shutdown).await
        }
        Command::Status { json } => {
            let loaded = load(&cli.conf)?;
            let view = inspect::read(&loaded.config).await.context("keel status")?;
            if json {
                println!("{}", serde_json::to_string_pretty(&inspect::status_json(&view))?);
            } else {
                print!("{}", inspect::status_table(&view));
            }
            Ok(())
        }
        Command::Ha { command: HaCommand::Inspect { json } } => {
            let loaded = load(&cli.conf)?;
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
