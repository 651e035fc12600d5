//! Every parameter that names something on disk (snapshot versions in paths, queries and
//! bodies; learner names; manifest file names) is parsed before the filesystem is touched:
//! traversal answers 400, an unknown name 404, and no answer shows a server path.

mod support;

use std::path::Path;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use reqwest::StatusCode;
use serde_json::{Value, json};
use streamrec_api::RunningServer;

async fn server(dir: &Path) -> RunningServer {
    support::embedded_server(dir).await
}

/// Every byte percent-encoded, so the handler receives exactly `raw`.
fn encode(raw: &str) -> String {
    raw.bytes().map(|b| format!("%{b:02X}")).collect()
}

struct Answer {
    status: StatusCode,
    body: String,
}

async fn send(request: reqwest::RequestBuilder) -> Answer {
    let response = request.send().await.expect("request");
    let status = response.status();
    Answer {
        status,
        body: response.text().await.expect("body"),
    }
}

/// What a request must never show: a path of the server's disk or a planted file's digest.
fn assert_no_leak(answer: &Answer, secrets: &[&str]) {
    for secret in secrets {
        assert!(
            !answer.body.contains(secret),
            "answer leaks {secret:?}: {}",
            answer.body
        );
    }
    let json: Value = serde_json::from_str(&answer.body).expect("every answer is JSON");
    if !answer.status.is_success() {
        assert!(json["error"]["code"].is_string(), "{}", answer.body);
    }
}

/// A manifest whose popularity file is a path outside its folder.
fn planted_manifest(version: &str, target: &str) -> Value {
    json!({
        "format": 2, "version": version, "parent": null, "created_at": "2026-01-01T00:00:00Z",
        "stream": {"STREAMREC_EVENTS": 1}, "config_hash": "x", "code_version": "0",
        "counters": {"events": 0, "duplicates": 0, "redeliveries": 0, "impressions": 0,
            "rewards": 0, "attributed": 0, "unattributed": 0, "decisions_expired": 0},
        "config": serde_json::to_value(streamrec_learner::online::OnlineConfig::default())
            .expect("config"),
        "learners": {"popularity": {"file": target, "sha256": "0", "bytes": 1}},
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traversal_is_refused_and_answers_show_no_server_path() {
    let root = tempfile::tempdir().expect("dir");
    let data = root.path().join("data");
    let outside = root.path().join("outside");
    std::fs::create_dir_all(&outside).expect("outside");
    let secret = outside.join("secret.txt");
    std::fs::write(&secret, b"not for clients").expect("secret");
    std::fs::write(
        outside.join("manifest.json"),
        planted_manifest("000000000001-aaaaaaaaaaaa", "../outside/secret.txt").to_string(),
    )
    .expect("planted outside");
    // A folder of a valid name inside the data dir whose manifest points outside it.
    let planted = "000000000001-bbbbbbbbbbbb";
    std::fs::create_dir_all(data.join(planted)).expect("planted dir");
    std::fs::write(
        data.join(planted).join("manifest.json"),
        planted_manifest(planted, "../../outside/secret.txt").to_string(),
    )
    .expect("planted inside");
    let s = server(&data).await;
    let root_str = root.path().to_string_lossy().into_owned();
    let secrets = [root_str.as_str(), "not for clients"];
    let client = reqwest::Client::new();

    for (path, want) in [
        ("/v1/snapshots/..%2Foutside", StatusCode::BAD_REQUEST),
        ("/v1/snapshots/..%2F..%2Foutside", StatusCode::BAD_REQUEST),
        (
            "/v1/snapshots/000000000001-aaaaaaaaaaaa",
            StatusCode::NOT_FOUND,
        ),
        (
            "/v1/snapshots/000000000001-bbbbbbbbbbbb/learners/..%2F..%2Fx",
            StatusCode::BAD_REQUEST,
        ),
        (
            "/v1/snapshots/000000000001-bbbbbbbbbbbb/learners/nope",
            StatusCode::NOT_FOUND,
        ),
    ] {
        let answer = send(client.get(s.url(path))).await;
        assert_eq!(answer.status, want, "{path}: {}", answer.body);
        assert_no_leak(&answer, &secrets);
    }
    let absolute = encode(&outside.to_string_lossy());
    let answer = send(client.get(s.url(&format!(
        "/v1/recommendations?session_id=s&model_version={absolute}"
    ))))
    .await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{}", answer.body);
    assert_no_leak(&answer, &secrets);

    // The planted manifest inside: its file name is refused before it is opened, so no
    // digest of the file outside and no path comes back.
    let answer = send(client.get(s.url(&format!(
        "/v1/recommendations?session_id=s&model_version={planted}"
    ))))
    .await;
    assert!(answer.status.is_server_error(), "{}", answer.body);
    assert!(answer.body.contains("must be stored in"), "{}", answer.body);
    assert_no_leak(&answer, &secrets);
    let answer = send(
        client
            .get(s.url(&format!("/v1/snapshots/{planted}/learners/popularity")))
            .header("accept", "application/json"),
    )
    .await;
    assert!(!answer.status.is_success(), "{}", answer.body);
    assert_no_leak(&answer, &secrets);

    let answer = send(
        client
            .post(s.url("/v1/shadow"))
            .json(&json!({"version": "../outside"})),
    )
    .await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{}", answer.body);

    // Taking and listing snapshots name versions, never folders.
    let answer = send(client.post(s.url("/v1/snapshots"))).await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
    assert_no_leak(&answer, &secrets);
    let answer = send(client.get(s.url("/v1/snapshots"))).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_no_leak(&answer, &secrets);
    assert!(!answer.body.contains("\"path\""), "{}", answer.body);
    s.shutdown().await.expect("shutdown");
}

/// Arbitrary strings in every parameter that names a snapshot or a learner: never a 5xx,
/// never a server path, only 400 or 404.
#[test]
fn arbitrary_path_parameters_are_parsed_first() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let root = tempfile::tempdir().expect("dir");
    let data = root.path().join("data");
    let s = runtime.block_on(server(&data));
    let root_str = root.path().to_string_lossy().into_owned();
    let client = reqwest::Client::new();
    let strings = prop_oneof![
        any::<String>(),
        "[./%a-f0-9-]{0,40}",
        Just("..".to_owned()),
        Just("000000000001-0123456789ab".to_owned()),
        Just("000000000001-0123456789ab/../..".to_owned()),
    ];
    let mut runner = TestRunner::new(Config {
        cases: 200,
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&(strings.clone(), strings), |(version, name)| {
        let requests = [
            client.get(s.url(&format!("/v1/snapshots/{}", encode(&version)))),
            client.get(s.url(&format!(
                "/v1/snapshots/{}/learners/{}",
                encode(&version),
                encode(&name)
            ))),
            client.get(s.url(&format!(
                "/v1/recommendations?session_id=s&model_version={}",
                encode(&version)
            ))),
            client
                .post(s.url("/v1/shadow"))
                .json(&json!({ "version": version })),
        ];
        for request in requests {
            let answer = runtime.block_on(send(request));
            prop_assert!(
                !answer.status.is_server_error(),
                "{version:?} {name:?}: {} {}",
                answer.status,
                answer.body
            );
            prop_assert!(!answer.body.contains(&root_str), "{}", answer.body);
            // Nothing is stored: a version of the right form is unknown, any other invalid.
            prop_assert!(
                matches!(
                    answer.status,
                    StatusCode::BAD_REQUEST | StatusCode::NOT_FOUND
                ),
                "{version:?} {name:?}: {}",
                answer.status
            );
        }
        Ok(())
    });
    runtime.block_on(s.shutdown()).expect("server shuts down");
    if let Err(failure) = result {
        panic!("{failure}");
    }
}
