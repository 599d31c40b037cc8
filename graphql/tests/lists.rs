//! The console's fleet-scale reads: `clusterTotals`, and `nodes` / `deployments`
//! filtered, sorted and paged by offset on the server, under every role.

mod common;

use common::*;
use dcloud_projections::Actor;
use serde_json::{json, Value};

const NODE_C: &str = "0x5f6e4b6e4b52";

/// The usual fleet plus a big node named `gpu-box`; alice deploys `notebook` and
/// `web`, bob deploys `train`. Returns the three deployment ids in request order.
async fn setup(api: &Api) -> Vec<String> {
    fleet(api).await;
    let big = r#"mutation($id: ID!) { registerNode(nodeId: $id, fingerprint: {
        hostname: "gpu-box", os: "linux", agentVersion: "test",
        capacity: {cpuMillis: 16000, memoryBytes: 68719476736, gpus: 0, storageBytes: 107374182400},
        labels: [{key: "zone", value: "b"}] }) { id } }"#;
    api.data(&Actor::agent(NODE_C), big, json!({"id": NODE_C}))
        .await;
    let mut ids = Vec::new();
    for (user, name, port) in [
        (alice(), "notebook", 8801),
        (alice(), "web", 8802),
        (bob(), "train", 8803),
    ] {
        ids.push(deployed(api, &user, name, port).await.1);
    }
    ids
}

fn ids(v: &Value, list: &str, field: &str) -> Vec<String> {
    v[list]["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .map(|n| n[field].as_str().unwrap_or_default().to_string())
        .collect()
}

const TOTALS: &str = "{ clusterTotals { seq nodes alive ready draining lost
    allocatable { cpuMillis } allocated { cpuMillis memoryBytes } free { cpuMillis } usage { cpuMillis }
    deployments liveDeployments pendingDeployments runningDeployments } }";

#[tokio::test]
async fn cluster_totals_sum_the_fleet_and_count_what_the_caller_sees() {
    let api = Api::new();
    setup(&api).await;
    let seq = api.state().last_seq();
    let t = api.data(&admin(), TOTALS, json!({})).await["clusterTotals"].clone();
    assert_eq!(t["seq"], seq, "the seq the totals were read at");
    assert_eq!(
        (t["nodes"].clone(), t["alive"].clone()),
        (json!(3), json!(3))
    );
    assert_eq!(t["ready"], 3);
    assert_eq!(t["lost"], 0);
    assert_eq!(t["allocatable"]["cpuMillis"], 22_000);
    assert_eq!(t["allocated"]["cpuMillis"], 3_000);
    assert_eq!(t["allocated"]["memoryBytes"], 3u64 << 30);
    assert_eq!(t["free"]["cpuMillis"], 19_000);
    assert_eq!(t["deployments"], 3);
    assert_eq!(t["liveDeployments"], 3);
    // An auditor sees what an admin sees; a user counts only their own deployments.
    let t_aud = api.data(&auditor(), TOTALS, json!({})).await;
    assert_eq!(t_aud["clusterTotals"], t);
    let t_alice = api.data(&alice(), TOTALS, json!({})).await["clusterTotals"].clone();
    assert_eq!(t_alice["nodes"], 3);
    assert_eq!(t_alice["deployments"], 2);
    assert_eq!(t_alice["seq"], seq);
    let t_bob = api.data(&bob(), TOTALS, json!({})).await;
    assert_eq!(t_bob["clusterTotals"]["deployments"], 1);
    // Agents and strangers are refused.
    assert_eq!(
        api.code(Some(&Actor::agent(NODE_A)), TOTALS, json!({}))
            .await,
        "FORBIDDEN"
    );
    assert_eq!(api.code(None, TOTALS, json!({})).await, "UNAUTHENTICATED");
}

const NODES: &str = r#"query($f: NodeFilter, $o: NodeOrder, $off: Int, $first: Int, $after: String) {
    nodes(filter: $f, orderBy: $o, offset: $off, first: $first, after: $after) {
      totalCount pageInfo { hasNextPage hasPreviousPage endCursor } nodes { id hostname free { cpuMillis } } } }"#;

#[tokio::test]
async fn nodes_filter_sort_and_page_by_offset_on_the_server() {
    let api = Api::new();
    setup(&api).await;
    for who in [admin(), alice(), auditor()] {
        let v = api
            .data(
                &who,
                NODES,
                json!({"o": {"field": "CPU_FREE", "desc": true}}),
            )
            .await;
        assert_eq!(v["nodes"]["totalCount"], 3);
        let free: Vec<u64> = v["nodes"]["nodes"]
            .as_array()
            .expect("nodes")
            .iter()
            .map(|n| n["free"]["cpuMillis"].as_u64().expect("free"))
            .collect();
        assert_eq!(free.len(), 3);
        assert!(free.windows(2).all(|w| w[0] >= w[1]), "{free:?}");
        assert_eq!(v["nodes"]["nodes"][0]["id"], NODE_C, "the big node first");
    }
    // A search by hostname or label; the count is of the matches.
    let v = api
        .data(&admin(), NODES, json!({"f": {"search": "GPU"}}))
        .await;
    assert_eq!(ids(&v, "nodes", "hostname"), vec!["gpu-box"]);
    assert_eq!(v["nodes"]["totalCount"], 1);
    let v = api
        .data(&admin(), NODES, json!({"f": {"search": "zone=a"}}))
        .await;
    assert_eq!(ids(&v, "nodes", "id"), vec![NODE_A, NODE_B]);
    let v = api
        .data(
            &admin(),
            NODES,
            json!({"f": {"state": "READY", "health": "ALIVE"}}),
        )
        .await;
    assert_eq!(v["nodes"]["totalCount"], 3);
    // By hostname, ties in id order; then one page by offset.
    let by_host = json!({"field": "HOSTNAME"});
    let v = api.data(&admin(), NODES, json!({"o": by_host})).await;
    assert_eq!(ids(&v, "nodes", "id"), vec![NODE_C, NODE_A, NODE_B]);
    let v = api
        .data(&admin(), NODES, json!({"o": by_host, "off": 1, "first": 1}))
        .await;
    assert_eq!(ids(&v, "nodes", "id"), vec![NODE_A]);
    let page = &v["nodes"]["pageInfo"];
    assert_eq!(
        (page["hasNextPage"].clone(), page["hasPreviousPage"].clone()),
        (json!(true), json!(true))
    );
    // A cursor of the sorted list continues it.
    let v = api
        .data(
            &admin(),
            NODES,
            json!({"o": by_host, "after": page["endCursor"].clone()}),
        )
        .await;
    assert_eq!(ids(&v, "nodes", "id"), vec![NODE_B]);
    // Descending by hostname keeps ties (the two "h") in id order.
    let v = api
        .data(
            &admin(),
            NODES,
            json!({"o": {"field": "HOSTNAME", "desc": true}}),
        )
        .await;
    assert_eq!(ids(&v, "nodes", "id"), vec![NODE_A, NODE_B, NODE_C]);
    // An agent still sees only its own node, filters included.
    let v = api
        .data(&Actor::agent(NODE_B), NODES, json!({"f": {"search": "h"}}))
        .await;
    assert_eq!(ids(&v, "nodes", "id"), vec![NODE_B]);
    // Bad paging is refused with the field named.
    let e = api.error(Some(&admin()), NODES, json!({"off": -2})).await;
    assert_eq!(e["ext"]["code"], "BAD_USER_INPUT");
    assert!(e["message"].as_str().unwrap_or_default().contains("offset"));
}

const DEPS: &str = r#"query($f: DeploymentFilter, $o: DeploymentOrder, $off: Int, $first: Int, $after: String) {
    deployments(filter: $f, orderBy: $o, offset: $off, first: $first, after: $after) {
      totalCount pageInfo { hasNextPage endCursor } nodes { id owner environmentName nodeId nodeHostname } } }"#;

#[tokio::test]
async fn deployments_search_sort_and_page_on_the_server_per_role() {
    let api = Api::new();
    let made = setup(&api).await;
    let by_env = json!({"field": "ENVIRONMENT"});
    for who in [admin(), auditor()] {
        let v = api.data(&who, DEPS, json!({"o": by_env})).await;
        assert_eq!(
            ids(&v, "deployments", "environmentName"),
            vec!["notebook", "train", "web"]
        );
        assert_eq!(v["deployments"]["totalCount"], 3);
    }
    // The row names the node's hostname beside its id.
    let v = api.data(&admin(), DEPS, json!({})).await;
    let first = &v["deployments"]["nodes"][0];
    let host = if first["nodeId"] == NODE_C {
        "gpu-box"
    } else {
        "h"
    };
    assert_eq!(first["nodeHostname"], host);
    assert_eq!(
        ids(&v, "deployments", "id"),
        made,
        "request order by default"
    );
    // Search matches the owner, the environment name, the id or the hostname.
    let v = api
        .data(&admin(), DEPS, json!({"f": {"search": "ALI"}}))
        .await;
    assert_eq!(v["deployments"]["totalCount"], 2);
    let v = api
        .data(&admin(), DEPS, json!({"f": {"search": "trai"}}))
        .await;
    assert_eq!(ids(&v, "deployments", "environmentName"), vec!["train"]);
    // A user sees only their own, whatever the filter or order.
    let v = api
        .data(&alice(), DEPS, json!({"f": {"search": "train"}}))
        .await;
    assert_eq!(v["deployments"]["totalCount"], 0);
    let v = api
        .data(
            &alice(),
            DEPS,
            json!({"o": {"field": "ENVIRONMENT", "desc": true}, "first": 1}),
        )
        .await;
    assert_eq!(ids(&v, "deployments", "environmentName"), vec!["web"]);
    assert_eq!(v["deployments"]["totalCount"], 2);
    assert_eq!(v["deployments"]["pageInfo"]["hasNextPage"], true);
    let v = api
        .data(
            &alice(),
            DEPS,
            json!({"o": {"field": "ENVIRONMENT", "desc": true}, "off": 1}),
        )
        .await;
    assert_eq!(ids(&v, "deployments", "environmentName"), vec!["notebook"]);
    // Owner order, newest first within an owner when descending by request.
    let v = api
        .data(&admin(), DEPS, json!({"o": {"field": "OWNER"}}))
        .await;
    assert_eq!(
        ids(&v, "deployments", "owner"),
        vec!["alice", "alice", "bob"]
    );
    let v = api
        .data(
            &admin(),
            DEPS,
            json!({"o": {"field": "REQUESTED", "desc": true}}),
        )
        .await;
    let mut newest_first = made.clone();
    newest_first.reverse();
    assert_eq!(ids(&v, "deployments", "id"), newest_first);
    // An agent sees its node's deployments only.
    let node = api
        .state()
        .deployment(&made[0])
        .and_then(|d| d.node.clone());
    let node = node.expect("placed");
    let v = api.data(&Actor::agent(&node), DEPS, json!({})).await;
    assert!(ids(&v, "deployments", "nodeId").iter().all(|n| *n == node));
    // A cursor that is not in the sorted list is refused.
    let e = api
        .error(
            Some(&admin()),
            DEPS,
            json!({"o": by_env, "after": "999999"}),
        )
        .await;
    assert_eq!(e["ext"]["code"], "BAD_USER_INPUT");
}

#[tokio::test]
async fn recent_usage_is_readable_by_whoever_sees_the_deployment() {
    let api = Api::new();
    let made = setup(&api).await;
    let q =
        "query($id: ID!) { deployment(id: $id) { recentUsage { timeMs cpuMillis memoryBytes } } }";
    for who in [admin(), alice(), auditor()] {
        let v = api.data(&who, q, json!({"id": made[0]})).await;
        // The test backend keeps no heartbeats in memory: the list is empty, not an error.
        assert_eq!(v["deployment"]["recentUsage"], json!([]));
    }
    assert_eq!(
        api.code(Some(&bob()), q, json!({"id": made[0]})).await,
        "FORBIDDEN"
    );
}
