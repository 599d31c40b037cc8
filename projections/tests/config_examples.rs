//! Every example document of the original system imports, reads as expected, and
//! exports back to the same JSON. Reads the copy in `tests/data/examples/`.

use std::path::{Path, PathBuf};

use dcloud_events::model::{Lifecycle, Protocol};
use dcloud_projections::config::{
    export_catalog, export_environment, export_service, export_template, parse_catalog,
    parse_document, parse_environment, parse_services, parse_template, Document, Format,
};
use serde_json::Value;

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/examples")
}

fn read(name: &str) -> String {
    let path = examples().join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn json(name: &str) -> Value {
    serde_json::from_str(&read(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

#[test]
fn every_example_imports() {
    let mut seen = 0;
    for entry in std::fs::read_dir(examples()).expect("examples folder") {
        let path = entry.expect("entry").path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_owned();
        if name.ends_with(".md") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("readable");
        let documents = parse_document(&text, Format::from_file_name(&name))
            .unwrap_or_else(|errors| panic!("{name}: {errors:?}"));
        assert!(!documents.is_empty(), "{name}");
        // Auto-detection agrees with the extension.
        assert_eq!(parse_document(&text, Format::Auto), Ok(documents), "{name}");
        seen += 1;
    }
    assert_eq!(seen, 5);
}

#[test]
fn the_copy_matches_the_shared_examples() {
    // CI keeps shared/ beside the repository; when it is there, the copy must not drift.
    let shared = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/examples");
    let Ok(entries) = std::fs::read_dir(&shared) else {
        return;
    };
    for entry in entries {
        let path = entry.expect("entry").path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_owned();
        let copy = std::fs::read(examples().join(&name)).unwrap_or_default();
        assert_eq!(
            std::fs::read(&path).ok(),
            Some(copy),
            "tests/data/examples/{name} differs"
        );
    }
}

#[test]
fn environment_json_reads_as_the_original_meant() {
    let spec = parse_environment(&read("environment.json"), Format::Json).expect("valid");
    assert_eq!(spec.name, "vision-train");
    assert_eq!(spec.version_label, "2");
    assert_eq!(spec.os, "ubuntu");
    assert_eq!(spec.languages[0].name, "python");
    assert_eq!(
        spec.languages[0].libraries,
        ["numpy", "pandas", "scikit-learn"]
    );
    assert_eq!(spec.resources.memory_bytes, 4 << 30);
    assert_eq!(spec.resources.cpu_millis, 2000);
    assert_eq!(spec.resources.gpus, 1);
    assert_eq!(spec.resources.storage_bytes, 20 << 30);
    let dataset = &spec.datasets[0];
    assert_eq!(
        (dataset.category.as_str(), dataset.dbs[0].name.as_str()),
        ("imaging", "coco")
    );
    assert_eq!(dataset.dbs[0].datasets[0].name, "train2017");
    assert_eq!(dataset.dbs[0].datasets[0].version, "3");
    let ports: Vec<_> = spec
        .ports
        .iter()
        .map(|p| (p.external, p.internal, p.protocol))
        .collect();
    assert_eq!(
        ports,
        [(8888, 8888, Protocol::Tcp), (6006, 6006, Protocol::Tcp)]
    );
    assert_eq!(spec.storage[0].target, "/scratch");
    assert_eq!(spec.storage[0].size_bytes, 2 << 30);
    assert_eq!(spec.storage[0].lifecycle, Lifecycle::Temporary);
    assert_eq!(spec.storage[1].lifecycle, Lifecycle::Persistent);
    assert!(spec.is_active);
    assert_eq!(spec.meta.oid.as_deref(), Some("65a1f0c2d4e5f60718293a4b"));
    assert_eq!(spec.meta.config_id, Some(7));
    assert_eq!(spec.meta.creation_time_ms, Some(1_705_051_800_000));
    assert_eq!(spec.meta.last_updation_time_ms, Some(1_705_248_312_500));
}

#[test]
fn environment_yaml_reads_as_written() {
    let spec = parse_environment(&read("environment.yaml"), Format::Yaml).expect("valid");
    assert_eq!(spec.name, "notebook-small");
    assert_eq!(spec.resources.memory_bytes, 512 << 20);
    assert_eq!(spec.resources.cpu_millis, 500);
    assert_eq!(spec.resources.gpus, 0);
    assert_eq!(spec.resources.storage_bytes, 2 << 30);
    assert_eq!(
        (spec.ports[0].external, spec.ports[0].internal),
        (18888, 8888)
    );
    assert_eq!(spec.meta.oid, None);
    assert!(spec.is_active, "is_active defaults to true");
}

#[test]
fn exports_reproduce_the_original_json() {
    let spec = parse_environment(&read("environment.json"), Format::Json).expect("valid");
    assert_eq!(export_environment(&spec), json("environment.json"));

    let catalog = parse_catalog(&read("library-catalog.json"), Format::Json).expect("valid");
    assert_eq!(export_catalog(&catalog), json("library-catalog.json"));

    let services = parse_services(&read("services.json"), Format::Json).expect("valid");
    let exported: Vec<Value> = services.iter().map(export_service).collect();
    assert_eq!(Value::Array(exported), json("services.json"));

    let template = parse_template(&read("template.json"), Format::Json).expect("valid");
    assert_eq!(export_template(&template), json("template.json"));
}

#[test]
fn the_template_example_is_env_shaped() {
    let text = read("template.json");
    // Without being told, it is an environment document …
    let documents = parse_document(&text, Format::Json).expect("valid");
    assert!(matches!(documents.as_slice(), [Document::Environment(_)]));
    // … and the caller who knows it is a template reads it as one.
    let template = parse_template(&text, Format::Json).expect("valid");
    assert_eq!(template.name, "pytorch-1gpu");
    assert_eq!(template.resources.memory_bytes, 8 << 30);
    assert_eq!(template.resources.storage_bytes, 50 << 30);
}

#[test]
fn services_example_has_both_forms() {
    let services = parse_services(&read("services.json"), Format::Json).expect("valid");
    assert_eq!(services.len(), 2);
    assert_eq!(services[0].name, "dfs-server");
    assert!(services[0].single);
    assert_eq!(services[0].endpoints[0].ip, "http://127.0.0.1");
    assert_eq!(services[0].endpoints[0].port, 8003);
    assert_eq!(services[1].name, "broker");
    assert!(!services[1].single);
    let ports: Vec<_> = services[1]
        .endpoints
        .iter()
        .map(|e| (e.ip.as_str(), e.port))
        .collect();
    assert_eq!(ports, [("127.0.0.1", 9092), ("127.0.0.2", 9092)]);
}

#[test]
fn catalog_example_lists_languages_and_libraries() {
    let catalog = parse_catalog(&read("library-catalog.json"), Format::Json).expect("valid");
    assert_eq!(catalog.os, "ubuntu");
    assert_eq!(catalog.base_image.as_deref(), Some("ubuntu:22.04"));
    assert_eq!(catalog.init_steps.len(), 2);
    let languages: Vec<&str> = catalog.specifications.keys().map(String::as_str).collect();
    assert_eq!(languages, ["golang", "node-js", "python"]);
    assert_eq!(
        catalog.specifications["python"].libraries["numpy"],
        ["pip install --upgrade numpy"]
    );
}
