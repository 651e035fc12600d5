//! The axum application: routes, limits, and the server loop.

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::handler::Handler;
use axum::http::{StatusCode, Uri};
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use streamrec_actors::Engine;
use tokio::net::TcpListener;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use crate::admission::{Admission, SchedulingLag, admit};
use crate::auth::{Access, Scope};
use crate::error::ApiError;
use crate::routes::{
    drift, events, health, items, recommendations, sessions, shadow, snapshots, users,
};
use crate::server::HttpLimits;
use crate::storefront;
use crate::telemetry::LatencyRecorder;

/// Largest request body: a full batch of average-sized events with room to spare.
pub const BODY_LIMIT: usize = 8 * 1024 * 1024;

#[derive(Clone)]
pub struct AppState {
    pub engine: Arc<Engine>,
    pub latency: Arc<LatencyRecorder>,
    pub recommend_admission: Admission,
    pub write_admission: Admission,
    /// API keys and CORS origins (open by default).
    pub access: Access,
}

impl AppState {
    /// With the default limits, minus the scheduling-lag budget (see [`HttpLimits`]).
    pub fn new(engine: Arc<Engine>) -> Self {
        Self::with_limits(engine, &HttpLimits::in_process())
    }

    /// Must be called inside the runtime when `limits` has a lag budget (it starts the
    /// scheduling-lag probe).
    pub fn with_limits(engine: Arc<Engine>, limits: &HttpLimits) -> Self {
        let mut recommend_admission =
            Admission::new("recommendations", limits.max_in_flight_recommendations);
        let mut write_admission = Admission::new("writes", limits.max_in_flight_writes);
        if let Some(budget) = limits.max_scheduling_lag {
            let lag = SchedulingLag::spawn();
            recommend_admission = recommend_admission.with_lag_budget(lag.clone(), budget);
            write_admission = write_admission.with_lag_budget(lag, budget);
        }
        Self {
            engine,
            latency: Arc::new(LatencyRecorder::new()),
            recommend_admission,
            write_admission,
            access: Access::default(),
        }
    }

    /// With `access` (keys and CORS origins) instead of an open API.
    pub fn with_access(mut self, access: Access) -> Self {
        self.access = access;
        self
    }
}

pub fn router(state: AppState) -> Router {
    let recommend = from_fn_with_state(state.recommend_admission.clone(), admit);
    let write = from_fn_with_state(state.write_admission.clone(), admit);
    // Each handler checks its scope first; health, readiness, metrics and the page are open.
    let keys = state.access.keys.clone();
    let scope = |scope: Scope| from_fn_with_state((keys.clone(), scope), crate::auth::require);
    let (read, write_scope, admin) = (scope(Scope::Read), scope(Scope::Write), scope(Scope::Admin));
    let router = Router::new()
        .route(
            "/v1/events",
            post(events::post.layer(write_scope.clone())).layer(write.clone()),
        )
        .route(
            "/v1/items",
            post(items::post.layer(write_scope))
                .layer(write)
                .get(items::list.layer(read.clone())),
        )
        .route(
            "/v1/items/{item_id}",
            get(items::get.layer(read.clone())).delete(items::delete.layer(admin.clone())),
        )
        .route(
            "/v1/sessions/{session_id}",
            get(sessions::get.layer(read.clone())),
        )
        .route(
            "/v1/users/{user_id}",
            delete(users::delete.layer(admin.clone())),
        )
        .route(
            "/v1/recommendations",
            get(recommendations::get.layer(read.clone()))
                .post(recommendations::post.layer(read.clone()))
                .layer(recommend),
        )
        .route("/v1/drift", get(drift::get.layer(read.clone())))
        .route("/v1/stats", get(health::stats.layer(read)))
        .route(
            "/v1/snapshots",
            post(snapshots::create.layer(admin.clone())).get(snapshots::list.layer(admin.clone())),
        )
        .route(
            "/v1/shadow",
            post(shadow::start.layer(admin.clone()))
                .get(shadow::report.layer(admin.clone()))
                .delete(shadow::stop.layer(admin.clone())),
        )
        .route(
            "/v1/snapshots/{version}",
            get(snapshots::show.layer(admin.clone())),
        )
        .route(
            "/v1/snapshots/{version}/learners/{name}",
            get(snapshots::learner.layer(admin)),
        )
        .route("/openapi.json", get(crate::openapi::serve_spec))
        .route("/docs", get(crate::explorer::index))
        .route("/docs/{file}", get(crate::explorer::asset))
        .route("/", get(storefront::index))
        .route("/storefront/{file}", get(storefront::asset))
        .merge(operations(&state.access))
        // After routing, so a request is labelled by its route pattern, never its raw path.
        .route_layer(axum::middleware::from_fn(
            crate::metric_catalog::record_requests,
        ))
        .layer(axum::middleware::from_fn(require_json_bodies))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(axum::middleware::from_fn(crate::trace_context::propagate))
        // Outside in: a request id (the client's `x-request-id`, or a new UUID), returned
        // on the answer, and one span per request that names it.
        .layer(TraceLayer::new_for_http().make_span_with(request_span))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid));
    // Outermost, so a preflight is answered before any key is asked for.
    let router = match state.access.cors() {
        Some(cors) => router
            .layer(cors)
            .layer(axum::middleware::from_fn_with_state(
                Arc::new(state.access.cors_origins.clone()),
                crate::auth::strip_cors_for_other_origins,
            )),
        None => router,
    };
    router.with_state(state)
}

/// Health, readiness and metrics: open by default, behind the `read` scope when the
/// configuration says so (`auth.guard_operations`).
fn operations(access: &Access) -> Router<AppState> {
    let router = Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics));
    if access.guard_operations {
        router.route_layer(from_fn_with_state(
            (access.keys.clone(), Scope::Read),
            crate::auth::require,
        ))
    } else {
        router
    }
}

/// The span of one request: method, route pattern and request id. Never the raw path or
/// query: they hold user ids (`DELETE /v1/users/{user_id}` is the erasure path). The route is
/// recorded once routing has matched it (see `metric_catalog::record_requests`).
fn request_span(request: &axum::http::Request<axum::body::Body>) -> tracing::Span {
    let request_id = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let span = tracing::info_span!(
        "request",
        method = %request.method(),
        route = tracing::field::Empty,
        request_id,
    );
    #[cfg(feature = "otlp")]
    if let Some(parent) = request
        .headers()
        .get(crate::trace_context::TRACEPARENT)
        .and_then(|v| v.to_str().ok())
        .and_then(crate::trace_context::TraceParent::parse)
    {
        crate::otlp::continue_trace(&span, &parent);
    }
    span
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

/// Serves until `shutdown` resolves, within `limits`.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    limits: HttpLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    crate::server::serve(listener, router(state), limits, shutdown).await
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
    /// Starts the engine on `bus` and serves it on `listen` (port 0 picks a free port), with
    /// [`HttpLimits::in_process`]: for tests, benches and tools whose own load shares the
    /// process. `serve` and `demo` use [`Self::start_with`] and the full defaults.
    pub async fn start(
        bus: Arc<dyn streamrec_actors::Bus>,
        config: streamrec_actors::EngineConfig,
        listen: std::net::SocketAddr,
    ) -> anyhow::Result<Self> {
        Self::start_with(bus, config, listen, HttpLimits::in_process()).await
    }

    pub async fn start_with(
        bus: Arc<dyn streamrec_actors::Bus>,
        config: streamrec_actors::EngineConfig,
        listen: std::net::SocketAddr,
        limits: HttpLimits,
    ) -> anyhow::Result<Self> {
        Self::start_with_access(bus, config, listen, limits, Access::default()).await
    }

    /// As [`Self::start_with`], with API keys and CORS origins.
    pub async fn start_with_access(
        bus: Arc<dyn streamrec_actors::Bus>,
        config: streamrec_actors::EngineConfig,
        listen: std::net::SocketAddr,
        limits: HttpLimits,
        access: Access,
    ) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(listen).await?;
        Self::start_on(listener, bus, config, limits, access).await
    }

    /// As [`Self::start_with_access`], on a listener already bound.
    pub async fn start_on(
        listener: TcpListener,
        bus: Arc<dyn streamrec_actors::Bus>,
        config: streamrec_actors::EngineConfig,
        limits: HttpLimits,
        access: Access,
    ) -> anyhow::Result<Self> {
        let engine = Arc::new(Engine::start(bus, config).await?);
        let addr = listener.local_addr()?;
        let state = AppState::with_limits(engine, &limits).with_access(access);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(serve(listener, state.clone(), limits, async move {
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

    /// Stops serving, then stops the engine (final snapshot included) within 10 s.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        self.shutdown_within(std::time::Duration::from_secs(10))
            .await
            .map(drop)
    }

    /// Stops accepting, drains in-flight requests (bounded by the server's drain timeout),
    /// then stops the engine with what is left of `limit`. Returns the final snapshot's
    /// version, if one was written.
    pub async fn shutdown_within(
        mut self,
        limit: std::time::Duration,
    ) -> anyhow::Result<Option<String>> {
        let started = std::time::Instant::now();
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        (&mut self.task).await??;
        let RunningServer { state, .. } = self;
        drop(state.latency);
        let left = limit.saturating_sub(started.elapsed());
        match Arc::try_unwrap(state.engine) {
            Ok(engine) => Ok(engine
                .shutdown_within(left)
                .await
                .map(|m| m.version.to_string())),
            Err(_) => {
                tracing::debug!("engine still referenced; it stops with the process");
                Ok(None)
            }
        }
    }
}
