//! The event enum for the whole domain. It is an API boundary and a stored format:
//! a released variant never changes shape; a changed event is a new variant.
//!
//! Ids are strings chosen by the writer (never by `apply`), so replay is deterministic.

use serde::{Deserialize, Serialize};

use crate::model::{
    CandidateScore, ContainerUsage, DatasetCategory, EnvironmentSpec, LibraryCatalog,
    LibraryService, NodeFingerprint, PlacementPolicy, Quota, RejectCount, Role,
    ServiceRegistration, SharedStorage, Usage, VolumeUsage,
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

    // ── sessions and idleness (appended: earlier variants keep their shape) ───
    /// Someone (the envelope's actor) opened the logs of a deployment. The lines
    /// themselves are never recorded.
    DeploymentLogsOpened {
        deployment_id: String,
    },
    /// An exec session (a shell or one command) started in a deployment's container,
    /// opened by the envelope's actor.
    ExecSessionStarted {
        session_id: String,
        deployment_id: String,
        command: Vec<String>,
        tty: bool,
    },
    /// The exec session ended: the command's exit code when it exited, else `None`
    /// with the reason (client gone, deployment stopped, agent unreachable).
    ExecSessionEnded {
        session_id: String,
        deployment_id: String,
        exit_code: Option<i64>,
        reason: String,
    },
    /// The idle timeout of an environment from its version `version` on (0: none),
    /// from the document field `idle-timeout`.
    EnvironmentIdleTimeoutSet {
        env_id: String,
        version: u32,
        timeout_ms: u64,
    },
    /// The deployment was idle (CPU below the threshold, no open log or exec session)
    /// for `idle_ms` and is being stopped; a `DeploymentStopRequested` follows.
    DeploymentIdleStopped {
        deployment_id: String,
        idle_ms: u64,
        reason: String,
    },

    // ── added after version 1: what the node agent reports of the machine ────
    /// The address users reach the node at (its published ports are `address:port`).
    NodeAddressReported {
        node_id: String,
        address: String,
    },
    /// A process inside the deployment's container was OOM-killed while the container
    /// itself runs on: a warning, not the deployment's end.
    ContainerOomWarning {
        deployment_id: String,
        message: String,
    },
    /// An agent removed a container of this deployment that was no longer assigned to
    /// its node (left behind while the node was away).
    StaleContainerRemoved {
        deployment_id: String,
        node_id: String,
        container_id: String,
    },
    // ── quotas (appended after the first release: the order above is frozen) ─────
    /// Replaces `user`'s quota; an unlimited quota (every axis `None`) removes it.
    QuotaSet {
        user: String,
        quota: Quota,
    },
    /// The deployment (just requested, with `waitForQuota`) would pass its owner's
    /// quota: it stays pending, not counted against the quota, until it can be placed
    /// within it. `reason` names the limit (`quota exceeded: gpus 2 of 1`).
    DeploymentQuotaWaiting {
        deployment_id: String,
        reason: String,
    },

    // ── added after release 1 (appended: earlier variants keep their tags) ──────
    /// A token that stops authenticating at `expires_ms` (Unix ms; `None`: never).
    /// `TokenCreated` keeps its shape: tokens without expiry may still use it.
    TokenCreatedV2 {
        token_id: String,
        name: String,
        role: Role,
        secret_hash: [u8; 32],
        node_id: Option<String>,
        expires_ms: Option<i64>,
    },
    /// A join token: an agent presents it once per node to receive its own
    /// node-bound agent token. Valid until `expires_ms` for `uses` joins.
    JoinTokenCreated {
        token_id: String,
        name: String,
        secret_hash: [u8; 32],
        expires_ms: Option<i64>,
        uses: u32,
    },
    /// A node joined with join token `join_token_id` (one use spent) and was given
    /// the agent token `token_id` bound to it.
    NodeJoined {
        join_token_id: String,
        node_id: String,
        token_id: String,
        secret_hash: [u8; 32],
        expires_ms: Option<i64>,
    },
    /// The last lines the container's main process wrote (stdout and stderr) before
    /// it ended; reported just before `ContainerExited`.
    ContainerOutput {
        deployment_id: String,
        output_tail: String,
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

    // ── added after release 2 (appended: earlier variants keep their tags) ──────
    /// The idle timeout (`idle-timeout`, 0: none) of template `name` as last saved:
    /// environments created from the template start with it. Follows the
    /// `TemplateSaved` it belongs to (a save without the field clears it).
    TemplateIdleTimeoutSet {
        name: String,
        timeout_ms: u64,
    },
    /// The services the libraries of catalog `os` declare (the document's `services`).
    /// Follows the `CatalogUpserted` it belongs to (an upsert without them clears them).
    CatalogServicesSet {
        os: String,
        services: Vec<LibraryService>,
    },
    /// This log's cluster: written once, by the first server start (or the first
    /// start after an upgrade). Agents label what they create with it and touch
    /// nothing labelled with another cluster's id.
    ClusterCreated {
        cluster_id: String,
    },
    /// Where the datasets of `category` are kept when they are on shared storage
    /// (`None`: on each node's own disk). Follows the `DatasetsRegistered` it belongs
    /// to (a registration without it clears it).
    DatasetStorageSet {
        category: String,
        shared: Option<SharedStorage>,
    },
    /// How full the storage of deployment `deployment_id` on `node_id` is, recorded
    /// when it changed by enough to matter (or crossed its size).
    VolumeUsageReported {
        deployment_id: String,
        node_id: String,
        volumes: Vec<VolumeUsage>,
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
            Event::DeploymentLogsOpened { .. } => "DeploymentLogsOpened",
            Event::ExecSessionStarted { .. } => "ExecSessionStarted",
            Event::ExecSessionEnded { .. } => "ExecSessionEnded",
            Event::EnvironmentIdleTimeoutSet { .. } => "EnvironmentIdleTimeoutSet",
            Event::DeploymentIdleStopped { .. } => "DeploymentIdleStopped",
            Event::NodeAddressReported { .. } => "NodeAddressReported",
            Event::ContainerOomWarning { .. } => "ContainerOomWarning",
            Event::StaleContainerRemoved { .. } => "StaleContainerRemoved",
            Event::QuotaSet { .. } => "QuotaSet",
            Event::DeploymentQuotaWaiting { .. } => "DeploymentQuotaWaiting",
            Event::TokenCreatedV2 { .. } => "TokenCreatedV2",
            Event::JoinTokenCreated { .. } => "JoinTokenCreated",
            Event::NodeJoined { .. } => "NodeJoined",
            Event::ContainerOutput { .. } => "ContainerOutput",
            Event::RequestKeyRecorded { .. } => "RequestKeyRecorded",
            Event::TemplateIdleTimeoutSet { .. } => "TemplateIdleTimeoutSet",
            Event::CatalogServicesSet { .. } => "CatalogServicesSet",
            Event::ClusterCreated { .. } => "ClusterCreated",
            Event::DatasetStorageSet { .. } => "DatasetStorageSet",
            Event::VolumeUsageReported { .. } => "VolumeUsageReported",
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
            TemplateSaved { name, .. }
            | TemplateDeleted { name }
            | TemplateIdleTimeoutSet { name, .. } => format!("template:{name}"),
            CatalogUpserted { catalog } => format!("catalog:{}", catalog.os),
            CatalogServicesSet { os, .. } => format!("catalog:{os}"),
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
            | NodeUndrained { node_id }
            | NodeAddressReported { node_id, .. } => format!("node:{node_id}"),
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
            | ContainerFailed { deployment_id, .. }
            | ContainerOomWarning { deployment_id, .. }
            | StaleContainerRemoved { deployment_id, .. }
            | DeploymentQuotaWaiting { deployment_id, .. }
            | ContainerOutput { deployment_id, .. } => format!("deployment:{deployment_id}"),
            QuotaSet { user, .. } => format!("quota:{user}"),
            TokenCreated { token_id, .. }
            | TokenRevoked { token_id }
            | TokenCreatedV2 { token_id, .. }
            | JoinTokenCreated { token_id, .. } => format!("token:{token_id}"),
            NodeJoined { node_id, .. } => format!("node:{node_id}"),
            DeploymentLogsOpened { deployment_id }
            | ExecSessionStarted { deployment_id, .. }
            | ExecSessionEnded { deployment_id, .. }
            | DeploymentIdleStopped { deployment_id, .. } => format!("deployment:{deployment_id}"),
            EnvironmentIdleTimeoutSet { env_id, .. } => format!("environment:{env_id}"),
            RequestKeyRecorded { key, .. } => format!("request:{key}"),
            ClusterCreated { cluster_id } => format!("cluster:{cluster_id}"),
            DatasetStorageSet { category, .. } => format!("dataset:{category}"),
            VolumeUsageReported { deployment_id, .. } => format!("deployment:{deployment_id}"),
        }
    }

    /// The deployment this event concerns, if any. Exhaustive on purpose (no `_` arm):
    /// a new variant must say whether it concerns a deployment, so no stream that
    /// routes by deployment can miss it.
    pub fn deployment_id(&self) -> Option<&str> {
        use Event::*;
        match self {
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
            | ContainerFailed { deployment_id, .. }
            | DeploymentLogsOpened { deployment_id }
            | ExecSessionStarted { deployment_id, .. }
            | ExecSessionEnded { deployment_id, .. }
            | DeploymentIdleStopped { deployment_id, .. }
            | ContainerOomWarning { deployment_id, .. }
            | StaleContainerRemoved { deployment_id, .. }
            | DeploymentQuotaWaiting { deployment_id, .. }
            | ContainerOutput { deployment_id, .. }
            | VolumeUsageReported { deployment_id, .. } => Some(deployment_id),
            EnvironmentCreated { .. }
            | EnvironmentUpdated { .. }
            | EnvironmentDeactivated { .. }
            | EnvironmentDeleted { .. }
            | EnvironmentIdleTimeoutSet { .. }
            | TemplateSaved { .. }
            | TemplateDeleted { .. }
            | TemplateIdleTimeoutSet { .. }
            | CatalogUpserted { .. }
            | CatalogServicesSet { .. }
            | DatasetsRegistered { .. }
            | DatasetRemoved { .. }
            | ServiceRegistered { .. }
            | ServiceRefreshed { .. }
            | ServiceDeregistered { .. }
            | ServiceExpired { .. }
            | NodeRegistered { .. }
            | NodeHeartbeat { .. }
            | NodeLost { .. }
            | NodeDrained { .. }
            | NodeUndrained { .. }
            | NodeAddressReported { .. }
            | TokenCreated { .. }
            | TokenRevoked { .. }
            | TokenCreatedV2 { .. }
            | JoinTokenCreated { .. }
            | NodeJoined { .. }
            | QuotaSet { .. }
            | RequestKeyRecorded { .. }
            | ClusterCreated { .. }
            | DatasetStorageSet { .. } => None,
        }
    }

    /// The node this event is about (its registration, heartbeats, liveness, drain
    /// state, address), if any. Exhaustive on purpose, like [`Event::deployment_id`].
    /// Events about a deployment on a node (`DeploymentLost`, `StaleContainerRemoved`)
    /// are the deployment's, not the node's.
    pub fn node_id(&self) -> Option<&str> {
        use Event::*;
        match self {
            NodeRegistered { node_id, .. }
            | NodeHeartbeat { node_id, .. }
            | NodeLost { node_id }
            | NodeDrained { node_id }
            | NodeUndrained { node_id }
            | NodeAddressReported { node_id, .. } => Some(node_id),
            EnvironmentCreated { .. }
            | EnvironmentUpdated { .. }
            | EnvironmentDeactivated { .. }
            | EnvironmentDeleted { .. }
            | EnvironmentIdleTimeoutSet { .. }
            | TemplateSaved { .. }
            | TemplateDeleted { .. }
            | TemplateIdleTimeoutSet { .. }
            | CatalogUpserted { .. }
            | CatalogServicesSet { .. }
            | DatasetsRegistered { .. }
            | DatasetRemoved { .. }
            | ServiceRegistered { .. }
            | ServiceRefreshed { .. }
            | ServiceDeregistered { .. }
            | ServiceExpired { .. }
            | DeploymentRequested { .. }
            | DeploymentScheduled { .. }
            | DeploymentUnschedulable { .. }
            | DeploymentStopRequested { .. }
            | DeploymentLost { .. }
            | DeploymentStopped { .. }
            | ImageBuildStarted { .. }
            | ImageBuildProgress { .. }
            | ImageBuildFailed { .. }
            | ImageReady { .. }
            | ContainerCreated { .. }
            | ContainerStarted { .. }
            | ContainerExited { .. }
            | ContainerOomKilled { .. }
            | ContainerRemoved { .. }
            | ContainerFailed { .. }
            | DeploymentLogsOpened { .. }
            | ExecSessionStarted { .. }
            | ExecSessionEnded { .. }
            | DeploymentIdleStopped { .. }
            | ContainerOomWarning { .. }
            | StaleContainerRemoved { .. }
            | TokenCreated { .. }
            | TokenRevoked { .. }
            | QuotaSet { .. }
            | DeploymentQuotaWaiting { .. }
            | TokenCreatedV2 { .. }
            | JoinTokenCreated { .. }
            | NodeJoined { .. }
            | ContainerOutput { .. }
            | RequestKeyRecorded { .. }
            | ClusterCreated { .. }
            | DatasetStorageSet { .. }
            | VolumeUsageReported { .. } => None,
        }
    }

    /// Heartbeats are the only events a retention policy may compact.
    pub fn is_compactable(&self) -> bool {
        matches!(self, Event::NodeHeartbeat { .. })
    }
}
