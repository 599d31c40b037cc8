//! The mutation roots: documents (apply, environments, templates, catalogs,
//! datasets, services), control (nodes, deployments, tokens, the writer's sweeps) and
//! the agent protocol (register, heartbeat, report).

mod agent;
mod apply;
mod control;
mod documents;
pub mod inputs;

use async_graphql::Context;
use dcloud_events::Envelope;
use dcloud_projections::Command;

pub use agent::{AgentMutation, HeartbeatAck};
pub use apply::{AppliedDocument, ApplyAction, ApplyResult, DocumentKind};
pub use control::{ControlMutation, CreatedJoinToken, CreatedToken, JoinedNode};
pub use documents::DocumentMutation;

use crate::auth::{actor, IdempotencyKey};
use crate::error::ApiError;
use crate::schema::{backend, correlation};

/// Submits `cmd` as the request's actor, correlated by the request id, and keyed by
/// the request's idempotency key when it has one. Authorisation of writes is
/// `decide`'s (auditors, other users' things, other nodes are refused there); this
/// only requires an actor.
pub(crate) async fn submit(ctx: &Context<'_>, cmd: Command) -> Result<Vec<Envelope>, ApiError> {
    let actor = actor(ctx)?.clone();
    submit_as(ctx, cmd, actor).await
}

/// [`submit`] as `actor` (the request's caller acting in a narrower role).
pub(crate) async fn submit_as(
    ctx: &Context<'_>,
    cmd: Command,
    actor: dcloud_projections::Actor,
) -> Result<Vec<Envelope>, ApiError> {
    let backend = backend(ctx)?;
    let correlation = correlation(ctx, backend.as_ref());
    match ctx.data_opt::<IdempotencyKey>() {
        Some(key) => {
            let key = key.next_command_key();
            backend.submit_keyed(cmd, actor, correlation, key).await
        }
        None => backend.submit(cmd, actor, correlation).await,
    }
}
