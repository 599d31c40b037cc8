//! Data-driven table for everything but environment fields: syntax, document kinds,
//! YAML specifics, templates, catalogs, services and dataset documents.

mod config_support;

use config_support::{base, check, check_errors, env, merge};
use dcloud_projections::config::{
    parse_catalog, parse_document, parse_service, parse_template, Format,
};
use serde_json::{json, Value};

#[test]
fn syntax_and_kinds() {
    check("", "the document is empty");
    check("   \n# only a comment\n", "the document is empty");
    // Auto falls back to YAML, which forgives a trailing comma; JSON does not.
    check("{\"env-name\": \"x\",}", "os: missing; expected an operating system such as ubuntu\nresources: missing; expected an object with ram, cpu, gpu and storage");
    check_errors(
        parse_document("{\"env-name\": \"x\",}", Format::Json),
        "not valid json: trailing comma at line 1 column 18",
    );
    check(
        r#"{"os": "ubuntu", "os": "debian"}"#,
        r#"not valid json: duplicate field "os" at line 1 column 21"#,
    );
    check("env-name: [unclosed", "not valid yaml: did not find expected ',' or ']' at line 2 column 1, while parsing a flow sequence at line 1 column 11");
    check("42", "expected a document (an object), found a number");
    check(
        r#"{"os": "ubuntu"}"#,
        "cannot tell what kind of document this is; expected an environment (env-name), a template (template-name, or {\"template\": {…}}), a library catalog (specifications), a service (service-name) or a dataset category (category-name)",
    );
    check("os: ubuntu\nenv-name: x\nresources: {ram: !big 1G, cpu: .nan}\n", "resources.ram: yaml tags such as !big are not supported\nresources.cpu: .nan is not a finite number");
}

#[test]
fn yaml_documents() {
    let yaml =
        "env-name: demo\nos: ubuntu\nresources:\n  ram: 1G\n  cpu: 0.5\n  gpu: 0\n  storage: 2\n";
    check(yaml, "ok: environment");
    check(
        &format!("{yaml}---\nservice-name: broker\nip: 10.0.0.1\nport: 9092\n"),
        "ok: environment, service",
    );
    check("base: &b {ram: 1G, cpu: 1}\n", "cannot tell what kind of document this is; expected an environment (env-name), a template (template-name, or {\"template\": {…}}), a library catalog (specifications), a service (service-name) or a dataset category (category-name)");
    check(
        "env-name: demo\nos: ubuntu\nresources:\n  ram: 1G\n  cpu: 1\n  ram: 2G\n",
        "not valid yaml: resources: duplicate entry with key \"ram\" at line 4 column 3",
    );
}

#[test]
fn templates() {
    let inner = base();
    check(&json!({"template": inner}).to_string(), "ok: template");
    let mut named = base();
    merge(
        &mut named,
        json!({"env-name": null, "template-name": "pytorch"}),
    );
    check(&named.to_string(), "ok: template");
    let mut bad = base();
    merge(&mut bad["resources"], json!({"ram": "lots"}));
    check(
        &json!({"template": bad}).to_string(),
        r#"template.resources.ram: "lots" is not a size; use 512M, 1G, 2.5G"#,
    );
    let mut both = base();
    merge(&mut both, json!({"template-name": "pytorch"}));
    check(
        &both.to_string(),
        "template-name: give either template-name or env-name, not both",
    );
    check_errors(parse_template(&env(json!({})), Format::Json), "ok");
}

#[test]
fn catalogs() {
    let catalog = |patch: Value| {
        let mut doc = json!({"os": "ubuntu", "init-steps": ["apt-get -y update"], "specifications": {
            "python": {"installation-steps": ["apt-get install -y python3"], "libraries": {"numpy": ["pip install numpy"]}}
        }});
        merge(&mut doc, patch);
        doc.to_string()
    };
    check(&catalog(json!({})), "ok: catalog");
    check_errors(
        parse_catalog(&catalog(json!({"os": ""})), Format::Json),
        "os: must not be empty",
    );
    check(
        &catalog(
            json!({"base-image": "Ubuntu 22.04", "init-steps": ["apt-get update\napt-get upgrade", "echo \\"]}),
        ),
        r#"
base-image: "Ubuntu 22.04" is not an image reference; use a form such as ubuntu:22.04 or registry.example.com/team/base:1.0
init-steps[0]: contains a line break; give each step as its own command
init-steps[1]: ends with '\', which would join it to the next step"#,
    );
    check(
        &catalog(
            json!({"specifications": {"python": {"install-steps": [], "libraries": {"numpy": [""], "bad name": []}}}}),
        ),
        r#"
specifications.python.install-steps: unknown field "install-steps"; did you mean "installation-steps"?
specifications.python.libraries.bad name: "bad name" is not a valid name; use at most 128 characters without spaces
specifications.python.libraries.numpy[0]: must not be empty"#,
    );
    check(
        &catalog(json!({"specifications": ["python"]})),
        "specifications: expected an object of languages, found a list",
    );
}

#[test]
fn services() {
    check(
        r#"{"service-name": "dfs", "ip": "10.0.0.1", "port": "8003", "ttl": 30}"#,
        "ok: service",
    );
    check(
        r#"{"service-name": "dfs", "ip": "", "port": 70000, "ttl": "soon"}"#,
        r#"
ip: must not be empty
port: 70000 is not a port; use a number from 1 to 65535
ttl: "soon" is not a duration; use seconds such as 30, or 30s, 5m, 500ms"#,
    );
    check(
        r#"{"service-name": "broker", "ip": "10.0.0.1", "servers": [{"ip": "10.0.0.2", "port": 1}]}"#,
        "ip: give either ip and port, or servers, not both",
    );
    check(
        r#"{"service-name": "broker", "servers": []}"#,
        "servers: must not be empty; expected a list of {ip, port}",
    );
    check(
        r#"{"service-name": "broker", "servers": [{"ip": "10.0.0.2"}, {"host": "x", "port": 1}]}"#,
        r#"
servers[0].port: missing; expected a port such as 8003
servers[1].host: unknown field "host"; known: "ip", "port"
servers[1].ip: missing; expected an address such as 127.0.0.1"#,
    );
    check_errors(parse_service(r#"{"service-name": "x"}"#, Format::Json), "ip: missing; expected an address such as 127.0.0.1\nport: missing; expected a port such as 8003");
}

#[test]
fn dataset_documents() {
    check(
        r#"{"_id": {"$oid": "65a1f0c2d4e5f60718293a30"}, "category-name": "imaging", "db": [{"db-name": "coco", "dataset": [{"dataset-name": "train2017", "version": 3}]}]}"#,
        "ok: datasets",
    );
    check(
        r#"{"category-name": "imaging"}"#,
        "db: missing; expected a list of {db-name, dataset}",
    );
}
