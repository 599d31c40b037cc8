//! History queries: the event log by sequence number, `at(seq:)` against an
//! independent replay, the digest and chain verification.

mod common;

use common::*;
use dcloud_events::EventLog;
use dcloud_graphql::Backend;
use dcloud_projections::State;
use serde_json::json;

#[tokio::test]
async fn events_page_by_sequence_number_and_filter() {
    let api = Api::new();
    fleet(&api).await;
    let (_, d, _) = deployed(&api, &alice(), "web", 8080).await;
    let last = api.backend.log().last_seq();
    let q = r#"query($after: String, $first: Int, $f: EventFilter) { events(after: $after, first: $first, filter: $f) {
        pageInfo { hasNextPage endCursor } edges { cursor node { seq type entity actor correlation hash prevHash schema payload } } } }"#;
    let p1 = api.data(&auditor(), q, json!({"first": 2})).await;
    let edges = p1["events"]["edges"].as_array().expect("edges");
    assert_eq!(
        edges
            .iter()
            .map(|e| e["node"]["seq"].as_u64().unwrap_or(0))
            .collect::<Vec<_>>(),
        vec![1, 2]
    );
    assert_eq!(edges[0]["node"]["type"], "CatalogUpserted");
    assert_eq!(edges[1]["node"]["prevHash"], edges[0]["node"]["hash"]);
    assert_eq!(p1["events"]["pageInfo"]["hasNextPage"], true);
    let p2 = api
        .data(&auditor(), q, json!({"after": "2", "first": 1000}))
        .await;
    let rest = p2["events"]["edges"].as_array().expect("edges");
    assert_eq!(
        rest.first().map(|e| e["node"]["seq"].clone()),
        Some(json!(3))
    );
    assert_eq!(
        rest.last().map(|e| e["node"]["seq"].clone()),
        Some(json!(last))
    );
    assert_eq!(p2["events"]["pageInfo"]["hasNextPage"], false);

    let by_type = api
        .data(&auditor(), q, json!({"f": {"type": "DeploymentScheduled"}}))
        .await;
    let e = &by_type["events"]["edges"][0]["node"];
    assert_eq!(e["entity"], format!("deployment:{d}"));
    assert_eq!(e["actor"], "user:alice");
    assert_eq!(e["correlation"], "req-test");
    assert_eq!(e["payload"]["deployment_id"], d.as_str());
    assert_eq!(by_type["events"]["edges"].as_array().map(Vec::len), Some(1));
    let by_entity = api
        .data(
            &auditor(),
            q,
            json!({"f": {"entity": format!("deployment:{d}")}}),
        )
        .await;
    assert_eq!(
        by_entity["events"]["edges"].as_array().map(Vec::len),
        Some(2),
        "requested + scheduled"
    );
    let by_kind = api
        .data(&auditor(), q, json!({"f": {"entity": "node"}}))
        .await;
    assert_eq!(by_kind["events"]["edges"].as_array().map(Vec::len), Some(2));
    let by_actor = api
        .data(
            &auditor(),
            q,
            json!({"f": {"actor": format!("agent:{NODE_B}")}}),
        )
        .await;
    assert_eq!(
        by_actor["events"]["edges"][0]["node"]["type"],
        "NodeRegistered"
    );
}

#[tokio::test]
async fn at_seq_equals_an_independent_replay() {
    let api = Api::new();
    fleet(&api).await;
    let (_, d1, _) = deployed(&api, &alice(), "one", 8001).await;
    let mid = api.backend.log().last_seq();
    // A snapshot at `mid`: `at` must start from it and still agree with a full replay.
    let snapshot = api.state().to_snapshot_bytes();
    api.backend
        .fjall()
        .save_snapshot(mid, &snapshot)
        .expect("snapshot");
    api.data(
        &alice(),
        "mutation($id: ID!) { stop(deploymentId: $id) { status } }",
        json!({"id": d1}),
    )
    .await;
    deployed(&api, &bob(), "two", 8002).await;
    let end = api.backend.log().last_seq();

    for seq in [0, 3, mid - 1, mid, mid + 1, end] {
        let mut replay = State::new();
        for env in api.backend.log().read_range(1, seq) {
            replay.apply(&env.expect("event"));
        }
        let q = r#"query($s: Int!) { at(seq: $s) { seq digest fromSnapshot counts { nodes environments deployments pending catalogs }
            deployments { totalCount edges { node { id status } } } nodes { totalCount } environments { totalCount } } }"#;
        let v = api.data(&auditor(), q, json!({"s": seq})).await;
        let at = &v["at"];
        assert_eq!(at["seq"], seq);
        assert_eq!(
            at["digest"],
            hex::encode(replay.digest()),
            "digest at {seq}"
        );
        assert_eq!(at["counts"]["deployments"], replay.deployments.len());
        assert_eq!(at["deployments"]["totalCount"], replay.deployments.len());
        assert_eq!(at["nodes"]["totalCount"], replay.nodes.len());
        assert_eq!(
            at["fromSnapshot"],
            if seq >= mid { json!(mid) } else { json!(null) }
        );
        for edge in at["deployments"]["edges"].as_array().expect("edges") {
            let id = edge["node"]["id"].as_str().unwrap_or_default();
            let status = replay
                .deployment(id)
                .map(|d| d.status.as_str().to_uppercase());
            assert_eq!(edge["node"]["status"].as_str().map(str::to_string), status);
        }
    }
    let at_mid = api
        .data(
            &admin(),
            "query($s: Int!, $d: ID!) { at(seq: $s) { deployment(id: $d) { status } } }",
            json!({"s": mid, "d": d1}),
        )
        .await;
    assert_eq!(at_mid["at"]["deployment"]["status"], "SCHEDULED");
    assert_eq!(
        api.code(
            Some(&admin()),
            "query($s: Int!) { at(seq: $s) { seq } }",
            json!({"s": end + 1})
        )
        .await,
        "BAD_USER_INPUT"
    );
}

#[tokio::test]
async fn digest_counts_and_chain_verification() {
    let api = Api::new();
    fleet(&api).await;
    let v = api.data(&auditor(), "{ stateDigest { seq digest } counts { nodes catalogs } verifyChain { ok events lastSeq lastHash firstBadSeq reason } }", json!({})).await;
    let last = api.backend.log().last_seq();
    assert_eq!(
        v["stateDigest"],
        json!({"seq": last, "digest": hex::encode(api.state().digest())})
    );
    assert_eq!(v["counts"], json!({"nodes": 2, "catalogs": 1}));
    assert_eq!(v["verifyChain"]["ok"], true);
    assert_eq!(v["verifyChain"]["events"], last);
    assert_eq!(
        v["verifyChain"]["lastHash"],
        hex::encode(api.backend.log().last_hash())
    );
    assert_eq!(v["verifyChain"]["firstBadSeq"], json!(null));
}
