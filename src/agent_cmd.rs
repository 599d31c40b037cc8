//! `dcloud agent` (being built): runs a node agent against a server.

use std::process::ExitCode;

use crate::client::Global;

#[derive(Debug, clap::Args)]
pub struct AgentArgs {}

pub fn run(_args: AgentArgs, _global: &Global) -> anyhow::Result<ExitCode> {
    anyhow::bail!("the agent command is not built yet")
}
