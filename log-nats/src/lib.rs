//! DCloud's event log on NATS JetStream: [`JetStreamLog`] implements
//! [`dcloud_events::EventLog`] with the same stored records, the same hash chain and
//! the same snapshot format as the fjall log, on a stream that nats-server replicates
//! (R3 in a cluster, R1 on a single server). `verify`, replay and point-in-time reads
//! work on it unchanged.
//!
//! One message per record (stream seq = log seq, exactly); one `append` is one atomic
//! batch (nats-server 2.12.1+, stream setting `allow_atomic`) guarded by the
//! stream-wide `Nats-Expected-Last-Sequence`, so a second writer is fenced out: its
//! append fails with `LogError::Conflict` and it refuses every later write
//! (`LogError::Fenced`). An append of more than [`MAX_ATOMIC`] (1,000) events is
//! published as several atomic batches in order: if one fails, the batches before it
//! stay in the log (a whole-batch prefix, the chain intact) while the call returns the
//! error and the log stops taking writes, so such an append is atomic per 1,000 events,
//! not as a whole. Why one message per record and not per frame: see `append.rs` and
//! docs/operations.md (the figures).
//!
//! This crate does NOT start or configure nats-server (what an acknowledged append
//! survives depends on the server's `sync_interval`: docs/operations.md), does not
//! elect a leader, and knows nothing of what events mean.

mod append;
mod config;
mod log;
mod open;
mod read;
mod snapshot;

pub use append::MAX_ATOMIC;
pub use config::JetStreamConfig;
pub use log::JetStreamLog;
pub use open::MIN_SERVER_VERSION;

/// A remote failure of the JetStream backend.
pub(crate) fn remote(reason: impl Into<String>) -> dcloud_events::LogError {
    dcloud_events::LogError::Remote {
        backend: "JetStream",
        reason: reason.into(),
    }
}
