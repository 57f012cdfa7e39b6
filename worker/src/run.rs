//! Wiring of a worker process.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use keel_conf::{Config, HaType};
use keel_ha::{LeaderEpoch, LeaderRetrieval, LeaderView, ZkSettings};
use keel_proto::v1::worker_server::WorkerServer;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::registration::follow_leader;
use crate::service::WorkerService;
use crate::state::WorkerState;

/// Process-level options that are not configuration keys.
#[derive(Clone, Default)]
pub struct WorkerOptions {
    /// Operators available to jobs; `None` = the built-ins. A custom worker build registers
    /// its own operators here (see `keel_job::OperatorRegistry`).
    pub registry: Option<Arc<keel_job::OperatorRegistry>>,
}

/// Runs a worker until `shutdown` fires.
pub async fn run_worker(config: Config, options: WorkerOptions, shutdown: CancellationToken) -> anyhow::Result<()> {
    // `taskmanager.host` (Flink's key) is this worker's address: bound and registered.
    let rpc_host = config.taskmanager_host.as_deref().unwrap_or(&config.rpc_address);
    let listener = TcpListener::bind((rpc_host, config.rpc_port))
        .await
        .with_context(|| format!("cannot bind the rpc listener on {rpc_host}:{}", config.rpc_port))?;
    let rpc_addr = listener.local_addr()?;
    let id = config.taskmanager_resource_id.clone().unwrap_or_else(|| {
        format!("worker-{}-{}", std::process::id(), &uuid::Uuid::new_v4().simple().to_string()[..6])
    });
    let advertised = config.rpc_advertised_address.clone().unwrap_or_else(|| rpc_addr.to_string());
    let security = keel_proto::security::InternalSecurity::from_config(&config).map_err(anyhow::Error::msg)?;
    let state =
        Arc::new(WorkerState::new(id.clone(), advertised, config.taskmanager_slots).with_security(security.clone()));
    // Each worker process gets its own local state directory (RocksDB files cannot be shared
    // between processes); a stable taskmanager.resource-id keeps it across restarts, which is
    // what local recovery needs.
    let backend = match config.state_backend {
        keel_conf::StateBackendKind::Rocksdb => keel_state::BackendKind::RocksDb,
        keel_conf::StateBackendKind::Hashmap => keel_state::BackendKind::HashMap,
    };
    let state_options = keel_state::StateOptions::new(&config.effective_rocksdb_localdir())
        .with_local_dir(config.effective_rocksdb_localdir().join(&id))
        .with_backend(backend)
        .with_incremental(config.state_incremental)
        .with_local_recovery(config.state_local_recovery);
    let host = Arc::new(crate::tasks::TaskHost::new(
        state.clone(),
        crate::tasks::HostSettings {
            storage_options: keel_ha::stores::storage_options(&config),
            state: state_options,
            adoption_timeout: config.adoption_timeout.duration,
        },
        options.registry.clone().unwrap_or_default(),
    ));

    let mut retrieval = None;
    let leader_rx = match config.ha_type {
        HaType::Zookeeper => {
            let settings =
                ZkSettings::from_config(&config).context("high-availability.type is zookeeper but no quorum is set")?;
            let r = LeaderRetrieval::start(settings);
            let rx = r.subscribe();
            retrieval = Some(r);
            rx
        }
        HaType::None => {
            let (tx, rx) = watch::channel(Some(LeaderView {
                leader_id: String::new(),
                epoch: LeaderEpoch(1),
                address: format!("{}:{}", config.jobmanager_rpc_address, config.jobmanager_rpc_port),
                rest_address: String::new(),
                session_id: String::new(),
                latch_node: String::new(),
                since_unix_ms: 0,
            }));
            std::mem::forget(tx);
            rx
        }
    };

    let tasks = CancellationToken::new();
    let follow = tokio::spawn(follow_leader(
        state.clone(),
        host.clone(),
        leader_rx,
        config.heartbeat_timeout.duration,
        tasks.clone(),
    ));
    let router = security.server().add_service(WorkerServer::with_interceptor(
        WorkerService {
            state: state.clone(),
            host: host.clone(),
            admin_token: config.rest_auth_token.clone(),
            shutdown: shutdown.clone(),
            disable_epoch_check: crate::service::epoch_check_disabled(),
        },
        security.server_check("Worker"),
    ));
    let grpc = {
        let (security, shutdown) = (security.clone(), tasks.clone().cancelled_owned());
        async move { security.serve(router, listener, "Worker", shutdown).await }
    };
    let grpc_task = tokio::spawn(grpc);

    // GET /metrics on metrics.reporter.prom.port, on the host the RPC listener uses
    // (taskmanager.host, else rpc.address); a worker without a free port still runs.
    let mut metrics_addr = None;
    let metrics_host = config.taskmanager_host.as_deref().unwrap_or(&config.rpc_address);
    let metrics_task = match crate::metrics::bind(metrics_host, config.metrics_prom_port).await {
        Ok(listener) => {
            metrics_addr = listener.local_addr().ok();
            if let Some(a) = metrics_addr {
                *state.metrics_address.lock().expect("metrics address lock") = a.to_string();
            }
            let registry = crate::metrics::registry(state.clone(), host.clone());
            let read_token = config.rest_auth_token.clone().filter(|_| config.rest_auth_read);
            Some(tokio::spawn(crate::metrics::serve(listener, registry, state.clone(), read_token, tasks.clone())))
        }
        Err(e) => {
            tracing::warn!("{e:#}; this worker runs without /metrics");
            None
        }
    };

    tracing::info!(id = %id, rpc = %rpc_addr, metrics = ?metrics_addr, slots = config.taskmanager_slots, "worker started");
    let ready = serde_json::json!({
        "role": "worker",
        "id": id,
        "rpc": rpc_addr.to_string(),
        "metrics": metrics_addr.map(|a| a.to_string()),
    });
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "keel-ready {ready}")?;
        out.flush()?;
    }

    shutdown.cancelled().await;
    // Leave first, so the leader schedules nothing more here and restarts what ran here
    // at once; then stop the subtasks.
    crate::registration::deregister(&state, "worker stopping", Duration::from_secs(2)).await;
    host.cancel_all("worker stopping");
    tasks.cancel();
    if let Some(r) = retrieval {
        r.shutdown().await;
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        let _ = follow.await;
        let _ = grpc_task.await;
        if let Some(t) = metrics_task {
            let _ = t.await;
        }
    })
    .await;
    tracing::info!(id = %id, "worker stopped");
    Ok(())
}
