//! The `services` field of library catalog documents: how a library's service starts
//! and is reached. Read beside the catalog (the catalog is a frozen stored type) and
//! recorded as a `CatalogServicesSet` event next to it.
//!
//! ```json
//! "services": {
//!   "jupyter-notebook": {
//!     "command": ["jupyter-notebook", "--ip=0.0.0.0", "--port=8888", "--no-browser"],
//!     "port": 8888,
//!     "ready": "http:/api",
//!     "token-env": "JUPYTER_TOKEN",
//!     "open": "/tree"
//!   }
//! }
//! ```
//! `ready` is `tcp` (a connect succeeds) or `http:PATH` (a GET answers 2xx or 3xx);
//! `token-env` and `open` are optional.

use dcloud_events::model::LibraryService;
use serde_json::Value;

use super::read::{field_path, item_path};
use super::{doc, Format};
use crate::error::FieldError;

/// The document field.
pub const SERVICES_FIELD: &str = "services";
const FIELDS: &[&str] = &["command", "port", "ready", "token-env", "open"];

/// For each document of `text` (in the order [`super::parse_document`] returns them):
/// the services it declares, `None` when it has no `services` field. Each service
/// must name a library of the document's `specifications`.
pub fn catalog_services(
    text: &str,
    format: Format,
) -> Result<Vec<Option<Vec<LibraryService>>>, Vec<FieldError>> {
    let value = doc::read_text(text, format)?;
    let mut errors = Vec::new();
    let out = match &value {
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, v)| read_services(v, &item_path("", i), &mut errors))
            .collect(),
        v => vec![read_services(v, "", &mut errors)],
    };
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

fn read_services(
    doc: &Value,
    path: &str,
    errors: &mut Vec<FieldError>,
) -> Option<Vec<LibraryService>> {
    let field = doc.get(SERVICES_FIELD)?;
    let path = field_path(path, SERVICES_FIELD);
    let Value::Object(map) = field else {
        errors.push(FieldError::new(
            path,
            "expected an object: library name → {command, port, ready, token-env, open}",
        ));
        return None;
    };
    let libraries: Vec<&str> = doc
        .get("specifications")
        .and_then(Value::as_object)
        .into_iter()
        .flat_map(|langs| langs.values())
        .filter_map(|lang| lang.get("libraries").and_then(Value::as_object))
        .flat_map(|libs| libs.keys().map(String::as_str))
        .collect();
    let mut out = Vec::new();
    for (library, v) in map {
        let path = field_path(&path, library);
        if !libraries.contains(&library.as_str()) {
            errors.push(FieldError::new(
                &path,
                format!("{library:?} is not a library of this catalog's specifications"),
            ));
            continue;
        }
        if let Some(service) = read_service(library, v, &path, errors) {
            out.push(service);
        }
    }
    Some(out)
}

fn read_service(
    library: &str,
    v: &Value,
    path: &str,
    errors: &mut Vec<FieldError>,
) -> Option<LibraryService> {
    let Value::Object(map) = v else {
        errors.push(FieldError::new(
            path,
            "expected an object with command, port, ready, token-env, open",
        ));
        return None;
    };
    let before = errors.len();
    for key in map.keys().filter(|k| !FIELDS.contains(&k.as_str())) {
        errors.push(FieldError::new(
            field_path(path, key),
            format!("unknown field; expected one of {}", FIELDS.join(", ")),
        ));
    }
    let command: Vec<String> = match map.get("command") {
        Some(Value::Array(items)) if !items.is_empty() && items.iter().all(Value::is_string) => {
            items
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        }
        _ => {
            errors.push(FieldError::new(
                field_path(path, "command"),
                "expected the command as a non-empty list of strings, e.g. [\"jupyter-notebook\", \"--port=8888\"]",
            ));
            Vec::new()
        }
    };
    let port = match map.get("port").and_then(Value::as_u64) {
        Some(p @ 1..=65535) => p as u16,
        _ => {
            errors.push(FieldError::new(
                field_path(path, "port"),
                "expected the port the service listens on inside the container, 1 to 65535",
            ));
            0
        }
    };
    let http_path = match map.get("ready").and_then(Value::as_str) {
        None => None,
        Some("tcp") => None,
        Some(r) if r.starts_with("http:/") => Some(r["http:".len()..].to_string()),
        Some(_) => {
            errors.push(FieldError::new(
                field_path(path, "ready"),
                "expected \"tcp\" or \"http:/PATH\" (e.g. \"http:/api\")",
            ));
            None
        }
    };
    if map.get("ready").is_some_and(|r| !r.is_string()) {
        errors.push(FieldError::new(
            field_path(path, "ready"),
            "expected \"tcp\" or \"http:/PATH\" (e.g. \"http:/api\")",
        ));
    }
    let token_env = match map.get("token-env") {
        None | Some(Value::Null) => None,
        Some(Value::String(name))
            if !name.is_empty()
                && !name.starts_with(|c: char| c.is_ascii_digit())
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') =>
        {
            Some(name.clone())
        }
        Some(_) => {
            errors.push(FieldError::new(
                field_path(path, "token-env"),
                "expected an environment variable name such as JUPYTER_TOKEN",
            ));
            None
        }
    };
    let open_path = match map.get("open") {
        None | Some(Value::Null) => "/".to_string(),
        Some(Value::String(p)) if p.starts_with('/') && !p.contains(char::is_whitespace) => {
            p.clone()
        }
        Some(_) => {
            errors.push(FieldError::new(
                field_path(path, "open"),
                "expected a path starting with /, e.g. /tree",
            ));
            "/".to_string()
        }
    };
    (errors.len() == before).then(|| LibraryService {
        library: library.to_string(),
        command,
        port,
        http_path,
        token_env,
        open_path,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const CATALOG: &str = r#"{"os": "lab", "specifications": {"python": {"libraries":
        {"jupyter-notebook": ["true"], "numpy": ["true"]}}},
        "services": {"jupyter-notebook": {"command": ["jupyter-notebook", "--port=8888"],
        "port": 8888, "ready": "http:/api", "token-env": "JUPYTER_TOKEN", "open": "/tree"}}}"#;

    #[test]
    fn a_declared_service_is_read() {
        let services = catalog_services(CATALOG, Format::Json).unwrap();
        assert_eq!(
            services,
            vec![Some(vec![LibraryService {
                library: "jupyter-notebook".into(),
                command: vec!["jupyter-notebook".into(), "--port=8888".into()],
                port: 8888,
                http_path: Some("/api".into()),
                token_env: Some("JUPYTER_TOKEN".into()),
                open_path: "/tree".into(),
            }])]
        );
        let none = catalog_services(r#"{"os": "lab"}"#, Format::Json).unwrap();
        assert_eq!(none, vec![None]);
    }

    #[test]
    fn bad_services_name_the_field() {
        let bad = CATALOG
            .replace("\"port\": 8888", "\"port\": 0")
            .replace("http:/api", "soon")
            .replace("\"open\": \"/tree\"", "\"open\": \"tree\", \"user\": 1");
        let errors = catalog_services(&bad, Format::Json).unwrap_err();
        let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "services.jupyter-notebook.user",
                "services.jupyter-notebook.port",
                "services.jupyter-notebook.ready",
                "services.jupyter-notebook.open",
            ]
        );
        let unknown = CATALOG.replace(
            "\"services\": {\"jupyter-notebook\"",
            "\"services\": {\"rstudio\"",
        );
        let errors = catalog_services(&unknown, Format::Json).unwrap_err();
        assert_eq!(errors[0].path, "services.rstudio");
        assert!(errors[0].message.contains("not a library"));
    }
}
