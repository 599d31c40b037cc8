//! A real full disk (a small tmpfs): below the reserve the server refuses writes with
//! `STORAGE_FULL`, keeps serving reads and says so in `/readyz` and `/metrics`; a
//! restart while still full starts read-only; freeing space brings writes back. A disk
//! that fills past the reserve anyway fails the append: fail-stop, nothing
//! acknowledged is lost, and the restart comes up read-only.
//!
//! Needs root (mount) and fails loudly without it.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use dcloud::server::{start, Server, ServerConfig};
use serde_json::{json, Value};

const MIB: u64 = 1024 * 1024;
const RESERVE: u64 = 8 * MIB;

/// A tmpfs of `size_mib` MiB, unmounted on drop.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size_mib: u64) -> Tmpfs {
        let dir = tempfile::tempdir().expect("mount point");
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size_mib}m"), "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("running mount");
        assert!(
            status.success(),
            "mounting a tmpfs failed (needs root): {status}"
        );
        Tmpfs { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

/// Writes zeros to `path` until the disk has less than `leave` bytes free, or is full.
fn fill(path: &Path, server: &Server, leave: u64) {
    let mut f = std::fs::File::create(path).expect("ballast");
    let chunk = vec![0u8; 256 * 1024];
    loop {
        if server.app().storage().status().free_bytes < leave {
            break;
        }
        if f.write_all(&chunk).and_then(|()| f.sync_all()).is_err() {
            break; // the disk is full
        }
    }
}

async fn gql(url: &str, token: &str, query: &str, variables: Value) -> Value {
    reqwest::Client::new()
        .post(format!("{url}/graphql"))
        .bearer_auth(token)
        .json(&json!({ "query": query, "variables": variables }))
        .send()
        .await
        .expect("server answers")
        .json()
        .await
        .expect("json body")
}

async fn get(url: &str, path: &str) -> (u16, String) {
    let r = reqwest::get(format!("{url}{path}")).await.expect("answer");
    (r.status().as_u16(), r.text().await.expect("body"))
}

const CREATE: &str = "mutation($n: String!) { createToken(role: USER, name: $n) { id } }";
const READ: &str = "{ tokens { name } }";

fn created(v: &Value) -> bool {
    v["data"]["createToken"]["id"].is_string()
}

fn code(v: &Value) -> String {
    v["errors"][0]["extensions"]["code"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn config(data: &Path, reserve: u64) -> ServerConfig {
    let mut c = ServerConfig::new(data);
    c.listen = "127.0.0.1:0".parse().expect("addr");
    c.storage_reserve_bytes = reserve;
    c
}

fn token_names(v: &Value) -> Vec<String> {
    v["data"]["tokens"]
        .as_array()
        .unwrap_or_else(|| panic!("tokens: {v}"))
        .iter()
        .map(|t| t["name"].as_str().expect("name").to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn below_the_reserve_writes_are_refused_reads_go_on_and_come_back() {
    let fs = Tmpfs::mount(48);
    let data: PathBuf = fs.path().join("data");
    let server = start(config(&data, RESERVE)).await.expect("start");
    let admin = server.admin_token.clone().expect("admin token");
    let url = server.url();
    assert!(created(
        &gql(&url, &admin, CREATE, json!({"n": "before"})).await
    ));
    let (_, metrics) = get(&url, "/metrics").await;
    assert!(metrics.contains("dcloud_storage_full 0"), "{metrics}");

    fill(&fs.path().join("ballast"), &server, RESERVE * 2);
    let (_, metrics) = get(&url, "/metrics").await;
    assert!(
        metrics.contains("dcloud_storage_low 1") && metrics.contains("dcloud_storage_full 0"),
        "a warning before the disk fills: {metrics}"
    );
    fill(&fs.path().join("ballast2"), &server, RESERVE / 2);

    let refused = gql(&url, &admin, CREATE, json!({"n": "while-full"})).await;
    assert_eq!(code(&refused), "STORAGE_FULL", "{refused}");
    let read = gql(&url, &admin, READ, json!({})).await;
    assert!(token_names(&read).contains(&"before".to_string()), "{read}");
    let (status, ready) = get(&url, "/readyz").await;
    assert_eq!(status, 200, "{ready}");
    assert!(
        ready.contains("read-only") && ready.contains("storage full"),
        "{ready}"
    );
    let (_, metrics) = get(&url, "/metrics").await;
    assert!(metrics.contains("dcloud_storage_full 1"), "{metrics}");

    // A restart while still full comes up, serves reads and refuses writes.
    server.shutdown().await;
    let server = start(config(&data, RESERVE))
        .await
        .expect("restart while full");
    let url = server.url();
    let read = gql(&url, &admin, READ, json!({})).await;
    assert!(token_names(&read).contains(&"before".to_string()), "{read}");
    let refused = gql(&url, &admin, CREATE, json!({"n": "still-full"})).await;
    assert_eq!(code(&refused), "STORAGE_FULL", "{refused}");

    // Space is back: writes are taken again.
    std::fs::remove_file(fs.path().join("ballast2")).expect("free space");
    std::fs::remove_file(fs.path().join("ballast")).expect("free space");
    assert!(created(
        &gql(&url, &admin, CREATE, json!({"n": "after"})).await
    ));
    let (status, ready) = get(&url, "/readyz").await;
    assert_eq!((status, ready.as_str()), (200, "ready\n"));
    let names = token_names(&gql(&url, &admin, READ, json!({})).await);
    assert!(
        !names.contains(&"while-full".to_string()) && !names.contains(&"still-full".to_string())
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disk_that_fills_anyway_is_fail_stop_and_loses_nothing() {
    let fs = Tmpfs::mount(48);
    let data: PathBuf = fs.path().join("data");
    // No reserve: the append itself meets the full disk.
    let server = start(config(&data, 0)).await.expect("start");
    let admin = server.admin_token.clone().expect("admin token");
    let url = server.url();
    fill(&fs.path().join("ballast"), &server, 0);
    let mut acked = Vec::new();
    let mut failed = None;
    for i in 0..5000 {
        let name = format!("t{i}");
        let v = gql(&url, &admin, CREATE, json!({"n": name})).await;
        if created(&v) {
            acked.push(name);
        } else {
            failed = Some(v);
            break;
        }
    }
    let failed = failed.expect("the full disk fails an append");
    assert_eq!(code(&failed), "INTERNAL", "{failed}");
    let stopped = server
        .wait()
        .await
        .expect_err("fail-stop: the server stops");
    assert!(
        format!("{stopped:#}").contains("writer stopped"),
        "{stopped:#}"
    );

    // The restart, with a reserve, on the still-full disk: read-only, nothing lost.
    let server = start(config(&data, RESERVE))
        .await
        .expect("restart on a full disk");
    let url = server.url();
    let names = token_names(&gql(&url, &admin, READ, json!({})).await);
    for name in &acked {
        assert!(names.contains(name), "acknowledged token {name} lost");
    }
    let refused = gql(&url, &admin, CREATE, json!({"n": "x"})).await;
    assert_eq!(code(&refused), "STORAGE_FULL", "{refused}");
    std::fs::remove_file(fs.path().join("ballast")).expect("free space");
    assert!(created(
        &gql(&url, &admin, CREATE, json!({"n": "after"})).await
    ));
    server.shutdown().await;
}
