//! Shared by the session tests without Docker: a real server in-process on port 0, one
//! simulated node whose agent runs in the same process (its driver kept, so a test can
//! make the container print or go idle), and the real `dcloud` binary.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dcloud::server::{start, Server, ServerConfig};
use dcloud_agent::runtime::{run_nodes, NodeSpec, RuntimeConfig, Shared, UsageSource};
use dcloud_agent::{SimConfig, SimDriver};
use dcloud_events::model::Resources;
use serde_json::{json, Value};

pub(crate) const WAIT: Duration = Duration::from_secs(20);
pub(crate) const CATALOG: &str = r#"{"os": "busybox", "base-image": "dcloud-test/busybox:latest",
  "init-steps": ["true"], "specifications": {}}"#;

pub(crate) fn environment(name: &str, idle: Option<&str>) -> String {
    let mut doc = json!({"env-name": name, "version": "1", "os": "busybox", "languages": [],
        "resources": {"ram": "256M", "cpu": "0.5", "gpu": "0", "storage": 1}});
    if let Some(t) = idle {
        doc["idle-timeout"] = json!(t);
    }
    doc.to_string()
}

pub(crate) struct Harness {
    pub(crate) url: String,
    pub(crate) admin: String,
    pub(crate) alice: String,
    pub(crate) bob: String,
    pub(crate) auditor: String,
    pub(crate) agent: String,
    pub(crate) driver: Arc<SimDriver>,
    pub(crate) server: Option<Server>,
    pub(crate) runtime: tokio::runtime::Runtime,
    pub(crate) _dir: tempfile::TempDir,
}

impl Harness {
    pub(crate) fn start() -> Harness {
        let dir = tempfile::tempdir().expect("temp dir");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let mut config = ServerConfig::new(dir.path());
        config.listen = "127.0.0.1:0".parse().expect("addr");
        // Every heartbeat is logged, so the idle check sees the container's CPU at once.
        config.settings.heartbeat_log_interval_ms = 0;
        let server = runtime.block_on(start(config)).expect("server starts");
        let admin = server.admin_token.clone().expect("admin token");
        let url = server.url();
        let per_node = Resources {
            cpu_millis: 4000,
            memory_bytes: 8 << 30,
            gpus: 0,
            storage_bytes: 100 << 30,
        };
        let sim = SimConfig {
            step_delay: Duration::from_millis(5),
        };
        let driver = Arc::new(SimDriver::fleet(1, &per_node, &sim).remove(0));
        let spec = NodeSpec {
            node_id: driver.node_id().to_string(),
            fingerprint: driver.fingerprint().clone(),
            driver: driver.clone(),
            usage: UsageSource::Containers,
            heartbeat_offset: Duration::ZERO,
            address: Some("127.0.0.1".into()),
        };
        let rc = RuntimeConfig {
            heartbeat_interval: Duration::from_millis(100),
            ..RuntimeConfig::default()
        };
        let shared = Arc::new(Shared::new(&url, &admin, rc).expect("agent client"));
        runtime.spawn(run_nodes(shared, vec![spec]));
        let mut h = Harness {
            url,
            admin: admin.clone(),
            alice: String::new(),
            bob: String::new(),
            auditor: String::new(),
            agent: String::new(),
            driver,
            server: Some(server),
            runtime,
            _dir: dir,
        };
        h.alice = h.token("USER", "alice", None);
        h.bob = h.token("USER", "bob", None);
        h.auditor = h.token("AUDITOR", "audrey", None);
        let node = h.driver.node_id().to_string();
        h.agent = h.token("AGENT", "node-agent", Some(&node));
        h.gql(
            &admin,
            "mutation($d: String!) { apply(document: $d) { events } }",
            json!({"d": CATALOG}),
        );
        h
    }

    pub(crate) fn gql_raw(&self, token: &str, query: &str, vars: Value) -> Value {
        let url = format!("{}/graphql", self.url);
        self.runtime.block_on(async {
            reqwest::Client::new()
                .post(url)
                .bearer_auth(token)
                .json(&json!({"query": query, "variables": vars}))
                .send()
                .await
                .expect("graphql request")
                .json::<Value>()
                .await
                .expect("graphql json")
        })
    }

    pub(crate) fn gql(&self, token: &str, query: &str, vars: Value) -> Value {
        let body = self.gql_raw(token, query, vars);
        assert!(body.get("errors").is_none(), "{query}: {body}");
        body["data"].clone()
    }

    pub(crate) fn token(&self, role: &str, name: &str, node: Option<&str>) -> String {
        let q = "mutation($r: Role!, $n: String!, $node: ID) { createToken(role: $r, name: $n, nodeId: $node) { token } }";
        let d = self.gql(&self.admin, q, json!({"r": role, "n": name, "node": node}));
        d["createToken"]["token"]
            .as_str()
            .expect("token")
            .to_string()
    }

    /// Alice applies an environment and deploys it; returns the running deployment.
    pub(crate) fn running_deployment(&self, name: &str, idle: Option<&str>) -> String {
        let q = "mutation($d: String!) { apply(document: $d) { documents { id } } }";
        let d = self.gql(&self.alice, q, json!({"d": environment(name, idle)}));
        let env = d["apply"]["documents"][0]["id"]
            .as_str()
            .expect("env id")
            .to_string();
        let q = "mutation($e: String!) { deploy(environment: $e) { id } }";
        let d = self.gql(&self.alice, q, json!({"e": env}));
        let id = d["deploy"]["id"]
            .as_str()
            .expect("deployment id")
            .to_string();
        self.wait_status(&id, "RUNNING");
        id
    }

    pub(crate) fn status(&self, id: &str) -> String {
        let d = self.gql(
            &self.admin,
            "query($id: ID!) { deployment(id: $id) { status } }",
            json!({"id": id}),
        );
        d["deployment"]["status"].as_str().unwrap_or("").to_string()
    }

    pub(crate) fn wait_status(&self, id: &str, status: &str) {
        let deadline = Instant::now() + WAIT;
        while self.status(id) != status {
            assert!(
                Instant::now() < deadline,
                "{id} not {status}: {}",
                self.status(id)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Events of `kind` about deployment `id`: `(actor, payload)`.
    pub(crate) fn events(&self, id: &str, kind: &str) -> Vec<(String, Value)> {
        let q =
            "query($f: EventFilter) { events(first: 500, filter: $f) { nodes { actor payload } } }";
        let f = json!({"type": kind, "entity": format!("deployment:{id}")});
        let d = self.gql(&self.admin, q, json!({"f": f}));
        d["events"]["nodes"]
            .as_array()
            .expect("events")
            .iter()
            .map(|e| {
                (
                    e["actor"].as_str().unwrap_or("").to_string(),
                    e["payload"].clone(),
                )
            })
            .collect()
    }

    pub(crate) fn cli(&self, token: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_dcloud"));
        cmd.env_remove("DCLOUD_TOKEN")
            .env_remove("DCLOUD_SERVER")
            .args(["--server", &self.url, "--token", token])
            .args(args);
        cmd
    }

    pub(crate) fn run(&self, token: &str, args: &[&str]) -> Output {
        self.cli(token, args)
            .stdin(Stdio::null())
            .output()
            .expect("run dcloud")
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            self.runtime.block_on(server.shutdown());
        }
    }
}

pub(crate) fn text(o: &[u8]) -> String {
    String::from_utf8_lossy(o).into_owned()
}

/// Reads a child's stdout lines on a thread.
pub(crate) fn lines_of(child: &mut std::process::Child) -> std::sync::mpsc::Receiver<String> {
    let out = child.stdout.take().expect("piped stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

pub(crate) fn wait_line(rx: &std::sync::mpsc::Receiver<String>, needle: &str) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) if line.contains(needle) => return line,
            Ok(_) => {}
            Err(e) => panic!("no line with {needle:?}: {e}"),
        }
    }
}

pub(crate) fn wait_exit(child: &mut std::process::Child) -> std::process::ExitStatus {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        assert!(Instant::now() < deadline, "the command did not end");
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl Harness {
    pub(crate) fn server_sessions(&self, id: &str) -> usize {
        let app = self.server.as_ref().expect("server").app().clone();
        app.sessions().activity(id).0
    }
}
