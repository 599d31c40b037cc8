//! Small shared GraphQL types: enums mirroring the domain's, resources, labels,
//! scores and rejection counts, and the cursor pagination helper.

use std::collections::BTreeMap;

use async_graphql::connection::{Connection, CursorType, Edge, EmptyFields};
use async_graphql::{Enum, OutputType, SimpleObject};
use dcloud_events::model;

use crate::error::ApiError;

#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
#[graphql(remote = "dcloud_events::model::Role")]
pub enum Role {
    Admin,
    User,
    Agent,
    Auditor,
}

#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
#[graphql(remote = "dcloud_events::model::PlacementPolicy")]
pub enum PlacementPolicy {
    /// Most available node first (spread).
    Spread,
    /// Fullest node that fits first.
    BinPack,
}

#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
#[graphql(remote = "dcloud_events::model::Protocol")]
pub enum Protocol {
    Tcp,
    Udp,
}

#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
#[graphql(remote = "dcloud_events::model::Lifecycle")]
pub enum Lifecycle {
    Temporary,
    Persistent,
}

#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
#[graphql(remote = "dcloud_projections::DeploymentStatus")]
pub enum DeploymentStatus {
    Pending,
    Scheduled,
    Building,
    Created,
    Running,
    Exited,
    OomKilled,
    Failed,
    Stopping,
    Stopped,
    Lost,
}

#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
#[graphql(remote = "dcloud_projections::NodeHealth")]
pub enum NodeHealth {
    Alive,
    Lost,
}

/// CPU in millicores, memory and storage in bytes.
#[derive(SimpleObject, Clone, Debug, PartialEq, Eq)]
pub struct Resources {
    pub cpu_millis: u64,
    pub memory_bytes: u64,
    pub gpus: u32,
    pub storage_bytes: u64,
}

impl From<&model::Resources> for Resources {
    fn from(r: &model::Resources) -> Self {
        Resources {
            cpu_millis: r.cpu_millis,
            memory_bytes: r.memory_bytes,
            gpus: r.gpus,
            storage_bytes: r.storage_bytes,
        }
    }
}

#[derive(SimpleObject, Clone, Debug, PartialEq, Eq)]
pub struct Usage {
    pub cpu_millis: u64,
    pub memory_bytes: u64,
}

impl From<&model::Usage> for Usage {
    fn from(u: &model::Usage) -> Self {
        Usage {
            cpu_millis: u.cpu_millis,
            memory_bytes: u.memory_bytes,
        }
    }
}

/// One `key = value` pair (node labels, an environment's placement labels).
#[derive(SimpleObject, Clone, Debug, PartialEq, Eq)]
pub struct Label {
    pub key: String,
    pub value: String,
}

pub(crate) fn labels(map: &BTreeMap<String, String>) -> Vec<Label> {
    map.iter()
        .map(|(k, v)| Label {
            key: k.clone(),
            value: v.clone(),
        })
        .collect()
}

/// A candidate node's score in a placement decision.
#[derive(SimpleObject, Clone, Debug, PartialEq, Eq)]
pub struct CandidateScore {
    pub node_id: String,
    /// Thousandths (integers keep decisions exactly reproducible).
    pub score_milli: i64,
}

impl From<&model::CandidateScore> for CandidateScore {
    fn from(c: &model::CandidateScore) -> Self {
        CandidateScore {
            node_id: c.node_id.clone(),
            score_milli: c.score_milli,
        }
    }
}

/// How many nodes were rejected for one reason.
#[derive(SimpleObject, Clone, Debug, PartialEq, Eq)]
pub struct RejectCount {
    pub reason: String,
    pub count: u32,
}

impl From<&model::RejectCount> for RejectCount {
    fn from(r: &model::RejectCount) -> Self {
        RejectCount {
            reason: r.reason.clone(),
            count: r.count,
        }
    }
}

/// Extra fields of a connection over an in-memory list.
#[derive(SimpleObject, Clone, Copy, Debug)]
pub struct ListInfo {
    /// Items matching the filter, on every page.
    pub total_count: usize,
}

/// A page of a list already filtered and sorted by cursor.
pub type Page<K, T> = Connection<K, T, ListInfo, EmptyFields>;

/// The page after cursor `after` (exclusive) of `items` (sorted by their cursor),
/// at most `first` long (`default` when absent, never above `max`).
pub(crate) fn paginate<K, T>(
    items: Vec<(K, T)>,
    after: Option<String>,
    first: Option<i32>,
    (default, max): (usize, usize),
) -> Result<Page<K, T>, ApiError>
where
    K: CursorType + Ord + Send + Sync,
    T: OutputType,
{
    let first = page_size(first, default, max)?;
    let after = match after {
        Some(c) => Some(
            K::decode_cursor(&c)
                .map_err(|_| ApiError::BadInput(format!("{c:?} is not a cursor of this list")))?,
        ),
        None => None,
    };
    let total_count = items.len();
    let start = match &after {
        Some(a) => items.partition_point(|(k, _)| k <= a),
        None => 0,
    };
    let has_next = items.len() > start + first;
    let mut page =
        Connection::with_additional_fields(start > 0, has_next, ListInfo { total_count });
    page.edges.extend(
        items
            .into_iter()
            .skip(start)
            .take(first)
            .map(|(k, t)| Edge::new(k, t)),
    );
    Ok(page)
}

/// `first` checked: not negative, at most `max`; `default` when absent.
pub(crate) fn page_size(first: Option<i32>, default: usize, max: usize) -> Result<usize, ApiError> {
    match first {
        None => Ok(default),
        Some(n) if n < 0 => Err(ApiError::BadInput(format!(
            "first must not be negative, got {n}"
        ))),
        Some(n) if n as usize > max => Err(ApiError::BadInput(format!(
            "first may be at most {max}, got {n}"
        ))),
        Some(n) => Ok(n as usize),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(p: &Page<u64, String>) -> Vec<u64> {
        p.edges.iter().map(|e| e.cursor).collect()
    }

    #[test]
    fn pages_follow_the_cursor() {
        let items: Vec<(u64, String)> = [2u64, 5, 9, 11]
            .iter()
            .map(|k| (*k, k.to_string()))
            .collect();
        let p = paginate(items.clone(), None, Some(2), (10, 100)).expect("page");
        assert_eq!(keys(&p), vec![2, 5]);
        assert!(p.has_next_page && !p.has_previous_page);
        let p = paginate(items.clone(), Some("5".into()), Some(2), (10, 100)).expect("page");
        assert_eq!(keys(&p), vec![9, 11]);
        assert!(!p.has_next_page && p.has_previous_page);
        // A cursor between items (the item was removed) still resumes after it.
        let p = paginate(items.clone(), Some("6".into()), None, (10, 100)).expect("page");
        assert_eq!(keys(&p), vec![9, 11]);
        assert_eq!(p.additional_fields.total_count, 4);
        assert!(paginate(items.clone(), Some("x".into()), None, (10, 100)).is_err());
        assert!(paginate(items, None, Some(101), (10, 100)).is_err());
    }
}
