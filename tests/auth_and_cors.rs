//! API keys and CORS over HTTP: every route's scope (401 without or with an unknown key, 403
//! with a key that lacks the scope, through with one that holds it), the open health and
//! metrics routes, and CORS preflights from allowed and other origins.

mod support;

use std::sync::Arc;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use streamrec_actors::{EngineConfig, InProcessBus};
use streamrec_api::RunningServer;
use streamrec_api::auth::{Access, ApiKeys};

const READER: &str = "reader-key-0123456789";
const WRITER: &str = "writer-key-0123456789";
const ADMIN: &str = "admin-key-0123456789";
const ORIGIN: &str = "https://shop.example";

async fn server(dir: &std::path::Path) -> RunningServer {
    server_guarding(dir, false).await
}

/// With `guard`, health, readiness and metrics ask for the read scope too.
async fn server_guarding(dir: &std::path::Path, guard: bool) -> RunningServer {
    let access = Access {
        keys: ApiKeys::parse(&format!("{READER}:read,{WRITER}:write,{ADMIN}:admin")).expect("keys"),
        cors_origins: vec![ORIGIN.parse().expect("origin")],
        guard_operations: guard,
    };
    let config = EngineConfig {
        snapshot_dir: Some(dir.to_owned()),
        snapshot_interval: None,
        ..EngineConfig::default()
    };
    RunningServer::start_with_access(
        Arc::new(InProcessBus::new()),
        config,
        "127.0.0.1:0".parse().expect("addr"),
        streamrec_api::server::HttpLimits::in_process(),
        access,
    )
    .await
    .expect("server starts")
}

async fn call(
    server: &RunningServer,
    method: &Method,
    path: &str,
    body: Option<&Value>,
    key: Option<&str>,
) -> (StatusCode, Value) {
    let mut request = reqwest::Client::new().request(method.clone(), server.url(path));
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    if let Some(body) = body {
        request = request.json(body);
    }
    let response = request.send().await.expect("request");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_needs_its_scope() {
    let dir = tempfile::tempdir().expect("dir");
    let server = server(dir.path()).await;
    let event = json!({"event_id": "e1", "session_id": "s", "kind": "view", "item_id": "i1",
        "ts": chrono::Utc::now().timestamp_millis()});
    let item = json!({"item_id": "i1", "title": "One"});
    // A snapshot to name in the admin routes.
    let (status, taken) = call(&server, &Method::POST, "/v1/snapshots", None, Some(ADMIN)).await;
    assert_eq!(status, StatusCode::CREATED, "{taken}");
    let version = taken["version"].as_str().expect("version").to_owned();
    let learner = format!("/v1/snapshots/{version}/learners/popularity");
    let show = format!("/v1/snapshots/{version}");
    let shadow = json!({"version": version});
    let asked = json!({"session_id": "s", "k": 3});
    let routes: Vec<(Method, &str, Option<&Value>, &str)> = vec![
        (
            Method::GET,
            "/v1/recommendations?session_id=s&k=3",
            None,
            "read",
        ),
        (Method::POST, "/v1/recommendations", Some(&asked), "read"),
        (Method::GET, "/v1/items", None, "read"),
        (Method::GET, "/v1/stats", None, "read"),
        (Method::POST, "/v1/events", Some(&event), "write"),
        (Method::POST, "/v1/items", Some(&item), "write"),
        (Method::GET, "/v1/snapshots", None, "admin"),
        (Method::POST, "/v1/snapshots", None, "admin"),
        (Method::GET, &show, None, "admin"),
        (Method::GET, &learner, None, "admin"),
        (Method::POST, "/v1/shadow", Some(&shadow), "admin"),
        (Method::GET, "/v1/shadow", None, "admin"),
        (Method::DELETE, "/v1/shadow", None, "admin"),
        (Method::DELETE, "/v1/items/i1", None, "admin"),
        (Method::DELETE, "/v1/users/u1", None, "admin"),
        // Through the key check, an item not (yet) in the catalog is a 404.
        (Method::GET, "/v1/items/i1", None, "read"),
    ];
    for (method, path, body, scope) in &routes {
        let what = format!("{method} {path}");
        let (status, error) = call(&server, method, path, *body, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{what} without a key");
        assert_eq!(error["error"]["code"], "unauthorized", "{what}");
        let (status, _) = call(&server, method, path, *body, Some("unknown-key-0123456789")).await;
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "{what} with an unknown key"
        );
        for (key, holds) in [
            (READER, *scope == "read"),
            (WRITER, *scope == "write"),
            (ADMIN, true),
        ] {
            let (status, answer) = call(&server, method, path, *body, Some(key)).await;
            if holds {
                let passed = status.is_success()
                    || (path.starts_with("/v1/items/") && status == StatusCode::NOT_FOUND);
                assert!(passed, "{what} with {key}: {status} {answer}");
            } else {
                assert_eq!(status, StatusCode::FORBIDDEN, "{what} with {key}: {answer}");
                assert_eq!(answer["error"]["code"], "forbidden", "{what}");
                assert!(
                    answer["error"]["message"]
                        .as_str()
                        .is_some_and(|m| m.contains(scope)),
                    "{what}: {answer}"
                );
            }
        }
    }
    // X-API-Key works as well as a bearer token.
    let response = reqwest::Client::new()
        .get(server.url("/v1/stats"))
        .header("X-API-Key", READER)
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::OK);
    // Health, readiness, metrics, the spec, its explorer and the storefront stay open.
    for path in [
        "/healthz",
        "/readyz",
        "/metrics",
        "/",
        "/openapi.json",
        "/docs",
    ] {
        let status = reqwest::get(server.url(path))
            .await
            .expect("request")
            .status();
        assert!(
            status != StatusCode::UNAUTHORIZED && status != StatusCode::FORBIDDEN,
            "{path}: {status}"
        );
    }
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_answers_allowed_origins_only() {
    let dir = tempfile::tempdir().expect("dir");
    let server = server(dir.path()).await;
    let client = reqwest::Client::new();
    let preflight = |origin: &'static str| {
        client
            .request(Method::OPTIONS, server.url("/v1/events"))
            .header("Origin", origin)
            .header("Access-Control-Request-Method", "POST")
            .header(
                "Access-Control-Request-Headers",
                "authorization,content-type",
            )
            .send()
    };
    let allowed = preflight(ORIGIN).await.expect("preflight");
    assert!(allowed.status().is_success(), "{}", allowed.status());
    let header = |r: &reqwest::Response, name: &str| {
        r.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_ascii_lowercase)
    };
    assert_eq!(
        header(&allowed, "access-control-allow-origin").as_deref(),
        Some(ORIGIN)
    );
    let methods = header(&allowed, "access-control-allow-methods").unwrap_or_default();
    assert!(methods.contains("post"), "{methods}");
    let headers = header(&allowed, "access-control-allow-headers").unwrap_or_default();
    assert!(
        headers.contains("authorization") && headers.contains("content-type"),
        "{headers}"
    );
    // Another origin gets no CORS headers at all.
    let refused = preflight("https://evil.example").await.expect("preflight");
    assert!(header(&refused, "access-control-allow-origin").is_none());
    assert!(header(&refused, "access-control-allow-methods").is_none());
    // An actual request from the allowed origin carries the header too.
    let answered = client
        .get(server.url("/v1/stats"))
        .header("Origin", ORIGIN)
        .bearer_auth(READER)
        .send()
        .await
        .expect("request");
    assert_eq!(
        header(&answered, "access-control-allow-origin").as_deref(),
        Some(ORIGIN)
    );
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_readiness_and_metrics_can_be_guarded_too() {
    let dir = tempfile::tempdir().expect("dir");
    let server = server_guarding(dir.path(), true).await;
    for path in ["/healthz", "/readyz", "/metrics"] {
        let (status, error) = call(&server, &Method::GET, path, None, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}");
        assert_eq!(error["error"]["code"], "unauthorized", "{path}");
        let (status, _) = call(&server, &Method::GET, path, None, Some(READER)).await;
        assert!(
            status != StatusCode::UNAUTHORIZED && status != StatusCode::FORBIDDEN,
            "{path}: {status}"
        );
    }
    let (status, _) = call(&server, &Method::GET, "/", None, None).await;
    assert_eq!(status, StatusCode::OK, "the page stays open");
    server.shutdown().await.expect("clean shutdown");
}
