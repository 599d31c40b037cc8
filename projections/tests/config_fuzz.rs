//! Parsers never panic, on arbitrary text or on document-shaped values and near misses
//! of valid documents; and whatever they accept is valid and round-trips.

mod config_support;

use config_support::strategies::{catalog, category, environment, service, texts};
use dcloud_projections::config::{
    catalog_from_value, dataset_category_from_value, documents_from_value, environment_from_value,
    export_catalog, export_dataset_category, export_document, export_environment, export_service,
    parse_catalog, parse_document, parse_environment, parse_service, parse_template,
    service_from_value, services_from_value, validate_catalog, validate_dataset_category,
    validate_environment, validate_service, Document, Format,
};
use proptest::prelude::*;
use serde_json::{Map, Value};

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn parsers_never_panic_on_text(text in "\\PC{0,200}", bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        for input in [text, String::from_utf8_lossy(&bytes).into_owned()] {
            for format in [Format::Json, Format::Yaml, Format::Auto] {
                let _ = parse_document(&input, format);
                let _ = parse_environment(&input, format);
                let _ = parse_template(&input, format);
                let _ = parse_catalog(&input, format);
                let _ = parse_service(&input, format);
            }
        }
    }

    #[test]
    fn whatever_is_accepted_is_valid_and_round_trips(value in prop_oneof![document_like(), mutated()]) {
        let _ = services_from_value(&value);
        let _ = dataset_category_from_value(&value);
        for (text, format) in texts(&value) {
            let _ = parse_document(&text, format);
        }
        if let Ok(documents) = documents_from_value(&value) {
            for document in documents {
                let errors = match &document {
                    Document::Environment(spec) | Document::Template(spec) => validate_environment(spec),
                    Document::Catalog(catalog) => validate_catalog(catalog),
                    Document::Service(service) => validate_service(service),
                    Document::Datasets(category) => validate_dataset_category(category),
                };
                prop_assert_eq!(errors, vec![]);
                prop_assert_eq!(documents_from_value(&export_document(&document)), Ok(vec![document]));
            }
        }
        if let Ok(spec) = environment_from_value(&value) {
            prop_assert_eq!(environment_from_value(&export_environment(&spec)), Ok(spec));
        }
        if let Ok(catalog) = catalog_from_value(&value) {
            prop_assert_eq!(catalog_from_value(&export_catalog(&catalog)), Ok(catalog));
        }
        if let Ok(service) = service_from_value(&value) {
            prop_assert_eq!(service_from_value(&export_service(&service)), Ok(service));
        }
    }
}

/// A valid document of any kind, exported, with one to three of its values replaced
/// or removed: near misses that exercise each rule.
fn mutated() -> impl Strategy<Value = Value> {
    let document = prop_oneof![
        environment().prop_map(|s| export_environment(&s)),
        environment().prop_map(|s| export_document(&Document::Template(s))),
        catalog().prop_map(|c| export_catalog(&c)),
        service().prop_map(|s| export_service(&s)),
        category().prop_map(|c| export_dataset_category(&c)),
    ];
    let edit = (any::<prop::sample::Index>(), proptest::option::of(leaf()));
    (document, prop::collection::vec(edit, 1..4)).prop_map(|(mut value, edits)| {
        for (at, replacement) in edits {
            let mut pointers = Vec::new();
            pointers_of(&value, String::new(), &mut pointers);
            if pointers.is_empty() {
                continue;
            }
            let pointer = &pointers[at.index(pointers.len())];
            match replacement {
                Some(leaf) => {
                    if let Some(slot) = value.pointer_mut(pointer) {
                        *slot = leaf;
                    }
                }
                None => remove(&mut value, pointer),
            }
        }
        value
    })
}

/// JSON pointers of every value inside `value` (not the root itself).
fn pointers_of(value: &Value, at: String, out: &mut Vec<String>) {
    if !at.is_empty() {
        out.push(at.clone());
    }
    match value {
        Value::Object(map) => {
            for (key, inner) in map {
                let key = key.replace('~', "~0").replace('/', "~1");
                pointers_of(inner, format!("{at}/{key}"), out);
            }
        }
        Value::Array(items) => {
            for (i, inner) in items.iter().enumerate() {
                pointers_of(inner, format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
}

fn remove(value: &mut Value, pointer: &str) {
    let Some((parent, last)) = pointer.rsplit_once('/') else {
        return;
    };
    let last = last.replace("~1", "/").replace("~0", "~");
    match value.pointer_mut(parent) {
        Some(Value::Object(map)) => {
            map.remove(&last);
        }
        Some(Value::Array(items)) => {
            if let Ok(i) = last.parse::<usize>() {
                if i < items.len() {
                    items.remove(i);
                }
            }
        }
        _ => {}
    }
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        (-1e6f64..1e6).prop_map(Value::from),
        prop::sample::select(vec![
            "1G",
            "512M",
            "2.5g",
            "0",
            "1",
            "8888",
            "tcp",
            "udp",
            "temporary",
            "persistent",
            "/data",
            "ubuntu",
            "ubuntu:22.04",
            "python",
            "2024-01-12T09:30:00Z",
            "65a1f0c2d4e5f60718293a4b",
            "30s",
            "",
            "..",
            "1 GB",
        ])
        .prop_map(Value::from),
        "\\PC{0,12}".prop_map(Value::from),
    ]
}

/// Values shaped like documents: field names from every document kind, leaves drawn
/// from values the fields expect and from values they don't.
fn document_like() -> impl Strategy<Value = Value> {
    const KEYS: &[&str] = &[
        "_id",
        "$oid",
        "$date",
        "$numberLong",
        "env-name",
        "template-name",
        "template",
        "version",
        "os",
        "languages",
        "language-name",
        "libraries",
        "resources",
        "ram",
        "cpu",
        "gpu",
        "storage",
        "dataset",
        "category-name",
        "db",
        "db-name",
        "dataset-name",
        "port-publish",
        "external",
        "internal",
        "ports",
        "protocol",
        "target",
        "size",
        "lifecycle",
        "node-labels",
        "is_active",
        "creation_time",
        "last_updation_time",
        "config_id",
        "base-image",
        "init-steps",
        "specifications",
        "installation-steps",
        "service-name",
        "ip",
        "port",
        "servers",
        "ttl",
        "rams",
    ];
    leaf().prop_recursive(5, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((prop::sample::select(KEYS), inner), 0..6).prop_map(|fields| {
                let map: Map<String, Value> =
                    fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
                Value::Object(map)
            }),
        ]
    })
}
