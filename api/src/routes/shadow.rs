//! Shadow mode over HTTP: run a snapshot beside the live model, read its report, stop it.

use axum::Json;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use serde::Deserialize;
use streamrec_actors::shadow::ShadowReport;

use crate::app::AppState;
use crate::error::ApiError;

#[derive(Debug, Deserialize)]
pub struct ShadowRequest {
    pub version: String,
}

/// `POST /v1/shadow {"version": V}`: candidate V ranks every live request from now on.
pub async fn start(
    State(app): State<AppState>,
    body: Result<Json<ShadowRequest>, JsonRejection>,
) -> Result<Json<ShadowReport>, ApiError> {
    let Json(request) = body.map_err(|e| ApiError::invalid("invalid_body", e.body_text()))?;
    let version = crate::routes::snapshots::parse_version(&request.version)?;
    Ok(Json(app.engine.set_shadow(&version).await?))
}

/// `GET /v1/shadow`: the running comparison.
pub async fn report(State(app): State<AppState>) -> Result<Json<ShadowReport>, ApiError> {
    app.engine
        .shadow_report()
        .map(Json)
        .ok_or_else(|| ApiError::NotFound("shadow run (none is running)".to_owned()))
}

/// `DELETE /v1/shadow`: stops the run; answers its final report.
pub async fn stop(State(app): State<AppState>) -> Result<Json<ShadowReport>, ApiError> {
    app.engine
        .clear_shadow()
        .map(Json)
        .ok_or_else(|| ApiError::NotFound("shadow run (none is running)".to_owned()))
}
