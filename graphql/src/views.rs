//! The read views shared by the live queries and `at(seq:)`: each reads one `State`
//! for one actor, applies the read rules and copies out the GraphQL objects (so no
//! lock is held while the response is written).

use std::collections::BTreeSet;

use async_graphql::{InputObject, SimpleObject};
use dcloud_events::model::Role;
use dcloud_projections::state::{Deployment, Node};
use dcloud_projections::{Actor, State};

use crate::auth::{can_see_deployment, can_see_environment, can_see_node, require_not_agent};
use crate::error::ApiError;
use crate::lists::{sort_deployments, sort_nodes, window, DeploymentOrder, NodeFilter, NodeOrder};
use crate::types::common::{paginate, DeploymentStatus, Page};
use crate::types::config::{EnvironmentObj, TemplateObj};
use crate::types::deployment::DeploymentObj;
use crate::types::node::NodeObj;

/// Default and largest page of nodes, environments and deployments.
pub(crate) const PAGE: (usize, usize) = (100, 1000);

#[derive(InputObject, Default, Clone, Debug)]
pub struct DeploymentFilter {
    pub status: Option<DeploymentStatus>,
    pub node_id: Option<String>,
    pub environment_id: Option<String>,
    /// Only deployments that are (or are not) finished.
    pub live: Option<bool>,
    /// Only this owner's (admins and auditors; a user only ever sees their own).
    pub owner: Option<String>,
    /// Case-insensitive substring of the id, the environment's `env-name`, the owner
    /// or the node's hostname.
    pub search: Option<String>,
}

/// How many of each thing the state holds (deleted environments included).
#[derive(SimpleObject, Clone, Debug, PartialEq, Eq)]
pub struct Counts {
    pub nodes: usize,
    pub environments: usize,
    pub templates: usize,
    pub catalogs: usize,
    pub services: usize,
    pub deployments: usize,
    /// Deployments waiting to be placed.
    pub pending: usize,
    pub tokens: usize,
}

/// One state read by one actor.
pub(crate) struct Reader<'a> {
    pub(crate) state: &'a State,
    pub(crate) actor: &'a Actor,
    /// Liveness known beyond the log (only for the live state).
    pub(crate) last_seen: &'a dyn Fn(&str) -> Option<i64>,
}

impl Reader<'_> {
    fn node_obj(&self, n: &Node) -> NodeObj {
        let visible = match self.actor.role {
            Role::User => {
                let mine = |id: &String| {
                    self.state
                        .deployment(id)
                        .is_some_and(|d| d.owner == self.actor.name)
                };
                let mentioned = n
                    .deployments
                    .iter()
                    .chain(n.containers.iter().map(|c| &c.deployment_id));
                Some(
                    mentioned
                        .filter(|id| mine(id))
                        .cloned()
                        .collect::<BTreeSet<_>>(),
                )
            }
            _ => None,
        };
        NodeObj {
            node: n.clone(),
            visible,
            last_seen_ms: (self.last_seen)(&n.id),
        }
    }

    /// Nodes in id order, or filtered and sorted (`offset` skips that many more
    /// after `after`, for page-number tables).
    pub(crate) fn nodes(
        &self,
        filter: &NodeFilter,
        order: Option<NodeOrder>,
        after: Option<String>,
        offset: Option<i32>,
        first: Option<i32>,
    ) -> Result<Page<String, NodeObj>, ApiError> {
        let mut nodes: Vec<&Node> = self
            .state
            .nodes_by_id()
            .filter(|n| can_see_node(self.actor, &n.id) && filter.matches(n))
            .collect();
        if let Some(order) = order {
            sort_nodes(&mut nodes, order, self.last_seen);
        }
        let items = nodes.into_iter().map(|n| (n.id.clone(), n)).collect();
        let w = window(items, order.is_none(), after, offset, first, PAGE)?;
        Ok(w.into_page(|n| self.node_obj(n)))
    }

    pub(crate) fn node(&self, id: &str) -> Result<NodeObj, ApiError> {
        if !can_see_node(self.actor, id) {
            return Err(ApiError::forbidden(format!(
                "an agent sees only its own node, not {id}"
            )));
        }
        let n = self
            .state
            .node(id)
            .ok_or_else(|| ApiError::not_found("node", id))?;
        Ok(self.node_obj(n))
    }

    pub(crate) fn environments(
        &self,
        include_deleted: bool,
        after: Option<String>,
        first: Option<i32>,
    ) -> Result<Page<String, EnvironmentObj>, ApiError> {
        require_not_agent(self.actor, "environments")?;
        let items = self
            .state
            .environments
            .values()
            .filter(|e| (include_deleted || !e.deleted) && can_see_environment(self.actor, e))
            .map(|e| (e.id.clone(), EnvironmentObj(e.clone())))
            .collect();
        paginate(items, after, first, PAGE)
    }

    pub(crate) fn environment(&self, id: &str) -> Result<EnvironmentObj, ApiError> {
        require_not_agent(self.actor, "environments")?;
        let e = self
            .state
            .environments
            .get(id)
            .ok_or_else(|| ApiError::not_found("environment", id))?;
        if !can_see_environment(self.actor, e) {
            return Err(ApiError::forbidden(format!(
                "environment {id} belongs to another user"
            )));
        }
        Ok(EnvironmentObj(e.clone()))
    }

    pub(crate) fn templates(&self) -> Result<Vec<TemplateObj>, ApiError> {
        require_not_agent(self.actor, "templates")?;
        Ok(self
            .state
            .templates
            .values()
            .map(|t| TemplateObj(t.clone()))
            .collect())
    }

    /// Deployments in request order, or filtered and sorted (see [`Reader::nodes`]).
    pub(crate) fn deployments(
        &self,
        filter: &DeploymentFilter,
        order: Option<DeploymentOrder>,
        after: Option<String>,
        offset: Option<i32>,
        first: Option<i32>,
    ) -> Result<Page<u64, DeploymentObj>, ApiError> {
        let f = filter;
        let status = f.status.map(dcloud_projections::DeploymentStatus::from);
        let search = f.search.as_ref().map(|q| q.to_lowercase());
        let matches_search = |d: &Deployment| {
            let Some(q) = &search else { return true };
            let host = d.node.as_deref().and_then(|n| self.state.node(n));
            let env = self.state.deployment_spec(d).map(|s| s.name.as_str());
            d.id.to_lowercase().contains(q)
                || d.owner.to_lowercase().contains(q)
                || env.is_some_and(|e| e.to_lowercase().contains(q))
                || host.is_some_and(|n| n.fingerprint.hostname.to_lowercase().contains(q))
        };
        let mut deps: Vec<&Deployment> = self
            .state
            .deployments
            .values()
            .filter(|d| can_see_deployment(self.actor, d))
            .filter(|d| status.is_none_or(|s| d.status == s))
            .filter(|d| {
                f.node_id
                    .as_ref()
                    .is_none_or(|n| d.node.as_ref() == Some(n))
            })
            .filter(|d| f.environment_id.as_ref().is_none_or(|e| &d.env_id == e))
            .filter(|d| f.live.is_none_or(|l| d.status.is_live() == l))
            .filter(|d| f.owner.as_ref().is_none_or(|o| &d.owner == o))
            .filter(|d| matches_search(d))
            .collect();
        deps.sort_by_key(|d| d.requested_seq);
        if let Some(order) = order {
            sort_deployments(self.state, &mut deps, order);
        }
        let items = deps.into_iter().map(|d| (d.requested_seq, d)).collect();
        let w = window(items, order.is_none(), after, offset, first, PAGE)?;
        Ok(w.into_page(|d| DeploymentObj::new(self.state, d)))
    }

    pub(crate) fn deployment(&self, id: &str) -> Result<DeploymentObj, ApiError> {
        let d = self
            .state
            .deployment(id)
            .ok_or_else(|| ApiError::not_found("deployment", id))?;
        if !can_see_deployment(self.actor, d) {
            return Err(ApiError::forbidden(format!(
                "deployment {id} is not yours to see"
            )));
        }
        Ok(DeploymentObj::new(self.state, d))
    }

    pub(crate) fn counts(&self) -> Counts {
        let s = self.state;
        Counts {
            nodes: s.nodes.len(),
            environments: s.environments.len(),
            templates: s.templates.len(),
            catalogs: s.catalogs.len(),
            services: s.services.len(),
            deployments: s.deployments.len(),
            pending: s.pending.len(),
            tokens: s.tokens.len(),
        }
    }
}
