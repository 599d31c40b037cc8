//! The `dcloud` package's library half: the single writer, opening and recovering a
//! data directory, and the offline audit tools. The binary (`main.rs`) is the CLI over
//! these; `replay-tests` drives them directly.
//!
//! This crate wires the others together; it holds no business rules (those live in
//! `dcloud-projections`) and no storage format (that is `dcloud-events`).

pub mod offline;
pub mod store;
pub mod writer;

pub use writer::{spawn as spawn_writer, WriterConfig, WriterError, WriterHandle};
