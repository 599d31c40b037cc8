//! `checkpoint`: the server's last signed checkpoint of the log's head, for auditors
//! to keep elsewhere and check with `dcloud audit verify --expect-head`.

use async_graphql::{Context, Object, Result, SimpleObject};

use crate::auth::{actor, require_sees_all};
use crate::error::Gql;
use crate::schema::backend;

/// `(seq, chainHash)` signed with the server's ed25519 key over
/// `"dcloud checkpoint v1\0" ‖ seq (u64 BE) ‖ chain hash ‖ timeMs (i64 BE)`.
#[derive(Debug, Clone, PartialEq, Eq, SimpleObject)]
pub struct HeadCheckpoint {
    pub seq: u64,
    /// Hex hash of the envelope at `seq`.
    pub chain_hash: String,
    pub time_ms: i64,
    /// Hex ed25519 public key of the server.
    pub public_key: String,
    /// Hex ed25519 signature.
    pub signature: String,
}

#[derive(Default)]
pub struct CheckpointQuery;

#[Object]
impl CheckpointQuery {
    /// The last signed checkpoint of the log's head this server wrote (null before
    /// the first). Admins and auditors.
    async fn checkpoint(&self, ctx: &Context<'_>) -> Result<Option<HeadCheckpoint>> {
        let run = async {
            require_sees_all(actor(ctx)?, "the checkpoint")?;
            Ok(backend(ctx)?.checkpoint())
        };
        run.await.gql(ctx)
    }
}
