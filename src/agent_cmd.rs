//! `dcloud agent`: runs a node agent (Docker driver) or a fleet of simulated nodes
//! (`--driver sim --sim-nodes N`) against a server, and `spawn_local` for `dcloud dev`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context};
use dcloud_agent::fingerprint::{load_or_create_node_id, primary_address};
use dcloud_agent::runtime::{
    run_node_pairs, run_nodes, ClientTls, NodeSpec, RuntimeConfig, Shared, UsageSource,
};
use dcloud_agent::{
    fingerprint, DockerConfig, DockerDriver, Driver, FingerprintConfig, NodeSampler, Reserved,
    SimConfig, SimDriver,
};
use dcloud_events::model::Resources;
use dcloud_projections::config::{parse_cpu_millis, parse_duration_ms, parse_size};

use crate::client::Global;

/// Which engine runs the containers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AgentDriver {
    Docker,
    Sim,
}

/// How simulated nodes reach the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SimConnections {
    /// One websocket for every node of the process.
    Shared,
    /// One websocket per node.
    PerNode,
}

/// `dcloud agent` flags (`--server` and `--token` are global).
#[derive(Debug, Clone, clap::Args)]
pub struct AgentArgs {
    /// How containers are run (`sim`: in memory, for scale tests).
    #[arg(long, value_enum, default_value_t = AgentDriver::Docker)]
    pub driver: AgentDriver,
    /// Node id (default: made on first start and kept in `STATE_DIR/node-id`, so two
    /// agents on one host with their own state directories never share one).
    #[arg(long)]
    pub node_id: Option<String>,
    /// The address users reach this node at: published ports are shown as
    /// `http://ADDRESS:PORT/` (default: the primary interface's IPv4 address; simulated
    /// nodes: 127.0.0.1).
    #[arg(long)]
    pub address: Option<String>,
    /// The host address published ports bind to (default: `--address` when it is an IP
    /// address; `0.0.0.0` binds every interface).
    #[arg(long)]
    pub bind_address: Option<String>,
    /// Simulated nodes in this process (`--driver sim`).
    #[arg(long, default_value_t = 1)]
    pub sim_nodes: usize,
    /// Number of the first simulated node (several agent processes can share one
    /// fleet: `--sim-first 0`, `--sim-first 1000`, … with `--sim-nodes 1000`).
    #[arg(long, default_value_t = 0)]
    pub sim_first: usize,
    /// `per-node`: each simulated node opens its own websocket, as separate agents
    /// do; `shared`: one for the whole process.
    #[arg(long, value_enum, default_value_t = SimConnections::Shared)]
    pub sim_connections: SimConnections,
    /// CPUs of each simulated node.
    #[arg(long, default_value = "16")]
    pub sim_cpu: String,
    /// Memory of each simulated node.
    #[arg(long, default_value = "64G")]
    pub sim_memory: String,
    /// Storage of each simulated node.
    #[arg(long, default_value = "500G")]
    pub sim_storage: String,
    /// GPUs of each simulated node.
    #[arg(long, default_value_t = 0)]
    pub sim_gpus: u32,
    /// Where the agent keeps its state: its node id and the last assignment seq per
    /// node (default for the node id: `$XDG_STATE_HOME/dcloud-agent`, else
    /// `~/.local/state/dcloud-agent`; the seq is then kept in memory only).
    #[arg(long, visible_alias = "state-dir", env = "DCLOUD_AGENT_DATA")]
    pub data: Option<PathBuf>,
    /// Datasets on this node: `<root>/<category>/<db>/<dataset>@<version>`.
    #[arg(long, default_value = "/var/lib/dcloud/datasets")]
    pub dataset_root: PathBuf,
    /// Docker's data directory: its disk's size is the node's storage capacity.
    #[arg(long, default_value = "/var/lib/docker")]
    pub docker_data: PathBuf,
    /// Docker socket (default: `DOCKER_HOST`, else unix:///var/run/docker.sock).
    #[arg(long)]
    pub docker_host: Option<String>,
    /// CPU held back for the host (`1`, `500m`).
    #[arg(long, default_value = "0")]
    pub reserve_cpu: String,
    /// Memory held back for the host (`2G`).
    #[arg(long, default_value = "0")]
    pub reserve_memory: String,
    /// Storage held back for the host.
    #[arg(long, default_value = "0")]
    pub reserve_storage: String,
    /// Time between heartbeats (`5s`, `500ms`).
    #[arg(long, default_value = "5s")]
    pub heartbeat_interval: String,
    /// Grace between SIGTERM and SIGKILL when stopping a container.
    #[arg(long, default_value = "10s")]
    pub stop_grace: String,
    /// How often the storage of running deployments is measured against the sizes
    /// asked for (`60s`).
    #[arg(long, default_value = "60s")]
    pub volume_interval: String,
    /// Join with this join token: each node of the process is given its own agent
    /// token, kept in --state-dir (`node-<id>.token`, mode 0600) and used from then on.
    #[arg(long, env = "DCLOUD_JOIN_TOKEN", hide_env_values = true)]
    pub join_token: Option<String>,
}

fn size(flag: &str, text: &str) -> anyhow::Result<u64> {
    if text.trim() == "0" {
        return Ok(0);
    }
    parse_size(text).map_err(|e| anyhow!("{flag}: {text:?} is not a size ({e:?}); use 512M, 2G"))
}

fn cpu(flag: &str, text: &str) -> anyhow::Result<u64> {
    parse_cpu_millis(text)
        .map_err(|e| anyhow!("{flag}: {text:?} is not a cpu count ({e:?}); use 2, 0.5, 500m"))
}

fn duration(flag: &str, text: &str) -> anyhow::Result<Duration> {
    parse_duration_ms(text)
        .map(Duration::from_millis)
        .map_err(|e| anyhow!("{flag}: {text:?} is not a duration ({e:?}); use 5s, 500ms"))
}

impl AgentArgs {
    /// Defaults for `n` simulated nodes (what `dcloud dev --driver sim` runs).
    pub fn sim(n: usize) -> AgentArgs {
        AgentArgs {
            driver: AgentDriver::Sim,
            node_id: None,
            address: None,
            bind_address: None,
            sim_nodes: n,
            sim_first: 0,
            sim_connections: SimConnections::Shared,
            sim_cpu: "16".into(),
            sim_memory: "64G".into(),
            sim_storage: "500G".into(),
            sim_gpus: 0,
            data: None,
            dataset_root: PathBuf::from("/var/lib/dcloud/datasets"),
            docker_data: PathBuf::from("/var/lib/docker"),
            docker_host: None,
            reserve_cpu: "0".into(),
            reserve_memory: "0".into(),
            reserve_storage: "0".into(),
            heartbeat_interval: "5s".into(),
            stop_grace: "10s".into(),
            volume_interval: "60s".into(),
            join_token: None,
        }
    }

    fn runtime_config(&self) -> anyhow::Result<RuntimeConfig> {
        Ok(RuntimeConfig {
            heartbeat_interval: duration("--heartbeat-interval", &self.heartbeat_interval)?,
            grace: duration("--stop-grace", &self.stop_grace)?,
            volume_interval: duration("--volume-interval", &self.volume_interval)?,
            data_dir: self.data.clone(),
            connection_per_node: self.driver == AgentDriver::Sim
                && self.sim_connections == SimConnections::PerNode,
            ..RuntimeConfig::default()
        })
    }
}

/// The nodes this process acts for: fingerprints and drivers. A Docker engine that
/// cannot be reached is an error naming the socket.
pub async fn build_nodes(args: &AgentArgs) -> anyhow::Result<Vec<NodeSpec>> {
    match args.driver {
        AgentDriver::Sim => {
            let per_node = Resources {
                cpu_millis: cpu("--sim-cpu", &args.sim_cpu)?,
                memory_bytes: size("--sim-memory", &args.sim_memory)?,
                gpus: args.sim_gpus,
                storage_bytes: size("--sim-storage", &args.sim_storage)?,
            };
            let n = args.sim_nodes.max(1);
            let fleet = SimDriver::fleet_from(args.sim_first, n, &per_node, &SimConfig::default());
            let address = args.address.clone().unwrap_or_else(|| "127.0.0.1".into());
            let heartbeat = duration("--heartbeat-interval", &args.heartbeat_interval)?;
            Ok(fleet
                .into_iter()
                .enumerate()
                .map(|(i, driver)| NodeSpec {
                    node_id: driver.node_id().to_string(),
                    fingerprint: driver.fingerprint().clone(),
                    driver: Arc::new(driver) as Arc<dyn Driver>,
                    usage: UsageSource::Containers,
                    heartbeat_offset: heartbeat.mul_f64(i as f64 / n as f64),
                    address: Some(address.clone()),
                })
                .collect())
        }
        AgentDriver::Docker => {
            let node_id = match &args.node_id {
                Some(id) => id.clone(),
                None => {
                    let dir = args.data.clone().unwrap_or_else(default_state_dir);
                    load_or_create_node_id(&dir, fresh_node_id)
                        .context("keeping this agent's node id (or pass --node-id)")?
                }
            };
            let config = FingerprintConfig {
                node_id: Some(node_id),
                reserved: Reserved {
                    cpu_millis: cpu("--reserve-cpu", &args.reserve_cpu)?,
                    memory_bytes: size("--reserve-memory", &args.reserve_memory)?,
                    storage_bytes: size("--reserve-storage", &args.reserve_storage)?,
                    gpus: 0,
                },
                data_dir: if args.docker_data.exists() {
                    args.docker_data.clone()
                } else {
                    PathBuf::from("/")
                },
                dataset_root: Some(args.dataset_root.clone()),
                labels: BTreeMap::new(),
                detect_gpus: true,
            };
            let (node_id, fp) = fingerprint(&config).context("fingerprinting this node")?;
            let address = args
                .address
                .clone()
                .or_else(primary_address)
                .unwrap_or_else(|| "127.0.0.1".into());
            let mut docker = DockerConfig::new(node_id.clone());
            docker.host = args.docker_host.clone();
            docker.dataset_root = args.dataset_root.clone();
            docker.bind_address = bind_address(args.bind_address.as_deref(), &address)?;
            let driver = DockerDriver::connect(docker).await?;
            let sampler = NodeSampler::new()?;
            Ok(vec![NodeSpec {
                node_id,
                fingerprint: fp,
                driver: Arc::new(driver),
                usage: UsageSource::Host(Box::new(sampler)),
                heartbeat_offset: Duration::ZERO,
                address: Some(address),
            }])
        }
    }
}

/// Where the node id is kept when no `--state-dir` is given.
fn default_state_dir() -> PathBuf {
    let base = std::env::var_os("XDG_STATE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))
        .unwrap_or_else(|| PathBuf::from("/var/lib/dcloud"));
    base.join("dcloud-agent")
}

/// A new node id: `n-` and 12 random hex digits.
fn fresh_node_id() -> String {
    let hex = uuid::Uuid::new_v4().simple().to_string();
    format!("n-{}", &hex[..12])
}

/// The host IP published ports bind to: `--bind-address` (`0.0.0.0` or `::`: every
/// interface), else the node's address when it is an IP, else every interface.
fn bind_address(flag: Option<&str>, address: &str) -> anyhow::Result<Option<String>> {
    match flag {
        Some(b) => {
            let ip: std::net::IpAddr = b.parse().map_err(|_| {
                anyhow!("--bind-address: {b:?} is not an IP address; use 10.0.0.5 or 0.0.0.0")
            })?;
            Ok((!ip.is_unspecified()).then(|| ip.to_string()))
        }
        None => Ok(address
            .parse::<std::net::IpAddr>()
            .ok()
            .map(|ip| ip.to_string())),
    }
}

/// Runs the agent until a fatal error (or ctrl-c). With a join token, `token` may be
/// empty: every node joins (or reuses the token it got when it joined).
pub async fn run_async(server: &str, token: &str, args: &AgentArgs) -> anyhow::Result<()> {
    let config = args.runtime_config()?;
    let nodes = build_nodes(args).await?;
    let tls = ClientTls::from_optional(crate::client::ca_file().as_deref())?;
    let shared = Shared::with_tls(server, token, config, tls)?;
    let Some(join) = &args.join_token else {
        run_nodes(Arc::new(shared), nodes).await?;
        return Ok(());
    };
    let dir = args
        .data
        .clone()
        .context("--join-token needs --state-dir DIR (where each node keeps its token)")?;
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let anonymous = shared.with_token("");
    let mut pairs = Vec::with_capacity(nodes.len());
    for spec in nodes {
        let token = node_token(&anonymous, join, &dir, &spec.node_id).await?;
        pairs.push((Arc::new(shared.with_token(&token)), spec));
    }
    run_node_pairs(pairs).await?;
    Ok(())
}

/// The file a joined node keeps its own token in.
pub fn node_token_path(dir: &Path, node_id: &str) -> PathBuf {
    dir.join(format!("node-{node_id}.token"))
}

/// The node's own token: the one kept in `dir` since it joined, else a new one from
/// `joinNode`, written there with mode 0600 before it is used.
async fn node_token(
    anonymous: &Shared,
    join: &str,
    dir: &Path,
    node_id: &str,
) -> anyhow::Result<String> {
    let path = node_token_path(dir, node_id);
    if let Ok(text) = std::fs::read_to_string(&path) {
        let text = text.trim();
        if !text.is_empty() {
            return Ok(text.to_string());
        }
    }
    let token = anonymous
        .client
        .join_node(join, node_id)
        .await
        .with_context(|| format!("joining node {node_id}"))?;
    crate::server::write_secret_file(&path, &token)
        .with_context(|| format!("keeping the node's token in {}", path.display()))?;
    tracing::info!(%node_id, file = %path.display(), "joined; the node's token is kept");
    Ok(token)
}

pub fn run(args: AgentArgs, global: &Global) -> anyhow::Result<ExitCode> {
    crate::init_tracing("info");
    // A simulated fleet holds connections for many nodes.
    crate::fd_limit::raise_fd_limit();
    let token = match (&global.token, &args.join_token) {
        (Some(t), _) => t.clone(),
        (None, Some(_)) => String::new(),
        (None, None) => anyhow::bail!(
            "the agent needs a token: --token or DCLOUD_TOKEN (an agent token for its node, or an admin token), or --join-token"
        ),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        tokio::select! {
            r = run_async(&global.server, &token, &args) => r.map(|()| ExitCode::SUCCESS),
            _ = tokio::signal::ctrl_c() => Ok(ExitCode::SUCCESS),
        }
    })
}

/// Runs an agent inside the current (server's) process: `driver` is `docker` or
/// `sim`; `sim_nodes` simulated nodes with the default capacity for `sim`. Call it
/// inside a tokio runtime; start-up errors (no Docker engine) come out of the handle.
pub fn spawn_local(
    server_url: String,
    token: String,
    driver: &str,
    sim_nodes: usize,
) -> anyhow::Result<tokio::task::JoinHandle<anyhow::Result<()>>> {
    let mut args = AgentArgs::sim(sim_nodes);
    args.driver = match driver {
        "sim" => AgentDriver::Sim,
        "docker" => AgentDriver::Docker,
        other => anyhow::bail!("unknown agent driver {other:?}: use docker or sim"),
    };
    let config = args.runtime_config()?;
    let shared = Arc::new(Shared::new(&server_url, &token, config)?);
    Ok(tokio::spawn(async move {
        let nodes = build_nodes(&args).await?;
        run_nodes(shared, nodes).await?;
        Ok(())
    }))
}
