//! Reading a generic JSON value field by field, collecting every problem with its path
//! in the original document's names (`resources.ram`, `port-publish[1].external.ports`).

use std::borrow::Cow;

use serde_json::{Map, Value};

use crate::error::FieldError;

/// Every problem found so far in one document, in the order found.
#[derive(Debug, Default)]
pub(crate) struct Errors {
    list: Vec<FieldError>,
}

impl Errors {
    pub(crate) fn push(&mut self, path: &str, message: impl Into<String>) {
        self.list.push(FieldError::new(path, message));
    }

    /// Records the outcome of a rule check at `path`.
    pub(crate) fn check(&mut self, path: &str, outcome: Result<(), String>) {
        if let Err(message) = outcome {
            self.push(path, message);
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.list.len()
    }

    pub(crate) fn into_vec(self) -> Vec<FieldError> {
        self.list
    }

    /// The value when nothing was wrong, else every problem found.
    pub(crate) fn finish<T>(self, value: Option<T>) -> Result<T, Vec<FieldError>> {
        match value {
            Some(value) if self.list.is_empty() => Ok(value),
            Some(_) => Err(self.list),
            None if self.list.is_empty() => Err(vec![FieldError::new("", "no document found")]),
            None => Err(self.list),
        }
    }
}

/// `parent.key`, or `key` at the top.
pub(crate) fn field_path(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

/// `parent[i]`.
pub(crate) fn item_path(parent: &str, index: usize) -> String {
    format!("{parent}[{index}]")
}

/// What kind of value `v` is, for "found …" in messages.
pub(crate) fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// A value as the user wrote it (compact JSON, strings quoted), cut to a readable length.
pub(crate) fn show(v: &Value) -> String {
    let text = serde_json::to_string(v).unwrap_or_else(|_| kind(v).to_owned());
    cut(text)
}

/// A string quoted as in JSON, cut to a readable length.
pub(crate) fn quote(s: &str) -> String {
    cut(serde_json::to_string(s).unwrap_or_default())
}

fn cut(text: String) -> String {
    const MAX: usize = 60;
    if text.chars().count() <= MAX {
        return text;
    }
    let mut short: String = text.chars().take(MAX).collect();
    short.push('…');
    short
}

/// The text of a scalar written as a string, a number, or a Mongo extended JSON number
/// (`{"$numberInt": "5"}`, `$numberLong`, `$numberDouble`, `$numberDecimal`).
pub(crate) fn scalar_text(v: &Value) -> Option<Cow<'_, str>> {
    match v {
        Value::String(s) => Some(Cow::Borrowed(s)),
        Value::Number(n) => Some(Cow::Owned(n.to_string())),
        Value::Object(map) if map.len() == 1 => {
            let (key, inner) = map.iter().next()?;
            let wrapped = matches!(
                key.as_str(),
                "$numberInt" | "$numberLong" | "$numberDouble" | "$numberDecimal"
            );
            match inner {
                Value::String(s) if wrapped => Some(Cow::Borrowed(s)),
                Value::Number(n) if wrapped => Some(Cow::Owned(n.to_string())),
                _ => None,
            }
        }
        _ => None,
    }
}

/// The closest of `known` to an unknown field name, when close enough to be a typo.
pub(crate) fn suggest<'k>(name: &str, known: &[&'k str]) -> Option<&'k str> {
    let norm = |s: &str| -> Vec<char> {
        s.chars()
            .map(|c| {
                if c == '_' {
                    '-'
                } else {
                    c.to_ascii_lowercase()
                }
            })
            .collect()
    };
    let wrong = norm(name);
    let close = known
        .iter()
        .map(|k| (distance(&wrong, &norm(k)), *k))
        .filter(|(d, k)| *d <= (k.len() / 3).max(1) && *d < k.len())
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k);
    // A shortened name (`language` for `language-name`) is as good a hint as a typo.
    close.or_else(|| {
        let prefix_of = |k: &&&str| wrong.len() >= 3 && norm(k).starts_with(&wrong);
        known.iter().find(prefix_of).copied()
    })
}

/// Levenshtein distance between two char sequences.
fn distance(a: &[char], b: &[char]) -> usize {
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = if ca == cb {
                diagonal
            } else {
                1 + diagonal.min(above).min(row[j])
            };
            diagonal = above;
        }
    }
    row[b.len()]
}

/// `"a", "b", "c"`: names listed for a message.
pub(crate) fn list_names<'n>(names: impl IntoIterator<Item = &'n str>) -> String {
    const MAX: usize = 12;
    let names: Vec<&str> = names.into_iter().collect();
    let mut shown: Vec<String> = names.iter().take(MAX).map(|n| quote(n)).collect();
    if names.len() > MAX {
        shown.push(format!("and {} more", names.len() - MAX));
    }
    shown.join(", ")
}

/// "unknown x; did you mean y?" or "…; known: a, b".
pub(crate) fn unknown_message(what: &str, name: &str, known: &[&str]) -> String {
    match suggest(name, known) {
        Some(close) => format!(
            "unknown {what} {}; did you mean {}?",
            quote(name),
            quote(close)
        ),
        None if known.is_empty() => format!("unknown {what} {}", quote(name)),
        None => format!(
            "unknown {what} {}; known: {}",
            quote(name),
            list_names(known.iter().copied())
        ),
    }
}

/// An object being read; its unknown fields were reported when it was opened.
pub(crate) struct Obj<'a> {
    map: &'a Map<String, Value>,
    path: String,
}

impl<'a> Obj<'a> {
    /// Opens `v` as an object, reporting each field not in `known` (sorted by name, so
    /// the order never depends on the map's).
    pub(crate) fn open(
        errors: &mut Errors,
        v: &'a Value,
        path: &str,
        known: &[&str],
    ) -> Option<Obj<'a>> {
        let Value::Object(map) = v else {
            errors.push(path, format!("expected an object, found {}", kind(v)));
            return None;
        };
        let mut unknown: Vec<&String> = map
            .keys()
            .filter(|k| !known.contains(&k.as_str()))
            .collect();
        unknown.sort();
        for key in unknown {
            errors.push(&field_path(path, key), unknown_message("field", key, known));
        }
        Some(Obj {
            map,
            path: path.to_owned(),
        })
    }

    /// The field's value; `null` counts as absent.
    pub(crate) fn get(&self, key: &str) -> Option<&'a Value> {
        self.map.get(key).filter(|v| !v.is_null())
    }

    pub(crate) fn path(&self, key: &str) -> String {
        field_path(&self.path, key)
    }

    /// The field's value, or an error saying it is missing and what it should hold.
    pub(crate) fn require(
        &self,
        errors: &mut Errors,
        key: &str,
        expected: &str,
    ) -> Option<&'a Value> {
        let value = self.get(key);
        if value.is_none() {
            errors.push(&self.path(key), format!("missing; expected {expected}"));
        }
        value
    }
}

/// A JSON string.
pub(crate) fn text<'a>(
    errors: &mut Errors,
    v: &'a Value,
    path: &str,
    expected: &str,
) -> Option<&'a str> {
    match v {
        Value::String(s) => Some(s),
        other => {
            errors.push(path, format!("expected {expected}, found {}", kind(other)));
            None
        }
    }
}

/// A label written as a string or a number (`"version": "2"` or `2`).
pub(crate) fn label(errors: &mut Errors, v: &Value, path: &str) -> Option<String> {
    match scalar_text(v) {
        Some(s) => Some(s.into_owned()),
        None => {
            errors.push(path, format!("expected a string, found {}", kind(v)));
            None
        }
    }
}

/// A JSON list.
pub(crate) fn list<'a>(
    errors: &mut Errors,
    v: &'a Value,
    path: &str,
    expected: &str,
) -> Option<&'a [Value]> {
    match v {
        Value::Array(items) => Some(items),
        other => {
            errors.push(path, format!("expected {expected}, found {}", kind(other)));
            None
        }
    }
}

/// A list of strings, each checked by `rule`; bad items are reported and left out.
pub(crate) fn string_list(
    errors: &mut Errors,
    v: &Value,
    path: &str,
    expected: &str,
    rule: fn(&str) -> Result<(), String>,
) -> Vec<String> {
    let Some(items) = list(errors, v, path, &format!("a list of {expected}")) else {
        return Vec::new();
    };
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let item_path = item_path(path, i);
        if let Some(s) = text(errors, item, &item_path, expected) {
            let before = errors.len();
            errors.check(&item_path, rule(s));
            if errors.len() == before {
                out.push(s.to_owned());
            }
        }
    }
    out
}

/// A whole number written as a number, a string or an extended JSON number.
pub(crate) fn integer(errors: &mut Errors, v: &Value, path: &str) -> Option<i64> {
    let parsed = scalar_text(v).and_then(|s| s.trim().parse::<i64>().ok());
    if parsed.is_none() {
        errors.push(path, format!("{} is not a whole number", show(v)));
    }
    parsed
}

/// A flag written as `true`/`false`, `1`/`0` or those as strings (`is_active: 1`).
pub(crate) fn flag(errors: &mut Errors, v: &Value, path: &str) -> Option<bool> {
    let parsed = match v {
        Value::Bool(b) => Some(*b),
        other => match scalar_text(other).as_deref() {
            Some("1" | "true") => Some(true),
            Some("0" | "false") => Some(false),
            _ => None,
        },
    };
    if parsed.is_none() {
        errors.push(
            path,
            format!("expected true, false, 1 or 0, found {}", show(v)),
        );
    }
    parsed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions_catch_typos_only() {
        let known = ["ram", "cpu", "gpu", "storage", "language-name", "is_active"];
        assert_eq!(suggest("rams", &known), Some("ram"));
        assert_eq!(suggest("RAM", &known), Some("ram"));
        assert_eq!(suggest("storge", &known), Some("storage"));
        assert_eq!(suggest("language_name", &known), Some("language-name"));
        assert_eq!(suggest("is-active", &known), Some("is_active"));
        assert_eq!(suggest("language", &known), Some("language-name"));
        assert_eq!(suggest("memory", &known), None);
        assert_eq!(suggest("x", &known), None);
    }

    #[test]
    fn distance_counts_edits() {
        let d = |a: &str, b: &str| {
            distance(
                &a.chars().collect::<Vec<_>>(),
                &b.chars().collect::<Vec<_>>(),
            )
        };
        assert_eq!(d("kitten", "sitting"), 3);
        assert_eq!(d("", "abc"), 3);
        assert_eq!(d("same", "same"), 0);
    }

    #[test]
    fn show_cuts_long_values_on_char_boundaries() {
        let long = Value::String("é".repeat(100));
        let shown = show(&long);
        assert_eq!(shown.chars().count(), 61);
        assert!(shown.ends_with('…'));
    }

    #[test]
    fn scalars_unwrap_extended_json_numbers() {
        let v: Value = serde_json::json!({"$numberLong": "42"});
        assert_eq!(scalar_text(&v).as_deref(), Some("42"));
        let v: Value = serde_json::json!({"$numberInt": 7});
        assert_eq!(scalar_text(&v).as_deref(), Some("7"));
        let v: Value = serde_json::json!({"other": "42"});
        assert_eq!(scalar_text(&v), None);
    }
}
