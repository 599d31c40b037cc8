//! The state's stored form: validated rkyv bytes behind a small versioned header, and
//! the digest that proves two states equal.

use rkyv::rancor;
use rkyv::util::AlignedVec;
use thiserror::Error;

use super::State;

/// `DCSTATE`, the header's layout version, then the fold's fingerprint (8 bytes).
const MAGIC: &[u8; 7] = b"DCSTATE";
/// 2: tokens gained `expires_ms`, the state gained `join_tokens`; deployments gained
/// `warnings` and `quota_wait`, the state `quotas`. 3: all of these together (earlier
/// snapshots are skipped and the log replayed). 4: templates gained `idle_timeout_ms`,
/// the state `catalog_services`. 5: deployments gained `volumes`, the state
/// `dataset_storage` and `cluster_id`. 6: the header carries the fold's fingerprint,
/// which now versions the state's shape and meaning (no more bumps by hand).
const FORMAT: u8 = 6;
const HEADER: usize = 16;
/// Bytes before the rkyv body of a snapshot: magic, format, fold fingerprint.
pub const SNAPSHOT_HEADER_LEN: usize = HEADER;

/// A hash of the source of the fold (the state's types and `apply`, the event and
/// model types; see `build.rs`). Snapshots written by another fold are skipped.
pub const FOLD_FINGERPRINT: &str = env!("DCLOUD_FOLD_FINGERPRINT");

fn fingerprint_bytes() -> [u8; 8] {
    u64::from_str_radix(FOLD_FINGERPRINT, 16)
        .expect("build.rs writes 16 hex digits")
        .to_be_bytes()
}

/// Why snapshot bytes were not loaded. A bad snapshot is skipped: the log is the truth.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SnapshotError {
    #[error("snapshot has no dcloud state header")]
    NotASnapshot,
    #[error("snapshot format {found} is not the supported format {}", FORMAT)]
    Format { found: u8 },
    #[error("snapshot was written by another fold ({found}; this build's is {FOLD_FINGERPRINT})")]
    Fold { found: String },
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
        out.extend_from_slice(&fingerprint_bytes());
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
        let found = &bytes[MAGIC.len() + 1..HEADER];
        if found != fingerprint_bytes() {
            return Err(SnapshotError::Fold {
                found: hex::encode(found),
            });
        }
        let mut aligned = AlignedVec::<16>::with_capacity(bytes.len() - HEADER);
        aligned.extend_from_slice(&bytes[HEADER..]);
        let mut state = rkyv::from_bytes::<State, rancor::Error>(&aligned)
            .map_err(|e| SnapshotError::Invalid(e.to_string()))?;
        state.rebuild_derived();
        Ok(state)
    }
}

impl dcloud_events::recover::Fold for State {
    type SnapshotError = SnapshotError;

    fn empty() -> Self {
        State::new()
    }

    fn last_seq(&self) -> u64 {
        State::last_seq(self)
    }

    fn fold(&mut self, env: &dcloud_events::Envelope) {
        self.apply(env);
    }

    fn from_snapshot(bytes: &[u8]) -> Result<Self, SnapshotError> {
        State::from_snapshot_bytes(bytes)
    }
}

#[cfg(test)]
mod tests {
    use dcloud_events::model::Role;
    use dcloud_events::{Envelope, Event, GENESIS_HASH, SCHEMA_VERSION};

    use super::*;

    fn env(seq: u64, event: Event) -> Envelope {
        Envelope {
            seq,
            time_ms: 1_000,
            actor: "t".into(),
            correlation: String::new(),
            schema: SCHEMA_VERSION,
            prev_hash: GENESIS_HASH,
            hash: GENESIS_HASH,
            event,
        }
    }

    #[test]
    fn a_snapshot_of_another_fold_or_format_is_refused() {
        let mut state = State::new();
        state.apply(&env(
            1,
            Event::ClusterCreated {
                cluster_id: "c-1".into(),
            },
        ));
        let bytes = state.to_snapshot_bytes();
        assert_eq!(State::from_snapshot_bytes(&bytes).as_ref(), Ok(&state));
        assert_eq!(FOLD_FINGERPRINT.len(), 16);
        let mut other_fold = bytes.clone();
        other_fold[MAGIC.len() + 1] ^= 0xff;
        assert!(matches!(
            State::from_snapshot_bytes(&other_fold),
            Err(SnapshotError::Fold { .. })
        ));
        let mut other_format = bytes.clone();
        other_format[MAGIC.len()] = FORMAT - 1;
        assert_eq!(
            State::from_snapshot_bytes(&other_format),
            Err(SnapshotError::Format { found: FORMAT - 1 })
        );
        assert_eq!(
            State::from_snapshot_bytes(&bytes[..HEADER - 1]),
            Err(SnapshotError::NotASnapshot)
        );
    }

    #[test]
    fn the_token_index_is_kept_and_rebuilt_on_load() {
        let mut state = State::new();
        state.apply(&env(
            1,
            Event::TokenCreated {
                token_id: "t1".into(),
                name: "a".into(),
                role: Role::User,
                secret_hash: [1; 32],
                node_id: None,
            },
        ));
        state.apply(&env(
            2,
            Event::JoinTokenCreated {
                token_id: "j1".into(),
                name: "rack".into(),
                secret_hash: [2; 32],
                expires_ms: Some(5_000),
                uses: 1,
            },
        ));
        state.apply(&env(
            3,
            Event::NodeJoined {
                join_token_id: "j1".into(),
                node_id: "n1".into(),
                token_id: "t2".into(),
                secret_hash: [3; 32],
                expires_ms: None,
            },
        ));
        assert_eq!(state.token_index.len(), 3, "every token is indexed");
        let loaded = State::from_snapshot_bytes(&state.to_snapshot_bytes()).expect("loads");
        assert_eq!(loaded, state, "the index is rebuilt on load");
        assert_eq!(
            loaded.token_by_secret_hash(&[3; 32]).map(|t| t.id.as_str()),
            Some("t2")
        );
        assert_eq!(
            loaded.token_by_secret_hash(&[2; 32]),
            None,
            "join tokens are not bearer tokens"
        );
        assert_eq!(
            loaded
                .join_token_by_secret_hash(&[2; 32])
                .map(|j| j.uses_left),
            Some(0)
        );
        state.apply(&env(
            4,
            Event::TokenRevoked {
                token_id: "t2".into(),
            },
        ));
        assert_eq!(state.token_by_secret_hash(&[3; 32]), None, "revoked");
    }

    #[test]
    fn a_format_1_snapshot_is_refused_not_misread() {
        let mut bytes = State::new().to_snapshot_bytes();
        bytes[MAGIC.len()] = 1;
        assert_eq!(
            State::from_snapshot_bytes(&bytes),
            Err(SnapshotError::Format { found: 1 })
        );
    }
}
