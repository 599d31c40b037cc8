//! The node agent's truths over GraphQL: `reportNodeAddress` and `Node.address`,
//! `Deployment.endpoints` (URLs from the node's address), `CONTAINER_OOM_WARNING`
//! reports and `reportStaleContainer` as `Deployment.warnings`, under each role.

mod common;

use common::*;
use dcloud_projections::Actor;
use serde_json::json;

const ADDRESS: &str =
    "mutation($n: ID!, $a: String!) { reportNodeAddress(nodeId: $n, address: $a) { id address } }";
const ENDPOINTS: &str = "query($id: ID!) { deployment(id: $id) { status
  endpoints { name protocol internalPort externalPort url ready }
  warnings { kind message } } }";
const REPORT: &str = "mutation($id: ID!, $r: ReportInput!) { reportStatus(deploymentId: $id, report: $r) { status } }";
const STALE: &str = "mutation($n: ID!, $d: ID!, $c: String!) { reportStaleContainer(nodeId: $n, deploymentId: $d, containerId: $c) }";

#[tokio::test]
async fn node_addresses_are_reported_by_their_agent_and_seen_by_all() {
    let api = Api::new();
    fleet(&api).await;
    let a = Actor::agent(NODE_A);
    let d = api
        .data(&a, ADDRESS, json!({"n": NODE_A, "a": "10.0.0.7"}))
        .await;
    assert_eq!(
        d["reportNodeAddress"],
        json!({"id": NODE_A, "address": "10.0.0.7"})
    );
    api.data(&admin(), ADDRESS, json!({"n": NODE_B, "a": "gpu-b.lab"}))
        .await;
    for who in [alice(), auditor(), admin()] {
        let nodes = api
            .data(&who, "{ nodes { nodes { id address } } }", json!({}))
            .await;
        assert!(
            nodes["nodes"]["nodes"]
                .as_array()
                .unwrap()
                .contains(&json!({"id": NODE_A, "address": "10.0.0.7"})),
            "{nodes}"
        );
    }
    // Another node's agent, users and auditors may not set it; bad input names it.
    for (who, code) in [
        (Actor::agent(NODE_B), "FORBIDDEN"),
        (alice(), "FORBIDDEN"),
        (auditor(), "FORBIDDEN"),
    ] {
        let got = api
            .code(Some(&who), ADDRESS, json!({"n": NODE_A, "a": "10.9.9.9"}))
            .await;
        assert_eq!(got, code);
    }
    let err = api
        .error(Some(&a), ADDRESS, json!({"n": NODE_A, "a": "http://x:1"}))
        .await;
    assert_eq!(err["ext"]["code"], "BAD_USER_INPUT", "{err}");
    assert!(
        err["message"].as_str().unwrap().contains("address"),
        "{err}"
    );
    assert_eq!(
        api.state().node(NODE_A).unwrap().address.as_deref(),
        Some("10.0.0.7")
    );
}

#[tokio::test]
async fn endpoints_carry_the_node_address_and_warnings_are_shown() {
    let api = Api::new();
    fleet(&api).await;
    let (_, id, node) = deployed(&api, &alice(), "web", 18888).await;
    let agent = Actor::agent(&node);

    // No address yet: the port is there, without a URL.
    let d = api.data(&alice(), ENDPOINTS, json!({"id": id})).await;
    assert_eq!(
        d["deployment"]["endpoints"],
        json!([{"name": "port-8888", "protocol": "tcp", "internalPort": 8888,
                "externalPort": 18888, "url": null, "ready": false}])
    );
    api.data(&agent, ADDRESS, json!({"n": node, "a": "10.0.0.7"}))
        .await;
    api.data(
        &agent,
        REPORT,
        json!({"id": id, "r": {"kind": "CONTAINER_STARTED"}}),
    )
    .await;
    for who in [alice(), admin(), auditor(), agent.clone()] {
        let d = api.data(&who, ENDPOINTS, json!({"id": id})).await;
        let e = &d["deployment"]["endpoints"][0];
        assert_eq!(e["url"], "http://10.0.0.7:18888/", "{who:?}: {d}");
        assert_eq!(e["ready"], true);
    }
    // Bob may not see Alice's deployment.
    assert_eq!(
        api.code(Some(&bob()), ENDPOINTS, json!({"id": id})).await,
        "FORBIDDEN"
    );

    // A process inside was OOM-killed: a warning; the deployment runs on.
    let oom = json!({"id": id, "r": {"kind": "CONTAINER_OOM_WARNING", "message": "a process was killed"}});
    let r = api.data(&agent, REPORT, oom.clone()).await;
    assert_eq!(r["reportStatus"]["status"], "RUNNING");
    for who in [alice(), bob(), auditor()] {
        assert_eq!(api.code(Some(&who), REPORT, oom.clone()).await, "FORBIDDEN");
    }
    let missing = json!({"id": id, "r": {"kind": "CONTAINER_OOM_WARNING"}});
    let err = api.error(Some(&agent), REPORT, missing).await;
    assert!(
        err["message"].as_str().unwrap().contains("message"),
        "{err}"
    );
    let d = api.data(&alice(), ENDPOINTS, json!({"id": id})).await;
    assert_eq!(
        d["deployment"]["warnings"],
        json!([{"kind": "oom", "message": "a process was killed"}])
    );
    assert_eq!(d["deployment"]["status"], "RUNNING");

    // Its container is not stale on its own node; other agents and users are refused.
    let stale = json!({"n": node, "d": id, "c": "c-old"});
    assert_eq!(
        api.code(Some(&agent), STALE, stale.clone()).await,
        "BAD_USER_INPUT"
    );
    let other = if node == NODE_A { NODE_B } else { NODE_A };
    assert_eq!(
        api.code(Some(&Actor::agent(other)), STALE, stale.clone())
            .await,
        "FORBIDDEN"
    );
    assert_eq!(api.code(Some(&alice()), STALE, stale).await, "FORBIDDEN");
    // Once stopped, the node's agent may record that it removed a stale copy.
    api.data(
        &alice(),
        "mutation($id: ID!) { stop(deploymentId: $id) { status } }",
        json!({"id": id}),
    )
    .await;
    api.data(
        &agent,
        REPORT,
        json!({"id": id, "r": {"kind": "CONTAINER_REMOVED"}}),
    )
    .await;
    let recorded = api
        .data(&agent, STALE, json!({"n": node, "d": id, "c": "c-old"}))
        .await;
    assert_eq!(recorded["reportStaleContainer"], true);
    let d = api.data(&admin(), ENDPOINTS, json!({"id": id})).await;
    assert_eq!(
        d["deployment"]["warnings"][1]["kind"],
        "stale_container_removed"
    );
    assert_eq!(
        d["deployment"]["endpoints"][0]["url"],
        serde_json::Value::Null,
        "a stopped deployment has no URL"
    );
}
