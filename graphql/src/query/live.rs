//! Queries over the live state: who am I, nodes, environments, templates, catalogs,
//! services, datasets, deployments, tokens, export.

use async_graphql::{Context, Json, Object, Result, SimpleObject, ID};
use dcloud_projections::config;

use super::live;
use crate::auth::{can_see_deployment, require_not_agent, require_sees_all};
use crate::error::{ApiError, Gql};
use crate::lists::{cluster_totals, ClusterTotals, DeploymentOrder, NodeFilter, NodeOrder};
use crate::quota::{user_quota, Quota, QuotaUsage};
use crate::schema::backend;
use crate::types::common::{Page, Role};
use crate::types::config::{
    dataset_catalog, CatalogObj, DatasetCategory, EnvironmentObj, ServiceObj, TemplateObj,
};
use crate::types::deployment::DeploymentObj;
use crate::types::node::NodeObj;
use crate::views::DeploymentFilter;

/// The caller, as its token says.
#[derive(SimpleObject, Clone, Debug)]
pub struct Me {
    pub name: String,
    pub role: Role,
    /// The node of an agent token.
    pub node_id: Option<String>,
    /// As recorded in the events it causes (`user:alice`, `agent:0x…`).
    pub label: String,
    /// The caller's quota (`null`: unlimited).
    pub quota: Option<Quota>,
    /// What the caller's live deployments need, counted against the quota.
    pub usage: QuotaUsage,
}

/// An access token (never its secret).
#[derive(SimpleObject, Clone, Debug)]
pub struct Token {
    pub id: String,
    pub name: String,
    pub role: Role,
    pub node_id: Option<String>,
    pub revoked: bool,
    pub created_ms: i64,
    /// When it stops authenticating (null: never).
    pub expires_ms: Option<i64>,
}

/// A join token (never its secret).
#[derive(SimpleObject, Clone, Debug)]
pub struct JoinTokenObj {
    pub id: String,
    pub name: String,
    pub revoked: bool,
    pub created_ms: i64,
    pub expires_ms: Option<i64>,
    pub uses: u32,
    pub uses_left: u32,
    /// The nodes that joined with it.
    pub joined: Vec<String>,
}

#[derive(Default)]
pub struct LiveQuery;

#[Object]
impl LiveQuery {
    /// The caller.
    async fn me(&self, ctx: &Context<'_>) -> Result<Me> {
        live(ctx, |r| {
            let a = r.actor;
            let mine = user_quota(r.state, &a.name);
            Ok(Me {
                name: a.name.clone(),
                role: a.role.into(),
                node_id: a.node_id.clone(),
                label: a.label(),
                quota: mine.quota,
                usage: mine.usage,
            })
        })
        .gql(ctx)
    }

    /// Nodes in id order, or filtered and sorted by the server (an agent sees only
    /// its own). `offset` skips that many more after `after` (page-number tables).
    #[graphql(complexity = "first.map_or(100, |n| n.max(0) as usize) * child_complexity")]
    async fn nodes(
        &self,
        ctx: &Context<'_>,
        filter: Option<NodeFilter>,
        order_by: Option<NodeOrder>,
        after: Option<String>,
        offset: Option<i32>,
        first: Option<i32>,
    ) -> Result<Page<String, NodeObj>> {
        let filter = filter.unwrap_or_default();
        live(ctx, |r| r.nodes(&filter, order_by, after, offset, first)).gql(ctx)
    }

    async fn node(&self, ctx: &Context<'_>, id: ID) -> Result<NodeObj> {
        live(ctx, |r| r.node(&id)).gql(ctx)
    }

    /// Environments in id order: all for admins and auditors, a user's own otherwise.
    #[graphql(complexity = "first.map_or(100, |n| n.max(0) as usize) * child_complexity")]
    async fn environments(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = false)] include_deleted: bool,
        after: Option<String>,
        first: Option<i32>,
    ) -> Result<Page<String, EnvironmentObj>> {
        live(ctx, |r| r.environments(include_deleted, after, first)).gql(ctx)
    }

    async fn environment(&self, ctx: &Context<'_>, id: ID) -> Result<EnvironmentObj> {
        live(ctx, |r| r.environment(&id)).gql(ctx)
    }

    async fn templates(&self, ctx: &Context<'_>) -> Result<Vec<TemplateObj>> {
        live(ctx, |r| r.templates()).gql(ctx)
    }

    async fn template(&self, ctx: &Context<'_>, name: String) -> Result<TemplateObj> {
        live(ctx, |r| {
            require_not_agent(r.actor, "templates")?;
            let t = r
                .state
                .templates
                .get(&name)
                .ok_or_else(|| ApiError::not_found("template", &name))?;
            Ok(TemplateObj(t.clone()))
        })
        .gql(ctx)
    }

    /// Library catalogs, one per os (admins and auditors: they hold shell commands).
    async fn catalogs(&self, ctx: &Context<'_>) -> Result<Vec<CatalogObj>> {
        live(ctx, |r| {
            require_sees_all(r.actor, "the library catalog")?;
            Ok(r.state
                .catalogs
                .values()
                .map(|c| CatalogObj(c.clone()))
                .collect())
        })
        .gql(ctx)
    }

    async fn catalog(&self, ctx: &Context<'_>, os: String) -> Result<CatalogObj> {
        live(ctx, |r| {
            require_sees_all(r.actor, "the library catalog")?;
            let c = r
                .state
                .catalogs
                .get(&os)
                .ok_or_else(|| ApiError::not_found("catalog", &os))?;
            Ok(CatalogObj(c.clone()))
        })
        .gql(ctx)
    }

    /// The service registry.
    async fn services(&self, ctx: &Context<'_>) -> Result<Vec<ServiceObj>> {
        let now_ms = backend(ctx).gql(ctx)?.now_ms();
        live(ctx, |r| {
            require_not_agent(r.actor, "services")?;
            Ok(r.state
                .services
                .values()
                .map(|s| ServiceObj {
                    service: s.clone(),
                    now_ms,
                })
                .collect())
        })
        .gql(ctx)
    }

    /// The dataset catalog.
    async fn datasets(&self, ctx: &Context<'_>) -> Result<Vec<DatasetCategory>> {
        live(ctx, |r| {
            require_not_agent(r.actor, "the dataset catalog")?;
            Ok(dataset_catalog(r.state))
        })
        .gql(ctx)
    }

    /// Deployments in request order, or sorted by the server: all for admins and
    /// auditors, a user's own, an agent's node's. `offset` as for `nodes`.
    #[graphql(complexity = "first.map_or(100, |n| n.max(0) as usize) * child_complexity")]
    async fn deployments(
        &self,
        ctx: &Context<'_>,
        filter: Option<DeploymentFilter>,
        order_by: Option<DeploymentOrder>,
        after: Option<String>,
        offset: Option<i32>,
        first: Option<i32>,
    ) -> Result<Page<u64, DeploymentObj>> {
        let filter = filter.unwrap_or_default();
        live(ctx, |r| {
            r.deployments(&filter, order_by, after, offset, first)
        })
        .gql(ctx)
    }

    /// This cluster's id (every role): agents label what they create with it and
    /// touch nothing labelled with another's. Null only before the server first
    /// started on this log.
    async fn cluster_id(&self, ctx: &Context<'_>) -> Result<Option<String>> {
        live(ctx, |r| Ok(r.state.cluster_id.clone())).gql(ctx)
    }

    /// Node and deployment totals for the Cluster page, and the sequence number they
    /// were read at (admins, users: their own deployments, auditors).
    async fn cluster_totals(&self, ctx: &Context<'_>) -> Result<ClusterTotals> {
        live(ctx, |r| {
            require_not_agent(r.actor, "the cluster totals")?;
            Ok(cluster_totals(r.state, |d| can_see_deployment(r.actor, d)))
        })
        .gql(ctx)
    }

    async fn deployment(&self, ctx: &Context<'_>, id: ID) -> Result<DeploymentObj> {
        live(ctx, |r| r.deployment(&id)).gql(ctx)
    }

    /// Access tokens (admins and auditors).
    async fn tokens(&self, ctx: &Context<'_>) -> Result<Vec<Token>> {
        live(ctx, |r| {
            require_sees_all(r.actor, "the token list")?;
            Ok(r.state
                .tokens
                .values()
                .map(|t| Token {
                    id: t.id.clone(),
                    name: t.name.clone(),
                    role: t.role.into(),
                    node_id: t.node_id.clone(),
                    revoked: t.revoked,
                    created_ms: t.created_ms,
                    expires_ms: t.expires_ms,
                })
                .collect())
        })
        .gql(ctx)
    }

    /// Join tokens (admins and auditors).
    async fn join_tokens(&self, ctx: &Context<'_>) -> Result<Vec<JoinTokenObj>> {
        live(ctx, |r| {
            require_sees_all(r.actor, "the join token list")?;
            Ok(r.state
                .join_tokens
                .values()
                .map(|t| JoinTokenObj {
                    id: t.id.clone(),
                    name: t.name.clone(),
                    revoked: t.revoked,
                    created_ms: t.created_ms,
                    expires_ms: t.expires_ms,
                    uses: t.uses,
                    uses_left: t.uses_left,
                    joined: t.joined.clone(),
                })
                .collect())
        })
        .gql(ctx)
    }

    /// An environment in its original JSON format (the current version, or `version`).
    async fn export_environment(
        &self,
        ctx: &Context<'_>,
        id: ID,
        version: Option<u32>,
    ) -> Result<Json<serde_json::Value>> {
        live(ctx, |r| {
            let env = r.environment(&id)?.0;
            let v = version.unwrap_or_else(|| env.version());
            let spec = env.spec_at(v).ok_or_else(|| {
                ApiError::not_found("environment version", &format!("{}@{v}", id.as_str()))
            })?;
            Ok(Json(config::export_environment(spec)))
        })
        .gql(ctx)
    }
}
