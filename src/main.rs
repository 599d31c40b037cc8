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
    /// The server's base URL, or several comma separated (a leader and its standbys
    /// on a shared log: requests go to the first that answers, writes to the leader)
    /// [default: the URL a running server wrote into DATA/server.json, DATA being
    /// $DCLOUD_DATA or ./.dcloud; else http://127.0.0.1:7070].
    #[arg(long, global = true, env = "DCLOUD_SERVER")]
    server: Option<String>,
    /// Bearer token (admin, user, agent or auditor).
    #[arg(long, global = true, env = "DCLOUD_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// A PEM CA file to trust for https:// and wss:// besides the public roots.
    #[arg(long, global = true, env = "DCLOUD_CA_FILE")]
    ca_file: Option<PathBuf>,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the control plane: event log, writer, GraphQL API and web UI.
    Server(Box<dcloud::server::ServerArgs>),
    /// Run the server and a local agent with data in ./.dcloud (one command to try DCloud).
    Dev(dcloud::server::DevArgs),
    /// Run a node agent against a server.
    Agent(Box<dcloud::agent_cmd::AgentArgs>),
    #[command(flatten)]
    Client(ClientCmd),
    /// Offline audit tools over a data directory.
    Audit {
        #[command(subcommand)]
        command: AuditCmd,
    },
    /// Rebuild the state from the log (up to --to) and print it.
    Replay {
        /// Data directory of a stopped server (or `--log nats://…`).
        #[arg(long, env = "DCLOUD_DATA", required_unless_present = "log")]
        data: Option<PathBuf>,
        #[command(flatten)]
        jetstream: offline::JetStreamArgs,
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
    /// Reads DATA directly (a stopped server's), or asks the server (`--server URL`
    /// without `--data`, or when a running server holds DATA's log) with an admin or
    /// auditor token.
    Verify {
        #[arg(long, env = "DCLOUD_DATA")]
        data: Option<PathBuf>,
        /// A signed checkpoint file (the server's `checkpoint.json`, kept elsewhere):
        /// fail, naming the missing range, when the log ends before it or differs at it.
        #[arg(long)]
        expect_head: Option<PathBuf>,
        /// The server's public key (hex) the checkpoint must be signed with.
        #[arg(long, requires = "expect_head")]
        public_key: Option<String>,
        #[command(flatten)]
        jetstream: offline::JetStreamArgs,
    },
}

fn main() -> ExitCode {
    quiet_on_broken_pipe();
    let cli = Cli::parse();
    let server_flag = cli.server.clone();
    let data_env = std::env::var_os("DCLOUD_DATA").map(PathBuf::from);
    dcloud::client::set_ca_file(cli.ca_file);
    let global = Global {
        server: dcloud::client::discover_server(cli.server, data_env.as_deref()),
        token: cli.token,
        output: cli.output,
    };
    let result = match cli.command {
        Cmd::Server(args) => dcloud::server::run_server(*args),
        Cmd::Dev(args) => dcloud::server::run_dev(args),
        Cmd::Agent(args) => dcloud::agent_cmd::run(*args, &global),
        Cmd::Client(cmd) => dcloud::client::run(cmd, &global),
        Cmd::Audit {
            command:
                AuditCmd::Verify {
                    data,
                    expect_head,
                    public_key,
                    jetstream,
                },
        } => {
            init_tracing();
            if jetstream.log.is_some() {
                return finish(verify_jetstream(&jetstream, expect_head.is_some(), &global));
            }
            let head = expect_head.as_deref().map(|f| offline::ExpectedHead {
                file: f,
                public_key: public_key.as_deref(),
            });
            audit_verify(data, server_flag, &global, head)
        }
        Cmd::Replay {
            data,
            jetstream,
            to,
            no_snapshot,
        } => {
            init_tracing();
            match (jetstream.open(), data) {
                (Ok(Some(log)), _) => offline::replay_log(&log, to, !no_snapshot, global.output),
                (Ok(None), Some(data)) => offline::replay(&data, to, !no_snapshot, global.output),
                (Ok(None), None) => Err(anyhow::anyhow!("pass --data DIR or --log nats://…")),
                (Err(e), _) => Err(e),
            }
        }
    };
    finish(result)
}

/// `audit verify --log nats://…` (no checkpoint: those anchor a data directory's log).
fn verify_jetstream(
    jetstream: &offline::JetStreamArgs,
    expect_head: bool,
    global: &Global,
) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        !expect_head,
        "--expect-head checks a data directory's log; with --log verify the chain alone"
    );
    let log = jetstream
        .open()?
        .ok_or_else(|| anyhow::anyhow!("--log is missing"))?;
    offline::audit_verify_jetstream(&log, global.output)
}

fn finish(result: anyhow::Result<ExitCode>) -> ExitCode {
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", dcloud::client::error_text(&e));
            ExitCode::from(2)
        }
    }
}

/// `audit verify`: offline over `--data`, or through the server when only `--server`
/// is given or when the server holds the data directory's log.
fn audit_verify(
    data: Option<PathBuf>,
    server_flag: Option<String>,
    global: &Global,
    head: Option<offline::ExpectedHead<'_>>,
) -> anyhow::Result<ExitCode> {
    let data = match (data, &server_flag) {
        (Some(d), _) => d,
        (None, Some(_)) if head.is_some() => anyhow::bail!(
            "--expect-head checks a data directory: pass --data DIR (a stopped server's)"
        ),
        (None, Some(_)) => return dcloud::client::verify_remote(global),
        (None, None) => anyhow::bail!(
            "pass --data DIR (a stopped server's data directory) or --server URL (a running \
             server, with an admin or auditor token)"
        ),
    };
    match offline::audit_verify(&data, global.output, head) {
        Err(e) => match e.downcast::<offline::LogLocked>() {
            Ok(locked) => {
                let server = server_flag.or(locked.server.clone());
                match (server, &global.token) {
                    (Some(server), Some(_)) => {
                        eprintln!(
                            "the log in {} is held by the running server at {server}; \
                             verifying through it",
                            data.display()
                        );
                        dcloud::client::verify_remote(&Global {
                            server,
                            ..global.clone()
                        })
                    }
                    _ => Err(locked.into()),
                }
            }
            Err(e) => Err(e),
        },
        ok => ok,
    }
}

/// Printing into a closed pipe (`dcloud status | head`) ends the command quietly, as
/// other command-line tools do, instead of a panic and a backtrace: Rust ignores
/// SIGPIPE, so the write fails and `println!` panics with this message.
fn quiet_on_broken_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let msg = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if msg.starts_with("failed printing to stdout") && msg.contains("Broken pipe") {
            std::process::exit(0);
        }
        default(info);
    }));
}

/// Logs go to stderr; `DCLOUD_LOG` filters them (default `warn` for the offline tools).
fn init_tracing() {
    dcloud::init_tracing("warn");
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// clap checks a command's definition only when it is built in a debug build:
    /// two flags with one name panic every invocation of that subcommand. Check all.
    #[test]
    fn the_command_line_is_well_formed() {
        super::Cli::command().debug_assert();
    }
}
