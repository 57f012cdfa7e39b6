//! Wiring of a dispatcher process: listeners, election (or the `none` mode), leader
//! retrieval, resource manager, REST, and an orderly shutdown that resigns leadership first.

use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use keel_conf::{Config, HaType};
use keel_ha::election::Contender;
use keel_ha::{LeaderElection, LeaderEpoch, LeaderRetrieval, LeaderView, ZkSettings};
use keel_proto::v1::dispatcher_server::DispatcherServer;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::jobs::{JobManager, JobSettings};
use crate::resource_manager::ResourceManager;
use crate::rest::{router, RestState};
use crate::role::Role;
use crate::rpc::DispatcherService;

/// Process-level options that are not configuration keys.
#[derive(Debug, Clone, Default)]
pub struct DispatcherOptions {
    /// Contender id; generated (`dispatcher-<pid>-<random>`) when absent.
    pub id: Option<String>,
    /// Operators job specs may use; `None` = the built-ins. A custom build passes the same
    /// registry to its workers (`keel_worker::WorkerOptions::registry`).
    pub registry: Option<std::sync::Arc<keel_job::OperatorRegistry>>,
}

async fn bind(what: &str, address: &str, port: u16) -> anyhow::Result<TcpListener> {
    TcpListener::bind((address, port))
        .await
        .with_context(|| format!("cannot bind the {what} listener on {address}:{port}"))
}

/// Binds the first free port of `first..=last` (`rest.bind-port`: a range lets several
/// dispatchers on one host share one configuration). A single port is bound as [`bind`].
async fn bind_first_free(what: &str, address: &str, (first, last): (u16, u16)) -> anyhow::Result<TcpListener> {
    if first == last {
        return bind(what, address, first).await;
    }
    let mut last_error = None;
    for port in first..=last {
        match TcpListener::bind((address, port)).await {
            Ok(listener) => return Ok(listener),
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => last_error = Some(e),
            Err(e) => return Err(e).with_context(|| format!("cannot bind the {what} listener on {address}:{port}")),
        }
    }
    let e = last_error.map_or_else(|| "empty range".to_owned(), |e| e.to_string());
    anyhow::bail!("cannot bind the {what} listener on {address}: every port from {first} to {last} is in use ({e})")
}

/// Runs a dispatcher until `shutdown` fires, then resigns and returns.
pub async fn run_dispatcher(
    config: Config,
    options: DispatcherOptions,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let id = options.id.unwrap_or_else(|| {
        format!("dispatcher-{}-{}", std::process::id(), &uuid::Uuid::new_v4().simple().to_string()[..6])
    });

    let (rpc_address, rpc_port) = match config.ha_type {
        HaType::Zookeeper => (config.rpc_address.clone(), config.rpc_port),
        HaType::None => (config.jobmanager_rpc_address.clone(), config.jobmanager_rpc_port),
    };
    // `jobmanager.bind-host` / `rest.bind-address` choose where to bind (0.0.0.0, say); the
    // address others are told is then the configured one with the bound port.
    let rpc_bind = config.jobmanager_bind_host.clone().unwrap_or_else(|| rpc_address.clone());
    let rpc_listener = bind("rpc", &rpc_bind, rpc_port).await?;
    let rest_bind = config.rest_bind_address.clone().unwrap_or_else(|| config.rest_address.clone());
    let rest_ports = config.rest_bind_port.unwrap_or((config.rest_port, config.rest_port));
    let rest_listener = bind_first_free("rest", &rest_bind, rest_ports).await?;
    let rpc_addr: SocketAddr = rpc_listener.local_addr()?;
    let rest_addr: SocketAddr = rest_listener.local_addr()?;
    let rpc_public = match &config.jobmanager_bind_host {
        Some(_) => format!("{rpc_address}:{}", rpc_addr.port()),
        None => rpc_addr.to_string(),
    };
    let rest_public = match &config.rest_bind_address {
        Some(_) => format!("{}:{}", config.rest_address, rest_addr.port()),
        None => rest_addr.to_string(),
    };

    // Role and leader view, from ZooKeeper or fixed for `none`.
    let (role_tx, role_rx) = watch::channel(Role::Standby);
    let mut election = None;
    let mut retrieval = None;
    let mut contenders = None;
    let mut fast_failover = None;
    let leader_rx: watch::Receiver<Option<LeaderView>> = match config.ha_type {
        HaType::Zookeeper => {
            let settings =
                ZkSettings::from_config(&config).context("high-availability.type is zookeeper but no quorum is set")?;
            let handle = LeaderElection::start(
                settings.clone(),
                Contender {
                    id: id.clone(),
                    rpc_address: config.rpc_advertised_address.clone().unwrap_or_else(|| rpc_public.clone()),
                    rest_address: rest_public.clone(),
                },
            );
            let mut leadership = handle.subscribe();
            if config.ha_fast_failover {
                fast_failover = Some((settings.clone(), handle.subscribe()));
            }
            let role_tx = role_tx.clone();
            tokio::spawn(async move {
                loop {
                    let role = Role::from(&*leadership.borrow_and_update());
                    role_tx.send_replace(role);
                    if leadership.changed().await.is_err() {
                        role_tx.send_replace(Role::Standby);
                        return;
                    }
                }
            });
            election = Some(handle);
            contenders = Some(std::sync::Arc::new(crate::dashboard::ContenderReader::new(settings.clone())));
            let r = LeaderRetrieval::start(settings);
            let rx = r.subscribe();
            // The fast failover path: publish this leader's session; as a standby, close a
            // dead leader's session (ha::fastpath).
            if let Some((settings, leadership)) = fast_failover.take() {
                tokio::spawn(keel_ha::fastpath::run(settings, id.clone(), leadership, rx.clone(), shutdown.clone()));
            }
            retrieval = Some(r);
            rx
        }
        HaType::None => {
            // One dispatcher, no standby: its jobs live in a local pointer tree (locked to this
            // process) and the storage directory, and are recovered when it restarts. The epoch
            // stays 1: nobody else can lead.
            let epoch = LeaderEpoch(1);
            let dir = config.local_pointers_dir();
            let meta = keel_ha::LocalMeta::open(&dir).with_context(|| {
                format!("high-availability.type: none keeps this dispatcher's jobs in {}", dir.display())
            })?;
            tracing::warn!(
                pointers = %dir.display(),
                storage = %config.effective_storage_dir().unwrap_or_default(),
                "high-availability.type: none: this dispatcher is the only one, with no standby; its jobs, \
                 checkpoints and results are kept locally and recovered when it restarts on the same directory"
            );
            let fence = keel_ha::Fence::local(std::sync::Arc::new(meta), epoch);
            role_tx.send_replace(Role::Leading { epoch, fence: Some(fence) });
            let (_tx, rx) = watch::channel(Some(LeaderView {
                leader_id: id.clone(),
                epoch,
                address: rpc_public.clone(),
                rest_address: rest_public.clone(),
                session_id: String::new(),
                latch_node: String::new(),
                since_unix_ms: 0,
            }));
            // Keep the sender alive for the life of the process.
            std::mem::forget(_tx);
            rx
        }
    };

    let security = keel_proto::security::InternalSecurity::from_config(&config).map_err(anyhow::Error::msg)?;
    let rest_tls = keel_proto::security::rest_server_tls(&config).map_err(anyhow::Error::msg)?;
    let rm = ResourceManager::new(
        role_rx.clone(),
        id.clone(),
        config.heartbeat_interval.duration,
        config.heartbeat_timeout.duration,
    )
    .with_security(security.clone());
    let tasks = CancellationToken::new();
    let rm_task = tokio::spawn(rm.clone().run(tasks.clone()));
    let registry = options.registry.clone().unwrap_or_default();
    let jobs = JobManager::new(job_settings(&config, registry)?, rm.clone(), role_rx.clone());
    let jobs_task = tokio::spawn(jobs.clone().run(tasks.clone()));

    let grpc_router = security.server().add_service(DispatcherServer::with_interceptor(
        DispatcherService { rm: rm.clone(), jobs: jobs.clone(), id: id.clone() },
        security.server_check("Dispatcher"),
    ));
    let grpc = {
        let (security, shutdown) = (security.clone(), tasks.clone().cancelled_owned());
        async move { security.serve(grpc_router, rpc_listener, "Dispatcher", shutdown).await }
    };
    let grpc_task = tokio::spawn(grpc);

    let metrics = std::sync::Arc::new(crate::metrics::DispatcherMetrics::new(crate::metrics::Sources {
        role: role_rx.clone(),
        leader: leader_rx.clone(),
        zk_session: election.as_ref().map(|e| e.session_status()),
        rm: rm.clone(),
        jobs: jobs.clone(),
    }));
    let history_task = tokio::spawn(metrics.history.clone().follow(leader_rx.clone(), role_rx.clone()));
    let rest_state = RestState {
        id: id.clone(),
        cluster_id: config.cluster_id.clone(),
        role: role_rx.clone(),
        leader: leader_rx,
        rm,
        jobs,
        auth_token: config.rest_auth_token.clone(),
        admin_enabled: config.rest_admin_enabled,
        auth_read: config.rest_auth_read,
        shutdown: shutdown.clone(),
        isolator: election.as_ref().map(|e| e.isolator()),
        metrics,
        contenders,
    };
    let app = router(rest_state);
    let rest_task = match rest_tls {
        None => {
            let rest = axum::serve(rest_listener, app).with_graceful_shutdown(tasks.clone().cancelled_owned());
            tokio::spawn(async move { rest.await })
        }
        Some(tls) => {
            let listener = crate::rest_tls::TlsListener::start(rest_listener, tls, tasks.clone())?;
            let rest = axum::serve(listener, app).with_graceful_shutdown(tasks.clone().cancelled_owned());
            tokio::spawn(async move { rest.await })
        }
    };

    tracing::info!(id = %id, rpc = %rpc_addr, rest = %rest_addr, ha = ?config.ha_type, "dispatcher started");
    let ready =
        serde_json::json!({"role": "dispatcher", "id": id, "rpc": rpc_addr.to_string(), "rest": rest_addr.to_string()});
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "keel-ready {ready}")?;
        out.flush()?;
    }

    shutdown.cancelled().await;
    tracing::info!(id = %id, "shutting down: resigning leadership first");
    if let Some(e) = election {
        e.shutdown().await;
    }
    tasks.cancel();
    if let Some(r) = retrieval {
        r.shutdown().await;
    }
    history_task.abort();
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        let _ = rm_task.await;
        let _ = jobs_task.await;
        let _ = grpc_task.await;
        let _ = rest_task.await;
    })
    .await;
    tracing::info!(id = %id, "dispatcher stopped");
    Ok(())
}

/// The job layer's settings; storage directories are opened here so a bad URI stops the
/// dispatcher at start with an error naming the key.
fn job_settings(config: &Config, registry: std::sync::Arc<keel_job::OperatorRegistry>) -> anyhow::Result<JobSettings> {
    let storage_options = keel_ha::stores::storage_options(config);
    let ha_storage = match &config.effective_storage_dir() {
        Some(uri) => Some(
            keel_storage::StorageDir::open(&format!("{}/ha", uri.trim_end_matches('/')), &storage_options)
                .with_context(|| format!("high-availability.storageDir {uri}"))?,
        ),
        None => None,
    };
    let checkpoints_uri = config.effective_checkpoints_dir().unwrap_or_default();
    let checkpoints = if checkpoints_uri.is_empty() {
        None
    } else {
        Some(
            keel_storage::StorageDir::open(&checkpoints_uri, &storage_options)
                .with_context(|| format!("state.checkpoints.dir {checkpoints_uri}"))?,
        )
    };
    Ok(JobSettings {
        ha_storage,
        checkpoints,
        checkpoints_uri,
        storage_options,
        num_retained: config.checkpoints_num_retained.max(1) as usize,
        checkpoint_timeout: config.checkpoint_timeout.duration,
        recovery_worker_wait: config.recovery_worker_wait.duration,
        adoption_timeout: config.adoption_timeout.duration,
        registry,
        job_defaults: keel_job::JobDefaults::from_config(config),
        savepoints_uri: config.savepoints_dir.clone(),
    })
}
