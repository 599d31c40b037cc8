//! Exactly-once requests: the real server process is SIGKILLed and restarted over and
//! over while clients deploy through the CLI's API client, which sends each mutation
//! with an idempotency key and retries it with the same key until it gets an answer.
//! At the end every request was answered, and the log holds exactly one deployment
//! per request: none lost, none duplicated by a retry.
//!
//! `DCLOUD_EXACTLY_ONCE_RESTARTS=N` sets the number of restarts (default 12).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dcloud::client::{Api, Global};
use dcloud::offline::Output;
use rand::Rng;
use serde_json::json;

const CLIENTS: usize = 8;

const CATALOG: &str = r#"{"os": "busybox", "base-image": "dcloud-test/busybox:latest",
  "init-steps": ["true"], "specifications": {}}"#;
const ENVIRONMENT: &str = r#"{"env-name": "once", "version": "1", "os": "busybox",
  "languages": [], "resources": {"ram": "256M", "cpu": "0.5", "gpu": "0", "storage": 1}}"#;

fn spawn_server(data: &Path, listen: &str) -> Child {
    Command::new(env!("CARGO_BIN_EXE_dcloud"))
        .args(["server", "--data"])
        .arg(data)
        .args(["--listen", listen])
        .env("DCLOUD_LOG", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn dcloud server")
}

/// Whether `GET /readyz` answers 200.
fn ready(listen: &str) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(listen) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"GET /readyz HTTP/1.0\r\nHost: x\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut head = [0u8; 12];
    s.read_exact(&mut head).is_ok() && head.ends_with(b"200")
}

/// Polls `/readyz` until the server answers ready (60 s at most).
fn wait_ready(listen: &str, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if ready(listen) {
            return;
        }
        if let Some(status) = child.try_wait().expect("try_wait") {
            panic!("the server exited during start-up: {status}");
        }
        assert!(Instant::now() < deadline, "the server did not get ready");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

#[test]
fn retried_requests_across_sigkill_restarts_make_no_duplicate() {
    let restarts: usize = std::env::var("DCLOUD_EXACTLY_ONCE_RESTARTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(12);
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let listen = format!("127.0.0.1:{}", free_port());
    let url = format!("http://{listen}");
    let mut child = spawn_server(&data, &listen);
    wait_ready(&listen, &mut child);
    let admin = std::fs::read_to_string(data.join("admin.token"))
        .expect("admin token")
        .trim()
        .to_string();
    let api = Arc::new(
        Api::new(&Global {
            server: url.clone(),
            token: Some(admin),
            output: Output::Json,
        })
        .expect("api"),
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let env_id = rt.block_on(async {
        api.run(
            "mutation($d: String!) { upsertCatalog(document: $d) { os } }",
            json!({ "d": CATALOG }),
        )
        .await
        .expect("catalog");
        let data = api
            .run(
                "mutation($d: String!) { createEnvironment(document: $d) { id } }",
                json!({ "d": ENVIRONMENT }),
            )
            .await
            .expect("environment");
        data["createEnvironment"]["id"]
            .as_str()
            .expect("id")
            .to_string()
    });

    let stop = Arc::new(AtomicBool::new(false));
    let issued = Arc::new(AtomicUsize::new(0));
    let answered = Arc::new(Mutex::new(Vec::<String>::new()));
    let failed = Arc::new(Mutex::new(Vec::<String>::new()));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (api, env_id, stop) = (api.clone(), env_id.clone(), stop.clone());
            let (issued, answered, failed) = (issued.clone(), answered.clone(), failed.clone());
            rt.spawn(async move {
                while !stop.load(Ordering::SeqCst) {
                    issued.fetch_add(1, Ordering::SeqCst);
                    let q = "mutation($e: String!) { deploy(environment: $e) { id } }";
                    match api.run(q, json!({ "e": env_id })).await {
                        Ok(data) => answered
                            .lock()
                            .expect("answered")
                            .push(data["deploy"]["id"].as_str().expect("id").to_string()),
                        Err(e) => failed.lock().expect("failed").push(format!("{e:#}")),
                    }
                }
            })
        })
        .collect();

    let mut rng = rand::rng();
    for _ in 0..restarts {
        // A random moment under load (not a wait for anything).
        std::thread::sleep(Duration::from_millis(rng.random_range(150..600)));
        child.kill().expect("SIGKILL");
        child.wait().expect("reap");
        child = spawn_server(&data, &listen);
        wait_ready(&listen, &mut child);
    }
    stop.store(true, Ordering::SeqCst);
    for c in clients {
        rt.block_on(c).expect("client task");
    }
    child.kill().expect("SIGKILL");
    child.wait().expect("reap");

    let failed = failed.lock().expect("failed").clone();
    assert!(failed.is_empty(), "requests never answered: {failed:?}");
    let answered = answered.lock().expect("answered").clone();
    let issued = issued.load(Ordering::SeqCst);
    assert_eq!(answered.len(), issued, "every request got an answer");
    let mut distinct = answered.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(
        distinct.len(),
        answered.len(),
        "two requests answered with one deployment"
    );

    let log = dcloud::store::open_log(&data).expect("log");
    let (state, _) = dcloud::store::recover(&*log, None, true).expect("recover");
    for id in &answered {
        assert!(
            state.deployments.contains_key(id),
            "answered deployment {id} lost"
        );
    }
    assert_eq!(
        state.deployments.len(),
        issued,
        "{} deployments for {issued} requests: a retry made a duplicate",
        state.deployments.len()
    );
    eprintln!(
        "exactly once: {restarts} SIGKILL restarts, {issued} deploy requests, {} deployments, 0 duplicates",
        state.deployments.len()
    );
}
