//! With the `otlp` feature and `OTEL_EXPORTER_OTLP_ENDPOINT` set, `serve` exports its
//! request spans over OTLP/HTTP: a stand-in collector receives them.
#![cfg(feature = "otlp")]

use std::io::BufRead;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::routing::post;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_spans_reach_the_collector() {
    let received: Arc<Mutex<Vec<Bytes>>> = Arc::default();
    let sink = Arc::clone(&received);
    let collector = Router::new().route(
        "/v1/traces",
        post(move |body: Bytes| {
            let sink = Arc::clone(&sink);
            async move {
                sink.lock().expect("lock").push(body);
                ([("content-type", "application/x-protobuf")], Bytes::new())
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let endpoint = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, collector).await });

    let mut child = Command::new(env!("CARGO_BIN_EXE_streamrec"))
        .args(["serve", "--listen", "127.0.0.1:0", "--snapshot-every", "0"])
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint)
        .env("OTEL_SERVICE_NAME", "streamrec-under-test")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("streamrec starts");
    let stdout = child.stdout.take().expect("stdout");
    let url = std::io::BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .find_map(|line| {
            line.split_whitespace()
                .find(|w| w.starts_with("http://"))
                .map(str::to_owned)
        })
        .expect("it serves");
    let client = reqwest::Client::new();
    let mut returned = Vec::new();
    for _ in 0..3 {
        let r = client
            .get(format!("{url}/healthz"))
            .header(
                "traceparent",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            )
            .send()
            .await
            .expect("healthz");
        assert!(r.status().is_success());
        returned.push(
            r.headers()["traceparent"]
                .to_str()
                .expect("ascii")
                .to_owned(),
        );
    }
    // The header names the exported span: the client's trace, the server's span id.
    let span_id: Vec<u8> = {
        let header = &returned[0];
        assert!(
            header.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
            "{header}"
        );
        let hex = &header[36..52];
        (0..8)
            .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16))
            .collect::<Result<_, _>>()
            .expect("hex")
    };
    // Protobuf carries ids as raw bytes: the client's trace id, in the exported span.
    let trace_id: Vec<u8> = (0..16)
        .map(|i| u8::from_str_radix(&"4bf92f3577b34da6a3ce929d0e0e4736"[2 * i..2 * i + 2], 16))
        .collect::<Result<_, _>>()
        .expect("hex");
    // The SDK sends a batch every 5 s.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let exported = loop {
        let bodies = received.lock().expect("lock").clone();
        let all: Vec<u8> = bodies.iter().flat_map(|b| b.iter().copied()).collect();
        let has = |needle: &[u8]| all.windows(needle.len()).any(|w| w == needle);
        if has(b"streamrec-under-test")
            && has(b"request")
            && has(b"/healthz")
            && has(&trace_id)
            && has(&span_id)
        {
            break true;
        }
        if tokio::time::Instant::now() > deadline {
            break false;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        exported,
        "no request span under the client's trace reached the collector"
    );
}
