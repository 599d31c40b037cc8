//! [`ServerBackend`]: `dcloud_graphql::Backend` over the single writer. Every command
//! the server submits (API, timers, start-up) goes through [`ServerBackend::submit_cmd`],
//! which also feeds the metrics and the in-memory liveness table.

use std::sync::Arc;
use std::time::Instant;

use dcloud_events::{Envelope, Event, EventLog, FjallLog, VerifyError, VerifyReport};
use dcloud_graphql::{ApiError, Backend, StateGuard};
use dcloud_projections::{Actor, Command, Settings};
use futures::future::BoxFuture;
use rand::Rng;

use super::liveness::Liveness;
use super::metrics::Metrics;
use crate::{WriterError, WriterHandle};

pub struct ServerBackend {
    writer: WriterHandle,
    /// The last signed checkpoint this process wrote (see `AppState::write_checkpoint`).
    checkpoint: std::sync::Mutex<Option<crate::checkpoint::Checkpoint>>,
    log: Arc<FjallLog>,
    settings: Settings,
    metrics: Arc<Metrics>,
    liveness: Arc<Liveness>,
}

impl ServerBackend {
    pub fn new(
        writer: WriterHandle,
        log: Arc<FjallLog>,
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
        }
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
        let heard_from = match &cmd {
            Command::RegisterNode { node_id, .. } | Command::Heartbeat { node_id, .. } => {
                Some(node_id.clone())
            }
            _ => None,
        };
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
                    liveness.touch(&node, now_ms());
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
        WriterError::StorageFull(why) => ApiError::StorageFull(why),
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

    fn log(&self) -> Arc<dyn EventLog> {
        self.log.clone()
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
}
