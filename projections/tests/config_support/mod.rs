//! Helpers shared by the config test crates: the error-table harness and proptest
//! strategies for valid documents of every kind.
// Each test crate uses a different part of this module.
#![allow(dead_code, unreachable_pub)]

pub mod strategies;

use dcloud_projections::config::{parse_document, Document, Format};
use dcloud_projections::FieldError;
use serde_json::{json, Value};

/// `ok: <kinds>` for a good document, else every error on its own line.
pub fn outcome(result: Result<Vec<Document>, Vec<FieldError>>) -> String {
    match result {
        Ok(documents) => {
            let kinds: Vec<&str> = documents
                .iter()
                .map(|d| match d {
                    Document::Environment(_) => "environment",
                    Document::Template(_) => "template",
                    Document::Catalog(_) => "catalog",
                    Document::Service(_) => "service",
                    Document::Datasets(_) => "datasets",
                })
                .collect();
            format!("ok: {}", kinds.join(", "))
        }
        Err(errors) => errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n"),
    }
}

#[track_caller]
pub fn check(input: &str, expected: &str) {
    let actual = outcome(parse_document(input, Format::Auto));
    assert_eq!(
        actual,
        expected.trim(),
        "\ninput: {input}\nactual:\n{actual}\n"
    );
}

#[track_caller]
pub fn check_errors(result: Result<impl Sized, Vec<FieldError>>, expected: &str) {
    let actual = match result {
        Ok(_) => "ok".to_owned(),
        Err(errors) => errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n"),
    };
    assert_eq!(actual, expected.trim(), "\nactual:\n{actual}\n");
}

pub fn base() -> Value {
    json!({
        "env-name": "demo",
        "version": "1",
        "os": "ubuntu",
        "languages": [{"language-name": "python", "libraries": ["numpy"]}],
        "resources": {"ram": "1G", "cpu": "1.0", "gpu": "0", "storage": 10}
    })
}

/// The base environment with top-level fields replaced (`null` removes one).
pub fn env(patch: Value) -> String {
    let mut doc = base();
    merge(&mut doc, patch);
    doc.to_string()
}

/// The base environment with `resources` fields replaced (`null` removes one).
pub fn res(patch: Value) -> String {
    let mut doc = base();
    merge(&mut doc["resources"], patch);
    doc.to_string()
}

pub fn merge(doc: &mut Value, patch: Value) {
    let (Value::Object(doc), Value::Object(patch)) = (doc, patch) else {
        panic!("objects")
    };
    for (key, value) in patch {
        if value.is_null() {
            doc.remove(&key);
        } else {
            doc.insert(key, value);
        }
    }
}
