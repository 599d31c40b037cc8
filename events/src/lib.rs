//! DCloud's event-sourcing core: the event enum for the whole domain, the envelope
//! with its hash chain, and the append-only log on fjall (append with an expected last
//! sequence number, range reads, a catch-up-then-live tail, snapshots, verification).
//!
//! This crate does NOT know what the events mean (folding them into state is
//! `dcloud-projections`), and knows nothing of axum, GraphQL or Docker.

pub mod envelope;
pub mod error;
pub mod event;
pub mod frame;
pub mod log;
pub mod model;
pub mod record;
pub mod recover;
pub mod snapshot;
pub mod tail;
pub mod verify;

pub use envelope::{Envelope, EnvelopeBody, Hash, NewEvent, GENESIS_HASH, SCHEMA_VERSION};
pub use error::LogError;
pub use event::Event;
pub use log::{fold_range, EventLog, FjallLog, ReplayIter};
pub use tail::{LiveBatch, Tail, TailSource};
pub use verify::{verify_dir, BadRecord, ChainCheck, VerifyError, VerifyReport};
