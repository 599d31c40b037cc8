//! Quotas over GraphQL under each role: admins set them, users, agents and auditors
//! may not; a deploy past one is `QUOTA_EXCEEDED` naming the limit, or waits with
//! `waitForQuota`; `me` shows usage against the quota. Also `availableLibraries`.

mod common;

use common::*;
use dcloud_projections::Actor;
use serde_json::json;

const SET: &str = r#"mutation($user: String!, $q: QuotaInput!) { setQuota(user: $user, quota: $q) {
  user quota { cpuMillis memoryBytes gpus deployments } usage { cpuMillis memoryBytes gpus deployments } } }"#;

const ME: &str = "{ me { name quota { cpuMillis memoryBytes gpus deployments } usage { cpuMillis memoryBytes gpus deployments } } }";

const DEPLOY_WAIT: &str = r#"mutation($env: String!, $wait: Boolean) {
  deploy(environment: $env, waitForQuota: $wait) { id status quotaWait pendingReasons { reason } } }"#;

#[tokio::test]
async fn only_admins_set_quotas_and_bad_limits_name_their_field() {
    let api = Api::new();
    let vars = json!({"user": "alice", "q": {"deployments": 1}});
    for who in [alice(), auditor(), Actor::agent(NODE_A)] {
        assert_eq!(api.code(Some(&who), SET, vars.clone()).await, "FORBIDDEN");
    }
    assert_eq!(api.code(None, SET, vars.clone()).await, "UNAUTHENTICATED");
    let bad = api
        .error(
            Some(&admin()),
            SET,
            json!({"user": "alice", "q": {"gpus": -1, "cpuMillis": 500}}),
        )
        .await;
    assert_eq!(bad["ext"]["code"], "BAD_USER_INPUT");
    assert_eq!(bad["ext"]["fields"][0]["path"], "quota.gpus");
    assert!(
        api.state().quotas.is_empty(),
        "a refused quota changes nothing"
    );

    let set = api.data(&admin(), SET, vars).await;
    assert_eq!(
        set["setQuota"],
        json!({"user": "alice",
               "quota": {"cpuMillis": null, "memoryBytes": null, "gpus": null, "deployments": 1},
               "usage": {"cpuMillis": 0, "memoryBytes": 0, "gpus": 0, "deployments": 0}})
    );
}

#[tokio::test]
async fn quotas_are_read_by_admins_and_auditors_and_a_user_reads_only_their_own() {
    let api = Api::new();
    api.data(&admin(), SET, json!({"user": "alice", "q": {"gpus": 1}}))
        .await;
    for who in [admin(), auditor()] {
        let list = api
            .data(&who, "{ quotas { user quota { gpus } } }", json!({}))
            .await;
        assert_eq!(
            list["quotas"],
            json!([{"user": "alice", "quota": {"gpus": 1}}])
        );
    }
    assert_eq!(
        api.code(Some(&alice()), "{ quotas { user } }", json!({}))
            .await,
        "FORBIDDEN"
    );
    let own = api
        .data(
            &alice(),
            r#"{ quota(user: "alice") { quota { gpus } } }"#,
            json!({}),
        )
        .await;
    assert_eq!(own["quota"]["quota"]["gpus"], 1);
    assert_eq!(
        api.code(
            Some(&bob()),
            r#"{ quota(user: "alice") { user } }"#,
            json!({})
        )
        .await,
        "FORBIDDEN"
    );
    let me = api.data(&bob(), ME, json!({})).await;
    assert_eq!(me["me"]["quota"], json!(null), "bob is unlimited");
}

#[tokio::test]
async fn a_deploy_past_the_quota_is_refused_naming_the_limit_or_waits() {
    let api = Api::new();
    fleet(&api).await;
    api.data(
        &admin(),
        SET,
        json!({"user": "alice", "q": {"deployments": 1, "cpuMillis": 1500}}),
    )
    .await;
    let (_, first, _) = deployed(&api, &alice(), "web", 8080).await;
    let me = api.data(&alice(), ME, json!({})).await;
    assert_eq!(
        me["me"]["usage"],
        json!({"cpuMillis": 1000, "memoryBytes": 1073741824, "gpus": 0, "deployments": 1})
    );
    assert_eq!(me["me"]["quota"]["deployments"], 1);

    let refused = api
        .error(Some(&alice()), DEPLOY_WAIT, json!({"env": "web"}))
        .await;
    assert_eq!(refused["ext"]["code"], "QUOTA_EXCEEDED");
    assert_eq!(
        refused["message"],
        "quota exceeded: cpu 2 of 1.5, deployments 2 of 1"
    );
    assert_eq!(
        api.state().deployments.len(),
        1,
        "a refusal changes nothing"
    );

    let waiting = api
        .data(&alice(), DEPLOY_WAIT, json!({"env": "web", "wait": true}))
        .await;
    assert_eq!(waiting["deploy"]["status"], "PENDING");
    assert_eq!(
        waiting["deploy"]["quotaWait"],
        "waiting for quota: cpu 2 of 1.5, deployments 2 of 1"
    );
    let second = waiting["deploy"]["id"].as_str().expect("id").to_string();

    // Stopping the first (not placed by an agent yet: its agent is asked, then
    // reports the container removed) lets the second through.
    api.data(
        &alice(),
        "mutation($id: ID!) { stop(deploymentId: $id) { status } }",
        json!({"id": first}),
    )
    .await;
    let node = api.state().deployment(&first).and_then(|d| d.node.clone());
    api.data(
        &Actor::agent(node.as_deref().expect("placed")),
        r#"mutation($id: ID!) { reportStatus(deploymentId: $id, report: {kind: CONTAINER_REMOVED}) { status } }"#,
        json!({"id": first}),
    )
    .await;
    let now = api
        .data(
            &alice(),
            "query($id: ID!) { deployment(id: $id) { status quotaWait } }",
            json!({"id": second}),
        )
        .await;
    assert_eq!(
        now["deployment"],
        json!({"status": "SCHEDULED", "quotaWait": null})
    );

    // Admins are held to the owner's quota when they deploy the owner's environment.
    let env_id = api.state().deployment(&second).map(|d| d.env_id.clone());
    assert_eq!(
        api.code(
            Some(&admin()),
            DEPLOY_WAIT,
            json!({"env": env_id.expect("env")})
        )
        .await,
        "QUOTA_EXCEEDED"
    );
}

#[tokio::test]
async fn available_libraries_name_libraries_without_commands() {
    let api = Api::new();
    fleet(&api).await;
    let q = "query($os: String) { availableLibraries(os: $os) { os baseImage languages { name libraries } } }";
    for who in [alice(), admin(), auditor()] {
        let libs = api.data(&who, q, json!({"os": "ubuntu"})).await;
        assert_eq!(
            libs["availableLibraries"],
            json!([{"os": "ubuntu", "baseImage": "ubuntu:22.04",
                    "languages": [{"name": "python", "libraries": ["numpy", "pandas"]}]}])
        );
    }
    assert_eq!(
        api.code(Some(&Actor::agent(NODE_A)), q, json!({})).await,
        "FORBIDDEN"
    );
    assert_eq!(
        api.code(Some(&alice()), q, json!({"os": "plan9"})).await,
        "NOT_FOUND"
    );
}
