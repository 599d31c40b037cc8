//! The agent process killed with SIGKILL in the middle of a deployment (feature
//! `docker-tests`): a server in-process, `dcloud agent --driver docker` as a child
//! process, killed while the image builds and started again. Afterwards exactly one
//! container exists for the deployment and its history shows no transition twice.
#![cfg(feature = "docker-tests")]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use dcloud::server::{start, ServerConfig};
use serde_json::json;

mod docker_support;

use docker_support::{containers_of, gql, make_sleeper_image, wait_for, SLEEPER};

fn start_agent(url: &str, token: &str, data: &std::path::Path) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_dcloud"))
        .args([
            "agent", "--server", url, "--token", token, "--driver", "docker",
        ])
        .args(["--node-id", "0x00000000cafe", "--heartbeat-interval", "1s"])
        .arg("--data")
        .arg(data)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("dcloud agent starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_agent_killed_mid_deployment_leaves_one_container_and_no_repeated_transition() {
    make_sleeper_image();
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = ServerConfig::new(dir.path().join("server"));
    config.listen = "127.0.0.1:0".parse().expect("addr");
    let server = start(config).await.expect("server starts");
    let (url, admin) = (
        server.url(),
        server.admin_token.clone().expect("admin token"),
    );

    let nonce = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_nanos();
    // A slow build step, so the kill lands while the agent is building.
    let catalog = json!({"os": "busybox", "base-image": SLEEPER,
        "init-steps": [format!("echo kill-test-{nonce}"), "sleep 4"], "specifications": {}});
    let q = "mutation($d: String!) { upsertCatalog(document: $d) { os } }";
    gql(&url, &admin, q, json!({"d": catalog.to_string()})).await;
    let env = json!({"env-name": "kill-job", "version": "1", "os": "busybox", "languages": [],
        "resources": {"ram": "128M", "cpu": "0.25", "gpu": "0", "storage": 1}});
    let q = "mutation($d: String!) { createEnvironment(document: $d) { id } }";
    let env_id = gql(&url, &admin, q, json!({"d": env.to_string()})).await["createEnvironment"]
        ["id"]
        .as_str()
        .expect("id")
        .to_string();

    let agent_data = dir.path().join("agent");
    std::fs::create_dir_all(&agent_data).expect("agent data dir");
    let mut agent = start_agent(&url, &admin, &agent_data);
    let deadline = Instant::now() + Duration::from_secs(60);
    while gql(&url, &admin, "{ counts { nodes } }", json!({})).await["counts"]["nodes"].as_u64()
        != Some(1)
    {
        assert!(Instant::now() < deadline, "the agent never registered");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let q = "mutation($e: String!) { deploy(environment: $e) { id } }";
    let id = gql(&url, &admin, q, json!({"e": env_id})).await["deploy"]["id"]
        .as_str()
        .expect("id")
        .to_string();
    wait_for(&url, &admin, &id, "BUILDING").await;
    agent.kill().expect("SIGKILL the agent");
    agent.wait().expect("reap the agent");

    let mut agent = start_agent(&url, &admin, &agent_data);
    let history = wait_for(&url, &admin, &id, "RUNNING").await;
    let mut seen = std::collections::BTreeSet::new();
    for s in &history {
        assert!(seen.insert(s.clone()), "{s} appears twice in {history:?}");
    }
    // Give a duplicate a chance to appear, then count.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let containers = containers_of(&id);
    assert_eq!(
        containers.lines().count(),
        1,
        "exactly one container for {id}: {containers:?}"
    );

    let q = "query($id: ID!) { deployment(id: $id) { image } }";
    let image = gql(&url, &admin, q, json!({"id": id})).await["deployment"]["image"]
        .as_str()
        .expect("image")
        .to_string();
    let q = "mutation($id: ID!) { stop(deploymentId: $id) { status } }";
    gql(&url, &admin, q, json!({"id": id})).await;
    wait_for(&url, &admin, &id, "STOPPED").await;
    assert_eq!(containers_of(&id), "", "the container is removed");

    agent.kill().expect("stop the agent");
    agent.wait().expect("reap the agent");
    server.shutdown().await;
    let _ = Command::new("docker").args(["rmi", "-f", &image]).output();
}
