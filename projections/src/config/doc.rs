//! From text to generic values (JSON with duplicate keys refused, YAML with its merge
//! keys applied), and telling which kind of document a value is.

use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, Error as _, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::{Map, Number, Value};

use super::read::{field_path, item_path, kind, Errors};
use super::Format;
use crate::error::FieldError;

/// Documents larger than this are refused before parsing.
pub const MAX_DOCUMENT_BYTES: usize = 4 << 20;

/// The text as one value; a YAML stream of several documents becomes a list of them.
pub(crate) fn read_text(text: &str, format: Format) -> Result<Value, Vec<FieldError>> {
    let fail = |message: String| Err(vec![FieldError::new("", message)]);
    if text.len() > MAX_DOCUMENT_BYTES {
        return fail(format!(
            "the document is {} bytes; the limit is {MAX_DOCUMENT_BYTES}",
            text.len()
        ));
    }
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if text.trim().is_empty() {
        return fail("the document is empty".into());
    }
    match format {
        Format::Json => read_json(text).or_else(|e| fail(format!("not valid json: {e}"))),
        Format::Yaml => read_yaml(text),
        Format::Auto => {
            if !text.trim_start().starts_with(['{', '[']) {
                return read_yaml(text);
            }
            match read_json(text) {
                Ok(value) => Ok(value),
                // Flow-style YAML also starts with a bracket; report JSON's error if
                // it is not YAML either.
                Err(json_error) => {
                    read_yaml(text).or_else(|_| fail(format!("not valid json: {json_error}")))
                }
            }
        }
    }
}

fn read_json(text: &str) -> Result<Value, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_str(text);
    let value = Strict.deserialize(&mut de)?;
    de.end()?;
    Ok(value)
}

/// Builds a `serde_json::Value`, refusing a key given twice in one object (plain
/// `Value` keeps the last silently).
struct Strict;

impl<'de> DeserializeSeed<'de> for Strict {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Strict {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, b: bool) -> Result<Value, E> {
        Ok(Value::Bool(b))
    }

    fn visit_i64<E>(self, n: i64) -> Result<Value, E> {
        Ok(Value::Number(n.into()))
    }

    fn visit_u64<E>(self, n: u64) -> Result<Value, E> {
        Ok(Value::Number(n.into()))
    }

    fn visit_f64<E: serde::de::Error>(self, n: f64) -> Result<Value, E> {
        Number::from_f64(n)
            .map(Value::Number)
            .ok_or_else(|| E::custom("number is not finite"))
    }

    fn visit_str<E>(self, s: &str) -> Result<Value, E> {
        Ok(Value::String(s.to_owned()))
    }

    fn visit_string<E>(self, s: String) -> Result<Value, E> {
        Ok(Value::String(s))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(Strict)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Value, A::Error> {
        let mut map = Map::new();
        while let Some(key) = access.next_key::<String>()? {
            if map.contains_key(&key) {
                return Err(A::Error::custom(format!("duplicate field {key:?}")));
            }
            let value = access.next_value_seed(Strict)?;
            map.insert(key, value);
        }
        Ok(Value::Object(map))
    }
}

fn read_yaml(text: &str) -> Result<Value, Vec<FieldError>> {
    let mut documents = Vec::new();
    for document in serde_norway::Deserializer::from_str(text) {
        let mut value = serde_norway::Value::deserialize(document)
            .map_err(|e| vec![FieldError::new("", format!("not valid yaml: {e}"))])?;
        value
            .apply_merge()
            .map_err(|e| vec![FieldError::new("", format!("not valid yaml: {e}"))])?;
        // A document of nothing but comments holds no document.
        if !value.is_null() {
            documents.push(value);
        }
    }
    let mut errors = Errors::default();
    let value = match documents.len() {
        0 => return Err(vec![FieldError::new("", "the document is empty")]),
        1 => documents
            .pop()
            .map(|d| from_yaml(&mut errors, d, ""))
            .unwrap_or_default(),
        _ => Value::Array(
            documents
                .into_iter()
                .enumerate()
                .map(|(i, d)| from_yaml(&mut errors, d, &item_path("", i)))
                .collect(),
        ),
    };
    errors.finish(Some(value))
}

fn from_yaml(errors: &mut Errors, value: serde_norway::Value, path: &str) -> Value {
    use serde_norway::Value as Y;
    match value {
        Y::Null => Value::Null,
        Y::Bool(b) => Value::Bool(b),
        Y::Number(n) => {
            if let Some(u) = n.as_u64() {
                Value::Number(u.into())
            } else if let Some(i) = n.as_i64() {
                Value::Number(i.into())
            } else {
                match n.as_f64().and_then(Number::from_f64) {
                    Some(n) => Value::Number(n),
                    None => {
                        errors.push(path, format!("{n} is not a finite number"));
                        Value::Null
                    }
                }
            }
        }
        Y::String(s) => Value::String(s),
        Y::Sequence(items) => Value::Array(
            items
                .into_iter()
                .enumerate()
                .map(|(i, v)| from_yaml(errors, v, &item_path(path, i)))
                .collect(),
        ),
        Y::Mapping(mapping) => {
            let mut map = Map::new();
            for (key, value) in mapping {
                let key = match key {
                    Y::String(s) => s,
                    Y::Number(n) => n.to_string(),
                    Y::Bool(b) => b.to_string(),
                    other => {
                        let found = if other.is_null() {
                            "null"
                        } else {
                            "a list or an object"
                        };
                        errors.push(path, format!("a field name must be text, found {found}"));
                        continue;
                    }
                };
                let value = from_yaml(errors, value, &field_path(path, &key));
                if map.insert(key.clone(), value).is_some() {
                    errors.push(&field_path(path, &key), format!("duplicate field {key:?}"));
                }
            }
            Value::Object(map)
        }
        Y::Tagged(tagged) => {
            errors.push(
                path,
                format!("yaml tags such as {} are not supported", tagged.tag),
            );
            Value::Null
        }
    }
}

/// The kinds of document, told apart by their fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Environment,
    /// A template: `template-name`, or `{"template": {…}}` (`wrapped`).
    Template {
        wrapped: bool,
    },
    Catalog,
    Service,
    Datasets,
}

/// Which kind of document `v` is: `{"template": {…}}` or `template-name` → template;
/// `env-name`, `resources` or `languages` → environment; `specifications`,
/// `init-steps` or `base-image` → library catalog; `service-name` or `servers` →
/// service; `category-name` or `db` → dataset category.
pub(crate) fn detect(v: &Value) -> Result<Kind, String> {
    let Value::Object(map) = v else {
        return Err(format!(
            "expected a document (an object), found {}",
            kind(v)
        ));
    };
    let has = |keys: &[&str]| keys.iter().any(|k| map.contains_key(*k));
    if map.len() == 1 && map.get("template").is_some_and(Value::is_object) {
        return Ok(Kind::Template { wrapped: true });
    }
    let kind = if has(&["template-name"]) {
        Kind::Template { wrapped: false }
    } else if has(&["env-name", "resources", "languages", "port-publish"]) {
        Kind::Environment
    } else if has(&["specifications", "init-steps", "base-image"]) {
        Kind::Catalog
    } else if has(&["service-name", "servers"]) {
        Kind::Service
    } else if has(&["category-name", "db"]) {
        Kind::Datasets
    } else {
        return Err(
            "cannot tell what kind of document this is; expected an environment \
                    (env-name), a template (template-name, or {\"template\": {…}}), a library \
                    catalog (specifications), a service (service-name) or a dataset category \
                    (category-name)"
                .into(),
        );
    };
    Ok(kind)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::{read_text, Format};

    #[test]
    fn yaml_reads_as_documented() {
        // YAML 1.1/1.2 read an unquoted `1.10` as the number 1.1: quote versions.
        let v = read_text(
            "version: 1.10\nquoted: '1.10'\nint: 7\non: yes\n",
            Format::Yaml,
        );
        assert_eq!(
            v,
            Ok(json!({"version": 1.1, "quoted": "1.10", "int": 7, "on": "yes"}))
        );
        // Merge keys are applied; tags and duplicate keys are refused with a path.
        let v = read_text("base: &b {a: 1}\nx:\n  <<: *b\n  c: 2\n", Format::Yaml);
        assert_eq!(v.map(|v| v["x"].clone()), Ok(json!({"a": 1, "c": 2})));
        let e = read_text("a: !custom 1\n", Format::Yaml).expect_err("tag");
        assert_eq!(e[0].path, "a");
        assert!(e[0].message.contains("yaml tags"), "{}", e[0].message);
        let e = read_text("a: 1\na: 2\n", Format::Yaml).expect_err("duplicate");
        assert!(e[0].message.contains("not valid yaml"), "{}", e[0].message);
    }
}
