//! Node fingerprint: who this node is (its id, from the primary interface's MAC address)
//! and what it offers (CPUs, memory, data disk, GPUs, datasets), read with sysinfo.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use dcloud_events::model::{NodeFingerprint, Resources};
use sysinfo::{CpuRefreshKind, Disks, MemoryRefreshKind, Networks, RefreshKind, System};
use tracing::{info, warn};

use crate::error::AgentError;
use crate::gpu;

/// Resources held back for the host itself; never offered to deployments.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reserved {
    pub cpu_millis: u64,
    pub memory_bytes: u64,
    pub storage_bytes: u64,
    pub gpus: u32,
}

impl From<Reserved> for Resources {
    fn from(r: Reserved) -> Resources {
        Resources {
            cpu_millis: r.cpu_millis,
            memory_bytes: r.memory_bytes,
            gpus: r.gpus,
            storage_bytes: r.storage_bytes,
        }
    }
}

/// What the operator says about this node; the rest is read from the machine.
#[derive(Debug, Clone)]
pub struct FingerprintConfig {
    /// Overrides the MAC-derived node id.
    pub node_id: Option<String>,
    pub reserved: Reserved,
    /// A path on the disk containers use (volumes, images); its disk's size is the
    /// node's storage capacity.
    pub data_dir: PathBuf,
    /// Datasets present under `<dataset_root>/<category>/<db>/<dataset>@<version>`.
    pub dataset_root: Option<PathBuf>,
    /// Extra labels; they override the automatic ones (`arch`, `os.version`, `kernel`,
    /// `net.interface`).
    pub labels: BTreeMap<String, String>,
    /// False skips NVML entirely (report no GPUs).
    pub detect_gpus: bool,
}

impl Default for FingerprintConfig {
    fn default() -> Self {
        FingerprintConfig {
            node_id: None,
            reserved: Reserved::default(),
            data_dir: PathBuf::from("/var/lib/docker"),
            dataset_root: None,
            labels: BTreeMap::new(),
            detect_gpus: true,
        }
    }
}

/// A network interface as far as node identity is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    pub name: String,
    pub mac: [u8; 6],
}

/// The first non-loopback IPv4 address of the primary interface (see
/// [`primary_interface`]): the default address users reach this node at.
pub fn primary_address() -> Option<String> {
    let networks = Networks::new_with_refreshed_list().ok()?;
    let interfaces: Vec<Interface> = networks
        .iter()
        .map(|(name, data)| Interface {
            name: name.to_string_lossy().into_owned(),
            mac: data.mac_address().0,
        })
        .collect();
    let primary = primary_interface(&interfaces)?;
    let (_, data) = networks
        .iter()
        .find(|(name, _)| name.to_string_lossy() == primary.name)?;
    data.ip_networks().iter().find_map(|n| match n.addr {
        std::net::IpAddr::V4(a) if !a.is_loopback() => Some(a.to_string()),
        _ => None,
    })
}

/// The file under the agent's state directory that holds its node id.
pub const NODE_ID_FILE: &str = "node-id";

/// This agent's node id, kept in `<state_dir>/node-id`: read when present, else made by
/// `fresh` and written there on first start. Unlike an id derived from a MAC address,
/// two agents on one host (each with its own state directory) never share it.
pub fn load_or_create_node_id(
    state_dir: &Path,
    fresh: impl FnOnce() -> String,
) -> Result<String, AgentError> {
    let path = state_dir.join(NODE_ID_FILE);
    let io = |what: &str, e: std::io::Error| AgentError::System {
        what: "the node id file",
        message: format!("{what} {}: {e}", path.display()),
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let id = text.trim().to_string();
            let ok = !id.is_empty()
                && id.len() <= 64
                && id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
            if ok {
                Ok(id)
            } else {
                Err(AgentError::System {
                    what: "the node id file",
                    message: format!(
                        "{} holds {id:?}; expected 1-64 of [A-Za-z0-9_.-]",
                        path.display()
                    ),
                })
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(state_dir).map_err(|e| io("creating the directory of", e))?;
            let id = fresh();
            let tmp = state_dir.join(format!("{NODE_ID_FILE}.tmp"));
            std::fs::write(&tmp, format!("{id}\n")).map_err(|e| io("writing", e))?;
            std::fs::rename(&tmp, &path).map_err(|e| io("renaming into", e))?;
            Ok(id)
        }
        Err(e) => Err(io("reading", e)),
    }
}

/// Reads this machine: returns `(node_id, fingerprint)`.
pub fn fingerprint(config: &FingerprintConfig) -> Result<(String, NodeFingerprint), AgentError> {
    let system = System::new_with_specifics(
        RefreshKind::nothing()
            .with_cpu(CpuRefreshKind::nothing())
            .with_memory(MemoryRefreshKind::nothing().with_ram()),
    )
    .map_err(|e| sys_err("cpu and memory", e))?;
    let networks =
        Networks::new_with_refreshed_list().map_err(|e| sys_err("network interfaces", e))?;
    let interfaces: Vec<Interface> = networks
        .iter()
        .map(|(name, data)| Interface {
            name: name.to_string_lossy().into_owned(),
            mac: data.mac_address().0,
        })
        .collect();
    let primary = primary_interface(&interfaces);
    let node_id = match (&config.node_id, primary) {
        (Some(id), _) => id.clone(),
        (None, Some(iface)) => node_id_from_mac(iface.mac),
        (None, None) => return Err(AgentError::NoNodeId),
    };

    let mut cpus = system.cpus().len() as u64;
    if cpus == 0 {
        cpus = std::thread::available_parallelism().map_or(1, |n| n.get() as u64);
    }
    let disks = Disks::new_with_refreshed_list().map_err(|e| sys_err("disks", e))?;
    let mounts: Vec<(PathBuf, u64)> = disks
        .iter()
        .map(|d| (d.mount_point().to_path_buf(), d.total_space()))
        .collect();
    let storage_bytes = data_disk_capacity(&config.data_dir, &mounts).unwrap_or_else(|| {
        warn!(data_dir = %config.data_dir.display(), "no disk found for the data directory: reporting 0 storage");
        0
    });
    let gpus = if config.detect_gpus {
        gpu::detect()
    } else {
        Vec::new()
    };

    let capacity = Resources {
        cpu_millis: cpus * 1000,
        memory_bytes: system.total_memory(),
        gpus: gpus.len() as u32,
        storage_bytes,
    };
    let reserved = clamp(Resources::from(config.reserved), &capacity);

    let mut labels = BTreeMap::new();
    labels.insert("arch".to_string(), std::env::consts::ARCH.to_string());
    if let Ok(v) = System::os_version() {
        labels.insert("os.version".to_string(), v);
    }
    if let Ok(k) = System::kernel_version() {
        labels.insert("kernel".to_string(), k);
    }
    if let Some(iface) = primary {
        labels.insert("net.interface".to_string(), iface.name.clone());
    }
    labels.extend(config.labels.clone());

    let hostname = System::host_name().unwrap_or_else(|_| node_id.clone());
    let fingerprint = NodeFingerprint {
        hostname,
        os: System::distribution_id(),
        capacity,
        reserved,
        gpus,
        labels,
        datasets: config
            .dataset_root
            .as_deref()
            .map(scan_datasets)
            .unwrap_or_default(),
        agent_version: env!("CARGO_PKG_VERSION").to_string(),
    };
    info!(%node_id, cpus, memory = fingerprint.capacity.memory_bytes, gpus = fingerprint.gpus.len(), "node fingerprinted");
    Ok((node_id, fingerprint))
}

/// The interface whose MAC names the node: loopback and all-zero MACs skipped;
/// physical-looking names (`eth*`, `en*`, `em*`, `wl*`, `bond*`) first, virtual ones
/// (`docker*`, `veth*`, `br-*`, …) last, ties broken by name. Deterministic whatever the
/// order the OS lists them in.
pub fn primary_interface(interfaces: &[Interface]) -> Option<&Interface> {
    interfaces
        .iter()
        .filter(|i| i.name != "lo" && !i.name.starts_with("lo:"))
        .filter(|i| i.mac != [0; 6] && i.mac != [0xff; 6])
        .min_by(|a, b| (rank(&a.name), &a.name).cmp(&(rank(&b.name), &b.name)))
}

fn rank(name: &str) -> u8 {
    const PHYSICAL: &[&str] = &["eth", "en", "em", "wl", "bond"];
    const VIRTUAL: &[&str] = &[
        "docker",
        "veth",
        "br-",
        "virbr",
        "vnet",
        "vmnet",
        "tap",
        "tun",
        "cni",
        "flannel",
        "cali",
        "vxlan",
        "kube",
        "lxc",
        "lxd",
        "podman",
        "tailscale",
        "wg",
        "zt",
        "dummy",
    ];
    if PHYSICAL.iter().any(|p| name.starts_with(p)) {
        0
    } else if VIRTUAL.iter().any(|p| name.starts_with(p)) {
        2
    } else {
        1
    }
}

/// `0x` and the MAC's 12 lowercase hex digits: `0x5f6e4b6e4b50`.
pub fn node_id_from_mac(mac: [u8; 6]) -> String {
    let mut s = String::from("0x");
    for b in mac {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// The agent's id in deployment documents: `node-agent_<node_id>`.
pub fn node_agent_id(node_id: &str) -> String {
    format!("node-agent_{node_id}")
}

/// Total space of the disk mounted at the longest mount point that contains `data_dir`.
fn data_disk_capacity(data_dir: &Path, mounts: &[(PathBuf, u64)]) -> Option<u64> {
    let dir = std::fs::canonicalize(data_dir).unwrap_or_else(|_| data_dir.to_path_buf());
    mounts
        .iter()
        .filter(|(mount, _)| dir.starts_with(mount))
        .max_by_key(|(mount, _)| mount.components().count())
        .map(|(_, total)| *total)
}

/// Dataset keys `category/db/dataset@version` found as directories under `root`, sorted.
pub fn scan_datasets(root: &Path) -> Vec<String> {
    fn dirs(p: &Path) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(p) else {
            return Vec::new();
        };
        let mut names: Vec<String> = entries
            .filter_map(Result::ok)
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        names.sort();
        names
    }
    let mut keys = Vec::new();
    for category in dirs(root) {
        for db in dirs(&root.join(&category)) {
            for dataset in dirs(&root.join(&category).join(&db)) {
                if dataset.contains('@') {
                    keys.push(format!("{category}/{db}/{dataset}"));
                }
            }
        }
    }
    keys
}

fn clamp(r: Resources, cap: &Resources) -> Resources {
    Resources {
        cpu_millis: r.cpu_millis.min(cap.cpu_millis),
        memory_bytes: r.memory_bytes.min(cap.memory_bytes),
        gpus: r.gpus.min(cap.gpus),
        storage_bytes: r.storage_bytes.min(cap.storage_bytes),
    }
}

fn sys_err(what: &'static str, e: sysinfo::Error) -> AgentError {
    AgentError::System {
        what,
        message: e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iface(name: &str, mac: [u8; 6]) -> Interface {
        Interface {
            name: name.to_string(),
            mac,
        }
    }

    const ETH0: [u8; 6] = [0x5f, 0x6e, 0x4b, 0x6e, 0x4b, 0x50];
    const ETH1: [u8; 6] = [0x5f, 0x6e, 0x4b, 0x6e, 0x4b, 0x51];
    const DOCKER: [u8; 6] = [0x02, 0x42, 0xac, 0x11, 0x00, 0x01];

    #[test]
    fn node_id_is_made_once_then_kept() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("agent-a");
        let id = load_or_create_node_id(&state, || "n-1a2b3c".to_string()).unwrap();
        assert_eq!(id, "n-1a2b3c");
        let again = load_or_create_node_id(&state, || panic!("must not make another")).unwrap();
        assert_eq!(again, "n-1a2b3c");
        // A second agent on the same host has its own state directory, and its own id.
        let other = load_or_create_node_id(&dir.path().join("agent-b"), || "n-9f".into());
        assert_eq!(other.unwrap(), "n-9f");
        std::fs::write(state.join(NODE_ID_FILE), "bad id!\n").unwrap();
        let err = load_or_create_node_id(&state, || "x".into()).unwrap_err();
        assert!(err.to_string().contains("node-id"), "{err}");
    }

    #[test]
    fn node_id_format() {
        assert_eq!(node_id_from_mac(ETH0), "0x5f6e4b6e4b50");
        assert_eq!(node_agent_id("0x5f6e4b6e4b50"), "node-agent_0x5f6e4b6e4b50");
    }

    #[test]
    fn primary_skips_loopback_and_zero_and_prefers_physical() {
        let list = vec![
            iface("veth12ab", [0x0a, 1, 2, 3, 4, 5]),
            iface("lo", [0; 6]),
            iface("docker0", DOCKER),
            iface("eth1", ETH1),
            iface("tun0", [0; 6]),
            iface("eth0", ETH0),
        ];
        assert_eq!(primary_interface(&list).unwrap().name, "eth0");
        // Any order of the same list gives the same answer.
        let mut reversed = list.clone();
        reversed.reverse();
        assert_eq!(primary_interface(&reversed).unwrap().name, "eth0");
        let mut rotated = list.clone();
        rotated.rotate_left(3);
        assert_eq!(primary_interface(&rotated).unwrap().mac, ETH0);
    }

    #[test]
    fn primary_falls_back_to_other_then_virtual() {
        let list = vec![iface("docker0", DOCKER), iface("ib0", ETH1)];
        assert_eq!(primary_interface(&list).unwrap().name, "ib0");
        let list = vec![
            iface("veth9", [0x0a, 0, 0, 0, 0, 9]),
            iface("docker0", DOCKER),
        ];
        assert_eq!(primary_interface(&list).unwrap().name, "docker0");
        let list = vec![iface("lo", [0; 6]), iface("eth0", [0; 6])];
        assert_eq!(primary_interface(&list), None);
    }

    #[test]
    fn data_disk_is_longest_matching_mount() {
        let mounts = vec![
            (PathBuf::from("/"), 100),
            (PathBuf::from("/var/lib"), 500),
            (PathBuf::from("/var/lib/docker-other"), 900),
        ];
        assert_eq!(
            data_disk_capacity(Path::new("/var/lib/docker/volumes"), &mounts),
            Some(500)
        );
        assert_eq!(data_disk_capacity(Path::new("/home/x"), &mounts), Some(100));
        assert_eq!(data_disk_capacity(Path::new("/x"), &mounts[1..]), None);
    }

    #[test]
    fn datasets_are_scanned_three_levels_deep() {
        let dir = tempfile::tempdir().unwrap();
        for p in [
            "vision/imagenet/train@v2",
            "vision/imagenet/val@v1",
            "text/wiki/en@2024",
            "text/wiki/noversion",
        ] {
            std::fs::create_dir_all(dir.path().join(p)).unwrap();
        }
        std::fs::write(dir.path().join("text/wiki/file@1"), b"not a dir").unwrap();
        assert_eq!(
            scan_datasets(dir.path()),
            vec![
                "text/wiki/en@2024",
                "vision/imagenet/train@v2",
                "vision/imagenet/val@v1"
            ]
        );
        assert!(scan_datasets(&dir.path().join("missing")).is_empty());
    }

    #[test]
    fn this_machine_fingerprints() {
        let config = FingerprintConfig {
            node_id: Some("0xfeedfeedfeed".to_string()),
            reserved: Reserved {
                cpu_millis: 500,
                memory_bytes: 1 << 20,
                storage_bytes: 0,
                gpus: 99,
            },
            data_dir: PathBuf::from("/"),
            detect_gpus: false,
            ..FingerprintConfig::default()
        };
        let (id, fp) = fingerprint(&config).unwrap();
        assert_eq!(id, "0xfeedfeedfeed");
        assert!(fp.capacity.cpu_millis >= 1000 && fp.capacity.cpu_millis % 1000 == 0);
        assert!(fp.capacity.memory_bytes > 0);
        assert!(fp.capacity.storage_bytes > 0);
        assert_eq!(fp.reserved.cpu_millis, 500);
        // Reserved never exceeds capacity.
        assert_eq!(fp.reserved.gpus, 0);
        assert!(fp.gpus.is_empty());
        assert_eq!(
            fp.labels.get("arch").map(String::as_str),
            Some(std::env::consts::ARCH)
        );
    }
}
