//! Recommendations as a NATS service, for clients that speak NATS rather than HTTP: a
//! request on `streamrec.rpc.recommendations` carries the JSON body of
//! `POST /v1/recommendations` and is answered with the same JSON. Every node joins one queue
//! group, so whichever node takes a request answers it; the service framework adds the
//! `$SRV.PING|INFO|STATS.streamrec` endpoints (`nats micro ls` finds it).
//!
//! With API keys configured, a request carries one as HTTP's do, in a message header
//! (`Authorization: Bearer <key>` or `X-API-Key`), and needs the `read` scope.
//!
//! An error is answered with an empty body and the service protocol's headers:
//! `Nats-Service-Error-Code` the HTTP status the same call would get, `Nats-Service-Error`
//! `<code>: <message>`.

use std::time::Instant;

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

/// The running service; dropping it leaves the requests to other nodes.
pub struct RpcService {
    task: tokio::task::JoinHandle<()>,
}

impl Drop for RpcService {
    fn drop(&mut self) {
        self.task.abort();
    }
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
    let task = tokio::spawn(async move {
        // Held for the endpoint's life: stopping the service unsubscribes it.
        let _service = service;
        while let Some(request) = endpoint.next().await {
            let app = app.clone();
            tokio::spawn(async move {
                let answer = recommend(&app, &request.message).await;
                if let Err(error) = request.respond(answer).await {
                    tracing::warn!(%error, "cannot answer a NATS recommendation request");
                }
            });
        }
    });
    Ok(RpcService { task })
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
