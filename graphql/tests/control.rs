//! Control and agent-protocol mutations: deploy, stop, drain, tokens, register,
//! heartbeat and reports, with the error codes of their refusals.

mod common;

use common::*;
use dcloud_graphql::authenticate;
use dcloud_projections::Actor;
use serde_json::json;

#[tokio::test]
async fn deploy_by_name_or_id_stop_drain_and_retry() {
    let api = Api::new();
    fleet(&api).await;
    api.data(
        &alice(),
        CREATE_ENV,
        json!({"doc": environment("web", "1G", 8080)}),
    )
    .await;
    let d = api.data(&alice(), r#"mutation { deploy(environment: "web", policy: BIN_PACK) { id status nodeId policy environmentName } }"#, json!({})).await;
    let dep = &d["deploy"];
    assert_eq!(dep["status"], "SCHEDULED");
    assert_eq!(dep["policy"], "BIN_PACK");
    assert_eq!(
        dep["nodeId"], NODE_B,
        "bin-pack picks the fuller (smaller) node"
    );
    assert_eq!(
        api.code(
            Some(&alice()),
            r#"mutation { deploy(environment: "nope") { id } }"#,
            json!({})
        )
        .await,
        "NOT_FOUND"
    );

    let drained = api
        .data(
            &admin(),
            "mutation($n: ID!) { drainNode(id: $n) { state draining } }",
            json!({"n": NODE_A}),
        )
        .await;
    assert_eq!(
        drained["drainNode"],
        json!({"state": "DRAINING", "draining": true})
    );
    api.data(
        &admin(),
        "mutation($n: ID!) { drainNode(id: $n) { id } }",
        json!({"n": NODE_B}),
    )
    .await;
    api.data(
        &alice(),
        CREATE_ENV,
        json!({"doc": environment("api", "1G", 8081)}),
    )
    .await;
    let p = api
        .data(
            &alice(),
            r#"mutation { deploy(environment: "api") { id status } }"#,
            json!({}),
        )
        .await;
    assert_eq!(p["deploy"]["status"], "PENDING", "every node is draining");
    let undrained = api
        .data(
            &admin(),
            "mutation($n: ID!) { undrainNode(id: $n) { state } }",
            json!({"n": NODE_A}),
        )
        .await;
    assert_eq!(undrained["undrainNode"]["state"], "READY");
    api.data(&admin(), "mutation { retryPending }", json!({}))
        .await;
    let id = p["deploy"]["id"].as_str().expect("id");
    assert_eq!(
        api.state()
            .deployment(id)
            .and_then(|d| d.node.clone())
            .as_deref(),
        Some(NODE_A)
    );

    let s = api
        .data(
            &alice(),
            "mutation($id: ID!) { stop(deploymentId: $id) { status } }",
            json!({"id": dep["id"]}),
        )
        .await;
    assert_eq!(s["stop"]["status"], "STOPPING");
    assert_eq!(
        api.code(
            Some(&alice()),
            "mutation { stop(deploymentId: \"nope\") { id } }",
            json!({})
        )
        .await,
        "NOT_FOUND"
    );
    assert_eq!(
        api.code(
            Some(&admin()),
            "mutation { drainNode(id: \"nope\") { id } }",
            json!({})
        )
        .await,
        "NOT_FOUND"
    );
}

#[tokio::test]
async fn deploy_by_an_ambiguous_name_asks_for_an_id() {
    let api = Api::new();
    fleet(&api).await;
    api.data(
        &alice(),
        CREATE_ENV,
        json!({"doc": environment("web", "1G", 8080)}),
    )
    .await;
    api.data(
        &bob(),
        CREATE_ENV,
        json!({"doc": environment("web", "1G", 8081)}),
    )
    .await;
    // Alice sees only hers; the admin sees two and owns none.
    let d = api
        .data(
            &alice(),
            r#"mutation { deploy(environment: "web") { owner } }"#,
            json!({}),
        )
        .await;
    assert_eq!(d["deploy"]["owner"], "alice");
    assert_eq!(
        api.code(
            Some(&admin()),
            r#"mutation { deploy(environment: "web") { id } }"#,
            json!({})
        )
        .await,
        "BAD_USER_INPUT"
    );
}

#[tokio::test]
async fn tokens_are_shown_once_stored_hashed_and_revocable() {
    let api = Api::new();
    let v = api.data(&admin(), r#"mutation { createToken(role: AGENT, name: "rack1", nodeId: "0xaa") { id token role nodeId } }"#, json!({})).await;
    let t = &v["createToken"];
    let token = t["token"].as_str().expect("token").to_string();
    assert!(token.starts_with(dcloud_graphql::TOKEN_PREFIX));
    let id = t["id"].as_str().expect("id").to_string();
    let stored = api.state().tokens[&id].secret_hash;
    assert_eq!(dcloud_graphql::token_hash(&token), Some(stored));
    assert_eq!(
        authenticate(&api.state(), &token),
        Some(Actor::agent("0xaa"))
    );
    assert_eq!(
        authenticate(&api.state(), &format!("Bearer {token}")),
        Some(Actor::agent("0xaa"))
    );

    let u = api
        .data(
            &admin(),
            r#"mutation { createToken(role: USER, name: "alice") { token } }"#,
            json!({}),
        )
        .await;
    let user_token = u["createToken"]["token"]
        .as_str()
        .expect("token")
        .to_string();
    assert_eq!(authenticate(&api.state(), &user_token), Some(alice()));
    let e = api
        .error(
            Some(&admin()),
            r#"mutation { createToken(role: AGENT, name: "x") { id } }"#,
            json!({}),
        )
        .await;
    assert_eq!(
        e["ext"]["code"], "BAD_USER_INPUT",
        "an agent token names its node: {e}"
    );

    assert_eq!(
        api.data(
            &admin(),
            "mutation($id: ID!) { revokeToken(id: $id) }",
            json!({"id": id})
        )
        .await["revokeToken"],
        true
    );
    assert_eq!(authenticate(&api.state(), &token), None);
    assert_eq!(authenticate(&api.state(), "dcl_00"), None);
    assert_eq!(
        api.code(
            Some(&admin()),
            "mutation { revokeToken(id: \"nope\") }",
            json!({})
        )
        .await,
        "NOT_FOUND"
    );
}

const HEARTBEAT: &str = r#"mutation($n: ID!, $ok: Boolean) { heartbeat(nodeId: $n, usage: {cpuMillis: 250, memoryBytes: 1024},
    containers: [], engineOk: $ok) { logged seq } }"#;

const REPORT: &str = r#"mutation($d: ID!, $r: ReportInput!) { reportStatus(deploymentId: $d, report: $r) {
    status build { step steps } imageReady containerId exitCode failure { step command message } } }"#;

#[tokio::test]
async fn the_agent_protocol_registers_beats_and_reports() {
    let api = Api::new();
    fleet(&api).await;
    let (_, d, node) = deployed(&api, &alice(), "web", 8080).await;
    let agent = Actor::agent(&node);

    let hb = api
        .data(&agent, HEARTBEAT, json!({"n": node, "ok": true}))
        .await;
    assert_eq!(
        hb["heartbeat"]["logged"], true,
        "the first heartbeat is kept"
    );
    assert_eq!(hb["heartbeat"]["seq"], api.state().last_seq());
    let hb = api
        .data(&agent, HEARTBEAT, json!({"n": node, "ok": true}))
        .await;
    assert_eq!(
        hb["heartbeat"],
        json!({"logged": false, "seq": null}),
        "the next one within the interval is not"
    );
    let hb = api
        .data(&agent, HEARTBEAT, json!({"n": node, "ok": false}))
        .await;
    assert_eq!(
        hb["heartbeat"]["logged"], true,
        "an engine change is kept at once"
    );
    let n = api.data(&admin(), "query($n: ID!) { node(id: $n) { state engineOk usage { cpuMillis } lastHeartbeatMs } }", json!({"n": node})).await;
    assert_eq!(n["node"]["state"], "ENGINE_DOWN");
    assert_eq!(n["node"]["usage"]["cpuMillis"], 250);

    let steps = [
        (
            json!({"kind": "BUILD_STARTED", "image": "img", "steps": 3}),
            "BUILDING",
        ),
        (
            json!({"kind": "BUILD_PROGRESS", "step": 2, "steps": 3}),
            "BUILDING",
        ),
        (
            json!({"kind": "IMAGE_READY", "image": "img", "cached": false}),
            "BUILDING",
        ),
        (
            json!({"kind": "CONTAINER_CREATED", "containerId": "c1"}),
            "CREATED",
        ),
        (json!({"kind": "CONTAINER_STARTED"}), "RUNNING"),
        (json!({"kind": "CONTAINER_EXITED", "code": 3}), "EXITED"),
    ];
    for (report, status) in steps {
        let v = api.data(&agent, REPORT, json!({"d": d, "r": report})).await;
        assert_eq!(v["reportStatus"]["status"], status, "after {report}");
    }
    let v = api.data(&agent, "query($d: ID!) { deployment(id: $d) { exitCode containerId build { step steps } imageReady } }", json!({"d": d})).await;
    assert_eq!(
        v["deployment"],
        json!({"exitCode": 3, "containerId": "c1", "build": {"step": 3, "steps": 3}, "imageReady": true})
    );

    // A report missing what its kind needs names the field.
    let e = api
        .error(
            Some(&agent),
            REPORT,
            json!({"d": d, "r": {"kind": "CONTAINER_FAILED"}}),
        )
        .await;
    assert_eq!(
        (
            e["ext"]["code"].clone(),
            e["ext"]["fields"][0]["path"].clone()
        ),
        (json!("BAD_USER_INPUT"), json!("report.message"))
    );
    // One that contradicts the status is refused.
    assert_eq!(
        api.code(
            Some(&agent),
            REPORT,
            json!({"d": d, "r": {"kind": "CONTAINER_STARTED"}})
        )
        .await,
        "BAD_USER_INPUT"
    );

    // Re-registration with a new fingerprint.
    let v = api
        .data(&agent, REGISTER_NODE, json!({"id": node, "cpu": 8000}))
        .await;
    assert_eq!(
        v["registerNode"]["state"], "ENGINE_DOWN",
        "until a heartbeat says the engine is back"
    );
    api.data(&agent, HEARTBEAT, json!({"n": node, "ok": true}))
        .await;
    let n = api
        .data(
            &agent,
            "query($n: ID!) { node(id: $n) { state } }",
            json!({"n": node}),
        )
        .await;
    assert_eq!(n["node"]["state"], "READY");
    assert_eq!(
        api.state()
            .node(&node)
            .map(|n| n.fingerprint.capacity.cpu_millis),
        Some(8000)
    );
}

#[tokio::test]
async fn a_failed_build_keeps_its_step_command_and_output() {
    let api = Api::new();
    fleet(&api).await;
    let (_, d, node) = deployed(&api, &alice(), "web", 8080).await;
    let agent = Actor::agent(&node);
    api.data(
        &agent,
        REPORT,
        json!({"d": d, "r": {"kind": "BUILD_STARTED", "image": "img", "steps": 3}}),
    )
    .await;
    let r = json!({"kind": "BUILD_FAILED", "step": 2, "command": "pip install numpy", "outputTail": "no space left"});
    let v = api.data(&agent, REPORT, json!({"d": d, "r": r})).await;
    assert_eq!(v["reportStatus"]["status"], "FAILED");
    assert_eq!(
        v["reportStatus"]["failure"],
        json!({"step": 2, "command": "pip install numpy", "message": "no space left"})
    );
}

#[tokio::test]
async fn a_lost_node_keeps_its_deployments_for_the_grace_and_an_admin_can_move_them() {
    let api = Api::new();
    fleet(&api).await;
    let (_, d, node) = deployed(&api, &alice(), "web", 8080).await;
    let n = api
        .data(
            &admin(),
            "mutation($n: [ID!]!) { markNodesLost(nodeIds: $n) }",
            json!({"n": [node]}),
        )
        .await;
    assert_eq!(n["markNodesLost"], 1, "only the node is lost: {n}");
    let v = api
        .data(
            &admin(),
            "query($n: ID!) { node(id: $n) { state health } }",
            json!({"n": node}),
        )
        .await;
    assert_eq!(v["node"], json!({"state": "LOST", "health": "LOST"}));
    // Within the grace it stays booked on its node, and says when it will move.
    let q = "query($d: ID!) { deployment(id: $d) { nodeId nodeLostSinceMs movesAtMs } }";
    for who in [alice(), admin(), auditor()] {
        let v = api.data(&who, q, json!({"d": d})).await;
        let dep = &v["deployment"];
        assert_eq!(dep["nodeId"], node.as_str(), "{v}");
        let since = dep["nodeLostSinceMs"].as_i64().expect("lost since");
        assert_eq!(dep["movesAtMs"].as_i64(), Some(since + 300_000), "{v}");
    }
    // Only an admin moves them before the grace is over.
    let evict = "mutation($n: [ID!]!) { evictLostNodes(nodeIds: $n) }";
    for who in [alice(), auditor(), Actor::agent(&node)] {
        assert_eq!(
            api.code(Some(&who), evict, json!({"n": [node]})).await,
            "FORBIDDEN"
        );
    }
    let n = api.data(&admin(), evict, json!({"n": [node]})).await;
    assert!(
        n["evictLostNodes"].as_u64().unwrap_or(0) >= 2,
        "deployment lost and placed again: {n}"
    );
    let other = if node == NODE_A { NODE_B } else { NODE_A };
    assert_eq!(
        api.state()
            .deployment(&d)
            .and_then(|d| d.node.clone())
            .as_deref(),
        Some(other),
        "placed again elsewhere"
    );
    let v = api.data(&alice(), q, json!({"d": d})).await;
    assert!(v["deployment"]["nodeLostSinceMs"].is_null(), "{v}");
    assert!(v["deployment"]["movesAtMs"].is_null(), "{v}");
}

#[tokio::test]
async fn a_report_naming_its_node_is_refused_for_a_deployment_not_assigned_there() {
    let api = Api::new();
    fleet(&api).await;
    let (_, d, node) = deployed(&api, &alice(), "web", 8080).await;
    let other = if node == NODE_A { NODE_B } else { NODE_A };
    let q = r#"mutation($d: ID!, $n: ID) {
        reportStatus(deploymentId: $d, nodeId: $n, report: {kind: CONTAINER_STARTED}) { status } }"#;
    // An admin token running many nodes' agents speaks for the node it names: a node
    // the deployment is not on (it moved away) changes nothing.
    assert_eq!(
        api.code(Some(&admin()), q, json!({"d": d, "n": other}))
            .await,
        "FORBIDDEN"
    );
    // An agent names only its own node.
    assert_eq!(
        api.code(Some(&Actor::agent(&node)), q, json!({"d": d, "n": other}))
            .await,
        "FORBIDDEN"
    );
    for who in [alice(), auditor()] {
        assert_eq!(
            api.code(Some(&who), q, json!({"d": d, "n": node})).await,
            "FORBIDDEN"
        );
    }
    assert_eq!(
        api.state().deployment(&d).map(|d| d.status),
        Some(dcloud_projections::DeploymentStatus::Scheduled)
    );
    // The node it is on: accepted, from its agent or an admin speaking for it.
    let v = api.data(&admin(), q, json!({"d": d, "n": node})).await;
    assert_eq!(v["reportStatus"]["status"], "RUNNING");
}
