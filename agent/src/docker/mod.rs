//! The Docker driver on bollard 0.21: connection and version negotiation, retries with
//! backoff while the engine is away, and the `Driver` implementation whose parts live
//! in `container` (create body), `build` (images), `lifecycle` and `events`.

mod build;
mod container;
mod events;
mod lifecycle;
mod ready;
mod sessions;
mod volumes;

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bollard::errors::Error as BollardError;
use bollard::{Docker, API_DEFAULT_VERSION};
use dcloud_events::model::ContainerUsage;
use futures::future::BoxFuture;
use futures::FutureExt;
use tracing::{info, warn};

use crate::driver::{Assignment, Driver, Observed, ReportSender};
use crate::error::AgentError;

pub use build::BuildLog;
pub use container::{container_body, persistent_volume_name, DEFAULT_CAP_ADD};
pub use events::{translate, EngineEvent, OOM_SETTLE, OOM_WARNING};
pub use lifecycle::{exit_code_from_status, usage_from_stats};

/// The socket used when neither the config nor `DOCKER_HOST` names one.
pub const DEFAULT_DOCKER_HOST: &str = "unix:///var/run/docker.sock";
/// Seconds bollard waits for an answer's headers (streams are not cut by it).
const REQUEST_TIMEOUT_S: u64 = 120;

/// How the Docker driver runs containers on this node.
#[derive(Debug, Clone)]
pub struct DockerConfig {
    /// This node's id: the value of the `dcloud.node` label on everything it creates.
    pub node_id: String,
    /// `unix:///path`, `tcp://host:port` or `http://…`; `None` means `DOCKER_HOST`, else
    /// [`DEFAULT_DOCKER_HOST`].
    pub host: Option<String>,
    /// Node dataset root: the dataset `category/db/dataset@version` is the directory
    /// `<dataset_root>/category/db/dataset@version`, bind-mounted read-only at
    /// `/datasets/category/db/dataset@version`.
    pub dataset_root: PathBuf,
    /// Most processes (threads included) a container may hold.
    pub pids_limit: i64,
    /// Capabilities added back after dropping ALL (see [`DEFAULT_CAP_ADD`]).
    pub cap_add: Vec<String>,
    /// Retries of calls that fail because the engine is away.
    pub backoff: Backoff,
    /// The host address published ports bind to (`None`: every interface).
    pub bind_address: Option<String>,
    /// The cluster whose containers this driver owns ([`crate::driver::LABEL_CLUSTER`]);
    /// set from the server once the agent registered (`Driver::set_cluster`).
    pub cluster_id: Option<String>,
    /// The engine's `local` volumes take a `size` (a filesystem quota): probed at
    /// connect.
    pub volume_quota: bool,
}

impl DockerConfig {
    pub fn new(node_id: impl Into<String>) -> Self {
        DockerConfig {
            node_id: node_id.into(),
            host: None,
            dataset_root: PathBuf::from("/var/lib/dcloud/datasets"),
            pids_limit: 4096,
            cap_add: DEFAULT_CAP_ADD.iter().map(|c| c.to_string()).collect(),
            backoff: Backoff::default(),
            bind_address: None,
            cluster_id: None,
            volume_quota: false,
        }
    }
}

/// Exponential backoff: `initial`, doubled per attempt, capped at `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Tries in all (the first call included).
    pub attempts: u32,
    pub initial: Duration,
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            attempts: 5,
            initial: Duration::from_millis(250),
            max: Duration::from_secs(5),
        }
    }
}

impl Backoff {
    /// Delay before retry number `retry` (1-based).
    pub fn delay(&self, retry: u32) -> Duration {
        let factor = 1u32 << retry.saturating_sub(1).min(16);
        self.initial.saturating_mul(factor).min(self.max)
    }
}

/// Runs deployments as Docker containers. Cheap to share behind an `Arc`.
pub struct DockerDriver {
    docker: Docker,
    config: DockerConfig,
    /// Where we connected, for error messages.
    host: String,
    engine_ok: AtomicBool,
    /// Running `watch` calls; while there is one, it reports starts (see `events`).
    watchers: AtomicUsize,
    /// One build at a time per image tag.
    build_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// The cluster whose containers this driver owns (see `Driver::set_cluster`).
    cluster: std::sync::RwLock<Option<String>>,
    /// Whether the engine's local volumes take a size (probed at connect).
    volume_quota: bool,
}

/// `explicit`, else `DOCKER_HOST`, else the default socket.
pub fn resolve_host(explicit: Option<&str>) -> String {
    explicit
        .map(str::to_string)
        .or_else(|| std::env::var("DOCKER_HOST").ok().filter(|h| !h.is_empty()))
        .unwrap_or_else(|| DEFAULT_DOCKER_HOST.to_string())
}

impl DockerDriver {
    /// Connects and negotiates the API version. Fails at once, naming the socket, when
    /// the socket file is missing or the engine does not answer.
    pub async fn connect(config: DockerConfig) -> Result<Self, AgentError> {
        let host = resolve_host(config.host.as_deref());
        let unavailable = |reason: String| AgentError::EngineUnavailable {
            socket: host.clone(),
            reason,
        };
        let docker = if let Some(path) = host.strip_prefix("unix://").or_else(|| host.strip_prefix('/').map(|_| host.as_str())) {
            if !std::path::Path::new(path).exists() {
                return Err(unavailable(format!(
                    "socket file {path} does not exist (is the docker daemon running? set DOCKER_HOST to use another socket)"
                )));
            }
            Docker::connect_with_unix(path, REQUEST_TIMEOUT_S, API_DEFAULT_VERSION)
        } else if host.starts_with("tcp://") || host.starts_with("http://") {
            Docker::connect_with_http(&host, REQUEST_TIMEOUT_S, API_DEFAULT_VERSION)
        } else {
            return Err(unavailable(
                "unsupported scheme: use unix://, tcp:// or http://".to_string(),
            ));
        }
        .map_err(|e| unavailable(e.to_string()))?;
        let docker = docker
            .negotiate_version()
            .await
            .map_err(|e| unavailable(e.to_string()))?;
        let version = docker.client_version();
        let volume_quota = config.volume_quota || volumes::probe_quota(&docker).await;
        info!(%host, api = %version, node_id = %config.node_id, volume_quota, "connected to docker");
        if !volume_quota {
            info!("the engine's volumes take no size (no filesystem quota under them): storage sizes are watched, not enforced");
        }
        Ok(DockerDriver {
            docker,
            cluster: std::sync::RwLock::new(config.cluster_id.clone()),
            config,
            host,
            engine_ok: AtomicBool::new(true),
            watchers: AtomicUsize::new(0),
            build_locks: Mutex::new(HashMap::new()),
            volume_quota,
        })
    }

    /// The cluster this driver owns containers of (`None` before it was told).
    pub fn cluster(&self) -> Option<String> {
        self.cluster.read().map(|c| c.clone()).unwrap_or_default()
    }

    /// The configuration with what was learnt since connecting (cluster, quota).
    fn current_config(&self) -> DockerConfig {
        let mut c = self.config.clone();
        c.cluster_id = self.cluster();
        c.volume_quota = self.volume_quota;
        c
    }

    /// Label filters selecting what this node of this cluster owns.
    fn own_filters(&self) -> Vec<String> {
        let mut filters = vec![format!(
            "{}={}",
            crate::driver::LABEL_NODE,
            self.config.node_id
        )];
        if let Some(cluster) = self.cluster() {
            filters.push(format!("{}={cluster}", crate::driver::LABEL_CLUSTER));
        }
        filters
    }

    /// Whether a container with these labels is this node's of this cluster: its node
    /// label is ours and its cluster label is ours (or both are absent, for a driver
    /// not told its cluster).
    fn owns(&self, labels: Option<&HashMap<String, String>>) -> bool {
        let label = |k: &str| labels.and_then(|l| l.get(k)).cloned();
        label(crate::driver::LABEL_NODE).as_deref() == Some(self.config.node_id.as_str())
            && label(crate::driver::LABEL_CLUSTER) == self.cluster()
    }

    /// The bollard client (for callers that need an API this driver does not wrap).
    pub fn docker(&self) -> &Docker {
        &self.docker
    }

    pub fn config(&self) -> &DockerConfig {
        &self.config
    }

    /// Runs `f`, retrying with backoff while the engine is unreachable; maps errors.
    async fn call<T, F, Fut>(&self, op: &'static str, mut f: F) -> Result<T, AgentError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, BollardError>>,
    {
        let mut attempt = 1;
        loop {
            match f().await {
                Ok(v) => {
                    self.set_engine_ok(true);
                    return Ok(v);
                }
                Err(e) if is_transport(&e) => {
                    self.set_engine_ok(false);
                    if attempt >= self.config.backoff.attempts {
                        return Err(self.unavailable(&e));
                    }
                    let delay = self.config.backoff.delay(attempt);
                    warn!(op, attempt, ?delay, error = %e, "docker unreachable: retrying");
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
                Err(e) => {
                    self.set_engine_ok(true);
                    return Err(api_error(op, e));
                }
            }
        }
    }

    fn set_engine_ok(&self, ok: bool) {
        let was = self.engine_ok.swap(ok, Ordering::SeqCst);
        if was != ok {
            if ok {
                info!(host = %self.host, "docker engine reachable again");
            } else {
                warn!(host = %self.host, "docker engine unreachable");
            }
        }
    }

    fn unavailable(&self, e: &BollardError) -> AgentError {
        AgentError::EngineUnavailable {
            socket: self.host.clone(),
            reason: e.to_string(),
        }
    }
}

/// Errors that mean "the engine is not there" rather than "the engine said no".
fn is_transport(e: &BollardError) -> bool {
    matches!(
        e,
        BollardError::HyperLegacyError { .. }
            | BollardError::HyperResponseError { .. }
            | BollardError::IOError { .. }
            | BollardError::RequestTimeoutError
            | BollardError::SocketNotFoundError(_)
    )
}

fn api_error(op: &'static str, e: BollardError) -> AgentError {
    match e {
        BollardError::DockerResponseServerError {
            status_code,
            message,
        } => AgentError::Engine {
            op,
            status: Some(status_code),
            message,
        },
        other => AgentError::Engine {
            op,
            status: None,
            message: other.to_string(),
        },
    }
}

/// The HTTP status of an engine refusal, if it is one.
fn status_of(e: &AgentError) -> Option<u16> {
    match e {
        AgentError::Engine { status, .. } => *status,
        _ => None,
    }
}

impl Driver for DockerDriver {
    fn ensure_running<'a>(
        &'a self,
        assignment: &'a Assignment,
        tx: &'a ReportSender,
    ) -> BoxFuture<'a, Result<(), AgentError>> {
        self.ensure(assignment, tx).boxed()
    }

    fn report_running<'a>(
        &'a self,
        deployment_id: &'a str,
        container_id: &'a str,
        ready: Option<&'a crate::driver::Readiness>,
        tx: &'a ReportSender,
    ) -> BoxFuture<'a, ()> {
        self.report_running_now_or_when_ready(deployment_id, container_id, ready, tx)
            .boxed()
    }

    fn stop<'a>(
        &'a self,
        deployment_id: &'a str,
        grace: Duration,
    ) -> BoxFuture<'a, Result<(), AgentError>> {
        async move {
            let name = crate::driver::container_name(deployment_id, &self.config.node_id);
            self.stop_and_remove(&name, grace).await
        }
        .boxed()
    }

    fn remove_container<'a>(
        &'a self,
        container_id: &'a str,
        grace: Duration,
    ) -> BoxFuture<'a, Result<(), AgentError>> {
        self.stop_and_remove(container_id, grace).boxed()
    }

    fn list(&self) -> BoxFuture<'_, Result<Vec<Observed>, AgentError>> {
        self.list_observed().boxed()
    }

    fn set_cluster(&self, cluster_id: &str) {
        if let Ok(mut c) = self.cluster.write() {
            if c.as_deref() != Some(cluster_id) {
                info!(cluster = %cluster_id, "owning the containers of this cluster only");
                *c = Some(cluster_id.to_string());
            }
        }
    }

    fn volume_usage(
        &self,
    ) -> BoxFuture<'_, Result<Vec<crate::driver::MeasuredVolume>, AgentError>> {
        self.measure_volumes().boxed()
    }

    fn stats(&self) -> BoxFuture<'_, Result<Vec<ContainerUsage>, AgentError>> {
        self.container_stats().boxed()
    }

    fn watch(&self, tx: ReportSender) -> BoxFuture<'_, Result<(), AgentError>> {
        self.watch_events(tx).boxed()
    }

    fn engine_ok(&self) -> bool {
        self.engine_ok.load(Ordering::SeqCst)
    }

    fn logs<'a>(
        &'a self,
        deployment_id: &'a str,
        opts: crate::session::LogOptions,
    ) -> BoxFuture<'a, Result<crate::session::LogLines, AgentError>> {
        self.container_logs(deployment_id, opts).boxed()
    }

    fn exec<'a>(
        &'a self,
        deployment_id: &'a str,
        req: crate::session::ExecRequest,
    ) -> BoxFuture<'a, Result<crate::session::ExecSession, AgentError>> {
        self.container_exec(deployment_id, req).boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn missing_socket_names_the_path() {
        let mut config = DockerConfig::new("0x020000000001");
        config.host = Some("unix:///nonexistent/dcloud/docker.sock".to_string());
        let err = DockerDriver::connect(config)
            .await
            .err()
            .expect("must fail");
        let msg = err.to_string();
        assert!(err.is_transient());
        assert!(
            msg.contains("unix:///nonexistent/dcloud/docker.sock"),
            "{msg}"
        );
        assert!(msg.contains("does not exist"), "{msg}");
    }

    #[tokio::test]
    async fn unsupported_scheme_is_refused() {
        let mut config = DockerConfig::new("n");
        config.host = Some("ftp://x".to_string());
        let msg = DockerDriver::connect(config)
            .await
            .err()
            .expect("must fail")
            .to_string();
        assert!(
            msg.contains("ftp://x") && msg.contains("unsupported scheme"),
            "{msg}"
        );
    }

    /// A fake engine on a unix socket: answers each request with `body`, one per connection.
    fn fake_engine(path: &std::path::Path, body: &'static str) -> tokio::task::JoinHandle<()> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::UnixListener::bind(path).unwrap();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let mut buf = vec![0u8; 4096];
                let mut read = 0;
                while !buf[..read].windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf[read..]).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => read += n,
                    }
                }
                let reply = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(reply.as_bytes()).await;
            }
        })
    }

    #[tokio::test]
    async fn engine_going_away_is_retried_then_reported() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("docker.sock");
        let engine = fake_engine(&socket, r#"{"ApiVersion":"1.41","Version":"20.10.24"}"#);
        let mut config = DockerConfig::new("n1");
        config.host = Some(format!("unix://{}", socket.display()));
        config.backoff = Backoff {
            attempts: 3,
            initial: Duration::from_millis(1),
            max: Duration::from_millis(2),
        };
        let driver = DockerDriver::connect(config).await.unwrap();
        assert_eq!(driver.docker().client_version().to_string(), "1.41");
        assert!(driver.engine_ok());

        // The engine goes away.
        engine.abort();
        let _ = engine.await;
        std::fs::remove_file(&socket).unwrap();
        let err = driver.list().await.unwrap_err();
        assert!(err.is_transient(), "{err}");
        assert!(
            err.to_string().contains(&socket.display().to_string()),
            "{err}"
        );
        assert!(!driver.engine_ok());

        // It comes back: the same driver works again.
        let _engine = fake_engine(&socket, "[]");
        assert_eq!(driver.list().await.unwrap(), vec![]);
        assert!(driver.engine_ok());
    }

    #[test]
    fn explicit_host_wins() {
        assert_eq!(resolve_host(Some("unix:///x.sock")), "unix:///x.sock");
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let b = Backoff {
            attempts: 5,
            initial: Duration::from_millis(100),
            max: Duration::from_millis(350),
        };
        assert_eq!(b.delay(1), Duration::from_millis(100));
        assert_eq!(b.delay(2), Duration::from_millis(200));
        assert_eq!(b.delay(3), Duration::from_millis(350));
        assert_eq!(b.delay(40), Duration::from_millis(350));
    }
}
