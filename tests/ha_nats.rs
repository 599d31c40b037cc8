//! Leader and standbys on a shared JetStream log, with real processes: `dcloud server
//! --log nats://…` twice on one nats-server (the pinned one, `scripts/install-nats-server.sh`).
//! The standby follows the leader (a token made on the leader authenticates on it),
//! refuses writes naming the leader, takes over when the leader is SIGKILLed, and a
//! leader stopping cleanly hands the lease over at once. The chain verifies throughout.

#[path = "../log-nats/tests/common/mod.rs"]
mod nats;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// One `dcloud server` process on the shared log; killed when dropped.
struct Node {
    url: String,
    data: PathBuf,
    child: Option<Child>,
    args: Vec<String>,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

impl Node {
    fn start(nats: &str, stream: &str, data: &Path) -> Node {
        let port = free_port();
        let args = vec![
            "server".to_string(),
            "--data".into(),
            data.display().to_string(),
            "--listen".into(),
            format!("127.0.0.1:{port}"),
            "--log".into(),
            nats.into(),
            "--log-stream".into(),
            stream.into(),
            "--lease-ttl-ms".into(),
            "1500".into(),
            // Silent nodes are lost after 2 s (the agents heartbeat every 500 ms).
            "--node-ttl-ms".into(),
            "2000".into(),
        ];
        let mut node = Node {
            url: format!("http://127.0.0.1:{port}"),
            data: data.to_path_buf(),
            child: None,
            args,
        };
        node.spawn();
        node
    }

    fn spawn(&mut self) {
        // The server makes its data directory.
        let log = std::fs::File::create(self.data.with_extension("log")).expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_dcloud"))
            .args(&self.args)
            .env("DCLOUD_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn dcloud server");
        self.child = Some(child);
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, and wait for the process to exit.
    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(c.id().to_string())
                .status();
            let _ = c.wait();
        }
    }

    fn server_log(&self) -> String {
        std::fs::read_to_string(self.data.with_extension("log")).unwrap_or_default()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

async fn readyz(url: &str) -> Option<String> {
    let r = reqwest::get(format!("{url}/readyz")).await.ok()?;
    r.text().await.ok()
}

async fn gql(url: &str, token: &str, query: &str, variables: Value) -> Value {
    reqwest::Client::new()
        .post(format!("{url}/graphql"))
        .bearer_auth(token)
        .json(&json!({"query": query, "variables": variables}))
        .send()
        .await
        .expect("graphql request")
        .json()
        .await
        .expect("graphql json")
}

/// Waits until `/readyz` of `node` starts with `want`; panics with its log after `limit`.
async fn wait_ready(node: &Node, want: &str, limit: Duration) -> Duration {
    let started = Instant::now();
    loop {
        if let Some(text) = readyz(&node.url).await {
            if text.starts_with(want) {
                return started.elapsed();
            }
        }
        assert!(
            started.elapsed() < limit,
            "{} did not say {want:?} within {limit:?}; its log:\n{}",
            node.url,
            node.server_log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

const CREATE_TOKEN: &str =
    "mutation($name: String!) { createToken(role: USER, name: $name) { token } }";
const ME: &str = "{ me { name role } }";
const VERIFY: &str = "{ verifyChain { ok lastSeq } }";

async fn create_token(url: &str, admin: &str, name: &str) -> Value {
    gql(url, admin, CREATE_TOKEN, json!({"name": name})).await
}

/// Polls `me` with `token` on `url` until it authenticates as `name`.
async fn eventually_known(url: &str, token: &str, name: &str) {
    let started = Instant::now();
    loop {
        let r = gql(url, token, ME, json!({})).await;
        if r["data"]["me"]["name"] == name {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{url} never knew the token {name}: {r}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn admin_token(data: &Path) -> String {
    std::fs::read_to_string(data.join("admin.token"))
        .expect("the leader wrote admin.token")
        .trim()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_follows_refuses_writes_and_takes_over_when_the_leader_dies() {
    let nats = nats::server();
    let stream = format!("ha{}", std::process::id());
    let dir = tempfile::tempdir().expect("tempdir");
    let mut a = Node::start(&nats.url, &stream, &dir.path().join("a"));
    wait_ready(&a, "ready (leader)", Duration::from_secs(30)).await;
    let mut b = Node::start(&nats.url, &stream, &dir.path().join("b"));
    let standby = format!("ready (standby; the leader is {})", a.url);
    wait_ready(&b, &standby, Duration::from_secs(30)).await;
    let admin = admin_token(&a.data);

    // Written on the leader, known to the standby: it follows the log.
    let made = create_token(&a.url, &admin, "alice").await;
    let alice = made["data"]["createToken"]["token"]
        .as_str()
        .unwrap_or_else(|| panic!("token: {made}"))
        .to_string();
    eventually_known(&b.url, &alice, "alice").await;

    // A write sent to the standby is refused, naming the leader; nothing is written.
    let refused = create_token(&b.url, &admin, "bob").await;
    let err = &refused["errors"][0];
    assert_eq!(err["extensions"]["code"], "NOT_LEADER", "{refused}");
    assert_eq!(err["extensions"]["leader"], a.url.as_str(), "{refused}");
    let metrics = reqwest::get(format!("{}/metrics", b.url))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains(&format!("dcloud_leader{{leader=\"{}\"}} 0", a.url)),
        "the standby's metrics name the leader"
    );

    // The leader dies: the standby takes the lease once it expires and writes on.
    let head_before = gql(&b.url, &admin, VERIFY, json!({})).await["data"]["verifyChain"]
        ["lastSeq"]
        .as_u64()
        .expect("lastSeq");
    a.kill();
    let took = wait_ready(&b, "ready (leader)", Duration::from_secs(30)).await;
    eprintln!("leader killed -> standby leads: {took:?}");
    let carol = create_token(&b.url, &admin, "carol").await;
    assert!(carol["errors"].is_null(), "the new leader writes: {carol}");
    eventually_known(&b.url, &alice, "alice").await;
    let v = gql(&b.url, &admin, VERIFY, json!({})).await;
    assert_eq!(v["data"]["verifyChain"]["ok"], true, "{v}");
    assert!(v["data"]["verifyChain"]["lastSeq"].as_u64() > Some(head_before));

    // The old leader comes back as a standby of the new one, with what it wrote.
    a.spawn();
    let standby = format!("ready (standby; the leader is {})", b.url);
    wait_ready(&a, &standby, Duration::from_secs(30)).await;
    let carol_token = carol["data"]["createToken"]["token"]
        .as_str()
        .expect("token")
        .to_string();
    eventually_known(&a.url, &carol_token, "carol").await;

    // A leader stopping cleanly releases the lease, and the standby leads.
    b.stop();
    let took = wait_ready(&a, "ready (leader)", Duration::from_secs(30)).await;
    eprintln!("leader stopped -> standby leads: {took:?}");
    let dave = create_token(&a.url, &admin, "dave").await;
    assert!(dave["errors"].is_null(), "{dave}");
    let v = gql(&a.url, &admin, VERIFY, json!({})).await;
    assert_eq!(v["data"]["verifyChain"]["ok"], true, "{v}");

    // The offline tools read the same log from JetStream, beside the running server.
    let last = v["data"]["verifyChain"]["lastSeq"]
        .as_u64()
        .expect("lastSeq");
    let offline = |args: &[&str]| -> Value {
        let out = Command::new(env!("CARGO_BIN_EXE_dcloud"))
            .args(args)
            .args([
                "--log",
                &nats.url,
                "--log-stream",
                &stream,
                "--output",
                "json",
            ])
            .output()
            .expect("run dcloud");
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("json")
    };
    let verified = offline(&["audit", "verify"]);
    assert_eq!(verified["ok"], true, "{verified}");
    assert!(verified["last_seq"].as_u64() >= Some(last), "{verified}");
    let replayed = offline(&["replay", "--to", &last.to_string()]);
    assert_eq!(replayed["seq"].as_u64(), Some(last), "{replayed}");
}

const CATALOG: &str = r#"{"os": "busybox", "base-image": "dcloud-test/busybox:latest",
  "init-steps": ["true"], "specifications": {}}"#;
const ENVIRONMENT: &str = r#"{"env-name": "sim-job", "version": "1", "os": "busybox",
  "languages": [], "resources": {"ram": "256M", "cpu": "0.5", "gpu": "0", "storage": 1}}"#;

/// `dcloud --server LIST --token T ARGS…` to the end; its stdout, or a panic with both
/// streams.
fn cli(servers: &str, token: &str, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_dcloud"))
        .env_remove("DCLOUD_TOKEN")
        .env_remove("DCLOUD_SERVER")
        .args(["--server", servers, "--token", token])
        .args(args)
        .output()
        .expect("run dcloud");
    assert!(
        out.status.success(),
        "dcloud {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Every deployment's status, node and how often it was scheduled.
async fn placements(url: &str, admin: &str) -> Vec<(String, Option<String>, usize)> {
    let q = "{ deployments(first: 1000) { nodes { status nodeId history { status } } } }";
    let r = gql(url, admin, q, json!({})).await;
    r["data"]["deployments"]["nodes"]
        .as_array()
        .unwrap_or_else(|| panic!("deployments: {r}"))
        .iter()
        .map(|d| {
            let scheduled = d["history"].as_array().map_or(0, |h| {
                h.iter().filter(|s| s["status"] == "SCHEDULED").count()
            });
            (
                d["status"].as_str().unwrap_or_default().to_string(),
                d["nodeId"].as_str().map(str::to_string),
                scheduled,
            )
        })
        .collect()
}

async fn all_running(url: &str, admin: &str, n: usize) {
    let started = Instant::now();
    loop {
        let p = placements(url, admin).await;
        if p.len() == n && p.iter().all(|(s, _, _)| s == "RUNNING") {
            for (_, node, scheduled) in &p {
                assert!(node.is_some());
                assert_eq!(*scheduled, 1, "each deployment placed once: {p:?}");
            }
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "not all {n} running on {url}: {p:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A sim fleet and the CLI given both servers (`--server standby,leader`): writes find
/// the leader, and when it is SIGKILLed they find the new one; the agents' nodes stay
/// alive, every deployment runs, none is placed twice, the chain verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_and_the_cli_fail_over_across_a_list_of_servers() {
    let nats = nats::server();
    let stream = format!("hafleet{}", std::process::id());
    let dir = tempfile::tempdir().expect("tempdir");
    let mut a = Node::start(&nats.url, &stream, &dir.path().join("a"));
    wait_ready(&a, "ready (leader)", Duration::from_secs(30)).await;
    let mut b = Node::start(&nats.url, &stream, &dir.path().join("b"));
    wait_ready(&b, "ready (standby", Duration::from_secs(30)).await;
    let admin = admin_token(&a.data);
    let q = "mutation($d: String!) { upsertCatalog(document: $d) { os } }";
    gql(&a.url, &admin, q, json!({"d": CATALOG})).await;
    let q = "mutation($d: String!) { createEnvironment(document: $d) { id } }";
    gql(&a.url, &admin, q, json!({"d": ENVIRONMENT})).await;

    // The standby first in both lists.
    let standby_first = format!("{},{}", b.url, a.url);

    // A watch of a deployment that waits (no nodes yet). The deploy went to the leader
    // (the standby answered NOT_LEADER), and so did the watch's subscription; the
    // leader dies under it: the watch resumes on the new leader from the last seq it
    // saw.
    let watch = Command::new(env!("CARGO_BIN_EXE_dcloud"))
        .env_remove("DCLOUD_TOKEN")
        .env_remove("DCLOUD_SERVER")
        .args(["--server", &standby_first, "--token", &admin])
        .args(["deploy", "sim-job", "--watch"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the watch");
    let started = Instant::now();
    while placements(&a.url, &admin).await.is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the watch's deploy"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    a.kill();
    wait_ready(&b, "ready (leader)", Duration::from_secs(30)).await;
    let mut agent = Command::new(env!("CARGO_BIN_EXE_dcloud"))
        .env_remove("DCLOUD_TOKEN")
        .env_remove("DCLOUD_SERVER")
        .env("DCLOUD_LOG", "warn")
        .args(["--server", &standby_first, "--token", &admin])
        .args(["agent", "--driver", "sim", "--sim-nodes", "4"])
        .args(["--heartbeat-interval", "500ms"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the agent");
    // The agent places the waiting deployment: the resumed watch sees it run.
    let watched = watch.wait_with_output().expect("the watch ends");
    let (out, err) = (
        String::from_utf8_lossy(&watched.stdout),
        String::from_utf8_lossy(&watched.stderr),
    );
    assert!(watched.status.success(), "the watch: {out}\n{err}");
    assert!(
        err.contains("resuming after seq"),
        "the watch resumed: {err}"
    );
    assert!(out.contains("RUNNING") || out.contains("running"), "{out}");
    // Back to A leading and B standing by (B stops cleanly: A takes over at once).
    a.spawn();
    wait_ready(&a, "ready (standby", Duration::from_secs(30)).await;
    b.stop();
    wait_ready(&a, "ready (leader)", Duration::from_secs(30)).await;
    b.spawn();
    wait_ready(&b, "ready (standby", Duration::from_secs(30)).await;
    for _ in 0..5 {
        cli(&standby_first, &admin, &["deploy", "sim-job", "-q"]);
    }
    all_running(&b.url, &admin, 6).await;

    a.kill();
    wait_ready(&b, "ready (leader)", Duration::from_secs(30)).await;
    // The dead leader first now; `--watch` follows each to RUNNING.
    let dead_first = format!("{},{}", a.url, b.url);
    for _ in 0..6 {
        cli(&dead_first, &admin, &["deploy", "sim-job", "--watch"]);
    }
    all_running(&b.url, &admin, 12).await;
    // Past the one node TTL of grace the new leader gave every node: still alive only
    // if the agents heartbeat it.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let nodes = gql(
        &b.url,
        &admin,
        "{ nodes(first: 10) { nodes { id state } } }",
        json!({}),
    )
    .await;
    let nodes = nodes["data"]["nodes"]["nodes"]
        .as_array()
        .expect("nodes")
        .clone();
    assert_eq!(nodes.len(), 4, "{nodes:?}");
    assert!(
        nodes.iter().all(|n| n["state"] == "READY"),
        "the agents heartbeat the new leader: {nodes:?}"
    );
    let v = gql(&b.url, &admin, VERIFY, json!({})).await;
    assert_eq!(v["data"]["verifyChain"]["ok"], true, "{v}");
    let _ = agent.kill();
    let _ = agent.wait();
}

/// `scripts/dev-ha.sh --smoke`: the three-node nats cluster and three servers it starts
/// elect a leader, deploy through the list of servers, survive the leader's SIGKILL,
/// and the chain verifies (the script exits non-zero otherwise).
#[test]
fn the_dev_ha_script_runs_a_cluster_that_survives_its_leader() {
    nats::server_binary();
    let out = Command::new("bash")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/dev-ha.sh"))
        .arg("--smoke")
        .env("DCLOUD_BIN", env!("CARGO_BIN_EXE_dcloud"))
        .env("DCLOUD_NATS_SERVER", nats::server_binary())
        .output()
        .expect("run the script");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "dev-ha.sh --smoke failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("leads after"), "{stdout}");
    assert!(stdout.contains("chain verified"), "{stdout}");
}
