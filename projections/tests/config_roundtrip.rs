//! Property tests: generated valid documents pass validation and come back equal from
//! their export (as values, JSON text and YAML text).

mod config_support;

use std::collections::{BTreeMap, BTreeSet};

use config_support::strategies::{catalog, category, environment, service, texts};
use dcloud_projections::config::{
    catalog_from_value, dataset_category_from_value, documents_from_value, environment_from_value,
    export_catalog, export_dataset_category, export_document, export_environment, export_service,
    export_template, parse_catalog, parse_document, parse_environment, parse_services,
    parse_template, service_from_value, template_from_value, validate_catalog,
    validate_dataset_category, validate_environment, validate_service, Document, Format,
};
use proptest::prelude::*;
use serde_json::Value;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn environments_round_trip(spec in environment()) {
        prop_assert_eq!(validate_environment(&spec), vec![]);
        let exported = export_environment(&spec);
        prop_assert_eq!(environment_from_value(&exported), Ok(spec.clone()));
        for (text, format) in texts(&exported) {
            prop_assert_eq!(parse_environment(&text, format), Ok(spec.clone()), "{}", text);
        }
        let as_document = Document::Environment(spec.clone());
        prop_assert_eq!(parse_document(&exported.to_string(), Format::Auto), Ok(vec![as_document]));
    }

    #[test]
    fn templates_round_trip(spec in environment()) {
        let exported = export_template(&spec);
        prop_assert_eq!(template_from_value(&exported), Ok(spec.clone()));
        let document = Document::Template(spec.clone());
        let wrapped = export_document(&document);
        prop_assert_eq!(template_from_value(&wrapped), Ok(spec.clone()));
        prop_assert_eq!(documents_from_value(&wrapped), Ok(vec![document]));
        for (text, format) in texts(&wrapped) {
            prop_assert_eq!(parse_template(&text, format), Ok(spec.clone()), "{}", text);
        }
    }

    #[test]
    fn catalogs_round_trip(catalog in catalog()) {
        prop_assert_eq!(validate_catalog(&catalog), vec![]);
        let exported = export_catalog(&catalog);
        prop_assert_eq!(catalog_from_value(&exported), Ok(catalog.clone()));
        for (text, format) in texts(&exported) {
            prop_assert_eq!(parse_catalog(&text, format), Ok(catalog.clone()), "{}", text);
        }
        prop_assert_eq!(documents_from_value(&exported), Ok(vec![Document::Catalog(catalog)]));
    }

    #[test]
    fn services_round_trip(services in prop::collection::vec(service(), 1..4)) {
        for service in &services {
            prop_assert_eq!(validate_service(service), vec![]);
            prop_assert_eq!(service_from_value(&export_service(service)), Ok(service.clone()));
        }
        let exported = Value::Array(services.iter().map(export_service).collect());
        for (text, format) in texts(&exported) {
            prop_assert_eq!(parse_services(&text, format), Ok(services.clone()), "{}", text);
        }
        let documents: Vec<Document> = services.into_iter().map(Document::Service).collect();
        prop_assert_eq!(documents_from_value(&exported), Ok(documents));
    }

    #[test]
    fn dataset_categories_round_trip(category in category()) {
        prop_assert_eq!(validate_dataset_category(&category), vec![]);
        let exported = export_dataset_category(&category);
        prop_assert_eq!(dataset_category_from_value(&exported), Ok(category.clone()));
        prop_assert_eq!(documents_from_value(&exported), Ok(vec![Document::Datasets(category)]));
    }
}

#[test]
fn an_unlabelled_environment_exports_without_node_labels() {
    let spec = parse_environment(
        r#"{"env-name": "x", "os": "ubuntu", "resources": {"ram": "1G", "cpu": 1}}"#,
        Format::Json,
    )
    .expect("valid");
    let exported = export_environment(&spec);
    let fields: Vec<&str> = exported
        .as_object()
        .map(|m| m.keys().map(String::as_str).collect())
        .unwrap_or_default();
    let fields: BTreeSet<&str> = fields.into_iter().collect();
    let expected: BTreeSet<&str> = [
        "env-name",
        "version",
        "os",
        "languages",
        "resources",
        "is_active",
    ]
    .into();
    assert_eq!(fields, expected);
    assert_eq!(spec.node_labels, BTreeMap::new());
}
