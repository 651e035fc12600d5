//! Logs, Prometheus metrics, and the recommendation latency distribution the demo shows.

use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use hdrhistogram::Histogram;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// Installs the process-wide Prometheus recorder once; later calls return the same handle.
pub fn prometheus() -> Option<PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| match PrometheusBuilder::new().install_recorder() {
            Ok(handle) => Some(handle),
            Err(e) => {
                tracing::warn!(error = %e, "metrics recorder not installed");
                None
            }
        })
        .clone()
}

/// Logs to stderr, filtered by `RUST_LOG` (default: info).
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,hnsw_rs=warn"));
    // A second call (tests) keeps the first subscriber.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Latencies of served recommendations, in microseconds (1 µs .. 60 s, 3 significant digits).
pub struct LatencyRecorder {
    histogram: Mutex<Histogram<u64>>,
}

/// Quantiles of a latency distribution.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LatencySummary {
    pub count: u64,
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
}

impl Default for LatencyRecorder {
    fn default() -> Self {
        Self::new()
    }
}

impl LatencyRecorder {
    pub fn new() -> Self {
        // Bounds are constants well inside what hdrhistogram accepts.
        let histogram =
            Histogram::new_with_bounds(1, 60_000_000, 3).expect("constant bounds are valid");
        Self {
            histogram: Mutex::new(histogram),
        }
    }

    pub fn record(&self, latency: Duration) {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        metrics::histogram!("streamrec_recommendation_seconds").record(latency.as_secs_f64());
        let mut h = self.histogram.lock().unwrap_or_else(|p| p.into_inner());
        h.saturating_record(micros.max(1));
    }

    pub fn summary(&self) -> LatencySummary {
        let h = self.histogram.lock().unwrap_or_else(|p| p.into_inner());
        let q = |q: f64| Duration::from_micros(h.value_at_quantile(q));
        LatencySummary {
            count: h.len(),
            p50: q(0.5),
            p99: q(0.99),
            max: Duration::from_micros(h.max()),
        }
    }
}
