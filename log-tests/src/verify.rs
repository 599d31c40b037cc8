//! The chain verifier on a clean log, reads across stored units (fjall frames, JetStream
//! messages), and `fold_range`.

use dcloud_events::{fold_range, EventLog, GENESIS_HASH};

use crate::{fill, Backend};

pub fn a_clean_log_verifies<B: Backend>(b: &B) {
    let log = b.open();
    fill(&log, 4, 5);
    let report = b.verify(&log).expect("verifies");
    assert_eq!(
        (report.events, report.last_seq, report.last_hash),
        (20, 20, log.last_hash())
    );
}

pub fn an_empty_log_verifies<B: Backend>(b: &B) {
    let log = b.open();
    let report = b.verify(&log).expect("verifies");
    assert_eq!(
        (report.events, report.last_seq, report.last_hash),
        (0, 0, GENESIS_HASH)
    );
}

pub fn a_batch_spanning_frames_reads_from_anywhere<B: Backend>(b: &B) {
    let log = b.open();
    // Two and a bit of fjall's 256-record frames, then a small batch.
    let n = 256 * 2 + 7;
    fill(&log, 1, n);
    fill(&log, 1, 3);
    for (from, to) in [
        (1, n + 3),
        (255, 260),
        (256, 257),
        (n, n + 2),
        (n + 3, n + 9),
    ] {
        let seqs: Vec<u64> = log
            .read_range(from, to)
            .map(|e| e.expect("read").seq)
            .collect();
        assert_eq!(
            seqs,
            (from..=to.min(n + 3)).collect::<Vec<_>>(),
            "{from}..={to}"
        );
    }
    assert_eq!(b.verify(&log).expect("verifies").last_seq, n + 3);
}

pub fn fold_range_folds_in_order<B: Backend>(b: &B) {
    let log = b.open();
    fill(&log, 4, 5);
    let mut seen = Vec::new();
    let n = fold_range(&log, 3, 20, |e| seen.push(e.seq)).expect("clean");
    assert_eq!((n, seen), (18, (3..=20).collect::<Vec<_>>()));
}
