//! Helpers shared by the Docker end-to-end tests: the long-running base image, GraphQL
//! calls, waiting for a deployment's status, and listing its containers.
// Each test crate uses a different subset of these helpers.
#![allow(dead_code)]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// A base image whose default command keeps running (the test image's `sh` exits).
pub(crate) const SLEEPER: &str = "dcloud-test/busybox-sleep:latest";

pub(crate) fn make_sleeper_image() {
    let mut child = Command::new("docker")
        .args(["build", "-q", "-t", SLEEPER, "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("the docker CLI runs (docker-tests need a docker engine)");
    use std::io::Write;
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"FROM dcloud-test/busybox:latest\nCMD [\"sleep\", \"3600\"]\n")
        .expect("write the dockerfile");
    let status = child.wait().expect("docker build ends");
    assert!(
        status.success(),
        "building {SLEEPER} failed: run scripts/make-test-images.sh first"
    );
}

pub(crate) async fn gql(url: &str, token: &str, query: &str, variables: Value) -> Value {
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

pub(crate) async fn status_of(url: &str, admin: &str, id: &str) -> (String, Vec<String>) {
    let q = "query($id: ID!) { deployment(id: $id) { status history { status } } }";
    let d = gql(url, admin, q, json!({"id": id})).await["deployment"].clone();
    let history = d["history"]
        .as_array()
        .expect("history")
        .iter()
        .map(|h| h["status"].as_str().unwrap_or("").to_string())
        .collect();
    (d["status"].as_str().unwrap_or("").to_string(), history)
}

pub(crate) async fn wait_for(url: &str, admin: &str, id: &str, status: &str) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (now, history) = status_of(url, admin, id).await;
        if now == status {
            return history;
        }
        assert!(
            Instant::now() < deadline,
            "{id} is {now}, not {status}: {history:?}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

pub(crate) fn containers_of(id: &str) -> String {
    let out = Command::new("docker")
        .args([
            "ps",
            "-a",
            "-q",
            "--filter",
            &format!("label=dcloud.deployment={id}"),
        ])
        .output()
        .expect("docker ps");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}
