//! [`Backend`]: the small handle the schema works through. `src/` implements it over
//! the single writer; tests implement it over a `State` and a temporary log.

use std::ops::Deref;
use std::sync::Arc;

use dcloud_events::{Envelope, EventLog, VerifyError, VerifyReport};
use dcloud_projections::{Actor, Command, Settings, State};
use futures::future::BoxFuture;

use crate::error::ApiError;
use crate::types::usage::UsageSample;

/// A read guard on the live state. Hold it only to copy out what a resolver needs:
/// never across an `.await` (the writer waits for it).
pub type StateGuard<'a> = Box<dyn Deref<Target = State> + 'a>;

/// What the schema needs from the server. Object safe: the schema holds an
/// `Arc<dyn Backend>`.
pub trait Backend: Send + Sync + 'static {
    /// Decides `cmd` as `actor` and makes its events durable; returns the envelopes
    /// appended for it (possibly none). A refusal is `ApiError::Domain`; a stopped
    /// writer or storage failure is `ApiError::Internal`. When the future resolves,
    /// [`Backend::state`] already shows the events.
    fn submit(
        &self,
        cmd: Command,
        actor: Actor,
        correlation: String,
    ) -> BoxFuture<'static, Result<Vec<Envelope>, ApiError>>;

    /// [`Backend::submit`] under an idempotency key (exactly-once requests): a key the
    /// backend has seen from the same actor within its window is answered with the
    /// envelopes the first submission appended, and nothing new is decided. The
    /// default ignores the key (backends without a durable key store).
    fn submit_keyed(
        &self,
        cmd: Command,
        actor: Actor,
        correlation: String,
        _key: String,
    ) -> BoxFuture<'static, Result<Vec<Envelope>, ApiError>> {
        self.submit(cmd, actor, correlation)
    }

    /// The last signed checkpoint of the log's head (`None`: none written yet, or a
    /// backend that signs none).
    fn checkpoint(&self) -> Option<crate::query::HeadCheckpoint> {
        None
    }

    /// The live state (only durable events are ever visible in it).
    fn state(&self) -> StateGuard<'_>;

    /// Follows the seq of the last event folded into the state [`Backend::state`]
    /// shows, when that can trail the log (the server folds an event after its append
    /// is durable). Subscriptions wait for it before reading the state for an event
    /// they took from the log. `None`: the state never trails the log.
    fn applied(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        None
    }

    /// The log: range reads for `events` and `at(seq:)`, tails for subscriptions.
    fn log(&self) -> Arc<dyn EventLog>;

    /// Walks the whole hash chain (slow: the schema calls it on a blocking thread).
    fn verify_chain(&self) -> Result<VerifyReport, VerifyError>;

    /// Wall-clock milliseconds (commands carry no time of their own; this stamps the
    /// `expired` flag of services and similar read-side checks).
    fn now_ms(&self) -> i64;

    /// A fresh unique id (environments, deployments, tokens, request ids).
    fn new_id(&self) -> String;

    /// 32 fresh random bytes, the secret of a new token.
    fn new_secret(&self) -> [u8; 32];

    /// The secret token of a deployment's service (Jupyter's `token`), derived from a
    /// server secret so that it is never written into the log. `None`: this backend
    /// hands out no tokens (services then run without one).
    fn service_token(&self, _deployment_id: &str) -> Option<String> {
        None
    }

    /// The settings commands are decided with (the schema reads the default base
    /// images, to give agents the same recipe `decide` hashed).
    fn settings(&self) -> Settings {
        Settings::default()
    }

    /// When the node's agent was last heard from, including heartbeats the log did not
    /// keep (liveness is tracked in memory between logged heartbeats). `None` when
    /// unknown: the schema then shows the last logged heartbeat.
    fn last_seen_ms(&self, _node_id: &str) -> Option<i64> {
        None
    }

    /// The logs and exec relay (`None`: this backend relays no sessions, and
    /// `deploymentLogs` of a running deployment is `UNAVAILABLE`).
    fn sessions(&self) -> Option<Arc<dyn crate::session::SessionRelay>> {
        None
    }

    /// The container's CPU and memory of `deployment_id` at each heartbeat the server
    /// received (logged or not), oldest first, as far back as it keeps them. Empty
    /// when unknown.
    fn usage_samples(&self, _deployment_id: &str) -> Vec<UsageSample> {
        Vec::new()
    }
}
