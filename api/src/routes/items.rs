//! `POST /v1/items`: upsert catalog items through the bus.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use streamrec_proto::{Accepted, Item};

use super::{batch_elements, validate_all};
use crate::app::AppState;
use crate::error::ApiError;

pub async fn post(
    State(app): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Accepted>), ApiError> {
    let elements = batch_elements(body)?;
    let items = validate_all(&elements, "items", Item::from_value)?;
    app.engine.publish_items(&items).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(Accepted {
            accepted: items.len(),
        }),
    ))
}
