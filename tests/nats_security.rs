//! A nats-server that requires TLS with client certificates and a user and password: the
//! engine connects with `NatsSecurity` (what `--nats-ca`, `--nats-cert`, `--nats-key`,
//! `--nats-user` and `--nats-password` set) and learns; a client without them is refused.

mod support;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use streamrec_actors::{EngineConfig, NatsBus, NatsBusConfig, NatsSecurity};
use streamrec_api::RunningServer;
use support::eventually;
use support::nats::NatsServer;

const LIMIT: Duration = Duration::from_secs(60);

fn openssl(dir: &Path, args: &[&str]) {
    let status = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .expect("openssl runs (apt-get install openssl)");
    assert!(status.success(), "openssl {args:?}");
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate, signed by the CA.
fn certificates(dir: &Path) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca-key.pem",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=streamrec test CA",
        ],
    );
    for (name, usage) in [("server", "serverAuth"), ("client", "clientAuth")] {
        let key = format!("{name}-key.pem");
        let csr = format!("{name}.csr");
        let cert = format!("{name}.pem");
        let ext = format!("{name}.ext");
        std::fs::write(
            dir.join(&ext),
            format!("subjectAltName=IP:127.0.0.1\nextendedKeyUsage={usage}\n"),
        )
        .expect("extensions file");
        openssl(
            dir,
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                &key,
                "-out",
                &csr,
                "-subj",
                "/CN=127.0.0.1",
            ],
        );
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca-key.pem",
                "-CAcreateserial",
                "-out",
                &cert,
                "-days",
                "2",
                "-extfile",
                &ext,
            ],
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_engine_with_credentials_and_certificates_learns_from_a_locked_server() {
    let certs = tempfile::tempdir().expect("temp dir");
    let dir = certs.path();
    certificates(dir);
    let file = |name: &str| dir.join(name).display().to_string();
    let nats = NatsServer::start_with_config(&format!(
        "tls {{ cert_file: {:?}, key_file: {:?}, ca_file: {:?}, verify: true }}\n\
         authorization {{ user: streamrec, password: \"s3cret-pw\" }}\n",
        file("server.pem"),
        file("server-key.pem"),
        file("ca.pem"),
    ));
    let security = NatsSecurity {
        user: Some("streamrec".to_owned()),
        password: Some("s3cret-pw".to_owned()),
        ca_file: Some(dir.join("ca.pem")),
        cert_file: Some(dir.join("client.pem")),
        key_file: Some(dir.join("client-key.pem")),
        ..NatsSecurity::default()
    };
    assert!(
        !format!("{security:?}").contains("s3cret-pw"),
        "the password is never printed"
    );

    // No certificate, no password: refused.
    let refused = async_nats::ConnectOptions::new()
        .connection_timeout(Duration::from_secs(2))
        .connect(nats.url())
        .await;
    assert!(
        refused.is_err(),
        "a client without TLS and credentials is refused"
    );

    let mut config = NatsBusConfig::new(nats.url());
    config.security = security.clone();
    let bus = NatsBus::connect(config)
        .await
        .expect("the engine connects with its credentials");
    let server = RunningServer::start(
        Arc::new(bus),
        EngineConfig::default(),
        "127.0.0.1:0".parse().expect("addr"),
    )
    .await
    .expect("engine starts");

    let emitter = async_nats::ConnectOptions::new()
        .user_and_password("streamrec".to_owned(), "s3cret-pw".to_owned())
        .add_root_certificates(dir.join("ca.pem"))
        .add_client_certificate(dir.join("client.pem"), dir.join("client-key.pem"))
        .require_tls(true)
        .connect(nats.url())
        .await
        .expect("the emitter connects");
    let js = async_nats::jetstream::new(emitter);
    for i in 0..20 {
        let event = json!({
            "event_id": format!("e{i}"), "session_id": "s", "kind": "click",
            "item_id": format!("i{}", i % 4), "ts": 1_700_000_000_000_i64 + i,
        });
        js.publish("streamrec.events.click", event.to_string().into())
            .await
            .expect("publish")
            .await
            .expect("acked");
    }
    eventually("20 learned", LIMIT, || async {
        support::applied(&server).await == 20
    })
    .await;
    server.shutdown().await.expect("shutdown");
}
