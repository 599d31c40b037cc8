//! Logs, exec and idle stop end to end without Docker: a real server in-process on
//! port 0, one simulated node whose agent runs in the same process (its driver kept, so
//! the test can make the container print or go idle), and the real `dcloud` binary.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dcloud::server::{check_idle, start, IdleTracker, Server, ServerConfig};
use dcloud_agent::runtime::{run_nodes, NodeSpec, RuntimeConfig, Shared, UsageSource};
use dcloud_agent::session::LogStream;
use dcloud_agent::{SimConfig, SimDriver};
use dcloud_events::model::Resources;
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(20);
const CATALOG: &str = r#"{"os": "busybox", "base-image": "dcloud-test/busybox:latest",
  "init-steps": ["true"], "specifications": {}}"#;

fn environment(name: &str, idle: Option<&str>) -> String {
    let mut doc = json!({"env-name": name, "version": "1", "os": "busybox", "languages": [],
        "resources": {"ram": "256M", "cpu": "0.5", "gpu": "0", "storage": 1}});
    if let Some(t) = idle {
        doc["idle-timeout"] = json!(t);
    }
    doc.to_string()
}

struct Harness {
    url: String,
    admin: String,
    alice: String,
    bob: String,
    auditor: String,
    agent: String,
    driver: Arc<SimDriver>,
    server: Option<Server>,
    runtime: tokio::runtime::Runtime,
    _dir: tempfile::TempDir,
}

impl Harness {
    fn start() -> Harness {
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

    fn gql_raw(&self, token: &str, query: &str, vars: Value) -> Value {
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

    fn gql(&self, token: &str, query: &str, vars: Value) -> Value {
        let body = self.gql_raw(token, query, vars);
        assert!(body.get("errors").is_none(), "{query}: {body}");
        body["data"].clone()
    }

    fn token(&self, role: &str, name: &str, node: Option<&str>) -> String {
        let q = "mutation($r: Role!, $n: String!, $node: ID) { createToken(role: $r, name: $n, nodeId: $node) { token } }";
        let d = self.gql(&self.admin, q, json!({"r": role, "n": name, "node": node}));
        d["createToken"]["token"]
            .as_str()
            .expect("token")
            .to_string()
    }

    /// Alice applies an environment and deploys it; returns the running deployment.
    fn running_deployment(&self, name: &str, idle: Option<&str>) -> String {
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

    fn status(&self, id: &str) -> String {
        let d = self.gql(
            &self.admin,
            "query($id: ID!) { deployment(id: $id) { status } }",
            json!({"id": id}),
        );
        d["deployment"]["status"].as_str().unwrap_or("").to_string()
    }

    fn wait_status(&self, id: &str, status: &str) {
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
    fn events(&self, id: &str, kind: &str) -> Vec<(String, Value)> {
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

    fn cli(&self, token: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_dcloud"));
        cmd.env_remove("DCLOUD_TOKEN")
            .env_remove("DCLOUD_SERVER")
            .args(["--server", &self.url, "--token", token])
            .args(args);
        cmd
    }

    fn run(&self, token: &str, args: &[&str]) -> Output {
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

fn text(o: &[u8]) -> String {
    String::from_utf8_lossy(o).into_owned()
}

/// Reads a child's stdout lines on a thread.
fn lines_of(child: &mut std::process::Child) -> std::sync::mpsc::Receiver<String> {
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

fn wait_line(rx: &std::sync::mpsc::Receiver<String>, needle: &str) -> String {
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

fn wait_exit(child: &mut std::process::Child) -> std::process::ExitStatus {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        assert!(Instant::now() < deadline, "the command did not end");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn sim_log_lines_flow_from_the_driver_to_the_cli() {
    let h = Harness::start();
    let id = h.running_deployment("logs-env", None);

    // The backlog: the build steps and the start line.
    let o = h.run(&h.alice, &["logs", &id]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    assert!(out.contains("[build] Step 1/"), "{out}");
    assert!(
        out.contains(&format!("sim: deployment {id} started")),
        "{out}"
    );

    // --tail and json output.
    let o = h.run(&h.alice, &["logs", &id, "--tail", "1", "--output", "json"]);
    let out = text(&o.stdout);
    let lines: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    assert_eq!(lines.len(), 1, "{out}");
    assert_eq!(lines[0]["stream"], "STDOUT");

    // --follow shows a line printed after it started, and ends when the deployment stops.
    let mut child = h
        .cli(&h.alice, &["logs", &id, "--follow"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn logs");
    let rx = lines_of(&mut child);
    wait_line(&rx, "started on node");
    h.driver
        .print(&id, LogStream::Stdout, "printed after the follow began");
    wait_line(&rx, "printed after the follow began");
    assert!(h.run(&h.alice, &["stop", &id]).status.success());
    assert!(wait_exit(&mut child).success());

    // Who opened the logs is in the log; the lines are not.
    let opened = h.events(&id, "DeploymentLogsOpened");
    assert_eq!(opened.len(), 3, "{opened:?}");
    assert!(
        opened.iter().all(|(actor, _)| actor == "user:alice"),
        "{opened:?}"
    );
}

#[test]
fn logs_are_for_the_owner_admins_and_auditors_only() {
    let h = Harness::start();
    let id = h.running_deployment("logs-roles", None);
    for token in [&h.admin, &h.auditor] {
        let o = h.run(token, &["logs", &id]);
        assert!(o.status.success(), "{}", text(&o.stderr));
        assert!(text(&o.stdout).contains("started on node"));
    }
    for token in [&h.bob, &h.agent] {
        let o = h.run(token, &["logs", &id]);
        assert_eq!(o.status.code(), Some(1));
        assert!(text(&o.stderr).contains("FORBIDDEN"), "{}", text(&o.stderr));
    }
    let o = h.run(&h.alice, &["logs", "no-such-deployment"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o.stderr).contains("NOT_FOUND"), "{}", text(&o.stderr));
    let actors: Vec<String> = h
        .events(&id, "DeploymentLogsOpened")
        .into_iter()
        .map(|e| e.0)
        .collect();
    assert_eq!(
        actors,
        ["admin:admin", "auditor:audrey"].map(String::from).to_vec(),
        "{actors:?}"
    );
}

#[test]
fn exec_runs_commands_over_the_sim_driver_and_records_each_session() {
    let h = Harness::start();
    let id = h.running_deployment("exec-env", None);
    let node = h.driver.node_id().to_string();

    let o = h.run(&h.alice, &["exec", &id, "--", "cat", "/etc/hostname"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(text(&o.stdout).trim(), node);

    let o = h.run(&h.admin, &["exec", &id, "--", "hostname"]);
    assert_eq!(text(&o.stdout).trim(), node);

    let o = h.run(&h.alice, &["exec", &id, "--", "false"]);
    assert_eq!(o.status.code(), Some(1));

    // stdin goes through with -i, and its end too.
    let mut child = h
        .cli(&h.alice, &["exec", &id, "-i", "--", "cat"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn exec");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"hello over the relay\n")
        .expect("write stdin");
    let out = child.wait_with_output().expect("exec ends");
    assert!(out.status.success());
    assert_eq!(text(&out.stdout), "hello over the relay\n");

    // Refused: another user, the auditor, an agent token.
    for token in [&h.bob, &h.auditor, &h.agent] {
        let o = h.run(token, &["exec", &id, "--", "hostname"]);
        assert_eq!(o.status.code(), Some(1));
        assert!(
            text(&o.stderr).contains("[FORBIDDEN]"),
            "{}",
            text(&o.stderr)
        );
    }

    let started = h.events(&id, "ExecSessionStarted");
    assert_eq!(started.len(), 4, "{started:?}");
    assert_eq!(started[0].0, "user:alice");
    assert_eq!(started[0].1["command"], json!(["cat", "/etc/hostname"]));
    assert_eq!(started[1].0, "admin:admin");
    let ended = h.events(&id, "ExecSessionEnded");
    let codes: Vec<Value> = ended.iter().map(|e| e.1["exit_code"].clone()).collect();
    assert_eq!(
        codes,
        vec![json!(0), json!(0), json!(1), json!(0)],
        "{ended:?}"
    );
}

#[test]
fn exec_sessions_close_when_the_deployment_stops() {
    let h = Harness::start();
    let id = h.running_deployment("exec-stop", None);
    let mut child = h
        .cli(&h.alice, &["exec", &id, "-i", "-t", "--", "/bin/sh"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn exec");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(b"echo shell is up\n").expect("write");
    let rx = lines_of(&mut child);
    wait_line(&rx, "shell is up");
    assert_eq!(h.server_sessions(&id), 1);
    assert!(h.run(&h.alice, &["stop", &id]).status.success());
    let status = wait_exit(&mut child);
    assert_eq!(status.code(), Some(1));
    drop(stdin);
    let ended = h.events(&id, "ExecSessionEnded");
    assert_eq!(ended.len(), 1, "{ended:?}");
    assert_eq!(ended[0].1["exit_code"], Value::Null);
    assert_eq!(h.server_sessions(&id), 0);
}

impl Harness {
    fn server_sessions(&self, id: &str) -> usize {
        let app = self.server.as_ref().expect("server").app().clone();
        app.sessions().activity(id).0
    }
}

#[test]
fn idle_deployments_are_stopped_with_the_reason_and_busy_ones_are_not() {
    let h = Harness::start();
    let idle = h.running_deployment("idle-env", Some("2m"));
    let busy = h.running_deployment("busy-env", Some("2m"));
    let watched = h.running_deployment("watched-env", Some("2m"));
    let untimed = h.running_deployment("untimed-env", None);
    for dep in [&idle, &watched, &untimed] {
        h.driver.set_cpu(dep, 0);
    }
    h.driver.set_cpu(&busy, 900);
    // Wait until the heartbeats carrying those figures are in the state.
    let app = h.server.as_ref().expect("server").app().clone();
    let deadline = Instant::now() + WAIT;
    loop {
        let ok = {
            let state = app.writer().state();
            let node = state.node(h.driver.node_id()).expect("node");
            let cpu = |d: &str| {
                node.containers
                    .iter()
                    .find(|c| c.deployment_id == d)
                    .map(|c| c.usage.cpu_millis)
            };
            cpu(&idle) == Some(0) && cpu(&busy) == Some(900) && cpu(&watched) == Some(0)
        };
        if ok {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "heartbeats did not carry the cpu figures"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // An open session keeps `watched` active.
    let guard = app.sessions().track(&watched);
    let mut tracker = IdleTracker::new(50);
    let t0 = 1_000_000_000_000;
    let stops = h.runtime.block_on(check_idle(&app, &mut tracker, t0));
    assert!(stops.is_empty(), "{stops:?}");
    let stops = h
        .runtime
        .block_on(check_idle(&app, &mut tracker, t0 + 119_000));
    assert!(stops.is_empty(), "{stops:?}");
    let stops = h
        .runtime
        .block_on(check_idle(&app, &mut tracker, t0 + 120_000));
    let stopped: Vec<&str> = stops.iter().map(|s| s.deployment_id.as_str()).collect();
    assert_eq!(stopped, [idle.as_str()]);
    h.wait_status(&idle, "STOPPED");
    for dep in [&busy, &watched, &untimed] {
        assert_eq!(h.status(dep), "RUNNING");
    }
    let recorded = h.events(&idle, "DeploymentIdleStopped");
    assert_eq!(recorded.len(), 1);
    assert_eq!(recorded[0].0, "system");
    assert_eq!(recorded[0].1["idle_ms"], json!(120_000));
    assert!(recorded[0].1["reason"]
        .as_str()
        .unwrap_or("")
        .contains("idle for 120s"));
    drop(guard);
}

#[test]
fn a_bad_idle_timeout_names_the_field_and_changes_nothing() {
    let h = Harness::start();
    let q = "mutation($d: String!) { apply(document: $d) { events } }";
    let body = h.gql_raw(
        &h.alice,
        q,
        json!({"d": environment("bad-idle", Some("soon"))}),
    );
    let err = &body["errors"][0];
    assert_eq!(err["extensions"]["code"], "BAD_USER_INPUT", "{body}");
    assert_eq!(
        err["extensions"]["fields"][0]["path"], "idle-timeout",
        "{body}"
    );
    let d = h.gql(
        &h.alice,
        "{ environments(first: 10) { nodes { id } } }",
        json!({}),
    );
    assert_eq!(d["environments"]["nodes"], json!([]));
}

#[test]
fn session_requests_are_only_for_the_nodes_agent() {
    use dcloud_agent::runtime::protocol::SubEvent;
    use dcloud_agent::runtime::WsConnection;
    let h = Harness::start();
    let node = h.driver.node_id().to_string();
    let other_agent = h.token("AGENT", "other", Some("0x0200000000ff"));
    let ws = format!("{}/graphql/ws", h.url.replace("http://", "ws://"));
    let q = "subscription($n: ID!) { agentRequests(nodeId: $n) { sessionId } }";
    for token in [&h.alice, &h.auditor, &other_agent] {
        let first = h.runtime.block_on(async {
            let conn = WsConnection::connect(&ws, token).await.expect("connects");
            let mut sub = conn.subscribe(q, json!({"n": node})).expect("subscribes");
            sub.next().await
        });
        match first {
            Some(SubEvent::Error { code, .. }) => assert_eq!(code, "FORBIDDEN"),
            other => panic!("expected FORBIDDEN, got {other:?}"),
        }
    }
    // A session socket nobody asked for is refused, whoever brings it.
    let url = format!("{}/agent/session/unknown", h.url);
    for token in [&h.alice, &h.agent] {
        let status = h.runtime.block_on(async {
            reqwest::Client::new()
                .get(&url)
                .bearer_auth(token)
                .header("connection", "upgrade")
                .header("upgrade", "websocket")
                .header("sec-websocket-version", "13")
                .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
                .send()
                .await
                .expect("request")
                .status()
        });
        assert!(status.is_client_error(), "{status}");
    }
}
