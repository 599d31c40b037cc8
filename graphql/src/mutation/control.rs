//! Control mutations: deploy and stop, drain and undrain nodes, tokens, and the
//! sweeps the server's timers run (retry the pending queue, expire services, mark
//! nodes lost), exposed to admins.

use async_graphql::{Context, Object, Result, SimpleObject, ID};
use dcloud_events::{model, Event};
use dcloud_projections::{Actor, Command, State};

use super::submit;
use crate::auth::{can_see_environment, new_token, token_hash};
use crate::error::{ApiError, Gql};
use crate::query::live;
use crate::schema::{backend, correlation, fresh_id};
use crate::types::common::{PlacementPolicy, Role};
use crate::types::deployment::DeploymentObj;
use crate::types::node::NodeObj;

/// A new token. `token` is shown this once and never stored.
#[derive(SimpleObject, Clone, Debug)]
pub struct CreatedToken {
    pub id: String,
    pub token: String,
    pub name: String,
    pub role: Role,
    pub node_id: Option<String>,
    /// When it stops authenticating (null: never).
    pub expires_ms: Option<i64>,
}

/// A new join token. `token` is shown this once and never stored.
#[derive(SimpleObject, Clone, Debug)]
pub struct CreatedJoinToken {
    pub id: String,
    pub token: String,
    pub name: String,
    pub uses: u32,
    pub expires_ms: Option<i64>,
}

/// What a node gets for joining: its own agent token, shown this once.
#[derive(SimpleObject, Clone, Debug)]
pub struct JoinedNode {
    pub node_id: String,
    pub token_id: String,
    pub token: String,
}

/// `now + in_ms`, refusing a non-positive duration.
fn expiry(now_ms: i64, in_ms: Option<i64>) -> Result<Option<i64>, ApiError> {
    match in_ms {
        None => Ok(None),
        Some(ms) if ms > 0 => Ok(Some(now_ms.saturating_add(ms))),
        Some(ms) => Err(ApiError::validation(
            "expiresInMs",
            format!("must be a positive number of milliseconds, got {ms}"),
        )),
    }
}

/// The id of the environment `key` names: an id, or an `env-name` among the live
/// environments the caller sees (their own first, for admins).
fn resolve_environment(state: &State, actor: &Actor, key: &str) -> Result<String, ApiError> {
    if let Some(e) = state.environment(key) {
        if can_see_environment(actor, e) {
            return Ok(e.id.clone());
        }
    }
    let named: Vec<_> = state
        .environments
        .values()
        .filter(|e| {
            !e.deleted && can_see_environment(actor, e) && e.spec().is_some_and(|s| s.name == key)
        })
        .collect();
    let own: Vec<_> = named
        .iter()
        .copied()
        .filter(|e| e.owner == actor.name)
        .collect();
    match (named.as_slice(), own.as_slice()) {
        ([], _) => Err(ApiError::not_found("environment", key)),
        ([only], _) | (_, [only]) => Ok(only.id.clone()),
        (many, _) => {
            let ids: Vec<&str> = many.iter().map(|e| e.id.as_str()).collect();
            Err(ApiError::BadInput(format!(
                "{key:?} names {} environments ({}); use an id",
                ids.len(),
                ids.join(", ")
            )))
        }
    }
}

fn node_obj(ctx: &Context<'_>, id: &str) -> Result<NodeObj, ApiError> {
    live(ctx, |r| r.node(id))
}

fn deployment_obj(ctx: &Context<'_>, id: &str) -> Result<DeploymentObj, ApiError> {
    live(ctx, |r| r.deployment(id))
}

#[derive(Default)]
pub struct ControlMutation;

#[Object]
impl ControlMutation {
    /// Deploys the current version of an environment (by id or `env-name`). It is
    /// placed at once when a node fits, else it waits with its reasons.
    async fn deploy(
        &self,
        ctx: &Context<'_>,
        environment: String,
        policy: Option<PlacementPolicy>,
        #[graphql(
            desc = "Past the owner's quota: wait (pending, with the limit as `quotaWait`) instead of being refused with `QUOTA_EXCEEDED`."
        )]
        wait_for_quota: Option<bool>,
    ) -> Result<DeploymentObj> {
        let run = async {
            let env_id = live(ctx, |r| resolve_environment(r.state, r.actor, &environment))?;
            let deployment_id = fresh_id(ctx)?;
            let cmd = Command::Deploy {
                deployment_id: deployment_id.clone(),
                env_id,
                wait_for_quota: wait_for_quota.unwrap_or(false),
                policy: policy.map(Into::into),
            };
            submit(ctx, cmd).await?;
            deployment_obj(ctx, &deployment_id)
        };
        run.await.gql(ctx)
    }

    /// Stops a deployment: at once when it is not placed, else its agent is asked to.
    async fn stop(&self, ctx: &Context<'_>, deployment_id: ID) -> Result<DeploymentObj> {
        let run = async {
            submit(
                ctx,
                Command::Stop {
                    deployment_id: deployment_id.to_string(),
                },
            )
            .await?;
            deployment_obj(ctx, &deployment_id)
        };
        run.await.gql(ctx)
    }

    /// The node keeps what runs and takes nothing new. Admins.
    async fn drain_node(&self, ctx: &Context<'_>, id: ID) -> Result<NodeObj> {
        let run = async {
            submit(
                ctx,
                Command::DrainNode {
                    node_id: id.to_string(),
                },
            )
            .await?;
            node_obj(ctx, &id)
        };
        run.await.gql(ctx)
    }

    async fn undrain_node(&self, ctx: &Context<'_>, id: ID) -> Result<NodeObj> {
        let run = async {
            submit(
                ctx,
                Command::UndrainNode {
                    node_id: id.to_string(),
                },
            )
            .await?;
            node_obj(ctx, &id)
        };
        run.await.gql(ctx)
    }

    /// Marks nodes lost now (what the heartbeat timer does); their deployments wait
    /// for the lost-node grace (the server's `--lost-node-grace-ms`) before they are
    /// placed elsewhere. Admins. Returns the events appended.
    async fn mark_nodes_lost(&self, ctx: &Context<'_>, node_ids: Vec<ID>) -> Result<usize> {
        let node_ids = node_ids.into_iter().map(|i| i.to_string()).collect();
        submit(ctx, Command::MarkNodesLost { node_ids })
            .await
            .map(|e| e.len())
            .gql(ctx)
    }

    /// Places the deployments of lost nodes elsewhere now, without waiting for the
    /// lost-node grace (the machine is known to be gone). Nodes that are alive are
    /// left alone. Admins. Returns the events appended.
    async fn evict_lost_nodes(&self, ctx: &Context<'_>, node_ids: Vec<ID>) -> Result<usize> {
        let node_ids = node_ids.into_iter().map(|i| i.to_string()).collect();
        submit(
            ctx,
            Command::EvictLostNodes {
                node_ids,
                force: true,
            },
        )
        .await
        .map(|e| e.len())
        .gql(ctx)
    }

    /// Tries every pending deployment again. Admins. Returns the events appended.
    async fn retry_pending(&self, ctx: &Context<'_>) -> Result<usize> {
        submit(ctx, Command::RetryPending)
            .await
            .map(|e| e.len())
            .gql(ctx)
    }

    /// Removes services not refreshed within their TTL. Admins. Returns the events
    /// appended.
    async fn expire_services(&self, ctx: &Context<'_>) -> Result<usize> {
        submit(ctx, Command::ExpireServices)
            .await
            .map(|e| e.len())
            .gql(ctx)
    }

    /// A new bearer token (admins). Agent tokens name their node; others do not.
    /// `expiresInMs`: it stops authenticating that long from now (default: never).
    async fn create_token(
        &self,
        ctx: &Context<'_>,
        role: Role,
        name: String,
        node_id: Option<ID>,
        expires_in_ms: Option<i64>,
    ) -> Result<CreatedToken> {
        let run = async {
            let backend = backend(ctx)?;
            let expires_ms = expiry(backend.now_ms(), expires_in_ms)?;
            let (token, secret_hash) = new_token(backend.new_secret());
            let id = fresh_id(ctx)?;
            let node_id = node_id.map(|n| n.to_string());
            let role_m: model::Role = role.into();
            let cmd = Command::CreateTokenV2 {
                token_id: id.clone(),
                name: name.clone(),
                role: role_m,
                secret_hash,
                node_id: node_id.clone(),
                expires_ms,
            };
            let envelopes = submit(ctx, cmd).await?;
            let replayed = envelopes.iter().any(|e| {
                matches!(&e.event, Event::TokenCreated { secret_hash: h, .. } if *h != secret_hash)
            });
            if replayed {
                // The secret is never stored: a retried request cannot show it again.
                return Err(ApiError::BadInput(format!(
                    "this idempotency key already created token {id}; its secret was shown \
                     only in the first answer (revoke it and create another if it was lost)"
                )));
            }
            Ok(CreatedToken {
                id,
                token,
                name,
                role,
                node_id,
                expires_ms,
            })
        };
        run.await.gql(ctx)
    }

    /// A join token (admins): an agent presents it to `joinNode` to receive its own
    /// node-bound token, at most `uses` times, until `expiresInMs` from now.
    async fn create_join_token(
        &self,
        ctx: &Context<'_>,
        name: String,
        uses: u32,
        expires_in_ms: Option<i64>,
    ) -> Result<CreatedJoinToken> {
        let run = async {
            let backend = backend(ctx)?;
            let expires_ms = expiry(backend.now_ms(), expires_in_ms)?;
            let (token, secret_hash) = new_token(backend.new_secret());
            let id = backend.new_id();
            let cmd = Command::CreateJoinToken {
                token_id: id.clone(),
                name: name.clone(),
                secret_hash,
                expires_ms,
                uses,
            };
            submit(ctx, cmd).await?;
            Ok(CreatedJoinToken {
                id,
                token,
                name,
                uses,
                expires_ms,
            })
        };
        run.await.gql(ctx)
    }

    /// A node joins with a join token (sent here, not as the bearer token: none is
    /// needed) and receives its own agent token bound to `nodeId`. Each call spends
    /// one use of the join token.
    async fn join_node(
        &self,
        ctx: &Context<'_>,
        join_token: String,
        node_id: ID,
    ) -> Result<JoinedNode> {
        let run = async {
            let backend = backend(ctx)?;
            let join_secret_hash = token_hash(&join_token)
                .ok_or_else(|| ApiError::forbidden("not a valid join token"))?;
            let (token, secret_hash) = new_token(backend.new_secret());
            let token_id = backend.new_id();
            let cmd = Command::JoinNode {
                join_secret_hash,
                node_id: node_id.to_string(),
                token_id: token_id.clone(),
                secret_hash,
            };
            let correlation = correlation(ctx, backend.as_ref());
            backend
                .submit(cmd, Actor::agent(&node_id), correlation)
                .await?;
            Ok(JoinedNode {
                node_id: node_id.to_string(),
                token_id,
                token,
            })
        };
        run.await.gql(ctx)
    }

    async fn revoke_token(&self, ctx: &Context<'_>, id: ID) -> Result<bool> {
        submit(
            ctx,
            Command::RevokeToken {
                token_id: id.to_string(),
            },
        )
        .await
        .map(|_| true)
        .gql(ctx)
    }
}
