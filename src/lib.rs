//! The `dcloud` package's library half: the single writer, opening and recovering a
//! data directory, and the offline audit tools. The binary (`main.rs`) is the CLI over
//! these; `replay-tests` drives them directly.
//!
//! This crate wires the others together; it holds no business rules (those live in
//! `dcloud-projections`) and no storage format (that is `dcloud-events`).

pub mod checkpoint;
pub mod durable_file;
pub mod fd_limit;
pub mod offline;
pub mod request_keys;
pub mod storage;
pub mod store;
pub mod writer;

pub use writer::{
    spawn as spawn_writer, spawn_with as spawn_writer_with, QueueLimits, WriterConfig, WriterError,
    WriterHandle,
};

pub mod agent_cmd;
pub mod client;
pub mod server;

/// Logs to stderr, filtered by `DCLOUD_LOG` (e.g. `info`, `dcloud=debug`), else `default`.
/// Coloured only when stderr is a terminal (and `NO_COLOR` is unset): logs sent to a
/// file or a pipe carry no escape codes.
pub fn init_tracing(default: &str) {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("DCLOUD_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour)
        .with_writer(std::io::stderr)
        .try_init();
}
