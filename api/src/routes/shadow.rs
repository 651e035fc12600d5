//! Shadow mode over HTTP: run a snapshot beside the live model, read its report, stop it.

use axum::Json;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use serde::Deserialize;
use streamrec_actors::shadow::ShadowReport;

use streamrec_proto::ErrorBody;

use crate::app::AppState;
use crate::error::ApiError;

/// The snapshot version to run in shadow.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct ShadowRequest {
    pub version: String,
}

/// `POST /v1/shadow {"version": V}`: candidate V ranks every live request from now on.
#[utoipa::path(post, path = "/v1/shadow", tag = "shadow",
    request_body = ShadowRequest,
    responses(
        (status = 200, description = "The run's report, so far empty", body = Object),
        (status = 404, description = "No such snapshot", body = ErrorBody),
    ),
    security(("bearer" = ["admin"]), ("api_key" = ["admin"])))]
pub async fn start(
    State(app): State<AppState>,
    body: Result<Json<ShadowRequest>, JsonRejection>,
) -> Result<Json<ShadowReport>, ApiError> {
    let Json(request) = body.map_err(|e| ApiError::invalid("invalid_body", e.body_text()))?;
    let version = crate::routes::snapshots::parse_version(&request.version)?;
    Ok(Json(app.engine.set_shadow(&version).await?))
}

/// `GET /v1/shadow`: the running comparison.
#[utoipa::path(get, path = "/v1/shadow", tag = "shadow",
    responses(
        (status = 200, description = "Agreement and each policy's value so far", body = Object),
        (status = 404, description = "No shadow run", body = ErrorBody),
    ),
    security(("bearer" = ["admin"]), ("api_key" = ["admin"])))]
pub async fn report(State(app): State<AppState>) -> Result<Json<ShadowReport>, ApiError> {
    app.engine
        .shadow_report()
        .map(Json)
        .ok_or_else(|| ApiError::NotFound("shadow run (none is running)".to_owned()))
}

/// `DELETE /v1/shadow`: stops the run; answers its final report.
#[utoipa::path(delete, path = "/v1/shadow", tag = "shadow",
    responses(
        (status = 200, description = "The final report", body = Object),
        (status = 404, description = "No shadow run", body = ErrorBody),
    ),
    security(("bearer" = ["admin"]), ("api_key" = ["admin"])))]
pub async fn stop(State(app): State<AppState>) -> Result<Json<ShadowReport>, ApiError> {
    app.engine
        .clear_shadow()
        .map(Json)
        .ok_or_else(|| ApiError::NotFound("shadow run (none is running)".to_owned()))
}
