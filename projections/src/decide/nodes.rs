//! Nodes: registration (first or again), heartbeats kept at an interval, loss (its
//! deployments wait out the lost-node grace, then are released and placed
//! elsewhere), drain and undrain.

use dcloud_events::model::{ContainerUsage, NodeFingerprint, Resources, Usage, VolumeUsage};
use dcloud_events::Event;

use super::{admin_only, node_actor, not_found, Scratch};
use crate::error::DomainError;
use crate::state::Deployment;

/// Gives back what `d` holds on a node that can no longer keep it: a deployment being
/// stopped is simply stopped, any other goes back to the queue.
fn evict(s: &mut Scratch<'_>, d: &Deployment, node_id: &str) {
    if d.status == crate::state::DeploymentStatus::Stopping {
        s.emit(Event::DeploymentStopped {
            deployment_id: d.id.clone(),
        });
    } else {
        s.emit(Event::DeploymentLost {
            deployment_id: d.id.clone(),
            node_id: node_id.to_string(),
        });
        s.requeue(d);
    }
    s.release(d);
}

/// The node's deployments, oldest first.
fn held<'s>(s: &Scratch<'s>, slot: u32) -> Vec<&'s Deployment> {
    let state = s.state;
    let mut ds: Vec<&Deployment> = state
        .nodes
        .get(slot as usize)
        .map(|n| {
            n.deployments
                .iter()
                .filter_map(|id| state.deployments.get(id))
                .collect()
        })
        .unwrap_or_default();
    ds.sort_by_key(|d| d.requested_seq);
    ds
}

/// First registration, or again (same id: same node, new fingerprint, alive again,
/// still draining if it was). When the new fingerprint cannot hold everything booked
/// on the node, the newest deployments that no longer fit are lost and placed again.
pub(super) fn register(
    s: &mut Scratch<'_>,
    node_id: &str,
    fp: &NodeFingerprint,
) -> Result<(), DomainError> {
    node_actor(s.ctx, node_id)?;
    if node_id.is_empty() {
        return Err(DomainError::Invalid("a node id must not be empty".into()));
    }
    s.emit(Event::NodeRegistered {
        node_id: node_id.to_string(),
        fingerprint: fp.clone(),
    });
    let Some(slot) = s.slot_of(node_id) else {
        s.add_node(node_id, fp.clone());
        s.place_pending(false);
        return Ok(());
    };
    let mut probe = match s.node(slot) {
        Some(n) => n.clone(),
        None => return Ok(()),
    };
    probe.reregister(fp.clone(), s.ctx.now_ms);
    let cap = probe.allocatable();
    let mut kept = Resources::default();
    let mut evicted = Vec::new();
    for d in held(s, slot) {
        let devices_ok = d
            .gpus
            .iter()
            .all(|u| probe.gpus.iter().any(|g| &g.uuid == u && !g.reserved));
        let with = Resources {
            cpu_millis: kept.cpu_millis.saturating_add(d.need.cpu_millis),
            memory_bytes: kept.memory_bytes.saturating_add(d.need.memory_bytes),
            gpus: 0,
            storage_bytes: kept.storage_bytes.saturating_add(d.need.storage_bytes),
        };
        let fits = with.cpu_millis <= cap.cpu_millis
            && with.memory_bytes <= cap.memory_bytes
            && with.storage_bytes <= cap.storage_bytes;
        if devices_ok && fits {
            kept = with;
        } else {
            evicted.push(d);
        }
    }
    let now = s.ctx.now_ms;
    if let Some(node) = s.node_mut(slot) {
        node.reregister(fp.clone(), now);
    }
    for d in evicted {
        evict(s, d, node_id);
    }
    s.gained(slot);
    s.place_pending(false);
    Ok(())
}

/// Kept in the log when `heartbeat_log_interval_ms` has passed since the last kept one
/// or when the engine's health changed; otherwise nothing (the writer tracks liveness).
pub(super) fn heartbeat(
    s: &mut Scratch<'_>,
    node_id: &str,
    usage: &Usage,
    containers: &[ContainerUsage],
    engine_ok: bool,
) -> Result<(), DomainError> {
    node_actor(s.ctx, node_id)?;
    let node = s
        .state
        .node(node_id)
        .ok_or_else(|| not_found("node", node_id))?;
    if !node.is_alive() {
        return Err(DomainError::Invalid(format!(
            "node {node_id} is lost; register it again"
        )));
    }
    let due = match node.last_heartbeat_ms {
        None => true,
        Some(t) => s.ctx.now_ms.saturating_sub(t) >= s.ctx.settings.heartbeat_log_interval_ms,
    };
    if due || node.engine_ok != engine_ok {
        s.emit(Event::NodeHeartbeat {
            node_id: node_id.to_string(),
            usage: usage.clone(),
            containers: containers.to_vec(),
            engine_ok,
        });
    }
    Ok(())
}

/// The address users reach the node at: a host name or an IP literal, no scheme, no
/// port. Logged only when it differs from the last one.
pub(super) fn report_address(
    s: &mut Scratch<'_>,
    node_id: &str,
    address: &str,
) -> Result<(), DomainError> {
    node_actor(s.ctx, node_id)?;
    let node = s
        .state
        .node(node_id)
        .ok_or_else(|| not_found("node", node_id))?;
    check_address(address)?;
    if node.address.as_deref() != Some(address) {
        s.emit(Event::NodeAddressReported {
            node_id: node_id.to_string(),
            address: address.to_string(),
        });
    }
    Ok(())
}

/// Refuses what cannot stand for a host in `http://HOST:PORT/`.
fn check_address(address: &str) -> Result<(), DomainError> {
    let bad = |why: &str| {
        DomainError::Invalid(format!(
            "address {address:?} {why}; expected a host name or an IP address (no scheme, no port)"
        ))
    };
    if address.is_empty() || address.len() > 253 {
        return Err(bad("must be 1 to 253 characters"));
    }
    if address.parse::<std::net::Ipv6Addr>().is_ok() {
        return Ok(());
    }
    if !address
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
    {
        return Err(bad("has characters a host name cannot have"));
    }
    Ok(())
}

/// The agent of `node_id` removed a container of `deployment_id` that it found but was
/// not assigned (the deployment was moved or stopped while the node was away).
pub(super) fn stale_container(
    s: &mut Scratch<'_>,
    node_id: &str,
    deployment_id: &str,
    container_id: &str,
) -> Result<(), DomainError> {
    node_actor(s.ctx, node_id)?;
    let d = s
        .state
        .deployment(deployment_id)
        .ok_or_else(|| not_found("deployment", deployment_id))?;
    if d.status.holds_resources() && d.node.as_deref() == Some(node_id) {
        return Err(DomainError::Invalid(format!(
            "deployment {deployment_id} is assigned to node {node_id}: its container is not stale"
        )));
    }
    s.emit(Event::StaleContainerRemoved {
        deployment_id: deployment_id.to_string(),
        node_id: node_id.to_string(),
        container_id: container_id.to_string(),
    });
    Ok(())
}

/// A report that moves a target by less than this share of its size (or, with no
/// size, of [`VOLUME_STEP_BYTES`]) is not worth an event.
const VOLUME_STEP_PERCENT: u64 = 5;
/// The smallest change recorded for a target without a size.
pub(crate) const VOLUME_STEP_BYTES: u64 = 64 << 20;

/// How full a deployment's storage is on its node. Recorded only when a target moved
/// by enough to matter (5% of its size, or 64 MiB without one), crossed its size,
/// changed whether it is enforced, or appeared or went; otherwise nothing is written.
pub(super) fn volume_usage(
    s: &mut Scratch<'_>,
    node_id: &str,
    deployment_id: &str,
    volumes: &[VolumeUsage],
) -> Result<(), DomainError> {
    node_actor(s.ctx, node_id)?;
    let d = s
        .state
        .deployment(deployment_id)
        .ok_or_else(|| not_found("deployment", deployment_id))?;
    if d.node.as_deref() != Some(node_id) || !d.status.holds_resources() {
        // A late report about a deployment that left this node: nothing to record.
        return Ok(());
    }
    let spec = s.state.deployment_spec(d);
    for (i, v) in volumes.iter().enumerate() {
        let known = spec.is_some_and(|spec| spec.storage.iter().any(|m| m.target == v.target));
        if !known {
            return Err(DomainError::Validation(vec![
                crate::error::FieldError::new(
                    format!("volumes[{i}].target"),
                    format!("{:?} is not a storage target of this deployment", v.target),
                ),
            ]));
        }
    }
    let mut volumes = volumes.to_vec();
    volumes.sort_by(|a, b| a.target.cmp(&b.target));
    volumes.dedup_by(|a, b| a.target == b.target);
    if !volumes_changed(&d.volumes, &volumes) {
        return Ok(());
    }
    s.emit(Event::VolumeUsageReported {
        deployment_id: deployment_id.to_string(),
        node_id: node_id.to_string(),
        volumes,
    });
    Ok(())
}

/// Whether `new` differs from what is recorded by enough to be written.
fn volumes_changed(old: &[VolumeUsage], new: &[VolumeUsage]) -> bool {
    if old.len() != new.len() {
        return true;
    }
    old.iter().zip(new).any(|(o, n)| {
        let step = if n.size_bytes > 0 {
            (n.size_bytes * VOLUME_STEP_PERCENT / 100).max(1)
        } else {
            VOLUME_STEP_BYTES
        };
        let over = |v: &VolumeUsage| v.size_bytes > 0 && v.used_bytes > v.size_bytes;
        o.target != n.target
            || o.size_bytes != n.size_bytes
            || o.enforced != n.enforced
            || over(o) != over(n)
            || o.used_bytes.abs_diff(n.used_bytes) >= step
    })
}

/// The writer's timer names the nodes past the TTL; unknown or already lost nodes are
/// skipped. A lost node's deployments stay booked on it for `lost_node_grace_ms` (its
/// agent may only be cut off, its containers still running); with no grace they are
/// released and placed elsewhere at once.
pub(super) fn mark_lost(s: &mut Scratch<'_>, node_ids: &[String]) -> Result<(), DomainError> {
    admin_only(s.ctx, "marking nodes lost")?;
    let (now, grace) = (s.ctx.now_ms, s.ctx.settings.lost_node_grace_ms);
    for node_id in node_ids {
        let Some(slot) = s.slot_of(node_id) else {
            continue;
        };
        if !s.node(slot).is_some_and(|n| n.is_alive()) {
            continue;
        }
        s.emit(Event::NodeLost {
            node_id: node_id.clone(),
        });
        if let Some(n) = s.node_mut(slot) {
            n.lose(now);
        }
        if grace <= 0 {
            for d in held(s, slot) {
                evict(s, d, node_id);
            }
        }
    }
    s.place_pending(false);
    Ok(())
}

/// Lost nodes whose grace is over (or any lost node, with `force`): each one's
/// deployments are released and placed elsewhere (a stopping one is simply stopped).
/// Nodes alive again, still within their grace, or holding nothing are skipped.
pub(super) fn evict_lost(
    s: &mut Scratch<'_>,
    node_ids: &[String],
    force: bool,
) -> Result<(), DomainError> {
    admin_only(s.ctx, "evicting lost nodes")?;
    let now = s.ctx.now_ms;
    let grace = if force {
        0
    } else {
        s.ctx.settings.lost_node_grace_ms
    };
    for node_id in node_ids {
        let Some(slot) = s.slot_of(node_id) else {
            continue;
        };
        if !s.node(slot).is_some_and(|n| n.lost_past(grace, now)) {
            continue;
        }
        for d in held(s, slot) {
            evict(s, d, node_id);
        }
    }
    s.place_pending(false);
    Ok(())
}

/// Whether `d` is booked on a node that is lost (its agent cannot act on it).
pub(super) fn on_lost_node(s: &Scratch<'_>, d: &Deployment) -> bool {
    d.status.holds_resources()
        && d.node
            .as_deref()
            .and_then(|n| s.slot_of(n))
            .and_then(|slot| s.node(slot))
            .is_some_and(|n| !n.is_alive())
}

/// A draining node keeps its deployments and takes no new ones.
pub(super) fn drain(s: &mut Scratch<'_>, node_id: &str) -> Result<(), DomainError> {
    admin_only(s.ctx, "draining a node")?;
    let node = s
        .state
        .node(node_id)
        .ok_or_else(|| not_found("node", node_id))?;
    if !node.draining {
        s.emit(Event::NodeDrained {
            node_id: node_id.to_string(),
        });
    }
    Ok(())
}

pub(super) fn undrain(s: &mut Scratch<'_>, node_id: &str) -> Result<(), DomainError> {
    admin_only(s.ctx, "undraining a node")?;
    let node = s
        .state
        .node(node_id)
        .ok_or_else(|| not_found("node", node_id))?;
    if node.draining {
        s.emit(Event::NodeUndrained {
            node_id: node_id.to_string(),
        });
        let slot = node.slot;
        if let Some(n) = s.node_mut(slot) {
            n.draining = false;
        }
        s.gained(slot);
        s.place_pending(false);
    }
    Ok(())
}
