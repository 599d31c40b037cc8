//! Snapshots on fjall beyond the shared suite (`suite.rs`): a snapshot corrupted,
//! moved, truncated or copied from another history in the keyspace is skipped with a
//! warning naming its seq, never trusted.

mod common;

use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};

use common::{fill, open};
use dcloud_events::record::seq_key;
use dcloud_events::snapshot::SNAPSHOT_MAGIC_V2;
use dcloud_events::EventLog;
use fjall::{Database, KeyspaceCreateOptions};

fn state(seq: u64) -> Vec<u8> {
    format!("state@{seq}").into_bytes()
}

fn decode(bytes: &[u8]) -> Result<String, String> {
    let s = std::str::from_utf8(bytes).map_err(|e| e.to_string())?;
    s.starts_with("state@")
        .then(|| s.to_owned())
        .ok_or_else(|| format!("not a state: {s}"))
}

/// A closed log of 40 events with snapshots at 10, 20 and 30.
fn log_with_snapshots() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open(&dir);
    fill(&log, 4, 10);
    for seq in [10, 20, 30] {
        log.save_snapshot(seq, &state(seq)).expect("save");
    }
    dir
}

fn tamper_snapshots(dir: &Path, f: impl FnOnce(&fjall::Keyspace)) {
    let db = Database::builder(dir).open().expect("raw open");
    let snaps = db
        .keyspace("snapshots", KeyspaceCreateOptions::default)
        .expect("keyspace");
    f(&snaps);
    db.persist(fjall::PersistMode::SyncAll).expect("persist");
}

/// Runs `f` with a tracing subscriber that captures formatted output.
fn capture_logs<T>(f: impl FnOnce() -> T) -> (T, String) {
    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("buf").extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buf = Buf::default();
    let writer = buf.clone();
    let sub = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let out = tracing::subscriber::with_default(sub, f);
    let text = String::from_utf8(buf.0.lock().expect("buf").clone()).expect("utf8");
    (out, text)
}

#[test]
fn a_corrupt_snapshot_is_skipped_with_a_warning_and_an_older_one_used() {
    let dir = log_with_snapshots();
    tamper_snapshots(dir.path(), |s| {
        let mut v = s.get(seq_key(30)).expect("get").expect("present").to_vec();
        let last = v.len() - 1;
        v[last] ^= 0x01;
        s.insert(seq_key(30), v).expect("insert");
    });
    let log = open(&dir);
    let (found, logs) = capture_logs(|| log.newest_valid_snapshot(&decode));
    assert_eq!(found, Some((20, "state@20".to_owned())));
    assert!(
        logs.contains("corrupt snapshot skipped") && logs.contains("seq=30"),
        "{logs}"
    );
    assert!(!logs.contains("seq=20"), "{logs}");
}

#[test]
fn snapshots_moved_truncated_or_ahead_of_the_log_are_not_trusted() {
    let dir = log_with_snapshots();
    tamper_snapshots(dir.path(), |s| {
        let v20 = s.get(seq_key(20)).expect("get").expect("present");
        s.insert(seq_key(25), v20).expect("copy 20 to 25");
        s.insert(seq_key(30), vec![SNAPSHOT_MAGIC_V2, 1, 2])
            .expect("truncate 30");
    });
    let log = open(&dir);
    log.save_snapshot(99, &state(99))
        .expect("save ahead of the log");
    let (found, logs) = capture_logs(|| log.newest_valid_snapshot(&decode));
    assert_eq!(found, Some((20, "state@20".to_owned())));
    for seq in ["seq=99", "seq=30", "seq=25"] {
        assert!(logs.contains(seq), "{seq} not named in {logs}");
    }
}

/// A snapshot carries the chain hash at its seq and is checked against the log on
/// load: copied into a log with another history at that seq, it is not trusted.
#[test]
fn a_snapshot_of_another_history_is_not_trusted() {
    let a = log_with_snapshots();
    let raw30 = {
        let db = Database::builder(a.path()).open().expect("raw open");
        let snaps = db
            .keyspace("snapshots", KeyspaceCreateOptions::default)
            .expect("keyspace");
        snaps
            .get(seq_key(30))
            .expect("get")
            .expect("present")
            .to_vec()
    };
    let b = tempfile::tempdir().expect("tempdir");
    {
        let log = open(&b);
        log.append(0, common::new_events(1000, 40)).expect("append");
    }
    tamper_snapshots(b.path(), |s| s.insert(seq_key(30), raw30).expect("copy"));
    let log = open(&b);
    let (found, logs) = capture_logs(|| log.newest_valid_snapshot(&decode));
    assert_eq!(found, None);
    assert!(
        logs.contains("chain hash is not the log's") && logs.contains("seq=30"),
        "{logs}"
    );
    // In its own log the same bytes are trusted.
    assert_eq!(
        open(&a).newest_valid_snapshot(&decode),
        Some((30, "state@30".to_owned()))
    );
}
