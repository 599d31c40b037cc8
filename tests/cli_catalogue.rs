//! End-to-end: the catalogue and quota commands of the `dcloud` binary against a real
//! server on port 0 (`templates`, `environments`, `catalog`, `create --template
//! --set`, `deploy --template`, `deploy NAME` naming a template, `me`, `quota …`,
//! `apply --as-template`, and the repository's `examples/`).

mod cli_support;

use cli_support::TestServer;

fn starter(name: &str) -> String {
    format!("{}/src/server/starter/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn example(name: &str) -> String {
    format!("{}/examples/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// A server with the starter catalog and templates.
fn server() -> TestServer {
    let server = TestServer::start();
    server
        .admin(&["apply", "-f", &starter("catalog.json")])
        .ok();
    server
        .admin(&["apply", "-f", &starter("templates.json")])
        .ok();
    server
}

#[test]
fn templates_environments_and_catalog_list_the_catalogue() {
    let server = server();
    let run = server.admin(&["templates"]);
    run.ok();
    assert!(run.stdout.starts_with("NAME"), "{}", run.stdout);
    assert!(run.stdout.contains("notebook-cpu"), "{}", run.stdout);
    let names: Vec<String> = server
        .admin(&["templates", "--output", "json"])
        .json()
        .as_array()
        .expect("list")
        .iter()
        .map(|t| t["name"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(names, ["notebook-cpu", "pytorch-1gpu", "tensorflow-1gpu"]);

    let alice = server.token("user", "alice");
    let run = server.cli(&alice, &["catalog", "ubuntu"]);
    run.ok();
    assert!(run.stdout.contains("jupyter-notebook"), "{}", run.stdout);
    assert!(
        !run.stdout.contains("pip install"),
        "no commands: {}",
        run.stdout
    );
    let all = server.cli(&alice, &["catalog", "--output", "json"]).json();
    assert_eq!(all.as_array().map(Vec::len), Some(2));
    let missing = server.cli(&alice, &["catalog", "plan9"]);
    assert_eq!(missing.code, Some(1));
    assert!(missing.stderr.contains("NOT_FOUND"), "{}", missing.stderr);

    server
        .cli(&alice, &["apply", "-f", &example("environment.yaml")])
        .ok();
    server
        .cli(&alice, &["apply", "-f", &example("environment.json")])
        .ok();
    let run = server.cli(&alice, &["environments"]);
    run.ok();
    assert!(run.stdout.contains("analysis-notebook"), "{}", run.stdout);
    assert!(run.stdout.contains("scoring-service"), "{}", run.stdout);
    let envs = server
        .cli(&alice, &["environments", "--output", "json"])
        .json();
    assert_eq!(envs.as_array().map(Vec::len), Some(2));
}

#[test]
fn the_repository_examples_apply_as_their_kinds() {
    let server = server();
    let run = server.admin(&["apply", "-f", &example("library-catalog.json")]);
    run.ok();
    assert!(
        run.stdout.contains("catalog debian created"),
        "{}",
        run.stdout
    );
    let run = server.admin(&["apply", "-f", &example("datasets.yaml")]);
    run.ok();
    assert!(
        run.stdout.contains("vision") && run.stdout.contains("audio"),
        "{}",
        run.stdout
    );
    let run = server.admin(&["apply", "-f", &example("template.json")]);
    run.ok();
    assert!(
        run.stdout.contains("template sklearn-small created"),
        "{}",
        run.stdout
    );
    // An environment document saved as a template with --as-template.
    let run = server.admin(&["apply", "-f", &example("environment.yaml"), "--as-template"]);
    run.ok();
    assert!(
        run.stdout.contains("template analysis-notebook created"),
        "{}",
        run.stdout
    );
    let run = server.admin(&[
        "apply",
        "-f",
        &example("library-catalog.json"),
        "--as-template",
    ]);
    assert_eq!(run.code, Some(2));
    assert!(
        run.stderr
            .contains("is a library catalog, not an environment"),
        "{}",
        run.stderr
    );
}

#[test]
fn create_from_a_template_with_overrides_and_bad_sets_change_nothing() {
    let server = server();
    let alice = server.token("user", "alice");
    let run = server.cli(
        &alice,
        &[
            "create",
            "--template",
            "notebook-cpu",
            "--name",
            "big-notebook",
            "--set",
            "resources.ram=4G",
            "--set",
            "resources.cpu=2",
            "--set",
            "languages.python=numpy,pandas",
            "--output",
            "json",
        ],
    );
    run.ok();
    let env = run.json();
    assert_eq!(env["name"], "big-notebook");
    assert_eq!(env["owner"], "alice");
    let detail = server.graphql(
        &alice,
        "query($id: ID!) { environment(id: $id) { spec { resources { cpuMillis memoryBytes } languages { name libraries } } } }",
        serde_json::json!({"id": env["id"]}),
    );
    let spec = &detail["data"]["environment"]["spec"];
    assert_eq!(spec["resources"]["cpuMillis"], 2000);
    assert_eq!(spec["resources"]["memoryBytes"], 4u64 << 30);
    assert_eq!(
        spec["languages"][0]["libraries"],
        serde_json::json!(["numpy", "pandas"])
    );

    let bad = server.cli(
        &alice,
        &[
            "create",
            "--template",
            "notebook-cpu",
            "--set",
            "resources.gpu=two",
            "--set",
            "colour=blue",
        ],
    );
    assert_eq!(bad.code, Some(2), "{}", bad.stderr);
    assert!(
        bad.stderr
            .contains("--set resources.gpu=\"two\": is not a whole number"),
        "{}",
        bad.stderr
    );
    assert!(
        bad.stderr
            .contains("--set colour: unknown field; expected one of"),
        "{}",
        bad.stderr
    );
    assert!(bad.stderr.contains("nothing was created"), "{}", bad.stderr);
    let envs = server
        .cli(&alice, &["environments", "--output", "json"])
        .json();
    assert_eq!(
        envs.as_array().map(Vec::len),
        Some(1),
        "the bad create made nothing"
    );
    assert_eq!(
        bad.stderr.matches("unknown field").count(),
        1,
        "printed once: {}",
        bad.stderr
    );
}

#[test]
fn deploy_takes_a_template_in_one_step_and_points_a_template_name_to_it() {
    let server = server();
    let alice = server.token("user", "alice");
    let run = server.cli(&alice, &["deploy", "notebook-cpu"]);
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(
        run.stderr.contains("dcloud deploy --template notebook-cpu"),
        "{}",
        run.stderr
    );
    assert_eq!(run.stderr.matches("NOT_FOUND").count(), 1, "{}", run.stderr);

    let run = server.cli(&alice, &["deploy", "--template", "notebook-cpu"]);
    run.ok();
    assert!(
        run.stdout.contains("created from template notebook-cpu"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("status: pending"),
        "no node yet: {}",
        run.stdout
    );
    let json = server
        .cli(
            &alice,
            &[
                "deploy",
                "--template",
                "notebook-cpu",
                "--name",
                "nb2",
                "--output",
                "json",
            ],
        )
        .json();
    assert_eq!(json["environment"], "nb2");
    assert_eq!(json["status"], "pending");
    // And an environment name deploys as before; -q prints the id alone.
    let quiet = server.cli(&alice, &["deploy", "nb2", "-q"]);
    quiet.ok();
    let id = quiet.stdout.trim();
    assert!(
        !id.is_empty() && !id.contains(char::is_whitespace),
        "only the id: {:?}",
        quiet.stdout
    );
    server.cli(&alice, &["status", quiet.stdout.trim()]).ok();
}

#[test]
fn quotas_from_the_cli_refuse_name_the_limit_and_show_in_me() {
    let server = server();
    let alice = server.token("user", "alice");
    let refused = server.cli(&alice, &["quota", "set", "alice", "--deployments", "1"]);
    assert_eq!(refused.code, Some(1));
    assert!(refused.stderr.contains("FORBIDDEN"), "{}", refused.stderr);

    let run = server.admin(&[
        "quota",
        "set",
        "alice",
        "--cpu",
        "2",
        "--ram",
        "4G",
        "--deployments",
        "1",
    ]);
    run.ok();
    assert!(
        run.stdout.contains("alice: cpu 0 of 2, memory 0 of 4Gi"),
        "{}",
        run.stdout
    );
    // Unnamed limits stay; `none` lifts one.
    let run = server.admin(&[
        "quota", "set", "alice", "--gpus", "0", "--ram", "none", "--output", "json",
    ]);
    run.ok();
    let q = run.json();
    assert_eq!(
        q["quota"],
        serde_json::json!({"cpuMillis": 2000, "memoryBytes": null, "gpus": 0, "deployments": 1})
    );
    let bad = server.admin(&["quota", "set", "alice", "--ram", "4 GB"]);
    assert_eq!(bad.code, Some(2));
    assert!(
        bad.stderr.contains("--ram \"4 GB\" is not a size"),
        "{}",
        bad.stderr
    );

    server
        .cli(&alice, &["deploy", "--template", "notebook-cpu"])
        .ok();
    let over = server.cli(
        &alice,
        &["deploy", "--template", "notebook-cpu", "--name", "second"],
    );
    assert_eq!(over.code, Some(1), "{}", over.stderr);
    assert!(
        over.stderr
            .contains("error [QUOTA_EXCEEDED]: quota exceeded: deployments 2 of 1"),
        "{}",
        over.stderr
    );
    // The refused deploy made its environment for nothing: it is gone again.
    assert!(
        over.stderr.contains("made for it was deleted"),
        "{}",
        over.stderr
    );
    let envs = server
        .cli(&alice, &["environments", "--output", "json"])
        .json();
    let names: Vec<&str> = envs
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|e| e["name"].as_str())
        .collect();
    assert!(!names.contains(&"second"), "{names:?}");
    let waits = server.cli(
        &alice,
        &[
            "deploy",
            "--template",
            "notebook-cpu",
            "--name",
            "second",
            "--wait-for-quota",
        ],
    );
    waits.ok();
    assert!(
        waits
            .stdout
            .contains("waiting for quota: deployments 2 of 1"),
        "{}",
        waits.stdout
    );

    let me = server.cli(&alice, &["me"]);
    me.ok();
    assert!(me.stdout.contains("name:    alice"), "{}", me.stdout);
    assert!(me.stdout.contains("deployments 1 of 1"), "{}", me.stdout);
    let me = server.cli(&alice, &["me", "--output", "json"]).json();
    assert_eq!(me["usage"]["deployments"], 1);
    assert_eq!(me["quota"]["cpuMillis"], 2000);

    let list = server.admin(&["quota", "list", "--output", "json"]).json();
    assert_eq!(list.as_array().map(Vec::len), Some(1));
    server.admin(&["quota", "clear", "alice"]).ok();
    let get = server.admin(&["quota", "get", "alice"]);
    get.ok();
    assert!(get.stdout.contains("alice: no quota"), "{}", get.stdout);
}
