//! Failover time on a shared JetStream log: a 3-node nats-server cluster on loopback
//! (`sync_interval: always`), two `dcloud server --log nats://… --log-replicas 3`
//! processes, a writer sending a mutation every 10 ms to both. Each round SIGKILLs
//! the leader and times leader killed → first write accepted by the new leader; the
//! killed server is started again (it comes back as a standby) before the next round.
//!
//! Before each kill it also times the standby's lag: from the leader's answer to a
//! write until the standby's state holds the leader's head.
//!
//! `cargo bench --bench failover` (`FAILOVER_KILLS`, default 20; `FAILOVER_TTL_MS`,
//! the lease TTL, default the server's 3000). Needs nats-server 2.12.1+
//! (`scripts/install-nats-server.sh`).

#[path = "../log-nats/tests/common/mod.rs"]
mod nats;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

struct Server {
    url: String,
    args: Vec<String>,
    log: PathBuf,
    child: Option<Child>,
}

impl Server {
    fn start(nats: &str, data: &Path, ttl_ms: u64) -> Server {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let mut s = Server {
            url: format!("http://127.0.0.1:{port}"),
            args: vec![
                "server".into(),
                "--data".into(),
                data.display().to_string(),
                "--listen".into(),
                format!("127.0.0.1:{port}"),
                "--log".into(),
                nats.into(),
                "--log-replicas".into(),
                "3".into(),
                "--lease-ttl-ms".into(),
                ttl_ms.to_string(),
            ],
            log: data.with_extension("log"),
            child: None,
        };
        s.spawn();
        s
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log file");
        self.child = Some(
            Command::new(env!("CARGO_BIN_EXE_dcloud"))
                .args(&self.args)
                .env("DCLOUD_LOG", "warn")
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("spawn dcloud server"),
        );
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

async fn readyz(http: &reqwest::Client, url: &str) -> String {
    match http.get(format!("{url}/readyz")).send().await {
        Ok(r) => r.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

/// One write (a token); `true` once accepted.
async fn write(http: &reqwest::Client, url: &str, admin: &str, n: u64) -> bool {
    let q = "mutation($n: String!) { createToken(role: USER, name: $n) { token } }";
    let Ok(r) = http
        .post(format!("{url}/graphql"))
        .bearer_auth(admin)
        .json(&json!({"query": q, "variables": {"n": format!("t{n}")}}))
        .timeout(Duration::from_secs(2))
        .send()
        .await
    else {
        return false;
    };
    r.json::<Value>()
        .await
        .is_ok_and(|v| v["data"]["createToken"]["token"].is_string())
}

/// The seq the state of the server at `url` was read at (`clusterTotals.seq`).
async fn head(http: &reqwest::Client, url: &str, admin: &str) -> Option<u64> {
    let r = http
        .post(format!("{url}/graphql"))
        .bearer_auth(admin)
        .json(&json!({"query": "{ clusterTotals { seq } }"}))
        .send()
        .await
        .ok()?;
    r.json::<Value>().await.ok()?["data"]["clusterTotals"]["seq"].as_u64()
}

async fn wait_for(http: &reqwest::Client, server: &Server, want: &str) {
    let started = Instant::now();
    while !readyz(http, &server.url).await.starts_with(want) {
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "{} never said {want:?}; see {}",
            server.url,
            server.log.display()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

#[tokio::main]
async fn main() {
    let kills: usize = std::env::var("FAILOVER_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let ttl_ms: u64 = std::env::var("FAILOVER_TTL_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3000);
    let (_cluster, urls) = nats::cluster();
    let dir = tempfile::tempdir().expect("tempdir");
    let http = reqwest::Client::new();
    let mut servers = [
        Server::start(&urls, &dir.path().join("a"), ttl_ms),
        Server::start(&urls, &dir.path().join("b"), ttl_ms),
    ];
    // Whichever leads first made the admin token.
    let admin = loop {
        let found = ["a", "b"]
            .iter()
            .find_map(|d| std::fs::read_to_string(dir.path().join(d).join("admin.token")).ok());
        if let Some(t) = found {
            break t.trim().to_string();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let mut n = 0u64;
    let mut times = Vec::with_capacity(kills);
    let mut lags = Vec::with_capacity(kills);
    println!("failover on a 3-node nats cluster (R3, sync_interval: always), lease TTL {ttl_ms} ms, {kills} kills");
    for round in 0..kills {
        // Both up, one leading, and the standby knows the admin token.
        let mut leader = None;
        let started = Instant::now();
        while leader.is_none() {
            for (i, s) in servers.iter().enumerate() {
                if readyz(&http, &s.url).await.starts_with("ready (leader)") {
                    leader = Some(i);
                }
            }
            assert!(started.elapsed() < Duration::from_secs(90), "no leader");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let l = leader.expect("a leader");
        let s = 1 - l;
        wait_for(&http, &servers[s], "ready (standby").await;
        // Standby lag: from the leader's answer to a write until the standby's state
        // holds the leader's head (both read over HTTP with the admin token).
        n += 1;
        assert!(
            write(&http, &servers[l].url, &admin, n).await,
            "the leader writes"
        );
        let written = Instant::now();
        let target = head(&http, &servers[l].url, &admin)
            .await
            .expect("the leader's head");
        while head(&http, &servers[s].url, &admin).await < Some(target) {
            assert!(
                written.elapsed() < Duration::from_secs(10),
                "the standby follows"
            );
        }
        lags.push(written.elapsed());
        tokio::time::sleep(Duration::from_millis(300)).await;

        servers[l].kill();
        let killed = Instant::now();
        loop {
            n += 1;
            if write(&http, &servers[s].url, &admin, n).await {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
            assert!(
                killed.elapsed() < Duration::from_secs(60),
                "no new leader in 60 s"
            );
        }
        let took = killed.elapsed();
        println!(
            "round {:>2}: leader killed -> first write accepted by the new leader in {:>5} ms",
            round + 1,
            took.as_millis()
        );
        times.push(took);
        servers[l].spawn();
    }
    times.sort();
    lags.sort();
    println!(
        "standby lag (a write answered by the leader -> the standby's state at the leader's head, polled over HTTP): p50 {:.1} ms, max {:.1} ms",
        percentile(&lags, 0.5).as_secs_f64() * 1e3,
        lags.last().expect("lags").as_secs_f64() * 1e3
    );
    println!(
        "failover over {} kills: p50 {} ms, max {} ms, min {} ms (lease TTL {ttl_ms} ms)",
        times.len(),
        percentile(&times, 0.5).as_millis(),
        times.last().expect("times").as_millis(),
        times[0].as_millis()
    );
}
