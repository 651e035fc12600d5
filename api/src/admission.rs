//! Admission control: a request is answered 503 with `Retry-After` at once, instead of
//! queueing, when its route already holds its share of requests, or when the runtime itself
//! is behind.
//!
//! Two signals, because a queue forms in two places. Requests inside a handler (ranking,
//! waiting on the bus) are counted by a semaphore per route. But once the CPU is saturated,
//! most of the wait is before any handler runs: in socket buffers and the runtime's run
//! queue, where no counter sees it. A probe task that asks to wake every few milliseconds
//! measures that wait directly (how late it wakes is how long a ready task waits for a
//! worker), and requests are shed while its smoothed lateness is past the budget.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::sync::Semaphore;

use crate::error::ApiError;

#[derive(Clone)]
pub struct Admission {
    permits: Arc<Semaphore>,
    max_in_flight: usize,
    /// What is full, for the 503 body and the shed counter's label.
    what: &'static str,
    lag: Option<(SchedulingLag, Duration)>,
}

impl Admission {
    pub fn new(what: &'static str, max_in_flight: usize) -> Self {
        let max_in_flight = max_in_flight.max(1);
        Self {
            permits: Arc::new(Semaphore::new(max_in_flight)),
            max_in_flight,
            what,
            lag: None,
        }
    }

    /// Also sheds while `lag` is past `budget`.
    pub fn with_lag_budget(mut self, lag: SchedulingLag, budget: Duration) -> Self {
        self.lag = Some((lag, budget));
        self
    }

    /// A slot for one request, or the reason it is shed (counted under `route`).
    pub fn try_enter(
        &self,
        route: &'static str,
    ) -> Result<tokio::sync::OwnedSemaphorePermit, ApiError> {
        if let Some((lag, budget)) = &self.lag
            && lag.current() > *budget
        {
            metrics::counter!("streamrec_http_shed_total", "route" => route, "why" => "lag")
                .increment(1);
            return Err(ApiError::Overloaded("the server is behind"));
        }
        Arc::clone(&self.permits).try_acquire_owned().map_err(|_| {
            metrics::counter!("streamrec_http_shed_total", "route" => route, "why" => "in_flight")
                .increment(1);
            ApiError::Overloaded(self.what)
        })
    }

    /// Requests of this route being served now.
    pub fn in_flight(&self) -> usize {
        self.max_in_flight
            .saturating_sub(self.permits.available_permits())
    }
}

/// Route middleware: serve the request if a slot is free, shed it otherwise.
pub async fn admit(State(admission): State<Admission>, request: Request, next: Next) -> Response {
    match admission.try_enter(admission.what) {
        Ok(permit) => {
            let response = next.run(request).await;
            drop(permit);
            response
        }
        Err(shed) => shed.into_response(),
    }
}

/// How long a ready task currently waits for a runtime worker, smoothed.
#[derive(Clone, Default)]
pub struct SchedulingLag {
    micros: Arc<AtomicU64>,
}

/// How often the probe asks to wake.
const PROBE_EVERY: Duration = Duration::from_millis(5);

impl SchedulingLag {
    /// Starts the probe on the current runtime; it ends when every handle is dropped.
    pub fn spawn() -> Self {
        let lag = Self::default();
        let weak = Arc::downgrade(&lag.micros);
        tokio::spawn(async move {
            loop {
                let asked = Instant::now();
                tokio::time::sleep(PROBE_EVERY).await;
                let late = asked.elapsed().saturating_sub(PROBE_EVERY);
                let Some(micros) = weak.upgrade() else { break };
                // Rises within a few probes, falls as fast once the queue drains.
                let old = micros.load(Ordering::Relaxed);
                let new = u64::try_from(late.as_micros()).unwrap_or(u64::MAX);
                micros.store(old / 2 + new / 2, Ordering::Relaxed);
            }
        });
        lag
    }

    pub fn current(&self) -> Duration {
        Duration::from_micros(self.micros.load(Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::body::Body;
    use axum::http::StatusCode;
    use axum::middleware::from_fn_with_state;
    use axum::routing::get;
    use tower::ServiceExt;

    #[tokio::test]
    async fn past_its_slots_a_route_sheds_at_once_with_retry_after() {
        let release = Arc::new(tokio::sync::Semaphore::new(0));
        let entered = Arc::new(tokio::sync::Semaphore::new(0));
        let admission = Admission::new("test", 2);
        let handler = {
            let (release, entered) = (Arc::clone(&release), Arc::clone(&entered));
            move || async move {
                entered.add_permits(1);
                let _ = release.acquire().await.map(|p| p.forget());
                "done"
            }
        };
        let app = Router::new().route(
            "/slow",
            get(handler).layer(from_fn_with_state(admission.clone(), admit)),
        );
        let call = |app: Router| async move {
            app.oneshot(Request::get("/slow").body(Body::empty()).expect("request"))
                .await
                .expect("infallible")
        };
        let first = tokio::spawn(call(app.clone()));
        let second = tokio::spawn(call(app.clone()));
        // Both admitted requests are inside the handler.
        let _ = entered.acquire_many(2).await.expect("open");
        assert_eq!(admission.in_flight(), 2);
        let shed = call(app.clone()).await;
        assert_eq!(shed.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            shed.headers()
                .get(axum::http::header::RETRY_AFTER)
                .map(|v| v.as_bytes()),
            Some(&b"1"[..])
        );
        release.add_permits(2);
        for admitted in [first, second] {
            assert_eq!(admitted.await.expect("joined").status(), StatusCode::OK);
        }
        // The slots are free again.
        let again = tokio::spawn(call(app));
        let _ = entered.acquire().await.expect("open");
        release.add_permits(1);
        assert_eq!(again.await.expect("joined").status(), StatusCode::OK);
    }
}
