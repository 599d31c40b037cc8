//! Power loss, not just SIGKILL: the data directory lives on a FUSE layer that drops
//! every write not fsynced at the cut (see `replay_tests::lazyfs`). The server starts
//! on it, takes an admin token and hundreds of concurrent commands (group commits
//! that cross frame boundaries), then the log takes batches of 1, 255, 256, 257 and
//! more events, then the server starts again and takes more. Then, for every flush the
//! layer saw (and a torn variant of every file flush), the disk as it would be found
//! after a cut there is written out and checked: every acknowledged event is present,
//! no batch is partly there, the chain verifies, the admin token's file matches the
//! log, and the server starts on it and takes a write.
//!
//! Needs /dev/fuse and fusermount3 (root; `.ci/run` installs fuse3) and fails loudly
//! without them. `DCLOUD_POWER_LOSS_ROUNDS=N` runs N rounds with varied batch sizes
//! (default 1: the CI run); the count of cut points is printed.
//! `DCLOUD_POWER_LOSS_KEEP=DIR` keeps the disk image of each failed cut there.

use std::path::Path;
use std::sync::Arc;

use dcloud::server::{AppState, ServerConfig, ADMIN_TOKEN_FILE};
use dcloud_events::model::Role;
use dcloud_events::{Event, EventLog, FjallLog, Hash, NewEvent};
use dcloud_projections::{Actor, Command};
use replay_tests::lazyfs::{Cut, LazyFs, Mark, Timeline};

fn push(t: &Timeline, m: Mark) {
    t.lock().expect("timeline").push(m);
}

fn token_cmd(i: usize) -> Command {
    Command::CreateToken {
        token_id: format!("t-{i}"),
        name: format!("user-{i}"),
        role: Role::User,
        secret_hash: *blake3::hash(format!("secret-{i}").as_bytes()).as_bytes(),
        node_id: None,
    }
}

/// Starts the server's state on `data`, submits `count` commands at once (the writer
/// groups them), records every acknowledgement, and shuts the writer down.
async fn server_phase(
    data: &Path,
    t: &Timeline,
    hashes: &Arc<std::sync::Mutex<Vec<Hash>>>,
    base: usize,
    count: usize,
) {
    let mut config = ServerConfig::new(data);
    config.snapshot_every = 300;
    let (app, _token) = AppState::open(&config).await.expect("server opens");
    {
        // What start-up wrote (the admin token on the first start) is acknowledged.
        let log = app.writer().log();
        let last = log.last_seq();
        let mut h = hashes.lock().expect("hashes");
        for env in log.read_range(1, last) {
            let env = env.expect("read");
            record_hash(&mut h, env.seq, env.hash);
        }
        push(t, Mark::Acked { last_seq: last });
    }
    let mut tasks = Vec::new();
    for i in 0..count {
        let backend = app.backend().clone();
        let t = t.clone();
        let hashes = hashes.clone();
        tasks.push(tokio::spawn(async move {
            let envs = backend
                .submit_cmd(token_cmd(base + i), Actor::system(), format!("c{i}"))
                .await
                .expect("accepted");
            let (first, last) = (envs[0].seq, envs[envs.len() - 1].seq);
            {
                let mut h = hashes.lock().expect("hashes");
                for e in &envs {
                    record_hash(&mut h, e.seq, e.hash);
                }
            }
            push(&t, Mark::Batch { first, last });
            push(&t, Mark::Acked { last_seq: last });
        }));
    }
    for task in tasks {
        task.await.expect("task");
    }
    let writer = app.writer().clone();
    tokio::task::spawn_blocking(move || writer.shutdown())
        .await
        .expect("shutdown");
}

fn record_hash(h: &mut Vec<Hash>, seq: u64, hash: Hash) {
    let i = seq as usize;
    if h.len() <= i {
        h.resize(i + 1, [0; 32]);
    }
    h[i] = hash;
}

/// Appends batches of `sizes` events straight to the log (frame boundaries at 256).
fn log_phase(
    data: &Path,
    t: &Timeline,
    hashes: &Arc<std::sync::Mutex<Vec<Hash>>>,
    sizes: &[usize],
) {
    let log = FjallLog::open(&data.join("log")).expect("log opens");
    for (b, &size) in sizes.iter().enumerate() {
        let batch = (0..size)
            .map(|i| NewEvent {
                time_ms: 1_700_000_000_000,
                actor: "system".into(),
                correlation: format!("b{b}"),
                event: Event::NodeLost {
                    node_id: format!("node-{b}-{i}"),
                },
            })
            .collect();
        let envs = log.append(log.last_seq(), batch).expect("append");
        {
            let mut h = hashes.lock().expect("hashes");
            for e in &envs {
                record_hash(&mut h, e.seq, e.hash);
            }
        }
        let (first, last) = (envs[0].seq, envs[envs.len() - 1].seq);
        push(t, Mark::Batch { first, last });
        push(t, Mark::Acked { last_seq: last });
    }
}

/// Everything the checks need about the run.
struct History {
    timeline: Vec<Mark>,
    batches: Vec<(u64, u64)>,
    hashes: Vec<Hash>,
}

impl History {
    /// The highest seq acknowledged before the cut: for a completed flush, anything
    /// acknowledged before the next flush (an ack follows its own fsync); for a torn
    /// one, anything acknowledged before this flush.
    fn acked_at(&self, cut: &Cut) -> u64 {
        let bound = if cut.torn {
            cut.mark
        } else {
            self.timeline[cut.mark + 1..]
                .iter()
                .position(|m| *m == Mark::Flush)
                .map_or(self.timeline.len(), |p| cut.mark + 1 + p)
        };
        self.timeline[..bound]
            .iter()
            .filter_map(|m| match m {
                Mark::Acked { last_seq } => Some(*last_seq),
                _ => None,
            })
            .max()
            .unwrap_or(0)
    }
}

/// The disk after `cut`, checked; `Err` says what is wrong.
async fn check_cut(cut: &Cut, history: &History, dir: &Path) -> Result<(), String> {
    cut.image
        .materialize(dir)
        .map_err(|e| format!("materialize: {e}"))?;
    let acked = history.acked_at(cut);
    let data = dir.join("data");
    let log_dir = data.join("log");
    if !log_dir.is_dir() {
        return if acked == 0 {
            Ok(())
        } else {
            Err(format!(
                "the log directory is gone; {acked} events were acknowledged"
            ))
        };
    }
    // Opened first as the server opens it (a creation cut short is made again), then
    // verified offline as `audit verify` does.
    drop(FjallLog::open(&log_dir).map_err(|e| format!("the log does not open: {e}"))?);
    let report = dcloud_events::verify_dir(&log_dir).map_err(|e| format!("audit verify: {e}"))?;
    let last = report.last_seq;
    if last < acked {
        return Err(format!(
            "log ends at seq {last}; seq {acked} was acknowledged"
        ));
    }
    if let Some((first, end)) = history
        .batches
        .iter()
        .find(|(f, l)| *f <= last && last < *l)
    {
        return Err(format!(
            "partial batch visible: log ends at {last} inside {first}..={end}"
        ));
    }
    if last > 0 && history.hashes.get(last as usize) != Some(&report.last_hash) {
        let log = FjallLog::open(&log_dir).map_err(|e| e.to_string())?;
        let env = log.read_range(last, last).next();
        return Err(format!(
            "seq {last} is not the event that was written there: {env:?}, expected hash {:?}",
            history.hashes.get(last as usize).map(hex::encode)
        ));
    }
    let token_file = std::fs::read_to_string(data.join(ADMIN_TOKEN_FILE)).ok();
    let config = ServerConfig::new(&data);
    let (app, created) = AppState::open(&config)
        .await
        .map_err(|e| format!("the server does not start: {e:#}"))?;
    let outcome = async {
        if created.is_none() {
            // The log has the admin token: its file must have survived with it.
            let file = token_file.ok_or("the log has an admin token but admin.token is gone")?;
            let actor = dcloud_graphql::authenticate(&app.writer().state(), file.trim())
                .ok_or("admin.token does not match the admin token in the log")?;
            if !actor.is_admin() {
                return Err("admin.token is not an admin's".to_string());
            }
        }
        app.backend()
            .submit_cmd(token_cmd(1_000_000), Actor::system(), "after-cut".into())
            .await
            .map_err(|e| format!("the restarted server refuses a write: {e}"))?;
        Ok::<(), String>(())
    }
    .await;
    let writer = app.writer().clone();
    drop(app);
    tokio::task::spawn_blocking(move || writer.shutdown())
        .await
        .expect("shutdown");
    outcome
}

fn run_round(round: usize) -> usize {
    let mnt = tempfile::tempdir().expect("mount point");
    let timeline: Timeline = Default::default();
    let fs = LazyFs::new(timeline.clone());
    let recorder = fs.recorder();
    let session = fs.mount(mnt.path()).unwrap_or_else(|e| {
        panic!("mounting the FUSE layer failed (needs root, /dev/fuse and fusermount3 from fuse3): {e}")
    });
    let data = mnt.path().join("data");
    let hashes = Arc::new(std::sync::Mutex::new(Vec::new()));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let sizes: Vec<usize> = match round % 3 {
        0 => vec![1, 255, 256, 257, 600, 3],
        1 => vec![512, 2, 300, 1, 767],
        _ => vec![7, 1000, 256, 13],
    };
    let started = std::time::Instant::now();
    rt.block_on(server_phase(&data, &timeline, &hashes, 0, 300));
    log_phase(&data, &timeline, &hashes, &sizes);
    rt.block_on(server_phase(&data, &timeline, &hashes, 10_000, 50));
    drop(session);
    eprintln!("power loss: workload took {:?}", started.elapsed());

    let timeline = timeline.lock().expect("timeline").clone();
    let batches = timeline
        .iter()
        .filter_map(|m| match m {
            Mark::Batch { first, last } => Some((*first, *last)),
            _ => None,
        })
        .collect();
    let hashes = hashes.lock().expect("hashes").clone();
    let history = History {
        timeline,
        batches,
        hashes,
    };
    let cuts = recorder.cuts();
    assert!(cuts.len() > 10, "only {} flushes seen", cuts.len());
    // Each cut is written out to memory when it can (fsyncs there cost nothing).
    let shm = Path::new("/dev/shm");
    let work = if shm.is_dir() {
        tempfile::tempdir_in(shm)
    } else {
        tempfile::tempdir()
    }
    .expect("work dir");
    let mut failures = Vec::new();
    for (i, cut) in cuts.iter().enumerate() {
        let dir = work.path().join(format!("cut-{i}"));
        std::fs::create_dir(&dir).expect("cut dir");
        if let Err(why) = rt.block_on(check_cut(cut, &history, &dir)) {
            failures.push(format!("cut {i} (torn: {}): {why}", cut.torn));
            if let Ok(keep) = std::env::var("DCLOUD_POWER_LOSS_KEEP") {
                let to = Path::new(&keep).join(format!("cut-{i}"));
                let _ = std::fs::create_dir_all(&to);
                cut.image.materialize(&to).expect("keep the failed cut");
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
    eprintln!(
        "power loss: checking {} cuts took {:?}",
        cuts.len(),
        started.elapsed()
    );
    assert!(
        failures.is_empty(),
        "{} of {} cut points failed:\n{}",
        failures.len(),
        cuts.len(),
        failures.join("\n")
    );
    cuts.len()
}

#[test]
fn every_cut_point_keeps_every_acknowledged_event_and_starts() {
    let rounds: usize = std::env::var("DCLOUD_POWER_LOSS_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let mut total = 0;
    for round in 0..rounds {
        let n = run_round(round);
        eprintln!("power loss: round {round}: {n} cut points, all recovered");
        total += n;
    }
    eprintln!("power loss: {rounds} round(s), {total} cut points tried, all recovered");
}
