//! MongoDB extended JSON as the original system exported it: `{"$oid": …}` ids,
//! `{"$date": …}` times (ISO-8601 or `{"$numberLong": ms}`), and the metadata fields
//! every document kind may carry. Includes a small RFC 3339 parser (to milliseconds).

use dcloud_events::model::OriginalMeta;
use serde_json::{json, Map, Value};

use super::read::{integer, kind, scalar_text, show, Errors, Obj};
use super::rules::check_oid;

/// Reads `_id`, `creation_time`, `last_updation_time` and `config_id`.
pub(crate) fn read_meta(errors: &mut Errors, obj: &Obj<'_>) -> OriginalMeta {
    OriginalMeta {
        oid: obj
            .get("_id")
            .and_then(|v| read_oid(errors, v, &obj.path("_id"))),
        config_id: obj
            .get("config_id")
            .and_then(|v| integer(errors, v, &obj.path("config_id"))),
        creation_time_ms: obj
            .get("creation_time")
            .and_then(|v| read_date(errors, v, &obj.path("creation_time"))),
        last_updation_time_ms: obj
            .get("last_updation_time")
            .and_then(|v| read_date(errors, v, &obj.path("last_updation_time"))),
    }
}

/// Writes the metadata fields that are present.
pub(crate) fn write_meta(out: &mut Map<String, Value>, meta: &OriginalMeta) {
    if let Some(oid) = &meta.oid {
        out.insert("_id".into(), json!({ "$oid": oid }));
    }
    if let Some(ms) = meta.creation_time_ms {
        out.insert("creation_time".into(), date_value(ms));
    }
    if let Some(ms) = meta.last_updation_time_ms {
        out.insert("last_updation_time".into(), date_value(ms));
    }
    if let Some(id) = meta.config_id {
        out.insert("config_id".into(), json!(id));
    }
}

/// Problems with metadata already built (the parser checks the same while reading).
pub(crate) fn check_meta(errors: &mut Errors, meta: &OriginalMeta) {
    if let Some(oid) = &meta.oid {
        errors.check("_id", check_oid(oid));
    }
}

/// `{"$oid": "<24 hex>"}`, or the bare hex string.
fn read_oid(errors: &mut Errors, v: &Value, path: &str) -> Option<String> {
    let hex = match v {
        Value::String(s) => Some(s),
        Value::Object(map) if map.len() == 1 => match map.get("$oid") {
            Some(Value::String(s)) => Some(s),
            _ => None,
        },
        _ => None,
    };
    let Some(hex) = hex else {
        errors.push(path, format!("expected an object id such as {{\"$oid\": \"65a1f0c2d4e5f60718293a4b\"}}, found {}", kind(v)));
        return None;
    };
    match check_oid(hex) {
        Ok(()) => Some(hex.clone()),
        Err(message) => {
            errors.push(path, message);
            None
        }
    }
}

/// `{"$date": "2024-01-12T09:30:00.000Z"}`, `{"$date": {"$numberLong": "…"}}`,
/// `{"$date": ms}`, or a bare ISO string or millisecond number.
fn read_date(errors: &mut Errors, v: &Value, path: &str) -> Option<i64> {
    let inner = match v {
        Value::Object(map) if map.len() == 1 && map.contains_key("$date") => &map["$date"],
        other => other,
    };
    let parsed = match inner {
        Value::String(s) => parse_datetime(s),
        other => scalar_text(other).and_then(|s| s.parse::<i64>().ok()),
    };
    if parsed.is_none() {
        errors.push(
            path,
            format!(
                "{} is not a date; use ISO-8601 such as 2024-01-12T09:30:00Z",
                show(v)
            ),
        );
    }
    parsed
}

/// Latest time written as an ISO string; later (and earlier than 1970) times are written
/// as `{"$numberLong": …}`, as MongoDB's relaxed extended JSON does.
const MAX_ISO_MS: i64 = 253_402_300_799_999;

/// A time as extended JSON `{"$date": …}`.
pub(crate) fn date_value(ms: i64) -> Value {
    if (0..=MAX_ISO_MS).contains(&ms) {
        json!({ "$date": format_datetime(ms) })
    } else {
        json!({ "$date": { "$numberLong": ms.to_string() } })
    }
}

/// Parses RFC 3339 / ISO-8601 (`2024-01-12T09:30:00.5Z`, `…+02:00`, a date alone, or a
/// time without offset as UTC) to milliseconds since the epoch. Fractions finer than a
/// millisecond are cut.
pub fn parse_datetime(s: &str) -> Option<i64> {
    let b = s.trim().as_bytes();
    let num = |from: usize, len: usize| -> Option<i64> {
        let digits = b.get(from..from + len)?;
        digits.iter().all(u8::is_ascii_digit).then(|| {
            digits
                .iter()
                .fold(0i64, |acc, d| acc * 10 + i64::from(d - b'0'))
        })
    };
    let (year, month, day) = (num(0, 4)?, num(5, 2)?, num(8, 2)?);
    if b.get(4) != Some(&b'-') || b.get(7) != Some(&b'-') {
        return None;
    }
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    let mut ms = days_from_civil(year, month, day) * 86_400_000;
    if b.len() == 10 {
        return Some(ms);
    }
    if !matches!(b.get(10), Some(b'T' | b't' | b' '))
        || b.get(13) != Some(&b':')
        || b.get(16) != Some(&b':')
    {
        return None;
    }
    let (hour, minute, second) = (num(11, 2)?, num(14, 2)?, num(17, 2)?);
    if hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    ms += (hour * 3600 + minute * 60 + second) * 1000;
    let mut at = 19;
    if b.get(at) == Some(&b'.') {
        let digits = b[at + 1..]
            .iter()
            .take_while(|c| c.is_ascii_digit())
            .count();
        if digits == 0 {
            return None;
        }
        let millis = (0..3).fold(0i64, |acc, i| {
            let d = if i < digits {
                i64::from(b[at + 1 + i] - b'0')
            } else {
                0
            };
            acc * 10 + d
        });
        ms += millis;
        at += 1 + digits;
    }
    match b.get(at..)? {
        [] | [b'Z' | b'z'] => Some(ms),
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] | [sign @ (b'+' | b'-'), h1, h2, m1, m2] => {
            let digit = |c: &u8| c.is_ascii_digit().then(|| i64::from(c - b'0'));
            let hours = digit(h1)? * 10 + digit(h2)?;
            let minutes = digit(m1)? * 10 + digit(m2)?;
            if hours > 23 || minutes > 59 {
                return None;
            }
            let offset = (hours * 60 + minutes) * 60_000;
            Some(if *sign == b'+' {
                ms - offset
            } else {
                ms + offset
            })
        }
        _ => None,
    }
}

/// `2024-01-12T09:30:00.000Z`; meant for years 0 to 9999 (export writes other times
/// as `$numberLong`).
pub fn format_datetime(ms: i64) -> String {
    let days = ms.div_euclid(86_400_000);
    let in_day = ms.rem_euclid(86_400_000);
    let (year, month, day) = civil_from_days(days);
    let (h, m, s, milli) = (
        in_day / 3_600_000,
        in_day / 60_000 % 60,
        in_day / 1000 % 60,
        in_day % 1000,
    );
    format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}.{milli:03}Z")
}

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The inverse of [`days_from_civil`].
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_original_exports() {
        assert_eq!(
            parse_datetime("2024-01-12T09:30:00.000Z"),
            Some(1_705_051_800_000)
        );
        assert_eq!(
            parse_datetime("2024-01-14T16:05:12.500Z"),
            Some(1_705_248_312_500)
        );
        assert_eq!(parse_datetime("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_datetime("1970-01-01"), Some(0));
        assert_eq!(parse_datetime("1970-01-01T02:00:00+02:00"), Some(0));
        assert_eq!(parse_datetime("1970-01-01T00:00:00.123456Z"), Some(123));
        assert_eq!(parse_datetime("1969-12-31T23:59:59.999Z"), Some(-1));
        assert_eq!(
            parse_datetime("2000-02-29T00:00:00Z"),
            Some(951_782_400_000)
        );
    }

    #[test]
    fn rejects_what_is_not_a_date() {
        for bad in [
            "",
            "2024",
            "2024-13-01",
            "2023-02-29",
            "2024-01-12T24:00:00Z",
            "2024-01-12T09:30Z",
            "2024-01-12T09:30:00.Z",
            "2024-01-12T09:30:00+2",
            "é024-01-01",
            "2024-01-12T09:30:00Zjunk",
        ] {
            assert_eq!(parse_datetime(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn format_and_parse_agree() {
        for ms in [
            0,
            1,
            1_705_051_800_000,
            951_782_400_000,
            MAX_ISO_MS,
            -62_167_219_200_000,
        ] {
            assert_eq!(parse_datetime(&format_datetime(ms)), Some(ms), "{ms}");
        }
        assert_eq!(
            format_datetime(1_705_248_312_500),
            "2024-01-14T16:05:12.500Z"
        );
    }

    #[test]
    fn extended_json_dates() {
        assert_eq!(date_value(0), json!({"$date": "1970-01-01T00:00:00.000Z"}));
        assert_eq!(date_value(-5), json!({"$date": {"$numberLong": "-5"}}));
    }
}
