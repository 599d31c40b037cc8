//! Subscriptions: catch-up then live from a sequence number, filtered by what the
//! caller may see; deployment and node updates; an agent's assignments.

mod common;

use std::time::Duration;

use async_graphql::Response;
use common::*;
use dcloud_graphql::Backend;
use dcloud_projections::Actor;
use futures::stream::BoxStream;
use futures::StreamExt;
use serde_json::{json, Value};

fn subscribe(api: &Api, actor: &Actor, query: &str, vars: Value) -> BoxStream<'static, Response> {
    api.schema
        .execute_stream(Api::request(Some(actor), query, vars))
}

/// The next item's data (failing the test after a generous deadline).
async fn next(stream: &mut BoxStream<'static, Response>) -> Value {
    let resp = tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("an item within the deadline")
        .expect("the stream goes on");
    Api::ok(resp)
}

/// Nothing arrives for a short while.
async fn quiet(stream: &mut BoxStream<'static, Response>) {
    let got = tokio::time::timeout(Duration::from_millis(200), stream.next()).await;
    assert!(
        got.is_err(),
        "unexpected item: {:?}",
        got.ok().flatten().map(|r| r.data)
    );
}

const EVENTS: &str = "subscription($after: Int, $f: EventFilter) { events(after: $after, filter: $f) { seq type entity } }";

#[tokio::test]
async fn events_after_n_catch_up_then_follow_live_appends() {
    let api = Api::new();
    fleet(&api).await;
    let (_, d, _) = deployed(&api, &alice(), "web", 8080).await;
    let last = api.backend.log().last_seq();
    let n = 2;
    let mut s = subscribe(&api, &auditor(), EVENTS, json!({"after": n}));
    for seq in n + 1..=last {
        assert_eq!(
            next(&mut s).await["events"]["seq"],
            seq,
            "catch-up in order, no gap"
        );
    }
    quiet(&mut s).await;
    api.data(
        &alice(),
        "mutation($id: ID!) { stop(deploymentId: $id) { status } }",
        json!({"id": d}),
    )
    .await;
    let live = next(&mut s).await;
    assert_eq!(
        live["events"],
        json!({"seq": last + 1, "type": "DeploymentStopRequested", "entity": format!("deployment:{d}")})
    );

    // Without `after`: live only.
    let mut s = subscribe(&api, &auditor(), EVENTS, json!({}));
    quiet(&mut s).await;
    api.data(
        &admin(),
        "mutation($n: ID!) { drainNode(id: $n) { id } }",
        json!({"n": NODE_A}),
    )
    .await;
    assert_eq!(next(&mut s).await["events"]["type"], "NodeDrained");
}

#[tokio::test]
async fn event_streams_show_a_user_only_their_own() {
    let api = Api::new();
    fleet(&api).await;
    deployed(&api, &alice(), "a", 8001).await;
    let (_, bob_dep, _) = deployed(&api, &bob(), "b", 8002).await;
    let mut s = subscribe(
        &api,
        &bob(),
        EVENTS,
        json!({"after": 0, "f": {"entity": "deployment"}}),
    );
    let first = next(&mut s).await;
    assert_eq!(first["events"]["entity"], format!("deployment:{bob_dep}"));
    assert_eq!(
        next(&mut s).await["events"]["entity"],
        format!("deployment:{bob_dep}")
    );
    quiet(&mut s).await;
    // An agent is pointed at its assignments instead.
    let mut s = subscribe(&api, &Actor::agent(NODE_A), EVENTS, json!({}));
    let resp = tokio::time::timeout(Duration::from_secs(10), s.next())
        .await
        .expect("answer")
        .expect("item");
    assert_eq!(
        serde_json::to_value(&resp.errors[0].extensions).expect("json")["code"],
        "FORBIDDEN"
    );
}

#[tokio::test]
async fn deployment_updates_follow_each_status_change() {
    let api = Api::new();
    fleet(&api).await;
    let (_, d, node) = deployed(&api, &alice(), "web", 8080).await;
    let q = r#"subscription($id: ID, $after: Int) { deploymentUpdates(id: $id, after: $after) {
        seq type status statusChanged build { step steps } deployment { id status } } }"#;
    // From the start of its life: requested, scheduled.
    let mut from_start = subscribe(&api, &alice(), q, json!({"id": d, "after": 0}));
    let u = next(&mut from_start).await;
    assert_eq!(
        (
            u["deploymentUpdates"]["type"].clone(),
            u["deploymentUpdates"]["status"].clone()
        ),
        (json!("DeploymentRequested"), json!("PENDING"))
    );
    let u = next(&mut from_start).await;
    assert_eq!(u["deploymentUpdates"]["status"], "SCHEDULED");
    assert_eq!(u["deploymentUpdates"]["statusChanged"], true);

    let mut s = subscribe(&api, &alice(), q, json!({"id": d}));
    quiet(&mut s).await;
    let agent = Actor::agent(&node);
    let report = r#"mutation($d: ID!, $r: ReportInput!) { reportStatus(deploymentId: $d, report: $r) { status } }"#;
    let reports = [
        (
            json!({"kind": "BUILD_STARTED", "image": "img", "steps": 3}),
            "BUILDING",
            true,
        ),
        (
            json!({"kind": "BUILD_PROGRESS", "step": 1, "steps": 3}),
            "BUILDING",
            false,
        ),
        (
            json!({"kind": "CONTAINER_CREATED", "containerId": "c1"}),
            "CREATED",
            true,
        ),
        (json!({"kind": "CONTAINER_STARTED"}), "RUNNING", true),
    ];
    for (r, status, changed) in reports {
        api.data(&agent, report, json!({"d": d, "r": r})).await;
        let u = next(&mut s).await;
        let u = &u["deploymentUpdates"];
        assert_eq!(u["status"], status, "{u}");
        assert_eq!(u["statusChanged"], changed, "{u}");
        assert_eq!(u["deployment"]["id"], d.as_str());
    }
    // Each status as of its own event, even when read later in a catch-up.
    let mut replay = subscribe(&api, &alice(), q, json!({"id": d, "after": 0}));
    let mut statuses = Vec::new();
    for _ in 0..6 {
        statuses.push(next(&mut replay).await["deploymentUpdates"]["status"].clone());
    }
    assert_eq!(
        statuses,
        vec![
            json!("PENDING"),
            json!("SCHEDULED"),
            json!("BUILDING"),
            json!("BUILDING"),
            json!("CREATED"),
            json!("RUNNING")
        ]
    );

    // Another user may not follow it.
    let mut s = subscribe(&api, &bob(), q, json!({"id": d}));
    let resp = tokio::time::timeout(Duration::from_secs(10), s.next())
        .await
        .expect("answer")
        .expect("item");
    assert_eq!(
        serde_json::to_value(&resp.errors[0].extensions).expect("json")["code"],
        "FORBIDDEN"
    );
}

#[tokio::test]
async fn node_updates_carry_the_node_as_it_is() {
    let api = Api::new();
    fleet(&api).await;
    let q = "subscription($id: ID) { nodeUpdates(id: $id) { type nodeId node { state } } }";
    let mut s = subscribe(&api, &alice(), q, json!({"id": NODE_B}));
    quiet(&mut s).await; // a stream starts when first polled
    api.data(
        &admin(),
        "mutation($n: ID!) { drainNode(id: $n) { id } }",
        json!({"n": NODE_A}),
    )
    .await;
    api.data(
        &admin(),
        "mutation($n: ID!) { drainNode(id: $n) { id } }",
        json!({"n": NODE_B}),
    )
    .await;
    let u = next(&mut s).await;
    assert_eq!(
        u["nodeUpdates"],
        json!({"type": "NodeDrained", "nodeId": NODE_B, "node": {"state": "DRAINING"}})
    );
}

const ASSIGNMENTS: &str = r#"subscription($n: ID!, $after: Int) { assignments(nodeId: $n, after: $after) {
    seq kind deploymentId run { image dockerfile steps gpus resources { cpuMillis memoryBytes } ports { external internal protocol }
    storage { target } datasets env { name value } labels { key value } } } }"#;

#[tokio::test]
async fn an_agent_follows_its_assignments_and_resumes_from_the_last_seq() {
    let api = Api::new();
    fleet(&api).await;
    api.data(&admin(), r#"mutation { registerService(document: "{\"service-name\": \"dfs-server\", \"ip\": \"10.0.0.1\", \"port\": 8003}") { name } }"#, json!({})).await;
    let (_, d1, node) = deployed(&api, &alice(), "one", 8001).await;
    let agent = Actor::agent(&node);
    let mut s = subscribe(&api, &agent, ASSIGNMENTS, json!({"n": node, "after": 0}));
    let a = next(&mut s).await;
    let a = &a["assignments"];
    assert_eq!(a["kind"], "RUN");
    assert_eq!(a["deploymentId"], d1.as_str());
    let run = &a["run"];
    assert_eq!(run["steps"], 3);
    assert!(run["dockerfile"]
        .as_str()
        .is_some_and(|f| f.starts_with("FROM ubuntu:22.04\n")));
    assert_eq!(
        run["resources"],
        json!({"cpuMillis": 1000, "memoryBytes": 1u64 << 30})
    );
    assert_eq!(
        run["ports"],
        json!([{"external": 8001, "internal": 8888, "protocol": "TCP"}])
    );
    let env = run["env"].as_array().expect("env");
    assert!(
        env.contains(&json!({"name": "DFS_SERVER_HOST", "value": "10.0.0.1"})),
        "{env:?}"
    );
    assert!(env.contains(&json!({"name": "DFS_SERVER_PORT", "value": "8003"})));
    assert!(env.contains(&json!({"name": "DCLOUD_DEPLOYMENT_ID", "value": d1})));
    assert!(run["labels"]
        .as_array()
        .expect("labels")
        .contains(&json!({"key": "dcloud.deployment", "value": d1})));
    let seen = a["seq"].as_u64().expect("seq");
    quiet(&mut s).await;

    // A stop arrives live.
    api.data(
        &alice(),
        "mutation($id: ID!) { stop(deploymentId: $id) { status } }",
        json!({"id": d1}),
    )
    .await;
    let stop = next(&mut s).await;
    assert_eq!(
        (
            stop["assignments"]["kind"].clone(),
            stop["assignments"]["deploymentId"].clone()
        ),
        (json!("STOP"), json!(d1))
    );
    let stop_seq = stop["assignments"]["seq"].as_u64().expect("seq");
    drop(s);

    // While the agent is away, its deployment is removed and another is scheduled.
    let report = r#"mutation($d: ID!) { reportStatus(deploymentId: $d, report: {kind: CONTAINER_REMOVED}) { status } }"#;
    api.data(&agent, report, json!({"d": d1})).await;
    let mut others = Vec::new();
    let mut d2 = None;
    for port in 8002..8010 {
        let (_, d, n) = deployed(&api, &alice(), &format!("app{port}"), port).await;
        if n == node {
            d2 = Some(d);
            break;
        }
        others.push(d);
    }
    let d2 = d2.expect("one lands on this node");

    // Resuming after the last seq it saw: exactly what it missed, nothing twice.
    let mut s = subscribe(
        &api,
        &agent,
        ASSIGNMENTS,
        json!({"n": node, "after": stop_seq}),
    );
    let a = next(&mut s).await;
    assert_eq!(
        (
            a["assignments"]["kind"].clone(),
            a["assignments"]["deploymentId"].clone()
        ),
        (json!("STOPPED"), json!(d1))
    );
    let a = next(&mut s).await;
    assert_eq!(
        (
            a["assignments"]["kind"].clone(),
            a["assignments"]["deploymentId"].clone()
        ),
        (json!("RUN"), json!(d2))
    );
    quiet(&mut s).await;
    assert!(stop_seq > seen);
    assert!(others.iter().all(|o| api
        .state()
        .deployment(o)
        .and_then(|d| d.node.clone())
        .as_deref()
        != Some(node.as_str())));

    // Another node's agent may not follow it.
    let other = if node == NODE_A { NODE_B } else { NODE_A };
    let mut s = subscribe(&api, &Actor::agent(other), ASSIGNMENTS, json!({"n": node}));
    let resp = tokio::time::timeout(Duration::from_secs(10), s.next())
        .await
        .expect("answer")
        .expect("item");
    assert_eq!(
        serde_json::to_value(&resp.errors[0].extensions).expect("json")["code"],
        "FORBIDDEN"
    );
}

#[tokio::test]
async fn a_lost_node_is_told_its_deployments_moved() {
    let api = Api::new();
    fleet(&api).await;
    let (_, d, node) = deployed(&api, &alice(), "one", 8001).await;
    let mut s = subscribe(&api, &Actor::agent(&node), ASSIGNMENTS, json!({"n": node}));
    quiet(&mut s).await;
    api.data(
        &admin(),
        "mutation($n: [ID!]!) { markNodesLost(nodeIds: $n) }",
        json!({"n": [node]}),
    )
    .await;
    // Within the lost-node grace nothing moves: the node keeps its assignments.
    quiet(&mut s).await;
    api.data(
        &admin(),
        "mutation($n: [ID!]!) { evictLostNodes(nodeIds: $n) }",
        json!({"n": [node]}),
    )
    .await;
    let a = next(&mut s).await;
    assert_eq!(
        (
            a["assignments"]["kind"].clone(),
            a["assignments"]["deploymentId"].clone()
        ),
        (json!("LOST"), json!(d))
    );
    quiet(&mut s).await;
    // The other node gets it to run.
    let other = if node == NODE_A { NODE_B } else { NODE_A };
    let mut s = subscribe(
        &api,
        &Actor::agent(other),
        ASSIGNMENTS,
        json!({"n": other, "after": 0}),
    );
    let a = next(&mut s).await;
    assert_eq!(
        (
            a["assignments"]["kind"].clone(),
            a["assignments"]["deploymentId"].clone()
        ),
        (json!("RUN"), json!(d))
    );
}
