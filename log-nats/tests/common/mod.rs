//! A real nats-server for the tests (and the bench): one per test binary, or a 3-node
//! cluster, on loopback, in a temp dir, with `sync_interval: always`. The binary is
//! `$DCLOUD_NATS_SERVER` or `nats-server` on PATH and must be 2.12.1 or later
//! (`scripts/install-nats-server.sh` installs the pinned one); anything else fails the
//! test with a message saying so. Each server runs under a small shell that kills it
//! and removes its directory when the test process exits (its stdin closes).

#![allow(dead_code, unreachable_pub)] // each test binary uses a different subset

use std::io::Write as _;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use dcloud_events::{LogError, VerifyError, VerifyReport};
use dcloud_log_nats::{JetStreamConfig, JetStreamLog, MIN_SERVER_VERSION};

/// The nats-server binary to run, checked to be recent enough.
pub fn server_binary() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let bin = std::env::var_os("DCLOUD_NATS_SERVER")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("nats-server"));
        let (a, b, c) = MIN_SERVER_VERSION;
        let fix = "install the pinned one with `sudo bash scripts/install-nats-server.sh` \
                   or point DCLOUD_NATS_SERVER at a nats-server binary";
        let out = Command::new(&bin).arg("--version").output().unwrap_or_else(|e| {
            panic!("the JetStream tests need nats-server {a}.{b}.{c} or later; running {} failed ({e}): {fix}", bin.display())
        });
        let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        let version = text.rsplit('v').next().unwrap_or_default();
        let parsed: Vec<u64> = version
            .split(['.', '-'])
            .take(3)
            .filter_map(|p| p.parse().ok())
            .collect();
        assert!(
            parsed.len() == 3 && (parsed[0], parsed[1], parsed[2]) >= MIN_SERVER_VERSION,
            "the JetStream tests need nats-server {a}.{b}.{c} or later (atomic batches with \
             message ids, sync_interval); {} says {text:?}: {fix}",
            bin.display()
        );
        bin
    })
    .clone()
}

/// One running nats-server (its shell wrapper) and its client URL.
pub struct Server {
    pub url: String,
    _wrapper: Child,
    /// Closing it (at process exit) makes the wrapper stop the server.
    _stdin: Mutex<ChildStdin>,
}

/// A loopback port that was free a moment ago.
fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    l.local_addr().expect("local addr").port()
}

/// Starts a server from `conf` (written to `dir`); `dir` is removed when it stops.
fn start(dir: &Path, name: &str, conf: &str) -> Server {
    let conf_path = dir.join(format!("{name}.conf"));
    std::fs::write(&conf_path, conf).expect("write server config");
    let script = r#"
        "$0" -c "$1" >"$2/$3.log" 2>&1 &
        pid=$!
        read -r _ || true
        kill "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
        rm -rf "$2"
    "#;
    let mut wrapper = Command::new("sh")
        .arg("-c")
        .arg(script)
        .arg(server_binary())
        .arg(&conf_path)
        .arg(dir)
        .arg(name)
        .stdin(Stdio::piped())
        .spawn()
        .expect("spawn nats-server");
    let stdin = wrapper.stdin.take().expect("wrapper stdin");
    let deadline = Instant::now() + Duration::from_secs(20);
    let url = loop {
        if let Some(url) = client_url(dir, name) {
            break url;
        }
        if let Ok(Some(status)) = wrapper.try_wait() {
            let log = std::fs::read_to_string(dir.join(format!("{name}.log"))).unwrap_or_default();
            panic!("nats-server {name} exited ({status}): {log}");
        }
        assert!(
            Instant::now() < deadline,
            "nats-server {name} did not start in 20 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    Server {
        url,
        _wrapper: wrapper,
        _stdin: Mutex::new(stdin),
    }
}

/// The client URL from the ports file the server writes once it listens.
fn client_url(dir: &Path, name: &str) -> Option<String> {
    let ports = dir.join("ports").join(name);
    let entry = std::fs::read_dir(&ports).ok()?.next()?.ok()?;
    let text = std::fs::read_to_string(entry.path()).ok()?;
    let start = text.find("nats://")?;
    let end = start + text[start..].find('"')?;
    Some(text[start..end].to_owned())
}

fn server_conf(dir: &Path, name: &str, cluster: &str) -> String {
    let ports = dir.join("ports").join(name);
    std::fs::create_dir_all(&ports).expect("ports dir");
    format!(
        "server_name: {name}\nlisten: 127.0.0.1:-1\nports_file_dir: {ports:?}\n{cluster}\
         jetstream {{\n  store_dir: {:?}\n  sync_interval: always\n}}\n",
        dir.join("js").join(name)
    )
}

/// The single server shared by the tests of this binary.
pub fn server() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir").keep();
        start(&dir, "single", &server_conf(&dir, "single", ""))
    })
}

/// A 3-node cluster on loopback (fresh on every call); its client URLs, comma separated.
pub fn cluster() -> (Vec<Server>, String) {
    let dir = tempfile::tempdir().expect("tempdir").keep();
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let servers: Vec<Server> = (0..3)
        .map(|i| {
            let routes: Vec<String> = ports
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(_, p)| format!("nats-route://127.0.0.1:{p}"))
                .collect();
            let cluster = format!(
                "cluster {{\n  name: dcloud-test\n  listen: 127.0.0.1:{}\n  routes: [{}]\n}}\n",
                ports[i],
                routes.join(", ")
            );
            let name = format!("n{}", i + 1);
            start(&dir, &name, &server_conf(&dir, &name, &cluster))
        })
        .collect();
    let urls = servers
        .iter()
        .map(|s| s.url.clone())
        .collect::<Vec<_>>()
        .join(",");
    (servers, urls)
}

/// A stream name no other test of this process uses.
pub fn fresh_stream() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!("t{}", N.fetch_add(1, Ordering::Relaxed))
}

/// Opens `cfg`, retrying while a new cluster has no JetStream leader yet.
pub fn open_when_ready(cfg: &JetStreamConfig) -> JetStreamLog {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match JetStreamLog::open(cfg.clone()) {
            Ok(log) => return log,
            Err(e @ LogError::Remote { .. }) if Instant::now() < deadline => {
                let _ = writeln!(std::io::stderr(), "waiting for JetStream: {e}");
                std::thread::sleep(Duration::from_millis(250));
            }
            Err(e) => panic!("cannot open the JetStream log: {e}"),
        }
    }
}

/// The suite's backend: a fresh stream on the shared server.
pub struct Nats {
    pub cfg: JetStreamConfig,
}

impl Nats {
    pub fn new() -> Self {
        Nats {
            cfg: JetStreamConfig::new(server().url.clone(), fresh_stream()),
        }
    }
}

impl dcloud_log_tests::Backend for Nats {
    type Log = JetStreamLog;

    fn open(&self) -> JetStreamLog {
        open_when_ready(&self.cfg)
    }

    fn verify(&self, log: &JetStreamLog) -> Result<VerifyReport, VerifyError> {
        log.verify()
    }

    fn snapshot_seqs(&self, log: &JetStreamLog) -> Vec<u64> {
        log.snapshot_seqs().expect("snapshot seqs")
    }
}
