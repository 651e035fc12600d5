//! The HTTP API's contract on the embedded bus: validation, error bodies, limits.

mod support;

use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use streamrec_actors::{EngineConfig, InProcessBus};
use streamrec_api::RunningServer;
use support::{eventually, get};

const TS: i64 = 1_700_000_000_000;

async fn server() -> RunningServer {
    RunningServer::start(
        Arc::new(InProcessBus::new()),
        EngineConfig::default(),
        "127.0.0.1:0".parse().expect("addr"),
    )
    .await
    .expect("server starts")
}

fn event(id: &str, session: &str, item: &str) -> Value {
    json!({"event_id": id, "session_id": session, "kind": "view", "item_id": item, "ts": TS})
}

async fn post(
    server: &RunningServer,
    path: &str,
    body: impl Into<reqwest::Body>,
) -> (StatusCode, Value) {
    let response = reqwest::Client::new()
        .post(server.url(path))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("request");
    let status = response.status();
    (status, response.json().await.expect("every answer is JSON"))
}

#[tokio::test]
async fn a_batch_is_accepted_whole_and_learned() {
    let server = server().await;
    let batch = json!([
        event("1", "s", "a"),
        event("2", "s", "b"),
        event("3", "t", "a")
    ]);
    let (status, body) = post(&server, "/v1/events", batch.to_string()).await;
    assert_eq!(
        (status, body),
        (StatusCode::ACCEPTED, json!({"accepted": 3}))
    );
    eventually("applied", Duration::from_secs(10), || async {
        get(&server, "/v1/stats").await.1["ingest"]["events_applied"] == 3
    })
    .await;
    eventually("ranked", Duration::from_secs(10), || async {
        let (_, body) = get(&server, "/v1/recommendations?session_id=new&k=5").await;
        body["items"]
            .as_array()
            .is_some_and(|items| items.len() == 2 && items[0]["item_id"] == "a")
    })
    .await;
    let (status, body) = get(&server, "/v1/recommendations?session_id=t").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ids_and_propensities(&body), [("b".to_owned(), 1.0)]);
    server.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn one_invalid_event_rejects_the_batch_and_names_each_problem() {
    let server = server().await;
    let mut bad_kind = event("2", "s", "b");
    bad_kind["kind"] = json!("like");
    let mut no_item = event("3", "s", "c");
    no_item.as_object_mut().map(|m| m.remove("item_id"));
    let batch = json!([event("1", "s", "a"), bad_kind, no_item, 7]);
    let (status, body) = post(&server, "/v1/events", batch.to_string()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["code"], "validation_failed");
    let details = body["error"]["details"].as_array().expect("details");
    let summary: Vec<(u64, &str)> = details
        .iter()
        .map(|d| {
            (
                d["index"].as_u64().unwrap_or(99),
                d["field"].as_str().unwrap_or("?"),
            )
        })
        .collect();
    assert_eq!(summary, [(1, "kind"), (2, "item_id"), (3, "")]);
    // Nothing of the batch was published.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        get(&server, "/v1/stats").await.1["ingest"]["events_applied"],
        0
    );
    server.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn malformed_requests_get_json_errors() {
    let server = server().await;
    let cases: Vec<(&str, String, StatusCode, &str)> = vec![
        (
            "/v1/events",
            "{oops".into(),
            StatusCode::BAD_REQUEST,
            "invalid_json",
        ),
        (
            "/v1/events",
            "[]".into(),
            StatusCode::BAD_REQUEST,
            "empty_batch",
        ),
        (
            "/v1/events",
            "\"text\"".into(),
            StatusCode::BAD_REQUEST,
            "invalid_body",
        ),
        (
            "/v1/events",
            Value::Array((0..1001).map(|i| event(&i.to_string(), "s", "a")).collect()).to_string(),
            StatusCode::BAD_REQUEST,
            "batch_too_large",
        ),
        (
            "/v1/events",
            "x".repeat(9 * 1024 * 1024),
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
        ),
        (
            "/v1/items",
            json!({"title": "no id"}).to_string(),
            StatusCode::BAD_REQUEST,
            "validation_failed",
        ),
    ];
    for (path, body, expected_status, expected_code) in cases {
        let (status, answer) = post(&server, path, body).await;
        assert_eq!(status, expected_status, "{path}: {answer}");
        assert_eq!(answer["error"]["code"], expected_code, "{path}: {answer}");
    }
    for (query, code) in [
        ("", "missing_session_id"),
        ("?session_id=", "missing_session_id"),
        ("?session_id=s&k=0", "invalid_k"),
        ("?session_id=s&k=501", "invalid_k"),
        ("?session_id=s&k=ten", "invalid_k"),
    ] {
        let (status, answer) = get(&server, &format!("/v1/recommendations{query}")).await;
        assert_eq!(
            (status, answer["error"]["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some(code)),
            "{query}"
        );
    }
    let (status, answer) = get(&server, "/v1/nowhere").await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found"))
    );
    let (status, answer) = post(&server, "/v1/stats", "{}").await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{answer}");
    server.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn unavailable_items_are_never_recommended() {
    let server = server().await;
    let batch = json!([
        event("1", "s", "gone"),
        event("2", "s", "gone"),
        event("3", "s", "here")
    ]);
    post(&server, "/v1/events", batch.to_string()).await;
    let (status, _) = post(
        &server,
        "/v1/items",
        json!({"item_id": "gone", "available": false}).to_string(),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    eventually(
        "only the available item",
        Duration::from_secs(10),
        || async {
            let (_, body) = get(&server, "/v1/recommendations?session_id=other").await;
            ids_and_propensities(&body) == [("here".to_owned(), 1.0)]
        },
    )
    .await;
    server.shutdown().await.expect("shutdown");
}

/// The JSON body asks what the query asks, rules whose values hold `,` and `:` included;
/// an answer shorter than k says so.
#[tokio::test]
async fn a_posted_request_ranks_as_the_query_does_and_a_short_answer_says_so() {
    let server = server().await;
    let batch = json!([
        event("1", "crowd1", "a"),
        event("2", "crowd2", "a"),
        event("3", "crowd1", "b"),
        event("4", "crowd3", "c")
    ]);
    post(&server, "/v1/events", batch.to_string()).await;
    let catalog = json!([
        {"item_id": "a", "attributes": {"tag": "x,y:z", "genres": ["drama", "comedy"]}},
        {"item_id": "b", "attributes": {"tag": "x,y:z", "genres": ["drama"]}},
        {"item_id": "c", "attributes": {"tag": "other", "genres": ["drama"]}}
    ]);
    post(&server, "/v1/items", catalog.to_string()).await;
    eventually("learned", Duration::from_secs(10), || async {
        let (_, stats) = get(&server, "/v1/stats").await;
        stats["catalog_items"] == 3 && stats["ingest"]["events_applied"] == 4
    })
    .await;
    let (status, by_query) = get(&server, "/v1/recommendations?session_id=new&k=3").await;
    assert_eq!(status, StatusCode::OK, "{by_query}");
    assert!(by_query.get("note").is_none(), "three of three: {by_query}");
    let body = json!({"session_id": "new", "k": 3});
    let (status, by_body) = post(&server, "/v1/recommendations", body.to_string()).await;
    assert_eq!(status, StatusCode::OK, "{by_body}");
    assert_eq!(
        ids_and_propensities(&by_body),
        ids_and_propensities(&by_query)
    );

    let ids = |answer: &Value| -> Vec<String> {
        ids_and_propensities(answer)
            .into_iter()
            .map(|(id, _)| id)
            .collect()
    };
    let body =
        json!({"session_id": "new", "k": 5, "filters": {"tag": "x,y:z"}, "boosts": {"b": 10.0}});
    let (status, filtered) = post(&server, "/v1/recommendations", body.to_string()).await;
    assert_eq!(status, StatusCode::OK, "{filtered}");
    assert_eq!(
        ids(&filtered),
        ["b", "a"],
        "a value with , and : filters; the boost ranks b first: {filtered}"
    );
    let body = json!({"session_id": "new", "filters": {"genres": ["drama", "comedy"]}});
    let (_, both) = post(&server, "/v1/recommendations", body.to_string()).await;
    assert_eq!(
        ids(&both),
        ["a"],
        "every value of a list must match: {both}"
    );
    let note = filtered["note"].as_str().expect("a short answer says so");
    assert!(note.contains("2 of 5"), "{note}");

    for (body, code) in [
        (json!({"k": 3}), "invalid_body"),
        (json!({"session_id": "s", "colour": "red"}), "invalid_body"),
        (json!({"session_id": "s", "k": 0}), "invalid_k"),
        (
            json!({"session_id": "s", "mmr_lambda": 2.0}),
            "invalid_mmr_lambda",
        ),
        (json!({"session_id": ""}), "missing_session_id"),
    ] {
        let (status, error) = post(&server, "/v1/recommendations", body.to_string()).await;
        assert_eq!(
            (status, error["error"]["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some(code)),
            "{body}: {error}"
        );
    }
    let (status, error) = post(
        &server,
        "/v1/recommendations",
        r#"{"session_id":"s","session_id":"t"}"#,
    )
    .await;
    assert_eq!(
        (status, error["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("duplicate_key"))
    );
    server.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn health_readiness_and_metrics_answer() {
    let server = server().await;
    assert_eq!(
        get(&server, "/healthz").await,
        (StatusCode::OK, json!({"status": "ok"}))
    );
    let (status, ready) = get(&server, "/readyz").await;
    assert_eq!(
        (status, &ready["ready"], &ready["bus"]),
        (StatusCode::OK, &json!(true), &json!("in-process"))
    );
    streamrec_api::telemetry::prometheus();
    post(&server, "/v1/events", event("m", "s", "a").to_string()).await;
    let _ = get(&server, "/v1/recommendations?session_id=s").await;
    let metrics = reqwest::get(server.url("/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains("streamrec_recommendation_seconds"),
        "{metrics}"
    );
    server.shutdown().await.expect("shutdown");
}

/// The answer's items as (id, propensity): what the rules decide, whatever the scores.
fn ids_and_propensities(body: &Value) -> Vec<(String, f64)> {
    body["items"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .map(|i| {
                    (
                        i["item_id"].as_str().unwrap_or_default().to_owned(),
                        i["propensity"].as_f64().unwrap_or(f64::NAN),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}
