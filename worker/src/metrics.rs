//! The worker's metrics: `GET /metrics` (Prometheus / OpenMetrics text, encoded by
//! `prometheus-client`) on its own small HTTP listener, `metrics.reporter.prom.port` (a port or
//! a range; the first free one is used, `0` picks any), on the worker's RPC host.
//!
//! * `keel_worker_commands_refused_total{reason}`: leader commands this worker refused, by
//!   reason (`stale_epoch`, `unconfirmed_epoch`, `leader_unknown`, `stale_attempt`,
//!   `not_registered`, `invalid`);
//! * per running subtask (`job_id`, `subtask`, `attempt` labels): `keel_task_records_in_total`,
//!   `keel_task_records_out_total`, `keel_task_busy_seconds_total`;
//! * `keel_worker_registered`, `keel_worker_registered_epoch`, `keel_worker_highest_epoch`,
//!   `keel_worker_slots`, `keel_worker_running_tasks`.
//!
//! With `rest.auth.token` set and `rest.auth.read: true`, `/metrics` needs
//! `Authorization: Bearer <token>` (the rule of the dispatchers' GET endpoints).

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::state::WorkerState;
use crate::tasks::TaskHost;

/// The content type of `GET /metrics`.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Why a command was refused (the `reason` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Refusal {
    /// Stamped with an epoch older than the highest confirmed one.
    StaleEpoch,
    /// Stamped with an epoch ZooKeeper has not confirmed.
    UnconfirmedEpoch,
    /// The worker has not learnt the current leader yet.
    LeaderUnknown,
    /// A deploy of an attempt older than one seen here.
    StaleAttempt,
    /// A deploy while not registered with the command's leader.
    NotRegistered,
    /// A malformed deploy.
    Invalid,
    /// An adoption of subtasks that do not run here.
    NotRunning,
}

impl Refusal {
    pub fn label(self) -> &'static str {
        match self {
            Refusal::StaleEpoch => "stale_epoch",
            Refusal::UnconfirmedEpoch => "unconfirmed_epoch",
            Refusal::LeaderUnknown => "leader_unknown",
            Refusal::StaleAttempt => "stale_attempt",
            Refusal::NotRegistered => "not_registered",
            Refusal::Invalid => "invalid",
            Refusal::NotRunning => "not_running",
        }
    }
}

/// Event counters of one worker (kept in its [`WorkerState`]).
#[derive(Debug, Clone, Default)]
pub struct WorkerCounters {
    refused: Family<[(&'static str, &'static str); 1], Counter>,
}

impl WorkerCounters {
    pub fn refused(&self, why: Refusal) {
        self.refused.get_or_create(&[("reason", why.label())]).inc();
    }
}

/// Reads the worker's state and its running subtasks at scrape time.
struct Live {
    state: Arc<WorkerState>,
    host: Arc<TaskHost>,
}

impl std::fmt::Debug for Live {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Live")
    }
}

fn gauge(encoder: &mut DescriptorEncoder, name: &str, help: &str, value: i64) -> Result<(), std::fmt::Error> {
    let g = ConstGauge::new(value);
    g.encode(encoder.encode_descriptor(name, help, None, g.metric_type())?)
}

impl Collector for Live {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let status = self.state.status();
        gauge(
            &mut encoder,
            "keel_worker_registered",
            "1 while registered with a leader",
            i64::from(status.registered_epoch > 0),
        )?;
        gauge(
            &mut encoder,
            "keel_worker_registered_epoch",
            "epoch of the leader this worker is registered with (0: none)",
            status.registered_epoch,
        )?;
        gauge(
            &mut encoder,
            "keel_worker_highest_epoch",
            "highest leader epoch this worker has confirmed (its fencing gate)",
            status.highest_epoch,
        )?;
        gauge(&mut encoder, "keel_worker_slots", "task slots this worker offers", i64::from(status.slots))?;
        let tasks = self.host.task_metrics();
        gauge(&mut encoder, "keel_worker_running_tasks", "subtasks running here", tasks.len() as i64)?;
        if tasks.is_empty() {
            return Ok(());
        }
        type Read = fn(&keel_job::TaskMetrics) -> f64;
        let series: [(&str, &str, Read); 3] = [
            ("keel_task_records_in", "records each subtask read from its source", |m| {
                m.records_in.load(Ordering::Relaxed) as f64
            }),
            ("keel_task_records_out", "records each subtask wrote to its sink", |m| {
                m.records_out.load(Ordering::Relaxed) as f64
            }),
            ("keel_task_busy_seconds", "time each subtask spent processing (not waiting)", |m| {
                m.busy_nanos.load(Ordering::Relaxed) as f64 / 1e9
            }),
        ];
        for (name, help, read) in series {
            let c = ConstCounter::new(0.0f64);
            let mut family = encoder.encode_descriptor(name, help, None, c.metric_type())?;
            for t in &tasks {
                let (subtask, attempt) = (t.subtask.to_string(), t.attempt.to_string());
                let labels =
                    [("job_id", t.job_id.as_str()), ("subtask", subtask.as_str()), ("attempt", attempt.as_str())];
                ConstCounter::new(read(&t.metrics)).encode(family.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}

#[derive(Clone)]
struct Endpoint {
    registry: Arc<Registry>,
    /// For `GET /ready`: registered with a leader or not.
    state: Arc<WorkerState>,
    /// `Some(token)` when `rest.auth.read` asks GET requests for it.
    read_token: Option<String>,
}

/// The registry of this worker: its counters and the scrape-time collector.
pub fn registry(state: Arc<WorkerState>, host: Arc<TaskHost>) -> Registry {
    let mut registry = Registry::default();
    if std::env::var("KEEL_TEST_DISABLE_WORKER_METRICS").is_ok_and(|v| v == "1") {
        tracing::error!("KEEL_TEST_DISABLE_WORKER_METRICS=1: no worker metric is registered (test-only switch)");
        return registry;
    }
    registry.register(
        "keel_worker_commands_refused",
        "leader commands this worker refused, by reason",
        state.counters.refused.clone(),
    );
    registry.register_collector(Box::new(Live { state, host }));
    registry
}

/// Binds the first free port of `ports` on `address` (`(0, 0)`: any free port).
///
/// # Notable errors
/// The last bind error, naming the address and the range, when no port of the range is free.
pub async fn bind(address: &str, ports: (u16, u16)) -> anyhow::Result<TcpListener> {
    let mut last = None;
    for port in ports.0..=ports.1 {
        match TcpListener::bind((address, port)).await {
            Ok(l) => return Ok(l),
            Err(e) => last = Some(e),
        }
    }
    let e = last.map_or_else(|| "empty range".to_string(), |e| e.to_string());
    anyhow::bail!(
        "cannot bind the metrics listener (metrics.reporter.prom.port) on {address}:{}-{}: {e}",
        ports.0,
        ports.1
    )
}

/// Serves `GET /metrics` and `GET /ready` on `listener` until `stop` fires.
pub async fn serve(
    listener: TcpListener,
    registry: Registry,
    state: Arc<WorkerState>,
    read_token: Option<String>,
    stop: CancellationToken,
) {
    let endpoint = Endpoint { registry: Arc::new(registry), state, read_token };
    let app = axum::Router::new()
        .route("/metrics", axum::routing::get(metrics))
        .route("/ready", axum::routing::get(ready))
        .fallback(|| async { (StatusCode::NOT_FOUND, "no such endpoint; known: GET /metrics, GET /ready\n") })
        .with_state(endpoint);
    let addr: Option<SocketAddr> = listener.local_addr().ok();
    if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(stop.cancelled_owned()).await {
        tracing::warn!(?addr, %e, "metrics listener stopped");
    }
}

/// `GET /ready`: 200 while this worker is registered with a leader (a readiness probe that
/// means "can run tasks"), 503 naming why not otherwise. Never needs a token: it says nothing
/// but registered or not.
async fn ready(State(endpoint): State<Endpoint>) -> Response {
    match endpoint.state.registration() {
        Some(r) => (StatusCode::OK, format!("registered with {} (epoch {})\n", r.leader_id, r.epoch.0)).into_response(),
        None => (StatusCode::SERVICE_UNAVAILABLE, "not registered with a leader\n").into_response(),
    }
}

async fn metrics(State(endpoint): State<Endpoint>, headers: HeaderMap) -> Response {
    if let Some(token) = &endpoint.read_token {
        let given = headers.get(axum::http::header::AUTHORIZATION).and_then(|v| v.to_str().ok()).unwrap_or("");
        if given.strip_prefix("Bearer ") != Some(token.as_str()) {
            return (
                StatusCode::UNAUTHORIZED,
                "GET /metrics needs Authorization: Bearer <rest.auth.token> (rest.auth.read is true)\n",
            )
                .into_response();
        }
    }
    let mut body = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut body, &endpoint.registry) {
        return (StatusCode::INTERNAL_SERVER_ERROR, format!("encoding metrics failed: {e}\n")).into_response();
    }
    ([(axum::http::header::CONTENT_TYPE, CONTENT_TYPE)], body).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_counted_by_reason() {
        let counters = WorkerCounters::default();
        counters.refused(Refusal::StaleEpoch);
        counters.refused(Refusal::StaleEpoch);
        counters.refused(Refusal::NotRegistered);
        let mut registry = Registry::default();
        registry.register("keel_worker_commands_refused", "refused", counters.refused.clone());
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(text.contains("keel_worker_commands_refused_total{reason=\"stale_epoch\"} 2\n"), "{text}");
        assert!(text.contains("keel_worker_commands_refused_total{reason=\"not_registered\"} 1\n"), "{text}");
        assert!(!text.contains("unconfirmed_epoch"), "{text}");
    }
}
