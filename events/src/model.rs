//! Plain domain data carried inside events: environment specs, catalogs, services,
//! datasets, node fingerprints and usage. No behaviour beyond small helpers.
//!
//! Units are fixed here once for the whole system: CPU in millicores, memory and
//! storage in bytes, times in milliseconds since the Unix epoch.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Derives shared by every stored type: rkyv for the log, serde for JSON views.
macro_rules! stored {
    ($($item:item)*) => {
        $(
            #[derive(
                Debug, Clone, PartialEq, Eq, Serialize, Deserialize,
                rkyv::Archive, rkyv::Serialize, rkyv::Deserialize,
            )]
            $item
        )*
    };
}

stored! {
    /// Resources asked for by an environment or offered by a node.
    #[derive(Default)]
    pub struct Resources {
        /// CPU in millicores (`"1.5"` → 1500).
        pub cpu_millis: u64,
        pub memory_bytes: u64,
        pub gpus: u32,
        pub storage_bytes: u64,
    }

    pub struct LanguageSpec {
        pub name: String,
        pub libraries: Vec<String>,
    }

    /// One dataset version, as in the original `dataset[].db[].dataset[]`.
    pub struct DatasetVersion {
        pub name: String,
        pub version: String,
    }

    pub struct DatasetDb {
        pub name: String,
        pub datasets: Vec<DatasetVersion>,
    }

    /// The shape of an environment's `dataset` field and of a dataset catalog entry.
    pub struct DatasetCategory {
        pub category: String,
        pub dbs: Vec<DatasetDb>,
    }

    #[derive(Copy, PartialOrd, Ord, Hash)]
    pub enum Protocol {
        Tcp,
        Udp,
    }

    pub struct PortPublish {
        pub external: u16,
        pub internal: u16,
        pub protocol: Protocol,
    }

    #[derive(Copy)]
    pub enum Lifecycle {
        Temporary,
        Persistent,
    }

    pub struct StorageMount {
        /// Absolute path inside the container.
        pub target: String,
        pub size_bytes: u64,
        pub lifecycle: Lifecycle,
    }

    /// Fields of the original documents that DCloud keeps only to export them again.
    #[derive(Default)]
    pub struct OriginalMeta {
        /// MongoDB `_id` (`{"$oid": …}`), when the document came from an export.
        pub oid: Option<String>,
        pub config_id: Option<i64>,
        pub creation_time_ms: Option<i64>,
        pub last_updation_time_ms: Option<i64>,
    }

    /// A validated, normalised environment (or template) document.
    pub struct EnvironmentSpec {
        /// `env-name`.
        pub name: String,
        /// The document's own `version` string, as the user wrote it.
        pub version_label: String,
        pub os: String,
        pub languages: Vec<LanguageSpec>,
        pub resources: Resources,
        pub datasets: Vec<DatasetCategory>,
        pub ports: Vec<PortPublish>,
        pub storage: Vec<StorageMount>,
        /// Node labels the environment must be placed on (`node-labels`, a DCloud extension).
        pub node_labels: BTreeMap<String, String>,
        pub is_active: bool,
        pub meta: OriginalMeta,
    }

    pub struct LanguageCatalog {
        pub installation_steps: Vec<String>,
        /// Library name → the commands that install it.
        pub libraries: BTreeMap<String, Vec<String>>,
    }

    /// How a library's service starts and is reached (the catalog's `services`): the
    /// container runs `command`, the service listens on `port` inside it, and it is
    /// ready when a TCP connect (or, with `http_path`, an HTTP GET answering 2xx/3xx)
    /// succeeds. With `token_env`, each deployment gets its own token in that variable,
    /// and only its owner is shown the URL that carries it.
    pub struct LibraryService {
        /// The library (of the catalog's specifications) that declares it.
        pub library: String,
        pub command: Vec<String>,
        pub port: u16,
        pub http_path: Option<String>,
        pub token_env: Option<String>,
        /// The path users open (`/tree`); `/` when not declared.
        pub open_path: String,
    }

    /// The library contract for one os (admin only: it holds shell commands).
    pub struct LibraryCatalog {
        pub os: String,
        /// Base image; the original documents have none, so `None` maps to a default.
        pub base_image: Option<String>,
        pub init_steps: Vec<String>,
        /// Language name → its steps and libraries.
        pub specifications: BTreeMap<String, LanguageCatalog>,
        pub meta: OriginalMeta,
    }

    pub struct Endpoint {
        pub ip: String,
        pub port: u16,
    }

    pub struct ServiceRegistration {
        /// `service-name`.
        pub name: String,
        pub endpoints: Vec<Endpoint>,
        /// Registration expires unless refreshed within this many milliseconds.
        pub ttl_ms: Option<u64>,
        /// True when the original document used the single `ip`/`port` form.
        pub single: bool,
        pub meta: OriginalMeta,
    }

    pub struct GpuDevice {
        pub index: u32,
        pub uuid: String,
        pub model: String,
        pub memory_bytes: u64,
    }

    pub struct NodeFingerprint {
        pub hostname: String,
        pub os: String,
        /// Total capacity of the machine.
        pub capacity: Resources,
        /// Held back for the host; never offered to deployments.
        pub reserved: Resources,
        pub gpus: Vec<GpuDevice>,
        pub labels: BTreeMap<String, String>,
        /// Dataset keys (`category/db/dataset@version`) already present on the node.
        pub datasets: Vec<String>,
        pub agent_version: String,
    }

    #[derive(Default)]
    pub struct Usage {
        pub cpu_millis: u64,
        pub memory_bytes: u64,
    }

    pub struct ContainerUsage {
        pub deployment_id: String,
        pub usage: Usage,
    }

    /// Rejected candidates of one reason, e.g. `insufficient gpu: 9000`.
    pub struct RejectCount {
        pub reason: String,
        pub count: u32,
    }

    pub struct CandidateScore {
        pub node_id: String,
        /// Score in thousandths (integers keep decisions exactly reproducible).
        pub score_milli: i64,
    }

    #[derive(Copy, PartialOrd, Ord, Hash)]
    pub enum Role {
        Admin,
        User,
        Agent,
        Auditor,
    }

    #[derive(Copy, Default)]
    pub enum PlacementPolicy {
        /// Most available first (spread), as the original system asked.
        #[default]
        Spread,
        BinPack,
    }

    /// A user's limits (set by an admin). `None` on an axis: no limit on it.
    /// Counted against what the user's live deployments need (see `QuotaSet`).
    #[derive(Default)]
    pub struct Quota {
        pub cpu_millis: Option<u64>,
        pub memory_bytes: Option<u64>,
        pub gpus: Option<u32>,
        /// Live deployments at once.
        pub deployments: Option<u32>,
    }

    /// Where the datasets of a category live when they are on storage every node
    /// reaches (NFS, CIFS, a path mounted on every host): the options of a Docker
    /// `local` volume (`type`, `device`, `o`). Dataset `db/dataset@version` is the
    /// folder of that name under the volume's root.
    pub struct SharedStorage {
        /// The filesystem type: `nfs`, `nfs4`, `cifs`, or `none` with `o: bind` for a
        /// folder mounted at the same path on every node.
        pub fs_type: String,
        /// What is mounted: `:/export/datasets` for NFS, a host folder for a bind.
        pub device: String,
        /// Mount options: `addr=10.0.0.5,ro,nfsvers=4`; `bind` for a bind.
        pub options: String,
    }

    /// How full one storage target of a deployment is, as its node measured it.
    pub struct VolumeUsage {
        /// The mount target inside the container (`/data`).
        pub target: String,
        pub used_bytes: u64,
        /// The size the environment asked for (0: none given).
        pub size_bytes: u64,
        /// Whether the engine holds the volume to `size_bytes` (a filesystem quota);
        /// otherwise the size is only watched.
        pub enforced: bool,
    }
}

impl Quota {
    /// No limit on any axis.
    pub fn is_unlimited(&self) -> bool {
        self == &Quota::default()
    }
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::User => "user",
            Role::Agent => "agent",
            Role::Auditor => "auditor",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Some(match s {
            "admin" => Role::Admin,
            "user" => Role::User,
            "agent" => Role::Agent,
            "auditor" => Role::Auditor,
            _ => return None,
        })
    }
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

impl Lifecycle {
    pub fn as_str(self) -> &'static str {
        match self {
            Lifecycle::Temporary => "temporary",
            Lifecycle::Persistent => "persistent",
        }
    }
}
