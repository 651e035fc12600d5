//! The HTTP server loop: hyper connections with header, idle and drain deadlines, and a
//! connection cap that keeps health checks answering.
//!
//! Above `max_connections`, a small reserve of further connections is served by a router
//! that answers only `/healthz` and `/readyz` (everything else: 503 with `Retry-After`), so
//! an orchestrator still sees the process alive while a flood of clients holds every
//! regular slot. Past the reserve, new connections are closed at once: file descriptors
//! stay bounded by `max_connections + health_reserve`.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::error::ApiError;

/// How many connections the server holds, and how long it waits on each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// Connections served by the full API.
    pub max_connections: usize,
    /// Further connections that may still ask `/healthz` and `/readyz`.
    pub health_reserve: usize,
    /// A request's headers must arrive within this; it is also how long an idle keep-alive
    /// connection is kept.
    pub header_timeout: Duration,
    /// A whole request (body included) must be answered within this: 408 otherwise.
    pub request_timeout: Duration,
    /// On shutdown, in-flight requests get this long before their connections are dropped.
    pub drain_timeout: Duration,
    /// Recommendation requests served at once; the next is shed (503, `Retry-After`).
    pub max_in_flight_recommendations: usize,
    /// Event and item posts served at once; the next is shed likewise.
    pub max_in_flight_writes: usize,
    /// Requests are shed while a ready task waits longer than this for a worker; `None`:
    /// only the in-flight bounds shed (what tests and benches that share their process's
    /// cores with the server use, so their own load does not shed them).
    pub max_scheduling_lag: Option<Duration>,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            max_connections: 1_024,
            health_reserve: 32,
            header_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            drain_timeout: Duration::from_secs(5),
            max_in_flight_recommendations: 64,
            max_in_flight_writes: 64,
            max_scheduling_lag: Some(Duration::from_millis(20)),
        }
    }
}

impl HttpLimits {
    /// The defaults without the scheduling-lag budget.
    pub fn in_process() -> Self {
        Self {
            max_scheduling_lag: None,
            ..Self::default()
        }
    }
}

/// Serves `app` on `listener` until `shutdown` resolves, then drains within the limit.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: HttpLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = app.layer(axum::middleware::from_fn_with_state(
        limits.request_timeout,
        request_deadline,
    ));
    let health_only = app
        .clone()
        .layer(axum::middleware::from_fn(only_health_checks));
    let regular = Arc::new(Semaphore::new(limits.max_connections));
    let reserve = Arc::new(Semaphore::new(limits.health_reserve));
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(limits.header_timeout);
    let graceful = GracefulShutdown::new();
    // Every connection's task, so the ones still open at the drain deadline can be ended.
    let mut connections = tokio::task::JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        while connections.try_join_next().is_some() {}
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(error) => {
                // Out of descriptors or a reset before accept: back off a moment, keep serving.
                tracing::debug!(%error, "accept failed");
                tokio::time::sleep(Duration::from_millis(5)).await;
                continue;
            }
        };
        let (router, permit) = match Arc::clone(&regular).try_acquire_owned() {
            Ok(permit) => (app.clone(), permit),
            Err(_) => match Arc::clone(&reserve).try_acquire_owned() {
                Ok(permit) => {
                    metrics::counter!("streamrec_http_connections_over_cap_total").increment(1);
                    (health_only.clone(), permit)
                }
                Err(_) => {
                    metrics::counter!("streamrec_http_connections_refused_total").increment(1);
                    drop(stream);
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(router);
        let connection = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service)
            .into_owned();
        let connection = graceful.watch(connection);
        connections.spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(limits.drain_timeout) => {
            tracing::warn!(timeout = ?limits.drain_timeout, open = connections.len(), "connections still open after the drain deadline; closing them");
        }
    }
    connections.abort_all();
    while connections.join_next().await.is_some() {}
    Ok(())
}

/// A request past its deadline (a slow body, a stuck handler) answers 408 and frees its task.
async fn request_deadline(
    axum::extract::State(limit): axum::extract::State<Duration>,
    request: Request,
    next: Next,
) -> Response {
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => closing(ApiError::RequestTimeout(limit)),
    }
}

/// Serves the connections above the cap: health checks only.
async fn only_health_checks(request: Request, next: Next) -> Response {
    if matches!(request.uri().path(), "/healthz" | "/readyz") {
        return next.run(request).await;
    }
    closing(ApiError::Overloaded("too many open connections"))
}

/// `error`'s answer, closing the connection after it.
fn closing(error: ApiError) -> Response {
    let mut response = error.into_response();
    response.headers_mut().insert(
        axum::http::header::CONNECTION,
        axum::http::HeaderValue::from_static("close"),
    );
    response
}
