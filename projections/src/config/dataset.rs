//! Dataset categories: `{category-name, db[] {db-name, dataset[] {dataset-name, version}}}`,
//! both an environment's `dataset[]` entries and dataset catalog documents.

use dcloud_events::model::{DatasetCategory, DatasetDb, DatasetVersion};
use serde_json::{json, Value};

use super::read::{field_path, item_path, label, list, text, Errors, Obj};
use super::rules::check_text;

const CATEGORY_FIELDS: &[&str] = &["category-name", "db"];
/// A dataset catalog document may carry the Mongo `_id` it was exported with (dropped).
/// `shared-storage` is read beside it (`dataset_storage::dataset_storage`).
const DOCUMENT_FIELDS: &[&str] = &["_id", "category-name", "db", "shared-storage"];
const DB_FIELDS: &[&str] = &["db-name", "dataset"];
const VERSION_FIELDS: &[&str] = &["dataset-name", "version"];

/// A dataset catalog document (top level: `_id` allowed and dropped).
pub(crate) fn read_dataset_document(
    errors: &mut Errors,
    v: &Value,
    path: &str,
) -> Option<DatasetCategory> {
    read(errors, v, path, DOCUMENT_FIELDS)
}

/// One entry of an environment's `dataset[]`.
pub(crate) fn read_category(errors: &mut Errors, v: &Value, path: &str) -> Option<DatasetCategory> {
    read(errors, v, path, CATEGORY_FIELDS)
}

fn read(errors: &mut Errors, v: &Value, path: &str, known: &[&str]) -> Option<DatasetCategory> {
    let obj = Obj::open(errors, v, path, known)?;
    let category = name(
        errors,
        &obj,
        "category-name",
        "a category name such as imaging",
    );
    let mut dbs = Vec::new();
    if let Some(v) = obj.require(errors, "db", "a list of {db-name, dataset}") {
        let db_path = obj.path("db");
        let items = non_empty_list(errors, v, &db_path, "a list of {db-name, dataset}");
        for (i, item) in items.iter().enumerate() {
            dbs.extend(read_db(errors, item, &item_path(&db_path, i)));
        }
    }
    Some(DatasetCategory {
        category: category.unwrap_or_default(),
        dbs,
    })
}

fn read_db(errors: &mut Errors, v: &Value, path: &str) -> Option<DatasetDb> {
    let obj = Obj::open(errors, v, path, DB_FIELDS)?;
    let db = name(errors, &obj, "db-name", "a database name such as coco");
    let mut datasets = Vec::new();
    if let Some(v) = obj.require(errors, "dataset", "a list of {dataset-name, version}") {
        let list_path = obj.path("dataset");
        let items = non_empty_list(errors, v, &list_path, "a list of {dataset-name, version}");
        for (i, item) in items.iter().enumerate() {
            datasets.extend(read_version(errors, item, &item_path(&list_path, i)));
        }
    }
    Some(DatasetDb {
        name: db.unwrap_or_default(),
        datasets,
    })
}

fn read_version(errors: &mut Errors, v: &Value, path: &str) -> Option<DatasetVersion> {
    let obj = Obj::open(errors, v, path, VERSION_FIELDS)?;
    let name = name(
        errors,
        &obj,
        "dataset-name",
        "a dataset name such as train2017",
    );
    let version = obj
        .require(errors, "version", "a version such as \"3\"")
        .and_then(|v| {
            let path = obj.path("version");
            let version = label(errors, v, &path)?;
            checked(errors, &path, version)
        });
    Some(DatasetVersion {
        name: name.unwrap_or_default(),
        version: version.unwrap_or_default(),
    })
}

fn name(errors: &mut Errors, obj: &Obj<'_>, key: &str, expected: &str) -> Option<String> {
    let path = obj.path(key);
    let value = obj.require(errors, key, expected)?;
    let s = text(errors, value, &path, "a string")?;
    checked(errors, &path, s.to_owned())
}

fn checked(errors: &mut Errors, path: &str, s: String) -> Option<String> {
    match check_text(&s) {
        Ok(()) => Some(s),
        Err(message) => {
            errors.push(path, message);
            None
        }
    }
}

fn non_empty_list<'a>(
    errors: &mut Errors,
    v: &'a Value,
    path: &str,
    expected: &str,
) -> &'a [Value] {
    let items = list(errors, v, path, expected).unwrap_or_default();
    if items.is_empty() && v.is_array() {
        errors.push(path, format!("must not be empty; expected {expected}"));
    }
    items
}

/// Problems with a category already built; paths start at `path` (e.g. `dataset[0]`).
pub(crate) fn check_category(errors: &mut Errors, path: &str, category: &DatasetCategory) {
    errors.check(
        &field_path(path, "category-name"),
        check_text(&category.category),
    );
    let db_path = field_path(path, "db");
    if category.dbs.is_empty() {
        errors.push(
            &db_path,
            "must not be empty; expected a list of {db-name, dataset}",
        );
    }
    for (i, db) in category.dbs.iter().enumerate() {
        let path = item_path(&db_path, i);
        errors.check(&field_path(&path, "db-name"), check_text(&db.name));
        let list_path = field_path(&path, "dataset");
        if db.datasets.is_empty() {
            errors.push(
                &list_path,
                "must not be empty; expected a list of {dataset-name, version}",
            );
        }
        for (j, version) in db.datasets.iter().enumerate() {
            let path = item_path(&list_path, j);
            errors.check(
                &field_path(&path, "dataset-name"),
                check_text(&version.name),
            );
            errors.check(&field_path(&path, "version"), check_text(&version.version));
        }
    }
}

/// A category in the original format.
pub(crate) fn write_category(category: &DatasetCategory) -> Value {
    let dbs: Vec<Value> = category
        .dbs
        .iter()
        .map(|db| {
            let datasets: Vec<Value> = db
                .datasets
                .iter()
                .map(|d| json!({ "dataset-name": d.name, "version": d.version }))
                .collect();
            json!({ "db-name": db.name, "dataset": datasets })
        })
        .collect();
    json!({ "category-name": category.category, "db": dbs })
}

/// Whether a dataset catalog lists `category/db/dataset@version`: a ready-made
/// `dataset_known` for [`super::check_references`].
pub fn dataset_catalog_contains(
    categories: &[DatasetCategory],
    category: &str,
    db: &str,
    dataset: &str,
    version: &str,
) -> bool {
    categories
        .iter()
        .filter(|c| c.category == category)
        .any(|c| {
            c.dbs.iter().filter(|d| d.name == db).any(|d| {
                d.datasets
                    .iter()
                    .any(|v| v.name == dataset && v.version == version)
            })
        })
}
