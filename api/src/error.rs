//! Every error the API returns, and the one place that maps it to an HTTP status and a JSON
//! body.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use streamrec_actors::{BusError, EngineError};
use streamrec_proto::{ErrorBody, ErrorDetail, FieldError};

/// What a shed request is told to wait before trying again.
pub const RETRY_AFTER_SECONDS: &str = "1";

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
    /// No API key, or one the server does not know.
    #[error("{0}")]
    Unauthorized(&'static str),
    /// A known key without the route's scope.
    #[error("this API key lacks the {0} scope")]
    Forbidden(&'static str),
    #[error("request bodies must be JSON (Content-Type: application/json), not {0:?}")]
    UnsupportedMediaType(String),
    #[error("event bus unavailable: {0}")]
    Bus(#[from] BusError),
    #[error("engine unavailable: {0}")]
    Engine(#[from] EngineError),
    #[error("request not completed within {0:?}")]
    RequestTimeout(std::time::Duration),
    /// Shed at admission: the queue ahead is past its budget. Answered with `Retry-After`.
    #[error("overloaded: {0}; retry after a second")]
    Overloaded(&'static str),
    /// This node is behind the stream (or off the bus): another node should answer.
    #[error("not ready: {0}")]
    NotReady(String),
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

    pub(crate) fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::Invalid { code, .. } => (StatusCode::BAD_REQUEST, code),
            ApiError::BodyTooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "body_too_large"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            ApiError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            ApiError::UnsupportedMediaType(_) => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
            }
            ApiError::Bus(_) => (StatusCode::SERVICE_UNAVAILABLE, "bus_unavailable"),
            ApiError::Engine(EngineError::UnknownVersion(_)) => {
                (StatusCode::NOT_FOUND, "unknown_model_version")
            }
            ApiError::Engine(_) => (StatusCode::SERVICE_UNAVAILABLE, "engine_unavailable"),
            ApiError::RequestTimeout(_) => (StatusCode::REQUEST_TIMEOUT, "request_timeout"),
            ApiError::Overloaded(_) => (StatusCode::SERVICE_UNAVAILABLE, "overloaded"),
            ApiError::NotReady(_) => (StatusCode::SERVICE_UNAVAILABLE, "not_ready"),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        let shed = matches!(self, ApiError::Overloaded(_));
        let retry = shed || matches!(self, ApiError::Bus(_));
        let challenge = matches!(self, ApiError::Unauthorized(_));
        if status.is_server_error() && !shed {
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
        let mut response = (status, Json(body)).into_response();
        if challenge {
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        if retry {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static(RETRY_AFTER_SECONDS),
            );
        }
        response
    }
}
