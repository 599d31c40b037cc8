//! The scheduler benchmark (`cargo bench -p replay-tests --bench scheduler`):
//! placements per second through the real writer with durable group commit at 100,
//! 1,000 and 10,000 simulated nodes, with the p50 and p99 latency of one deploy
//! request; then, in a fresh child process, resident memory with 10,000 nodes and
//! 100,000 deployments. Prints one markdown report. `BENCH_QUICK=1` shrinks it.

/// The allocator the `dcloud` binary runs with (src/main.rs), so that the figures are
/// the server's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::sync::Arc;
use std::time::{Duration, Instant};

use dcloud::writer::{system_clock, WriterConfig, WriterHandle};
use dcloud_events::EventLog;
use dcloud_projections::{Actor, Command, Settings};
use replay_tests::crash::{env_spec, node_fingerprint, small_catalog};

const CONCURRENCY: usize = 256;

fn quick() -> bool {
    std::env::var_os("BENCH_QUICK").is_some()
}

fn main() {
    let base =
        std::env::var("BENCH_DIR").unwrap_or_else(|_| env!("CARGO_TARGET_TMPDIR").to_string());
    std::fs::create_dir_all(&base).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    if let Ok(spec) = std::env::var("SCHED_BENCH_MEMORY") {
        // Child: build the state, print RSS, exit.
        let (nodes, deployments): (usize, usize) = {
            let mut it = spec.split(',').map(|s| s.parse().unwrap());
            (it.next().unwrap(), it.next().unwrap())
        };
        let tmp = tempfile::tempdir_in(&base).unwrap();
        let rss = rt.block_on(memory(tmp.path(), nodes, deployments));
        println!("RSS {rss}");
        return;
    }
    let deploys = if quick() { 2_000 } else { 20_000 };
    println!(
        "# scheduler benchmark ({})\n",
        if quick() { "quick" } else { "full" }
    );
    println!("{deploys} deploy requests from {CONCURRENCY} concurrent clients through the writer (durable group commit).\n");
    println!(
        "| nodes | placements/s | p50 deploy latency | p99 deploy latency | placed | pending |"
    );
    println!("|---:|---:|---:|---:|---:|---:|");
    for nodes in [100usize, 1_000, 10_000] {
        let tmp = tempfile::tempdir_in(&base).unwrap();
        let r = rt.block_on(throughput(tmp.path(), nodes, deploys));
        println!(
            "| {nodes} | {:.0} | {:.2} ms | {:.2} ms | {} | {} |",
            r.rate,
            r.p50.as_secs_f64() * 1e3,
            r.p99.as_secs_f64() * 1e3,
            r.placed,
            r.pending
        );
    }
    let (n, d) = if quick() {
        (1_000, 10_000)
    } else {
        (10_000, 100_000)
    };
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .env("SCHED_BENCH_MEMORY", format!("{n},{d}"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let rss: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("RSS "))
        .expect("child reports RSS")
        .parse()
        .unwrap();
    println!("\n## memory\n");
    println!("| nodes | deployments | resident memory (VmRSS of the whole server process: state, writer, fjall) |");
    println!("|---:|---:|---:|");
    println!("| {n} | {d} | {:.1} MB |", rss as f64 / 1e6);
}

struct Throughput {
    rate: f64,
    p50: Duration,
    p99: Duration,
    placed: usize,
    pending: usize,
}

async fn setup(dir: &std::path::Path, nodes: usize) -> WriterHandle {
    let log: Arc<dyn EventLog> = dcloud::store::open_log(dir).unwrap();
    let (state, _) = dcloud::store::recover(&*log, None, true).unwrap();
    let config = WriterConfig {
        settings: Settings::default(),
        snapshot_every: 0,
        keep_snapshots: dcloud::writer::DEFAULT_KEEP_SNAPSHOTS,
        clock: system_clock(),
    };
    let writer = dcloud::spawn_writer(log, state, config);
    let admin = Actor::admin("bench");
    writer
        .submit(
            Command::UpsertCatalog {
                catalog: small_catalog(),
            },
            admin.clone(),
            "setup".into(),
        )
        .await
        .unwrap();
    // Register the nodes concurrently (group commit batches them).
    let mut tasks = Vec::new();
    for chunk in (0..nodes)
        .collect::<Vec<_>>()
        .chunks(nodes.div_ceil(CONCURRENCY))
    {
        let writer = writer.clone();
        let chunk = chunk.to_vec();
        tasks.push(tokio::spawn(async move {
            for i in chunk {
                let id = format!("0x{:012x}", 0x5f00_0000_0000u64 + i as u64);
                let cmd = Command::RegisterNode {
                    node_id: id.clone(),
                    fingerprint: node_fingerprint(&id, 64, 256, 8),
                };
                writer
                    .submit(cmd, Actor::agent(&id), format!("reg-{i}"))
                    .await
                    .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let cmd = Command::CreateEnvironment {
        env_id: "env".into(),
        spec: env_spec("bench", 100, 64, 0),
    };
    writer.submit(cmd, admin, "env".into()).await.unwrap();
    writer
}

async fn deploy_all(writer: &WriterHandle, prefix: &str, deploys: usize) -> Vec<Duration> {
    let mut tasks = Vec::new();
    for c in 0..CONCURRENCY {
        let writer = writer.clone();
        let prefix = prefix.to_string();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            for i in (c..deploys).step_by(CONCURRENCY) {
                let cmd = Command::Deploy {
                    deployment_id: format!("{prefix}{i}"),
                    env_id: "env".into(),
                    wait_for_quota: false,
                    policy: None,
                };
                let t = Instant::now();
                writer
                    .submit(cmd, Actor::admin("bench"), format!("{prefix}{i}"))
                    .await
                    .unwrap();
                lat.push(t.elapsed());
            }
            lat
        }));
    }
    let mut all = Vec::with_capacity(deploys);
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all
}

async fn throughput(dir: &std::path::Path, nodes: usize, deploys: usize) -> Throughput {
    let writer = setup(dir, nodes).await;
    let started = Instant::now();
    let mut lat = deploy_all(&writer, "d", deploys).await;
    let elapsed = started.elapsed();
    lat.sort();
    let p = |q: f64| lat[((lat.len() - 1) as f64 * q) as usize];
    let (placed, pending) = {
        let s = writer.state();
        s.check_invariants().unwrap();
        (s.deployments.len() - s.pending.len(), s.pending.len())
    };
    let r = Throughput {
        rate: deploys as f64 / elapsed.as_secs_f64(),
        p50: p(0.5),
        p99: p(0.99),
        placed,
        pending,
    };
    tokio::task::spawn_blocking(move || writer.shutdown())
        .await
        .unwrap();
    r
}

async fn memory(dir: &std::path::Path, nodes: usize, deployments: usize) -> u64 {
    let writer = setup(dir, nodes).await;
    deploy_all(&writer, "m", deployments).await;
    assert_eq!(writer.state().deployments.len(), deployments);
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap();
    kb * 1024
}
