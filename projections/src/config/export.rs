//! Export back to the original JSON formats, with Mongo extended JSON ids and times
//! where the document carried them. Parsing an export gives back an equal value.

use dcloud_events::model::{DatasetCategory, EnvironmentSpec, LibraryCatalog, ServiceRegistration};
use serde_json::{json, Map, Value};

use super::catalog::write_catalog;
use super::dataset::write_category;
use super::extjson::write_meta;
use super::service::write_service;
use super::size::{format_cpu, format_size};
use super::Document;

const GIB: u64 = 1 << 30;

/// An environment in the original format: sizes as `"4G"`, cpu as `"2.0"`, gpu as
/// `"1"`, storage as a GB number when whole, ports as strings, `is_active` as 1 or 0.
/// Empty `dataset`, `port-publish` and `storage` lists are left out (reading treats a
/// missing list as empty).
pub fn export_environment(spec: &EnvironmentSpec) -> Value {
    let mut out = Map::new();
    out.insert("env-name".into(), json!(spec.name));
    out.insert("version".into(), json!(spec.version_label));
    out.insert("os".into(), json!(spec.os));
    let languages: Vec<Value> = spec
        .languages
        .iter()
        .map(|l| json!({ "language-name": l.name, "libraries": l.libraries }))
        .collect();
    out.insert("languages".into(), Value::Array(languages));
    let r = &spec.resources;
    let storage = if r.storage_bytes.is_multiple_of(GIB) {
        json!(r.storage_bytes / GIB)
    } else {
        json!(format_size(r.storage_bytes))
    };
    out.insert(
        "resources".into(),
        json!({
            "ram": format_size(r.memory_bytes),
            "cpu": format_cpu(r.cpu_millis),
            "gpu": r.gpus.to_string(),
            "storage": storage,
        }),
    );
    if !spec.datasets.is_empty() {
        let datasets = spec.datasets.iter().map(write_category).collect();
        out.insert("dataset".into(), Value::Array(datasets));
    }
    let ports: Vec<Value> = spec
        .ports
        .iter()
        .map(|p| {
            json!({
                "external": { "ports": p.external.to_string() },
                "internal": { "ports": p.internal.to_string(), "protocol": p.protocol.as_str() },
            })
        })
        .collect();
    if !ports.is_empty() {
        out.insert("port-publish".into(), Value::Array(ports));
    }
    let storage: Vec<Value> = spec
        .storage
        .iter()
        .map(|s| {
            json!({
                "target": s.target,
                "size": format_size(s.size_bytes),
                "lifecycle": s.lifecycle.as_str(),
            })
        })
        .collect();
    if !storage.is_empty() {
        out.insert("storage".into(), Value::Array(storage));
    }
    if !spec.node_labels.is_empty() {
        out.insert("node-labels".into(), json!(spec.node_labels));
    }
    out.insert("is_active".into(), json!(i32::from(spec.is_active)));
    write_meta(&mut out, &spec.meta);
    Value::Object(out)
}

/// A template in the original format: an environment document with its name in
/// `env-name` (read it back with [`super::parse_template`]). `is_active` is written only
/// when false, as the original templates carry none.
pub fn export_template(spec: &EnvironmentSpec) -> Value {
    let mut out = export_environment(spec);
    if let (Value::Object(map), true) = (&mut out, spec.is_active) {
        map.remove("is_active");
    }
    out
}

/// A library catalog in the original format.
pub fn export_catalog(catalog: &LibraryCatalog) -> Value {
    write_catalog(catalog)
}

/// A service registration in the original format: `ip` and `port` when it was
/// registered that way, else `servers`.
pub fn export_service(service: &ServiceRegistration) -> Value {
    write_service(service)
}

/// A dataset catalog entry in the original format.
pub fn export_dataset_category(category: &DatasetCategory) -> Value {
    write_category(category)
}

/// Any document, so that [`super::parse_document`] recognises it again: a template is
/// wrapped as `{"template": {…}}`, the others are exported as above.
pub fn export_document(document: &Document) -> Value {
    match document {
        Document::Environment(spec) => export_environment(spec),
        Document::Template(spec) => json!({ "template": export_template(spec) }),
        Document::Catalog(catalog) => export_catalog(catalog),
        Document::Service(service) => export_service(service),
        Document::Datasets(category) => export_dataset_category(category),
    }
}
