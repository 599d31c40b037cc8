//! Lists at fleet scale: the filters and orders of `nodes` and `deployments`, paging
//! by cursor or by offset over a list the server sorted, and `clusterTotals` (the sums
//! the console's Cluster page shows, computed here so it never downloads every node).

use async_graphql::connection::{Connection, CursorType, Edge};
use async_graphql::{Enum, InputObject, OutputType, SimpleObject};
use dcloud_projections::state::{Deployment, Node};
use dcloud_projections::State;

use crate::error::ApiError;
use crate::types::common::{page_size, ListInfo, NodeHealth, Page, Resources, Usage};
use crate::types::node::NodeState;

/// Which nodes to list. Every given field must match.
#[derive(InputObject, Default, Clone, Debug)]
pub struct NodeFilter {
    /// Case-insensitive substring of the hostname, the id or a `key=value` label.
    pub search: Option<String>,
    pub health: Option<NodeHealth>,
    pub state: Option<NodeState>,
}

#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
pub enum NodeOrderField {
    Id,
    Hostname,
    State,
    /// Free CPU (allocatable less allocated).
    CpuFree,
    MemoryFree,
    GpusFree,
    /// Deployments holding resources on the node.
    Deployments,
    /// When the agent was last heard from (heartbeats the log did not keep included).
    LastHeartbeat,
}

/// A sort of the node list; ties are broken by id.
#[derive(InputObject, Clone, Copy, Debug)]
pub struct NodeOrder {
    pub field: NodeOrderField,
    #[graphql(default = false)]
    pub desc: bool,
}

#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
pub enum DeploymentOrderField {
    /// Request order (the default).
    Requested,
    Status,
    /// The environment's `env-name`.
    Environment,
    Owner,
    /// The node's hostname (unplaced ones first).
    Node,
}

/// A sort of the deployment list; ties are broken by request order.
#[derive(InputObject, Clone, Copy, Debug)]
pub struct DeploymentOrder {
    pub field: DeploymentOrderField,
    #[graphql(default = false)]
    pub desc: bool,
}

/// Sums over the live state for the Cluster page, as the caller may see them.
#[derive(SimpleObject, Clone, Debug, PartialEq, Eq)]
pub struct ClusterTotals {
    /// The last sequence number folded into the state these totals were read from:
    /// subscribe with `after: seq` to miss nothing that follows.
    pub seq: u64,
    pub nodes: usize,
    pub alive: usize,
    /// Alive nodes that take new deployments (not draining, engine up).
    pub ready: usize,
    pub draining: usize,
    pub lost: usize,
    /// Over alive nodes.
    pub allocatable: Resources,
    pub allocated: Resources,
    pub free: Resources,
    pub usage: Usage,
    /// Deployments the caller may see (a user: their own).
    pub deployments: usize,
    /// Of those, the ones not finished.
    pub live_deployments: usize,
    /// Of those, the ones waiting for a node.
    pub pending_deployments: usize,
    pub running_deployments: usize,
}

pub(crate) fn node_state(n: &Node) -> NodeState {
    if !n.is_alive() {
        NodeState::Lost
    } else if !n.engine_ok {
        NodeState::EngineDown
    } else if n.draining {
        NodeState::Draining
    } else {
        NodeState::Ready
    }
}

impl NodeFilter {
    pub(crate) fn matches(&self, n: &Node) -> bool {
        let search_ok = |q: &String| {
            let q = q.to_lowercase();
            n.fingerprint.hostname.to_lowercase().contains(&q)
                || n.id.to_lowercase().contains(&q)
                || n.fingerprint
                    .labels
                    .iter()
                    .any(|(k, v)| format!("{k}={v}").to_lowercase().contains(&q))
        };
        self.search.as_ref().is_none_or(search_ok)
            && self
                .health
                .is_none_or(|h| dcloud_projections::NodeHealth::from(h) == n.health)
            && self.state.is_none_or(|s| s == node_state(n))
    }
}

/// Sorts `nodes` (already in id order) by `order`; the sort is stable, so ties stay
/// in id order. `last_seen` knows liveness beyond the log.
pub(crate) fn sort_nodes(
    nodes: &mut [&Node],
    order: NodeOrder,
    last_seen: &dyn Fn(&str) -> Option<i64>,
) {
    let heard = |n: &Node| last_seen(&n.id).or(n.last_heartbeat_ms);
    use NodeOrderField as F;
    let state_rank = |n: &Node| match node_state(n) {
        NodeState::Ready => 0,
        NodeState::Draining => 1,
        NodeState::EngineDown => 2,
        NodeState::Lost => 3,
    };
    match order.field {
        F::Id => {}
        F::Hostname => {
            nodes.sort_by(|a, b| natural_cmp(&a.fingerprint.hostname, &b.fingerprint.hostname))
        }
        F::State => nodes.sort_by_key(|n| state_rank(n)),
        F::CpuFree => nodes.sort_by_key(|n| n.free().cpu_millis),
        F::MemoryFree => nodes.sort_by_key(|n| n.free().memory_bytes),
        F::GpusFree => nodes.sort_by_key(|n| n.free().gpus),
        F::Deployments => nodes.sort_by_key(|n| n.deployments.len()),
        F::LastHeartbeat => nodes.sort_by_key(|n| heard(n)),
    }
    if order.desc {
        // Reverse the whole order but keep ties in id order.
        reverse_keeping_ties(nodes, |a, b| match order.field {
            F::Id => a.id == b.id,
            F::Hostname => a.fingerprint.hostname == b.fingerprint.hostname,
            F::State => state_rank(a) == state_rank(b),
            F::CpuFree => a.free().cpu_millis == b.free().cpu_millis,
            F::MemoryFree => a.free().memory_bytes == b.free().memory_bytes,
            F::GpusFree => a.free().gpus == b.free().gpus,
            F::Deployments => a.deployments.len() == b.deployments.len(),
            F::LastHeartbeat => heard(a) == heard(b),
        });
    }
}

/// Sorts `deps` (already in request order) by `order`, ties in request order.
pub(crate) fn sort_deployments(state: &State, deps: &mut [&Deployment], order: DeploymentOrder) {
    use DeploymentOrderField as F;
    let env = |d: &Deployment| state.deployment_spec(d).map(|s| s.name.clone());
    let host = |d: &Deployment| {
        d.node
            .as_deref()
            .and_then(|n| state.node(n))
            .map(|n| n.fingerprint.hostname.clone())
    };
    let status = |d: &Deployment| d.status.as_str();
    match order.field {
        F::Requested => {}
        F::Status => deps.sort_by_key(|d| status(d)),
        F::Environment => deps.sort_by_cached_key(|d| env(d).map(NaturalKey)),
        F::Owner => deps.sort_by(|a, b| a.owner.cmp(&b.owner)),
        F::Node => deps.sort_by_cached_key(|d| host(d).map(NaturalKey)),
    }
    if order.desc {
        reverse_keeping_ties(deps, |a, b| match order.field {
            F::Requested => a.requested_seq == b.requested_seq,
            F::Status => status(a) == status(b),
            F::Environment => env(a) == env(b),
            F::Owner => a.owner == b.owner,
            F::Node => host(a) == host(b),
        });
    }
}

/// Compares names the way people read them: runs of digits by their value, so
/// `sim-node-2` comes before `sim-node-10`.
pub(crate) fn natural_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    fn chunks(s: &str) -> impl Iterator<Item = (bool, &str)> + '_ {
        let mut rest = s;
        std::iter::from_fn(move || {
            let first = rest.chars().next()?;
            let digits = first.is_ascii_digit();
            let end = rest
                .find(|c: char| c.is_ascii_digit() != digits)
                .unwrap_or(rest.len());
            let (chunk, tail) = rest.split_at(end);
            rest = tail;
            Some((digits, chunk))
        })
    }
    let (mut x, mut y) = (chunks(a), chunks(b));
    loop {
        let ord = match (x.next(), y.next()) {
            (None, None) => return a.cmp(b),
            (None, Some(_)) => return std::cmp::Ordering::Less,
            (Some(_), None) => return std::cmp::Ordering::Greater,
            (Some((true, p)), Some((true, q))) => {
                let (p, q) = (p.trim_start_matches('0'), q.trim_start_matches('0'));
                p.len().cmp(&q.len()).then_with(|| p.cmp(q))
            }
            (Some((_, p)), Some((_, q))) => p.cmp(q),
        };
        if ord.is_ne() {
            return ord;
        }
    }
}

/// A string that sorts by [`natural_cmp`].
#[derive(PartialEq, Eq)]
struct NaturalKey(String);

impl PartialOrd for NaturalKey {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for NaturalKey {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        natural_cmp(&self.0, &other.0)
    }
}

/// Reverses a stably sorted slice, then restores the original order inside each run
/// of equal items, so a descending sort still breaks ties ascending.
fn reverse_keeping_ties<T>(items: &mut [T], same: impl Fn(&T, &T) -> bool) {
    items.reverse();
    let mut start = 0;
    while start < items.len() {
        let mut end = start + 1;
        while end < items.len() && same(&items[start], &items[end]) {
            end += 1;
        }
        items[start..end].reverse();
        start = end;
    }
}

/// One page of a list, before its items become GraphQL objects (so only the page's
/// items are ever copied out of the state).
pub(crate) struct Window<K, T> {
    items: Vec<(K, T)>,
    has_previous: bool,
    has_next: bool,
    total_count: usize,
}

impl<K: CursorType + Send + Sync, T> Window<K, T> {
    pub(crate) fn into_page<U: OutputType>(self, f: impl FnMut(T) -> U) -> Page<K, U> {
        let mut f = f;
        let mut page = Connection::with_additional_fields(
            self.has_previous,
            self.has_next,
            ListInfo {
                total_count: self.total_count,
            },
        );
        page.edges
            .extend(self.items.into_iter().map(|(k, t)| Edge::new(k, f(t))));
        page
    }
}

/// The window of `items` after the item whose cursor is `after` (if given), skipping
/// `offset` more, at most `first` long. `in_cursor_order`: `items` are sorted by
/// cursor, so a cursor whose item has gone still resumes after it; otherwise the
/// list is in a display order and `after` must name one of its items.
pub(crate) fn window<K, T>(
    items: Vec<(K, T)>,
    in_cursor_order: bool,
    after: Option<String>,
    offset: Option<i32>,
    first: Option<i32>,
    (default, max): (usize, usize),
) -> Result<Window<K, T>, ApiError>
where
    K: CursorType + Ord,
{
    let first = page_size(first, default, max)?;
    let offset = match offset {
        None => 0,
        Some(n) if n < 0 => {
            return Err(ApiError::BadInput(format!(
                "offset must not be negative, got {n}"
            )))
        }
        Some(n) => n as usize,
    };
    let start = match after {
        None => 0,
        Some(c) => {
            let key = K::decode_cursor(&c)
                .map_err(|_| ApiError::BadInput(format!("{c:?} is not a cursor of this list")))?;
            if in_cursor_order {
                items.partition_point(|(k, _)| *k <= key)
            } else {
                let at = items.iter().position(|(k, _)| *k == key).ok_or_else(|| {
                    ApiError::BadInput(format!(
                        "cursor {c:?} is not in this sorted list (it changed): start again, or page by offset"
                    ))
                })?;
                at + 1
            }
        }
    }
    .saturating_add(offset);
    let total_count = items.len();
    let has_next = total_count > start.saturating_add(first);
    Ok(Window {
        items: items.into_iter().skip(start).take(first).collect(),
        has_previous: start > 0,
        has_next,
        total_count,
    })
}

fn add(a: &mut Resources, b: &dcloud_events::model::Resources) {
    a.cpu_millis += b.cpu_millis;
    a.memory_bytes += b.memory_bytes;
    a.gpus += b.gpus;
    a.storage_bytes += b.storage_bytes;
}

/// The totals of `state` over the nodes and the deployments `sees` lets through.
pub(crate) fn cluster_totals(state: &State, sees: impl Fn(&Deployment) -> bool) -> ClusterTotals {
    let zero = || Resources {
        cpu_millis: 0,
        memory_bytes: 0,
        gpus: 0,
        storage_bytes: 0,
    };
    let mut t = ClusterTotals {
        seq: state.last_seq(),
        nodes: state.nodes.len(),
        alive: 0,
        ready: 0,
        draining: 0,
        lost: 0,
        allocatable: zero(),
        allocated: zero(),
        free: zero(),
        usage: Usage {
            cpu_millis: 0,
            memory_bytes: 0,
        },
        deployments: 0,
        live_deployments: 0,
        pending_deployments: 0,
        running_deployments: 0,
    };
    for n in &state.nodes {
        match node_state(n) {
            NodeState::Lost => {
                t.lost += 1;
                continue;
            }
            NodeState::Ready => t.ready += 1,
            NodeState::Draining => t.draining += 1,
            NodeState::EngineDown => {}
        }
        t.alive += 1;
        add(&mut t.allocatable, &n.allocatable());
        add(&mut t.allocated, &n.allocated);
        add(&mut t.free, &n.free());
        t.usage.cpu_millis += n.usage.cpu_millis;
        t.usage.memory_bytes += n.usage.memory_bytes;
    }
    use dcloud_projections::DeploymentStatus as S;
    for d in state.deployments.values().filter(|d| sees(d)) {
        t.deployments += 1;
        t.live_deployments += usize::from(d.status.is_live());
        t.pending_deployments += usize::from(d.status == S::Pending);
        t.running_deployments += usize::from(d.status == S::Running);
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_sort_with_their_numbers_by_value() {
        let mut v = vec![
            "sim-node-10",
            "sim-node-2",
            "sim-node-1",
            "gpu-box",
            "sim-node-02",
            "sim-node-100a",
        ];
        v.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(
            v,
            vec![
                "gpu-box",
                "sim-node-1",
                "sim-node-02",
                "sim-node-2",
                "sim-node-10",
                "sim-node-100a"
            ]
        );
    }

    #[test]
    fn descending_keeps_ties_ascending() {
        let mut v = vec![(1, 'a'), (1, 'b'), (2, 'c'), (3, 'd'), (3, 'e')];
        reverse_keeping_ties(&mut v, |x, y| x.0 == y.0);
        assert_eq!(v, vec![(3, 'd'), (3, 'e'), (2, 'c'), (1, 'a'), (1, 'b')]);
    }

    #[test]
    fn pages_in_display_order_by_cursor_and_offset() {
        let items: Vec<(u64, u64)> = [9u64, 2, 5, 11].iter().map(|k| (*k, *k)).collect();
        let page = |after: Option<&str>, offset, first, sorted: bool| {
            let items = if sorted {
                let mut v = items.clone();
                v.sort();
                v
            } else {
                items.clone()
            };
            window(
                items,
                sorted,
                after.map(str::to_string),
                offset,
                first,
                (10, 100),
            )
            .map(|w| w.into_page(|t| t.to_string()))
        };
        let keys = |p: &Page<u64, String>| p.edges.iter().map(|e| e.cursor).collect::<Vec<_>>();
        let p = page(None, None, Some(2), false).expect("page");
        assert_eq!(keys(&p), vec![9, 2]);
        assert!(p.has_next_page && !p.has_previous_page);
        let p = page(Some("2"), None, Some(2), false).expect("page");
        assert_eq!(keys(&p), vec![5, 11]);
        assert!(!p.has_next_page && p.has_previous_page);
        let p = page(None, Some(3), None, false).expect("page");
        assert_eq!(keys(&p), vec![11]);
        assert_eq!(p.additional_fields.total_count, 4);
        assert!(page(None, Some(7), None, false)
            .expect("page")
            .edges
            .is_empty());
        // In cursor order a vanished cursor still resumes after it.
        assert_eq!(
            keys(&page(Some("3"), None, None, true).expect("page")),
            vec![5, 9, 11]
        );
        assert!(page(Some("3"), None, None, false).is_err());
        assert!(page(None, Some(-1), None, false).is_err());
        assert!(page(None, None, Some(101), false).is_err());
    }
}
