//! An anchored head: the server signs checkpoints of `(seq, chain hash)` into a file
//! outside the log's directory, and `dcloud audit verify --expect-head FILE` fails,
//! naming the missing range, when the log ends before the checkpoint (a cut tail the
//! hash chain alone takes for a torn write) or differs at it.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use dcloud::checkpoint::{Checkpoint, CheckpointSigner};
use dcloud::server::{start, ServerConfig};
use dcloud_events::model::Usage;
use dcloud_events::{Event, EventLog, FjallLog, NewEvent};
use fjall::{Database, KeyspaceCreateOptions};

/// `n` events, one batch (and so one stored frame, keyed by its seq) each.
fn make_log(data: &Path, n: u64, variant: u64) {
    let log = FjallLog::open(&data.join("log")).expect("open");
    for i in 0..n {
        let event = Event::NodeHeartbeat {
            node_id: format!("0x{:012x}", i + variant),
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
        log.append(log.last_seq(), vec![e]).expect("append");
    }
}

/// Signs the head of the log in `data` into `file`.
fn checkpoint(data: &Path, file: &Path) -> Checkpoint {
    let signer = CheckpointSigner::load_or_create(data).expect("key");
    let log = FjallLog::open(&data.join("log")).expect("open");
    let (seq, hash) = log.head();
    let cp = signer.sign(seq, &hash, 1_700_000_000_000);
    cp.write(file).expect("write checkpoint");
    cp
}

fn dcloud(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_dcloud"))
        .args(args)
        .output()
        .expect("run dcloud");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

fn verify(data: &Path, head: Option<&Path>, extra: &[&str]) -> (i32, String) {
    let mut args = vec!["audit", "verify", "--data", data.to_str().expect("utf-8")];
    if let Some(h) = head {
        args.extend(["--expect-head", h.to_str().expect("utf-8")]);
    }
    args.extend(extra);
    dcloud(&args)
}

fn drop_tail(data: &Path, from: u64, to: u64) {
    let db = Database::builder(data.join("log"))
        .open()
        .expect("raw open");
    let events = db
        .keyspace("events", KeyspaceCreateOptions::default)
        .expect("keyspace");
    for seq in from..=to {
        events.remove(seq.to_be_bytes()).expect("remove");
    }
    db.persist(fjall::PersistMode::SyncAll).expect("persist");
}

#[test]
fn a_cut_tail_passes_the_chain_but_fails_against_the_checkpoint() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (data, elsewhere) = (tmp.path().join("data"), tmp.path().join("elsewhere"));
    std::fs::create_dir_all(&elsewhere).expect("mkdir");
    make_log(&data, 20, 0);
    let file = elsewhere.join("checkpoint.json");
    let cp = checkpoint(&data, &file);
    assert_eq!(cp.seq, 20);

    let (code, out) = verify(&data, Some(&file), &[]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("anchored by the checkpoint at seq 20"),
        "{out}"
    );
    let (code, out) = verify(&data, Some(&file), &["--public-key", &cp.public_key]);
    assert_eq!(code, 0, "{out}");

    drop_tail(&data, 17, 20);
    let (code, out) = verify(&data, None, &[]);
    assert_eq!(code, 0, "the chain alone cannot see a cut tail: {out}");
    assert!(out.starts_with("ok: 16 events"), "{out}");
    let (code, out) = verify(&data, Some(&file), &[]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("events 17..=20 are missing") && out.contains("ends at seq 16"),
        "{out}"
    );
    let (code, out) = dcloud(&[
        "--output",
        "json",
        "audit",
        "verify",
        "--data",
        data.to_str().expect("utf-8"),
        "--expect-head",
        file.to_str().expect("utf-8"),
    ]);
    assert_eq!(code, 1, "{out}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).expect("json");
    assert_eq!(
        (v["missing_from"].as_u64(), v["missing_to"].as_u64()),
        (Some(17), Some(20))
    );
}

#[test]
fn a_forged_checkpoint_or_a_rewritten_history_fails() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    make_log(&data, 10, 0);
    let file = tmp.path().join("cp.json");
    let cp = checkpoint(&data, &file);

    // Another key's checkpoint is refused when the key is pinned.
    let (code, out) = verify(&data, Some(&file), &["--public-key", &"ab".repeat(32)]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("not the expected"), "{out}");

    // An edited checkpoint does not verify.
    let mut forged = cp.clone();
    forged.seq = 5;
    forged.write(&file).expect("write");
    let (code, out) = verify(&data, Some(&file), &[]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("does not verify"), "{out}");

    // A log of the same length with other events: the chain verifies, the head does not.
    let other = tmp.path().join("other");
    make_log(&other, 10, 1000);
    cp.write(&file).expect("write");
    let (code, out) = verify(&other, Some(&file), &[]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("seq 10 is not the event the checkpoint"),
        "{out}"
    );
}

/// The server writes checkpoints of its durable head to the configured file, and a
/// last one when it stops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_keeps_a_checkpoint_of_its_head() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let file = tmp.path().join("shipped").join("head.json");
    std::fs::create_dir_all(file.parent().expect("parent")).expect("mkdir");
    let mut config = ServerConfig::new(&data);
    config.listen = "127.0.0.1:0".parse().expect("addr");
    config.checkpoint_file = Some(file.clone());
    config.checkpoint_every = Duration::from_millis(20);
    let server = start(config).await.expect("start");
    let head = server.writer().log().last_seq();
    assert!(head >= 1, "the admin token is in the log");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(cp) = Checkpoint::read(&file) {
            if cp.seq == head {
                assert!(cp.verify(None).is_ok());
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no checkpoint of seq {head} written"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(server.app().latest_checkpoint().map(|c| c.seq), Some(head));
    server.shutdown().await;
    let (code, out) = tokio::task::spawn_blocking(move || verify(&data, Some(&file), &[]))
        .await
        .expect("join");
    assert_eq!(code, 0, "{out}");
}
