//! The state folded from the log. `apply` only folds: it never validates and never
//! fails, and ignores events about unknown ids (all rules live in `decide`).

mod apply;
mod catalog;
mod deployment;
mod invariants;
mod node;
mod quota;
mod snapshot;

use std::collections::BTreeMap;

use dcloud_events::model::{LibraryCatalog, LibraryService, Quota, SharedStorage};
use serde::Serialize;

pub use catalog::{
    dataset_category, dataset_keys, DatasetCatalog, EnvVersion, Environment, JoinToken, Service,
    Template, Token,
};
pub use deployment::{
    need_of, BuildProgress, Deployment, DeploymentStatus, Failure, PlacementRecord, Queued,
    StatusEntry, Warning, MAX_WARNINGS,
};
pub use node::{port_key, port_of_key, GpuSlot, Node, NodeHealth};
pub use quota::{quota_excess, QuotaUsage};
pub use snapshot::{SnapshotError, FOLD_FINGERPRINT, SNAPSHOT_HEADER_LEN};

pub(crate) use node::{Recip, Slot};

/// Everything DCloud knows, as of [`State::last_seq`]. Read the fields freely; change
/// the state only through [`State::apply`].
#[derive(
    Debug,
    Clone,
    Default,
    PartialEq,
    Eq,
    Serialize,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
)]
pub struct State {
    last_seq: u64,
    /// Nodes in registration order (`nodes[n.slot] == n`); look up by id with
    /// [`State::node`] or walk in id order with [`State::nodes_by_id`].
    pub nodes: Vec<Node>,
    /// Node id → its position in `nodes`.
    pub node_index: BTreeMap<String, u32>,
    pub environments: BTreeMap<String, Environment>,
    pub templates: BTreeMap<String, Template>,
    /// Library catalog per os.
    pub catalogs: BTreeMap<String, LibraryCatalog>,
    /// The services the libraries of each os's catalog declare.
    pub catalog_services: BTreeMap<String, Vec<LibraryService>>,
    pub datasets: DatasetCatalog,
    /// Categories whose datasets are on shared storage every node reaches.
    pub dataset_storage: BTreeMap<String, SharedStorage>,
    /// This log's cluster id (see `ClusterCreated`).
    pub cluster_id: Option<String>,
    pub services: BTreeMap<String, Service>,
    pub deployments: BTreeMap<String, Deployment>,
    /// Deployments waiting to be placed, in arrival order (key: `requested_seq`).
    pub pending: BTreeMap<u64, Queued>,
    pub tokens: BTreeMap<String, Token>,
    /// Per-user limits set by admins (users without an entry are unlimited).
    pub quotas: BTreeMap<String, Quota>,
    /// Join tokens (they authenticate nothing but `joinNode`).
    pub join_tokens: BTreeMap<String, JoinToken>,
    /// Secret hash → id, of every token and join token (derived; rebuilt on load), so
    /// authenticating a request is one lookup, not a scan of every token.
    #[rkyv(with = rkyv::with::Skip)]
    #[serde(skip)]
    pub(crate) token_index: BTreeMap<[u8; 32], String>,
    /// Dense copy of what placement reads of each node (derived; rebuilt on load).
    #[rkyv(with = rkyv::with::Skip)]
    #[serde(skip)]
    pub(crate) slots: Vec<Slot>,
}

impl State {
    pub fn new() -> State {
        State::default()
    }

    /// The sequence number of the last applied envelope (0 when empty).
    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }

    pub fn node(&self, id: &str) -> Option<&Node> {
        self.node_index
            .get(id)
            .and_then(|&s| self.nodes.get(s as usize))
    }

    /// Nodes in id order.
    pub fn nodes_by_id(&self) -> impl Iterator<Item = &Node> {
        self.node_index
            .values()
            .filter_map(|&s| self.nodes.get(s as usize))
    }

    pub fn deployment(&self, id: &str) -> Option<&Deployment> {
        self.deployments.get(id)
    }

    /// The live (not deleted) environment `id`.
    pub fn environment(&self, id: &str) -> Option<&Environment> {
        self.environments.get(id).filter(|e| !e.deleted)
    }

    /// The spec a deployment runs.
    pub fn deployment_spec(
        &self,
        d: &Deployment,
    ) -> Option<&dcloud_events::model::EnvironmentSpec> {
        self.environments
            .get(&d.env_id)
            .and_then(|e| e.spec_at(d.env_version))
    }

    /// The unrevoked token whose secret hashes to `hash` (it may have expired: see
    /// [`Token::is_valid_at`]). One index lookup.
    pub fn token_by_secret_hash(&self, hash: &[u8; 32]) -> Option<&Token> {
        self.token_index
            .get(hash)
            .and_then(|id| self.tokens.get(id))
            .filter(|t| !t.revoked && &t.secret_hash == hash)
    }

    /// The unrevoked join token whose secret hashes to `hash` (it may be spent or
    /// expired: see [`JoinToken::is_usable_at`]).
    pub fn join_token_by_secret_hash(&self, hash: &[u8; 32]) -> Option<&JoinToken> {
        self.token_index
            .get(hash)
            .and_then(|id| self.join_tokens.get(id))
            .filter(|t| !t.revoked && &t.secret_hash == hash)
    }

    /// Pending deployments in arrival order.
    pub fn pending_in_order(&self) -> impl Iterator<Item = &Deployment> {
        self.pending
            .values()
            .filter_map(|q| self.deployments.get(&q.id))
    }

    /// What `owner`'s live deployments need, counted against their quota: every
    /// deployment not finished (pending ones included) except those waiting for quota.
    pub fn quota_usage(&self, owner: &str) -> QuotaUsage {
        let mut u = QuotaUsage::default();
        for d in self.deployments.values() {
            if d.owner == owner && d.counts_against_quota() {
                u.add(&d.need);
            }
        }
        u
    }

    /// Ids of the pending deployments in arrival order.
    pub fn pending_ids(&self) -> impl Iterator<Item = &str> {
        self.pending.values().map(|q| q.id.as_str())
    }
}
