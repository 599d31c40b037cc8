//! Crash test: a child process appends under load and is killed with SIGKILL at random
//! moments, many times over the same data directory. After each kill: every
//! acknowledged event is present, no partial batch is visible, the chain verifies, and
//! the recovered state (snapshot + tail) equals a replay from the first event.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dcloud_events::{EventLog, FjallLog};
use rand::{Rng, SeedableRng};

const KILLS_PER_MODE: u64 = 15;

struct Ack {
    last_seq: u64,
    correlation: String,
    size: usize,
}

/// Starts the child, kills it `delay` after its fifth acknowledgement, and returns
/// what it acknowledged.
fn run_and_kill(mode: &str, dir: &Path, seed: u64, delay: Duration) -> Vec<Ack> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_crash_child"))
        .args([mode, dir.to_str().expect("utf-8 path"), &seed.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawning crash_child");
    let stdout = child.stdout.take().expect("piped stdout");
    let acks = Arc::new(Mutex::new(Vec::new()));
    let reader = {
        let acks = acks.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let parts: Vec<&str> = line.split(' ').collect();
                if let ["ack", seq, corr, size] = parts.as_slice() {
                    acks.lock().unwrap().push(Ack {
                        last_seq: seq.parse().unwrap(),
                        correlation: corr.to_string(),
                        size: size.parse().unwrap(),
                    });
                }
            }
        })
    };
    // Let it get going (start-up replays a growing log), then pick the random moment.
    let deadline = Instant::now() + Duration::from_secs(60);
    while acks.lock().unwrap().len() < 5 {
        assert!(Instant::now() < deadline, "crash_child made no progress");
        if let Some(status) = child.try_wait().unwrap() {
            panic!("crash_child exited on its own: {status}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(delay);
    // SIGKILL: no destructor, no flush, no chance to finish the batch in flight.
    child.kill().expect("SIGKILL");
    child.wait().expect("reaping the child");
    reader.join().unwrap();
    Arc::try_unwrap(acks).ok().unwrap().into_inner().unwrap()
}

fn check_after_crash(dir: &Path, acks: &[Ack], all_groups_sized: bool) {
    let log = FjallLog::open(dir).expect("log reopens after SIGKILL");
    let report = log.verify().expect("chain verifies after SIGKILL");
    let max_acked = acks.iter().map(|a| a.last_seq).max().unwrap_or(0);
    assert!(
        report.last_seq >= max_acked,
        "acknowledged seq {max_acked} lost: log ends at {}",
        report.last_seq
    );

    let mut groups: HashMap<String, usize> = HashMap::new();
    for env in log.read_range(1, log.last_seq()) {
        let env = env.expect("every event reads back");
        *groups.entry(env.correlation).or_default() += 1;
    }
    for a in acks.iter().filter(|a| a.size > 0) {
        assert_eq!(
            groups.get(&a.correlation),
            Some(&a.size),
            "acknowledged {} not fully present",
            a.correlation
        );
    }
    if all_groups_sized {
        // Raw mode: the correlation says how big the batch was.
        for (corr, n) in &groups {
            let size: usize = corr.rsplit("-n").next().unwrap().parse().unwrap();
            assert_eq!(*n, size, "partial batch {corr} visible");
        }
    }
}

fn crash_loop(mode: &str, all_groups_sized: bool) {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().to_path_buf();
    let log_dir = dcloud::store::log_dir(&data);
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut total_acks = 0;
    for round in 0..KILLS_PER_MODE {
        let delay = Duration::from_millis(rng.random_range(0..120));
        let dir = if mode == "log" {
            log_dir.clone()
        } else {
            data.clone()
        };
        let acks = run_and_kill(mode, &dir, round + 1, delay);
        total_acks += acks.len();
        check_after_crash(&log_dir, &acks, all_groups_sized);
        if mode == "writer" {
            let log = dcloud::store::open_log(&data).unwrap();
            let (with_snapshot, rec) = dcloud::store::recover(&*log, None, true).unwrap();
            let (from_empty, _) = dcloud::store::recover(&*log, None, false).unwrap();
            assert_eq!(
                with_snapshot.digest(),
                from_empty.digest(),
                "snapshot+tail differs from replay (round {round}, {rec:?})"
            );
            with_snapshot.check_invariants().unwrap();
        }
    }
    assert!(total_acks > KILLS_PER_MODE as usize * 5);
}

#[test]
fn sigkill_during_raw_appends_loses_nothing_acknowledged() {
    crash_loop("log", true);
}

#[test]
fn sigkill_during_writer_load_loses_nothing_acknowledged() {
    crash_loop("writer", false);
}
