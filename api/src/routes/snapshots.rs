//! Snapshots over HTTP: take one, list them, read a manifest, inspect a learner.

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde_json::{Value, json};
use streamrec_actors::snapshot::{SnapshotError, SnapshotStore, summarize};

use crate::app::AppState;
use crate::error::ApiError;

fn store(app: &AppState) -> Result<&SnapshotStore, ApiError> {
    app.engine.snapshots().ok_or_else(|| {
        ApiError::invalid(
            "snapshots_disabled",
            "this engine keeps no snapshots: start it with --data-dir",
        )
    })
}

fn snapshot_error(e: SnapshotError) -> ApiError {
    match e {
        SnapshotError::NotFound(v) => ApiError::NotFound(format!("snapshot {v}")),
        other => ApiError::Internal(other.to_string()),
    }
}

/// `POST /v1/snapshots`: writes one now.
pub async fn create(State(app): State<AppState>) -> Result<(StatusCode, Json<Value>), ApiError> {
    let store = store(&app)?;
    let manifest = app.engine.snapshot_now().await?;
    let path = store.path(&manifest.version);
    Ok((
        StatusCode::CREATED,
        Json(json!({"version": manifest.version, "path": path})),
    ))
}

/// `GET /v1/snapshots`
pub async fn list(State(app): State<AppState>) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!({"snapshots": store(&app)?.list()})))
}

/// `GET /v1/snapshots/{version}`: the manifest.
pub async fn show(
    State(app): State<AppState>,
    Path(version): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let manifest = store(&app)?.manifest(&version).map_err(snapshot_error)?;
    Ok(Json(
        serde_json::to_value(manifest).map_err(|e| ApiError::Internal(e.to_string()))?,
    ))
}

/// `GET /v1/snapshots/{version}/learners/{name}[?item=ID]`: summary statistics, top weights,
/// and the nearest items of `item`.
pub async fn learner(
    State(app): State<AppState>,
    Path((version, name)): Path<(String, String)>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let store = store(&app)?.clone();
    let (_, models) = tokio::task::spawn_blocking(move || store.load(&version))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .map_err(snapshot_error)?;
    summarize(&models, &name, params.get("item").map(String::as_str))
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("learner {name}")))
}
