//! The one way a folded state is rebuilt from a log: the newest valid snapshot at or
//! before the target (checksum, chain hash, decoder and seq all agreeing), then the
//! log's tail up to the target, read and decoded on a helper thread while this one
//! folds. The server's start, `replay`, `audit` and the API's `at(seq:)` all use it.
//! Generic over what is folded: this crate knows nothing of what events mean.

use std::fmt::Display;

use crate::envelope::Envelope;
use crate::error::LogError;
use crate::log::{fold_range, EventLog};

/// A state folded from envelopes, storable as a snapshot.
pub trait Fold: Sized {
    /// Why snapshot bytes were refused.
    type SnapshotError: Display;
    /// The state before any event.
    fn empty() -> Self;
    /// The seq of the last envelope folded in (0 for [`Fold::empty`]).
    fn last_seq(&self) -> u64;
    /// Folds one envelope in; never fails.
    fn fold(&mut self, env: &Envelope);
    /// Loads a snapshot, validating it.
    fn from_snapshot(bytes: &[u8]) -> Result<Self, Self::SnapshotError>;
}

/// A rebuilt state and how it was rebuilt.
#[derive(Debug)]
pub struct Recovered<S> {
    pub state: S,
    /// The snapshot it started from (`None`: from the first event).
    pub snapshot_seq: Option<u64>,
    /// Envelopes folded after the snapshot.
    pub replayed: u64,
}

/// The state after event `upto` (`None`: the log's last), from the newest valid
/// snapshot at or before it when `use_snapshot`, else from the first event. A
/// snapshot whose state says another seq than it was stored under is skipped. `upto`
/// past the end of the log stops at the end.
pub fn recover<S: Fold>(
    log: &dyn EventLog,
    upto: Option<u64>,
    use_snapshot: bool,
) -> Result<Recovered<S>, LogError> {
    let last = log.last_seq();
    let to = upto.map_or(last, |u| u.min(last));
    let snapshot = if use_snapshot {
        log.newest_valid_snapshot_upto(to, &|bytes: &[u8]| {
            S::from_snapshot(bytes).map_err(|e| e.to_string())
        })
        .filter(|(seq, state)| state.last_seq() == *seq)
    } else {
        None
    };
    let (mut state, snapshot_seq) = match snapshot {
        Some((seq, state)) => (state, Some(seq)),
        None => (S::empty(), None),
    };
    let from = state.last_seq() + 1;
    let replayed = if from <= to {
        fold_range(log, from, to, |env| state.fold(&env))?
    } else {
        0
    };
    Ok(Recovered {
        state,
        snapshot_seq,
        replayed,
    })
}
