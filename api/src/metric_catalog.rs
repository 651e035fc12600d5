//! Every Prometheus series streamrec exports: its name, type and help, registered at zero
//! when the recorder is installed (so an alert on a rate has a series to read from the
//! first scrape), histogram buckets chosen for milliseconds, and the gauges read from the
//! engine at scrape time.

use std::sync::OnceLock;
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use streamrec_actors::Engine;
use streamrec_proto::Reason;

/// Latency buckets, seconds: 100 µs to 10 s, dense around the few-millisecond answers.
pub const LATENCY_BUCKETS: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 10.0,
];
/// Requests per re-ranker batch.
const BATCH_BUCKETS: [f64; 8] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0];

pub const HTTP_REQUESTS: &str = "streamrec_http_requests_total";
pub const HTTP_SECONDS: &str = "streamrec_http_request_duration_seconds";
pub const RECOMMENDATION_SECONDS: &str = "streamrec_recommendation_seconds";
pub const DRIFT_PSI: &str = "streamrec_drift_psi";

/// A series: name, help, and what kind it is.
pub struct Series {
    pub name: &'static str,
    pub kind: Kind,
    pub help: &'static str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

const fn series(name: &'static str, kind: Kind, help: &'static str) -> Series {
    Series { name, kind, help }
}

/// Every series, in the order the README lists them.
pub const CATALOG: &[Series] = &[
    series(
        HTTP_REQUESTS,
        Kind::Counter,
        "HTTP requests answered, by route, method and status.",
    ),
    series(
        HTTP_SECONDS,
        Kind::Histogram,
        "HTTP request latency in seconds, by route, method and status.",
    ),
    series(
        RECOMMENDATION_SECONDS,
        Kind::Histogram,
        "Time to answer one recommendation request (both routes), in seconds.",
    ),
    series(
        streamrec_actors::recommend::STAGE_SECONDS,
        Kind::Histogram,
        "Time in each stage of a recommendation request (candidates, rerank, rules, slate), in seconds.",
    ),
    series(
        "streamrec_http_shed_total",
        Kind::Counter,
        "Requests shed with 503 before any work, by route and why (in_flight, lag).",
    ),
    series(
        "streamrec_http_connections_over_cap_total",
        Kind::Counter,
        "Connections accepted past the connection cap and closed at once.",
    ),
    series(
        "streamrec_http_connections_refused_total",
        Kind::Counter,
        "Connections that failed to be accepted.",
    ),
    series(
        "streamrec_events_applied_total",
        Kind::Counter,
        "Events the learners applied (rate() of it is the apply rate).",
    ),
    series(
        "streamrec_events_duplicate_total",
        Kind::Counter,
        "Events skipped as already applied (same event id or a redelivered sequence).",
    ),
    series(
        "streamrec_bus_redeliveries_total",
        Kind::Counter,
        "Messages the bus delivered again after a lost acknowledgement.",
    ),
    series(
        "streamrec_late_events_total",
        Kind::Counter,
        "Events stamped behind the watermark: in no event-time window, republished to streamrec.late.<kind>.",
    ),
    series(
        "streamrec_state_digests_checked_total",
        Kind::Counter,
        "Digests of the learners' state compared with the cluster's at the same events-stream sequence (equal, or the first there).",
    ),
    series(
        "streamrec_state_divergences_total",
        Kind::Counter,
        "Digests of the learners' state that differed from the cluster's at the same sequence; each is announced on streamrec.alerts.divergence.",
    ),
    series(
        DRIFT_PSI,
        Kind::Gauge,
        "Population stability index of each monitored feature (label feature), the latest closed drift window against the one before; >= 0.25 is major drift.",
    ),
    series(
        "streamrec_dead_lettered_total",
        Kind::Counter,
        "Messages sent to the dead-letter subject, all reasons.",
    ),
    series(
        streamrec_actors::ingest::DEAD_LETTERS_BY_REASON,
        Kind::Counter,
        "Messages sent to the dead-letter subject, by reason.",
    ),
    series(
        "streamrec_items_upserted_total",
        Kind::Counter,
        "Catalog upserts and deletions applied.",
    ),
    series(
        "streamrec_impressions_total",
        Kind::Counter,
        "Impressions (served lists) the learners applied.",
    ),
    series(
        "streamrec_impressions_dropped_total",
        Kind::Counter,
        "Impressions that could not be published to the bus.",
    ),
    series(
        "streamrec_bandit_rewards_total",
        Kind::Counter,
        "Bandit updates: clicks and the zeros around them.",
    ),
    series(
        "streamrec_snapshots_written_total",
        Kind::Counter,
        "Snapshots written.",
    ),
    series(
        "streamrec_snapshots_skipped_total",
        Kind::Counter,
        "Snapshots found corrupt at restore and skipped.",
    ),
    series(
        "streamrec_snapshot_lease_held",
        Kind::Gauge,
        "1 while this node holds the lease to write the cluster's snapshots to NATS.",
    ),
    series(
        "streamrec_reranker_steps_total",
        Kind::Counter,
        "Training steps of the online re-ranker.",
    ),
    series(
        "streamrec_reranker_loss",
        Kind::Gauge,
        "Loss of the re-ranker's last training step.",
    ),
    series(
        "streamrec_rerank_batch_requests",
        Kind::Histogram,
        "Requests scored together in one re-ranker batch.",
    ),
    series(
        "streamrec_ann_rebuilds_total",
        Kind::Counter,
        "Rebuilds of the intent ANN index.",
    ),
    series(
        streamrec_actors::bus::CONSUMER_PENDING,
        Kind::Gauge,
        "JetStream num_pending of streamrec's consumer, by topic, as of its last batch (NATS only).",
    ),
    series(
        "streamrec_learner_lag_events",
        Kind::Gauge,
        "Events on the bus the learner has not applied yet (head minus applied sequence).",
    ),
    series(
        "streamrec_learner_lag_seconds",
        Kind::Gauge,
        "How far behind the learner is, in seconds, while events wait: the bus-append-to-learned time of its latest batch; 0 when caught up.",
    ),
    series(
        "streamrec_freshness_seconds",
        Kind::Gauge,
        "Bus append to learned, of the newest event of the last batch, in seconds.",
    ),
    series(
        "streamrec_event_freshness_seconds",
        Kind::Gauge,
        "Event time to learned, of the newest event of the last batch, in seconds.",
    ),
    series(
        "streamrec_live_sessions",
        Kind::Gauge,
        "Sessions the serving version remembers.",
    ),
    series(
        "streamrec_catalog_items",
        Kind::Gauge,
        "Items the catalog holds.",
    ),
    series(
        "streamrec_intent_index_items",
        Kind::Gauge,
        "Items in the intent ANN index.",
    ),
    series(
        "streamrec_resident_memory_bytes",
        Kind::Gauge,
        "Resident memory of the process, in bytes.",
    ),
    series(
        "streamrec_model_version",
        Kind::Gauge,
        "Number of the serving model version (it grows with every publish).",
    ),
    series(
        "streamrec_build_info",
        Kind::Gauge,
        "Always 1; its labels say the build: version.",
    ),
    series(
        "streamrec_policy_value",
        Kind::Gauge,
        "Running value of the serving policy: the share of served lists that got a click (policy=live), and the shadow candidate's off-policy estimate while one runs (policy=shadow).",
    ),
];

/// Installs the process-wide recorder once (histograms, not summaries), describes every
/// series and registers it at zero; later calls return the same handle.
pub fn install() -> Option<PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets(&LATENCY_BUCKETS)
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full("streamrec_rerank_batch_requests".to_owned()),
                        &BATCH_BUCKETS,
                    )
                });
            match builder.and_then(|b| b.install_recorder()) {
                Ok(handle) => {
                    register_every_series();
                    Some(handle)
                }
                Err(e) => {
                    tracing::warn!(error = %e, "metrics recorder not installed");
                    None
                }
            }
        })
        .clone()
}

fn register_every_series() {
    for s in CATALOG {
        match (s.kind, s.name.ends_with("_seconds")) {
            (Kind::Counter, _) => describe_counter!(s.name, s.help),
            (Kind::Gauge, true) => describe_gauge!(s.name, Unit::Seconds, s.help),
            (Kind::Gauge, false) => describe_gauge!(s.name, s.help),
            (Kind::Histogram, true) => describe_histogram!(s.name, Unit::Seconds, s.help),
            (Kind::Histogram, false) => describe_histogram!(s.name, s.help),
        }
    }
    // At zero from the start; labelled ones with every label value known in advance.
    for s in CATALOG.iter().filter(|s| s.kind == Kind::Counter) {
        match s.name {
            HTTP_REQUESTS | "streamrec_http_shed_total" => {}
            streamrec_actors::ingest::DEAD_LETTERS_BY_REASON => {
                for reason in Reason::CODES {
                    metrics::counter!(s.name, "reason" => reason).absolute(0);
                }
            }
            name => metrics::counter!(name).absolute(0),
        }
    }
    // Each operation of the spec at its success status: the series an alert's ratio reads.
    if let Ok(spec) = serde_json::from_str::<serde_json::Value>(crate::openapi::spec_json())
        && let Some(paths) = spec["paths"].as_object()
    {
        for (route, item) in paths {
            for (method, operation) in item.as_object().into_iter().flatten() {
                let success = operation["responses"]
                    .as_object()
                    .and_then(|r| r.keys().find(|status| status.starts_with('2')).cloned());
                if let Some(status) = success {
                    let labels = [
                        ("route", route.clone()),
                        ("method", method.to_uppercase()),
                        ("status", status),
                    ];
                    metrics::counter!(HTTP_REQUESTS, &labels).absolute(0);
                }
            }
        }
    }
    for route in ["recommendations", "writes"] {
        for why in ["in_flight", "lag"] {
            metrics::counter!("streamrec_http_shed_total", "route" => route, "why" => why)
                .absolute(0);
        }
    }
    for s in CATALOG.iter().filter(|s| s.kind == Kind::Gauge) {
        match s.name {
            streamrec_actors::bus::CONSUMER_PENDING
            | "streamrec_build_info"
            | "streamrec_policy_value"
            | DRIFT_PSI => {}
            name => metrics::gauge!(name).set(0.0),
        }
    }
    // NaN until a window and its reference hold enough values: "no data", not "stable".
    for feature in streamrec_learner::drift::monitored_features() {
        metrics::gauge!(DRIFT_PSI, "feature" => feature).set(f64::NAN);
    }
    for topic in ["events", "items"] {
        metrics::gauge!(streamrec_actors::bus::CONSUMER_PENDING, "topic" => topic).set(0.0);
    }
    metrics::gauge!("streamrec_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    metrics::gauge!("streamrec_policy_value", "policy" => "live").set(0.0);
    for stage in streamrec_pipeline::Stage::ALL {
        // A histogram exists once it has a sample; register it without one.
        let _ = metrics::histogram!(streamrec_actors::recommend::STAGE_SECONDS, "stage" => stage.name());
    }
}

/// Brings the gauges read from the engine up to date; called at each scrape. The lag needs
/// the bus head (a round trip, bounded like readiness).
pub async fn refresh(engine: &Engine) {
    let models = engine.models();
    let readiness = engine.readiness().await;
    let set = |name: &'static str, value: f64| metrics::gauge!(name).set(value);
    let lag = readiness.learner_lag.unwrap_or(0);
    set("streamrec_learner_lag_events", lag as f64);
    set(
        "streamrec_learner_lag_seconds",
        if lag > 0 {
            engine.freshness_ms() as f64 / 1000.0
        } else {
            0.0
        },
    );
    set(
        "streamrec_live_sessions",
        models.read.session_count() as f64,
    );
    set("streamrec_catalog_items", models.read.catalog_len() as f64);
    set(
        "streamrec_intent_index_items",
        engine.serving().intent_index.len() as f64,
    );
    set("streamrec_resident_memory_bytes", resident_bytes() as f64);
    set("streamrec_model_version", models.version as f64);
    for feature in models.read.drift().into_iter().flat_map(|r| &r.features) {
        metrics::gauge!(DRIFT_PSI, "feature" => feature.name.clone())
            .set(feature.psi.unwrap_or(f64::NAN));
    }
    let counters = models.counters;
    if counters.impressions > 0 {
        metrics::gauge!("streamrec_policy_value", "policy" => "live")
            .set(counters.attributed as f64 / counters.impressions as f64);
    }
    if let Some(report) =
        streamrec_actors::shadow::with_run(&engine.serving().shadow, |run| run.report())
    {
        metrics::gauge!("streamrec_policy_value", "policy" => "shadow").set(report.shadow_value);
    }
}

/// This process's resident memory, in bytes (0 where /proc is not there).
fn resident_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}

/// Counts and times every request by its route (the matched pattern, never the raw path,
/// so ids do not become series), method and status.
pub async fn record_requests(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    tracing::Span::current().record("route", route.as_str());
    let method = request.method().as_str().to_owned();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    let labels = [("route", route), ("method", method), ("status", status)];
    metrics::counter!(HTTP_REQUESTS, &labels).increment(1);
    metrics::histogram!(HTTP_SECONDS, &labels).record(started.elapsed().as_secs_f64());
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_end_in_total_and_every_name_is_listed_once() {
        let mut names: Vec<&str> = CATALOG.iter().map(|s| s.name).collect();
        for s in CATALOG {
            assert_eq!(
                s.kind == Kind::Counter,
                s.name.ends_with("_total"),
                "{}",
                s.name
            );
            assert!(
                s.name.starts_with("streamrec_") && !s.help.is_empty(),
                "{}",
                s.name
            );
        }
        names.sort_unstable();
        let before = names.len();
        names.dedup();
        assert_eq!(names.len(), before);
    }
}
