//! `POST /v1/events`: validate a batch, then publish all of it to the bus.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use streamrec_proto::{Accepted, Event, Reason, ValidationError};

use super::{batch_elements, validate_all};
use crate::app::AppState;
use crate::error::ApiError;

#[utoipa::path(post, path = "/v1/events", tag = "events",
    request_body(content = crate::openapi::EventBatch, description = "One event, or an array of up to 1,000. `ts` is epoch milliseconds or an RFC 3339 string; unknown fields are ignored."),
    responses((status = 202, description = "Every event validated and stored on the bus", body = Accepted)),
    security(("bearer" = ["write"]), ("api_key" = ["write"])))]
pub async fn post(
    State(app): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Accepted>), ApiError> {
    let elements = batch_elements(body)?;
    // The bus judges the same bound by its own arrival time; here a client hears at once.
    let skew_ms = i64::try_from(app.engine.max_future_skew().as_millis()).unwrap_or(i64::MAX);
    let now = streamrec_proto::now_millis();
    let events = validate_all(&elements, "events", |element| {
        let event = Event::from_value(element)?;
        if event.ts > now.saturating_add(skew_ms) {
            return Err(ValidationError::new(
                "ts",
                Reason::FutureTimestamp {
                    ts: event.ts,
                    arrival: now,
                    skew_ms,
                },
            ));
        }
        Ok(event)
    })?;
    app.engine.publish_events(&events).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(Accepted {
            accepted: events.len(),
        }),
    ))
}
