//! Commands (what a caller asks for), agent reports, and the context a command is
//! decided in (time, actor, settings). Fresh ids come in the command: the writer
//! chooses them, so deciding stays deterministic.

use std::collections::BTreeMap;

use dcloud_events::model::{
    ContainerUsage, DatasetCategory, EnvironmentSpec, LanguageSpec, LibraryCatalog, LibraryService,
    NodeFingerprint, PlacementPolicy, PortPublish, Quota, Resources, Role, ServiceRegistration,
    SharedStorage, StorageMount, Usage, VolumeUsage,
};
use dcloud_events::Event;

use crate::actor::Actor;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    // ── environments and templates ───────────────────────────────────────────
    CreateEnvironment {
        env_id: String,
        spec: EnvironmentSpec,
    },
    /// Refused with `Conflict` unless `expected_version` is the current version.
    UpdateEnvironment {
        env_id: String,
        expected_version: u64,
        spec: EnvironmentSpec,
    },
    DeactivateEnvironment {
        env_id: String,
    },
    /// Refused while the environment has live deployments.
    DeleteEnvironment {
        env_id: String,
    },
    SaveTemplate {
        name: String,
        spec: EnvironmentSpec,
        /// The document's `idle-timeout` (ms, 0: none); `None` when it has none.
        idle_timeout_ms: Option<u64>,
    },
    DeleteTemplate {
        name: String,
    },
    CreateFromTemplate {
        env_id: String,
        template: String,
        overrides: SpecOverrides,
    },

    // ── catalogs and services ────────────────────────────────────────────────
    UpsertCatalog {
        catalog: LibraryCatalog,
    },
    /// The services the libraries of catalog `os` declare (its document's `services`),
    /// right after the catalog's `UpsertCatalog`.
    SetCatalogServices {
        os: String,
        services: Vec<LibraryService>,
    },
    RegisterDatasets {
        category: DatasetCategory,
    },
    RemoveDataset {
        category: String,
        db: String,
        dataset: String,
        version: String,
    },
    RegisterService {
        service: ServiceRegistration,
    },
    RefreshService {
        name: String,
    },
    DeregisterService {
        name: String,
    },
    /// Expires every service not refreshed within its TTL as of `Ctx::now_ms`.
    ExpireServices,

    // ── nodes ────────────────────────────────────────────────────────────────
    RegisterNode {
        node_id: String,
        fingerprint: NodeFingerprint,
    },
    /// Logged only every `Settings::heartbeat_log_interval_ms` (or when `engine_ok`
    /// changes); otherwise decides no events.
    Heartbeat {
        node_id: String,
        usage: Usage,
        containers: Vec<ContainerUsage>,
        engine_ok: bool,
    },
    /// The address users reach the node at (agent `--address`); logged when it changes.
    ReportNodeAddress {
        node_id: String,
        address: String,
    },
    /// The node's agent removed a container of a deployment no longer assigned to it.
    ReportStaleContainer {
        node_id: String,
        deployment_id: String,
        container_id: String,
    },
    /// How full the storage of a deployment on the reporting node is.
    ReportVolumeUsage {
        node_id: String,
        deployment_id: String,
        volumes: Vec<VolumeUsage>,
    },
    /// This log's cluster id, given once (the first server start).
    CreateCluster {
        cluster_id: String,
    },
    /// Where the datasets of `category` live: shared storage every node reaches, or
    /// (`None`) each node's own disk. Admin only: the engine mounts what it names.
    SetDatasetStorage {
        category: String,
        shared: Option<SharedStorage>,
    },
    /// The writer's timer names the nodes that missed the TTL.
    MarkNodesLost {
        node_ids: Vec<String>,
    },
    /// Lost nodes whose deployments are to be placed elsewhere: named by the writer's
    /// timer once their grace (`lost_node_grace_ms`) is over, or by an admin who knows
    /// the machine is gone (`force`: without waiting for the grace).
    EvictLostNodes {
        node_ids: Vec<String>,
        force: bool,
    },
    DrainNode {
        node_id: String,
    },
    UndrainNode {
        node_id: String,
    },

    // ── deployments ──────────────────────────────────────────────────────────
    /// Refused with `QuotaExceeded` when it would pass the owner's quota, unless
    /// `wait_for_quota`: then it waits, pending, until it fits within the quota.
    Deploy {
        deployment_id: String,
        env_id: String,
        policy: Option<PlacementPolicy>,
        wait_for_quota: bool,
    },
    Stop {
        deployment_id: String,
    },
    /// An agent's report about a deployment assigned to its node.
    Report {
        deployment_id: String,
        report: Report,
    },
    /// Tries every pending deployment against every node (a safety valve for the
    /// writer's timer; capacity changes retry the queue on their own).
    RetryPending,

    // ── access ───────────────────────────────────────────────────────────────
    CreateToken {
        token_id: String,
        name: String,
        role: Role,
        secret_hash: [u8; 32],
        node_id: Option<String>,
    },
    RevokeToken {
        token_id: String,
    },

    // ── sessions and idleness (see `decide::sessions`) ───────────────────────
    /// Records that the actor opened a deployment's logs (owner, admin, auditor).
    OpenLogs {
        deployment_id: String,
    },
    /// Records the start of an exec session in a running deployment (owner, admin).
    StartExec {
        session_id: String,
        deployment_id: String,
        command: Vec<String>,
        tty: bool,
    },
    /// Records the end of an exec session (the server, as system).
    EndExec {
        session_id: String,
        deployment_id: String,
        exit_code: Option<i64>,
        reason: String,
    },
    /// Sets the idle timeout of the environment's current version (0: none).
    SetIdleTimeout {
        env_id: String,
        timeout_ms: u64,
    },
    /// Stops a deployment the idle timer found idle (the server, as system).
    StopIdle {
        deployment_id: String,
        idle_ms: u64,
        reason: String,
    },

    // ── quotas ───────────────────────────────────────────────────────────────
    /// Replaces `user`'s quota (admins); an unlimited quota removes it.
    SetQuota {
        user: String,
        quota: Quota,
    },

    // ── token expiry and joining nodes ───────────────────────────────────────
    /// `CreateToken` with an expiry (`None`: never; decided as `CreateToken`).
    CreateTokenV2 {
        token_id: String,
        name: String,
        role: Role,
        secret_hash: [u8; 32],
        node_id: Option<String>,
        expires_ms: Option<i64>,
    },
    /// A join token for `uses` nodes, valid until `expires_ms` (admins).
    CreateJoinToken {
        token_id: String,
        name: String,
        secret_hash: [u8; 32],
        expires_ms: Option<i64>,
        uses: u32,
    },
    /// A node presents a join token (by the hash of its secret) and is given the new
    /// agent token `token_id` bound to `node_id`. Needs no actor's role: the join
    /// token is the authority.
    JoinNode {
        join_secret_hash: [u8; 32],
        node_id: String,
        token_id: String,
        secret_hash: [u8; 32],
    },
}

/// What an agent reports about one deployment; each maps to one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Report {
    BuildStarted {
        image: String,
        steps: u32,
    },
    BuildProgress {
        step: u32,
        steps: u32,
    },
    BuildFailed {
        step: u32,
        command: String,
        output_tail: String,
    },
    ImageReady {
        image: String,
        cached: bool,
    },
    ContainerCreated {
        container_id: String,
    },
    ContainerStarted,
    ContainerExited {
        code: i64,
    },
    ContainerOomKilled,
    ContainerRemoved,
    ContainerFailed {
        message: String,
    },
    /// A process inside the container was OOM-killed; the container runs on.
    ContainerOomWarning {
        message: String,
    },
    /// The last output of the main process, just before it is reported exited.
    ContainerOutput {
        output_tail: String,
    },
}

impl Report {
    /// The event this report becomes.
    pub fn to_event(&self, deployment_id: &str) -> Event {
        let deployment_id = deployment_id.to_string();
        match self.clone() {
            Report::BuildStarted { image, steps } => Event::ImageBuildStarted {
                deployment_id,
                image,
                steps,
            },
            Report::BuildProgress { step, steps } => Event::ImageBuildProgress {
                deployment_id,
                step,
                steps,
            },
            Report::BuildFailed {
                step,
                command,
                output_tail,
            } => Event::ImageBuildFailed {
                deployment_id,
                step,
                command,
                output_tail,
            },
            Report::ImageReady { image, cached } => Event::ImageReady {
                deployment_id,
                image,
                cached,
            },
            Report::ContainerCreated { container_id } => Event::ContainerCreated {
                deployment_id,
                container_id,
            },
            Report::ContainerStarted => Event::ContainerStarted { deployment_id },
            Report::ContainerExited { code } => Event::ContainerExited {
                deployment_id,
                code,
            },
            Report::ContainerOomKilled => Event::ContainerOomKilled { deployment_id },
            Report::ContainerRemoved => Event::ContainerRemoved { deployment_id },
            Report::ContainerFailed { message } => Event::ContainerFailed {
                deployment_id,
                message,
            },
            Report::ContainerOomWarning { message } => Event::ContainerOomWarning {
                deployment_id,
                message,
            },
            Report::ContainerOutput { output_tail } => Event::ContainerOutput {
                deployment_id,
                output_tail,
            },
        }
    }
}

/// The parts of a template a new environment may replace; `None` keeps the template's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SpecOverrides {
    pub name: Option<String>,
    pub version_label: Option<String>,
    pub os: Option<String>,
    pub languages: Option<Vec<LanguageSpec>>,
    pub resources: Option<Resources>,
    pub datasets: Option<Vec<DatasetCategory>>,
    pub ports: Option<Vec<PortPublish>>,
    pub storage: Option<Vec<StorageMount>>,
    pub node_labels: Option<BTreeMap<String, String>>,
}

impl SpecOverrides {
    /// The template's spec with these overrides; the new environment is active and
    /// carries none of the template's original-document metadata.
    pub fn apply_to(&self, template: &EnvironmentSpec) -> EnvironmentSpec {
        let mut spec = template.clone();
        if let Some(v) = &self.name {
            spec.name = v.clone();
        }
        if let Some(v) = &self.version_label {
            spec.version_label = v.clone();
        }
        if let Some(v) = &self.os {
            spec.os = v.clone();
        }
        if let Some(v) = &self.languages {
            spec.languages = v.clone();
        }
        if let Some(v) = &self.resources {
            spec.resources = v.clone();
        }
        if let Some(v) = &self.datasets {
            spec.datasets = v.clone();
        }
        if let Some(v) = &self.ports {
            spec.ports = v.clone();
        }
        if let Some(v) = &self.storage {
            spec.storage = v.clone();
        }
        if let Some(v) = &self.node_labels {
            spec.node_labels = v.clone();
        }
        spec.is_active = true;
        spec.meta = Default::default();
        spec
    }
}

/// Settings that shape decisions (not the state).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Keep a `NodeHeartbeat` in the log at most this often per node.
    pub heartbeat_log_interval_ms: i64,
    /// A node unheard of this long is lost (the writer's timer applies it).
    pub node_ttl_ms: i64,
    /// How long a lost node's deployments wait for it to speak again before they are
    /// placed elsewhere (0: at once, when it is marked lost). A node back within it
    /// keeps them, and its agent keeps their running containers.
    pub lost_node_grace_ms: i64,
    pub default_policy: PlacementPolicy,
    /// os → base image, for catalogs that name none.
    pub default_base_images: BTreeMap<String, String>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            heartbeat_log_interval_ms: 60_000,
            node_ttl_ms: 15_000,
            lost_node_grace_ms: 300_000,
            default_policy: PlacementPolicy::Spread,
            default_base_images: crate::config::default_base_images(),
        }
    }
}

/// The context of one decision: the writer's clock, who asks, and the settings.
#[derive(Debug, Clone)]
pub struct Ctx {
    pub now_ms: i64,
    pub actor: Actor,
    /// Shared, so building a context per command copies no maps.
    pub settings: std::sync::Arc<Settings>,
}
