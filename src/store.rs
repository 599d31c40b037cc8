//! Opening a data directory: the log, and the state recovered from the newest valid
//! snapshot plus a replay of the tail.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use dcloud_events::{fold_range, EventLog, FjallLog};
use dcloud_projections::State;
use tracing::info;

/// Where the log lives inside a data directory.
pub fn log_dir(data: &Path) -> PathBuf {
    data.join("log")
}

pub fn open_log(data: &Path) -> anyhow::Result<Arc<FjallLog>> {
    // Durably: a log whose directory entry is lost at a power cut is a lost log.
    crate::durable_file::create_dir_durably(&log_dir(data))
        .with_context(|| format!("creating data directory {}", data.display()))?;
    let log = FjallLog::open(&log_dir(data))
        .with_context(|| format!("opening the event log in {}", log_dir(data).display()))?;
    Ok(Arc::new(log))
}

/// How the state was rebuilt.
#[derive(Debug, Clone, Copy)]
pub struct Recovery {
    pub snapshot_seq: Option<u64>,
    pub replayed: u64,
    pub millis: u128,
}

/// The newest valid snapshot (a corrupt one is skipped, never trusted) plus the tail.
/// With `upto`, stops at that sequence number and ignores newer snapshots.
pub fn recover(
    log: &dyn EventLog,
    upto: Option<u64>,
    use_snapshot: bool,
) -> anyhow::Result<(State, Recovery)> {
    let started = Instant::now();
    let last = log.last_seq();
    let to = upto.map_or(last, |u| u.min(last));
    let snap = if use_snapshot {
        log.newest_valid_snapshot_upto(to, &|bytes: &[u8]| State::from_snapshot_bytes(bytes))
    } else {
        None
    };
    let (mut state, snapshot_seq) = match snap {
        Some((seq, state)) => (state, Some(seq)),
        None => (State::default(), None),
    };
    let from = state.last_seq() + 1;
    let mut replayed = 0u64;
    if from <= to {
        // Reading and decoding run on a second thread while this one folds.
        replayed = fold_range(log, from, to, |env| state.apply(&env)).context("reading the log")?;
    }
    let rec = Recovery {
        snapshot_seq,
        replayed,
        millis: started.elapsed().as_millis(),
    };
    info!(snapshot = ?rec.snapshot_seq, replayed, millis = rec.millis as u64, "state recovered");
    Ok((state, rec))
}
