//! The writer as a standby (what a server on a shared log starts as): it refuses
//! commands naming the leader, folds what it is handed of the log into the state
//! readers see, is promoted only once it holds the whole log, then writes on from
//! there; a leader handed an event it did not append stops (it was fenced out).

use std::sync::Arc;

use dcloud::writer::{self, system_clock, WriterConfig, WriterError, WriterHandle};
use dcloud_events::model::Role;
use dcloud_events::{Envelope, EventLog, FjallLog};
use dcloud_projections::{Actor, Command, Settings, State};

fn config() -> WriterConfig {
    WriterConfig {
        settings: Settings::default(),
        snapshot_every: 0,
        keep_snapshots: 0,
        clock: system_clock(),
    }
}

fn create_token(id: &str) -> Command {
    Command::CreateToken {
        token_id: id.into(),
        name: id.into(),
        role: Role::User,
        secret_hash: *blake3::hash(id.as_bytes()).as_bytes(),
        node_id: None,
    }
}

async fn submit(w: &WriterHandle, cmd: Command) -> Result<Vec<Envelope>, WriterError> {
    w.submit(cmd, Actor::system(), "test".into()).await
}

fn read_all(log: &dyn EventLog) -> Vec<Envelope> {
    log.read_range(1, u64::MAX)
        .collect::<Result<_, _>>()
        .expect("read")
}

#[tokio::test]
async fn a_standby_folds_the_log_refuses_commands_and_leads_once_caught_up() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log: Arc<dyn EventLog> = Arc::new(FjallLog::open(dir.path()).expect("log"));

    // What a leader wrote before this standby started following.
    let leader = writer::spawn(log.clone(), State::default(), config());
    submit(&leader, create_token("alice")).await.expect("alice");
    submit(&leader, create_token("bob")).await.expect("bob");
    let l = leader.clone();
    tokio::task::spawn_blocking(move || l.shutdown())
        .await
        .expect("leader stops");
    let written = read_all(&*log);
    assert_eq!(written.len(), 2);

    let standby = writer::spawn_standby(log.clone(), State::default(), config());
    assert!(!standby.is_leader());
    match submit(&standby, create_token("carol")).await {
        Err(WriterError::NotLeader { leader: None }) => {}
        other => panic!("expected NotLeader without a leader, got {other:?}"),
    }
    standby.set_leader_hint(Some("http://10.0.0.1:7070".into()));
    match submit(&standby, create_token("carol")).await {
        Err(WriterError::NotLeader { leader: Some(l) }) => assert_eq!(l, "http://10.0.0.1:7070"),
        other => panic!("expected NotLeader naming the leader, got {other:?}"),
    }
    assert_eq!(log.last_seq(), 2, "nothing written by the standby");

    // Not promoted while its state lags the log.
    let err = standby.promote().await.expect_err("behind the log");
    assert!(err.contains("not caught up"), "{err}");

    // Handed the log (the first event twice: seqs it holds are skipped), it folds it
    // into the state readers see.
    standby.follow(written[..1].to_vec()).await.expect("follow");
    standby.follow(written.clone()).await.expect("follow");
    let mut applied = standby.applied();
    applied
        .wait_for(|seq| *seq == 2)
        .await
        .expect("applied reaches 2");
    assert_eq!(standby.state().tokens.len(), 2);
    assert!(standby.state().tokens.contains_key("alice"));

    // Caught up: promoted, it writes after the leader's last event.
    assert_eq!(standby.promote().await, Ok(2));
    assert!(standby.is_leader());
    let carol = submit(&standby, create_token("carol"))
        .await
        .expect("carol");
    assert_eq!(carol[0].seq, 3);
    assert_eq!(carol[0].prev_hash, written[1].hash, "the chain goes on");
    // Its own append handed back (a follower sees it too) is skipped.
    standby.follow(carol.clone()).await.expect("follow");
    submit(&standby, create_token("dave")).await.expect("dave");

    // An event past its head that it did not append: another server wrote. It stops.
    let mut foreign = carol[0].clone();
    foreign.seq = 10;
    let _ = standby.follow(vec![foreign]).await;
    let mut stopped = false;
    for _ in 0..100 {
        if standby.fatal().is_some() {
            stopped = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(stopped, "the leader stops when another server wrote");
    let why = standby.fatal().expect("fatal");
    assert!(why.contains("fenced"), "{why}");
    assert!(matches!(
        submit(&standby, create_token("erin")).await,
        Err(WriterError::Stopped(_))
    ));
}

#[tokio::test]
async fn a_leader_that_lost_its_lease_stops_taking_commands() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log: Arc<dyn EventLog> = Arc::new(FjallLog::open(dir.path()).expect("log"));
    let w = writer::spawn(log.clone(), State::default(), config());
    submit(&w, create_token("alice")).await.expect("alice");
    w.stop_with("lost the leader lease: test".into());
    assert_eq!(
        w.fatal().as_deref(),
        Some("lost the leader lease: test"),
        "the reason is kept"
    );
    assert!(matches!(
        submit(&w, create_token("bob")).await,
        Err(WriterError::Stopped(why)) if why.contains("lease")
    ));
    assert_eq!(log.last_seq(), 1);
}
