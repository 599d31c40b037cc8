//! Failover under load with real processes: a 3-node nats-server cluster (R3,
//! `sync_interval: always`), three `dcloud server --log nats://…` under a small
//! supervisor (a server whose log write failed stops, fail-stop, and is started
//! again), a simulated fleet that knows every server, and a stream of deploys. Rounds
//! of SIGKILL: a nats node that does not lead the stream, then the one that does, then
//! the leading DCloud server, each brought back before the next (two rounds; set
//! `HA_FAULT_ROUNDS` for more). Afterwards every acknowledged deploy is in the log and
//! running, none was placed twice, each node's agent runs exactly what the log assigns
//! it, and the chain verifies.

#[path = "../log-nats/tests/common/mod.rs"]
mod nats;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// A child process that can be SIGKILLed and started again with the same arguments.
struct Proc {
    program: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    log: PathBuf,
    child: Option<Child>,
    starts: u32,
}

impl Proc {
    fn new(program: PathBuf, args: Vec<String>, log: PathBuf) -> Proc {
        Proc {
            program,
            args,
            env: Vec::new(),
            log,
            child: None,
            starts: 0,
        }
    }

    fn start(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log file");
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args)
            .env_remove("DCLOUD_TOKEN")
            .env_remove("DCLOUD_SERVER")
            .stdout(Stdio::null())
            .stderr(log);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        self.child = Some(cmd.spawn().expect("spawn"));
        self.starts += 1;
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again if it exited by itself (the supervisor's job).
    fn keep_running(&mut self) -> bool {
        let exited = match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(Some(_))),
            None => false,
        };
        if exited {
            self.child = None;
            self.start();
        }
        exited
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A 3-node nats cluster whose nodes can be killed and restarted on the same store.
fn nats_cluster(dir: &Path) -> (Vec<(String, Proc)>, String) {
    let ports: Vec<(u16, u16)> = (0..3).map(|_| (free_port(), free_port())).collect();
    let routes = ports
        .iter()
        .map(|(_, r)| format!("nats-route://127.0.0.1:{r}"))
        .collect::<Vec<_>>()
        .join(", ");
    let mut nodes = Vec::new();
    for (i, (port, route)) in ports.iter().enumerate() {
        let name = format!("n{}", i + 1);
        let conf = dir.join(format!("{name}.conf"));
        std::fs::write(
            &conf,
            format!(
                "server_name: {name}\nlisten: 127.0.0.1:{port}\n\
                 cluster {{ name: dcloud-faults, listen: 127.0.0.1:{route}, routes: [{routes}] }}\n\
                 jetstream {{ store_dir: {:?}, sync_interval: always }}\n",
                dir.join(&name)
            ),
        )
        .expect("nats config");
        let mut p = Proc::new(
            nats::server_binary(),
            vec!["-c".into(), conf.display().to_string()],
            dir.join(format!("{name}.log")),
        );
        p.start();
        nodes.push((name, p));
    }
    let urls = ports
        .iter()
        .map(|(p, _)| format!("nats://127.0.0.1:{p}"))
        .collect::<Vec<_>>()
        .join(",");
    (nodes, urls)
}

async fn gql(url: &str, token: &str, query: &str, variables: Value) -> Option<Value> {
    let r = reqwest::Client::new()
        .post(format!("{url}/graphql"))
        .bearer_auth(token)
        .json(&json!({"query": query, "variables": variables}))
        .timeout(Duration::from_secs(20))
        .send()
        .await
        .ok()?;
    r.json().await.ok()
}

async fn readyz(url: &str) -> String {
    match reqwest::get(format!("{url}/readyz")).await {
        Ok(r) => r.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

const CATALOG: &str = r#"{"os": "busybox", "base-image": "dcloud-test/busybox:latest",
  "init-steps": ["true"], "specifications": {}}"#;
const ENVIRONMENT: &str = r#"{"env-name": "sim-job", "version": "1", "os": "busybox",
  "languages": [], "resources": {"ram": "256M", "cpu": "0.5", "gpu": "0", "storage": 1}}"#;
const DEPLOY: &str = "mutation { deploy(environment: \"sim-job\") { id } }";

/// The stream's RAFT leader among the nats nodes (its server name), when it has one.
async fn stream_leader(urls: &str, stream: &str) -> Option<String> {
    let addrs: Vec<async_nats::ServerAddr> =
        urls.split(',').filter_map(|u| u.parse().ok()).collect();
    let client = async_nats::connect(addrs).await.ok()?;
    let js = async_nats::jetstream::new(client);
    let mut s = js.get_stream(stream).await.ok()?;
    s.info().await.ok()?.cluster.clone()?.leader
}

/// Every deployment (pages of 1,000), or `None` if a page was not answered.
async fn all_deployments(url: &str, admin: &str) -> Option<Vec<Value>> {
    let q = "query($o: Int) { deployments(first: 1000, offset: $o) { nodes { id status nodeId history { status } } } }";
    let mut all = Vec::new();
    loop {
        let r = gql(url, admin, q, json!({"o": all.len()})).await?;
        let page = r["data"]["deployments"]["nodes"].as_array()?.clone();
        let n = page.len();
        all.extend(page);
        if n < 1000 {
            return Some(all);
        }
    }
}

/// The servers' supervisor: restarts any that exited; returns how many it restarted.
fn supervise(servers: &Mutex<Vec<Proc>>) -> u32 {
    let mut n = 0;
    for s in servers.lock().expect("servers").iter_mut() {
        n += u32::from(s.keep_running());
    }
    n
}

/// Waits (supervising) until one of `urls` leads; returns its index.
async fn leader(servers: &Mutex<Vec<Proc>>, urls: &[String]) -> usize {
    let started = Instant::now();
    loop {
        supervise(servers);
        for (i, u) in urls.iter().enumerate() {
            if readyz(u).await.starts_with("ready (leader)") {
                return i;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "no DCloud leader in 120 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_nats_nodes_and_the_leader_loses_no_acknowledged_deploy() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut nats_nodes, nats_urls) = nats_cluster(dir.path());
    let stream = "faults";
    let http: Vec<String> = (0..3)
        .map(|_| format!("http://127.0.0.1:{}", free_port()))
        .collect();
    let servers: Arc<Mutex<Vec<Proc>>> = Arc::new(Mutex::new(
        http.iter()
            .enumerate()
            .map(|(i, url)| {
                let data = dir.path().join(format!("dcloud{i}"));
                let mut p = Proc::new(
                    env!("CARGO_BIN_EXE_dcloud").into(),
                    vec![
                        "server".into(),
                        "--data".into(),
                        data.display().to_string(),
                        "--listen".into(),
                        url.trim_start_matches("http://").into(),
                        "--log".into(),
                        nats_urls.clone(),
                        "--log-stream".into(),
                        stream.into(),
                        "--log-replicas".into(),
                        "3".into(),
                        "--lease-ttl-ms".into(),
                        "1500".into(),
                        // Every heartbeat logged: a node's `containers` is then what
                        // its agent last said it runs.
                        "--heartbeat-log-interval-ms".into(),
                        "0".into(),
                    ],
                    data.with_extension("log"),
                );
                p.env.push(("DCLOUD_LOG".into(), "info".into()));
                p.start();
                p
            })
            .collect(),
    ));
    let first = leader(&servers, &http).await;
    let token_file = dir.path().join(format!("dcloud{first}/admin.token"));
    let admin = loop {
        if let Ok(t) = std::fs::read_to_string(&token_file) {
            break t.trim().to_string();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let q = "mutation($d: String!) { upsertCatalog(document: $d) { os } }";
    gql(&http[first], &admin, q, json!({"d": CATALOG})).await;
    let q = "mutation($d: String!) { createEnvironment(document: $d) { id } }";
    gql(&http[first], &admin, q, json!({"d": ENVIRONMENT})).await;

    let mut agent = Proc::new(
        env!("CARGO_BIN_EXE_dcloud").into(),
        vec![
            "--server".into(),
            http.join(","),
            "--token".into(),
            admin.clone(),
            "agent".into(),
            "--driver".into(),
            "sim".into(),
            "--sim-nodes".into(),
            "4".into(),
            "--sim-cpu".into(),
            "512".into(),
            "--sim-memory".into(),
            "512G".into(),
            "--heartbeat-interval".into(),
            "1s".into(),
        ],
        dir.path().join("agent.log"),
    );
    agent
        .env
        .push(("DCLOUD_LOG".into(), "info,dcloud_agent=debug".into()));
    agent.start();

    // The stream of deploys: one after another to whichever server takes it.
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let deployer = {
        let (acked, stop, http, admin) = (acked.clone(), stop.clone(), http.clone(), admin.clone());
        tokio::spawn(async move {
            let mut attempts = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                for url in &http {
                    attempts += 1;
                    let Some(r) = gql(url, &admin, DEPLOY, json!({})).await else {
                        continue;
                    };
                    if let Some(id) = r["data"]["deploy"]["id"].as_str() {
                        acked.lock().expect("acked").push(id.to_string());
                        break;
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            attempts
        })
    };

    let pause = |secs: u64| tokio::time::sleep(Duration::from_secs(secs));
    // Two rounds in CI; `HA_FAULT_ROUNDS=10 cargo test --test ha_faults` for more.
    let rounds: u32 = std::env::var("HA_FAULT_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2);
    for round in 0..rounds {
        pause(2).await;
        // A nats node that does not lead the stream.
        let lead = stream_leader(&nats_urls, stream).await;
        let (name, node) = nats_nodes
            .iter_mut()
            .find(|(n, _)| Some(n) != lead.as_ref())
            .expect("a follower");
        eprintln!("round {round}: killing nats {name} (the stream's leader is {lead:?})");
        node.kill();
        pause(2).await;
        node.start();
        supervise(&servers);
        pause(3).await;
        // The nats node that leads the stream.
        let lead = stream_leader(&nats_urls, stream)
            .await
            .expect("a stream leader");
        let (name, node) = nats_nodes
            .iter_mut()
            .find(|(n, _)| *n == lead)
            .expect("the leader node");
        eprintln!("round {round}: killing nats {name}, the stream's leader");
        node.kill();
        pause(3).await;
        node.start();
        supervise(&servers);
        pause(3).await;
        // The leading DCloud server.
        let l = leader(&servers, &http).await;
        eprintln!(
            "round {round}: killing the leading DCloud server {}",
            http[l]
        );
        servers.lock().expect("servers")[l].kill();
        leader(&servers, &http).await;
        servers.lock().expect("servers")[l].start();
    }
    pause(2).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let attempts = deployer.await.expect("deployer");
    let acked = acked.lock().expect("acked").clone();
    let restarts: u32 = servers
        .lock()
        .expect("servers")
        .iter()
        .map(|p| p.starts)
        .sum();
    eprintln!(
        "{} deploys acknowledged of {attempts} attempts; DCloud server starts: {restarts}",
        acked.len()
    );
    assert!(acked.len() > 20, "the deploys went on: {}", acked.len());

    // Every acknowledged deploy is in the log, running, placed once.
    let l = leader(&servers, &http).await;
    let started = Instant::now();
    loop {
        supervise(&servers);
        let Some(list) = all_deployments(&http[l], &admin).await else {
            tokio::time::sleep(Duration::from_millis(250)).await;
            continue;
        };
        let by_id: std::collections::HashMap<&str, &Value> = list
            .iter()
            .filter_map(|d| Some((d["id"].as_str()?, d)))
            .collect();
        let missing: Vec<&String> = acked
            .iter()
            .filter(|id| !by_id.contains_key(id.as_str()))
            .collect();
        assert!(
            missing.is_empty(),
            "acknowledged deploys missing from the log: {missing:?}"
        );
        for d in &list {
            let scheduled = d["history"].as_array().map_or(0, |h| {
                h.iter().filter(|s| s["status"] == "SCHEDULED").count()
            });
            assert!(scheduled <= 1, "placed twice: {d}");
        }
        let not_running: Vec<&Value> = list.iter().filter(|d| d["status"] != "RUNNING").collect();
        if not_running.is_empty() {
            break;
        }
        if started.elapsed() >= Duration::from_secs(90) {
            // What the agent and the servers said of them.
            let ids: Vec<&str> = not_running
                .iter()
                .filter_map(|d| d["id"].as_str())
                .collect();
            let mut said = String::new();
            for f in std::fs::read_dir(dir.path())
                .into_iter()
                .flatten()
                .flatten()
            {
                let text = std::fs::read_to_string(f.path()).unwrap_or_default();
                for line in text.lines().filter(|l| ids.iter().any(|id| l.contains(id))) {
                    said.push_str(&format!("{}: {line}\n", f.path().display()));
                }
            }
            panic!(
                "{} deployments not running: {:?}\n{said}",
                not_running.len(),
                not_running.iter().take(5).collect::<Vec<_>>()
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // The agents run exactly what the log assigns their nodes.
    let started = Instant::now();
    loop {
        let q = "{ nodes(first: 10) { nodes { id deploymentIds containers { deploymentId } } } }";
        let r = gql(&http[l], &admin, q, json!({}))
            .await
            .unwrap_or_default();
        let nodes = r["data"]["nodes"]["nodes"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let set = |v: &Value, key: Option<&str>| -> std::collections::BTreeSet<String> {
            v.as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|x| match key {
                            Some(k) => x[k].as_str().map(str::to_string),
                            None => x.as_str().map(str::to_string),
                        })
                        .collect()
                })
                .unwrap_or_default()
        };
        let differ: Vec<String> = nodes
            .iter()
            .filter_map(|n| {
                let assigned = set(&n["deploymentIds"], None);
                let running = set(&n["containers"], Some("deploymentId"));
                (assigned != running).then(|| {
                    format!(
                        "{}: assigned {} running {}",
                        n["id"],
                        assigned.len(),
                        running.len()
                    )
                })
            })
            .collect();
        if nodes.len() == 4 && differ.is_empty() {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the agents do not run what the log assigns: {differ:?} ({} nodes)",
            nodes.len()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let v = gql(
        &http[l],
        &admin,
        "{ verifyChain { ok lastSeq reason } }",
        json!({}),
    )
    .await
    .unwrap_or_default();
    assert_eq!(v["data"]["verifyChain"]["ok"], true, "{v}");
    agent.kill();
}
