//! `deploy [--watch]` and `status [ID] [--watch]`: deployments, their history and
//! placement, and following one live (subscription, else polling).

use std::process::ExitCode;
use std::time::Duration;

use serde_json::{json, Value};

use super::api::{Api, GqlErrors};
use super::format::{self, i, lower, s};
use super::ws::Subscription;
use super::Policy;
use crate::offline::Output;

const FIELDS: &str = "id environmentId environmentVersion environmentName owner policy
  status live requestedSeq requestedMs nodeId nodeLostSinceMs movesAtMs image imageReady
  pendingReasons { reason count } quotaWait build { step steps } exitCode containerId
  failure { step command message }";

const DETAIL: &str = "history { seq timeMs status }
  need { cpuMillis memoryBytes gpus storageBytes } gpus
  ports { external internal protocol }
  endpoints { name protocol internalPort externalPort url ready } lastOutput
  volumes { target usedBytes sizeBytes enforced over }
  warnings { seq timeMs kind message }
  placement { nodeId seq scoreMilli candidates runnersUp { nodeId scoreMilli }
    rejected { reason count } }";

/// The deployment as the CLI prints it in JSON: the API's fields plus `node` and
/// `environment`.
fn with_aliases(d: &Value) -> Value {
    let mut d = d.clone();
    if let Value::Object(map) = &mut d {
        let node = map.get("nodeId").cloned().unwrap_or(Value::Null);
        let env = map
            .get("environmentName")
            .filter(|v| !v.is_null())
            .or_else(|| map.get("environmentId"))
            .cloned()
            .unwrap_or(Value::Null);
        let status = map
            .get("status")
            .and_then(Value::as_str)
            .map(str::to_lowercase);
        map.insert("node".into(), node);
        map.insert("environment".into(), env);
        if let Some(Value::Array(eps)) = map.get("endpoints") {
            let eps: Vec<Value> = eps.iter().map(endpoint_json).collect();
            map.insert("endpoints".into(), Value::Array(eps));
        }
        if let Some(st) = status {
            map.insert("status".into(), json!(st));
        }
    }
    d
}

/// One endpoint in the CLI's JSON names (`internal_port`, `external_port`).
fn endpoint_json(e: &Value) -> Value {
    json!({
        "name": e["name"],
        "protocol": e["protocol"],
        "internal_port": e["internalPort"],
        "external_port": e["externalPort"],
        "url": e["url"],
        "ready": e["ready"],
    })
}

/// `name url (ready)`, or the port when there is no URL (UDP, node address unknown).
fn endpoint_text(e: &Value) -> String {
    let target = match e["url"].as_str() {
        Some(url) => url.to_string(),
        None => format!(
            "{}/{} -> {} (no url: {})",
            i(e, "externalPort"),
            s(e, "protocol"),
            i(e, "internalPort"),
            if s(e, "protocol") == "tcp" {
                "node address unknown or not placed"
            } else {
                "not http"
            }
        ),
    };
    let ready = if e["ready"].as_bool() == Some(true) {
        "ready"
    } else {
        "not ready"
    };
    format!("{} {target} ({ready})", s(e, "name"))
}
/// How to deploy: placement policy, `--watch`, `--wait-for-quota`.
#[derive(Debug, Clone, Copy)]
pub(super) struct How {
    pub(super) policy: Option<Policy>,
    pub(super) watch: bool,
    pub(super) wait_for_quota: bool,
    /// Print only the deployment id.
    pub(super) quiet: bool,
}

const TEMPLATES: &str = "query { templates { name } }";

pub(super) async fn deploy(
    api: &Api,
    env: &str,
    how: How,
    out: Output,
) -> anyhow::Result<ExitCode> {
    let data = match request(api, env, how).await {
        Ok(data) => data,
        Err(err) => return Err(hint_template(api, env, err).await),
    };
    show(api, data, how, out).await
}

/// The `deploy` mutation for environment `env`; its answer.
pub(super) async fn request(api: &Api, env: &str, how: How) -> anyhow::Result<Value> {
    let q = format!(
        "mutation($env: String!, $policy: PlacementPolicy, $wait: Boolean) {{
           deploy(environment: $env, policy: $policy, waitForQuota: $wait) {{ {FIELDS} }} }}"
    );
    let vars = json!({
        "env": env,
        "policy": how.policy.map(Policy::graphql),
        "wait": how.wait_for_quota,
    });
    api.run(&q, vars).await
}

/// Prints a deployment just requested (the answer of [`request`]) and, with
/// `--watch`, follows it to a settled state.
pub(super) async fn show(
    api: &Api,
    data: Value,
    how: How,
    out: Output,
) -> anyhow::Result<ExitCode> {
    let watch = how.watch;
    let d = &data["deploy"];
    let id = s(d, "id");
    if how.quiet {
        println!("{id}");
        return Ok(ExitCode::SUCCESS);
    }
    let mut tracker = Tracker::new(out);
    match out {
        Output::Json if !watch => println!("{}", with_aliases(d)),
        Output::Json => {}
        Output::Table => println!(
            "deployment {id} of {} (version {})",
            env_name(d),
            i(d, "environmentVersion")
        ),
    }
    if !watch {
        tracker.show(&Update::from_deployment(d));
        return Ok(ExitCode::SUCCESS);
    }
    let after = i(d, "requestedSeq").saturating_sub(1);
    follow(api, &id, after, true, tracker).await
}

/// A NOT_FOUND for `env` that names a template gets a hint to `--template`.
async fn hint_template(api: &Api, env: &str, err: anyhow::Error) -> anyhow::Error {
    let not_found = err
        .downcast_ref::<GqlErrors>()
        .is_some_and(|e| e.has_code("NOT_FOUND"));
    if !not_found {
        return err;
    }
    let is_template = match api.run(TEMPLATES, json!({})).await {
        Ok(data) => data["templates"]
            .as_array()
            .is_some_and(|l| l.iter().any(|t| t["name"].as_str() == Some(env))),
        Err(_) => false,
    };
    match err.downcast::<GqlErrors>() {
        Ok(mut errors) if is_template => {
            if let Some(first) = errors.0.first_mut() {
                first.message = format!(
                    "no environment named {env:?}, but there is a template of that name: \
                     deploy it with `dcloud deploy --template {env}` (or make an environment \
                     from it with `dcloud create --template {env}`)"
                );
            }
            errors.into()
        }
        Ok(errors) => errors.into(),
        Err(err) => err,
    }
}

fn env_name(d: &Value) -> String {
    match d["environmentName"].as_str() {
        Some(name) => name.to_string(),
        None => s(d, "environmentId"),
    }
}

pub(super) async fn status_all(api: &Api, watch: bool, out: Output) -> anyhow::Result<ExitCode> {
    let q = format!(
        "query($after: String) {{ deployments(first: 100, after: $after) {{
           pageInfo {{ hasNextPage endCursor }} nodes {{ {FIELDS} }} }} }}"
    );
    let mut vars = json!({});
    let mut list = Vec::new();
    loop {
        let data = api.run(&q, vars.clone()).await?;
        let conn = &data["deployments"];
        list.extend(conn["nodes"].as_array().into_iter().flatten().cloned());
        match conn["pageInfo"]["endCursor"].as_str() {
            Some(c) if conn["pageInfo"]["hasNextPage"].as_bool() == Some(true) => {
                vars["after"] = json!(c)
            }
            _ => break,
        }
    }
    match out {
        Output::Json => println!("{}", Value::Array(list.iter().map(with_aliases).collect())),
        Output::Table => {
            let rows: Vec<Vec<String>> = list
                .iter()
                .map(|d| {
                    let detail = match (&d["build"], pending_text(d)) {
                        (b, _) if b.is_object() && s(d, "status") == "BUILDING" => {
                            format!("step {}/{}", i(b, "step"), i(b, "steps"))
                        }
                        (_, Some(r)) => r,
                        _ => d["failure"]["message"].as_str().unwrap_or("").to_string(),
                    };
                    vec![
                        s(d, "id"),
                        env_name(d),
                        s(d, "owner"),
                        s(d, "nodeId"),
                        lower(d, "status"),
                        format::time_ms(i(d, "requestedMs")),
                        detail,
                    ]
                })
                .collect();
            let headers = [
                "ID",
                "ENVIRONMENT",
                "OWNER",
                "NODE",
                "STATUS",
                "REQUESTED",
                "DETAIL",
            ];
            println!("{}", format::table(&headers, &rows));
        }
    }
    if !watch {
        return Ok(ExitCode::SUCCESS);
    }
    // Every status change of every deployment the caller may see, from now on.
    let sub = format!(
        "subscription {{ deploymentUpdates {{ seq timeMs type deploymentId status statusChanged
           build {{ step steps }} pendingReasons {{ reason count }} exitCode deployment {{ {FIELDS} }} }} }}"
    );
    let mut sub = Subscription::open(api, &sub, json!({})).await?;
    while let Some(data) = sub.next().await? {
        let u = &data["deploymentUpdates"];
        match out {
            Output::Json => println!("{u}"),
            Output::Table if u["statusChanged"].as_bool() == Some(true) => println!(
                "{:>6}  {}  {}  {}",
                i(u, "seq"),
                format::time_ms(i(u, "timeMs")),
                s(u, "deploymentId"),
                lower(u, "status")
            ),
            Output::Table => {}
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn status_one(
    api: &Api,
    id: &str,
    watch: bool,
    out: Output,
) -> anyhow::Result<ExitCode> {
    let q = format!("query($id: ID!) {{ deployment(id: $id) {{ {FIELDS} {DETAIL} }} }}");
    let data = api.run(&q, json!({ "id": id })).await?;
    let d = &data["deployment"];
    match out {
        Output::Json => println!("{}", with_aliases(d)),
        Output::Table => print_detail(d),
    }
    if !watch || d["live"].as_bool() == Some(false) {
        return Ok(ExitCode::SUCCESS);
    }
    let mut tracker = Tracker::new(out);
    tracker.status = Some(s(d, "status"));
    let last = d["history"]
        .as_array()
        .and_then(|h| h.last())
        .map_or(0, |h| i(h, "seq"));
    follow(api, id, last, false, tracker).await
}

/// The node, and while it is lost since when and when the deployment moves:
/// `n-3 (LOST since 12:00:01; placed elsewhere at 12:05:01 unless it comes back)`.
fn node_text(d: &Value) -> String {
    let node = s(d, "nodeId");
    match (d["nodeLostSinceMs"].as_i64(), d["movesAtMs"].as_i64()) {
        (Some(since), Some(moves)) => format!(
            "{node} (LOST since {}; placed elsewhere at {} unless it comes back)",
            format::time_ms(since),
            format::time_ms(moves)
        ),
        (Some(since), None) => format!("{node} (LOST since {})", format::time_ms(since)),
        _ => node,
    }
}

fn print_detail(d: &Value) {
    let need = &d["need"];
    let mut lines = vec![
        ("deployment", s(d, "id")),
        (
            "environment",
            format!(
                "{} ({} v{})",
                env_name(d),
                s(d, "environmentId"),
                i(d, "environmentVersion")
            ),
        ),
        ("owner", s(d, "owner")),
        ("status", lower(d, "status")),
        ("node", node_text(d)),
        ("policy", lower(d, "policy")),
        (
            "needs",
            format!(
                "{} cpu, {} memory, {} gpu, {} storage",
                format::cpu(i(need, "cpuMillis")),
                format::bytes(i(need, "memoryBytes")),
                i(need, "gpus"),
                format::bytes(i(need, "storageBytes"))
            ),
        ),
        ("requested", format::time_ms(i(d, "requestedMs"))),
    ];
    if let Some(img) = d["image"].as_str() {
        lines.push(("image", img.to_string()));
    }
    if let Some(r) = format::reasons(d.get("pendingReasons")) {
        lines.push(("pending", r));
    }
    if d["build"].is_object() {
        let b = &d["build"];
        lines.push(("build", format!("step {}/{}", i(b, "step"), i(b, "steps"))));
    }
    if let Some(code) = d["exitCode"].as_i64() {
        lines.push(("exit code", code.to_string()));
    }
    if let Some(out) = d["lastOutput"].as_str().filter(|o| !o.is_empty()) {
        let out = out.trim_end().replace('\n', "\n             ");
        lines.push(("last output", out));
    }
    if d["failure"].is_object() {
        lines.push(("failure", s(&d["failure"], "message")));
    }
    // Endpoints (`Deployment.endpoints`, branch `agent`) go here: one `endpoint:` line
    // per URL, before the placement record.
    let p = &d["placement"];
    if p.is_object() {
        let runners: Vec<String> = p["runnersUp"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| {
                format!(
                    "{} ({:.3})",
                    s(c, "nodeId"),
                    i(c, "scoreMilli") as f64 / 1000.0
                )
            })
            .collect();
        let mut text = format!(
            "node {} at seq {}, score {:.3}, {} candidate(s)",
            s(p, "nodeId"),
            i(p, "seq"),
            i(p, "scoreMilli") as f64 / 1000.0,
            i(p, "candidates")
        );
        if !runners.is_empty() {
            text.push_str(&format!("; runners-up: {}", runners.join(", ")));
        }
        if let Some(r) = format::reasons(p.get("rejected")) {
            text.push_str(&format!("; rejected: {r}"));
        }
        lines.push(("placement", text));
    }
    for e in d["endpoints"].as_array().into_iter().flatten() {
        lines.push(("endpoint", endpoint_text(e)));
    }
    for v in d["volumes"].as_array().into_iter().flatten() {
        lines.push(("storage", volume_text(v)));
    }
    for w in d["warnings"].as_array().into_iter().flatten() {
        let when = format::time_ms(i(w, "timeMs"));
        lines.push(("warning", format!("{when} {}", s(w, "message"))));
    }
    for (k, v) in lines {
        println!("{:<12} {v}", format!("{k}:"));
    }
    println!("history:");
    let rows: Vec<Vec<String>> = d["history"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|h| {
            vec![
                i(h, "seq").to_string(),
                format::time_ms(i(h, "timeMs")),
                lower(h, "status"),
            ]
        })
        .collect();
    for line in format::table(&["SEQ", "TIME", "STATUS"], &rows).lines() {
        println!("  {line}");
    }
}

/// One storage target's use: `/data 20Mi of 64Mi (31%, watched)`, and `OVER ITS SIZE`
/// when it holds more than was asked for.
fn volume_text(v: &Value) -> String {
    let used = format::bytes(i(v, "usedBytes"));
    let size = i(v, "sizeBytes");
    if size <= 0 {
        return format!("{} {used} (no size given)", s(v, "target"));
    }
    let how = if v["enforced"].as_bool() == Some(true) {
        "enforced"
    } else {
        "watched"
    };
    let mut text = format!(
        "{} {used} of {} ({}%, {how})",
        s(v, "target"),
        format::bytes(size),
        i(v, "usedBytes") * 100 / size
    );
    if v["over"].as_bool() == Some(true) {
        text.push_str(" OVER ITS SIZE");
    }
    text
}

/// What one update (or one poll) tells about a deployment.
struct Update {
    status: String,
    build: Option<(i64, i64)>,
    reasons: Option<String>,
    exit_code: Option<i64>,
    failure: Option<String>,
}

impl Update {
    fn from_deployment(d: &Value) -> Self {
        Update {
            status: s(d, "status"),
            build: d["build"]
                .is_object()
                .then(|| (i(&d["build"], "step"), i(&d["build"], "steps"))),
            reasons: pending_text(d),
            exit_code: d["exitCode"].as_i64(),
            failure: d["failure"]["message"].as_str().map(str::to_string),
        }
    }

    fn from_event(u: &Value) -> Self {
        let d = &u["deployment"];
        let status = s(u, "status");
        let reasons = match format::reasons(u.get("pendingReasons")) {
            Some(r) => Some(r),
            None if status == "PENDING" || status == "LOST" => pending_text(d),
            None => None,
        };
        Update {
            build: u["build"]
                .is_object()
                .then(|| (i(&u["build"], "step"), i(&u["build"], "steps"))),
            reasons,
            exit_code: u["exitCode"].as_i64(),
            failure: (!is_live(&status))
                .then(|| d["failure"]["message"].as_str().map(str::to_string))
                .flatten(),
            status,
        }
    }
}

/// The pending reasons of a waiting deployment (`no nodes` when none were considered),
/// or the quota it waits for.
fn pending_text(d: &Value) -> Option<String> {
    let st = s(d, "status");
    if st != "PENDING" && st != "LOST" {
        return None;
    }
    if let Some(wait) = d["quotaWait"].as_str() {
        return Some(wait.to_string());
    }
    Some(
        format::reasons(d.get("pendingReasons")).unwrap_or_else(|| "no node to place it on".into()),
    )
}

fn is_live(status: &str) -> bool {
    !matches!(status, "EXITED" | "OOM_KILLED" | "FAILED" | "STOPPED")
}

/// Prints what changed since the last update.
struct Tracker {
    out: Output,
    status: Option<String>,
    build: Option<(i64, i64)>,
    reasons: Option<String>,
}

impl Tracker {
    fn new(out: Output) -> Self {
        Tracker {
            out,
            status: None,
            build: None,
            reasons: None,
        }
    }

    fn show(&mut self, u: &Update) {
        let table = self.out == Output::Table;
        if self.status.as_deref() != Some(u.status.as_str()) {
            self.status = Some(u.status.clone());
            if table {
                let mut line = format!("status: {}", u.status.to_lowercase());
                if let Some(code) = u.exit_code {
                    line.push_str(&format!(" (exit code {code})"));
                }
                if let Some(f) = &u.failure {
                    line.push_str(&format!(": {f}"));
                }
                println!("{line}");
            }
        }
        if u.build.is_some() && u.build != self.build {
            self.build = u.build;
            if let (true, Some((step, steps))) = (table, u.build) {
                println!("build: step {step}/{steps}");
            }
        }
        if u.reasons.is_some() && u.reasons != self.reasons {
            self.reasons = u.reasons.clone();
            if let (true, Some(r)) = (table, &u.reasons) {
                println!("pending: {r}");
            }
        }
    }

    /// `Some(code)` once following can stop.
    fn done(&self, until_running: bool) -> Option<ExitCode> {
        let status = self.status.as_deref()?;
        match status {
            "RUNNING" if until_running => Some(ExitCode::SUCCESS),
            s if !is_live(s) => Some(if until_running {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            }),
            _ => None,
        }
    }
}

const UPDATES: &str = "subscription($id: ID, $after: Int) {
  deploymentUpdates(id: $id, after: $after) {
    seq timeMs type deploymentId status statusChanged
    build { step steps } pendingReasons { reason count } exitCode
    deployment { status nodeId pendingReasons { reason count } quotaWait failure { message } exitCode }
  }
}";

/// Follows deployment `id` from the event after `after`: over the subscription, else
/// by polling. `until_running`: stop at running (exit 0) or finished (exit 1);
/// otherwise stop once finished (exit 0).
async fn follow(
    api: &Api,
    id: &str,
    after: i64,
    until_running: bool,
    mut tracker: Tracker,
) -> anyhow::Result<ExitCode> {
    if let Some(code) = tracker.done(until_running) {
        return Ok(code);
    }
    let json_out = tracker.out == Output::Json;
    // A subscription that ends (its server went away) is opened again after the last
    // seq seen, on whichever server answers (`--server a,b,c`), for up to RETRY_FOR;
    // then the deployment is polled instead.
    let mut after = after;
    let mut pause = Duration::from_millis(100);
    let mut gave_up_at = std::time::Instant::now() + super::api::RETRY_FOR;
    'subscribe: loop {
        if std::time::Instant::now() > gave_up_at {
            eprintln!("warning: the subscription keeps ending; polling instead");
            break;
        }
        match Subscription::open(api, UPDATES, json!({"id": id, "after": after})).await {
            Ok(mut sub) => loop {
                match sub.next().await {
                    Ok(Some(data)) => {
                        let u = &data["deploymentUpdates"];
                        if let Some(seq) = u["seq"].as_i64() {
                            after = after.max(seq);
                        }
                        if json_out {
                            println!("{u}");
                        }
                        tracker.show(&Update::from_event(u));
                        if let Some(code) = tracker.done(until_running) {
                            return Ok(code);
                        }
                        pause = Duration::from_millis(100);
                        gave_up_at = std::time::Instant::now() + super::api::RETRY_FOR;
                    }
                    Err(err) if err.downcast_ref::<GqlErrors>().is_some() => return Err(err),
                    Ok(None) => {
                        eprintln!("warning: the subscription ended; resuming after seq {after}");
                        api.move_on();
                        break;
                    }
                    Err(err) => {
                        eprintln!("warning: {err:#}; resuming after seq {after}");
                        api.move_on();
                        break;
                    }
                }
            },
            Err(err) if std::time::Instant::now() + pause < gave_up_at => {
                tracing::debug!(error = %format!("{err:#}"), "cannot open the subscription; trying again");
                api.move_on();
            }
            Err(err) => {
                eprintln!("warning: {err:#}; polling instead");
                break 'subscribe;
            }
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(2));
    }
    let q = format!("query($id: ID!) {{ deployment(id: $id) {{ {FIELDS} }} }}");
    loop {
        let data = api.run(&q, json!({ "id": id })).await?;
        let d = &data["deployment"];
        if json_out {
            println!("{}", with_aliases(d));
        }
        tracker.show(&Update::from_deployment(d));
        if let Some(code) = tracker.done(until_running) {
            return Ok(code);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
