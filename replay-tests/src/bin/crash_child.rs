//! Child process for the crash test: appends to a log under load and prints every
//! acknowledged batch (`ack LAST_SEQ CORRELATION SIZE`) the moment its append returns.
//! The parent kills it with SIGKILL at random moments.
//!
//! Usage: `crash_child log DIR SEED` (raw log appends, batches of random size) or
//! `crash_child writer DIR SEED` (commands through the single writer, many concurrent
//! submitters, group commit).

use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Context};
use rand::{Rng, SeedableRng};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, mode, dir, seed] = args.as_slice() else {
        bail!("usage: crash_child log|writer DIR SEED");
    };
    let dir = PathBuf::from(dir);
    let seed: u64 = seed.parse().context("seed")?;
    match mode.as_str() {
        "log" => raw_log(&dir, seed),
        "writer" => replay_tests::crash::writer_load(&dir, seed),
        other => bail!("unknown mode {other:?}"),
    }
}

fn raw_log(dir: &std::path::Path, seed: u64) -> anyhow::Result<()> {
    use dcloud_events::EventLog;
    let log = dcloud_events::FjallLog::open(dir)?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let out = std::io::stdout();
    let mut batch_no = 0u64;
    loop {
        let size = rng.random_range(1..=64usize);
        let correlation = format!("s{seed}-b{batch_no}-n{size}");
        let batch = (0..size)
            .map(|i| replay_tests::crash::filler_event(&correlation, i))
            .collect();
        let envs = log.append(log.last_seq(), batch)?;
        let last = envs.last().map_or(0, |e| e.seq);
        let mut lock = out.lock();
        writeln!(lock, "ack {last} {correlation} {size}")?;
        lock.flush()?;
        batch_no += 1;
    }
}
