//! The REST API (axum). Field names follow Flink's REST API where Flink has one.
//!
//! Hostile input: request bodies are limited to [`MAX_BODY_BYTES`] (413 naming the limit);
//! every error, including the framework's own rejections (bad query string, wrong method,
//! body too large), is `{"errors": [...]}` JSON, and each message is at most
//! [`MAX_ERROR_CHARS`] characters (values are quoted as excerpts). A submitted spec is parsed
//! and validated on a blocking thread ([`SPEC_WORKERS`] at a time, at most
//! [`MAX_QUEUED_SUBMISSIONS`] waiting), never on the async workers that keep the ZooKeeper
//! session and the heartbeats alive.

use std::sync::atomic::{AtomicUsize, Ordering};

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
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
    /// `rest.admin.enabled`: whether `POST /admin/fault` is served (403 otherwise).
    pub admin_enabled: bool,
    /// `rest.auth.read`: GET endpoints need the token too (when one is set).
    pub auth_read: bool,
    /// Stops this dispatcher gracefully (the admin `terminate` fault).
    pub shutdown: tokio_util::sync::CancellationToken,
    /// Drops the ZooKeeper session (the admin `isolate` fault); `None` without ZooKeeper.
    pub isolator: Option<keel_ha::election::Isolator>,
    /// `/metrics` and the leadership history (`/ha/history`).
    pub metrics: std::sync::Arc<crate::metrics::DispatcherMetrics>,
    /// Reads the latch contenders for `/ha/contenders`; `None` without ZooKeeper.
    pub contenders: Option<std::sync::Arc<crate::dashboard::ContenderReader>>,
}

/// The largest request body accepted (a job spec is at most [`keel_job::MAX_SPEC_BYTES`]).
pub const MAX_BODY_BYTES: usize = keel_job::MAX_SPEC_BYTES;
/// The longest error message sent, in characters.
pub const MAX_ERROR_CHARS: usize = 2048;
/// How many submitted specs are parsed and stored at the same time (on blocking threads).
pub const SPEC_WORKERS: usize = 2;
/// How many submissions may wait for a [`SPEC_WORKERS`] slot; more get 503.
pub const MAX_QUEUED_SUBMISSIONS: usize = 32;

static SPEC_PERMITS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(SPEC_WORKERS);
static QUEUED_SUBMISSIONS: AtomicUsize = AtomicUsize::new(0);

pub fn router(state: RestState) -> Router {
    let read_auth = state.clone();
    Router::new()
        .route("/overview", get(overview))
        .route("/taskmanagers", get(taskmanagers))
        .route("/ha/leader", get(ha_leader))
        .route("/ha/history", get(ha_history))
        .route("/ha/contenders", get(ha_contenders))
        .route("/metrics", get(metrics))
        .route("/", get(dashboard))
        .route("/jobs", axum::routing::post(submit_job).get(jobs_overview))
        .route("/jobs/overview", get(jobs_overview))
        .route("/jobs/{id}", get(job_detail).patch(job_patch))
        .route("/jobs/{id}/cancel", axum::routing::post(job_cancel))
        .route("/jobs/{id}/checkpoints", get(job_checkpoints))
        .route("/jobs/{id}/savepoints", axum::routing::post(job_savepoint))
        .route("/admin/fault", axum::routing::post(admin_fault))
        .fallback(not_found)
        .with_state(state)
        .layer(axum::middleware::from_fn(move |req: Request, next: Next| {
            let state = read_auth.clone();
            async move { read_auth_check(state, req, next).await }
        }))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn(json_errors))
}

/// With `rest.auth.read: true` and a token set, GET (and HEAD) requests need the token too.
async fn read_auth_check(state: RestState, req: Request, next: Next) -> Response {
    if state.auth_read && matches!(*req.method(), axum::http::Method::GET | axum::http::Method::HEAD) {
        if let Some(r) = unauthorized(&state, req.headers()) {
            return r;
        }
    }
    next.run(req).await
}

/// Turns every error response that is not JSON (the framework's rejections: body too large,
/// bad query string, wrong method) into `{"errors": [...]}` with the same status.
async fn json_errors(req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let path = keel_conf::excerpt(req.uri().path());
    let resp = next.run(req).await;
    let status = resp.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return resp;
    }
    let is_json = resp
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/json"));
    if is_json {
        return resp;
    }
    let (parts, body) = resp.into_parts();
    let text = axum::body::to_bytes(body, 16 * 1024)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .unwrap_or_default();
    let message = match status {
        StatusCode::PAYLOAD_TOO_LARGE => format!(
            "request body too large: the limit is {MAX_BODY_BYTES} bytes (1 MiB); a job spec may be at most \
             {} bytes",
            keel_job::MAX_SPEC_BYTES
        ),
        StatusCode::METHOD_NOT_ALLOWED => {
            let allowed = parts.headers.get(axum::http::header::ALLOW).and_then(|v| v.to_str().ok()).unwrap_or("");
            if allowed.is_empty() {
                format!("method {method} is not allowed on {path}")
            } else {
                format!("method {method} is not allowed on {path}; allowed: {allowed}")
            }
        }
        _ if text.is_empty() => status.canonical_reason().unwrap_or("error").to_string(),
        _ => format!("{method} {path}: {text}"),
    };
    let mut out = error(status, message);
    if let Some(allow) = parts.headers.get(axum::http::header::ALLOW) {
        out.headers_mut().insert(axum::http::header::ALLOW, allow.clone());
    }
    out
}

async fn not_found(uri: axum::http::Uri) -> Response {
    error(
        StatusCode::NOT_FOUND,
        format!(
            "no such endpoint: {}; known: GET /, GET /metrics, GET /overview, GET /taskmanagers, GET /ha/leader, GET /ha/history, GET /ha/contenders, POST /jobs, GET /jobs/overview, GET /jobs/{{id}}, PATCH /jobs/{{id}}?mode=cancel, POST /jobs/{{id}}/cancel, GET /jobs/{{id}}/checkpoints, POST /jobs/{{id}}/savepoints, POST /admin/fault",
            keel_conf::excerpt(uri.path())
        ),
    )
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
        "admin_enabled": state.admin_enabled,
    }))
    .into_response()
}

/// `GET /ha/history`: the leadership changes this dispatcher observed, oldest first (at most
/// [`crate::metrics::HISTORY_CAPACITY`]).
async fn ha_history(State(state): State<RestState>) -> Response {
    Json(json!({
        "id": state.id,
        "capacity": crate::metrics::HISTORY_CAPACITY,
        "changes": state.metrics.history.snapshot(),
    }))
    .into_response()
}

/// `GET /ha/contenders`: the leader and its standbys as ZooKeeper's latch lists them (with
/// `high-availability.type: none`, this dispatcher alone).
async fn ha_contenders(State(state): State<RestState>) -> Response {
    let Some(reader) = &state.contenders else {
        let leader = state.leader.borrow().clone();
        return Json(json!({ "contenders": [{
            "node": "",
            "contender_id": state.id,
            "rpc_address": leader.as_ref().map(|l| l.address.clone()),
            "rest_address": leader.as_ref().map(|l| l.rest_address.clone()),
            "epoch": leader.as_ref().map(|l| l.epoch),
            "session_id": "",
            "leading": true,
        }] }))
        .into_response();
    };
    match reader.read().await {
        Ok(list) => Json(json!({ "contenders": list })).into_response(),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, format!("cannot list the contenders: {e}")),
    }
}

/// `GET /metrics`: every series in the Prometheus / OpenMetrics text format.
async fn metrics(State(state): State<RestState>) -> Response {
    let body = state.metrics.encode();
    ([(axum::http::header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], body).into_response()
}

/// `GET /`: the dashboard page.
async fn dashboard() -> Response {
    axum::response::Html(crate::dashboard::page()).into_response()
}

/// `message` cut to [`MAX_ERROR_CHARS`] characters (with `…(N bytes)` when cut).
fn bounded(message: String) -> String {
    match message.char_indices().nth(MAX_ERROR_CHARS) {
        None => message,
        Some((cut, _)) => format!("{}…({} bytes)", &message[..cut], message.len()),
    }
}

fn error(code: StatusCode, message: String) -> Response {
    (code, Json(json!({ "errors": [bounded(message)] }))).into_response()
}

/// Checks a savepoint directory given by a client: a storage URI the storage layer accepts
/// (file, s3, hdfs, swift; no `.` or `..` segment) and, for `file://`, not under a pseudo
/// file system (`/proc`, `/sys`, `/dev`), where a savepoint can only fail. Returns the
/// canonical URI, or the 400 message.
fn check_savepoint_dir(what: &str, uri: &str) -> Result<String, String> {
    let expected = format!("expected a storage URI: {}", keel_storage::ACCEPTED_URI_FORMS);
    let canonical = keel_storage::check_uri(uri.trim()).map_err(|reason| {
        format!("{what} '{}': {}; {expected}", keel_conf::excerpt(uri), keel_conf::excerpt(&reason))
    })?;
    if let Some(path) = canonical.strip_prefix("file://") {
        for pseudo in ["/proc", "/sys", "/dev"] {
            if path == pseudo || path.starts_with(&format!("{pseudo}/")) {
                return Err(format!(
                    "{what} '{}' is under {pseudo}, a pseudo file system that cannot hold a savepoint; expected a \
                     directory on real storage",
                    keel_conf::excerpt(uri)
                ));
            }
        }
    }
    Ok(canonical)
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
    /// What errors call the spec (`keel run` sends the file it read); at most 256
    /// characters, control characters escaped.
    #[serde(rename = "specName")]
    spec_name: Option<String>,
}

/// `POST /jobs` with the job spec (YAML) as the body; `?fromSavepoint=<uri>` restores.
///
/// The spec is parsed, validated and stored on a blocking thread (see [`SPEC_WORKERS`]).
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
    let from_savepoint = match q.from_savepoint {
        None => None,
        Some(uri) => match check_savepoint_dir("fromSavepoint", &uri) {
            Ok(canonical) => Some(canonical),
            Err(message) => return error(StatusCode::BAD_REQUEST, message),
        },
    };
    // Bounded queue, then one of SPEC_WORKERS permits.
    if QUEUED_SUBMISSIONS.fetch_add(1, Ordering::SeqCst) >= MAX_QUEUED_SUBMISSIONS {
        QUEUED_SUBMISSIONS.fetch_sub(1, Ordering::SeqCst);
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("too many job submissions in progress (more than {MAX_QUEUED_SUBMISSIONS}); retry later"),
        );
    }
    let permit = SPEC_PERMITS.acquire().await;
    QUEUED_SUBMISSIONS.fetch_sub(1, Ordering::SeqCst);
    let Ok(_permit) = permit else {
        return error(StatusCode::SERVICE_UNAVAILABLE, "the dispatcher is shutting down".into());
    };
    let jobs = state.jobs.clone();
    let handle = tokio::runtime::Handle::current();
    let job_id = q.job_id;
    let origin = match q.spec_name.as_deref().map(str::trim) {
        Some(name) if !name.is_empty() => {
            let short: String = name.chars().take(256).collect();
            keel_conf::excerpt(&short).replace(|c: char| c.is_control(), "?")
        }
        _ => "the submitted job spec".to_owned(),
    };
    let submitted =
        tokio::task::spawn_blocking(move || handle.block_on(jobs.submit_named(&body, &origin, from_savepoint, job_id)))
            .await;
    match submitted {
        Ok(Ok(id)) => (StatusCode::ACCEPTED, Json(json!({ "jobid": id }))).into_response(),
        Ok(Err(e)) => job_error(&state, e),
        Err(join) => {
            tracing::error!(error = %join, "job submission task failed");
            error(StatusCode::INTERNAL_SERVER_ERROR, "the job submission failed inside the dispatcher".into())
        }
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
    /// Flink's `cancel-job`: cancel the job once the savepoint is written (stop with a
    /// savepoint). The cancel is answered once durable, like `POST /jobs/:id/cancel`.
    #[serde(rename = "cancel-job", default)]
    cancel_job: bool,
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
                    format!(
                        "invalid savepoint request body: {e}; expected {{\"target-directory\": \"<uri>\", \
                         \"cancel-job\": true|false}}"
                    ),
                )
            }
        }
    };
    let target = match req.target_directory {
        None => None,
        Some(dir) => match check_savepoint_dir("target-directory", &dir) {
            Ok(canonical) => Some(canonical),
            Err(message) => return error(StatusCode::BAD_REQUEST, message),
        },
    };
    let location = match state.jobs.savepoint(&id, target).await {
        Ok(location) => location,
        Err(e) => return job_error(&state, e),
    };
    if req.cancel_job {
        if let Err(e) = state.jobs.cancel(&id).await {
            tracing::warn!(job = %id, error = %e, %location, "savepoint written, but the cancel after it failed");
            let mut response = job_error(&state, e);
            *response.status_mut() = StatusCode::CONFLICT;
            return with_savepoint_note(response, &location).await;
        }
    }
    Json(json!({
        "status": { "id": "COMPLETED" },
        "operation": { "location": location },
        "job-cancelled": req.cancel_job,
    }))
    .into_response()
}

/// Adds "the savepoint was written at LOCATION" to an error response's messages.
async fn with_savepoint_note(response: Response, location: &str) -> Response {
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 16).await.unwrap_or_default();
    let mut value: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_else(|_| json!({ "errors": [] }));
    let note = format!("the savepoint was written at {location}, but the job was not cancelled");
    if let Some(errors) = value["errors"].as_array_mut() {
        errors.push(json!(note));
    }
    (status, Json(value)).into_response()
}

#[derive(serde::Deserialize)]
struct FaultBody {
    fault: String,
    pause_ms: Option<u64>,
}

/// `POST /admin/fault {"fault": "kill"|"terminate"|"pause"|"isolate", "pause_ms": N}`: the
/// dispatcher inflicts the fault on itself (for `keel drill`). Off (403) unless
/// `rest.admin.enabled: true`; needs the token when `rest.auth.token` is set.
async fn admin_fault(State(state): State<RestState>, headers: axum::http::HeaderMap, body: String) -> Response {
    if !state.admin_enabled {
        return error(
            StatusCode::FORBIDDEN,
            format!(
                "POST /admin/fault is disabled on dispatcher {}; set rest.admin.enabled: true in its configuration \
                 (and restart it) to allow fault injection by keel drill and chaos tests",
                state.id
            ),
        );
    }
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
