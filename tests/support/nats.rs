//! A real `nats-server` with JetStream, on a free loopback port and a temporary store, that
//! a test can kill and restart on the same port and store.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct NatsServer {
    port: u16,
    /// Set for a member of a [`NatsCluster`].
    cluster: Option<ClusterMember>,
    /// Appended to the server's config file (TLS, authorization).
    extra_config: String,
    /// Holds the server's config file and its `store/`.
    dir: tempfile::TempDir,
    max_file_store: u64,
    child: Option<Child>,
}

/// JetStream reserves each file stream's `max_bytes` against its storage limit, which by
/// default is 75% of the disk's free space when the server starts: a test would then pass or
/// fail with the disk of the machine it runs on. Reservations are bookkeeping, not bytes
/// written, so the tests' servers state a limit of their own.
const TEST_MAX_FILE_STORE: u64 = 1 << 40;

/// The server binary: `$NATS_SERVER_BIN`, else `nats-server` on the PATH.
fn binary() -> PathBuf {
    std::env::var_os("NATS_SERVER_BIN").map_or_else(|| PathBuf::from("nats-server"), PathBuf::from)
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener.local_addr().expect("local addr").port()
}

impl NatsServer {
    pub fn start() -> Self {
        Self::start_with_max_file_store(TEST_MAX_FILE_STORE)
    }

    /// A server whose JetStream may reserve at most `bytes` of file storage.
    pub fn start_with_max_file_store(bytes: u64) -> Self {
        Self::start_with(bytes, String::new())
    }

    /// A server whose config file ends with `extra` (e.g. `tls { … }`, `authorization { … }`).
    pub fn start_with_config(extra: &str) -> Self {
        Self::start_with(TEST_MAX_FILE_STORE, extra.to_owned())
    }

    fn start_with(bytes: u64, extra_config: String) -> Self {
        let mut server = Self {
            port: free_port(),
            cluster: None,
            extra_config,
            dir: tempfile::tempdir().expect("temp store dir"),
            max_file_store: bytes,
            child: None,
        };
        server.spawn();
        server
    }

    /// The storage limit the next [`Self::restart`] starts with.
    pub fn set_max_file_store(&mut self, bytes: u64) {
        self.max_file_store = bytes;
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    fn spawn(&mut self) {
        let config = self.dir.path().join("nats.conf");
        let store = self.dir.path().join("store");
        let mut text = format!(
            "jetstream {{ store_dir: {:?}, max_file_store: {} }}\n",
            store.display().to_string(),
            self.max_file_store
        );
        if let Some(member) = &self.cluster {
            let routes: Vec<String> = member
                .routes
                .iter()
                .map(|p| format!("\"nats-route://127.0.0.1:{p}\""))
                .collect();
            text.push_str(&format!(
                "server_name: {}\ncluster {{ name: {}, listen: \"127.0.0.1:{}\", routes: [{}] }}\n",
                member.name,
                CLUSTER_NAME,
                member.route_port,
                routes.join(", ")
            ));
        }
        text.push_str(&self.extra_config);
        std::fs::write(&config, text).expect("write nats-server config");
        let child = Command::new(binary())
            .args(["-a", "127.0.0.1", "-p", &self.port.to_string(), "-c"])
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {}: {e} (apt-get install nats-server)",
                    binary().display()
                )
            });
        self.child = Some(child);
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_err() {
            assert!(
                Instant::now() < deadline,
                "nats-server did not listen on {addr}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL: no clean shutdown, as in a crash.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGSTOP: the process freezes with its connections open, as a hung server does.
    pub fn pause(&self) {
        self.signal(rustix::process::Signal::STOP);
    }

    /// SIGCONT after [`Self::pause`].
    pub fn resume(&self) {
        self.signal(rustix::process::Signal::CONT);
    }

    fn signal(&self, signal: rustix::process::Signal) {
        let child = self.child.as_ref().expect("nats-server running");
        let pid = rustix::process::Pid::from_raw(child.id() as i32).expect("a pid");
        rustix::process::kill_process(pid, signal).expect("signal nats-server");
    }

    /// Starts again on the same port and store.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }
}

const CLUSTER_NAME: &str = "streamrec-test";

struct ClusterMember {
    name: String,
    route_port: u16,
    /// Every member's route port, its own included (as a deployment writes it).
    routes: Vec<u16>,
}

/// Servers of one JetStream cluster on loopback, each routed to all.
pub struct NatsCluster {
    pub servers: Vec<NatsServer>,
}

impl NatsCluster {
    pub fn start(size: usize) -> Self {
        let route_ports: Vec<u16> = (0..size).map(|_| free_port()).collect();
        let servers = (0..size)
            .map(|i| {
                let mut server = NatsServer {
                    port: free_port(),
                    cluster: Some(ClusterMember {
                        name: format!("n{i}"),
                        route_port: route_ports[i],
                        routes: route_ports.clone(),
                    }),
                    extra_config: String::new(),
                    dir: tempfile::tempdir().expect("temp store dir"),
                    max_file_store: TEST_MAX_FILE_STORE,
                    child: None,
                };
                server.spawn();
                server
            })
            .collect();
        Self { servers }
    }

    /// Every server's URL, comma-separated (what `--nats` takes), starting at `first`.
    pub fn urls_from(&self, first: usize) -> String {
        let n = self.servers.len();
        (0..n)
            .map(|i| self.servers[(first + i) % n].url())
            .collect::<Vec<_>>()
            .join(",")
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}
