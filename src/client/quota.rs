//! `quota set USER --cpu 2 --ram 4G --gpus 1 --deployments 3`, `quota clear USER`,
//! `quota get USER` and `quota list`.

use std::process::ExitCode;

use serde_json::{json, Map, Value};

use super::api::Api;
use super::catalogue::quota_line;
use super::format::s;
use crate::offline::Output;

#[derive(Debug, clap::Subcommand)]
pub enum QuotaCmd {
    /// Set limits of USER (admins). Limits not named stay as they are; `none` lifts one.
    Set {
        user: String,
        /// Cores: `2`, `0.5`, `500m`, or `none`.
        #[arg(long)]
        cpu: Option<String>,
        /// Memory: `4G`, `512M`, or `none`.
        #[arg(long)]
        ram: Option<String>,
        /// GPUs, or `none`.
        #[arg(long)]
        gpus: Option<String>,
        /// Live deployments at once, or `none`.
        #[arg(long)]
        deployments: Option<String>,
    },
    /// Remove USER's quota (no limits).
    Clear { user: String },
    /// USER's quota and usage.
    Get { user: String },
    /// Every user with a quota, with their usage (admins and auditors).
    List {},
}

const FIELDS: &str = "user quota { cpuMillis memoryBytes gpus deployments }
  usage { cpuMillis memoryBytes gpus deployments }";

/// One `--flag VALUE` as the quota field's JSON value (`null` for `none`), or what was
/// expected.
fn limit(flag: &str, value: &str) -> Result<Value, String> {
    if value.eq_ignore_ascii_case("none") {
        return Ok(Value::Null);
    }
    let parsed = match flag {
        "cpu" => dcloud_projections::config::parse_cpu_millis(value)
            .map_err(|_| "is not a number of cores; use 2, 0.5, 500m or none"),
        "ram" => dcloud_projections::config::parse_size(value)
            .map_err(|_| "is not a size; use 512M, 4G, 2.5G or none"),
        _ => value
            .parse::<u32>()
            .map(u64::from)
            .map_err(|_| "is not a whole number; use 0, 1, 2 or none"),
    };
    parsed
        .map(|n| json!(n))
        .map_err(|why| format!("--{flag} {value:?} {why}"))
}

fn print(q: &Value, out: Output) {
    match out {
        Output::Json => println!("{q}"),
        Output::Table => {
            let quota = &q["quota"];
            if quota.is_object() {
                println!("{}: {}", s(q, "user"), quota_line(quota, &q["usage"]));
            } else {
                println!(
                    "{}: no quota; uses {}",
                    s(q, "user"),
                    quota_line(&json!({}), &q["usage"])
                );
            }
        }
    }
}

pub(super) async fn run(api: &Api, cmd: QuotaCmd, out: Output) -> anyhow::Result<ExitCode> {
    match cmd {
        QuotaCmd::Set {
            user,
            cpu,
            ram,
            gpus,
            deployments,
        } => {
            let given = [
                ("cpu", "cpuMillis", cpu),
                ("ram", "memoryBytes", ram),
                ("gpus", "gpus", gpus),
                ("deployments", "deployments", deployments),
            ];
            if given.iter().all(|(_, _, v)| v.is_none()) {
                anyhow::bail!(
                    "nothing to set: pass --cpu, --ram, --gpus or --deployments \
                     (`none` lifts a limit), or use `dcloud quota clear {user}`"
                );
            }
            let mut changes = Map::new();
            let mut errors = Vec::new();
            for (flag, field, value) in &given {
                if let Some(v) = value {
                    match limit(flag, v) {
                        Ok(v) => {
                            changes.insert((*field).to_string(), v);
                        }
                        Err(e) => errors.push(e),
                    }
                }
            }
            if !errors.is_empty() {
                anyhow::bail!("{}\nnothing was changed", errors.join("\n"));
            }
            // Limits not named keep their current value.
            let current = api
                .run(
                    &format!("query($user: String!) {{ quota(user: $user) {{ {FIELDS} }} }}"),
                    json!({ "user": user }),
                )
                .await?;
            let mut quota = match &current["quota"]["quota"] {
                Value::Object(m) => m.clone(),
                _ => Map::new(),
            };
            quota.extend(changes);
            let q = format!(
                "mutation($user: String!, $quota: QuotaInput!) {{ setQuota(user: $user, quota: $quota) {{ {FIELDS} }} }}"
            );
            let data = api
                .run(&q, json!({ "user": user, "quota": Value::Object(quota) }))
                .await?;
            print(&data["setQuota"], out);
        }
        QuotaCmd::Clear { user } => {
            let q = format!(
                "mutation($user: String!) {{ setQuota(user: $user, quota: {{}}) {{ {FIELDS} }} }}"
            );
            let data = api.run(&q, json!({ "user": user })).await?;
            print(&data["setQuota"], out);
        }
        QuotaCmd::Get { user } => {
            let q = format!("query($user: String!) {{ quota(user: $user) {{ {FIELDS} }} }}");
            let data = api.run(&q, json!({ "user": user })).await?;
            print(&data["quota"], out);
        }
        QuotaCmd::List {} => {
            let data = api
                .run(&format!("query {{ quotas {{ {FIELDS} }} }}"), json!({}))
                .await?;
            let list = data["quotas"].as_array().cloned().unwrap_or_default();
            match out {
                Output::Json => println!("{}", Value::Array(list)),
                Output::Table if list.is_empty() => println!("no quotas set"),
                Output::Table => list.iter().for_each(|q| print(q, Output::Table)),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
