//! Logs and exec relay, schema side: the [`SessionRelay`] the server implements (it
//! pairs a request with the agent's session socket), the `deploymentLogs` subscription
//! (owner, admin, auditor; opening is recorded as `DeploymentLogsOpened`) and the
//! agents' `agentRequests` subscription. Exec itself is a plain websocket (`/exec`) in
//! the server: GraphQL carries no bytes.

use std::sync::Arc;

use async_graphql::{Context, Enum, Result, SimpleObject, Subscription, ID};
use dcloud_events::model::Role;
use dcloud_projections::Command;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::{Stream, StreamExt};

use crate::auth::actor;
use crate::error::{gql, ApiError, Gql};
use crate::schema::{backend, correlation};

/// Where a log line came from.
#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
pub enum LogStream {
    Stdout,
    Stderr,
    /// Output of the image build.
    Build,
}

/// One line of a deployment's logs.
#[derive(SimpleObject, Clone, Debug, PartialEq, Eq)]
pub struct LogLine {
    pub stream: LogStream,
    pub line: String,
    /// When the engine received the line (Unix ms), when it says.
    pub time_ms: Option<i64>,
}

/// What kind of session the server asks an agent to open.
#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
pub enum SessionKind {
    Logs,
    Exec,
}

/// A request to an agent: open the websocket `/agent/session/{sessionId}` and carry
/// the logs or the exec session of `deploymentId` there.
#[derive(SimpleObject, Clone, Debug, PartialEq, Eq)]
pub struct AgentRequest {
    pub session_id: String,
    pub deployment_id: String,
    pub kind: SessionKind,
    /// Logs: only the last lines of the backlog.
    pub tail: Option<u32>,
    /// Logs: only lines from this time on (Unix ms).
    pub since_ms: Option<i64>,
    /// Logs: keep following.
    pub follow: bool,
    /// Exec: the command.
    pub cmd: Vec<String>,
    /// Exec: allocate a terminal.
    pub tty: bool,
    pub cols: Option<u16>,
    pub rows: Option<u16>,
}

/// The lines of one logs session.
pub type LogLines = BoxStream<'static, Result<LogLine, ApiError>>;

/// What the schema needs of the server to relay sessions.
pub trait SessionRelay: Send + Sync + 'static {
    /// The requests for the agent of `node_id`, while it listens.
    fn agent_requests(&self, node_id: &str) -> BoxStream<'static, AgentRequest>;

    /// Asks the agent of `node_id` for the logs of `req.deployment_id` (a `LOGS`
    /// request) and returns its lines; they end when the agent ends the session or the
    /// deployment stops. `Unavailable` when the agent does not answer.
    fn open_logs(
        &self,
        node_id: &str,
        req: AgentRequest,
    ) -> BoxFuture<'static, Result<LogLines, ApiError>>;
}

/// The subscriptions of this module (merged into the schema's root).
#[derive(Default)]
pub struct SessionSubscription;

#[Subscription]
impl SessionSubscription {
    /// The logs of deployment `id`: the backlog (the last `tail` lines, from `sinceMs`),
    /// then new lines while `follow`; a failed build's output comes first, as `BUILD`
    /// lines. Owner, admin and auditor only; each opening is recorded in the log.
    async fn deployment_logs(
        &self,
        ctx: &Context<'_>,
        id: ID,
        tail: Option<u32>,
        since_ms: Option<i64>,
        #[graphql(default = true)] follow: bool,
    ) -> Result<impl Stream<Item = Result<LogLine>>> {
        let actor = actor(ctx).gql(ctx)?.clone();
        let backend = backend(ctx).gql(ctx)?.clone();
        let (node, build) = {
            let state = backend.state();
            let d = state
                .deployment(&id)
                .ok_or_else(|| ApiError::not_found("deployment", &id))
                .gql(ctx)?;
            let allowed = match actor.role {
                Role::Admin | Role::Auditor => true,
                Role::User => actor.name == d.owner,
                Role::Agent => false,
            };
            if !allowed {
                let why = format!("the logs of deployment {} are not yours", id.as_str());
                return Err(gql(ctx, ApiError::forbidden(why)));
            }
            let build: Vec<LogLine> = d
                .failure
                .as_ref()
                .filter(|f| f.step.is_some())
                .map(|f| {
                    f.message
                        .lines()
                        .map(|l| LogLine {
                            stream: LogStream::Build,
                            line: l.to_string(),
                            time_ms: None,
                        })
                        .collect()
                })
                .unwrap_or_default();
            let node = d.node.clone().filter(|_| d.status.holds_resources());
            (node, build)
        };
        let corr = correlation(ctx, backend.as_ref());
        let cmd = Command::OpenLogs {
            deployment_id: id.to_string(),
        };
        backend.submit(cmd, actor, corr).await.gql(ctx)?;
        let build = futures::stream::iter(build.into_iter().map(Ok));
        let Some(node) = node else {
            return Ok(build.boxed());
        };
        let relay = backend
            .sessions()
            .ok_or_else(|| ApiError::Unavailable("this server relays no sessions".into()))
            .gql(ctx)?;
        let req = AgentRequest {
            session_id: backend.new_id(),
            deployment_id: id.to_string(),
            kind: SessionKind::Logs,
            tail,
            since_ms,
            follow,
            cmd: Vec::new(),
            tty: false,
            cols: None,
            rows: None,
        };
        let lines = relay.open_logs(&node, req).await.gql(ctx)?;
        let request_id = ctx
            .data_opt::<crate::auth::RequestId>()
            .map_or_else(|| "-".to_string(), |r| r.0.clone());
        let lines =
            lines.map(move |l| l.map_err(|e| crate::error::to_graphql_error(&e, &request_id)));
        Ok(build.chain(lines).boxed())
    }

    /// Session requests for the agent of node `nodeId` (its agent token, or an admin
    /// token running agents).
    async fn agent_requests(
        &self,
        ctx: &Context<'_>,
        node_id: ID,
    ) -> Result<impl Stream<Item = AgentRequest>> {
        // The node's agent, or an admin token acting as the agent of many nodes.
        let actor = actor(ctx).gql(ctx)?;
        crate::query::require_node_actor(actor, &node_id).gql(ctx)?;
        let relay: Arc<dyn SessionRelay> = backend(ctx)
            .gql(ctx)?
            .sessions()
            .ok_or_else(|| ApiError::Unavailable("this server relays no sessions".into()))
            .gql(ctx)?;
        Ok(relay.agent_requests(&node_id))
    }
}
