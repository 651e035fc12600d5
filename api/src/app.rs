//! The axum application: routes, limits, and the server loop.

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use streamrec_actors::Engine;
use tokio::net::TcpListener;
use tower_http::catch_panic::CatchPanicLayer;

use crate::error::ApiError;
use crate::routes::{events, health, items, recommendations, shadow, snapshots};
use crate::telemetry::LatencyRecorder;

/// Largest request body: a full batch of average-sized events with room to spare.
pub const BODY_LIMIT: usize = 8 * 1024 * 1024;

#[derive(Clone)]
pub struct AppState {
    pub engine: Arc<Engine>,
    pub latency: Arc<LatencyRecorder>,
}

impl AppState {
    pub fn new(engine: Arc<Engine>) -> Self {
        Self {
            engine,
            latency: Arc::new(LatencyRecorder::new()),
        }
    }
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/v1/events", post(events::post))
        .route("/v1/items", post(items::post))
        .route("/v1/recommendations", get(recommendations::get))
        .route("/v1/stats", get(health::stats))
        .route(
            "/v1/snapshots",
            post(snapshots::create).get(snapshots::list),
        )
        .route(
            "/v1/shadow",
            post(shadow::start).get(shadow::report).delete(shadow::stop),
        )
        .route("/v1/snapshots/{version}", get(snapshots::show))
        .route(
            "/v1/snapshots/{version}/learners/{name}",
            get(snapshots::learner),
        )
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .layer(axum::middleware::from_fn(require_json_bodies))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(CatchPanicLayer::custom(panic_response))
        .with_state(state)
}

/// A request with a body must say it is JSON. Browsers send cross-site form posts
/// (`text/plain`, `application/x-www-form-urlencoded`, `multipart/form-data`) without asking
/// the server first; refusing every other type closes that door. A bodiless request
/// (`POST /v1/snapshots`) needs no type.
async fn require_json_bodies(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    use axum::body::HttpBody;
    use axum::http::Method;
    if !matches!(
        *request.method(),
        Method::POST | Method::PUT | Method::PATCH
    ) {
        return next.run(request).await;
    }
    let content_type = request
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap_or("(not text)").to_owned());
    let has_body = request.body().size_hint().exact() != Some(0);
    match content_type {
        Some(t) if !is_json(&t) => ApiError::UnsupportedMediaType(t).into_response(),
        None if has_body => ApiError::UnsupportedMediaType("none".to_owned()).into_response(),
        _ => next.run(request).await,
    }
}

/// `application/json`, with parameters (`; charset=utf-8`) or not, in any letter case.
fn is_json(content_type: &str) -> bool {
    content_type
        .split(';')
        .next()
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("application/json"))
}

async fn not_found(uri: Uri) -> ApiError {
    ApiError::NotFound(uri.path().to_owned())
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

/// Last line of defence: a handler bug answers 500 with a JSON body, and the server lives.
fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let mut response = ApiError::Internal("handler panicked".to_owned()).into_response();
    *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
    response
}

/// Serves until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}

/// A running engine with its HTTP server: what `serve`, `demo`, the tests and the load
/// generator all start.
pub struct RunningServer {
    pub addr: std::net::SocketAddr,
    pub state: AppState,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl RunningServer {
    /// Starts the engine on `bus` and serves it on `listen` (port 0 picks a free port).
    pub async fn start(
        bus: Arc<dyn streamrec_actors::Bus>,
        config: streamrec_actors::EngineConfig,
        listen: std::net::SocketAddr,
    ) -> anyhow::Result<Self> {
        let engine = Arc::new(Engine::start(bus, config).await?);
        let listener = TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let state = AppState::new(engine);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(serve(listener, state.clone(), async move {
            let _ = stopped.await;
        }));
        Ok(Self {
            addr,
            state,
            stop: Some(stop),
            task,
        })
    }

    pub fn engine(&self) -> &Arc<Engine> {
        &self.state.engine
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Stops serving, then stops the engine.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        (&mut self.task).await??;
        let RunningServer { state, .. } = self;
        drop(state.latency);
        match Arc::try_unwrap(state.engine) {
            Ok(engine) => engine.shutdown().await,
            Err(_) => tracing::debug!("engine still referenced; it stops with the process"),
        }
        Ok(())
    }
}
