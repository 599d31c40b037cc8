//! The `dcloud` binary: the CLI, the offline audit tools, and (with the API issue) the
//! server and agent wiring.

use dcloud::offline;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use dcloud::offline::Output;

#[derive(Parser)]
#[command(
    name = "dcloud",
    version,
    about = "DCloud: deploy containerised AI/ML environments onto a fleet of nodes"
)]
struct Cli {
    /// Output format of client commands.
    #[arg(long, global = true, value_enum, default_value_t = Output::Table)]
    output: Output,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Offline audit tools over a data directory.
    Audit {
        #[command(subcommand)]
        command: AuditCmd,
    },
    /// Rebuild the state from the log (up to --to) and print it.
    Replay {
        /// Data directory of a (stopped or running) server.
        #[arg(long, env = "DCLOUD_DATA")]
        data: PathBuf,
        /// Stop at this sequence number (default: the end of the log).
        #[arg(long)]
        to: Option<u64>,
        /// Replay from the first event, ignoring snapshots.
        #[arg(long)]
        no_snapshot: bool,
    },
}

#[derive(Subcommand)]
enum AuditCmd {
    /// Check the hash chain of the whole log; names the first bad sequence number.
    Verify {
        #[arg(long, env = "DCLOUD_DATA")]
        data: PathBuf,
    },
}

fn main() -> ExitCode {
    init_tracing();
    let cli = Cli::parse();
    let result = match cli.command {
        Cmd::Audit {
            command: AuditCmd::Verify { data },
        } => offline::audit_verify(&data, cli.output),
        Cmd::Replay {
            data,
            to,
            no_snapshot,
        } => offline::replay(&data, to, !no_snapshot, cli.output),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("DCLOUD_LOG").unwrap_or_else(|_| EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
