//! Library catalogs (admin only: they hold shell commands): per `os`, an optional
//! `base-image`, `init-steps[]` and `specifications.<language>` with
//! `installation-steps[]` and `libraries.<name>` = install commands.

use std::collections::BTreeMap;

use dcloud_events::model::{LanguageCatalog, LibraryCatalog};
use serde_json::{json, Map, Value};

use super::extjson::{check_meta, read_meta, write_meta};
use super::read::{field_path, item_path, kind, string_list, text, Errors, Obj};
use super::rules::{check_command, check_image, check_name, check_word};

pub(crate) const CATALOG_FIELDS: &[&str] = &[
    "_id",
    "os",
    "base-image",
    "init-steps",
    "specifications",
    "creation_time",
    "last_updation_time",
    "config_id",
    // Read by `library_service::catalog_services`, beside the catalog.
    "services",
];
const LANGUAGE_FIELDS: &[&str] = &["installation-steps", "libraries"];

pub(crate) fn read_catalog(errors: &mut Errors, v: &Value, path: &str) -> Option<LibraryCatalog> {
    let obj = Obj::open(errors, v, path, CATALOG_FIELDS)?;
    let os = obj
        .require(errors, "os", "an operating system such as ubuntu")
        .and_then(|v| {
            let path = obj.path("os");
            let os = text(errors, v, &path, "a string")?;
            errors.check(&path, check_name(os));
            Some(os.to_owned())
        });
    let base_image = obj.get("base-image").and_then(|v| {
        let path = obj.path("base-image");
        let image = text(errors, v, &path, "an image reference such as ubuntu:22.04")?;
        errors.check(&path, check_image(image));
        Some(image.to_owned())
    });
    let init_steps = obj
        .get("init-steps")
        .map(|v| commands(errors, v, &obj.path("init-steps")))
        .unwrap_or_default();
    let specifications = obj
        .get("specifications")
        .map(|v| read_specifications(errors, v, &obj.path("specifications")))
        .unwrap_or_default();
    let meta = read_meta(errors, &obj);
    Some(LibraryCatalog {
        os: os.unwrap_or_default(),
        base_image,
        init_steps,
        specifications,
        meta,
    })
}

/// A list of shell commands; a single string is taken as a list of one.
fn commands(errors: &mut Errors, v: &Value, path: &str) -> Vec<String> {
    match v {
        Value::String(s) => {
            let before = errors.len();
            errors.check(path, check_command(s));
            if errors.len() == before {
                vec![s.clone()]
            } else {
                Vec::new()
            }
        }
        other => string_list(errors, other, path, "shell commands", check_command),
    }
}

fn read_specifications(
    errors: &mut Errors,
    v: &Value,
    path: &str,
) -> BTreeMap<String, LanguageCatalog> {
    let mut specifications = BTreeMap::new();
    let Value::Object(map) = v else {
        errors.push(
            path,
            format!("expected an object of languages, found {}", kind(v)),
        );
        return specifications;
    };
    let mut names: Vec<&String> = map.keys().collect();
    names.sort();
    for name in names {
        let lang_path = field_path(path, name);
        errors.check(&lang_path, check_word(name));
        let Some(obj) = Obj::open(errors, &map[name], &lang_path, LANGUAGE_FIELDS) else {
            continue;
        };
        let installation_steps = obj
            .get("installation-steps")
            .map(|v| commands(errors, v, &obj.path("installation-steps")))
            .unwrap_or_default();
        let libraries = obj
            .get("libraries")
            .map(|v| read_libraries(errors, v, &obj.path("libraries")))
            .unwrap_or_default();
        specifications.insert(
            name.clone(),
            LanguageCatalog {
                installation_steps,
                libraries,
            },
        );
    }
    specifications
}

fn read_libraries(errors: &mut Errors, v: &Value, path: &str) -> BTreeMap<String, Vec<String>> {
    let mut libraries = BTreeMap::new();
    let Value::Object(map) = v else {
        errors.push(
            path,
            format!(
                "expected an object of library names to commands, found {}",
                kind(v)
            ),
        );
        return libraries;
    };
    let mut names: Vec<&String> = map.keys().collect();
    names.sort();
    for name in names {
        let lib_path = field_path(path, name);
        errors.check(&lib_path, check_word(name));
        libraries.insert(name.clone(), commands(errors, &map[name], &lib_path));
    }
    libraries
}

/// Problems with a catalog already built.
pub(crate) fn check_catalog(errors: &mut Errors, catalog: &LibraryCatalog) {
    errors.check("os", check_name(&catalog.os));
    if let Some(image) = &catalog.base_image {
        errors.check("base-image", check_image(image));
    }
    check_commands(errors, "init-steps", &catalog.init_steps);
    for (name, language) in &catalog.specifications {
        let path = field_path("specifications", name);
        errors.check(&path, check_word(name));
        check_commands(
            errors,
            &field_path(&path, "installation-steps"),
            &language.installation_steps,
        );
        for (library, commands) in &language.libraries {
            let lib_path = field_path(&field_path(&path, "libraries"), library);
            errors.check(&lib_path, check_word(library));
            check_commands(errors, &lib_path, commands);
        }
    }
    check_meta(errors, &catalog.meta);
}

pub(crate) fn check_commands(errors: &mut Errors, path: &str, commands: &[String]) {
    for (i, command) in commands.iter().enumerate() {
        errors.check(&item_path(path, i), check_command(command));
    }
}

/// A catalog in the original format.
pub(crate) fn write_catalog(catalog: &LibraryCatalog) -> Value {
    let mut out = Map::new();
    out.insert("os".into(), json!(catalog.os));
    if let Some(image) = &catalog.base_image {
        out.insert("base-image".into(), json!(image));
    }
    out.insert("init-steps".into(), json!(catalog.init_steps));
    let specifications: Map<String, Value> = catalog
        .specifications
        .iter()
        .map(|(name, language)| {
            let spec = json!({
                "installation-steps": language.installation_steps,
                "libraries": language.libraries,
            });
            (name.clone(), spec)
        })
        .collect();
    out.insert("specifications".into(), Value::Object(specifications));
    write_meta(&mut out, &catalog.meta);
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_single_command_string_is_a_list_of_one() {
        let mut errors = Errors::default();
        let v = json!({"os": "ubuntu", "init-steps": "apt-get update"});
        let catalog = read_catalog(&mut errors, &v, "");
        assert!(errors.into_vec().is_empty());
        assert_eq!(
            catalog.map(|c| c.init_steps),
            Some(vec!["apt-get update".to_owned()])
        );
    }

    #[test]
    fn lists_must_be_lists() {
        let mut errors = Errors::default();
        let v = json!({"os": "ubuntu", "init-steps": 5});
        read_catalog(&mut errors, &v, "");
        let errors = errors.into_vec();
        assert_eq!(errors.len(), 1);
        assert_eq!(
            errors[0].to_string(),
            "init-steps: expected a list of shell commands, found a number"
        );
    }
}
