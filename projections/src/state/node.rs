//! A node as folded from the log: its fingerprint, health, last heartbeat, and what is
//! allocated on it (resources, GPU devices, external ports), plus the dense summary
//! placement scans.

use std::collections::{BTreeMap, BTreeSet};

use dcloud_events::model::{
    ContainerUsage, NodeFingerprint, PortPublish, Protocol, Resources, Usage,
};
use serde::Serialize;

/// Whether a node's agent is heard from.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize,
)]
pub enum NodeHealth {
    Alive,
    /// Missed heartbeats past the TTL; it comes back by registering again. Its
    /// deployments stay booked on it for the lost-node grace, then move.
    Lost,
}

impl NodeHealth {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeHealth::Alive => "alive",
            NodeHealth::Lost => "lost",
        }
    }
}

/// One GPU device of a node and the deployment it is assigned to.
#[derive(
    Debug, Clone, PartialEq, Eq, Serialize, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize,
)]
pub struct GpuSlot {
    pub index: u32,
    pub uuid: String,
    /// Held back for the host (the highest-index devices, `reserved.gpus` of them).
    pub reserved: bool,
    pub assigned: Option<String>,
}

#[derive(
    Debug, Clone, PartialEq, Eq, Serialize, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize,
)]
pub struct Node {
    pub id: String,
    /// Position in `State::nodes` (registration order); never changes.
    pub slot: u32,
    /// A number that sorts like the node id (0: not yet numbered), so placement breaks
    /// ties without comparing strings. Assigned by `apply`; see `State::number_node`.
    pub(crate) order: u64,
    pub fingerprint: NodeFingerprint,
    pub health: NodeHealth,
    /// When it was marked lost (the `NodeLost` event's time); `None` while alive.
    pub lost_since_ms: Option<i64>,
    pub draining: bool,
    pub first_registered_ms: i64,
    pub last_registered_ms: i64,
    /// Time of the last heartbeat kept in the log (liveness between them is the writer's).
    pub last_heartbeat_ms: Option<i64>,
    pub engine_ok: bool,
    pub usage: Usage,
    pub containers: Vec<ContainerUsage>,
    /// Sum of the needs of the deployments holding resources here; `gpus` counts
    /// assigned devices.
    pub allocated: Resources,
    /// Devices sorted by index.
    pub gpus: Vec<GpuSlot>,
    /// External ports in use: [`port_key`] → deployment id.
    pub ports: BTreeMap<u32, String>,
    /// Deployments holding resources here.
    pub deployments: BTreeSet<String>,
    /// The address users reach the node at, as its agent last reported it.
    pub address: Option<String>,
}

/// The key of an external port in [`Node::ports`].
pub fn port_key(port: u16, protocol: Protocol) -> u32 {
    let proto = match protocol {
        Protocol::Tcp => 0u32,
        Protocol::Udp => 1u32,
    };
    (proto << 16) | u32::from(port)
}

/// The port and protocol of a [`port_key`].
pub fn port_of_key(key: u32) -> (u16, Protocol) {
    let proto = if key >> 16 == 1 {
        Protocol::Udp
    } else {
        Protocol::Tcp
    };
    ((key & 0xffff) as u16, proto)
}

fn gpu_slots(fp: &NodeFingerprint, previous: &[GpuSlot]) -> Vec<GpuSlot> {
    let mut slots: Vec<GpuSlot> = fp
        .gpus
        .iter()
        .map(|g| GpuSlot {
            index: g.index,
            uuid: g.uuid.clone(),
            reserved: false,
            assigned: previous
                .iter()
                .find(|p| p.uuid == g.uuid)
                .and_then(|p| p.assigned.clone()),
        })
        .collect();
    slots.sort_by(|a, b| a.index.cmp(&b.index).then_with(|| a.uuid.cmp(&b.uuid)));
    let reserved = (fp.reserved.gpus as usize).min(slots.len());
    let first_reserved = slots.len() - reserved;
    for s in &mut slots[first_reserved..] {
        s.reserved = true;
    }
    slots
}

impl Node {
    pub(crate) fn new(id: &str, slot: u32, fingerprint: NodeFingerprint, time_ms: i64) -> Node {
        let gpus = gpu_slots(&fingerprint, &[]);
        Node {
            id: id.to_string(),
            slot,
            order: 0,
            fingerprint,
            health: NodeHealth::Alive,
            lost_since_ms: None,
            draining: false,
            first_registered_ms: time_ms,
            last_registered_ms: time_ms,
            last_heartbeat_ms: None,
            engine_ok: true,
            usage: Usage::default(),
            containers: Vec::new(),
            allocated: Resources::default(),
            gpus,
            ports: BTreeMap::new(),
            deployments: BTreeSet::new(),
            address: None,
        }
    }

    /// Re-registration: new fingerprint, alive again; assignments to devices that still
    /// exist are kept.
    pub(crate) fn reregister(&mut self, fingerprint: NodeFingerprint, time_ms: i64) {
        self.gpus = gpu_slots(&fingerprint, &self.gpus);
        self.fingerprint = fingerprint;
        self.health = NodeHealth::Alive;
        self.lost_since_ms = None;
        self.last_registered_ms = time_ms;
        self.recount_gpus();
    }

    pub fn is_alive(&self) -> bool {
        self.health == NodeHealth::Alive
    }

    /// Marked lost at `time_ms` (its deployments stay booked here until evicted).
    pub(crate) fn lose(&mut self, time_ms: i64) {
        self.health = NodeHealth::Lost;
        self.lost_since_ms = Some(time_ms);
    }

    /// Lost for at least `grace_ms` as of `now_ms`.
    pub fn lost_past(&self, grace_ms: i64, now_ms: i64) -> bool {
        self.lost_since_ms
            .is_some_and(|t| !self.is_alive() && now_ms.saturating_sub(t) >= grace_ms)
    }

    /// What deployments may use: capacity less reserved (GPUs: unreserved devices).
    pub fn allocatable(&self) -> Resources {
        let c = &self.fingerprint.capacity;
        let r = &self.fingerprint.reserved;
        Resources {
            cpu_millis: c.cpu_millis.saturating_sub(r.cpu_millis),
            memory_bytes: c.memory_bytes.saturating_sub(r.memory_bytes),
            gpus: self.gpus.iter().filter(|g| !g.reserved).count() as u32,
            storage_bytes: c.storage_bytes.saturating_sub(r.storage_bytes),
        }
    }

    /// Allocatable less allocated, never negative.
    pub fn free(&self) -> Resources {
        let a = self.allocatable();
        Resources {
            cpu_millis: a.cpu_millis.saturating_sub(self.allocated.cpu_millis),
            memory_bytes: a.memory_bytes.saturating_sub(self.allocated.memory_bytes),
            gpus: a.gpus.saturating_sub(self.allocated.gpus),
            storage_bytes: a.storage_bytes.saturating_sub(self.allocated.storage_bytes),
        }
    }

    /// Uuids of unassigned, unreserved devices, lowest index first.
    pub fn free_gpus(&self) -> impl Iterator<Item = &str> {
        self.gpus
            .iter()
            .filter(|g| !g.reserved && g.assigned.is_none())
            .map(|g| g.uuid.as_str())
    }

    /// External ports in use, with the deployment holding each.
    pub fn ports_in_use(&self) -> impl Iterator<Item = (u16, Protocol, &str)> {
        self.ports.iter().map(|(k, d)| {
            let (port, proto) = port_of_key(*k);
            (port, proto, d.as_str())
        })
    }

    pub fn has_dataset(&self, key: &str) -> bool {
        self.fingerprint.datasets.iter().any(|d| d == key)
    }

    fn recount_gpus(&mut self) {
        self.allocated.gpus = self.gpus.iter().filter(|g| g.assigned.is_some()).count() as u32;
    }

    /// Books `need`, the named devices and the ports for `deployment`. Saturating: it
    /// never fails (over-commit is prevented by `decide`, and caught by the invariants).
    pub(crate) fn allocate(
        &mut self,
        deployment: &str,
        need: &Resources,
        gpus: &[String],
        ports: &[PortPublish],
    ) {
        let a = &mut self.allocated;
        a.cpu_millis = a.cpu_millis.saturating_add(need.cpu_millis);
        a.memory_bytes = a.memory_bytes.saturating_add(need.memory_bytes);
        a.storage_bytes = a.storage_bytes.saturating_add(need.storage_bytes);
        for uuid in gpus {
            if let Some(g) = self.gpus.iter_mut().find(|g| &g.uuid == uuid) {
                g.assigned = Some(deployment.to_string());
            }
        }
        for p in ports {
            self.ports
                .insert(port_key(p.external, p.protocol), deployment.to_string());
        }
        self.deployments.insert(deployment.to_string());
        self.recount_gpus();
    }

    /// Gives back what `deployment` held here.
    pub(crate) fn release(&mut self, deployment: &str, need: &Resources, ports: &[PortPublish]) {
        let a = &mut self.allocated;
        a.cpu_millis = a.cpu_millis.saturating_sub(need.cpu_millis);
        a.memory_bytes = a.memory_bytes.saturating_sub(need.memory_bytes);
        a.storage_bytes = a.storage_bytes.saturating_sub(need.storage_bytes);
        for g in &mut self.gpus {
            if g.assigned.as_deref() == Some(deployment) {
                g.assigned = None;
            }
        }
        for p in ports {
            let key = port_key(p.external, p.protocol);
            if self.ports.get(&key).map(String::as_str) == Some(deployment) {
                self.ports.remove(&key);
            }
        }
        self.deployments.remove(deployment);
        self.recount_gpus();
    }

    /// The dense summary placement scans.
    pub(crate) fn summary(&self) -> Slot {
        let alloc = self.allocatable();
        let free = self.free();
        let mut flags = 0u8;
        if self.is_alive() {
            flags |= Slot::ALIVE;
        }
        if self.draining {
            flags |= Slot::DRAINING;
        }
        if self.fingerprint.labels.contains_key("os") {
            flags |= Slot::OS_LABEL;
        }
        if !self.ports.is_empty() {
            flags |= Slot::PORTS;
        }
        if !self.fingerprint.datasets.is_empty() {
            flags |= Slot::DATASETS;
        }
        let fits_fast =
            |free: u64, alloc: u64| 0 < alloc && alloc <= Slot::FAST_MAX && free <= alloc;
        if fits_fast(free.cpu_millis, alloc.cpu_millis)
            && fits_fast(free.memory_bytes, alloc.memory_bytes)
        {
            flags |= Slot::FAST;
        }
        Slot {
            free_cpu: free.cpu_millis,
            free_mem: free.memory_bytes,
            free_storage: free.storage_bytes,
            alloc_cpu: alloc.cpu_millis,
            alloc_mem: alloc.memory_bytes,
            free_gpus: free.gpus,
            alloc_gpus: alloc.gpus,
            order: self.order,
            inv_cpu: Recip::of(alloc.cpu_millis),
            inv_mem: Recip::of(alloc.memory_bytes),
            flags,
        }
    }
}

/// What placement needs of a node, packed for a cache-friendly linear scan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Slot {
    pub(crate) free_cpu: u64,
    pub(crate) free_mem: u64,
    pub(crate) free_storage: u64,
    pub(crate) alloc_cpu: u64,
    pub(crate) alloc_mem: u64,
    pub(crate) free_gpus: u32,
    pub(crate) alloc_gpus: u32,
    /// [`Node::order`].
    pub(crate) order: u64,
    /// Reciprocals of `alloc_cpu` and `alloc_mem`: placement scores these with a
    /// multiplication (and an exact integer correction) instead of a division per node.
    pub(crate) inv_cpu: Recip,
    pub(crate) inv_mem: Recip,
    pub(crate) flags: u8,
}

/// `1 / x` as an `f64` (0 for 0), derived from an integer field of the same [`Slot`].
///
/// Compared bit for bit, so that `Slot` (and `State`) keep a total `Eq`: two summaries
/// of the same node always hold the same bits.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Recip(pub(crate) f64);

impl Recip {
    fn of(x: u64) -> Recip {
        Recip(if x == 0 { 0.0 } else { 1.0 / x as f64 })
    }
}

impl PartialEq for Recip {
    fn eq(&self, other: &Recip) -> bool {
        self.0.to_bits() == other.0.to_bits()
    }
}

impl Eq for Recip {}

impl Slot {
    pub(crate) const ALIVE: u8 = 1;
    pub(crate) const DRAINING: u8 = 2;
    /// The node has an `os` label that the spec's os must match.
    pub(crate) const OS_LABEL: u8 = 4;
    /// Some external port is in use.
    pub(crate) const PORTS: u8 = 8;
    /// The node reports datasets present.
    pub(crate) const DATASETS: u8 = 16;
    /// CPU and memory can be scored through `inv_cpu` and `inv_mem`: both allocatable
    /// amounts are non-zero and at most [`Slot::FAST_MAX`], and free is at most
    /// allocatable. Other nodes are scored with plain divisions.
    pub(crate) const FAST: u8 = 32;

    /// The largest allocatable amount scored through a reciprocal: `free * 1000` and
    /// `1001 * alloc` stay far below `2^63`, so the integer correction cannot overflow.
    pub(crate) const FAST_MAX: u64 = 1 << 52;

    pub(crate) fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dcloud_events::model::GpuDevice;

    fn fp(gpus: u32, reserved_gpus: u32) -> NodeFingerprint {
        NodeFingerprint {
            hostname: "h".into(),
            os: "linux".into(),
            capacity: Resources {
                cpu_millis: 4000,
                memory_bytes: 8 << 30,
                gpus,
                storage_bytes: 100 << 30,
            },
            reserved: Resources {
                cpu_millis: 500,
                memory_bytes: 1 << 30,
                gpus: reserved_gpus,
                storage_bytes: 0,
            },
            gpus: (0..gpus)
                .rev()
                .map(|i| GpuDevice {
                    index: i,
                    uuid: format!("GPU-{i}"),
                    model: "t".into(),
                    memory_bytes: 1,
                })
                .collect(),
            labels: BTreeMap::new(),
            datasets: vec![],
            agent_version: "1".into(),
        }
    }

    #[test]
    fn port_keys_round_trip() {
        for (p, proto) in [
            (0u16, Protocol::Tcp),
            (9000, Protocol::Udp),
            (65535, Protocol::Tcp),
        ] {
            assert_eq!(port_of_key(port_key(p, proto)), (p, proto));
        }
        assert_ne!(port_key(80, Protocol::Tcp), port_key(80, Protocol::Udp));
    }

    #[test]
    fn reserved_gpus_are_the_highest_indexes_and_allocation_round_trips() {
        let mut n = Node::new("n", 0, fp(3, 1), 0);
        assert_eq!(
            n.gpus.iter().map(|g| g.index).collect::<Vec<_>>(),
            vec![0, 1, 2]
        );
        assert!(n.gpus[2].reserved);
        assert_eq!(n.allocatable().gpus, 2);
        assert_eq!(n.allocatable().cpu_millis, 3500);
        let need = Resources {
            cpu_millis: 1000,
            memory_bytes: 1 << 30,
            gpus: 1,
            storage_bytes: 5,
        };
        let port = PortPublish {
            external: 9000,
            internal: 80,
            protocol: Protocol::Tcp,
        };
        n.allocate("d1", &need, &["GPU-0".into()], std::slice::from_ref(&port));
        assert_eq!(n.free().cpu_millis, 2500);
        assert_eq!(n.free_gpus().collect::<Vec<_>>(), vec!["GPU-1"]);
        assert_eq!(
            n.ports_in_use().collect::<Vec<_>>(),
            vec![(9000, Protocol::Tcp, "d1")]
        );
        n.release("d1", &need, &[port]);
        assert_eq!(n.allocated, Resources::default());
        assert!(n.ports.is_empty() && n.deployments.is_empty());
    }

    #[test]
    fn reregistration_keeps_assignments_of_devices_still_present() {
        let mut n = Node::new("n", 0, fp(2, 0), 0);
        n.allocate("d1", &Resources::default(), &["GPU-1".into()], &[]);
        n.reregister(fp(3, 0), 5);
        assert_eq!(n.gpus[1].assigned.as_deref(), Some("d1"));
        assert_eq!(n.allocated.gpus, 1);
        n.reregister(fp(1, 0), 6);
        assert_eq!(n.allocated.gpus, 0);
    }
}
