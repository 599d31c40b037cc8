//! Validation of values already built (by a caller, or by the parsers): the same rules
//! the parsers apply while reading, with paths in the original document's names.

use dcloud_events::model::{DatasetCategory, EnvironmentSpec, LibraryCatalog, ServiceRegistration};

use super::catalog::check_catalog;
use super::dataset::check_category;
use super::extjson::check_meta;
use super::host::{check_port_conflict, check_target_conflict};
use super::read::{field_path, item_path, Errors};
use super::rules::{
    check_label, check_label_key, check_label_value, check_name, check_port, check_target,
    check_word,
};
use super::service::check_service;
use crate::error::FieldError;

/// Every problem with an environment (or template); empty when it is valid.
pub fn validate_environment(spec: &EnvironmentSpec) -> Vec<FieldError> {
    let mut errors = Errors::default();
    errors.check("env-name", check_name(&spec.name));
    errors.check("version", check_label(&spec.version_label));
    errors.check("os", check_name(&spec.os));
    for (i, language) in spec.languages.iter().enumerate() {
        let path = item_path("languages", i);
        errors.check(
            &field_path(&path, "language-name"),
            check_word(&language.name),
        );
        for (j, library) in language.libraries.iter().enumerate() {
            errors.check(
                &item_path(&field_path(&path, "libraries"), j),
                check_word(library),
            );
        }
    }
    if spec.resources.memory_bytes == 0 {
        errors.push("resources.ram", "must be more than 0");
    }
    if spec.resources.cpu_millis == 0 {
        errors.push("resources.cpu", "must be more than 0");
    }
    for (i, category) in spec.datasets.iter().enumerate() {
        check_category(&mut errors, &item_path("dataset", i), category);
    }
    let mut seen = Vec::new();
    for (i, publish) in spec.ports.iter().enumerate() {
        let path = item_path("port-publish", i);
        errors.check(
            &field_path(&path, "external.ports"),
            check_port(publish.external),
        );
        errors.check(
            &field_path(&path, "internal.ports"),
            check_port(publish.internal),
        );
        let key = (publish.external, publish.protocol);
        check_port_conflict(&mut errors, "port-publish", i, key, &seen);
        seen.push((i, key));
    }
    let mut targets = Vec::new();
    for (i, mount) in spec.storage.iter().enumerate() {
        let path = item_path("storage", i);
        let target_path = field_path(&path, "target");
        errors.check(&target_path, check_target(&mount.target));
        check_target_conflict(
            &mut errors,
            &target_path,
            &mount.target,
            &targets,
            "storage",
        );
        targets.push((i, mount.target.clone()));
        if mount.size_bytes == 0 {
            errors.push(&field_path(&path, "size"), "must be more than 0");
        }
    }
    for (key, value) in &spec.node_labels {
        let path = field_path("node-labels", key);
        errors.check(&path, check_label_key(key));
        errors.check(&path, check_label_value(value));
    }
    check_meta(&mut errors, &spec.meta);
    errors.into_vec()
}

/// Every problem with a library catalog; empty when it is valid.
pub fn validate_catalog(catalog: &LibraryCatalog) -> Vec<FieldError> {
    let mut errors = Errors::default();
    check_catalog(&mut errors, catalog);
    errors.into_vec()
}

/// Every problem with a service registration; empty when it is valid.
pub fn validate_service(service: &ServiceRegistration) -> Vec<FieldError> {
    let mut errors = Errors::default();
    check_service(&mut errors, service);
    errors.into_vec()
}

/// Every problem with a dataset catalog entry; empty when it is valid.
pub fn validate_dataset_category(category: &DatasetCategory) -> Vec<FieldError> {
    let mut errors = Errors::default();
    check_category(&mut errors, "", category);
    errors.into_vec()
}
