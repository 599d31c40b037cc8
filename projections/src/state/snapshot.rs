//! The state's stored form: validated rkyv bytes behind a small versioned header, and
//! the digest that proves two states equal.

use rkyv::rancor;
use rkyv::util::AlignedVec;
use thiserror::Error;

use super::State;

/// `DCSTATE` + format version: bump the version whenever a state type changes shape.
const MAGIC: &[u8; 7] = b"DCSTATE";
const FORMAT: u8 = 3;
const HEADER: usize = 8;

/// Why snapshot bytes were not loaded. A bad snapshot is skipped: the log is the truth.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SnapshotError {
    #[error("snapshot has no dcloud state header")]
    NotASnapshot,
    #[error("snapshot format {found} is not the supported format {}", FORMAT)]
    Format { found: u8 },
    #[error("snapshot bytes do not validate: {0}")]
    Invalid(String),
}

impl State {
    fn archive(&self) -> AlignedVec {
        // Serialising an in-memory state can only fail past rkyv's 2 GiB offset range,
        // far beyond any state this process could hold under its memory target.
        rkyv::to_bytes::<rancor::Error>(self).expect("state fits rkyv's offset range")
    }

    /// A stable blake3 digest of the whole state (its rkyv bytes; maps are ordered,
    /// so equal states give equal digests).
    pub fn digest(&self) -> [u8; 32] {
        *blake3::hash(&self.archive()).as_bytes()
    }

    /// Header + rkyv bytes.
    pub fn to_snapshot_bytes(&self) -> Vec<u8> {
        let body = self.archive();
        let mut out = Vec::with_capacity(HEADER + body.len());
        out.extend_from_slice(MAGIC);
        out.push(FORMAT);
        out.extend_from_slice(&body);
        out
    }

    /// Loads bytes written by [`State::to_snapshot_bytes`], validating them first.
    pub fn from_snapshot_bytes(bytes: &[u8]) -> Result<State, SnapshotError> {
        if bytes.len() < HEADER || &bytes[..MAGIC.len()] != MAGIC {
            return Err(SnapshotError::NotASnapshot);
        }
        if bytes[MAGIC.len()] != FORMAT {
            return Err(SnapshotError::Format {
                found: bytes[MAGIC.len()],
            });
        }
        let mut aligned = AlignedVec::<16>::with_capacity(bytes.len() - HEADER);
        aligned.extend_from_slice(&bytes[HEADER..]);
        let mut state = rkyv::from_bytes::<State, rancor::Error>(&aligned)
            .map_err(|e| SnapshotError::Invalid(e.to_string()))?;
        state.rebuild_slots();
        Ok(state)
    }
}
