//! Logs, Prometheus metrics, and the recommendation latency distribution the demo shows.

use std::sync::Mutex;
use std::time::Duration;

use hdrhistogram::Histogram;
use metrics_exporter_prometheus::PrometheusHandle;

/// Installs the process-wide Prometheus recorder once (see [`crate::metric_catalog`]);
/// later calls return the same handle.
pub fn prometheus() -> Option<PrometheusHandle> {
    crate::metric_catalog::install()
}

/// How log lines are written.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// Logs to stderr, filtered by `RUST_LOG` (default: info); colours only when stderr is a
/// terminal, so a log file or collector never sees escape codes.
pub fn init_logging(format: LogFormat) {
    use std::io::IsTerminal;
    use tracing_subscriber::Layer;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,hnsw_rs=warn"));
    let lines = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let lines = match format {
        LogFormat::Text => lines.boxed(),
        LogFormat::Json => lines.json().with_current_span(true).boxed(),
    };
    let registry = tracing_subscriber::registry().with(lines);
    #[cfg(feature = "otlp")]
    let registry = registry.with(crate::otlp::layer());
    // A second call (tests) keeps the first subscriber.
    let _ = registry.with(filter).try_init();
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
        metrics::histogram!(crate::metric_catalog::RECOMMENDATION_SECONDS)
            .record(latency.as_secs_f64());
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
