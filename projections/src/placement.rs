//! Placement: the scheduler's pure decision. Which nodes can take a request (alive, not
//! draining, labels, CPU, memory, GPUs, storage, ports, the datasets it mounts), how
//! each scores (spread or
//! bin-pack, plus a bonus for datasets already present), and why the others were
//! rejected. One linear scan over dense per-node summaries, no allocation per node.
//!
//! The scan is the scheduler's hot loop (10,000 nodes per placement), so the common
//! node (alive, not draining, nothing to look up in the `Node`) is judged inline from
//! its summary, scored with multiplications instead of divisions (`milli_fast`), and
//! dropped with one comparison when it cannot enter the best four; every other node
//! goes through `judge`. Both give the same decisions; the tests check the scan
//! against a plain reference implementation.

use std::collections::BTreeMap;

use dcloud_events::model::{
    CandidateScore, EnvironmentSpec, PlacementPolicy, PortPublish, RejectCount, Resources,
};

use crate::state::{dataset_category, dataset_keys, need_of, port_key, Node, Recip, Slot, State};

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
    /// Dataset keys (`category/db/dataset@version`) of node-local categories: a node
    /// must hold every one (the agent bind-mounts them from the node's disk). Datasets
    /// of categories on shared storage are not here: every node reaches them.
    pub datasets: Vec<String>,
    pub policy: PlacementPolicy,
}

impl<'a> PlacementRequest<'a> {
    /// What `spec` needs when every dataset category is node-local.
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

    /// What `spec` needs in `state`: datasets of categories on shared storage are
    /// asked of no node.
    pub fn in_state(state: &State, spec: &'a EnvironmentSpec, policy: PlacementPolicy) -> Self {
        let mut req = Self::for_spec(spec, policy);
        if !state.dataset_storage.is_empty() {
            req.datasets
                .retain(|k| !state.dataset_storage.contains_key(dataset_category(k)));
        }
        req
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

// Reasons, in the order they are checked; ports follow, one per requested port, then
// datasets, one per requested dataset.
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
/// The scan's fast path ([`Hoisted::score`]) must agree with it exactly.
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
    if !req.datasets.is_empty() {
        let node = view.node(slot);
        for (j, k) in req.datasets.iter().enumerate() {
            if !node.is_some_and(|n| n.has_dataset(k)) {
                return Err(PORT0 + req.ports.len() + j);
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
    /// [`key`] of the last kept candidate once all places are taken (`i128::MIN`
    /// before). A candidate whose key is below it cannot get in, so the scan drops it
    /// with one comparison instead of calling [`Top::offer`] (most nodes, once the
    /// first few are in). Keys cannot order nodes not yet numbered (order 0, compared
    /// by id), so the check only ever lets more through to [`Top::offer`]: when the last
    /// kept node is unnumbered its threshold holds back lower scores only, and an
    /// unnumbered candidate's key (low half all ones) is never below a threshold of
    /// the same score.
    threshold: i128,
}

/// Score, then order number reversed, in one integer that sorts like [`Top::better`]
/// for numbered nodes.
#[inline(always)]
fn key(score: i64, order: u64) -> i128 {
    (i128::from(score) << 64) | i128::from(!order)
}

impl<'v> Top<'v> {
    fn new(view: &'v View<'v>) -> Self {
        Top {
            view,
            best: [(0, 0, 0); RUNNERS_UP + 1],
            len: 0,
            threshold: i128::MIN,
        }
    }

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

    /// Drops a candidate that cannot get in at once; the hot path of the scan.
    #[inline(always)]
    fn consider(&mut self, c: Candidate) {
        if key(c.0, c.2) >= self.threshold {
            self.offer(c);
        }
    }

    /// Out of line: after the first nodes, few candidates get this far.
    #[inline(never)]
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
        if self.len == self.best.len() {
            let (score, _, order) = self.best[self.len - 1];
            self.threshold = if order == 0 {
                i128::from(score) << 64
            } else {
                key(score, order)
            };
        }
    }
}

/// `free_after * 1000 / alloc`, floored: exactly [`milli`] for the CPU or memory of a
/// node flagged [`Slot::FAST`] (`0 < alloc <= Slot::FAST_MAX`, `free_after <= alloc`),
/// with `inv == 1 / alloc`, but with a multiplication where [`milli`] divides.
///
/// Why it is exact: the quotient `t = free_after * 1000 / alloc` is at most 1000 (so
/// [`milli`]'s cap changes nothing), and the floating-point estimate `n * inv` is
/// within `1000 * 2^-50` of it (three roundings: `n`, `inv` and the product). Rounded
/// to the nearest integer (adding `2^52` and reading the low bits, cheaper than a
/// checked float-to-int cast) it is `floor(t)` or `floor(t) + 1`, and one integer
/// multiplication tells which. Nothing overflows: `free_after * 1000` and
/// `1001 * alloc` stay below `2^63`.
#[inline(always)]
fn milli_fast(free_after: u64, alloc: u64, inv: Recip) -> i64 {
    const ROUND: f64 = (1u64 << 52) as f64;
    let n = free_after * 1000;
    let q = ((n as i64) as f64 * inv.0 + ROUND).to_bits() - ROUND.to_bits();
    (q - u64::from(q * alloc > n)) as i64
}

/// What the per-node loop needs of the request, copied out of it.
#[derive(Clone, Copy)]
struct Hoisted {
    /// A node takes the fast path when `flags & mask == want`: alive, not draining,
    /// scored through reciprocals, and nothing the request asks needs the `Node`
    /// itself (labels, ports in use, datasets present).
    mask: u8,
    want: u8,
    cpu: u64,
    mem: u64,
    gpus: u32,
    storage: u64,
    spread: bool,
}

impl Hoisted {
    fn new(req: &PlacementRequest<'_>) -> Hoisted {
        let mut mask = Slot::ALIVE | Slot::DRAINING | Slot::FAST | Slot::OS_LABEL;
        let mut want = Slot::ALIVE | Slot::FAST;
        if !req.ports.is_empty() {
            mask |= Slot::PORTS;
        }
        if !req.labels.is_empty() || !req.datasets.is_empty() {
            // Every node's labels or datasets must be looked at: no node takes the
            // fast path.
            mask = 0;
            want = Slot::ALIVE;
        }
        Hoisted {
            mask,
            want,
            cpu: req.need.cpu_millis,
            mem: req.need.memory_bytes,
            gpus: req.need.gpus,
            storage: req.need.storage_bytes,
            spread: req.policy == PlacementPolicy::Spread,
        }
    }

    /// [`judge`]'s score for a node that takes the fast path and fits; `None` for any
    /// other node (lost, draining, short of something, or needing a look at the
    /// `Node`), left to [`judge`] itself. The same checks, the same integer score.
    #[inline(always)]
    fn score(&self, s: &Slot) -> Option<i64> {
        if s.flags & self.mask != self.want
            || s.free_cpu < self.cpu
            || s.free_mem < self.mem
            || s.free_gpus < self.gpus
            || s.free_storage < self.storage
        {
            return None;
        }
        let sum = milli_fast(s.free_cpu - self.cpu, s.alloc_cpu, s.inv_cpu)
            + milli_fast(s.free_mem - self.mem, s.alloc_mem, s.inv_mem);
        let spread = if self.gpus > 0 {
            let gpus = milli(u64::from(s.free_gpus - self.gpus), u64::from(s.alloc_gpus));
            (sum + gpus) / 3
        } else {
            sum / 2
        };
        Some(if self.spread { spread } else { 1000 - spread })
    }
}

/// One placement's scan: the request's needs hoisted out of the per-node loop, the
/// reasons counted so far, the feasible nodes and the best of them.
struct Scan<'v, 'r> {
    view: &'v View<'v>,
    req: &'r PlacementRequest<'r>,
    hoisted: Hoisted,
    counts: Vec<u32>,
    candidates: u32,
    top: Top<'v>,
}

impl<'v, 'r> Scan<'v, 'r> {
    fn new(view: &'v View<'v>, req: &'r PlacementRequest<'r>) -> Self {
        Scan {
            view,
            req,
            hoisted: Hoisted::new(req),
            counts: vec![0; PORT0 + req.ports.len() + req.datasets.len()],
            candidates: 0,
            top: Top::new(view),
        }
    }

    /// Visits `slots`, the nodes from slot `first` on: the hot loop.
    fn run(&mut self, first: u32, slots: &[Slot]) {
        let h = self.hoisted;
        let mut fast = 0u32;
        for (i, s) in slots.iter().enumerate() {
            let slot = first + i as u32;
            match h.score(s) {
                Some(score) => {
                    fast += 1;
                    self.top.consider((score, slot, s.order));
                }
                None => self.visit_slow(slot, s),
            }
        }
        self.candidates += fast;
    }

    /// One node (of the overlay).
    fn visit(&mut self, slot: u32, s: &Slot) {
        match self.hoisted.score(s) {
            Some(score) => {
                self.candidates += 1;
                self.top.consider((score, slot, s.order));
            }
            None => self.visit_slow(slot, s),
        }
    }

    /// Any node through [`judge`].
    #[inline(never)]
    fn visit_slow(&mut self, slot: u32, s: &Slot) {
        match judge(self.view, slot, s, self.req) {
            Ok(score) => {
                self.candidates += 1;
                self.top.consider((score, slot, s.order));
            }
            Err(r) => self.counts[r] += 1,
        }
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
            None => match req.ports.get(i - PORT0) {
                Some(p) => format!("port {}/{} in use", p.external, p.protocol.as_str()),
                None => format!(
                    "missing dataset {}",
                    req.datasets[i - PORT0 - req.ports.len()]
                ),
            },
        };
        out.push(RejectCount { reason, count });
    }
    out
}

/// Scans every node of the view: the state's summaries in runs between the overlay's
/// nodes, whose summaries are computed once here.
pub(crate) fn place_in(view: &View<'_>, req: &PlacementRequest<'_>) -> Decision {
    let mut scan = Scan::new(view, req);
    let slots = &view.state.slots;
    let mut next = 0usize;
    for (&slot, node) in view.overlay {
        let end = (slot as usize).min(slots.len());
        if next < end {
            scan.run(next as u32, &slots[next..end]);
        }
        scan.visit(slot, &node.summary());
        next = slot as usize + 1;
    }
    if next < slots.len() {
        scan.run(next as u32, &slots[next..]);
    }
    let Scan {
        counts,
        candidates,
        top,
        ..
    } = scan;
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

#[cfg(test)]
mod tests {
    //! The fast scan against a straightforward reference: every node looked at through
    //! its `Node` (no summaries, no reciprocals, no threshold), scores in `u128`, all
    //! feasible nodes sorted. Random node sets cover lost and draining nodes, labels,
    //! ports, datasets, GPUs, huge and zero capacities (the slow path), overlays with
    //! changed and new (unnumbered) nodes, and many ties.

    use super::*;
    use dcloud_events::model::{GpuDevice, NodeFingerprint, Protocol};
    use proptest::prelude::*;

    fn reference_milli(free_after: u64, alloc: u64) -> i64 {
        if alloc == 0 {
            return 0;
        }
        (u128::from(free_after) * 1000 / u128::from(alloc)).min(1000) as i64
    }

    fn reference_judge(node: &Node, req: &PlacementRequest<'_>) -> Result<i64, usize> {
        if !node.is_alive() {
            return Err(LOST);
        }
        if node.draining {
            return Err(DRAINING);
        }
        let labels = &node.fingerprint.labels;
        let os_ok = labels.get("os").is_none_or(|os| os == req.os);
        if !os_ok || req.labels.iter().any(|(k, v)| labels.get(k) != Some(v)) {
            return Err(LABELS);
        }
        let (free, alloc, need) = (node.free(), node.allocatable(), &req.need);
        if free.cpu_millis < need.cpu_millis {
            return Err(CPU);
        }
        if free.memory_bytes < need.memory_bytes {
            return Err(MEMORY);
        }
        if free.gpus < need.gpus {
            return Err(GPU);
        }
        if free.storage_bytes < need.storage_bytes {
            return Err(STORAGE);
        }
        for (i, p) in req.ports.iter().enumerate() {
            if node.ports.contains_key(&port_key(p.external, p.protocol)) {
                return Err(PORT0 + i);
            }
        }
        for (j, k) in req.datasets.iter().enumerate() {
            if !node.has_dataset(k) {
                return Err(PORT0 + req.ports.len() + j);
            }
        }
        let mut parts = vec![
            reference_milli(free.cpu_millis - need.cpu_millis, alloc.cpu_millis),
            reference_milli(free.memory_bytes - need.memory_bytes, alloc.memory_bytes),
        ];
        if need.gpus > 0 {
            parts.push(reference_milli(
                u64::from(free.gpus - need.gpus),
                u64::from(alloc.gpus),
            ));
        }
        let spread = parts.iter().sum::<i64>() / parts.len() as i64;
        let mut score = match req.policy {
            PlacementPolicy::Spread => spread,
            PlacementPolicy::BinPack => 1000 - spread,
        };
        if !req.datasets.is_empty() {
            let held = req.datasets.iter().filter(|k| node.has_dataset(k)).count() as i64;
            score += DATASET_BONUS_MILLI * held / req.datasets.len() as i64;
        }
        Ok(score)
    }

    /// Every node in slot order, judged; feasible ones sorted by score, then id.
    fn reference_place(view: &View<'_>, req: &PlacementRequest<'_>) -> Decision {
        let last_new = view
            .overlay
            .keys()
            .next_back()
            .map_or(0, |&k| k as usize + 1);
        let len = view.state.nodes.len().max(last_new);
        let mut counts = vec![0u32; PORT0 + req.ports.len() + req.datasets.len()];
        let mut feasible: Vec<(i64, u32, &Node)> = Vec::new();
        for slot in 0..len as u32 {
            let Some(node) = view.node(slot) else {
                continue;
            };
            match reference_judge(node, req) {
                Ok(score) => feasible.push((score, slot, node)),
                Err(r) => counts[r] += 1,
            }
        }
        feasible.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.2.id.cmp(&b.2.id)));
        let rejected = reasons(&counts, req);
        let Some(&(score_milli, slot, node)) = feasible.first() else {
            return Decision::Unschedulable { rejected };
        };
        Decision::Placed(Placement {
            node_id: node.id.clone(),
            slot,
            score_milli,
            gpus: node
                .free_gpus()
                .take(req.need.gpus as usize)
                .map(str::to_string)
                .collect(),
            runners_up: feasible[1..]
                .iter()
                .take(RUNNERS_UP)
                .map(|(score_milli, _, n)| CandidateScore {
                    node_id: n.id.clone(),
                    score_milli: *score_milli,
                })
                .collect(),
            rejected,
            candidates: feasible.len() as u32,
        })
    }

    const PORTS: [(u16, Protocol); 3] = [
        (80, Protocol::Tcp),
        (80, Protocol::Udp),
        (443, Protocol::Tcp),
    ];
    const DATASETS: [&str; 3] = ["c/db/a@1", "c/db/b@1", "c/db/c@2"];

    /// One booking on a node: cpu, memory, storage, GPUs, a port (index in `PORTS`).
    type Booking = (u64, u64, u64, u32, Option<usize>);

    #[derive(Debug, Clone)]
    struct NodeSpec {
        capacity: Resources,
        reserved: Resources,
        os: Option<&'static str>,
        zone: Option<&'static str>,
        datasets: Vec<bool>,
        lost: bool,
        draining: bool,
        bookings: Vec<Booking>,
    }

    /// A capacity: mostly a few common sizes (ties), sometimes any, rarely zero or too
    /// large for the reciprocals.
    fn amount(unit: u64) -> impl Strategy<Value = u64> {
        prop_oneof![
            6 => prop::sample::select(vec![4, 8, 64, 256]).prop_map(move |x| x * unit),
            2 => 1..300 * unit,
            1 => prop::sample::select(vec![
                0,
                1,
                Slot::FAST_MAX - 1,
                Slot::FAST_MAX,
                Slot::FAST_MAX + 1,
                1 << 60,
                u64::MAX,
            ]),
        ]
    }

    /// A need: mostly small, rarely more than any node has.
    fn need(unit: u64) -> impl Strategy<Value = u64> {
        prop_oneof![
            12 => prop::sample::select(vec![0, 1, unit / 10, unit, 2 * unit]),
            4 => 0..4 * unit,
            1 => Just(1 << 59),
        ]
    }

    fn booking() -> impl Strategy<Value = Booking> {
        (
            0..3000u64,
            0..(4u64 << 30),
            prop_oneof![Just(0u64), 0..(4u64 << 30)],
            0..3u32,
            prop::option::weighted(0.3, 0..PORTS.len()),
        )
    }

    fn resources() -> impl Strategy<Value = Resources> {
        (amount(1000), amount(1 << 30), 0..5u32, amount(1 << 30)).prop_map(|(c, m, g, s)| {
            Resources {
                cpu_millis: c,
                memory_bytes: m,
                gpus: g,
                storage_bytes: s,
            }
        })
    }

    fn node_spec() -> impl Strategy<Value = NodeSpec> {
        (
            resources(),
            (
                prop_oneof![3 => Just(0u64), 1 => 0..5000u64],
                prop_oneof![3 => Just(0u64), 1 => 0..(8u64 << 30)],
                0..3u32,
            ),
            prop::option::weighted(0.2, prop::sample::select(vec!["ubuntu", "debian"])),
            prop::option::weighted(0.3, prop::sample::select(vec!["a", "b"])),
            prop::collection::vec(prop::bool::weighted(0.3), DATASETS.len()),
            prop::bool::weighted(0.1),
            prop::bool::weighted(0.1),
            prop::collection::vec(booking(), 0..4),
        )
            .prop_map(
                |(capacity, (rc, rm, rg), os, zone, datasets, lost, draining, bookings)| NodeSpec {
                    capacity,
                    reserved: Resources {
                        cpu_millis: rc,
                        memory_bytes: rm,
                        gpus: rg,
                        storage_bytes: 0,
                    },
                    os,
                    zone,
                    datasets,
                    lost,
                    draining,
                    bookings,
                },
            )
    }

    fn book(node: &mut Node, name: &str, b: &Booking) {
        let gpus: Vec<String> = node
            .free_gpus()
            .take(b.3 as usize)
            .map(str::to_string)
            .collect();
        let need = Resources {
            cpu_millis: b.0,
            memory_bytes: b.1,
            gpus: gpus.len() as u32,
            storage_bytes: b.2,
        };
        let ports: Vec<PortPublish> =
            b.4.map(|i| PortPublish {
                external: PORTS[i].0,
                internal: 1,
                protocol: PORTS[i].1,
            })
            .into_iter()
            .collect();
        node.allocate(name, &need, &gpus, &ports);
    }

    fn build(id: String, slot: u32, spec: &NodeSpec) -> Node {
        let mut labels = BTreeMap::new();
        if let Some(os) = spec.os {
            labels.insert("os".to_string(), os.to_string());
        }
        if let Some(zone) = spec.zone {
            labels.insert("zone".to_string(), zone.to_string());
        }
        let fingerprint = NodeFingerprint {
            hostname: id.clone(),
            os: "linux".into(),
            capacity: spec.capacity.clone(),
            reserved: spec.reserved.clone(),
            gpus: (0..spec.capacity.gpus)
                .map(|i| GpuDevice {
                    index: i,
                    uuid: format!("{id}-gpu{i}"),
                    model: "t".into(),
                    memory_bytes: 1,
                })
                .collect(),
            labels,
            datasets: DATASETS
                .iter()
                .zip(&spec.datasets)
                .filter(|(_, &held)| held)
                .map(|(d, _)| d.to_string())
                .collect(),
            agent_version: "t".into(),
        };
        let mut node = Node::new(&id, slot, fingerprint, 0);
        if spec.lost {
            node.health = crate::state::NodeHealth::Lost;
        }
        node.draining = spec.draining;
        for (i, b) in spec.bookings.iter().enumerate() {
            book(&mut node, &format!("{id}-d{i}"), b);
        }
        node
    }

    /// A change to a state node made in the decision in progress.
    #[derive(Debug, Clone)]
    enum Change {
        Book(Booking),
        Release,
        Drain,
        Undrain,
        Lose,
        /// Not realistic (only new nodes lack a number) but allowed by `View`: an
        /// unnumbered node anywhere in the scan, compared by id.
        Unnumber,
    }

    fn change() -> impl Strategy<Value = Change> {
        prop_oneof![
            3 => booking().prop_map(Change::Book),
            1 => Just(Change::Release),
            1 => Just(Change::Drain),
            1 => Just(Change::Undrain),
            1 => Just(Change::Lose),
            1 => Just(Change::Unnumber),
        ]
    }

    #[derive(Debug, Clone)]
    struct Case {
        nodes: Vec<NodeSpec>,
        /// Node ids, as a permutation: slots are not in id order.
        ids: Vec<usize>,
        changes: Vec<(prop::sample::Index, Change)>,
        added: usize,
        need: Resources,
        ports: Vec<usize>,
        os: &'static str,
        zone: Option<&'static str>,
        datasets: Vec<bool>,
        policy: PlacementPolicy,
    }

    fn case() -> impl Strategy<Value = Case> {
        (
            prop::collection::vec(node_spec(), 1..20),
            prop::collection::vec((any::<prop::sample::Index>(), change()), 0..4),
            0..3usize,
        )
            .prop_flat_map(|(nodes, changes, added)| {
                let total = nodes.len() + added;
                (
                    Just(nodes),
                    Just((0..total).collect::<Vec<_>>()).prop_shuffle(),
                    Just(changes),
                    Just(added),
                    (
                        need(1000),
                        need(1 << 30),
                        prop_oneof![3 => Just(0u32), 1 => 1..3u32],
                        need(1 << 30),
                    ),
                    prop_oneof![
                        3 => Just(vec![]),
                        1 => prop::collection::vec(0..PORTS.len(), 1..3),
                    ],
                    prop::sample::select(vec!["ubuntu", "debian"]),
                    prop::option::weighted(0.1, prop::sample::select(vec!["a", "b"])),
                    prop::collection::vec(prop::bool::weighted(0.1), DATASETS.len()),
                    prop_oneof![
                        Just(PlacementPolicy::Spread),
                        Just(PlacementPolicy::BinPack)
                    ],
                )
            })
            .prop_map(
                |(nodes, ids, changes, added, (c, m, g, s), ports, os, zone, datasets, policy)| {
                    Case {
                        nodes,
                        ids,
                        changes,
                        added,
                        need: Resources {
                            cpu_millis: c,
                            memory_bytes: m,
                            gpus: g,
                            storage_bytes: s,
                        },
                        ports,
                        os,
                        zone,
                        datasets,
                        policy,
                    }
                },
            )
    }

    /// The state (nodes numbered in id order, summaries built) and the overlay: changed
    /// copies of some nodes, and `added` new nodes, unnumbered, after the last slot.
    fn world(case: &Case) -> (State, BTreeMap<u32, Node>) {
        let id = |i: usize| format!("n{:02}", case.ids[i]);
        let mut state = State::new();
        for (slot, spec) in case.nodes.iter().enumerate() {
            let node = build(id(slot), slot as u32, spec);
            state.node_index.insert(node.id.clone(), slot as u32);
            state.nodes.push(node);
        }
        for (rank, &slot) in state.node_index.values().enumerate() {
            state.nodes[slot as usize].order = (rank as u64 + 1) << 32;
        }
        state.rebuild_slots();
        let mut overlay = BTreeMap::new();
        for (k, (at, change)) in case.changes.iter().enumerate() {
            let slot = at.index(state.nodes.len()) as u32;
            let node = overlay
                .entry(slot)
                .or_insert_with(|| state.nodes[slot as usize].clone());
            match change {
                Change::Book(b) => book(node, &format!("x{k}"), b),
                Change::Release => {
                    if let Some(d) = node.deployments.iter().next().cloned() {
                        let need = node.allocated.clone();
                        let ports: Vec<PortPublish> = node
                            .ports_in_use()
                            .filter(|(_, _, by)| *by == d)
                            .map(|(external, protocol, _)| PortPublish {
                                external,
                                internal: 1,
                                protocol,
                            })
                            .collect();
                        node.release(&d, &need, &ports);
                    }
                }
                Change::Drain => node.draining = true,
                Change::Undrain => node.draining = false,
                Change::Lose => node.health = crate::state::NodeHealth::Lost,
                Change::Unnumber => node.order = 0,
            }
        }
        for k in 0..case.added {
            let slot = state.nodes.len() + k;
            let spec = &case.nodes[k % case.nodes.len()];
            overlay.insert(slot as u32, build(id(slot), slot as u32, spec));
        }
        (state, overlay)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn the_scan_decides_as_the_reference(case in case()) {
            let (state, overlay) = world(&case);
            let ports: Vec<PortPublish> = case
                .ports
                .iter()
                .map(|&i| PortPublish { external: PORTS[i].0, internal: 1, protocol: PORTS[i].1 })
                .collect();
            let labels: BTreeMap<String, String> = case
                .zone
                .map(|z| ("zone".to_string(), z.to_string()))
                .into_iter()
                .collect();
            let req = PlacementRequest {
                need: case.need.clone(),
                ports: &ports,
                os: case.os,
                labels: &labels,
                datasets: DATASETS
                    .iter()
                    .zip(&case.datasets)
                    .filter(|(_, &asked)| asked)
                    .map(|(d, _)| d.to_string())
                    .collect(),
                policy: case.policy,
            };
            let empty = BTreeMap::new();
            let base = View { state: &state, overlay: &empty };
            prop_assert_eq!(place_in(&base, &req), reference_place(&base, &req));
            let view = View { state: &state, overlay: &overlay };
            prop_assert_eq!(place_in(&view, &req), reference_place(&view, &req));
        }

        #[test]
        fn milli_fast_is_milli(
            alloc in prop_oneof![1..=Slot::FAST_MAX, 1..100_000u64, Just(Slot::FAST_MAX)],
            t in 0..=1000u64,
            delta in -2i64..=2,
        ) {
            // Near `t` thousandths of `alloc`, where rounding is tightest.
            let free = (u128::from(alloc) * u128::from(t) / 1000) as u64;
            let free = free.saturating_add_signed(delta).min(alloc);
            let inv = Recip(1.0 / alloc as f64);
            prop_assert_eq!(milli_fast(free, alloc, inv), milli(free, alloc));
        }
    }

    fn identical(n: usize) -> NodeSpec {
        NodeSpec {
            capacity: Resources {
                cpu_millis: 64_000,
                memory_bytes: 256 << 30,
                gpus: 8,
                storage_bytes: 500 << 30,
            },
            reserved: Resources::default(),
            os: None,
            zone: None,
            datasets: vec![false; DATASETS.len()],
            lost: false,
            draining: false,
            bookings: vec![(100, 64 << 20, 1 << 30, 0, None); n],
        }
    }

    fn small_request(policy: PlacementPolicy) -> PlacementRequest<'static> {
        static NO_LABELS: BTreeMap<String, String> = BTreeMap::new();
        PlacementRequest {
            need: Resources {
                cpu_millis: 100,
                memory_bytes: 64 << 20,
                gpus: 0,
                storage_bytes: 1 << 30,
            },
            ports: &[],
            os: "ubuntu",
            labels: &NO_LABELS,
            datasets: vec![],
            policy,
        }
    }

    /// An unnumbered node (compared by id) last of the four best: a later node with
    /// the same score and a lower id still gets in.
    #[test]
    fn an_unnumbered_fourth_best_does_not_hold_back_equal_scores() {
        let case = Case {
            nodes: vec![identical(0); 6],
            ids: vec![10, 11, 12, 13, 1, 14],
            changes: vec![],
            added: 0,
            need: Resources::default(),
            ports: vec![],
            os: "ubuntu",
            zone: None,
            datasets: vec![false; DATASETS.len()],
            policy: PlacementPolicy::Spread,
        };
        let (state, _) = world(&case);
        let mut unnumbered = state.nodes[3].clone();
        unnumbered.order = 0;
        let overlay = BTreeMap::from([(3, unnumbered)]);
        let view = View {
            state: &state,
            overlay: &overlay,
        };
        let req = small_request(PlacementPolicy::Spread);
        let decision = place_in(&view, &req);
        assert_eq!(decision, reference_place(&view, &req));
        let Decision::Placed(p) = decision else {
            panic!("not placed: {decision:?}");
        };
        assert_eq!(p.node_id, "n01");
    }

    /// Identical nodes, as in the benchmark: every score ties and order numbers decide.
    #[test]
    fn ties_between_identical_nodes_go_to_the_lowest_id() {
        let n = 300;
        let case = Case {
            nodes: (0..n).map(|i| identical(i % 3)).collect(),
            ids: (0..n).map(|i| (i * 7919) % n).collect(),
            changes: vec![],
            added: 0,
            need: Resources::default(),
            ports: vec![],
            os: "ubuntu",
            zone: None,
            datasets: vec![false; DATASETS.len()],
            policy: PlacementPolicy::Spread,
        };
        let (state, _) = world(&case);
        let empty = BTreeMap::new();
        let view = View {
            state: &state,
            overlay: &empty,
        };
        for policy in [PlacementPolicy::Spread, PlacementPolicy::BinPack] {
            let req = small_request(policy);
            assert_eq!(place_in(&view, &req), reference_place(&view, &req));
        }
    }
}
