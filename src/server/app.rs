//! [`AppState`]: what every handler and timer shares (the writer, the log, the schema,
//! metrics, liveness, readiness), and opening it over a data directory.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use anyhow::Context;

use dcloud_graphql::{DcloudSchema, SchemaOptions};
use tokio::sync::watch;

use super::backend::ServerBackend;
use super::limits::Guards;
use super::liveness::Liveness;
use super::metrics::Metrics;
use super::{bootstrap, ServerConfig};
use crate::checkpoint::{Checkpoint, CheckpointSigner};
use crate::storage::StorageGate;
use crate::store::LogStore;
use crate::writer::{system_clock, WriterConfig};
use crate::WriterHandle;

/// The server's checkpoint signer and where it writes.
struct Checkpoints {
    signer: CheckpointSigner,
    path: PathBuf,
}

/// Shared by the router, the websocket sessions and the timers. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    backend: Arc<ServerBackend>,
    storage: Arc<StorageGate>,
    log: LogStore,
    /// Signed checkpoints of the head (set by [`AppState::open`]).
    checkpoints: OnceLock<Checkpoints>,
    checkpoint_lock: Mutex<()>,
    schema: DcloudSchema,
    dev_mode: bool,
    guards: Arc<Guards>,
    ready: AtomicBool,
    stop: watch::Sender<bool>,
}

/// The key derivation context of per-deployment service tokens (Jupyter's token).
const SERVICE_TOKEN_CONTEXT: &str = "dcloud 2026 per-deployment service tokens v1";

impl AppState {
    /// Opens the log (in `config.data`, or the shared one `config.log` names),
    /// recovers the state, starts the writer, and creates the first admin token when
    /// none exists (returned, and written to `DATA/admin.token` with mode 0600). Not
    /// ready until [`AppState::set_ready`].
    ///
    /// On a shared log the writer starts as a standby and nothing is written here: the
    /// cluster id and the first admin token are made once this server leads
    /// (`ha.rs`).
    pub async fn open(config: &ServerConfig) -> anyhow::Result<(AppState, Option<String>)> {
        let log = LogStore::open(&config.data, &config.log)?;
        let (state, _recovery) = crate::store::recover(&*log.as_dyn(), None, true)?;
        let writer_config = WriterConfig {
            settings: config.settings.clone(),
            snapshot_every: config.snapshot_every,
            keep_snapshots: config.keep_snapshots,
            clock: system_clock(),
        };
        let writer = if log.is_shared() {
            crate::writer::spawn_standby(log.as_dyn(), state, writer_config)
        } else {
            crate::spawn_writer(log.as_dyn(), state, writer_config)
        };
        let app = AppState::new(writer, log, config);
        let signer = CheckpointSigner::load_or_create(&config.data)?;
        app.backend()
            .set_service_key(signer.derive_key(SERVICE_TOKEN_CONTEXT));
        let path = config
            .checkpoint_file
            .clone()
            .unwrap_or_else(|| crate::checkpoint::default_path(&config.data));
        let _ = app.inner.checkpoints.set(Checkpoints { signer, path });
        if !app.writer().is_leader() {
            return Ok((app, None));
        }
        let token = app.bootstrap(&config.data).await?;
        Ok((app, token))
    }

    /// What a leader writes once, on the first start of a cluster: its id and the
    /// first admin token (returned when made now).
    pub(super) async fn bootstrap(&self, data: &std::path::Path) -> anyhow::Result<Option<String>> {
        bootstrap::ensure_cluster_id(self).await?;
        bootstrap::ensure_admin_token(self, data).await
    }

    /// The open log.
    pub fn log(&self) -> &LogStore {
        &self.inner.log
    }

    /// State over a writer already running on `log`.
    pub fn new(writer: WriterHandle, log: impl Into<LogStore>, config: &ServerConfig) -> AppState {
        let log = log.into();
        let storage = Arc::new(StorageGate::new(&config.data, config.storage_reserve_bytes));
        writer.guard_storage(storage.clone());
        let backend = Arc::new(ServerBackend::new(
            writer,
            log.clone(),
            config.settings.clone(),
            Arc::new(Metrics::default()),
            Arc::new(Liveness::new()),
        ));
        let (schema, router) = dcloud_graphql::schema_with_router(
            backend.clone(),
            SchemaOptions {
                dev_mode: config.dev_mode,
                field_limit: config.limits.max_query_fields,
                ..SchemaOptions::default()
            },
        );
        backend.metrics().set_router(&router);
        let (stop, _) = watch::channel(false);
        AppState {
            inner: Arc::new(Inner {
                backend,
                storage,
                log,
                checkpoints: OnceLock::new(),
                checkpoint_lock: Mutex::new(()),
                schema,
                dev_mode: config.dev_mode,
                guards: Arc::new(Guards::new(config.limits.clone())),
                ready: AtomicBool::new(false),
                stop,
            }),
        }
    }

    pub fn writer(&self) -> &WriterHandle {
        self.inner.backend.writer()
    }

    pub fn backend(&self) -> &Arc<ServerBackend> {
        &self.inner.backend
    }

    pub fn schema(&self) -> &DcloudSchema {
        &self.inner.schema
    }

    pub fn metrics(&self) -> &Metrics {
        self.inner.backend.metrics()
    }

    /// The logs and exec relay.
    pub fn sessions(&self) -> &super::sessions::SessionHub {
        self.inner.backend.sessions()
    }

    pub fn liveness(&self) -> &Liveness {
        self.inner.backend.liveness()
    }

    /// The per-caller limits and their live counts.
    pub fn guards(&self) -> &Arc<Guards> {
        &self.inner.guards
    }

    /// Signs the log's durable head and writes it to the checkpoint file, when it moved
    /// since the last one. `Ok(None)`: nothing to do (no signer, or the same head).
    pub fn write_checkpoint(&self) -> anyhow::Result<Option<Checkpoint>> {
        let Some(cp) = self.inner.checkpoints.get() else {
            return Ok(None);
        };
        // One writer of the file at a time (the timer and the last one at shutdown).
        let _one = self
            .inner
            .checkpoint_lock
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let (seq, hash) = self.inner.log.head();
        if self.latest_checkpoint().is_some_and(|l| l.seq == seq) {
            return Ok(None);
        }
        let checkpoint = cp.signer.sign(seq, &hash, super::backend::now_ms());
        checkpoint
            .write(&cp.path)
            .with_context(|| format!("writing the checkpoint {}", cp.path.display()))?;
        self.inner.backend.set_checkpoint(checkpoint.clone());
        Ok(Some(checkpoint))
    }

    /// The last checkpoint written by this process.
    pub fn latest_checkpoint(&self) -> Option<Checkpoint> {
        self.inner.backend.latest_checkpoint()
    }

    /// The data directory's free space, as the writer's gate sees it.
    pub fn storage(&self) -> &StorageGate {
        &self.inner.storage
    }

    pub fn dev_mode(&self) -> bool {
        self.inner.dev_mode
    }

    /// Ready: recovered, serving, and the writer has not stopped.
    pub fn is_ready(&self) -> bool {
        self.inner.ready.load(Ordering::SeqCst) && self.writer().fatal().is_none()
    }

    pub fn set_ready(&self, ready: bool) {
        self.inner.ready.store(ready, Ordering::SeqCst);
    }

    /// Fires when the server is stopping (websocket sessions close on it).
    pub fn stopping(&self) -> watch::Receiver<bool> {
        self.inner.stop.subscribe()
    }

    pub(super) fn stop_sender(&self) -> watch::Sender<bool> {
        self.inner.stop.clone()
    }
}
