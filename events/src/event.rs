//! The event enum for the whole domain. It is an API boundary and a stored format:
//! a released variant never changes shape; a changed event is a new variant.
//!
//! Ids are strings chosen by the writer (never by `apply`), so replay is deterministic.

use serde::{Deserialize, Serialize};

use crate::model::{
    CandidateScore, ContainerUsage, DatasetCategory, EnvironmentSpec, LibraryCatalog,
    NodeFingerprint, PlacementPolicy, RejectCount, Role, ServiceRegistration, Usage,
};

/// Everything that ever happens in DCloud. Past-tense names only.
#[derive(
    Debug,
    Clone,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
)]
#[serde(tag = "type", content = "data")]
pub enum Event {
    // ── environments ─────────────────────────────────────────────────────────
    /// Version 1 of a new environment.
    EnvironmentCreated {
        env_id: String,
        owner: String,
        spec: EnvironmentSpec,
    },
    /// A new version (`version` = previous + 1) replacing the spec.
    EnvironmentUpdated {
        env_id: String,
        version: u32,
        spec: EnvironmentSpec,
    },
    EnvironmentDeactivated {
        env_id: String,
    },
    EnvironmentDeleted {
        env_id: String,
    },

    // ── templates ────────────────────────────────────────────────────────────
    /// Creates or replaces the template called `name`.
    TemplateSaved {
        name: String,
        owner: String,
        spec: EnvironmentSpec,
    },
    TemplateDeleted {
        name: String,
    },

    // ── library and dataset catalogs ─────────────────────────────────────────
    /// Creates or replaces the library catalog of `catalog.os`.
    CatalogUpserted {
        catalog: LibraryCatalog,
    },
    /// Merges a category's databases and dataset versions into the dataset catalog.
    DatasetsRegistered {
        category: DatasetCategory,
    },
    /// Removes one dataset version from the dataset catalog.
    DatasetRemoved {
        category: String,
        db: String,
        dataset: String,
        version: String,
    },

    // ── services ─────────────────────────────────────────────────────────────
    /// Creates or replaces the registration of `service.name`.
    ServiceRegistered {
        service: ServiceRegistration,
    },
    ServiceRefreshed {
        name: String,
    },
    ServiceDeregistered {
        name: String,
    },
    /// Not refreshed within its TTL.
    ServiceExpired {
        name: String,
    },

    // ── nodes ────────────────────────────────────────────────────────────────
    /// First registration, or re-registration of a known node (same id: not a new node).
    NodeRegistered {
        node_id: String,
        fingerprint: NodeFingerprint,
    },
    /// Kept in the log at a configurable interval; liveness between them is in memory.
    NodeHeartbeat {
        node_id: String,
        usage: Usage,
        containers: Vec<ContainerUsage>,
        /// False when the node's container engine is unreachable.
        engine_ok: bool,
    },
    /// Missed heartbeats past the TTL.
    NodeLost {
        node_id: String,
    },
    NodeDrained {
        node_id: String,
    },
    NodeUndrained {
        node_id: String,
    },

    // ── scheduling and deployments ───────────────────────────────────────────
    /// A request to run version `env_version` of `env_id`.
    DeploymentRequested {
        deployment_id: String,
        env_id: String,
        env_version: u32,
        owner: String,
        policy: PlacementPolicy,
    },
    DeploymentScheduled {
        deployment_id: String,
        node_id: String,
        /// GPU device uuids assigned to this deployment.
        gpus: Vec<String>,
        /// Image tag: the content hash of the recipe.
        image: String,
        score_milli: i64,
        runners_up: Vec<CandidateScore>,
        rejected: Vec<RejectCount>,
        candidates: u32,
    },
    /// Fits nowhere now; stays pending and is placed when capacity frees.
    DeploymentUnschedulable {
        deployment_id: String,
        rejected: Vec<RejectCount>,
    },
    DeploymentStopRequested {
        deployment_id: String,
    },
    /// Its node was lost; resources are released and it goes back to pending.
    DeploymentLost {
        deployment_id: String,
        node_id: String,
    },
    /// Stopped and removed: its resources are free.
    DeploymentStopped {
        deployment_id: String,
    },

    // ── images and containers, as reported by the node's agent ───────────────
    ImageBuildStarted {
        deployment_id: String,
        image: String,
        steps: u32,
    },
    ImageBuildProgress {
        deployment_id: String,
        step: u32,
        steps: u32,
    },
    ImageBuildFailed {
        deployment_id: String,
        step: u32,
        command: String,
        output_tail: String,
    },
    ImageReady {
        deployment_id: String,
        image: String,
        cached: bool,
    },
    ContainerCreated {
        deployment_id: String,
        container_id: String,
    },
    ContainerStarted {
        deployment_id: String,
    },
    ContainerExited {
        deployment_id: String,
        code: i64,
    },
    ContainerOomKilled {
        deployment_id: String,
    },
    ContainerRemoved {
        deployment_id: String,
    },
    /// Engine or driver failure that is not a build step (e.g. create refused).
    ContainerFailed {
        deployment_id: String,
        message: String,
    },

    // ── access ───────────────────────────────────────────────────────────────
    /// `secret_hash` is blake3 of the token secret; the secret itself is never stored.
    TokenCreated {
        token_id: String,
        name: String,
        role: Role,
        secret_hash: [u8; 32],
        node_id: Option<String>,
    },
    TokenRevoked {
        token_id: String,
    },

    // ── requests ─────────────────────────────────────────────────────────────
    /// The `events` envelopes just before this one (same batch) were what the
    /// envelope's actor's command keyed `key` appended: a retry of that key within the
    /// window is answered with them instead of being decided again (exactly-once
    /// requests). Changes no state.
    RequestKeyRecorded {
        key: String,
        events: u32,
    },
}

impl Event {
    /// The variant name, as used by filters and the events catalogue.
    pub fn kind(&self) -> &'static str {
        match self {
            Event::EnvironmentCreated { .. } => "EnvironmentCreated",
            Event::EnvironmentUpdated { .. } => "EnvironmentUpdated",
            Event::EnvironmentDeactivated { .. } => "EnvironmentDeactivated",
            Event::EnvironmentDeleted { .. } => "EnvironmentDeleted",
            Event::TemplateSaved { .. } => "TemplateSaved",
            Event::TemplateDeleted { .. } => "TemplateDeleted",
            Event::CatalogUpserted { .. } => "CatalogUpserted",
            Event::DatasetsRegistered { .. } => "DatasetsRegistered",
            Event::DatasetRemoved { .. } => "DatasetRemoved",
            Event::ServiceRegistered { .. } => "ServiceRegistered",
            Event::ServiceRefreshed { .. } => "ServiceRefreshed",
            Event::ServiceDeregistered { .. } => "ServiceDeregistered",
            Event::ServiceExpired { .. } => "ServiceExpired",
            Event::NodeRegistered { .. } => "NodeRegistered",
            Event::NodeHeartbeat { .. } => "NodeHeartbeat",
            Event::NodeLost { .. } => "NodeLost",
            Event::NodeDrained { .. } => "NodeDrained",
            Event::NodeUndrained { .. } => "NodeUndrained",
            Event::DeploymentRequested { .. } => "DeploymentRequested",
            Event::DeploymentScheduled { .. } => "DeploymentScheduled",
            Event::DeploymentUnschedulable { .. } => "DeploymentUnschedulable",
            Event::DeploymentStopRequested { .. } => "DeploymentStopRequested",
            Event::DeploymentLost { .. } => "DeploymentLost",
            Event::DeploymentStopped { .. } => "DeploymentStopped",
            Event::ImageBuildStarted { .. } => "ImageBuildStarted",
            Event::ImageBuildProgress { .. } => "ImageBuildProgress",
            Event::ImageBuildFailed { .. } => "ImageBuildFailed",
            Event::ImageReady { .. } => "ImageReady",
            Event::ContainerCreated { .. } => "ContainerCreated",
            Event::ContainerStarted { .. } => "ContainerStarted",
            Event::ContainerExited { .. } => "ContainerExited",
            Event::ContainerOomKilled { .. } => "ContainerOomKilled",
            Event::ContainerRemoved { .. } => "ContainerRemoved",
            Event::ContainerFailed { .. } => "ContainerFailed",
            Event::TokenCreated { .. } => "TokenCreated",
            Event::TokenRevoked { .. } => "TokenRevoked",
            Event::RequestKeyRecorded { .. } => "RequestKeyRecorded",
        }
    }

    /// The entity the event is about (`deployment:ID`, `node:ID`, …), for filters.
    pub fn entity(&self) -> String {
        use Event::*;
        match self {
            EnvironmentCreated { env_id, .. }
            | EnvironmentUpdated { env_id, .. }
            | EnvironmentDeactivated { env_id }
            | EnvironmentDeleted { env_id } => format!("environment:{env_id}"),
            TemplateSaved { name, .. } | TemplateDeleted { name } => format!("template:{name}"),
            CatalogUpserted { catalog } => format!("catalog:{}", catalog.os),
            DatasetsRegistered { category } => format!("dataset:{}", category.category),
            DatasetRemoved { category, .. } => format!("dataset:{category}"),
            ServiceRegistered { service } => format!("service:{}", service.name),
            ServiceRefreshed { name } | ServiceDeregistered { name } | ServiceExpired { name } => {
                format!("service:{name}")
            }
            NodeRegistered { node_id, .. }
            | NodeHeartbeat { node_id, .. }
            | NodeLost { node_id }
            | NodeDrained { node_id }
            | NodeUndrained { node_id } => format!("node:{node_id}"),
            DeploymentRequested { deployment_id, .. }
            | DeploymentScheduled { deployment_id, .. }
            | DeploymentUnschedulable { deployment_id, .. }
            | DeploymentStopRequested { deployment_id }
            | DeploymentLost { deployment_id, .. }
            | DeploymentStopped { deployment_id }
            | ImageBuildStarted { deployment_id, .. }
            | ImageBuildProgress { deployment_id, .. }
            | ImageBuildFailed { deployment_id, .. }
            | ImageReady { deployment_id, .. }
            | ContainerCreated { deployment_id, .. }
            | ContainerStarted { deployment_id }
            | ContainerExited { deployment_id, .. }
            | ContainerOomKilled { deployment_id }
            | ContainerRemoved { deployment_id }
            | ContainerFailed { deployment_id, .. } => format!("deployment:{deployment_id}"),
            TokenCreated { token_id, .. } | TokenRevoked { token_id } => {
                format!("token:{token_id}")
            }
            RequestKeyRecorded { key, .. } => format!("request:{key}"),
        }
    }

    /// Heartbeats are the only events a retention policy may compact.
    pub fn is_compactable(&self) -> bool {
        matches!(self, Event::NodeHeartbeat { .. })
    }
}
