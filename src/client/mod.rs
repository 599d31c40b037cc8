//! The API client commands: `apply`, `deploy`, `create`, `templates`, `environments`,
//! `catalog`, `me`, `quota`, `status`, `stop`, `nodes`, `events`, `export`, `token
//! create`, `logs` and `exec`, over the server's GraphQL API (HTTP for queries and
//! mutations, `/graphql/ws` for `--watch` and `--follow`) and its `/exec` websocket.
//!
//! Exit codes: 0 on success (and for `deploy --watch`, once running); 1 when the
//! server refused the request (validation, not found, forbidden, …) or a watched
//! deployment failed; 2 for usage and connection errors (returned as `Err` to main).

mod api;
mod audit;
mod catalogue;
mod commands;
mod deploy;
pub(crate) mod discover;
mod format;
mod overrides;
pub mod quota;
mod sessions;
mod ws;

pub use discover::{discover_server, write_server_file, SERVER_FILE};

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
    /// datasets) from a JSON or YAML file, one document or a list. A document is a
    /// template when it names itself with `template-name` (or is `{"template": {…}}`);
    /// one with `env-name` is an environment unless `--as-template` is given.
    Apply {
        /// The file to read; `-` reads standard input.
        #[arg(short = 'f', long = "file")]
        file: PathBuf,
        /// Save every environment document of the file as a template (admins), named
        /// by its `env-name`.
        #[arg(long)]
        as_template: bool,
    },
    /// Deploy the current version of an environment (by name or id), or a new
    /// environment made from a template (`--template NAME`, in one step).
    Deploy {
        /// Environment id or `env-name` (not with `--template`).
        #[arg(required_unless_present = "template", conflicts_with = "template")]
        env: Option<String>,
        #[command(flatten)]
        from: FromTemplate,
        /// Placement policy.
        #[arg(long, value_enum)]
        policy: Option<Policy>,
        /// Follow the deployment until it runs (exit 0) or fails (exit 1).
        #[arg(long)]
        watch: bool,
        /// Past your quota, wait (pending) until it has room instead of being refused.
        #[arg(long)]
        wait_for_quota: bool,
        /// Print only the new deployment's id (for scripts: `ID=$(dcloud deploy … -q)`).
        #[arg(short, long, conflicts_with = "watch")]
        quiet: bool,
    },
    /// Create an environment from a template, with overrides.
    Create {
        #[command(flatten)]
        from: FromTemplate,
    },
    /// The templates environments can be made from.
    Templates {},
    /// The environments you may see (all for admins and auditors).
    Environments {
        /// Include deleted environments.
        #[arg(long)]
        deleted: bool,
    },
    /// The operating systems, languages and libraries environments may name (one os
    /// with OS).
    Catalog {
        /// One operating system (e.g. `ubuntu`).
        os: Option<String>,
    },
    /// Who the token belongs to: name, role, quota and usage.
    Me {},
    /// Per-user quotas (admins set them; auditors read them).
    Quota {
        #[command(subcommand)]
        command: quota::QuotaCmd,
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
    /// A deployment's logs (owner, admin, auditor): the backlog, then new lines with
    /// `--follow`; a failed build's output comes first, as `[build]` lines.
    Logs {
        /// The deployment id.
        id: String,
        /// Keep printing new lines until the container is gone.
        #[arg(short = 'f', long)]
        follow: bool,
        /// Only the last N lines of the backlog.
        #[arg(long)]
        tail: Option<u32>,
        /// Only lines since a duration ago (`10m`, `2h`) or a Unix time in ms.
        #[arg(long)]
        since: Option<String>,
    },
    /// Run a command in a deployment's container (owner, admin); exits with its code.
    Exec {
        /// The deployment id.
        id: String,
        /// Send standard input to the command.
        #[arg(short = 'i', long)]
        interactive: bool,
        /// Ask for a terminal.
        #[arg(short = 't', long)]
        tty: bool,
        /// The command and its arguments, after `--`.
        #[arg(last = true, required = true)]
        cmd: Vec<String>,
    },
    /// Access tokens.
    Token {
        #[command(subcommand)]
        command: TokenCmd,
    },
}

/// `--template NAME [--name N] [--set PATH=VALUE …]`.
#[derive(Debug, Clone, clap::Args)]
pub struct FromTemplate {
    /// The template to make the environment from (see `dcloud templates`).
    #[arg(long, required = false)]
    pub template: Option<String>,
    /// `env-name` of the new environment (default: the template's).
    #[arg(long, requires = "template")]
    pub name: Option<String>,
    /// Override one field: `resources.ram=2G`, `resources.cpu=2`, `resources.gpu=1`,
    /// `resources.storage=20`, `os=…`, `version=…`, `languages.python=numpy,pandas`,
    /// `port-publish=18888:8888/tcp`, `storage=/work:1G:persistent`, `labels.KEY=VALUE`.
    #[arg(long = "set", value_name = "PATH=VALUE", requires = "template")]
    pub set: Vec<String>,
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

/// `audit verify` through the server (`verifyChain`), exit codes as the offline one.
pub fn verify_remote(global: &Global) -> anyhow::Result<ExitCode> {
    let api = Api::new(global)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let result = runtime.block_on(audit::verify(&api, global.output));
    refusal_or(result, global.output)
}

/// An error and its causes on one line, each cause once: libraries often repeat
/// their source's text in their own message, which `{:#}` would print twice.
pub fn error_text(err: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in err.chain() {
        let msg = cause.to_string();
        if msg.is_empty() || text.contains(&msg) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&msg);
    }
    text
}

/// Server refusals are printed here (exit 1); other errors go back to main (exit 2).
fn refusal_or(result: anyhow::Result<ExitCode>, out: Output) -> anyhow::Result<ExitCode> {
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

/// Runs one client command on a fresh runtime.
pub fn run(cmd: ClientCmd, global: &Global) -> anyhow::Result<ExitCode> {
    let api = Api::new(global)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let out = global.output;
    let result = runtime.block_on(async {
        match cmd {
            ClientCmd::Apply { file, as_template } => {
                commands::apply(&api, &file, as_template, out).await
            }
            ClientCmd::Deploy {
                env,
                from,
                policy,
                watch,
                wait_for_quota,
                quiet,
            } => {
                let how = deploy::How {
                    policy,
                    watch,
                    wait_for_quota,
                    quiet,
                };
                match (env, from.template.is_some()) {
                    (Some(env), false) => deploy::deploy(&api, &env, how, out).await,
                    _ => catalogue::deploy_template(&api, &from, how, out).await,
                }
            }
            ClientCmd::Create { from } => catalogue::create(&api, &from, out).await,
            ClientCmd::Templates {} => catalogue::templates(&api, out).await,
            ClientCmd::Environments { deleted } => {
                catalogue::environments(&api, deleted, out).await
            }
            ClientCmd::Catalog { os } => catalogue::catalog(&api, os.as_deref(), out).await,
            ClientCmd::Me {} => catalogue::me(&api, out).await,
            ClientCmd::Quota { command } => quota::run(&api, command, out).await,
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
            ClientCmd::Logs {
                id,
                follow,
                tail,
                since,
            } => sessions::logs(&api, &id, follow, tail, since.as_deref(), out).await,
            ClientCmd::Exec {
                id,
                interactive,
                tty,
                cmd,
            } => sessions::exec(&api, &id, cmd, interactive, tty).await,
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
    refusal_or(result, out)
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
