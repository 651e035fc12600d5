//! Recommendations as a NATS service, for clients that speak NATS rather than HTTP: a
//! request on `streamrec.rpc.recommendations` carries the JSON body of
//! `POST /v1/recommendations` and is answered with the same JSON. Every node joins one queue
//! group, so whichever node takes a request answers it; the service framework adds the
//! `$SRV.PING|INFO|STATS.streamrec` endpoints (`nats micro ls` finds it).
//!
//! With API keys configured, a request carries one as HTTP's do, in a message header
//! (`Authorization: Bearer <key>` or `X-API-Key`), and needs the `read` scope.
//!
//! A node answers only while it is ready (`/readyz`: on the bus and within
//! `max_learner_lag` of the stream's head, checked every second); until then a request gets
//! 503 `not_ready`, so a client retries and another node of the queue group takes it.
//!
//! An error is answered with an empty body and the service protocol's headers:
//! `Nats-Service-Error-Code` the HTTP status the same call would get, `Nats-Service-Error`
//! `<code>: <message>`.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use async_nats::service::{self, ServiceExt};
use bytes::Bytes;
use futures::StreamExt;

use crate::app::AppState;
use crate::auth::Scope;
use crate::error::ApiError;
use crate::routes::recommendations::{RecommendationBody, answer, request_of};
use crate::routes::unique_json;

/// The service's name (in `$SRV.*` subjects).
pub const SERVICE: &str = "streamrec";
/// Endpoints live under this prefix.
pub const GROUP: &str = "streamrec.rpc";
/// `streamrec.rpc.recommendations`.
pub const RECOMMENDATIONS: &str = "recommendations";
/// Shared by every node: one of them takes each request.
pub const QUEUE_GROUP: &str = "streamrec";

/// How often a node re-checks its readiness.
const READINESS_EVERY: Duration = Duration::from_secs(1);

/// The running service; dropping it leaves the requests to other nodes.
pub struct RpcService {
    task: tokio::task::JoinHandle<()>,
    readiness: tokio::task::JoinHandle<()>,
}

impl Drop for RpcService {
    fn drop(&mut self) {
        self.task.abort();
        self.readiness.abort();
    }
}

/// Why this node does not answer now (`None`: it does), kept fresh by a task of its own.
type NotReady = Arc<RwLock<Option<String>>>;

fn readiness_watch(app: &AppState) -> (NotReady, tokio::task::JoinHandle<()>) {
    let not_ready: NotReady = Arc::new(RwLock::new(Some("starting".to_owned())));
    let engine = Arc::clone(&app.engine);
    let shared = Arc::clone(&not_ready);
    let task = tokio::spawn(async move {
        loop {
            let readiness = engine.readiness().await;
            let why =
                (!readiness.ready).then(|| readiness.reason.unwrap_or("not ready").to_owned());
            *shared.write().unwrap_or_else(|p| p.into_inner()) = why;
            tokio::time::sleep(READINESS_EVERY).await;
        }
    });
    (not_ready, task)
}

/// Starts answering `streamrec.rpc.recommendations` on `client` from `app`.
pub async fn start(client: async_nats::Client, app: AppState) -> anyhow::Result<RpcService> {
    let service = client
        .service_builder()
        .description("streamrec recommendations (the JSON of POST /v1/recommendations)")
        .queue_group(QUEUE_GROUP)
        .start(SERVICE, env!("CARGO_PKG_VERSION"))
        .await
        .map_err(|e| anyhow::anyhow!("cannot start the NATS service: {e}"))?;
    let mut endpoint = service
        .group(GROUP)
        .endpoint(RECOMMENDATIONS)
        .await
        .map_err(|e| anyhow::anyhow!("cannot add the recommendations endpoint: {e}"))?;
    let (not_ready, readiness) = readiness_watch(&app);
    let task = tokio::spawn(async move {
        // Held for the endpoint's life: stopping the service unsubscribes it.
        let _service = service;
        while let Some(request) = endpoint.next().await {
            let app = app.clone();
            let not_ready = Arc::clone(&not_ready);
            tokio::spawn(async move {
                let why = not_ready.read().unwrap_or_else(|p| p.into_inner()).clone();
                let answer = match why {
                    Some(why) => Err(service_error(&ApiError::NotReady(why))),
                    None => recommend(&app, &request.message).await,
                };
                if let Err(error) = request.respond(answer).await {
                    tracing::warn!(%error, "cannot answer a NATS recommendation request");
                }
            });
        }
    });
    Ok(RpcService { task, readiness })
}

async fn recommend(
    app: &AppState,
    message: &async_nats::Message,
) -> Result<Bytes, service::error::Error> {
    let started = Instant::now();
    let answered = async {
        authorize(app, message)?;
        let _slot = app.recommend_admission.try_enter("nats_recommendations")?;
        let body: RecommendationBody = serde_json::from_value(unique_json(&message.payload)?)
            .map_err(|e| ApiError::invalid("invalid_body", e.to_string()))?;
        let request = request_of(body, None)?;
        answer(app, request, started).await
    }
    .await;
    match answered {
        Ok(response) => serde_json::to_vec(&response)
            .map(Bytes::from)
            .map_err(|e| service_error(&ApiError::Internal(e.to_string()))),
        Err(error) => Err(service_error(&error)),
    }
}

/// The request's API key, from its headers, must have the `read` scope (when keys are set).
fn authorize(app: &AppState, message: &async_nats::Message) -> Result<(), ApiError> {
    if app.access.keys.is_empty() {
        return Ok(());
    }
    let mut headers = axum::http::HeaderMap::new();
    // NATS header names keep their case; HTTP's do not matter.
    let wanted = [
        axum::http::header::AUTHORIZATION,
        axum::http::HeaderName::from_static("x-api-key"),
    ];
    for (name, values) in message.headers.iter().flat_map(|h| h.iter()) {
        let Some(wanted) = wanted
            .iter()
            .find(|w| w.as_str().eq_ignore_ascii_case(name.as_ref()))
        else {
            continue;
        };
        if let Some(value) = values.first()
            && let Ok(value) = axum::http::HeaderValue::from_str(value.as_str())
        {
            headers.insert(wanted.clone(), value);
        }
    }
    app.access.keys.check(&headers, Scope::Read)
}

fn service_error(error: &ApiError) -> service::error::Error {
    let (status, code) = error.status_and_code();
    if status.is_server_error() {
        tracing::warn!(%error, "NATS recommendation request failed");
    }
    service::error::Error {
        status: format!("{code}: {error}"),
        code: usize::from(status.as_u16()),
    }
}
