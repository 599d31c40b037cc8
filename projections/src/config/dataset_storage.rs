//! The `shared-storage` field of dataset catalog documents: the datasets of the
//! category are on storage every node reaches, so placement need not look for a node
//! that holds them. Read beside the category (a frozen stored type) and recorded as a
//! `DatasetStorageSet` event next to it.
//!
//! ```json
//! "shared-storage": {"type": "nfs", "device": ":/export/vision", "o": "addr=10.0.0.5,ro"}
//! ```
//! The three fields are the options of a Docker `local` volume: `type` `nfs`, `nfs4`
//! or `cifs`, or `none` with `o: bind` for a folder mounted at the same path on every
//! node (`device` is then an absolute path). `null` puts the category back on each
//! node's own disk; a document without the field leaves it as it was.

use dcloud_events::model::SharedStorage;
use serde_json::Value;

use super::read::{field_path, item_path};
use super::{doc, Format};
use crate::error::FieldError;

/// The document field.
pub const SHARED_STORAGE_FIELD: &str = "shared-storage";
const FIELDS: &[&str] = &["type", "device", "o"];
/// Filesystem types the agent will ask the engine to mount.
const TYPES: &[&str] = &["nfs", "nfs4", "cifs", "none"];

/// For each document of `text`: `None` without the field, `Some(None)` for `null`,
/// `Some(Some(storage))` for a declaration.
pub fn dataset_storage(
    text: &str,
    format: Format,
) -> Result<Vec<Option<Option<SharedStorage>>>, Vec<FieldError>> {
    let value = doc::read_text(text, format)?;
    let mut errors = Vec::new();
    let out = match &value {
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, v)| read(v, &item_path("", i), &mut errors))
            .collect(),
        v => vec![read(v, "", &mut errors)],
    };
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

fn read(doc: &Value, path: &str, errors: &mut Vec<FieldError>) -> Option<Option<SharedStorage>> {
    let field = doc.get(SHARED_STORAGE_FIELD)?;
    let path = field_path(path, SHARED_STORAGE_FIELD);
    let map = match field {
        Value::Null => return Some(None),
        Value::Object(map) => map,
        _ => {
            errors.push(FieldError::new(
                path,
                "expected {type, device, o} (the options of a Docker local volume) or null",
            ));
            return None;
        }
    };
    let before = errors.len();
    for key in map.keys() {
        if !FIELDS.contains(&key.as_str()) {
            errors.push(FieldError::new(
                field_path(&path, key),
                "unknown field; expected type, device or o",
            ));
        }
    }
    let mut text = |key: &str, required: bool| match map.get(key) {
        Some(Value::String(s)) => s.clone(),
        None if !required => String::new(),
        _ => {
            errors.push(FieldError::new(field_path(&path, key), "expected a string"));
            String::new()
        }
    };
    let shared = SharedStorage {
        fs_type: text("type", true),
        device: text("device", true),
        options: text("o", false),
    };
    if errors.len() > before {
        return None;
    }
    match check(&shared, &path) {
        Ok(()) => Some(Some(shared)),
        Err(mut e) => {
            errors.append(&mut e);
            None
        }
    }
}

/// What the agent will hand to the engine: a known type, a device, options without
/// control characters, and a bind only of an absolute path.
pub fn check_shared_storage(shared: &SharedStorage) -> Result<(), Vec<FieldError>> {
    check(shared, SHARED_STORAGE_FIELD)
}

fn check(shared: &SharedStorage, path: &str) -> Result<(), Vec<FieldError>> {
    let mut errors = Vec::new();
    if !TYPES.contains(&shared.fs_type.as_str()) {
        errors.push(FieldError::new(
            field_path(path, "type"),
            format!(
                "{:?} is not a shared filesystem type; use nfs, nfs4, cifs, or none with o: bind",
                shared.fs_type
            ),
        ));
    }
    let clean = |s: &str| !s.chars().any(char::is_control);
    if shared.device.is_empty() || !clean(&shared.device) {
        errors.push(FieldError::new(
            field_path(path, "device"),
            "expected what is mounted: :/export/datasets for NFS, //host/share for CIFS, a host path for a bind",
        ));
    }
    if !clean(&shared.options) {
        errors.push(FieldError::new(
            field_path(path, "o"),
            "must not contain control characters",
        ));
    }
    if shared.fs_type == "none" {
        let bind = shared
            .options
            .split(',')
            .any(|o| o == "bind" || o == "rbind");
        if !bind {
            errors.push(FieldError::new(
                field_path(path, "o"),
                "type none mounts a host folder: its options must include bind",
            ));
        }
        if !shared.device.starts_with('/') || shared.device.split('/').any(|c| c == "..") {
            errors.push(FieldError::new(
                field_path(path, "device"),
                "a bind mounts an absolute host path without ..",
            ));
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(text: &str) -> Result<Option<Option<SharedStorage>>, Vec<FieldError>> {
        dataset_storage(text, Format::Json).map(|mut v| v.remove(0))
    }

    #[test]
    fn reads_nfs_bind_null_and_absent() {
        let nfs = one(r#"{"category-name":"vision","db":[],"shared-storage":
            {"type":"nfs","device":":/export/vision","o":"addr=10.0.0.5,ro"}}"#)
        .unwrap();
        assert_eq!(
            nfs,
            Some(Some(SharedStorage {
                fs_type: "nfs".into(),
                device: ":/export/vision".into(),
                options: "addr=10.0.0.5,ro".into(),
            }))
        );
        let null = one(r#"{"category-name":"vision","shared-storage":null}"#).unwrap();
        assert_eq!(null, Some(None));
        assert_eq!(one(r#"{"category-name":"vision"}"#).unwrap(), None);
    }

    #[test]
    fn bad_declarations_name_the_field() {
        let err = |text: &str| {
            one(text)
                .unwrap_err()
                .iter()
                .map(|e| format!("{}: {}", e.path, e.message))
                .collect::<Vec<_>>()
                .join("; ")
        };
        let e = err(r#"{"shared-storage":{"type":"ext4","device":"/dev/sda"}}"#);
        assert!(e.contains("shared-storage.type"), "{e}");
        let e = err(r#"{"shared-storage":{"type":"none","device":"/srv/data"}}"#);
        assert!(e.contains("shared-storage.o") && e.contains("bind"), "{e}");
        let e = err(r#"{"shared-storage":{"type":"none","device":"srv","o":"bind"}}"#);
        assert!(e.contains("shared-storage.device"), "{e}");
        let e = err(r#"{"shared-storage":{"type":"nfs","device":":/x","size":1}}"#);
        assert!(e.contains("shared-storage.size"), "{e}");
        let e = err(r#"{"shared-storage":"nfs"}"#);
        assert!(e.contains("shared-storage:"), "{e}");
    }
}
