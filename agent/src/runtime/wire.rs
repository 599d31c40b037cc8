//! The agent protocol's documents and the mapping between the server's JSON and the
//! driver's types: fingerprint → `FingerprintInput`, `Report` → `ReportInput`, an
//! `Assignment` item (with its `RunSpec`) → `driver::Assignment`.

use std::collections::BTreeMap;

use dcloud_events::model::{
    ContainerUsage, Lifecycle, NodeFingerprint, PortPublish, Protocol, Resources, StorageMount,
    Usage,
};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::driver::{Assignment, Readiness, Report, SharedDataset};

/// The fields of an `Assignment` the agent reads.
const ASSIGNMENT_FIELDS: &str = "seq kind deploymentId nodeId status run { deploymentId \
environmentId image dockerfile steps recipeError \
resources { cpuMillis memoryBytes gpus storageBytes } gpus \
ports { external internal protocol } storage { target sizeBytes lifecycle } \
datasets sharedDatasets { key fsType device options } env { name value } \
service { name command port readyHttpPath } }";

pub const REGISTER_NODE: &str = "mutation($nodeId: ID!, $fingerprint: FingerprintInput!) { \
registerNode(nodeId: $nodeId, fingerprint: $fingerprint) { id } }";

pub const CLUSTER_ID: &str = "query { clusterId }";

pub const REPORT_VOLUME_USAGE: &str = "mutation($nodeId: ID!, $deploymentId: ID!, \
$volumes: [VolumeUsageInput!]!) { \
reportVolumeUsage(nodeId: $nodeId, deploymentId: $deploymentId, volumes: $volumes) }";

pub const HEARTBEAT: &str = "mutation($nodeId: ID!, $usage: UsageInput!, \
$containers: [ContainerUsageInput!]!, $engineOk: Boolean!) { \
heartbeat(nodeId: $nodeId, usage: $usage, containers: $containers, engineOk: $engineOk) { logged } }";

pub const REPORT_STATUS: &str =
    "mutation($deploymentId: ID!, $report: ReportInput!, $nodeId: ID) { \
reportStatus(deploymentId: $deploymentId, report: $report, nodeId: $nodeId) { id status } }";

pub const REPORT_NODE_ADDRESS: &str = "mutation($nodeId: ID!, $address: String!) { \
reportNodeAddress(nodeId: $nodeId, address: $address) { id } }";

pub const REPORT_STALE_CONTAINER: &str = "mutation($nodeId: ID!, $deploymentId: ID!, \
$containerId: String!) { reportStaleContainer(nodeId: $nodeId, deploymentId: $deploymentId, \
containerId: $containerId) }";

pub const CREATE_AGENT_TOKEN: &str = "mutation($name: String!, $nodeId: ID!) { \
createToken(role: AGENT, name: $name, nodeId: $nodeId) { token } }";

/// A node joins with a join token (sent with no bearer token).
pub const JOIN_NODE: &str = "mutation($joinToken: String!, $nodeId: ID!) { joinNode(joinToken: $joinToken, nodeId: $nodeId) { nodeId tokenId token } }";

/// `nodeAssignments(nodeId)`: `{ seq items { … } }`.
pub fn node_assignments_query() -> String {
    format!("query($nodeId: ID!) {{ nodeAssignments(nodeId: $nodeId) {{ seq items {{ {ASSIGNMENT_FIELDS} }} }} }}")
}

/// `assignments(nodeId, after)` subscription.
pub fn assignments_subscription() -> String {
    format!("subscription($nodeId: ID!, $after: Int) {{ assignments(nodeId: $nodeId, after: $after) {{ {ASSIGNMENT_FIELDS} }} }}")
}

/// What an assignment item tells the node to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Kind {
    Run,
    Stop,
    Stopped,
    Lost,
}

/// One item of `nodeAssignments.items` or of the `assignments` subscription.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Item {
    pub seq: u64,
    pub kind: Kind,
    pub deployment_id: String,
    pub node_id: String,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub run: Option<RunSpec>,
}

/// `nodeAssignments` as the agent reads it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Snapshot {
    pub seq: u64,
    pub items: Vec<Item>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunSpec {
    pub deployment_id: String,
    pub environment_id: String,
    pub image: String,
    pub dockerfile: String,
    pub steps: u32,
    #[serde(default)]
    pub recipe_error: Option<String>,
    pub resources: ResourcesJson,
    #[serde(default)]
    pub gpus: Vec<String>,
    #[serde(default)]
    pub ports: Vec<PortJson>,
    #[serde(default)]
    pub storage: Vec<StorageJson>,
    #[serde(default)]
    pub datasets: Vec<String>,
    #[serde(default)]
    pub shared_datasets: Vec<SharedDatasetJson>,
    #[serde(default)]
    pub env: Vec<EnvJson>,
    /// The library's service: its command, and the check that makes it ready.
    #[serde(default)]
    pub service: Option<ServiceJson>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceJson {
    pub name: String,
    pub command: Vec<String>,
    pub port: u16,
    #[serde(default)]
    pub ready_http_path: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourcesJson {
    pub cpu_millis: u64,
    pub memory_bytes: u64,
    pub gpus: u32,
    pub storage_bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct PortJson {
    pub external: u16,
    pub internal: u16,
    pub protocol: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StorageJson {
    pub target: String,
    pub size_bytes: u64,
    pub lifecycle: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SharedDatasetJson {
    pub key: String,
    pub fs_type: String,
    pub device: String,
    pub options: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct EnvJson {
    pub name: String,
    pub value: String,
}

impl RunSpec {
    /// The driver's assignment for `node_id`.
    pub fn to_assignment(&self, node_id: &str) -> Assignment {
        Assignment {
            deployment_id: self.deployment_id.clone(),
            env_id: self.environment_id.clone(),
            node_id: node_id.to_string(),
            image_tag: self.image.clone(),
            dockerfile: self.dockerfile.clone(),
            steps: self.steps,
            resources: Resources {
                cpu_millis: self.resources.cpu_millis,
                memory_bytes: self.resources.memory_bytes,
                gpus: self.resources.gpus,
                storage_bytes: self.resources.storage_bytes,
            },
            gpus: self.gpus.clone(),
            ports: self
                .ports
                .iter()
                .map(|p| PortPublish {
                    external: p.external,
                    internal: p.internal,
                    protocol: if p.protocol.eq_ignore_ascii_case("udp") {
                        Protocol::Udp
                    } else {
                        Protocol::Tcp
                    },
                })
                .collect(),
            storage: self
                .storage
                .iter()
                .map(|s| StorageMount {
                    target: s.target.clone(),
                    size_bytes: s.size_bytes,
                    lifecycle: if s.lifecycle.eq_ignore_ascii_case("persistent") {
                        Lifecycle::Persistent
                    } else {
                        Lifecycle::Temporary
                    },
                })
                .collect(),
            datasets: self.datasets.clone(),
            shared_datasets: self
                .shared_datasets
                .iter()
                .map(|d| SharedDataset {
                    key: d.key.clone(),
                    fs_type: d.fs_type.clone(),
                    device: d.device.clone(),
                    options: d.options.clone(),
                })
                .collect(),
            env: self
                .env
                .iter()
                .map(|e| (e.name.clone(), e.value.clone()))
                .collect::<BTreeMap<_, _>>(),
            command: self.service.as_ref().map(|s| s.command.clone()),
            ready: self.service.as_ref().map(|s| Readiness {
                port: s.port,
                http_path: s.ready_http_path.clone(),
            }),
        }
    }
}

fn resources_json(r: &Resources) -> Value {
    json!({
        "cpuMillis": r.cpu_millis,
        "memoryBytes": r.memory_bytes,
        "gpus": r.gpus,
        "storageBytes": r.storage_bytes,
    })
}

/// `FingerprintInput` of a fingerprint.
pub fn fingerprint_input(fp: &NodeFingerprint) -> Value {
    json!({
        "hostname": fp.hostname,
        "os": fp.os,
        "capacity": resources_json(&fp.capacity),
        "reserved": resources_json(&fp.reserved),
        "gpus": fp.gpus.iter().map(|g| json!({
            "index": g.index, "uuid": g.uuid, "model": g.model, "memoryBytes": g.memory_bytes,
        })).collect::<Vec<_>>(),
        "labels": fp.labels.iter().map(|(k, v)| json!({"key": k, "value": v})).collect::<Vec<_>>(),
        "datasets": fp.datasets,
        "agentVersion": fp.agent_version,
    })
}

pub fn usage_input(u: &Usage) -> Value {
    json!({ "cpuMillis": u.cpu_millis, "memoryBytes": u.memory_bytes })
}

pub fn containers_input(list: &[ContainerUsage]) -> Value {
    Value::Array(
        list.iter()
            .map(|c| json!({ "deploymentId": c.deployment_id, "usage": usage_input(&c.usage) }))
            .collect(),
    )
}

/// `ReportInput` of a driver report; `image` is the assignment's image tag.
pub fn report_input(report: &Report, image: &str) -> Value {
    match report {
        Report::BuildStarted { steps } => {
            json!({"kind": "BUILD_STARTED", "image": image, "steps": steps})
        }
        Report::BuildProgress { step, steps } => {
            json!({"kind": "BUILD_PROGRESS", "step": step, "steps": steps})
        }
        Report::BuildFailed {
            step,
            command,
            output_tail,
        } => json!({"kind": "BUILD_FAILED", "step": step, "command": command,
                     "outputTail": output_tail}),
        Report::ImageReady { cached } => {
            json!({"kind": "IMAGE_READY", "image": image, "cached": cached})
        }
        Report::Created { container_id } => {
            json!({"kind": "CONTAINER_CREATED", "containerId": container_id})
        }
        Report::Started => json!({"kind": "CONTAINER_STARTED"}),
        Report::Exited { code } => json!({"kind": "CONTAINER_EXITED", "code": code}),
        Report::OomKilled => json!({"kind": "CONTAINER_OOM_KILLED"}),
        Report::Removed => json!({"kind": "CONTAINER_REMOVED"}),
        Report::Failed { message } => json!({"kind": "CONTAINER_FAILED", "message": message}),
        Report::OomWarning { message } => {
            json!({"kind": "CONTAINER_OOM_WARNING", "message": message})
        }
        Report::Output { tail } => json!({"kind": "CONTAINER_OUTPUT", "outputTail": tail}),
        // Sent with `REPORT_STALE_CONTAINER`, not as a status report; kept total here.
        Report::StaleRemoved { container_id, .. } => {
            json!({"kind": "CONTAINER_REMOVED", "containerId": container_id})
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An item as the server sends it (recorded from the schema's field names).
    const RUN_ITEM: &str = r#"{
      "seq": 42, "kind": "RUN", "deploymentId": "dep-1", "nodeId": "0x020000000001",
      "status": "SCHEDULED",
      "run": {
        "deploymentId": "dep-1", "environmentId": "env-1",
        "image": "dcloud/env:3f2a", "dockerfile": "FROM busybox\nRUN true\n", "steps": 1,
        "recipeError": null,
        "resources": {"cpuMillis": 500, "memoryBytes": 268435456, "gpus": 1, "storageBytes": 1073741824},
        "gpus": ["GPU-sim-0x020000000001-0"],
        "ports": [{"external": 30080, "internal": 8080, "protocol": "UDP"}],
        "storage": [{"target": "/data", "sizeBytes": 1073741824, "lifecycle": "PERSISTENT"},
                    {"target": "/tmp/x", "sizeBytes": 1024, "lifecycle": "TEMPORARY"}],
        "datasets": ["vision/imagenet/train@v2"],
        "env": [{"name": "DCLOUD_DEPLOYMENT_ID", "value": "dep-1"}]
      }
    }"#;

    #[test]
    fn a_run_item_becomes_a_driver_assignment() {
        let item: Item = serde_json::from_str(RUN_ITEM).unwrap();
        assert_eq!(item.seq, 42);
        assert_eq!(item.kind, Kind::Run);
        let a = item.run.unwrap().to_assignment("0x020000000001");
        assert_eq!(a.deployment_id, "dep-1");
        assert_eq!(a.env_id, "env-1");
        assert_eq!(a.image_tag, "dcloud/env:3f2a");
        assert_eq!(a.resources.cpu_millis, 500);
        assert_eq!(a.resources.memory_bytes, 256 << 20);
        assert_eq!(a.ports[0].protocol, Protocol::Udp);
        assert_eq!(a.storage[0].lifecycle, Lifecycle::Persistent);
        assert_eq!(a.storage[1].lifecycle, Lifecycle::Temporary);
        assert_eq!(a.env["DCLOUD_DEPLOYMENT_ID"], "dep-1");
        assert!(a.validate().is_ok());
    }

    #[test]
    fn stop_items_carry_no_run_spec() {
        let item: Item = serde_json::from_str(
            r#"{"seq": 7, "kind": "STOP", "deploymentId": "d", "nodeId": "n", "status": "STOPPING", "run": null}"#,
        )
        .unwrap();
        assert_eq!(item.kind, Kind::Stop);
        assert!(item.run.is_none());
        let snap: Snapshot = serde_json::from_str(r#"{"seq": 9, "items": []}"#).unwrap();
        assert_eq!(snap.seq, 9);
    }

    #[test]
    fn reports_map_to_report_inputs() {
        let cases = [
            (
                Report::BuildStarted { steps: 3 },
                json!({"kind": "BUILD_STARTED", "image": "img", "steps": 3}),
            ),
            (
                Report::BuildFailed {
                    step: 2,
                    command: "RUN false".into(),
                    output_tail: "boom".into(),
                },
                json!({"kind": "BUILD_FAILED", "step": 2, "command": "RUN false", "outputTail": "boom"}),
            ),
            (
                Report::ImageReady { cached: true },
                json!({"kind": "IMAGE_READY", "image": "img", "cached": true}),
            ),
            (
                Report::Created {
                    container_id: "c1".into(),
                },
                json!({"kind": "CONTAINER_CREATED", "containerId": "c1"}),
            ),
            (
                Report::Exited { code: 3 },
                json!({"kind": "CONTAINER_EXITED", "code": 3}),
            ),
            (Report::OomKilled, json!({"kind": "CONTAINER_OOM_KILLED"})),
            (Report::Removed, json!({"kind": "CONTAINER_REMOVED"})),
        ];
        for (report, want) in cases {
            assert_eq!(report_input(&report, "img"), want, "{report:?}");
        }
    }

    #[test]
    fn fingerprints_become_inputs_with_label_pairs() {
        let (_, fp) = crate::sim::sim_fingerprints(
            1,
            &Resources {
                cpu_millis: 4000,
                memory_bytes: 8 << 30,
                gpus: 2,
                storage_bytes: 100 << 30,
            },
        )
        .remove(0);
        let v = fingerprint_input(&fp);
        assert_eq!(v["capacity"]["cpuMillis"], 4000);
        assert_eq!(v["gpus"].as_array().unwrap().len(), 2);
        assert_eq!(v["labels"], json!([{"key": "simulated", "value": "true"}]));
    }
}
