//! [`ReplayIter`]: the fast path for reading the log in order (start-up replay, range
//! reads, tail catch-up), decoding with one reused aligned buffer.

use fjall::{Database, Keyspace, Readable};

use crate::envelope::{Envelope, Hash, GENESIS_HASH};
use crate::error::LogError;
use crate::record::{key_seq, seq_key, Decoder, RecordView};

/// Decoded envelopes `from..=to` in seq order, as of the moment it was created (a
/// consistent fjall snapshot). Yields an error and stops at the first missing seq, bad
/// key or record that fails validation. Ends quietly at the last stored event.
pub struct ReplayIter {
    iter: fjall::Iter,
    next_seq: u64,
    decoder: Decoder,
    /// `Some` when hashes are checked: the hash the next record's `prev_hash` must equal
    /// (`None` inside means "unknown yet", for a replay not starting at 1).
    chain: Option<Option<Hash>>,
    done: bool,
}

impl ReplayIter {
    pub(crate) fn new(db: &Database, events: &Keyspace, from: u64, to_inclusive: u64) -> Self {
        let from = from.max(1);
        let done = from > to_inclusive;
        // Through a database snapshot: `Keyspace::range` alone reads at the newest
        // seqno and can see part of a batch that is still being applied.
        let iter = db
            .snapshot()
            .range(events, seq_key(from)..=seq_key(to_inclusive.max(from)));
        ReplayIter {
            iter,
            next_seq: from,
            decoder: Decoder::new(),
            chain: None,
            done,
        }
    }

    /// Also checks each record's body hash and chain link, and that its `prev_hash` is
    /// the previous record's hash (from seq 1: the genesis hash). About a quarter slower.
    pub fn verified(mut self) -> Self {
        self.chain = Some((self.next_seq == 1).then_some(GENESIS_HASH));
        self
    }

    /// The seq the next item will carry.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    fn fail(&mut self, err: LogError) -> Option<Result<Envelope, LogError>> {
        self.done = true;
        Some(Err(err))
    }
}

impl Iterator for ReplayIter {
    type Item = Result<Envelope, LogError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let Some(guard) = self.iter.next() else {
            self.done = true;
            return None;
        };
        let expected = self.next_seq;
        let (key, value) = match guard.into_inner() {
            Ok(kv) => kv,
            Err(e) => return self.fail(e.into()),
        };
        match key_seq(&key) {
            Some(seq) if seq == expected => {}
            Some(seq) => {
                return self.fail(LogError::corrupt(
                    expected,
                    format!("missing (next stored seq is {seq})"),
                ));
            }
            None => {
                return self.fail(LogError::corrupt(
                    expected,
                    format!("bad key of {} bytes", key.len()),
                ))
            }
        }
        let view = match RecordView::parse(expected, &value) {
            Ok(v) => v,
            Err(e) => return self.fail(e),
        };
        if let Some(prev) = &mut self.chain {
            let reason = if !view.body_hash_ok() {
                Some("body hash does not match body")
            } else if !view.header.link_ok() {
                Some("hash is not blake3(prev_hash, body_hash)")
            } else if prev.is_some_and(|p| p != view.header.prev_hash) {
                Some("prev_hash is not the previous record's hash")
            } else {
                None
            };
            if let Some(reason) = reason {
                return self.fail(LogError::corrupt(expected, reason));
            }
            *prev = Some(view.header.hash);
        }
        match self.decoder.decode_view(&view) {
            Ok(env) => {
                self.next_seq = expected + 1;
                Some(Ok(env))
            }
            Err(e) => self.fail(e),
        }
    }
}
