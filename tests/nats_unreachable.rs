//! `serve` pointed at a NATS server that is down binds HTTP at once: `/healthz` answers,
//! `/readyz` and the API answer 503 naming the URL; once NATS is up, it serves.

mod support;

use std::io::BufRead;
use std::process::{Command, Stdio};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;
use support::eventually;
use support::nats::NatsServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_answers_while_nats_is_down_and_serves_once_it_is_up() {
    let mut nats = NatsServer::start();
    let url = nats.url();
    nats.kill();
    let dir = tempfile::tempdir().expect("dir");
    let mut child = Command::new(env!("CARGO_BIN_EXE_streamrec"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--snapshot-every",
            "0",
            "--nats",
            &url,
        ])
        .arg("--data-dir")
        .arg(dir.path())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("streamrec starts");
    let stdout = child.stdout.take().expect("stdout");
    let (lines, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    let waiting = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let line = rx.recv().await.expect("a line before exiting");
            if line.starts_with("streamrec connecting to NATS") {
                break line;
            }
        }
    })
    .await
    .expect("it says it waits");
    assert!(waiting.contains(&url), "{waiting}");
    let addr = waiting
        .split_whitespace()
        .skip_while(|w| *w != "on")
        .nth(1)
        .expect("an address")
        .to_owned();
    let base = format!("http://{addr}");
    let get = |path: &str| {
        let url = format!("{base}{path}");
        async move {
            let r = reqwest::get(url).await.expect("HTTP answers");
            (r.status(), r.json::<Value>().await.expect("JSON"))
        }
    };
    assert_eq!(get("/healthz").await.0, StatusCode::OK);
    let (status, ready) = get("/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(ready["reason"], "bus_unavailable");
    assert!(
        ready["detail"].as_str().is_some_and(|d| d.contains(&url)),
        "{ready}"
    );
    let (status, error) = get("/v1/stats").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(error["error"]["code"], "bus_unavailable");

    nats.restart();
    eventually("serving once NATS is up", Duration::from_secs(90), || async {
        matches!(reqwest::get(format!("{base}/readyz")).await, Ok(r) if r.status() == StatusCode::OK)
    })
    .await;
    assert_eq!(
        get("/v1/stats").await.0,
        StatusCode::OK,
        "the full API, same address"
    );
    let _ = child.kill();
    let _ = child.wait();
}
