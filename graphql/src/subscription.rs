//! Subscriptions, each a filtered view of the log's tail (catch-up from disk, then
//! live, no gap, no duplicate): the event stream, deployment updates, node updates and
//! an agent's assignments. Items carry their sequence number; resume with `after`.

use std::sync::Arc;

use async_graphql::{Context, Result, SimpleObject, Subscription as SubscriptionDerive, ID};
use dcloud_events::{Envelope, Event};
use dcloud_projections::{Actor, State};
use futures::{Stream, StreamExt};

use crate::auth::{actor, can_see_deployment, can_see_event, can_see_node};
use crate::backend::Backend;
use crate::error::{gql, ApiError, Gql};
use crate::query::{require_node_actor, EventFilter};
use crate::router::{deployment_of, node_of, Feed, Interest};
use crate::schema::{backend, shared};
use crate::types::assignment::{Assignment, AssignmentTracker};
use crate::types::common::{DeploymentStatus, RejectCount};
use crate::types::deployment::{BuildProgress, DeploymentObj};
use crate::types::event::EventRecord;
use crate::types::node::NodeObj;
use crate::views::Reader;

/// One event about a deployment, with its status as of that event.
#[derive(SimpleObject)]
pub struct DeploymentUpdate {
    pub seq: u64,
    pub time_ms: i64,
    /// The event's variant name.
    #[graphql(name = "type")]
    pub kind: String,
    pub deployment_id: String,
    /// The status right after this event.
    pub status: DeploymentStatus,
    /// This event changed the status.
    pub status_changed: bool,
    /// Build progress this event reported.
    pub build: Option<BuildProgress>,
    /// Why it fits nowhere (a `DeploymentUnschedulable` event).
    pub pending_reasons: Vec<RejectCount>,
    pub exit_code: Option<i64>,
    /// The deployment as it is now.
    pub deployment: DeploymentObj,
}

/// One event about a node, with the node as it is now.
#[derive(SimpleObject)]
pub struct NodeUpdate {
    pub seq: u64,
    pub time_ms: i64,
    #[graphql(name = "type")]
    pub kind: String,
    pub node_id: String,
    pub node: NodeObj,
}

/// Where a subscription starts: after `after`, or after the last event now.
fn start(backend: &dyn Backend, after: Option<u64>) -> u64 {
    after
        .unwrap_or_else(|| backend.log().last_seq())
        .saturating_add(1)
}

/// The events from `from` on that `interest` can care about (see [`Router`]), mapped
/// through `f` (with the live state, briefly locked), dropping the `None`s; errors
/// become GraphQL errors with the request's id. Ends quietly when the log closes.
fn filtered<T: Send + 'static>(
    ctx: &Context<'_>,
    backend: Arc<dyn Backend>,
    from: u64,
    interest: Interest,
    mut f: impl FnMut(&State, &Envelope) -> Option<T> + Send + 'static,
) -> Result<impl Stream<Item = Result<T>> + Send> {
    let request_id = ctx
        .data_opt::<crate::auth::RequestId>()
        .map_or_else(|| "-".to_string(), |r| r.0.clone());
    let router = shared(ctx).gql(ctx)?.router.clone();
    let feed = Feed::new(router, interest, from);
    let items = futures::stream::unfold(feed, |mut feed| async move {
        feed.next().await.map(|item| (item, feed))
    });
    Ok(items.filter_map(move |item| {
        let out = match item {
            Ok(env) => {
                let state = backend.state();
                f(&state, &env).map(Ok)
            }
            Err(e) => Some(Err(crate::error::to_graphql_error(&e, &request_id))),
        };
        futures::future::ready(out)
    }))
}

fn deployment_update(
    state: &State,
    actor: &Actor,
    env: &Envelope,
    only: Option<&str>,
) -> Option<DeploymentUpdate> {
    let id = deployment_of(&env.event)?;
    if only.is_some_and(|o| o != id) {
        return None;
    }
    let d = state
        .deployment(id)
        .filter(|d| can_see_deployment(actor, d))?;
    let entry = d.history.iter().rev().find(|h| h.seq <= env.seq)?;
    let (build, pending_reasons, exit_code) = match &env.event {
        Event::ImageBuildStarted { steps, .. } => (
            Some(BuildProgress {
                step: 0,
                steps: *steps,
            }),
            vec![],
            None,
        ),
        Event::ImageBuildProgress { step, steps, .. } => (
            Some(BuildProgress {
                step: *step,
                steps: *steps,
            }),
            vec![],
            None,
        ),
        Event::DeploymentUnschedulable { rejected, .. } => {
            (None, rejected.iter().map(Into::into).collect(), None)
        }
        Event::ContainerExited { code, .. } => (None, vec![], Some(*code)),
        _ => (None, vec![], None),
    };
    Some(DeploymentUpdate {
        seq: env.seq,
        time_ms: env.time_ms,
        kind: env.event.kind().to_string(),
        deployment_id: id.to_string(),
        status: entry.status.into(),
        status_changed: entry.seq == env.seq,
        build,
        pending_reasons,
        exit_code,
        deployment: DeploymentObj::new(state, d),
    })
}

#[derive(Default)]
pub struct Subscription;

#[SubscriptionDerive]
impl Subscription {
    /// Every event after `after` (default: from now) that the caller may see and that
    /// matches `filter`: first those already in the log, then each as it is appended.
    async fn events(
        &self,
        ctx: &Context<'_>,
        after: Option<u64>,
        filter: Option<EventFilter>,
    ) -> Result<impl Stream<Item = Result<EventRecord>>> {
        let actor = actor(ctx).gql(ctx)?.clone();
        if actor.role == dcloud_events::model::Role::Agent {
            return Err(gql(
                ctx,
                ApiError::forbidden("agents follow `assignments`, not the event stream"),
            ));
        }
        let backend = backend(ctx).gql(ctx)?.clone();
        let filter = filter.unwrap_or_default();
        let from = start(&*backend, after);
        let matching = filter.clone();
        let interest = Interest::Matching(Arc::new(move |env: &Envelope| matching.matches(env)));
        filtered(ctx, backend, from, interest, move |state, env| {
            (filter.matches(env) && can_see_event(&actor, state, &env.event))
                .then(|| EventRecord(env.clone()))
        })
    }

    /// Each event about deployment `id` (or every deployment the caller may see),
    /// with the status as of that event: every status change, build progress, and
    /// pending reasons.
    async fn deployment_updates(
        &self,
        ctx: &Context<'_>,
        id: Option<ID>,
        after: Option<u64>,
    ) -> Result<impl Stream<Item = Result<DeploymentUpdate>>> {
        let actor = actor(ctx).gql(ctx)?.clone();
        let backend = backend(ctx).gql(ctx)?.clone();
        if let Some(id) = &id {
            let state = backend.state();
            let d = state
                .deployment(id)
                .ok_or_else(|| ApiError::not_found("deployment", id))
                .gql(ctx)?;
            if !can_see_deployment(&actor, d) {
                return Err(gql(
                    ctx,
                    ApiError::forbidden(format!("deployment {} is not yours to see", id.as_str())),
                ));
            }
        }
        let from = start(&*backend, after);
        let only = id.map(|i| i.to_string());
        let interest = match &only {
            Some(id) => Interest::Deployment(id.clone()),
            None => Interest::Matching(Arc::new(|env: &Envelope| {
                deployment_of(&env.event).is_some()
            })),
        };
        filtered(ctx, backend, from, interest, move |state, env| {
            deployment_update(state, &actor, env, only.as_deref())
        })
    }

    /// Each event about node `id` (or every node the caller may see), with the node
    /// as it is now.
    async fn node_updates(
        &self,
        ctx: &Context<'_>,
        id: Option<ID>,
        after: Option<u64>,
    ) -> Result<impl Stream<Item = Result<NodeUpdate>>> {
        let actor = actor(ctx).gql(ctx)?.clone();
        if let Some(id) = &id {
            if !can_see_node(&actor, id) {
                return Err(gql(
                    ctx,
                    ApiError::forbidden(format!(
                        "an agent sees only its own node, not {}",
                        id.as_str()
                    )),
                ));
            }
        }
        let backend = backend(ctx).gql(ctx)?.clone();
        let from = start(&*backend, after);
        let only = id.map(|i| i.to_string());
        let seen = backend.clone();
        let interest = match &only {
            Some(id) => Interest::Node(id.clone()),
            None => Interest::Matching(Arc::new(|env: &Envelope| node_of(&env.event).is_some())),
        };
        filtered(ctx, backend, from, interest, move |state, env| {
            let node_id = node_of(&env.event)?;
            if only.as_deref().is_some_and(|o| o != node_id) || !can_see_node(&actor, node_id) {
                return None;
            }
            let last_seen = |n: &str| seen.last_seen_ms(n);
            let node = Reader {
                state,
                actor: &actor,
                last_seen: &last_seen,
            }
            .node(node_id)
            .ok()?;
            Some(NodeUpdate {
                seq: env.seq,
                time_ms: env.time_ms,
                kind: env.event.kind().to_string(),
                node_id: node_id.to_string(),
                node,
            })
        })
    }

    /// What node `nodeId` must do, from the events after `after` (default: from now):
    /// `RUN` when a deployment is scheduled to it (with everything needed to run it),
    /// `STOP` when one is to be stopped, `STOPPED` when one is over, `LOST` when one
    /// was taken away. Its agent (or an admin) only. Resume with the last `seq` seen;
    /// start with `nodeAssignments` for what the node holds now.
    async fn assignments(
        &self,
        ctx: &Context<'_>,
        node_id: ID,
        after: Option<u64>,
    ) -> Result<impl Stream<Item = Result<Assignment>>> {
        let actor = actor(ctx).gql(ctx)?;
        require_node_actor(actor, &node_id).gql(ctx)?;
        let backend = backend(ctx).gql(ctx)?.clone();
        let from = start(&*backend, after);
        let mut tracker = AssignmentTracker::new(node_id.to_string(), backend.settings());
        let clock = backend.clone();
        let interest = Interest::Assignments(node_id.to_string());
        filtered(ctx, backend, from, interest, move |state, env| {
            let mut item = tracker.next(state, env, clock.now_ms())?;
            crate::types::assignment::add_service_token(&mut item, &*clock);
            Some(item)
        })
    }
}
