//! Snapshots over HTTP: take one, list them, read a manifest, inspect a learner.

use std::collections::HashMap;

use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde_json::{Value, json};
use streamrec_actors::snapshot::{LEARNERS, SnapshotError, SnapshotStore, summarize};
use streamrec_proto::{ErrorBody, SnapshotVersion};

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

/// A client's snapshot version, parsed before any filesystem call: 400 when it cannot be one.
pub fn parse_version(raw: &str) -> Result<SnapshotVersion, ApiError> {
    raw.parse().map_err(|e: streamrec_proto::InvalidVersion| {
        ApiError::invalid("invalid_version", e.to_string())
    })
}

/// A learner's name: 400 when it could not be one, 404 when it is not one of ours.
fn parse_learner(raw: &str) -> Result<&'static str, ApiError> {
    let plausible = !raw.is_empty()
        && raw.len() <= 32
        && raw.bytes().all(|b| b.is_ascii_lowercase() || b == b'_');
    if !plausible {
        return Err(ApiError::invalid(
            "invalid_learner",
            format!(
                "a learner name is lowercase letters and '_'; one of {}",
                LEARNERS.join(", ")
            ),
        ));
    }
    LEARNERS
        .iter()
        .copied()
        .find(|l| *l == raw)
        .ok_or_else(|| ApiError::NotFound(format!("learner {raw}")))
}

/// Storage errors are logged in full; the client sees them without the server's paths.
fn snapshot_error(e: SnapshotError) -> ApiError {
    match e {
        SnapshotError::NotFound(v) => ApiError::NotFound(format!("snapshot {v}")),
        other => {
            tracing::warn!(error = %other, "snapshot request failed");
            ApiError::Internal(other.public_message())
        }
    }
}

/// `POST /v1/snapshots`: writes one now.
#[utoipa::path(post, path = "/v1/snapshots", tag = "snapshots",
    responses((status = 201, description = "The snapshot's manifest", body = Object)),
    security(("bearer" = ["admin"]), ("api_key" = ["admin"])))]
pub async fn create(State(app): State<AppState>) -> Result<(StatusCode, Json<Value>), ApiError> {
    store(&app)?;
    let manifest = app.engine.snapshot_now().await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"version": manifest.version, "last_seq": manifest.last_seq()})),
    ))
}

/// `GET /v1/snapshots`
#[utoipa::path(get, path = "/v1/snapshots", tag = "snapshots",
    responses((status = 200, description = "Every snapshot kept, oldest first", body = Object)),
    security(("bearer" = ["admin"]), ("api_key" = ["admin"])))]
pub async fn list(State(app): State<AppState>) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!({"snapshots": store(&app)?.list()})))
}

/// `GET /v1/snapshots/{version}`: the manifest.
#[utoipa::path(get, path = "/v1/snapshots/{version}", tag = "snapshots",
    params(("version" = String, Path)),
    responses(
        (status = 200, description = "The manifest", body = Object),
        (status = 404, description = "No such snapshot", body = ErrorBody),
    ),
    security(("bearer" = ["admin"]), ("api_key" = ["admin"])))]
pub async fn show(
    State(app): State<AppState>,
    version: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let version = parse_version(&super::path_param(version)?)?;
    let manifest = store(&app)?.manifest(&version).map_err(snapshot_error)?;
    Ok(Json(
        serde_json::to_value(manifest).map_err(|e| ApiError::Internal(e.to_string()))?,
    ))
}

/// `GET /v1/snapshots/{version}/learners/{name}[?item=ID]`: summary statistics, top weights,
/// and the nearest items of `item`.
#[utoipa::path(get, path = "/v1/snapshots/{version}/learners/{name}", tag = "snapshots",
    params(("version" = String, Path), ("name" = String, Path, description = "popularity, embeddings, bandit, covisitation, reranker, stream or catalog"),
        ("item" = Option<String>, Query, description = "One item's view of the learner")),
    responses(
        (status = 200, description = "A summary of the learner's state", body = Object),
        (status = 404, description = "No such snapshot or learner", body = ErrorBody),
    ),
    security(("bearer" = ["admin"]), ("api_key" = ["admin"])))]
pub async fn learner(
    State(app): State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(params) = query.map_err(|e| ApiError::invalid("invalid_query", e.body_text()))?;
    let (version, name) = super::path_param(path)?;
    let version = parse_version(&version)?;
    let name = parse_learner(&name)?;
    let store = store(&app)?.clone();
    let (_, models) = tokio::task::spawn_blocking(move || store.load(&version))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .map_err(snapshot_error)?;
    summarize(&models, name, params.get("item").map(String::as_str))
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("learner {name}")))
}
