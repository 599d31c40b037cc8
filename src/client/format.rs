//! Human output helpers: plain-text tables, times, sizes and CPU amounts.

use serde_json::Value;

/// Left-aligned columns separated by two spaces, with a header row.
pub(super) fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                out.push_str(cell);
            } else {
                let pad = widths[i] - cell.chars().count();
                out.push_str(cell);
                out.push_str(&" ".repeat(pad + 2));
            }
        }
        out.trim_end().to_string()
    };
    let mut out = line(headers.to_vec());
    for row in rows {
        out.push('\n');
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

/// Milliseconds since the epoch as `YYYY-MM-DDTHH:MM:SS.mmmZ` (UTC).
pub(super) fn time_ms(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Howard Hinnant's days-to-civil algorithm (proleptic Gregorian).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Bytes with a binary unit (`512Mi`, `1.5Gi`).
pub(super) fn bytes(n: i64) -> String {
    const UNITS: [&str; 5] = ["", "Ki", "Mi", "Gi", "Ti"];
    let mut v = n as f64;
    let mut unit = 0;
    while v.abs() >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n}")
    } else if (v - v.round()).abs() < 0.05 {
        format!("{:.0}{}", v, UNITS[unit])
    } else {
        format!("{:.1}{}", v, UNITS[unit])
    }
}

/// Millicores as cores (`500m` → `0.5`, `2000` → `2`).
pub(super) fn cpu(millis: i64) -> String {
    if millis % 1000 == 0 {
        format!("{}", millis / 1000)
    } else {
        format!("{:.2}", millis as f64 / 1000.0)
            .trim_end_matches('0')
            .to_string()
    }
}

/// A string field, or `-`.
pub(super) fn s(v: &Value, key: &str) -> String {
    match v.get(key) {
        Some(Value::String(x)) => x.clone(),
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::Bool(b)) => b.to_string(),
        _ => "-".to_string(),
    }
}

/// An integer field, or 0.
pub(super) fn i(v: &Value, key: &str) -> i64 {
    v.get(key).and_then(Value::as_i64).unwrap_or(0)
}

/// A GraphQL enum value in lower case (`OOM_KILLED` → `oom_killed`).
pub(super) fn lower(v: &Value, key: &str) -> String {
    s(v, key).to_lowercase()
}

/// `reason (n)` list of `[RejectCount]`, or `None` when empty.
pub(super) fn reasons(list: Option<&Value>) -> Option<String> {
    let items = list?.as_array()?;
    if items.is_empty() {
        return None;
    }
    Some(
        items
            .iter()
            .map(|r| {
                let n = i(r, "count");
                let node = if n == 1 { "node" } else { "nodes" };
                format!("{} ({n} {node})", s(r, "reason"))
            })
            .collect::<Vec<_>>()
            .join(", "),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_utc_iso() {
        assert_eq!(time_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(time_ms(1_705_051_800_500), "2024-01-12T09:30:00.500Z");
        assert_eq!(time_ms(951_782_400_000), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn sizes_and_cpus() {
        assert_eq!(bytes(512 * 1024 * 1024), "512Mi");
        assert_eq!(bytes(3 * 1024 * 1024 * 1024 / 2), "1.5Gi");
        assert_eq!(bytes(100), "100");
        assert_eq!(cpu(500), "0.5");
        assert_eq!(cpu(2000), "2");
        assert_eq!(cpu(1250), "1.25");
    }

    #[test]
    fn tables_align_columns() {
        let t = table(
            &["ID", "STATUS"],
            &[
                vec!["a".into(), "pending".into()],
                vec!["long-id".into(), "x".into()],
            ],
        );
        assert_eq!(t, "ID       STATUS\na        pending\nlong-id  x");
    }
}
