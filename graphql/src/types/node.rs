//! The `Node` type: capacity, reserved, allocated, free, usage, health, GPUs, labels.

use std::collections::BTreeSet;

use async_graphql::{Enum, Object, SimpleObject};
use dcloud_projections::state::Node as DomainNode;

use super::common::{labels, Label, NodeHealth, Protocol, Resources, Usage};

/// What a node can take now, from its health, drain flag and engine.
#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
pub enum NodeState {
    /// Alive, not draining, engine reachable: takes new deployments.
    Ready,
    /// Alive but draining: keeps what runs, takes nothing new.
    Draining,
    /// Alive but its container engine is unreachable.
    EngineDown,
    /// Missed heartbeats past the TTL.
    Lost,
}

/// One GPU device.
#[derive(SimpleObject, Clone, Debug)]
pub struct Gpu {
    pub index: u32,
    pub uuid: String,
    pub model: String,
    pub memory_bytes: u64,
    /// Held back for the host.
    pub reserved: bool,
    /// Assigned to a deployment.
    pub assigned: bool,
    /// The deployment it is assigned to (hidden when the caller may not see it).
    pub deployment_id: Option<String>,
}

#[derive(SimpleObject, Clone, Debug)]
pub struct ContainerUsage {
    pub deployment_id: String,
    pub usage: Usage,
}

/// An external port booked on a node.
#[derive(SimpleObject, Clone, Debug)]
pub struct PortInUse {
    pub port: u16,
    pub protocol: Protocol,
    /// Hidden when the caller may not see the deployment.
    pub deployment_id: Option<String>,
}

/// A node as folded from the log.
pub struct NodeObj {
    pub(crate) node: DomainNode,
    /// Deployment ids the caller may see; `None`: all.
    pub(crate) visible: Option<BTreeSet<String>>,
    pub(crate) last_seen_ms: Option<i64>,
}

impl NodeObj {
    fn shows(&self, deployment: &str) -> bool {
        self.visible.as_ref().is_none_or(|v| v.contains(deployment))
    }
}

#[Object(name = "Node")]
impl NodeObj {
    /// The node id (by default the primary interface's MAC, `0x5f6e4b6e4b50`).
    async fn id(&self) -> &str {
        &self.node.id
    }

    /// `node-agent_<id>`, as in the original deployment documents.
    async fn node_agent_id(&self) -> String {
        format!("node-agent_{}", self.node.id)
    }

    async fn hostname(&self) -> &str {
        &self.node.fingerprint.hostname
    }

    /// The address users reach the node at (agent `--address`); published ports of
    /// its deployments are `http://ADDRESS:PORT/`. Null until the agent reports one.
    async fn address(&self) -> Option<&str> {
        self.node.address.as_deref()
    }

    async fn os(&self) -> &str {
        &self.node.fingerprint.os
    }

    async fn agent_version(&self) -> &str {
        &self.node.fingerprint.agent_version
    }

    async fn health(&self) -> NodeHealth {
        self.node.health.into()
    }

    /// When it was marked lost (unix ms); `null` while it is alive. Its deployments
    /// stay booked on it until the server's lost-node grace after this is over.
    async fn lost_since_ms(&self) -> Option<i64> {
        self.node.lost_since_ms
    }

    async fn state(&self) -> NodeState {
        if !self.node.is_alive() {
            NodeState::Lost
        } else if !self.node.engine_ok {
            NodeState::EngineDown
        } else if self.node.draining {
            NodeState::Draining
        } else {
            NodeState::Ready
        }
    }

    async fn draining(&self) -> bool {
        self.node.draining
    }

    /// False when the agent reported its container engine unreachable.
    async fn engine_ok(&self) -> bool {
        self.node.engine_ok
    }

    async fn first_registered_ms(&self) -> i64 {
        self.node.first_registered_ms
    }

    async fn last_registered_ms(&self) -> i64 {
        self.node.last_registered_ms
    }

    /// Time of the last heartbeat kept in the log.
    async fn last_heartbeat_ms(&self) -> Option<i64> {
        self.node.last_heartbeat_ms
    }

    /// When the agent was last heard from (heartbeats between logged ones included).
    async fn last_seen_ms(&self) -> Option<i64> {
        self.last_seen_ms.max(self.node.last_heartbeat_ms)
    }

    /// Total capacity of the machine.
    async fn capacity(&self) -> Resources {
        (&self.node.fingerprint.capacity).into()
    }

    /// Held back for the host.
    async fn reserved(&self) -> Resources {
        (&self.node.fingerprint.reserved).into()
    }

    /// Capacity less reserved (GPUs: unreserved devices).
    async fn allocatable(&self) -> Resources {
        (&self.node.allocatable()).into()
    }

    /// Booked by the deployments placed here.
    async fn allocated(&self) -> Resources {
        (&self.node.allocated).into()
    }

    /// Allocatable less allocated.
    async fn free(&self) -> Resources {
        (&self.node.free()).into()
    }

    /// Measured usage of the whole node, from the last logged heartbeat.
    async fn usage(&self) -> Usage {
        (&self.node.usage).into()
    }

    /// Measured usage per container, from the last logged heartbeat.
    async fn containers(&self) -> Vec<ContainerUsage> {
        self.node
            .containers
            .iter()
            .filter(|c| self.shows(&c.deployment_id))
            .map(|c| ContainerUsage {
                deployment_id: c.deployment_id.clone(),
                usage: (&c.usage).into(),
            })
            .collect()
    }

    async fn gpus(&self) -> Vec<Gpu> {
        let fp = &self.node.fingerprint;
        self.node
            .gpus
            .iter()
            .map(|g| {
                let device = fp.gpus.iter().find(|d| d.uuid == g.uuid);
                Gpu {
                    index: g.index,
                    uuid: g.uuid.clone(),
                    model: device.map(|d| d.model.clone()).unwrap_or_default(),
                    memory_bytes: device.map_or(0, |d| d.memory_bytes),
                    reserved: g.reserved,
                    assigned: g.assigned.is_some(),
                    deployment_id: g.assigned.clone().filter(|d| self.shows(d)),
                }
            })
            .collect()
    }

    async fn labels(&self) -> Vec<Label> {
        labels(&self.node.fingerprint.labels)
    }

    /// Dataset keys (`category/db/dataset@version`) present on the node.
    async fn datasets(&self) -> &[String] {
        &self.node.fingerprint.datasets
    }

    async fn ports(&self) -> Vec<PortInUse> {
        self.node
            .ports_in_use()
            .map(|(port, protocol, d)| PortInUse {
                port,
                protocol: protocol.into(),
                deployment_id: self.shows(d).then(|| d.to_string()),
            })
            .collect()
    }

    /// Deployments holding resources here (those the caller may see).
    async fn deployment_ids(&self) -> Vec<String> {
        self.node
            .deployments
            .iter()
            .filter(|d| self.shows(d))
            .cloned()
            .collect()
    }
}
