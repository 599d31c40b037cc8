//! The `dcloud` binary: the CLI over the server, the agent, the API clients and the
//! offline audit tools.

/// mimalloc rather than the system allocator: the server allocates many small strings
/// and maps on one thread and frees them on another (decoding vs folding at start-up,
/// tokio tasks), where glibc's arenas cost it a third of its replay speed.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use dcloud::client::{ClientCmd, Global};
use dcloud::offline::{self, Output};

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
    /// The server's base URL.
    #[arg(
        long,
        global = true,
        env = "DCLOUD_SERVER",
        default_value = "http://127.0.0.1:7070"
    )]
    server: String,
    /// Bearer token (admin, user, agent or auditor).
    #[arg(long, global = true, env = "DCLOUD_TOKEN", hide_env_values = true)]
    token: Option<String>,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the control plane: event log, writer, GraphQL API and web UI.
    Server(dcloud::server::ServerArgs),
    /// Run the server and a local agent with data in ./.dcloud (one command to try DCloud).
    Dev(dcloud::server::DevArgs),
    /// Run a node agent against a server.
    Agent(dcloud::agent_cmd::AgentArgs),
    #[command(flatten)]
    Client(ClientCmd),
    /// Offline audit tools over a data directory.
    Audit {
        #[command(subcommand)]
        command: AuditCmd,
    },
    /// Rebuild the state from the log (up to --to) and print it.
    Replay {
        /// Data directory of a stopped server.
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
        /// A signed checkpoint file (the server's `checkpoint.json`, kept elsewhere):
        /// fail, naming the missing range, when the log ends before it or differs at it.
        #[arg(long)]
        expect_head: Option<PathBuf>,
        /// The server's public key (hex) the checkpoint must be signed with.
        #[arg(long, requires = "expect_head")]
        public_key: Option<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let global = Global {
        server: cli.server,
        token: cli.token,
        output: cli.output,
    };
    let result = match cli.command {
        Cmd::Server(args) => dcloud::server::run_server(args),
        Cmd::Dev(args) => dcloud::server::run_dev(args),
        Cmd::Agent(args) => dcloud::agent_cmd::run(args, &global),
        Cmd::Client(cmd) => dcloud::client::run(cmd, &global),
        Cmd::Audit {
            command:
                AuditCmd::Verify {
                    data,
                    expect_head,
                    public_key,
                },
        } => {
            init_tracing();
            let head = expect_head.as_deref().map(|f| offline::ExpectedHead {
                file: f,
                public_key: public_key.as_deref(),
            });
            offline::audit_verify(&data, global.output, head)
        }
        Cmd::Replay {
            data,
            to,
            no_snapshot,
        } => {
            init_tracing();
            offline::replay(&data, to, !no_snapshot, global.output)
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Logs go to stderr; `DCLOUD_LOG` filters them (default `warn` for the offline tools).
fn init_tracing() {
    dcloud::init_tracing("warn");
}
