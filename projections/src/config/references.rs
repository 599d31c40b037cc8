//! Checks that need state: does the library catalog know the environment's os,
//! languages and libraries, and the dataset catalog its datasets. Pure: the command
//! handler passes in what the state holds. Library names are looked up, never run.

use std::collections::BTreeMap;

use dcloud_events::model::{EnvironmentSpec, LibraryCatalog};

use super::read::{field_path, item_path, list_names, quote, suggest, Errors};
use crate::error::FieldError;

/// Every name in `spec` that the catalogs do not know (`catalogs` keyed by os;
/// `dataset_known(category, db, dataset, version)`).
pub fn check_references(
    spec: &EnvironmentSpec,
    catalogs: &BTreeMap<String, LibraryCatalog>,
    dataset_known: &dyn Fn(&str, &str, &str, &str) -> bool,
) -> Vec<FieldError> {
    let mut errors = Errors::default();
    match catalogs.get(&spec.os) {
        None => {
            let known: Vec<&str> = catalogs.keys().map(String::as_str).collect();
            errors.push("os", not_in(&spec.os, "the library catalog", &known));
        }
        Some(catalog) => {
            for (i, language) in spec.languages.iter().enumerate() {
                let path = item_path("languages", i);
                let Some(libraries) = catalog.specifications.get(&language.name) else {
                    let known: Vec<&str> =
                        catalog.specifications.keys().map(String::as_str).collect();
                    let place = format!("the catalog for {}", spec.os);
                    errors.push(
                        &field_path(&path, "language-name"),
                        not_in(&language.name, &place, &known),
                    );
                    continue;
                };
                let known: Vec<&str> = libraries.libraries.keys().map(String::as_str).collect();
                for (j, library) in language.libraries.iter().enumerate() {
                    if !libraries.libraries.contains_key(library) {
                        let place = format!("the catalog for {} on {}", language.name, spec.os);
                        let path = item_path(&field_path(&path, "libraries"), j);
                        errors.push(&path, not_in(library, &place, &known));
                    }
                }
            }
        }
    }
    for (i, category) in spec.datasets.iter().enumerate() {
        let category_path = item_path("dataset", i);
        for (j, db) in category.dbs.iter().enumerate() {
            let db_path = item_path(&field_path(&category_path, "db"), j);
            for (k, dataset) in db.datasets.iter().enumerate() {
                if !dataset_known(
                    &category.category,
                    &db.name,
                    &dataset.name,
                    &dataset.version,
                ) {
                    let path = item_path(&field_path(&db_path, "dataset"), k);
                    let message = format!(
                        "{}/{}/{} version {} is not in the dataset catalog",
                        category.category,
                        db.name,
                        dataset.name,
                        quote(&dataset.version)
                    );
                    errors.push(&path, message);
                }
            }
        }
    }
    errors.into_vec()
}

/// `"x" is not in <place>; did you mean "y"?` or `…; known: "a", "b"`.
pub(crate) fn not_in(name: &str, place: &str, known: &[&str]) -> String {
    let head = format!("{} is not in {place}", quote(name));
    match suggest(name, known) {
        Some(close) => format!("{head}; did you mean {}?", quote(close)),
        None if known.is_empty() => format!("{head}, which is empty"),
        None => format!("{head}; known: {}", list_names(known.iter().copied())),
    }
}
