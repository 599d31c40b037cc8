//! `--set PATH=VALUE`: template overrides from the command line, turned into the
//! GraphQL `TemplateOverrides` input. Every bad entry is reported (with its path and
//! what was expected) before anything is sent.

use std::collections::BTreeMap;

use dcloud_projections::config;
use serde_json::{json, Map, Value};

/// The paths `--set` accepts, for error messages.
pub(super) const PATHS: &str = "name, version, os, resources.ram, resources.cpu, \
    resources.gpu, resources.storage, languages.LANG, port-publish, storage, labels.KEY";

/// The template's current languages and labels, which `languages.LANG` and
/// `labels.KEY` edit one entry of.
#[derive(Debug, Default, Clone)]
pub(super) struct Base {
    pub(super) languages: Vec<(String, Vec<String>)>,
    pub(super) labels: BTreeMap<String, String>,
}

/// Whether any `sets` edits languages or labels (then the template is read first).
pub(super) fn needs_base(sets: &[String]) -> bool {
    sets.iter()
        .any(|s| s.starts_with("languages.") || s.starts_with("labels."))
}

/// The overrides for `sets` (and `--name`), or one line per problem.
pub(super) fn parse(
    name: Option<&str>,
    sets: &[String],
    base: &Base,
) -> Result<Value, Vec<String>> {
    let mut errors = Vec::new();
    let mut out = Map::new();
    let mut resources = Map::new();
    let mut languages = base.languages.clone();
    let mut languages_set = false;
    let mut labels = base.labels.clone();
    let mut labels_set = false;
    if let Some(n) = name {
        out.insert("name".into(), json!(n));
    }
    for item in sets {
        let Some((path, value)) = item.split_once('=') else {
            errors.push(format!(
                "--set {item:?}: expected PATH=VALUE, e.g. resources.gpu=1"
            ));
            continue;
        };
        let (path, value) = (path.trim(), value.trim());
        let mut bad = |what: &str| errors.push(format!("--set {path}={value:?}: {what}"));
        match path {
            "name" | "env-name" => {
                if value.is_empty() {
                    bad("expected a name");
                } else {
                    out.insert("name".into(), json!(value));
                }
            }
            "version" => {
                out.insert("versionLabel".into(), json!(value));
            }
            "os" => {
                if value.is_empty() {
                    bad("expected an os, e.g. ubuntu");
                } else {
                    out.insert("os".into(), json!(value));
                }
            }
            "resources.ram" | "resources.memory" => match config::parse_size(value) {
                Ok(_) => {
                    resources.insert("ram".into(), json!(value));
                }
                Err(_) => bad("is not a size; use 512M, 1G, 2.5G"),
            },
            "resources.cpu" => match config::parse_cpu_millis(value) {
                Ok(_) => {
                    resources.insert("cpu".into(), json!(value));
                }
                Err(_) => bad("is not a number of cores; use 0.5, 1.0, 2 or 500m"),
            },
            "resources.gpu" | "resources.gpus" => match value.parse::<u32>() {
                Ok(n) => {
                    resources.insert("gpu".into(), json!(n));
                }
                Err(_) => bad("is not a whole number of gpus; use 0, 1, 2"),
            },
            "resources.storage" => match config::parse_storage_gb(value) {
                Ok(_) => {
                    resources.insert("storage".into(), json!(value));
                }
                Err(_) => bad("is not a number of gigabytes; use 20 or 2.5"),
            },
            "port-publish" | "ports" => match ports(value) {
                Ok(list) => {
                    out.insert("ports".into(), Value::Array(list));
                }
                Err(e) => bad(&e),
            },
            "storage" => match storage(value) {
                Ok(list) => {
                    out.insert("storage".into(), Value::Array(list));
                }
                Err(e) => bad(&e),
            },
            p if p.starts_with("languages.") && p.len() > "languages.".len() => {
                let lang = &p["languages.".len()..];
                let libs: Vec<String> = value
                    .split(',')
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .map(str::to_string)
                    .collect();
                match languages.iter_mut().find(|(n, _)| n == lang) {
                    Some(entry) => entry.1 = libs,
                    None => languages.push((lang.to_string(), libs)),
                }
                languages_set = true;
            }
            p if p.starts_with("labels.") && p.len() > "labels.".len() => {
                labels.insert(p["labels.".len()..].to_string(), value.to_string());
                labels_set = true;
            }
            _ => errors.push(format!(
                "--set {path}: unknown field; expected one of {PATHS}"
            )),
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    if !resources.is_empty() {
        out.insert("resources".into(), Value::Object(resources));
    }
    if languages_set {
        let list = languages
            .into_iter()
            .map(|(name, libraries)| json!({"name": name, "libraries": libraries}))
            .collect();
        out.insert("languages".into(), Value::Array(list));
    }
    if labels_set {
        let list = labels
            .into_iter()
            .map(|(key, value)| json!({"key": key, "value": value}))
            .collect();
        out.insert("nodeLabels".into(), Value::Array(list));
    }
    Ok(Value::Object(out))
}

/// `EXT:INT[/tcp|udp],…`
fn ports(value: &str) -> Result<Vec<Value>, String> {
    let expected = "expected EXTERNAL:INTERNAL[/tcp|udp], comma-separated, e.g. 18888:8888/tcp";
    let mut list = Vec::new();
    for part in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (pair, proto) = match part.split_once('/') {
            Some((pair, proto)) => (pair, proto.to_ascii_lowercase()),
            None => (part, "tcp".to_string()),
        };
        let (ext, int) = pair.split_once(':').ok_or(expected)?;
        let port = |p: &str| p.trim().parse::<u16>().ok().filter(|p| *p > 0);
        let (Some(ext), Some(int)) = (port(ext), port(int)) else {
            return Err(expected.into());
        };
        if proto != "tcp" && proto != "udp" {
            return Err(expected.into());
        }
        list.push(json!({"external": ext, "internal": int, "protocol": proto.to_uppercase()}));
    }
    Ok(list)
}

/// `TARGET:SIZE[:temporary|persistent],…`
fn storage(value: &str) -> Result<Vec<Value>, String> {
    let expected =
        "expected TARGET:SIZE[:temporary|persistent], comma-separated, e.g. /work:1G:persistent";
    let mut list = Vec::new();
    for part in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let mut fields = part.split(':');
        let (Some(target), Some(size)) = (fields.next(), fields.next()) else {
            return Err(expected.into());
        };
        let lifecycle = fields.next().unwrap_or("temporary").to_ascii_lowercase();
        if !target.starts_with('/')
            || config::parse_size(size).is_err()
            || !matches!(lifecycle.as_str(), "temporary" | "persistent")
            || fields.next().is_some()
        {
            return Err(expected.into());
        }
        list.push(json!({
            "target": target,
            "size": size,
            "lifecycle": lifecycle.to_uppercase(),
        }));
    }
    Ok(list)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sets(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn sets_become_template_overrides() {
        let base = Base {
            languages: vec![("python".into(), vec!["numpy".into()])],
            labels: BTreeMap::new(),
        };
        let v = parse(
            Some("mine"),
            &sets(&[
                "resources.gpu=1",
                "resources.ram=2G",
                "languages.python=numpy,pandas",
                "port-publish=18888:8888",
                "labels.zone=a",
            ]),
            &base,
        )
        .expect("valid");
        assert_eq!(
            v,
            json!({
                "name": "mine",
                "resources": {"gpu": 1, "ram": "2G"},
                "languages": [{"name": "python", "libraries": ["numpy", "pandas"]}],
                "ports": [{"external": 18888, "internal": 8888, "protocol": "TCP"}],
                "nodeLabels": [{"key": "zone", "value": "a"}],
            })
        );
    }

    #[test]
    fn every_bad_set_names_its_field_and_what_was_expected() {
        let errors = parse(
            None,
            &sets(&[
                "resources.gpu=one",
                "resources.ram=1 GB",
                "colour=blue",
                "port-publish=80",
                "nothing",
            ]),
            &Base::default(),
        )
        .expect_err("invalid");
        assert_eq!(errors.len(), 5, "{errors:?}");
        assert!(errors[0].starts_with("--set resources.gpu=\"one\": is not a whole number"));
        assert!(errors[1].contains("resources.ram") && errors[1].contains("use 512M, 1G"));
        assert!(errors[2].contains("colour: unknown field; expected one of name,"));
        assert!(errors[3].contains("EXTERNAL:INTERNAL"));
        assert!(errors[4].contains("expected PATH=VALUE"));
    }
}
