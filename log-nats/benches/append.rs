//! Durable append throughput of the log at batch 1, 16 and 256 events: fjall (one
//! fsync per batch), JetStream R1 (one server) and JetStream R3 (three servers on
//! loopback), both with `sync_interval: always`, in one run on one machine.
//! `cargo bench -p dcloud-log-nats --bench append` (release build; needs nats-server
//! 2.12.1+, see scripts/install-nats-server.sh). Prints one line per backend and batch.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use dcloud_events::{EventLog, FjallLog};
use dcloud_log_nats::JetStreamConfig;
use dcloud_log_tests::new_events;

/// Each measurement appends for about this long (after a short warm-up).
const RUN: Duration = Duration::from_secs(3);

fn measure(name: &str, log: &dyn EventLog, batch: u64) {
    let append = |n: u64| {
        let last = log.last_seq();
        log.append(last, new_events(last + 1, n)).expect("append");
    };
    for _ in 0..3 {
        append(batch);
    }
    let (start, mut events, mut appends) = (Instant::now(), 0u64, 0u64);
    while start.elapsed() < RUN {
        append(batch);
        events += batch;
        appends += 1;
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{name:<14} batch {batch:>3}: {:>9.0} events/s  {:>7.0} appends/s  {:>7.2} ms/append",
        events as f64 / secs,
        appends as f64 / secs,
        secs * 1000.0 / appends as f64
    );
}

fn main() {
    // `cargo bench` passes --bench; a filter argument picks backends by name.
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let wanted = |name: &str| filter.is_empty() || filter.iter().any(|f| name.contains(f.as_str()));
    let batches = [1u64, 16, 256];
    if wanted("fjall") {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = FjallLog::open(dir.path()).expect("open fjall");
        for b in batches {
            measure("fjall", &log, b);
        }
    }
    if wanted("jetstream-r1") {
        let cfg = JetStreamConfig::new(common::server().url.clone(), "benchr1");
        let log = common::open_when_ready(&cfg);
        for b in batches {
            measure("jetstream-r1", &log, b);
        }
    }
    if wanted("jetstream-r3") {
        let (_servers, urls) = common::cluster();
        let mut cfg = JetStreamConfig::new(urls, "benchr3").replicas(3);
        cfg.request_timeout = Duration::from_secs(2);
        let log = common::open_when_ready(&cfg);
        for b in batches {
            measure("jetstream-r3", &log, b);
        }
    }
}
