//! Every query against the schema, as the roles that may run it.

mod common;

use common::*;
use dcloud_graphql::Backend;
use dcloud_projections::Actor;
use serde_json::json;

#[tokio::test]
async fn me_says_who_the_token_is() {
    let api = Api::new();
    let me = api
        .data(
            &Actor::agent(NODE_A),
            "{ me { name role nodeId label } }",
            json!({}),
        )
        .await;
    assert_eq!(
        me["me"],
        json!({"name": NODE_A, "role": "AGENT", "nodeId": NODE_A, "label": format!("agent:{NODE_A}")})
    );
}

#[tokio::test]
async fn nodes_show_capacity_allocation_and_health() {
    let api = Api::new();
    fleet(&api).await;
    let (_, d, node) = deployed(&api, &alice(), "web", 8080).await;
    let q = r#"{ nodes(first: 10) { totalCount pageInfo { hasNextPage endCursor }
        edges { cursor node { id nodeAgentId state health capacity { cpuMillis } allocated { cpuMillis memoryBytes }
        free { cpuMillis } allocatable { cpuMillis } reserved { cpuMillis } usage { cpuMillis } lastHeartbeatMs lastSeenMs
        labels { key value } gpus { uuid } deploymentIds ports { port protocol deploymentId } } } } }"#;
    let v = api.data(&admin(), q, json!({})).await;
    let nodes = &v["nodes"];
    assert_eq!(nodes["totalCount"], 2);
    assert_eq!(nodes["pageInfo"]["hasNextPage"], false);
    let edges = nodes["edges"].as_array().expect("edges");
    assert_eq!(
        edges
            .iter()
            .map(|e| e["cursor"].as_str().unwrap_or_default())
            .collect::<Vec<_>>(),
        vec![NODE_A, NODE_B]
    );
    let placed = edges
        .iter()
        .find(|e| e["node"]["id"] == node.as_str())
        .expect("placed node");
    let n = &placed["node"];
    assert_eq!(n["state"], "READY");
    assert_eq!(n["health"], "ALIVE");
    assert_eq!(n["allocated"]["cpuMillis"], 1000);
    assert_eq!(n["allocated"]["memoryBytes"], 1u64 << 30);
    assert_eq!(
        n["free"]["cpuMillis"].as_u64(),
        n["allocatable"]["cpuMillis"].as_u64().map(|a| a - 1000)
    );
    assert_eq!(n["labels"], json!([{"key": "zone", "value": "a"}]));
    assert_eq!(n["deploymentIds"], json!([d]));
    assert_eq!(
        n["ports"],
        json!([{"port": 8080, "protocol": "TCP", "deploymentId": d}])
    );
    assert_eq!(n["nodeAgentId"], format!("node-agent_{node}"));

    // Paging: one at a time.
    let page = api
        .data(
            &admin(),
            "{ nodes(first: 1) { edges { node { id } } pageInfo { hasNextPage endCursor } } }",
            json!({}),
        )
        .await;
    assert_eq!(page["nodes"]["edges"][0]["node"]["id"], NODE_A);
    assert_eq!(page["nodes"]["pageInfo"]["hasNextPage"], true);
    let cursor = page["nodes"]["pageInfo"]["endCursor"].clone();
    let next = api.data(&admin(), "query($c: String) { nodes(first: 1, after: $c) { edges { node { id } } pageInfo { hasNextPage } } }", json!({"c": cursor})).await;
    assert_eq!(next["nodes"]["edges"][0]["node"]["id"], NODE_B);
    assert_eq!(next["nodes"]["pageInfo"]["hasNextPage"], false);

    let one = api
        .data(
            &admin(),
            "query($id: ID!) { node(id: $id) { id capacity { cpuMillis } } }",
            json!({"id": NODE_B}),
        )
        .await;
    assert_eq!(
        one["node"],
        json!({"id": NODE_B, "capacity": {"cpuMillis": 2000}})
    );
    assert_eq!(
        api.code(Some(&admin()), "{ node(id: \"nope\") { id } }", json!({}))
            .await,
        "NOT_FOUND"
    );
}

#[tokio::test]
async fn environments_carry_their_versions_and_export_the_original_format() {
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
    let upd = r#"mutation($id: ID!, $doc: String!) { updateEnvironment(id: $id, expectedVersion: 1, document: $doc) { version } }"#;
    api.data(
        &alice(),
        upd,
        json!({"id": id, "doc": environment("nb", "2G", 8888)}),
    )
    .await;

    let q = r#"query($id: ID!) { environment(id: $id) { id name owner version active deleted
        spec { name os resources { memoryBytes cpuMillis } languages { name libraries } ports { external internal protocol } }
        versions { version seq spec { resources { memoryBytes } } } } }"#;
    let v = api.data(&alice(), q, json!({"id": id})).await;
    let e = &v["environment"];
    assert_eq!(e["version"], 2);
    assert_eq!(e["owner"], "alice");
    assert_eq!(e["spec"]["resources"]["memoryBytes"], 2u64 << 30);
    assert_eq!(
        e["spec"]["languages"],
        json!([{"name": "python", "libraries": ["numpy"]}])
    );
    let versions = e["versions"].as_array().expect("versions");
    assert_eq!(versions.len(), 2);
    assert_eq!(versions[0]["spec"]["resources"]["memoryBytes"], 1u64 << 30);
    assert!(versions[0]["seq"].as_u64() < versions[1]["seq"].as_u64());

    let list = api
        .data(
            &alice(),
            "{ environments { totalCount edges { node { id } } } }",
            json!({}),
        )
        .await;
    assert_eq!(list["environments"]["edges"][0]["node"]["id"], id.as_str());

    let export = api.data(&alice(), "query($id: ID!) { a: exportEnvironment(id: $id) b: exportEnvironment(id: $id, version: 1) }", json!({"id": id})).await;
    assert_eq!(export["a"]["env-name"], "nb");
    assert_eq!(export["a"]["resources"]["ram"], "2G");
    assert_eq!(export["b"]["resources"]["ram"], "1G");
    let reparsed =
        dcloud_projections::config::parse_environment(&export["a"].to_string(), Default::default())
            .expect("export parses");
    assert_eq!(
        Some(&reparsed),
        api.state().environment(&id).and_then(|e| e.spec())
    );
}

#[tokio::test]
async fn registries_templates_catalogs_services_datasets_tokens() {
    let api = Api::new();
    fleet(&api).await;
    let tpl = json!({"template": serde_json::from_str::<serde_json::Value>(&environment("cpu-notebook", "1G", 8888)).expect("json")}).to_string();
    api.data(
        &admin(),
        "mutation($d: String!) { apply(document: $d) { events } }",
        json!({"d": tpl}),
    )
    .await;
    api.data(&admin(), r#"mutation { registerService(document: "{\"service-name\": \"dfs-server\", \"ip\": \"10.0.0.1\", \"port\": 8003}") { name } }"#, json!({})).await;
    let ds = r#"{"category-name": "imaging", "db": [{"db-name": "coco", "dataset": [{"dataset-name": "train2017", "version": "3"}]}]}"#;
    api.data(
        &admin(),
        "mutation($d: String!) { registerDatasets(document: $d) { category } }",
        json!({"d": ds}),
    )
    .await;

    let v = api
        .data(
            &alice(),
            r#"{ templates { name owner spec { name } } template(name: "cpu-notebook") { name }
                services { name endpoints { ip port } expired document }
                datasets { category dbs { name datasets { name version } } } }"#,
            json!({}),
        )
        .await;
    assert_eq!(
        v["templates"],
        json!([{"name": "cpu-notebook", "owner": "root", "spec": {"name": "cpu-notebook"}}])
    );
    assert_eq!(v["template"]["name"], "cpu-notebook");
    assert_eq!(
        v["services"][0]["endpoints"],
        json!([{"ip": "10.0.0.1", "port": 8003}])
    );
    assert_eq!(v["services"][0]["expired"], false);
    assert_eq!(v["services"][0]["document"]["service-name"], "dfs-server");
    assert_eq!(
        v["datasets"],
        json!([{"category": "imaging", "dbs": [{"name": "coco", "datasets": [{"name": "train2017", "version": "3"}]}]}])
    );

    let c = api.data(&auditor(), r#"{ catalogs { os baseImage initSteps languages { name libraries { name commands } } } catalog(os: "ubuntu") { document } }"#, json!({})).await;
    assert_eq!(c["catalogs"][0]["os"], "ubuntu");
    assert_eq!(
        c["catalogs"][0]["languages"][0]["libraries"][0],
        json!({"name": "numpy", "commands": ["pip install numpy"]})
    );
    assert_eq!(
        c["catalog"]["document"]["init-steps"],
        json!(["apt-get -y update"])
    );
    assert_eq!(
        api.code(
            Some(&admin()),
            r#"{ catalog(os: "windows") { os } }"#,
            json!({})
        )
        .await,
        "NOT_FOUND"
    );

    let t = api
        .data(
            &admin(),
            r#"mutation { createToken(role: USER, name: "carol") { id token } }"#,
            json!({}),
        )
        .await;
    let tokens = api
        .data(&auditor(), "{ tokens { id name role revoked } }", json!({}))
        .await;
    assert_eq!(
        tokens["tokens"],
        json!([{"id": t["createToken"]["id"], "name": "carol", "role": "USER", "revoked": false}])
    );
}

#[tokio::test]
async fn deployments_filter_and_page_with_history_and_placement() {
    let api = Api::new();
    fleet(&api).await;
    let (env1, d1, _) = deployed(&api, &alice(), "one", 8001).await;
    let (_, d2, _) = deployed(&api, &alice(), "two", 8002).await;
    let (_, d3, _) = deployed(&api, &alice(), "three", 8003).await;
    api.data(
        &alice(),
        "mutation($id: ID!) { stop(deploymentId: $id) { status } }",
        json!({"id": d3}),
    )
    .await;

    let q = r#"query($f: DeploymentFilter, $first: Int, $after: String) { deployments(filter: $f, first: $first, after: $after) {
        totalCount pageInfo { hasNextPage hasPreviousPage endCursor } edges { cursor node { id status environmentId environmentName nodeId
        history { seq status } placement { nodeId scoreMilli candidates runnersUp { nodeId scoreMilli } rejected { reason count } }
        pendingReasons { reason count } build { step steps } need { cpuMillis } live } } } }"#;
    let all = api.data(&admin(), q, json!({"first": 2})).await;
    let page = &all["deployments"];
    assert_eq!(page["totalCount"], 3);
    assert_eq!(page["pageInfo"]["hasNextPage"], true);
    let ids: Vec<_> = page["edges"]
        .as_array()
        .expect("edges")
        .iter()
        .map(|e| e["node"]["id"].clone())
        .collect();
    assert_eq!(ids, vec![json!(d1), json!(d2)]);
    let first = &page["edges"][0]["node"];
    assert_eq!(first["status"], "SCHEDULED");
    assert_eq!(first["environmentName"], "one");
    assert_eq!(
        first["history"].as_array().map(Vec::len),
        Some(2),
        "pending then scheduled: {first}"
    );
    assert_eq!(first["placement"]["nodeId"], first["nodeId"]);
    assert_eq!(first["placement"]["candidates"], 2);
    assert_eq!(
        first["placement"]["runnersUp"].as_array().map(Vec::len),
        Some(1)
    );
    let rest = api
        .data(
            &admin(),
            q,
            json!({"first": 2, "after": page["pageInfo"]["endCursor"]}),
        )
        .await;
    assert_eq!(rest["deployments"]["edges"][0]["node"]["id"], d3.as_str());
    assert_eq!(rest["deployments"]["pageInfo"]["hasPreviousPage"], true);

    // Placed, so stopping waits for its agent.
    let stopping = api
        .data(&admin(), q, json!({"f": {"status": "STOPPING"}}))
        .await;
    assert_eq!(stopping["deployments"]["totalCount"], 1);
    assert_eq!(
        stopping["deployments"]["edges"][0]["node"]["id"],
        d3.as_str()
    );
    let by_env = api
        .data(&admin(), q, json!({"f": {"environmentId": env1}}))
        .await;
    assert_eq!(by_env["deployments"]["edges"][0]["node"]["id"], d1.as_str());
    let on_a = api
        .data(&admin(), q, json!({"f": {"nodeId": NODE_A, "live": true}}))
        .await;
    let on_b = api
        .data(&admin(), q, json!({"f": {"nodeId": NODE_B, "live": true}}))
        .await;
    assert_eq!(
        on_a["deployments"]["totalCount"].as_u64().unwrap_or(0)
            + on_b["deployments"]["totalCount"].as_u64().unwrap_or(0),
        3
    );
    let finished = api.data(&admin(), q, json!({"f": {"live": false}})).await;
    assert_eq!(finished["deployments"]["totalCount"], 0);

    let one = api
        .data(
            &alice(),
            "query($id: ID!) { deployment(id: $id) { id live status } }",
            json!({"id": d3}),
        )
        .await;
    assert_eq!(
        one["deployment"],
        json!({"id": d3, "live": true, "status": "STOPPING"})
    );
    assert_eq!(
        api.code(
            Some(&admin()),
            "{ deployment(id: \"nope\") { id } }",
            json!({})
        )
        .await,
        "NOT_FOUND"
    );
    assert_eq!(
        api.code(
            Some(&admin()),
            "{ deployments(after: \"x\") { totalCount } }",
            json!({})
        )
        .await,
        "BAD_USER_INPUT"
    );
}

#[tokio::test]
async fn pending_deployments_show_why() {
    let api = Api::new();
    fleet(&api).await;
    let env = api
        .data(
            &alice(),
            CREATE_ENV,
            json!({"doc": environment("huge", "64G", 9000)}),
        )
        .await;
    let d = api
        .data(
            &alice(),
            DEPLOY,
            json!({"env": env["createEnvironment"]["id"]}),
        )
        .await;
    assert_eq!(d["deploy"]["status"], "PENDING");
    let id = d["deploy"]["id"].clone();
    let v = api
        .data(
            &alice(),
            "query($id: ID!) { deployment(id: $id) { pendingReasons { reason count } } }",
            json!({"id": id}),
        )
        .await;
    let reasons = v["deployment"]["pendingReasons"]
        .as_array()
        .expect("reasons");
    assert_eq!(
        reasons
            .iter()
            .map(|r| r["count"].as_u64().unwrap_or(0))
            .sum::<u64>(),
        2,
        "{reasons:?}"
    );
}

#[tokio::test]
async fn node_assignments_list_what_the_node_runs() {
    let api = Api::new();
    fleet(&api).await;
    let (env, d, node) = deployed(&api, &alice(), "web", 8080).await;
    let agent = Actor::agent(&node);
    let q = r#"query($n: ID!) { nodeAssignments(nodeId: $n) { seq items { seq kind deploymentId status
        run { image dockerfile steps baseImage resources { cpuMillis memoryBytes } ports { external } labels { key value } env { name value } environmentId } } } }"#;
    let v = api.data(&agent, q, json!({"n": node})).await;
    let a = &v["nodeAssignments"];
    assert_eq!(a["seq"], api.backend.log().last_seq());
    let item = &a["items"][0];
    assert_eq!(item["kind"], "RUN");
    assert_eq!(item["deploymentId"], d.as_str());
    let run = &item["run"];
    assert_eq!(run["environmentId"], env.as_str());
    assert_eq!(run["steps"], 3);
    assert_eq!(run["dockerfile"], "FROM ubuntu:22.04\nRUN apt-get -y update\nRUN apt-get install -y python3-pip\nRUN pip install numpy\n");
    assert_eq!(
        run["image"].as_str(),
        api.state().deployment(&d).and_then(|d| d.image.as_deref())
    );
    assert!(run["labels"]
        .as_array()
        .expect("labels")
        .contains(&json!({"key": "dcloud.node", "value": node})));
}

#[tokio::test]
async fn gpu_devices_are_assigned_by_uuid_and_shown_on_the_node() {
    let api = Api::new();
    fleet(&api).await;
    let gpu_node = "0x5f6e4b6e4b99";
    let register = r#"mutation($id: ID!) { registerNode(nodeId: $id, fingerprint: {
        hostname: "gpu", os: "linux", agentVersion: "test",
        capacity: {cpuMillis: 8000, memoryBytes: 34359738368, gpus: 2, storageBytes: 107374182400},
        gpus: [{index: 1, uuid: "GPU-b", model: "T4", memoryBytes: 16000000000},
               {index: 0, uuid: "GPU-a", model: "T4", memoryBytes: 16000000000}] }) { gpus { index uuid assigned } } }"#;
    let v = api
        .data(&Actor::agent(gpu_node), register, json!({"id": gpu_node}))
        .await;
    assert_eq!(
        v["registerNode"]["gpus"],
        json!([{"index": 0, "uuid": "GPU-a", "assigned": false}, {"index": 1, "uuid": "GPU-b", "assigned": false}])
    );
    let doc = environment("train", "1G", 7000).replace("\"gpu\":\"0\"", "\"gpu\":\"1\"");
    let env = api.data(&alice(), CREATE_ENV, json!({"doc": doc})).await;
    let d = api
        .data(
            &alice(),
            "mutation($e: String!) { deploy(environment: $e) { id nodeId gpus } }",
            json!({"e": env["createEnvironment"]["id"]}),
        )
        .await;
    assert_eq!(d["deploy"]["nodeId"], gpu_node);
    assert_eq!(d["deploy"]["gpus"], json!(["GPU-a"]));
    let id = d["deploy"]["id"].clone();
    let n = api.data(&admin(), "query($n: ID!) { node(id: $n) { gpus { uuid model deploymentId } allocated { gpus } free { gpus } } }", json!({"n": gpu_node})).await;
    assert_eq!(
        n["node"]["gpus"][0],
        json!({"uuid": "GPU-a", "model": "T4", "deploymentId": id})
    );
    assert_eq!(
        (
            n["node"]["allocated"]["gpus"].clone(),
            n["node"]["free"]["gpus"].clone()
        ),
        (json!(1), json!(1))
    );
    let a = api.data(&Actor::agent(gpu_node), "query($n: ID!) { nodeAssignments(nodeId: $n) { items { run { gpus resources { gpus } } } } }", json!({"n": gpu_node})).await;
    assert_eq!(
        a["nodeAssignments"]["items"][0]["run"],
        json!({"gpus": ["GPU-a"], "resources": {"gpus": 1}})
    );
}
