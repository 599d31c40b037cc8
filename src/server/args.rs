//! `dcloud server`: its flags, the settings layering (flags over `DCLOUD_*` environment
//! variables over a JSON config file over defaults), and running until a signal or a
//! fatal storage error.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use serde::Deserialize;

use super::{start, Server, ServerConfig, TlsFiles};

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
    /// Keep the newest N snapshots, removing older ones (0: keep all) [default: 3].
    #[arg(long, env = "DCLOUD_KEEP_SNAPSHOTS")]
    pub keep_snapshots: Option<usize>,
    /// A node unheard of this long (ms) is lost [default: 15000].
    #[arg(long, env = "DCLOUD_NODE_TTL_MS")]
    pub node_ttl_ms: Option<i64>,
    /// How long a lost node's deployments wait for it to come back (ms) before they
    /// are placed elsewhere; 0 moves them at once [default: 300000].
    #[arg(long, env = "DCLOUD_LOST_NODE_GRACE_MS")]
    pub lost_node_grace_ms: Option<i64>,
    /// Keep a heartbeat in the log at most this often per node (ms) [default: 60000].
    #[arg(long, env = "DCLOUD_HEARTBEAT_LOG_INTERVAL_MS")]
    pub heartbeat_log_interval_ms: Option<i64>,
    /// How often silent nodes are looked for (ms) [default: 1000].
    #[arg(long, env = "DCLOUD_LIVENESS_TICK_MS")]
    pub liveness_tick_ms: Option<u64>,
    /// How often services expire and the pending queue is retried (ms) [default: 30000].
    #[arg(long, env = "DCLOUD_MAINTENANCE_MS")]
    pub maintenance_ms: Option<u64>,
    /// How often idle deployments are looked for (ms) [default: 30000].
    #[arg(long, env = "DCLOUD_IDLE_CHECK_MS")]
    pub idle_check_ms: Option<u64>,
    /// A container below this CPU (millicores) counts as idle [default: 50].
    #[arg(long, env = "DCLOUD_IDLE_CPU_MILLIS")]
    pub idle_cpu_millis: Option<u64>,
    /// Serve HTTPS/WSS with this PEM certificate chain (needs --tls-key).
    #[arg(long, env = "DCLOUD_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, env = "DCLOUD_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// A GraphQL request over HTTP running longer than this (ms) is answered
    /// OVERLOADED [default: 30000].
    #[arg(long, env = "DCLOUD_REQUEST_TIMEOUT_MS")]
    pub request_timeout_ms: Option<u64>,
    /// Open websocket connections per token [default: 64].
    #[arg(long, env = "DCLOUD_MAX_CONNECTIONS_PER_TOKEN")]
    pub max_connections_per_token: Option<usize>,
    /// Open subscriptions per token [default: 10000].
    #[arg(long, env = "DCLOUD_MAX_SUBSCRIPTIONS_PER_TOKEN")]
    pub max_subscriptions_per_token: Option<usize>,
    /// Failed authentications per client address per minute [default: 30].
    #[arg(long, env = "DCLOUD_AUTH_FAILURES_PER_MINUTE")]
    pub auth_failures_per_minute: Option<u32>,
    /// Writes (mutations) per token per second, bursts of twice that [default: 1000].
    #[arg(long, env = "DCLOUD_WRITES_PER_SECOND")]
    pub writes_per_second: Option<u32>,
    /// Most fields one GraphQL document may select, aliases included [default: 2000].
    #[arg(long, env = "DCLOUD_MAX_QUERY_FIELDS")]
    pub max_query_fields: Option<usize>,
    /// Refuse writes (STORAGE_FULL, reads go on) while the data directory's disk has
    /// less than this free; /metrics warns below four times it [default: 67108864].
    #[arg(long, env = "DCLOUD_STORAGE_RESERVE_BYTES")]
    pub storage_reserve_bytes: Option<u64>,
    /// Where signed checkpoints of the log's head are written (put it on another disk
    /// or ship it elsewhere; `audit verify --expect-head` reads it) [default:
    /// DATA/checkpoint.json].
    #[arg(long, env = "DCLOUD_CHECKPOINT_FILE")]
    pub checkpoint_file: Option<PathBuf>,
    /// Where the event log lives: `data` (DATA/log, this server alone) or a NATS
    /// JetStream cluster, `nats://HOST:PORT[,nats://HOST:PORT…]`, whose stream several
    /// servers share: one leads and writes, the others are standbys that follow it,
    /// serve reads and take over when it is gone [default: data].
    #[arg(long, env = "DCLOUD_EVENT_LOG")]
    pub log: Option<String>,
    /// The JetStream stream of the log (letters, digits, '-', '_') [default: dcloud].
    #[arg(long, env = "DCLOUD_LOG_STREAM")]
    pub log_stream: Option<String>,
    /// Replicas of the JetStream stream: 3 in a cluster, 1 on a single nats-server
    /// [default: 1].
    #[arg(long, env = "DCLOUD_LOG_REPLICAS")]
    pub log_replicas: Option<usize>,
    /// On a shared log: a leader that has not renewed its lease for this long (ms)
    /// has lost it, and a standby takes over [default: 3000].
    #[arg(long, env = "DCLOUD_LEASE_TTL_MS")]
    pub lease_ttl_ms: Option<u64>,
    /// On a shared log: the URL clients reach this server at, which standbys give as
    /// the leader's [default: http(s)://LISTEN].
    #[arg(long, env = "DCLOUD_ADVERTISE_URL")]
    pub advertise_url: Option<String>,
}

/// The `--config` file: the same settings as the flags, kebab-case keys.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct FileConfig {
    pub data: Option<PathBuf>,
    pub listen: Option<SocketAddr>,
    pub dev_mode: Option<bool>,
    pub snapshot_every: Option<u64>,
    pub keep_snapshots: Option<usize>,
    pub node_ttl_ms: Option<i64>,
    pub lost_node_grace_ms: Option<i64>,
    pub heartbeat_log_interval_ms: Option<i64>,
    pub liveness_tick_ms: Option<u64>,
    pub maintenance_ms: Option<u64>,
    pub idle_check_ms: Option<u64>,
    pub idle_cpu_millis: Option<u64>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub request_timeout_ms: Option<u64>,
    pub max_connections_per_token: Option<usize>,
    pub max_subscriptions_per_token: Option<usize>,
    pub auth_failures_per_minute: Option<u32>,
    pub writes_per_second: Option<u32>,
    pub max_query_fields: Option<usize>,
    pub storage_reserve_bytes: Option<u64>,
    pub checkpoint_file: Option<PathBuf>,
    pub log: Option<String>,
    pub log_stream: Option<String>,
    pub log_replicas: Option<usize>,
    pub lease_ttl_ms: Option<u64>,
    pub advertise_url: Option<String>,
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
            .or(file.data.clone())
            .context("no data directory: pass --data DIR (or set DCLOUD_DATA)")?;
        let mut c = ServerConfig::new(data);
        if let Some(v) = self.listen.or(file.listen) {
            c.listen = v;
        }
        c.dev_mode = self.dev_mode.or(file.dev_mode).unwrap_or(false);
        if let Some(v) = self.snapshot_every.or(file.snapshot_every) {
            c.snapshot_every = v;
        }
        if let Some(v) = self.keep_snapshots.or(file.keep_snapshots) {
            c.keep_snapshots = v;
        }
        if let Some(v) = self.node_ttl_ms.or(file.node_ttl_ms) {
            anyhow::ensure!(v > 0, "node-ttl-ms must be positive, got {v}");
            c.settings.node_ttl_ms = v;
        }
        if let Some(v) = self.lost_node_grace_ms.or(file.lost_node_grace_ms) {
            anyhow::ensure!(v >= 0, "lost-node-grace-ms must not be negative, got {v}");
            c.settings.lost_node_grace_ms = v;
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
        if let Some(v) = self.idle_check_ms.or(file.idle_check_ms) {
            anyhow::ensure!(v > 0, "idle-check-ms must be positive");
            c.idle_every = Duration::from_millis(v);
        }
        if let Some(v) = self.idle_cpu_millis.or(file.idle_cpu_millis) {
            c.idle_cpu_threshold_millis = v;
        }
        self.layer_edge(&file, &mut c)?;
        if let Some(v) = self.storage_reserve_bytes.or(file.storage_reserve_bytes) {
            c.storage_reserve_bytes = v;
        }
        if let Some(v) = self
            .checkpoint_file
            .clone()
            .or(file.checkpoint_file.clone())
        {
            c.checkpoint_file = Some(v);
        }
        self.layer_log(&file, &mut c)?;
        Ok(c)
    }

    /// Where the log lives, and on a shared one the lease and the advertised URL.
    fn layer_log(&self, file: &FileConfig, c: &mut ServerConfig) -> anyhow::Result<()> {
        let stream = self
            .log_stream
            .clone()
            .or(file.log_stream.clone())
            .unwrap_or_else(|| "dcloud".into());
        let replicas = self.log_replicas.or(file.log_replicas).unwrap_or(1);
        anyhow::ensure!(
            (1..=5).contains(&replicas),
            "log-replicas: 1 (a single nats-server) to 5, 3 in a cluster; got {replicas}"
        );
        let ttl = Duration::from_millis(self.lease_ttl_ms.or(file.lease_ttl_ms).unwrap_or(3000));
        let advertise = self.advertise_url.clone().or(file.advertise_url.clone());
        if let Some(a) = &advertise {
            anyhow::ensure!(
                a.starts_with("http://") || a.starts_with("https://"),
                "advertise-url: expected http(s)://HOST:PORT, got {a:?}"
            );
        }
        if let Some(v) = self.log.clone().or(file.log.clone()) {
            c.log = crate::store::LogLocation::parse(&v, &stream, replicas, ttl, advertise)?;
        }
        Ok(())
    }

    /// The edge's settings: TLS and the per-caller limits.
    fn layer_edge(&self, file: &FileConfig, c: &mut ServerConfig) -> anyhow::Result<()> {
        let cert = self.tls_cert.clone().or(file.tls_cert.clone());
        let key = self.tls_key.clone().or(file.tls_key.clone());
        c.tls = match (cert, key) {
            (Some(cert), Some(key)) => Some(TlsFiles { cert, key }),
            (None, None) => None,
            (Some(_), None) => {
                anyhow::bail!("--tls-cert needs --tls-key (the certificate's private key)")
            }
            (None, Some(_)) => anyhow::bail!("--tls-key needs --tls-cert (the certificate chain)"),
        };
        let l = &mut c.limits;
        if let Some(v) = self.request_timeout_ms.or(file.request_timeout_ms) {
            anyhow::ensure!(v > 0, "request-timeout-ms must be positive");
            l.request_timeout = Duration::from_millis(v);
        }
        let positive = |name: &str, v: usize| -> anyhow::Result<usize> {
            anyhow::ensure!(v > 0, "{name} must be positive");
            Ok(v)
        };
        if let Some(v) = self
            .max_connections_per_token
            .or(file.max_connections_per_token)
        {
            l.max_connections_per_token = positive("max-connections-per-token", v)?;
        }
        if let Some(v) = self
            .max_subscriptions_per_token
            .or(file.max_subscriptions_per_token)
        {
            l.max_subscriptions_per_token = positive("max-subscriptions-per-token", v)?;
        }
        if let Some(v) = self
            .auth_failures_per_minute
            .or(file.auth_failures_per_minute)
        {
            l.auth_failures_per_minute = positive("auth-failures-per-minute", v as usize)? as u32;
        }
        if let Some(v) = self.writes_per_second.or(file.writes_per_second) {
            l.writes_per_second = positive("writes-per-second", v as usize)? as u32;
        }
        if let Some(v) = self.max_query_fields.or(file.max_query_fields) {
            l.max_query_fields = positive("max-query-fields", v)?;
        }
        Ok(())
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
        let served = serve_until_signal(server).await;
        forget_server_file(&config.data);
        served?;
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
///
/// It also writes `DATA/server.json` with the URL, which is how client commands run
/// beside the data directory find a server listening elsewhere than the default.
#[allow(clippy::print_stdout)]
pub(super) fn announce(server: &Server, data: &Path, token_again: Option<&str>) {
    println!("dcloud server listening on {}", server.url());
    if let Err(e) = crate::client::write_server_file(data, &server.url()) {
        tracing::warn!(error = %e, "cannot write the server file; clients need --server");
    }
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

/// Removes `DATA/server.json` once the server stopped.
pub(super) fn forget_server_file(data: &Path) {
    let _ = std::fs::remove_file(data.join(crate::client::SERVER_FILE));
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
    use crate::server::Limits;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: ServerArgs,
    }

    #[test]
    fn flags_win_over_the_file_which_wins_over_defaults() {
        let file: FileConfig = serde_json::from_str(
            r#"{"data": "/from-file", "listen": "0.0.0.0:9000", "node-ttl-ms": 5000,
                "dev-mode": true, "lost-node-grace-ms": 0}"#,
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
        assert_eq!(c.settings.lost_node_grace_ms, 0);
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
    fn edge_limits_and_tls_layer_like_the_rest() {
        let file: FileConfig = serde_json::from_str(
            r#"{"data": "/d", "max-query-fields": 500, "writes-per-second": 7,
                "tls-cert": "/c.pem", "tls-key": "/k.pem"}"#,
        )
        .expect("file config");
        let args = Cli::try_parse_from([
            "x",
            "--max-query-fields",
            "300",
            "--request-timeout-ms",
            "250",
        ])
        .expect("flags")
        .args;
        let c = args.layer_over(file).expect("config");
        assert_eq!(c.limits.max_query_fields, 300, "the flag wins");
        assert_eq!(c.limits.writes_per_second, 7, "the file is read");
        assert_eq!(c.limits.request_timeout, Duration::from_millis(250));
        assert_eq!(
            c.limits.max_connections_per_token,
            Limits::default().max_connections_per_token
        );
        assert_eq!(
            c.tls,
            Some(TlsFiles {
                cert: "/c.pem".into(),
                key: "/k.pem".into()
            })
        );
        let half = Cli::try_parse_from(["x", "--data", "/d", "--tls-cert", "/c.pem"])
            .expect("flags")
            .args;
        let err = half.layer_over(FileConfig::default()).expect_err("no key");
        assert!(err.to_string().contains("--tls-key"), "{err}");
        let zero = Cli::try_parse_from(["x", "--data", "/d", "--writes-per-second", "0"])
            .expect("flags")
            .args;
        let err = zero.layer_over(FileConfig::default()).expect_err("zero");
        assert!(err.to_string().contains("writes-per-second"), "{err}");
    }

    #[test]
    fn a_shared_log_is_read_from_flags_and_bad_values_name_the_setting() {
        let args = Cli::try_parse_from([
            "x",
            "--data",
            "/d",
            "--log",
            "nats://10.0.0.1:4222,nats://10.0.0.2:4222",
            "--log-replicas",
            "3",
            "--lease-ttl-ms",
            "2000",
            "--advertise-url",
            "http://10.0.0.11:7070",
        ])
        .expect("flags")
        .args;
        let c = args.layer_over(FileConfig::default()).expect("config");
        let crate::store::LogLocation::JetStream(shared) = c.log else {
            panic!("a JetStream log");
        };
        assert_eq!(
            shared.jetstream.url,
            "nats://10.0.0.1:4222,nats://10.0.0.2:4222"
        );
        assert_eq!(shared.jetstream.stream, "dcloud");
        assert_eq!(shared.jetstream.replicas, 3);
        assert_eq!(shared.lease_ttl, Duration::from_millis(2000));
        assert_eq!(shared.advertise.as_deref(), Some("http://10.0.0.11:7070"));

        let file: FileConfig =
            serde_json::from_str(r#"{"data": "/d", "log": "data"}"#).expect("file config");
        let c = ServerArgs::default().layer_over(file).expect("config");
        assert!(matches!(c.log, crate::store::LogLocation::Data));

        for (flags, names) in [
            (vec!["--log", "http://10.0.0.1:4222"], "log:"),
            (
                vec!["--log", "nats://a:4222", "--log-replicas", "9"],
                "log-replicas",
            ),
            (
                vec!["--log", "nats://a:4222", "--lease-ttl-ms", "10"],
                "lease-ttl-ms",
            ),
            (
                vec!["--log", "nats://a:4222", "--advertise-url", "a:1"],
                "advertise-url",
            ),
        ] {
            let mut argv = vec!["x", "--data", "/d"];
            argv.extend(flags);
            let args = Cli::try_parse_from(argv).expect("flags").args;
            let err = args.layer_over(FileConfig::default()).expect_err("refused");
            assert!(err.to_string().contains(names), "{names}: {err}");
        }
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
