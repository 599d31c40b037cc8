//! The agent protocol's mutations: register the node, send heartbeats, report
//! container state. `decide` refuses an agent acting for another node.

use async_graphql::{Context, Object, Result, SimpleObject, ID};
use dcloud_projections::{Command, DomainError};

use super::inputs::{
    ContainerUsageInput, FingerprintInput, ReportInput, UsageInput, VolumeUsageInput,
};
use super::submit;
use crate::error::{ApiError, Gql};
use crate::query::live;
use crate::types::deployment::DeploymentObj;
use crate::types::node::NodeObj;

#[derive(SimpleObject, Clone, Debug)]
pub struct HeartbeatAck {
    /// Whether this heartbeat was kept in the log (they are, at an interval).
    pub logged: bool,
    /// Its sequence number when logged.
    pub seq: Option<u64>,
}

#[derive(Default)]
pub struct AgentMutation;

#[Object]
impl AgentMutation {
    /// Registers the node (again, after a restart: same id, new fingerprint).
    async fn register_node(
        &self,
        ctx: &Context<'_>,
        node_id: ID,
        fingerprint: FingerprintInput,
    ) -> Result<NodeObj> {
        let run = async {
            let cmd = Command::RegisterNode {
                node_id: node_id.to_string(),
                fingerprint: fingerprint.into(),
            };
            submit(ctx, cmd).await?;
            live(ctx, |r| r.node(&node_id))
        };
        run.await.gql(ctx)
    }

    /// The address users reach the node at (a host name or IP, no scheme or port):
    /// published ports are shown as `http://ADDRESS:PORT/`. Logged when it changes.
    async fn report_node_address(
        &self,
        ctx: &Context<'_>,
        node_id: ID,
        address: String,
    ) -> Result<NodeObj> {
        let run = async {
            let cmd = Command::ReportNodeAddress {
                node_id: node_id.to_string(),
                address,
            };
            submit(ctx, cmd).await?;
            live(ctx, |r| r.node(&node_id))
        };
        run.await.gql(ctx)
    }

    /// The node's agent removed a container of a deployment that is no longer
    /// assigned to the node (left behind while the node was away). Returns whether
    /// it was recorded.
    async fn report_stale_container(
        &self,
        ctx: &Context<'_>,
        node_id: ID,
        deployment_id: ID,
        container_id: String,
    ) -> Result<bool> {
        let run = async {
            let cmd = Command::ReportStaleContainer {
                node_id: node_id.to_string(),
                deployment_id: deployment_id.to_string(),
                container_id,
            };
            let events = submit(ctx, cmd).await?;
            Ok(!events.is_empty())
        };
        run.await.gql(ctx)
    }

    /// How full a deployment's storage targets are on this node. Recorded only when
    /// a target moved by enough to matter (5% of its size, or 64 MiB without one) or
    /// crossed its size; answers whether it was recorded.
    async fn report_volume_usage(
        &self,
        ctx: &Context<'_>,
        node_id: ID,
        deployment_id: ID,
        volumes: Vec<VolumeUsageInput>,
    ) -> Result<bool> {
        let run = async {
            let cmd = Command::ReportVolumeUsage {
                node_id: node_id.to_string(),
                deployment_id: deployment_id.to_string(),
                volumes: volumes.into_iter().map(Into::into).collect(),
            };
            let events = submit(ctx, cmd).await?;
            Ok(!events.is_empty())
        };
        run.await.gql(ctx)
    }

    /// Node and per-container usage; `engineOk` false when the container engine is
    /// unreachable.
    async fn heartbeat(
        &self,
        ctx: &Context<'_>,
        node_id: ID,
        usage: UsageInput,
        #[graphql(default)] containers: Vec<ContainerUsageInput>,
        #[graphql(default = true)] engine_ok: bool,
    ) -> Result<HeartbeatAck> {
        let cmd = Command::Heartbeat {
            node_id: node_id.to_string(),
            usage: usage.into(),
            containers: containers
                .into_iter()
                .map(|c| dcloud_events::model::ContainerUsage {
                    deployment_id: c.deployment_id,
                    usage: c.usage.into(),
                })
                .collect(),
            engine_ok,
        };
        let run = async {
            let events = submit(ctx, cmd).await?;
            let seq = events.last().map(|e| e.seq);
            Ok(HeartbeatAck {
                logged: seq.is_some(),
                seq,
            })
        };
        run.await.gql(ctx)
    }

    /// One container state change of a deployment placed on the caller's node. With
    /// `nodeId` (what agents send) the report is the agent of that node's: refused
    /// unless the deployment is assigned there, also when an admin token runs the
    /// agent, so a container a node stops after its deployment moved away cannot
    /// change the deployment on its new node.
    async fn report_status(
        &self,
        ctx: &Context<'_>,
        deployment_id: ID,
        report: ReportInput,
        node_id: Option<ID>,
    ) -> Result<DeploymentObj> {
        let run = async {
            let report = report
                .into_report()
                .map_err(|e| ApiError::Domain(DomainError::Validation(e)))?;
            let cmd = Command::Report {
                deployment_id: deployment_id.to_string(),
                report,
            };
            match node_id {
                Some(node) => {
                    let caller = crate::auth::actor(ctx)?;
                    crate::query::require_node_actor(caller, &node)?;
                    let as_agent = dcloud_projections::Actor {
                        name: caller.name.clone(),
                        role: dcloud_events::model::Role::Agent,
                        node_id: Some(node.to_string()),
                    };
                    super::submit_as(ctx, cmd, as_agent).await?
                }
                None => submit(ctx, cmd).await?,
            };
            live(ctx, |r| r.deployment(&deployment_id))
        };
        run.await.gql(ctx)
    }
}
