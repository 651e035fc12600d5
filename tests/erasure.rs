//! Item deletion and user erasure travel through the bus: once applied they hold after a
//! restore from a snapshot taken before them (replaying the stream after it), after one
//! taken after them, and after a replay of the whole stream; on NATS as on the embedded bus.

mod support;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use streamrec_actors::{EngineConfig, InProcessBus, Retention};
use streamrec_api::RunningServer;
use support::{eventually, get};

const LIMIT: Duration = Duration::from_secs(20);

/// An engine on a durable embedded bus in `dir/bus`, snapshots in `dir/snapshots` (none
/// taken on its own).
async fn durable_server(dir: &Path) -> RunningServer {
    let (bus, _) = InProcessBus::open(&dir.join("bus"), Retention::default()).expect("bus opens");
    let config = EngineConfig {
        snapshot_dir: Some(dir.join("snapshots")),
        snapshot_interval: None,
        ..EngineConfig::default()
    };
    support::server_on(Arc::new(bus), config).await
}

async fn send(
    server: &RunningServer,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut request = reqwest::Client::new().request(method, server.url(path));
    if let Some(body) = body {
        request = request.json(&body);
    }
    let r = request.send().await.expect("request");
    (r.status(), r.json().await.expect("JSON"))
}

async fn applied_seq(server: &RunningServer) -> u64 {
    get(server, "/v1/stats").await.1["applied_seq"]
        .as_u64()
        .unwrap_or(0)
}

/// u1 browses in s1 and s2, u2 in s3, an anonymous crowd views b; the catalog holds a, b, c.
async fn learn_two_users(server: &RunningServer) {
    let catalog = json!([{"item_id": "a"}, {"item_id": "b"}, {"item_id": "c"}]);
    let (status, _) = send(server, reqwest::Method::POST, "/v1/items", Some(catalog)).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let mut events = Vec::new();
    let mut event = |id: String, session: &str, user: Option<&str>, item: &str| {
        let mut e = json!({"event_id": id, "session_id": session, "kind": "view",
            "item_id": item, "ts": 1_700_000_000_000_i64});
        if let Some(user) = user {
            e["user_id"] = json!(user);
        }
        events.push(e);
    };
    event("e1".into(), "s1", Some("u1"), "a");
    event("e2".into(), "s1", Some("u1"), "b");
    event("e3".into(), "s2", Some("u1"), "c");
    event("e4".into(), "s3", Some("u2"), "a");
    for i in 0..5 {
        event(format!("crowd{i}"), &format!("crowd{i}"), None, "b");
    }
    let n = events.len() as u64;
    let (status, _) = send(
        server,
        reqwest::Method::POST,
        "/v1/events",
        Some(Value::Array(events)),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    eventually("events and catalog applied", LIMIT, || async {
        let stats = get(server, "/v1/stats").await.1;
        stats["applied_seq"].as_u64().unwrap_or(0) >= n && stats["catalog_items"] == 3
    })
    .await;
}

/// What the published version knows of u1 and u2, and whether b can be served.
struct Seen {
    u1: bool,
    s1: bool,
    s2: bool,
    u2: bool,
    s3: bool,
    b_listed: bool,
}

async fn seen(server: &RunningServer) -> Seen {
    let models = server.engine().models();
    let read = &models.read;
    let (_, page) = get(server, "/v1/items").await;
    let listed: Vec<&str> = page["items"]
        .as_array()
        .map(|a| a.iter().filter_map(|i| i["item_id"].as_str()).collect())
        .unwrap_or_default();
    Seen {
        u1: read.user_role_history(Some("u1"), "none").is_some(),
        s1: read.session("s1").is_some(),
        s2: read.session("s2").is_some(),
        u2: read.user_role_history(Some("u2"), "none").is_some(),
        s3: read.session("s3").is_some(),
        b_listed: listed.contains(&"b"),
    }
}

async fn assert_erased(server: &RunningServer, when: &str) {
    let s = seen(server).await;
    assert!(
        !s.u1 && !s.s1 && !s.s2,
        "{when}: u1 and u1's sessions are gone"
    );
    assert!(s.u2 && s.s3, "{when}: u2 is untouched");
    assert!(!s.b_listed, "{when}: b is not listed");
    assert_eq!(
        get(server, "/v1/items/b").await.0,
        StatusCode::NOT_FOUND,
        "{when}"
    );
    assert_eq!(get(server, "/v1/items/a").await.0, StatusCode::OK, "{when}");
    let (status, answer) = get(server, "/v1/recommendations?session_id=fresh&k=10").await;
    assert_eq!(status, StatusCode::OK, "{when}: {answer}");
    let served: Vec<&str> = answer["items"]
        .as_array()
        .map(|a| a.iter().filter_map(|i| i["item_id"].as_str()).collect())
        .unwrap_or_default();
    assert!(
        !served.is_empty(),
        "{when}: a and c are still served: {answer}"
    );
    assert!(
        !served.contains(&"b"),
        "{when}: the most popular item was deleted: {answer}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletions_and_erasures_hold_after_restore_and_replay() {
    let dir = tempfile::tempdir().expect("dir");
    let server = durable_server(dir.path()).await;
    learn_two_users(&server).await;
    let before = seen(&server).await;
    assert!(
        before.u1 && before.s1 && before.s2 && before.b_listed,
        "learned first"
    );
    let (_, answer) = get(&server, "/v1/recommendations?session_id=fresh&k=10").await;
    assert_eq!(
        answer["items"][0]["item_id"], "b",
        "b is the popular one: {answer}"
    );
    let (status, earlier) = send(&server, reqwest::Method::POST, "/v1/snapshots", None).await;
    assert_eq!(status, StatusCode::CREATED, "{earlier}");
    let earlier = earlier["version"].as_str().expect("version").to_owned();

    let seq = applied_seq(&server).await;
    let (status, body) = send(&server, reqwest::Method::DELETE, "/v1/users/u1", None).await;
    assert_eq!(
        (status, &body),
        (StatusCode::ACCEPTED, &json!({"kind": "user", "id": "u1"}))
    );
    let (status, body) = send(&server, reqwest::Method::DELETE, "/v1/items/b", None).await;
    assert_eq!(
        (status, &body),
        (StatusCode::ACCEPTED, &json!({"kind": "item", "id": "b"}))
    );
    eventually("erasure and deletion applied", LIMIT, || async {
        applied_seq(&server).await > seq && !seen(&server).await.b_listed
    })
    .await;
    assert_erased(&server, "applied").await;
    assert_eq!(server.engine().models().counters.users_erased, 1);
    server.shutdown().await.expect("shutdown");

    // The final snapshot holds the erasure.
    let server = durable_server(dir.path()).await;
    assert_erased(&server, "restored from the final snapshot").await;
    server.shutdown().await.expect("shutdown");

    // Only the snapshot from before: the replay after it erases again.
    let snapshots = dir.path().join("snapshots");
    for entry in std::fs::read_dir(&snapshots).expect("snapshots") {
        let path = entry.expect("entry").path();
        if path.is_dir() && path.file_name().is_some_and(|n| n != earlier.as_str()) {
            std::fs::remove_dir_all(&path).expect("remove a later snapshot");
        }
    }
    let server = durable_server(dir.path()).await;
    eventually("replayed after the earlier snapshot", LIMIT, || async {
        applied_seq(&server).await > seq
    })
    .await;
    eventually("erased by the replay", LIMIT, || async {
        !seen(&server).await.s1
    })
    .await;
    assert_erased(&server, "restored from before, replayed").await;
    server.shutdown().await.expect("shutdown");

    // No snapshot at all: the whole stream replays to the same place.
    std::fs::remove_dir_all(&snapshots).expect("remove snapshots");
    let server = durable_server(dir.path()).await;
    eventually("replayed from the start", LIMIT, || async {
        applied_seq(&server).await > seq
    })
    .await;
    eventually("erased by the replay", LIMIT, || async {
        !seen(&server).await.b_listed
    })
    .await;
    assert_erased(&server, "replayed from the start").await;
    server.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_carries_deletions_and_erasures() {
    let nats = support::nats::NatsServer::start();
    let server = support::nats_server(&nats).await;
    learn_two_users(&server).await;
    let seq = applied_seq(&server).await;
    for path in ["/v1/users/u1", "/v1/items/b"] {
        let (status, body) = send(&server, reqwest::Method::DELETE, path, None).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{path}: {body}");
    }
    eventually("applied from NATS", LIMIT, || async {
        applied_seq(&server).await > seq && !seen(&server).await.b_listed
    })
    .await;
    assert_erased(&server, "on NATS").await;
    let (status, body) = send(&server, reqwest::Method::DELETE, "/v1/users/%20", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["code"], "invalid_user_id");
    server.shutdown().await.expect("shutdown");
}
