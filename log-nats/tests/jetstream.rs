//! What only the JetStream backend does: fencing a second writer, appends larger than
//! one atomic batch, records published behind the log's back, refusing a stream that
//! lacks atomic batches, blocking from inside another runtime, and a 3-node cluster.

mod common;

use common::{cluster, fresh_stream, open_when_ready, server, Nats};
use dcloud_events::{BadRecord, EventLog, LogError};
use dcloud_log_nats::{JetStreamConfig, JetStreamLog};
use dcloud_log_tests::{fill, new_events, read_all, Backend};

#[test]
fn a_second_writer_is_fenced_out_and_the_first_refuses_writes() {
    let nats = Nats::new();
    let a = nats.open();
    fill(&a, 1, 5);
    let b = nats.open();
    assert_eq!((b.last_seq(), b.last_hash()), (5, a.last_hash()));
    let theirs = b
        .append(5, new_events(6, 3))
        .expect("second writer appends");

    // A still believes the log ends at 5: the stream's expected-last check refuses it.
    match a.append(5, new_events(100, 2)) {
        Err(LogError::Conflict {
            expected: 5,
            actual: 8,
        }) => {}
        other => panic!("expected a conflict with the other writer, got {other:?}"),
    }
    assert!(a.is_stopped());
    assert!(matches!(
        a.append(5, new_events(100, 1)),
        Err(LogError::Fenced { actual: 8 })
    ));
    assert!(matches!(
        a.save_snapshot(5, b"s"),
        Err(LogError::Fenced { actual: 8 })
    ));
    // Nothing of A's was stored; B goes on.
    let stored = read_all(&b);
    assert_eq!(stored[5..], theirs[..]);
    b.append(8, new_events(9, 1)).expect("B appends on");
    assert_eq!(b.verify().expect("verifies").last_seq, 9);
}

#[test]
fn an_append_larger_than_one_atomic_batch_is_stored_in_order() {
    // Three frames per atomic batch (as on a server with a low max_batch_size): an
    // append of eight frames is three batches.
    let mut nats = Nats::new();
    nats.cfg.max_batch_messages = 3;
    let log = nats.open();
    let n = 256 * 7 + 10;
    let appended = log.append(0, new_events(1, n)).expect("append");
    assert_eq!(appended.len() as u64, n);
    assert_eq!(log.last_seq(), n);
    assert_eq!(read_all(&log), appended);
    assert_eq!(log.verify().expect("verifies").last_seq, n);
    drop(log);
    let reopened = nats.open();
    assert_eq!(
        (reopened.last_seq(), reopened.last_hash()),
        (n, appended[n as usize - 1].hash)
    );
}

/// Publishes `payload` on the log's subject with a plain client, as an intruder would.
fn publish_raw(url: &str, subject: String, payload: &'static [u8]) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let client = async_nats::connect(url).await.expect("connect");
        let js = async_nats::jetstream::new(client);
        js.publish(subject, payload.into())
            .await
            .expect("publish")
            .await
            .expect("ack");
    });
}

#[test]
fn a_record_published_behind_the_logs_back_is_named_by_verify_and_fences_the_writer() {
    let nats = Nats::new();
    let log = nats.open();
    fill(&log, 2, 5);
    publish_raw(&server().url, nats.cfg.subject(), b"not a record");
    let err = log.verify().expect_err("broken at 11");
    assert_eq!(err.first_bad_seq, 11, "{err}");
    assert!(
        matches!(err.reason, BadRecord::Undecodable(ref r) if r.contains("magic")),
        "{err}"
    );
    assert!(matches!(
        log.append(10, new_events(11, 1)),
        Err(LogError::Conflict {
            expected: 10,
            actual: 11
        })
    ));
    // What the log knows is still read back.
    assert_eq!(
        log.read_range(9, 12)
            .map(|e| e.expect("read").seq)
            .collect::<Vec<_>>(),
        vec![9, 10]
    );
    drop(log);
    // Reopening reads the last stored message: it is not a frame.
    match JetStreamLog::open(nats.cfg.clone()) {
        Err(LogError::Corrupt { reason, .. }) => assert!(reason.contains("magic"), "{reason}"),
        Err(other) => panic!("expected Corrupt, got {other:?}"),
        Ok(_) => panic!("a log ending in a message that is no frame was opened"),
    }
}

/// The frame the log would store for `events` after its head, published by hand with
/// the message id the log gives it: as if the log's own publish had committed and its
/// answer was lost.
fn publish_as_the_log_would(log: &JetStreamLog, url: &str, events: Vec<dcloud_events::NewEvent>) {
    let mut enc = dcloud_events::record::Encoder::new();
    let mut prev = log.last_hash();
    let first = log.last_seq() + 1;
    let mut records = Vec::new();
    for (new, seq) in events.into_iter().zip(first..) {
        let (bytes, hash) = enc.encode(&new.at(seq), &prev).expect("encode");
        records.push((seq, bytes.to_vec()));
        prev = hash;
    }
    let frame = dcloud_events::frame::encode_frame(records.iter().map(|(s, r)| (*s, &r[..])));
    let id = format!("{first}.{}", hex::encode(prev));
    let subject = log.config().subject();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let js = async_nats::jetstream::new(async_nats::connect(url).await.expect("connect"));
        let mut h = async_nats::HeaderMap::new();
        h.insert(async_nats::header::NATS_MESSAGE_ID, id.as_str());
        js.publish_with_headers(subject, h, frame.into())
            .await
            .expect("publish")
            .await
            .expect("ack");
    });
}

#[test]
fn a_batch_the_stream_already_holds_is_recognised_by_its_message_ids() {
    let nats = Nats::new();
    let log = nats.open();
    fill(&log, 1, 4);
    publish_as_the_log_would(&log, &server().url, new_events(5, 3));
    // The log did not see those commits; its append finds them stored (duplicate
    // message ids), reads the last one back, and takes them as its own.
    let appended = log
        .append(4, new_events(5, 3))
        .expect("recognised, not a conflict");
    assert_eq!(appended.last().map(|e| e.seq), Some(7));
    assert!(!log.is_stopped());
    assert_eq!(read_all(&log)[4..], appended[..]);
    log.append(7, new_events(8, 1)).expect("appends go on");
    assert_eq!(log.verify().expect("verifies").last_seq, 8);
    // Records of different content at those seqs are another writer's: fenced.
    publish_as_the_log_would(&log, &server().url, new_events(1000, 2));
    assert!(matches!(
        log.append(8, new_events(9, 2)),
        Err(LogError::Conflict {
            expected: 8,
            actual: 10
        })
    ));
    assert!(log.is_stopped());
}

#[test]
fn a_stream_without_atomic_batches_is_refused_at_open() {
    let cfg = JetStreamConfig::new(server().url.clone(), fresh_stream());
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let client = async_nats::connect(cfg.url.as_str())
            .await
            .expect("connect");
        async_nats::jetstream::new(client)
            .create_stream(async_nats::jetstream::stream::Config {
                name: cfg.stream.clone(),
                subjects: vec![cfg.subject()],
                ..Default::default()
            })
            .await
            .expect("create a plain stream");
    });
    match JetStreamLog::open(cfg) {
        Err(LogError::Unsupported { reason }) => {
            assert!(reason.contains("allow_atomic"), "{reason}");
            assert!(reason.contains("allow_direct"), "{reason}");
        }
        Err(other) => panic!("expected Unsupported, got {other:?}"),
        Ok(_) => panic!("a stream without allow_atomic was accepted"),
    }
}

#[test]
fn bad_configuration_is_refused_naming_what_is_expected() {
    let bad_name = JetStreamConfig::new(server().url.clone(), "a.b");
    assert!(matches!(
        JetStreamLog::open(bad_name),
        Err(LogError::Unsupported { reason }) if reason.contains("letters, digits")
    ));
    let bad_replicas = JetStreamConfig::new(server().url.clone(), fresh_stream()).replicas(0);
    assert!(matches!(
        JetStreamLog::open(bad_replicas),
        Err(LogError::Unsupported { reason }) if reason.contains("replicas 0")
    ));
    // The single test server cannot hold 3 replicas: the stream is not made.
    let r3 = JetStreamConfig::new(server().url.clone(), fresh_stream()).replicas(3);
    assert!(matches!(
        JetStreamLog::open(r3),
        Err(LogError::Remote { .. })
    ));
}

#[tokio::test]
async fn appends_block_correctly_from_inside_another_runtime() {
    let nats = Nats::new();
    let log = std::sync::Arc::new(nats.open());
    // Straight from a task of a current-thread runtime (blocking it, as fjall's fsync
    // would), then from spawn_blocking.
    log.append(0, new_events(1, 3)).expect("append in a task");
    let l = log.clone();
    tokio::task::spawn_blocking(move || l.append(3, new_events(4, 2)).expect("append"))
        .await
        .expect("blocking task");
    let mut tail = log.subscribe(1);
    for seq in 1..=5 {
        assert_eq!(tail.next().await.expect("tail").seq, seq);
    }
    drop(tail);
    // The last handle dropped inside this runtime.
    drop(log);
}

#[test]
fn a_three_node_cluster_holds_the_log_with_three_replicas() {
    let (_servers, urls) = cluster();
    let mut cfg = JetStreamConfig::new(urls.clone(), "r3log").replicas(3);
    // Short, so that waiting for the new cluster's JetStream leader polls often.
    cfg.request_timeout = std::time::Duration::from_secs(2);
    let log = open_when_ready(&cfg);
    let all = fill(&log, 10, 100);
    log.append(1000, new_events(1001, 1)).expect("single");
    assert_eq!(read_all(&log)[..1000], all[..]);
    log.save_snapshot(1001, b"state@1001").expect("snapshot");
    assert_eq!(log.verify().expect("verifies").last_seq, 1001);
    drop(log);
    // Another handle, through the URL list, finds the same log.
    let again = JetStreamLog::open(cfg).expect("reopen");
    assert_eq!(again.last_seq(), 1001);
    let dyn_log: &dyn EventLog = &again;
    assert_eq!(
        dyn_log.newest_valid_snapshot(&|b: &[u8]| Ok::<_, String>(b.to_vec())),
        Some((1001, b"state@1001".to_vec()))
    );
}

/// Hundreds of blocking reads from one task of another runtime (as a tail catching up
/// does): the log's own join handles must not spend that task's cooperative budget,
/// or they stall for good after about 128 calls.
#[test]
fn many_blocking_reads_from_one_task_of_another_runtime_do_not_stall() {
    let nats = Nats::new();
    let log = nats.open();
    fill(&log, 1, 50);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        for i in 0..400u64 {
            let seq = 1 + i % 50;
            let got: Vec<u64> = log
                .read_range(seq, seq)
                .map(|e| e.expect("read").seq)
                .collect();
            assert_eq!(got, vec![seq], "read {i}");
        }
    });
}

/// A standby's handle on the same stream takes in the writer's records (checked, in
/// order), its tails see them live, and once the writer is gone it writes on from
/// there; the old writer, still holding the old head, is fenced out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_following_handle_sees_the_writers_records_live_and_can_take_over() {
    let nats = Nats::new();
    let leader = nats.open();
    let before = fill(&leader, 2, 300); // several frames
    let standby = nats.open();
    assert_eq!(standby.last_seq(), 600);
    standby.follow(std::time::Duration::from_millis(200));
    let mut tail = standby.subscribe(599);
    assert_eq!(tail.next().await.expect("tail").seq, 599);
    assert_eq!(tail.next().await.expect("tail").seq, 600);

    // Explicitly, without waiting for the follower.
    let more = leader.append(600, new_events(601, 10)).expect("append");
    assert!(standby.catch_up().is_ok());
    assert_eq!(standby.last_seq(), 610);
    assert_eq!(standby.last_hash(), leader.last_hash());
    for want in &more {
        let got = tail.next().await.expect("tail");
        assert_eq!(&got, want);
    }
    // Live, through the follower alone: a batch of two frames and a single record.
    let batch = leader.append(610, new_events(611, 300)).expect("append");
    let single = leader.append(910, new_events(911, 1)).expect("append");
    for want in batch.iter().chain(&single) {
        let got = tokio::time::timeout(std::time::Duration::from_secs(5), tail.next())
            .await
            .expect("the follower delivers within 5 s")
            .expect("tail");
        assert_eq!(&got, want);
    }
    assert_eq!(standby.last_seq(), 911);

    // The standby writes on; the old leader's append with its old head is refused.
    standby
        .append(911, new_events(912, 2))
        .expect("the standby appends after the leader's last record");
    assert!(matches!(
        leader.append(911, new_events(5000, 1)),
        Err(LogError::Conflict { .. })
    ));
    let all = read_all(&standby);
    assert_eq!(all.len(), 913);
    assert_eq!(all[..600], before[..]);
    assert_eq!(standby.verify().expect("verifies").last_seq, 913);
}

/// A record published behind the log's back (not a frame of the chain) is not taken in.
#[test]
fn catching_up_refuses_a_message_that_is_not_a_frame_of_the_chain() {
    let nats = Nats::new();
    let log = nats.open();
    fill(&log, 1, 3);
    let other = nats.open();
    publish_raw(&nats.cfg.url, log.config().subject(), b"not a frame");
    match other.catch_up() {
        Err(LogError::Corrupt { seq: 4, .. }) => {}
        other => panic!("expected a corrupt record at 4, got {other:?}"),
    }
    assert_eq!(other.last_seq(), 3, "nothing taken in");
}

/// A paused follower (a leader's handle) reads nothing; resumed, it catches up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_follower_takes_nothing_in_until_resumed() {
    let nats = Nats::new();
    let writer = nats.open();
    fill(&writer, 1, 3);
    let other = nats.open();
    other.pause_following(true);
    other.follow(std::time::Duration::from_millis(50));
    writer.append(3, new_events(4, 2)).expect("append");
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    assert_eq!(other.last_seq(), 3, "paused: nothing taken in");
    other.pause_following(false);
    let started = std::time::Instant::now();
    while other.last_seq() != 5 {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(5),
            "resumed, it catches up"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(other.last_hash(), writer.last_hash());
}
