//! Leader and standbys over a shared JetStream log.
//!
//! Every server on the stream follows it: its log handle takes in what the leader
//! appends (`JetStreamLog::follow`) and [`follow`] hands those envelopes to the writer,
//! which folds them into the state that reads and subscriptions are served from. One
//! server holds the lease, a key in the JetStream KV bucket `<stream>-leader` whose
//! entries expire after the lease TTL: it created the key and renews it every third of
//! the TTL. A standby tries to create the key every third of the TTL too; the first
//! one to succeed after the leader's entry expired (or was deleted by a leader that
//! stopped cleanly) catches its log up to the stream's end, waits until its writer has
//! folded all of it, and is promoted: it writes from the stream's last seq.
//!
//! The lease decides who tries to write; the stream's expected-last-sequence check
//! decides who wins. A leader that cannot renew for a whole TTL, or finds the key
//! taken by another, stops (fail-stop: its process exits, a supervisor restarts it as
//! a standby); if it appends before noticing, its append fails on the sequence check
//! and its writer stops. A leader handed an event it did not append stops as well.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, kv};
use dcloud_events::EventLog as _;
use dcloud_log_nats::JetStreamLog;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tracing::{error, info, warn};

use super::AppState;
use crate::store::SharedLog;

/// The key the leader holds in the lease bucket.
const LEASE_KEY: &str = "leader";

/// Who holds the lease (the KV entry's value).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Holder {
    /// A random id of the holding process.
    id: String,
    /// Where clients reach it.
    url: String,
}

/// The lease bucket's name for the log's stream.
pub(super) fn lease_bucket(stream: &str) -> String {
    format!("{stream}-leader")
}

/// Hands every envelope the log takes in after the state's head to the writer, in
/// order (a standby folds them; a leader checks they are its own). Ends when the
/// server stops or the writer does.
pub(super) async fn follow(app: AppState, mut stop: watch::Receiver<bool>) {
    let log = app.log().as_dyn();
    let from = app.writer().state().last_seq() + 1;
    let mut tail = log.subscribe(from);
    loop {
        let env = tokio::select! {
            changed = stop.changed() => {
                if changed.is_err() || *stop.borrow() {
                    return;
                }
                continue;
            }
            env = tail.next() => env,
        };
        let env = match env {
            Ok(env) => env,
            Err(e) => {
                warn!(error = %e, "following the log ended");
                return;
            }
        };
        if app.writer().follow(vec![env]).await.is_err() {
            return;
        }
    }
}

/// Holds or waits for the lease until the server stops; releases it on a clean stop.
pub(super) async fn run(
    app: AppState,
    log: Arc<JetStreamLog>,
    shared: SharedLog,
    advertise: String,
    data: std::path::PathBuf,
    mut stop: watch::Receiver<bool>,
) {
    let me = Holder {
        id: uuid::Uuid::new_v4().simple().to_string(),
        url: advertise,
    };
    let value: bytes::Bytes = serde_json::to_vec(&me).unwrap_or_default().into();
    let every = shared.lease_ttl / 3;
    let mut held: Option<(u64, Instant)> = None;
    let mut store: Option<kv::Store> = None;
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            changed = stop.changed() => {
                if changed.is_err() || *stop.borrow() {
                    break;
                }
                continue;
            }
            _ = tick.tick() => {}
        }
        if app.writer().fatal().is_some() {
            break;
        }
        let kv = match &store {
            Some(kv) => kv.clone(),
            None => match lease_store(&shared).await {
                Ok(kv) => {
                    store = Some(kv.clone());
                    kv
                }
                Err(e) => {
                    warn!(error = %e, "cannot reach the lease bucket; trying again");
                    if let Some((_, renewed)) = held {
                        if renewed.elapsed() >= shared.lease_ttl {
                            lose(&app, "the lease could not be renewed for a whole TTL");
                            return;
                        }
                    }
                    continue;
                }
            },
        };
        match held {
            Some((revision, renewed)) => {
                match kv.update(LEASE_KEY, value.clone(), revision).await {
                    Ok(r) => held = Some((r, Instant::now())),
                    Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => {
                        lose(&app, "another server holds the lease");
                        return;
                    }
                    Err(e) => {
                        warn!(error = %e, "renewing the lease failed; trying again");
                        if renewed.elapsed() >= shared.lease_ttl {
                            lose(&app, "the lease could not be renewed for a whole TTL");
                            return;
                        }
                    }
                }
            }
            None => match kv.create(LEASE_KEY, value.clone()).await {
                Ok(revision) => {
                    let taken = Instant::now();
                    info!(revision, "took the lease; catching up with the log");
                    if !take_over(&app, &log, &me.url, &data, &mut stop).await {
                        break;
                    }
                    held = Some((revision, taken));
                    info!(
                        millis = taken.elapsed().as_millis() as u64,
                        "leading (from lease to writer)"
                    );
                }
                Err(_) => {
                    // Held by another: remember who, for the standby's NOT_LEADER answers.
                    let leader = match kv.get(LEASE_KEY).await {
                        Ok(Some(value)) => serde_json::from_slice::<Holder>(value.as_ref()).ok(),
                        _ => None,
                    };
                    app.writer().set_leader_hint(leader.map(|h| h.url));
                }
            },
        }
    }
    // A clean stop hands the lease over at once (a standby need not wait for the TTL).
    if let (Some((revision, _)), Some(kv)) = (held, store) {
        match kv.delete_expect_revision(LEASE_KEY, Some(revision)).await {
            Ok(()) => info!("lease released"),
            Err(e) => warn!(error = %e, "releasing the lease failed; it expires after its TTL"),
        }
    }
}

/// The lease bucket, made when missing: one key, one revision kept, entries expire
/// after the lease TTL.
async fn lease_store(shared: &SharedLog) -> anyhow::Result<kv::Store> {
    let servers: Vec<async_nats::ServerAddr> = shared
        .jetstream
        .url
        .split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(|u| u.parse())
        .collect::<Result<_, _>>()?;
    let client = async_nats::ConnectOptions::new()
        .request_timeout(Some(shared.lease_ttl / 3))
        .connect(servers)
        .await?;
    let js = jetstream::new(client);
    let bucket = lease_bucket(&shared.jetstream.stream);
    match js.get_key_value(&bucket).await {
        Ok(kv) => Ok(kv),
        Err(_) => Ok(js
            .create_key_value(kv::Config {
                bucket: bucket.clone(),
                description: format!(
                    "the DCloud leader lease of the log {}",
                    shared.jetstream.stream
                ),
                history: 1,
                max_age: shared.lease_ttl,
                num_replicas: shared.jetstream.replicas,
                ..Default::default()
            })
            .await?),
    }
}

/// After taking the lease: catch the log up to the stream's end, let the writer fold
/// all of it, promote it, then write what a first leader writes (cluster id, the first
/// admin token). `false` when the server stopped meanwhile.
async fn take_over(
    app: &AppState,
    log: &Arc<JetStreamLog>,
    url: &str,
    data: &std::path::Path,
    stop: &mut watch::Receiver<bool>,
) -> bool {
    loop {
        if *stop.borrow() || app.writer().fatal().is_some() {
            return false;
        }
        let l = log.clone();
        if let Ok(Err(e)) = tokio::task::spawn_blocking(move || l.catch_up()).await {
            warn!(error = %e, "catching up with the log failed; trying again");
        }
        match app.writer().promote().await {
            Ok(seq) => {
                info!(seq, log_head = log.last_seq(), "promoted");
                break;
            }
            Err(why) => {
                tracing::debug!(%why, "not caught up yet");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    // It appends itself now: the stream's sequence check fences any other writer.
    log.pause_following(true);
    app.writer().set_leader_hint(Some(url.to_string()));
    // Every node gets one TTL of grace from now, as after a restart.
    app.liveness().restart_grace();
    match app.bootstrap(data).await {
        Ok(Some(token)) => {
            #[allow(clippy::print_stdout)]
            {
                println!(
                    "admin token (shown once; also in {}): {token}",
                    data.join(super::ADMIN_TOKEN_FILE).display()
                );
            }
        }
        Ok(None) => {}
        Err(e) => error!(error = %e, "writing the cluster id or the first admin token failed"),
    }
    true
}

/// The lease is lost: stop writing for good (the process exits; a supervisor restarts
/// it as a standby).
fn lose(app: &AppState, why: &str) {
    error!(reason = why, "lost the leader lease; this server stops");
    app.writer()
        .stop_with(format!("lost the leader lease: {why}"));
}
