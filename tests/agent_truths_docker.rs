//! The node agent tells the truth about what runs (feature `docker-tests`, issue #17):
//! a server in-process and `dcloud agent --driver docker` child processes on the real
//! engine. A published port answers at the URL `dcloud status` prints; a process
//! OOM-killed inside a running container leaves the deployment running with its
//! resources booked; an agent SIGKILLed and back after the node TTL but within the
//! lost-node grace finds its container still running and keeps it (same container, never
//! `LOST`), and one back after the grace converges (one state, one container, on the
//! node the server names); two agents on one engine
//! keep their own containers through 30 s of reconciling, and so do two clusters'
//! agents with one node id; a dataset on shared storage is mounted from it on a node
//! that does not hold it; storage use is measured against its size and shown by
//! `status`; stopping everything leaves no container behind.
#![cfg(feature = "docker-tests")]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use dcloud::server::{start, Server, ServerConfig};
use serde_json::{json, Value};

mod docker_support;

use docker_support::{containers_of, gql, make_sleeper_image, wait_for, SLEEPER};

/// A base image serving `hello from dcloud` over HTTP on port 8080 (busybox httpd).
const HTTPD: &str = "dcloud-test/busybox-httpd:latest";

fn make_httpd_image() {
    make_image(
        HTTPD,
        "FROM dcloud-test/busybox:latest\n\
        RUN mkdir -p /www && echo 'hello from dcloud' > /www/index.html\n\
        CMD [\"httpd\", \"-f\", \"-p\", \"8080\", \"-h\", \"/www\"]\n",
    );
}

/// A base image whose main process prints two lines and exits with code 3.
const QUITTER: &str = "dcloud-test/busybox-quitter:latest";

fn make_image(tag: &str, dockerfile: &str) {
    let mut child = Command::new("docker")
        .args(["build", "-q", "-t", tag, "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("the docker CLI runs (docker-tests need a docker engine)");
    use std::io::Write;
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(dockerfile.as_bytes())
        .expect("write the dockerfile");
    assert!(
        child.wait().expect("docker build ends").success(),
        "building {tag} failed: run scripts/make-test-images.sh first"
    );
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

fn nonce() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_nanos()
}

async fn server(node_ttl_ms: Option<i64>) -> (tempfile::TempDir, Server, String, String) {
    server_with(node_ttl_ms, None).await
}

/// A server with a short node TTL and, when given, a lost-node grace.
async fn server_with(
    node_ttl_ms: Option<i64>,
    lost_node_grace_ms: Option<i64>,
) -> (tempfile::TempDir, Server, String, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = ServerConfig::new(dir.path().join("server"));
    config.listen = "127.0.0.1:0".parse().expect("addr");
    if let Some(ttl) = node_ttl_ms {
        config.settings.node_ttl_ms = ttl;
        config.liveness_tick = Duration::from_millis(200);
    }
    if let Some(grace) = lost_node_grace_ms {
        config.settings.lost_node_grace_ms = grace;
    }
    let server = start(config).await.expect("server starts");
    let (url, admin) = (
        server.url(),
        server.admin_token.clone().expect("admin token"),
    );
    (dir, server, url, admin)
}

/// An agent process, killed (SIGKILL) when dropped, so a failing test leaves none.
struct Agent(Child);

impl Agent {
    fn kill(&mut self) -> std::io::Result<()> {
        self.0.kill()
    }

    fn wait(&mut self) -> std::io::Result<std::process::ExitStatus> {
        self.0.wait()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `dcloud agent --driver docker` with its own state directory (no `--node-id`: the
/// agent makes its id and keeps it there) and address 127.0.0.1.
fn start_agent(url: &str, token: &str, state: &Path) -> Agent {
    start_agent_with(url, token, state, &[])
}

/// [`start_agent`] with more flags.
fn start_agent_with(url: &str, token: &str, state: &Path, extra: &[&str]) -> Agent {
    let child = Command::new(env!("CARGO_BIN_EXE_dcloud"))
        .args([
            "agent", "--server", url, "--token", token, "--driver", "docker",
        ])
        .args(["--heartbeat-interval", "500ms", "--address", "127.0.0.1"])
        .arg("--state-dir")
        .arg(state)
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("dcloud agent starts");
    Agent(child)
}

fn node_id_of(state: &Path) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(id) = std::fs::read_to_string(state.join("node-id")) {
            return id.trim().to_string();
        }
        assert!(
            Instant::now() < deadline,
            "the agent never wrote its node id"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

async fn wait_nodes(url: &str, admin: &str, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while gql(url, admin, "{ counts { nodes } }", json!({})).await["counts"]["nodes"].as_u64()
        != Some(n)
    {
        assert!(Instant::now() < deadline, "{n} agent(s) never registered");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A catalog for os `busybox` on `base` and an environment with `extra` fields; its id.
async fn environment(url: &str, admin: &str, base: &str, name: &str, extra: Value) -> String {
    let catalog = json!({"os": "busybox", "base-image": base,
        "init-steps": [format!("echo {name}-{}", nonce())], "specifications": {}});
    let q = "mutation($d: String!) { upsertCatalog(document: $d) { os } }";
    gql(url, admin, q, json!({"d": catalog.to_string()})).await;
    let mut env = json!({"env-name": name, "version": "1", "os": "busybox", "languages": [],
        "resources": {"ram": "64M", "cpu": "0.25", "gpu": "0", "storage": 1}});
    for (k, v) in extra.as_object().expect("object") {
        env[k] = v.clone();
    }
    let q = "mutation($d: String!) { createEnvironment(document: $d) { id } }";
    gql(url, admin, q, json!({"d": env.to_string()})).await["createEnvironment"]["id"]
        .as_str()
        .expect("id")
        .to_string()
}

async fn deploy(url: &str, admin: &str, env_id: &str) -> String {
    let q = "mutation($e: String!) { deploy(environment: $e) { id } }";
    gql(url, admin, q, json!({"e": env_id})).await["deploy"]["id"]
        .as_str()
        .expect("id")
        .to_string()
}

async fn deployment(url: &str, admin: &str, id: &str) -> Value {
    let q = "query($id: ID!) { deployment(id: $id) { status nodeId image
        need { memoryBytes } warnings { kind message } } }";
    gql(url, admin, q, json!({"id": id})).await["deployment"].clone()
}

/// Stops `ids`, waits for each to be stopped, and checks that no container is left.
async fn stop_all(url: &str, admin: &str, ids: &[String]) {
    let q = "mutation($id: ID!) { stop(deploymentId: $id) { status } }";
    for id in ids {
        gql(url, admin, q, json!({"id": id})).await;
    }
    let mut images = Vec::new();
    for id in ids {
        wait_for(url, admin, id, "STOPPED").await;
        // A deployment that had ended is stopped at once; its agent removes what is left.
        let deadline = Instant::now() + Duration::from_secs(30);
        while !containers_of(id).is_empty() {
            assert!(Instant::now() < deadline, "a container is left for {id}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        if let Some(image) = deployment(url, admin, id).await["image"].as_str() {
            images.push(image.to_string());
        }
    }
    for image in images {
        let _ = Command::new("docker").args(["rmi", "-f", &image]).output();
    }
}

fn cli(url: &str, token: &str, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_dcloud"))
        .args(["--server", url, "--token", token])
        .args(args)
        .output()
        .expect("dcloud runs");
    assert!(out.status.success(), "dcloud {args:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_published_port_answers_at_the_url_status_prints() {
    make_httpd_image();
    let (dir, server, url, admin) = server(None).await;
    let state = dir.path().join("agent");
    let mut agent = start_agent(&url, &admin, &state);
    wait_nodes(&url, &admin, 1).await;
    let port = free_port();
    let ports = json!({"port-publish": [
        {"external": {"ports": port.to_string()}, "internal": {"ports": "8080", "protocol": "tcp"}}]});
    let env_id = environment(&url, &admin, HTTPD, "httpd", ports).await;
    let id = deploy(&url, &admin, &env_id).await;
    wait_for(&url, &admin, &id, "RUNNING").await;

    let json_out = cli(&url, &admin, &["status", &id, "--output", "json"]);
    let d: Value = serde_json::from_str(&json_out).expect("json");
    let e = &d["endpoints"][0];
    assert_eq!(e["name"], "port-8080", "{d}");
    assert_eq!(e["internal_port"], 8080);
    assert_eq!(e["external_port"], port);
    assert_eq!(e["ready"], true);
    let endpoint = format!("http://127.0.0.1:{port}/");
    assert_eq!(e["url"], endpoint.as_str());
    let table = cli(&url, &admin, &["status", &id]);
    assert!(
        table.contains(&format!("endpoint:    port-8080 {endpoint} (ready)")),
        "{table}"
    );

    // The service answers there (httpd may take a moment after the start).
    let deadline = Instant::now() + Duration::from_secs(30);
    let body = loop {
        match reqwest::get(&endpoint).await {
            Ok(r) if r.status().is_success() => break r.text().await.expect("body"),
            other => {
                assert!(
                    Instant::now() < deadline,
                    "{endpoint} never answered: {other:?}"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    assert_eq!(body.trim(), "hello from dcloud");
    // Bound to the node's address only (127.0.0.1), as docker reports it.
    let container = containers_of(&id);
    let out = Command::new("docker")
        .args(["port", container.trim(), "8080/tcp"])
        .output()
        .expect("docker port");
    let bindings = String::from_utf8_lossy(&out.stdout);
    assert_eq!(bindings.trim(), format!("127.0.0.1:{port}"), "{bindings}");
    // Each DCLOUD_* variable appears once in the container's environment.
    let out = Command::new("docker")
        .args(["exec", container.trim(), "env"])
        .output()
        .expect("docker exec env");
    let env = String::from_utf8_lossy(&out.stdout);
    for var in [
        "DCLOUD_DEPLOYMENT_ID=",
        "DCLOUD_NODE_ID=",
        "DCLOUD_ENVIRONMENT_ID=",
    ] {
        assert_eq!(env.matches(var).count(), 1, "{var} in {env}");
    }

    stop_all(&url, &admin, &[id]).await;
    agent.kill().expect("stop the agent");
    agent.wait().expect("reap the agent");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_main_process_that_exits_is_exited_with_its_code_and_last_output() {
    make_image(
        QUITTER,
        "FROM dcloud-test/busybox:latest\n\
        CMD [\"sh\", \"-c\", \"echo starting; echo cannot go on >&2; exit 3\"]\n",
    );
    let (dir, server, url, admin) = server(None).await;
    let _agent = start_agent(&url, &admin, &dir.path().join("agent"));
    wait_nodes(&url, &admin, 1).await;
    let env_id = environment(&url, &admin, QUITTER, "quitter", json!({})).await;
    let id = deploy(&url, &admin, &env_id).await;
    wait_for(&url, &admin, &id, "EXITED").await;
    let q = "query($id: ID!) { deployment(id: $id) { exitCode lastOutput } }";
    let d = gql(&url, &admin, q, json!({"id": id})).await["deployment"].clone();
    assert_eq!(d["exitCode"], 3, "{d}");
    let out = d["lastOutput"].as_str().unwrap_or_default();
    assert!(
        out.contains("starting") && out.contains("cannot go on"),
        "{d}"
    );
    let table = cli(&url, &admin, &["status", &id]);
    // The engine interleaves stdout and stderr in no fixed order.
    assert!(
        table.contains("last output: ")
            && table.contains("starting")
            && table.contains("cannot go on"),
        "{table}"
    );
    stop_all(&url, &admin, &[id]).await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_process_oom_killed_inside_leaves_the_deployment_running() {
    make_sleeper_image();
    let (dir, server, url, admin) = server(None).await;
    let mut agent = start_agent(&url, &admin, &dir.path().join("agent"));
    wait_nodes(&url, &admin, 1).await;
    let env_id = environment(&url, &admin, SLEEPER, "oom-child", json!({})).await;
    let id = deploy(&url, &admin, &env_id).await;
    wait_for(&url, &admin, &id, "RUNNING").await;
    let allocated = || async {
        let q = "{ nodes { nodes { allocated { memoryBytes } } } }";
        gql(&url, &admin, q, json!({})).await["nodes"]["nodes"][0]["allocated"]["memoryBytes"]
            .as_u64()
    };
    let before = allocated().await;
    assert_eq!(before, Some(64 << 20));

    // dd fills a 200M buffer: in a 64M container the kernel kills it, not the container.
    let container = containers_of(&id);
    let out = Command::new("docker")
        .args(["exec", container.trim(), "sh", "-c"])
        .arg("dd if=/dev/zero of=/dev/null bs=200M count=1 2>/dev/null; echo $?")
        .output()
        .expect("docker exec");
    let code = String::from_utf8_lossy(&out.stdout);
    assert_eq!(code.trim(), "137", "the child was killed: {out:?}");

    let deadline = Instant::now() + Duration::from_secs(60);
    let d = loop {
        let d = deployment(&url, &admin, &id).await;
        if d["warnings"].as_array().is_some_and(|w| !w.is_empty()) {
            break d;
        }
        assert!(Instant::now() < deadline, "no oom warning: {d}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert_eq!(d["warnings"][0]["kind"], "oom", "{d}");
    assert_eq!(d["status"], "RUNNING", "{d}");
    assert_eq!(allocated().await, before, "nothing was freed");
    let running = Command::new("docker")
        .args(["inspect", "-f", "{{.State.Running}}", container.trim()])
        .output()
        .expect("docker inspect");
    assert_eq!(String::from_utf8_lossy(&running.stdout).trim(), "true");

    stop_all(&url, &admin, &[id]).await;
    agent.kill().expect("stop the agent");
    agent.wait().expect("reap the agent");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_agent_back_within_the_lost_node_grace_keeps_its_running_container() {
    make_sleeper_image();
    // A 2 s TTL and the default grace (5 minutes).
    let (dir, server, url, admin) = server(Some(2_000)).await;
    let state = dir.path().join("agent");
    let mut agent = start_agent(&url, &admin, &state);
    wait_nodes(&url, &admin, 1).await;
    let node = node_id_of(&state);
    let env_id = environment(&url, &admin, SLEEPER, "grace-job", json!({})).await;
    let id = deploy(&url, &admin, &env_id).await;
    wait_for(&url, &admin, &id, "RUNNING").await;
    let container = containers_of(&id);
    let started = started_at(&container);

    agent.kill().expect("SIGKILL the agent");
    agent.wait().expect("reap the agent");
    // Past the TTL the node is lost; the deployment stays booked on it and says so.
    let q = "query($id: ID!) { node(id: $id) { health } }";
    let deadline = Instant::now() + Duration::from_secs(30);
    while gql(&url, &admin, q, json!({"id": node})).await["node"]["health"] != "LOST" {
        assert!(Instant::now() < deadline, "the node was never marked lost");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let q = "query($id: ID!) { deployment(id: $id) { status nodeId nodeLostSinceMs movesAtMs
        history { status } } }";
    let d = gql(&url, &admin, q, json!({"id": id})).await["deployment"].clone();
    assert_eq!(d["status"], "RUNNING", "{d}");
    assert_eq!(d["nodeId"], node.as_str(), "{d}");
    let since = d["nodeLostSinceMs"].as_i64().expect("lost since");
    assert_eq!(d["movesAtMs"].as_i64(), Some(since + 300_000), "{d}");
    let shown = cli(&url, &admin, &["status", &id]);
    assert!(
        shown.contains("LOST since") && shown.contains("unless it comes back"),
        "{shown}"
    );
    // The container runs on without its agent.
    assert_eq!(containers_of(&id), container);

    let mut agent = start_agent(&url, &admin, &state);
    let q = "query($id: ID!) { node(id: $id) { health } }";
    let deadline = Instant::now() + Duration::from_secs(30);
    while gql(&url, &admin, q, json!({"id": node})).await["node"]["health"] != "ALIVE" {
        assert!(Instant::now() < deadline, "the node never came back");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Give the agent time to reconcile, then: the same container, never restarted.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let q = "query($id: ID!) { deployment(id: $id) { status nodeId nodeLostSinceMs containerId
        history { status } } }";
    let d = gql(&url, &admin, q, json!({"id": id})).await["deployment"].clone();
    assert_eq!(d["status"], "RUNNING", "{d}");
    assert_eq!(d["nodeId"], node.as_str(), "{d}");
    assert!(d["nodeLostSinceMs"].is_null(), "{d}");
    let statuses: Vec<&str> = d["history"]
        .as_array()
        .expect("history")
        .iter()
        .filter_map(|h| h["status"].as_str())
        .collect();
    assert!(!statuses.contains(&"LOST"), "{statuses:?}");
    assert_eq!(containers_of(&id), container, "the same container");
    assert!(
        d["containerId"]
            .as_str()
            .is_some_and(|c| c.starts_with(&container)),
        "{d} vs {container}"
    );
    assert_eq!(
        started_at(&container),
        started,
        "the container was not restarted"
    );

    stop_all(&url, &admin, &[id]).await;
    agent.kill().expect("stop the agent");
    agent.wait().expect("reap the agent");
    server.shutdown().await;
}

/// When the container's process last started (`docker inspect`).
fn started_at(container: &str) -> String {
    let out = Command::new("docker")
        .args(["inspect", "-f", "{{.State.StartedAt}} {{.State.Running}}"])
        .arg(container)
        .output()
        .expect("docker inspect");
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(text.ends_with("true"), "{container} is not running: {text}");
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_agent_back_after_the_lost_node_grace_converges() {
    make_sleeper_image();
    let (dir, server, url, admin) = server_with(Some(2_000), Some(0)).await;
    let state = dir.path().join("agent");
    let mut agent = start_agent(&url, &admin, &state);
    wait_nodes(&url, &admin, 1).await;
    let node = node_id_of(&state);
    let env_id = environment(&url, &admin, SLEEPER, "ttl-job", json!({})).await;
    let id = deploy(&url, &admin, &env_id).await;
    wait_for(&url, &admin, &id, "RUNNING").await;

    agent.kill().expect("SIGKILL the agent");
    agent.wait().expect("reap the agent");
    // Past the TTL (and no grace) the node is lost and the deployment goes back to
    // the queue.
    wait_for(&url, &admin, &id, "LOST").await;

    let mut agent = start_agent(&url, &admin, &state);
    assert_eq!(node_id_of(&state), node, "the same node id after a restart");
    wait_for(&url, &admin, &id, "RUNNING").await;
    let d = deployment(&url, &admin, &id).await;
    assert_eq!(d["nodeId"], node.as_str(), "{d}");
    let containers = containers_of(&id);
    assert_eq!(containers.lines().count(), 1, "{containers:?}");
    let out = Command::new("docker")
        .args(["inspect", "-f", "{{index .Config.Labels \"dcloud.node\"}}"])
        .arg(containers.trim())
        .output()
        .expect("docker inspect");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), node);

    stop_all(&url, &admin, &[id]).await;
    agent.kill().expect("stop the agent");
    agent.wait().expect("reap the agent");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_agents_on_one_engine_keep_their_own_containers() {
    make_sleeper_image();
    let (dir, server, url, admin) = server(None).await;
    let (state_a, state_b) = (dir.path().join("agent-a"), dir.path().join("agent-b"));
    let mut a = start_agent(&url, &admin, &state_a);
    let mut b = start_agent(&url, &admin, &state_b);
    wait_nodes(&url, &admin, 2).await;
    let (node_a, node_b) = (node_id_of(&state_a), node_id_of(&state_b));
    assert_ne!(node_a, node_b, "two agents on one host, two node ids");

    let env_id = environment(&url, &admin, SLEEPER, "two-agents", json!({})).await;
    let first = deploy(&url, &admin, &env_id).await;
    let second = deploy(&url, &admin, &env_id).await;
    for id in [&first, &second] {
        wait_for(&url, &admin, id, "RUNNING").await;
    }
    let n1 = deployment(&url, &admin, &first).await["nodeId"].clone();
    let n2 = deployment(&url, &admin, &second).await["nodeId"].clone();
    assert_ne!(n1, n2, "spread puts one on each node");
    let before = (containers_of(&first), containers_of(&second));

    // Both agents reconcile (every 30 s) against the one engine: nothing is removed.
    let until = Instant::now() + Duration::from_secs(35);
    while Instant::now() < until {
        for id in [&first, &second] {
            let q = "query($id: ID!) { deployment(id: $id) { status exitCode lastOutput history { status } } }";
            let d = gql(&url, &admin, q, json!({"id": id})).await["deployment"].clone();
            assert_eq!(d["status"], "RUNNING", "{id}: {d}");
        }
        assert_eq!((containers_of(&first), containers_of(&second)), before);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }

    stop_all(&url, &admin, &[first, second]).await;
    for node in [&node_a, &node_b] {
        let out = Command::new("docker")
            .args([
                "ps",
                "-aq",
                "--filter",
                &format!("label=dcloud.node={node}"),
            ])
            .output()
            .expect("docker ps");
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "", "{node}");
    }
    for agent in [&mut a, &mut b] {
        agent.kill().expect("stop the agent");
        agent.wait().expect("reap the agent");
    }
    server.shutdown().await;
}

/// The labels of a deployment's container.
fn labels_of(container: &str) -> Value {
    let out = Command::new("docker")
        .args(["inspect", "-f", "{{json .Config.Labels}}", container])
        .output()
        .expect("docker inspect");
    serde_json::from_slice(&out.stdout).expect("labels")
}

async fn cluster_id(url: &str, token: &str) -> String {
    gql(url, token, "{ clusterId }", json!({})).await["clusterId"]
        .as_str()
        .expect("the server names its cluster")
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_clusters_on_one_engine_with_one_node_id_keep_their_own_containers() {
    make_sleeper_image();
    let (dir_a, server_a, url_a, admin_a) = server(None).await;
    let (dir_b, server_b, url_b, admin_b) = server(None).await;
    let (cluster_a, cluster_b) = (
        cluster_id(&url_a, &admin_a).await,
        cluster_id(&url_b, &admin_b).await,
    );
    assert_ne!(cluster_a, cluster_b, "each log names its own cluster");
    let node = format!("shared-{}", nonce() % 1_000_000);
    let flags = ["--node-id", node.as_str()];
    let state_a = dir_a.path().join("agent");
    let mut agent_a = start_agent_with(&url_a, &admin_a, &state_a, &flags);
    wait_nodes(&url_a, &admin_a, 1).await;
    let env_a = environment(&url_a, &admin_a, SLEEPER, "cluster-a", json!({})).await;
    let dep_a = deploy(&url_a, &admin_a, &env_a).await;
    wait_for(&url_a, &admin_a, &dep_a, "RUNNING").await;
    let container_a = containers_of(&dep_a);
    assert_eq!(container_a.lines().count(), 1, "{container_a}");
    assert_eq!(
        labels_of(&container_a)["dcloud.cluster"],
        cluster_a.as_str()
    );

    // Cluster B's agent, with the same node id on the same engine, reconciles at
    // start: cluster A's container is not its own and stays.
    let state_b = dir_b.path().join("agent");
    let mut agent_b = start_agent_with(&url_b, &admin_b, &state_b, &flags);
    wait_nodes(&url_b, &admin_b, 1).await;
    let env_b = environment(&url_b, &admin_b, SLEEPER, "cluster-b", json!({})).await;
    let dep_b = deploy(&url_b, &admin_b, &env_b).await;
    wait_for(&url_b, &admin_b, &dep_b, "RUNNING").await;
    let container_b = containers_of(&dep_b);
    assert_eq!(
        labels_of(&container_b)["dcloud.cluster"],
        cluster_b.as_str()
    );
    assert_eq!(labels_of(&container_b)["dcloud.node"], node.as_str());

    // Each agent restarted (a reconcile at start) leaves the other's container alone.
    for (agent, url, admin, state) in [
        (&mut agent_b, &url_b, &admin_b, &state_b),
        (&mut agent_a, &url_a, &admin_a, &state_a),
    ] {
        agent.kill().expect("kill the agent");
        agent.wait().expect("reap it");
        *agent = start_agent_with(url, admin, state, &flags);
    }
    let until = Instant::now() + Duration::from_secs(8);
    while Instant::now() < until {
        assert_eq!(containers_of(&dep_a), container_a, "cluster A's container");
        assert_eq!(containers_of(&dep_b), container_b, "cluster B's container");
        assert_eq!(
            deployment(&url_a, &admin_a, &dep_a).await["status"],
            "RUNNING"
        );
        assert_eq!(
            deployment(&url_b, &admin_b, &dep_b).await["status"],
            "RUNNING"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Stopping one cluster's deployment removes its container only.
    stop_all(&url_b, &admin_b, std::slice::from_ref(&dep_b)).await;
    assert_eq!(containers_of(&dep_a), container_a);
    stop_all(&url_a, &admin_a, std::slice::from_ref(&dep_a)).await;
    for agent in [&mut agent_a, &mut agent_b] {
        agent.kill().expect("stop the agent");
        agent.wait().expect("reap the agent");
    }
    server_a.shutdown().await;
    server_b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dataset_on_shared_storage_is_mounted_on_a_node_that_does_not_hold_it() {
    make_sleeper_image();
    let (dir, server, url, admin) = server(None).await;
    // The node's own dataset root is empty; the shared store is a folder every node
    // would mount (here: bound by the engine's local driver).
    let root = dir.path().join("node-datasets");
    let shared = dir.path().join("shared/vision");
    std::fs::create_dir_all(&root).expect("dataset root");
    std::fs::create_dir_all(shared.join("coco/val@2017")).expect("shared dataset");
    std::fs::write(shared.join("coco/val@2017/labels.txt"), "cat\ndog\n").expect("data");
    let state = dir.path().join("agent");
    let mut agent = start_agent_with(
        &url,
        &admin,
        &state,
        &["--dataset-root", root.to_str().expect("utf-8")],
    );
    wait_nodes(&url, &admin, 1).await;

    let category = |name: &str, shared: Value| {
        let mut doc = json!({"category-name": name, "db": [{"db-name": "coco",
            "dataset": [{"dataset-name": "val", "version": "2017"}]}]});
        if !shared.is_null() {
            doc["shared-storage"] = shared;
        }
        doc
    };
    let docs = json!([
        category(
            "vision",
            json!({"type": "none", "o": "bind",
            "device": shared.to_str().expect("utf-8")})
        ),
        category("audio", Value::Null),
    ]);
    let q = "mutation($d: String!) { apply(document: $d) { events } }";
    gql(&url, &admin, q, json!({"d": docs.to_string()})).await;
    let catalog = gql(
        &url,
        &admin,
        "{ datasets { category sharedStorage { type device } } }",
        json!({}),
    )
    .await;
    let vision = catalog["datasets"]
        .as_array()
        .expect("list")
        .iter()
        .find(|c| c["category"] == "vision")
        .expect("vision")
        .clone();
    assert_eq!(vision["sharedStorage"]["type"], "none", "{catalog}");

    let dataset = |c: &str| {
        json!([{"category-name": c, "db": [{"db-name": "coco",
        "dataset": [{"dataset-name": "val", "version": "2017"}]}]}])
    };
    let env = environment(
        &url,
        &admin,
        SLEEPER,
        "shared-data",
        json!({"dataset": dataset("vision")}),
    )
    .await;
    let id = deploy(&url, &admin, &env).await;
    wait_for(&url, &admin, &id, "RUNNING").await;
    let container = containers_of(&id);
    let out = Command::new("docker")
        .args([
            "exec",
            &container,
            "cat",
            "/datasets/vision/coco/val@2017/labels.txt",
        ])
        .output()
        .expect("docker exec");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "cat\ndog\n",
        "{out:?}"
    );
    // Read-only inside the container.
    let out = Command::new("docker")
        .args([
            "exec",
            &container,
            "touch",
            "/datasets/vision/coco/val@2017/x",
        ])
        .output()
        .expect("docker exec");
    assert!(!out.status.success(), "the dataset is mounted read-only");

    // A category on nodes' disks that no node holds keeps its deployment pending.
    let local = environment(
        &url,
        &admin,
        SLEEPER,
        "local-data",
        json!({"dataset": dataset("audio")}),
    )
    .await;
    let waiting = deploy(&url, &admin, &local).await;
    let q = "query($id: ID!) { deployment(id: $id) { status pendingReasons { reason } } }";
    let d = gql(&url, &admin, q, json!({"id": waiting})).await["deployment"].clone();
    assert_eq!(d["status"], "PENDING", "{d}");
    assert_eq!(
        d["pendingReasons"][0]["reason"], "missing dataset audio/coco/val@2017",
        "{d}"
    );

    let stop = "mutation($id: ID!) { stop(deploymentId: $id) { status } }";
    gql(&url, &admin, stop, json!({"id": waiting})).await;
    stop_all(&url, &admin, std::slice::from_ref(&id)).await;
    let out = Command::new("docker")
        .args(["volume", "ls", "-q", "--filter", "name=dcloud-ds-"])
        .output()
        .expect("docker volume ls");
    for volume in String::from_utf8_lossy(&out.stdout).lines() {
        let _ = Command::new("docker")
            .args(["volume", "rm", volume])
            .output();
    }
    agent.kill().expect("stop the agent");
    agent.wait().expect("reap the agent");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn storage_use_is_watched_against_its_size_and_shown_by_status() {
    make_sleeper_image();
    let (dir, server, url, admin) = server(None).await;
    let state = dir.path().join("agent");
    let mut agent = start_agent_with(&url, &admin, &state, &["--volume-interval", "1s"]);
    wait_nodes(&url, &admin, 1).await;
    let storage =
        json!({"storage": [{"target": "/data", "size": "64M", "lifecycle": "temporary"}]});
    let env = environment(&url, &admin, SLEEPER, "watched", storage).await;
    let id = deploy(&url, &admin, &env).await;
    wait_for(&url, &admin, &id, "RUNNING").await;
    let container = containers_of(&id);
    let write = |mb: u32, name: &str| {
        let out = Command::new("docker")
            .args([
                "exec",
                &container,
                "dd",
                "if=/dev/zero",
                &format!("of=/data/{name}"),
                "bs=1M",
                &format!("count={mb}"),
            ])
            .output()
            .expect("docker exec");
        assert!(out.status.success(), "{out:?}");
    };
    let volumes = || async {
        let q = "query($id: ID!) { deployment(id: $id) { status volumes { target usedBytes sizeBytes enforced over } } }";
        gql(&url, &admin, q, json!({"id": id})).await["deployment"].clone()
    };
    let wait_used = |at_least: u64| {
        let volumes = &volumes;
        async move {
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                let d = volumes().await;
                if d["volumes"][0]["usedBytes"]
                    .as_u64()
                    .is_some_and(|u| u >= at_least)
                {
                    return d;
                }
                assert!(
                    Instant::now() < deadline,
                    "usage never reached {at_least}: {d}"
                );
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        }
    };
    write(20, "a");
    let d = wait_used(20 << 20).await;
    let v = &d["volumes"][0];
    assert_eq!(v["target"], "/data", "{d}");
    assert_eq!(v["sizeBytes"], 64u64 << 20, "{d}");
    // This engine's volumes sit on a filesystem without project quotas: watched.
    assert_eq!(v["enforced"], false, "{d}");
    assert_eq!(v["over"], false, "{d}");
    let status = cli(&url, &admin, &["status", &id]);
    assert!(
        status.contains("/data") && status.contains("of 64M") && status.contains("watched"),
        "{status}"
    );

    // Past its size: shown as over, and the deployment keeps running.
    write(60, "b");
    let d = wait_used(80 << 20).await;
    assert_eq!(d["volumes"][0]["over"], true, "{d}");
    assert_eq!(d["status"], "RUNNING", "{d}");
    let status = cli(&url, &admin, &["status", &id]);
    assert!(status.contains("OVER"), "{status}");
    let json_out = cli(&url, &admin, &["status", &id, "--output", "json"]);
    assert!(
        json_out.contains("\"usedBytes\"") || json_out.contains("\"used_bytes\""),
        "{json_out}"
    );

    stop_all(&url, &admin, std::slice::from_ref(&id)).await;
    agent.kill().expect("stop the agent");
    agent.wait().expect("reap the agent");
    server.shutdown().await;
}
