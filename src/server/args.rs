//! `dcloud server`: its flags, the settings layering (flags over `DCLOUD_*` environment
//! variables over a JSON config file over defaults), and running until a signal or a
//! fatal storage error.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use serde::Deserialize;

use super::{start, Server, ServerConfig};

/// `dcloud server` flags. Each also reads a `DCLOUD_*` environment variable, and then
/// the `--config` file; flags win over the environment, which wins over the file.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ServerArgs {
    /// Data directory (the event log and admin.token).
    #[arg(long, env = "DCLOUD_DATA")]
    pub data: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:7070].
    #[arg(long, env = "DCLOUD_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// A JSON settings file (keys as the flags: "data", "listen", "node-ttl-ms", …).
    #[arg(long, env = "DCLOUD_CONFIG")]
    pub config: Option<PathBuf>,
    /// GraphiQL and introspection for every caller (local development only).
    #[arg(long, env = "DCLOUD_DEV_MODE", num_args = 0..=1, default_missing_value = "true")]
    pub dev_mode: Option<bool>,
    /// Store a snapshot of the state every N events (0: never) [default: 10000].
    #[arg(long, env = "DCLOUD_SNAPSHOT_EVERY")]
    pub snapshot_every: Option<u64>,
    /// A node unheard of this long (ms) is lost [default: 15000].
    #[arg(long, env = "DCLOUD_NODE_TTL_MS")]
    pub node_ttl_ms: Option<i64>,
    /// Keep a heartbeat in the log at most this often per node (ms) [default: 60000].
    #[arg(long, env = "DCLOUD_HEARTBEAT_LOG_INTERVAL_MS")]
    pub heartbeat_log_interval_ms: Option<i64>,
    /// How often silent nodes are looked for (ms) [default: 1000].
    #[arg(long, env = "DCLOUD_LIVENESS_TICK_MS")]
    pub liveness_tick_ms: Option<u64>,
    /// How often services expire and the pending queue is retried (ms) [default: 30000].
    #[arg(long, env = "DCLOUD_MAINTENANCE_MS")]
    pub maintenance_ms: Option<u64>,
    /// Refuse writes (STORAGE_FULL, reads go on) while the data directory's disk has
    /// less than this free; /metrics warns below four times it [default: 67108864].
    #[arg(long, env = "DCLOUD_STORAGE_RESERVE_BYTES")]
    pub storage_reserve_bytes: Option<u64>,
    /// Where signed checkpoints of the log's head are written (put it on another disk
    /// or ship it elsewhere; `audit verify --expect-head` reads it) [default:
    /// DATA/checkpoint.json].
    #[arg(long, env = "DCLOUD_CHECKPOINT_FILE")]
    pub checkpoint_file: Option<PathBuf>,
}

/// The `--config` file: the same settings as the flags, kebab-case keys.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct FileConfig {
    pub data: Option<PathBuf>,
    pub listen: Option<SocketAddr>,
    pub dev_mode: Option<bool>,
    pub snapshot_every: Option<u64>,
    pub node_ttl_ms: Option<i64>,
    pub heartbeat_log_interval_ms: Option<i64>,
    pub liveness_tick_ms: Option<u64>,
    pub maintenance_ms: Option<u64>,
    pub storage_reserve_bytes: Option<u64>,
    pub checkpoint_file: Option<PathBuf>,
}

impl FileConfig {
    pub fn read(path: &Path) -> anyhow::Result<FileConfig> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the config file {}", path.display()))?;
        serde_json::from_str(&text)
            .with_context(|| format!("parsing the config file {} (JSON)", path.display()))
    }
}

impl ServerArgs {
    /// The settings: these flags (already over the environment) over the config file
    /// over the defaults.
    pub fn resolve(&self) -> anyhow::Result<ServerConfig> {
        let file = match &self.config {
            Some(path) => FileConfig::read(path)?,
            None => FileConfig::default(),
        };
        self.layer_over(file)
    }

    fn layer_over(&self, file: FileConfig) -> anyhow::Result<ServerConfig> {
        let data = self
            .data
            .clone()
            .or(file.data)
            .context("no data directory: pass --data DIR (or set DCLOUD_DATA)")?;
        let mut c = ServerConfig::new(data);
        if let Some(v) = self.listen.or(file.listen) {
            c.listen = v;
        }
        c.dev_mode = self.dev_mode.or(file.dev_mode).unwrap_or(false);
        if let Some(v) = self.snapshot_every.or(file.snapshot_every) {
            c.snapshot_every = v;
        }
        if let Some(v) = self.node_ttl_ms.or(file.node_ttl_ms) {
            anyhow::ensure!(v > 0, "node-ttl-ms must be positive, got {v}");
            c.settings.node_ttl_ms = v;
        }
        if let Some(v) = self
            .heartbeat_log_interval_ms
            .or(file.heartbeat_log_interval_ms)
        {
            c.settings.heartbeat_log_interval_ms = v;
        }
        if let Some(v) = self.liveness_tick_ms.or(file.liveness_tick_ms) {
            anyhow::ensure!(v > 0, "liveness-tick-ms must be positive");
            c.liveness_tick = Duration::from_millis(v);
        }
        if let Some(v) = self.maintenance_ms.or(file.maintenance_ms) {
            anyhow::ensure!(v > 0, "maintenance-ms must be positive");
            c.maintenance_every = Duration::from_millis(v);
        }
        if let Some(v) = self.storage_reserve_bytes.or(file.storage_reserve_bytes) {
            c.storage_reserve_bytes = v;
        }
        if let Some(v) = self.checkpoint_file.clone().or(file.checkpoint_file) {
            c.checkpoint_file = Some(v);
        }
        Ok(c)
    }
}

/// `dcloud server`: runs until SIGINT/SIGTERM (exit 0) or a fatal storage error (an
/// error, so a non-zero exit).
pub fn run_server(args: ServerArgs) -> anyhow::Result<ExitCode> {
    crate::init_tracing("info");
    let config = args.resolve()?;
    runtime()?.block_on(async move {
        let server = start(config.clone()).await?;
        announce(&server, &config.data, None);
        serve_until_signal(server).await?;
        Ok(ExitCode::SUCCESS)
    })
}

pub(super) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("dcloud-server")
        .build()
        .context("starting the async runtime")
}

/// Prints where the server listens and, on the start that created it, the admin token
/// (the only time it is printed; it is also in `DATA/admin.token`).
#[allow(clippy::print_stdout)]
pub(super) fn announce(server: &Server, data: &Path, token_again: Option<&str>) {
    println!("dcloud server listening on {}", server.url());
    let file = data.join(super::ADMIN_TOKEN_FILE);
    if let Some(token) = &server.admin_token {
        println!(
            "admin token (shown once; also in {}): {token}",
            file.display()
        );
    } else if let Some(token) = token_again {
        println!("admin token (from {}): {token}", file.display());
    }
}

/// Waits for SIGINT or SIGTERM (then stops cleanly) or a fatal error.
pub(super) async fn serve_until_signal(server: Server) -> anyhow::Result<()> {
    let stopper = server.stopper();
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("signal received; stopping");
        stopper.stop();
    });
    server.wait().await
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: ServerArgs,
    }

    #[test]
    fn flags_win_over_the_file_which_wins_over_defaults() {
        let file: FileConfig = serde_json::from_str(
            r#"{"data": "/from-file", "listen": "0.0.0.0:9000", "node-ttl-ms": 5000,
                "dev-mode": true}"#,
        )
        .expect("file config");
        let args = Cli::try_parse_from(["x", "--listen", "127.0.0.1:1234", "--dev-mode=false"])
            .expect("flags")
            .args;
        let c = args.layer_over(file).expect("config");
        assert_eq!(
            c.listen,
            "127.0.0.1:1234".parse::<SocketAddr>().expect("addr")
        );
        assert!(!c.dev_mode);
        assert_eq!(c.data, PathBuf::from("/from-file"));
        assert_eq!(c.settings.node_ttl_ms, 5000);
        assert_eq!(c.snapshot_every, ServerConfig::new("x").snapshot_every);
        assert_eq!(c.liveness_tick, Duration::from_secs(1));

        let bare = Cli::try_parse_from(["x", "--data", "/d", "--dev-mode"])
            .expect("flags")
            .args;
        let c = bare.layer_over(FileConfig::default()).expect("config");
        assert!(c.dev_mode);
        assert_eq!(
            c.listen,
            "127.0.0.1:7070".parse::<SocketAddr>().expect("addr")
        );
    }

    #[test]
    fn bad_files_and_missing_data_are_clear_errors() {
        let unknown = serde_json::from_str::<FileConfig>(r#"{"lisen": "x"}"#);
        assert!(unknown.is_err_and(|e| e.to_string().contains("unknown field `lisen`")));
        let err = ServerArgs::default()
            .layer_over(FileConfig::default())
            .expect_err("no data dir");
        assert!(err.to_string().contains("--data"), "{err}");
    }
}
