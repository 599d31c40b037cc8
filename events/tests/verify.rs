//! The hash-chain verifier, offline on a data directory: a clean log verifies, and an
//! edited body, an edited header, a deleted event or a truncated record is reported at
//! the first bad seq. Damage is written with fjall directly, as an attacker would.

mod common;

use std::path::Path;

use common::{fill, open};
use dcloud_events::record::{chain_hash, seq_key, HEADER_LEN};
use dcloud_events::{verify_dir, BadRecord, EventLog, FjallLog, LogError, VerifyError};
use fjall::{Database, KeyspaceCreateOptions};

/// A closed log of 20 events in a temp dir.
fn log_of_20() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    fill(&open(&dir), 4, 5);
    dir
}

/// Opens the raw `events` keyspace of a closed log and hands it to `f`.
fn tamper(dir: &Path, f: impl FnOnce(&fjall::Keyspace)) {
    let db = Database::builder(dir).open().expect("raw open");
    let events = db
        .keyspace("events", KeyspaceCreateOptions::default)
        .expect("events keyspace");
    f(&events);
    db.persist(fjall::PersistMode::SyncAll).expect("persist");
}

fn raw(events: &fjall::Keyspace, seq: u64) -> Vec<u8> {
    events
        .get(seq_key(seq))
        .expect("get")
        .expect("present")
        .to_vec()
}

fn put(events: &fjall::Keyspace, seq: u64, value: Vec<u8>) {
    events.insert(seq_key(seq), value).expect("insert");
}

fn broken(dir: &Path) -> VerifyError {
    match verify_dir(dir) {
        Err(LogError::Verify(e)) => e,
        other => panic!("expected a broken chain, got {other:?}"),
    }
}

#[test]
fn a_clean_log_verifies_offline_and_online() {
    let dir = log_of_20();
    let report = verify_dir(dir.path()).expect("verifies");
    let log = open(&dir);
    assert_eq!(
        (report.events, report.last_seq, report.last_hash),
        (20, 20, log.last_hash())
    );
    assert_eq!(log.verify().expect("online"), report);
}

#[test]
fn an_empty_log_verifies() {
    let dir = tempfile::tempdir().expect("tempdir");
    drop(open(&dir));
    let report = verify_dir(dir.path()).expect("verifies");
    assert_eq!(
        (report.events, report.last_seq, report.last_hash),
        (0, 0, dcloud_events::GENESIS_HASH)
    );
}

#[test]
fn edited_body_is_reported_at_its_seq() {
    let dir = log_of_20();
    tamper(dir.path(), |ev| {
        let mut v = raw(ev, 7);
        let pos = v
            .windows(4)
            .position(|w| w == b"req-")
            .expect("correlation in body");
        v[pos] = b'X';
        put(ev, 7, v);
    });
    assert_eq!(
        broken(dir.path()),
        VerifyError {
            first_bad_seq: 7,
            reason: BadRecord::BodyHash
        }
    );
    // The fast replay validates structure only; with hash checks it names seq 7 too.
    let log = open(&dir);
    assert!(log.replay(1).all(|e| e.is_ok()));
    let err = log
        .replay(1)
        .verified()
        .find_map(Result::err)
        .expect("hash check fails");
    assert!(matches!(err, LogError::Corrupt { seq: 7, .. }), "{err}");
}

#[test]
fn edited_body_with_recomputed_body_hash_breaks_the_link() {
    let dir = log_of_20();
    tamper(dir.path(), |ev| {
        let mut v = raw(ev, 12);
        let pos = v
            .windows(6)
            .position(|w| w == b"agent:")
            .expect("actor in body");
        v[pos] = b'A';
        let body_hash = *blake3::hash(&v[HEADER_LEN..]).as_bytes();
        v[36..68].copy_from_slice(&body_hash);
        put(ev, 12, v);
    });
    assert_eq!(
        broken(dir.path()),
        VerifyError {
            first_bad_seq: 12,
            reason: BadRecord::Link
        }
    );
}

#[test]
fn a_rehashed_forgery_is_caught_at_the_next_record() {
    let dir = log_of_20();
    tamper(dir.path(), |ev| {
        let mut v = raw(ev, 12);
        let pos = v
            .windows(6)
            .position(|w| w == b"agent:")
            .expect("actor in body");
        v[pos] = b'A';
        let body_hash = *blake3::hash(&v[HEADER_LEN..]).as_bytes();
        let prev: [u8; 32] = v[4..36].try_into().expect("32 bytes");
        v[36..68].copy_from_slice(&body_hash);
        v[68..100].copy_from_slice(&chain_hash(&prev, &body_hash));
        put(ev, 12, v);
    });
    assert_eq!(
        broken(dir.path()),
        VerifyError {
            first_bad_seq: 13,
            reason: BadRecord::PrevHash
        }
    );
}

#[test]
fn edited_header_is_reported_at_its_seq() {
    for (offset, what) in [(10usize, "prev_hash"), (80, "hash")] {
        let dir = log_of_20();
        tamper(dir.path(), |ev| {
            let mut v = raw(ev, 5);
            v[offset] ^= 0x01;
            put(ev, 5, v);
        });
        assert_eq!(
            broken(dir.path()),
            VerifyError {
                first_bad_seq: 5,
                reason: BadRecord::Link
            },
            "{what}"
        );
    }
    let dir = log_of_20();
    tamper(dir.path(), |ev| {
        let mut v = raw(ev, 9);
        v[0] = 0x00;
        put(ev, 9, v);
    });
    let e = broken(dir.path());
    assert_eq!(e.first_bad_seq, 9);
    assert!(
        matches!(e.reason, BadRecord::Undecodable(ref r) if r.contains("magic")),
        "{e}"
    );
}

#[test]
fn deleted_event_is_a_gap_at_its_seq() {
    let dir = log_of_20();
    tamper(dir.path(), |ev| ev.remove(seq_key(8)).expect("remove"));
    assert_eq!(
        broken(dir.path()),
        VerifyError {
            first_bad_seq: 8,
            reason: BadRecord::Missing { next_stored: 9 }
        }
    );
    let log = open(&dir);
    let err = log.read_range(1, 20).find_map(Result::err).expect("gap");
    assert!(matches!(err, LogError::Corrupt { seq: 8, .. }), "{err}");

    let dir = log_of_20();
    tamper(dir.path(), |ev| ev.remove(seq_key(1)).expect("remove"));
    assert_eq!(
        broken(dir.path()),
        VerifyError {
            first_bad_seq: 1,
            reason: BadRecord::Missing { next_stored: 2 }
        }
    );
}

#[test]
fn truncated_record_is_reported_at_its_seq() {
    let dir = log_of_20();
    tamper(dir.path(), |ev| {
        let v = raw(ev, 15);
        put(ev, 15, v[..60].to_vec());
    });
    let e = broken(dir.path());
    assert_eq!(e.first_bad_seq, 15);
    assert!(matches!(e.reason, BadRecord::Undecodable(_)), "{e}");

    let dir = log_of_20();
    tamper(dir.path(), |ev| {
        let v = raw(ev, 15);
        put(ev, 15, v[..v.len() - 3].to_vec());
    });
    assert_eq!(broken(dir.path()).first_bad_seq, 15);
}

#[test]
fn the_first_of_several_bad_records_is_named() {
    let dir = log_of_20();
    tamper(dir.path(), |ev| {
        ev.remove(seq_key(17)).expect("remove");
        let mut v = raw(ev, 6);
        let last = v.len() - 1;
        v[last] ^= 0xFF;
        put(ev, 6, v);
    });
    assert_eq!(broken(dir.path()).first_bad_seq, 6);
}

#[test]
fn opening_refuses_a_corrupt_last_record_but_verify_still_names_it() {
    let dir = log_of_20();
    tamper(dir.path(), |ev| put(ev, 20, vec![0xD1, 0, 1]));
    assert!(matches!(
        FjallLog::open(dir.path()),
        Err(LogError::Corrupt { seq: 20, .. })
    ));
    assert_eq!(broken(dir.path()).first_bad_seq, 20);
}

#[test]
fn verify_dir_of_a_missing_directory_is_an_error_not_a_new_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("nope");
    assert!(matches!(verify_dir(&missing), Err(LogError::Storage(_))));
    assert!(!missing.exists());
}
