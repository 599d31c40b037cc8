//! Reading environment and template documents (the original `env-name`, `resources`,
//! `languages`, `dataset`, `port-publish`, `storage` … fields) into an
//! [`EnvironmentSpec`], checking every value on the way.

use std::collections::BTreeMap;

use dcloud_events::model::{
    EnvironmentSpec, LanguageSpec, Lifecycle, PortPublish, Protocol, Resources, StorageMount,
};
use serde_json::Value;

use super::dataset::read_category;
use super::extjson::{read_meta, META_FIELDS};
use super::read::{
    field_path, flag, item_path, kind, label, list, quote, scalar_text, show, string_list, text,
    Errors, Obj,
};
use super::rules::{
    check_label, check_label_key, check_label_value, check_name, check_port, check_target,
    check_word,
};
use super::size::{parse_cpu_millis, parse_gpus, parse_size, parse_storage_gb, QuantityError};

/// The fields of an environment document, in the order they are read and written.
pub(crate) const ENV_FIELDS: &[&str] = &[
    "_id",
    "env-name",
    "version",
    "os",
    "languages",
    "resources",
    "dataset",
    "port-publish",
    "storage",
    "node-labels",
    "is_active",
    "creation_time",
    "last_updation_time",
    "config_id",
];
/// A template may name itself with `template-name` instead of `env-name`.
const TEMPLATE_FIELDS: &[&str] = &[
    "_id",
    "template-name",
    "env-name",
    "version",
    "os",
    "languages",
    "resources",
    "dataset",
    "port-publish",
    "storage",
    "node-labels",
    "is_active",
    "creation_time",
    "last_updation_time",
    "config_id",
];
const LANGUAGE_FIELDS: &[&str] = &["language-name", "libraries"];
const RESOURCE_FIELDS: &[&str] = &["ram", "cpu", "gpu", "storage"];
const PORT_FIELDS: &[&str] = &["external", "internal"];
const EXTERNAL_FIELDS: &[&str] = &["ports"];
const INTERNAL_FIELDS: &[&str] = &["ports", "protocol"];
const STORAGE_FIELDS: &[&str] = &["target", "size", "lifecycle"];

pub(crate) const SIZE_HINT: &str = "use 512M, 1G, 2.5G";

/// Reads an environment (or, with `template`, a template) document at `path`.
pub(crate) fn read_environment(
    errors: &mut Errors,
    v: &Value,
    path: &str,
    template: bool,
) -> Option<EnvironmentSpec> {
    debug_assert!(META_FIELDS.iter().all(|f| ENV_FIELDS.contains(f)));
    let obj = Obj::open(errors, v, path, if template { TEMPLATE_FIELDS } else { ENV_FIELDS })?;
    let name = read_name(errors, &obj, template);
    let version_label = obj
        .get("version")
        .and_then(|v| {
            let path = obj.path("version");
            let version = label(errors, v, &path)?;
            errors.check(&path, check_label(&version));
            Some(version)
        })
        .unwrap_or_default();
    let os = obj.require(errors, "os", "an operating system such as ubuntu").and_then(|v| {
        let path = obj.path("os");
        let os = text(errors, v, &path, "a string")?;
        errors.check(&path, check_name(os));
        Some(os.to_owned())
    });
    let languages = obj.get("languages").map(|v| read_languages(errors, v, &obj.path("languages")));
    let resources = obj
        .require(errors, "resources", "an object with ram, cpu, gpu and storage")
        .and_then(|v| read_resources(errors, v, &obj.path("resources")));
    let datasets = obj.get("dataset").map(|v| {
        let path = obj.path("dataset");
        let items = list(errors, v, &path, "a list of {category-name, db}").unwrap_or_default();
        let read = items.iter().enumerate();
        read.filter_map(|(i, item)| read_category(errors, item, &item_path(&path, i))).collect()
    });
    let ports = obj.get("port-publish").map(|v| read_ports(errors, v, &obj.path("port-publish")));
    let storage = obj.get("storage").map(|v| read_storage(errors, v, &obj.path("storage")));
    let node_labels = obj.get("node-labels").map(|v| read_labels(errors, v, &obj.path("node-labels")));
    let is_active = obj.get("is_active").and_then(|v| flag(errors, v, &obj.path("is_active")));
    let meta = read_meta(errors, &obj);
    Some(EnvironmentSpec {
        name: name.unwrap_or_default(),
        version_label,
        os: os.unwrap_or_default(),
        languages: languages.unwrap_or_default(),
        resources: resources.unwrap_or_default(),
        datasets: datasets.unwrap_or_default(),
        ports: ports.unwrap_or_default(),
        storage: storage.unwrap_or_default(),
        node_labels: node_labels.unwrap_or_default(),
        is_active: is_active.unwrap_or(true),
        meta,
    })
}

/// `env-name`; a template may give `template-name` instead (not both).
fn read_name(errors: &mut Errors, obj: &Obj<'_>, template: bool) -> Option<String> {
    let key = match (template, obj.get("template-name"), obj.get("env-name")) {
        (true, Some(_), Some(_)) => {
            errors.push(&obj.path("template-name"), "give either template-name or env-name, not both");
            return None;
        }
        (true, Some(_), None) => "template-name",
        _ => "env-name",
    };
    let path = obj.path(key);
    let value = obj.require(errors, key, "a name such as vision-train")?;
    let name = text(errors, value, &path, "a string")?;
    errors.check(&path, check_name(name));
    Some(name.to_owned())
}

fn read_languages(errors: &mut Errors, v: &Value, path: &str) -> Vec<LanguageSpec> {
    let items = list(errors, v, path, "a list of {language-name, libraries}").unwrap_or_default();
    let mut languages = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let Some(obj) = Obj::open(errors, item, &item_path(path, i), LANGUAGE_FIELDS) else { continue };
        let name = obj.require(errors, "language-name", "a language such as python").and_then(|v| {
            let path = obj.path("language-name");
            let name = text(errors, v, &path, "a string")?;
            errors.check(&path, check_word(name));
            Some(name.to_owned())
        });
        let libraries = obj
            .get("libraries")
            .map(|v| string_list(errors, v, &obj.path("libraries"), "library names", check_word))
            .unwrap_or_default();
        languages.push(LanguageSpec { name: name.unwrap_or_default(), libraries });
    }
    languages
}

fn read_resources(errors: &mut Errors, v: &Value, path: &str) -> Option<Resources> {
    let obj = Obj::open(errors, v, path, RESOURCE_FIELDS)?;
    let memory = obj.require(errors, "ram", "a size such as 512M, 1G, 2.5G").and_then(|v| {
        let path = obj.path("ram");
        let bytes = size(errors, v, &path, parse_size)?;
        positive(errors, &path, bytes)
    });
    let cpu = obj.require(errors, "cpu", "a number of cpus such as 0.5, 1, 2.0").and_then(|v| {
        let path = obj.path("cpu");
        let millis = cpu(errors, v, &path)?;
        positive(errors, &path, millis)
    });
    let gpus = obj.get("gpu").and_then(|v| gpus(errors, v, &obj.path("gpu")));
    let storage = obj.get("storage").and_then(|v| size(errors, v, &obj.path("storage"), parse_storage_gb));
    Some(Resources {
        cpu_millis: cpu.unwrap_or_default(),
        memory_bytes: memory.unwrap_or_default(),
        gpus: gpus.unwrap_or_default(),
        storage_bytes: storage.unwrap_or_default(),
    })
}

fn positive(errors: &mut Errors, path: &str, n: u64) -> Option<u64> {
    if n == 0 {
        errors.push(path, "must be more than 0");
        return None;
    }
    Some(n)
}

/// A size read with `parse` (sizes need a unit; storage in GB may be bare).
fn size(
    errors: &mut Errors,
    v: &Value,
    path: &str,
    parse: fn(&str) -> Result<u64, QuantityError>,
) -> Option<u64> {
    let outcome = scalar_text(v).map(|s| parse(&s));
    match outcome {
        Some(Ok(bytes)) => Some(bytes),
        Some(Err(QuantityError::TooLarge)) => {
            errors.push(path, format!("{} is too large", show(v)));
            None
        }
        Some(Err(_)) => {
            errors.push(path, format!("{} is not a size; {SIZE_HINT}", show(v)));
            None
        }
        None => {
            errors.push(path, format!("expected a size such as 512M, 1G, 2.5G, found {}", kind(v)));
            None
        }
    }
}

fn cpu(errors: &mut Errors, v: &Value, path: &str) -> Option<u64> {
    let message = match scalar_text(v).map(|s| parse_cpu_millis(&s)) {
        Some(Ok(millis)) => return Some(millis),
        Some(Err(QuantityError::TooFine)) => {
            format!("{} is finer than a thousandth of a cpu", show(v))
        }
        Some(Err(QuantityError::TooLarge)) => format!("{} is too large", show(v)),
        Some(Err(QuantityError::Malformed)) => {
            format!("{} is not a number of cpus; use 0.5, 1, 2.0 or 500m", show(v))
        }
        None => format!("expected a number of cpus such as 0.5, 1, 2.0, found {}", kind(v)),
    };
    errors.push(path, message);
    None
}

fn gpus(errors: &mut Errors, v: &Value, path: &str) -> Option<u32> {
    let parsed = scalar_text(v).and_then(|s| parse_gpus(&s).ok());
    if parsed.is_none() {
        errors.push(path, format!("{} is not a number of gpus; use a whole number such as 0, 1, 2", show(v)));
    }
    parsed
}

/// A port written as a number or a string (`8888`, `"8888"`).
fn port(errors: &mut Errors, v: &Value, path: &str) -> Option<u16> {
    let parsed = scalar_text(v).and_then(|s| s.trim().parse::<u16>().ok()).filter(|p| check_port(*p).is_ok());
    if parsed.is_none() {
        errors.push(path, format!("{} is not a port; use a number from 1 to 65535", show(v)));
    }
    parsed
}

fn read_ports(errors: &mut Errors, v: &Value, path: &str) -> Vec<PortPublish> {
    let items = list(errors, v, path, "a list of {external, internal}").unwrap_or_default();
    let mut ports = Vec::with_capacity(items.len());
    let mut seen: Vec<(usize, PortPublish)> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let item_path = item_path(path, i);
        let Some(obj) = Obj::open(errors, item, &item_path, PORT_FIELDS) else { continue };
        let external = obj.require(errors, "external", "an object with ports").and_then(|v| {
            let sub = Obj::open(errors, v, &obj.path("external"), EXTERNAL_FIELDS)?;
            let port_value = sub.require(errors, "ports", "a port such as 8888")?;
            port(errors, port_value, &sub.path("ports"))
        });
        let internal = obj.require(errors, "internal", "an object with ports and protocol").and_then(|v| {
            let sub = Obj::open(errors, v, &obj.path("internal"), INTERNAL_FIELDS)?;
            let port_value = sub.require(errors, "ports", "a port such as 8888");
            let port = port_value.and_then(|p| port(errors, p, &sub.path("ports")));
            let protocol = match sub.get("protocol") {
                None => Some(Protocol::Tcp),
                Some(p) => protocol(errors, p, &sub.path("protocol")),
            };
            Some((port?, protocol?))
        });
        if let (Some(external), Some((internal, protocol))) = (external, internal) {
            let publish = PortPublish { external, internal, protocol };
            check_port_conflict(errors, path, i, &publish, &seen);
            seen.push((i, publish.clone()));
            ports.push(publish);
        }
    }
    ports
}

fn protocol(errors: &mut Errors, v: &Value, path: &str) -> Option<Protocol> {
    match v.as_str().map(str::to_ascii_lowercase).as_deref() {
        Some("tcp") => Some(Protocol::Tcp),
        Some("udp") => Some(Protocol::Udp),
        _ => {
            errors.push(path, format!("{} is not a protocol; use tcp or udp", show(v)));
            None
        }
    }
}

/// The same external port and protocol may be published once.
pub(crate) fn check_port_conflict(
    errors: &mut Errors,
    list_path: &str,
    index: usize,
    publish: &PortPublish,
    earlier: &[(usize, PortPublish)],
) {
    let clash = earlier
        .iter()
        .find(|(_, p)| p.external == publish.external && p.protocol == publish.protocol);
    if let Some((first, _)) = clash {
        errors.push(
            &format!("{}.external.ports", item_path(list_path, index)),
            format!(
                "port {}/{} is already published by {}",
                publish.external,
                publish.protocol.as_str(),
                item_path(list_path, *first)
            ),
        );
    }
}

fn read_storage(errors: &mut Errors, v: &Value, path: &str) -> Vec<StorageMount> {
    let items = list(errors, v, path, "a list of {target, size, lifecycle}").unwrap_or_default();
    let mut mounts = Vec::with_capacity(items.len());
    let mut seen: Vec<(usize, String)> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let item_path = item_path(path, i);
        let Some(obj) = Obj::open(errors, item, &item_path, STORAGE_FIELDS) else { continue };
        let target = obj.require(errors, "target", "an absolute path such as /data").and_then(|v| {
            let path = obj.path("target");
            let target = text(errors, v, &path, "an absolute path such as /data")?;
            let before = errors.len();
            errors.check(&path, check_target(target));
            check_target_conflict(errors, &path, target, &seen, path_of_list(&item_path));
            (errors.len() == before).then(|| target.to_owned())
        });
        let size_bytes = obj.require(errors, "size", "a size such as 512M, 1G, 2.5G").and_then(|v| {
            let path = obj.path("size");
            let bytes = size(errors, v, &path, parse_size)?;
            positive(errors, &path, bytes)
        });
        let lifecycle = obj.require(errors, "lifecycle", "temporary or persistent").and_then(|v| {
            let lifecycle = match v.as_str() {
                Some("temporary") => Some(Lifecycle::Temporary),
                Some("persistent") => Some(Lifecycle::Persistent),
                _ => None,
            };
            if lifecycle.is_none() {
                errors.push(&obj.path("lifecycle"), format!("{} is not a lifecycle; use temporary or persistent", show(v)));
            }
            lifecycle
        });
        if let Some(target) = &target {
            seen.push((i, target.clone()));
        }
        if let (Some(target), Some(size_bytes), Some(lifecycle)) = (target, size_bytes, lifecycle) {
            mounts.push(StorageMount { target, size_bytes, lifecycle });
        }
    }
    mounts
}

/// `storage` from `storage[3]`.
fn path_of_list(item_path: &str) -> &str {
    item_path.rsplit_once('[').map_or(item_path, |(list, _)| list)
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
        errors.push(path, format!("{} is already mounted by {by}", quote(target)));
    }
}

fn read_labels(errors: &mut Errors, v: &Value, path: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    let Value::Object(map) = v else {
        errors.push(path, format!("expected an object of label names to values, found {}", kind(v)));
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
            None => errors.push(&label_path, format!("expected a string, found {}", kind(&map[key]))),
        }
        if let (Some(value), true) = (value, errors.len() == before) {
            labels.insert(key.clone(), value);
        }
    }
    labels
}
