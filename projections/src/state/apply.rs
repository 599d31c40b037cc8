//! `State::apply`: folding one envelope into the state, and the derived bookkeeping
//! it keeps in step (node bookings, the pending queue, placement summaries, node
//! order numbers).

use std::ops::Bound;

use dcloud_events::{Envelope, Event};

use super::{
    Deployment, EnvVersion, Environment, JoinToken, Node, Queued, Service, State, Template, Token,
};

impl State {
    /// Recomputes the derived placement summaries (after loading a snapshot).
    pub(crate) fn rebuild_slots(&mut self) {
        self.slots = self.nodes.iter().map(Node::summary).collect();
    }

    /// Recomputes everything derived that snapshots do not store: the placement
    /// summaries and the token index.
    pub(crate) fn rebuild_derived(&mut self) {
        self.rebuild_slots();
        self.token_index = self
            .tokens
            .values()
            .map(|t| (t.secret_hash, t.id.clone()))
            .chain(
                self.join_tokens
                    .values()
                    .map(|t| (t.secret_hash, t.id.clone())),
            )
            .collect();
    }

    fn add_token(&mut self, token: Token) {
        if self.tokens.contains_key(&token.id) || self.join_tokens.contains_key(&token.id) {
            return;
        }
        self.token_index
            .entry(token.secret_hash)
            .or_insert_with(|| token.id.clone());
        self.tokens.insert(token.id.clone(), token);
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

    /// Gives a new node an order number between its neighbours in id order; when
    /// there is no room left between them, renumbers every node (rare).
    fn number_node(&mut self, id: &str, slot: u32) {
        const STEP: u64 = 1 << 32;
        let order_of = |s: Option<(&String, &u32)>| {
            s.and_then(|(_, &s)| self.nodes.get(s as usize))
                .map(|n| n.order)
        };
        use std::ops::Bound::{Excluded, Unbounded};
        let below: (Bound<&str>, Bound<&str>) = (Unbounded, Excluded(id));
        let above: (Bound<&str>, Bound<&str>) = (Excluded(id), Unbounded);
        let before = order_of(self.node_index.range::<str, _>(below).next_back());
        let after = order_of(self.node_index.range::<str, _>(above).next());
        let order = match (before, after) {
            (None, None) => Some(STEP),
            (Some(b), None) => b.checked_add(STEP),
            (None, Some(a)) if a > STEP => Some(a - STEP),
            (b, Some(a)) => {
                let b = b.unwrap_or(0);
                (a.saturating_sub(b) >= 2).then(|| b + (a - b) / 2)
            }
        };
        match order {
            Some(order) => {
                if let Some(n) = self.nodes.get_mut(slot as usize) {
                    n.order = order;
                }
            }
            None => {
                for (i, &s) in self.node_index.values().enumerate() {
                    if let Some(n) = self.nodes.get_mut(s as usize) {
                        n.order = (i as u64 + 1) * STEP;
                    }
                }
                self.rebuild_slots();
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
            Event::EnvironmentCreated {
                env_id,
                owner,
                spec,
            } => {
                self.environments
                    .entry(env_id.clone())
                    .or_insert_with(|| Environment {
                        id: env_id.clone(),
                        owner: owner.clone(),
                        versions: vec![EnvVersion {
                            version: 1,
                            spec: spec.clone(),
                            seq,
                            time_ms: t,
                        }],
                        active: spec.is_active,
                        deleted: false,
                        created_ms: t,
                        updated_ms: t,
                    });
            }
            Event::EnvironmentUpdated {
                env_id,
                version,
                spec,
            } => {
                if let Some(e) = self.environments.get_mut(env_id) {
                    e.versions.push(EnvVersion {
                        version: *version,
                        spec: spec.clone(),
                        seq,
                        time_ms: t,
                    });
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
                let tpl = Template {
                    name: name.clone(),
                    owner: owner.clone(),
                    spec: spec.clone(),
                    saved_ms: t,
                    idle_timeout_ms: 0,
                };
                self.templates.insert(name.clone(), tpl);
            }
            Event::TemplateDeleted { name } => {
                self.templates.remove(name);
            }
            Event::TemplateIdleTimeoutSet { name, timeout_ms } => {
                if let Some(tpl) = self.templates.get_mut(name) {
                    tpl.idle_timeout_ms = *timeout_ms;
                }
            }
            Event::CatalogUpserted { catalog } => {
                self.catalogs.insert(catalog.os.clone(), catalog.clone());
                self.catalog_services.remove(&catalog.os);
            }
            Event::CatalogServicesSet { os, services } => {
                if self.catalogs.contains_key(os) && !services.is_empty() {
                    self.catalog_services.insert(os.clone(), services.clone());
                }
            }
            Event::DatasetsRegistered { category } => self.datasets.register(category),
            Event::DatasetRemoved {
                category,
                db,
                dataset,
                version,
            } => {
                self.datasets.remove(category, db, dataset, version);
            }
            Event::ServiceRegistered { service } => {
                let s = Service {
                    registration: service.clone(),
                    registered_ms: t,
                    refreshed_ms: t,
                };
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
            Event::NodeRegistered {
                node_id,
                fingerprint,
            } => {
                let slot = match self.node_index.get(node_id) {
                    Some(&slot) => {
                        if let Some(n) = self.nodes.get_mut(slot as usize) {
                            n.reregister(fingerprint.clone(), t);
                        }
                        slot
                    }
                    None => {
                        let slot = self.nodes.len() as u32;
                        self.nodes
                            .push(Node::new(node_id, slot, fingerprint.clone(), t));
                        self.node_index.insert(node_id.clone(), slot);
                        self.number_node(node_id, slot);
                        slot
                    }
                };
                self.touch(slot);
            }
            Event::NodeHeartbeat {
                node_id,
                usage,
                containers,
                engine_ok,
            } => {
                if let Some(n) = self.node_mut(node_id) {
                    n.last_heartbeat_ms = Some(t);
                    n.usage = usage.clone();
                    n.containers = containers.clone();
                    n.engine_ok = *engine_ok;
                }
            }
            Event::NodeAddressReported { node_id, address } => {
                self.set_node(node_id, |n| n.address = Some(address.clone()))
            }
            Event::NodeLost { node_id } => self.set_node(node_id, |n| n.lose(t)),
            Event::NodeDrained { node_id } => self.set_node(node_id, |n| n.draining = true),
            Event::NodeUndrained { node_id } => self.set_node(node_id, |n| n.draining = false),
            Event::DeploymentRequested {
                deployment_id,
                env_id,
                env_version,
                owner,
                policy,
            } => {
                if self.deployments.contains_key(deployment_id) {
                    return;
                }
                let spec = self
                    .environments
                    .get(env_id)
                    .and_then(|e| e.spec_at(*env_version));
                let d = Deployment::requested(
                    deployment_id,
                    env_id,
                    *env_version,
                    owner,
                    *policy,
                    spec,
                    (seq, t),
                );
                self.pending.insert(
                    seq,
                    Queued {
                        id: deployment_id.clone(),
                        need: d.need.clone(),
                    },
                );
                self.deployments.insert(deployment_id.clone(), d);
            }
            Event::DeploymentScheduled {
                deployment_id: id, ..
            }
            | Event::DeploymentUnschedulable {
                deployment_id: id, ..
            }
            | Event::DeploymentStopRequested { deployment_id: id }
            | Event::DeploymentLost {
                deployment_id: id, ..
            }
            | Event::DeploymentStopped { deployment_id: id }
            | Event::ImageBuildStarted {
                deployment_id: id, ..
            }
            | Event::ImageBuildProgress {
                deployment_id: id, ..
            }
            | Event::ImageBuildFailed {
                deployment_id: id, ..
            }
            | Event::ImageReady {
                deployment_id: id, ..
            }
            | Event::ContainerCreated {
                deployment_id: id, ..
            }
            | Event::ContainerStarted { deployment_id: id }
            | Event::ContainerExited {
                deployment_id: id, ..
            }
            | Event::ContainerOomKilled { deployment_id: id }
            | Event::ContainerRemoved { deployment_id: id }
            | Event::ContainerFailed {
                deployment_id: id, ..
            }
            | Event::ContainerOomWarning {
                deployment_id: id, ..
            }
            | Event::StaleContainerRemoved {
                deployment_id: id, ..
            }
            | Event::DeploymentQuotaWaiting {
                deployment_id: id, ..
            }
            | Event::ContainerOutput {
                deployment_id: id, ..
            }
            | Event::VolumeUsageReported {
                deployment_id: id, ..
            } => {
                self.apply_deployment(id, &env.event, seq, t);
            }
            Event::ClusterCreated { cluster_id } => {
                if self.cluster_id.is_none() {
                    self.cluster_id = Some(cluster_id.clone());
                }
            }
            Event::DatasetStorageSet { category, shared } => match shared {
                Some(shared) => {
                    self.dataset_storage
                        .insert(category.clone(), shared.clone());
                }
                None => {
                    self.dataset_storage.remove(category);
                }
            },
            Event::TokenCreated {
                token_id,
                name,
                role,
                secret_hash,
                node_id,
            } => self.add_token(Token {
                id: token_id.clone(),
                name: name.clone(),
                role: *role,
                secret_hash: *secret_hash,
                node_id: node_id.clone(),
                revoked: false,
                created_ms: t,
                expires_ms: None,
            }),
            Event::TokenCreatedV2 {
                token_id,
                name,
                role,
                secret_hash,
                node_id,
                expires_ms,
            } => self.add_token(Token {
                id: token_id.clone(),
                name: name.clone(),
                role: *role,
                secret_hash: *secret_hash,
                node_id: node_id.clone(),
                revoked: false,
                created_ms: t,
                expires_ms: *expires_ms,
            }),
            Event::TokenRevoked { token_id } => {
                if let Some(tok) = self.tokens.get_mut(token_id) {
                    tok.revoked = true;
                } else if let Some(tok) = self.join_tokens.get_mut(token_id) {
                    tok.revoked = true;
                }
            }
            // Audit facts and settings the server's session relay and idle timer keep
            // (see `crate::idle`); the state's shape stays as released.
            Event::DeploymentLogsOpened { .. }
            | Event::ExecSessionStarted { .. }
            | Event::ExecSessionEnded { .. }
            | Event::EnvironmentIdleTimeoutSet { .. }
            | Event::DeploymentIdleStopped { .. } => {}
            Event::QuotaSet { user, quota } => {
                if quota.is_unlimited() {
                    self.quotas.remove(user);
                } else {
                    self.quotas.insert(user.clone(), quota.clone());
                }
            }
            Event::JoinTokenCreated {
                token_id,
                name,
                secret_hash,
                expires_ms,
                uses,
            } => {
                if !self.tokens.contains_key(token_id) && !self.join_tokens.contains_key(token_id) {
                    self.token_index
                        .entry(*secret_hash)
                        .or_insert_with(|| token_id.clone());
                    self.join_tokens.insert(
                        token_id.clone(),
                        JoinToken {
                            id: token_id.clone(),
                            name: name.clone(),
                            secret_hash: *secret_hash,
                            revoked: false,
                            created_ms: t,
                            expires_ms: *expires_ms,
                            uses: *uses,
                            uses_left: *uses,
                            joined: Vec::new(),
                        },
                    );
                }
            }
            Event::NodeJoined {
                join_token_id,
                node_id,
                token_id,
                secret_hash,
                expires_ms,
            } => {
                if let Some(j) = self.join_tokens.get_mut(join_token_id) {
                    j.uses_left = j.uses_left.saturating_sub(1);
                    j.joined.push(node_id.clone());
                }
                self.add_token(Token {
                    id: token_id.clone(),
                    name: format!("agent-{node_id}"),
                    role: dcloud_events::model::Role::Agent,
                    secret_hash: *secret_hash,
                    node_id: Some(node_id.clone()),
                    revoked: false,
                    created_ms: t,
                    expires_ms: *expires_ms,
                });
            }
            // Read by the writer (its idempotency window), not by the state.
            Event::RequestKeyRecorded { .. } => {}
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
        let Some(d) = self.deployments.get_mut(id) else {
            return;
        };
        let held_before = d.status.holds_resources().then(|| d.node.clone()).flatten();
        let queued_before = d.status.is_queued();
        d.fold(event, seq, t);
        let held_after = d.status.holds_resources().then(|| d.node.clone()).flatten();
        let queued_after = d.status.is_queued();
        let d = &*d;
        if queued_before && !queued_after {
            self.pending.remove(&d.requested_seq);
        } else if queued_after && !queued_before {
            self.pending.insert(
                d.requested_seq,
                Queued {
                    id: d.id.clone(),
                    need: d.need.clone(),
                },
            );
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use dcloud_events::model::{NodeFingerprint, Resources};
    use dcloud_events::{GENESIS_HASH, SCHEMA_VERSION};

    fn register(state: &mut State, id: &str) {
        let fingerprint = NodeFingerprint {
            hostname: id.into(),
            os: "linux".into(),
            capacity: Resources::default(),
            reserved: Resources::default(),
            gpus: vec![],
            labels: BTreeMap::new(),
            datasets: vec![],
            agent_version: "t".into(),
        };
        let seq = state.last_seq() + 1;
        state.apply(&Envelope {
            seq,
            time_ms: 0,
            actor: "t".into(),
            correlation: String::new(),
            schema: SCHEMA_VERSION,
            prev_hash: GENESIS_HASH,
            hash: GENESIS_HASH,
            event: Event::NodeRegistered {
                node_id: id.into(),
                fingerprint,
            },
        });
    }

    #[test]
    fn node_order_numbers_sort_like_ids_even_when_room_runs_out() {
        let mut state = State::new();
        register(&mut state, "a");
        register(&mut state, "b");
        // Each new id sorts just before "b": the gap halves until a renumbering.
        let mut id = "a".to_string();
        for _ in 0..100 {
            id.push('a');
            register(&mut state, &id);
            let orders: Vec<u64> = state.nodes_by_id().map(|n| n.order).collect();
            assert!(orders.windows(2).all(|w| w[0] < w[1]), "{orders:?}");
        }
        for id in ["0", "zz", "c", "ab", "ba"] {
            register(&mut state, id);
        }
        assert_eq!(state.check_invariants(), Ok(()));
        assert_eq!(state.nodes.len(), 107);
    }

    #[test]
    fn events_about_unknown_ids_are_ignored() {
        let mut state = State::new();
        let env = |seq, event| Envelope {
            seq,
            time_ms: 0,
            actor: "t".into(),
            correlation: String::new(),
            schema: SCHEMA_VERSION,
            prev_hash: GENESIS_HASH,
            hash: GENESIS_HASH,
            event,
        };
        state.apply(&env(
            1,
            Event::ContainerStarted {
                deployment_id: "nope".into(),
            },
        ));
        state.apply(&env(
            2,
            Event::NodeLost {
                node_id: "nope".into(),
            },
        ));
        state.apply(&env(
            3,
            Event::EnvironmentDeleted {
                env_id: "nope".into(),
            },
        ));
        assert_eq!(state.last_seq(), 3);
        let mut empty = State::new();
        empty.last_seq = 3;
        assert_eq!(state, empty);
    }
}
