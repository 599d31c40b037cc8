//! Logs, exec and idle stop on the real Docker engine (feature `docker-tests`): a
//! server in-process on port 0, a Docker agent in the same process, the `dcloud` CLI.
//! `logs --follow` shows a line the container prints after the command started;
//! `exec -- cat /etc/hostname` prints the container's hostname; an idle deployment is
//! stopped and its persistent volume kept.
#![cfg(feature = "docker-tests")]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use dcloud::agent_cmd::spawn_local;
use dcloud::server::{check_idle, start, IdleTracker, ServerConfig};
use dcloud_agent::docker::persistent_volume_name;
use serde_json::json;

mod docker_support;

use docker_support::{gql, make_sleeper_image, wait_for, SLEEPER};

fn cli(url: &str, token: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_dcloud"));
    cmd.env_remove("DCLOUD_TOKEN")
        .args(["--server", url, "--token", token])
        .args(args);
    cmd
}

fn docker(args: &[&str]) -> (bool, String) {
    let out = Command::new("docker")
        .args(args)
        .output()
        .expect("docker runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_exec_and_idle_stop_on_docker() {
    make_sleeper_image();
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = ServerConfig::new(dir.path());
    config.listen = "127.0.0.1:0".parse().expect("addr");
    config.settings.heartbeat_log_interval_ms = 0;
    let server = start(config).await.expect("server starts");
    let (url, admin) = (
        server.url(),
        server.admin_token.clone().expect("admin token"),
    );

    let nonce = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_nanos();
    let catalog = json!({"os": "busybox", "base-image": SLEEPER,
        "init-steps": [format!("echo dcloud-sessions-{nonce}")], "specifications": {}});
    let q = "mutation($d: String!) { apply(document: $d) { events } }";
    gql(&url, &admin, q, json!({"d": catalog.to_string()})).await;
    let env = json!({"env-name": format!("sessions-{nonce}"), "version": "1", "os": "busybox",
        "languages": [], "resources": {"ram": "256M", "cpu": "0.5", "gpu": "0", "storage": 1},
        "storage": [{"target": "/keep", "size": "1G", "lifecycle": "persistent"}],
        "idle-timeout": "1m"});
    let q = "mutation($d: String!) { apply(document: $d) { documents { id } } }";
    let env_id = gql(&url, &admin, q, json!({"d": env.to_string()})).await["apply"]["documents"][0]
        ["id"]
        .as_str()
        .expect("env id")
        .to_string();

    let agent = spawn_local(url.clone(), admin.clone(), "docker", 1).expect("agent starts");
    let q = "mutation($e: String!) { deploy(environment: $e) { id } }";
    let id = gql(&url, &admin, q, json!({"e": env_id})).await["deploy"]["id"]
        .as_str()
        .expect("id")
        .to_string();
    wait_for(&url, &admin, &id, "RUNNING").await;
    // The container of this deployment (named per node; found by its label).
    let name = docker_support::containers_of(&id);
    assert!(
        !name.is_empty() && !name.contains(char::is_whitespace),
        "one container for {id}: {name:?}"
    );

    // logs --follow, then a line printed into the container's stdout after it started.
    let mut follow = cli(&url, &admin, &["logs", &id, "--follow"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("logs runs");
    let (tx, rx) = std::sync::mpsc::channel();
    let out = follow.stdout.take().expect("stdout");
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let marker = format!("printed-later-{nonce}");
    // The follow may attach a moment after the CLI starts: print until it shows.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = false;
    while !seen {
        assert!(
            Instant::now() < deadline,
            "logs --follow never showed {marker}"
        );
        let script = format!("echo {marker} > /proc/1/fd/1");
        let (ok, _) = docker(&["exec", &name, "sh", "-c", &script]);
        assert!(ok, "docker exec into {name}");
        if let Ok(line) = rx.recv_timeout(Duration::from_secs(2)) {
            seen = line.contains(&marker);
            while let Ok(line) = rx.try_recv() {
                seen |= line.contains(&marker);
            }
        }
    }

    // exec -- cat /etc/hostname prints the container's hostname.
    let (_, hostname) = docker(&["inspect", "-f", "{{.Config.Hostname}}", &name]);
    let out = cli(&url, &admin, &["exec", &id, "--", "cat", "/etc/hostname"])
        .output()
        .expect("exec runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), hostname);
    let out = cli(&url, &admin, &["exec", &id, "--", "sh", "-c", "exit 7"])
        .output()
        .expect("exec runs");
    assert_eq!(out.status.code(), Some(7));

    // Data in the persistent volume, then idle: stopped, the volume kept.
    let (ok, _) = docker(&["exec", &name, "sh", "-c", "echo kept > /keep/file"]);
    assert!(ok);
    drop(follow.stdin.take());
    // The open `logs --follow` keeps the deployment active; end it first.
    let _ = follow.kill();
    let _ = follow.wait();
    let app = server.app().clone();
    let deadline = Instant::now() + Duration::from_secs(60);
    while app.sessions().activity(&id).0 > 0 {
        assert!(Instant::now() < deadline, "the logs session never closed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Wait for a logged heartbeat showing the sleeping container's CPU below 50m.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let idle = {
            let state = app.writer().state();
            state.nodes.iter().any(|n| {
                n.containers
                    .iter()
                    .any(|c| c.deployment_id == id && c.usage.cpu_millis < 50)
            })
        };
        if idle {
            break;
        }
        assert!(Instant::now() < deadline, "no idle cpu figure for {id}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut tracker = IdleTracker::new(50);
    let t0 = 2_000_000_000_000;
    assert!(check_idle(&app, &mut tracker, t0).await.is_empty());
    let stops = check_idle(&app, &mut tracker, t0 + 60_000).await;
    assert_eq!(stops.len(), 1, "{stops:?}");
    wait_for(&url, &admin, &id, "STOPPED").await;
    let volume = persistent_volume_name(&env_id, "/keep");
    let (exists, _) = docker(&["volume", "inspect", &volume]);
    assert!(exists, "the persistent volume {volume} was removed");
    let mount = format!("{volume}:/keep");
    let (ok, content) = docker(&[
        "run",
        "--rm",
        "-v",
        &mount,
        "dcloud-test/busybox:latest",
        "cat",
        "/keep/file",
    ]);
    assert!(ok);
    assert_eq!(content, "kept");

    let _ = docker(&["volume", "rm", "-f", &volume]);
    agent.abort();
    server.shutdown().await;
}
