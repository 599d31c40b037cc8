//! DCloud's event log on NATS JetStream: [`JetStreamLog`] implements
//! [`dcloud_events::EventLog`] with the same stored records, the same hash chain and
//! the same snapshot format as the fjall log, on a stream that nats-server replicates
//! (R3 in a cluster, R1 on a single server). `verify`, replay and point-in-time reads
//! work on it unchanged.
//!
//! One message per frame of up to 256 consecutive records (fjall's frame layout; why
//! frames and not one message per record, measured: `append.rs`); a read finds the
//! frame holding a seq by bisecting the stream. One `append` is one atomic batch
//! (nats-server 2.12.1+, stream setting `allow_atomic`) guarded by the stream-wide
//! `Nats-Expected-Last-Sequence`, so a second writer is fenced out: its append fails
//! with `LogError::Conflict` and it refuses every later write (`LogError::Fenced`). An
//! append of more than [`MAX_ATOMIC`] frames (256,000 events; fewer if
//! `max_batch_messages` is lowered) is published as several atomic batches in order:
//! if one fails, the batches before it stay in the log (a whole-batch prefix, the chain
//! intact) while the call returns the error and the log stops taking writes, so such
//! an append is atomic per batch, not as a whole.
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
