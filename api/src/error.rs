//! Every error the API returns, and the one place that maps it to an HTTP status and a JSON
//! body.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use streamrec_actors::{BusError, EngineError};
use streamrec_proto::{ErrorBody, ErrorDetail, FieldError};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{message}")]
    Invalid {
        code: &'static str,
        message: String,
        details: Vec<FieldError>,
    },
    #[error("request body exceeds {limit} bytes")]
    BodyTooLarge { limit: usize },
    #[error("no route for {0}")]
    NotFound(String),
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("request bodies must be JSON (Content-Type: application/json), not {0:?}")]
    UnsupportedMediaType(String),
    #[error("event bus unavailable: {0}")]
    Bus(#[from] BusError),
    #[error("engine unavailable: {0}")]
    Engine(#[from] EngineError),
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    pub fn invalid(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::Invalid {
            code,
            message: message.into(),
            details: Vec::new(),
        }
    }

    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::Invalid { code, .. } => (StatusCode::BAD_REQUEST, code),
            ApiError::BodyTooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "body_too_large"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            ApiError::UnsupportedMediaType(_) => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
            }
            ApiError::Bus(_) => (StatusCode::SERVICE_UNAVAILABLE, "bus_unavailable"),
            ApiError::Engine(EngineError::UnknownVersion(_)) => {
                (StatusCode::NOT_FOUND, "unknown_model_version")
            }
            ApiError::Engine(_) => (StatusCode::SERVICE_UNAVAILABLE, "engine_unavailable"),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        if status.is_server_error() {
            tracing::warn!(error = %self, "request failed");
        }
        let message = self.to_string();
        let details = match self {
            ApiError::Invalid { details, .. } => details,
            _ => Vec::new(),
        };
        let body = ErrorBody {
            error: ErrorDetail {
                code: code.to_owned(),
                message,
                details,
            },
        };
        (status, Json(body)).into_response()
    }
}
