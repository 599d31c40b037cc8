//! The `idle-timeout` field of environment documents (`"30m"`, `"2h"`, `"1h30m"`): read
//! beside the spec, not into it (the spec is a frozen stored type), and recorded as an
//! `EnvironmentIdleTimeoutSet` event next to the environment's version.

use serde_json::Value;

use super::read::{field_path, item_path};
use super::{doc, Format};
use crate::error::FieldError;

/// The document field.
pub const IDLE_TIMEOUT_FIELD: &str = "idle-timeout";

const HINT: &str =
    "expected a duration such as \"30m\", \"2h\" or \"1h30m\" (units d, h, m, s), or 0 for none";

/// A duration like `30m`, `2h`, `1h30m`, `90s`, `1d`, or `0`, in milliseconds.
pub fn parse_idle_timeout_ms(text: &str) -> Result<u64, String> {
    let text = text.trim();
    if text == "0" {
        return Ok(0);
    }
    if text.is_empty() {
        return Err(HINT.to_string());
    }
    let mut total: u64 = 0;
    let mut digits = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit: u64 = match c {
            'd' => 86_400_000,
            'h' => 3_600_000,
            'm' => 60_000,
            's' => 1_000,
            _ => return Err(format!("{text:?}: {HINT}")),
        };
        let n: u64 = digits.parse().map_err(|_| format!("{text:?}: {HINT}"))?;
        digits.clear();
        total = n
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(|| format!("{text:?} is too long"))?;
    }
    if !digits.is_empty() {
        return Err(format!("{text:?}: a number needs a unit; {HINT}"));
    }
    Ok(total)
}

/// A timeout as a document writes it: `1h30m`, `45s`, `2d` (the largest units first).
pub fn format_idle_timeout(ms: u64) -> String {
    if ms == 0 {
        return "0".to_string();
    }
    let mut out = String::new();
    let mut rest = ms / 1000;
    for (unit, secs) in [('d', 86_400), ('h', 3_600), ('m', 60), ('s', 1)] {
        if rest >= secs {
            out.push_str(&format!("{}{unit}", rest / secs));
            rest %= secs;
        }
    }
    if out.is_empty() {
        // Under a second: not writable in the document's units; round up.
        out.push_str("1s");
    }
    out
}

/// For each document of `text` (in the order [`super::parse_document`] returns them):
/// the idle timeout it sets, `None` when it has no `idle-timeout` field.
pub fn idle_timeouts(text: &str, format: Format) -> Result<Vec<Option<u64>>, Vec<FieldError>> {
    let value = doc::read_text(text, format)?;
    let mut errors = Vec::new();
    let one = |v: &Value, path: &str, errors: &mut Vec<FieldError>| -> Option<u64> {
        // A template may be wrapped as `{"template": {…}}`.
        let (v, path) = match v.get("template") {
            Some(inner) if inner.is_object() => (inner, field_path(path, "template")),
            _ => (v, path.to_string()),
        };
        let field = v.get(IDLE_TIMEOUT_FIELD)?;
        let path = field_path(&path, IDLE_TIMEOUT_FIELD);
        let parsed = match field {
            Value::String(s) => parse_idle_timeout_ms(s),
            Value::Number(n) if n.as_u64() == Some(0) => Ok(0),
            _ => Err(HINT.to_string()),
        };
        match parsed {
            Ok(ms) => Some(ms),
            Err(message) => {
                errors.push(FieldError::new(path, message));
                None
            }
        }
    };
    let out = match &value {
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, v)| one(v, &item_path("", i), &mut errors))
            .collect(),
        v => vec![one(v, "", &mut errors)],
    };
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_idle_timeout_ms("30m"), Ok(1_800_000));
        assert_eq!(parse_idle_timeout_ms("1h30m"), Ok(5_400_000));
        assert_eq!(parse_idle_timeout_ms("2d"), Ok(172_800_000));
        assert_eq!(parse_idle_timeout_ms("45s"), Ok(45_000));
        assert_eq!(parse_idle_timeout_ms("0"), Ok(0));
        assert!(parse_idle_timeout_ms("30").is_err());
        assert!(parse_idle_timeout_ms("ten minutes").is_err());
        assert!(parse_idle_timeout_ms("").is_err());
    }

    #[test]
    fn formatting_reads_back() {
        for text in ["30m", "1h30m", "2d", "45s", "1d2h3m4s"] {
            let ms = parse_idle_timeout_ms(text).unwrap();
            assert_eq!(format_idle_timeout(ms), text);
        }
        assert_eq!(format_idle_timeout(0), "0");
    }

    #[test]
    fn a_wrapped_template_has_its_timeout_read() {
        let text = r#"{"template":{"template-name":"t","idle-timeout":"2h"}}"#;
        assert_eq!(
            idle_timeouts(text, Format::Json).unwrap(),
            vec![Some(7_200_000)]
        );
        let bad = r#"{"template":{"template-name":"t","idle-timeout":"later"}}"#;
        let err = idle_timeouts(bad, Format::Json).unwrap_err();
        assert_eq!(err[0].path, "template.idle-timeout");
    }

    #[test]
    fn documents_name_the_bad_field() {
        let text = r#"[{"env-name":"a","idle-timeout":"30m"},{"env-name":"b"},{"env-name":"c","idle-timeout":"soon"}]"#;
        let err = idle_timeouts(text, Format::Json).unwrap_err();
        assert_eq!(err.len(), 1);
        assert_eq!(err[0].path, "[2].idle-timeout");
        let ok = idle_timeouts(r#"{"env-name":"a","idle-timeout":"1h"}"#, Format::Json);
        assert_eq!(ok.unwrap(), vec![Some(3_600_000)]);
    }
}
