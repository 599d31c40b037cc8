//! The query roots: the live views, history (events, `at(seq:)`, digest, chain
//! verification) and the agent's view of its assignments.

mod agent;
mod at;
mod checkpoint;
mod history;
mod live;

use async_graphql::Context;

pub(crate) use agent::require_node_actor;
pub use agent::{AgentQuery, NodeAssignments};
pub use at::StateAt;
pub use checkpoint::{CheckpointQuery, HeadCheckpoint};
pub use history::{ChainReport, EventFilter, HistoryQuery, StateDigest};
pub use live::{JoinTokenObj, LiveQuery, Me, Token};

use crate::auth::actor;
use crate::error::ApiError;
use crate::schema::backend;
use crate::views::Reader;

/// Runs `f` over the live state as the request's actor. The state lock is held only
/// while `f` copies out what it returns.
pub(crate) fn live<T>(
    ctx: &Context<'_>,
    f: impl FnOnce(&Reader<'_>) -> Result<T, ApiError>,
) -> Result<T, ApiError> {
    let actor = actor(ctx)?;
    let backend = backend(ctx)?;
    let last_seen = |id: &str| backend.last_seen_ms(id);
    let state = backend.state();
    f(&Reader {
        state: &state,
        actor,
        last_seen: &last_seen,
    })
}
