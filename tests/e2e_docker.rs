//! End to end with real processes on the real Docker engine (feature `docker-tests`):
//! `dcloud server` and `dcloud agent --driver docker` as child processes, driven by the
//! CLI. `apply` the example environment, `deploy --watch` follows scheduled → building
//! → running over the websocket, `stop` ends it; then the server is SIGKILLed in the
//! middle of a second deployment and restarted on the same data: the state comes back
//! from the log, the agent reconnects and resumes, the deployment reaches running with
//! no transition lost or repeated, and `audit verify` passes on the log.
#![cfg(feature = "docker-tests")]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

mod docker_support;

use docker_support::{make_sleeper_image, SLEEPER};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// Starts `dcloud server` and returns it with the admin token it printed (first start)
/// or read from the data directory (restart).
fn start_server(data: &Path, port: u16) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_dcloud"))
        .args(["server", "--listen", &format!("127.0.0.1:{port}")])
        .arg("--data")
        .arg(data)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("dcloud server starts");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let first = lines.next().expect("a line").expect("utf-8");
    assert!(first.starts_with("dcloud server listening on"), "{first}");
    std::thread::spawn(move || for _ in lines.by_ref() {});
    let token = std::fs::read_to_string(data.join("admin.token"))
        .expect("admin.token")
        .trim()
        .to_string();
    (child, token)
}

fn cli(url: &str, token: &str, args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_dcloud"))
        .args(["--server", url, "--token", token])
        .args(args)
        .output()
        .expect("dcloud runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

fn deployment(url: &str, token: &str, id: &str) -> Option<Value> {
    let (code, out) = cli(url, token, &["status", id, "--output", "json"]);
    if code != 0 {
        return None;
    }
    serde_json::from_str(&out).ok()
}

fn history(d: &Value) -> Vec<String> {
    d["history"].as_array().map_or(vec![], |h| {
        h.iter()
            .map(|e| e["status"].as_str().unwrap_or("").to_lowercase())
            .collect()
    })
}

fn wait_status(url: &str, token: &str, id: &str, status: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(d) = deployment(url, token, id) {
            if d["status"].as_str().map(str::to_lowercase).as_deref() == Some(status) {
                return d;
            }
        }
        assert!(Instant::now() < deadline, "{id} never reached {status}");
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn assert_no_repeat(h: &[String]) {
    let mut seen = std::collections::BTreeSet::new();
    for s in h {
        assert!(seen.insert(s.clone()), "{s} twice in {h:?}");
    }
}

#[test]
fn server_agent_and_cli_end_to_end_with_a_server_crash() {
    make_sleeper_image();
    let tmp = tempfile::tempdir().expect("tmp");
    let data = tmp.path().join("data");
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let (mut server, admin) = start_server(&data, port);

    // A catalog for the example's os and libraries, on the locally made base image;
    // `pandas` takes a few seconds to "install" so a crash can land mid-build.
    let nonce = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_nanos();
    let catalog = json!({"os": "ubuntu", "base-image": SLEEPER, "init-steps": [format!("echo e2e-{nonce}")],
        "specifications": {"python": {"installation-steps": ["echo python"], "libraries": {
            "numpy": ["echo numpy"], "jupyter-notebook": ["echo notebook"], "pandas": ["sleep 5"]}}}});
    let catalog_file = tmp.path().join("catalog.json");
    std::fs::write(&catalog_file, catalog.to_string()).expect("write");
    let (code, out) = cli(
        &url,
        &admin,
        &["apply", "-f", catalog_file.to_str().expect("utf-8")],
    );
    assert_eq!(code, 0, "{out}");
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/cli/environment.yaml");
    let (code, out) = cli(
        &url,
        &admin,
        &["apply", "-f", example.to_str().expect("utf-8")],
    );
    assert_eq!(code, 0, "{out}");

    let agent_data = tmp.path().join("agent");
    std::fs::create_dir_all(&agent_data).expect("agent dir");
    let mut agent = Command::new(env!("CARGO_BIN_EXE_dcloud"))
        .args([
            "agent",
            "--server",
            &url,
            "--token",
            &admin,
            "--driver",
            "docker",
            "--node-id",
            "0x0000e2e0e2e0",
        ])
        .args(["--heartbeat-interval", "1s"])
        .arg("--data")
        .arg(&agent_data)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("agent starts");

    // deploy --watch: live over the websocket until running.
    let (code, out) = cli(&url, &admin, &["deploy", "notebook-small", "--watch"]);
    assert_eq!(code, 0, "deploy --watch ends at running: {out}");
    let statuses: Vec<&str> = out
        .lines()
        .filter_map(|l| l.strip_prefix("status: "))
        .collect();
    let pos = |s: &str| {
        statuses
            .iter()
            .position(|x| x.starts_with(s))
            .unwrap_or_else(|| panic!("{s} in {out}"))
    };
    assert!(
        pos("scheduled") < pos("building") && pos("building") < pos("running"),
        "{out}"
    );
    let id = out
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .expect("deployment id")
        .to_string();

    let (code, out) = cli(&url, &admin, &["stop", &id]);
    assert_eq!(code, 0, "{out}");
    let d = wait_status(&url, &admin, &id, "stopped");
    assert_no_repeat(&history(&d));

    // A second environment whose build takes a while; crash the server mid-build.
    let env2 = json!({"env-name": "notebook-slow", "version": "1", "os": "ubuntu",
        "languages": [{"language-name": "python", "libraries": ["numpy", "pandas"]}],
        "resources": {"ram": "256M", "cpu": "0.5", "gpu": "0", "storage": 1}});
    let env2_file = tmp.path().join("env2.json");
    std::fs::write(&env2_file, env2.to_string()).expect("write");
    let (code, out) = cli(
        &url,
        &admin,
        &["apply", "-f", env2_file.to_str().expect("utf-8")],
    );
    assert_eq!(code, 0, "{out}");
    let (code, out) = cli(
        &url,
        &admin,
        &["deploy", "notebook-slow", "--output", "json"],
    );
    assert_eq!(code, 0, "{out}");
    let id2 = serde_json::from_str::<Value>(&out).expect("json")["id"]
        .as_str()
        .expect("id")
        .to_string();
    wait_status(&url, &admin, &id2, "building");
    server.kill().expect("SIGKILL the server");
    server.wait().expect("reap");

    let (mut server, token_again) = start_server(&data, port);
    assert_eq!(token_again, admin, "a restart makes no new admin token");
    let d = wait_status(&url, &admin, &id2, "running");
    let h = history(&d);
    assert_no_repeat(&h);
    for s in ["pending", "scheduled", "building", "created", "running"] {
        assert!(h.iter().any(|x| x == s), "{s} lost from {h:?}");
    }
    let first = deployment(&url, &admin, &id).expect("first deployment recovered");
    assert_eq!(
        first["status"].as_str().map(str::to_lowercase).as_deref(),
        Some("stopped")
    );

    let (code, out) = cli(&url, &admin, &["stop", &id2]);
    assert_eq!(code, 0, "{out}");
    wait_status(&url, &admin, &id2, "stopped");
    let image = d["image"].as_str().unwrap_or_default().to_string();

    agent.kill().expect("stop agent");
    agent.wait().expect("reap");
    server.kill().expect("stop server");
    server.wait().expect("reap");
    let out = Command::new(env!("CARGO_BIN_EXE_dcloud"))
        .args(["audit", "verify", "--data"])
        .arg(&data)
        .output()
        .expect("audit");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    if !image.is_empty() {
        let _ = Command::new("docker").args(["rmi", "-f", &image]).output();
    }
}
