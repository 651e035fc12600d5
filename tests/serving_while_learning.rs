//! No request waits on learning: with the learner stopped inside a batch, recommendations,
//! stats and health still answer, from the last published version.

mod support;

use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use streamrec_actors::{EngineConfig, InProcessBus, LearnerGate};
use streamrec_api::RunningServer;
use support::{eventually, get};

/// Far longer than any answer takes; only a request that waits for the learner hits it.
const NO_WAIT: Duration = Duration::from_secs(5);

fn views(prefix: &str, session: &str, items: &[&str]) -> Value {
    Value::Array(
        items
            .iter()
            .enumerate()
            .map(|(n, item)| {
                json!({"event_id": format!("{prefix}-{n}"), "session_id": session, "kind": "view",
                    "item_id": item, "ts": 1_700_000_000_000_i64 + n as i64})
            })
            .collect(),
    )
}

struct OpenOnDrop(LearnerGate);

impl Drop for OpenOnDrop {
    fn drop(&mut self) {
        self.0.open();
    }
}

fn events_applied(stats: &Value) -> Option<u64> {
    stats["ingest"]["events_applied"].as_u64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_answer_while_the_learner_is_stuck_in_a_batch() {
    let gate = LearnerGate::default();
    let config = EngineConfig {
        learner_gate: Some(gate.clone()),
        ..EngineConfig::default()
    };
    let s = RunningServer::start(
        Arc::new(InProcessBus::new()),
        config,
        "127.0.0.1:0".parse().expect("addr"),
    )
    .await
    .expect("server starts");
    let client = reqwest::Client::new();
    let post = |body: Value| client.post(s.url("/v1/events")).json(&body).send();

    let first = ["a", "b", "c", "a", "b", "a"];
    assert_eq!(
        post(views("warm", "crowd", &first))
            .await
            .expect("post")
            .status(),
        StatusCode::ACCEPTED
    );
    eventually("first events learned", Duration::from_secs(20), || async {
        events_applied(&get(&s, "/v1/stats").await.1) == Some(first.len() as u64)
    })
    .await;

    gate.close();
    // A failed assertion must fail the test, not leave the learner (and the runtime's
    // shutdown, which waits for it) stopped for ever.
    let _reopen = OpenOnDrop(gate.clone());
    assert_eq!(
        post(views("stuck", "crowd", &["d", "e", "f"]))
            .await
            .expect("post")
            .status(),
        StatusCode::ACCEPTED,
        "accepting events does not wait for learning either"
    );
    // Give the learner time to take the batch and stop inside it.
    tokio::time::sleep(Duration::from_millis(300)).await;

    for path in [
        "/v1/recommendations?session_id=someone&k=3",
        "/v1/recommendations?session_id=crowd&k=3&explain=true",
        "/v1/stats",
        "/healthz",
    ] {
        let answer = tokio::time::timeout(NO_WAIT, get(&s, path)).await;
        let (status, body) = answer.unwrap_or_else(|_| panic!("{path} waited for the learner"));
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
        if path.starts_with("/v1/recommendations?session_id=someone") {
            let items: Vec<&str> = body["items"]
                .as_array()
                .expect("items")
                .iter()
                .filter_map(|i| i["item_id"].as_str())
                .collect();
            assert_eq!(items.len(), 3, "{body}");
            assert!(
                items.contains(&"a"),
                "served from the published version: {body}"
            );
        }
        if path == "/v1/stats" {
            assert_eq!(
                events_applied(&body),
                Some(first.len() as u64),
                "the learner is stuck: {body}"
            );
        }
    }

    gate.open();
    eventually(
        "the stuck batch learned once released",
        Duration::from_secs(20),
        || async { events_applied(&get(&s, "/v1/stats").await.1) == Some(first.len() as u64 + 3) },
    )
    .await;
    s.shutdown().await.expect("shutdown");
}
