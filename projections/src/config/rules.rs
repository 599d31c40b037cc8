//! The rules single values must follow, shared by the parsers and by the validators of
//! already-built values. Each returns what is wrong and what was expected.

use super::read::quote;

/// Names of environments, operating systems and services.
pub(crate) fn check_name(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("must not be empty".into());
    }
    let first_ok = s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric());
    let chars_ok = s
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if first_ok && chars_ok && s.len() <= 64 {
        Ok(())
    } else {
        Err(format!(
            "{} is not a valid name; use letters, digits, '-', '_' and '.', starting with a \
             letter or digit, at most 64 characters",
            quote(s)
        ))
    }
}

/// Names looked up in a catalog: languages and libraries (`scikit-learn`, `torch==2.1`).
pub(crate) fn check_word(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("must not be empty".into());
    }
    if s.len() > 128 || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "{} is not a valid name; use at most 128 characters without spaces",
            quote(s)
        ));
    }
    Ok(())
}

/// Free text that must be present: dataset names and versions, hosts.
pub(crate) fn check_text(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("must not be empty".into());
    }
    check_label(s)
}

/// Free text that may be empty: the document's own `version`.
pub(crate) fn check_label(s: &str) -> Result<(), String> {
    if s.len() > 256 || s.chars().any(char::is_control) {
        return Err(format!(
            "{} is not valid; use at most 256 characters on one line",
            quote(s)
        ));
    }
    Ok(())
}

/// One shell command of the library catalog: a single `RUN` line of the image recipe.
pub(crate) fn check_command(s: &str) -> Result<(), String> {
    if s.trim().is_empty() {
        return Err("must not be empty".into());
    }
    if s.contains(['\n', '\r']) {
        return Err("contains a line break; give each step as its own command".into());
    }
    if s.chars().any(|c| c.is_control() && c != '\t') {
        return Err("contains a control character".into());
    }
    if s.trim_end().ends_with('\\') {
        return Err("ends with '\\', which would join it to the next step".into());
    }
    Ok(())
}

/// A mount point inside the container.
pub(crate) fn check_target(s: &str) -> Result<(), String> {
    if !s.starts_with('/') {
        return Err(format!(
            "{} is not an absolute path; use a path such as /data",
            quote(s)
        ));
    }
    if s.split('/').any(|part| part == "..") {
        return Err(format!("{} must not contain '..'", quote(s)));
    }
    if s.split('/').all(str::is_empty) {
        return Err("the root directory cannot be a storage target".into());
    }
    if s.len() > 4096 || s.chars().any(char::is_control) {
        return Err(format!("{} is not a valid path", quote(s)));
    }
    Ok(())
}

/// A container image reference: `[registry[:port]/]name[:tag][@digest]`.
pub(crate) fn check_image(s: &str) -> Result<(), String> {
    if image_ok(s) {
        Ok(())
    } else {
        Err(format!(
            "{} is not an image reference; use a form such as ubuntu:22.04 or \
             registry.example.com/team/base:1.0",
            quote(s)
        ))
    }
}

fn image_ok(s: &str) -> bool {
    if s.is_empty() || s.len() > 512 {
        return false;
    }
    let (rest, digest) = match s.split_once('@') {
        Some((rest, digest)) => (rest, Some(digest)),
        None => (s, None),
    };
    if let Some(digest) = digest {
        let Some((algo, hex)) = digest.split_once(':') else {
            return false;
        };
        let algo_ok = !algo.is_empty() && algo.chars().all(|c| c.is_ascii_alphanumeric());
        if !algo_ok || hex.len() < 32 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
            return false;
        }
    }
    // A tag follows the last ':' only when no '/' comes after it (else it is a port).
    let (name, tag) = match rest.rfind(':') {
        Some(at) if !rest[at..].contains('/') => (&rest[..at], Some(&rest[at + 1..])),
        _ => (rest, None),
    };
    if let Some(tag) = tag {
        let tag_ok = (1..=128).contains(&tag.len())
            && tag
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
            && tag
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
        if !tag_ok {
            return false;
        }
    }
    let parts: Vec<&str> = name.split('/').collect();
    parts.iter().enumerate().all(|(i, part)| {
        let registry = i == 0 && parts.len() > 1 && looks_like_registry(part);
        if registry {
            part.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':'))
        } else {
            path_component_ok(part)
        }
    })
}

fn looks_like_registry(part: &str) -> bool {
    part.contains(['.', ':']) || part == "localhost" || part.chars().any(|c| c.is_ascii_uppercase())
}

/// `[a-z0-9]+(([._]|__|-+)[a-z0-9]+)*`, a little more lenient about separators.
fn path_component_ok(part: &str) -> bool {
    let bytes = part.as_bytes();
    let alnum = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    !bytes.is_empty()
        && bytes.first().is_some_and(alnum)
        && bytes.last().is_some_and(alnum)
        && bytes
            .iter()
            .all(|b| alnum(b) || matches!(b, b'.' | b'_' | b'-'))
}

/// A MongoDB object id: 24 hex digits.
pub(crate) fn check_oid(s: &str) -> Result<(), String> {
    if s.len() == 24 && s.chars().all(|c| c.is_ascii_hexdigit()) {
        Ok(())
    } else {
        Err(format!(
            "{} is not an object id; expected 24 hex digits",
            quote(s)
        ))
    }
}

/// A node label name (`gpu-model`, `dcloud.io/zone`).
pub(crate) fn check_label_key(s: &str) -> Result<(), String> {
    let first_ok = s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric());
    let chars_ok = s
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'));
    if first_ok && chars_ok && s.len() <= 128 {
        Ok(())
    } else {
        Err(format!(
            "{} is not a valid label name; use letters, digits, '-', '_', '.' and '/', \
             starting with a letter or digit",
            quote(s)
        ))
    }
}

/// A node label value: may be empty.
pub(crate) fn check_label_value(s: &str) -> Result<(), String> {
    if s.len() <= 128
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        Ok(())
    } else {
        Err(format!(
            "{} is not a valid label value; use letters, digits, '-', '_' and '.'",
            quote(s)
        ))
    }
}

/// A service host: an address or name, optionally with a scheme (`http://127.0.0.1`).
pub(crate) fn check_host(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("must not be empty".into());
    }
    if s.len() > 256 || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("{} is not a valid address", quote(s)));
    }
    Ok(())
}

/// A port number: 1–65535.
pub(crate) fn check_port(port: u16) -> Result<(), String> {
    if port == 0 {
        Err("0 is not a port; use a number from 1 to 65535".into())
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_references() {
        for good in [
            "ubuntu",
            "ubuntu:22.04",
            "nvidia/cuda:12.2.0-runtime-ubuntu22.04",
            "registry.example.com:5000/team/base:1.0",
            "localhost/base",
            "python@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        ] {
            assert_eq!(check_image(good), Ok(()), "{good}");
        }
        for bad in [
            "",
            "Ubuntu",
            "ubuntu 22.04",
            "ubuntu:",
            "ubuntu:22.04\nRUN x",
            "a//b",
            "-x",
            "x@sha256:zz",
        ] {
            assert!(check_image(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn targets() {
        assert_eq!(check_target("/data/x"), Ok(()));
        assert!(check_target("data").is_err());
        assert!(check_target("/data/../etc").is_err());
        assert!(check_target("/").is_err());
        assert!(check_target("//").is_err());
    }

    #[test]
    fn commands() {
        assert_eq!(check_command("pip install numpy"), Ok(()));
        assert!(check_command("a\nb").is_err());
        assert!(check_command("a \\").is_err());
        assert!(check_command("  ").is_err());
        assert_eq!(check_command("printf 'a\tb'"), Ok(()));
    }
}
