//! [`JetStreamLog`]: the [`EventLog`] on a JetStream stream. The trait is synchronous,
//! so the log owns a small tokio runtime of its own and blocks on it; that works from
//! a plain thread, from `spawn_blocking` of another runtime, and (blocking that worker,
//! as fjall's fsync does) from inside another runtime's task.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use async_nats::jetstream::object_store::ObjectStore;
use async_nats::{Client, Subject};
use bytes::Bytes;
use dcloud_events::frame::{Entry, FrameBuilder, MAX_FRAME_RECORDS};
use dcloud_events::record::{Encoder, RecordView};
use dcloud_events::{
    ChainCheck, Envelope, EventLog, Hash, LiveBatch, LogError, NewEvent, Tail, TailSource,
    VerifyError, VerifyReport, GENESIS_HASH,
};
use tokio::sync::broadcast;

use crate::append::{publish_chunk, Frame, Outcome};
use crate::config::JetStreamConfig;
use crate::read::{frame_records, get_batch, RangeIter, MESSAGES_PER_READ};
use crate::{open, remote, snapshot};

/// How many appended batches a slow subscriber may fall behind before it re-reads
/// from the stream (as fjall's log).
const LIVE_CAPACITY: usize = 1024;
/// After a wake-up whose batch was not committed yet, a follower looks again after
/// these many milliseconds (a commit follows its messages within a millisecond or
/// two on a quiet cluster).
const AGAIN_MS: [u64; 6] = [1, 2, 5, 10, 20, 50];
/// Tries of one chunk whose outcome stays unknown before the log gives up (fail-stop).
const PUBLISH_TRIES: u32 = 3;

/// The JetStream backend of [`EventLog`]. One writer per stream: a second one is
/// fenced out by the stream's expected-last-sequence check (see `append.rs`).
pub struct JetStreamLog {
    inner: Arc<Inner>,
}

/// The runtime the log blocks on; shut down without waiting, so that the last handle
/// may be dropped anywhere, even inside another runtime.
struct Runtime(Option<tokio::runtime::Runtime>);

impl Drop for Runtime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

pub(crate) struct Inner {
    pub(crate) cfg: JetStreamConfig,
    pub(crate) client: Client,
    subject: Subject,
    pub(crate) snapshots: ObjectStore,
    /// Last seq known durable (this handle's appends, or the stream's end at open).
    committed: AtomicU64,
    /// The same end as `(log seq, stream seq)`, read together (for `locate`).
    head: Mutex<(u64, u64)>,
    pub(crate) writer: Mutex<Writer>,
    /// Set while [`JetStreamLog::follow`] should not read (see `pause_following`).
    follow_paused: std::sync::atomic::AtomicBool,
    rt: Runtime,
}

pub(crate) struct Writer {
    last_seq: u64,
    last_hash: Hash,
    /// Stream seq of the message holding `last_seq`.
    last_stream_seq: u64,
    encoder: Encoder,
    frame: FrameBuilder,
    /// `None` once stopped or dropped: subscribers then drain the stream and end.
    live: Option<broadcast::Sender<LiveBatch>>,
    stopped: Option<Stopped>,
}

#[derive(Clone, Copy)]
enum Stopped {
    /// A write's outcome is unknown (or the server refused it): fail-stop.
    Poisoned,
    /// Another writer appended; it reached `actual`.
    Fenced { actual: u64 },
}

impl Writer {
    pub(crate) fn head(&self) -> (u64, Hash) {
        (self.last_seq, self.last_hash)
    }

    pub(crate) fn check_writable(&self) -> Result<(), LogError> {
        match self.stopped {
            None => Ok(()),
            Some(Stopped::Poisoned) => Err(LogError::Poisoned),
            Some(Stopped::Fenced { actual }) => Err(LogError::Fenced { actual }),
        }
    }

    /// Stops all writes for good after `err` (its outcome unknown or refused).
    pub(crate) fn poison(&mut self, err: LogError) -> LogError {
        tracing::error!(error = %err, "JetStream log write failed; refusing all further writes (fail-stop)");
        self.stopped = Some(Stopped::Poisoned);
        self.live = None;
        err
    }

    fn fence(&mut self, actual: u64) {
        tracing::error!(
            actual,
            last_seq = self.last_seq,
            "another writer appended to the JetStream log; this one is fenced out"
        );
        self.stopped = Some(Stopped::Fenced { actual });
        self.live = None;
    }
}

impl JetStreamLog {
    /// Connects to `cfg.url`, checks the server (2.12.1 or later) and the stream (made
    /// if missing; an existing one must allow atomic batches and direct gets, hold the
    /// log's subject on file storage with `cfg.replicas` replicas), and recovers the
    /// last seq and hash from the last stored record. Like [`dcloud_events::FjallLog`]
    /// it does not walk the chain: that is [`JetStreamLog::verify`].
    pub fn open(cfg: JetStreamConfig) -> Result<JetStreamLog, LogError> {
        cfg.check()?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("dcloud-nats-log")
            .enable_all()
            .build()
            .map_err(|e| remote(format!("cannot start the NATS runtime: {e}")))?;
        let rt = Runtime(Some(rt));
        let opened = {
            let cfg = cfg.clone();
            block(&rt, async move { open::open(&cfg).await })??
        };
        let (last_seq, last_hash) = if opened.last_seq == 0 {
            (0, GENESIS_HASH)
        } else {
            if opened.first_seq != 1 {
                return Err(LogError::corrupt(
                    1,
                    format!(
                        "stream {} starts at seq {}: records were removed from it",
                        cfg.stream, opened.first_seq
                    ),
                ));
            }
            let (client, stream, seq, t) = (
                opened.client.clone(),
                cfg.stream.clone(),
                opened.last_seq,
                cfg.request_timeout,
            );
            let messages = block(
                &rt,
                async move { get_batch(&client, &stream, seq, 1, t).await },
            )??;
            match messages.first() {
                Some((s, bytes)) if *s == seq => last_record(bytes)?,
                _ => {
                    return Err(LogError::corrupt(
                        0,
                        format!("the stream's last message (stream seq {seq}) could not be read"),
                    ))
                }
            }
        };
        let last_stream_seq = opened.last_seq;
        let (live, _) = broadcast::channel(LIVE_CAPACITY);
        let inner = Inner {
            subject: Subject::from(cfg.subject()),
            cfg,
            client: opened.client,
            snapshots: opened.snapshots,
            committed: AtomicU64::new(last_seq),
            head: Mutex::new((last_seq, last_stream_seq)),
            writer: Mutex::new(Writer {
                last_seq,
                last_hash,
                last_stream_seq,
                encoder: Encoder::new(),
                frame: FrameBuilder::new(),
                live: Some(live),
                stopped: None,
            }),
            follow_paused: std::sync::atomic::AtomicBool::new(false),
            rt,
        };
        Ok(JetStreamLog {
            inner: Arc::new(inner),
        })
    }

    /// Verifies the whole hash chain as stored in the stream, from seq 1 to its end
    /// (the same checks as `dcloud audit verify` on fjall).
    pub fn verify(&self) -> Result<VerifyReport, VerifyError> {
        use dcloud_events::BadRecord;
        let mut check = ChainCheck::new();
        let mut entries = Vec::new();
        let mut stream_seq = 1;
        loop {
            let messages = match self.inner.get_batch(stream_seq, MESSAGES_PER_READ) {
                Ok(m) => m,
                Err(e) => return Err(check.bad(BadRecord::Unreadable(e.to_string()))),
            };
            if messages.is_empty() {
                return Ok(check.finish());
            }
            for (seq, bytes) in messages {
                if seq != stream_seq {
                    let why = format!("stream seq {stream_seq} is missing (next is {seq})");
                    return Err(check.bad(BadRecord::Unreadable(why)));
                }
                stream_seq += 1;
                let damage = frame_records(&bytes, &mut entries).err();
                for e in &entries {
                    check.check(e.seq, &bytes[e.range.clone()])?;
                }
                if let Some(reason) = damage {
                    return Err(check.bad(BadRecord::Undecodable(reason)));
                }
            }
        }
    }

    /// The head as this handle knows it (its appends and what it caught up with):
    /// seq and chain hash, read together.
    pub fn head(&self) -> (u64, Hash) {
        self.inner
            .lock_writer()
            .map_or((0, GENESIS_HASH), |w| w.head())
    }

    /// Whether a failed write or another writer made the log refuse writes.
    pub fn is_stopped(&self) -> bool {
        self.inner
            .lock_writer()
            .map(|w| w.stopped.is_some())
            .unwrap_or(true)
    }

    /// Seqs of the stored snapshots, oldest first (valid or not).
    pub fn snapshot_seqs(&self) -> Result<Vec<u64>, LogError> {
        snapshot::seqs(&self.inner)
    }

    /// The configuration the log was opened with.
    pub fn config(&self) -> &JetStreamConfig {
        &self.inner.cfg
    }

    /// Takes in what other writers appended to the stream after this handle's head:
    /// each record is checked (body hash, chain link to the one before, no gap), then
    /// the head moves and tails see the records live, as if appended here. Returns how
    /// many records were taken in. A standby's handle follows the leader's this way
    /// (see [`JetStreamLog::follow`]); a writer that took in another's records has
    /// lost the race: its next append with the old head is refused as a conflict.
    pub fn catch_up(&self) -> Result<u64, LogError> {
        self.inner.catch_up()
    }

    /// Keeps this handle caught up ([`JetStreamLog::catch_up`]) in the background:
    /// at once whenever a message is published on the log's subject (one core NATS
    /// subscription wakes it), and at least every `every` whatever arrives. Runs until
    /// the log is dropped; a failed catch-up is logged and tried again. While paused
    /// ([`JetStreamLog::pause_following`]: a leader's handle, which appends itself) it
    /// neither subscribes nor reads.
    pub fn follow(&self, every: std::time::Duration) {
        let weak = Arc::downgrade(&self.inner);
        let (client, subject) = (self.inner.client.clone(), self.inner.subject.clone());
        let Some(rt) = self.inner.rt.0.as_ref() else {
            return;
        };
        rt.spawn(async move {
            use futures::{FutureExt as _, StreamExt as _};
            let mut wake: Option<async_nats::Subscriber> = None;
            // Catch-ups still to try shortly after a wake-up: the wake-up is the
            // message as published, which can come before its batch is committed.
            let mut again = 0u32;
            let mut failing = false;
            loop {
                let paused = match weak.upgrade() {
                    Some(inner) => inner.follow_paused.load(Ordering::Acquire),
                    None => return,
                };
                if paused {
                    wake = None;
                    again = 0;
                    tokio::time::sleep(every).await;
                    continue;
                }
                if wake.is_none() {
                    match client.subscribe(subject.clone()).await {
                        Ok(sub) => wake = Some(sub),
                        Err(e) => tracing::warn!(error = %e, "cannot subscribe to the log's subject; following by polling"),
                    }
                }
                // Soon after a wake-up, then less and less often.
                let wait = match again {
                    0 => every,
                    n => std::time::Duration::from_millis(AGAIN_MS[AGAIN_MS.len() - n as usize]),
                };
                let woken = match wake.as_mut() {
                    Some(sub) => tokio::select! {
                        m = sub.next() => match m {
                            Some(_) => {
                                // Those queued behind it are covered by this catch-up.
                                while let Some(Some(_)) = sub.next().now_or_never() {}
                                true
                            }
                            None => {
                                wake = None;
                                false
                            }
                        },
                        () = tokio::time::sleep(wait) => false,
                    },
                    None => {
                        tokio::time::sleep(wait).await;
                        false
                    }
                };
                if woken {
                    again = AGAIN_MS.len() as u32;
                }
                let Some(inner) = weak.upgrade() else { return };
                match tokio::task::spawn_blocking(move || inner.catch_up()).await {
                    Ok(Ok(0)) => again = again.saturating_sub(1),
                    Ok(Ok(_)) => failing = false,
                    Ok(Err(e)) => {
                        if !failing {
                            tracing::warn!(error = %e, "following the JetStream log failed; trying again");
                        }
                        failing = true;
                    }
                    Err(_) => return,
                }
            }
        });
    }

    /// Pauses or resumes [`JetStreamLog::follow`] (a server pauses it once it leads:
    /// its own appends move the head, and another writer is fenced by the stream).
    pub fn pause_following(&self, paused: bool) {
        self.inner.follow_paused.store(paused, Ordering::Release);
    }
}

/// The seq and chain hash of the last record of a stored frame.
fn last_record(frame: &[u8]) -> Result<(u64, Hash), LogError> {
    let mut entries: Vec<Entry> = Vec::new();
    if let Err(reason) = frame_records(frame, &mut entries) {
        let at = entries.last().map_or(0, |e| e.seq + 1);
        return Err(LogError::corrupt(
            at,
            format!("the last stored frame: {reason}"),
        ));
    }
    let last = entries.last().expect("a parsed frame has an entry");
    let view = RecordView::parse(last.seq, &frame[last.range.clone()])?;
    Ok((last.seq, view.header.hash))
}

/// Runs `f` on `rt` and waits for it on this thread, whatever this thread is.
fn block<F>(rt: &Runtime, f: F) -> Result<F::Output, LogError>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let rt = rt.0.as_ref().expect("the runtime lives as long as the log");
    // Unconstrained: called from a task of another runtime, the join handle would
    // otherwise spend that task's cooperative budget, and once it is spent (after
    // about 128 calls) it returns Pending forever, since the task never yields.
    futures::executor::block_on(tokio::task::unconstrained(rt.spawn(f)))
        .map_err(|e| remote(format!("the NATS runtime task failed: {e}")))
}

impl Inner {
    pub(crate) fn lock_writer(&self) -> Result<MutexGuard<'_, Writer>, LogError> {
        self.writer.lock().map_err(|_| LogError::Poisoned)
    }

    pub(crate) fn committed(&self) -> u64 {
        self.committed.load(Ordering::Acquire)
    }

    pub(crate) fn block<F>(&self, f: F) -> Result<F::Output, LogError>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        block(&self.rt, f)
    }

    /// Stored messages from stream seq `from` on, at most `max`.
    pub(crate) fn get_batch(&self, from: u64, max: u64) -> Result<Vec<(u64, Bytes)>, LogError> {
        let (client, stream, t) = (
            self.client.clone(),
            self.cfg.stream.clone(),
            self.cfg.request_timeout,
        );
        self.block(async move { get_batch(&client, &stream, from, max, t).await })?
    }

    /// The one stored message at stream seq `stream_seq`.
    fn message(&self, stream_seq: u64) -> Result<Bytes, LogError> {
        match self.get_batch(stream_seq, 1)?.pop() {
            Some((s, bytes)) if s == stream_seq => Ok(bytes),
            _ => Err(LogError::corrupt(
                0,
                format!("stream seq {stream_seq} could not be read"),
            )),
        }
    }

    /// See [`JetStreamLog::catch_up`]. The stream is read without the writer's lock;
    /// what was read is taken in under it only if no append of this handle moved the
    /// head meanwhile (else it reads again).
    fn catch_up(&self) -> Result<u64, LogError> {
        let mut taken = 0u64;
        let mut entries = Vec::new();
        let mut decoder = dcloud_events::record::Decoder::new();
        loop {
            let from = self.lock_writer()?.last_stream_seq + 1;
            let messages = self.get_batch(from, MESSAGES_PER_READ)?;
            if messages.is_empty() {
                return Ok(taken);
            }
            let mut guard = self.lock_writer()?;
            let w = &mut *guard;
            if w.last_stream_seq + 1 != from {
                continue;
            }
            let mut envs = Vec::new();
            let (mut seq, mut hash, mut stream_seq) = (w.last_seq, w.last_hash, w.last_stream_seq);
            for (at, payload) in &messages {
                if *at != stream_seq + 1 {
                    return Err(LogError::corrupt(
                        seq + 1,
                        format!("stream seq {} is missing (next is {at})", stream_seq + 1),
                    ));
                }
                if let Err(reason) = frame_records(payload, &mut entries) {
                    return Err(LogError::corrupt(
                        seq + 1,
                        format!("stream seq {at}: {reason}"),
                    ));
                }
                for e in &entries {
                    if e.seq != seq + 1 {
                        return Err(LogError::corrupt(
                            seq + 1,
                            format!("stream seq {at} holds seq {} next", e.seq),
                        ));
                    }
                    let env = decoder.decode_checked(e.seq, &payload[e.range.clone()])?;
                    if env.prev_hash != hash {
                        return Err(LogError::corrupt(
                            e.seq,
                            "prev_hash does not match the hash of the record before it",
                        ));
                    }
                    seq = e.seq;
                    hash = env.hash;
                    envs.push(env);
                }
                stream_seq = *at;
            }
            w.last_seq = seq;
            w.last_hash = hash;
            w.last_stream_seq = stream_seq;
            if let Ok(mut head) = self.head.lock() {
                *head = (seq, stream_seq);
            }
            self.committed.store(seq, Ordering::Release);
            taken += envs.len() as u64;
            if let Some(live) = &w.live {
                if live.receiver_count() > 0 && !envs.is_empty() {
                    let _ = live.send(LiveBatch::from(envs));
                }
            }
        }
    }

    /// The stream seq of the message (frame) holding log seq `seq`, which this handle
    /// knows is committed: bisection over the stream. Every message holds at least one
    /// record, so with the log ending at (`last`, stream `last_stream`) the frame of
    /// `seq` is at most `seq` and at least `last_stream - (last - seq)`: the newest seqs
    /// (tails, recent snapshots) are found in a probe or two.
    pub(crate) fn locate(&self, seq: u64) -> Result<u64, LogError> {
        let (last, last_stream) = *self.head.lock().map_err(|_| LogError::Poisoned)?;
        if seq == 0 || seq > last {
            return Err(LogError::corrupt(
                seq,
                format!("past the end of the log ({last})"),
            ));
        }
        let mut lo = last_stream.saturating_sub(last - seq).max(1);
        let mut hi = seq.min(last_stream);
        let mut entries = Vec::new();
        while lo <= hi {
            let mid = lo + (hi - lo) / 2;
            let bytes = self.message(mid)?;
            if let Err(reason) = frame_records(&bytes, &mut entries) {
                if entries.is_empty() {
                    return Err(LogError::corrupt(
                        seq,
                        format!("stream seq {mid}: {reason}"),
                    ));
                }
            }
            let (first, end) = (entries[0].seq, entries[entries.len() - 1].seq);
            if seq < first {
                hi = mid - 1;
            } else if seq > end {
                lo = mid + 1;
            } else {
                return Ok(mid);
            }
        }
        Err(LogError::corrupt(seq, "no stored frame holds it"))
    }

    /// The chain hash of the record stored at `seq`, if one is readable there.
    pub(crate) fn chain_hash_at(&self, seq: u64) -> Option<Hash> {
        let env = RangeIter::new(self, seq, seq).next()?.ok()?;
        (env.seq == seq).then_some(env.hash)
    }

    /// The log seq of the last record stored in the message at stream seq `stream_seq`
    /// (another writer's, when the stream moved past this handle).
    fn log_seq_at(&self, stream_seq: u64) -> Option<u64> {
        last_record(&self.message(stream_seq).ok()?)
            .ok()
            .map(|(seq, _)| seq)
    }

    /// Publishes one chunk until its outcome is known: `Ok` once it is stored.
    fn publish(&self, w: &mut Writer, chunk: &[Frame]) -> Result<(), LogError> {
        let (Some(first), Some(last)) = (chunk.first(), chunk.last()) else {
            return Ok(());
        };
        let after = w.last_stream_seq;
        let end = after + chunk.len() as u64;
        // What is stored at `end` may be this very chunk: an earlier try whose answer
        // was lost. The same bytes there are the same records (the chain).
        let stored_is_ours = || self.message(end).is_ok_and(|b| b == last.bytes);
        let mut tries = 0;
        loop {
            tries += 1;
            let (client, subject, t) = (
                self.client.clone(),
                self.subject.clone(),
                self.cfg.request_timeout,
            );
            // The future must own what it publishes: copies of the (refcounted) bytes.
            let owned = chunk.to_vec();
            let outcome = match self
                .block(async move { publish_chunk(&client, &subject, after, &owned, t).await })
            {
                Ok(o) => o,
                Err(e) => Outcome::Unknown(e.to_string()),
            };
            match outcome {
                Outcome::Committed => return Ok(()),
                Outcome::WrongLast { .. } | Outcome::Duplicate if stored_is_ours() => {
                    tracing::info!(
                        first = first.first,
                        last = last.last,
                        "JetStream already holds these records (an earlier try committed)"
                    );
                    return Ok(());
                }
                Outcome::WrongLast { actual } => {
                    // The other writer's log seq there; if its message is no frame, the
                    // least it can be (every message holds at least one record).
                    let actual = self
                        .log_seq_at(actual)
                        .unwrap_or(w.last_seq + actual.saturating_sub(after));
                    w.fence(actual);
                    return Err(LogError::Conflict {
                        expected: first.first - 1,
                        actual,
                    });
                }
                Outcome::Duplicate => {
                    return Err(w.poison(remote(format!(
                        "seqs {}..={} were refused as duplicates but the stream holds other records there",
                        first.first, last.last
                    ))))
                }
                Outcome::Rejected(reason) => return Err(w.poison(remote(reason))),
                Outcome::Unknown(reason) if tries >= PUBLISH_TRIES => {
                    return Err(w.poison(remote(format!(
                        "outcome of seqs {}..={} unknown after {tries} tries: {reason}",
                        first.first, last.last
                    ))))
                }
                Outcome::Unknown(reason) => {
                    tracing::warn!(%reason, tries, first = first.first, "JetStream append outcome unknown; publishing the same records again");
                }
            }
        }
    }
}

impl EventLog for JetStreamLog {
    fn last_seq(&self) -> u64 {
        self.inner.committed()
    }

    fn last_hash(&self) -> Hash {
        self.inner
            .lock_writer()
            .map_or(GENESIS_HASH, |w| w.last_hash)
    }

    fn append(&self, expected_last: u64, batch: Vec<NewEvent>) -> Result<Vec<Envelope>, LogError> {
        let inner = &*self.inner;
        let mut guard = inner.lock_writer()?;
        let w = &mut *guard;
        w.check_writable()?;
        if expected_last != w.last_seq {
            return Err(LogError::Conflict {
                expected: expected_last,
                actual: w.last_seq,
            });
        }
        let mut out = Vec::with_capacity(batch.len());
        let mut frames = Vec::with_capacity(batch.len().div_ceil(MAX_FRAME_RECORDS));
        let mut prev_hash = w.last_hash;
        w.frame.clear();
        let mut frame_first = w.last_seq + 1;
        let n = batch.len();
        for (i, (new, seq)) in batch.into_iter().zip(w.last_seq + 1..).enumerate() {
            let body = new.at(seq);
            let encoder = &mut w.encoder;
            let mut hash = GENESIS_HASH;
            w.frame.push_with(seq, |buf| {
                hash = encoder.encode_into(&body, &prev_hash, buf)?;
                Ok::<(), LogError>(())
            })?;
            out.push(body.into_envelope(prev_hash, hash));
            prev_hash = hash;
            if w.frame.len() == MAX_FRAME_RECORDS || i + 1 == n {
                frames.push(Frame {
                    first: frame_first,
                    last: seq,
                    hash,
                    bytes: Bytes::copy_from_slice(w.frame.bytes()),
                });
                w.frame.clear();
                frame_first = seq + 1;
            }
        }
        // Each chunk is atomic; more than `max_batch_messages` frames are several
        // chunks (see the crate doc for what that means when one fails).
        let mut done = 0;
        for chunk in frames.chunks(inner.cfg.max_batch_messages) {
            inner.publish(w, chunk)?;
            let last = chunk.last().expect("chunks are not empty");
            let count = (last.last - chunk[0].first + 1) as usize;
            let envs = &out[done..done + count];
            done += count;
            w.last_seq = last.last;
            w.last_hash = last.hash;
            w.last_stream_seq += chunk.len() as u64;
            if let Ok(mut head) = inner.head.lock() {
                *head = (w.last_seq, w.last_stream_seq);
            }
            inner.committed.store(last.last, Ordering::Release);
            if let Some(live) = &w.live {
                if live.receiver_count() > 0 {
                    let _ = live.send(LiveBatch::from(envs.to_vec()));
                }
            }
        }
        Ok(out)
    }

    fn read_range(
        &self,
        from: u64,
        to_inclusive: u64,
    ) -> Box<dyn Iterator<Item = Result<Envelope, LogError>> + Send + '_> {
        Box::new(RangeIter::new(&self.inner, from, to_inclusive))
    }

    fn subscribe(&self, from: u64) -> Tail {
        // The receiver exists before the tail reads anything: no gap (as fjall's).
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
        self.committed()
    }

    fn read_into(
        &self,
        from: u64,
        to_inclusive: u64,
        out: &mut std::collections::VecDeque<Envelope>,
    ) -> Result<(), LogError> {
        for env in RangeIter::new(self, from, to_inclusive) {
            out.push_back(env?);
        }
        Ok(())
    }
}

impl Drop for JetStreamLog {
    fn drop(&mut self) {
        // Close the live channel: tails deliver what is stored, then end with `Closed`.
        if let Ok(mut w) = self.inner.writer.lock() {
            w.live = None;
        }
    }
}
