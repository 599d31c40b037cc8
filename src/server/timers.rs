//! The server's timers: every `liveness_tick`, alive nodes silent for the TTL are marked
//! lost and lost nodes past their grace give up their deployments; every `maintenance_every`, expired services are expired and the pending queue
//! is retried. All submit as the system actor. Every `checkpoint_every`, a signed
//! checkpoint of the log's head is written when the head moved.

use std::time::Duration;

use dcloud_graphql::Backend as _;
use dcloud_projections::{Actor, Command};
use tokio::sync::watch;
use tokio::time::MissedTickBehavior;
use tracing::{info, warn};

use super::idle::{IdleStop, IdleTracker};
use super::{AppState, ServerConfig};
use crate::WriterError;

pub(super) async fn run(app: AppState, config: ServerConfig, mut stop: watch::Receiver<bool>) {
    let ttl = Duration::from_millis(config.settings.node_ttl_ms.max(0) as u64);
    let mut liveness = tokio::time::interval(config.liveness_tick);
    liveness.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut maintenance = tokio::time::interval(config.maintenance_every);
    maintenance.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut idle = tokio::time::interval(config.idle_every);
    idle.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut tracker = IdleTracker::new(config.idle_cpu_threshold_millis);
    let mut checkpoints = tokio::time::interval(config.checkpoint_every);
    checkpoints.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            changed = stop.changed() => {
                if changed.is_err() || *stop.borrow() {
                    break;
                }
            }
            // A standby writes nothing: the leader runs these.
            due = liveness.tick(), if app.writer().is_leader() => {
                let lag = tokio::time::Instant::now().saturating_duration_since(due);
                mark_lost(&app, super::liveness::lost_after(ttl, lag)).await;
                evict_lost(&app, super::backend::now_ms()).await;
            }
            _ = maintenance.tick(), if app.writer().is_leader() => {
                submit(&app, Command::ExpireServices, "timer:services").await;
                submit(&app, Command::RetryPending, "timer:pending").await;
            }
            _ = idle.tick(), if app.writer().is_leader() => {
                check_idle(&app, &mut tracker, super::backend::now_ms()).await;
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

/// Lost nodes whose grace is over as of `now_ms` and that still hold deployments:
/// those are placed elsewhere.
pub(super) async fn evict_lost(app: &AppState, now_ms: i64) {
    let due: Vec<String> = {
        let state = app.writer().state();
        let grace = app.backend().settings().lost_node_grace_ms;
        state
            .nodes
            .iter()
            .filter(|n| !n.deployments.is_empty() && n.lost_past(grace, now_ms))
            .map(|n| n.id.clone())
            .collect()
    };
    if due.is_empty() {
        return;
    }
    info!(nodes = ?due, "lost nodes past their grace; placing their deployments elsewhere");
    let cmd = Command::EvictLostNodes {
        node_ids: due,
        force: false,
    };
    submit(app, cmd, "timer:lost-grace").await;
}

/// One idle check as of `now_ms` (the timer passes the wall clock; tests their own):
/// folds the log's new idle timeouts, then stops each deployment idle past its
/// environment's timeout. Returns the deployments it stopped.
pub async fn check_idle(app: &AppState, tracker: &mut IdleTracker, now_ms: i64) -> Vec<IdleStop> {
    let log = app.backend().log();
    let (from, last) = (tracker.next_seq(), log.last_seq());
    if from <= last {
        let threshold = tracker.cpu_threshold_millis();
        let mut t = std::mem::take(tracker);
        // A fresh server folds its whole log once: off the async threads.
        *tracker = tokio::task::spawn_blocking(move || {
            for env in log.read_range(from, last) {
                match env {
                    Ok(env) => t.fold(env.seq, &env.event),
                    Err(e) => {
                        warn!(error = %e, "idle timer cannot read the log");
                        break;
                    }
                }
            }
            t
        })
        .await
        .unwrap_or_else(|_| IdleTracker::new(threshold));
    }
    let stops = {
        let state = app.writer().state();
        let hub = app.sessions();
        tracker.check(&state, now_ms, |d| hub.activity(d))
    };
    for stop in &stops {
        info!(deployment = %stop.deployment_id, idle_ms = stop.idle_ms, "stopping an idle deployment");
        let cmd = Command::StopIdle {
            deployment_id: stop.deployment_id.clone(),
            idle_ms: stop.idle_ms,
            reason: stop.reason.clone(),
        };
        submit(app, cmd, "timer:idle").await;
    }
    stops
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
        Err(e @ WriterError::Overloaded { .. }) => {
            warn!(correlation, error = %e, "timer command deferred")
        }
        // Said once by the storage gate when it starts refusing.
        Err(WriterError::StorageFull(_) | WriterError::NotLeader { .. }) => {}
    }
}
