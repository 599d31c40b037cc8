//! Snapshots: the newest valid one is used, one the decoder refuses or one ahead of the
//! log is skipped with a warning naming its seq, pruning keeps the newest K.

use std::io::Write;
use std::sync::{Arc, Mutex};

use dcloud_events::EventLog;

use crate::{fill, Backend};

fn state(seq: u64) -> Vec<u8> {
    format!("state@{seq}").into_bytes()
}

fn decode(bytes: &[u8]) -> Result<String, String> {
    let s = std::str::from_utf8(bytes).map_err(|e| e.to_string())?;
    s.starts_with("state@")
        .then(|| s.to_owned())
        .ok_or_else(|| format!("not a state: {s}"))
}

fn newest(log: &dyn EventLog) -> Option<(u64, String)> {
    log.newest_valid_snapshot(&decode)
}

/// A log of 40 events with snapshots at 10, 20 and 30.
fn with_snapshots<B: Backend>(b: &B) -> B::Log {
    let log = b.open();
    fill(&log, 4, 10);
    for seq in [10, 20, 30] {
        log.save_snapshot(seq, &state(seq)).expect("save");
    }
    log
}

/// Runs `f` with a tracing subscriber that captures formatted output.
pub(crate) fn capture_logs<T>(f: impl FnOnce() -> T) -> (T, String) {
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

pub fn newest_valid_snapshot_is_the_newest<B: Backend>(b: &B) {
    let log = with_snapshots(b);
    assert_eq!(newest(&log), Some((30, "state@30".to_owned())));
    assert_eq!(b.snapshot_seqs(&log), vec![10, 20, 30]);
    let dyn_log: &dyn EventLog = &log;
    // A closure taken by reference, as the server's start-up passes it.
    assert_eq!(
        dyn_log.newest_valid_snapshot_upto(25, &|bytes| decode(bytes).map_err(|e| e.len())),
        Some((20, "state@20".to_owned()))
    );
    assert_eq!(dyn_log.newest_valid_snapshot_upto(9, &decode), None);
    // Saving again under a seq replaces the snapshot there.
    log.save_snapshot(30, b"state@30 again").expect("save");
    assert_eq!(newest(&log), Some((30, "state@30 again".to_owned())));
    assert_eq!(b.snapshot_seqs(&log), vec![10, 20, 30]);
}

pub fn a_snapshot_survives_reopen<B: Backend>(b: &B) {
    let log = with_snapshots(b);
    log.save_snapshot(40, &state(40)).expect("save");
    drop(log);
    assert_eq!(newest(&b.open()), Some((40, "state@40".to_owned())));
}

pub fn a_snapshot_the_decoder_refuses_is_skipped<B: Backend>(b: &B) {
    let log = with_snapshots(b);
    log.save_snapshot(35, b"garbage").expect("save");
    let (found, logs) = capture_logs(|| newest(&log));
    assert_eq!(found, Some((30, "state@30".to_owned())));
    assert!(
        logs.contains("does not decode") && logs.contains("seq=35"),
        "{logs}"
    );
}

pub fn a_snapshot_ahead_of_the_log_is_not_used<B: Backend>(b: &B) {
    let log = with_snapshots(b);
    log.save_snapshot(99, &state(99))
        .expect("save ahead of the log");
    let (found, logs) = capture_logs(|| newest(&log));
    assert_eq!(found, Some((30, "state@30".to_owned())));
    assert!(
        logs.contains("ahead of the log") && logs.contains("seq=99"),
        "{logs}"
    );
    // Once the log reaches 99 that snapshot is still not trusted: it was saved
    // without the chain hash of the envelope that is now at 99.
    fill(&log, 1, 59);
    let (found, logs) = capture_logs(|| newest(&log));
    assert_eq!(found, Some((30, "state@30".to_owned())));
    assert!(
        logs.contains("chain hash is not the log's") && logs.contains("seq=99"),
        "{logs}"
    );
}

pub fn no_valid_snapshot_means_none<B: Backend>(b: &B) {
    let log = b.open();
    assert_eq!(newest(&log), None);
    fill(&log, 1, 5);
    log.save_snapshot(5, b"not a state").expect("save");
    assert_eq!(newest(&log), None);
}

pub fn prune_keeps_the_newest_k<B: Backend>(b: &B) {
    let log = with_snapshots(b);
    log.save_snapshot(40, &state(40)).expect("save");
    assert_eq!(log.prune_snapshots(2).expect("prune"), 2);
    assert_eq!(b.snapshot_seqs(&log), vec![30, 40]);
    assert_eq!(newest(&log), Some((40, "state@40".to_owned())));
    assert_eq!(log.prune_snapshots(2).expect("prune again"), 0);
    assert_eq!(log.prune_snapshots(0).expect("prune all"), 2);
    assert_eq!(b.snapshot_seqs(&log), Vec::<u64>::new());
    assert_eq!(newest(&log), None);
}
