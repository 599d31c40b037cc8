//! The control-plane server (being built): wiring of the log, the writer, timers, the
//! axum router with GraphQL, health, metrics and the web UI.

use std::process::ExitCode;

/// `dcloud server` flags.
#[derive(Debug, clap::Args)]
pub struct ServerArgs {}

/// `dcloud dev` flags.
#[derive(Debug, clap::Args)]
pub struct DevArgs {}

pub fn run_server(_args: ServerArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("the server is not built yet")
}

pub fn run_dev(_args: DevArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("dev mode is not built yet")
}
