//! The catalogue: `templates`, `environments`, `catalog [OS]`, `create --template`,
//! `deploy --template` (create, then deploy, in one command) and `me`.

use std::process::ExitCode;

use anyhow::Context;
use serde_json::{json, Value};

use super::api::Api;
use super::deploy::{self, How};
use super::format::{self, i, s};
use super::overrides::{self, Base};
use super::FromTemplate;
use crate::offline::Output;

const TEMPLATES: &str = "query { templates { name owner savedMs idleTimeout spec {
  os versionLabel languages { name libraries } resources { cpuMillis memoryBytes gpus storageBytes }
  ports { external internal protocol } } } }";

fn resources(r: &Value) -> String {
    format!(
        "{} cpu, {}, {} gpu, {} disk",
        format::cpu(i(r, "cpuMillis")),
        format::bytes(i(r, "memoryBytes")),
        i(r, "gpus"),
        format::bytes(i(r, "storageBytes"))
    )
}

fn languages(spec: &Value) -> String {
    spec["languages"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|l| {
            let libs: Vec<&str> = l["libraries"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            if libs.is_empty() {
                s(l, "name")
            } else {
                format!("{} ({})", s(l, "name"), libs.join(", "))
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

pub(super) async fn templates(api: &Api, out: Output) -> anyhow::Result<ExitCode> {
    let data = api.run(TEMPLATES, json!({})).await?;
    let list = data["templates"].as_array().cloned().unwrap_or_default();
    if out == Output::Json {
        println!("{}", Value::Array(list));
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|t| {
            let spec = &t["spec"];
            vec![
                s(t, "name"),
                s(spec, "os"),
                resources(&spec["resources"]),
                t["idleTimeout"].as_str().unwrap_or("-").to_string(),
                languages(spec),
            ]
        })
        .collect();
    println!(
        "{}",
        format::table(
            &["NAME", "OS", "RESOURCES", "IDLE STOP", "LANGUAGES"],
            &rows
        )
    );
    Ok(ExitCode::SUCCESS)
}

const ENVIRONMENTS: &str = "query($after: String, $deleted: Boolean!) {
  environments(first: 100, after: $after, includeDeleted: $deleted) {
    pageInfo { hasNextPage endCursor }
    nodes { id name owner version active deleted updatedMs
      spec { os resources { cpuMillis memoryBytes gpus storageBytes } } }
  }
}";

pub(super) async fn environments(
    api: &Api,
    deleted: bool,
    out: Output,
) -> anyhow::Result<ExitCode> {
    let mut vars = json!({"deleted": deleted});
    let mut list = Vec::new();
    loop {
        let data = api.run(ENVIRONMENTS, vars.clone()).await?;
        let conn = &data["environments"];
        list.extend(conn["nodes"].as_array().into_iter().flatten().cloned());
        match conn["pageInfo"]["endCursor"].as_str() {
            Some(c) if conn["pageInfo"]["hasNextPage"].as_bool() == Some(true) => {
                vars["after"] = json!(c)
            }
            _ => break,
        }
    }
    if out == Output::Json {
        println!("{}", Value::Array(list));
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|e| {
            let state = match (e["deleted"].as_bool(), e["active"].as_bool()) {
                (Some(true), _) => "deleted",
                (_, Some(true)) => "active",
                _ => "inactive",
            };
            vec![
                s(e, "id"),
                s(e, "name"),
                i(e, "version").to_string(),
                s(e, "owner"),
                state.to_string(),
                s(&e["spec"], "os"),
                resources(&e["spec"]["resources"]),
            ]
        })
        .collect();
    let headers = ["ID", "NAME", "VERSION", "OWNER", "STATE", "OS", "RESOURCES"];
    println!("{}", format::table(&headers, &rows));
    Ok(ExitCode::SUCCESS)
}

const LIBRARIES: &str = "query($os: String) {
  availableLibraries(os: $os) { os baseImage languages { name libraries } }
}";

pub(super) async fn catalog(api: &Api, os: Option<&str>, out: Output) -> anyhow::Result<ExitCode> {
    let data = api.run(LIBRARIES, json!({ "os": os })).await?;
    let list = data["availableLibraries"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if out == Output::Json {
        println!("{}", Value::Array(list));
        return Ok(ExitCode::SUCCESS);
    }
    for (n, c) in list.iter().enumerate() {
        if n > 0 {
            println!();
        }
        let base = c["baseImage"].as_str().unwrap_or("default base image");
        println!("{} ({base})", s(c, "os"));
        for l in c["languages"].as_array().into_iter().flatten() {
            let libs: Vec<&str> = l["libraries"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            println!("  {:<10} {}", s(l, "name"), libs.join(", "));
        }
    }
    Ok(ExitCode::SUCCESS)
}

const TEMPLATE_BASE: &str = "query($name: String!) {
  template(name: $name) { spec { languages { name libraries } nodeLabels { key value } } }
}";

const CREATE: &str = "mutation($template: String!, $overrides: TemplateOverrides) {
  createFromTemplate(template: $template, overrides: $overrides) { id name version owner }
}";

/// Creates the environment `from` describes; its JSON (`id`, `name`, `version`, `owner`).
async fn create_env(api: &Api, from: &FromTemplate) -> anyhow::Result<Value> {
    let template = from
        .template
        .as_deref()
        .context("no template: pass --template NAME (see `dcloud templates`)")?;
    let base = if overrides::needs_base(&from.set) {
        let data = api.run(TEMPLATE_BASE, json!({ "name": template })).await?;
        let spec = &data["template"]["spec"];
        Base {
            languages: spec["languages"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|l| {
                    let libs = l["libraries"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(Value::as_str)
                        .map(str::to_string)
                        .collect();
                    (s(l, "name"), libs)
                })
                .collect(),
            labels: spec["nodeLabels"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|l| (s(l, "key"), s(l, "value")))
                .collect(),
        }
    } else {
        Base::default()
    };
    let overrides = overrides::parse(from.name.as_deref(), &from.set, &base)
        .map_err(|errors| anyhow::anyhow!("{}\nnothing was created", errors.join("\n")))?;
    let data = api
        .run(
            CREATE,
            json!({ "template": template, "overrides": overrides }),
        )
        .await?;
    Ok(data["createFromTemplate"].clone())
}

pub(super) async fn create(
    api: &Api,
    from: &FromTemplate,
    out: Output,
) -> anyhow::Result<ExitCode> {
    let env = create_env(api, from).await?;
    match out {
        Output::Json => println!("{env}"),
        Output::Table => println!(
            "environment {} ({} version {}) created from template {}",
            s(&env, "id"),
            s(&env, "name"),
            i(&env, "version"),
            from.template.as_deref().unwrap_or("-")
        ),
    }
    Ok(ExitCode::SUCCESS)
}

/// `deploy --template`: a new environment from the template, then its deployment.
pub(super) async fn deploy_template(
    api: &Api,
    from: &FromTemplate,
    how: How,
    out: Output,
) -> anyhow::Result<ExitCode> {
    let env = create_env(api, from).await?;
    let id = s(&env, "id");
    if out == Output::Table && !how.quiet {
        println!(
            "environment {id} ({}) created from template {}",
            s(&env, "name"),
            from.template.as_deref().unwrap_or("-")
        );
    }
    match deploy::request(api, &id, how).await {
        Ok(data) => deploy::show(api, data, how, out).await,
        Err(err) => {
            // Refused (quota, no such os on any node…): the environment was made only
            // for this deployment, so it goes too and the command changes nothing.
            match api.run(DELETE_ENV, json!({ "id": id })).await {
                Ok(_) => eprintln!("deploy refused: the environment {id} made for it was deleted"),
                Err(e) => eprintln!(
                    "deploy refused: the environment {id} made for it is left behind ({e:#})"
                ),
            }
            Err(err)
        }
    }
}

const DELETE_ENV: &str = "mutation($id: ID!) { deleteEnvironment(id: $id) { id } }";

const ME: &str = "query { me { name role nodeId label
  quota { cpuMillis memoryBytes gpus deployments }
  usage { cpuMillis memoryBytes gpus deployments } } }";

/// `used/limit` per axis, `used (no limit)` where the quota sets none.
pub(super) fn quota_line(quota: &Value, usage: &Value) -> String {
    let axis = |key: &str, fmt: &dyn Fn(i64) -> String| {
        let used = fmt(i(usage, key));
        match quota.get(key).and_then(Value::as_i64) {
            Some(limit) => format!("{used} of {}", fmt(limit)),
            None => format!("{used} (no limit)"),
        }
    };
    format!(
        "cpu {}, memory {}, gpus {}, deployments {}",
        axis("cpuMillis", &format::cpu),
        axis("memoryBytes", &format::bytes),
        axis("gpus", &|n| n.to_string()),
        axis("deployments", &|n| n.to_string()),
    )
}

pub(super) async fn me(api: &Api, out: Output) -> anyhow::Result<ExitCode> {
    let data = api.run(ME, json!({})).await?;
    let me = &data["me"];
    if out == Output::Json {
        println!("{me}");
        return Ok(ExitCode::SUCCESS);
    }
    println!("name:    {}", s(me, "name"));
    println!("role:    {}", s(me, "role").to_lowercase());
    if let Some(node) = me["nodeId"].as_str() {
        println!("node:    {node}");
    }
    let quota = &me["quota"];
    if quota.is_object() {
        println!("quota:   {}", quota_line(quota, &me["usage"]));
    } else {
        println!("quota:   none (unlimited)");
        println!("usage:   {}", quota_line(&json!({}), &me["usage"]));
    }
    Ok(ExitCode::SUCCESS)
}
