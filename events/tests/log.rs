//! The fjall log beyond the shared suite (`suite.rs`): batch atomicity across a killed
//! process, and the fast replay iterator.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{fill, new_events, open};
use dcloud_events::{Envelope, EventLog, FjallLog};

#[test]
fn replay_iterator_matches_read_range_with_or_without_hash_checks() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open(&dir);
    let all = fill(&log, 10, 30);
    let plain: Vec<Envelope> = log.replay(1).collect::<Result<_, _>>().expect("replay");
    let checked: Vec<Envelope> = log
        .replay(1)
        .verified()
        .collect::<Result<_, _>>()
        .expect("verified");
    let from_mid: Vec<Envelope> = log
        .replay(101)
        .verified()
        .collect::<Result<_, _>>()
        .expect("mid");
    assert_eq!(plain, all);
    assert_eq!(checked, all);
    assert_eq!(from_mid[..], all[100..]);
    let mut it = log.replay(299);
    assert_eq!(it.next_seq(), 299);
    assert_eq!(it.next().map(|e| e.expect("read").seq), Some(299));
    assert_eq!(it.next_seq(), 300);
}

const CRASH_DIR: &str = "DCLOUD_EVENTS_CRASH_CHILD_DIR";
const CRASH_BATCH: u64 = 64;

/// Run in a child process: appends batches forever, reporting each acknowledged seq.
fn crash_child(dir: &str) -> ! {
    let log = FjallLog::open(std::path::Path::new(dir)).expect("child opens log");
    loop {
        let last = log.last_seq();
        let appended = log
            .append(last, new_events(last + 1, CRASH_BATCH))
            .expect("child append");
        println!("acked {}", appended.last().map_or(0, |e| e.seq));
    }
}

#[test]
fn killed_mid_append_keeps_every_acknowledged_batch_and_no_partial_one() {
    if let Ok(dir) = std::env::var(CRASH_DIR) {
        crash_child(&dir);
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let exe = std::env::current_exe().expect("test binary");
    let mut child = Command::new(exe)
        .args([
            "--exact",
            "killed_mid_append_keeps_every_acknowledged_batch_and_no_partial_one",
            "--nocapture",
        ])
        .env(CRASH_DIR, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn child");
    let stdout = child.stdout.take().expect("child stdout");
    let mut acked = 0u64;
    let deadline = Instant::now() + Duration::from_secs(60);
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("child output");
        if let Some(n) = line.strip_prefix("acked ") {
            acked = n.parse().expect("seq");
            if acked >= 40 * CRASH_BATCH {
                break;
            }
        }
        assert!(Instant::now() < deadline, "child too slow: {acked} acked");
    }
    child.kill().expect("kill child");
    child.wait().expect("reap child");
    assert!(acked >= 40 * CRASH_BATCH, "child stopped early at {acked}");

    let log = FjallLog::open(dir.path()).expect("reopen after kill");
    let last = log.last_seq();
    assert!(
        last >= acked,
        "acknowledged seq {acked} lost, log ends at {last}"
    );
    assert_eq!(last % CRASH_BATCH, 0, "log ends inside a batch at {last}");
    let report = log.verify().expect("chain verifies after kill");
    assert_eq!(report.last_seq, last);
    assert_eq!(log.last_hash(), report.last_hash);
}
