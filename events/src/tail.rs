//! [`Tail`]: a subscription that catches up from disk from any seq, then follows live
//! appends, with no gap and no duplicate, whatever the appends do meanwhile.
//!
//! How: the tail only ever delivers `next_seq`. Live batches come on a tokio broadcast
//! channel whose receiver is created before the tail first reads the disk; a batch that
//! starts past `next_seq` (the tail is still catching up, or it lagged) is dropped and
//! the missing part is read from disk, up to the log's committed seq. Since the log
//! publishes its committed seq before it sends the batch, a tail that finds nothing on
//! disk past `next_seq` is sure to find the next event in the channel.

use std::collections::VecDeque;
use std::sync::Arc;

use futures::Stream;
use tokio::sync::broadcast::{self, error::RecvError, error::TryRecvError};

use crate::envelope::Envelope;
use crate::error::LogError;

/// One appended batch as published to live subscribers: contiguous seqs, in order.
pub type LiveBatch = Arc<[Envelope]>;

/// How many events one catch-up disk read fetches at most.
const CHUNK: u64 = 512;

/// What a [`Tail`] reads from: the backend's durable prefix.
pub trait TailSource: Send + Sync {
    /// Highest seq that is durable and readable; published before the live batch
    /// carrying it is sent.
    fn committed_seq(&self) -> u64;
    /// Appends events `from..=to_inclusive`, in order, to `out`.
    fn read_into(
        &self,
        from: u64,
        to_inclusive: u64,
        out: &mut VecDeque<Envelope>,
    ) -> Result<(), LogError>;
}

/// Every event from a seq on, first from disk then live. Made by
/// [`crate::EventLog::subscribe`].
pub struct Tail {
    source: Arc<dyn TailSource>,
    live: broadcast::Receiver<LiveBatch>,
    /// The seq the next delivered event carries.
    next_seq: u64,
    pending: VecDeque<Envelope>,
    live_closed: bool,
}

impl Tail {
    /// A tail over `source` starting at `from` (inclusive; 0 is read as 1). `live` must
    /// have been subscribed before this call reads anything, and receive every batch
    /// committed after that.
    pub fn new(
        source: Arc<dyn TailSource>,
        live: broadcast::Receiver<LiveBatch>,
        from: u64,
    ) -> Tail {
        Tail {
            source,
            live,
            next_seq: from.max(1),
            pending: VecDeque::new(),
            live_closed: false,
        }
    }

    /// The seq the next event will carry: resume a later subscription from here.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// The next event: exactly `next_seq()`, waiting for it if it is not appended yet.
    /// `Err(Closed)` once the log is dropped or poisoned and everything durable was
    /// delivered. Cancel safe (the only await is a broadcast receive).
    ///
    /// Catch-up reads the disk synchronously, at most a few hundred events per step.
    pub async fn next(&mut self) -> Result<Envelope, LogError> {
        loop {
            if let Some(env) = self.pending.pop_front() {
                self.next_seq = env.seq + 1;
                return Ok(env);
            }
            if !self.live_closed {
                match self.live.try_recv() {
                    Ok(batch) => {
                        self.absorb(&batch);
                        continue;
                    }
                    Err(TryRecvError::Lagged(_)) => continue,
                    Err(TryRecvError::Closed) => self.live_closed = true,
                    Err(TryRecvError::Empty) => {}
                }
            }
            let committed = self.source.committed_seq();
            if self.next_seq <= committed {
                self.read_disk(committed)?;
                continue;
            }
            if self.live_closed {
                return Err(LogError::Closed);
            }
            match self.live.recv().await {
                Ok(batch) => self.absorb(&batch),
                Err(RecvError::Lagged(skipped)) => {
                    tracing::debug!(
                        skipped,
                        next_seq = self.next_seq,
                        "tail lagged; reading from disk"
                    );
                }
                Err(RecvError::Closed) => self.live_closed = true,
            }
        }
    }

    /// The tail as a stream; it ends after the first error (`Closed` included).
    pub fn into_stream(self) -> impl Stream<Item = Result<Envelope, LogError>> + Send {
        futures::stream::unfold(Some(self), |tail| async move {
            let mut tail = tail?;
            match tail.next().await {
                Ok(env) => Some((Ok(env), Some(tail))),
                Err(LogError::Closed) => None,
                Err(e) => Some((Err(e), None)),
            }
        })
    }

    /// Takes the part of a live batch at or after `next_seq`, if the batch reaches it
    /// without a gap; otherwise leaves the gap to the disk. `pending` is empty here.
    fn absorb(&mut self, batch: &[Envelope]) {
        let Some(first) = batch.first() else { return };
        if first.seq > self.next_seq {
            return;
        }
        let skip = usize::try_from(self.next_seq - first.seq).unwrap_or(usize::MAX);
        self.pending.extend(batch.iter().skip(skip).cloned());
    }

    fn read_disk(&mut self, committed: u64) -> Result<(), LogError> {
        let from = self.next_seq;
        let to = committed.min(from.saturating_add(CHUNK - 1));
        self.source.read_into(from, to, &mut self.pending)?;
        let contiguous = self.pending.iter().zip(from..).all(|(e, s)| e.seq == s);
        let expected = to - from + 1;
        if !contiguous || self.pending.len() as u64 != expected {
            let got = self.pending.len() as u64;
            self.pending.clear();
            return Err(LogError::corrupt(
                from + got.min(expected),
                format!("committed events {from}..={to} could not all be read back"),
            ));
        }
        Ok(())
    }
}
