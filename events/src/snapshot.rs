//! Snapshots of the projection, stored beside the log as opaque bytes with a checksum
//! and the chain hash of the log at their seq: save, load the newest one that checks
//! out (skipping corrupt ones and ones that do not match the log), prune.
//!
//! Value under key = seq (big-endian u64) in the `snapshots` keyspace:
//! `SNAPSHOT_MAGIC_V2 | blake3(seq_be ‖ chain_hash ‖ state) 32 | chain_hash 32 | state`,
//! where `chain_hash` is the hash of the log's envelope at `seq`. The checksum covers
//! the seq, so a snapshot copied under another key does not verify; the chain hash is
//! compared with the log on load, so a snapshot of another history (a log rewritten,
//! restored from elsewhere, or cut short and re-grown) is never trusted. Snapshots
//! written before the chain hash (`SNAPSHOT_MAGIC`) are skipped: the log replays.
//! Encoding the state is the caller's job; this module never interprets it. The
//! value format and the checks on load ([`encode`], [`in_range`], [`trusted`]) are
//! shared by every backend of the log, so a snapshot means the same thing everywhere.

use std::fmt::Display;

use fjall::PersistMode;

use crate::envelope::{Hash, GENESIS_HASH};
use crate::error::LogError;
use crate::log::{EventLog, FjallLog, Inner, ReplayIter};
use crate::record::{key_seq, seq_key};

/// First byte of a snapshot written before snapshots carried the chain hash (no
/// longer trusted: skipped on load).
pub const SNAPSHOT_MAGIC: u8 = 0x5A;
/// First byte of every stored snapshot since they carry the chain hash at their seq.
pub const SNAPSHOT_MAGIC_V2: u8 = 0x5B;
const SNAPSHOT_HEADER: usize = 1 + 32 + 32;

fn checksum(seq: u64, chain_hash: &Hash, state: &[u8]) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    h.update(&seq_key(seq));
    h.update(chain_hash);
    h.update(state);
    h.finalize().into()
}

/// The stored value of the snapshot of `state` taken after event `seq`, whose envelope
/// has hash `chain_hash` (see the module doc for the layout).
pub fn encode(seq: u64, chain_hash: &Hash, state: &[u8]) -> Vec<u8> {
    let mut value = Vec::with_capacity(SNAPSHOT_HEADER + state.len());
    value.push(SNAPSHOT_MAGIC_V2);
    value.extend_from_slice(&checksum(seq, chain_hash, state));
    value.extend_from_slice(chain_hash);
    value.extend_from_slice(state);
    value
}

/// Whether the snapshot stored under `seq` is one a scan up to `max_seq` looks at in a
/// log that ends at `last_seq`. One ahead of the log is skipped with a `warn!`.
pub fn in_range(seq: u64, last_seq: u64, max_seq: u64) -> bool {
    if seq > last_seq {
        tracing::warn!(seq, last_seq, "snapshot ahead of the log skipped");
        return false;
    }
    seq <= max_seq
}

/// The state bytes of the value stored under `seq` if its checksum verifies and its
/// chain hash is the log's at `seq` (`chain_hash_at`); otherwise `None`, with a
/// `warn!` naming the seq and the reason.
pub fn trusted(
    seq: u64,
    value: &[u8],
    chain_hash_at: impl FnOnce(u64) -> Option<Hash>,
) -> Option<&[u8]> {
    match open_snapshot(seq, value) {
        Ok((chain_hash, state)) => {
            if chain_hash_at(seq) != Some(chain_hash) {
                tracing::warn!(
                    seq,
                    "snapshot skipped: its chain hash is not the log's at its seq"
                );
                return None;
            }
            Some(state)
        }
        Err(reason) => {
            tracing::warn!(seq, %reason, "corrupt snapshot skipped");
            None
        }
    }
}

/// The chain hash and state bytes of a stored snapshot, or why it is not trustworthy.
fn open_snapshot(seq: u64, value: &[u8]) -> Result<(Hash, &[u8]), String> {
    match value.first() {
        Some(&SNAPSHOT_MAGIC_V2) => {}
        Some(&SNAPSHOT_MAGIC) => {
            return Err("written by an older version without the chain hash".into())
        }
        Some(other) => return Err(format!("bad magic byte {other:#04x}")),
        None => return Err("empty".into()),
    }
    let Some((head, state)) = value.split_at_checked(SNAPSHOT_HEADER) else {
        return Err(format!("{} bytes, shorter than its header", value.len()));
    };
    let mut chain_hash = GENESIS_HASH;
    chain_hash.copy_from_slice(&head[33..65]);
    if head[1..33] != checksum(seq, &chain_hash, state) {
        return Err("checksum does not match".into());
    }
    Ok((chain_hash, state))
}

/// The hash of the log's envelope at `seq`, if the log holds a readable one.
fn chain_hash_at(inner: &Inner, seq: u64) -> Option<Hash> {
    match ReplayIter::new(&inner.db, &inner.events, seq, seq).next() {
        Some(Ok(env)) if env.seq == seq => Some(env.hash),
        _ => None,
    }
}

/// Stores `state` durably under `seq` (see [`EventLog::save_snapshot`]).
pub(crate) fn save(inner: &Inner, seq: u64, state: &[u8]) -> Result<(), LogError> {
    let mut w = inner.lock_writer()?;
    w.check_writable()?;
    // A seq the log does not hold gets no chain hash that could match: such a
    // snapshot is stored but never loaded.
    let (last_seq, last_hash) = w.head();
    let chain_hash = if seq == last_seq {
        last_hash
    } else {
        chain_hash_at(inner, seq).unwrap_or(GENESIS_HASH)
    };
    let value = encode(seq, &chain_hash, state);
    let mut batch = inner.db.batch().durability(Some(PersistMode::SyncData));
    batch.insert(&inner.snapshots, &seq_key(seq)[..], value);
    batch.commit().map_err(|e| w.poison(e))?;
    tracing::debug!(seq, bytes = state.len(), "snapshot saved");
    Ok(())
}

/// See [`EventLog::scan_snapshots`].
pub(crate) fn scan(
    inner: &Inner,
    max_seq: u64,
    accept: &mut dyn FnMut(u64, &[u8]) -> bool,
) -> Option<u64> {
    let last_seq = inner.committed_seq();
    for guard in inner.snapshots.iter().rev() {
        let (key, value) = match guard.into_inner() {
            Ok(kv) => kv,
            Err(error) => {
                tracing::warn!(error = ?error, "unreadable snapshot entry skipped");
                continue;
            }
        };
        let Some(seq) = key_seq(&key) else {
            tracing::warn!(key = %hex::encode(&key), "snapshot with a malformed key skipped");
            continue;
        };
        if !in_range(seq, last_seq, max_seq) {
            continue;
        }
        if let Some(state) = trusted(seq, &value, |seq| chain_hash_at(inner, seq)) {
            if accept(seq, state) {
                return Some(seq);
            }
        }
    }
    None
}

/// See [`EventLog::prune_snapshots`].
pub(crate) fn prune(inner: &Inner, keep: usize) -> Result<usize, LogError> {
    let keys: Vec<_> = inner
        .snapshots
        .iter()
        .rev()
        .skip(keep)
        .map(|g| g.key())
        .collect::<Result<_, _>>()?;
    if keys.is_empty() {
        return Ok(0);
    }
    let mut w = inner.lock_writer()?;
    w.check_writable()?;
    let mut batch = inner.db.batch();
    for key in &keys {
        batch.remove(&inner.snapshots, key.clone());
    }
    batch.commit().map_err(|e| w.poison(e))?;
    Ok(keys.len())
}

/// Seqs of the stored snapshots, oldest first (valid or not).
pub(crate) fn seqs(inner: &Inner) -> Result<Vec<u64>, LogError> {
    let mut seqs = Vec::new();
    for guard in inner.snapshots.iter() {
        let key = guard.key()?;
        seqs.extend(key_seq(&key));
    }
    Ok(seqs)
}

/// The newest snapshot at or below `max_seq` whose checksum verifies and that `decode`
/// accepts; a snapshot that does not decode is skipped with a `warn!` naming its seq.
fn newest_valid<L, T, E>(
    log: &L,
    max_seq: u64,
    decode: &dyn Fn(&[u8]) -> Result<T, E>,
) -> Option<(u64, T)>
where
    L: EventLog + ?Sized,
    E: Display,
{
    let mut found = None;
    let seq = log.scan_snapshots(max_seq, &mut |seq, bytes| match decode(bytes) {
        Ok(t) => {
            found = Some(t);
            true
        }
        Err(error) => {
            tracing::warn!(seq, %error, "snapshot that does not decode skipped");
            false
        }
    })?;
    found.map(|t| (seq, t))
}

impl<'a> dyn EventLog + 'a {
    /// The newest snapshot whose checksum verifies, that `decode` accepts and that is
    /// not ahead of the log, as `(seq, state)`. Every snapshot skipped on the way is
    /// logged with `warn!` and its seq; `None` means "replay from the start".
    pub fn newest_valid_snapshot<T, E: Display>(
        &self,
        decode: &dyn Fn(&[u8]) -> Result<T, E>,
    ) -> Option<(u64, T)> {
        newest_valid(self, u64::MAX, decode)
    }

    /// `newest_valid_snapshot` among the snapshots taken at or before `max_seq`
    /// (for replaying history up to a point).
    pub fn newest_valid_snapshot_upto<T, E: Display>(
        &self,
        max_seq: u64,
        decode: &dyn Fn(&[u8]) -> Result<T, E>,
    ) -> Option<(u64, T)> {
        newest_valid(self, max_seq, decode)
    }
}

impl FjallLog {
    /// The newest valid snapshot; see `newest_valid_snapshot` on `dyn EventLog`.
    pub fn newest_valid_snapshot<T, E: Display>(
        &self,
        decode: &dyn Fn(&[u8]) -> Result<T, E>,
    ) -> Option<(u64, T)> {
        newest_valid(self, u64::MAX, decode)
    }

    /// The newest valid snapshot at or before `max_seq`; see the same method on `dyn EventLog`.
    pub fn newest_valid_snapshot_upto<T, E: Display>(
        &self,
        max_seq: u64,
        decode: &dyn Fn(&[u8]) -> Result<T, E>,
    ) -> Option<(u64, T)> {
        newest_valid(self, max_seq, decode)
    }

    /// Seqs of the stored snapshots, oldest first (valid or not).
    pub fn snapshot_seqs(&self) -> Result<Vec<u64>, LogError> {
        seqs(self.inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_snapshot_checks_magic_length_checksum_and_version() {
        let state = b"projection bytes";
        let chain = [7u8; 32];
        let value = encode(9, &chain, state);
        assert_eq!(open_snapshot(9, &value), Ok((chain, &state[..])));
        assert!(
            open_snapshot(10, &value).is_err(),
            "checksum covers the seq"
        );
        assert!(open_snapshot(9, &value[..20]).is_err());
        let mut flipped = value.clone();
        *flipped.last_mut().expect("non-empty") ^= 1;
        assert!(open_snapshot(9, &flipped).is_err());
        let mut other_chain = value.clone();
        other_chain[40] ^= 1;
        assert!(
            open_snapshot(9, &other_chain).is_err(),
            "checksum covers the chain hash"
        );
        let mut old = value.clone();
        old[0] = SNAPSHOT_MAGIC;
        assert!(
            open_snapshot(9, &old).is_err(),
            "a snapshot without chain hash is skipped"
        );
        let mut bad_magic = value;
        bad_magic[0] = 0;
        assert!(open_snapshot(9, &bad_magic).is_err());
    }
}
