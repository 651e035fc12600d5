//! The request path's stages and rules over HTTP: candidate sources, explanations, the
//! user's history, pins, boosts, attribute filters, MMR, and their 400s.

mod support;

use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use streamrec_actors::{EngineConfig, InProcessBus};
use streamrec_api::RunningServer;
use support::{eventually, get};

const TS: i64 = 1_700_000_000_000;

fn event(id: usize, session: &str, user: Option<&str>, item: &str) -> Value {
    let mut e = json!({"event_id": format!("e{id}"), "session_id": session, "kind": "view",
        "item_id": item, "ts": TS + id as i64});
    if let Some(user) = user {
        e["user_id"] = json!(user);
    }
    e
}

async fn post(server: &RunningServer, path: &str, body: Value) -> StatusCode {
    reqwest::Client::new()
        .post(server.url(path))
        .json(&body)
        .send()
        .await
        .expect("request")
        .status()
}

fn ids(body: &Value) -> Vec<String> {
    body["items"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|i| i["item_id"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Sessions in which `a` goes with `b` most, then `c`, then `d`; items `e`..`h` only
/// popular; `h` unavailable; genres from the catalog.
async fn learned_server() -> RunningServer {
    let server = RunningServer::start(
        Arc::new(InProcessBus::new()),
        EngineConfig::default(),
        "127.0.0.1:0".parse().expect("addr"),
    )
    .await
    .expect("server starts");
    let sessions: [&[&str]; 6] = [
        &["a", "b"],
        &["a", "b", "c"],
        &["b", "a", "c"],
        &["a", "d"],
        &["e", "f", "g", "h"],
        &["e", "f", "g", "h"],
    ];
    let mut events = Vec::new();
    for (s, items) in sessions.iter().enumerate() {
        for item in *items {
            events.push(event(events.len(), &format!("s{s}"), None, item));
        }
    }
    let n = events.len();
    assert_eq!(
        post(&server, "/v1/events", json!(events)).await,
        StatusCode::ACCEPTED
    );
    let catalog: Vec<Value> = ["a", "b", "c", "d", "e", "f", "g", "h"]
        .iter()
        .map(|i| {
            let genre = if ["b", "d", "f"].contains(i) {
                "drama"
            } else {
                "comedy"
            };
            let decade = if *i == "d" { "80s" } else { "90s" };
            json!({"item_id": i, "available": *i != "h",
                "attributes": {"genre": genre, "decade": decade}})
        })
        .collect();
    assert_eq!(
        post(&server, "/v1/items", json!(catalog)).await,
        StatusCode::ACCEPTED
    );
    eventually("learned", Duration::from_secs(10), || async {
        let (_, stats) = get(&server, "/v1/stats").await;
        stats["ingest"]["events_applied"] == n && stats["catalog_items"] == 8
    })
    .await;
    server
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stages_rules_and_explanations() {
    let server = learned_server().await;
    // A new user who just met `a`: co-visitation puts `b` first, and explains itself.
    assert_eq!(
        post(&server, "/v1/events", event(100, "q", Some("u1"), "a")).await,
        StatusCode::ACCEPTED
    );
    let query = "/v1/recommendations?session_id=q&user_id=u1&k=8&explain=true";
    eventually("the click is learned", Duration::from_secs(10), || async {
        ids(&get(&server, query).await.1)
            .first()
            .map(String::as_str)
            == Some("b")
    })
    .await;
    let (_, body) = get(&server, query).await;
    let listed = ids(&body);
    assert!(!listed.contains(&"a".to_owned()), "seen: {listed:?}");
    assert!(!listed.contains(&"h".to_owned()), "unavailable: {listed:?}");
    let first = &body["items"][0]["explain"];
    assert_eq!(first["source"], "knn", "{first}");
    assert!(first["retrieval"].as_f64().is_some_and(|r| r > 0.0));
    assert_eq!(
        first["features"].as_array().map(Vec::len),
        Some(streamrec_learner::candidates::FEATURES)
    );
    // It names what it was co-visited with: the one item the user met.
    assert_eq!(first["because"], "a", "{first}");
    assert_eq!(first["explored"], false, "{first}");
    // Items that came from elsewhere (popular, intent) were co-visited with nothing.
    for item in body["items"].as_array().expect("items") {
        let explain = &item["explain"];
        if explain["source"] != "knn" && explain["source"] != "transition" {
            assert!(explain.get("because").is_none(), "{item}");
        }
    }
    let sources: Vec<&str> = body["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|i| i["explain"]["source"].as_str())
        .collect();
    // Items the history says nothing about fill the rest: popular ones, or intent neighbours
    // once the intent index holds their vectors (which of the two depends on when the index
    // last refreshed, so either counts).
    assert!(
        sources.iter().any(|s| *s == "popular" || *s == "intent"),
        "{sources:?}"
    );

    // The user's history follows them into a new session.
    let (_, other) = get(&server, "/v1/recommendations?session_id=q2&user_id=u1&k=8").await;
    assert!(!ids(&other).contains(&"a".to_owned()), "{other}");
    assert_eq!(ids(&other).first().map(String::as_str), Some("b"));

    // Pins take their slot at propensity 1; a boost lifts an item over the rest.
    let (_, pinned) = get(
        &server,
        "/v1/recommendations?session_id=q&user_id=u1&k=4&pin=g:0&boost=d:1000&explain=true",
    )
    .await;
    assert_eq!(
        ids(&pinned)[..2],
        ["g".to_owned(), "d".to_owned()],
        "{pinned}"
    );
    assert_eq!(pinned["items"][0]["propensity"], 1.0);
    assert_eq!(pinned["items"][0]["explain"]["source"], "pinned");
    assert_eq!(pinned["items"][1]["explain"]["boost"], 1000.0);

    // Attribute filters keep only matching items; repeated filter keys all apply (dramas of
    // the 90s leave out d, from the 80s).
    for (filters, matching) in [
        ("filter=genre:drama", &["b", "d", "f"][..]),
        ("filter=genre:drama&filter=decade:90s", &["b", "f"][..]),
    ] {
        let query = format!("/v1/recommendations?session_id=q&user_id=u1&k=8&{filters}");
        let listed = ids(&get(&server, &query).await.1);
        assert!(!listed.is_empty(), "{filters}");
        assert!(
            listed.iter().all(|i| matching.contains(&i.as_str())),
            "{filters}: {listed:?}"
        );
    }

    // MMR returns as many distinct items; lambda 1 is the plain order.
    let (_, plain) = get(
        &server,
        "/v1/recommendations?session_id=q&user_id=u1&k=5&rec_id=r1",
    )
    .await;
    let (_, same) = get(
        &server,
        "/v1/recommendations?session_id=q&user_id=u1&k=5&rec_id=r1&mmr_lambda=1",
    )
    .await;
    let (_, diverse) = get(
        &server,
        "/v1/recommendations?session_id=q&user_id=u1&k=5&rec_id=r1&mmr_lambda=0.2",
    )
    .await;
    assert_eq!(ids(&plain), ids(&same));
    let mut d = ids(&diverse);
    assert_eq!(d.len(), ids(&plain).len());
    d.sort();
    d.dedup();
    assert_eq!(d.len(), ids(&plain).len());
    server.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn bad_rule_parameters_are_400s_with_a_code() {
    let server = learned_server().await;
    for (query, code) in [
        ("mmr_lambda=2", "invalid_mmr_lambda"),
        ("mmr_lambda=x", "invalid_mmr_lambda"),
        ("pin=g:first", "invalid_pin"),
        ("pin=nocolon", "invalid_pin"),
        ("boost=d:inf", "invalid_boost"),
        ("filter=:x", "invalid_filter"),
        ("explain=maybe", "invalid_explain"),
        ("user_id=", "invalid_user_id"),
    ] {
        let (status, body) = get(
            &server,
            &format!("/v1/recommendations?session_id=q&{query}"),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}");
        assert_eq!(body["error"]["code"], code, "{query}: {body}");
    }
    server.shutdown().await.expect("shutdown");
}
