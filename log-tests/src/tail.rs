//! Tail subscriptions: catch up from storage then follow live appends with no gap and
//! no duplicate, under concurrent appends, from any seq, for many subscribers, after
//! lag. Each test runs on a tokio runtime of its own, appends on blocking threads.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use dcloud_events::{Envelope, EventLog, LogError, Tail};
use futures::StreamExt;

use crate::{fill, new_events, read_all, Backend};

/// Guards against a hung test; nothing waits on it in the passing case.
const LIMIT: Duration = Duration::from_secs(60);

fn run<F: Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(f)
}

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
fn spawn_appender<L: EventLog + 'static>(
    log: Arc<L>,
    batches: u64,
) -> tokio::task::JoinHandle<u64> {
    tokio::task::spawn_blocking(move || {
        for b in 0..batches {
            let last = log.last_seq();
            log.append(last, new_events(last + 1, 1 + (b * 7) % 40))
                .expect("append");
        }
        log.last_seq()
    })
}

/// How many events `spawn_appender(_, batches)` writes.
fn expected_appended(batches: u64) -> u64 {
    (0..batches).map(|b| 1 + (b * 7) % 40).sum()
}

fn assert_seqs(envs: &[Envelope], from: u64) {
    for (env, want) in envs.iter().zip(from..) {
        assert_eq!(env.seq, want, "gap or duplicate");
    }
}

/// Appends from a blocking thread, as the trait asks.
async fn append(log: &Arc<impl EventLog + 'static>, last: u64, n: u64) -> Vec<Envelope> {
    let log = log.clone();
    tokio::task::spawn_blocking(move || log.append(last, new_events(0, n)).expect("append"))
        .await
        .expect("append thread")
}

pub fn catches_up_then_follows_live_appends<B: Backend>(b: &B) {
    let log = Arc::new(b.open());
    fill(&*log, 20, 100);
    run(async {
        let appender = spawn_appender(log.clone(), 300);
        let mut early = log.subscribe(1);
        let first = take(&mut early, 1000).await;
        let mut late = log.subscribe(1500);
        let total = appender.await.expect("appender");
        assert_eq!(total, 2000 + expected_appended(300));

        let mut got = first;
        got.extend(take(&mut early, total as usize - 1000).await);
        let late_got = take(&mut late, (total - 1499) as usize).await;

        let stored = read_all(&*log);
        assert_eq!(got, stored);
        assert_eq!(late_got[..], stored[1499..]);
        assert_seqs(&got, 1);

        // Nothing more is delivered until something is appended, then exactly that.
        assert!(
            tokio::time::timeout(Duration::from_millis(50), early.next())
                .await
                .is_err()
        );
        let more = append(&log, total, 2).await;
        assert_eq!(take(&mut early, 2).await, more);
        assert_eq!(early.next_seq(), total + 3);
    });
}

pub fn resumes_from_any_seq<B: Backend>(b: &B) {
    let log = Arc::new(b.open());
    let all = fill(&*log, 6, 50);
    run(async {
        for from in [0u64, 1, 2, 149, 150, 151, 299, 300] {
            let mut tail = log.subscribe(from);
            let start = from.max(1);
            let got = take(&mut tail, (300 - start + 1) as usize).await;
            assert_eq!(got[..], all[(start - 1) as usize..], "from {from}");
            assert_eq!(tail.next_seq(), 301);
        }
        // From the future: nothing until that seq exists, then exactly from there.
        let mut ahead = log.subscribe(305);
        append(&log, 300, 3).await;
        assert!(
            tokio::time::timeout(Duration::from_millis(50), ahead.next())
                .await
                .is_err()
        );
        let appended = append(&log, 303, 4).await;
        assert_eq!(take(&mut ahead, 3).await[..], appended[1..]);
    });
}

pub fn many_subscribers_see_the_same_history<B: Backend>(b: &B) {
    let log = Arc::new(b.open());
    fill(&*log, 5, 20);
    run(async {
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
        let stored = read_all(&*log);
        for r in readers {
            let (i, got) = r.await.expect("reader");
            assert_eq!(got[..], stored[(i * 5) as usize..], "subscriber {i}");
        }
    });
}

pub fn a_lagging_subscriber_falls_back_to_disk<B: Backend>(b: &B) {
    let log = b.open();
    let mut tail = log.subscribe(1);
    // Far more one-event batches than the live channel holds, none of them polled.
    for seq in 0..1500u64 {
        log.append(seq, new_events(seq + 1, 1)).expect("append");
    }
    run(async {
        let got = take(&mut tail, 1500).await;
        assert_seqs(&got, 1);
        assert_eq!(got, read_all(&log));
    });
}

pub fn dropping_the_log_ends_tails_after_what_is_durable<B: Backend>(b: &B) {
    let log = b.open();
    fill(&log, 1, 3);
    let mut tail = log.subscribe(2);
    let stream = log.subscribe(1).into_stream();
    drop(log);
    run(async {
        let seqs: Vec<u64> = take(&mut tail, 2).await.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, vec![2, 3]);
        assert!(matches!(tail.next().await, Err(LogError::Closed)));
        let seqs: Vec<u64> = stream.map(|e| e.expect("stream item").seq).collect().await;
        assert_eq!(seqs, vec![1, 2, 3]);
    });
}

pub fn stream_follows_live_appends<B: Backend>(b: &B) {
    let log = Arc::new(b.open());
    fill(&*log, 1, 2);
    run(async {
        let mut stream = Box::pin(log.subscribe(2).into_stream());
        let first = tokio::time::timeout(LIMIT, stream.next())
            .await
            .expect("stalled");
        assert_eq!(first.expect("item").expect("ok").seq, 2);
        let appended = append(&log, 2, 1).await;
        let live = tokio::time::timeout(LIMIT, stream.next())
            .await
            .expect("stalled")
            .expect("item")
            .expect("ok");
        assert_eq!(live, appended[0]);
    });
}
