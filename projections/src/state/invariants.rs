//! The state's invariants, checked by tests after every decision: nothing negative or
//! over-committed, no device or port booked twice, and every derived index equal to
//! what the deployments say.

use std::collections::{BTreeMap, BTreeSet};

use dcloud_events::model::Resources;

use super::{port_key, State};

fn add(a: &mut Resources, b: &Resources) {
    a.cpu_millis = a.cpu_millis.saturating_add(b.cpu_millis);
    a.memory_bytes = a.memory_bytes.saturating_add(b.memory_bytes);
    a.storage_bytes = a.storage_bytes.saturating_add(b.storage_bytes);
}

impl State {
    /// `Err` names the first broken invariant.
    pub fn check_invariants(&self) -> Result<(), String> {
        struct Expect {
            need: Resources,
            gpus: BTreeMap<String, String>,
            ports: BTreeMap<u32, String>,
            deployments: BTreeSet<String>,
        }
        let mut expect: BTreeMap<&str, Expect> = BTreeMap::new();
        let mut queued = BTreeMap::new();
        for d in self.deployments.values() {
            if d.status.is_queued() {
                queued.insert(
                    d.requested_seq,
                    super::Queued {
                        id: d.id.clone(),
                        need: d.need.clone(),
                    },
                );
            }
            if !d.status.holds_resources() {
                continue;
            }
            let node = d
                .node
                .as_deref()
                .ok_or(format!("deployment {} holds resources on no node", d.id))?;
            let n = self
                .node(node)
                .ok_or(format!("deployment {} is on unknown node {node}", d.id))?;
            // A lost node keeps its deployments for the lost-node grace, and must
            // know since when.
            if !n.is_alive() && n.lost_since_ms.is_none() {
                return Err(format!(
                    "deployment {} holds resources on node {node}, lost since no time",
                    d.id
                ));
            }
            let e = expect.entry(node).or_insert_with(|| Expect {
                need: Resources::default(),
                gpus: BTreeMap::new(),
                ports: BTreeMap::new(),
                deployments: BTreeSet::new(),
            });
            add(&mut e.need, &d.need);
            if d.gpus.len() != d.need.gpus as usize {
                return Err(format!(
                    "deployment {} asked {} gpus, holds {}",
                    d.id,
                    d.need.gpus,
                    d.gpus.len()
                ));
            }
            for g in &d.gpus {
                if let Some(other) = e.gpus.insert(g.clone(), d.id.clone()) {
                    return Err(format!(
                        "gpu {g} on {node} assigned to {other} and {}",
                        d.id
                    ));
                }
            }
            for p in &d.ports {
                if let Some(other) = e
                    .ports
                    .insert(port_key(p.external, p.protocol), d.id.clone())
                {
                    return Err(format!(
                        "port {} on {node} booked by {other} and {}",
                        p.external, d.id
                    ));
                }
            }
            e.deployments.insert(d.id.clone());
        }
        if queued != self.pending {
            return Err("pending queue differs from the queued deployments".into());
        }
        if self.slots.len() != self.nodes.len() {
            return Err("placement summaries out of step with nodes".into());
        }
        if self.node_index.len() != self.nodes.len() {
            return Err("node index out of step with nodes".into());
        }
        let mut last_order = 0;
        for n in self.nodes_by_id() {
            if n.order <= last_order {
                return Err(format!("node {} is numbered out of id order", n.id));
            }
            last_order = n.order;
        }
        for (i, n) in self.nodes.iter().enumerate() {
            if n.slot as usize != i || self.node_index.get(&n.id) != Some(&n.slot) {
                return Err(format!("node {} is not at its slot", n.id));
            }
            if self.slots[i] != n.summary() {
                return Err(format!("placement summary of {} is stale", n.id));
            }
            let cap = n.allocatable();
            let a = &n.allocated;
            for (what, used, max) in [
                ("cpu", a.cpu_millis, cap.cpu_millis),
                ("memory", a.memory_bytes, cap.memory_bytes),
                ("storage", a.storage_bytes, cap.storage_bytes),
                ("gpu", u64::from(a.gpus), u64::from(cap.gpus)),
            ] {
                if used > max {
                    return Err(format!(
                        "node {} over-committed on {what}: {used} > {max}",
                        n.id
                    ));
                }
            }
            let empty = Expect {
                need: Resources::default(),
                gpus: BTreeMap::new(),
                ports: BTreeMap::new(),
                deployments: BTreeSet::new(),
            };
            let e = expect.get(n.id.as_str()).unwrap_or(&empty);
            let held = Resources {
                gpus: a.gpus,
                ..e.need.clone()
            };
            if *a != held {
                return Err(format!(
                    "node {} allocation {a:?} is not the sum {held:?}",
                    n.id
                ));
            }
            let gpus: BTreeMap<String, String> = n
                .gpus
                .iter()
                .filter_map(|g| Some((g.uuid.clone(), g.assigned.clone()?)))
                .collect();
            if gpus != e.gpus {
                return Err(format!(
                    "node {} gpu assignments differ from its deployments",
                    n.id
                ));
            }
            if n.gpus.iter().any(|g| g.reserved && g.assigned.is_some()) {
                return Err(format!("node {} assigned a reserved gpu", n.id));
            }
            if n.ports != e.ports {
                return Err(format!("node {} ports differ from its deployments", n.id));
            }
            if n.deployments != e.deployments {
                return Err(format!(
                    "node {} deployment set differs from its deployments",
                    n.id
                ));
            }
        }
        Ok(())
    }
}
