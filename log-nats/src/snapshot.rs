//! Snapshots in a JetStream object store (`<stream>-snapshots`, as many replicas as the
//! log), one object per seq named by the seq in 20 zero-padded digits. The stored value
//! is exactly fjall's (`dcloud_events::snapshot::encode`: checksum over seq, chain hash
//! and state), checked on load by the same functions, so a snapshot is trusted or
//! skipped for the same reasons on both backends.

use dcloud_events::snapshot::{encode, in_range, trusted};
use dcloud_events::{LogError, GENESIS_HASH};
use futures::StreamExt;
use tokio::io::AsyncReadExt;

use crate::log::Inner;
use crate::remote;

fn name(seq: u64) -> String {
    format!("{seq:020}")
}

fn seq_of(name: &str) -> Option<u64> {
    (name.len() == 20).then(|| name.parse().ok()).flatten()
}

/// Stores `state` under `seq` (see `EventLog::save_snapshot`).
pub(crate) fn save(inner: &Inner, seq: u64, state: &[u8]) -> Result<(), LogError> {
    let mut w = inner.lock_writer()?;
    w.check_writable()?;
    // A seq the log does not hold gets no chain hash that could match: such a
    // snapshot is stored but never loaded (as fjall's).
    let (last_seq, last_hash) = w.head();
    let chain_hash = if seq == last_seq {
        last_hash
    } else {
        inner.chain_hash_at(seq).unwrap_or(GENESIS_HASH)
    };
    let value = encode(seq, &chain_hash, state);
    let store = inner.snapshots.clone();
    let put = inner.block(async move {
        let mut reader = &value[..];
        store.put(name(seq).as_str(), &mut reader).await.map(|_| ())
    });
    match put {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(w.poison(remote(format!("snapshot {seq} not stored: {e}")))),
        Err(e) => return Err(w.poison(e)),
    }
    tracing::debug!(seq, bytes = state.len(), "snapshot saved");
    Ok(())
}

/// Seqs of the stored snapshots, oldest first (valid or not).
pub(crate) fn seqs(inner: &Inner) -> Result<Vec<u64>, LogError> {
    let store = inner.snapshots.clone();
    let names = inner.block(async move {
        let mut list = store.list().await.map_err(|e| e.to_string())?;
        let mut names = Vec::new();
        while let Some(info) = list.next().await {
            let info = info.map_err(|e| e.to_string())?;
            if !info.deleted {
                names.push(info.name);
            }
        }
        Ok::<_, String>(names)
    })?;
    let names = names.map_err(|e| remote(format!("cannot list snapshots: {e}")))?;
    let mut seqs = Vec::with_capacity(names.len());
    for n in names {
        match seq_of(&n) {
            Some(seq) => seqs.push(seq),
            None => tracing::warn!(name = %n, "snapshot with a malformed name skipped"),
        }
    }
    seqs.sort_unstable();
    Ok(seqs)
}

fn load(inner: &Inner, seq: u64) -> Result<Vec<u8>, String> {
    let store = inner.snapshots.clone();
    let got = inner.block(async move {
        let mut object = store.get(name(seq)).await.map_err(|e| e.to_string())?;
        let mut bytes = Vec::new();
        object
            .read_to_end(&mut bytes)
            .await
            .map_err(|e| e.to_string())?;
        Ok::<_, String>(bytes)
    });
    got.map_err(|e| e.to_string())?
}

/// See `EventLog::scan_snapshots`.
pub(crate) fn scan(
    inner: &Inner,
    max_seq: u64,
    accept: &mut dyn FnMut(u64, &[u8]) -> bool,
) -> Option<u64> {
    let seqs = match seqs(inner) {
        Ok(s) => s,
        Err(error) => {
            tracing::warn!(%error, "snapshots could not be listed; none used");
            return None;
        }
    };
    let last_seq = inner.committed();
    for seq in seqs.into_iter().rev() {
        if !in_range(seq, last_seq, max_seq) {
            continue;
        }
        let value = match load(inner, seq) {
            Ok(v) => v,
            Err(error) => {
                tracing::warn!(seq, %error, "unreadable snapshot skipped");
                continue;
            }
        };
        if let Some(state) = trusted(seq, &value, |seq| inner.chain_hash_at(seq)) {
            if accept(seq, state) {
                return Some(seq);
            }
        }
    }
    None
}

/// See `EventLog::prune_snapshots`.
pub(crate) fn prune(inner: &Inner, keep: usize) -> Result<usize, LogError> {
    let old: Vec<u64> = seqs(inner)?.into_iter().rev().skip(keep).collect();
    if old.is_empty() {
        return Ok(0);
    }
    let mut w = inner.lock_writer()?;
    w.check_writable()?;
    for &seq in &old {
        let store = inner.snapshots.clone();
        match inner.block(async move { store.delete(name(seq)).await }) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(w.poison(remote(format!("snapshot {seq} not deleted: {e}")))),
            Err(e) => return Err(w.poison(e)),
        }
    }
    Ok(old.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_sort_as_seqs_and_parse_back() {
        assert_eq!(name(30), "00000000000000000030");
        assert!(name(99) < name(100));
        assert_eq!(seq_of(&name(u64::MAX)), Some(u64::MAX));
        assert_eq!(seq_of("30"), None);
        assert_eq!(seq_of("0000000000000000003x"), None);
    }
}
