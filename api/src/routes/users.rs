//! `DELETE /v1/users/{user_id}`: the erasure path. It travels through the bus as a message
//! of the events stream, so every node and every replay erases at the same place.

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use streamrec_proto::validation::printable_id;
use streamrec_proto::{DeletionAccepted, UserErasure};

use crate::app::AppState;
use crate::error::ApiError;

#[utoipa::path(delete, path = "/v1/users/{user_id}", tag = "users",
    params(("user_id" = String, Path)),
    responses((status = 202, description = "The erasure is on the bus: once applied, the user's history, the histories of the sessions the user's events named, and the decisions served to them are gone from every learner, and stay gone after a restore or a replay", body = DeletionAccepted)),
    security(("bearer" = ["admin"]), ("api_key" = ["admin"])))]
pub async fn delete(
    State(app): State<AppState>,
    user_id: Result<Path<String>, PathRejection>,
) -> Result<(StatusCode, Json<DeletionAccepted>), ApiError> {
    let id = printable_id(&super::path_param(user_id)?)
        .map_err(|reason| ApiError::invalid("invalid_user_id", format!("user id: {reason}")))?;
    app.engine
        .publish_user_erasure(&UserErasure {
            user_id: id.clone(),
        })
        .await?;
    // Who was erased is personal: the log (and the request's span, which names the route
    // pattern, not the path) says that, not who.
    tracing::info!("user erasure published");
    Ok((
        StatusCode::ACCEPTED,
        Json(DeletionAccepted {
            kind: "user".to_owned(),
            id,
        }),
    ))
}
