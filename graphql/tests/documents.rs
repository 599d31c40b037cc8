//! Document mutations (apply, environments, templates, catalogs, datasets,
//! services), with the error codes of their refusals.

mod common;

use common::*;
use serde_json::json;

const APPLY: &str = r#"mutation($d: String!, $f: DocumentFormat) { apply(document: $d, format: $f) {
    events documents { index kind id action version } } }"#;

#[tokio::test]
async fn apply_takes_any_document_kind_and_a_list() {
    let api = Api::new();
    let datasets = r#"{"category-name": "imaging", "db": [{"db-name": "coco", "dataset": [{"dataset-name": "train2017", "version": "3"}]}]}"#;
    let service = r#"{"service-name": "broker", "servers": [{"ip": "127.0.0.1", "port": 9092}]}"#;
    let list = format!("[{CATALOG}, {datasets}, {service}]");
    let v = api.data(&admin(), APPLY, json!({"d": list})).await;
    let docs = &v["apply"]["documents"];
    assert_eq!(
        docs[0],
        json!({"index": 0, "kind": "CATALOG", "id": "ubuntu", "action": "CREATED", "version": null})
    );
    assert_eq!(docs[1]["kind"], "DATASETS");
    assert_eq!(
        docs[2],
        json!({"index": 2, "kind": "SERVICE", "id": "broker", "action": "CREATED", "version": null})
    );
    assert_eq!(v["apply"]["events"], 3);
    assert!(api.state().catalogs.contains_key("ubuntu"));
    assert!(api
        .state()
        .datasets
        .contains("imaging", "coco", "train2017", "3"));

    // YAML, an environment: created, then updated by name, then unchanged.
    let yaml = "env-name: nb\nos: ubuntu\nlanguages:\n  - language-name: python\n    libraries: [numpy]\nresources: {ram: 1G, cpu: '1.0', gpu: '0', storage: 1}\n";
    let v = api
        .data(&alice(), APPLY, json!({"d": yaml, "f": "YAML"}))
        .await;
    let created = &v["apply"]["documents"][0];
    assert_eq!(
        (
            created["kind"].clone(),
            created["action"].clone(),
            created["version"].clone()
        ),
        (json!("ENVIRONMENT"), json!("CREATED"), json!(1))
    );
    let again = api
        .data(&alice(), APPLY, json!({"d": yaml.replace("1G", "2G")}))
        .await;
    assert_eq!(again["apply"]["documents"][0]["action"], "UPDATED");
    assert_eq!(again["apply"]["documents"][0]["version"], 2);
    assert_eq!(again["apply"]["documents"][0]["id"], created["id"]);
    let same = api
        .data(&alice(), APPLY, json!({"d": yaml.replace("1G", "2G")}))
        .await;
    assert_eq!(same["apply"]["documents"][0]["action"], "UNCHANGED");
    assert_eq!(same["apply"]["events"], 0);
    // Bob's environment of the same name is his own.
    let bobs = api.data(&bob(), APPLY, json!({"d": yaml})).await;
    assert_eq!(bobs["apply"]["documents"][0]["action"], "CREATED");
}

#[tokio::test]
async fn validation_errors_name_their_field_paths_and_change_nothing() {
    let api = Api::new();
    api.data(&admin(), APPLY, json!({"d": CATALOG})).await;
    let before = api.state().last_seq();
    let bad = environment("nb", "1 GB", 8888)
        .replace("\"os\":\"ubuntu\"", "\"os\":\"ubuntu\",\"colour\":\"red\"");
    let e = api.error(Some(&alice()), APPLY, json!({"d": bad})).await;
    assert_eq!(e["ext"]["code"], "BAD_USER_INPUT");
    let paths: Vec<&str> = e["ext"]["fields"]
        .as_array()
        .expect("fields")
        .iter()
        .filter_map(|f| f["path"].as_str())
        .collect();
    assert!(paths.contains(&"resources.ram"), "{e}");
    assert!(paths.contains(&"colour"), "{e}");
    let ram = e["ext"]["fields"]
        .as_array()
        .and_then(|fs| fs.iter().find(|f| f["path"] == "resources.ram"))
        .cloned();
    assert!(ram.is_some_and(|f| f["message"].as_str().is_some_and(|m| m.contains("1 GB"))));

    // In a list, paths start with the document's index; nothing of the list is applied.
    let list = format!(
        "[{}, {}]",
        environment("ok", "1G", 1),
        environment("bad", "lots", 2)
    );
    let e = api.error(Some(&alice()), APPLY, json!({"d": list})).await;
    assert_eq!(e["ext"]["fields"][0]["path"], "[1].resources.ram");
    // A reference the catalog does not know is refused by `decide`, with its path.
    let unknown_lib = environment("nb", "1G", 8888).replace("numpy", "leftpad");
    let e = api
        .error(Some(&alice()), CREATE_ENV, json!({"doc": unknown_lib}))
        .await;
    assert_eq!(e["ext"]["code"], "BAD_USER_INPUT");
    assert_eq!(e["ext"]["fields"][0]["path"], "languages[0].libraries[0]");
    assert_eq!(api.state().last_seq(), before, "nothing was written");
}

#[tokio::test]
async fn environment_lifecycle_with_versions_conflicts_and_not_found() {
    let api = Api::new();
    fleet(&api).await;
    let env = api
        .data(
            &alice(),
            CREATE_ENV,
            json!({"doc": environment("nb", "1G", 8888)}),
        )
        .await;
    let id = env["createEnvironment"]["id"]
        .as_str()
        .expect("id")
        .to_string();
    assert_eq!(env["createEnvironment"]["version"], 1);
    let upd = r#"mutation($id: ID!, $v: Int!, $doc: String!) { updateEnvironment(id: $id, expectedVersion: $v, document: $doc) { version } }"#;
    let v = api
        .data(
            &alice(),
            upd,
            json!({"id": id, "v": 1, "doc": environment("nb", "2G", 8888)}),
        )
        .await;
    assert_eq!(v["updateEnvironment"]["version"], 2);
    // A stale update: expected 1, current 2.
    let e = api
        .error(
            Some(&alice()),
            upd,
            json!({"id": id, "v": 1, "doc": environment("nb", "3G", 8888)}),
        )
        .await;
    assert_eq!(e["ext"]["code"], "CONFLICT");
    assert_eq!(
        (e["ext"]["expected"].clone(), e["ext"]["actual"].clone()),
        (json!(1), json!(2))
    );
    let e = api
        .error(
            Some(&alice()),
            upd,
            json!({"id": "nope", "v": 1, "doc": environment("nb", "3G", 8888)}),
        )
        .await;
    assert_eq!(
        (e["ext"]["code"].clone(), e["ext"]["kind"].clone()),
        (json!("NOT_FOUND"), json!("environment"))
    );

    let v = api
        .data(
            &alice(),
            "mutation($id: ID!) { deactivateEnvironment(id: $id) { active } }",
            json!({"id": id}),
        )
        .await;
    assert_eq!(v["deactivateEnvironment"]["active"], false);
    assert_eq!(
        api.code(Some(&alice()), DEPLOY, json!({"env": id})).await,
        "BAD_USER_INPUT",
        "inactive"
    );
    let v = api
        .data(
            &alice(),
            "mutation($id: ID!) { deleteEnvironment(id: $id) { deleted } }",
            json!({"id": id}),
        )
        .await;
    assert_eq!(v["deleteEnvironment"]["deleted"], true);
    let list = api.data(&alice(), "{ a: environments { totalCount } b: environments(includeDeleted: true) { totalCount } }", json!({})).await;
    assert_eq!(
        (
            list["a"]["totalCount"].clone(),
            list["b"]["totalCount"].clone()
        ),
        (json!(0), json!(1))
    );
}

#[tokio::test]
async fn templates_save_delete_and_instantiate_with_overrides() {
    let api = Api::new();
    fleet(&api).await;
    let save = r#"mutation($d: String!, $n: String) { saveTemplate(document: $d, name: $n) { name owner spec { resources { memoryBytes } } } }"#;
    let v = api
        .data(
            &admin(),
            save,
            json!({"d": environment("base", "1G", 8888), "n": "cpu-notebook"}),
        )
        .await;
    assert_eq!(v["saveTemplate"]["name"], "cpu-notebook");
    let from = r#"mutation($o: TemplateOverrides) { createFromTemplate(template: "cpu-notebook", overrides: $o) {
        id owner name spec { resources { memoryBytes cpuMillis } ports { external } } } }"#;
    let o = json!({"name": "mine", "resources": {"ram": "2G"}, "ports": [{"external": 9999, "internal": 8888}]});
    let v = api.data(&alice(), from, json!({"o": o})).await;
    let env = &v["createFromTemplate"];
    assert_eq!(env["owner"], "alice");
    assert_eq!(env["name"], "mine");
    assert_eq!(
        env["spec"]["resources"],
        json!({"memoryBytes": 2u64 << 30, "cpuMillis": 1000})
    );
    assert_eq!(env["spec"]["ports"], json!([{"external": 9999}]));
    let e = api
        .error(
            Some(&alice()),
            from,
            json!({"o": {"resources": {"ram": "2 GB"}}}),
        )
        .await;
    assert_eq!(e["ext"]["fields"][0]["path"], "overrides.resources.ram");
    assert_eq!(
        api.code(
            Some(&alice()),
            r#"mutation { createFromTemplate(template: "nope") { id } }"#,
            json!({})
        )
        .await,
        "NOT_FOUND"
    );
    // Users do not curate templates.
    assert_eq!(
        api.code(
            Some(&alice()),
            save,
            json!({"d": environment("x", "1G", 1)})
        )
        .await,
        "FORBIDDEN"
    );
    let v = api
        .data(
            &admin(),
            r#"mutation { deleteTemplate(name: "cpu-notebook") }"#,
            json!({}),
        )
        .await;
    assert_eq!(v["deleteTemplate"], true);
    assert!(api.state().templates.is_empty());
    assert_eq!(
        api.code(
            Some(&admin()),
            r#"mutation { deleteTemplate(name: "cpu-notebook") }"#,
            json!({})
        )
        .await,
        "NOT_FOUND"
    );
}

#[tokio::test]
async fn catalog_datasets_and_services() {
    let api = Api::new();
    let v = api
        .data(
            &admin(),
            "mutation($d: String!) { upsertCatalog(document: $d) { os baseImage } }",
            json!({"d": CATALOG}),
        )
        .await;
    assert_eq!(
        v["upsertCatalog"],
        json!({"os": "ubuntu", "baseImage": "ubuntu:22.04"})
    );
    assert_eq!(
        api.code(
            Some(&alice()),
            "mutation($d: String!) { upsertCatalog(document: $d) { os } }",
            json!({"d": CATALOG})
        )
        .await,
        "FORBIDDEN"
    );

    let ds = r#"{"category-name": "imaging", "db": [{"db-name": "coco", "dataset": [{"dataset-name": "train2017", "version": "3"}]}]}"#;
    let v = api
        .data(
            &admin(),
            "mutation($d: String!) { registerDatasets(document: $d) { category } }",
            json!({"d": ds}),
        )
        .await;
    assert_eq!(v["registerDatasets"], json!([{"category": "imaging"}]));
    let rm = r#"mutation { removeDataset(category: "imaging", db: "coco", dataset: "train2017", version: "3") }"#;
    assert_eq!(
        api.data(&admin(), rm, json!({})).await["removeDataset"],
        true
    );
    assert!(api.state().datasets.categories.is_empty());
    assert_eq!(api.code(Some(&admin()), rm, json!({})).await, "NOT_FOUND");

    let svc = r#"{"service-name": "dfs-server", "ip": "10.0.0.1", "port": 8003, "ttl": "30s"}"#;
    let v = api
        .data(
            &admin(),
            "mutation($d: String!) { registerService(document: $d) { name ttlMs refreshedMs } }",
            json!({"d": svc}),
        )
        .await;
    assert_eq!(v["registerService"]["ttlMs"], 30_000);
    api.backend.advance(10_000);
    let v = api
        .data(
            &admin(),
            r#"mutation { refreshService(name: "dfs-server") { refreshedMs expired } }"#,
            json!({}),
        )
        .await;
    assert_eq!(
        v["refreshService"]["refreshedMs"],
        api.state().services["dfs-server"].refreshed_ms
    );
    api.backend.advance(31_000);
    assert_eq!(
        api.data(&admin(), "{ services { expired } }", json!({}))
            .await["services"][0]["expired"],
        true
    );
    assert_eq!(
        api.data(&admin(), "mutation { expireServices }", json!({}))
            .await["expireServices"],
        1
    );
    assert!(api.state().services.is_empty());
    api.data(
        &admin(),
        "mutation($d: String!) { registerService(document: $d) { name } }",
        json!({"d": svc}),
    )
    .await;
    assert_eq!(
        api.data(
            &admin(),
            r#"mutation { deregisterService(name: "dfs-server") }"#,
            json!({})
        )
        .await["deregisterService"],
        true
    );
    assert_eq!(
        api.code(
            Some(&admin()),
            r#"mutation { refreshService(name: "dfs-server") { name } }"#,
            json!({})
        )
        .await,
        "NOT_FOUND"
    );
}
