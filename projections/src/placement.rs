//! Placement: the scheduler's pure decision. Which nodes can take a request (alive, not
//! draining, labels, CPU, memory, GPUs, storage, ports), how each scores (spread or
//! bin-pack, plus a bonus for datasets already present), and why the others were
//! rejected. One linear scan over dense per-node summaries, no allocation per node.

use std::collections::BTreeMap;

use dcloud_events::model::{
    CandidateScore, EnvironmentSpec, PlacementPolicy, PortPublish, RejectCount, Resources,
};

use crate::state::{dataset_keys, need_of, port_key, Node, Slot, State};

/// Bonus, in thousandths, for a node holding every requested dataset (pro rata).
pub const DATASET_BONUS_MILLI: i64 = 200;

/// How many runners-up a decision records.
pub const RUNNERS_UP: usize = 3;

/// What a deployment needs of a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlacementRequest<'a> {
    /// Storage includes the spec's mounts (see [`need_of`]).
    pub need: Resources,
    pub ports: &'a [PortPublish],
    /// The spec's os: must equal a node's `os` label when it has one.
    pub os: &'a str,
    /// Labels a node must carry (all of them, same values).
    pub labels: &'a BTreeMap<String, String>,
    /// Dataset keys (`category/db/dataset@version`), for the bonus.
    pub datasets: Vec<String>,
    pub policy: PlacementPolicy,
}

impl<'a> PlacementRequest<'a> {
    pub fn for_spec(spec: &'a EnvironmentSpec, policy: PlacementPolicy) -> Self {
        PlacementRequest {
            need: need_of(spec),
            ports: &spec.ports,
            os: &spec.os,
            labels: &spec.node_labels,
            datasets: dataset_keys(spec),
            policy,
        }
    }
}

/// The chosen node and the record of why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    pub node_id: String,
    pub(crate) slot: u32,
    pub score_milli: i64,
    /// Device uuids, lowest index first.
    pub gpus: Vec<String>,
    pub runners_up: Vec<CandidateScore>,
    pub rejected: Vec<RejectCount>,
    /// Feasible nodes.
    pub candidates: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Placed(Placement),
    Unschedulable { rejected: Vec<RejectCount> },
}

/// Places `req` on the nodes of `state`.
pub fn place(state: &State, req: &PlacementRequest<'_>) -> Decision {
    place_in(
        &View {
            state,
            overlay: &BTreeMap::new(),
        },
        req,
    )
}

/// The nodes as a decision in progress sees them: the state's, with the copies it has
/// changed (or added) in `overlay`.
pub(crate) struct View<'a> {
    pub(crate) state: &'a State,
    pub(crate) overlay: &'a BTreeMap<u32, Node>,
}

impl View<'_> {
    fn len(&self) -> usize {
        let extra = self
            .overlay
            .keys()
            .next_back()
            .map_or(0, |&k| k as usize + 1);
        self.state.nodes.len().max(extra)
    }

    fn node(&self, slot: u32) -> Option<&Node> {
        self.overlay
            .get(&slot)
            .or_else(|| self.state.nodes.get(slot as usize))
    }

    pub(crate) fn summary(&self, slot: u32) -> Option<Slot> {
        match self.overlay.get(&slot) {
            Some(n) => Some(n.summary()),
            None => self.state.slots.get(slot as usize).copied(),
        }
    }
}

// Reasons, in the order they are checked; ports follow, one per requested port.
const LOST: usize = 0;
const DRAINING: usize = 1;
const LABELS: usize = 2;
const CPU: usize = 3;
const MEMORY: usize = 4;
const GPU: usize = 5;
const STORAGE: usize = 6;
const PORT0: usize = 7;
const REASONS: [&str; 7] = [
    "node lost",
    "node draining",
    "label mismatch",
    "insufficient cpu",
    "insufficient memory",
    "insufficient gpu",
    "insufficient storage",
];

fn labels_match(node: &Node, req: &PlacementRequest<'_>) -> bool {
    let labels = &node.fingerprint.labels;
    if labels.get("os").is_some_and(|os| os != req.os) {
        return false;
    }
    req.labels.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// `free_after / alloc` in thousandths, exact (integer arithmetic keeps decisions
/// reproducible everywhere).
fn milli(free_after: u64, alloc: u64) -> i64 {
    if alloc == 0 {
        return 0;
    }
    let m = match free_after.checked_mul(1000) {
        Some(x) => x / alloc,
        None => (u128::from(free_after) * 1000 / u128::from(alloc)) as u64,
    };
    m.min(1000) as i64
}

/// `Ok(score)` or `Err(reason index)`: the first check that fails, in fixed order.
#[inline(always)]
fn judge(view: &View<'_>, slot: u32, s: &Slot, req: &PlacementRequest<'_>) -> Result<i64, usize> {
    if !s.has(Slot::ALIVE) {
        return Err(LOST);
    }
    if s.has(Slot::DRAINING) {
        return Err(DRAINING);
    }
    let need = &req.need;
    let node_for_labels = !req.labels.is_empty() || s.has(Slot::OS_LABEL);
    if node_for_labels && !view.node(slot).is_some_and(|n| labels_match(n, req)) {
        return Err(LABELS);
    }
    if s.free_cpu < need.cpu_millis {
        return Err(CPU);
    }
    if s.free_mem < need.memory_bytes {
        return Err(MEMORY);
    }
    if s.free_gpus < need.gpus {
        return Err(GPU);
    }
    if s.free_storage < need.storage_bytes {
        return Err(STORAGE);
    }
    if !req.ports.is_empty() && s.has(Slot::PORTS) {
        if let Some(node) = view.node(slot) {
            for (i, p) in req.ports.iter().enumerate() {
                if node.ports.contains_key(&port_key(p.external, p.protocol)) {
                    return Err(PORT0 + i);
                }
            }
        }
    }
    let sum = milli(s.free_cpu - need.cpu_millis, s.alloc_cpu)
        + milli(s.free_mem - need.memory_bytes, s.alloc_mem);
    // Constant divisors: the scan runs once per node per placement.
    let spread = if need.gpus > 0 {
        (sum + milli(u64::from(s.free_gpus - need.gpus), u64::from(s.alloc_gpus))) / 3
    } else {
        sum / 2
    };
    let mut score = match req.policy {
        PlacementPolicy::Spread => spread,
        PlacementPolicy::BinPack => 1000 - spread,
    };
    if !req.datasets.is_empty() && s.has(Slot::DATASETS) {
        if let Some(node) = view.node(slot) {
            let held = req.datasets.iter().filter(|k| node.has_dataset(k)).count() as i64;
            score += DATASET_BONUS_MILLI * held / req.datasets.len() as i64;
        }
    }
    Ok(score)
}

/// A feasible node: score, slot, order number.
type Candidate = (i64, u32, u64);

/// Best first: higher score, then lower node id.
struct Top<'v> {
    view: &'v View<'v>,
    best: [Candidate; RUNNERS_UP + 1],
    len: usize,
}

impl<'v> Top<'v> {
    fn better(&self, a: Candidate, b: Candidate) -> bool {
        if a.0 != b.0 {
            return a.0 > b.0;
        }
        if a.2 != 0 && b.2 != 0 {
            return a.2 < b.2; // order numbers sort like ids
        }
        let id = |s: u32| self.view.node(s).map_or("", |n| n.id.as_str());
        id(a.1) < id(b.1)
    }

    fn offer(&mut self, c: Candidate) {
        if self.len == self.best.len() && !self.better(c, self.best[self.len - 1]) {
            return;
        }
        let mut i = self.len.min(self.best.len() - 1);
        while i > 0 && self.better(c, self.best[i - 1]) {
            self.best[i] = self.best[i - 1];
            i -= 1;
        }
        self.best[i] = c;
        self.len = (self.len + 1).min(self.best.len());
    }
}

fn reasons(counts: &[u32], req: &PlacementRequest<'_>) -> Vec<RejectCount> {
    let mut out = Vec::new();
    for (i, &count) in counts.iter().enumerate() {
        if count == 0 {
            continue;
        }
        let reason = match REASONS.get(i) {
            Some(r) => (*r).to_string(),
            None => {
                let p = &req.ports[i - PORT0];
                format!("port {}/{} in use", p.external, p.protocol.as_str())
            }
        };
        out.push(RejectCount { reason, count });
    }
    out
}

/// Scans every node of the view.
pub(crate) fn place_in(view: &View<'_>, req: &PlacementRequest<'_>) -> Decision {
    let mut counts = vec![0u32; PORT0 + req.ports.len()];
    let mut top = Top {
        view,
        best: [(0, 0, 0); RUNNERS_UP + 1],
        len: 0,
    };
    let mut candidates = 0u32;
    let mut visit = |slot: u32, s: &Slot, top: &mut Top<'_>| match judge(view, slot, s, req) {
        Ok(score) => {
            candidates += 1;
            top.offer((score, slot, s.order));
        }
        Err(r) => counts[r] += 1,
    };
    if view.overlay.is_empty() {
        for (i, s) in view.state.slots.iter().enumerate() {
            visit(i as u32, s, &mut top);
        }
    } else {
        let mut changed = view.overlay.iter().peekable();
        for slot in 0..view.len() as u32 {
            let s = match changed.next_if(|(k, _)| **k == slot) {
                Some((_, n)) => n.summary(),
                None => match view.state.slots.get(slot as usize) {
                    Some(s) => *s,
                    None => continue,
                },
            };
            visit(slot, &s, &mut top);
        }
    }
    let rejected = reasons(&counts, req);
    if top.len == 0 {
        return Decision::Unschedulable { rejected };
    }
    let (score_milli, slot, _) = top.best[0];
    let Some(node) = view.node(slot) else {
        return Decision::Unschedulable { rejected };
    };
    let runners_up = top.best[1..top.len]
        .iter()
        .filter_map(|&(score_milli, s, _)| {
            Some(CandidateScore {
                node_id: view.node(s)?.id.clone(),
                score_milli,
            })
        })
        .collect();
    Decision::Placed(Placement {
        node_id: node.id.clone(),
        slot,
        score_milli,
        gpus: node
            .free_gpus()
            .take(req.need.gpus as usize)
            .map(str::to_string)
            .collect(),
        runners_up,
        rejected,
        candidates,
    })
}

/// Whether `req` fits on any of `slots` (a cheap check before a full scan).
pub(crate) fn fits_any(
    view: &View<'_>,
    req: &PlacementRequest<'_>,
    slots: impl IntoIterator<Item = u32>,
) -> bool {
    slots.into_iter().any(|slot| {
        view.summary(slot)
            .is_some_and(|s| judge(view, slot, &s, req).is_ok())
    })
}
