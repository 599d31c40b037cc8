//! [`ServerBackend`]: `dcloud_graphql::Backend` over the single writer. Every command
//! the server submits (API, timers, start-up) goes through [`ServerBackend::submit_cmd`],
//! which also feeds the metrics and the in-memory liveness table.

use std::sync::Arc;
use std::time::Instant;

use dcloud_events::{Envelope, Event, EventLog, VerifyError, VerifyReport};
use dcloud_graphql::types::usage::UsageSample;
use dcloud_graphql::{ApiError, Backend, StateGuard};
use dcloud_projections::{decide, Actor, Command, Ctx, Settings};
use futures::future::BoxFuture;
use rand::Rng;

use super::liveness::Liveness;
use super::metrics::Metrics;
use super::sessions::SessionHub;
use super::usage::UsageHistory;
use crate::{WriterError, WriterHandle};

pub struct ServerBackend {
    writer: WriterHandle,
    /// The last signed checkpoint this process wrote (see `AppState::write_checkpoint`).
    checkpoint: std::sync::Mutex<Option<crate::checkpoint::Checkpoint>>,
    log: crate::store::LogStore,
    settings: Settings,
    metrics: Arc<Metrics>,
    liveness: Arc<Liveness>,
    sessions: SessionHub,
    usage: Arc<UsageHistory>,
    /// Derives each deployment's service token (set once the server key is loaded).
    service_key: std::sync::OnceLock<[u8; 32]>,
}

impl ServerBackend {
    pub fn new(
        writer: WriterHandle,
        log: crate::store::LogStore,
        settings: Settings,
        metrics: Arc<Metrics>,
        liveness: Arc<Liveness>,
    ) -> ServerBackend {
        ServerBackend {
            writer,
            checkpoint: std::sync::Mutex::new(None),
            log,
            settings,
            metrics,
            liveness,
            sessions: SessionHub::default(),
            usage: Arc::default(),
            service_key: std::sync::OnceLock::new(),
        }
    }

    /// The key service tokens are derived with (the first one set stays).
    pub fn set_service_key(&self, key: [u8; 32]) {
        let _ = self.service_key.set(key);
    }

    /// The logs and exec relay.
    pub fn sessions(&self) -> &SessionHub {
        &self.sessions
    }

    pub fn writer(&self) -> &WriterHandle {
        &self.writer
    }

    /// Records the checkpoint just written (served by the `checkpoint` query).
    pub fn set_checkpoint(&self, cp: crate::checkpoint::Checkpoint) {
        *self.checkpoint.lock().unwrap_or_else(|p| p.into_inner()) = Some(cp);
    }

    /// The last checkpoint written by this process.
    pub fn latest_checkpoint(&self) -> Option<crate::checkpoint::Checkpoint> {
        self.checkpoint
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    pub fn metrics_handle(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    pub fn liveness(&self) -> &Liveness {
        &self.liveness
    }

    /// Submits through the writer, records metrics, and marks the node heard from
    /// when an accepted `RegisterNode` or `Heartbeat` came from it.
    pub fn submit_cmd(
        &self,
        cmd: Command,
        actor: Actor,
        correlation: String,
    ) -> BoxFuture<'static, Result<Vec<Envelope>, WriterError>> {
        self.submit_cmd_keyed(cmd, actor, correlation, None)
    }

    /// [`ServerBackend::submit_cmd`] under the client's idempotency key, if any.
    pub fn submit_cmd_keyed(
        &self,
        cmd: Command,
        actor: Actor,
        correlation: String,
        key: Option<String>,
    ) -> BoxFuture<'static, Result<Vec<Envelope>, WriterError>> {
        let writer = self.writer.clone();
        let metrics = self.metrics.clone();
        let liveness = self.liveness.clone();
        let usage = self.usage.clone();
        let containers = match &cmd {
            Command::Heartbeat { containers, .. } => Some(containers.clone()),
            _ => None,
        };
        let heard_from = match &cmd {
            Command::RegisterNode { node_id, .. } | Command::Heartbeat { node_id, .. } => {
                Some(node_id.clone())
            }
            _ => None,
        };
        let received = tokio::time::Instant::now();
        if let Command::Heartbeat { node_id, .. } = &cmd {
            // Most heartbeats change nothing the log keeps: decide them against the
            // live state under a shared read lock and skip the writer's queue. Only
            // one that yields an event (log interval due, engine health changed) or
            // is refused takes the writer's path.
            let quiet = {
                let state = self.writer.state();
                let ctx = Ctx {
                    now_ms: now_ms(),
                    actor: actor.clone(),
                    settings: Arc::new(self.settings.clone()),
                };
                matches!(decide(&state, &cmd, &ctx), Ok(events) if events.is_empty())
            };
            if quiet {
                self.metrics.record_quiet_heartbeat();
                self.liveness.touch_at(node_id, received, now_ms());
                if let Some(containers) = &containers {
                    self.usage.record(containers, now_ms());
                }
                return Box::pin(async { Ok(Vec::new()) });
            }
        }
        Box::pin(async move {
            let started = Instant::now();
            let result = writer.submit_keyed(cmd, actor, correlation, key).await;
            if let Ok(envelopes) = &result {
                if !envelopes.is_empty() {
                    let placements = envelopes
                        .iter()
                        .filter(|e| matches!(e.event, Event::DeploymentScheduled { .. }))
                        .count() as u64;
                    metrics.record_append(envelopes.len() as u64, placements, started.elapsed());
                }
                if let Some(node) = heard_from {
                    // Silence is measured from when the server received it, not from
                    // when the writer got round to it.
                    liveness.touch_at(&node, received, now_ms());
                }
                if let Some(containers) = containers {
                    usage.record(&containers, now_ms());
                }
            }
            result
        })
    }
}

/// The one mapping from writer errors to API errors.
pub(super) fn api_error(e: WriterError) -> ApiError {
    match e {
        WriterError::Domain(d) => ApiError::Domain(d),
        WriterError::Stopped(why) => ApiError::Internal(format!("the writer has stopped: {why}")),
        e @ WriterError::Overloaded { retry_after_ms, .. } => ApiError::Overloaded {
            message: e.to_string(),
            retry_after_ms,
        },
        WriterError::StorageFull(why) => ApiError::StorageFull(why),
        WriterError::NotLeader { leader } => ApiError::NotLeader { leader },
    }
}

pub(super) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl Backend for ServerBackend {
    fn submit(
        &self,
        cmd: Command,
        actor: Actor,
        correlation: String,
    ) -> BoxFuture<'static, Result<Vec<Envelope>, ApiError>> {
        let fut = self.submit_cmd(cmd, actor, correlation);
        Box::pin(async move { fut.await.map_err(api_error) })
    }

    fn submit_keyed(
        &self,
        cmd: Command,
        actor: Actor,
        correlation: String,
        key: String,
    ) -> BoxFuture<'static, Result<Vec<Envelope>, ApiError>> {
        let fut = self.submit_cmd_keyed(cmd, actor, correlation, Some(key));
        Box::pin(async move { fut.await.map_err(api_error) })
    }

    fn state(&self) -> StateGuard<'_> {
        Box::new(self.writer.state())
    }

    fn applied(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        Some(self.writer.applied())
    }

    fn log(&self) -> Arc<dyn EventLog> {
        self.log.as_dyn()
    }

    fn verify_chain(&self) -> Result<VerifyReport, VerifyError> {
        self.log.verify()
    }

    fn now_ms(&self) -> i64 {
        now_ms()
    }

    fn new_id(&self) -> String {
        uuid::Uuid::new_v4().simple().to_string()
    }

    fn new_secret(&self) -> [u8; 32] {
        let mut secret = [0u8; 32];
        rand::rng().fill(&mut secret);
        secret
    }

    fn settings(&self) -> Settings {
        self.settings.clone()
    }

    fn service_token(&self, deployment_id: &str) -> Option<String> {
        let key = self.service_key.get()?;
        let mac = blake3::keyed_hash(key, deployment_id.as_bytes());
        Some(hex::encode(&mac.as_bytes()[..16]))
    }

    fn checkpoint(&self) -> Option<dcloud_graphql::query::HeadCheckpoint> {
        self.latest_checkpoint()
            .map(|c| dcloud_graphql::query::HeadCheckpoint {
                seq: c.seq,
                chain_hash: c.chain_hash,
                time_ms: c.time_ms,
                public_key: c.public_key,
                signature: c.signature,
            })
    }

    fn last_seen_ms(&self, node_id: &str) -> Option<i64> {
        self.liveness.last_seen_ms(node_id)
    }

    fn sessions(&self) -> Option<Arc<dyn dcloud_graphql::SessionRelay>> {
        Some(Arc::new(self.sessions.clone()))
    }

    fn usage_samples(&self, deployment_id: &str) -> Vec<UsageSample> {
        self.usage.samples(deployment_id)
    }
}
