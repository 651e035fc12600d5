//! `POST /v1/events`: validate a batch, then publish all of it to the bus.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use streamrec_proto::{Accepted, Event};

use super::{batch_elements, validate_all};
use crate::app::AppState;
use crate::error::ApiError;

pub async fn post(
    State(app): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Accepted>), ApiError> {
    let elements = batch_elements(body)?;
    let events = validate_all(&elements, "events", Event::from_value)?;
    app.engine.publish_events(&events).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(Accepted {
            accepted: events.len(),
        }),
    ))
}
