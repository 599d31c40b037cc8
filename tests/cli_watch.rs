//! End-to-end: `deploy --watch`, `status ID --watch`, `nodes` and `events --follow`
//! against a real server, with nodes registered and reports sent the way an agent
//! does (over GraphQL with an agent token).

mod cli_support;

use std::io::{BufRead, BufReader};
use std::process::Child;
use std::sync::mpsc::{channel, Receiver};
use std::time::Duration;

use cli_support::{seed, TestServer};
use serde_json::{json, Value};

const REGISTER: &str = "mutation($id: ID!, $fp: FingerprintInput!) {
  registerNode(nodeId: $id, fingerprint: $fp) { id state }
}";

const REPORT: &str = "mutation($id: ID!, $r: ReportInput!) {
  reportStatus(deploymentId: $id, report: $r) { status }
}";

/// Registers node `id` with `cpu` millicores and `gib` GiB of memory, as its agent;
/// returns the agent's token.
fn register(server: &TestServer, id: &str, cpu: u64, gib: u64) -> String {
    let run = server.admin(&[
        "token", "create", "--role", "agent", "--name", id, "--node", id, "--output", "json",
    ]);
    let token = run.ok().json()["token"]
        .as_str()
        .expect("token")
        .to_string();
    let fp = json!({
        "hostname": format!("host-{id}"), "os": "linux", "agentVersion": "test",
        "capacity": {"cpuMillis": cpu, "memoryBytes": gib << 30, "gpus": 0, "storageBytes": 100u64 << 30},
    });
    let answer = server.graphql(&token, REGISTER, json!({"id": id, "fp": fp}));
    assert_eq!(answer["data"]["registerNode"]["state"], "READY", "{answer}");
    token
}

/// The child's stdout, line by line, on a channel.
fn lines(child: &mut Child) -> Receiver<String> {
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Waits (up to 20 s) for a line matching `pred`; returns it, with everything seen.
fn wait_for(rx: &Receiver<String>, seen: &mut Vec<String>, pred: impl Fn(&str) -> bool) -> String {
    loop {
        match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(line) => {
                seen.push(line.clone());
                if pred(&line) {
                    return line;
                }
            }
            Err(e) => panic!("no matching line ({e}); seen:\n{}", seen.join("\n")),
        }
    }
}

/// Waits (up to 20 s) for the child to exit; its exit code. It must have followed
/// over the websocket (no fallback to polling).
fn exit_code(child: &mut Child) -> Option<i32> {
    for _ in 0..200 {
        if let Some(status) = child.try_wait().expect("try_wait") {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                std::io::Read::read_to_string(&mut e, &mut err).expect("stderr");
            }
            assert!(!err.contains("polling"), "{err}");
            return status.code();
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    panic!("the command did not exit");
}

#[test]
fn deploy_watch_prints_pending_reasons_then_exits_1_when_stopped() {
    let server = TestServer::start();
    seed(&server);
    register(&server, "0x0000000000a1", 1000, 1);

    let nodes = server.admin(&["nodes"]);
    nodes.ok();
    let row = nodes
        .stdout
        .lines()
        .find(|l| l.starts_with("0x0000000000a1"))
        .unwrap_or_else(|| panic!("{}", nodes.stdout));
    assert!(
        row.contains("host-0x0000000000a1") && row.contains("ready"),
        "{row}"
    );
    assert!(row.contains("0/1") && row.contains("0/1Gi"), "{row}");
    let json = server.admin(&["nodes", "--output", "json"]).ok().json();
    assert_eq!(json[0]["capacity"]["cpuMillis"], 1000);

    // vision-train asks for 4G and a GPU: it fits nowhere.
    let mut watch = server.spawn(&server.admin, &["deploy", "vision-train", "--watch"]);
    let rx = lines(&mut watch);
    let mut seen = Vec::new();
    let head = wait_for(&rx, &mut seen, |l| l.starts_with("deployment "));
    let id = head.split_whitespace().nth(1).expect("id").to_string();
    let reasons = wait_for(&rx, &mut seen, |l| l.starts_with("pending: "));
    assert!(reasons.contains("(1 node)"), "{reasons}");
    assert!(seen.iter().any(|l| l == "status: pending"), "{seen:?}");

    let mut status_watch = server.spawn(&server.admin, &["status", &id, "--watch"]);
    let status_rx = lines(&mut status_watch);
    let mut status_seen = Vec::new();
    wait_for(&status_rx, &mut status_seen, |l| l.trim() == "history:");

    server.admin(&["stop", &id]).ok();
    wait_for(&rx, &mut seen, |l| l == "status: stopped");
    assert_eq!(exit_code(&mut watch), Some(1), "{seen:?}");
    wait_for(&status_rx, &mut status_seen, |l| l == "status: stopped");
    assert_eq!(exit_code(&mut status_watch), Some(0), "{status_seen:?}");
}

#[test]
fn deploy_watch_follows_build_progress_to_running_and_exits_0() {
    let server = TestServer::start();
    seed(&server);
    let agent = register(&server, "0x0000000000b2", 8000, 16);

    let mut watch = server.spawn(&server.admin, &["deploy", "notebook-small", "--watch"]);
    let rx = lines(&mut watch);
    let mut seen = Vec::new();
    let head = wait_for(&rx, &mut seen, |l| l.starts_with("deployment "));
    let id = head.split_whitespace().nth(1).expect("id").to_string();
    wait_for(&rx, &mut seen, |l| l == "status: scheduled");

    let d = server
        .admin(&["status", &id, "--output", "json"])
        .ok()
        .json();
    assert_eq!(d["node"], "0x0000000000b2");
    assert!(d["placement"]["candidates"].as_i64() >= Some(1), "{d}");
    let image = d["image"].as_str().expect("an image tag").to_string();
    let reports = [
        json!({"kind": "BUILD_STARTED", "image": image, "steps": 2}),
        json!({"kind": "BUILD_PROGRESS", "step": 1, "steps": 2}),
        json!({"kind": "BUILD_PROGRESS", "step": 2, "steps": 2}),
        json!({"kind": "IMAGE_READY", "image": image}),
        json!({"kind": "CONTAINER_CREATED", "containerId": "c0ffee"}),
        json!({"kind": "CONTAINER_STARTED"}),
    ];
    for r in reports {
        let answer: Value = server.graphql(&agent, REPORT, json!({"id": id, "r": r}));
        assert!(answer.get("errors").is_none(), "{answer}");
    }
    wait_for(&rx, &mut seen, |l| l == "build: step 1/2");
    wait_for(&rx, &mut seen, |l| l == "status: running");
    assert_eq!(exit_code(&mut watch), Some(0), "{seen:?}");
    let order: Vec<&String> = seen.iter().filter(|l| l.starts_with("status: ")).collect();
    assert_eq!(
        order,
        [
            "status: pending",
            "status: scheduled",
            "status: building",
            "status: created",
            "status: running"
        ]
        .iter()
        .map(|s| s.to_string())
        .collect::<Vec<_>>()
        .iter()
        .collect::<Vec<_>>(),
    );
}

#[test]
fn events_follow_prints_new_events_as_they_are_appended() {
    let server = TestServer::start();
    seed(&server);
    let mut follow = server.spawn(
        &server.admin,
        &[
            "events",
            "--follow",
            "--type",
            "DeploymentRequested",
            "--output",
            "json",
        ],
    );
    let rx = lines(&mut follow);
    // Let the subscription open, then deploy twice.
    std::thread::sleep(Duration::from_millis(500));
    let first = server
        .admin(&["deploy", "notebook-small", "--output", "json"])
        .ok()
        .json();
    let second = server
        .admin(&["deploy", "notebook-small", "--output", "json"])
        .ok()
        .json();
    let mut seen = Vec::new();
    let mut got = Vec::new();
    for _ in 0..2 {
        let line = wait_for(&rx, &mut seen, |_| true);
        let e: Value = serde_json::from_str(&line).expect("one json object per line");
        assert_eq!(e["type"], "DeploymentRequested");
        got.push(e["entity"].as_str().expect("entity").to_string());
    }
    let _ = follow.kill();
    let _ = follow.wait();
    assert_eq!(
        got,
        [
            format!("deployment:{}", first["id"].as_str().expect("id")),
            format!("deployment:{}", second["id"].as_str().expect("id")),
        ]
    );
}

#[test]
fn deploy_watch_reaches_running_on_a_simulated_agent() {
    let server = TestServer::start();
    seed(&server);
    let agent_dir = tempfile::tempdir().expect("temp dir");
    let mut agent = server
        .command(
            Some(&server.admin),
            &["agent", "--driver", "sim", "--sim-nodes", "1", "--data"],
        )
        .arg(agent_dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn the agent");
    let mut registered = false;
    for _ in 0..100 {
        let nodes = server.admin(&["nodes", "--output", "json"]).ok().json();
        if nodes.as_array().is_some_and(|n| n.len() == 1) {
            registered = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(registered, "the simulated node registers");

    let mut watch = server.spawn(&server.admin, &["deploy", "notebook-small", "--watch"]);
    let rx = lines(&mut watch);
    let mut seen = Vec::new();
    let head = wait_for(&rx, &mut seen, |l| l.starts_with("deployment "));
    let id = head.split_whitespace().nth(1).expect("id").to_string();
    wait_for(&rx, &mut seen, |l| l == "status: running");
    assert_eq!(exit_code(&mut watch), Some(0), "{seen:?}");
    assert!(seen.iter().any(|l| l == "status: scheduled"), "{seen:?}");

    // Stop it: `status ID --watch` follows it to the end.
    server.admin(&["stop", &id]).ok();
    let mut follow = server.spawn(&server.admin, &["status", &id, "--watch"]);
    let follow_rx = lines(&mut follow);
    let mut follow_seen = Vec::new();
    wait_for(&follow_rx, &mut follow_seen, |l| {
        l == "status: stopped" || l.starts_with("status:      stopped")
    });
    assert_eq!(exit_code(&mut follow), Some(0), "{follow_seen:?}");
    let d = server
        .admin(&["status", &id, "--output", "json"])
        .ok()
        .json();
    assert_eq!(d["status"], "stopped");
    let _ = agent.kill();
    let _ = agent.wait();
}
