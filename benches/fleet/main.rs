//! `cargo bench --bench fleet`: a real `dcloud server` process and real `dcloud agent
//! --driver sim --sim-connections per-node` processes over loopback. For each fleet
//! size it reports server RSS (empty, with the fleet connected, after the deploys) and
//! the cost per connected node, server CPU per heartbeat, nodes wrongly marked lost,
//! deploy throughput and latency through `/graphql` (many concurrent Rust clients),
//! deploy→running throughput and latency, assignment delivery latency, and how long the
//! whole fleet takes to reconnect after a server restart.
//!
//! Knobs (environment): `FLEET_NODES` (`1000,10000`), `FLEET_AGENTS` (agent processes,
//! 4), `FLEET_DEPLOYS` (per size; default 10 per node), `FLEET_CLIENTS` (64),
//! `FLEET_SOAK_SECS` (idle heartbeat window, 30), `FLEET_PROBES` (assignment probes, 50).

mod load;
mod procs;

use std::time::{Duration, Instant};

use anyhow::Context as _;
use procs::{Fleet, Server};

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

struct Opts {
    agents: u64,
    clients: u64,
    soak: Duration,
    probes: u64,
    heartbeat: Duration,
}

fn main() -> anyhow::Result<()> {
    // `cargo bench` passes `--bench`; a filter argument names the sizes to run.
    let sizes: Vec<u64> = std::env::var("FLEET_NODES")
        .unwrap_or_else(|_| "1000,10000".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let opts = Opts {
        agents: env_num("FLEET_AGENTS", 4).max(1),
        clients: env_num("FLEET_CLIENTS", 64).max(1),
        soak: Duration::from_secs(env_num("FLEET_SOAK_SECS", 30)),
        probes: env_num("FLEET_PROBES", 50),
        heartbeat: Duration::from_secs(5),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    println!(
        "fleet bench: {} CPUs, agents {} processes, {} clients, soak {:?}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        opts.agents,
        opts.clients,
        opts.soak
    );
    for n in sizes {
        let deploys = env_num("FLEET_DEPLOYS", n * 10);
        rt.block_on(run(n, deploys, &opts))
            .with_context(|| format!("fleet of {n}"))?;
    }
    Ok(())
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}

async fn run(n: u64, deploys: u64, opts: &Opts) -> anyhow::Result<()> {
    println!("\n== {n} sim nodes, {deploys} deployments ==");
    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path(), None).await?;
    let url = server.url.clone();
    let admin = server.admin_token()?;
    let env_id = load::setup(&url, &admin).await?;
    let rss_empty = server.rss()?;

    let started = Instant::now();
    let fleet = Fleet::start(&url, &admin, n, opts.agents, opts.heartbeat)?;
    load::wait_fleet(&url, n, Duration::from_secs(600)).await?;
    let fleet_up = started.elapsed();
    let rss_idle = server.rss()?;
    println!(
        "fleet up (all registered, alive, subscribed): {:.1} s",
        fleet_up.as_secs_f64()
    );
    println!(
        "server RSS: empty {:.0} MB, fleet connected {:.0} MB -> {:.1} KB per connected node (subscription + connection + node state)",
        mb(rss_empty),
        mb(rss_idle),
        (rss_idle.saturating_sub(rss_empty)) as f64 / n as f64 / 1e3
    );

    // Idle subscriptions alone: `n` more assignment streams (one per node, as its
    // agent has) over 16 sockets, nothing flowing on them; then `n` more again. The
    // second batch's growth is the steady cost (the first also warms the allocator).
    let first = load::idle_subscriptions(&url, &admin, n, 16).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_subs = server.rss()?;
    let second = load::idle_subscriptions(&url, &admin, n, 16).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_subs2 = server.rss()?;
    println!(
        "idle subscriptions ({n} more, then {n} more, 16 sockets each): RSS {:.0} MB, then {:.0} MB -> {:.1} KB, then {:.1} KB per idle subscription",
        mb(rss_subs),
        mb(rss_subs2),
        (rss_subs.saturating_sub(rss_idle)) as f64 / n as f64 / 1e3,
        (rss_subs2.saturating_sub(rss_subs)) as f64 / n as f64 / 1e3
    );
    drop(first);
    drop(second);

    let cpu0 = server.cpu_secs()?;
    let quiet0 = load::metric(&url, "dcloud_heartbeats_quiet_total").await?;
    let t0 = Instant::now();
    tokio::time::sleep(opts.soak).await;
    let cpu = server.cpu_secs()? - cpu0;
    let beats = load::metric(&url, "dcloud_heartbeats_quiet_total").await? - quiet0;
    let secs = t0.elapsed().as_secs_f64();
    println!(
        "heartbeats: {:.0}/s over {secs:.0} s, server CPU {:.1}% of one core -> {:.1} µs CPU per heartbeat (incl. HTTP)",
        beats / secs,
        cpu / secs * 100.0,
        if beats > 0.0 { cpu / beats * 1e6 } else { 0.0 }
    );

    let cpu0 = server.cpu_secs()?;
    let r = load::deploy_load(&url, &admin, &env_id, deploys, opts.clients, opts.probes).await?;
    let cpu = server.cpu_secs()? - cpu0;
    r.print();
    println!(
        "server CPU during the deploys: {cpu:.1} s -> {:.0} µs per deployment (its deploy request, the agent's reports, the streams)",
        cpu / deploys as f64 * 1e6
    );
    let rss_loaded = server.rss()?;
    println!(
        "server RSS with {deploys} deployments: {:.0} MB",
        mb(rss_loaded)
    );
    let lost = load::metric(&url, "dcloud_nodes{state=\"lost\"}").await?;
    println!("nodes wrongly marked lost: {lost}");

    // Restart: the same data, the same port; the whole fleet comes back.
    let port = server.port;
    server.stop()?;
    let t = Instant::now();
    let server = Server::start(dir.path(), Some(port)).await?;
    load::wait_fleet(&url, n, Duration::from_secs(600)).await?;
    println!(
        "after a server restart: whole fleet reconnected, alive and subscribed in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let lost = load::metric(&url, "dcloud_nodes{state=\"lost\"}").await?;
    println!("nodes marked lost across the restart: {lost}");
    drop(fleet);
    drop(server);
    Ok(())
}
