//! The API client commands: `apply`, `deploy`, `status`, `stop`, `nodes`, `events`,
//! `export` and `token create`, over the server's GraphQL API (HTTP for queries and
//! mutations, `/graphql/ws` for `--watch` and `--follow`).
//!
//! Exit codes: 0 on success (and for `deploy --watch`, once running); 1 when the
//! server refused the request (validation, not found, forbidden, …) or a watched
//! deployment failed; 2 for usage and connection errors (returned as `Err` to main).

mod api;
mod commands;
mod deploy;
mod format;
mod ws;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::OnceLock;

use serde_json::json;

pub use api::{Api, GqlError, GqlErrors};

use crate::offline::Output;

static CA_FILE: OnceLock<Option<PathBuf>> = OnceLock::new();

/// Sets the CA file every client of this process trusts besides the public roots
/// (`--ca-file`; the first call wins).
pub fn set_ca_file(path: Option<PathBuf>) {
    let _ = CA_FILE.set(path);
}

/// The CA file to trust: `--ca-file`, else `DCLOUD_CA_FILE`, else none.
pub fn ca_file() -> Option<PathBuf> {
    CA_FILE
        .get()
        .cloned()
        .flatten()
        .or_else(|| std::env::var_os("DCLOUD_CA_FILE").map(PathBuf::from))
}

/// Flags every client command shares.
#[derive(Debug, Clone)]
pub struct Global {
    pub server: String,
    pub token: Option<String>,
    pub output: Output,
}

#[derive(Debug, clap::Subcommand)]
pub enum ClientCmd {
    /// Create or update documents (environments, templates, catalogs, services,
    /// datasets) from a JSON or YAML file, one document or a list.
    Apply {
        /// The file to read; `-` reads standard input.
        #[arg(short = 'f', long = "file")]
        file: PathBuf,
    },
    /// Deploy the current version of an environment (by name or id).
    Deploy {
        /// Environment id or `env-name`.
        env: String,
        /// Placement policy.
        #[arg(long, value_enum)]
        policy: Option<Policy>,
        /// Follow the deployment until it runs (exit 0) or fails (exit 1).
        #[arg(long)]
        watch: bool,
    },
    /// The deployments the caller may see, or one deployment with its history.
    Status {
        /// A deployment id.
        id: Option<String>,
        /// Follow changes live (with ID: until the deployment is finished).
        #[arg(long)]
        watch: bool,
    },
    /// Stop a deployment.
    Stop {
        /// The deployment id.
        id: String,
    },
    /// The nodes with their capacity, allocation, usage and health.
    Nodes {},
    /// The event log, one line per event.
    Events {
        /// Only events after this sequence number.
        #[arg(long)]
        after: Option<u64>,
        /// Keep following new events as they are appended.
        #[arg(long)]
        follow: bool,
        /// Only this event type (e.g. `DeploymentScheduled`).
        #[arg(long = "type")]
        kind: Option<String>,
        /// Only this entity (`deployment:ID`) or kind of entity (`deployment`).
        #[arg(long)]
        entity: Option<String>,
        /// Only events caused by this actor (`user:alice`, `system`).
        #[arg(long)]
        actor: Option<String>,
    },
    /// Print an environment in its original JSON format.
    Export {
        /// Environment id or `env-name`.
        env: String,
        /// A past version (default: the current one).
        #[arg(long)]
        version: Option<u32>,
    },
    /// Access tokens.
    Token {
        #[command(subcommand)]
        command: TokenCmd,
    },
}

#[derive(Debug, clap::Subcommand)]
pub enum TokenCmd {
    /// Create a token (admins); it is printed once and never shown again.
    Create {
        /// `join` makes a join token: agents join with it (`dcloud agent
        /// --join-token T`) and each node receives its own agent token.
        #[arg(long, value_enum)]
        role: Role,
        #[arg(long, default_value = "token")]
        name: String,
        /// The node of an agent token.
        #[arg(long)]
        node: Option<String>,
        /// How many nodes may join with a join token.
        #[arg(long)]
        uses: Option<u32>,
        /// The token stops authenticating this long from now (`30m`, `1h`, `24h`).
        #[arg(long)]
        expires: Option<String>,
    },
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Policy {
    Spread,
    Binpack,
}

impl Policy {
    fn graphql(self) -> &'static str {
        match self {
            Policy::Spread => "SPREAD",
            Policy::Binpack => "BIN_PACK",
        }
    }
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Role {
    Admin,
    User,
    Agent,
    Auditor,
    /// A join token (not a role of its own: it only admits nodes).
    Join,
}

impl Role {
    fn graphql(self) -> &'static str {
        match self {
            Role::Admin => "ADMIN",
            Role::User => "USER",
            Role::Agent => "AGENT",
            Role::Auditor => "AUDITOR",
            Role::Join => "JOIN",
        }
    }
}

/// Runs one client command on a fresh runtime.
pub fn run(cmd: ClientCmd, global: &Global) -> anyhow::Result<ExitCode> {
    let api = Api::new(global)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let out = global.output;
    let result = runtime.block_on(async {
        match cmd {
            ClientCmd::Apply { file } => commands::apply(&api, &file, out).await,
            ClientCmd::Deploy { env, policy, watch } => {
                deploy::deploy(&api, &env, policy, watch, out).await
            }
            ClientCmd::Status {
                id: Some(id),
                watch,
            } => deploy::status_one(&api, &id, watch, out).await,
            ClientCmd::Status { id: None, watch } => deploy::status_all(&api, watch, out).await,
            ClientCmd::Stop { id } => commands::stop(&api, &id, out).await,
            ClientCmd::Nodes {} => commands::nodes(&api, out).await,
            ClientCmd::Events {
                after,
                follow,
                kind,
                entity,
                actor,
            } => {
                let filter = json!({"type": kind, "entity": entity, "actor": actor});
                commands::events(&api, after.unwrap_or(0), follow, filter, out).await
            }
            ClientCmd::Export { env, version } => commands::export(&api, &env, version).await,
            ClientCmd::Token {
                command:
                    TokenCmd::Create {
                        role,
                        name,
                        node,
                        uses,
                        expires,
                    },
            } => {
                let new = commands::NewToken {
                    role,
                    name: &name,
                    node: node.as_deref(),
                    uses,
                    expires: expires.as_deref(),
                };
                commands::token_create(&api, new, out).await
            }
        }
    });
    match result {
        Ok(code) => Ok(code),
        Err(err) => match err.downcast_ref::<GqlErrors>() {
            Some(errors) => {
                print_refusal(errors, out);
                Ok(ExitCode::from(1))
            }
            None => Err(err),
        },
    }
}

/// The server's errors: to stderr as `error [CODE]: message` then `path: message` per
/// field; with `--output json`, the errors array on stdout.
fn print_refusal(errors: &GqlErrors, out: Output) {
    match out {
        Output::Json => {
            let list: Vec<_> = errors.0.iter().map(|e| e.raw.clone()).collect();
            println!("{}", json!({ "errors": list }));
        }
        Output::Table => eprintln!("{errors}"),
    }
}
