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
        Self::start_with(nats, data_dir, &[], &[])
    }

    /// [`Self::start`] with more flags and environment variables (a cluster node's
    /// `--node-id`, a `STREAMREC_*` key); a `--snapshot-every` among them replaces the 0.25 s.
    pub fn start_with(
        nats: Option<&str>,
        data_dir: &Path,
        args: &[&str],
        envs: &[(&str, &str)],
    ) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_streamrec"));
        command.args(["serve", "--listen", "127.0.0.1:0"]);
        if !args.contains(&"--snapshot-every") {
            command.args(["--snapshot-every", "0.25"]);
        }
        command.args(args).envs(envs.iter().copied());
        if let Some(url) = nats {
            command.args(["--nats", url]);
        }
        // Its log goes to a file beside the data, so a start that fails can say why.
        let log_path = data_dir.join("engine.log");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .expect("engine log file");
        let mut child = command
            .arg("--data-dir")
            .arg(data_dir)
            .env("RUST_LOG", "warn")
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("streamrec starts");
        // It prints "streamrec listening on http://ADDR …" once serving (after a line saying
        // the bus is not durable, when it is not).
        let stdout = child.stdout.take().expect("piped stdout");
        let mut reader = std::io::BufReader::new(stdout);
        let url = loop {
            let mut line = String::new();
            let read = std::io::BufRead::read_line(&mut reader, &mut line).expect("a line");
            if read == 0 {
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                let tail: Vec<&str> = log.lines().filter(|l| !l.starts_with(' ')).collect();
                panic!(
                    "streamrec exited before serving; its log ends:\n{}",
                    tail[tail.len().saturating_sub(5)..].join("\n")
                );
            }
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
