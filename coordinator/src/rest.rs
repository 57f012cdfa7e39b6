//! The REST API (axum). Field names follow Flink's REST API where Flink has one.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use keel_ha::LeaderView;
use serde_json::json;
use tokio::sync::watch;

use crate::jobs::{JobError, JobManager};
use crate::resource_manager::ResourceManager;
use crate::role::Role;

#[derive(Clone)]
pub struct RestState {
    pub id: String,
    pub cluster_id: String,
    pub role: watch::Receiver<Role>,
    pub leader: watch::Receiver<Option<LeaderView>>,
    pub rm: ResourceManager,
    pub jobs: JobManager,
    /// `rest.auth.token`: required as `Authorization: Bearer <token>` on mutating requests.
    pub auth_token: Option<String>,
    /// Stops this dispatcher gracefully (the admin `terminate` fault).
    pub shutdown: tokio_util::sync::CancellationToken,
    /// Drops the ZooKeeper session (the admin `isolate` fault); `None` without ZooKeeper.
    pub isolator: Option<keel_ha::election::Isolator>,
}

pub fn router(state: RestState) -> Router {
    Router::new()
        .route("/overview", get(overview))
        .route("/taskmanagers", get(taskmanagers))
        .route("/ha/leader", get(ha_leader))
        .route("/jobs", axum::routing::post(submit_job).get(jobs_overview))
        .route("/jobs/overview", get(jobs_overview))
        .route("/jobs/{id}", get(job_detail).patch(job_patch))
        .route("/jobs/{id}/cancel", axum::routing::post(job_cancel))
        .route("/jobs/{id}/checkpoints", get(job_checkpoints))
        .route("/jobs/{id}/savepoints", axum::routing::post(job_savepoint))
        .route("/admin/fault", axum::routing::post(admin_fault))
        .fallback(not_found)
        .with_state(state)
}

async fn not_found(uri: axum::http::Uri) -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(json!({"errors": [format!("no such endpoint: {}; known: GET /overview, GET /taskmanagers, GET /ha/leader, POST /jobs, GET /jobs/overview, GET /jobs/{{id}}, PATCH /jobs/{{id}}?mode=cancel, POST /jobs/{{id}}/cancel, GET /jobs/{{id}}/checkpoints, POST /jobs/{{id}}/savepoints, POST /admin/fault", uri.path())]})),
    )
        .into_response()
}

/// A standby (or suspended leader) answers leader-only endpoints with 503 and says who leads.
fn not_leader(state: &RestState, role: &Role) -> Response {
    let leader = state.leader.borrow().clone();
    let who = match &leader {
        Some(l) => format!("the leader is {} (epoch {}, REST {})", l.leader_id, l.epoch, l.rest_address),
        None => "no leader is known right now".to_string(),
    };
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(json!({
            "errors": [format!("dispatcher {} is {}, not the acting leader; {}", state.id, role.name(), who)],
            "is_leader": false,
            "role": role.name(),
            "leader": leader,
        })),
    )
        .into_response()
}

async fn overview(State(state): State<RestState>) -> Response {
    let role = state.role.borrow().clone();
    let Some(epoch) = role.acting_epoch() else {
        return not_leader(&state, &role);
    };
    let workers = state.rm.workers();
    let total: u32 = workers.iter().map(|w| w.slots_number).sum();
    let free: u32 = workers.iter().map(|w| w.free_slots).sum();
    let (running, finished, cancelled, failed) = state.jobs.counts();
    Json(json!({
        "taskmanagers": workers.len(),
        "slots-total": total,
        "slots-available": free,
        "jobs-running": running,
        "jobs-finished": finished,
        "jobs-cancelled": cancelled,
        "jobs-failed": failed,
        "keel-version": env!("CARGO_PKG_VERSION"),
        "is_leader": true,
        "epoch": epoch,
        "leader_id": state.id,
    }))
    .into_response()
}

async fn taskmanagers(State(state): State<RestState>) -> Response {
    let role = state.role.borrow().clone();
    if role.acting_epoch().is_none() {
        return not_leader(&state, &role);
    }
    Json(json!({ "taskmanagers": state.rm.workers() })).into_response()
}

async fn ha_leader(State(state): State<RestState>) -> Response {
    let role = state.role.borrow().clone();
    let leader = state.leader.borrow().clone();
    Json(json!({
        "leader_id": leader.as_ref().map(|l| l.leader_id.clone()),
        "epoch": leader.as_ref().map(|l| l.epoch),
        "address": leader.as_ref().map(|l| l.address.clone()),
        "rest_address": leader.as_ref().map(|l| l.rest_address.clone()),
        "is_leader": role.acting_epoch().is_some(),
        "role": role.name(),
        "own_epoch": role.epoch(),
        "id": state.id,
        "cluster_id": state.cluster_id,
    }))
    .into_response()
}

fn error(code: StatusCode, message: String) -> Response {
    (code, Json(json!({ "errors": [message] }))).into_response()
}

fn job_error(state: &RestState, e: JobError) -> Response {
    match e {
        JobError::NotLeader(_) => {
            let role = state.role.borrow().clone();
            not_leader(state, &role)
        }
        JobError::InvalidSpec(m) => error(StatusCode::BAD_REQUEST, format!("invalid job spec: {m}")),
        e @ JobError::NotFound(_) => error(StatusCode::NOT_FOUND, e.to_string()),
        e @ JobError::WrongState { .. } => error(StatusCode::CONFLICT, e.to_string()),
        e @ JobError::NotConfigured(_) => error(StatusCode::BAD_REQUEST, e.to_string()),
        e @ JobError::OutcomeUnknown(_) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        JobError::Ha(e) if e.is_temporary() => {
            error(StatusCode::SERVICE_UNAVAILABLE, format!("outcome unknown, retry: {e}"))
        }
        e => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// `Some(401 response)` when `rest.auth.token` is set and the request does not carry it.
fn unauthorized(state: &RestState, headers: &axum::http::HeaderMap) -> Option<Response> {
    let token = state.auth_token.as_ref()?;
    let given = headers.get(axum::http::header::AUTHORIZATION).and_then(|v| v.to_str().ok()).unwrap_or("");
    if given.strip_prefix("Bearer ").is_some_and(|t| t == token) {
        None
    } else {
        Some(error(StatusCode::UNAUTHORIZED, "this endpoint needs Authorization: Bearer <rest.auth.token>".into()))
    }
}

#[derive(serde::Deserialize, Default)]
struct SubmitQuery {
    #[serde(rename = "fromSavepoint")]
    from_savepoint: Option<String>,
    /// A client-chosen job id: a retry with the same id and spec is idempotent.
    #[serde(rename = "jobId")]
    job_id: Option<String>,
}

/// `POST /jobs` with the job spec (YAML) as the body; `?fromSavepoint=<uri>` restores.
async fn submit_job(
    State(state): State<RestState>,
    headers: axum::http::HeaderMap,
    axum::extract::Query(q): axum::extract::Query<SubmitQuery>,
    body: String,
) -> Response {
    if let Some(r) = unauthorized(&state, &headers) {
        return r;
    }
    if body.trim().is_empty() {
        return error(StatusCode::BAD_REQUEST, "empty request body; expected a job spec (YAML)".into());
    }
    match state.jobs.submit(&body, q.from_savepoint, q.job_id).await {
        Ok(id) => (StatusCode::ACCEPTED, Json(json!({ "jobid": id }))).into_response(),
        Err(e) => job_error(&state, e),
    }
}

async fn jobs_overview(State(state): State<RestState>) -> Response {
    match state.jobs.jobs().await {
        Ok(jobs) => Json(json!({ "jobs": jobs })).into_response(),
        Err(e) => job_error(&state, e),
    }
}

async fn job_detail(State(state): State<RestState>, axum::extract::Path(id): axum::extract::Path<String>) -> Response {
    match state.jobs.job(&id).await {
        Ok(job) => Json(job).into_response(),
        Err(e) => job_error(&state, e),
    }
}

async fn job_checkpoints(
    State(state): State<RestState>,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Response {
    match state.jobs.checkpoints(&id).await {
        Ok(v) => Json(v).into_response(),
        Err(e) => job_error(&state, e),
    }
}

#[derive(serde::Deserialize, Default)]
struct PatchQuery {
    mode: Option<String>,
}

/// Flink's `PATCH /jobs/:id?mode=cancel`.
async fn job_patch(
    State(state): State<RestState>,
    headers: axum::http::HeaderMap,
    axum::extract::Path(id): axum::extract::Path<String>,
    axum::extract::Query(q): axum::extract::Query<PatchQuery>,
) -> Response {
    match q.mode.as_deref() {
        None | Some("cancel") => job_cancel(State(state), headers, axum::extract::Path(id)).await,
        Some(other) => error(StatusCode::BAD_REQUEST, format!("unknown mode {other:?}; expected mode=cancel")),
    }
}

async fn job_cancel(
    State(state): State<RestState>,
    headers: axum::http::HeaderMap,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Response {
    if let Some(r) = unauthorized(&state, &headers) {
        return r;
    }
    match state.jobs.cancel(&id).await {
        Ok(()) => (StatusCode::ACCEPTED, Json(json!({ "jobid": id, "state": "CANCELED" }))).into_response(),
        Err(e) => job_error(&state, e),
    }
}

#[derive(serde::Deserialize, Default)]
struct SavepointBody {
    #[serde(rename = "target-directory")]
    target_directory: Option<String>,
}

/// `POST /jobs/:id/savepoints` with optional `{"target-directory": "<uri>"}`; answers when
/// the savepoint is written, with its `location`.
async fn job_savepoint(
    State(state): State<RestState>,
    headers: axum::http::HeaderMap,
    axum::extract::Path(id): axum::extract::Path<String>,
    body: String,
) -> Response {
    if let Some(r) = unauthorized(&state, &headers) {
        return r;
    }
    let req: SavepointBody = if body.trim().is_empty() {
        SavepointBody::default()
    } else {
        match serde_json::from_str(&body) {
            Ok(b) => b,
            Err(e) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("invalid savepoint request body: {e}; expected {{\"target-directory\": \"<uri>\"}}"),
                )
            }
        }
    };
    match state.jobs.savepoint(&id, req.target_directory).await {
        Ok(location) => {
            Json(json!({ "status": { "id": "COMPLETED" }, "operation": { "location": location } })).into_response()
        }
        Err(e) => job_error(&state, e),
    }
}

#[derive(serde::Deserialize)]
struct FaultBody {
    fault: String,
    pause_ms: Option<u64>,
}

/// `POST /admin/fault {"fault": "kill"|"terminate"|"pause"|"isolate", "pause_ms": N}`: the
/// dispatcher inflicts the fault on itself (for `keel drill`). Needs the token when
/// `rest.auth.token` is set.
async fn admin_fault(State(state): State<RestState>, headers: axum::http::HeaderMap, body: String) -> Response {
    if let Some(r) = unauthorized(&state, &headers) {
        return r;
    }
    let req: FaultBody = match serde_json::from_str(&body) {
        Ok(b) => b,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!(
                "invalid fault request: {e}; expected {{\"fault\": \"kill|terminate|pause|isolate\", \"pause_ms\": N}}"
            ),
            )
        }
    };
    let fault = match keel_ha::drill::Fault::parse(&req.fault, req.pause_ms) {
        Ok(f) => f,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let role = state.role.borrow().clone();
    if fault == keel_ha::drill::Fault::Isolate {
        match &state.isolator {
            Some(i) => i.isolate(),
            None => return error(StatusCode::BAD_REQUEST, "isolate needs high-availability.type zookeeper".into()),
        }
    } else {
        keel_ha::drill::inflict(fault, state.shutdown.clone());
    }
    Json(json!({ "id": state.id, "pid": std::process::id(), "role": role.name(), "epoch": role.epoch(), "fault": req.fault }))
        .into_response()
}
