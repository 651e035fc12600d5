//! While `serve` waits for its bus (a NATS server that is down or unreachable), the HTTP port
//! is already bound and answers: `/healthz` 200, `/readyz` 503 naming the URL and the last
//! error, every other route 503 `bus_unavailable` with `Retry-After`. An orchestrator sees a
//! live process that is not ready, not a port that refuses connections.

use std::sync::{Arc, Mutex};

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;
use streamrec_proto::{ErrorBody, ErrorDetail};

/// What the wait has seen so far: the URL and the last error.
#[derive(Clone)]
pub struct Waiting {
    /// As printed: without credentials.
    url: String,
    raw_url: String,
    last_error: Arc<Mutex<String>>,
}

impl Waiting {
    pub fn new(url: &str) -> Self {
        Self {
            url: crate::config::redact_url(url),
            raw_url: url.to_owned(),
            last_error: Arc::new(Mutex::new("connecting".to_owned())),
        }
    }

    /// Records a failed attempt.
    pub fn failed(&self, error: &impl std::fmt::Display) {
        // An error may quote the URL: never with its credentials.
        let message = error.to_string().replace(&self.raw_url, &self.url);
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = message;
    }

    fn detail(&self) -> String {
        let last = self.last_error.lock().unwrap_or_else(|p| p.into_inner());
        format!("NATS at {}: {last}", self.url)
    }
}

pub fn router(waiting: Waiting) -> Router {
    Router::new()
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/readyz", get(readyz))
        .fallback(unavailable)
        .with_state(waiting)
}

async fn readyz(State(waiting): State<Waiting>) -> Response {
    let body = json!({
        "ready": false,
        "reason": "bus_unavailable",
        "bus": "nats",
        "detail": waiting.detail(),
    });
    (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
}

async fn unavailable(State(waiting): State<Waiting>) -> Response {
    let body = ErrorBody {
        error: ErrorDetail {
            code: "bus_unavailable".to_owned(),
            message: format!("not serving yet: waiting for {}", waiting.detail()),
            details: Vec::new(),
        },
    };
    let mut response = (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}
