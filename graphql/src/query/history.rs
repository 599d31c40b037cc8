//! History for auditors: the event log (cursor pages by sequence number, filtered),
//! `at(seq:)` (the state as it stood then), the live digest and chain verification.

use std::sync::Arc;

use async_graphql::connection::Connection;
use async_graphql::{Context, InputObject, Object, Result, SimpleObject};
use dcloud_events::{Envelope, EventLog};
use dcloud_projections::Actor;

use super::live;
use crate::auth::{actor, can_see_event, require_not_agent, require_sees_all, sees_all};
use crate::backend::Backend;
use crate::error::{ApiError, Gql};
use crate::query::at::{replay_to, StateAt};
use crate::schema::backend;
use crate::types::common::page_size;
use crate::types::event::EventRecord;
use crate::views::Counts;

/// Default and largest page of events.
const EVENT_PAGE: (usize, usize) = (100, 1000);
/// Events read from the log per visibility check (the state lock is taken per chunk).
const CHUNK: u64 = 512;

/// Which events to list. Every given field must match.
#[derive(InputObject, Default, Clone, Debug)]
pub struct EventFilter {
    /// The variant name, e.g. `DeploymentScheduled`.
    #[graphql(name = "type")]
    pub event_type: Option<String>,
    /// `deployment:ID` (exact), or just a kind (`deployment`) for all of that kind.
    pub entity: Option<String>,
    /// As recorded: `user:alice`, `agent:0x…`, `system`.
    pub actor: Option<String>,
    pub correlation: Option<String>,
}

impl EventFilter {
    pub(crate) fn matches(&self, env: &Envelope) -> bool {
        let entity_ok = |want: &String| {
            let entity = env.event.entity();
            if want.contains(':') {
                &entity == want
            } else {
                entity.split_once(':').is_some_and(|(kind, _)| kind == want)
            }
        };
        self.event_type
            .as_ref()
            .is_none_or(|t| env.event.kind() == t)
            && self.entity.as_ref().is_none_or(entity_ok)
            && self.actor.as_ref().is_none_or(|a| &env.actor == a)
            && self
                .correlation
                .as_ref()
                .is_none_or(|c| &env.correlation == c)
    }
}

#[derive(SimpleObject, Clone, Debug, PartialEq, Eq)]
pub struct StateDigest {
    /// The last sequence number folded into the state.
    pub seq: u64,
    /// Hex blake3 of the state (equal states, equal digests).
    pub digest: String,
}

/// The outcome of walking the hash chain.
#[derive(SimpleObject, Clone, Debug, PartialEq, Eq)]
pub struct ChainReport {
    pub ok: bool,
    /// Records that verified.
    pub events: u64,
    pub last_seq: u64,
    /// Hex hash of the last verified record.
    pub last_hash: Option<String>,
    pub first_bad_seq: Option<u64>,
    pub reason: Option<String>,
}

#[derive(Default)]
pub struct HistoryQuery;

#[Object]
impl HistoryQuery {
    /// The log from `after` (exclusive), in order, filtered by `filter` and by what the
    /// caller may see; cursors are sequence numbers.
    #[graphql(complexity = "first.map_or(100, |n| n.max(0) as usize) * child_complexity")]
    async fn events(
        &self,
        ctx: &Context<'_>,
        after: Option<String>,
        first: Option<i32>,
        filter: Option<EventFilter>,
    ) -> Result<Connection<u64, EventRecord>> {
        let run = async {
            let actor = actor(ctx)?.clone();
            require_not_agent(&actor, "the event log")?;
            let first = page_size(first, EVENT_PAGE.0, EVENT_PAGE.1)?;
            let after = match after {
                Some(c) => c
                    .parse::<u64>()
                    .map_err(|_| ApiError::BadInput(format!("{c:?} is not a sequence number")))?,
                None => 0,
            };
            let backend = backend(ctx)?.clone();
            let filter = filter.unwrap_or_default();
            let (page, more) =
                blocking(move || scan_events(&*backend, &actor, &filter, after, first)).await??;
            let mut conn = Connection::new(after > 0, more);
            conn.edges.extend(
                page.into_iter()
                    .map(|e| async_graphql::connection::Edge::new(e.seq, EventRecord(e))),
            );
            Ok(conn)
        };
        run.await.gql(ctx)
    }

    /// The state as it stood after event `seq` (replayed from the newest snapshot at
    /// or before it). Admins and auditors.
    async fn at(&self, ctx: &Context<'_>, seq: u64) -> Result<StateAt> {
        let run = async {
            let actor = actor(ctx)?.clone();
            require_sees_all(&actor, "time travel")?;
            let log = backend(ctx)?.log();
            let (state, from_snapshot) = blocking(move || replay_to(&*log, seq)).await??;
            Ok(StateAt {
                state: Arc::new(state),
                actor,
                from_snapshot,
            })
        };
        run.await.gql(ctx)
    }

    /// Digest of the live state.
    async fn state_digest(&self, ctx: &Context<'_>) -> Result<StateDigest> {
        live(ctx, |r| {
            require_sees_all(r.actor, "the state digest")?;
            Ok(StateDigest {
                seq: r.state.last_seq(),
                digest: hex::encode(r.state.digest()),
            })
        })
        .gql(ctx)
    }

    /// How many of each thing the live state holds.
    async fn counts(&self, ctx: &Context<'_>) -> Result<Counts> {
        live(ctx, |r| {
            require_sees_all(r.actor, "the counts")?;
            Ok(r.counts())
        })
        .gql(ctx)
    }

    /// Walks the whole hash chain of the log (admins and auditors). Costly: it counts
    /// as 5,000 towards the complexity limit, so a document holds few of them.
    #[graphql(complexity = 5_000)]
    async fn verify_chain(&self, ctx: &Context<'_>) -> Result<ChainReport> {
        let run = async {
            require_sees_all(actor(ctx)?, "chain verification")?;
            let backend = backend(ctx)?.clone();
            let last_seq = backend.log().last_seq();
            let outcome = blocking(move || backend.verify_chain()).await?;
            Ok(match outcome {
                Ok(r) => ChainReport {
                    ok: true,
                    events: r.events,
                    last_seq: r.last_seq,
                    last_hash: Some(hex::encode(r.last_hash)),
                    first_bad_seq: None,
                    reason: None,
                },
                Err(e) => ChainReport {
                    ok: false,
                    events: e.first_bad_seq.saturating_sub(1),
                    last_seq,
                    last_hash: None,
                    first_bad_seq: Some(e.first_bad_seq),
                    reason: Some(e.reason.to_string()),
                },
            })
        };
        run.await.gql(ctx)
    }
}

/// Runs `f` on a blocking thread (log reads and chain walks hit the disk).
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::Internal(format!("blocking task failed: {e}")))
}

/// Up to `first` events after `after` matching `filter` that `actor` may see, and
/// whether more follow.
fn scan_events(
    backend: &dyn Backend,
    actor: &Actor,
    filter: &EventFilter,
    after: u64,
    first: usize,
) -> Result<(Vec<Envelope>, bool), ApiError> {
    let log: Arc<dyn EventLog> = backend.log();
    let last = log.last_seq();
    let mut out = Vec::new();
    let mut from = after.saturating_add(1);
    while from <= last {
        let to = from.saturating_add(CHUNK - 1).min(last);
        let mut chunk = Vec::new();
        for env in log.read_range(from, to) {
            let env = env.map_err(|e| ApiError::Internal(format!("reading the log: {e}")))?;
            if filter.matches(&env) {
                chunk.push(env);
            }
        }
        if !sees_all(actor) && !chunk.is_empty() {
            let state = backend.state();
            chunk.retain(|env| can_see_event(actor, &state, &env.event));
        }
        for env in chunk {
            if out.len() == first {
                return Ok((out, true));
            }
            out.push(env);
        }
        from = to + 1;
    }
    Ok((out, false))
}
