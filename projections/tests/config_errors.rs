//! Data-driven table of environment documents, good and bad, and the exact errors they
//! produce (`path: message`, one a line, in the order reported), one rule per test.

mod config_support;

use config_support::{check, env, res};
use serde_json::{json, Value};

#[test]
fn good_documents() {
    check(&env(json!({})), "ok: environment");
    check(
        &res(json!({"ram": "512M", "cpu": 2, "gpu": 1, "storage": "20"})),
        "ok: environment",
    );
    check(
        &res(json!({"ram": "2.5g", "cpu": "500m", "gpu": null, "storage": null})),
        "ok: environment",
    );
    check(
        &res(json!({"ram": "1Gi", "cpu": {"$numberDouble": "1.5"}})),
        "ok: environment",
    );
    check(
        &env(json!({"is_active": true, "config_id": {"$numberLong": "7"}})),
        "ok: environment",
    );
    check(
        &env(json!({"creation_time": {"$date": {"$numberLong": "1705051800000"}}})),
        "ok: environment",
    );
    check(
        &env(json!({"version": 2, "node-labels": {"zone": "eu-west", "gpus": 4}})),
        "ok: environment",
    );
    check(
        &env(
            json!({"port-publish": [{"external": {"ports": 80}, "internal": {"ports": {"$numberInt": "8080"}}}]}),
        ),
        "ok: environment",
    );
    check(
        &format!("[{}, {}]", env(json!({})), env(json!({}))),
        "ok: environment, environment",
    );
}

#[test]
fn sizes() {
    check(
        &res(json!({"ram": "1 GB"})),
        r#"resources.ram: "1 GB" is not a size; use 512M, 1G, 2.5G"#,
    );
    check(
        &res(json!({"ram": 4})),
        "resources.ram: 4 is not a size; use 512M, 1G, 2.5G",
    );
    check(
        &res(json!({"ram": "4X"})),
        r#"resources.ram: "4X" is not a size; use 512M, 1G, 2.5G"#,
    );
    check(
        &res(json!({"ram": "0G"})),
        "resources.ram: must be more than 0",
    );
    check(
        &res(json!({"ram": ["1G"]})),
        "resources.ram: expected a size such as 512M, 1G, 2.5G, found a list",
    );
    check(
        &res(json!({"ram": "99999999T"})),
        r#"resources.ram: "99999999T" is too large"#,
    );
    check(
        &res(json!({"ram": null})),
        "resources.ram: missing; expected a size such as 512M, 1G, 2.5G",
    );
    check(
        &res(json!({"storage": "lots"})),
        r#"resources.storage: "lots" is not a size; use 512M, 1G, 2.5G"#,
    );
    check(
        &res(json!({"storage": -1})),
        "resources.storage: -1 is not a size; use 512M, 1G, 2.5G",
    );
}

#[test]
fn cpus_and_gpus() {
    check(
        &res(json!({"cpu": "two"})),
        r#"resources.cpu: "two" is not a number of cpus; use 0.5, 1, 2.0 or 500m"#,
    );
    check(
        &res(json!({"cpu": "0.0001"})),
        r#"resources.cpu: "0.0001" is finer than a thousandth of a cpu"#,
    );
    check(
        &res(json!({"cpu": 0})),
        "resources.cpu: must be more than 0",
    );
    check(
        &res(json!({"cpu": -1})),
        "resources.cpu: -1 is not a number of cpus; use 0.5, 1, 2.0 or 500m",
    );
    check(
        &res(json!({"cpu": true})),
        "resources.cpu: expected a number of cpus such as 0.5, 1, 2.0, found a boolean",
    );
    check(
        &res(json!({"gpu": "1.5"})),
        r#"resources.gpu: "1.5" is not a number of gpus; use a whole number such as 0, 1, 2"#,
    );
    check(
        &res(json!({"gpu": -1})),
        "resources.gpu: -1 is not a number of gpus; use a whole number such as 0, 1, 2",
    );
}

#[test]
fn unknown_fields() {
    check(
        &res(json!({"rams": "1G", "ram": null})),
        r#"
resources.rams: unknown field "rams"; did you mean "ram"?
resources.ram: missing; expected a size such as 512M, 1G, 2.5G"#,
    );
    check(
        &res(json!({"memory": "1G"})),
        r#"resources.memory: unknown field "memory"; known: "ram", "cpu", "gpu", "storage""#,
    );
    check(
        &env(json!({"env_name": "x"})),
        r#"env_name: unknown field "env_name"; did you mean "env-name"?"#,
    );
    check(
        &env(json!({"languages": [{"language": "python"}]})),
        r#"
languages[0].language: unknown field "language"; did you mean "language-name"?
languages[0].language-name: missing; expected a language such as python"#,
    );
}

#[test]
fn names_and_languages() {
    check(&env(json!({"env-name": ""})), "env-name: must not be empty");
    check(
        &env(json!({"env-name": "my env"})),
        r#"env-name: "my env" is not a valid name; use letters, digits, '-', '_' and '.', starting with a letter or digit, at most 64 characters"#,
    );
    check(
        &env(json!({"env-name": 5})),
        "env-name: expected a string, found a number",
    );
    check(
        &env(json!({"env-name": null})),
        "env-name: missing; expected a name such as vision-train",
    );
    check(
        &env(json!({"os": null})),
        "os: missing; expected an operating system such as ubuntu",
    );
    check(
        &env(
            json!({"languages": [{"language-name": "python", "libraries": ["numpy", "", "scikit learn", 3]}]}),
        ),
        r#"
languages[0].libraries[1]: must not be empty
languages[0].libraries[2]: "scikit learn" is not a valid name; use at most 128 characters without spaces
languages[0].libraries[3]: expected library names, found a number"#,
    );
    check(
        &env(json!({"languages": "python"})),
        "languages: expected a list of {language-name, libraries}, found a string",
    );
    check(
        &env(json!({"languages": [{"libraries": "numpy", "language-name": "python"}]})),
        "languages[0].libraries: expected a list of library names, found a string",
    );
}

#[test]
fn ports() {
    let publish = |external: Value, internal: Value| json!({"external": {"ports": external}, "internal": internal});
    check(
        &env(json!({"port-publish": [publish(json!("99999"), json!({"ports": "8888"}))]})),
        r#"port-publish[0].external.ports: "99999" is not a port; use a number from 1 to 65535"#,
    );
    check(
        &env(json!({"port-publish": [publish(json!(0), json!({"ports": "http"}))]})),
        r#"
port-publish[0].external.ports: 0 is not a port; use a number from 1 to 65535
port-publish[0].internal.ports: "http" is not a port; use a number from 1 to 65535"#,
    );
    check(
        &env(
            json!({"port-publish": [publish(json!(80), json!({"ports": 80, "protocol": "sctp"}))]}),
        ),
        r#"port-publish[0].internal.protocol: "sctp" is not a protocol; use tcp or udp"#,
    );
    check(
        &env(json!({"port-publish": [
            publish(json!("8888"), json!({"ports": "8888"})),
            publish(json!(8888), json!({"ports": "8888", "protocol": "udp"})),
            publish(json!(8888), json!({"ports": "9999", "protocol": "tcp"})),
        ]})),
        "port-publish[2].external.ports: port 8888/tcp is already published by port-publish[0]",
    );
    check(
        &env(json!({"port-publish": [{"external": {"ports": 1}}]})),
        "port-publish[0].internal: missing; expected an object with ports and protocol",
    );
    check(
        &env(json!({"port-publish": [{"external": {"port": 1}, "internal": {"ports": 1}}]})),
        r#"
port-publish[0].external.port: unknown field "port"; did you mean "ports"?
port-publish[0].external.ports: missing; expected a port such as 8888"#,
    );
}

#[test]
fn storage_mounts() {
    let mount = |target: &str, size: &str, lifecycle: &str| json!({"target": target, "size": size, "lifecycle": lifecycle});
    check(
        &env(json!({"storage": [
            mount("scratch", "1G", "temporary"),
            mount("/data/../etc", "1G", "persistent"),
            mount("/", "1G", "persistent"),
            mount("/data", "2 G", "forever"),
            mount("/data", "1G", "temporary"),
        ]})),
        r#"
storage[0].target: "scratch" is not an absolute path; use a path such as /data
storage[1].target: "/data/../etc" must not contain '..'
storage[2].target: the root directory cannot be a storage target
storage[3].size: "2 G" is not a size; use 512M, 1G, 2.5G
storage[3].lifecycle: "forever" is not a lifecycle; use temporary or persistent
storage[4].target: "/data" is already mounted by storage[3]"#,
    );
    check(
        &env(json!({"storage": [{"target": "/x"}]})),
        r#"
storage[0].size: missing; expected a size such as 512M, 1G, 2.5G
storage[0].lifecycle: missing; expected temporary or persistent"#,
    );
}

#[test]
fn datasets() {
    check(
        &env(json!({"dataset": [{"category-name": "imaging", "db": [
            {"db-name": "coco", "dataset": [{"dataset-name": "train2017"}]},
            {"db-name": "", "dataset": []},
        ]}]})),
        r#"
dataset[0].db[0].dataset[0].version: missing; expected a version such as "3"
dataset[0].db[1].db-name: must not be empty
dataset[0].db[1].dataset: must not be empty; expected a list of {dataset-name, version}"#,
    );
    check(
        &env(json!({"dataset": {"category-name": "imaging"}})),
        "dataset: expected a list of {category-name, db}, found an object",
    );
}

#[test]
fn flags_ids_dates_and_labels() {
    check(
        &env(json!({"is_active": "yes"})),
        r#"is_active: expected true, false, 1 or 0, found "yes""#,
    );
    check(
        &env(json!({"_id": {"$oid": "xyz"}})),
        r#"_id: "xyz" is not an object id; expected 24 hex digits"#,
    );
    check(
        &env(json!({"_id": 5})),
        r#"_id: expected an object id such as {"$oid": "65a1f0c2d4e5f60718293a4b"}, found a number"#,
    );
    check(
        &env(json!({"config_id": "seven"})),
        r#"config_id: "seven" is not a whole number"#,
    );
    check(
        &env(json!({"creation_time": {"$date": "2024-13-01T00:00:00Z"}})),
        r#"creation_time: {"$date":"2024-13-01T00:00:00Z"} is not a date; use ISO-8601 such as 2024-01-12T09:30:00Z"#,
    );
    check(
        &env(json!({"node-labels": {"zone": "eu west", "-bad": "x", "ok": [1]}})),
        r#"
node-labels.-bad: "-bad" is not a valid label name; use letters, digits, '-', '_', '.' and '/', starting with a letter or digit
node-labels.ok: expected a string, found a list
node-labels.zone: "eu west" is not a valid label value; use letters, digits, '-', '_' and '.'"#,
    );
    check(
        &env(json!({"node-labels": ["zone"]})),
        "node-labels: expected an object of label names to values, found a list",
    );
}

#[test]
fn every_problem_is_reported_at_once() {
    let doc = json!({
        "env-name": "bad name",
        "os": "ubuntu",
        "resources": {"ram": "1 GB", "cpu": "lots", "gpu": "one", "disk": 5},
        "port-publish": [
            {"external": {"ports": "8888"}, "internal": {"ports": "8888"}},
            {"external": {"ports": "8888"}, "internal": {"ports": "70000", "protocol": "tcp"}},
            {"external": {"ports": "8888"}, "internal": {"ports": "1"}}
        ],
        "storage": [{"target": "relative", "size": "1G", "lifecycle": "temporary"}],
        "is_active": 2
    });
    check(
        &doc.to_string(),
        r#"
env-name: "bad name" is not a valid name; use letters, digits, '-', '_' and '.', starting with a letter or digit, at most 64 characters
resources.disk: unknown field "disk"; known: "ram", "cpu", "gpu", "storage"
resources.ram: "1 GB" is not a size; use 512M, 1G, 2.5G
resources.cpu: "lots" is not a number of cpus; use 0.5, 1, 2.0 or 500m
resources.gpu: "one" is not a number of gpus; use a whole number such as 0, 1, 2
port-publish[1].internal.ports: "70000" is not a port; use a number from 1 to 65535
port-publish[1].external.ports: port 8888/tcp is already published by port-publish[0]
port-publish[2].external.ports: port 8888/tcp is already published by port-publish[0]
storage[0].target: "relative" is not an absolute path; use a path such as /data
is_active: expected true, false, 1 or 0, found 2"#,
    );
}

#[test]
fn lists_prefix_paths_with_the_index() {
    let good = env(json!({}));
    let bad = res(json!({"ram": "1 GB"}));
    check(
        &format!("[{good}, {bad}]"),
        r#"[1].resources.ram: "1 GB" is not a size; use 512M, 1G, 2.5G"#,
    );
    check(
        &format!("[{good}, [{good}]]"),
        "[1]: expected a document (an object), found a list",
    );
    check("[]", "the list holds no documents");
}
