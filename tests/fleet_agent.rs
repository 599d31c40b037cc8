//! Agents at fleet scale, end to end with a real server in-process: simulated nodes
//! on their own websockets from two agent "processes" sharing one fleet, a node the
//! server marked lost that speaks again and is alive again, and a lost node whose
//! deployment moves to another node once the lost-node grace is over.

use std::time::{Duration, Instant};

use dcloud::agent_cmd::{run_async, AgentArgs, SimConnections};
use dcloud::server::{start, ServerConfig};
use serde_json::{json, Value};

async fn gql(url: &str, token: &str, query: &str, variables: Value) -> Value {
    let body: Value = reqwest::Client::new()
        .post(format!("{url}/graphql"))
        .bearer_auth(token)
        .json(&json!({"query": query, "variables": variables}))
        .send()
        .await
        .expect("server answers")
        .json()
        .await
        .expect("json body");
    assert!(body.get("errors").is_none(), "{query}: {body}");
    body["data"].clone()
}

async fn metric(url: &str, name: &str) -> f64 {
    let text = reqwest::get(format!("{url}/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Polls `check` until it holds, failing after `limit`.
async fn eventually<F, Fut>(what: &str, limit: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn sim(first: usize, n: usize, heartbeat: &str) -> AgentArgs {
    let mut args = AgentArgs::sim(n);
    args.sim_first = first;
    args.sim_connections = SimConnections::PerNode;
    args.heartbeat_interval = heartbeat.into();
    args
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_agent_processes_share_one_fleet_each_node_on_its_own_connection() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = ServerConfig::new(dir.path());
    config.listen = "127.0.0.1:0".parse().expect("addr");
    let server = start(config).await.expect("server starts");
    let (url, admin) = (server.url(), server.admin_token.clone().expect("admin"));
    let one = {
        let (url, admin) = (url.clone(), admin.clone());
        tokio::spawn(async move { run_async(&url, &admin, &sim(0, 3, "5s")).await })
    };
    let two = {
        let (url, admin) = (url.clone(), admin.clone());
        tokio::spawn(async move { run_async(&url, &admin, &sim(3, 3, "5s")).await })
    };
    eventually(
        "six nodes, each with its assignments on its own socket, and each process with \
         one more socket carrying its nodes' session-request subscriptions",
        Duration::from_secs(30),
        || async {
            metric(&url, "dcloud_nodes{state=\"alive\"}").await == 6.0
                && metric(&url, "dcloud_subscriptions_open").await == 12.0
                && metric(&url, "dcloud_ws_connections_open").await == 8.0
        },
    )
    .await;
    let data = gql(
        &url,
        &admin,
        "{ nodes(first: 10) { nodes { id } } }",
        json!({}),
    )
    .await;
    let mut ids: Vec<&str> = data["nodes"]["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .filter_map(|n| n["id"].as_str())
        .collect();
    ids.sort();
    let want: Vec<String> = (1..=6).map(|i| format!("0x02{i:010x}")).collect();
    assert_eq!(ids, want, "distinct nodes, numbered across the processes");
    assert!(!one.is_finished() && !two.is_finished());
    one.abort();
    two.abort();
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_marked_lost_that_speaks_again_is_alive_again() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = ServerConfig::new(dir.path());
    config.listen = "127.0.0.1:0".parse().expect("addr");
    // Heartbeats every 1.5 s against a 400 ms TTL: the node is lost between them.
    config.settings.node_ttl_ms = 400;
    config.liveness_tick = Duration::from_millis(50);
    let server = start(config).await.expect("server starts");
    let (url, admin) = (server.url(), server.admin_token.clone().expect("admin"));
    let agent = {
        let (url, admin) = (url.clone(), admin.clone());
        tokio::spawn(async move { run_async(&url, &admin, &sim(0, 1, "1500ms")).await })
    };
    let node = "0x020000000001";
    // Before its first registration the node is not there yet: that reads as "".
    let state = || async {
        let q = "query($id: ID!) { node(id: $id) { state } }";
        let body: Value = reqwest::Client::new()
            .post(format!("{url}/graphql"))
            .bearer_auth(&admin)
            .json(&json!({"query": q, "variables": {"id": node}}))
            .send()
            .await
            .expect("server answers")
            .json()
            .await
            .expect("json body");
        body["data"]["node"]["state"]
            .as_str()
            .unwrap_or("")
            .to_string()
    };
    eventually("the node is lost", Duration::from_secs(30), || async {
        state().await == "LOST"
    })
    .await;
    eventually(
        "it spoke again and is alive",
        Duration::from_secs(30),
        || async { state().await == "READY" },
    )
    .await;
    assert!(!agent.is_finished(), "the agent keeps running");
    agent.abort();
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lost_nodes_deployment_moves_when_the_grace_is_over_and_not_before() {
    const GRACE_MS: i64 = 2_000;
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = ServerConfig::new(dir.path());
    config.listen = "127.0.0.1:0".parse().expect("addr");
    config.settings.node_ttl_ms = 2_000;
    config.settings.lost_node_grace_ms = GRACE_MS;
    config.liveness_tick = Duration::from_millis(50);
    let server = start(config).await.expect("server starts");
    let (url, admin) = (server.url(), server.admin_token.clone().expect("admin"));
    // The first node's agent beats once an hour: it is lost after the 2 s TTL.
    let quiet = {
        let (url, admin) = (url.clone(), admin.clone());
        tokio::spawn(async move { run_async(&url, &admin, &sim(0, 1, "1h")).await })
    };
    let (first, second) = ("0x020000000001", "0x020000000002");
    eventually(
        "the first node registers",
        Duration::from_secs(30),
        || async { metric(&url, "dcloud_nodes{state=\"alive\"}").await == 1.0 },
    )
    .await;
    let q = "mutation($d: String!) { upsertCatalog(document: $d) { os } }";
    let catalog = json!({"os": "busybox", "base-image": "busybox:latest",
        "init-steps": ["true"], "specifications": {}});
    gql(&url, &admin, q, json!({"d": catalog.to_string()})).await;
    let env = json!({"env-name": "grace", "version": "1", "os": "busybox", "languages": [],
        "resources": {"ram": "64M", "cpu": "0.1", "gpu": "0", "storage": 0}});
    let q = "mutation($d: String!) { createEnvironment(document: $d) { id } }";
    let env_id = gql(&url, &admin, q, json!({"d": env.to_string()})).await["createEnvironment"]
        ["id"]
        .as_str()
        .expect("id")
        .to_string();
    let q = "mutation($e: String!) { deploy(environment: $e) { id nodeId } }";
    let d = gql(&url, &admin, q, json!({"e": env_id})).await["deploy"].clone();
    assert_eq!(d["nodeId"], first, "{d}");
    let id = d["id"].as_str().expect("id").to_string();
    // A second node that beats often arrives.
    let busy = {
        let (url, admin) = (url.clone(), admin.clone());
        tokio::spawn(async move { run_async(&url, &admin, &sim(1, 1, "200ms")).await })
    };
    let dep = || async {
        let q =
            "query($id: ID!) { deployment(id: $id) { status nodeId history { status timeMs } } }";
        gql(&url, &admin, q, json!({"id": id})).await["deployment"].clone()
    };
    eventually(
        "the deployment runs on the second node",
        Duration::from_secs(60),
        || async {
            let d = dep().await;
            d["nodeId"] == second && d["status"] == "RUNNING"
        },
    )
    .await;
    let q = "query($id: ID!) { node(id: $id) { state lostSinceMs } }";
    let node = gql(&url, &admin, q, json!({"id": first})).await["node"].clone();
    assert_eq!(node["state"], "LOST", "{node}");
    let lost_since = node["lostSinceMs"].as_i64().expect("lost since");
    let d = dep().await;
    let moved_at = d["history"]
        .as_array()
        .expect("history")
        .iter()
        .find(|h| h["status"] == "LOST")
        .and_then(|h| h["timeMs"].as_i64())
        .unwrap_or_else(|| panic!("never LOST: {d}"));
    assert!(
        moved_at - lost_since >= GRACE_MS,
        "moved {} ms after its node was lost, before the {GRACE_MS} ms grace",
        moved_at - lost_since
    );
    quiet.abort();
    busy.abort();
    server.shutdown().await;
}
