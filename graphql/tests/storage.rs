//! The cluster's id, datasets on shared storage and storage use, over GraphQL under
//! each role: `clusterId`, `datasets { sharedStorage }`, `RunSpec.sharedDatasets`,
//! `reportVolumeUsage` and `Deployment.volumes`.

mod common;

use common::*;
use dcloud_projections::{Actor, Command};
use serde_json::{json, Value};

const REPORT: &str = "mutation($n: ID!, $d: ID!, $v: [VolumeUsageInput!]!) { \
    reportVolumeUsage(nodeId: $n, deploymentId: $d, volumes: $v) }";
const VOLUMES: &str = "query($id: ID!) { deployment(id: $id) { status
    volumes { target usedBytes sizeBytes enforced over } } }";
const APPLY: &str = "mutation($d: String!) { apply(document: $d) { events } }";

fn agent_a() -> Actor {
    Actor::agent(NODE_A)
}

#[tokio::test]
async fn every_role_reads_the_cluster_id() {
    let api = Api::new();
    for who in [admin(), alice(), auditor(), agent_a()] {
        let d = api.data(&who, "{ clusterId }", json!({})).await;
        assert_eq!(d["clusterId"], Value::Null);
    }
    api.backend.run(
        &admin(),
        Command::CreateCluster {
            cluster_id: "c-00112233aabbccdd".into(),
        },
    );
    for who in [admin(), alice(), auditor(), agent_a()] {
        let d = api.data(&who, "{ clusterId }", json!({})).await;
        assert_eq!(d["clusterId"], "c-00112233aabbccdd");
    }
}

/// Alice's deployment of an environment with a 64 MiB `/scratch`: (id, node).
async fn with_storage(api: &Api) -> (String, String) {
    fleet(api).await;
    let mut env: Value = serde_json::from_str(&environment("scratchy", "1G", 18888)).unwrap();
    env["storage"] = json!([{"target": "/scratch", "size": "64M", "lifecycle": "temporary"}]);
    let created = api
        .data(&alice(), CREATE_ENV, json!({"doc": env.to_string()}))
        .await;
    let env_id = created["createEnvironment"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let d = api.data(&alice(), DEPLOY, json!({"env": env_id})).await;
    (
        d["deploy"]["id"].as_str().unwrap().to_string(),
        d["deploy"]["nodeId"].as_str().unwrap().to_string(),
    )
}

#[tokio::test]
async fn storage_use_is_reported_by_the_node_and_read_by_whoever_sees_the_deployment() {
    let api = Api::new();
    let (id, node) = with_storage(&api).await;
    let other = if node == NODE_A { NODE_B } else { NODE_A };
    let volumes = |used: u64| json!([{"target": "/scratch", "usedBytes": used, "sizeBytes": 64u64 << 20, "enforced": false}]);
    // Its node's agent reports; the first report is recorded.
    let d = api
        .data(
            &Actor::agent(&node),
            REPORT,
            json!({"n": node, "d": id, "v": volumes(80 << 20)}),
        )
        .await;
    assert_eq!(d["reportVolumeUsage"], true);
    // The same again is not.
    let d = api
        .data(
            &Actor::agent(&node),
            REPORT,
            json!({"n": node, "d": id, "v": volumes(80 << 20)}),
        )
        .await;
    assert_eq!(d["reportVolumeUsage"], false);
    // Its owner, admins and auditors read it; another user does not see the deployment.
    for who in [alice(), admin(), auditor()] {
        let d = api.data(&who, VOLUMES, json!({"id": id})).await;
        assert_eq!(
            d["deployment"]["volumes"],
            json!([{"target": "/scratch", "usedBytes": 80u64 << 20, "sizeBytes": 64u64 << 20,
                "enforced": false, "over": true}]),
            "{who:?}"
        );
    }
    assert_eq!(
        api.code(Some(&bob()), VOLUMES, json!({"id": id})).await,
        "FORBIDDEN"
    );
    // Nobody else reports for the node; a target the deployment lacks is named.
    for who in [Actor::agent(other), alice(), auditor()] {
        let got = api
            .code(
                Some(&who),
                REPORT,
                json!({"n": node, "d": id, "v": volumes(1)}),
            )
            .await;
        assert_eq!(got, "FORBIDDEN", "{who:?}");
    }
    let bad = json!([{"target": "/etc", "usedBytes": 1, "sizeBytes": 0, "enforced": false}]);
    let err = api
        .error(
            Some(&Actor::agent(&node)),
            REPORT,
            json!({"n": node, "d": id, "v": bad}),
        )
        .await;
    assert_eq!(err["ext"]["code"], "BAD_USER_INPUT", "{err}");
    assert!(err.to_string().contains("volumes[0].target"), "{err}");
}

fn vision(shared: Value) -> String {
    let mut doc = json!({"category-name": "vision", "db": [{"db-name": "coco",
        "dataset": [{"dataset-name": "val", "version": "2017"}]}]});
    if !shared.is_null() {
        doc["shared-storage"] = shared;
    }
    doc.to_string()
}

#[tokio::test]
async fn shared_storage_is_set_by_admins_shown_to_all_and_sent_to_the_agent() {
    let api = Api::new();
    fleet(&api).await;
    let nfs = json!({"type": "nfs", "device": ":/export/vision", "o": "addr=10.0.0.5,ro"});
    // Users and auditors may not; a bad declaration names its field and changes nothing.
    for who in [alice(), auditor()] {
        let got = api
            .code(Some(&who), APPLY, json!({"d": vision(nfs.clone())}))
            .await;
        assert_eq!(got, "FORBIDDEN", "{who:?}");
    }
    let bad = json!({"type": "ext4", "device": "/dev/sdb"});
    let err = api
        .error(Some(&admin()), APPLY, json!({"d": vision(bad)}))
        .await;
    assert_eq!(err["ext"]["code"], "BAD_USER_INPUT", "{err}");
    assert!(err.to_string().contains("shared-storage.type"), "{err}");
    assert!(api.state().datasets.categories.is_empty());

    api.data(&admin(), APPLY, json!({"d": vision(nfs)})).await;
    let q = "{ datasets { category sharedStorage { type device } } }";
    for who in [admin(), alice(), auditor()] {
        let d = api.data(&who, q, json!({})).await;
        assert_eq!(
            d["datasets"],
            json!([{"category": "vision", "sharedStorage": {"type": "nfs", "device": ":/export/vision"}}]),
            "{who:?}"
        );
    }

    // A deployment of it is placed although no node holds it, and its agent is told
    // how to mount it (options included).
    let mut env: Value = serde_json::from_str(&environment("reader", "1G", 18889)).unwrap();
    env["dataset"] = json!([{"category-name": "vision", "db": [{"db-name": "coco",
        "dataset": [{"dataset-name": "val", "version": "2017"}]}]}]);
    let created = api
        .data(&alice(), CREATE_ENV, json!({"doc": env.to_string()}))
        .await;
    let env_id = created["createEnvironment"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let d = api.data(&alice(), DEPLOY, json!({"env": env_id})).await;
    assert_eq!(d["deploy"]["status"], "SCHEDULED", "{d}");
    let node = d["deploy"]["nodeId"].as_str().unwrap().to_string();
    let q = "query($n: ID!) { nodeAssignments(nodeId: $n) { items { run { datasets
        sharedDatasets { key fsType device options } } } } }";
    let a = api.data(&Actor::agent(&node), q, json!({"n": node})).await;
    let run = &a["nodeAssignments"]["items"][0]["run"];
    assert_eq!(run["datasets"], json!([]), "{a}");
    assert_eq!(
        run["sharedDatasets"],
        json!([{"key": "vision/coco/val@2017", "fsType": "nfs", "device": ":/export/vision",
            "options": "addr=10.0.0.5,ro"}]),
        "{a}"
    );

    // `null` puts it back on nodes' disks.
    api.data(&admin(), APPLY, json!({"d": vision(Value::Null)}))
        .await;
    assert!(
        !api.state().dataset_storage.is_empty(),
        "absent field: unchanged"
    );
    let mut doc: Value = serde_json::from_str(&vision(Value::Null)).unwrap();
    doc["shared-storage"] = Value::Null;
    api.data(&admin(), APPLY, json!({"d": doc.to_string()}))
        .await;
    assert!(api.state().dataset_storage.is_empty());
}
