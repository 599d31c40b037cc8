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
use dcloud_events::{fold_range, Envelope, EventLog, FjallLog, Hash, NewEvent, GENESIS_HASH};
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
        let mut dc = DcloudAppender::open(&tmp.path().join(format!("append-dcloud-{batch}")));
        let mut sq = SqliteAppender::open(&tmp.path().join(format!("append-sqlite-{batch}")));
        let [dc, sq] = interleaved([&mut dc, &mut sq], batch, batches);
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
    let mut dc = DcloudAppender::open(&tmp.path().join("latency-dcloud"));
    let mut raw = RawAppender::open(&tmp.path().join("latency-raw.bin"), record_size(n));
    let mut sq = SqliteAppender::open(&tmp.path().join("latency-sqlite"));
    let record_bytes = raw.bytes.len();
    let [d, raw, sq] = interleaved([&mut dc, &mut raw, &mut sq], 1, n);
    println!("| store | p50 | p99 | vs raw p50 |");
    println!("|---|---:|---:|---:|");
    println!(
        "| raw write+fdatasync ({record_bytes} B) | {} | {} | 1.00x |",
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
    // Three replays of each, alternating; the median of each store is reported (the
    // storage engines' background work after a fill makes single runs noisy).
    let mut druns = Vec::new();
    let mut sruns = Vec::new();
    for _ in 0..3 {
        druns.push(replay_dcloud(&dir));
        sruns.push(replay_sqlite(&sdir));
    }
    let (dstate, dreplay) = median(druns);
    let (sstate, sreplay) = median(sruns);
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
        "| replay: read+validate+fold (events/s, median of 3) | {dr:.0} | {sr:.0} | {:.2}x |",
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
}

fn percentiles(mut lat: Vec<Duration>) -> (Duration, Duration) {
    lat.sort();
    let p = |q: f64| lat[((lat.len() as f64 - 1.0) * q) as usize];
    (p(0.5), p(0.99))
}

/// The run with the median time.
fn median(mut runs: Vec<(State, Duration)>) -> (State, Duration) {
    runs.sort_by_key(|r| r.1);
    runs.swap_remove(runs.len() / 2)
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

/// A store that the append measurements write to.
trait Appender {
    /// Appends one batch durably (returns once it is on disk).
    fn append(&mut self, events: Vec<NewEvent>);
}

/// Appends the same batches to every store in `ROUNDS` interleaved rounds, so that a
/// drift of the disk's latency during the run falls on all of them alike. Each store's
/// rate is its events over the time spent in its own appends.
fn interleaved<const N: usize>(
    mut stores: [&mut dyn Appender; N],
    batch: usize,
    batches: u64,
) -> [AppendResult; N] {
    const ROUNDS: u64 = 5;
    let input = batches_of(1, batch, batches);
    let mut inputs: Vec<_> = (0..N).map(|_| input.clone().into_iter()).collect();
    let mut spent = [Duration::ZERO; N];
    let mut lat: Vec<Vec<Duration>> = (0..N).map(|_| Vec::new()).collect();
    let per_round = batches.div_ceil(ROUNDS) as usize;
    for _ in 0..ROUNDS {
        for (i, store) in stores.iter_mut().enumerate() {
            for events in inputs[i].by_ref().take(per_round) {
                let t = Instant::now();
                store.append(events);
                let took = t.elapsed();
                spent[i] += took;
                lat[i].push(took);
            }
        }
    }
    std::array::from_fn(|i| {
        let (p50, p99) = percentiles(std::mem::take(&mut lat[i]));
        AppendResult {
            rate: (batch as u64 * batches) as f64 / spent[i].as_secs_f64(),
            p50,
            p99,
        }
    })
}

struct DcloudAppender {
    log: FjallLog,
}

impl DcloudAppender {
    fn open(dir: &Path) -> Self {
        DcloudAppender {
            log: FjallLog::open(dir).unwrap(),
        }
    }
}

impl Appender for DcloudAppender {
    fn append(&mut self, events: Vec<NewEvent>) {
        self.log.append(self.log.last_seq(), events).unwrap();
    }
}

/// Appends like the dcloud log does (encode, chain, one durable transaction per batch).
struct SqliteAppender {
    conn: rusqlite::Connection,
    enc: Encoder,
    prev: Hash,
    seq: u64,
}

impl SqliteAppender {
    fn open(dir: &Path) -> Self {
        SqliteAppender {
            conn: sqlite_open(dir),
            enc: Encoder::new(),
            prev: GENESIS_HASH,
            seq: 0,
        }
    }
}

impl Appender for SqliteAppender {
    fn append(&mut self, events: Vec<NewEvent>) {
        let tx = self.conn.transaction().unwrap();
        {
            let mut stmt = tx
                .prepare_cached("INSERT INTO events (seq, record) VALUES (?1, ?2)")
                .unwrap();
            for e in events {
                self.seq += 1;
                let body = e.at(self.seq);
                let (bytes, hash) = self.enc.encode(&body, &self.prev).unwrap();
                stmt.execute(rusqlite::params![self.seq as i64, bytes])
                    .unwrap();
                self.prev = hash;
            }
        }
        tx.commit().unwrap();
    }
}

/// The physical limit: a write of one record's worth of bytes and an fdatasync.
struct RawAppender {
    file: std::fs::File,
    bytes: Vec<u8>,
}

impl RawAppender {
    fn open(path: &Path, bytes: usize) -> Self {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap();
        RawAppender {
            file,
            bytes: vec![0x5a; bytes],
        }
    }
}

impl Appender for RawAppender {
    fn append(&mut self, _events: Vec<NewEvent>) {
        self.file.write_all(&self.bytes).unwrap();
        self.file.sync_data().unwrap();
    }
}

/// The mean stored size of the first `n` workload records (frame entry header
/// included), for the raw write.
fn record_size(n: u64) -> usize {
    let mut gen = workload::Generator::new(1);
    let mut enc = Encoder::new();
    let total: usize = (1..=n)
        .map(|seq| {
            let e = gen.next_event();
            let body = e.at(seq);
            enc.encode(&body, &GENESIS_HASH).unwrap().0.len()
        })
        .sum();
    total / n as usize + dcloud_events::frame::ENTRY_HEADER_LEN
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
                let body = e.at(seq);
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
