//! The REST API (axum). Field names follow Flink's REST API where Flink has one.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use keel_ha::LeaderView;
use serde_json::json;
use tokio::sync::watch;

use crate::resource_manager::ResourceManager;
use crate::role::Role;

#[derive(Clone)]
pub struct RestState {
    pub id: String,
    pub cluster_id: String,
    pub role: watch::Receiver<Role>,
    pub leader: watch::Receiver<Option<LeaderView>>,
    pub rm: ResourceManager,
}

pub fn router(state: RestState) -> Router {
    Router::new()
        .route("/overview", get(overview))
        .route("/taskmanagers", get(taskmanagers))
        .route("/ha/leader", get(ha_leader))
        .fallback(not_found)
        .with_state(state)
}

async fn not_found(uri: axum::http::Uri) -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(json!({"errors": [format!("no such endpoint: {}; known: GET /overview, GET /taskmanagers, GET /ha/leader", uri.path())]})),
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
    Json(json!({
        "taskmanagers": workers.len(),
        "slots-total": total,
        "slots-available": free,
        "jobs-running": 0,
        "jobs-finished": 0,
        "jobs-cancelled": 0,
        "jobs-failed": 0,
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
