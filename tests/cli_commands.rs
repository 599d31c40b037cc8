//! End-to-end: the `dcloud` binary's client commands against a real server on port 0
//! (apply, deploy without agents, status, stop, events, export, token create, auth).

mod cli_support;

use cli_support::{data, seed, TestServer};
use serde_json::Value;

#[test]
fn token_create_prints_the_token_once() {
    let server = TestServer::start();
    let run = server.admin(&[
        "token", "create", "--role", "user", "--name", "alice", "--output", "json",
    ]);
    run.ok();
    let t = run.json();
    let token = t["token"].as_str().expect("token field");
    assert!(!token.is_empty());
    assert_eq!(t["role"], "USER");
    assert_eq!(t["name"], "alice");
    // Table output: the token alone on stdout.
    let run = server.admin(&["token", "create", "--role", "auditor", "--name", "carol"]);
    run.ok();
    let plain = run.stdout.trim();
    assert_eq!(plain.lines().count(), 1, "{}", run.stdout);
    // Both tokens work.
    server.cli(token, &["status", "--output", "json"]).ok();
    server.cli(plain, &["status"]).ok();
}

#[test]
fn apply_prints_what_it_did_and_export_round_trips() {
    let server = TestServer::start();
    let run = server.admin(&["apply", "-f", &data("setup.json")]);
    run.ok();
    assert!(
        run.stdout.contains("catalog ubuntu created"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("datasets imaging"), "{}", run.stdout);
    let run = server.admin(&["apply", "-f", &data("environment.json"), "--output", "json"]);
    run.ok();
    let doc = &run.json()["documents"][0];
    assert_eq!(doc["kind"], "ENVIRONMENT");
    assert_eq!(doc["action"], "CREATED");
    assert_eq!(doc["version"], 1);
    let env_id = doc["id"].as_str().expect("environment id").to_string();

    // Export by name and by id: the original JSON.
    let by_name = server.admin(&["export", "vision-train"]);
    by_name.ok();
    let exported = by_name.json();
    assert_eq!(exported["env-name"], "vision-train");
    assert_eq!(exported["resources"]["ram"], "4G");
    let by_id = server.admin(&["export", &env_id]);
    assert_eq!(by_id.ok().json(), exported);

    // Applying the export again changes nothing.
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("exported.json");
    std::fs::write(&path, &by_name.stdout).expect("write export");
    let run = server.admin(&["apply", "-f", path.to_str().expect("utf-8 path")]);
    run.ok();
    assert_eq!(
        run.stdout.trim(),
        format!("environment {env_id} unchanged (version 1)")
    );

    // A YAML document from stdin.
    let mut child = server
        .command(Some(&server.admin), &["apply", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let yaml = std::fs::read(data("environment.yaml")).expect("read yaml");
    std::io::Write::write_all(&mut child.stdin.take().expect("stdin"), &yaml).expect("write");
    let out = child.wait_with_output().expect("wait");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with("environment ") && text.contains("created (version 1)"),
        "{text}"
    );
}

#[test]
fn an_invalid_document_prints_its_field_paths_and_exits_1() {
    let server = TestServer::start();
    server.admin(&["apply", "-f", &data("setup.json")]).ok();
    let run = server.admin(&["apply", "-f", &data("invalid-ram.yaml")]);
    assert_eq!(run.code, Some(1), "{}{}", run.stdout, run.stderr);
    assert!(run.stderr.contains("BAD_USER_INPUT"), "{}", run.stderr);
    assert!(
        run.stderr.lines().any(|l| l.starts_with("resources.ram: ")),
        "{}",
        run.stderr
    );
    // Nothing was written.
    let envs = server.graphql(
        &server.admin,
        "{ environments { totalCount } }",
        Value::Null,
    );
    assert_eq!(envs["data"]["environments"]["totalCount"], 0);
    // With --output json: the errors on stdout.
    let run = server.admin(&["apply", "-f", &data("invalid-ram.yaml"), "--output", "json"]);
    assert_eq!(run.code, Some(1));
    let errors = &run.json()["errors"];
    assert_eq!(errors[0]["extensions"]["code"], "BAD_USER_INPUT");
}

#[test]
fn deploy_without_nodes_is_pending_and_status_stop_events_follow_it() {
    let server = TestServer::start();
    seed(&server);
    let run = server.admin(&["deploy", "notebook-small"]);
    run.ok();
    assert!(run.stdout.contains("status: pending"), "{}", run.stdout);
    assert!(run.stdout.contains("pending: "), "{}", run.stdout);

    let list = server.admin(&["status", "--output", "json"]);
    let list = list.ok().json();
    let items = list.as_array().expect("an array");
    assert_eq!(items.len(), 1);
    let d = &items[0];
    assert_eq!(d["status"], "pending");
    assert!(d["node"].is_null());
    assert_eq!(d["environment"], "notebook-small");
    let id = d["id"].as_str().expect("id").to_string();

    let table = server.admin(&["status"]);
    table.ok();
    assert!(table.stdout.starts_with("ID "), "{}", table.stdout);
    assert!(table.stdout.contains(&id) && table.stdout.contains("pending"));

    let one = server.admin(&["status", &id]);
    one.ok();
    assert!(one.stdout.contains("history:"), "{}", one.stdout);
    assert!(
        one.stdout.contains("status:      pending"),
        "{}",
        one.stdout
    );

    let stop = server.admin(&["stop", &id]);
    stop.ok();
    assert_eq!(stop.stdout.trim(), format!("deployment {id}: stopped"));
    let one = server
        .admin(&["status", &id, "--output", "json"])
        .ok()
        .json();
    assert_eq!(one["status"], "stopped");
    let statuses: Vec<&str> = one["history"]
        .as_array()
        .expect("history")
        .iter()
        .filter_map(|h| h["status"].as_str())
        .collect();
    assert_eq!(statuses, ["PENDING", "STOPPED"]);

    let events = server.admin(&["events", "--after", "0"]);
    events.ok();
    let lines: Vec<&str> = events.stdout.lines().collect();
    assert!(lines[0].trim_start().starts_with("1 "), "{}", events.stdout);
    let requested = lines
        .iter()
        .find(|l| l.contains("DeploymentRequested"))
        .expect("a DeploymentRequested line");
    assert!(
        requested.contains(&format!("deployment:{id}")),
        "{requested}"
    );
    let json = server.admin(&[
        "events",
        "--type",
        "DeploymentRequested",
        "--output",
        "json",
    ]);
    let json = json.ok().json();
    assert_eq!(json.as_array().map(Vec::len), Some(1));
    assert_eq!(json[0]["type"], "DeploymentRequested");
    let last = json[0]["seq"].as_u64().expect("seq");
    let after = server.admin(&["events", "--after", &last.to_string(), "--output", "json"]);
    let after = after.ok().json();
    assert!(after
        .as_array()
        .expect("array")
        .iter()
        .all(|e| e["seq"].as_u64() > Some(last)));
}

#[test]
fn a_user_cannot_see_the_admins_deployment() {
    let server = TestServer::start();
    seed(&server);
    let user = server.token("user", "bob");
    let d = server.admin(&["deploy", "notebook-small", "--output", "json"]);
    let id = d.ok().json()["id"].as_str().expect("id").to_string();
    let list = server
        .cli(&user, &["status", "--output", "json"])
        .ok()
        .json();
    assert_eq!(list, Value::Array(vec![]));
    let run = server.cli(&user, &["status", &id]);
    assert_eq!(run.code, Some(1), "{}", run.stdout);
    assert!(
        run.stderr.contains("[FORBIDDEN]") || run.stderr.contains("[NOT_FOUND]"),
        "{}",
        run.stderr
    );
    let run = server.cli(&user, &["stop", &id]);
    assert_eq!(run.code, Some(1));
    // The admin still sees it live.
    let one = server
        .admin(&["status", &id, "--output", "json"])
        .ok()
        .json();
    assert_eq!(one["status"], "pending");
}

#[test]
fn missing_token_and_unreachable_server_are_usage_errors() {
    let server = TestServer::start();
    let out = server.command(None, &["status"]).output().expect("run");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--token") && err.contains("DCLOUD_TOKEN"),
        "{err}"
    );

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_dcloud"))
        .args(["--server", "http://127.0.0.1:9", "--token", "x", "nodes"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot reach the server"));

    let run = server.cli("not-a-token", &["status"]);
    assert_eq!(run.code, Some(1));
    assert!(run.stderr.contains("[UNAUTHENTICATED]"), "{}", run.stderr);
}
