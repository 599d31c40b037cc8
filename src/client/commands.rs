//! `apply`, `stop`, `nodes`, `events`, `export` and `token create`.

use std::io::Read;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use serde_json::{json, Value};

use super::api::{Api, GqlErrors};
use super::format::{self, i, lower, s};
use super::ws::Subscription;
use super::Role;
use crate::offline::Output;

const APPLY: &str = "mutation($document: String!, $format: DocumentFormat) {
  apply(document: $document, format: $format) {
    documents { index kind id action version }
    events
  }
}";

/// `text` with every environment or template document turned into a wrapped
/// template (`{"template": {…}}`), as one JSON list; any other kind is an error
/// naming it. Text that does not parse is sent as it is, for the server to explain.
fn as_templates(text: &str, fmt: &str) -> anyhow::Result<(String, &'static str)> {
    use dcloud_projections::config::{export_template, parse_document, Document, Format};
    let format = match fmt {
        "JSON" => Format::Json,
        "YAML" => Format::Yaml,
        _ => Format::Auto,
    };
    let (Ok(docs), Ok(idle)) = (
        parse_document(text, format),
        dcloud_projections::config::idle_timeouts(text, format),
    ) else {
        return Ok((text.to_string(), "AUTO"));
    };
    let mut list = Vec::new();
    for (i, doc) in docs.into_iter().enumerate() {
        match doc {
            Document::Environment(spec) | Document::Template(spec) => {
                let mut template = export_template(&spec);
                // The document's `idle-timeout` travels with it (it is not in the spec).
                if let (Some(Some(ms)), Some(map)) = (idle.get(i), template.as_object_mut()) {
                    let text = dcloud_projections::config::format_idle_timeout(*ms);
                    map.insert("idle-timeout".into(), json!(text));
                }
                list.push(json!({ "template": template }));
            }
            other => {
                let kind = match other {
                    Document::Catalog(_) => "a library catalog",
                    Document::Service(_) => "a service",
                    _ => "a dataset category",
                };
                anyhow::bail!(
                    "--as-template: document [{i}] is {kind}, not an environment or template; \
                     nothing was applied"
                );
            }
        }
    }
    Ok((Value::Array(list).to_string(), "JSON"))
}

pub(super) async fn apply(
    api: &Api,
    file: &Path,
    as_template: bool,
    out: Output,
) -> anyhow::Result<ExitCode> {
    let (text, fmt) = if file.as_os_str() == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("cannot read standard input")?;
        (text, "AUTO")
    } else {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read {}", file.display()))?;
        let fmt = match file.extension().and_then(|e| e.to_str()) {
            Some("json") => "JSON",
            Some("yaml" | "yml") => "YAML",
            _ => "AUTO",
        };
        (text, fmt)
    };
    let (text, fmt) = if as_template {
        as_templates(&text, fmt)?
    } else {
        (text, fmt)
    };
    let data = api
        .run(APPLY, json!({"document": text, "format": fmt}))
        .await?;
    let result = &data["apply"];
    match out {
        Output::Json => println!("{result}"),
        Output::Table => {
            for d in result["documents"].as_array().into_iter().flatten() {
                let version = match d.get("version").and_then(Value::as_i64) {
                    Some(v) => format!(" (version {v})"),
                    None => String::new(),
                };
                println!(
                    "{} {} {}{version}",
                    lower(d, "kind"),
                    s(d, "id"),
                    lower(d, "action")
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

const STOP: &str = "mutation($id: ID!) { stop(deploymentId: $id) { id status nodeId } }";

pub(super) async fn stop(api: &Api, id: &str, out: Output) -> anyhow::Result<ExitCode> {
    let data = api.run(STOP, json!({ "id": id })).await?;
    let d = &data["stop"];
    match out {
        Output::Json => println!("{d}"),
        Output::Table => println!("deployment {}: {}", s(d, "id"), lower(d, "status")),
    }
    Ok(ExitCode::SUCCESS)
}

const NODES: &str = "query($after: String) {
  nodes(first: 100, after: $after) {
    pageInfo { hasNextPage endCursor }
    nodes {
      id hostname os agentVersion health state draining engineOk
      lastHeartbeatMs lastSeenMs
      capacity { cpuMillis memoryBytes gpus storageBytes }
      allocatable { cpuMillis memoryBytes gpus storageBytes }
      allocated { cpuMillis memoryBytes gpus storageBytes }
      free { cpuMillis memoryBytes gpus storageBytes }
      usage { cpuMillis memoryBytes }
      labels { key value }
      deploymentIds
    }
  }
}";

/// Every page of a connection query whose root field is `field`.
async fn all_pages(
    api: &Api,
    query: &str,
    field: &str,
    mut vars: Value,
) -> anyhow::Result<Vec<Value>> {
    let mut items = Vec::new();
    loop {
        let data = api.run(query, vars.clone()).await?;
        let conn = &data[field];
        items.extend(conn["nodes"].as_array().into_iter().flatten().cloned());
        let page = &conn["pageInfo"];
        match page["endCursor"].as_str() {
            Some(cursor) if page["hasNextPage"].as_bool() == Some(true) => {
                vars["after"] = json!(cursor);
            }
            _ => return Ok(items),
        }
    }
}

pub(super) async fn nodes(api: &Api, out: Output) -> anyhow::Result<ExitCode> {
    let nodes = all_pages(api, NODES, "nodes", json!({})).await?;
    if out == Output::Json {
        println!("{}", Value::Array(nodes));
        return Ok(ExitCode::SUCCESS);
    }
    let now = now_ms();
    let rows: Vec<Vec<String>> = nodes
        .iter()
        .map(|n| {
            let (al, tot, use_) = (&n["allocated"], &n["allocatable"], &n["usage"]);
            let seen = n["lastHeartbeatMs"]
                .as_i64()
                .or_else(|| n["lastSeenMs"].as_i64());
            vec![
                s(n, "id"),
                s(n, "hostname"),
                lower(n, "state"),
                lower(n, "health"),
                format!(
                    "{}/{}",
                    format::cpu(i(al, "cpuMillis")),
                    format::cpu(i(tot, "cpuMillis"))
                ),
                format!(
                    "{}/{}",
                    format::bytes(i(al, "memoryBytes")),
                    format::bytes(i(tot, "memoryBytes"))
                ),
                format!("{}/{}", i(al, "gpus"), i(tot, "gpus")),
                format!(
                    "{}/{}",
                    format::bytes(i(al, "storageBytes")),
                    format::bytes(i(tot, "storageBytes"))
                ),
                format!(
                    "{} cpu, {}",
                    format::cpu(i(use_, "cpuMillis")),
                    format::bytes(i(use_, "memoryBytes"))
                ),
                n["deploymentIds"]
                    .as_array()
                    .map_or(0, Vec::len)
                    .to_string(),
                seen.map_or("-".to_string(), |t| ago(now, t)),
            ]
        })
        .collect();
    let headers = [
        "ID",
        "HOSTNAME",
        "STATE",
        "HEALTH",
        "CPU",
        "MEMORY",
        "GPU",
        "STORAGE",
        "USAGE",
        "DEPLOYMENTS",
        "LAST HEARTBEAT",
    ];
    println!("{}", format::table(&headers, &rows));
    Ok(ExitCode::SUCCESS)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn ago(now: i64, then: i64) -> String {
    let secs = (now - then).max(0) / 1000;
    match secs {
        0..=119 => format!("{secs}s ago"),
        120..=7199 => format!("{}m ago", secs / 60),
        _ => format::time_ms(then),
    }
}

const EVENTS: &str = "query($after: String, $filter: EventFilter) {
  events(after: $after, first: 500, filter: $filter) {
    pageInfo { hasNextPage endCursor }
    nodes { seq timeMs actor correlation type entity payload }
  }
}";

const EVENTS_SUB: &str = "subscription($after: Int, $filter: EventFilter) {
  events(after: $after, filter: $filter) { seq timeMs actor correlation type entity payload }
}";

fn event_line(e: &Value) -> String {
    format!(
        "{:>6}  {}  {:<24}  {:<26}  {}",
        i(e, "seq"),
        format::time_ms(i(e, "timeMs")),
        s(e, "actor"),
        s(e, "type"),
        s(e, "entity")
    )
}

pub(super) async fn events(
    api: &Api,
    after: u64,
    follow: bool,
    filter: Value,
    out: Output,
) -> anyhow::Result<ExitCode> {
    if !follow {
        let vars = json!({"after": after.to_string(), "filter": filter});
        let list = all_pages(api, EVENTS, "events", vars).await?;
        match out {
            Output::Json => println!("{}", Value::Array(list)),
            Output::Table => list.iter().for_each(|e| println!("{}", event_line(e))),
        }
        return Ok(ExitCode::SUCCESS);
    }
    // Following: one line (or one JSON object) per event, history first then live.
    let print = |e: &Value| match out {
        Output::Json => println!("{e}"),
        Output::Table => println!("{}", event_line(e)),
    };
    let mut last = after;
    let vars = json!({"after": after, "filter": filter});
    match Subscription::open(api, EVENTS_SUB, vars).await {
        Ok(mut sub) => loop {
            match sub.next().await {
                Ok(Some(data)) => {
                    let e = &data["events"];
                    last = e["seq"].as_u64().unwrap_or(last);
                    print(e);
                }
                Ok(None) => return Ok(ExitCode::SUCCESS),
                Err(err) if err.downcast_ref::<GqlErrors>().is_some() => return Err(err),
                Err(err) => {
                    eprintln!("warning: {err:#}; polling instead");
                    break;
                }
            }
        },
        Err(err) if err.downcast_ref::<GqlErrors>().is_some() => return Err(err),
        Err(err) => eprintln!("warning: {err:#}; polling instead"),
    }
    loop {
        let vars = json!({"after": last.to_string(), "filter": filter});
        for e in all_pages(api, EVENTS, "events", vars).await? {
            last = e["seq"].as_u64().unwrap_or(last);
            print(&e);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

const EXPORT: &str =
    "query($id: ID!, $version: Int) { exportEnvironment(id: $id, version: $version) }";

const ENVIRONMENTS: &str = "query($after: String) {
  environments(first: 100, after: $after) {
    pageInfo { hasNextPage endCursor }
    nodes { id name }
  }
}";

/// `ENV` as an id, else the id of the caller's visible environment named `ENV`.
pub(super) async fn resolve_env(api: &Api, env: &str) -> anyhow::Result<Option<String>> {
    let envs = all_pages(api, ENVIRONMENTS, "environments", json!({})).await?;
    if envs.iter().any(|e| e["id"].as_str() == Some(env)) {
        return Ok(Some(env.to_string()));
    }
    Ok(envs
        .iter()
        .find(|e| e["name"].as_str() == Some(env))
        .and_then(|e| e["id"].as_str())
        .map(str::to_string))
}

pub(super) async fn export(api: &Api, env: &str, version: Option<u32>) -> anyhow::Result<ExitCode> {
    let id = resolve_env(api, env)
        .await?
        .unwrap_or_else(|| env.to_string());
    let data = api
        .run(EXPORT, json!({"id": id, "version": version}))
        .await?;
    match &data["exportEnvironment"] {
        Value::String(text) => println!("{text}"),
        doc => println!("{}", serde_json::to_string_pretty(doc)?),
    }
    Ok(ExitCode::SUCCESS)
}

const CREATE_TOKEN: &str = "mutation($role: Role!, $name: String!, $node: ID, $expires: Int) {
  createToken(role: $role, name: $name, nodeId: $node, expiresInMs: $expires) { id token name role nodeId expiresMs }
}";

const CREATE_JOIN_TOKEN: &str = "mutation($name: String!, $uses: Int!, $expires: Int) {
  createJoinToken(name: $name, uses: $uses, expiresInMs: $expires) { id token name uses expiresMs }
}";

/// What `token create` asks for.
pub(super) struct NewToken<'a> {
    pub(super) role: Role,
    pub(super) name: &'a str,
    pub(super) node: Option<&'a str>,
    pub(super) uses: Option<u32>,
    pub(super) expires: Option<&'a str>,
}

pub(super) async fn token_create(
    api: &Api,
    new: NewToken<'_>,
    out: Output,
) -> anyhow::Result<ExitCode> {
    let expires = match new.expires {
        None => None,
        Some(text) => Some(
            dcloud_projections::config::parse_duration_ms(text)
                .ok()
                .filter(|ms| *ms > 0)
                .with_context(|| {
                    format!("--expires: {text:?} is not a duration; use 30m, 1h, 24h")
                })?,
        ),
    };
    let (data, field) = if matches!(new.role, Role::Join) {
        anyhow::ensure!(
            new.node.is_none(),
            "--node: a join token names no node (each node that joins gets its own token)"
        );
        let vars = json!({"name": new.name, "uses": new.uses.unwrap_or(1), "expires": expires});
        (api.run(CREATE_JOIN_TOKEN, vars).await?, "createJoinToken")
    } else {
        anyhow::ensure!(new.uses.is_none(), "--uses: only join tokens have uses");
        let vars = json!({"role": new.role.graphql(), "name": new.name, "node": new.node, "expires": expires});
        (api.run(CREATE_TOKEN, vars).await?, "createToken")
    };
    let t = &data[field];
    match out {
        Output::Json => println!("{t}"),
        Output::Table => {
            println!("{}", s(t, "token"));
            let what = if field == "createJoinToken" {
                format!("join token for {} node(s)", t["uses"])
            } else {
                lower(t, "role")
            };
            eprintln!(
                "token {} ({what} {}): shown once, keep it safe",
                s(t, "id"),
                s(t, "name")
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
