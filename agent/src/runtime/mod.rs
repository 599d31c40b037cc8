//! The agent's runtime: talks to the control plane over GraphQL (HTTP for mutations
//! and queries, graphql-transport-ws for the `assignments` subscription) and drives a
//! `Driver` for one node, or for many simulated nodes sharing one client and one
//! websocket connection.
//!
//! Flow per node (see `node`): register → heartbeats (node and container usage,
//! `engineOk`) → `nodeAssignments` snapshot → reconcile → `assignments(after: seq)`.
//! A dropped connection or a server restart ends the session; the next one starts
//! from a fresh snapshot and resumes the subscription after the last seq seen, so no
//! item is lost or applied twice. Reports are delivered in order, retried while the
//! server is away (the server treats a repeated report as a no-op).

pub mod client;
pub mod node;
pub mod protocol;
pub mod seq;
pub mod servers;
pub mod sessions;
pub mod tls;
pub mod wire;
pub mod ws;

use std::sync::Arc;

use tokio::task::JoinSet;
use tracing::info;

pub use client::{Endpoints, GqlClient};
pub use node::{run_node, NodeSpec, RuntimeConfig, UsageSource};
pub use seq::SeqTracker;
pub use servers::Servers;
pub use tls::ClientTls;
pub use ws::{WsConnection, WsPool};

use crate::error::AgentError;

/// What the nodes of one token share: the HTTP client, the websocket, the timings.
pub struct Shared {
    pub client: GqlClient,
    pub ws: WsPool,
    /// A second connection for the `agentRequests` subscriptions (see `sessions`):
    /// the server polls a connection's subscriptions together, so a fleet's idle
    /// session subscriptions must not ride on the assignments' connection.
    pub sessions_ws: WsPool,
    pub config: RuntimeConfig,
    pub tls: ClientTls,
}

impl Shared {
    /// Clients for the server at `server` (`http://host:port`, or several such URLs,
    /// comma separated: a leader and its standbys) acting with `token`.
    pub fn new(server: &str, token: &str, config: RuntimeConfig) -> Result<Shared, AgentError> {
        Shared::with_tls(server, token, config, ClientTls::default())
    }

    /// [`Shared::new`] trusting `tls` for https:// and wss://.
    pub fn with_tls(
        server: &str,
        token: &str,
        config: RuntimeConfig,
        tls: ClientTls,
    ) -> Result<Shared, AgentError> {
        let servers = Arc::new(Servers::parse(server)?);
        Ok(Shared {
            client: GqlClient::over(servers.clone(), token.to_string(), &tls)?,
            sessions_ws: WsPool::over(servers.clone(), token.to_string()).with_tls(tls.clone()),
            ws: WsPool::over(servers, token.to_string()).with_tls(tls.clone()),
            config,
            tls,
        })
    }

    /// The same server, connection pool and timings, acting with `token` over its
    /// own websocket (a joined node's own token).
    pub fn with_token(&self, token: &str) -> Shared {
        Shared {
            client: self.client.with_token(token.to_string()),
            ws: WsPool::over(self.ws.servers().clone(), token.to_string())
                .with_tls(self.tls.clone()),
            sessions_ws: WsPool::over(self.ws.servers().clone(), token.to_string())
                .with_tls(self.tls.clone()),
            config: self.config.clone(),
            tls: self.tls.clone(),
        }
    }
}

/// Runs every node until one of them fails fatally (its token is refused); the
/// others are stopped then. Returns only on such an error.
pub async fn run_nodes(shared: Arc<Shared>, nodes: Vec<NodeSpec>) -> Result<(), AgentError> {
    let pairs = nodes.into_iter().map(|n| (shared.clone(), n)).collect();
    run_node_pairs(pairs).await
}

/// [`run_nodes`] where each node may act with its own clients (its own token).
pub async fn run_node_pairs(nodes: Vec<(Arc<Shared>, NodeSpec)>) -> Result<(), AgentError> {
    let Some(shared) = nodes.first().map(|(s, _)| s.clone()) else {
        return Ok(());
    };
    if let Some(dir) = &shared.config.data_dir {
        std::fs::create_dir_all(dir).map_err(|e| AgentError::System {
            what: "the agent data directory",
            message: format!("{}: {e}", dir.display()),
        })?;
    }
    info!(nodes = nodes.len(), servers = %shared.client.servers().describe(), "agent starting");
    let mut set = JoinSet::new();
    for (shared, spec) in nodes {
        set.spawn(run_node(shared, spec));
    }
    while let Some(done) = set.join_next().await {
        match done {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e),
            Err(e) if e.is_panic() => {
                return Err(AgentError::Protocol {
                    op: "node loop",
                    message: format!("a node's task panicked: {e}"),
                })
            }
            Err(_) => {}
        }
    }
    Ok(())
}
