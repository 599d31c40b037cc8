//! The server's timers: every `liveness_tick`, alive nodes silent for the TTL are marked
//! lost; every `maintenance_every`, expired services are expired and the pending queue
//! is retried. All submit as the system actor. Every `checkpoint_every`, a signed
//! checkpoint of the log's head is written when the head moved.

use std::time::Duration;

use dcloud_projections::{Actor, Command};
use tokio::sync::watch;
use tokio::time::MissedTickBehavior;
use tracing::{info, warn};

use super::{AppState, ServerConfig};
use crate::WriterError;

pub(super) async fn run(app: AppState, config: ServerConfig, mut stop: watch::Receiver<bool>) {
    let ttl = Duration::from_millis(config.settings.node_ttl_ms.max(0) as u64);
    let mut liveness = tokio::time::interval(config.liveness_tick);
    liveness.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut maintenance = tokio::time::interval(config.maintenance_every);
    maintenance.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut checkpoints = tokio::time::interval(config.checkpoint_every);
    checkpoints.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            changed = stop.changed() => {
                if changed.is_err() || *stop.borrow() {
                    break;
                }
            }
            _ = liveness.tick() => mark_lost(&app, ttl).await,
            _ = maintenance.tick() => {
                submit(&app, Command::ExpireServices, "timer:services").await;
                submit(&app, Command::RetryPending, "timer:pending").await;
            }
            _ = checkpoints.tick() => checkpoint(&app).await,
        }
        if app.writer().fatal().is_some() {
            break;
        }
    }
}

/// Writes a signed checkpoint of the log's head when it moved (on a blocking thread:
/// the file is fsynced).
pub(super) async fn checkpoint(app: &AppState) {
    let app = app.clone();
    let _ = tokio::task::spawn_blocking(move || {
        if let Err(e) = app.write_checkpoint() {
            warn!(error = %e, "checkpoint not written");
        }
    })
    .await;
}

/// One liveness check: the alive nodes overdue as of now are marked lost.
pub(super) async fn mark_lost(app: &AppState, ttl: Duration) {
    let overdue = {
        let state = app.writer().state();
        let alive = state
            .nodes
            .iter()
            .filter(|n| n.is_alive())
            .map(|n| n.id.as_str());
        app.liveness().overdue(alive, ttl)
    };
    if overdue.is_empty() {
        return;
    }
    info!(nodes = ?overdue, "nodes silent past the ttl; marking them lost");
    submit(
        app,
        Command::MarkNodesLost { node_ids: overdue },
        "timer:liveness",
    )
    .await;
}

async fn submit(app: &AppState, cmd: Command, correlation: &str) {
    let result = app
        .backend()
        .submit_cmd(cmd, Actor::system(), correlation.to_string())
        .await;
    match result {
        Ok(_) => {}
        // Fail-stop is reported by `Server::wait`.
        Err(WriterError::Stopped(_)) => {}
        Err(WriterError::Domain(e)) => warn!(correlation, error = %e, "timer command refused"),
        // Said once by the storage gate when it starts refusing.
        Err(WriterError::StorageFull(_)) => {}
    }
}
