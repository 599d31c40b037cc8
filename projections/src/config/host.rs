//! What an environment asks of its node beyond resources: published ports
//! (`port-publish[]`), storage mounts (`storage[]`) and node labels (`node-labels`).

use std::collections::BTreeMap;

use dcloud_events::model::{Lifecycle, PortPublish, Protocol, StorageMount};
use serde_json::Value;

use super::environment::{positive, size};
use super::read::{field_path, item_path, kind, list, quote, scalar_text, show, text, Errors, Obj};
use super::rules::{check_label_key, check_label_value, check_port, check_target};
use super::size::parse_size;

const PORT_FIELDS: &[&str] = &["external", "internal"];
const EXTERNAL_FIELDS: &[&str] = &["ports"];
const INTERNAL_FIELDS: &[&str] = &["ports", "protocol"];
const STORAGE_FIELDS: &[&str] = &["target", "size", "lifecycle"];

/// A port written as a number or a string (`8888`, `"8888"`).
fn port(errors: &mut Errors, v: &Value, path: &str) -> Option<u16> {
    let parsed = scalar_text(v)
        .and_then(|s| s.trim().parse::<u16>().ok())
        .filter(|p| check_port(*p).is_ok());
    if parsed.is_none() {
        errors.push(
            path,
            format!("{} is not a port; use a number from 1 to 65535", show(v)),
        );
    }
    parsed
}

pub(crate) fn read_ports(errors: &mut Errors, v: &Value, path: &str) -> Vec<PortPublish> {
    let items = list(errors, v, path, "a list of {external, internal}").unwrap_or_default();
    let mut ports = Vec::with_capacity(items.len());
    let mut seen = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let item_path = item_path(path, i);
        let Some(obj) = Obj::open(errors, item, &item_path, PORT_FIELDS) else {
            continue;
        };
        let external = obj
            .require(errors, "external", "an object with ports")
            .and_then(|v| {
                let sub = Obj::open(errors, v, &obj.path("external"), EXTERNAL_FIELDS)?;
                let port_value = sub.require(errors, "ports", "a port such as 8888")?;
                port(errors, port_value, &sub.path("ports"))
            });
        let (internal, protocol) = obj
            .require(errors, "internal", "an object with ports and protocol")
            .and_then(|v| {
                let sub = Obj::open(errors, v, &obj.path("internal"), INTERNAL_FIELDS)?;
                let port_value = sub.require(errors, "ports", "a port such as 8888");
                let port = port_value.and_then(|p| port(errors, p, &sub.path("ports")));
                let protocol = match sub.get("protocol") {
                    None => Some(Protocol::Tcp),
                    Some(p) => protocol(errors, p, &sub.path("protocol")),
                };
                Some((port, protocol))
            })
            .unwrap_or_default();
        // A clash is worth reporting even when the internal port is wrong.
        if let (Some(external), Some(protocol)) = (external, protocol) {
            check_port_conflict(errors, path, i, (external, protocol), &seen);
            seen.push((i, (external, protocol)));
        }
        if let (Some(external), Some(internal), Some(protocol)) = (external, internal, protocol) {
            ports.push(PortPublish {
                external,
                internal,
                protocol,
            });
        }
    }
    ports
}

fn protocol(errors: &mut Errors, v: &Value, path: &str) -> Option<Protocol> {
    match v.as_str().map(str::to_ascii_lowercase).as_deref() {
        Some("tcp") => Some(Protocol::Tcp),
        Some("udp") => Some(Protocol::Udp),
        _ => {
            errors.push(
                path,
                format!("{} is not a protocol; use tcp or udp", show(v)),
            );
            None
        }
    }
}

/// The same external port and protocol may be published once.
pub(crate) fn check_port_conflict(
    errors: &mut Errors,
    list_path: &str,
    index: usize,
    (external, protocol): (u16, Protocol),
    earlier: &[(usize, (u16, Protocol))],
) {
    if let Some((first, _)) = earlier
        .iter()
        .find(|(_, seen)| *seen == (external, protocol))
    {
        errors.push(
            &format!("{}.external.ports", item_path(list_path, index)),
            format!(
                "port {external}/{} is already published by {}",
                protocol.as_str(),
                item_path(list_path, *first)
            ),
        );
    }
}

pub(crate) fn read_storage(errors: &mut Errors, v: &Value, path: &str) -> Vec<StorageMount> {
    let items = list(errors, v, path, "a list of {target, size, lifecycle}").unwrap_or_default();
    let mut mounts = Vec::with_capacity(items.len());
    let mut seen: Vec<(usize, String)> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let item_path = item_path(path, i);
        let Some(obj) = Obj::open(errors, item, &item_path, STORAGE_FIELDS) else {
            continue;
        };
        let target = obj
            .require(errors, "target", "an absolute path such as /data")
            .and_then(|v| {
                let path = obj.path("target");
                let target = text(errors, v, &path, "an absolute path such as /data")?;
                let before = errors.len();
                errors.check(&path, check_target(target));
                check_target_conflict(errors, &path, target, &seen, path_of_list(&item_path));
                (errors.len() == before).then(|| target.to_owned())
            });
        let size_bytes = obj
            .require(errors, "size", "a size such as 512M, 1G, 2.5G")
            .and_then(|v| {
                let path = obj.path("size");
                let bytes = size(errors, v, &path, parse_size)?;
                positive(errors, &path, bytes)
            });
        let lifecycle = obj
            .require(errors, "lifecycle", "temporary or persistent")
            .and_then(|v| {
                let lifecycle = match v.as_str() {
                    Some("temporary") => Some(Lifecycle::Temporary),
                    Some("persistent") => Some(Lifecycle::Persistent),
                    _ => None,
                };
                if lifecycle.is_none() {
                    errors.push(
                        &obj.path("lifecycle"),
                        format!(
                            "{} is not a lifecycle; use temporary or persistent",
                            show(v)
                        ),
                    );
                }
                lifecycle
            });
        if let Some(target) = &target {
            seen.push((i, target.clone()));
        }
        if let (Some(target), Some(size_bytes), Some(lifecycle)) = (target, size_bytes, lifecycle) {
            mounts.push(StorageMount {
                target,
                size_bytes,
                lifecycle,
            });
        }
    }
    mounts
}

/// `storage` from `storage[3]`.
fn path_of_list(item_path: &str) -> &str {
    item_path
        .rsplit_once('[')
        .map_or(item_path, |(list, _)| list)
}

/// A target may be mounted once.
pub(crate) fn check_target_conflict(
    errors: &mut Errors,
    path: &str,
    target: &str,
    earlier: &[(usize, String)],
    list_path: &str,
) {
    if let Some((first, _)) = earlier.iter().find(|(_, t)| t == target) {
        let by = item_path(list_path, *first);
        errors.push(
            path,
            format!("{} is already mounted by {by}", quote(target)),
        );
    }
}

pub(crate) fn read_labels(errors: &mut Errors, v: &Value, path: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    let Value::Object(map) = v else {
        errors.push(
            path,
            format!(
                "expected an object of label names to values, found {}",
                kind(v)
            ),
        );
        return labels;
    };
    let mut keys: Vec<&String> = map.keys().collect();
    keys.sort();
    for key in keys {
        let label_path = field_path(path, key);
        let before = errors.len();
        errors.check(&label_path, check_label_key(key));
        let value = match &map[key] {
            Value::Bool(b) => Some(b.to_string()),
            other => scalar_text(other).map(|s| s.into_owned()),
        };
        match &value {
            Some(value) => errors.check(&label_path, check_label_value(value)),
            None => errors.push(
                &label_path,
                format!("expected a string, found {}", kind(&map[key])),
            ),
        }
        if let (Some(value), true) = (value, errors.len() == before) {
            labels.insert(key.clone(), value);
        }
    }
    labels
}
