//! Quantities as users write them: sizes (`512M`, `2.5G`), CPU (`"1.5"`, `500m`),
//! GPU counts, storage in GB, durations; and their canonical spelling for export.
//!
//! Units are binary: `K` = 1024 bytes, `M` = 1024², `G` = 1024³, `T` = 1024⁴, whatever
//! the spelling (`g`, `Gi`, `GB`, `GiB`); `B` is bytes.

const KIB: u64 = 1 << 10;
const GIB: u64 = 1 << 30;

/// The units a size may carry, largest first (export picks the first exact one).
const UNITS: [(&str, u64); 5] = [
    ("T", 1 << 40),
    ("G", GIB),
    ("M", 1 << 20),
    ("K", KIB),
    ("B", 1),
];

/// Why a quantity could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuantityError {
    /// Not written in a form this field accepts.
    Malformed,
    /// Finer than the field can hold (a fraction of a millicore).
    TooFine,
    /// Does not fit in 64 bits.
    TooLarge,
}

/// A decimal `int[.frac]` as (value × 10^scale, scale), `None` unless plain digits.
fn decimal(s: &str) -> Option<(u128, u32)> {
    let (int, frac) = match s.split_once('.') {
        Some((int, frac)) => (int, frac),
        None => (s, ""),
    };
    let digits = |d: &str| d.bytes().all(|b| b.is_ascii_digit());
    if int.is_empty() || !digits(int) || !digits(frac) || (s.contains('.') && frac.is_empty()) {
        return None;
    }
    if int.len() > 24 || frac.len() > 12 {
        return None;
    }
    let scale = u32::try_from(frac.len()).ok()?;
    let joined = format!("{int}{frac}");
    Some((joined.parse::<u128>().ok()?, scale))
}

/// `value × 10^-scale × unit`, rounded down to whole units of the result.
fn scaled(value: u128, scale: u32, unit: u64) -> Result<u64, QuantityError> {
    let total = value
        .checked_mul(u128::from(unit))
        .ok_or(QuantityError::TooLarge)?;
    u64::try_from(total / 10u128.pow(scale)).map_err(|_| QuantityError::TooLarge)
}

/// A size with a unit, to bytes: `512M`, `1G`, `2.5G`, `100K`, `1T`, `1g`, `1Gi`,
/// `1GB`, `4096B`. Surrounding spaces are ignored; a space inside is not.
pub fn parse_size(text: &str) -> Result<u64, QuantityError> {
    let s = text.trim();
    let split = s
        .find(|c: char| c.is_ascii_alphabetic())
        .ok_or(QuantityError::Malformed)?;
    let (number, unit) = s.split_at(split);
    let (value, scale) = decimal(number).ok_or(QuantityError::Malformed)?;
    scaled(
        value,
        scale,
        unit_bytes(unit).ok_or(QuantityError::Malformed)?,
    )
}

fn unit_bytes(unit: &str) -> Option<u64> {
    let upper = unit.to_ascii_uppercase();
    if upper == "B" {
        return Some(1);
    }
    let base = upper.strip_suffix('B').unwrap_or(&upper);
    let base = base.strip_suffix('I').unwrap_or(base);
    UNITS
        .iter()
        .find(|(name, _)| *name == base && *name != "B")
        .map(|(_, bytes)| *bytes)
}

/// The canonical spelling of a size: the largest unit that holds it exactly (`4G`,
/// `2560M`, `1000B`). [`parse_size`] reads it back to the same number.
pub fn format_size(bytes: u64) -> String {
    let (name, unit) = UNITS
        .iter()
        .find(|(_, unit)| bytes.is_multiple_of(*unit) && bytes != 0)
        .copied()
        .unwrap_or(("B", 1));
    format!("{}{name}", bytes / unit)
}

/// Storage as the original wrote it: a bare number is GB (`20`, `"2.5"`); a size with a
/// unit is also accepted.
pub fn parse_storage_gb(text: &str) -> Result<u64, QuantityError> {
    let s = text.trim();
    match decimal(s) {
        Some((value, scale)) => scaled(value, scale, GIB),
        None => parse_size(s),
    }
}

/// CPU to millicores: `2`, `"2.0"`, `"0.5"`, `"0.001"`, or Kubernetes style `500m`.
pub fn parse_cpu_millis(text: &str) -> Result<u64, QuantityError> {
    let s = text.trim();
    if let Some(millis) = s.strip_suffix('m') {
        let (value, scale) = decimal(millis).ok_or(QuantityError::Malformed)?;
        if value % 10u128.pow(scale) != 0 {
            return Err(QuantityError::TooFine);
        }
        return scaled(value, scale, 1);
    }
    let (value, scale) = decimal(s).ok_or(QuantityError::Malformed)?;
    let thousandths = value.checked_mul(1000).ok_or(QuantityError::TooLarge)?;
    if thousandths % 10u128.pow(scale) != 0 {
        return Err(QuantityError::TooFine);
    }
    scaled(value, scale, 1000)
}

/// CPU as the original wrote it: `"2.0"`, `"1.5"`, `"0.25"`, `"0.001"`.
pub fn format_cpu(millis: u64) -> String {
    let (whole, frac) = (millis / 1000, millis % 1000);
    if frac == 0 {
        return format!("{whole}.0");
    }
    let digits = format!("{frac:03}");
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

/// A GPU count: a whole number ≥ 0 (`1`, `"1"`).
pub fn parse_gpus(text: &str) -> Result<u32, QuantityError> {
    let s = text.trim();
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(QuantityError::Malformed);
    }
    s.parse::<u32>().map_err(|_| QuantityError::TooLarge)
}

/// A duration to milliseconds: a bare number is seconds; or `500ms`, `30s`, `5m`, `1h`.
pub fn parse_duration_ms(text: &str) -> Result<u64, QuantityError> {
    let s = text.trim();
    let split = s.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let unit_ms: u64 = match unit {
        "ms" => 1,
        "" | "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => return Err(QuantityError::Malformed),
    };
    let (value, scale) = decimal(number).ok_or(QuantityError::Malformed)?;
    scaled(value, scale, unit_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_in_every_spelling() {
        let g = 1u64 << 30;
        for (text, bytes) in [
            ("512M", 512 << 20),
            ("1G", g),
            ("1g", g),
            ("1Gi", g),
            ("1GiB", g),
            ("1gb", g),
            ("2.5G", 5 * g / 2),
            ("100K", 100 * 1024),
            ("1T", 1 << 40),
            ("4096B", 4096),
            (" 1G ", g),
        ] {
            assert_eq!(parse_size(text), Ok(bytes), "{text}");
        }
        for bad in [
            "1 GB", "1", "G", "1.G", ".5G", "1X", "1GG", "-1G", "1e3G", "1ⅯG",
        ] {
            assert_eq!(parse_size(bad), Err(QuantityError::Malformed), "{bad}");
        }
        assert_eq!(parse_size("99999999T"), Err(QuantityError::TooLarge));
    }

    #[test]
    fn sizes_format_exactly() {
        assert_eq!(format_size(4 << 30), "4G");
        assert_eq!(format_size(5 << 29), "2560M");
        assert_eq!(format_size(1000), "1000B");
        assert_eq!(format_size(0), "0B");
        for bytes in [1, 1023, 1024, 3 << 40, u64::MAX, u64::MAX - 1023] {
            assert_eq!(parse_size(&format_size(bytes)), Ok(bytes), "{bytes}");
        }
    }

    #[test]
    fn storage_is_gb_when_bare() {
        assert_eq!(parse_storage_gb("20"), Ok(20 << 30));
        assert_eq!(parse_storage_gb("2.5"), Ok(5 << 29));
        assert_eq!(parse_storage_gb("512M"), Ok(512 << 20));
        assert_eq!(parse_storage_gb("lots"), Err(QuantityError::Malformed));
    }

    #[test]
    fn cpu_to_millicores() {
        for (text, millis) in [
            ("1.0", 1000),
            ("2", 2000),
            ("0.5", 500),
            ("0.001", 1),
            ("500m", 500),
            ("1.5000", 1500),
        ] {
            assert_eq!(parse_cpu_millis(text), Ok(millis), "{text}");
        }
        assert_eq!(parse_cpu_millis("0.0001"), Err(QuantityError::TooFine));
        assert_eq!(parse_cpu_millis("0.5m"), Err(QuantityError::TooFine));
        assert_eq!(parse_cpu_millis("two"), Err(QuantityError::Malformed));
        assert_eq!(parse_cpu_millis("-1"), Err(QuantityError::Malformed));
        for millis in [1, 10, 999, 1000, 1500, 1250, 64_000] {
            assert_eq!(parse_cpu_millis(&format_cpu(millis)), Ok(millis));
        }
        assert_eq!(format_cpu(2000), "2.0");
        assert_eq!(format_cpu(1250), "1.25");
    }

    #[test]
    fn gpus_and_durations() {
        assert_eq!(parse_gpus("1"), Ok(1));
        assert_eq!(parse_gpus("1.5"), Err(QuantityError::Malformed));
        assert_eq!(parse_gpus("-1"), Err(QuantityError::Malformed));
        assert_eq!(parse_duration_ms("30"), Ok(30_000));
        assert_eq!(parse_duration_ms("500ms"), Ok(500));
        assert_eq!(parse_duration_ms("1.5m"), Ok(90_000));
        assert_eq!(parse_duration_ms("1d"), Err(QuantityError::Malformed));
    }
}
