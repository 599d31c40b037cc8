//! Configuration documents: users' environments and templates, admins' library
//! catalogs, self-registered services and dataset catalog entries, in JSON or YAML with
//! the original DCloud field names (Mongo extended JSON imports as is). Parsing checks
//! every value and reports every problem at once as [`FieldError`]s whose paths use the
//! original names (`resources.ram`, `port-publish[1].external.ports`).
//!
//! Also here: checks that need state but are pure ([`check_references`]), export back
//! to the original format ([`export_environment`] …; parsing an export gives back an
//! equal value), and the image recipe ([`recipe`]).
//!
//! Nothing here reads files or a clock: callers pass text in and get values out.

mod catalog;
mod dataset;
mod dataset_storage;
mod doc;
mod environment;
mod export;
mod extjson;
mod host;
mod idle;
mod library_service;
mod read;
mod recipe;
mod references;
mod rules;
mod service;
mod size;
mod validate;

use dcloud_events::model::{DatasetCategory, EnvironmentSpec, LibraryCatalog, ServiceRegistration};
use serde_json::Value;

use crate::error::FieldError;
use read::{item_path, Errors};

pub use dataset::dataset_catalog_contains;
pub use dataset_storage::{check_shared_storage, dataset_storage, SHARED_STORAGE_FIELD};
pub use doc::MAX_DOCUMENT_BYTES;
pub use export::{
    export_catalog, export_dataset_category, export_document, export_environment, export_service,
    export_template,
};
pub use extjson::{format_datetime, parse_datetime};
pub use idle::{format_idle_timeout, idle_timeouts, parse_idle_timeout_ms, IDLE_TIMEOUT_FIELD};
pub use library_service::{catalog_services, SERVICES_FIELD};
pub use recipe::{default_base_images, recipe, recipe_for, Recipe};
pub use references::check_references;
pub use size::{
    format_cpu, format_size, parse_cpu_millis, parse_duration_ms, parse_gpus, parse_size,
    parse_storage_gb, QuantityError,
};
pub use validate::{
    validate_catalog, validate_dataset_category, validate_environment, validate_service,
};

/// The syntax a document is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    Json,
    Yaml,
    /// JSON when the text starts with `{` or `[` and parses as JSON, else YAML.
    #[default]
    Auto,
}

impl Format {
    /// The format a file name's extension suggests (`.json`, `.yaml`, `.yml`), else
    /// [`Format::Auto`].
    pub fn from_file_name(name: &str) -> Format {
        let lower = name.to_ascii_lowercase();
        if lower.ends_with(".json") {
            Format::Json
        } else if lower.ends_with(".yaml") || lower.ends_with(".yml") {
            Format::Yaml
        } else {
            Format::Auto
        }
    }
}

/// One parsed and validated document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Document {
    Environment(EnvironmentSpec),
    Template(EnvironmentSpec),
    Catalog(LibraryCatalog),
    Service(ServiceRegistration),
    Datasets(DatasetCategory),
}

/// Every document in `text`: one object, or a list of them (paths then start `[i].`),
/// each kind told from its fields (see [`documents_from_value`]).
pub fn parse_document(text: &str, format: Format) -> Result<Vec<Document>, Vec<FieldError>> {
    documents_from_value(&doc::read_text(text, format)?)
}

/// Every document in an already-parsed value. Kinds: `{"template": {…}}` or a
/// `template-name` field → template; `env-name`, `resources` or `languages` →
/// environment; `specifications`, `init-steps` or `base-image` → library catalog;
/// `service-name` or `servers` → service; `category-name` or `db` → dataset category.
/// A template exported in the original format (an environment document with a name)
/// reads as an environment here: use [`parse_template`] when the caller knows better.
pub fn documents_from_value(value: &Value) -> Result<Vec<Document>, Vec<FieldError>> {
    let mut errors = Errors::default();
    let documents = match value {
        Value::Array(items) if items.is_empty() => {
            errors.push("", "the list holds no documents");
            Vec::new()
        }
        Value::Array(items) => items
            .iter()
            .enumerate()
            .filter_map(|(i, item)| read_document(&mut errors, item, &item_path("", i)))
            .collect(),
        other => read_document(&mut errors, other, "").into_iter().collect(),
    };
    errors.finish(Some(documents))
}

fn read_document(errors: &mut Errors, v: &Value, path: &str) -> Option<Document> {
    match doc::detect(v) {
        Err(message) => {
            errors.push(path, message);
            None
        }
        Ok(doc::Kind::Environment) => {
            environment::read_environment(errors, v, path, false).map(Document::Environment)
        }
        Ok(doc::Kind::Template { wrapped }) => {
            read_template(errors, v, path, wrapped).map(Document::Template)
        }
        Ok(doc::Kind::Catalog) => catalog::read_catalog(errors, v, path).map(Document::Catalog),
        Ok(doc::Kind::Service) => service::read_service(errors, v, path).map(Document::Service),
        Ok(doc::Kind::Datasets) => {
            dataset::read_dataset_document(errors, v, path).map(Document::Datasets)
        }
    }
}

fn read_template(
    errors: &mut Errors,
    v: &Value,
    path: &str,
    wrapped: bool,
) -> Option<EnvironmentSpec> {
    match (wrapped, v.get("template")) {
        (true, Some(inner)) => {
            environment::read_environment(errors, inner, &read::field_path(path, "template"), true)
        }
        _ => environment::read_environment(errors, v, path, true),
    }
}

/// One environment document.
pub fn parse_environment(text: &str, format: Format) -> Result<EnvironmentSpec, Vec<FieldError>> {
    environment_from_value(&doc::read_text(text, format)?)
}

/// One environment document, already parsed into a generic value (e.g. GraphQL JSON input).
pub fn environment_from_value(value: &Value) -> Result<EnvironmentSpec, Vec<FieldError>> {
    let mut errors = Errors::default();
    let spec = environment::read_environment(&mut errors, value, "", false);
    errors.finish(spec)
}

/// One template: an environment document whose name is in `env-name` or
/// `template-name`, bare or wrapped as `{"template": {…}}`.
pub fn parse_template(text: &str, format: Format) -> Result<EnvironmentSpec, Vec<FieldError>> {
    template_from_value(&doc::read_text(text, format)?)
}

/// One template, already parsed into a generic value; see [`parse_template`].
pub fn template_from_value(value: &Value) -> Result<EnvironmentSpec, Vec<FieldError>> {
    let mut errors = Errors::default();
    let wrapped = doc::detect(value) == Ok(doc::Kind::Template { wrapped: true });
    let spec = read_template(&mut errors, value, "", wrapped);
    errors.finish(spec)
}

/// One library catalog.
pub fn parse_catalog(text: &str, format: Format) -> Result<LibraryCatalog, Vec<FieldError>> {
    catalog_from_value(&doc::read_text(text, format)?)
}

/// One library catalog, already parsed into a generic value.
pub fn catalog_from_value(value: &Value) -> Result<LibraryCatalog, Vec<FieldError>> {
    let mut errors = Errors::default();
    let catalog = catalog::read_catalog(&mut errors, value, "");
    errors.finish(catalog)
}

/// One service registration.
pub fn parse_service(text: &str, format: Format) -> Result<ServiceRegistration, Vec<FieldError>> {
    service_from_value(&doc::read_text(text, format)?)
}

/// One service registration, already parsed into a generic value.
pub fn service_from_value(value: &Value) -> Result<ServiceRegistration, Vec<FieldError>> {
    let mut errors = Errors::default();
    let service = service::read_service(&mut errors, value, "");
    errors.finish(service)
}

/// Service registrations: one object or a list of them (paths then start `[i].`).
pub fn parse_services(
    text: &str,
    format: Format,
) -> Result<Vec<ServiceRegistration>, Vec<FieldError>> {
    services_from_value(&doc::read_text(text, format)?)
}

/// Service registrations (one object or a list), already parsed into a generic value.
pub fn services_from_value(value: &Value) -> Result<Vec<ServiceRegistration>, Vec<FieldError>> {
    let mut errors = Errors::default();
    let services = match value {
        Value::Array(items) => items
            .iter()
            .enumerate()
            .filter_map(|(i, item)| service::read_service(&mut errors, item, &item_path("", i)))
            .collect(),
        other => service::read_service(&mut errors, other, "")
            .into_iter()
            .collect(),
    };
    errors.finish(Some(services))
}

/// One dataset catalog entry (`category-name`, `db[]`).
pub fn parse_dataset_category(
    text: &str,
    format: Format,
) -> Result<DatasetCategory, Vec<FieldError>> {
    dataset_category_from_value(&doc::read_text(text, format)?)
}

/// One dataset catalog entry, already parsed into a generic value.
pub fn dataset_category_from_value(value: &Value) -> Result<DatasetCategory, Vec<FieldError>> {
    let mut errors = Errors::default();
    let category = dataset::read_dataset_document(&mut errors, value, "");
    errors.finish(category)
}
