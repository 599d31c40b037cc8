//! The `Deployment` type: status and its history, the placement decision (node, score,
//! runners-up, rejections per reason), pending reasons, build progress and failure.

use async_graphql::{Object, SimpleObject};
use dcloud_projections::state::{self, Deployment};

use super::common::{CandidateScore, DeploymentStatus, PlacementPolicy, RejectCount, Resources};
use super::config::PortPublish;

/// One storage target's use against its size.
#[derive(SimpleObject, Clone, Debug)]
pub struct VolumeUsage {
    /// The mount target inside the container.
    pub target: String,
    pub used_bytes: u64,
    /// The size asked for (`storage[].size`); 0 when none was given.
    pub size_bytes: u64,
    /// The engine holds the volume to its size (a filesystem quota); otherwise the
    /// size is only watched and `over` says when it is passed.
    pub enforced: bool,
    /// More is used than the size asked for.
    pub over: bool,
}

impl From<&dcloud_events::model::VolumeUsage> for VolumeUsage {
    fn from(v: &dcloud_events::model::VolumeUsage) -> Self {
        VolumeUsage {
            target: v.target.clone(),
            used_bytes: v.used_bytes,
            size_bytes: v.size_bytes,
            enforced: v.enforced,
            over: v.size_bytes > 0 && v.used_bytes > v.size_bytes,
        }
    }
}

/// One status change, with the sequence number and time of the event that caused it.
#[derive(SimpleObject, Clone, Debug)]
pub struct StatusEntry {
    pub seq: u64,
    pub time_ms: i64,
    pub status: DeploymentStatus,
}

impl From<&state::StatusEntry> for StatusEntry {
    fn from(s: &state::StatusEntry) -> Self {
        StatusEntry {
            seq: s.seq,
            time_ms: s.time_ms,
            status: s.status.into(),
        }
    }
}

/// Why the deployment was placed where it is.
#[derive(SimpleObject, Clone, Debug)]
pub struct Placement {
    pub node_id: Option<String>,
    /// Sequence number of the `DeploymentScheduled` event.
    pub seq: u64,
    /// The chosen node's score, in thousandths.
    pub score_milli: i64,
    /// Feasible nodes considered.
    pub candidates: u32,
    /// The next best nodes and their scores.
    pub runners_up: Vec<CandidateScore>,
    /// Nodes rejected, counted per reason.
    pub rejected: Vec<RejectCount>,
}

#[derive(SimpleObject, Clone, Copy, Debug)]
pub struct BuildProgress {
    pub step: u32,
    pub steps: u32,
}

#[derive(SimpleObject, Clone, Debug)]
pub struct Failure {
    /// The build step, when a build step failed.
    pub step: Option<u32>,
    pub command: Option<String>,
    /// The build's output tail, or the engine's message.
    pub message: String,
}

/// One published port of a deployment, as users reach it.
#[derive(SimpleObject, Clone, Debug, PartialEq, Eq)]
pub struct DeploymentEndpoint {
    /// The declared service's name, else `port-<internal>`.
    pub name: String,
    /// `tcp` or `udp`.
    pub protocol: String,
    pub internal_port: u16,
    pub external_port: u16,
    /// `http://ADDRESS:EXTERNAL/` for a TCP port of a placed deployment whose node has
    /// reported its address; null otherwise.
    pub url: Option<String>,
    /// The deployment is running: its main process is up and, for a declared service,
    /// its readiness check passed.
    pub ready: bool,
    /// The URL carries the deployment's service token (shown to its owner and admins
    /// only; others see the URL without it).
    pub token_included: bool,
}

/// What a deployment's endpoints need of its declared service.
#[derive(Clone, Debug)]
pub(crate) struct EndpointService {
    name: String,
    port: u16,
    open_path: String,
    has_token: bool,
}

/// Something that happened to a deployment without ending it.
#[derive(SimpleObject, Clone, Debug)]
pub struct DeploymentWarning {
    pub seq: u64,
    pub time_ms: i64,
    /// `oom` (a process inside the container was OOM-killed) or
    /// `stale_container_removed`.
    pub kind: String,
    pub message: String,
}

pub struct DeploymentObj {
    pub(crate) d: Deployment,
    /// `env-name` of the version it runs.
    pub(crate) env_name: Option<String>,
    pub(crate) node_hostname: Option<String>,
    /// The address of the node it is placed on, while it holds resources there.
    pub(crate) node_address: Option<String>,
    /// When its node was marked lost, while it is booked on a lost node.
    pub(crate) node_lost_since_ms: Option<i64>,
    pub(crate) service: Option<EndpointService>,
}

impl DeploymentObj {
    pub(crate) fn new(state: &dcloud_projections::State, d: &Deployment) -> Self {
        let env_name = state.deployment_spec(d).map(|s| s.name.clone());
        let node_hostname = d
            .node
            .as_deref()
            .and_then(|n| state.node(n))
            .map(|n| n.fingerprint.hostname.clone());
        let booked_on = d
            .node
            .as_deref()
            .filter(|_| d.status.holds_resources())
            .and_then(|n| state.node(n));
        let node_address = booked_on.and_then(|n| n.address.clone());
        let node_lost_since_ms = booked_on.and_then(|n| n.lost_since_ms);
        let service = state.deployment_spec(d).and_then(|spec| {
            let s = super::assignment::declared_service(state, spec)?;
            Some(EndpointService {
                name: s.library.clone(),
                port: s.port,
                open_path: s.open_path.clone(),
                has_token: s.token_env.is_some(),
            })
        });
        DeploymentObj {
            d: d.clone(),
            env_name,
            node_hostname,
            node_address,
            node_lost_since_ms,
            service,
        }
    }
}

/// The endpoints of `d` when its node is reached at `address`; the port of its
/// declared `service` is named after it and opens at its path, with `token` (only
/// given for callers who may use it).
pub(crate) fn endpoints(
    d: &Deployment,
    address: Option<&str>,
    service: Option<&EndpointService>,
    token: Option<&str>,
) -> Vec<DeploymentEndpoint> {
    let running = d.status == state::DeploymentStatus::Running;
    d.ports
        .iter()
        .map(|p| {
            let tcp = p.protocol == dcloud_events::model::Protocol::Tcp;
            let service = service.filter(|s| tcp && s.port == p.internal);
            let path = service.map_or("/", |s| s.open_path.as_str());
            let token = token.filter(|_| service.is_some_and(|s| s.has_token));
            let query = token.map(|t| format!("?token={t}")).unwrap_or_default();
            DeploymentEndpoint {
                name: service.map_or_else(|| format!("port-{}", p.internal), |s| s.name.clone()),
                protocol: p.protocol.as_str().to_string(),
                internal_port: p.internal,
                external_port: p.external,
                url: address
                    .filter(|_| tcp)
                    .map(|a| format!("http://{}:{}{path}{query}", url_host(a), p.external)),
                ready: running,
                token_included: token.is_some(),
            }
        })
        .collect()
}

/// An IPv6 literal in brackets, anything else as it is.
fn url_host(address: &str) -> String {
    if address.contains(':') {
        format!("[{address}]")
    } else {
        address.to_string()
    }
}

#[Object(name = "Deployment")]
impl DeploymentObj {
    async fn id(&self) -> &str {
        &self.d.id
    }

    async fn environment_id(&self) -> &str {
        &self.d.env_id
    }

    async fn environment_version(&self) -> u32 {
        self.d.env_version
    }

    async fn environment_name(&self) -> Option<&str> {
        self.env_name.as_deref()
    }

    async fn owner(&self) -> &str {
        &self.d.owner
    }

    async fn policy(&self) -> PlacementPolicy {
        self.d.policy.into()
    }

    async fn status(&self) -> DeploymentStatus {
        self.d.status.into()
    }

    /// Not finished: waiting, placed, running or stopping.
    async fn live(&self) -> bool {
        self.d.status.is_live()
    }

    /// Every status it went through, oldest first.
    async fn history(&self) -> Vec<StatusEntry> {
        self.d.history.iter().map(Into::into).collect()
    }

    /// Sequence number of `DeploymentRequested` (its place in the pending queue).
    async fn requested_seq(&self) -> u64 {
        self.d.requested_seq
    }

    async fn requested_ms(&self) -> i64 {
        self.d.requested_ms
    }

    /// The node it is (or was last) assigned to.
    async fn node_id(&self) -> Option<&str> {
        self.d.node.as_deref()
    }

    /// The hostname of that node.
    async fn node_hostname(&self) -> Option<&str> {
        self.node_hostname.as_deref()
    }

    /// When the node it is booked on was marked lost (unix ms), while that node is
    /// lost: its status is the last one the agent reported, and its container may
    /// still be running there. `null` otherwise.
    async fn node_lost_since_ms(&self) -> Option<i64> {
        self.node_lost_since_ms
    }

    /// While its node is lost: when it will be placed elsewhere unless the node speaks
    /// again first (the server's lost-node grace after `nodeLostSinceMs`).
    async fn moves_at_ms(&self, ctx: &async_graphql::Context<'_>) -> Option<i64> {
        let since = self.node_lost_since_ms?;
        let backend = crate::schema::backend(ctx).ok()?;
        Some(since.saturating_add(backend.settings().lost_node_grace_ms))
    }

    /// The container's CPU and memory at every heartbeat the server received since
    /// it started (logged or not; the most recent few hundred), oldest first.
    async fn recent_usage(
        &self,
        ctx: &async_graphql::Context<'_>,
    ) -> async_graphql::Result<Vec<super::usage::UsageSample>> {
        use crate::error::Gql;
        let backend = crate::schema::backend(ctx).gql(ctx)?;
        Ok(backend.usage_samples(&self.d.id))
    }

    /// `node-agent_<node id>`, as in the original deployment documents.
    async fn node_agent_id(&self) -> Option<String> {
        self.d.node.as_ref().map(|n| format!("node-agent_{n}"))
    }

    /// What it books on its node (storage includes every storage mount).
    async fn need(&self) -> Resources {
        (&self.d.need).into()
    }

    /// GPU device uuids assigned.
    async fn gpus(&self) -> &[String] {
        &self.d.gpus
    }

    async fn ports(&self) -> Vec<PortPublish> {
        self.d.ports.iter().map(Into::into).collect()
    }

    /// Image tag (the recipe's content hash).
    async fn image(&self) -> Option<&str> {
        self.d.image.as_deref()
    }

    async fn image_ready(&self) -> bool {
        self.d.image_ready
    }

    /// The image was already on the node.
    async fn image_cached(&self) -> bool {
        self.d.image_cached
    }

    /// The placement decision (with the node, its score, the runners-up and the
    /// rejections per reason).
    async fn placement(&self) -> Option<Placement> {
        self.d.placement.as_ref().map(|p| Placement {
            node_id: self.d.node.clone(),
            seq: p.seq,
            score_milli: p.score_milli,
            candidates: p.candidates,
            runners_up: p.runners_up.iter().map(Into::into).collect(),
            rejected: p.rejected.iter().map(Into::into).collect(),
        })
    }

    /// Why it fits nowhere (while pending).
    async fn pending_reasons(&self) -> Vec<RejectCount> {
        self.d.pending_reasons.iter().map(Into::into).collect()
    }

    /// Set while it waits for its owner's quota (`waiting for quota: gpus 2 of 1`):
    /// it was deployed with `waitForQuota` and is placed once the quota has room.
    async fn quota_wait(&self) -> Option<&str> {
        self.d
            .quota_wait
            .as_deref()
            .filter(|_| self.d.waits_for_quota())
    }

    async fn build(&self) -> Option<BuildProgress> {
        self.d.build.map(|b| BuildProgress {
            step: b.step,
            steps: b.steps,
        })
    }

    async fn exit_code(&self) -> Option<i64> {
        self.d.exit_code
    }

    /// The last lines its main process wrote (stdout and stderr) when it ended.
    async fn last_output(&self) -> Option<&str> {
        self.d.last_output.as_deref()
    }

    async fn container_id(&self) -> Option<&str> {
        self.d.container_id.as_deref()
    }

    /// How full each storage target is, as its node last measured it (empty until
    /// the first measure, about a minute after it starts).
    async fn volumes(&self) -> Vec<VolumeUsage> {
        self.d.volumes.iter().map(Into::into).collect()
    }

    /// Each published port as users reach it (`http://NODE-ADDRESS:EXTERNAL/`); the
    /// port of a declared service opens at its path, and for the deployment's owner
    /// and admins carries its token (`?token=…`).
    async fn endpoints(&self, ctx: &async_graphql::Context<'_>) -> Vec<DeploymentEndpoint> {
        let token = match (crate::auth::actor(ctx), crate::schema::backend(ctx)) {
            (Ok(a), Ok(backend))
                if a.role == dcloud_events::model::Role::Admin
                    || (a.role == dcloud_events::model::Role::User && a.name == self.d.owner) =>
            {
                backend.service_token(&self.d.id)
            }
            _ => None,
        };
        endpoints(
            &self.d,
            self.node_address.as_deref(),
            self.service.as_ref(),
            token.as_deref(),
        )
    }

    /// What happened without ending it (OOM kills inside, stale containers removed),
    /// oldest first.
    async fn warnings(&self) -> Vec<DeploymentWarning> {
        self.d
            .warnings
            .iter()
            .map(|w| DeploymentWarning {
                seq: w.seq,
                time_ms: w.time_ms,
                kind: w.kind.clone(),
                message: w.message.clone(),
            })
            .collect()
    }

    async fn failure(&self) -> Option<Failure> {
        self.d.failure.as_ref().map(|f| Failure {
            step: f.step,
            command: f.command.clone(),
            message: f.message.clone(),
        })
    }
}
