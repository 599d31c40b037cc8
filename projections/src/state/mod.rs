//! The state folded from the log. `apply` only folds: it never validates and never
//! fails, and ignores events about unknown ids (all rules live in `decide`).

mod catalog;
mod deployment;
mod invariants;
mod node;
mod snapshot;

use std::collections::BTreeMap;

use dcloud_events::model::LibraryCatalog;
use dcloud_events::{Envelope, Event};
use serde::Serialize;

pub use catalog::{
    dataset_keys, DatasetCatalog, EnvVersion, Environment, Service, Template, Token,
};
pub use deployment::{
    need_of, BuildProgress, Deployment, DeploymentStatus, Failure, PlacementRecord, StatusEntry,
};
pub use node::{port_key, port_of_key, GpuSlot, Node, NodeHealth};
pub use snapshot::SnapshotError;

pub(crate) use node::Slot;

/// Everything DCloud knows, as of [`State::last_seq`]. Read the fields freely; change
/// the state only through [`State::apply`].
#[derive(
    Debug, Clone, Default, PartialEq, Eq, Serialize, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize,
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
    pub datasets: DatasetCatalog,
    pub services: BTreeMap<String, Service>,
    pub deployments: BTreeMap<String, Deployment>,
    /// Deployments waiting to be placed, in arrival order (key: `requested_seq`).
    pub pending: BTreeMap<u64, String>,
    pub tokens: BTreeMap<String, Token>,
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
        self.node_index.get(id).and_then(|&s| self.nodes.get(s as usize))
    }

    /// Nodes in id order.
    pub fn nodes_by_id(&self) -> impl Iterator<Item = &Node> {
        self.node_index.values().filter_map(|&s| self.nodes.get(s as usize))
    }

    pub fn deployment(&self, id: &str) -> Option<&Deployment> {
        self.deployments.get(id)
    }

    /// The live (not deleted) environment `id`.
    pub fn environment(&self, id: &str) -> Option<&Environment> {
        self.environments.get(id).filter(|e| !e.deleted)
    }

    /// The spec a deployment runs.
    pub fn deployment_spec(&self, d: &Deployment) -> Option<&dcloud_events::model::EnvironmentSpec> {
        self.environments.get(&d.env_id).and_then(|e| e.spec_at(d.env_version))
    }

    /// The unrevoked token whose secret hashes to `hash`.
    pub fn token_by_secret_hash(&self, hash: &[u8; 32]) -> Option<&Token> {
        self.tokens.values().find(|t| !t.revoked && &t.secret_hash == hash)
    }

    /// Pending deployments in arrival order.
    pub fn pending_in_order(&self) -> impl Iterator<Item = &Deployment> {
        self.pending.values().filter_map(|id| self.deployments.get(id))
    }

    /// Recomputes the derived placement summaries (after loading a snapshot).
    pub(crate) fn rebuild_slots(&mut self) {
        self.slots = self.nodes.iter().map(Node::summary).collect();
    }

    fn touch(&mut self, slot: u32) {
        let i = slot as usize;
        if let Some(n) = self.nodes.get(i) {
            let s = n.summary();
            if i < self.slots.len() {
                self.slots[i] = s;
            } else {
                self.slots.push(s);
            }
        }
    }

    fn node_mut(&mut self, id: &str) -> Option<&mut Node> {
        let slot = *self.node_index.get(id)?;
        self.nodes.get_mut(slot as usize)
    }

    /// Folds one envelope into the state.
    pub fn apply(&mut self, env: &Envelope) {
        self.last_seq = env.seq;
        let (seq, t) = (env.seq, env.time_ms);
        match &env.event {
            Event::EnvironmentCreated { env_id, owner, spec } => {
                self.environments.entry(env_id.clone()).or_insert_with(|| Environment {
                    id: env_id.clone(),
                    owner: owner.clone(),
                    versions: vec![EnvVersion { version: 1, spec: spec.clone(), seq, time_ms: t }],
                    active: spec.is_active,
                    deleted: false,
                    created_ms: t,
                    updated_ms: t,
                });
            }
            Event::EnvironmentUpdated { env_id, version, spec } => {
                if let Some(e) = self.environments.get_mut(env_id) {
                    e.versions.push(EnvVersion { version: *version, spec: spec.clone(), seq, time_ms: t });
                    e.active = spec.is_active;
                    e.updated_ms = t;
                }
            }
            Event::EnvironmentDeactivated { env_id } => {
                if let Some(e) = self.environments.get_mut(env_id) {
                    e.active = false;
                    e.updated_ms = t;
                }
            }
            Event::EnvironmentDeleted { env_id } => {
                if let Some(e) = self.environments.get_mut(env_id) {
                    e.active = false;
                    e.deleted = true;
                    e.updated_ms = t;
                }
            }
            Event::TemplateSaved { name, owner, spec } => {
                let tpl = Template { name: name.clone(), owner: owner.clone(), spec: spec.clone(), saved_ms: t };
                self.templates.insert(name.clone(), tpl);
            }
            Event::TemplateDeleted { name } => {
                self.templates.remove(name);
            }
            Event::CatalogUpserted { catalog } => {
                self.catalogs.insert(catalog.os.clone(), catalog.clone());
            }
            Event::DatasetsRegistered { category } => self.datasets.register(category),
            Event::DatasetRemoved { category, db, dataset, version } => {
                self.datasets.remove(category, db, dataset, version);
            }
            Event::ServiceRegistered { service } => {
                let s = Service { registration: service.clone(), registered_ms: t, refreshed_ms: t };
                self.services.insert(service.name.clone(), s);
            }
            Event::ServiceRefreshed { name } => {
                if let Some(s) = self.services.get_mut(name) {
                    s.refreshed_ms = t;
                }
            }
            Event::ServiceDeregistered { name } | Event::ServiceExpired { name } => {
                self.services.remove(name);
            }
            Event::NodeRegistered { node_id, fingerprint } => {
                let slot = match self.node_index.get(node_id) {
                    Some(&slot) => {
                        if let Some(n) = self.nodes.get_mut(slot as usize) {
                            n.reregister(fingerprint.clone(), t);
                        }
                        slot
                    }
                    None => {
                        let slot = self.nodes.len() as u32;
                        self.nodes.push(Node::new(node_id, slot, fingerprint.clone(), t));
                        self.node_index.insert(node_id.clone(), slot);
                        slot
                    }
                };
                self.touch(slot);
            }
            Event::NodeHeartbeat { node_id, usage, containers, engine_ok } => {
                if let Some(n) = self.node_mut(node_id) {
                    n.last_heartbeat_ms = Some(t);
                    n.usage = usage.clone();
                    n.containers = containers.clone();
                    n.engine_ok = *engine_ok;
                }
            }
            Event::NodeLost { node_id } => self.set_node(node_id, |n| n.health = NodeHealth::Lost),
            Event::NodeDrained { node_id } => self.set_node(node_id, |n| n.draining = true),
            Event::NodeUndrained { node_id } => self.set_node(node_id, |n| n.draining = false),
            Event::DeploymentRequested { deployment_id, env_id, env_version, owner, policy } => {
                if self.deployments.contains_key(deployment_id) {
                    return;
                }
                let spec = self.environments.get(env_id).and_then(|e| e.spec_at(*env_version));
                let d = Deployment::requested(
                    deployment_id,
                    env_id,
                    *env_version,
                    owner,
                    *policy,
                    spec,
                    (seq, t),
                );
                self.pending.insert(seq, deployment_id.clone());
                self.deployments.insert(deployment_id.clone(), d);
            }
            Event::DeploymentScheduled { deployment_id: id, .. }
            | Event::DeploymentUnschedulable { deployment_id: id, .. }
            | Event::DeploymentStopRequested { deployment_id: id }
            | Event::DeploymentLost { deployment_id: id, .. }
            | Event::DeploymentStopped { deployment_id: id }
            | Event::ImageBuildStarted { deployment_id: id, .. }
            | Event::ImageBuildProgress { deployment_id: id, .. }
            | Event::ImageBuildFailed { deployment_id: id, .. }
            | Event::ImageReady { deployment_id: id, .. }
            | Event::ContainerCreated { deployment_id: id, .. }
            | Event::ContainerStarted { deployment_id: id }
            | Event::ContainerExited { deployment_id: id, .. }
            | Event::ContainerOomKilled { deployment_id: id }
            | Event::ContainerRemoved { deployment_id: id }
            | Event::ContainerFailed { deployment_id: id, .. } => {
                self.apply_deployment(id, &env.event, seq, t);
            }
            Event::TokenCreated { token_id, name, role, secret_hash, node_id } => {
                self.tokens.entry(token_id.clone()).or_insert_with(|| Token {
                    id: token_id.clone(),
                    name: name.clone(),
                    role: *role,
                    secret_hash: *secret_hash,
                    node_id: node_id.clone(),
                    revoked: false,
                    created_ms: t,
                });
            }
            Event::TokenRevoked { token_id } => {
                if let Some(tok) = self.tokens.get_mut(token_id) {
                    tok.revoked = true;
                }
            }
        }
    }

    fn set_node(&mut self, id: &str, f: impl FnOnce(&mut Node)) {
        if let Some(n) = self.node_mut(id) {
            f(n);
            let slot = n.slot;
            self.touch(slot);
        }
    }

    /// Folds a deployment event, then moves its booking and queue entry to match the
    /// status before and after.
    fn apply_deployment(&mut self, id: &str, event: &Event, seq: u64, t: i64) {
        if let Event::DeploymentScheduled { node_id, .. } = event {
            if !self.node_index.contains_key(node_id) {
                return; // a decision about an unknown node: nothing to fold
            }
        }
        let Some(d) = self.deployments.get_mut(id) else { return };
        let held_before = d.status.holds_resources().then(|| d.node.clone()).flatten();
        let queued_before = d.status.is_queued();
        d.fold(event, seq, t);
        let held_after = d.status.holds_resources().then(|| d.node.clone()).flatten();
        let queued_after = d.status.is_queued();
        let d = &*d;
        if queued_before && !queued_after {
            self.pending.remove(&d.requested_seq);
        } else if queued_after && !queued_before {
            self.pending.insert(d.requested_seq, d.id.clone());
        }
        if held_before == held_after {
            return;
        }
        let mut touched = Vec::with_capacity(2);
        if let Some(node) = &held_before {
            if let Some(&slot) = self.node_index.get(node) {
                if let Some(n) = self.nodes.get_mut(slot as usize) {
                    n.release(&d.id, &d.need, &d.ports);
                    touched.push(slot);
                }
            }
        }
        if let Some(node) = &held_after {
            if let Some(&slot) = self.node_index.get(node) {
                if let Some(n) = self.nodes.get_mut(slot as usize) {
                    n.allocate(&d.id, &d.need, &d.gpus, &d.ports);
                    touched.push(slot);
                }
            }
        }
        for slot in touched {
            self.touch(slot);
        }
    }
}
