//! Liveness, readiness, counters and metrics.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde_json::json;

use crate::app::AppState;

/// The process is up and answering.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "The process answers", body = Object)))]
pub async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

/// The bus answers a round trip within its deadline, and the learner is within its lag
/// bound; 503 says which is not.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses(
        (status = 200, description = "The bus answers and the learner is within its lag bound", body = Object),
        (status = 503, description = "Not ready; `reason` says why", body = Object),
    ))]
pub async fn readyz(State(app): State<AppState>) -> impl IntoResponse {
    let readiness = app.engine.readiness().await;
    let status = if readiness.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({
        "ready": readiness.ready,
        "reason": readiness.reason,
        "bus": app.engine.bus().kind(),
        "detail": readiness.bus,
        "learner_lag": readiness.learner_lag,
        "max_learner_lag": readiness.max_learner_lag,
    });
    (status, Json(body))
}

/// Ingest counters, live sessions and the serving model: what an operator or a test checks.
#[utoipa::path(get, path = "/v1/stats", tag = "operations",
    responses((status = 200, description = "Ingest counters, learner lag, freshness, the serving model", body = Object)),
    security(("bearer" = ["read"]), ("api_key" = ["read"])))]
pub async fn stats(State(app): State<AppState>) -> Json<serde_json::Value> {
    let latency = app.latency.summary();
    // One published version for every model figure, so they agree with each other.
    let models = app.engine.models();
    let readiness = app.engine.readiness().await;
    Json(json!({
        "ingest": app.engine.stats(),
        "live_sessions": models.read.session_count(),
        "catalog_items": models.read.catalog_len(),
        "intent_index": {
            "items": app.engine.serving().intent_index.len(),
            "exact": app.engine.serving().intent_index.exact_len(),
        },
        "model_version": streamrec_actors::ServingState::version_name(models.version),
        "applied_seq": app.engine.counters().applied_seq.load(std::sync::atomic::Ordering::Acquire),
        "restored_seq": app.engine.counters().restored_seq.load(std::sync::atomic::Ordering::Acquire),
        "learner": models.counters,
        "watermark": {
            "watermark": models.read.windows().watermark(),
            "max_event_ts": models.read.windows().max_event_ts(),
            "allowed_lateness_ms": models.read.windows().allowed_lateness_ms(),
            "late_events": models.read.windows().late_events(),
        },
        "learner_lag": readiness.learner_lag,
        "freshness_ms": app.engine.freshness_ms(),
        "reranker": models.training,
        "recommendations": {
            "count": latency.count,
            "p50_us": latency.p50.as_micros(),
            "p99_us": latency.p99.as_micros(),
        },
    }))
}

/// Prometheus text exposition; the gauges read from the engine are brought up to date first.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text exposition (every series is listed in the README)", body = String, content_type = "text/plain")))]
pub async fn metrics(State(app): State<AppState>) -> impl IntoResponse {
    match crate::telemetry::prometheus() {
        Some(handle) => {
            crate::metric_catalog::refresh(&app.engine).await;
            (StatusCode::OK, handle.render())
        }
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            "metrics recorder not installed".to_owned(),
        ),
    }
}
