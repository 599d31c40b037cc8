//! The hash-chain verifier, offline on a data directory: a clean log verifies, and an
//! edited body, an edited header, a deleted event or a truncated record is reported at
//! the first bad seq. Damage is written with fjall directly, as an attacker would.

mod common;

use std::path::Path;

use common::{fill, open};
use dcloud_events::frame;
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

/// The frame holding `seq`: its key and its records.
fn frame_of(events: &fjall::Keyspace, seq: u64) -> (u64, Vec<(u64, Vec<u8>)>) {
    let (key, value) = events
        .range(..=seq_key(seq))
        .next_back()
        .expect("a frame at or below seq")
        .into_inner()
        .expect("read");
    let key = u64::from_be_bytes(key[..].try_into().expect("8-byte key"));
    let mut list = Vec::new();
    frame::entries(key, &value, &mut list).expect("an intact frame");
    let records = list
        .into_iter()
        .map(|e| (e.seq, value[e.range].to_vec()))
        .collect();
    (key, records)
}

/// Rewrites the frame holding `seq` with `edit` applied to its records.
fn rewrite(events: &fjall::Keyspace, seq: u64, edit: impl FnOnce(&mut Vec<(u64, Vec<u8>)>)) {
    let (key, mut records) = frame_of(events, seq);
    edit(&mut records);
    events.remove(seq_key(key)).expect("remove");
    if let Some(&(first, _)) = records.first() {
        let value = frame::encode_frame(records.iter().map(|(s, r)| (*s, &r[..])));
        events.insert(seq_key(first), value).expect("insert");
    }
}

fn raw(events: &fjall::Keyspace, seq: u64) -> Vec<u8> {
    let (_, records) = frame_of(events, seq);
    records
        .into_iter()
        .find(|(s, _)| *s == seq)
        .expect("seq stored")
        .1
}

fn put(events: &fjall::Keyspace, seq: u64, value: Vec<u8>) {
    rewrite(events, seq, |records| {
        let slot = records
            .iter_mut()
            .find(|(s, _)| *s == seq)
            .expect("seq stored");
        slot.1 = value;
    });
}

fn remove(events: &fjall::Keyspace, seq: u64) {
    rewrite(events, seq, |records| records.retain(|(s, _)| *s != seq));
}

fn broken(dir: &Path) -> VerifyError {
    match verify_dir(dir) {
        Err(LogError::Verify(e)) => e,
        other => panic!("expected a broken chain, got {other:?}"),
    }
}

#[test]
fn verify_dir_offline_agrees_with_the_live_log() {
    let dir = log_of_20();
    let report = verify_dir(dir.path()).expect("verifies");
    let log = open(&dir);
    assert_eq!((report.last_seq, report.last_hash), (20, log.last_hash()));
    assert_eq!(log.verify().expect("online"), report);
    let empty = tempfile::tempdir().expect("tempdir");
    drop(open(&empty));
    assert_eq!(verify_dir(empty.path()).expect("empty").last_seq, 0);
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
    tamper(dir.path(), |ev| remove(ev, 8));
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
    tamper(dir.path(), |ev| remove(ev, 1));
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
        remove(ev, 17);
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

#[test]
fn a_damaged_frame_is_reported_at_the_first_seq_it_cannot_give() {
    // Cut the last frame (16..=20) inside record 18: 16 and 17 still verify.
    let dir = log_of_20();
    tamper(dir.path(), |ev| {
        let (key, value) = ev
            .last_key_value()
            .expect("last")
            .into_inner()
            .expect("read");
        let mut list = Vec::new();
        frame::entries(16, &value, &mut list).expect("intact");
        let cut = list[2].range.start + 10;
        ev.insert(key, value[..cut].to_vec()).expect("insert");
    });
    let e = broken(dir.path());
    assert_eq!(e.first_bad_seq, 18, "{e}");
    assert!(
        matches!(e.reason, BadRecord::Undecodable(ref r) if r.contains("past the end")),
        "{e}"
    );

    // A frame stored under a key that is not its first record's seq.
    let dir = log_of_20();
    tamper(dir.path(), |ev| {
        let v = ev.get(seq_key(6)).expect("get").expect("frame at 6");
        ev.remove(seq_key(6)).expect("remove");
        ev.insert(seq_key(5), v).expect("insert");
    });
    let e = broken(dir.path());
    assert_eq!(e.first_bad_seq, 6, "{e}");
    assert!(
        matches!(e.reason, BadRecord::Undecodable(ref r) if r.contains("frame key 5")),
        "{e}"
    );
}

#[test]
fn lone_records_of_the_layout_before_frames_still_read_verify_and_extend() {
    use dcloud_events::record::Encoder;
    use dcloud_events::GENESIS_HASH;
    let dir = tempfile::tempdir().expect("tempdir");
    drop(open(&dir));
    tamper(dir.path(), |ev| {
        let mut enc = Encoder::new();
        let mut prev = GENESIS_HASH;
        for seq in 1..=5u64 {
            let e = common::new_event(seq);
            let body = e.at(seq);
            let (bytes, hash) = enc.encode(&body, &prev).expect("encode");
            ev.insert(seq_key(seq), bytes).expect("insert");
            prev = hash;
        }
    });
    let log = open(&dir);
    assert_eq!(log.last_seq(), 5);
    fill(&log, 2, 3);
    assert_eq!(log.verify().expect("verifies").last_seq, 11);
    let seqs: Vec<u64> = log.read_range(4, 9).map(|e| e.expect("read").seq).collect();
    assert_eq!(seqs, vec![4, 5, 6, 7, 8, 9]);
}

#[test]
fn fold_range_folds_in_order_up_to_the_first_bad_record_then_fails() {
    let dir = log_of_20();
    let log = open(&dir);
    let mut seen = Vec::new();
    let n = dcloud_events::fold_range(&log, 3, 20, |e| seen.push(e.seq)).expect("clean");
    assert_eq!((n, seen), (18, (3..=20).collect::<Vec<_>>()));
    drop(log);

    tamper(dir.path(), |ev| remove(ev, 8));
    let log = open(&dir);
    let mut seen = Vec::new();
    let err = dcloud_events::fold_range(&log, 1, 20, |e| seen.push(e.seq)).expect_err("gap");
    assert!(matches!(err, LogError::Corrupt { seq: 8, .. }), "{err}");
    assert_eq!(seen, (1..=7).collect::<Vec<_>>());
}
