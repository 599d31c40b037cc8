//! Tail subscriptions: catch up from disk then follow live appends with no gap and no
//! duplicate, under concurrent appends, from any seq, for many subscribers, after lag.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{fill, new_events, open};
use dcloud_events::{Envelope, EventLog, FjallLog, LogError, Tail};
use futures::StreamExt;

/// Guards against a hung test; nothing waits on it in the passing case.
const LIMIT: Duration = Duration::from_secs(60);

async fn take(tail: &mut Tail, n: usize) -> Vec<Envelope> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let env = tokio::time::timeout(LIMIT, tail.next())
            .await
            .expect("tail stalled")
            .expect("tail next");
        out.push(env);
    }
    out
}

/// Appends `batches` batches of 1..=40 events on a blocking thread.
fn spawn_appender(log: Arc<FjallLog>, batches: u64) -> tokio::task::JoinHandle<u64> {
    tokio::task::spawn_blocking(move || {
        for b in 0..batches {
            let last = log.last_seq();
            log.append(last, new_events(last + 1, 1 + (b * 7) % 40))
                .expect("append");
        }
        log.last_seq()
    })
}

fn assert_seqs(envs: &[Envelope], from: u64) {
    for (env, want) in envs.iter().zip(from..) {
        assert_eq!(env.seq, want, "gap or duplicate");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catches_up_then_follows_live_appends_without_gap_or_duplicate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = Arc::new(open(&dir));
    fill(&log, 20, 100);
    let appender = spawn_appender(log.clone(), 300);
    let mut early = log.subscribe(1);
    let first = take(&mut early, 1000).await;
    let mut late = log.subscribe(1500);
    let total = appender.await.expect("appender");
    assert!(total > 2000 + 300);

    let mut got = first;
    got.extend(take(&mut early, total as usize - 1000).await);
    let late_got = take(&mut late, (total - 1499) as usize).await;

    let stored: Vec<Envelope> = log
        .read_range(1, u64::MAX)
        .collect::<Result<_, _>>()
        .expect("read");
    assert_eq!(got, stored);
    assert_eq!(late_got[..], stored[1499..]);
    assert_seqs(&got, 1);

    // Nothing more is delivered until something is appended, then exactly that.
    assert!(
        tokio::time::timeout(Duration::from_millis(50), early.next())
            .await
            .is_err()
    );
    let more = log.append(total, new_events(0, 2)).expect("append");
    assert_eq!(take(&mut early, 2).await, more);
    assert_eq!(early.next_seq(), total + 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resumes_from_any_seq() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open(&dir);
    let all = fill(&log, 6, 50);
    for from in [0u64, 1, 2, 149, 150, 151, 299, 300] {
        let mut tail = log.subscribe(from);
        let start = from.max(1);
        let got = take(&mut tail, (300 - start + 1) as usize).await;
        assert_eq!(got[..], all[(start - 1) as usize..], "from {from}");
        assert_eq!(tail.next_seq(), 301);
    }
    // From the future: nothing until that seq exists, then exactly from there.
    let mut ahead = log.subscribe(305);
    log.append(300, new_events(0, 3)).expect("append");
    assert!(
        tokio::time::timeout(Duration::from_millis(50), ahead.next())
            .await
            .is_err()
    );
    let appended = log.append(303, new_events(0, 4)).expect("append");
    assert_eq!(take(&mut ahead, 3).await[..], appended[1..]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_subscribers_see_the_same_history() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = Arc::new(open(&dir));
    fill(&log, 5, 20);
    let appender = spawn_appender(log.clone(), 200);
    let end = 100 + expected_appended(200);
    let mut readers = Vec::new();
    for i in 0..16u64 {
        let mut tail = log.subscribe(1 + i * 5);
        readers.push(tokio::spawn(async move {
            (i, take(&mut tail, (end - i * 5) as usize).await)
        }));
    }
    let total = appender.await.expect("appender");
    assert_eq!(total, end);
    let stored: Vec<Envelope> = log
        .read_range(1, u64::MAX)
        .collect::<Result<_, _>>()
        .expect("read");
    for r in readers {
        let (i, got) = r.await.expect("reader");
        assert_eq!(got[..], stored[(i * 5) as usize..], "subscriber {i}");
    }
}

/// How many events `spawn_appender(_, batches)` writes.
fn expected_appended(batches: u64) -> u64 {
    (0..batches).map(|b| 1 + (b * 7) % 40).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lagging_subscriber_falls_back_to_disk() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open(&dir);
    let mut tail = log.subscribe(1);
    // Far more one-event batches than the live channel holds, none of them polled.
    for seq in 0..1500u64 {
        log.append(seq, new_events(seq + 1, 1)).expect("append");
    }
    let got = take(&mut tail, 1500).await;
    assert_seqs(&got, 1);
    let stored: Vec<Envelope> = log
        .read_range(1, u64::MAX)
        .collect::<Result<_, _>>()
        .expect("read");
    assert_eq!(got, stored);
}

#[tokio::test]
async fn dropping_the_log_ends_tails_after_what_is_durable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open(&dir);
    fill(&log, 1, 3);
    let mut tail = log.subscribe(2);
    let stream = log.subscribe(1).into_stream();
    drop(log);
    assert_eq!(
        take(&mut tail, 2)
            .await
            .iter()
            .map(|e| e.seq)
            .collect::<Vec<_>>(),
        vec![2, 3]
    );
    assert!(matches!(tail.next().await, Err(LogError::Closed)));
    let seqs: Vec<u64> = stream.map(|e| e.expect("stream item").seq).collect().await;
    assert_eq!(seqs, vec![1, 2, 3]);
}

#[tokio::test]
async fn stream_follows_live_appends() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open(&dir);
    fill(&log, 1, 2);
    let mut stream = Box::pin(log.subscribe(2).into_stream());
    let first = tokio::time::timeout(LIMIT, stream.next())
        .await
        .expect("stalled");
    assert_eq!(first.expect("item").expect("ok").seq, 2);
    let appended = log.append(2, new_events(3, 1)).expect("append");
    let live = tokio::time::timeout(LIMIT, stream.next())
        .await
        .expect("stalled")
        .expect("item")
        .expect("ok");
    assert_eq!(live, appended[0]);
}
