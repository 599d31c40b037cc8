//! Opening a data directory: the log, and the state recovered from the newest valid
//! snapshot plus a replay of the tail.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use dcloud_events::{EventLog, FjallLog};
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
/// With `upto`, stops at that sequence number and ignores newer snapshots. The one
/// recovery path (`dcloud_events::recover`), shared with the API's `at(seq:)`.
pub fn recover(
    log: &dyn EventLog,
    upto: Option<u64>,
    use_snapshot: bool,
) -> anyhow::Result<(State, Recovery)> {
    let started = Instant::now();
    let r = dcloud_events::recover::recover::<State>(log, upto, use_snapshot)
        .context("reading the log")?;
    let state = r.state;
    let rec = Recovery {
        snapshot_seq: r.snapshot_seq,
        replayed: r.replayed,
        millis: started.elapsed().as_millis(),
    };
    info!(snapshot = ?rec.snapshot_seq, replayed = rec.replayed, millis = rec.millis as u64, "state recovered");
    Ok((state, rec))
}
