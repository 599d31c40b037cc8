//! The API client commands (being built): apply, deploy, status, stop, nodes, events,
//! export, token.

use std::process::ExitCode;

use crate::offline::Output;

/// Flags every client command shares.
#[derive(Debug, Clone)]
pub struct Global {
    pub server: String,
    pub token: Option<String>,
    pub output: Output,
}

#[derive(Debug, clap::Subcommand)]
pub enum ClientCmd {
    /// Print the deployments the caller may see.
    Status {},
}

pub fn run(_cmd: ClientCmd, _global: &Global) -> anyhow::Result<ExitCode> {
    anyhow::bail!("the client commands are not built yet")
}
