//! The append-only log: the object-safe [`EventLog`] trait and its fjall backend
//! [`FjallLog`] (atomic group-commit appends with one fsync, range reads, tails).
//!
//! Layout: one fjall `Database` with keyspaces `events` (frames of consecutive
//! records, keyed by their first seq; see [`crate::frame`]), `snapshots` (see
//! [`crate::snapshot`]) and `meta` (reserved for later use: schema markers, retention
//! watermarks).

mod create;
pub(crate) mod cursor;
mod replay;

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use fjall::{Database, Keyspace, KeyspaceCreateOptions, OwnedWriteBatch, PersistMode};
use tokio::sync::broadcast;

use crate::envelope::{Envelope, Hash, NewEvent, GENESIS_HASH};
use crate::error::LogError;
use crate::frame::{FrameBuilder, MAX_FRAME_RECORDS};
use crate::record::{seq_key, Encoder, RecordView};
use crate::snapshot;
use crate::tail::{LiveBatch, Tail, TailSource};

pub use replay::ReplayIter;

/// Keyspace holding the events.
pub const EVENTS_KEYSPACE: &str = "events";
/// Keyspace holding snapshots.
pub const SNAPSHOTS_KEYSPACE: &str = "snapshots";
/// Keyspace reserved for log metadata.
pub const META_KEYSPACE: &str = "meta";

/// How many appended batches a slow subscriber may fall behind before it re-reads
/// from disk (it never loses events, it just stops getting them for free).
const LIVE_CAPACITY: usize = 1024;

/// An append-only, hash-chained, gap-free event log. Object safe, so another backend
/// (a replicated log) can stand in for [`FjallLog`] without touching its callers.
pub trait EventLog: Send + Sync {
    /// Sequence number of the last durable event; 0 when empty.
    fn last_seq(&self) -> u64;
    /// Hash of the last durable event; [`GENESIS_HASH`] when empty.
    fn last_hash(&self) -> Hash;
    /// Appends `batch` after `expected_last`, assigning seqs and hashes. Atomic: all
    /// or nothing, made durable with one fsync for the whole batch. Blocks for that
    /// fsync: call it from a blocking context (a dedicated thread or `spawn_blocking`).
    fn append(&self, expected_last: u64, batch: Vec<NewEvent>) -> Result<Vec<Envelope>, LogError>;
    /// Events `from..=to_inclusive` in order (`from` 0 is read as 1; a `to` past the
    /// end stops at the end). A missing seq inside the range is an error.
    fn read_range(
        &self,
        from: u64,
        to_inclusive: u64,
    ) -> Box<dyn Iterator<Item = Result<Envelope, LogError>> + Send + '_>;
    /// Every event from `from` (inclusive) on: first from disk, then live.
    fn subscribe(&self, from: u64) -> Tail;

    /// Durably stores `state` (opaque bytes, with a checksum) as the snapshot taken
    /// after event `seq`, replacing one already stored there. A storage failure
    /// poisons the log like a failed append.
    fn save_snapshot(&self, seq: u64, state: &[u8]) -> Result<(), LogError>;
    /// Walks the stored snapshots at or below `max_seq` and not ahead of the log,
    /// newest first, handing each whose checksum verifies to `accept` until it returns
    /// true; returns that snapshot's seq. Corrupt ones are skipped with a `warn!`.
    /// Most callers want `newest_valid_snapshot` (on `dyn EventLog` and [`FjallLog`]).
    fn scan_snapshots(
        &self,
        max_seq: u64,
        accept: &mut dyn FnMut(u64, &[u8]) -> bool,
    ) -> Option<u64>;
    /// Deletes all but the newest `keep` snapshots; returns how many were deleted.
    fn prune_snapshots(&self, keep: usize) -> Result<usize, LogError>;
}

/// Envelopes per message between the reading thread and the folding one.
const FOLD_CHUNK: usize = 1024;

/// Reads `from..=to_inclusive` of `log` on a helper thread (storage read, validation,
/// decoding) while the calling thread hands each envelope to `fold`, in order: a
/// start-up replay keeps two cores busy instead of one. Returns how many envelopes
/// were folded; stops at the first read error (what came before it was folded).
pub fn fold_range(
    log: &dyn EventLog,
    from: u64,
    to_inclusive: u64,
    mut fold: impl FnMut(Envelope),
) -> Result<u64, LogError> {
    // A few chunks in flight: enough to smooth out the two sides, little memory.
    let (tx, rx) = std::sync::mpsc::sync_channel::<Result<Vec<Envelope>, LogError>>(4);
    std::thread::scope(|scope| {
        scope.spawn(move || {
            let mut chunk = Vec::with_capacity(FOLD_CHUNK);
            for env in log.read_range(from, to_inclusive) {
                match env {
                    Ok(env) => {
                        chunk.push(env);
                        if chunk.len() == FOLD_CHUNK {
                            let full =
                                std::mem::replace(&mut chunk, Vec::with_capacity(FOLD_CHUNK));
                            if tx.send(Ok(full)).is_err() {
                                return; // the folder stopped
                            }
                        }
                    }
                    Err(e) => {
                        let _ = tx.send(Ok(chunk));
                        let _ = tx.send(Err(e));
                        return;
                    }
                }
            }
            let _ = tx.send(Ok(chunk));
        });
        let mut folded = 0u64;
        for msg in rx {
            for env in msg? {
                fold(env);
                folded += 1;
            }
        }
        Ok(folded)
    })
}

/// The fjall backend of [`EventLog`].
pub struct FjallLog {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) db: Database,
    pub(crate) events: Keyspace,
    pub(crate) snapshots: Keyspace,
    #[allow(dead_code)] // reserved: created so later versions find it
    pub(crate) meta: Keyspace,
    /// Last seq that is durable and visible to readers; tails read up to here.
    committed: AtomicU64,
    pub(crate) writer: Mutex<Writer>,
}

pub(crate) struct Writer {
    last_seq: u64,
    last_hash: Hash,
    encoder: Encoder,
    frame: FrameBuilder,
    /// `None` once poisoned or closed: subscribers then drain the disk and end.
    live: Option<broadcast::Sender<LiveBatch>>,
    poisoned: bool,
}

impl Writer {
    /// The last durable seq and its hash.
    pub(crate) fn head(&self) -> (u64, Hash) {
        (self.last_seq, self.last_hash)
    }

    pub(crate) fn check_writable(&self) -> Result<(), LogError> {
        if self.poisoned {
            Err(LogError::Poisoned)
        } else {
            Ok(())
        }
    }

    pub(crate) fn poison(&mut self, err: fjall::Error) -> LogError {
        tracing::error!(error = ?err, "log write failed; refusing all further writes (fail-stop)");
        self.poisoned = true;
        self.live = None;
        LogError::Storage(err)
    }
}

/// Opens (creating if needed) the database and the log's keyspaces at `dir`.
pub(crate) fn open_keyspaces(
    dir: &Path,
) -> Result<(Database, Keyspace, Keyspace, Keyspace), LogError> {
    // fjall's default journal compresses values of 4 KiB and more with LZ4, which
    // takes in most frames: fewer bytes per fsync measured faster here at every batch
    // size (docs/benchmarks.md), even though the hashes in them do not compress.
    let db = Database::builder(dir).open()?;
    let events = db.keyspace(EVENTS_KEYSPACE, KeyspaceCreateOptions::default)?;
    let snapshots = db.keyspace(SNAPSHOTS_KEYSPACE, KeyspaceCreateOptions::default)?;
    let meta = db.keyspace(META_KEYSPACE, KeyspaceCreateOptions::default)?;
    Ok((db, events, snapshots, meta))
}

impl FjallLog {
    /// Opens the log in `dir` (created if missing) and recovers the last seq and hash
    /// from the last stored record. Fails if that record does not parse. It does not
    /// walk the whole chain: that is [`FjallLog::verify`]. Every directory of the log
    /// is fsynced before it returns, and a first creation cut short by a crash is made
    /// again (see `create.rs`), so a power cut never leaves a log that does not open.
    pub fn open(dir: &Path) -> Result<FjallLog, LogError> {
        create::before_open(dir)?;
        let (db, events, snapshots, meta) = open_keyspaces(dir)?;
        create::after_open(dir)?;
        let (last_seq, last_hash) = match cursor::last_record(&events)? {
            None => (0, GENESIS_HASH),
            Some((seq, record)) => (seq, RecordView::parse(seq, &record)?.header.hash),
        };
        tracing::debug!(last_seq, dir = %dir.display(), "event log opened");
        let (live, _) = broadcast::channel(LIVE_CAPACITY);
        let writer = Writer {
            last_seq,
            last_hash,
            encoder: Encoder::new(),
            frame: FrameBuilder::new(),
            live: Some(live),
            poisoned: false,
        };
        let inner = Inner {
            db,
            events,
            snapshots,
            meta,
            committed: AtomicU64::new(last_seq),
            writer: Mutex::new(writer),
        };
        Ok(FjallLog {
            inner: Arc::new(inner),
        })
    }

    /// Fast bulk replay from `from` (inclusive) to the end as of this call: reuses one
    /// aligned buffer, checks gap-free seqs and validates every body, but does not hash
    /// (chain [`ReplayIter::verified`] for that).
    pub fn replay(&self, from: u64) -> ReplayIter {
        ReplayIter::new(&self.inner.db, &self.inner.events, from, u64::MAX)
    }

    /// The last durable seq and its hash, read together (for checkpoints).
    pub fn head(&self) -> (u64, Hash) {
        match self.inner.lock_writer() {
            Ok(w) => w.head(),
            Err(_) => (self.inner.committed_seq(), GENESIS_HASH),
        }
    }

    /// Whether an earlier storage failure made the log refuse writes.
    pub fn is_poisoned(&self) -> bool {
        self.inner.lock_writer().map(|w| w.poisoned).unwrap_or(true)
    }

    pub(crate) fn inner(&self) -> &Inner {
        &self.inner
    }
}

impl Inner {
    pub(crate) fn lock_writer(&self) -> Result<std::sync::MutexGuard<'_, Writer>, LogError> {
        // A panic while holding the lock leaves the writer state unknown: fail-stop.
        self.writer.lock().map_err(|_| LogError::Poisoned)
    }

    /// Highest durable seq.
    pub(crate) fn committed_seq(&self) -> u64 {
        self.committed.load(Ordering::Acquire)
    }
}

impl EventLog for FjallLog {
    fn last_seq(&self) -> u64 {
        self.inner.committed_seq()
    }

    fn last_hash(&self) -> Hash {
        match self.inner.lock_writer() {
            Ok(w) => w.last_hash,
            Err(_) => GENESIS_HASH,
        }
    }

    fn append(&self, expected_last: u64, batch: Vec<NewEvent>) -> Result<Vec<Envelope>, LogError> {
        let inner = &*self.inner;
        let mut w = inner.lock_writer()?;
        w.check_writable()?;
        if expected_last != w.last_seq {
            return Err(LogError::Conflict {
                expected: expected_last,
                actual: w.last_seq,
            });
        }
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let w = &mut *w;
        let frames = batch.len().div_ceil(MAX_FRAME_RECORDS);
        let mut fjall_batch = OwnedWriteBatch::with_capacity(inner.db.clone(), frames)
            .durability(Some(PersistMode::SyncData));
        let mut out = Vec::with_capacity(batch.len());
        let mut prev_hash = w.last_hash;
        let mut seq = w.last_seq;
        w.frame.clear();
        let mut frame_first = seq + 1;
        for new in batch {
            seq += 1;
            let body = new.at(seq);
            let encoder = &mut w.encoder;
            let mut hash = GENESIS_HASH;
            w.frame.push_with(seq, |buf| {
                hash = encoder.encode_into(&body, &prev_hash, buf)?;
                Ok::<(), LogError>(())
            })?;
            out.push(body.into_envelope(prev_hash, hash));
            prev_hash = hash;
            if w.frame.len() == MAX_FRAME_RECORDS {
                fjall_batch.insert(&inner.events, seq_key(frame_first), w.frame.bytes());
                w.frame.clear();
                frame_first = seq + 1;
            }
        }
        if !w.frame.is_empty() {
            fjall_batch.insert(&inner.events, seq_key(frame_first), w.frame.bytes());
        }
        if let Err(e) = fjall_batch.commit() {
            return Err(w.poison(e));
        }
        w.last_seq = seq;
        w.last_hash = prev_hash;
        inner.committed.store(seq, Ordering::Release);
        if let Some(live) = &w.live {
            if live.receiver_count() > 0 {
                // Err only when every receiver is gone meanwhile: nothing to do.
                let _ = live.send(LiveBatch::from(out.clone()));
            }
        }
        Ok(out)
    }

    fn read_range(
        &self,
        from: u64,
        to_inclusive: u64,
    ) -> Box<dyn Iterator<Item = Result<Envelope, LogError>> + Send + '_> {
        Box::new(ReplayIter::new(
            &self.inner.db,
            &self.inner.events,
            from,
            to_inclusive,
        ))
    }

    fn subscribe(&self, from: u64) -> Tail {
        // The receiver exists before the tail reads anything from disk, so every
        // event committed after that read is also in the channel: no gap.
        let rx = match self.inner.lock_writer() {
            Ok(w) => w.live.as_ref().map(broadcast::Sender::subscribe),
            Err(_) => None,
        };
        let rx = rx.unwrap_or_else(|| broadcast::channel(1).1);
        let source: Arc<dyn TailSource> = self.inner.clone();
        Tail::new(source, rx, from)
    }

    fn save_snapshot(&self, seq: u64, state: &[u8]) -> Result<(), LogError> {
        snapshot::save(&self.inner, seq, state)
    }

    fn scan_snapshots(
        &self,
        max_seq: u64,
        accept: &mut dyn FnMut(u64, &[u8]) -> bool,
    ) -> Option<u64> {
        snapshot::scan(&self.inner, max_seq, accept)
    }

    fn prune_snapshots(&self, keep: usize) -> Result<usize, LogError> {
        snapshot::prune(&self.inner, keep)
    }
}

impl TailSource for Inner {
    fn committed_seq(&self) -> u64 {
        Inner::committed_seq(self)
    }

    fn read_into(
        &self,
        from: u64,
        to_inclusive: u64,
        out: &mut std::collections::VecDeque<Envelope>,
    ) -> Result<(), LogError> {
        for env in ReplayIter::new(&self.db, &self.events, from, to_inclusive) {
            out.push_back(env?);
        }
        Ok(())
    }
}

impl Drop for FjallLog {
    fn drop(&mut self) {
        // Close the live channel: tails deliver what is on disk, then end with `Closed`.
        if let Ok(mut w) = self.inner.writer.lock() {
            w.live = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Event;

    fn one(i: u64) -> Vec<NewEvent> {
        vec![NewEvent {
            time_ms: i as i64,
            actor: "system".into(),
            correlation: format!("c{i}"),
            event: Event::NodeLost {
                node_id: format!("n{i}"),
            },
        }]
    }

    /// A failed write (here: simulated) leaves the log refusing every later write,
    /// and tails end after what was durable.
    #[tokio::test]
    async fn a_storage_failure_poisons_the_log() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = FjallLog::open(dir.path()).expect("open");
        log.append(0, one(1)).expect("append");
        let mut tail = log.subscribe(1);
        let err = log
            .inner
            .lock_writer()
            .expect("lock")
            .poison(fjall::Error::Poisoned);
        assert!(matches!(err, LogError::Storage(fjall::Error::Poisoned)));
        assert!(log.is_poisoned());
        assert!(matches!(log.append(1, one(2)), Err(LogError::Poisoned)));
        assert!(matches!(
            log.save_snapshot(1, b"s"),
            Err(LogError::Poisoned)
        ));
        assert_eq!(log.last_seq(), 1);
        assert_eq!(tail.next().await.expect("durable event").seq, 1);
        assert!(matches!(tail.next().await, Err(LogError::Closed)));
        // Reads still work: the log on disk is the truth.
        assert_eq!(log.read_range(1, 1).count(), 1);
    }
}
