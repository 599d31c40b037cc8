//! Reading environment and template documents (the original `env-name`, `resources`,
//! `languages`, `dataset`, `port-publish`, `storage` … fields) into an
//! [`EnvironmentSpec`], checking every value on the way.

use dcloud_events::model::{EnvironmentSpec, LanguageSpec, Resources};
use serde_json::Value;

use super::dataset::read_category;
use super::extjson::read_meta;
use super::host::{read_labels, read_ports, read_storage};
use super::read::{
    flag, item_path, kind, label, list, scalar_text, show, string_list, text, Errors, Obj,
};
use super::rules::{check_label, check_name, check_word};
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
    // Read by `idle::idle_timeouts`, beside the spec.
    "idle-timeout",
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
    // Read by `idle::idle_timeouts`, beside the spec.
    "idle-timeout",
];
const LANGUAGE_FIELDS: &[&str] = &["language-name", "libraries"];
const RESOURCE_FIELDS: &[&str] = &["ram", "cpu", "gpu", "storage"];

pub(crate) const SIZE_HINT: &str = "use 512M, 1G, 2.5G";

/// Reads an environment (or, with `template`, a template) document at `path`.
pub(crate) fn read_environment(
    errors: &mut Errors,
    v: &Value,
    path: &str,
    template: bool,
) -> Option<EnvironmentSpec> {
    let obj = Obj::open(
        errors,
        v,
        path,
        if template {
            TEMPLATE_FIELDS
        } else {
            ENV_FIELDS
        },
    )?;
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
    let os = obj
        .require(errors, "os", "an operating system such as ubuntu")
        .and_then(|v| {
            let path = obj.path("os");
            let os = text(errors, v, &path, "a string")?;
            errors.check(&path, check_name(os));
            Some(os.to_owned())
        });
    let languages = obj
        .get("languages")
        .map(|v| read_languages(errors, v, &obj.path("languages")));
    let resources = obj
        .require(
            errors,
            "resources",
            "an object with ram, cpu, gpu and storage",
        )
        .and_then(|v| read_resources(errors, v, &obj.path("resources")));
    let datasets = obj.get("dataset").map(|v| {
        let path = obj.path("dataset");
        let items = list(errors, v, &path, "a list of {category-name, db}").unwrap_or_default();
        let read = items.iter().enumerate();
        read.filter_map(|(i, item)| read_category(errors, item, &item_path(&path, i)))
            .collect()
    });
    let ports = obj
        .get("port-publish")
        .map(|v| read_ports(errors, v, &obj.path("port-publish")));
    let storage = obj
        .get("storage")
        .map(|v| read_storage(errors, v, &obj.path("storage")));
    let node_labels = obj
        .get("node-labels")
        .map(|v| read_labels(errors, v, &obj.path("node-labels")));
    let is_active = obj
        .get("is_active")
        .and_then(|v| flag(errors, v, &obj.path("is_active")));
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
            errors.push(
                &obj.path("template-name"),
                "give either template-name or env-name, not both",
            );
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
        let Some(obj) = Obj::open(errors, item, &item_path(path, i), LANGUAGE_FIELDS) else {
            continue;
        };
        let name = obj
            .require(errors, "language-name", "a language such as python")
            .and_then(|v| {
                let path = obj.path("language-name");
                let name = text(errors, v, &path, "a string")?;
                errors.check(&path, check_word(name));
                Some(name.to_owned())
            });
        let libraries = obj
            .get("libraries")
            .map(|v| {
                string_list(
                    errors,
                    v,
                    &obj.path("libraries"),
                    "library names",
                    check_word,
                )
            })
            .unwrap_or_default();
        languages.push(LanguageSpec {
            name: name.unwrap_or_default(),
            libraries,
        });
    }
    languages
}

fn read_resources(errors: &mut Errors, v: &Value, path: &str) -> Option<Resources> {
    let obj = Obj::open(errors, v, path, RESOURCE_FIELDS)?;
    let memory = obj
        .require(errors, "ram", "a size such as 512M, 1G, 2.5G")
        .and_then(|v| {
            let path = obj.path("ram");
            let bytes = size(errors, v, &path, parse_size)?;
            positive(errors, &path, bytes)
        });
    let cpu = obj
        .require(errors, "cpu", "a number of cpus such as 0.5, 1, 2.0")
        .and_then(|v| {
            let path = obj.path("cpu");
            let millis = cpu(errors, v, &path)?;
            positive(errors, &path, millis)
        });
    let gpus = obj
        .get("gpu")
        .and_then(|v| gpus(errors, v, &obj.path("gpu")));
    let storage = obj
        .get("storage")
        .and_then(|v| size(errors, v, &obj.path("storage"), parse_storage_gb));
    Some(Resources {
        cpu_millis: cpu.unwrap_or_default(),
        memory_bytes: memory.unwrap_or_default(),
        gpus: gpus.unwrap_or_default(),
        storage_bytes: storage.unwrap_or_default(),
    })
}

pub(crate) fn positive(errors: &mut Errors, path: &str, n: u64) -> Option<u64> {
    if n == 0 {
        errors.push(path, "must be more than 0");
        return None;
    }
    Some(n)
}

/// A size read with `parse` (sizes need a unit; storage in GB may be bare).
pub(crate) fn size(
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
            errors.push(
                path,
                format!("expected a size such as 512M, 1G, 2.5G, found {}", kind(v)),
            );
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
            format!(
                "{} is not a number of cpus; use 0.5, 1, 2.0 or 500m",
                show(v)
            )
        }
        None => format!(
            "expected a number of cpus such as 0.5, 1, 2.0, found {}",
            kind(v)
        ),
    };
    errors.push(path, message);
    None
}

fn gpus(errors: &mut Errors, v: &Value, path: &str) -> Option<u32> {
    let parsed = scalar_text(v).and_then(|s| parse_gpus(&s).ok());
    if parsed.is_none() {
        errors.push(
            path,
            format!(
                "{} is not a number of gpus; use a whole number such as 0, 1, 2",
                show(v)
            ),
        );
    }
    parsed
}
