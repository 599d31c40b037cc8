//! The log benchmark (`cargo bench -p replay-tests --bench log`): durable append
//! throughput at batch 1/16/256 next to SQLite (WAL, synchronous=FULL) doing the same
//! work, single-append latency next to a raw write+fdatasync of the same bytes,
//! replay throughput (read, validate, fold into state) for both, and start-up time with
//! and without a snapshot for a 1,000,000-event log. Prints one markdown report.
//!
//! Both stores get byte-identical records from the same encoder (rkyv body, blake3
//! chain), so the comparison is of storage, not of serialisation.
//! `BENCH_QUICK=1` shrinks every workload for a smoke run.

/// The allocator the `dcloud` binary runs with (src/main.rs), so that the figures are
/// the server's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dcloud_events::record::{Decoder, Encoder};
use dcloud_events::{
    fold_range, Envelope, EnvelopeBody, EventLog, FjallLog, Hash, NewEvent, GENESIS_HASH,
};
use dcloud_projections::State;
use replay_tests::workload;

fn quick() -> bool {
    std::env::var_os("BENCH_QUICK").is_some()
}

fn scale(n: u64) -> u64 {
    if quick() {
        (n / 50).max(10)
    } else {
        n
    }
}

fn main() {
    // cargo bench passes `--bench`; ignore arguments.
    let base =
        std::env::var("BENCH_DIR").unwrap_or_else(|_| env!("CARGO_TARGET_TMPDIR").to_string());
    std::fs::create_dir_all(&base).unwrap();
    let tmp = tempfile::tempdir_in(&base).unwrap();
    println!(
        "# log benchmark ({})\n",
        if quick() { "quick" } else { "full" }
    );
    println!(
        "data directory: {} (same disk for every store)\n",
        tmp.path().display()
    );

    // 1. Durable append throughput.
    println!("## durable append throughput (events/s)\n");
    println!("| batch | dcloud (fjall) | sqlite WAL FULL | dcloud / sqlite |");
    println!("|---:|---:|---:|---:|");
    for (batch, batches) in [
        (1usize, scale(2_000)),
        (16, scale(1_000)),
        (256, scale(400)),
    ] {
        let d = tmp.path().join(format!("append-dcloud-{batch}"));
        let s = tmp.path().join(format!("append-sqlite-{batch}"));
        let dc = append_dcloud(&d, batch, batches);
        let sq = append_sqlite(&s, batch, batches);
        println!(
            "| {batch} | {:.0} | {:.0} | {:.2}x |",
            dc.rate,
            sq.rate,
            dc.rate / sq.rate
        );
    }

    // 2. Single durable append latency vs the physical limit.
    println!("\n## single durable append latency (batch of 1)\n");
    let n = scale(2_000);
    let d = append_dcloud(&tmp.path().join("latency-dcloud"), 1, n);
    let raw = raw_fdatasync(&tmp.path().join("latency-raw.bin"), d.record_bytes, n);
    let sq = append_sqlite(&tmp.path().join("latency-sqlite"), 1, n);
    println!("| store | p50 | p99 | vs raw p50 |");
    println!("|---|---:|---:|---:|");
    println!(
        "| raw write+fdatasync ({} B) | {} | {} | 1.00x |",
        d.record_bytes,
        us(raw.p50),
        us(raw.p99)
    );
    println!(
        "| dcloud append | {} | {} | {:.2}x |",
        us(d.p50),
        us(d.p99),
        ratio(d.p50, raw.p50)
    );
    println!(
        "| sqlite insert+commit | {} | {} | {:.2}x |",
        us(sq.p50),
        us(sq.p99),
        ratio(sq.p50, raw.p50)
    );

    // 3 and 4. A 1,000,000-event log: replay throughput and start-up time.
    let events = scale(1_000_000);
    println!("\n## replay and start-up ({events} events)\n");
    let dir = tmp.path().join("big-dcloud");
    let sdir = tmp.path().join("big-sqlite");
    let t = Instant::now();
    fill_dcloud(&dir, events);
    let fill = t.elapsed();
    fill_sqlite(&sdir, events);
    let (dstate, dreplay) = replay_dcloud(&dir);
    let (sstate, sreplay) = replay_sqlite(&sdir);
    assert_eq!(
        dstate.digest(),
        sstate.digest(),
        "both stores must replay to the same state"
    );
    println!("| measure | dcloud | sqlite | dcloud / sqlite |");
    println!("|---|---:|---:|---:|");
    let dr = events as f64 / dreplay.as_secs_f64();
    let sr = events as f64 / sreplay.as_secs_f64();
    println!(
        "| replay: read+validate+fold (events/s) | {dr:.0} | {sr:.0} | {:.2}x |",
        dr / sr
    );
    println!(
        "\n(filling the dcloud log with batch-256 appends took {:.2} s)\n",
        fill.as_secs_f64()
    );

    let (no_snap, with_snap, snap_bytes) = startup(&dir);
    println!("| start-up | time |");
    println!("|---|---:|");
    println!(
        "| replay from the first event (no snapshot) | {:.3} s |",
        no_snap.as_secs_f64()
    );
    println!(
        "| newest snapshot ({:.1} MiB) + empty tail | {:.3} s |",
        snap_bytes as f64 / 1048576.0,
        with_snap.as_secs_f64()
    );
}

struct AppendResult {
    rate: f64,
    p50: Duration,
    p99: Duration,
    record_bytes: usize,
}

fn percentiles(mut lat: Vec<Duration>) -> (Duration, Duration) {
    lat.sort();
    let p = |q: f64| lat[((lat.len() as f64 - 1.0) * q) as usize];
    (p(0.5), p(0.99))
}

fn us(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64()
}

/// The workload's events, made before any clock starts (both stores get the same).
fn batches_of(seed: u64, batch: usize, batches: u64) -> Vec<Vec<NewEvent>> {
    let mut gen = workload::Generator::new(seed);
    (0..batches)
        .map(|_| (0..batch).map(|_| gen.next_event()).collect())
        .collect()
}

fn append_dcloud(dir: &Path, batch: usize, batches: u64) -> AppendResult {
    let log = FjallLog::open(dir).unwrap();
    let input = batches_of(1, batch, batches);
    let mut lat = Vec::with_capacity(batches as usize);
    let started = Instant::now();
    for events in input {
        let t = Instant::now();
        log.append(log.last_seq(), events).unwrap();
        lat.push(t.elapsed());
    }
    let rate = (batch as u64 * batches) as f64 / started.elapsed().as_secs_f64();
    let (p50, p99) = percentiles(lat);
    let record_bytes = record_size(&log);
    AppendResult {
        rate,
        p50,
        p99,
        record_bytes,
    }
}

fn record_size(log: &FjallLog) -> usize {
    // The encoded size of the last record, for the raw-fdatasync comparison.
    let env = log
        .read_range(log.last_seq(), log.last_seq())
        .next()
        .unwrap()
        .unwrap();
    let mut enc = Encoder::new();
    let body = body_of(&env);
    enc.encode(&body, &env.prev_hash).unwrap().0.len()
}

fn body_of(env: &Envelope) -> EnvelopeBody {
    EnvelopeBody {
        seq: env.seq,
        time_ms: env.time_ms,
        actor: env.actor.clone(),
        correlation: env.correlation.clone(),
        event: env.event.clone(),
    }
}

fn sqlite_open(dir: &Path) -> rusqlite::Connection {
    std::fs::create_dir_all(dir).unwrap();
    let conn = rusqlite::Connection::open(dir.join("log.db")).unwrap();
    conn.execute_batch(
        "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;
         CREATE TABLE IF NOT EXISTS events (seq INTEGER PRIMARY KEY, record BLOB NOT NULL);",
    )
    .unwrap();
    conn
}

/// Appends like the dcloud log does (encode, chain, one durable transaction per batch).
fn append_sqlite(dir: &Path, batch: usize, batches: u64) -> AppendResult {
    let mut conn = sqlite_open(dir);
    let input = batches_of(1, batch, batches);
    let mut enc = Encoder::new();
    let mut prev: Hash = GENESIS_HASH;
    let mut seq = 0u64;
    let mut lat = Vec::with_capacity(batches as usize);
    let mut record_bytes = 0;
    let started = Instant::now();
    for events in input {
        let t = Instant::now();
        let tx = conn.transaction().unwrap();
        {
            let mut stmt = tx
                .prepare_cached("INSERT INTO events (seq, record) VALUES (?1, ?2)")
                .unwrap();
            for e in events {
                seq += 1;
                let body = EnvelopeBody {
                    seq,
                    time_ms: e.time_ms,
                    actor: e.actor,
                    correlation: e.correlation,
                    event: e.event,
                };
                let (bytes, hash) = enc.encode(&body, &prev).unwrap();
                record_bytes = bytes.len();
                stmt.execute(rusqlite::params![seq as i64, bytes]).unwrap();
                prev = hash;
            }
        }
        tx.commit().unwrap();
        lat.push(t.elapsed());
    }
    let rate = (batch as u64 * batches) as f64 / started.elapsed().as_secs_f64();
    let (p50, p99) = percentiles(lat);
    AppendResult {
        rate,
        p50,
        p99,
        record_bytes,
    }
}

fn raw_fdatasync(path: &Path, bytes: usize, n: u64) -> AppendResult {
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    let buf = vec![0x5au8; bytes];
    let mut lat = Vec::with_capacity(n as usize);
    let started = Instant::now();
    for _ in 0..n {
        let t = Instant::now();
        f.write_all(&buf).unwrap();
        f.sync_data().unwrap();
        lat.push(t.elapsed());
    }
    let rate = n as f64 / started.elapsed().as_secs_f64();
    let (p50, p99) = percentiles(lat);
    AppendResult {
        rate,
        p50,
        p99,
        record_bytes: bytes,
    }
}

fn fill_dcloud(dir: &Path, events: u64) {
    let log = FjallLog::open(dir).unwrap();
    let mut gen = workload::Generator::new(2);
    let mut left = events;
    while left > 0 {
        let n = left.min(256);
        let batch: Vec<NewEvent> = (0..n).map(|_| gen.next_event()).collect();
        log.append(log.last_seq(), batch).unwrap();
        left -= n;
    }
}

fn fill_sqlite(dir: &Path, events: u64) {
    let mut conn = sqlite_open(dir);
    let mut gen = workload::Generator::new(2);
    let mut enc = Encoder::new();
    let mut prev = GENESIS_HASH;
    let mut seq = 0u64;
    while seq < events {
        let tx = conn.transaction().unwrap();
        {
            let mut stmt = tx
                .prepare_cached("INSERT INTO events (seq, record) VALUES (?1, ?2)")
                .unwrap();
            for _ in 0..(events - seq).min(256) {
                let e = gen.next_event();
                seq += 1;
                let body = EnvelopeBody {
                    seq,
                    time_ms: e.time_ms,
                    actor: e.actor,
                    correlation: e.correlation,
                    event: e.event,
                };
                let (bytes, hash) = enc.encode(&body, &prev).unwrap();
                stmt.execute(rusqlite::params![seq as i64, bytes]).unwrap();
                prev = hash;
            }
        }
        tx.commit().unwrap();
    }
}

/// The server's start-up path: reading and decoding on a second thread, folding on
/// this one (`fold_range`, what `dcloud::store::recover` uses).
fn replay_dcloud(dir: &Path) -> (State, Duration) {
    let log = FjallLog::open(dir).unwrap();
    let t = Instant::now();
    let mut state = State::default();
    let n = fold_range(&log, 1, u64::MAX, |env| state.apply(&env)).unwrap();
    assert_eq!(n, log.last_seq());
    (state, t.elapsed())
}

/// The same split for SQLite: one thread reads rows and decodes, this one folds.
fn replay_sqlite(dir: &Path) -> (State, Duration) {
    let t = Instant::now();
    let mut state = State::default();
    let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<Envelope>>(4);
    std::thread::scope(|scope| {
        scope.spawn(move || {
            let conn = sqlite_open(dir);
            let mut dec = Decoder::new();
            let mut stmt = conn
                .prepare("SELECT seq, record FROM events ORDER BY seq")
                .unwrap();
            let mut rows = stmt.query([]).unwrap();
            let mut chunk = Vec::with_capacity(1024);
            while let Some(row) = rows.next().unwrap() {
                let seq: i64 = row.get(0).unwrap();
                let bytes = row.get_ref(1).unwrap().as_blob().unwrap();
                chunk.push(dec.decode(seq as u64, bytes).unwrap());
                if chunk.len() == 1024 {
                    tx.send(std::mem::replace(&mut chunk, Vec::with_capacity(1024)))
                        .unwrap();
                }
            }
            tx.send(chunk).unwrap();
        });
        for chunk in rx {
            for env in chunk {
                state.apply(&env);
            }
        }
    });
    (state, t.elapsed())
}

/// Start-up of the server's recovery path without and with a snapshot at the end.
fn startup(dir: &Path) -> (Duration, Duration, usize) {
    let open = |use_snapshot| {
        let t = Instant::now();
        let log: Arc<dyn EventLog> = Arc::new(FjallLog::open(dir).unwrap());
        let (state, _) = dcloud::store::recover(&*log, None, use_snapshot).unwrap();
        (state, t.elapsed())
    };
    let (state, no_snap) = open(false);
    let bytes = state.to_snapshot_bytes();
    {
        let log = FjallLog::open(dir).unwrap();
        log.save_snapshot(state.last_seq(), &bytes).unwrap();
    }
    let (again, with_snap) = open(true);
    assert_eq!(again.digest(), state.digest());
    (no_snap, with_snap, bytes.len())
}
