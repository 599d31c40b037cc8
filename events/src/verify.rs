//! The hash-chain verifier behind `dcloud audit verify`: walks every stored record in
//! seq order and names the first sequence number that is missing, unreadable, edited or
//! out of chain. Works on a live [`FjallLog`] or offline on a data directory.

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

/// Walks the `events` keyspace from seq 1.
pub(crate) fn verify_keyspace(
    db: &Database,
    events: &Keyspace,
) -> Result<VerifyReport, VerifyError> {
    let mut decoder = Decoder::new();
    let mut prev_hash = GENESIS_HASH;
    let mut cursor = Cursor::new(&db.snapshot(), events, 1, u64::MAX);
    loop {
        let expected = cursor.expected();
        let bad = |reason| VerifyError {
            first_bad_seq: expected,
            reason,
        };
        let seq = match cursor.advance() {
            None => break,
            Some(Ok(seq)) => seq,
            Some(Err(Walk::Missing { next_stored })) => {
                return Err(bad(BadRecord::Missing { next_stored }))
            }
            Some(Err(Walk::Unreadable(why))) => return Err(bad(BadRecord::Unreadable(why))),
            Some(Err(Walk::Damaged(why))) => return Err(bad(BadRecord::Undecodable(why))),
        };
        let view = RecordView::parse(seq, cursor.record())
            .map_err(|e| bad(BadRecord::Undecodable(reason_of(e))))?;
        if !view.body_hash_ok() {
            return Err(bad(BadRecord::BodyHash));
        }
        if !view.header.link_ok() {
            return Err(bad(BadRecord::Link));
        }
        if view.header.prev_hash != prev_hash {
            return Err(bad(BadRecord::PrevHash));
        }
        if !view.header.is_compacted() {
            decoder
                .validate_view(&view)
                .map_err(|e| bad(BadRecord::Undecodable(reason_of(e))))?;
        }
        prev_hash = view.header.hash;
    }
    let last_seq = cursor.expected() - 1;
    Ok(VerifyReport {
        events: last_seq,
        last_seq,
        last_hash: prev_hash,
    })
}

fn reason_of(e: LogError) -> String {
    match e {
        LogError::Corrupt { reason, .. } => reason,
        other => other.to_string(),
    }
}
