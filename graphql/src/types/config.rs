//! Environments (with their versions), environment specs, templates, library
//! catalogs, services and dataset categories.

use async_graphql::{Json, Object, SimpleObject};
use dcloud_events::model::{self, EnvironmentSpec};
use dcloud_projections::config;
use dcloud_projections::state;

use super::common::{labels, Label, Lifecycle, Protocol, Resources};

#[derive(SimpleObject, Clone, Debug)]
pub struct Language {
    pub name: String,
    pub libraries: Vec<String>,
}

#[derive(SimpleObject, Clone, Debug)]
pub struct PortPublish {
    pub external: u16,
    pub internal: u16,
    pub protocol: Protocol,
}

impl From<&model::PortPublish> for PortPublish {
    fn from(p: &model::PortPublish) -> Self {
        PortPublish {
            external: p.external,
            internal: p.internal,
            protocol: p.protocol.into(),
        }
    }
}

#[derive(SimpleObject, Clone, Debug)]
pub struct StorageMount {
    /// Absolute path inside the container.
    pub target: String,
    pub size_bytes: u64,
    pub lifecycle: Lifecycle,
}

impl From<&model::StorageMount> for StorageMount {
    fn from(s: &model::StorageMount) -> Self {
        StorageMount {
            target: s.target.clone(),
            size_bytes: s.size_bytes,
            lifecycle: s.lifecycle.into(),
        }
    }
}

#[derive(SimpleObject, Clone, Debug)]
pub struct DatasetVersion {
    pub name: String,
    pub version: String,
}

#[derive(SimpleObject, Clone, Debug)]
pub struct DatasetDb {
    pub name: String,
    pub datasets: Vec<DatasetVersion>,
}

/// `category-name` with its databases and dataset versions.
#[derive(SimpleObject, Clone, Debug)]
pub struct DatasetCategory {
    pub category: String,
    pub dbs: Vec<DatasetDb>,
    /// Where its datasets are when every node reaches them (`shared-storage`); null:
    /// on the disk of the nodes that hold them.
    pub shared_storage: Option<SharedStorage>,
}

/// Shared storage a category's datasets are on. Its mount options are not shown (a
/// CIFS share's may hold a password).
#[derive(SimpleObject, Clone, Debug)]
pub struct SharedStorage {
    /// `nfs`, `nfs4`, `cifs`, or `none` (a host folder bound on every node).
    #[graphql(name = "type")]
    pub fs_type: String,
    pub device: String,
}

impl From<&model::SharedStorage> for SharedStorage {
    fn from(s: &model::SharedStorage) -> Self {
        SharedStorage {
            fs_type: s.fs_type.clone(),
            device: s.device.clone(),
        }
    }
}

impl From<&model::DatasetCategory> for DatasetCategory {
    fn from(c: &model::DatasetCategory) -> Self {
        DatasetCategory {
            category: c.category.clone(),
            dbs: c
                .dbs
                .iter()
                .map(|db| DatasetDb {
                    name: db.name.clone(),
                    datasets: db
                        .datasets
                        .iter()
                        .map(|d| DatasetVersion {
                            name: d.name.clone(),
                            version: d.version.clone(),
                        })
                        .collect(),
                })
                .collect(),
            shared_storage: None,
        }
    }
}

/// The dataset catalog as a list of categories, each dataset version on its own.
pub(crate) fn dataset_catalog(state: &state::State) -> Vec<DatasetCategory> {
    state
        .datasets
        .categories
        .iter()
        .map(|(category, dbs)| DatasetCategory {
            category: category.clone(),
            shared_storage: state.dataset_storage.get(category).map(Into::into),
            dbs: dbs
                .iter()
                .map(|(db, sets)| DatasetDb {
                    name: db.clone(),
                    datasets: sets
                        .iter()
                        .flat_map(|(name, versions)| {
                            versions.iter().map(|v| DatasetVersion {
                                name: name.clone(),
                                version: v.clone(),
                            })
                        })
                        .collect(),
                })
                .collect(),
        })
        .collect()
}

/// A validated environment (or template) document.
pub struct SpecObj(pub(crate) EnvironmentSpec);

#[Object(name = "EnvironmentSpec")]
impl SpecObj {
    /// `env-name`.
    async fn name(&self) -> &str {
        &self.0.name
    }

    /// The document's own `version` text.
    async fn version_label(&self) -> &str {
        &self.0.version_label
    }

    async fn os(&self) -> &str {
        &self.0.os
    }

    async fn languages(&self) -> Vec<Language> {
        self.0
            .languages
            .iter()
            .map(|l| Language {
                name: l.name.clone(),
                libraries: l.libraries.clone(),
            })
            .collect()
    }

    async fn resources(&self) -> Resources {
        (&self.0.resources).into()
    }

    async fn datasets(&self) -> Vec<DatasetCategory> {
        self.0.datasets.iter().map(Into::into).collect()
    }

    async fn ports(&self) -> Vec<PortPublish> {
        self.0.ports.iter().map(Into::into).collect()
    }

    async fn storage(&self) -> Vec<StorageMount> {
        self.0.storage.iter().map(Into::into).collect()
    }

    /// Node labels the environment must be placed on.
    async fn node_labels(&self) -> Vec<Label> {
        labels(&self.0.node_labels)
    }

    async fn is_active(&self) -> bool {
        self.0.is_active
    }

    /// `config_id` of the original document, if it had one.
    async fn config_id(&self) -> Option<i64> {
        self.0.meta.config_id
    }

    /// The document in its original format (JSON).
    async fn document(&self) -> Json<serde_json::Value> {
        Json(config::export_environment(&self.0))
    }
}

#[derive(SimpleObject)]
pub struct EnvironmentVersion {
    pub version: u32,
    /// Sequence number of the event that wrote it.
    pub seq: u64,
    pub time_ms: i64,
    pub spec: SpecObj,
}

pub struct EnvironmentObj(pub(crate) state::Environment);

#[Object(name = "Environment")]
impl EnvironmentObj {
    async fn id(&self) -> &str {
        &self.0.id
    }

    async fn owner(&self) -> &str {
        &self.0.owner
    }

    /// `env-name` of the current version.
    async fn name(&self) -> &str {
        self.0.spec().map_or("", |s| s.name.as_str())
    }

    /// The current version number (1 on creation, +1 per update).
    async fn version(&self) -> u32 {
        self.0.version()
    }

    /// New deployments are refused while inactive.
    async fn active(&self) -> bool {
        self.0.active
    }

    async fn deleted(&self) -> bool {
        self.0.deleted
    }

    async fn created_ms(&self) -> i64 {
        self.0.created_ms
    }

    async fn updated_ms(&self) -> i64 {
        self.0.updated_ms
    }

    /// The current spec.
    async fn spec(&self) -> Option<SpecObj> {
        self.0.spec().cloned().map(SpecObj)
    }

    /// Every version, oldest first.
    async fn versions(&self) -> Vec<EnvironmentVersion> {
        self.0
            .versions
            .iter()
            .map(|v| EnvironmentVersion {
                version: v.version,
                seq: v.seq,
                time_ms: v.time_ms,
                spec: SpecObj(v.spec.clone()),
            })
            .collect()
    }
}

pub struct TemplateObj(pub(crate) state::Template);

#[Object(name = "Template")]
impl TemplateObj {
    async fn name(&self) -> &str {
        &self.0.name
    }

    async fn owner(&self) -> &str {
        &self.0.owner
    }

    async fn saved_ms(&self) -> i64 {
        self.0.saved_ms
    }

    async fn spec(&self) -> SpecObj {
        SpecObj(self.0.spec.clone())
    }

    /// The `idle-timeout` environments created from this template start with, in ms
    /// (null: none).
    async fn idle_timeout_ms(&self) -> Option<i64> {
        (self.0.idle_timeout_ms > 0)
            .then(|| i64::try_from(self.0.idle_timeout_ms).unwrap_or(i64::MAX))
    }

    /// The same as a document writes it (`"30m"`, `"1h30m"`; null: none).
    async fn idle_timeout(&self) -> Option<String> {
        (self.0.idle_timeout_ms > 0)
            .then(|| dcloud_projections::config::format_idle_timeout(self.0.idle_timeout_ms))
    }
}

#[derive(SimpleObject, Clone, Debug)]
pub struct CatalogLibrary {
    pub name: String,
    /// The commands that install it.
    pub commands: Vec<String>,
}

#[derive(SimpleObject, Clone, Debug)]
pub struct CatalogLanguage {
    pub name: String,
    pub installation_steps: Vec<String>,
    pub libraries: Vec<CatalogLibrary>,
}

/// The library catalog of one os (admins and auditors: it holds shell commands).
pub struct CatalogObj(pub(crate) model::LibraryCatalog);

#[Object(name = "Catalog")]
impl CatalogObj {
    async fn os(&self) -> &str {
        &self.0.os
    }

    /// `None`: the default base image for the os.
    async fn base_image(&self) -> Option<&str> {
        self.0.base_image.as_deref()
    }

    async fn init_steps(&self) -> &[String] {
        &self.0.init_steps
    }

    async fn languages(&self) -> Vec<CatalogLanguage> {
        self.0
            .specifications
            .iter()
            .map(|(name, l)| CatalogLanguage {
                name: name.clone(),
                installation_steps: l.installation_steps.clone(),
                libraries: l
                    .libraries
                    .iter()
                    .map(|(n, c)| CatalogLibrary {
                        name: n.clone(),
                        commands: c.clone(),
                    })
                    .collect(),
            })
            .collect()
    }

    /// The catalog in its original format (JSON).
    async fn document(&self) -> Json<serde_json::Value> {
        Json(config::export_catalog(&self.0))
    }
}

#[derive(SimpleObject, Clone, Debug)]
pub struct Endpoint {
    pub ip: String,
    pub port: u16,
}

pub struct ServiceObj {
    pub(crate) service: state::Service,
    pub(crate) now_ms: i64,
}

#[Object(name = "Service")]
impl ServiceObj {
    /// `service-name`.
    async fn name(&self) -> &str {
        &self.service.registration.name
    }

    async fn endpoints(&self) -> Vec<Endpoint> {
        self.service
            .registration
            .endpoints
            .iter()
            .map(|e| Endpoint {
                ip: e.ip.clone(),
                port: e.port,
            })
            .collect()
    }

    /// Expires unless refreshed within this many milliseconds.
    async fn ttl_ms(&self) -> Option<u64> {
        self.service.registration.ttl_ms
    }

    async fn registered_ms(&self) -> i64 {
        self.service.registered_ms
    }

    async fn refreshed_ms(&self) -> i64 {
        self.service.refreshed_ms
    }

    /// Past its TTL now (it is removed from the registry by the next expiry sweep).
    async fn expired(&self) -> bool {
        self.service.is_expired(self.now_ms)
    }

    /// The registration in its original format (JSON).
    async fn document(&self) -> Json<serde_json::Value> {
        Json(config::export_service(&self.service.registration))
    }
}
