//! A notebook that starts (feature `docker-tests`, issues #11 and #17): a library
//! catalog declares how Jupyter starts and is reached (command, port, an HTTP
//! readiness check, a per-deployment token); on the real engine the deployment is
//! `running` only once Jupyter answers, the URL `dcloud status` prints opens the
//! notebook for its owner (with the token) and the notebook refuses requests without
//! it; an auditor is shown the URL without the token; a service whose command exits is
//! `exited` with its code and never `running`.
//!
//! Needs the image `dcloud-test/jupyter:latest` (scripts/make-jupyter-image.sh; CI
//! makes it).
#![cfg(feature = "docker-tests")]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use dcloud::server::{start, ServerConfig};
use serde_json::{json, Value};

mod docker_support;

use docker_support::{containers_of, gql, wait_for};

const JUPYTER: &str = "dcloud-test/jupyter:latest";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

struct Agent(Child);

/// `dcloud agent --driver docker` keeping its node id in `state`.
fn start_agent(url: &str, admin: &str, state: &std::path::Path) -> Agent {
    Agent(
        Command::new(env!("CARGO_BIN_EXE_dcloud"))
            .args(["agent", "--server", url, "--token", admin])
            .args(["--driver", "docker", "--heartbeat-interval", "500ms"])
            .args(["--address", "127.0.0.1", "--state-dir"])
            .arg(state)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("dcloud agent starts"),
    )
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
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

/// A catalog for os `lab` on the Jupyter image: `jupyter-notebook` serves the notebook
/// (token in JUPYTER_TOKEN, ready when `/api` answers); `quitter` exits at once.
fn catalog() -> String {
    json!({
        "os": "lab",
        "base-image": JUPYTER,
        "init-steps": ["true"],
        "specifications": {"python": {"installation-steps": [],
            "libraries": {"jupyter-notebook": ["true"], "quitter": ["true"],
                "slowpoke": ["true"]}}},
        "services": {
            "jupyter-notebook": {
                "command": ["jupyter-notebook", "--ip=0.0.0.0", "--port=8888",
                    "--no-browser", "--allow-root"],
                "port": 8888, "ready": "http:/api", "token-env": "JUPYTER_TOKEN",
                "open": "/tree"
            },
            "quitter": {
                "command": ["sh", "-c", "echo giving up; exit 3"],
                "port": 9999, "ready": "tcp"
            },
            "slowpoke": {"command": ["sleep", "3600"], "port": 9999, "ready": "tcp"}
        }
    })
    .to_string()
}

fn environment(name: &str, library: &str, port: u16, internal: u16) -> String {
    json!({"env-name": name, "version": "1", "os": "lab",
        "languages": [{"language-name": "python", "libraries": [library]}],
        "resources": {"ram": "512M", "cpu": "1", "gpu": "0", "storage": 1},
        "port-publish": [{"external": {"ports": port.to_string()},
            "internal": {"ports": internal.to_string(), "protocol": "tcp"}}]})
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_notebook_template_serves_jupyter_at_its_url_for_its_owner() {
    let present = Command::new("docker")
        .args(["image", "inspect", JUPYTER])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("the docker CLI runs");
    assert!(
        present.success(),
        "{JUPYTER} is missing: run scripts/make-jupyter-image.sh"
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = ServerConfig::new(dir.path().join("server"));
    config.listen = "127.0.0.1:0".parse().expect("addr");
    let server = start(config).await.expect("server starts");
    let url = server.url();
    let admin = server.admin_token.clone().expect("admin token");
    let state = dir.path().join("agent");
    let mut agent = start_agent(&url, &admin, &state);
    let deadline = Instant::now() + Duration::from_secs(60);
    while gql(&url, &admin, "{ counts { nodes } }", json!({})).await["counts"]["nodes"] != json!(1)
    {
        assert!(Instant::now() < deadline, "the agent never registered");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let apply = "mutation($d: String!) { apply(document: $d) { documents { id } } }";
    gql(&url, &admin, apply, json!({"d": catalog()})).await;
    let token = |role: &str, name: &str| {
        let q = "mutation($r: Role!, $n: String!) { createToken(role: $r, name: $n) { token } }";
        let (url, admin) = (url.clone(), admin.clone());
        let (role, name) = (role.to_string(), name.to_string());
        async move {
            gql(&url, &admin, q, json!({"r": role, "n": name})).await["createToken"]["token"]
                .as_str()
                .expect("token")
                .to_string()
        }
    };
    let alice = token("USER", "alice").await;
    let auditor = token("AUDITOR", "audrey").await;

    // Alice's notebook: running means Jupyter answers.
    let port = free_port();
    let env = gql(
        &url,
        &alice,
        apply,
        json!({"d": environment("notebook", "jupyter-notebook", port, 8888)}),
    )
    .await["apply"]["documents"][0]["id"]
        .as_str()
        .expect("env id")
        .to_string();
    let deploy = "mutation($e: String!) { deploy(environment: $e) { id } }";
    let id = gql(&url, &alice, deploy, json!({"e": env})).await["deploy"]["id"]
        .as_str()
        .expect("id")
        .to_string();
    wait_for(&url, &admin, &id, "RUNNING").await;

    let d: Value = serde_json::from_str(&cli(&url, &alice, &["status", &id, "--output", "json"]))
        .expect("status json");
    let e = &d["endpoints"][0];
    assert_eq!(e["name"], "jupyter-notebook", "{d}");
    let open = e["url"].as_str().expect("url").to_string();
    let prefix = format!("http://127.0.0.1:{port}/tree?token=");
    assert!(open.starts_with(&prefix), "{open}");
    let secret = &open[prefix.len()..];
    assert_eq!(secret.len(), 32, "{open}");
    // Ready as soon as it is running: no retry.
    let r = reqwest::get(&open).await.expect("the notebook answers");
    assert_eq!(r.status(), 200, "{open}");
    let page = r.text().await.expect("body");
    assert!(page.contains("Jupyter"), "{page}");
    // The token is the deployment's: the notebook refuses requests without it.
    let contents = format!("http://127.0.0.1:{port}/api/contents");
    assert_eq!(
        reqwest::get(&contents).await.expect("answers").status(),
        403
    );
    let with = format!("{contents}?token={secret}");
    assert_eq!(reqwest::get(&with).await.expect("answers").status(), 200);
    // It is not in the log.
    let q = "{ events(first: 1000) { nodes { payload } } }";
    let log = gql(&url, &admin, q, json!({})).await.to_string();
    assert!(!log.contains(secret), "the token is in the event log");
    // The auditor sees where the notebook is, not how to get in; the admin may enter.
    let seen: Value =
        serde_json::from_str(&cli(&url, &auditor, &["status", &id, "--output", "json"]))
            .expect("status json");
    assert_eq!(
        seen["endpoints"][0]["url"],
        format!("http://127.0.0.1:{port}/tree").as_str()
    );
    let by_admin: Value =
        serde_json::from_str(&cli(&url, &admin, &["status", &id, "--output", "json"]))
            .expect("status json");
    assert_eq!(by_admin["endpoints"][0]["url"], open.as_str());

    // A service whose command exits: exited with its code and output, never running.
    let env = gql(
        &url,
        &alice,
        apply,
        json!({"d": environment("quitter", "quitter", free_port(), 9999)}),
    )
    .await["apply"]["documents"][0]["id"]
        .as_str()
        .expect("env id")
        .to_string();
    let quit = gql(&url, &alice, deploy, json!({"e": env})).await["deploy"]["id"]
        .as_str()
        .expect("id")
        .to_string();
    let history = wait_for(&url, &admin, &quit, "EXITED").await;
    assert!(!history.iter().any(|s| s == "RUNNING"), "{history:?}");
    let q = "query($id: ID!) { deployment(id: $id) { exitCode lastOutput } }";
    let d = gql(&url, &admin, q, json!({"id": quit})).await["deployment"].clone();
    assert_eq!(d["exitCode"], 3, "{d}");
    assert!(
        d["lastOutput"].as_str().unwrap_or("").contains("giving up"),
        "{d}"
    );

    // A service that never gets ready: its container runs, the deployment is not
    // RUNNING, not even after the agent restarts and its reconcile finds the container
    // running; once the service listens, it is.
    let env = gql(
        &url,
        &alice,
        apply,
        json!({"d": environment("slowpoke", "slowpoke", free_port(), 9999)}),
    )
    .await["apply"]["documents"][0]["id"]
        .as_str()
        .expect("env id")
        .to_string();
    let slow = gql(&url, &alice, deploy, json!({"e": env})).await["deploy"]["id"]
        .as_str()
        .expect("id")
        .to_string();
    wait_for(&url, &admin, &slow, "CREATED").await;
    let container = containers_of(&slow).trim().to_string();
    let running = |c: &str| {
        let out = Command::new("docker")
            .args(["inspect", "-f", "{{.State.Running}}", c])
            .output()
            .expect("docker inspect");
        String::from_utf8_lossy(&out.stdout).trim() == "true"
    };
    assert!(
        running(&container),
        "the container of {slow} is not running"
    );
    drop(agent);
    agent = start_agent(&url, &admin, &state);
    // The restarted agent has reconciled once it reports its node again.
    let q = "query($id: ID!) { deployment(id: $id) { nodeId } }";
    let node = gql(&url, &admin, q, json!({"id": slow})).await["deployment"]["nodeId"].clone();
    let seen = |v: &Value| v["node"]["lastSeenMs"].as_i64().unwrap_or(0);
    let q = "query($n: ID!) { node(id: $n) { lastSeenMs } }";
    let before = seen(&gql(&url, &admin, q, json!({"n": node})).await);
    let deadline = Instant::now() + Duration::from_secs(60);
    while seen(&gql(&url, &admin, q, json!({"n": node})).await) <= before {
        assert!(
            Instant::now() < deadline,
            "the restarted agent never came back"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (status, history) = docker_support::status_of(&url, &admin, &slow).await;
    assert_eq!(status, "CREATED", "{history:?}");
    assert_eq!(
        containers_of(&slow).trim(),
        container,
        "the container was replaced"
    );
    assert!(running(&container), "the container stopped");
    let listen = Command::new("docker")
        .args([
            "exec",
            "-d",
            &container,
            "python3",
            "-m",
            "http.server",
            "9999",
        ])
        .status()
        .expect("docker exec");
    assert!(listen.success());
    wait_for(&url, &admin, &slow, "RUNNING").await;

    let stop = "mutation($id: ID!) { stop(deploymentId: $id) { status } }";
    for dep in [&id, &quit, &slow] {
        gql(&url, &admin, stop, json!({"id": dep})).await;
    }
    for dep in [&id, &quit, &slow] {
        wait_for(&url, &admin, dep, "STOPPED").await;
        let deadline = Instant::now() + Duration::from_secs(30);
        while !containers_of(dep).is_empty() {
            assert!(Instant::now() < deadline, "a container is left for {dep}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    drop(agent);
    server.shutdown().await;
}
