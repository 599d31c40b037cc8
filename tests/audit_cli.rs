//! The offline tools as a user runs them: `dcloud audit verify` passes on an intact
//! log and names the first bad sequence number after history is tampered with (an
//! edited event, a removed one); `dcloud replay --to` shows the state at that point.

use std::path::Path;
use std::process::Command;

use dcloud_events::model::Usage;
use dcloud_events::{Event, EventLog, FjallLog, NewEvent};
use fjall::{Database, KeyspaceCreateOptions};

fn make_log(data: &Path, n: u64) {
    let log = FjallLog::open(&data.join("log")).unwrap();
    for i in 0..n {
        let event = Event::NodeHeartbeat {
            node_id: format!("0x{i:012x}"),
            usage: Usage {
                cpu_millis: i,
                memory_bytes: 1,
            },
            containers: vec![],
            engine_ok: true,
        };
        let e = NewEvent {
            time_ms: 1_700_000_000_000 + i as i64,
            actor: "system".into(),
            correlation: format!("c{i}"),
            event,
        };
        log.append(log.last_seq(), vec![e]).unwrap();
    }
}

fn dcloud(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_dcloud"))
        .args(args)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

fn tamper(data: &Path, f: impl FnOnce(&fjall::Keyspace)) {
    let db = Database::builder(data.join("log")).open().unwrap();
    let events = db
        .keyspace("events", KeyspaceCreateOptions::default)
        .unwrap();
    f(&events);
    db.persist(fjall::PersistMode::SyncAll).unwrap();
}

#[test]
fn intact_log_verifies() {
    let tmp = tempfile::tempdir().unwrap();
    make_log(tmp.path(), 20);
    let (code, out) = dcloud(&["audit", "verify", "--data", tmp.path().to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("ok: 20 events"), "{out}");
}

#[test]
fn edited_event_is_caught_with_its_seq() {
    let tmp = tempfile::tempdir().unwrap();
    make_log(tmp.path(), 20);
    tamper(tmp.path(), |ks| {
        let key = 5u64.to_be_bytes();
        let mut value = ks.get(key).unwrap().unwrap().to_vec();
        let last = value.len() - 3;
        value[last] ^= 0x01; // one bit of the body
        ks.insert(key, value).unwrap();
    });
    let (code, out) = dcloud(&["audit", "verify", "--data", tmp.path().to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("first bad seq 5"), "{out}");
}

#[test]
fn removed_event_is_caught_with_its_seq() {
    let tmp = tempfile::tempdir().unwrap();
    make_log(tmp.path(), 20);
    tamper(tmp.path(), |ks| ks.remove(7u64.to_be_bytes()).unwrap());
    let (code, out) = dcloud(&[
        "audit",
        "verify",
        "--data",
        tmp.path().to_str().unwrap(),
        "--output",
        "json",
    ]);
    assert_eq!(code, 1, "{out}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["ok"], false);
    assert_eq!(v["first_bad_seq"], 7);
}

#[test]
fn replay_to_a_point_shows_the_state_then() {
    let tmp = tempfile::tempdir().unwrap();
    make_log(tmp.path(), 10);
    let (code, out) = dcloud(&[
        "replay",
        "--data",
        tmp.path().to_str().unwrap(),
        "--to",
        "4",
        "--output",
        "json",
    ]);
    assert_eq!(code, 0, "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["seq"], 4);
    assert_eq!(v["replayed"], 4);
    let (_, full) = dcloud(&[
        "replay",
        "--data",
        tmp.path().to_str().unwrap(),
        "--output",
        "json",
    ]);
    let full: serde_json::Value = serde_json::from_str(&full).unwrap();
    assert_eq!(full["seq"], 10);
    assert_ne!(
        full["digest"], v["digest"],
        "heartbeats change node usage in the state"
    );
    let (code, out) = dcloud(&[
        "replay",
        "--data",
        tmp.path().to_str().unwrap(),
        "--to",
        "11",
    ]);
    assert_eq!(code, 2);
    assert!(out.contains("past the end of the log"), "{out}");
}

#[test]
fn missing_data_dir_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let (code, out) = dcloud(&[
        "audit",
        "verify",
        "--data",
        tmp.path().join("nope").to_str().unwrap(),
    ]);
    assert_eq!(code, 2);
    assert!(out.contains("no event log"), "{out}");
}
