//! End-to-end test of the agent with the real Docker driver (feature `docker-tests`):
//! a server in-process, the agent in the same process, an environment built from the
//! local busybox image deployed to running, then stopped and removed.
#![cfg(feature = "docker-tests")]

use std::process::Command;
use std::time::{Duration, Instant};

use dcloud::agent_cmd::spawn_local;
use dcloud::server::{start, ServerConfig};
use serde_json::json;

mod docker_support;

use docker_support::{containers_of, gql, make_sleeper_image, wait_for, SLEEPER};
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_docker_agent_runs_and_stops_an_environment() {
    make_sleeper_image();
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = ServerConfig::new(dir.path());
    config.listen = "127.0.0.1:0".parse().expect("addr");
    let server = start(config).await.expect("server starts");
    let (url, admin) = (
        server.url(),
        server.admin_token.clone().expect("admin token"),
    );

    // A step unique to this run, so the recipe hash is new and the image is really
    // built (an image left by an earlier run would be reused and skip BUILDING).
    let nonce = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_nanos();
    let catalog = json!({"os": "busybox", "base-image": SLEEPER,
        "init-steps": [format!("echo dcloud-agent-test-{nonce}")], "specifications": {}});
    let q = "mutation($d: String!) { upsertCatalog(document: $d) { os } }";
    gql(&url, &admin, q, json!({"d": catalog.to_string()})).await;
    let env = json!({"env-name": "docker-job", "version": "1", "os": "busybox", "languages": [],
        "resources": {"ram": "256M", "cpu": "0.5", "gpu": "0", "storage": 1}});
    let q = "mutation($d: String!) { createEnvironment(document: $d) { id } }";
    let env_id = gql(&url, &admin, q, json!({"d": env.to_string()})).await["createEnvironment"]
        ["id"]
        .as_str()
        .expect("id")
        .to_string();

    let agent = spawn_local(url.clone(), admin.clone(), "docker", 1).expect("agent starts");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let n = gql(&url, &admin, "{ counts { nodes } }", json!({})).await["counts"]["nodes"]
            .as_u64()
            .unwrap_or(0);
        if n == 1 {
            break;
        }
        if agent.is_finished() {
            let why = agent.await.expect("agent task").err();
            panic!("the agent stopped: {why:?}");
        }
        assert!(
            Instant::now() < deadline,
            "the docker node never registered"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let q = "mutation($e: String!) { deploy(environment: $e) { id } }";
    let id = gql(&url, &admin, q, json!({"e": env_id})).await["deploy"]["id"]
        .as_str()
        .expect("id")
        .to_string();
    let history = wait_for(&url, &admin, &id, "RUNNING").await;
    let q = "query($id: ID!) { deployment(id: $id) { image imageCached } }";
    let d = gql(&url, &admin, q, json!({"id": id})).await["deployment"].clone();
    let image = d["image"].as_str().expect("image tag").to_string();
    assert_eq!(
        d["imageCached"], false,
        "a fresh recipe is built, not reused"
    );
    for s in ["BUILDING", "CREATED", "RUNNING"] {
        assert!(history.iter().any(|h| h == s), "{s} in {history:?}");
    }
    assert!(!containers_of(&id).is_empty(), "a container runs for {id}");

    let q = "mutation($id: ID!) { stop(deploymentId: $id) { status } }";
    gql(&url, &admin, q, json!({"id": id})).await;
    let history = wait_for(&url, &admin, &id, "STOPPED").await;
    assert!(history.iter().any(|h| h == "STOPPING"), "{history:?}");
    assert_eq!(containers_of(&id), "", "the container is removed");

    agent.abort();
    server.shutdown().await;
    let _ = Command::new("docker").args(["rmi", "-f", &image]).output();
}
