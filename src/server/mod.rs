//! The control-plane server: wiring of the log, the writer, the liveness and
//! maintenance timers, and the axum router (GraphQL over HTTP and websockets,
//! GraphiQL, health, metrics and the web UI).
//!
//! It holds no business rules: every change is a `Command` submitted to the single
//! writer, and `decide` (in `dcloud-projections`) says yes or no.

mod app;
mod args;
mod backend;
mod bootstrap;
mod dev;
mod exec;
mod graphql;
mod ha;
mod idle;
mod limits;
mod liveness;
mod metrics;
mod routes;
mod sessions;
mod timers;
mod tls;
pub mod ui;
mod usage;
mod ws;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{error, info};

use crate::WriterHandle;
use dcloud_graphql::Backend as _;

pub use app::AppState;
pub use args::{run_server, FileConfig, ServerArgs};
pub use backend::ServerBackend;
pub use bootstrap::{write_secret_file, ADMIN_TOKEN_FILE};
pub use dev::{load_starter, run_dev, starter_documents, DevArgs, DevDriver};
pub use graphql::{Caller, IDEMPOTENCY_KEY_HEADER, REQUEST_ID_HEADER};
pub use idle::{IdleStop, IdleTracker};
pub use limits::{Guards, Limits};
pub use liveness::{overdue_nodes, Liveness};
pub use metrics::Metrics;
pub use routes::{router, MAX_BODY_BYTES};
pub use sessions::{SessionGuard, SessionHub};
pub use timers::check_idle;
pub use tls::TlsFiles;
pub use ws::{CLOSE_FORBIDDEN, CLOSE_OVERLOADED};

/// How one server runs.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The data directory: the log (`log/`) and `admin.token`.
    pub data: PathBuf,
    /// Where to listen; port 0 picks a free port (see [`Server::addr`]).
    pub listen: SocketAddr,
    /// GraphiQL and introspection for everyone (local development only).
    pub dev_mode: bool,
    pub settings: dcloud_projections::Settings,
    /// Store a snapshot of the state every this many events (0: never).
    pub snapshot_every: u64,
    /// Snapshots kept (the newest; 0: all).
    pub keep_snapshots: usize,
    /// How often silent nodes are looked for (a node is lost after `settings.node_ttl_ms`).
    pub liveness_tick: Duration,
    /// How often expired services are expired and the pending queue is retried.
    pub maintenance_every: Duration,
    /// How often idle deployments are looked for.
    pub idle_every: Duration,
    /// A container using less CPU than this (millicores) counts as idle.
    pub idle_cpu_threshold_millis: u64,
    /// Per-caller limits (timeouts, connections, rates, query size).
    pub limits: Limits,
    /// Serve HTTPS/WSS with this certificate chain and key (`None`: plain HTTP).
    pub tls: Option<TlsFiles>,
    /// Writes are refused (`STORAGE_FULL`, reads go on) while the data directory's
    /// disk has less than this free.
    pub storage_reserve_bytes: u64,
    /// Where signed checkpoints of the log's head go (`None`: `DATA/checkpoint.json`);
    /// put it on another disk, or ship it elsewhere, to anchor the head.
    pub checkpoint_file: Option<PathBuf>,
    /// How often a checkpoint is written when the head moved.
    pub checkpoint_every: Duration,
    /// Where the event log lives: the data directory, or a JetStream stream shared
    /// with other servers (one leads, the others are standbys).
    pub log: crate::store::LogLocation,
}

impl ServerConfig {
    /// Defaults for a data directory: listen on 127.0.0.1:7070, a snapshot every
    /// 10 000 events, liveness checked every second, maintenance every 30 seconds.
    pub fn new(data: impl Into<PathBuf>) -> ServerConfig {
        ServerConfig {
            data: data.into(),
            listen: SocketAddr::from(([127, 0, 0, 1], 7070)),
            dev_mode: false,
            settings: dcloud_projections::Settings::default(),
            snapshot_every: 10_000,
            keep_snapshots: crate::writer::DEFAULT_KEEP_SNAPSHOTS,
            liveness_tick: Duration::from_secs(1),
            maintenance_every: Duration::from_secs(30),
            idle_every: Duration::from_secs(30),
            idle_cpu_threshold_millis: 50,
            limits: Limits::default(),
            tls: None,
            storage_reserve_bytes: crate::storage::DEFAULT_RESERVE_BYTES,
            checkpoint_file: None,
            checkpoint_every: Duration::from_secs(1),
            log: crate::store::LogLocation::Data,
        }
    }
}

/// Asks a running server to stop (cheap to clone; see [`Server::stopper`]).
#[derive(Clone)]
pub struct Stopper(watch::Sender<bool>);

impl Stopper {
    pub fn stop(&self) {
        let _ = self.0.send(true);
    }
}

/// A running server.
pub struct Server {
    /// The address actually bound.
    pub addr: SocketAddr,
    /// The new admin token: `Some` only on the start that created it.
    pub admin_token: Option<String>,
    /// `https` when serving TLS, else `http`.
    scheme: &'static str,
    app: AppState,
    stop: watch::Sender<bool>,
    http: JoinHandle<std::io::Result<()>>,
    timers: JoinHandle<()>,
    /// The lease holder of a shared log (released on a clean stop).
    lease: Option<JoinHandle<()>>,
}

/// Opens the data directory (log, recovery, writer, admin token), binds `listen`,
/// and serves the router and the timers until [`Server::shutdown`] or a fatal
/// storage error.
pub async fn start(config: ServerConfig) -> anyhow::Result<Server> {
    crate::fd_limit::raise_fd_limit();
    // Bind first: a taken port must not cost the first start its admin token.
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("listening on {}", config.listen))?;
    // Read the certificate before opening anything: a bad one fails the start cleanly.
    if let Some(files) = &config.tls {
        files.server_config()?;
    }
    let (app, admin_token) = AppState::open(&config).await?;
    serve(listener, app, admin_token, config)
}

/// Serves `app` (already opened) on `listener` with the timers, until
/// [`Server::shutdown`] or the writer stops (see [`Server::wait`]).
pub fn serve(
    listener: tokio::net::TcpListener,
    app: AppState,
    admin_token: Option<String>,
    config: ServerConfig,
) -> anyhow::Result<Server> {
    let addr = listener.local_addr().context("reading the bound address")?;
    let tls = match &config.tls {
        Some(files) => Some(files.server_config()?),
        None => None,
    };
    let stop = app.stop_sender();
    let mut http_stop = stop.subscribe();
    let service = router(app.clone()).into_make_service_with_connect_info::<SocketAddr>();
    let shutdown = async move {
        let _ = http_stop.wait_for(|s| *s).await;
    };
    let http = match tls {
        None => tokio::spawn(async move {
            axum::serve(listener, service)
                .with_graceful_shutdown(shutdown)
                .await
        }),
        Some(config) => {
            use axum::serve::ListenerExt;
            // `tap_io` gives the listener axum's `ConnectInfo<SocketAddr>`.
            let listener = tls::TlsListener::new(listener, config)?.tap_io(|_| {});
            tokio::spawn(async move {
                axum::serve(listener, service)
                    .with_graceful_shutdown(shutdown)
                    .await
            })
        }
    };
    let timers = tokio::spawn(timers::run(app.clone(), config.clone(), stop.subscribe()));
    // Sessions close when their deployment stops (ends with the server's stop signal).
    let log = app.backend().log();
    tokio::spawn(sessions::close_on_stop(
        app.sessions().clone(),
        log.clone(),
        log.last_seq() + 1,
        stop.subscribe(),
    ));
    let scheme = if config.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let lease = match (&config.log, app.log()) {
        (crate::store::LogLocation::JetStream(shared), crate::store::LogStore::JetStream(log)) => {
            tokio::spawn(ha::follow(app.clone(), stop.subscribe()));
            let advertise = shared
                .advertise
                .clone()
                .unwrap_or_else(|| format!("{scheme}://{addr}"));
            Some(tokio::spawn(ha::run(
                app.clone(),
                log.clone(),
                shared.clone(),
                advertise,
                config.data.clone(),
                stop.subscribe(),
            )))
        }
        _ => None,
    };
    app.set_ready(true);
    info!(%addr, data = %config.data.display(), dev_mode = config.dev_mode, tls = config.tls.is_some(), "server listening");
    Ok(Server {
        addr,
        admin_token,
        scheme,
        app,
        stop,
        http,
        timers,
        lease,
    })
}

impl Server {
    pub fn writer(&self) -> &WriterHandle {
        self.app.writer()
    }

    pub fn app(&self) -> &AppState {
        &self.app
    }

    /// The base URL (`http://ADDR`, or `https://ADDR` with TLS).
    pub fn url(&self) -> String {
        format!("{}://{}", self.scheme, self.addr)
    }

    pub fn stopper(&self) -> Stopper {
        Stopper(self.stop.clone())
    }

    /// Runs until a [`Stopper`] asks to stop (then `Ok`) or the writer stops on a
    /// storage error or a panic (then `Err` with the reason, and the process exits
    /// non-zero: fail-stop, a restart replays the log).
    pub async fn wait(self) -> anyhow::Result<()> {
        let mut stop = self.stop.subscribe();
        let mut poll = tokio::time::interval(Duration::from_millis(200));
        let fatal = loop {
            if let Some(why) = self.app.writer().fatal() {
                break Some(why);
            }
            if *stop.borrow_and_update() {
                break None;
            }
            tokio::select! {
                _ = poll.tick() => {}
                _ = stop.changed() => {}
            }
        };
        if let Some(why) = &fatal {
            error!(reason = %why, "the writer stopped; the server stops");
        }
        self.teardown().await;
        match fatal {
            Some(why) => anyhow::bail!("the writer stopped: {why}"),
            None => Ok(()),
        }
    }

    /// Stops serving, stops the timers and the writer, and returns once all are done.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        self.teardown().await;
    }

    async fn teardown(self) {
        self.app.set_ready(false);
        let _ = self.stop.send(true);
        let _ = self.timers.await;
        if let Some(lease) = self.lease {
            let _ = tokio::time::timeout(Duration::from_secs(3), lease).await;
        }
        // A last checkpoint of the head (when the writer has not failed).
        if self.app.writer().fatal().is_none() {
            timers::checkpoint(&self.app).await;
        }
        // Websockets close on the stop signal; anything else gets a few seconds.
        let mut http = self.http;
        match tokio::time::timeout(Duration::from_secs(5), &mut http).await {
            Ok(Ok(Err(e))) => error!(error = %e, "http server failed"),
            Ok(Err(e)) => error!(error = %e, "http server task failed"),
            Ok(Ok(Ok(()))) => {}
            Err(_) => {
                error!("http connections still open after 5s; closing them");
                http.abort();
            }
        }
        let writer = self.app.writer().clone();
        let _ = tokio::task::spawn_blocking(move || writer.shutdown()).await;
        info!("server stopped");
    }
}
