//! A decision in progress: the events decided so far, and copies of the nodes they
//! change, so that later steps of the same decision (placing the pending queue after
//! capacity frees) see the earlier ones. Node changes go through the same `Node`
//! methods `apply` uses, so the two cannot drift apart.

use std::collections::{BTreeMap, BTreeSet};

use dcloud_events::model::{EnvironmentSpec, NodeFingerprint, PlacementPolicy, Resources};
use dcloud_events::Event;

use crate::command::Ctx;
use crate::error::DomainError;
use crate::placement::{fits_any, place_in, Decision, PlacementRequest, View};
use crate::state::{quota_excess, Deployment, Node, QuotaUsage, Slot, State};

pub(crate) struct Scratch<'s> {
    pub(crate) state: &'s State,
    pub(crate) ctx: &'s Ctx,
    overlay: BTreeMap<u32, Node>,
    new_ids: BTreeMap<String, u32>,
    /// Nodes that gained capacity or feasibility in this decision.
    gained: BTreeSet<u32>,
    /// Deployments sent back to the queue in this decision, by arrival.
    requeued: BTreeMap<u64, String>,
    /// Deployments that stopped counting against their owner's quota in this decision.
    ended: BTreeSet<String>,
    /// Deployments that waited for quota and were placed in this decision.
    admitted: BTreeSet<String>,
    /// Some user's quota gained room (usage fell or the quota changed): deployments
    /// waiting for quota are tried even when no node gained capacity.
    relief: bool,
    events: Vec<Event>,
}

impl<'s> Scratch<'s> {
    pub(crate) fn new(state: &'s State, ctx: &'s Ctx) -> Self {
        Scratch {
            state,
            ctx,
            overlay: BTreeMap::new(),
            new_ids: BTreeMap::new(),
            gained: BTreeSet::new(),
            requeued: BTreeMap::new(),
            ended: BTreeSet::new(),
            admitted: BTreeSet::new(),
            relief: false,
            events: Vec::new(),
        }
    }

    pub(crate) fn into_events(self) -> Vec<Event> {
        self.events
    }

    pub(crate) fn emit(&mut self, event: Event) {
        self.events.push(event);
    }

    pub(crate) fn view(&self) -> View<'_> {
        View {
            state: self.state,
            overlay: &self.overlay,
        }
    }

    pub(crate) fn slot_of(&self, node_id: &str) -> Option<u32> {
        self.state
            .node_index
            .get(node_id)
            .or_else(|| self.new_ids.get(node_id))
            .copied()
    }

    pub(crate) fn node(&self, slot: u32) -> Option<&Node> {
        self.overlay
            .get(&slot)
            .or_else(|| self.state.nodes.get(slot as usize))
    }

    pub(crate) fn node_mut(&mut self, slot: u32) -> Option<&mut Node> {
        if !self.overlay.contains_key(&slot) {
            let base = self.state.nodes.get(slot as usize)?.clone();
            self.overlay.insert(slot, base);
        }
        self.overlay.get_mut(&slot)
    }

    /// A node first registered in this decision.
    pub(crate) fn add_node(&mut self, id: &str, fingerprint: NodeFingerprint) {
        let slot = (self.state.nodes.len() + self.new_ids.len()) as u32;
        self.overlay
            .insert(slot, Node::new(id, slot, fingerprint, self.ctx.now_ms));
        self.new_ids.insert(id.to_string(), slot);
        self.gained.insert(slot);
    }

    /// Marks a node as able to take more than before (undrained, re-registered).
    pub(crate) fn gained(&mut self, slot: u32) {
        self.gained.insert(slot);
    }

    /// Gives back what `d` holds (as the state knew it before this decision).
    pub(crate) fn release(&mut self, d: &Deployment) {
        if !d.status.holds_resources() {
            return;
        }
        let Some(slot) = d.node.as_deref().and_then(|n| self.slot_of(n)) else {
            return;
        };
        if let Some(node) = self.node_mut(slot) {
            node.release(&d.id, &d.need, &d.ports);
            self.gained.insert(slot);
        }
    }

    /// `d` no longer counts against its owner's quota (finished, or stopped while
    /// queued).
    pub(crate) fn ended(&mut self, d: &Deployment) {
        if d.counts_against_quota() {
            self.ended.insert(d.id.clone());
            self.relief |= self.state.quotas.contains_key(&d.owner);
        }
    }

    /// `user`'s quota changed: try what waits for it.
    pub(crate) fn quota_relief(&mut self, _user: &str) {
        self.relief = true;
    }

    /// `owner`'s quota usage as of this decision so far.
    pub(crate) fn quota_usage(&self, owner: &str) -> QuotaUsage {
        let mut u = QuotaUsage::default();
        for d in self.state.deployments.values() {
            if d.owner != owner {
                continue;
            }
            let counted = d.counts_against_quota() && !self.ended.contains(&d.id);
            if counted || self.admitted.contains(&d.id) {
                u.add(&d.need);
            }
        }
        u
    }

    /// Whether `d` (waiting for quota) fits in its owner's quota now. The quota as of
    /// this decision: a `QuotaSet` decided in it is read from its event.
    fn within_quota(&self, d: &Deployment) -> bool {
        let decided = self.events.iter().rev().find_map(|e| match e {
            Event::QuotaSet { user, quota } if *user == d.owner => Some(quota),
            _ => None,
        });
        match decided.or_else(|| self.state.quotas.get(&d.owner)) {
            None => true,
            Some(q) => quota_excess(q, &self.quota_usage(&d.owner), &d.need).is_none(),
        }
    }

    /// Sends `d` back to the queue (its node was lost).
    pub(crate) fn requeue(&mut self, d: &Deployment) {
        self.requeued.insert(d.requested_seq, d.id.clone());
    }

    /// The image tag of `spec`: its recipe's content hash.
    pub(crate) fn image_for(&self, spec: &EnvironmentSpec) -> Result<String, DomainError> {
        crate::config::recipe_for(
            spec,
            &self.state.catalogs,
            &self.ctx.settings.default_base_images,
        )
        .map(|r| r.tag)
        .map_err(DomainError::Validation)
    }

    /// Places deployment `id` (whose spec is `spec`) now if it fits anywhere. With
    /// `report`, a miss is recorded as `DeploymentUnschedulable`.
    pub(crate) fn try_place(
        &mut self,
        id: &str,
        spec: &EnvironmentSpec,
        policy: PlacementPolicy,
        image: Option<String>,
        report: bool,
    ) -> bool {
        let req = PlacementRequest::in_state(self.state, spec, policy);
        match place_in(&self.view(), &req) {
            Decision::Placed(p) => {
                let image = match image {
                    Some(i) => i,
                    // The catalog changed under a queued deployment: it waits.
                    None => match self.image_for(spec) {
                        Ok(i) => i,
                        Err(_) => return false,
                    },
                };
                if let Some(node) = self.node_mut(p.slot) {
                    node.allocate(id, &req.need, &p.gpus, &spec.ports);
                }
                self.emit(Event::DeploymentScheduled {
                    deployment_id: id.to_string(),
                    node_id: p.node_id,
                    gpus: p.gpus,
                    image,
                    score_milli: p.score_milli,
                    runners_up: p.runners_up,
                    rejected: p.rejected,
                    candidates: p.candidates,
                });
                true
            }
            Decision::Unschedulable { rejected } => {
                if report {
                    self.emit(Event::DeploymentUnschedulable {
                        deployment_id: id.to_string(),
                        rejected,
                    });
                }
                false
            }
        }
    }

    /// Tries the pending queue in arrival order after capacity freed.
    ///
    /// Every deployment already queued before this decision fitted nowhere when it was
    /// last tried, and nodes only gain room through this function's callers, so such
    /// a deployment can now fit only on a node in `gained`: it is checked against
    /// those first (resources from the queue entry, then labels and ports), and
    /// scanned in full only when one fits. Deployments requeued in this decision
    /// (lost nodes) and `full` retries are scanned in full.
    pub(crate) fn place_pending(&mut self, full: bool) {
        let state = self.state;
        let requeued = std::mem::take(&mut self.requeued);
        let mut gained = self.usable_gained();
        let relief = self.relief;
        let skip_base = !full && gained.is_empty() && !relief;
        let mut base = state.pending.iter().filter(|_| !skip_base).peekable();
        let mut fresh = requeued.iter().peekable();
        loop {
            let take_fresh = match (base.peek(), fresh.peek()) {
                (None, None) => break,
                (Some(_), None) => false,
                (None, Some(_)) => true,
                (Some((b, _)), Some((f, _))) => f < b,
            };
            let id = if take_fresh {
                fresh.next().map(|(_, id)| id.as_str())
            } else {
                let Some((_, q)) = base.next() else { continue };
                // Waiting for quota, not for room: it may fit on a node that gained
                // nothing, so it skips the gained-nodes shortcut.
                let for_quota = relief
                    && state
                        .deployments
                        .get(&q.id)
                        .is_some_and(Deployment::waits_for_quota);
                if !full && !for_quota && !gained.iter().any(|(_, s)| roughly_fits(s, &q.need)) {
                    continue;
                }
                Some(q.id.as_str())
            };
            let Some(d) = id.and_then(|id| state.deployments.get(id)) else {
                continue;
            };
            let waiting = d.waits_for_quota() && !self.admitted.contains(&d.id);
            if waiting && !self.within_quota(d) {
                continue;
            }
            let Some(spec) = state.deployment_spec(d) else {
                continue;
            };
            if !(take_fresh || full || waiting && relief) {
                let req = PlacementRequest::in_state(state, spec, d.policy);
                if !fits_any(&self.view(), &req, gained.iter().map(|(slot, _)| *slot)) {
                    continue;
                }
            }
            if self.try_place(&d.id, spec, d.policy, None, take_fresh && !full) {
                if waiting {
                    self.admitted.insert(d.id.clone());
                }
                gained = self.usable_gained();
            }
        }
    }

    /// Summaries of the gained nodes that can take anything (alive, not draining).
    fn usable_gained(&self) -> Vec<(u32, Slot)> {
        let view = self.view();
        self.gained
            .iter()
            .filter_map(|&slot| Some((slot, view.summary(slot)?)))
            .filter(|(_, s)| s.has(Slot::ALIVE) && !s.has(Slot::DRAINING))
            .collect()
    }
}

/// Resource-only pre-check (no labels or ports), cheap enough for a long queue.
fn roughly_fits(s: &Slot, need: &Resources) -> bool {
    s.free_cpu >= need.cpu_millis
        && s.free_mem >= need.memory_bytes
        && s.free_gpus >= need.gpus
        && s.free_storage >= need.storage_bytes
}
