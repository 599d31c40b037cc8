//! The offline tools over a data directory, or over a log on JetStream (`--log
//! nats://…`): `audit verify` (walk the hash chain) and `replay` (rebuild the state
//! up to a sequence number and print it).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use dcloud_events::verify_dir;
use dcloud_events::LogError;
use dcloud_projections::State;
use serde::Serialize;

use crate::checkpoint::Checkpoint;
use crate::store;

/// Output format of client commands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    Table,
    Json,
}

/// `--log nats://… [--log-stream S] [--log-replicas N]` of the offline tools: a log on
/// JetStream instead of a data directory's (it may be in use by servers: reading it is
/// safe).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct JetStreamArgs {
    /// Read the log from a NATS JetStream cluster, `nats://HOST:PORT[,…]`, instead of
    /// a data directory (as `server --log`).
    #[arg(long)]
    pub log: Option<String>,
    /// The log's stream (as `server --log-stream`).
    #[arg(long, default_value = "dcloud", requires = "log")]
    pub log_stream: String,
    /// The stream's replicas (as `server --log-replicas`).
    #[arg(long, default_value_t = 1, requires = "log")]
    pub log_replicas: usize,
}

impl JetStreamArgs {
    /// Opens the log these name, if they name one.
    pub fn open(&self) -> anyhow::Result<Option<dcloud_log_nats::JetStreamLog>> {
        let Some(url) = &self.log else {
            return Ok(None);
        };
        anyhow::ensure!(
            url.starts_with("nats://") || url.starts_with("tls://"),
            "--log: expected nats://HOST:PORT[,nats://HOST:PORT…], got {url:?}"
        );
        let cfg = dcloud_log_nats::JetStreamConfig::new(url.clone(), self.log_stream.clone())
            .replicas(self.log_replicas);
        let log = dcloud_log_nats::JetStreamLog::open(cfg).with_context(|| {
            format!(
                "opening the event log on JetStream (stream {} at {url})",
                self.log_stream
            )
        })?;
        Ok(Some(log))
    }
}

/// `audit verify --log nats://…`: the JetStream log's whole chain, reported as for a
/// data directory.
pub fn audit_verify_jetstream(
    log: &dcloud_log_nats::JetStreamLog,
    output: Output,
) -> anyhow::Result<ExitCode> {
    match log.verify() {
        Ok(report) => {
            print_ok(output, &report, None);
            Ok(ExitCode::SUCCESS)
        }
        Err(bad) => {
            print_failure(
                output,
                &HeadFailure {
                    first_bad_seq: Some(bad.first_bad_seq),
                    missing: None,
                    reason: bad.reason.to_string(),
                },
            );
            Ok(ExitCode::from(1))
        }
    }
}

fn print_ok(output: Output, report: &dcloud_events::VerifyReport, anchored: Option<u64>) {
    match output {
        Output::Json => println!(
            "{}",
            serde_json::json!({
                "ok": true,
                "events": report.events,
                "last_seq": report.last_seq,
                "last_hash": hex::encode(report.last_hash),
                "checkpoint_seq": anchored,
            })
        ),
        Output::Table => {
            let anchor = anchored.map_or(String::new(), |s| {
                format!("; head anchored by the checkpoint at seq {s}")
            });
            println!(
                "ok: {} events, chain verified up to seq {} (last hash {}){anchor}",
                report.events,
                report.last_seq,
                hex::encode(report.last_hash)
            )
        }
    }
}

/// `audit verify --expect-head`: a signed checkpoint the log must reach.
#[derive(Debug, Clone, Copy)]
pub struct ExpectedHead<'a> {
    pub file: &'a Path,
    /// The public key (hex) the checkpoint must be signed with.
    pub public_key: Option<&'a str>,
}

/// `dcloud audit verify`: exit 0 with a one-line summary when the chain holds (and,
/// with `head`, reaches the checkpoint with the same hash there), exit 1 naming the
/// first bad sequence number, or the missing range, when it does not.
pub fn audit_verify(
    data: &Path,
    output: Output,
    head: Option<ExpectedHead<'_>>,
) -> anyhow::Result<ExitCode> {
    let dir = store::log_dir(data);
    if !dir.is_dir() {
        anyhow::bail!(
            "no event log in {} (expected {})",
            data.display(),
            dir.display()
        );
    }
    match verify_dir(&dir) {
        Ok(report) => {
            let anchored = match head {
                None => None,
                Some(h) => match check_head(&dir, &report, h)? {
                    Ok(seq) => Some(seq),
                    Err(failure) => {
                        print_failure(output, &failure);
                        return Ok(ExitCode::from(1));
                    }
                },
            };
            print_ok(output, &report, anchored);
            Ok(ExitCode::SUCCESS)
        }
        Err(LogError::Verify(bad)) => {
            let failure = HeadFailure {
                first_bad_seq: Some(bad.first_bad_seq),
                missing: None,
                reason: bad.reason.to_string(),
            };
            print_failure(output, &failure);
            Ok(ExitCode::from(1))
        }
        Err(LogError::Storage(fjall::Error::Locked)) => Err(LogLocked::in_dir(data).into()),
        Err(e) => Err(e).context("verifying the log"),
    }
}

/// The log is held by a running server (fjall's lock): the offline tools cannot open
/// it, and say what to do instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLocked {
    pub data: std::path::PathBuf,
    /// The URL the server wrote into `DATA/server.json`, if any.
    pub server: Option<String>,
}

impl LogLocked {
    pub fn in_dir(data: &Path) -> Self {
        LogLocked {
            data: data.to_path_buf(),
            server: crate::client::discover::server_in(data),
        }
    }
}

impl std::fmt::Display for LogLocked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let url = self.server.as_deref().unwrap_or("URL");
        write!(
            f,
            "the log in {} is held by a running server; stop it first, or ask the server \
             (admin or auditor token): `dcloud audit verify --server {url}`",
            self.data.display()
        )
    }
}

impl std::error::Error for LogLocked {}

/// Why `audit verify` failed.
struct HeadFailure {
    first_bad_seq: Option<u64>,
    /// `(from, to)`, inclusive: events the checkpoint vouches for that the log lacks.
    missing: Option<(u64, u64)>,
    reason: String,
}

fn print_failure(output: Output, f: &HeadFailure) {
    match output {
        Output::Json => println!(
            "{}",
            serde_json::json!({
                "ok": false,
                "first_bad_seq": f.first_bad_seq,
                "missing_from": f.missing.map(|m| m.0),
                "missing_to": f.missing.map(|m| m.1),
                "reason": f.reason,
            })
        ),
        Output::Table => match f.first_bad_seq {
            Some(seq) if f.missing.is_none() => {
                println!("FAILED: first bad seq {seq}: {}", f.reason)
            }
            _ => println!("FAILED: {}", f.reason),
        },
    }
}

/// The checkpoint's seq when the verified log reaches it with the same hash there.
fn check_head(
    dir: &Path,
    report: &dcloud_events::VerifyReport,
    head: ExpectedHead<'_>,
) -> anyhow::Result<Result<u64, HeadFailure>> {
    let cp = Checkpoint::read(head.file)?;
    let (seq, hash) = match cp.verify(head.public_key) {
        Ok(v) => v,
        Err(why) => {
            return Ok(Err(HeadFailure {
                first_bad_seq: None,
                missing: None,
                reason: format!("checkpoint {}: {why}", head.file.display()),
            }))
        }
    };
    if report.last_seq < seq {
        let from = report.last_seq + 1;
        return Ok(Err(HeadFailure {
            first_bad_seq: Some(from),
            missing: Some((from, seq)),
            reason: format!(
                "the log ends at seq {} but the checkpoint {} (signed at {} ms) covers seq {seq}: events {from}..={seq} are missing",
                report.last_seq,
                head.file.display(),
                cp.time_ms
            ),
        }));
    }
    if seq > 0 {
        let log = dcloud_events::FjallLog::open(dir).context("opening the log")?;
        let stored = dcloud_events::EventLog::read_range(&log, seq, seq)
            .next()
            .transpose()
            .context("reading the checkpoint's seq")?
            .map(|env| env.hash);
        if stored != Some(hash) {
            return Ok(Err(HeadFailure {
                first_bad_seq: Some(seq),
                missing: None,
                reason: format!(
                    "seq {seq} is not the event the checkpoint {} signed: history up to it was rewritten",
                    head.file.display()
                ),
            }));
        }
    }
    Ok(Ok(seq))
}

/// What `replay` prints.
#[derive(Debug, Serialize)]
pub struct ReplaySummary {
    pub seq: u64,
    pub digest: String,
    pub snapshot_seq: Option<u64>,
    pub replayed: u64,
    pub counts: Counts,
    pub nodes: Vec<NodeLine>,
    pub deployments: Vec<DeploymentLine>,
}

#[derive(Debug, Serialize)]
pub struct Counts {
    pub nodes: usize,
    pub nodes_by_health: BTreeMap<String, usize>,
    pub environments: usize,
    pub templates: usize,
    pub catalogs: usize,
    pub services: usize,
    pub deployments: usize,
    pub deployments_by_status: BTreeMap<String, usize>,
    pub pending: usize,
}

#[derive(Debug, Serialize)]
pub struct NodeLine {
    pub id: String,
    pub health: String,
    pub draining: bool,
    pub cpu_millis: u64,
    pub cpu_millis_allocated: u64,
    pub memory_bytes: u64,
    pub memory_bytes_allocated: u64,
    pub gpus: usize,
    pub gpus_allocated: u32,
    pub deployments: usize,
}

#[derive(Debug, Serialize)]
pub struct DeploymentLine {
    pub id: String,
    pub environment: String,
    pub node: Option<String>,
    pub status: String,
}

/// Builds the summary of a state.
pub fn summarize(state: &State, snapshot_seq: Option<u64>, replayed: u64) -> ReplaySummary {
    let mut nodes_by_health = BTreeMap::new();
    let nodes: Vec<NodeLine> = state
        .nodes_by_id()
        .map(|n| {
            *nodes_by_health
                .entry(n.health.as_str().to_string())
                .or_insert(0) += 1;
            NodeLine {
                id: n.id.clone(),
                health: n.health.as_str().into(),
                draining: n.draining,
                cpu_millis: n.fingerprint.capacity.cpu_millis,
                cpu_millis_allocated: n.allocated.cpu_millis,
                memory_bytes: n.fingerprint.capacity.memory_bytes,
                memory_bytes_allocated: n.allocated.memory_bytes,
                gpus: n.gpus.len(),
                gpus_allocated: n.allocated.gpus,
                deployments: n.deployments.len(),
            }
        })
        .collect();
    let mut deployments_by_status = BTreeMap::new();
    let deployments: Vec<DeploymentLine> = state
        .deployments
        .values()
        .map(|d| {
            *deployments_by_status
                .entry(d.status.as_str().to_string())
                .or_insert(0) += 1;
            DeploymentLine {
                id: d.id.clone(),
                environment: d.env_id.clone(),
                node: d.node.clone(),
                status: d.status.as_str().into(),
            }
        })
        .collect();
    ReplaySummary {
        seq: state.last_seq(),
        digest: hex::encode(state.digest()),
        snapshot_seq,
        replayed,
        counts: Counts {
            nodes: nodes.len(),
            nodes_by_health,
            environments: state.environments.len(),
            templates: state.templates.len(),
            catalogs: state.catalogs.len(),
            services: state.services.len(),
            deployments: deployments.len(),
            deployments_by_status,
            pending: state.pending.len(),
        },
        nodes,
        deployments,
    }
}

/// `dcloud replay`: the state as it stood at `to` (default: the end of the log).
pub fn replay(
    data: &Path,
    to: Option<u64>,
    use_snapshot: bool,
    output: Output,
) -> anyhow::Result<ExitCode> {
    if !store::log_dir(data).is_dir() {
        anyhow::bail!("no event log in {}", data.display());
    }
    let log = match dcloud_events::FjallLog::open(&store::log_dir(data)) {
        Ok(log) => std::sync::Arc::new(log),
        Err(LogError::Storage(fjall::Error::Locked)) => anyhow::bail!(
            "the log in {} is held by a running server; stop it first, or ask the server: \
             the `at(seq: N)` query (admin or auditor token) answers the same",
            data.display()
        ),
        Err(e) => return Err(e).context("opening the event log"),
    };
    replay_log(&*log, to, use_snapshot, output)
}

/// `dcloud replay` over an open log (a data directory's, or one on JetStream).
pub fn replay_log(
    log: &dyn dcloud_events::EventLog,
    to: Option<u64>,
    use_snapshot: bool,
    output: Output,
) -> anyhow::Result<ExitCode> {
    if let Some(to) = to {
        let last = log.last_seq();
        if to > last {
            anyhow::bail!("--to {to} is past the end of the log (last seq is {last})");
        }
    }
    let (state, rec) = store::recover(log, to, use_snapshot)?;
    let summary = summarize(&state, rec.snapshot_seq, rec.replayed);
    match output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&summary)?),
        Output::Table => print_table(&summary),
    }
    Ok(ExitCode::SUCCESS)
}

fn print_table(s: &ReplaySummary) {
    println!("state at seq {}  digest {}", s.seq, s.digest);
    match s.snapshot_seq {
        Some(seq) => println!(
            "from snapshot at seq {seq} + {} events replayed",
            s.replayed
        ),
        None => println!("{} events replayed from the start", s.replayed),
    }
    let c = &s.counts;
    println!(
        "nodes {}  environments {}  templates {}  catalogs {}  services {}  deployments {} (pending {})",
        c.nodes, c.environments, c.templates, c.catalogs, c.services, c.deployments, c.pending
    );
    if !s.nodes.is_empty() {
        println!();
        println!(
            "{:<24} {:<8} {:>14} {:>22} {:>7} {:>6}",
            "NODE", "HEALTH", "CPU (m)", "MEMORY (MiB)", "GPUS", "DEPL"
        );
        for n in &s.nodes {
            println!(
                "{:<24} {:<8} {:>14} {:>22} {:>7} {:>6}",
                n.id,
                format!("{}{}", n.health, if n.draining { "*" } else { "" }),
                format!("{}/{}", n.cpu_millis_allocated, n.cpu_millis),
                format!(
                    "{}/{}",
                    n.memory_bytes_allocated >> 20,
                    n.memory_bytes >> 20
                ),
                format!("{}/{}", n.gpus_allocated, n.gpus),
                n.deployments
            );
        }
    }
    if !s.deployments.is_empty() {
        println!();
        println!(
            "{:<38} {:<38} {:<24} STATUS",
            "DEPLOYMENT", "ENVIRONMENT", "NODE"
        );
        for d in &s.deployments {
            println!(
                "{:<38} {:<38} {:<24} {}",
                d.id,
                d.environment,
                d.node.as_deref().unwrap_or("-"),
                d.status
            );
        }
    }
}
