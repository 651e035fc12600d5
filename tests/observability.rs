//! What an operator reads: every Prometheus series described and present from the first
//! scrape, latencies as histograms with millisecond buckets, per route and per stage; a
//! request id and a W3C trace on every answer, the trace carried into the impression; the
//! spec and its explorer served.

mod support;

use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;
use streamrec_actors::{EngineConfig, InProcessBus};
use streamrec_api::RunningServer;
use streamrec_api::metric_catalog::{CATALOG, Kind};
use support::eventually;

async fn server(bus: Arc<InProcessBus>) -> RunningServer {
    RunningServer::start(
        bus,
        EngineConfig::default(),
        "127.0.0.1:0".parse().expect("addr"),
    )
    .await
    .expect("server starts")
}

async fn scrape(server: &RunningServer) -> String {
    reqwest::get(server.url("/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_series_is_described_typed_and_present_and_latencies_are_histograms() {
    streamrec_api::telemetry::prometheus();
    let bus = Arc::new(InProcessBus::new());
    let server = server(bus).await;
    let first = scrape(&server).await;
    // Counters and gauges from the first scrape; a histogram is rendered once it has a sample.
    for series in CATALOG.iter().filter(|s| s.kind != Kind::Histogram) {
        let kind = if series.kind == Kind::Counter {
            "counter"
        } else {
            "gauge"
        };
        assert!(
            first.contains(&format!("# HELP {} ", series.name)),
            "{} has no HELP",
            series.name
        );
        assert!(
            first.contains(&format!("# TYPE {} {kind}", series.name)),
            "{} is not a {kind}:\n{first}",
            series.name
        );
    }
    assert!(
        first.contains(r#"streamrec_http_requests_total{route="/v1/users/{user_id}",method="DELETE",status="202"} 0"#),
        "every operation at its success status:\n{first}"
    );
    assert!(
        first.contains("streamrec_dead_letters_total{reason=\"future_timestamp\"} 0"),
        "labelled counters start at zero"
    );
    assert!(first.contains("streamrec_build_info{version="));
    let events = json!([{"event_id": "m1", "session_id": "s", "kind": "view", "item_id": "a",
        "ts": chrono::Utc::now().timestamp_millis()}]);
    let client = reqwest::Client::new();
    let posted = client
        .post(server.url("/v1/events"))
        .json(&events)
        .send()
        .await
        .expect("post");
    assert_eq!(posted.status(), StatusCode::ACCEPTED);
    eventually("learned", Duration::from_secs(10), || async {
        server.engine().models().counters.events == 1
    })
    .await;
    let answer = client
        .get(server.url("/v1/recommendations?session_id=s2"))
        .send()
        .await
        .expect("get");
    assert_eq!(answer.status(), StatusCode::OK);
    let metrics = scrape(&server).await;
    for histogram in [
        "streamrec_http_request_duration_seconds",
        "streamrec_recommendation_seconds",
        "streamrec_recommend_stage_seconds",
    ] {
        assert!(
            metrics.contains(&format!("# TYPE {histogram} histogram")),
            "{histogram}:\n{metrics}"
        );
        assert!(
            metrics.contains(&format!("# HELP {histogram} ")),
            "{histogram}"
        );
    }
    assert!(metrics.contains("le=\"0.005\""), "millisecond buckets");
    // Other tests in this process serve requests too: at least this one was counted.
    let served = metrics
        .lines()
        .find_map(|l| {
            l.strip_prefix(
                r#"streamrec_http_requests_total{route="/v1/recommendations",method="GET",status="200"} "#,
            )
        })
        .and_then(|n| n.parse::<u64>().ok());
    assert!(
        served.is_some_and(|n| n >= 1),
        "by route pattern, method and status:\n{metrics}"
    );
    for stage in ["candidates", "rerank", "rules", "slate"] {
        assert!(
            metrics.contains(&format!(
                "streamrec_recommend_stage_seconds_count{{stage=\"{stage}\"}}"
            )),
            "{stage}"
        );
    }
    assert!(metrics.contains("streamrec_catalog_items 0"));
    assert!(
        !metrics.contains("streamrec_live_sessions 0"),
        "a session is live:\n{metrics}"
    );
    server.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trace_is_continued_returned_and_carried_into_the_impression() {
    let nats = support::nats::NatsServer::start();
    let server = support::nats_server(&nats).await;
    let parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let events = json!([{"event_id": "t1", "session_id": "crowd", "kind": "view", "item_id": "a",
        "ts": chrono::Utc::now().timestamp_millis()}]);
    let client = reqwest::Client::new();
    client
        .post(server.url("/v1/events"))
        .json(&events)
        .send()
        .await
        .expect("post");
    eventually("learned", Duration::from_secs(10), || async {
        server.engine().models().counters.events == 1
    })
    .await;
    let answer = client
        .get(server.url("/v1/recommendations?session_id=s"))
        .header("traceparent", parent)
        .header("x-request-id", "req-42")
        .send()
        .await
        .expect("get");
    assert_eq!(answer.status(), StatusCode::OK);
    assert_eq!(
        answer.headers()["x-request-id"],
        "req-42",
        "the client's id comes back"
    );
    let returned = answer.headers()["traceparent"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert!(
        returned.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
        "{returned}"
    );
    assert!(
        !returned.contains("00f067aa0ba902b7"),
        "the server's own span: {returned}"
    );
    eventually(
        "the impression is learned",
        Duration::from_secs(10),
        || async { server.engine().models().counters.impressions == 1 },
    )
    .await;
    let js = async_nats::jetstream::new(async_nats::connect(nats.url()).await.expect("connect"));
    let stream = js
        .get_stream(streamrec_proto::subjects::EVENTS_STREAM)
        .await
        .expect("events stream");
    let message = stream
        .get_last_raw_message_by_subject(streamrec_proto::subjects::IMPRESSIONS_SUBJECT)
        .await
        .expect("an impression on the bus");
    let logged = streamrec_proto::Impression::from_json(&message.payload).expect("impression");
    assert_eq!(logged.traceparent.as_deref(), Some(returned.as_str()));
    // Without a traceparent (or with a malformed one) a trace starts here, and a request id
    // is made up.
    let fresh = client
        .get(server.url("/healthz"))
        .header("traceparent", "garbage")
        .send()
        .await
        .expect("get");
    let started = fresh.headers()["traceparent"].to_str().expect("ascii");
    assert!(
        started.len() == 55 && !started.contains("4bf92f35"),
        "{started}"
    );
    assert!(!fresh.headers()["x-request-id"].is_empty());
    server.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_spec_and_its_explorer_are_served() {
    let server = server(Arc::new(InProcessBus::new())).await;
    let spec = reqwest::get(server.url("/openapi.json"))
        .await
        .expect("spec");
    assert_eq!(spec.headers()["content-type"], "application/json");
    let spec: serde_json::Value = spec.json().await.expect("JSON");
    assert_eq!(spec["openapi"], "3.1.0");
    let page = reqwest::get(server.url("/docs")).await.expect("page");
    let policy = page.headers()["content-security-policy"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert!(
        policy.contains("default-src 'self'"),
        "nothing from elsewhere: {policy}"
    );
    let html = page.text().await.expect("html");
    assert!(
        html.contains("/docs/explorer.js") && !html.contains("https://"),
        "{html}"
    );
    let script = reqwest::get(server.url("/docs/explorer.js"))
        .await
        .expect("script");
    assert_eq!(script.status(), StatusCode::OK);
    assert!(script.text().await.expect("js").contains("/openapi.json"));
    server.shutdown().await.expect("shutdown");
}
