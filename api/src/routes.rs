//! HTTP handlers, one module per resource.

pub mod drift;
pub mod events;
pub mod health;
pub mod items;
pub mod recommendations;
pub mod sessions;
pub mod shadow;
pub mod snapshots;
pub mod users;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use serde_json::Value;
use streamrec_proto::unique_json::JsonError;
use streamrec_proto::{FieldError, ValidationError};

use crate::error::ApiError;

/// Most elements accepted in one batch request.
pub const MAX_BATCH: usize = 1_000;

/// A path parameter, or a JSON 400 when it cannot be read (bad percent-encoding, not UTF-8).
fn path_param<T>(
    path: Result<axum::extract::Path<T>, axum::extract::rejection::PathRejection>,
) -> Result<T, ApiError> {
    path.map(|axum::extract::Path(value)| value)
        .map_err(|e| ApiError::invalid("invalid_path", e.body_text()))
}

/// A body as JSON: within the size limit, valid, no key repeated in any object.
fn json_body(body: Result<Bytes, BytesRejection>) -> Result<Value, ApiError> {
    let body = body.map_err(|rejection| match rejection {
        BytesRejection::FailedToBufferBody(_) => ApiError::BodyTooLarge {
            limit: crate::app::BODY_LIMIT,
        },
        other => ApiError::invalid("unreadable_body", other.body_text()),
    })?;
    unique_json(&body)
}

/// A JSON body whose objects name no key twice (what every write route and the NATS
/// service parse with).
pub(crate) fn unique_json(body: &[u8]) -> Result<Value, ApiError> {
    streamrec_proto::unique_json::from_slice(body).map_err(|e| match e {
        JsonError::DuplicateKey(m) => ApiError::invalid("duplicate_key", m),
        JsonError::Invalid(m) => {
            ApiError::invalid("invalid_json", format!("body is not valid JSON: {m}"))
        }
    })
}

/// Turns a body into its elements: one JSON object, or an array of them.
fn batch_elements(body: Result<Bytes, BytesRejection>) -> Result<Vec<Value>, ApiError> {
    let value = json_body(body)?;
    let elements = match value {
        Value::Array(elements) => elements,
        single @ Value::Object(_) => vec![single],
        _ => {
            return Err(ApiError::invalid(
                "invalid_body",
                "body must be a JSON object or an array of objects",
            ));
        }
    };
    if elements.is_empty() {
        return Err(ApiError::invalid("empty_batch", "the array is empty"));
    }
    if elements.len() > MAX_BATCH {
        return Err(ApiError::invalid(
            "batch_too_large",
            format!(
                "{} elements; at most {MAX_BATCH} per request",
                elements.len()
            ),
        ));
    }
    Ok(elements)
}

/// Validates every element (all of them, so the client sees every problem at once).
fn validate_all<T>(
    elements: &[Value],
    what: &str,
    parse: impl Fn(&Value) -> Result<T, ValidationError>,
) -> Result<Vec<T>, ApiError> {
    let mut valid = Vec::with_capacity(elements.len());
    let mut details = Vec::new();
    for (index, element) in elements.iter().enumerate() {
        let size = serde_json::to_vec(element).map_or(0, |b| b.len());
        let result = if size > streamrec_proto::MAX_PAYLOAD_BYTES {
            Err(ValidationError::payload(
                streamrec_proto::Reason::PayloadTooLarge(size),
            ))
        } else {
            parse(element)
        };
        match result {
            Ok(v) => valid.push(v),
            Err(e) => details.push(FieldError {
                index,
                field: e.field,
                reason: e.reason.to_string(),
            }),
        }
    }
    if details.is_empty() {
        return Ok(valid);
    }
    Err(ApiError::Invalid {
        code: "validation_failed",
        message: format!(
            "{} of {} {what} invalid; none were accepted",
            details.len(),
            elements.len()
        ),
        details,
    })
}
