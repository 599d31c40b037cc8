//! The read and write rules per role, and the error codes of refusals.

mod common;

use common::*;
use dcloud_projections::Actor;
use serde_json::json;

#[tokio::test]
async fn without_a_token_everything_is_unauthenticated() {
    let api = Api::new();
    fleet(&api).await;
    for q in [
        "{ me { name } }",
        "{ nodes { totalCount } }",
        "{ deployments { totalCount } }",
        "{ events { edges { cursor } } }",
    ] {
        assert_eq!(api.code(None, q, json!({})).await, "UNAUTHENTICATED", "{q}");
    }
    let before = api.state().last_seq();
    assert_eq!(
        api.code(None, CREATE_ENV, json!({"doc": environment("x", "1G", 1)}))
            .await,
        "UNAUTHENTICATED"
    );
    assert_eq!(
        api.code(
            None,
            r#"mutation { createToken(role: ADMIN, name: "me") { token } }"#,
            json!({})
        )
        .await,
        "UNAUTHENTICATED"
    );
    assert_eq!(api.state().last_seq(), before);
}

#[tokio::test]
async fn a_user_sees_only_their_own_environments_and_deployments() {
    let api = Api::new();
    fleet(&api).await;
    let (alice_env, alice_dep, _) = deployed(&api, &alice(), "a", 8001).await;
    let (bob_env, bob_dep, _) = deployed(&api, &bob(), "b", 8002).await;

    // Reading another's deployment or environment is refused.
    let q = "query($id: ID!) { deployment(id: $id) { id } }";
    assert_eq!(
        api.code(Some(&bob()), q, json!({"id": alice_dep})).await,
        "FORBIDDEN"
    );
    let q = "query($id: ID!) { environment(id: $id) { id } }";
    assert_eq!(
        api.code(Some(&bob()), q, json!({"id": alice_env})).await,
        "FORBIDDEN"
    );
    assert_eq!(
        api.code(
            Some(&bob()),
            "query($id: ID!) { exportEnvironment(id: $id) }",
            json!({"id": alice_env})
        )
        .await,
        "FORBIDDEN"
    );
    // Lists hide them.
    let v = api
        .data(
            &bob(),
            "{ deployments { edges { node { id } } } environments { edges { node { id } } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        v["deployments"]["edges"],
        json!([{"node": {"id": bob_dep}}])
    );
    assert_eq!(
        v["environments"]["edges"],
        json!([{"node": {"id": bob_env}}])
    );
    let v = api
        .data(&admin(), "{ deployments { totalCount } }", json!({}))
        .await;
    assert_eq!(v["deployments"]["totalCount"], 2);
    // Nodes are visible, but not which of others' deployments run there.
    let v = api
        .data(
            &bob(),
            "{ nodes { edges { node { deploymentIds ports { port deploymentId } } } } }",
            json!({}),
        )
        .await;
    let ids: Vec<serde_json::Value> = v["nodes"]["edges"]
        .as_array()
        .expect("edges")
        .iter()
        .flat_map(|e| {
            e["node"]["deploymentIds"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .collect();
    assert_eq!(ids, vec![json!(bob_dep)]);
    let ports: Vec<serde_json::Value> = v["nodes"]["edges"]
        .as_array()
        .expect("edges")
        .iter()
        .flat_map(|e| e["node"]["ports"].as_array().cloned().unwrap_or_default())
        .collect();
    assert!(
        ports.contains(&json!({"port": 8001, "deploymentId": null})),
        "{ports:?}"
    );
    // Events: only their own.
    let v = api
        .data(
            &bob(),
            "{ events(first: 1000) { edges { node { entity } } } }",
            json!({}),
        )
        .await;
    let entities: Vec<&str> = v["events"]["edges"]
        .as_array()
        .expect("edges")
        .iter()
        .filter_map(|e| e["node"]["entity"].as_str())
        .collect();
    assert!(entities.contains(&format!("deployment:{bob_dep}").as_str()));
    assert!(
        !entities
            .iter()
            .any(|e| e.contains(&alice_dep) || e.contains(&alice_env) || e.starts_with("catalog:")),
        "{entities:?}"
    );
    // Writes to another's things are refused.
    assert_eq!(
        api.code(
            Some(&bob()),
            "mutation($id: ID!) { stop(deploymentId: $id) { id } }",
            json!({"id": alice_dep})
        )
        .await,
        "FORBIDDEN"
    );
    assert_eq!(
        api.code(Some(&bob()), DEPLOY, json!({"env": alice_env}))
            .await,
        "NOT_FOUND",
        "another's environment is not found by id or name"
    );
    assert_eq!(
        api.code(
            Some(&bob()),
            "mutation($id: ID!) { deleteEnvironment(id: $id) { id } }",
            json!({"id": alice_env})
        )
        .await,
        "FORBIDDEN"
    );
    // Admin-only reads.
    for q in [
        "{ catalogs { os } }",
        "{ tokens { id } }",
        "{ at(seq: 1) { seq } }",
        "{ stateDigest { seq } }",
        "{ verifyChain { ok } }",
        "{ counts { nodes } }",
    ] {
        assert_eq!(
            api.code(Some(&bob()), q, json!({})).await,
            "FORBIDDEN",
            "{q}"
        );
    }
    assert_eq!(
        api.code(
            Some(&bob()),
            "mutation { drainNode(id: \"x\") { id } }",
            json!({})
        )
        .await,
        "FORBIDDEN"
    );
    assert_eq!(
        api.code(
            Some(&bob()),
            r#"mutation { createToken(role: ADMIN, name: "me") { token } }"#,
            json!({})
        )
        .await,
        "FORBIDDEN"
    );
}

#[tokio::test]
async fn an_agent_acts_and_sees_only_for_its_node() {
    let api = Api::new();
    fleet(&api).await;
    let (_, dep, node) = deployed(&api, &alice(), "a", 8001).await;
    let other = if node == NODE_A { NODE_B } else { NODE_A };
    let mine = Actor::agent(&node);
    let theirs = Actor::agent(other);

    // Reporting for a deployment on another node is refused, and changes nothing.
    let before = api.state().last_seq();
    let q = r#"mutation($d: ID!) { reportStatus(deploymentId: $d, report: {kind: CONTAINER_STARTED}) { status } }"#;
    assert_eq!(
        api.code(Some(&theirs), q, json!({"d": dep})).await,
        "FORBIDDEN"
    );
    // Heartbeats and registration for another node too.
    let hb = r#"mutation($n: ID!) { heartbeat(nodeId: $n, usage: {cpuMillis: 1, memoryBytes: 1}) { logged } }"#;
    assert_eq!(
        api.code(Some(&theirs), hb, json!({"n": node})).await,
        "FORBIDDEN"
    );
    assert_eq!(
        api.code(Some(&theirs), REGISTER_NODE, json!({"id": node, "cpu": 1}))
            .await,
        "FORBIDDEN"
    );
    assert_eq!(api.state().last_seq(), before);

    // Reads: its own node and what is placed on it; nothing else.
    let v = api
        .data(
            &theirs,
            "{ nodes { edges { node { id } } } deployments { totalCount } }",
            json!({}),
        )
        .await;
    assert_eq!(v["nodes"]["edges"], json!([{"node": {"id": other}}]));
    assert_eq!(v["deployments"]["totalCount"], 0);
    let v = api
        .data(&mine, "{ deployments { totalCount } }", json!({}))
        .await;
    assert_eq!(v["deployments"]["totalCount"], 1);
    assert_eq!(
        api.code(
            Some(&theirs),
            "query($id: ID!) { node(id: $id) { id } }",
            json!({"id": node})
        )
        .await,
        "FORBIDDEN"
    );
    assert_eq!(
        api.code(
            Some(&theirs),
            "query($id: ID!) { deployment(id: $id) { id } }",
            json!({"id": dep})
        )
        .await,
        "FORBIDDEN"
    );
    assert_eq!(
        api.code(
            Some(&theirs),
            "query($n: ID!) { nodeAssignments(nodeId: $n) { seq } }",
            json!({"n": node})
        )
        .await,
        "FORBIDDEN"
    );
    for q in [
        "{ environments { totalCount } }",
        "{ templates { name } }",
        "{ events { edges { cursor } } }",
        "{ services { name } }",
    ] {
        assert_eq!(
            api.code(Some(&theirs), q, json!({})).await,
            "FORBIDDEN",
            "{q}"
        );
    }
    // It cannot deploy or create environments.
    assert_eq!(
        api.code(
            Some(&theirs),
            CREATE_ENV,
            json!({"doc": environment("x", "1G", 1)})
        )
        .await,
        "FORBIDDEN"
    );
}

#[tokio::test]
async fn an_auditor_reads_everything_and_writes_nothing() {
    let api = Api::new();
    fleet(&api).await;
    let (env, dep, node) = deployed(&api, &alice(), "a", 8001).await;
    let v = api
        .data(
            &auditor(),
            r#"query($d: ID!, $e: ID!) { deployment(id: $d) { id } environment(id: $e) { id } catalogs { os } tokens { id }
               events(first: 1) { edges { cursor } } at(seq: 1) { seq } verifyChain { ok } }"#,
            json!({"d": dep, "e": env}),
        )
        .await;
    assert_eq!(v["deployment"]["id"], dep.as_str());
    assert_eq!(v["verifyChain"]["ok"], true);

    let before = api.state().last_seq();
    let writes = [
        (CREATE_ENV, json!({"doc": environment("x", "1G", 1)})),
        (DEPLOY, json!({"env": env})),
        (
            "mutation($id: ID!) { stop(deploymentId: $id) { id } }",
            json!({"id": dep}),
        ),
        (
            "mutation($n: ID!) { drainNode(id: $n) { id } }",
            json!({"n": node}),
        ),
        (
            "mutation($d: String!) { upsertCatalog(document: $d) { os } }",
            json!({"d": CATALOG}),
        ),
        (
            r#"mutation { createToken(role: AUDITOR, name: "x") { token } }"#,
            json!({}),
        ),
        (
            "mutation($d: String!) { apply(document: $d) { events } }",
            json!({"d": environment("y", "1G", 2)}),
        ),
    ];
    for (q, vars) in writes {
        assert_eq!(
            api.code(Some(&auditor()), q, vars).await,
            "FORBIDDEN",
            "{q}"
        );
    }
    assert_eq!(api.state().last_seq(), before);
}

/// A backend whose writer has stopped after a storage failure.
struct Stopped(std::sync::Arc<TestBackend>);

impl dcloud_graphql::Backend for Stopped {
    fn submit(
        &self,
        _: dcloud_projections::Command,
        _: Actor,
        _: String,
    ) -> futures::future::BoxFuture<
        'static,
        Result<Vec<dcloud_events::Envelope>, dcloud_graphql::ApiError>,
    > {
        Box::pin(async {
            Err(dcloud_graphql::ApiError::Internal(
                "the writer has stopped: fjall poisoned".into(),
            ))
        })
    }
    fn state(&self) -> dcloud_graphql::StateGuard<'_> {
        self.0.state()
    }
    fn log(&self) -> std::sync::Arc<dyn dcloud_events::EventLog> {
        self.0.log()
    }
    fn verify_chain(&self) -> Result<dcloud_events::VerifyReport, dcloud_events::VerifyError> {
        self.0.verify_chain()
    }
    fn now_ms(&self) -> i64 {
        self.0.now_ms()
    }
    fn new_id(&self) -> String {
        self.0.new_id()
    }
    fn new_secret(&self) -> [u8; 32] {
        self.0.new_secret()
    }
}

#[tokio::test]
async fn internal_errors_are_opaque_and_carry_the_request_id() {
    let schema = dcloud_graphql::schema(
        std::sync::Arc::new(Stopped(TestBackend::new())),
        Default::default(),
    );
    let resp = schema
        .execute(Api::request(
            Some(&admin()),
            CREATE_ENV,
            json!({"doc": environment("x", "1G", 1)}),
        ))
        .await;
    let e = resp.errors.first().expect("an error");
    assert_eq!(e.message, "internal error (request id req-test)");
    let ext = serde_json::to_value(&e.extensions).expect("json");
    assert_eq!(ext, json!({"code": "INTERNAL", "requestId": "req-test"}));
}
