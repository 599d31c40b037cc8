//! The fleet bench's client side: set-up, waiting for the fleet, the deploy load
//! generator (many concurrent HTTP clients), and the watchers that time deploy→running
//! (a `deploymentUpdates` subscription) and assignment delivery (assignment
//! subscriptions on a sample of nodes, beside their agents').

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use dcloud_agent::runtime::protocol::SubEvent;
use dcloud_agent::runtime::WsConnection;
use serde_json::{json, Value};

const CATALOG: &str = r#"{"os": "busybox", "base-image": "dcloud-test/busybox:latest",
  "init-steps": ["true"], "specifications": {}}"#;
/// Small, so that 10 per node (or more) fit: 16 CPUs / 64G per sim node.
const ENVIRONMENT: &str = r#"{"env-name": "fleet-job", "version": "1", "os": "busybox",
  "languages": [], "resources": {"ram": "64M", "cpu": "0.05", "gpu": "0", "storage": 0}}"#;

pub(crate) async fn gql(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    q: &str,
    vars: Value,
) -> anyhow::Result<Value> {
    let body: Value = client
        .post(format!("{url}/graphql"))
        .bearer_auth(token)
        .json(&json!({"query": q, "variables": vars}))
        .send()
        .await?
        .json()
        .await?;
    if let Some(e) = body.get("errors") {
        bail!("{q}: {e}");
    }
    Ok(body["data"].clone())
}

/// The catalog and one small environment; returns its id.
pub(crate) async fn setup(url: &str, admin: &str) -> anyhow::Result<String> {
    let c = reqwest::Client::new();
    let q = "mutation($d: String!) { upsertCatalog(document: $d) { os } }";
    gql(&c, url, admin, q, json!({"d": CATALOG})).await?;
    let q = "mutation($d: String!) { createEnvironment(document: $d) { id } }";
    let data = gql(&c, url, admin, q, json!({"d": ENVIRONMENT})).await?;
    Ok(data["createEnvironment"]["id"]
        .as_str()
        .context("environment id")?
        .to_string())
}

/// One metric from `/metrics` (0 when absent).
pub(crate) async fn metric(url: &str, name: &str) -> anyhow::Result<f64> {
    let text = reqwest::get(format!("{url}/metrics")).await?.text().await?;
    Ok(text
        .lines()
        .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0))
}

/// Waits until `n` nodes are alive and at least `n` subscriptions are served.
pub(crate) async fn wait_fleet(url: &str, n: u64, limit: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    loop {
        let alive = metric(url, "dcloud_nodes{state=\"alive\"}")
            .await
            .unwrap_or(0.0);
        let subs = metric(url, "dcloud_subscriptions_open")
            .await
            .unwrap_or(0.0);
        if alive >= n as f64 && subs >= n as f64 {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("fleet not up after {limit:?}: {alive} alive, {subs} subscriptions");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `n` assignment subscriptions (nodes `0x02…1` to `n`, after the current head, so
/// nothing is replayed) spread over `sockets` websockets; dropping the result closes
/// them.
pub(crate) async fn idle_subscriptions(
    url: &str,
    admin: &str,
    n: u64,
    sockets: u64,
) -> anyhow::Result<Vec<WsConnection>> {
    let ws_url = format!("{}/graphql/ws", url.replacen("http", "ws", 1));
    let head = metric(url, "dcloud_log_last_seq").await? as u64;
    let before = metric(url, "dcloud_subscriptions_open").await?;
    let mut conns = Vec::new();
    for _ in 0..sockets {
        conns.push(WsConnection::connect(&ws_url, admin).await?);
    }
    let q = "subscription($n: ID!, $a: Int) { assignments(nodeId: $n, after: $a) { kind } }";
    let mut subs = Vec::new();
    for i in 0..n {
        let node = format!("0x02{:010x}", i + 1);
        let conn = &conns[(i % sockets) as usize];
        subs.push(conn.subscribe(q, json!({"n": node, "a": head}))?);
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while metric(url, "dcloud_subscriptions_open").await? < before + n as f64 {
        if Instant::now() > deadline {
            bail!("the idle subscriptions did not open");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The streams live as long as their connections (the handles are dropped here;
    // the server keeps serving until the socket closes).
    std::mem::forget(subs);
    Ok(conns)
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e3
}

pub(crate) struct LoadReport {
    deploys: u64,
    clients: u64,
    overloaded: u64,
    send_secs: f64,
    request: Vec<Duration>,
    running_secs: f64,
    running: Vec<Duration>,
    delivery: Vec<Duration>,
    /// From the `SCHEDULED` event's time (server clock, same host) to the RUN item.
    delivery_sched: Vec<Duration>,
}

impl LoadReport {
    pub(crate) fn print(&self) {
        println!(
            "deploys through /graphql: {} by {} clients in {:.1} s = {:.0}/s; request p50 {:.1} ms, p99 {:.1} ms; OVERLOADED {}",
            self.deploys,
            self.clients,
            self.send_secs,
            self.deploys as f64 / self.send_secs,
            pct(&self.request, 0.5),
            pct(&self.request, 0.99),
            self.overloaded
        );
        println!(
            "deploy->running: {} running in {:.1} s = {:.0}/s; latency p50 {:.0} ms, p99 {:.0} ms",
            self.running.len(),
            self.running_secs,
            self.running.len() as f64 / self.running_secs,
            pct(&self.running, 0.5),
            pct(&self.running, 0.99)
        );
        println!(
            "assignment delivery (deploy sent -> RUN received on the node's stream, {} samples): p50 {:.1} ms, p99 {:.1} ms",
            self.delivery.len(),
            pct(&self.delivery, 0.5),
            pct(&self.delivery, 0.99)
        );
        println!(
            "assignment delivery (SCHEDULED event time -> RUN received, ms clock, {} samples): p50 {:.0} ms, p99 {:.0} ms",
            self.delivery_sched.len(),
            pct(&self.delivery_sched, 0.5),
            pct(&self.delivery_sched, 0.99)
        );
    }
}

/// Per deployment: when its deploy request was sent, and the wall-clock time (ms) of
/// its `SCHEDULED` event as the server recorded it.
type Sent = Arc<Mutex<HashMap<String, (Instant, i64)>>>;

fn wall_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// `total` deploys by `clients` concurrent clients, timed to running and to delivery.
pub(crate) async fn deploy_load(
    url: &str,
    admin: &str,
    env_id: &str,
    total: u64,
    clients: u64,
    probes: u64,
) -> anyhow::Result<LoadReport> {
    let sent: Sent = Arc::default();
    let ws_url = format!("{}/graphql/ws", url.replacen("http", "ws", 1));
    let ws = WsConnection::connect(&ws_url, admin).await?;

    // Running: every status change to RUNNING.
    let q = "subscription { deploymentUpdates { deploymentId status statusChanged } }";
    let mut updates = ws.subscribe(q, json!({}))?;
    let running: Arc<Mutex<Vec<Duration>>> = Arc::default();
    let last_running = Arc::new(Mutex::new(Instant::now()));
    let watch = {
        let (sent, running, last) = (sent.clone(), running.clone(), last_running.clone());
        tokio::spawn(async move {
            while let Some(SubEvent::Data(d)) = updates.next().await {
                let u = &d["deploymentUpdates"];
                if u["status"] == "RUNNING" && u["statusChanged"] == true {
                    let id = u["deploymentId"].as_str().unwrap_or_default();
                    let at = sent.lock().map(|s| s.get(id).copied()).ok().flatten();
                    if let Some((at, _)) = at {
                        let now = Instant::now();
                        running.lock().map(|mut r| r.push(now - at)).ok();
                        last.lock().map(|mut l| *l = now).ok();
                    }
                }
            }
        })
    };
    // Delivery: assignment streams of a sample of nodes (as their agents have).
    let delivery: Arc<Mutex<Vec<Duration>>> = Arc::default();
    let delivery_sched: Arc<Mutex<Vec<Duration>>> = Arc::default();
    let mut probe_tasks = Vec::new();
    let q = "subscription($n: ID!) { assignments(nodeId: $n) { kind deploymentId } }";
    for i in 0..probes {
        let node = format!("0x02{:010x}", i + 1);
        let mut sub = ws.subscribe(q, json!({"n": node}))?;
        let (sent, delivery, sched) = (sent.clone(), delivery.clone(), delivery_sched.clone());
        probe_tasks.push(tokio::spawn(async move {
            while let Some(SubEvent::Data(d)) = sub.next().await {
                let a = &d["assignments"];
                if a["kind"] == "RUN" {
                    let (got, got_ms) = (Instant::now(), wall_ms());
                    let id = a["deploymentId"].as_str().unwrap_or_default().to_string();
                    // The RUN item may overtake the deploy's answer: wait for it.
                    let mut found = None;
                    for _ in 0..2000 {
                        found = sent.lock().map(|s| s.get(&id).copied()).ok().flatten();
                        if found.is_some() {
                            break;
                        }
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    if let Some((at, scheduled_ms)) = found {
                        delivery.lock().map(|mut v| v.push(got - at)).ok();
                        if scheduled_ms != i64::MAX {
                            let ms = got_ms.saturating_sub(scheduled_ms).max(0) as u64;
                            sched
                                .lock()
                                .map(|mut v| v.push(Duration::from_millis(ms)))
                                .ok();
                        }
                    }
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    let next = Arc::new(AtomicU64::new(0));
    let overloaded = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (url, admin, env_id) = (url.to_string(), admin.to_string(), env_id.to_string());
        let (next, sent, overloaded) = (next.clone(), sent.clone(), overloaded.clone());
        tasks.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            let q = "mutation($e: String!) { deploy(environment: $e) { id history { status timeMs } } }";
            let mut lat = Vec::new();
            while next.fetch_add(1, Ordering::Relaxed) < total {
                loop {
                    let t = Instant::now();
                    let body: Value = client
                        .post(format!("{url}/graphql"))
                        .bearer_auth(&admin)
                        .json(&json!({"query": q, "variables": {"e": env_id}}))
                        .send()
                        .await?
                        .json()
                        .await?;
                    if let Some(id) = body["data"]["deploy"]["id"].as_str() {
                        lat.push(t.elapsed());
                        let scheduled_ms = body["data"]["deploy"]["history"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .find(|h| h["status"] == "SCHEDULED")
                            .and_then(|h| h["timeMs"].as_i64())
                            .unwrap_or(i64::MAX);
                        sent.lock()
                            .map(|mut s| s.insert(id.to_string(), (t, scheduled_ms)))
                            .ok();
                        break;
                    }
                    let e = &body["errors"][0]["extensions"];
                    if e["code"] == "OVERLOADED" {
                        overloaded.fetch_add(1, Ordering::Relaxed);
                        let ms = e["retryAfterMs"].as_u64().unwrap_or(100);
                        tokio::time::sleep(Duration::from_millis(ms)).await;
                        continue;
                    }
                    bail!("deploy refused: {body}");
                }
            }
            Ok::<_, anyhow::Error>(lat)
        }));
    }
    let mut request = Vec::new();
    for t in tasks {
        request.extend(t.await??);
    }
    let send_secs = start.elapsed().as_secs_f64();
    request.sort();

    // Wait for every deployment to run (or a generous deadline).
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let n = running.lock().map(|r| r.len()).unwrap_or(0) as u64;
        if n >= total || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    watch.abort();
    for p in probe_tasks {
        p.abort();
    }
    let running_secs = last_running
        .lock()
        .map(|l| l.duration_since(start))
        .unwrap_or_default()
        .as_secs_f64();
    let mut running = running.lock().map(|r| r.clone()).unwrap_or_default();
    running.sort();
    let mut delivery = delivery.lock().map(|d| d.clone()).unwrap_or_default();
    delivery.sort();
    let mut delivery_sched = delivery_sched.lock().map(|d| d.clone()).unwrap_or_default();
    delivery_sched.sort();
    Ok(LoadReport {
        deploys: total,
        clients,
        overloaded: overloaded.load(Ordering::Relaxed),
        send_secs,
        request,
        running_secs,
        running,
        delivery,
        delivery_sched,
    })
}
