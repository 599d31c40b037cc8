//! End-to-end tests of the agent runtime with the simulated driver: a real server
//! in-process on port 0, the agent inside the same process (`spawn_local`), 1,000
//! nodes from one process, and a server restart the agent rides through.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use dcloud::agent_cmd::spawn_local;
use dcloud::server::{start, Server, ServerConfig};
use serde_json::{json, Value};

const CATALOG: &str = r#"{"os": "busybox", "base-image": "dcloud-test/busybox:latest",
  "init-steps": ["true"], "specifications": {}}"#;
const ENVIRONMENT: &str = r#"{"env-name": "sim-job", "version": "1", "os": "busybox",
  "languages": [], "resources": {"ram": "256M", "cpu": "0.5", "gpu": "0", "storage": 1}}"#;

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

async fn server_on(dir: &std::path::Path, listen: &str) -> Server {
    let mut config = ServerConfig::new(dir);
    config.listen = listen.parse().expect("addr");
    start(config).await.expect("server starts")
}

/// Catalog and environment; returns the environment id.
async fn setup(url: &str, admin: &str) -> String {
    let q = "mutation($d: String!) { upsertCatalog(document: $d) { os } }";
    gql(url, admin, q, json!({"d": CATALOG})).await;
    let q = "mutation($d: String!) { createEnvironment(document: $d) { id } }";
    let data = gql(url, admin, q, json!({"d": ENVIRONMENT})).await;
    data["createEnvironment"]["id"]
        .as_str()
        .expect("environment id")
        .to_string()
}

async fn deploy(url: &str, admin: &str, env: &str, n: usize) -> Vec<String> {
    let q = "mutation($e: String!) { deploy(environment: $e) { id } }";
    let mut ids = Vec::new();
    for _ in 0..n {
        let data = gql(url, admin, q, json!({"e": env})).await;
        ids.push(data["deploy"]["id"].as_str().expect("id").to_string());
    }
    ids
}

async fn count_nodes(url: &str, admin: &str) -> u64 {
    let data = gql(url, admin, "{ counts { nodes } }", json!({})).await;
    data["counts"]["nodes"].as_u64().unwrap_or(0)
}

/// Every deployment: `(id, status, node, statuses of its history)`.
async fn deployments(url: &str, admin: &str) -> Vec<(String, String, Option<String>, Vec<String>)> {
    let q = "{ deployments(first: 1000) { nodes { id status nodeId history { status } } } }";
    let data = gql(url, admin, q, json!({})).await;
    data["deployments"]["nodes"]
        .as_array()
        .expect("list")
        .iter()
        .map(|d| {
            let history = d["history"]
                .as_array()
                .expect("history")
                .iter()
                .map(|h| h["status"].as_str().unwrap_or("").to_string())
                .collect();
            (
                d["id"].as_str().unwrap_or("").to_string(),
                d["status"].as_str().unwrap_or("").to_string(),
                d["nodeId"].as_str().map(str::to_string),
                history,
            )
        })
        .collect()
}

/// Polls until every deployment in `ids` has `status` (or the deadline passes).
async fn wait_status(url: &str, admin: &str, ids: &[String], status: &str, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let all = deployments(url, admin).await;
        let wanted: Vec<_> = all.iter().filter(|d| ids.contains(&d.0)).collect();
        let done = wanted.iter().filter(|d| d.1 == status).count();
        if done == ids.len() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{done}/{} deployments {status} after {limit:?}: {wanted:?}",
            ids.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn wait_nodes(url: &str, admin: &str, n: u64, limit: Duration) {
    let deadline = Instant::now() + limit;
    while count_nodes(url, admin).await < n {
        assert!(
            Instant::now() < deadline,
            "fewer than {n} nodes registered after {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// No status appears twice in any deployment's history.
fn assert_no_repeated_transition(all: &[(String, String, Option<String>, Vec<String>)]) {
    for (id, _, _, history) in all {
        let mut seen = HashSet::new();
        for s in history {
            assert!(
                seen.insert(s),
                "deployment {id} went {s} twice: {history:?}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thousand_simulated_nodes_from_one_process_run_deployments() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = server_on(dir.path(), "127.0.0.1:0").await;
    let (url, admin) = (
        server.url(),
        server.admin_token.clone().expect("admin token"),
    );
    let env = setup(&url, &admin).await;

    let agent = spawn_local(url.clone(), admin.clone(), "sim", 1000).expect("agent starts");
    wait_nodes(&url, &admin, 1000, Duration::from_secs(120)).await;

    let ids = deploy(&url, &admin, &env, 20).await;
    wait_status(&url, &admin, &ids, "RUNNING", Duration::from_secs(60)).await;

    let all = deployments(&url, &admin).await;
    let nodes: HashSet<_> = all.iter().filter_map(|d| d.2.clone()).collect();
    assert!(nodes.len() > 1, "spread over several nodes: {nodes:?}");
    for (id, _, node, history) in &all {
        let node = node.as_deref().expect("placed");
        assert!(node.starts_with("0x02"), "{id} on a simulated node: {node}");
        assert!(history.iter().any(|s| s == "CREATED"), "{id}: {history:?}");
    }
    assert_no_repeated_transition(&all);
    // A simulated node says so.
    let q = "query($id: ID!) { node(id: $id) { labels { key value } } }";
    let node = nodes.iter().next().expect("a node");
    let data = gql(&url, &admin, q, json!({"id": node})).await;
    assert!(
        data["node"]["labels"]
            .as_array()
            .expect("labels")
            .contains(&json!({"key": "simulated", "value": "true"})),
        "{data}"
    );
    assert!(!agent.is_finished(), "the agent keeps running");
    agent.abort();
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_agent_rides_through_a_server_restart_without_repeating_anything() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = server_on(dir.path(), "127.0.0.1:0").await;
    let addr = server.addr.to_string();
    let (url, admin) = (
        server.url(),
        server.admin_token.clone().expect("admin token"),
    );
    let env = setup(&url, &admin).await;
    let agent = spawn_local(url.clone(), admin.clone(), "sim", 20).expect("agent starts");
    wait_nodes(&url, &admin, 20, Duration::from_secs(30)).await;

    let first = deploy(&url, &admin, &env, 10).await;
    // Stop the server while those are being carried out.
    server.shutdown().await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    let server = server_on(dir.path(), &addr).await;
    assert!(server.admin_token.is_none(), "same data directory");
    wait_status(&url, &admin, &first, "RUNNING", Duration::from_secs(60)).await;

    // After the restart the agent follows new assignments: more runs, and stops.
    let second = deploy(&url, &admin, &env, 5).await;
    let q = "mutation($id: ID!) { stop(deploymentId: $id) { status } }";
    for id in &first[..3] {
        gql(&url, &admin, q, json!({"id": id})).await;
    }
    wait_status(&url, &admin, &second, "RUNNING", Duration::from_secs(60)).await;
    wait_status(
        &url,
        &admin,
        &first[..3],
        "STOPPED",
        Duration::from_secs(60),
    )
    .await;
    wait_status(&url, &admin, &first[3..], "RUNNING", Duration::from_secs(5)).await;

    assert_no_repeated_transition(&deployments(&url, &admin).await);
    assert!(!agent.is_finished(), "the agent keeps running");
    agent.abort();
    server.shutdown().await;
}
