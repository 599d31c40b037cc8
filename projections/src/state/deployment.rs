//! A deployment as folded from the log: what it asked for, where it runs, its status
//! and status history, its placement decision and what its agent reported.

use dcloud_events::model::{
    CandidateScore, EnvironmentSpec, PlacementPolicy, PortPublish, RejectCount, Resources,
    VolumeUsage,
};
use dcloud_events::Event;
use serde::Serialize;

/// The life of a deployment. Resources are held in `Scheduled`, `Building`, `Created`,
/// `Running` and `Stopping`; `Pending` and `Lost` wait in the queue; `Exited`,
/// `OomKilled`, `Failed` and `Stopped` hold nothing.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize,
)]
pub enum DeploymentStatus {
    Pending,
    Scheduled,
    Building,
    Created,
    Running,
    Exited,
    OomKilled,
    Failed,
    Stopping,
    Stopped,
    /// Its node was lost; it waits in the queue to be placed again.
    Lost,
}

impl DeploymentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeploymentStatus::Pending => "pending",
            DeploymentStatus::Scheduled => "scheduled",
            DeploymentStatus::Building => "building",
            DeploymentStatus::Created => "created",
            DeploymentStatus::Running => "running",
            DeploymentStatus::Exited => "exited",
            DeploymentStatus::OomKilled => "oom_killed",
            DeploymentStatus::Failed => "failed",
            DeploymentStatus::Stopping => "stopping",
            DeploymentStatus::Stopped => "stopped",
            DeploymentStatus::Lost => "lost",
        }
    }

    /// Holds CPU, memory, storage, GPUs and ports on its node.
    pub fn holds_resources(self) -> bool {
        use DeploymentStatus::*;
        matches!(self, Scheduled | Building | Created | Running | Stopping)
    }

    /// Waits in the pending queue.
    pub fn is_queued(self) -> bool {
        matches!(self, DeploymentStatus::Pending | DeploymentStatus::Lost)
    }

    /// Not finished: waiting, placed, or running.
    pub fn is_live(self) -> bool {
        use DeploymentStatus::*;
        !matches!(self, Exited | OomKilled | Failed | Stopped)
    }
}

/// One status change: the sequence number and time of the event that caused it.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize,
)]
pub struct StatusEntry {
    pub seq: u64,
    pub time_ms: i64,
    pub status: DeploymentStatus,
}

/// Why the deployment was placed where it is.
#[derive(
    Debug, Clone, PartialEq, Eq, Serialize, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize,
)]
pub struct PlacementRecord {
    pub seq: u64,
    pub score_milli: i64,
    pub runners_up: Vec<CandidateScore>,
    pub rejected: Vec<RejectCount>,
    pub candidates: u32,
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize,
)]
pub struct BuildProgress {
    pub step: u32,
    pub steps: u32,
}

/// What went wrong, for `Failed` deployments (and failures reported while stopping).
#[derive(
    Debug, Clone, PartialEq, Eq, Serialize, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize,
)]
pub struct Failure {
    /// The build step, when a build step failed.
    pub step: Option<u32>,
    pub command: Option<String>,
    /// The build's output tail, or the engine's message.
    pub message: String,
}

#[derive(
    Debug, Clone, PartialEq, Eq, Serialize, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize,
)]
pub struct Deployment {
    pub id: String,
    pub env_id: String,
    pub env_version: u32,
    pub owner: String,
    pub policy: PlacementPolicy,
    /// Sequence number of `DeploymentRequested`: its place in the pending queue.
    pub requested_seq: u64,
    pub requested_ms: i64,
    /// What it books on a node (see [`need_of`]).
    pub need: Resources,
    /// External ports it publishes (booked on its node while it holds resources).
    pub ports: Vec<PortPublish>,
    pub status: DeploymentStatus,
    pub history: Vec<StatusEntry>,
    /// The node it is assigned to (kept after it finishes; cleared when lost).
    pub node: Option<String>,
    /// GPU device uuids assigned.
    pub gpus: Vec<String>,
    /// Image tag (recipe content hash) it was scheduled with.
    pub image: Option<String>,
    pub image_ready: bool,
    pub image_cached: bool,
    pub placement: Option<Box<PlacementRecord>>,
    /// Why it fits nowhere, from its last `DeploymentUnschedulable`.
    pub pending_reasons: Vec<RejectCount>,
    pub build: Option<BuildProgress>,
    pub exit_code: Option<i64>,
    pub container_id: Option<String>,
    pub failure: Option<Box<Failure>>,
    /// What went wrong without ending it (a process OOM-killed inside the container,
    /// a stale container removed from a node), oldest first.
    pub warnings: Vec<Warning>,
    /// Set while it waits for its owner's quota (the limit it would pass); cleared
    /// when it is placed or stopped.
    pub quota_wait: Option<String>,
    /// The last output of the container's main process, when it ended.
    pub last_output: Option<String>,
    /// How full each of its storage targets is, as its node last reported.
    pub volumes: Vec<VolumeUsage>,
}

/// Something that happened to a deployment and did not end it.
#[derive(
    Debug, Clone, PartialEq, Eq, Serialize, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize,
)]
pub struct Warning {
    pub seq: u64,
    pub time_ms: i64,
    /// `oom` (a process inside was OOM-killed) or `stale_container_removed`.
    pub kind: String,
    pub message: String,
}

/// Most warnings a deployment keeps (the oldest are dropped; the log keeps them all).
pub const MAX_WARNINGS: usize = 50;

/// An entry of the pending queue: the deployment and what it needs, so that the
/// queue can be scanned without looking each deployment up.
#[derive(
    Debug, Clone, PartialEq, Eq, Serialize, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize,
)]
pub struct Queued {
    pub id: String,
    pub need: Resources,
}

/// What a spec books on a node: its resources, with storage = `resources.storage` plus
/// every `storage[]` mount (they all live on the node's disk).
pub fn need_of(spec: &EnvironmentSpec) -> Resources {
    let mounts: u64 = spec
        .storage
        .iter()
        .map(|s| s.size_bytes)
        .fold(0, u64::saturating_add);
    Resources {
        storage_bytes: spec.resources.storage_bytes.saturating_add(mounts),
        ..spec.resources.clone()
    }
}

impl Deployment {
    pub(crate) fn requested(
        id: &str,
        env_id: &str,
        env_version: u32,
        owner: &str,
        policy: PlacementPolicy,
        spec: Option<&EnvironmentSpec>,
        (seq, time_ms): (u64, i64),
    ) -> Deployment {
        Deployment {
            id: id.to_string(),
            env_id: env_id.to_string(),
            env_version,
            owner: owner.to_string(),
            policy,
            requested_seq: seq,
            requested_ms: time_ms,
            need: spec.map(need_of).unwrap_or_default(),
            ports: spec.map(|s| s.ports.clone()).unwrap_or_default(),
            status: DeploymentStatus::Pending,
            history: vec![StatusEntry {
                seq,
                time_ms,
                status: DeploymentStatus::Pending,
            }],
            node: None,
            gpus: Vec::new(),
            image: None,
            image_ready: false,
            image_cached: false,
            placement: None,
            pending_reasons: Vec::new(),
            build: None,
            exit_code: None,
            container_id: None,
            failure: None,
            warnings: Vec::new(),
            quota_wait: None,
            last_output: None,
            volumes: Vec::new(),
        }
    }

    /// Waiting (pending) until its owner's quota has room for it.
    pub fn waits_for_quota(&self) -> bool {
        self.status.is_queued() && self.quota_wait.is_some()
    }

    /// Counted in its owner's quota usage: live and not waiting for quota.
    pub fn counts_against_quota(&self) -> bool {
        self.status.is_live() && !self.waits_for_quota()
    }

    fn set_status(&mut self, status: DeploymentStatus, seq: u64, time_ms: i64) {
        if self.status != status {
            self.status = status;
            self.history.push(StatusEntry {
                seq,
                time_ms,
                status,
            });
        }
    }

    /// Moves to `status` unless a stop was requested (then it stays `Stopping`).
    fn progress(&mut self, status: DeploymentStatus, seq: u64, time_ms: i64) {
        if self.status != DeploymentStatus::Stopping {
            self.set_status(status, seq, time_ms);
        }
    }

    fn warn(&mut self, seq: u64, time_ms: i64, kind: &str, message: String) {
        if self.warnings.len() >= MAX_WARNINGS {
            self.warnings.remove(0);
        }
        self.warnings.push(Warning {
            seq,
            time_ms,
            kind: kind.to_string(),
            message,
        });
    }

    fn reset_run(&mut self) {
        self.gpus.clear();
        self.image_ready = false;
        self.image_cached = false;
        self.build = None;
        self.exit_code = None;
        self.last_output = None;
        self.container_id = None;
        self.failure = None;
    }

    /// Folds one event about this deployment into its own fields. Node bookkeeping is
    /// the caller's (it compares what is held before and after).
    pub(crate) fn fold(&mut self, event: &Event, seq: u64, time_ms: i64) {
        use DeploymentStatus as S;
        match event {
            Event::DeploymentScheduled {
                node_id,
                gpus,
                image,
                score_milli,
                runners_up,
                rejected,
                candidates,
                ..
            } => {
                self.reset_run();
                self.node = Some(node_id.clone());
                self.gpus = gpus.clone();
                self.image = Some(image.clone());
                self.placement = Some(Box::new(PlacementRecord {
                    seq,
                    score_milli: *score_milli,
                    runners_up: runners_up.clone(),
                    rejected: rejected.clone(),
                    candidates: *candidates,
                }));
                self.pending_reasons.clear();
                self.quota_wait = None;
                self.set_status(S::Scheduled, seq, time_ms);
            }
            Event::DeploymentUnschedulable { rejected, .. } => {
                self.pending_reasons = rejected.clone();
            }
            Event::DeploymentStopRequested { .. } => self.set_status(S::Stopping, seq, time_ms),
            Event::DeploymentLost { .. } => {
                self.reset_run();
                self.node = None;
                self.set_status(S::Lost, seq, time_ms);
            }
            Event::DeploymentStopped { .. } => {
                self.quota_wait = None;
                self.set_status(S::Stopped, seq, time_ms);
            }
            Event::DeploymentQuotaWaiting { reason, .. } => {
                self.quota_wait = Some(reason.clone());
            }
            Event::ImageBuildStarted { image, steps, .. } => {
                self.image = Some(image.clone());
                self.build = Some(BuildProgress {
                    step: 0,
                    steps: *steps,
                });
                self.progress(S::Building, seq, time_ms);
            }
            Event::ImageBuildProgress { step, steps, .. } => {
                self.build = Some(BuildProgress {
                    step: *step,
                    steps: *steps,
                });
                self.progress(S::Building, seq, time_ms);
            }
            Event::ImageBuildFailed {
                step,
                command,
                output_tail,
                ..
            } => {
                self.failure = Some(Box::new(Failure {
                    step: Some(*step),
                    command: Some(command.clone()),
                    message: output_tail.clone(),
                }));
                self.progress(S::Failed, seq, time_ms);
            }
            Event::ImageReady { image, cached, .. } => {
                self.image = Some(image.clone());
                self.image_ready = true;
                self.image_cached = *cached;
                if let Some(b) = &mut self.build {
                    b.step = b.steps;
                }
            }
            Event::ContainerCreated { container_id, .. } => {
                self.container_id = Some(container_id.clone());
                self.progress(S::Created, seq, time_ms);
            }
            Event::ContainerStarted { .. } => self.progress(S::Running, seq, time_ms),
            Event::ContainerExited { code, .. } => {
                self.exit_code = Some(*code);
                self.progress(S::Exited, seq, time_ms);
            }
            Event::ContainerOomKilled { .. } => self.progress(S::OomKilled, seq, time_ms),
            Event::ContainerRemoved { .. } => self.container_id = None,
            Event::ContainerFailed { message, .. } => {
                self.failure = Some(Box::new(Failure {
                    step: None,
                    command: None,
                    message: message.clone(),
                }));
                self.progress(S::Failed, seq, time_ms);
            }
            Event::ContainerOutput { output_tail, .. } => {
                self.last_output = Some(output_tail.clone());
            }
            // Only its current node's measure counts (a report from a node it left
            // is history).
            Event::VolumeUsageReported {
                node_id, volumes, ..
            } if self.node.as_deref() == Some(node_id.as_str()) => {
                self.volumes = volumes.clone();
            }
            Event::ContainerOomWarning { message, .. } => {
                self.warn(seq, time_ms, "oom", message.clone());
            }
            Event::StaleContainerRemoved {
                node_id,
                container_id,
                ..
            } => {
                let message = format!("stale container {container_id} removed from node {node_id}");
                self.warn(seq, time_ms, "stale_container_removed", message);
            }
            _ => {}
        }
    }
}
