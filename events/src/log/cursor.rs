//! [`Cursor`]: walks the records of the `events` keyspace in seq order across frames
//! (see [`crate::frame`]), checking that seqs are gap-free. Shared by replay, range
//! reads, tails and the verifier, so they agree on what "missing" and "damaged" mean.

use fjall::{Keyspace, Readable};

use crate::error::LogError;
use crate::frame::{entries, Entry};
use crate::record::{key_seq, seq_key};

/// Why the walk stopped before the end.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Walk {
    #[error("missing (next stored seq is {next_stored})")]
    /// The expected seq is absent; the next stored one is `next_stored`.
    Missing { next_stored: u64 },
    /// The storage engine failed, or a key is malformed.
    #[error("unreadable: {0}")]
    Unreadable(String),
    /// A frame does not parse, or its seqs go backwards.
    #[error("{0}")]
    Damaged(String),
}

pub(crate) struct Cursor {
    iter: fjall::Iter,
    value: fjall::Slice,
    entries: Vec<Entry>,
    /// Index of the next entry of `value` to hand out.
    at: usize,
    /// Damage found in `value` after `entries`: reported when the walk reaches it.
    damage: Option<String>,
    /// The seq the next record must carry.
    expected: u64,
    /// Entries below this are skipped (a read starting inside a frame).
    from: u64,
    to: u64,
    done: bool,
}

impl Cursor {
    /// Records `from..=to` as of a consistent view: `db.snapshot()` for reads that
    /// must not see half of a batch being applied, or the keyspace itself offline.
    pub(crate) fn new(view: &impl Readable, events: &Keyspace, from: u64, to: u64) -> Self {
        let from = from.max(1);
        // Start at the frame holding `from`: the last key at or below it.
        let start = view
            .range(events, ..=seq_key(from))
            .next_back()
            .and_then(|g| g.key().ok())
            .and_then(|k| key_seq(&k))
            .unwrap_or(from);
        let iter = view.range(events, seq_key(start)..=seq_key(to.max(from)));
        Cursor {
            iter,
            value: fjall::Slice::from(&[][..]),
            entries: Vec::new(),
            at: 0,
            damage: None,
            expected: from,
            from,
            to,
            done: from > to,
        }
    }

    /// The seq the next record will carry.
    pub(crate) fn expected(&self) -> u64 {
        self.expected
    }

    /// Moves to the next record: `Some(Ok(seq))` and its bytes in [`Cursor::record`],
    /// `Some(Err(..))` (the walk is over) or `None` at the end.
    pub(crate) fn advance(&mut self) -> Option<Result<u64, Walk>> {
        loop {
            if self.done {
                return None;
            }
            if let Some(e) = self.entries.get(self.at) {
                let seq = e.seq;
                self.at += 1;
                if seq < self.expected {
                    if self.expected == self.from {
                        continue; // before the start of a read inside a frame
                    }
                    return self.fail(Walk::Damaged(format!(
                        "seq {seq} stored again after {}",
                        self.expected - 1
                    )));
                }
                if seq > self.to {
                    self.done = true;
                    return None;
                }
                if seq > self.expected {
                    return self.fail(Walk::Missing { next_stored: seq });
                }
                self.expected = seq + 1;
                return Some(Ok(seq));
            }
            if let Some(reason) = self.damage.take() {
                return self.fail(Walk::Damaged(reason));
            }
            let Some(guard) = self.iter.next() else {
                self.done = true;
                return None;
            };
            let (key, value) = match guard.into_inner() {
                Ok(kv) => kv,
                Err(e) => return self.fail(Walk::Unreadable(format!("{e:?}"))),
            };
            let Some(key) = key_seq(&key) else {
                return self.fail(Walk::Unreadable(format!(
                    "malformed key of {} bytes",
                    key.len()
                )));
            };
            if key > self.expected {
                return self.fail(Walk::Missing { next_stored: key });
            }
            self.value = value;
            self.at = 0;
            if let Err(d) = entries(key, &self.value, &mut self.entries) {
                self.damage = Some(d.reason);
            }
            if self.entries.first().is_some_and(|e| e.seq != key) {
                let first = self.entries[0].seq;
                self.entries.clear();
                self.damage = Some(format!("frame key {key} but its first record is {first}"));
            }
        }
    }

    /// The bytes of the record [`Cursor::advance`] last returned.
    pub(crate) fn record(&self) -> &[u8] {
        let e = &self.entries[self.at - 1];
        &self.value[e.range.clone()]
    }

    fn fail(&mut self, walk: Walk) -> Option<Result<u64, Walk>> {
        self.done = true;
        Some(Err(walk))
    }
}

/// The seq and a copy of the record stored last in `events` (`None` when empty).
pub(crate) fn last_record(events: &Keyspace) -> Result<Option<(u64, Vec<u8>)>, LogError> {
    let Some(guard) = events.last_key_value() else {
        return Ok(None);
    };
    let (key, value) = guard.into_inner()?;
    let key = key_seq(&key)
        .ok_or_else(|| LogError::corrupt(0, format!("last key is {} bytes, not 8", key.len())))?;
    let mut list = Vec::new();
    if let Err(d) = entries(key, &value, &mut list) {
        let at = key + d.at_entry as u64;
        return Err(LogError::corrupt(
            at,
            format!("the last frame: {}", d.reason),
        ));
    }
    let last = list.last().expect("a parsed frame has an entry");
    let first = list[0].seq;
    if first != key || last.seq != first + list.len() as u64 - 1 {
        return Err(LogError::corrupt(
            key,
            format!(
                "the last frame, under key {key}, holds seqs {first}..={} in {} records",
                last.seq,
                list.len()
            ),
        ));
    }
    Ok(Some((last.seq, value[last.range.clone()].to_vec())))
}
