//! `GET /v1/sessions/{session_id}`: what the engine knows of one session, from the published
//! version: its windowed features and its recent items.

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use streamrec_proto::validation::printable_id;
use streamrec_proto::{ErrorBody, SessionDetail};

use crate::app::AppState;
use crate::error::ApiError;

#[utoipa::path(get, path = "/v1/sessions/{session_id}", tag = "sessions",
    params(("session_id" = String, Path)),
    responses(
        (status = 200, description = "The session's windowed features (while its session window is open) and its recent items, most recent first", body = SessionDetail),
        (status = 404, description = "No event of this session is remembered", body = ErrorBody),
    ),
    security(("bearer" = ["read"]), ("api_key" = ["read"])))]
pub async fn get(
    State(app): State<AppState>,
    session_id: Result<Path<String>, PathRejection>,
) -> Result<Json<SessionDetail>, ApiError> {
    let id = printable_id(&super::path_param(session_id)?).map_err(|reason| {
        ApiError::invalid("invalid_session_id", format!("session id: {reason}"))
    })?;
    let models = app.engine.models();
    let read = &models.read;
    let features = read.session_features(&id);
    let recent: Vec<String> = read
        .session(&id)
        .map(|history| read.item_ids(history).map(str::to_owned).collect())
        .unwrap_or_default();
    if features.is_none() && recent.is_empty() {
        return Err(ApiError::NotFound(format!("no session {id:?}")));
    }
    Ok(Json(SessionDetail {
        session_id: id,
        features,
        recent,
    }))
}
