//! The test suite of the [`EventLog`] trait, written once and run against every backend
//! (fjall in `events/tests/suite.rs`, JetStream in `log-nats/tests/suite.rs`): appends,
//! the hash chain, conflicts, range reads, tails, snapshots and chain verification.
//!
//! A backend's test file implements [`Backend`] (how to open the same log again, how to
//! verify its chain, which snapshots it stores) and calls [`log_suite!`] once, which
//! makes one `#[test]` per function of this crate. Tests that need a backend's
//! internals (tampering with fjall's keyspaces, killing a process mid-append) stay in
//! that backend's own tests. This crate does NOT start servers or make directories:
//! the backend's test file does.

mod append;
mod snapshot;
mod tail;
mod verify;

use dcloud_events::model::{ContainerUsage, Usage};
use dcloud_events::{Envelope, Event, EventLog, NewEvent, VerifyError, VerifyReport};

pub use append::{
    a_reader_never_sees_part_of_a_batch, append_assigns_seqs_and_chains_hashes,
    conflict_writes_nothing_and_reports_both_sides, empty_batch_writes_nothing, read_range_bounds,
    reopen_recovers_last_seq_and_hash_and_continues_the_chain,
};
pub use snapshot::{
    a_snapshot_ahead_of_the_log_is_not_used, a_snapshot_survives_reopen,
    a_snapshot_the_decoder_refuses_is_skipped, newest_valid_snapshot_is_the_newest,
    no_valid_snapshot_means_none, prune_keeps_the_newest_k,
};
pub use tail::{
    a_lagging_subscriber_falls_back_to_disk, catches_up_then_follows_live_appends,
    dropping_the_log_ends_tails_after_what_is_durable, many_subscribers_see_the_same_history,
    resumes_from_any_seq, stream_follows_live_appends,
};
pub use verify::{
    a_batch_spanning_frames_reads_from_anywhere, a_clean_log_verifies, an_empty_log_verifies,
    fold_range_folds_in_order,
};

/// One backend of the log under test: a place where one log is stored.
pub trait Backend {
    type Log: EventLog + 'static;
    /// Opens the log stored here (made on first use). Called again after the previous
    /// handle was dropped, it must find the same log.
    fn open(&self) -> Self::Log;
    /// Verifies the whole hash chain of `log`.
    fn verify(&self, log: &Self::Log) -> Result<VerifyReport, VerifyError>;
    /// Seqs of the stored snapshots, oldest first, valid or not.
    fn snapshot_seqs(&self, log: &Self::Log) -> Vec<u64>;
}

/// One `#[test]` per test of the suite, each on a fresh backend made by `$make` (an
/// expression evaluated once per test, e.g. `Fjall::new()`).
#[macro_export]
macro_rules! log_suite {
    ($make:expr) => {
        $crate::log_suite!(@each $make;
            append_assigns_seqs_and_chains_hashes,
            read_range_bounds,
            conflict_writes_nothing_and_reports_both_sides,
            empty_batch_writes_nothing,
            reopen_recovers_last_seq_and_hash_and_continues_the_chain,
            a_reader_never_sees_part_of_a_batch,
            catches_up_then_follows_live_appends,
            resumes_from_any_seq,
            many_subscribers_see_the_same_history,
            a_lagging_subscriber_falls_back_to_disk,
            dropping_the_log_ends_tails_after_what_is_durable,
            stream_follows_live_appends,
            newest_valid_snapshot_is_the_newest,
            a_snapshot_survives_reopen,
            a_snapshot_the_decoder_refuses_is_skipped,
            a_snapshot_ahead_of_the_log_is_not_used,
            no_valid_snapshot_means_none,
            prune_keeps_the_newest_k,
            a_clean_log_verifies,
            an_empty_log_verifies,
            a_batch_spanning_frames_reads_from_anywhere,
            fold_range_folds_in_order,
        );
    };
    (@each $make:expr; $($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                $crate::$name(&$make);
            }
        )*
    };
}

/// A realistic, varied event: mostly heartbeats, some deployment events.
pub fn new_event(i: u64) -> NewEvent {
    let event = match i % 4 {
        0 => Event::NodeHeartbeat {
            node_id: format!("node-agent_0x{:012x}", i % 97),
            usage: Usage {
                cpu_millis: i * 7 % 16_000,
                memory_bytes: i << 20,
            },
            containers: vec![ContainerUsage {
                deployment_id: format!("dep-{}", i % 13),
                usage: Usage {
                    cpu_millis: 250,
                    memory_bytes: 1 << 30,
                },
            }],
            engine_ok: true,
        },
        1 => Event::ContainerStarted {
            deployment_id: format!("dep-{i}"),
        },
        2 => Event::ContainerExited {
            deployment_id: format!("dep-{i}"),
            code: i as i64 % 3,
        },
        _ => Event::NodeLost {
            node_id: format!("node-{i}"),
        },
    };
    NewEvent {
        time_ms: 1_700_000_000_000 + i as i64,
        actor: format!("agent:node-{}", i % 97),
        correlation: format!("req-{i}"),
        event,
    }
}

/// `count` events numbered from `first` (the number only varies their content).
pub fn new_events(first: u64, count: u64) -> Vec<NewEvent> {
    (first..first + count).map(new_event).collect()
}

/// Appends `batches` batches of `size` events, returning everything appended.
pub fn fill(log: &dyn EventLog, batches: u64, size: u64) -> Vec<Envelope> {
    let mut all = Vec::new();
    for _ in 0..batches {
        let last = log.last_seq();
        all.extend(
            log.append(last, new_events(last + 1, size))
                .expect("append"),
        );
    }
    all
}

/// Whether the envelope carries exactly what `new` asked for.
pub fn same_content(env: &Envelope, new: &NewEvent) -> bool {
    env.time_ms == new.time_ms
        && env.actor == new.actor
        && env.correlation == new.correlation
        && env.event == new.event
}

/// Everything in the log, in order.
pub fn read_all(log: &dyn EventLog) -> Vec<Envelope> {
    log.read_range(1, u64::MAX)
        .collect::<Result<_, _>>()
        .expect("read_range")
}
