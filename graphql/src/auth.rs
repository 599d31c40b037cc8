//! Who is asking and what they may see: bearer tokens (made, hashed, looked up), the
//! [`Actor`] and [`RequestId`] the server puts into each request's context, the read
//! rules per role, and the extension that turns introspection off for non-admins.
//!
//! Writes are authorised by `decide` (one place for business rules); reads here:
//! admins and auditors see everything, users their own environments and deployments
//! (plus the shared registries: nodes, templates, services, datasets), agents their own
//! node and what is assigned to it.

use std::any::TypeId;
use std::sync::Arc;

use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextPrepareRequest,
};
use async_graphql::{Context, Request, ServerResult};
use dcloud_events::model::Role;
use dcloud_events::Event;
use dcloud_projections::state::{Deployment, Environment};
use dcloud_projections::{Actor, State};

use crate::error::ApiError;

/// The id of one request, put into the context by the server (the correlation id of
/// the events it causes, and the id an internal error is reported under). Without it,
/// a fresh id is taken from the backend per command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(pub String);

/// The idempotency key a client sent with a request (HTTP header `Idempotency-Key`),
/// put into the context by the server. Every command the request submits is keyed
/// by it and its position in the request (`KEY#0`, `KEY#1`, …), so a retried request
/// is answered with what the first one did instead of doing it again.
///
/// Fresh ids a keyed request makes (deployments, environments, tokens) are derived
/// from the key, the actor and their position, so a retry names the same things.
#[derive(Debug)]
pub struct IdempotencyKey {
    key: String,
    next: std::sync::atomic::AtomicU32,
    next_id: std::sync::atomic::AtomicU32,
}

impl IdempotencyKey {
    pub fn new(key: impl Into<String>) -> IdempotencyKey {
        IdempotencyKey {
            key: key.into(),
            next: std::sync::atomic::AtomicU32::new(0),
            next_id: std::sync::atomic::AtomicU32::new(0),
        }
    }

    /// The request's next fresh id for `actor`: 32 hex digits, like the backend's.
    pub(crate) fn next_id(&self, actor: &Actor) -> String {
        let n = self
            .next_id
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let mut h = blake3::Hasher::new();
        h.update(b"dcloud idempotent id\0");
        h.update(actor.label().as_bytes());
        h.update(b"\0");
        h.update(self.key.as_bytes());
        h.update(&n.to_be_bytes());
        hex::encode(&h.finalize().as_bytes()[..16])
    }

    /// The key of the request's next command.
    pub(crate) fn next_command_key(&self) -> String {
        let n = self.next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        format!("{}#{n}", self.key)
    }
}

/// Prefix of every token, so leaked tokens are easy to recognise.
pub const TOKEN_PREFIX: &str = "dcl_";

/// The token text shown once to its owner (`dcl_` + 64 hex digits) and the hash that
/// is stored (blake3 of the 32 secret bytes).
pub fn new_token(secret: [u8; 32]) -> (String, [u8; 32]) {
    (
        format!("{TOKEN_PREFIX}{}", hex::encode(secret)),
        *blake3::hash(&secret).as_bytes(),
    )
}

/// The stored hash of a token text, or `None` when it is not a token's shape. A
/// leading `Bearer ` is accepted.
pub fn token_hash(token: &str) -> Option<[u8; 32]> {
    let token = token.trim();
    let token = token.strip_prefix("Bearer ").unwrap_or(token).trim();
    let hex_part = token.strip_prefix(TOKEN_PREFIX)?;
    let mut secret = [0u8; 32];
    hex::decode_to_slice(hex_part, &mut secret).ok()?;
    Some(*blake3::hash(&secret).as_bytes())
}

/// The actor of an unrevoked, unexpired token (agents act as `Actor::agent(node)`),
/// or `None`, as of the wall clock. Join tokens authenticate nothing here: they are
/// an argument of `joinNode` only.
pub fn authenticate(state: &State, token: &str) -> Option<Actor> {
    authenticate_at(state, token, wall_ms())
}

/// The wall clock in Unix milliseconds.
pub fn wall_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// [`authenticate`] as of `now_ms`.
pub fn authenticate_at(state: &State, token: &str, now_ms: i64) -> Option<Actor> {
    let hash = token_hash(token)?;
    let t = state
        .token_by_secret_hash(&hash)
        .filter(|t| t.is_valid_at(now_ms))?;
    Some(match (t.role, &t.node_id) {
        (Role::Agent, Some(node)) => Actor::agent(node),
        (role, node_id) => Actor {
            name: t.name.clone(),
            role,
            node_id: node_id.clone(),
        },
    })
}

/// The request's actor, or `Unauthenticated`.
pub(crate) fn actor<'a>(ctx: &Context<'a>) -> Result<&'a Actor, ApiError> {
    ctx.data_opt::<Actor>().ok_or(ApiError::Unauthenticated)
}

/// Admins and auditors: they read everything.
pub(crate) fn sees_all(a: &Actor) -> bool {
    matches!(a.role, Role::Admin | Role::Auditor)
}

/// Refused unless the actor reads everything (catalogs, history, tokens).
pub(crate) fn require_sees_all(a: &Actor, what: &str) -> Result<(), ApiError> {
    if sees_all(a) {
        Ok(())
    } else {
        Err(ApiError::forbidden(format!(
            "{what} is for admins and auditors"
        )))
    }
}

/// Refused for agents (they see only their node and its assignments).
pub(crate) fn require_not_agent(a: &Actor, what: &str) -> Result<(), ApiError> {
    if a.role == Role::Agent {
        Err(ApiError::forbidden(format!("agents cannot read {what}")))
    } else {
        Ok(())
    }
}

pub(crate) fn can_see_environment(a: &Actor, e: &Environment) -> bool {
    match a.role {
        Role::Admin | Role::Auditor => true,
        Role::User => e.owner == a.name,
        Role::Agent => false,
    }
}

pub(crate) fn can_see_deployment(a: &Actor, d: &Deployment) -> bool {
    match a.role {
        Role::Admin | Role::Auditor => true,
        Role::User => d.owner == a.name,
        Role::Agent => d.node.is_some() && d.node == a.node_id,
    }
}

pub(crate) fn can_see_node(a: &Actor, node_id: &str) -> bool {
    match a.role {
        Role::Agent => a.node_id.as_deref() == Some(node_id),
        _ => true,
    }
}

/// Whether `a` may see one event of the log; ownership is looked up in `state`.
pub(crate) fn can_see_event(a: &Actor, state: &State, event: &Event) -> bool {
    if sees_all(a) {
        return true;
    }
    use Event::*;
    let deployment = |id: &str| {
        state
            .deployment(id)
            .is_some_and(|d| can_see_deployment(a, d))
    };
    match event {
        EnvironmentCreated { env_id, .. }
        | EnvironmentUpdated { env_id, .. }
        | EnvironmentDeactivated { env_id }
        | EnvironmentDeleted { env_id } => state
            .environments
            .get(env_id)
            .is_some_and(|e| can_see_environment(a, e)),
        DeploymentRequested { deployment_id, .. }
        | DeploymentScheduled { deployment_id, .. }
        | DeploymentUnschedulable { deployment_id, .. }
        | DeploymentStopRequested { deployment_id }
        | DeploymentStopped { deployment_id }
        | ImageBuildStarted { deployment_id, .. }
        | ImageBuildProgress { deployment_id, .. }
        | ImageBuildFailed { deployment_id, .. }
        | ImageReady { deployment_id, .. }
        | ContainerCreated { deployment_id, .. }
        | ContainerStarted { deployment_id }
        | ContainerExited { deployment_id, .. }
        | ContainerOomKilled { deployment_id }
        | ContainerRemoved { deployment_id }
        | ContainerFailed { deployment_id, .. }
        | DeploymentLogsOpened { deployment_id }
        | ExecSessionStarted { deployment_id, .. }
        | ExecSessionEnded { deployment_id, .. }
        | DeploymentIdleStopped { deployment_id, .. }
        | ContainerOomWarning { deployment_id, .. }
        | DeploymentQuotaWaiting { deployment_id, .. }
        | ContainerOutput { deployment_id, .. }
        | VolumeUsageReported { deployment_id, .. } => deployment(deployment_id),
        EnvironmentIdleTimeoutSet { env_id, .. } => state
            .environments
            .get(env_id)
            .is_some_and(|e| can_see_environment(a, e)),
        StaleContainerRemoved {
            deployment_id,
            node_id,
            ..
        } => {
            deployment(deployment_id)
                || (a.role == Role::Agent && a.node_id.as_ref() == Some(node_id))
        }
        DeploymentLost {
            deployment_id,
            node_id,
        } => {
            deployment(deployment_id)
                || (a.role == Role::Agent && a.node_id.as_ref() == Some(node_id))
        }
        NodeRegistered { node_id, .. }
        | NodeLost { node_id }
        | NodeDrained { node_id }
        | NodeUndrained { node_id }
        | NodeAddressReported { node_id, .. } => can_see_node(a, node_id),
        // Heartbeats list every container of the node: its agent's and the readers-of-all's.
        NodeHeartbeat { node_id, .. } => a.role == Role::Agent && can_see_node(a, node_id),
        TemplateSaved { .. }
        | TemplateDeleted { .. }
        | TemplateIdleTimeoutSet { .. }
        | DatasetsRegistered { .. }
        | DatasetRemoved { .. }
        | ServiceRegistered { .. }
        | ServiceRefreshed { .. }
        | ServiceDeregistered { .. }
        | ServiceExpired { .. }
        | ClusterCreated { .. } => a.role == Role::User,
        // Shared storage's mount options may hold a share's password.
        DatasetStorageSet { .. }
        | CatalogUpserted { .. }
        | CatalogServicesSet { .. }
        | TokenCreated { .. }
        | TokenRevoked { .. }
        | TokenCreatedV2 { .. }
        | JoinTokenCreated { .. }
        | NodeJoined { .. } => false,
        // A user sees their own quota being set.
        QuotaSet { user, .. } => a.role == Role::User && &a.name == user,
        // A key names the request of another caller: readers of all only.
        RequestKeyRecorded { .. } => false,
    }
}

/// Turns introspection off for every request whose actor is not an admin, unless the
/// schema runs in dev mode. It reads the actor the server put into the request's data
/// (HTTP) or the websocket session's data (`connection_init`), so it covers both
/// transports without the server doing anything else.
pub(crate) struct IntrospectionGate {
    pub(crate) dev_mode: bool,
}

impl ExtensionFactory for IntrospectionGate {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(IntrospectionGateExt {
            dev_mode: self.dev_mode,
        })
    }
}

struct IntrospectionGateExt {
    dev_mode: bool,
}

#[async_graphql::async_trait::async_trait]
impl Extension for IntrospectionGateExt {
    async fn prepare_request(
        &self,
        ctx: &ExtensionContext<'_>,
        request: Request,
        next: NextPrepareRequest<'_>,
    ) -> ServerResult<Request> {
        let key = TypeId::of::<Actor>();
        let actor = request
            .data
            .get(&key)
            .or_else(|| ctx.session_data.get(&key))
            .and_then(|d| d.downcast_ref::<Actor>());
        let admin = actor.is_some_and(Actor::is_admin);
        let request = if self.dev_mode || admin {
            request
        } else {
            request.disable_introspection()
        };
        next.run(ctx, request).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_hash_their_secret_and_reject_other_shapes() {
        let (token, hash) = new_token([7; 32]);
        assert!(token.starts_with(TOKEN_PREFIX));
        assert_eq!(token.len(), TOKEN_PREFIX.len() + 64);
        assert_eq!(token_hash(&token), Some(hash));
        assert_eq!(token_hash(&format!("Bearer {token}")), Some(hash));
        assert_ne!(token_hash(&new_token([8; 32]).0), Some(hash));
        assert_eq!(token_hash("dcl_zz"), None);
        assert_eq!(
            token_hash(&token[TOKEN_PREFIX.len()..]),
            None,
            "the prefix is required"
        );
    }
}
