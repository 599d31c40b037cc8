//! Building the schema: the root types, the limits, the introspection gate, the data
//! every resolver reads, and the SDL.

use std::sync::Arc;

use async_graphql::{Context, MergedObject, MergedSubscription, Schema};

use crate::auth::{IntrospectionGate, RequestId};
use crate::backend::Backend;
use crate::catalogue::CatalogueQuery;
use crate::error::ApiError;
use crate::limits::FieldLimit;
use crate::mutation::{AgentMutation, ControlMutation, DocumentMutation};
use crate::query::{AgentQuery, CheckpointQuery, HistoryQuery, LiveQuery};
use crate::quota::{QuotaMutation, QuotaQuery};
use crate::router::Router;
use crate::session::SessionSubscription;
use crate::subscription::Subscription;

/// How the schema runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SchemaOptions {
    /// Introspection for every caller (outside dev mode: admins only).
    pub dev_mode: bool,
    /// Deepest selection allowed (the standard introspection query needs about 13).
    pub depth_limit: usize,
    /// Highest query complexity allowed: one per field, list connections multiplied
    /// by the page size asked for (`first`).
    pub complexity_limit: usize,
    /// Most fields one document may select, aliases and fragment spreads included
    /// (checked after parsing, before validation and any resolver).
    pub field_limit: usize,
}

impl Default for SchemaOptions {
    fn default() -> Self {
        SchemaOptions {
            dev_mode: false,
            depth_limit: 16,
            complexity_limit: 20_000,
            field_limit: 2_000,
        }
    }
}

#[derive(MergedObject, Default)]
pub struct Query(
    LiveQuery,
    HistoryQuery,
    AgentQuery,
    QuotaQuery,
    CatalogueQuery,
    CheckpointQuery,
);

#[derive(MergedObject, Default)]
pub struct Mutation(
    DocumentMutation,
    ControlMutation,
    AgentMutation,
    QuotaMutation,
);

#[derive(MergedSubscription, Default)]
pub struct SubscriptionRoot(Subscription, SessionSubscription);

/// DCloud's schema type.
pub type DcloudSchema = Schema<Query, Mutation, SubscriptionRoot>;

/// What every resolver reads from the schema's data.
pub(crate) struct Shared {
    pub(crate) backend: Arc<dyn Backend>,
    pub(crate) router: Arc<Router>,
}

/// The schema over `backend`. The server puts the request's [`dcloud_projections::Actor`]
/// (when the bearer token authenticated; see [`crate::authenticate`]) and a
/// [`RequestId`] into each request's data, or into the websocket session's data at
/// `connection_init`.
pub fn schema(backend: Arc<dyn Backend>, opts: SchemaOptions) -> DcloudSchema {
    schema_with_router(backend, opts).0
}

/// [`schema`], and the [`Router`] its subscriptions share (for its counters).
pub fn schema_with_router(
    backend: Arc<dyn Backend>,
    opts: SchemaOptions,
) -> (DcloudSchema, Arc<Router>) {
    let router = Router::new(backend.clone());
    let schema = Schema::build(
        Query::default(),
        Mutation::default(),
        SubscriptionRoot::default(),
    )
    .data(Shared {
        backend,
        router: router.clone(),
    })
    .limit_depth(opts.depth_limit)
    .limit_complexity(opts.complexity_limit)
    .extension(IntrospectionGate {
        dev_mode: opts.dev_mode,
    })
    .extension(FieldLimit {
        max_fields: opts.field_limit,
    })
    .finish();
    (schema, router)
}

/// The schema's SDL (committed as `docs/schema.graphql`).
pub fn sdl() -> String {
    Schema::build(
        Query::default(),
        Mutation::default(),
        SubscriptionRoot::default(),
    )
    .finish()
    .sdl()
}

pub(crate) fn shared<'a>(ctx: &Context<'a>) -> Result<&'a Shared, ApiError> {
    ctx.data::<Shared>()
        .map_err(|_| ApiError::Internal("schema built without its backend".into()))
}

pub(crate) fn backend<'a>(ctx: &Context<'a>) -> Result<&'a Arc<dyn Backend>, ApiError> {
    shared(ctx).map(|s| &s.backend)
}

/// A fresh id for something the request creates: derived from the request's
/// idempotency key when it has one (a retry names the same thing), else the backend's.
pub(crate) fn fresh_id(ctx: &Context<'_>) -> Result<String, ApiError> {
    let backend = backend(ctx)?;
    match (
        ctx.data_opt::<crate::auth::IdempotencyKey>(),
        ctx.data_opt::<dcloud_projections::Actor>(),
    ) {
        (Some(key), Some(actor)) => Ok(key.next_id(actor)),
        _ => Ok(backend.new_id()),
    }
}

/// The request's correlation id: the server's request id, or a fresh one.
pub(crate) fn correlation(ctx: &Context<'_>, backend: &dyn Backend) -> String {
    ctx.data_opt::<RequestId>()
        .map_or_else(|| backend.new_id(), |r| r.0.clone())
}
