//! [`ReplayIter`]: the fast path for reading the log in order (start-up replay, range
//! reads, tail catch-up), decoding with one reused aligned buffer.

use fjall::{Database, Keyspace};

use super::cursor::Cursor;
use crate::envelope::{Envelope, Hash, GENESIS_HASH};
use crate::error::LogError;
use crate::record::{Decoder, RecordView};

/// Decoded envelopes `from..=to` in seq order, as of the moment it was created (a
/// consistent fjall snapshot). Yields an error and stops at the first missing seq, bad
/// key or record that fails validation. Ends quietly at the last stored event.
pub struct ReplayIter {
    cursor: Cursor,
    decoder: Decoder,
    /// `Some` when hashes are checked: the hash the next record's `prev_hash` must equal
    /// (`None` inside means "unknown yet", for a replay not starting at 1).
    chain: Option<Option<Hash>>,
    done: bool,
}

impl ReplayIter {
    pub(crate) fn new(db: &Database, events: &Keyspace, from: u64, to_inclusive: u64) -> Self {
        // Through a database snapshot: `Keyspace::range` alone reads at the newest
        // seqno and can see part of a batch that is still being applied.
        let cursor = Cursor::new(&db.snapshot(), events, from, to_inclusive);
        ReplayIter {
            cursor,
            decoder: Decoder::new(),
            chain: None,
            done: false,
        }
    }

    /// Also checks each record's body hash and chain link, and that its `prev_hash` is
    /// the previous record's hash (from seq 1: the genesis hash). About a quarter slower.
    pub fn verified(mut self) -> Self {
        self.chain = Some((self.cursor.expected() == 1).then_some(GENESIS_HASH));
        self
    }

    /// The seq the next item will carry.
    pub fn next_seq(&self) -> u64 {
        self.cursor.expected()
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
        let expected = self.cursor.expected();
        let seq = match self.cursor.advance()? {
            Ok(seq) => seq,
            Err(walk) => return self.fail(LogError::corrupt(expected, walk.to_string())),
        };
        let view = match RecordView::parse(seq, self.cursor.record()) {
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
                return self.fail(LogError::corrupt(seq, reason));
            }
            *prev = Some(view.header.hash);
        }
        match self.decoder.decode_view(&view) {
            Ok(env) => Some(Ok(env)),
            Err(e) => self.fail(e),
        }
    }
}
