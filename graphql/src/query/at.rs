//! `at(seq:)`: the state as it stood after one event, replayed from the log into a
//! fresh `State`, with the same views as the live queries.

use std::sync::Arc;

use async_graphql::{Context, Object, Result, ID};
use dcloud_events::EventLog;
use dcloud_projections::{Actor, State};

use crate::error::{ApiError, Gql};
use crate::types::common::Page;
use crate::types::config::{
    dataset_catalog, CatalogObj, DatasetCategory, EnvironmentObj, TemplateObj,
};
use crate::types::deployment::DeploymentObj;
use crate::types::node::NodeObj;
use crate::views::{Counts, DeploymentFilter, Reader};

/// The state after event `seq`: the newest valid snapshot at or before it, then the
/// log up to it, through the one recovery path the server's start uses
/// (`dcloud_events::recover`). Returns the state and the snapshot's seq (if used).
pub(crate) fn replay_to(log: &dyn EventLog, seq: u64) -> Result<(State, Option<u64>), ApiError> {
    let last = log.last_seq();
    if seq > last {
        return Err(ApiError::BadInput(format!(
            "seq {seq} is past the end of the log (last is {last})"
        )));
    }
    let r = dcloud_events::recover::recover::<State>(log, Some(seq), true)
        .map_err(|e| ApiError::Internal(format!("reading the log: {e}")))?;
    Ok((r.state, r.snapshot_seq))
}

/// The views of the state as it stood at one point of the log.
pub struct StateAt {
    pub(crate) state: Arc<State>,
    pub(crate) actor: Actor,
    pub(crate) from_snapshot: Option<u64>,
}

impl StateAt {
    fn read<T>(&self, f: impl FnOnce(&Reader<'_>) -> T) -> T {
        let no_liveness = |_: &str| None;
        f(&Reader {
            state: &self.state,
            actor: &self.actor,
            last_seen: &no_liveness,
        })
    }
}

#[Object]
impl StateAt {
    /// The last event folded in.
    async fn seq(&self) -> u64 {
        self.state.last_seq()
    }

    /// Hex blake3 digest of the state (compare with `stateDigest` of a replay).
    async fn digest(&self) -> String {
        hex::encode(self.state.digest())
    }

    /// The snapshot the replay started from, if any.
    async fn from_snapshot(&self) -> Option<u64> {
        self.from_snapshot
    }

    async fn counts(&self) -> Counts {
        self.read(|r| r.counts())
    }

    #[graphql(complexity = "first.map_or(100, |n| n.max(0) as usize) * child_complexity")]
    async fn nodes(
        &self,
        ctx: &Context<'_>,
        after: Option<String>,
        first: Option<i32>,
    ) -> Result<Page<String, NodeObj>> {
        self.read(|r| r.nodes(&Default::default(), None, after, None, first))
            .gql(ctx)
    }

    async fn node(&self, ctx: &Context<'_>, id: ID) -> Result<NodeObj> {
        self.read(|r| r.node(&id)).gql(ctx)
    }

    #[graphql(complexity = "first.map_or(100, |n| n.max(0) as usize) * child_complexity")]
    async fn environments(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = false)] include_deleted: bool,
        after: Option<String>,
        first: Option<i32>,
    ) -> Result<Page<String, EnvironmentObj>> {
        self.read(|r| r.environments(include_deleted, after, first))
            .gql(ctx)
    }

    async fn environment(&self, ctx: &Context<'_>, id: ID) -> Result<EnvironmentObj> {
        self.read(|r| r.environment(&id)).gql(ctx)
    }

    async fn templates(&self, ctx: &Context<'_>) -> Result<Vec<TemplateObj>> {
        self.read(|r| r.templates()).gql(ctx)
    }

    async fn catalogs(&self) -> Vec<CatalogObj> {
        self.state
            .catalogs
            .values()
            .map(|c| CatalogObj(c.clone()))
            .collect()
    }

    async fn datasets(&self) -> Vec<DatasetCategory> {
        dataset_catalog(&self.state)
    }

    #[graphql(complexity = "first.map_or(100, |n| n.max(0) as usize) * child_complexity")]
    async fn deployments(
        &self,
        ctx: &Context<'_>,
        filter: Option<DeploymentFilter>,
        after: Option<String>,
        first: Option<i32>,
    ) -> Result<Page<u64, DeploymentObj>> {
        let filter = filter.unwrap_or_default();
        self.read(|r| r.deployments(&filter, None, after, None, first))
            .gql(ctx)
    }

    async fn deployment(&self, ctx: &Context<'_>, id: ID) -> Result<DeploymentObj> {
        self.read(|r| r.deployment(&id)).gql(ctx)
    }
}
