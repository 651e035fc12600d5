//! `streamrec config check`: the configuration `serve` would run with, from the same file,
//! environment and flags, keys masked; or every error, exit 1.

use std::process::Command;

fn check(args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_streamrec"));
    command.args(["config", "check"]).args(args);
    for var in ["STREAMREC_API_KEYS", "STREAMREC_CONFIG", "STREAMREC_LISTEN"] {
        command.env_remove(var);
    }
    for (k, v) in env {
        command.env(k, v);
    }
    let out = command.output().expect("streamrec runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn flags_beat_their_variables_which_beat_the_file_and_keys_are_masked() {
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("streamrec.toml");
    std::fs::write(
        &file,
        "[server]\nmax_connections = 5\nlisten = \"127.0.0.1:7000\"\n[bus]\nnats = \"nats://u:hunter2@nats.internal:4222\"\n",
    )
    .expect("write");
    let path = file.to_str().expect("utf-8 path");
    let (ok, out, err) = check(
        &[path, "--max-connections", "9"],
        &[
            ("STREAMREC_LISTEN", "127.0.0.1:9999"),
            ("STREAMREC_MAX_CONNECTIONS", "7"),
            ("STREAMREC_API_KEYS", "0123456789abcdef-very-secret:read"),
            ("STREAMREC_LEARNERS__MAX_SESSIONS", "123"),
        ],
    );
    assert!(ok, "{err}");
    assert!(out.contains("max_connections = 9"), "the flag wins:\n{out}");
    assert!(
        out.contains("listen = \"127.0.0.1:9999\""),
        "the variable beats the file:\n{out}"
    );
    assert!(
        out.contains("max_sessions = 123"),
        "any key from the environment:\n{out}"
    );
    assert!(
        !out.contains("very-secret") && out.contains("********:read"),
        "{out}"
    );
    assert!(
        !out.contains("hunter2") && out.contains("nats://***@nats.internal:4222"),
        "{out}"
    );
}

#[test]
fn every_error_is_named_and_the_exit_code_says_so() {
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("bad.toml");
    std::fs::write(
        &file,
        "[server]\nlisten_port = 1\n[learners]\nsession_ttl_ms = -5\n",
    )
    .expect("write");
    let (ok, _, err) = check(&[file.to_str().expect("utf-8 path")], &[]);
    assert!(!ok);
    assert!(err.contains("unknown key `server.listen_port`"), "{err}");
    assert!(
        err.contains("`learners.session_ttl_ms` must be positive"),
        "{err}"
    );
}
