//! The real `streamrec serve` binary as a child process, for the crash drills.

use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub struct EngineProcess {
    child: Child,
    pub url: String,
}

impl EngineProcess {
    /// Serves on a free port with `--data-dir data_dir`, snapshotting every 0.25 s, on NATS
    /// at `nats` or (without) on the embedded bus.
    pub fn start(nats: Option<&str>, data_dir: &Path) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_streamrec"));
        command.args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--snapshot-every",
            "0.25",
        ]);
        if let Some(url) = nats {
            command.args(["--nats", url]);
        }
        let mut child = command
            .arg("--data-dir")
            .arg(data_dir)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("streamrec starts");
        // It prints "streamrec listening on http://ADDR …" once serving (after a line saying
        // the bus is not durable, when it is not).
        let stdout = child.stdout.take().expect("piped stdout");
        let mut reader = std::io::BufReader::new(stdout);
        let url = loop {
            let mut line = String::new();
            let read = std::io::BufRead::read_line(&mut reader, &mut line).expect("a line");
            assert!(read > 0, "streamrec exited before serving");
            if let Some(url) = line.split_whitespace().find(|w| w.starts_with("http://")) {
                break url.to_owned();
            }
        };
        Self { child, url }
    }

    pub async fn stats(&self) -> Option<Value> {
        reqwest::get(format!("{}/v1/stats", self.url))
            .await
            .ok()?
            .json()
            .await
            .ok()
    }

    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM and waits for the exit; returns its status and how long it took
    /// (`None` if it was still running after `limit`, then it is killed).
    pub fn terminate(mut self, limit: Duration) -> Option<(ExitStatus, Duration)> {
        let started = Instant::now();
        let pid = rustix::process::Pid::from_raw(self.child.id() as i32).expect("a pid");
        rustix::process::kill_process(pid, rustix::process::Signal::TERM).expect("SIGTERM");
        while started.elapsed() < limit {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some((status, started.elapsed()));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for EngineProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
