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

/// Where the event log lives.
#[derive(Debug, Clone, Default)]
pub enum LogLocation {
    /// In the data directory (`DATA/log`), on fjall: one server owns it.
    #[default]
    Data,
    /// A JetStream stream other servers share: one leads (holds the lease and writes),
    /// the others follow it as standbys (`server/ha.rs`).
    JetStream(SharedLog),
}

/// A log on JetStream, and how its servers elect the writer.
#[derive(Debug, Clone)]
pub struct SharedLog {
    pub jetstream: dcloud_log_nats::JetStreamConfig,
    /// A leader that has not renewed its lease for this long has lost it; a standby
    /// then takes it.
    pub lease_ttl: std::time::Duration,
    /// The URL clients reach this server at, which standbys give for the leader
    /// (`None`: `http(s)://LISTEN`).
    pub advertise: Option<String>,
}

impl LogLocation {
    /// Reads `--log`: empty or `data` for the data directory, `nats://…` (comma
    /// separated servers) for a JetStream stream named `stream` with `replicas`.
    pub fn parse(
        value: &str,
        stream: &str,
        replicas: usize,
        lease_ttl: std::time::Duration,
        advertise: Option<String>,
    ) -> anyhow::Result<LogLocation> {
        let value = value.trim();
        if value.is_empty() || value == "data" {
            return Ok(LogLocation::Data);
        }
        if !value.starts_with("nats://") && !value.starts_with("tls://") {
            anyhow::bail!(
                "log: expected `data` (the data directory) or nats://HOST:PORT[,nats://HOST:PORT…] (a JetStream cluster), got {value:?}"
            );
        }
        for url in value.split(',').map(str::trim) {
            anyhow::ensure!(
                url.starts_with("nats://") || url.starts_with("tls://"),
                "log: every server must be nats://HOST:PORT, got {url:?}"
            );
        }
        anyhow::ensure!(
            lease_ttl >= std::time::Duration::from_millis(300),
            "lease-ttl-ms: at least 300 ms (the leader renews every third of it), got {} ms",
            lease_ttl.as_millis()
        );
        Ok(LogLocation::JetStream(SharedLog {
            jetstream: dcloud_log_nats::JetStreamConfig::new(value, stream).replicas(replicas),
            lease_ttl,
            advertise,
        }))
    }
}

/// How long a server starting on a JetStream log waits for it to be reachable.
const JETSTREAM_START_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// The open log, whichever backend holds it.
#[derive(Clone)]
pub enum LogStore {
    Fjall(Arc<FjallLog>),
    JetStream(Arc<dcloud_log_nats::JetStreamLog>),
}

impl From<Arc<FjallLog>> for LogStore {
    fn from(log: Arc<FjallLog>) -> Self {
        LogStore::Fjall(log)
    }
}

impl LogStore {
    /// Opens the log at `location` (the data directory's, or a JetStream stream, which
    /// is then followed: other servers' appends reach this one's tails).
    pub fn open(data: &Path, location: &LogLocation) -> anyhow::Result<LogStore> {
        match location {
            LogLocation::Data => Ok(LogStore::Fjall(open_log(data)?)),
            LogLocation::JetStream(shared) => {
                // The data directory still holds this server's keys and tokens.
                crate::durable_file::create_dir_durably(data)
                    .with_context(|| format!("creating data directory {}", data.display()))?;
                let cfg = shared.jetstream.clone();
                // A cluster that is starting has no JetStream leader for a while: wait
                // for it rather than exit (a server that cannot be reached is the same).
                let started = std::time::Instant::now();
                let log = loop {
                    match dcloud_log_nats::JetStreamLog::open(cfg.clone()) {
                        Err(e @ dcloud_events::LogError::Remote { .. })
                            if started.elapsed() < JETSTREAM_START_WAIT =>
                        {
                            tracing::warn!(error = %e, "the JetStream log is not reachable yet; trying again");
                            std::thread::sleep(std::time::Duration::from_secs(1));
                        }
                        other => {
                            break other.with_context(|| {
                                format!(
                                    "opening the event log on JetStream (stream {} at {})",
                                    cfg.stream, cfg.url
                                )
                            })?
                        }
                    }
                };
                log.follow(std::time::Duration::from_millis(250));
                Ok(LogStore::JetStream(Arc::new(log)))
            }
        }
    }

    pub fn as_dyn(&self) -> Arc<dyn EventLog> {
        match self {
            LogStore::Fjall(l) => l.clone(),
            LogStore::JetStream(l) => l.clone(),
        }
    }

    /// Whether other servers may write this log (then this one starts as a standby).
    pub fn is_shared(&self) -> bool {
        matches!(self, LogStore::JetStream(_))
    }

    /// The durable head, seq and hash read together.
    pub fn head(&self) -> (u64, dcloud_events::Hash) {
        match self {
            LogStore::Fjall(l) => l.head(),
            LogStore::JetStream(l) => l.head(),
        }
    }

    /// Walks the whole hash chain (`audit verify`).
    pub fn verify(&self) -> Result<dcloud_events::VerifyReport, dcloud_events::VerifyError> {
        match self {
            LogStore::Fjall(l) => l.verify(),
            LogStore::JetStream(l) => l.verify(),
        }
    }
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
