//! Appends and reads: seqs and the hash chain, range bounds, conflicts, empty batches,
//! reopening, and readers that never see part of a batch.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use dcloud_events::{Envelope, EventLog, LogError, GENESIS_HASH, SCHEMA_VERSION};

use crate::{fill, new_events, read_all, same_content, Backend};

pub fn append_assigns_seqs_and_chains_hashes<B: Backend>(b: &B) {
    let log = b.open();
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

pub fn read_range_bounds<B: Backend>(b: &B) {
    let log = b.open();
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

pub fn conflict_writes_nothing_and_reports_both_sides<B: Backend>(b: &B) {
    let log = b.open();
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

pub fn empty_batch_writes_nothing<B: Backend>(b: &B) {
    let log = b.open();
    fill(&log, 1, 3);
    let hash = log.last_hash();
    assert_eq!(log.append(3, Vec::new()).expect("empty append"), Vec::new());
    assert_eq!((log.last_seq(), log.last_hash()), (3, hash));
}

pub fn reopen_recovers_last_seq_and_hash_and_continues_the_chain<B: Backend>(b: &B) {
    let (seq, hash) = {
        let log = b.open();
        fill(&log, 3, 7);
        (log.last_seq(), log.last_hash())
    };
    let log = b.open();
    assert_eq!((log.last_seq(), log.last_hash()), (seq, hash));
    assert_eq!(seq, 21);
    let next = log
        .append(seq, new_events(22, 2))
        .expect("append after reopen");
    assert_eq!((next[0].seq, next[0].prev_hash), (22, hash));
    let report = b.verify(&log).expect("chain verifies");
    assert_eq!(
        (report.events, report.last_seq, report.last_hash),
        (23, 23, next[1].hash)
    );
}

pub fn a_reader_never_sees_part_of_a_batch<B: Backend>(b: &B) {
    const BATCH: u64 = 50;
    let log = Arc::new(b.open());
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (log, stop) = (log.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut looks = 0u32;
            // At least one look after the last append, so a slow reader still looks.
            loop {
                let done = stop.load(Ordering::Acquire);
                let n = log
                    .read_range(1, u64::MAX)
                    .inspect(|e| assert!(e.is_ok(), "{e:?}"))
                    .count() as u64;
                assert_eq!(n % BATCH, 0, "saw {n} events: part of a batch");
                let m = log.last_seq();
                assert_eq!(m % BATCH, 0, "last_seq {m} inside a batch");
                looks += 1;
                if done {
                    return looks;
                }
            }
        })
    };
    fill(&*log, 40, BATCH);
    stop.store(true, Ordering::Release);
    let looks = reader.join().expect("reader");
    assert!(looks > 0);
    assert_eq!(log.last_seq(), 40 * BATCH);
}
