//! The log: append and read back, conflicts, reopen, batch atomicity (also across a
//! killed process), and the fast replay iterator.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{fill, new_events, open, same_content};
use dcloud_events::{Envelope, EventLog, FjallLog, LogError, GENESIS_HASH, SCHEMA_VERSION};

fn read_all(log: &dyn EventLog) -> Vec<Envelope> {
    log.read_range(1, u64::MAX)
        .collect::<Result<_, _>>()
        .expect("read_range")
}

#[test]
fn append_assigns_seqs_and_chains_hashes_and_reads_back_the_same() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open(&dir);
    assert_eq!((log.last_seq(), log.last_hash()), (0, GENESIS_HASH));

    let batch = new_events(1, 5);
    let appended = log.append(0, batch.clone()).expect("append");
    assert_eq!(
        appended.iter().map(|e| e.seq).collect::<Vec<_>>(),
        vec![1, 2, 3, 4, 5]
    );
    for (env, new) in appended.iter().zip(&batch) {
        assert!(same_content(env, new), "{env:?} vs {new:?}");
        assert_eq!(env.schema, SCHEMA_VERSION);
    }
    let more = log.append(5, new_events(6, 3)).expect("second append");
    assert_eq!(more[0].prev_hash, appended[4].hash);

    let all = read_all(&log);
    assert_eq!(all.len(), 8);
    assert_eq!(all[..5], appended[..]);
    assert_eq!(all[5..], more[..]);
    assert_eq!(all[0].prev_hash, GENESIS_HASH);
    for pair in all.windows(2) {
        assert_eq!(pair[1].prev_hash, pair[0].hash, "seq {}", pair[1].seq);
        assert_ne!(pair[1].hash, pair[0].hash);
    }
    assert_eq!((log.last_seq(), log.last_hash()), (8, all[7].hash));
}

#[test]
fn read_range_bounds() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open(&dir);
    let all = fill(&log, 4, 5);
    let seqs = |from, to| -> Vec<u64> {
        log.read_range(from, to)
            .map(|e| e.expect("read").seq)
            .collect()
    };
    assert_eq!(seqs(7, 9), vec![7, 8, 9]);
    assert_eq!(seqs(0, 2), vec![1, 2], "from 0 reads from 1");
    assert_eq!(
        seqs(18, 1000),
        vec![18, 19, 20],
        "past the end stops at the end"
    );
    assert_eq!(seqs(9, 8), Vec::<u64>::new());
    assert_eq!(seqs(21, 30), Vec::<u64>::new());
    let mid: Vec<Envelope> = log
        .read_range(10, 12)
        .collect::<Result<_, _>>()
        .expect("read");
    assert_eq!(mid[..], all[9..12]);
}

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

#[test]
fn conflict_writes_nothing_and_reports_both_sides() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open(&dir);
    fill(&log, 2, 5);
    let before = read_all(&log);
    for expected in [0, 9, 11, 99] {
        match log.append(expected, new_events(100, 3)) {
            Err(LogError::Conflict {
                expected: e,
                actual: 10,
            }) => assert_eq!(e, expected),
            other => panic!("expected a conflict, got {other:?}"),
        }
    }
    assert!(matches!(
        log.append(3, Vec::new()),
        Err(LogError::Conflict {
            expected: 3,
            actual: 10
        })
    ));
    assert_eq!(log.last_seq(), 10);
    assert_eq!(read_all(&log), before);
    let next = log
        .append(10, new_events(11, 1))
        .expect("append after conflicts");
    assert_eq!((next[0].seq, next[0].prev_hash), (11, before[9].hash));
}

#[test]
fn empty_batch_writes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open(&dir);
    fill(&log, 1, 3);
    let hash = log.last_hash();
    assert_eq!(log.append(3, Vec::new()).expect("empty append"), Vec::new());
    assert_eq!((log.last_seq(), log.last_hash()), (3, hash));
}

#[test]
fn reopen_recovers_last_seq_and_hash_and_continues_the_chain() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (seq, hash) = {
        let log = open(&dir);
        fill(&log, 3, 7);
        (log.last_seq(), log.last_hash())
    };
    let log = open(&dir);
    assert_eq!((log.last_seq(), log.last_hash()), (seq, hash));
    assert_eq!(seq, 21);
    let next = log
        .append(seq, new_events(22, 2))
        .expect("append after reopen");
    assert_eq!((next[0].seq, next[0].prev_hash), (22, hash));
    let report = log.verify().expect("chain verifies");
    assert_eq!(
        (report.events, report.last_seq, report.last_hash),
        (23, 23, next[1].hash)
    );
}

#[test]
fn a_reader_never_sees_part_of_a_batch() {
    const BATCH: u64 = 50;
    let dir = tempfile::tempdir().expect("tempdir");
    let log = Arc::new(open(&dir));
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (log, stop) = (log.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut looks = 0u32;
            while !stop.load(Ordering::Relaxed) {
                let n = log
                    .replay(1)
                    .inspect(|e| assert!(e.is_ok(), "{e:?}"))
                    .count() as u64;
                assert_eq!(n % BATCH, 0, "saw {n} events: part of a batch");
                let m = log.last_seq();
                assert_eq!(m % BATCH, 0, "last_seq {m} inside a batch");
                looks += 1;
            }
            looks
        })
    };
    fill(&log, 40, BATCH);
    stop.store(true, Ordering::Relaxed);
    let looks = reader.join().expect("reader");
    assert!(looks > 0);
    assert_eq!(log.last_seq(), 40 * BATCH);
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
