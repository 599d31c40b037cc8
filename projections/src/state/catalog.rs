//! Environments with all their versions, templates, the library catalogs per os, the
//! dataset catalog, the service registry and access tokens, as folded from the log.

use std::collections::{BTreeMap, BTreeSet};

use dcloud_events::model::{DatasetCategory, EnvironmentSpec, Role, ServiceRegistration};
use serde::Serialize;

macro_rules! state_type {
    ($($item:item)*) => {
        $(
            #[derive(
                Debug, Clone, PartialEq, Eq, Serialize,
                rkyv::Archive, rkyv::Serialize, rkyv::Deserialize,
            )]
            $item
        )*
    };
}

state_type! {
    /// One version of an environment; versions are never changed once written.
    pub struct EnvVersion {
        /// 1 for `EnvironmentCreated`, then previous + 1.
        pub version: u32,
        pub spec: EnvironmentSpec,
        pub seq: u64,
        pub time_ms: i64,
    }

    pub struct Environment {
        pub id: String,
        pub owner: String,
        /// Every version, oldest first (`versions[i].version == i + 1`).
        pub versions: Vec<EnvVersion>,
        /// New deployments are refused while inactive.
        pub active: bool,
        /// Deleted environments stay (their versions explain old deployments).
        pub deleted: bool,
        pub created_ms: i64,
        pub updated_ms: i64,
    }

    pub struct Template {
        pub name: String,
        pub owner: String,
        pub spec: EnvironmentSpec,
        pub saved_ms: i64,
        /// The `idle-timeout` environments created from it start with (0: none).
        pub idle_timeout_ms: u64,
    }

    pub struct Service {
        pub registration: ServiceRegistration,
        pub registered_ms: i64,
        pub refreshed_ms: i64,
    }

    pub struct Token {
        pub id: String,
        pub name: String,
        pub role: Role,
        /// blake3 of the secret; the secret itself is never stored.
        pub secret_hash: [u8; 32],
        pub node_id: Option<String>,
        pub revoked: bool,
        pub created_ms: i64,
        /// Stops authenticating at this time (Unix ms); `None`: never.
        pub expires_ms: Option<i64>,
    }

    /// A join token: spent once per node that joins with it.
    pub struct JoinToken {
        pub id: String,
        pub name: String,
        pub secret_hash: [u8; 32],
        pub revoked: bool,
        pub created_ms: i64,
        pub expires_ms: Option<i64>,
        /// Joins granted at creation, and joins left.
        pub uses: u32,
        pub uses_left: u32,
        /// The nodes that joined with it, in order.
        pub joined: Vec<String>,
    }

    /// category → db → dataset → versions.
    #[derive(Default)]
    pub struct DatasetCatalog {
        pub categories: BTreeMap<String, BTreeMap<String, BTreeMap<String, BTreeSet<String>>>>,
    }
}

impl Token {
    /// Authenticates at `now_ms`: not revoked and not expired.
    pub fn is_valid_at(&self, now_ms: i64) -> bool {
        !self.revoked && self.expires_ms.is_none_or(|e| now_ms < e)
    }
}

impl JoinToken {
    /// Can admit one more node at `now_ms`.
    pub fn is_usable_at(&self, now_ms: i64) -> bool {
        !self.revoked && self.uses_left > 0 && self.expires_ms.is_none_or(|e| now_ms < e)
    }
}

impl Environment {
    /// The current version number (0 never occurs for a created environment).
    pub fn version(&self) -> u32 {
        self.versions.last().map_or(0, |v| v.version)
    }

    /// The current spec.
    pub fn spec(&self) -> Option<&EnvironmentSpec> {
        self.versions.last().map(|v| &v.spec)
    }

    pub fn spec_at(&self, version: u32) -> Option<&EnvironmentSpec> {
        let i = usize::try_from(version).ok()?.checked_sub(1)?;
        self.versions
            .get(i)
            .filter(|v| v.version == version)
            .map(|v| &v.spec)
    }
}

impl Service {
    /// Expired as of `now_ms`: it has a TTL and was not refreshed within it.
    pub fn is_expired(&self, now_ms: i64) -> bool {
        match self.registration.ttl_ms {
            Some(ttl) => {
                now_ms.saturating_sub(self.refreshed_ms) > i64::try_from(ttl).unwrap_or(i64::MAX)
            }
            None => false,
        }
    }
}

impl DatasetCatalog {
    pub fn contains(&self, category: &str, db: &str, dataset: &str, version: &str) -> bool {
        self.categories
            .get(category)
            .and_then(|dbs| dbs.get(db))
            .and_then(|sets| sets.get(dataset))
            .is_some_and(|versions| versions.contains(version))
    }

    pub(crate) fn register(&mut self, category: &DatasetCategory) {
        let dbs = self
            .categories
            .entry(category.category.clone())
            .or_default();
        for db in &category.dbs {
            let sets = dbs.entry(db.name.clone()).or_default();
            for d in &db.datasets {
                sets.entry(d.name.clone())
                    .or_default()
                    .insert(d.version.clone());
            }
        }
    }

    /// Removes one version; empty datasets, dbs and categories go with it.
    pub(crate) fn remove(&mut self, category: &str, db: &str, dataset: &str, version: &str) {
        let Some(dbs) = self.categories.get_mut(category) else {
            return;
        };
        if let Some(sets) = dbs.get_mut(db) {
            if let Some(versions) = sets.get_mut(dataset) {
                versions.remove(version);
                if versions.is_empty() {
                    sets.remove(dataset);
                }
            }
            if sets.is_empty() {
                dbs.remove(db);
            }
        }
        if dbs.is_empty() {
            self.categories.remove(category);
        }
    }
}

/// The category of a dataset key `category/db/dataset@version`.
pub fn dataset_category(key: &str) -> &str {
    key.split('/').next().unwrap_or(key)
}

/// The dataset keys (`category/db/dataset@version`) a spec asks for, as nodes report them.
pub fn dataset_keys(spec: &EnvironmentSpec) -> Vec<String> {
    let mut keys = Vec::new();
    for c in &spec.datasets {
        for db in &c.dbs {
            for d in &db.datasets {
                keys.push(format!(
                    "{}/{}/{}@{}",
                    c.category, db.name, d.name, d.version
                ));
            }
        }
    }
    keys
}

#[cfg(test)]
mod tests {
    use super::*;
    use dcloud_events::model::{DatasetDb, DatasetVersion};

    fn category(versions: &[&str]) -> DatasetCategory {
        DatasetCategory {
            category: "vision".into(),
            dbs: vec![DatasetDb {
                name: "imagenet".into(),
                datasets: versions
                    .iter()
                    .map(|v| DatasetVersion {
                        name: "train".into(),
                        version: (*v).into(),
                    })
                    .collect(),
            }],
        }
    }

    #[test]
    fn datasets_merge_and_remove_prunes_empty_levels() {
        let mut c = DatasetCatalog::default();
        c.register(&category(&["1"]));
        c.register(&category(&["2"]));
        assert!(c.contains("vision", "imagenet", "train", "1"));
        assert!(c.contains("vision", "imagenet", "train", "2"));
        c.remove("vision", "imagenet", "train", "1");
        assert!(!c.contains("vision", "imagenet", "train", "1"));
        c.remove("vision", "imagenet", "train", "2");
        assert!(c.categories.is_empty());
    }

    #[test]
    fn service_expiry_needs_a_ttl() {
        let reg = |ttl| ServiceRegistration {
            name: "s".into(),
            endpoints: vec![],
            ttl_ms: ttl,
            single: true,
            meta: Default::default(),
        };
        let s = Service {
            registration: reg(Some(100)),
            registered_ms: 0,
            refreshed_ms: 50,
        };
        assert!(!s.is_expired(150));
        assert!(s.is_expired(151));
        let forever = Service {
            registration: reg(None),
            registered_ms: 0,
            refreshed_ms: 0,
        };
        assert!(!forever.is_expired(i64::MAX));
    }
}
