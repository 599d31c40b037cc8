//! The agent's query: what its node holds now (the starting point of reconcile,
//! and the seq to subscribe to `assignments` after).

use async_graphql::{Context, Object, Result, SimpleObject, ID};
use dcloud_events::model::Role;
use dcloud_projections::Actor;

use super::live;
use crate::error::{ApiError, Gql};
use crate::schema::backend;
use crate::types::assignment::{current_assignments, Assignment};

/// A node's assignments as of `seq`.
#[derive(SimpleObject, Clone, Debug)]
pub struct NodeAssignments {
    /// Subscribe to `assignments(after: seq)` to follow on without gap.
    pub seq: u64,
    pub items: Vec<Assignment>,
}

/// Admins, and the agent of `node_id`.
pub(crate) fn require_node_actor(a: &Actor, node_id: &str) -> Result<(), ApiError> {
    match a.role {
        Role::Admin => Ok(()),
        Role::Agent if a.node_id.as_deref() == Some(node_id) => Ok(()),
        Role::Agent => Err(ApiError::forbidden(format!(
            "an agent may act only for its own node, not {node_id}"
        ))),
        _ => Err(ApiError::forbidden(format!(
            "the assignments of node {node_id} are for its agent"
        ))),
    }
}

#[derive(Default)]
pub struct AgentQuery;

#[Object]
impl AgentQuery {
    /// The deployments placed on node `nodeId` now (its agent, or an admin).
    async fn node_assignments(&self, ctx: &Context<'_>, node_id: ID) -> Result<NodeAssignments> {
        let run = || {
            let backend = backend(ctx)?;
            let (settings, now_ms) = (backend.settings(), backend.now_ms());
            live(ctx, |r| {
                require_node_actor(r.actor, &node_id)?;
                if r.state.node(&node_id).is_none() {
                    return Err(ApiError::not_found("node", &node_id));
                }
                let mut items = current_assignments(r.state, &node_id, &settings, now_ms);
                for item in &mut items {
                    crate::types::assignment::add_service_token(item, &**backend);
                }
                Ok(NodeAssignments {
                    seq: r.state.last_seq(),
                    items,
                })
            })
        };
        run().gql(ctx)
    }
}
