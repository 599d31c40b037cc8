//! The processes of the fleet bench: the server and the agents (killed on drop), and
//! what `/proc` says about the server (RSS, CPU time).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};

const BIN: &str = env!("CARGO_BIN_EXE_dcloud");

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

pub(crate) struct Server {
    child: Child,
    pub(crate) url: String,
    pub(crate) port: u16,
    data: PathBuf,
}

impl Server {
    /// Starts `dcloud server` on `data` (on `port`, or a free one) and waits until it
    /// is ready.
    pub(crate) async fn start(data: &Path, port: Option<u16>) -> anyhow::Result<Server> {
        let port = match port {
            Some(p) => p,
            None => free_port()?,
        };
        let child = Command::new(BIN)
            .arg("server")
            .arg("--data")
            .arg(data)
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            // The simulated fleet, the load generator and the watchers all act with the
            // admin token, so the per-token limits meant for one client (64 sockets,
            // 10,000 subscriptions, 1,000 writes/s) would cap the whole fleet; each
            // real agent has its own token.
            .args(["--max-connections-per-token", "1000000"])
            .args(["--max-subscriptions-per-token", "1000000"])
            .args(["--writes-per-second", "1000000"])
            .env("RUST_LOG", "warn")
            .env("DCLOUD_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting the server")?;
        let server = Server {
            child,
            url: format!("http://127.0.0.1:{port}"),
            port,
            data: data.to_path_buf(),
        };
        let deadline = Instant::now() + Duration::from_secs(120);
        let client = reqwest::Client::new();
        loop {
            let ready = client
                .get(format!("{}/readyz", server.url))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ready {
                return Ok(server);
            }
            if Instant::now() > deadline {
                bail!("the server was not ready in time");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub(crate) fn admin_token(&self) -> anyhow::Result<String> {
        Ok(std::fs::read_to_string(self.data.join("admin.token"))?
            .trim()
            .to_string())
    }

    /// Resident memory, bytes.
    pub(crate) fn rss(&self) -> anyhow::Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))?;
        let kb = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
            .context("VmRSS")?;
        Ok(kb * 1024)
    }

    /// User + system CPU time, seconds.
    pub(crate) fn cpu_secs(&self) -> anyhow::Result<f64> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id()))?;
        let after = stat.rsplit_once(')').map(|(_, r)| r).context("stat")?;
        let f: Vec<&str> = after.split_whitespace().collect();
        // After the command: state is field 3, utime 14, stime 15 (1-based overall).
        let ticks: f64 = f[11].parse::<f64>()? + f[12].parse::<f64>()?;
        Ok(ticks / 100.0)
    }

    /// SIGTERM, then wait for it to exit.
    pub(crate) fn stop(mut self) -> anyhow::Result<()> {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        self.child.wait()?;
        Ok(())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The agent processes, each running its share of the simulated nodes, each node on
/// its own websocket.
pub(crate) struct Fleet {
    children: Vec<Child>,
}

impl Fleet {
    pub(crate) fn start(
        url: &str,
        token: &str,
        nodes: u64,
        processes: u64,
        heartbeat: Duration,
    ) -> anyhow::Result<Fleet> {
        let per = nodes.div_ceil(processes);
        let mut children = Vec::new();
        let mut first = 0;
        while first < nodes {
            let count = per.min(nodes - first);
            let child = Command::new(BIN)
                .args([
                    "--server", url, "--token", token, "agent", "--driver", "sim",
                ])
                .args(["--sim-nodes", &count.to_string()])
                .args(["--sim-first", &first.to_string()])
                .args(["--sim-connections", "per-node"])
                .args([
                    "--heartbeat-interval",
                    &format!("{}ms", heartbeat.as_millis()),
                ])
                .env("RUST_LOG", "error")
                .env("DCLOUD_LOG", "error")
                .stdout(Stdio::null())
                .stderr(Stdio::inherit())
                .spawn()
                .context("starting an agent")?;
            children.push(child);
            first += count;
        }
        Ok(Fleet { children })
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
