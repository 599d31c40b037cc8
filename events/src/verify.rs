//! The hash-chain verifier behind `dcloud audit verify`: walks every stored record in
//! seq order and names the first sequence number that is missing, unreadable, edited or
//! out of chain. Works on a live [`FjallLog`] or offline on a data directory; other
//! backends feed their stored records to the same [`ChainCheck`].

use std::fmt;
use std::path::Path;

use fjall::{Database, Keyspace};

use crate::envelope::{Hash, GENESIS_HASH};
use crate::error::LogError;
use crate::log::cursor::{Cursor, Walk};
use crate::log::{open_keyspaces, FjallLog};
use crate::record::{Decoder, RecordView};

/// A log whose whole chain verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// Number of records walked (= `last_seq`, since seqs are gap-free from 1).
    pub events: u64,
    /// 0 for an empty log.
    pub last_seq: u64,
    /// [`GENESIS_HASH`] for an empty log.
    pub last_hash: Hash,
}

/// The first bad record of a log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("hash chain broken at seq {first_bad_seq}: {reason}")]
pub struct VerifyError {
    pub first_bad_seq: u64,
    pub reason: BadRecord,
}

/// Why a record failed verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BadRecord {
    /// The seq is absent (deleted): the next stored record has seq `next_stored`.
    Missing { next_stored: u64 },
    /// The storage engine could not read it, or its key is malformed.
    Unreadable(String),
    /// Truncated, bad magic or flags, or a body that fails validation.
    Undecodable(String),
    /// `body_hash` is not the blake3 of the body: the body was edited.
    BodyHash,
    /// `hash` is not `blake3(prev_hash ‖ body_hash)`: the header was edited.
    Link,
    /// `prev_hash` is not the previous record's hash: a record was replaced or reordered.
    PrevHash,
}

impl fmt::Display for BadRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BadRecord::Missing { next_stored } => {
                write!(f, "missing (next stored seq is {next_stored})")
            }
            BadRecord::Unreadable(why) => write!(f, "unreadable: {why}"),
            BadRecord::Undecodable(why) => write!(f, "does not decode: {why}"),
            BadRecord::BodyHash => f.write_str("body hash does not match the body"),
            BadRecord::Link => f.write_str("hash is not blake3(prev_hash, body_hash)"),
            BadRecord::PrevHash => f.write_str("prev_hash is not the previous record's hash"),
        }
    }
}

impl FjallLog {
    /// Verifies the whole chain of this log (a consistent snapshot of it).
    pub fn verify(&self) -> Result<VerifyReport, VerifyError> {
        verify_keyspace(&self.inner().db, &self.inner().events)
    }
}

/// Opens the data directory `dir` (the server must not hold it) and verifies its log.
/// A broken chain is `Err(LogError::Verify(..))`; failing to open is another error.
pub fn verify_dir(dir: &Path) -> Result<VerifyReport, LogError> {
    if !dir.is_dir() {
        let msg = format!("{} is not a directory", dir.display());
        return Err(
            fjall::Error::Io(std::io::Error::new(std::io::ErrorKind::NotFound, msg)).into(),
        );
    }
    let (db, events, _, _) = open_keyspaces(dir)?;
    Ok(verify_keyspace(&db, &events)?)
}

/// The chain check of a whole log, fed its stored records in order from seq 1: every
/// backend's verifier, so that they agree on what "broken" means.
pub struct ChainCheck {
    decoder: Decoder,
    prev_hash: Hash,
    next_seq: u64,
}

impl Default for ChainCheck {
    fn default() -> Self {
        ChainCheck::new()
    }
}

impl ChainCheck {
    pub fn new() -> Self {
        ChainCheck {
            decoder: Decoder::new(),
            prev_hash: GENESIS_HASH,
            next_seq: 1,
        }
    }

    /// The seq the next record must carry.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// The error naming the next expected seq as bad for `reason`.
    pub fn bad(&self, reason: BadRecord) -> VerifyError {
        VerifyError {
            first_bad_seq: self.next_seq,
            reason,
        }
    }

    /// Checks the record stored under `seq` (a gap if it is not the next one): header,
    /// body hash, chain link, previous hash and body validation.
    pub fn check(&mut self, seq: u64, record: &[u8]) -> Result<(), VerifyError> {
        if seq != self.next_seq {
            return Err(self.bad(BadRecord::Missing { next_stored: seq }));
        }
        let view = RecordView::parse(seq, record)
            .map_err(|e| self.bad(BadRecord::Undecodable(reason_of(e))))?;
        if !view.body_hash_ok() {
            return Err(self.bad(BadRecord::BodyHash));
        }
        if !view.header.link_ok() {
            return Err(self.bad(BadRecord::Link));
        }
        if view.header.prev_hash != self.prev_hash {
            return Err(self.bad(BadRecord::PrevHash));
        }
        if !view.header.is_compacted() {
            if let Err(e) = self.decoder.validate_view(&view) {
                return Err(self.bad(BadRecord::Undecodable(reason_of(e))));
            }
        }
        self.prev_hash = view.header.hash;
        self.next_seq += 1;
        Ok(())
    }

    /// The report of a chain that verified up to here.
    pub fn finish(self) -> VerifyReport {
        let last_seq = self.next_seq - 1;
        VerifyReport {
            events: last_seq,
            last_seq,
            last_hash: self.prev_hash,
        }
    }
}

/// Walks the `events` keyspace from seq 1.
pub(crate) fn verify_keyspace(
    db: &Database,
    events: &Keyspace,
) -> Result<VerifyReport, VerifyError> {
    let mut check = ChainCheck::new();
    let mut cursor = Cursor::new(&db.snapshot(), events, 1, u64::MAX);
    loop {
        let seq = match cursor.advance() {
            None => break,
            Some(Ok(seq)) => seq,
            Some(Err(Walk::Missing { next_stored })) => {
                return Err(check.bad(BadRecord::Missing { next_stored }))
            }
            Some(Err(Walk::Unreadable(why))) => return Err(check.bad(BadRecord::Unreadable(why))),
            Some(Err(Walk::Damaged(why))) => return Err(check.bad(BadRecord::Undecodable(why))),
        };
        check.check(seq, cursor.record())?;
    }
    Ok(check.finish())
}

fn reason_of(e: LogError) -> String {
    match e {
        LogError::Corrupt { reason, .. } => reason,
        other => other.to_string(),
    }
}
