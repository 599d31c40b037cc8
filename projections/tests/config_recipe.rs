//! The image recipe (order-independent hash, default base image, errors) and the
//! state-dependent reference checks.

use std::collections::BTreeMap;

use dcloud_events::model::{EnvironmentSpec, LibraryCatalog};
use dcloud_projections::config::{
    check_references, dataset_catalog_contains, default_base_images, parse_catalog,
    parse_dataset_category, parse_environment, recipe, recipe_for, Format,
};
use dcloud_projections::FieldError;

fn catalog() -> LibraryCatalog {
    let text = include_str!("data/examples/library-catalog.json");
    parse_catalog(text, Format::Json).expect("example catalog")
}

fn spec(languages: &str) -> EnvironmentSpec {
    let text = format!(
        r#"{{"env-name": "e", "os": "ubuntu", "languages": {languages},
            "resources": {{"ram": "1G", "cpu": "1"}}}}"#
    );
    parse_environment(&text, Format::Json).expect("valid spec")
}

fn lines(errors: Vec<FieldError>) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_recipe_lists_base_init_languages_and_libraries_in_order() {
    let spec = spec(r#"[{"language-name": "python", "libraries": ["pandas", "numpy"]}]"#);
    let recipe = recipe(&spec, &catalog(), &default_base_images()).expect("recipe");
    assert_eq!(recipe.base_image, "ubuntu:22.04");
    let expected = "\
FROM ubuntu:22.04
RUN apt-get -y update
RUN apt-get install -y git
RUN apt-get install -y python3
RUN apt-get install -y python3-pip
RUN pip install --upgrade numpy
RUN pip install --upgrade pandas
";
    assert_eq!(recipe.dockerfile, expected);
    assert_eq!(recipe.steps.len(), 6);
    assert_eq!(recipe.hash.len(), 64);
    assert!(recipe.hash.chars().all(|c| c.is_ascii_hexdigit()));
    assert_eq!(recipe.tag, format!("dcloud-env:{}", &recipe.hash[..16]));
}

#[test]
fn order_and_repetition_do_not_change_the_hash() {
    let defaults = default_base_images();
    let a = spec(
        r#"[{"language-name": "python", "libraries": ["numpy", "pandas"]},
                     {"language-name": "node-js", "libraries": ["express"]}]"#,
    );
    let b = spec(
        r#"[{"language-name": "node-js", "libraries": ["express"]},
                     {"language-name": "python", "libraries": ["pandas"]},
                     {"language-name": "python", "libraries": ["numpy", "pandas"]}]"#,
    );
    let (ra, rb) = (
        recipe(&a, &catalog(), &defaults),
        recipe(&b, &catalog(), &defaults),
    );
    assert_eq!(ra.as_ref().map(|r| &r.hash), rb.as_ref().map(|r| &r.hash));
    assert_eq!(ra, rb);
}

#[test]
fn resources_do_not_change_the_hash() {
    let defaults = default_base_images();
    let small = spec(r#"[{"language-name": "python", "libraries": ["numpy"]}]"#);
    let mut big = small.clone();
    big.resources.memory_bytes *= 64;
    big.resources.gpus = 4;
    big.name = "other".into();
    let hash = |s: &EnvironmentSpec| recipe(s, &catalog(), &defaults).map(|r| r.hash);
    assert_eq!(hash(&small), hash(&big));
}

#[test]
fn different_software_or_base_changes_the_hash() {
    let defaults = default_base_images();
    let hash = |s: &EnvironmentSpec, c: &LibraryCatalog| {
        recipe(s, c, &defaults).map(|r| r.hash).expect("recipe")
    };
    let numpy = spec(r#"[{"language-name": "python", "libraries": ["numpy"]}]"#);
    let pandas = spec(r#"[{"language-name": "python", "libraries": ["pandas"]}]"#);
    let bare = spec(r#"[{"language-name": "python"}]"#);
    let both = spec(r#"[{"language-name": "python", "libraries": ["numpy", "pandas"]}]"#);
    let hashes = [
        hash(&numpy, &catalog()),
        hash(&pandas, &catalog()),
        hash(&bare, &catalog()),
        hash(&both, &catalog()),
    ];
    for i in 0..hashes.len() {
        for j in i + 1..hashes.len() {
            assert_ne!(hashes[i], hashes[j], "{i} vs {j}");
        }
    }
    let mut other_base = catalog();
    other_base.base_image = Some("ubuntu:24.04".into());
    assert_ne!(hash(&numpy, &other_base), hashes[0]);
    let mut other_command = catalog();
    other_command
        .specifications
        .get_mut("python")
        .expect("python")
        .libraries
        .insert("numpy".into(), vec!["pip install numpy==1.26".into()]);
    assert_ne!(hash(&numpy, &other_command), hashes[0]);
}

#[test]
fn an_os_without_base_image_uses_the_default_map() {
    let mut catalog = catalog();
    catalog.base_image = None;
    let spec = spec("[]");
    let recipe_default = recipe(&spec, &catalog, &default_base_images()).expect("recipe");
    assert_eq!(recipe_default.base_image, "ubuntu:22.04");
    assert!(recipe_default.dockerfile.starts_with("FROM ubuntu:22.04\n"));
    let custom = BTreeMap::from([(
        "ubuntu".to_owned(),
        "registry.local/ubuntu:22.04".to_owned(),
    )]);
    assert_eq!(
        recipe(&spec, &catalog, &custom).map(|r| r.base_image),
        Ok("registry.local/ubuntu:22.04".to_owned())
    );
    let err = recipe(&spec, &catalog, &BTreeMap::new())
        .map(|r| r.hash)
        .map_err(lines);
    assert_eq!(
        err,
        Err(r#"os: no base image for "ubuntu": the catalog names none and there is no default for it"#.to_owned())
    );
}

#[test]
fn an_os_missing_from_the_catalog_errors() {
    let mut debian = spec("[]");
    debian.os = "debian".into();
    let catalogs = BTreeMap::from([("ubuntu".to_owned(), catalog())]);
    let err = recipe_for(&debian, &catalogs, &default_base_images()).map_err(lines);
    assert_eq!(
        err.map(|r| r.hash),
        Err(r#"os: "debian" is not in the library catalog; known: "ubuntu""#.to_owned())
    );
    let err = recipe(&debian, &catalog(), &default_base_images()).map_err(lines);
    assert_eq!(
        err.map(|r| r.hash),
        Err(r#"os: "debian" does not match the catalog's os "ubuntu""#.to_owned())
    );
    let ubuntu = spec("[]");
    assert!(recipe_for(&ubuntu, &catalogs, &default_base_images()).is_ok());
}

#[test]
fn unknown_names_and_bad_commands_are_all_reported() {
    let mut catalog = catalog();
    catalog.init_steps.push("echo one\necho two".into());
    let spec = spec(
        r#"[{"language-name": "python", "libraries": ["numpy", "torch", "pandsa"]},
                        {"language-name": "rust"}]"#,
    );
    let err = recipe(&spec, &catalog, &default_base_images())
        .map(|r| r.hash)
        .map_err(lines);
    let expected = r#"init-steps[2]: contains a line break; give each step as its own command
languages[0].libraries[2]: "pandsa" is not in the catalog for python on ubuntu; did you mean "pandas"?
languages[0].libraries[1]: "torch" is not in the catalog for python on ubuntu; known: "jupyter-notebook", "numpy", "pandas", "scikit-learn"
languages[1].language-name: "rust" is not in the catalog for ubuntu; known: "golang", "node-js", "python""#;
    assert_eq!(err, Err(expected.to_owned()));
}

#[test]
fn references_are_checked_against_the_catalogs() {
    let catalogs = BTreeMap::from([("ubuntu".to_owned(), catalog())]);
    let datasets = parse_dataset_category(
        r#"{"category-name": "imaging", "db": [{"db-name": "coco", "dataset": [{"dataset-name": "train2017", "version": "3"}]}]}"#,
        Format::Json,
    )
    .expect("dataset entry");
    let known = |c: &str, d: &str, n: &str, v: &str| {
        dataset_catalog_contains(std::slice::from_ref(&datasets), c, d, n, v)
    };

    let good = parse_environment(include_str!("data/examples/environment.json"), Format::Json)
        .expect("example");
    assert_eq!(check_references(&good, &catalogs, &known), vec![]);

    let mut bad = good.clone();
    bad.languages[0].libraries.push("numpyy".into());
    bad.languages.push(dcloud_events::model::LanguageSpec {
        name: "pyhton".into(),
        libraries: vec![],
    });
    bad.datasets[0].dbs[0].datasets[0].version = "4".into();
    let expected = r#"languages[0].libraries[3]: "numpyy" is not in the catalog for python on ubuntu; did you mean "numpy"?
languages[1].language-name: "pyhton" is not in the catalog for ubuntu; did you mean "python"?
dataset[0].db[0].dataset[0]: imaging/coco/train2017 version "4" is not in the dataset catalog"#;
    assert_eq!(lines(check_references(&bad, &catalogs, &known)), expected);

    let mut other_os = good.clone();
    other_os.os = "ubuntoo".into();
    assert_eq!(
        lines(check_references(&other_os, &catalogs, &known)),
        r#"os: "ubuntoo" is not in the library catalog; did you mean "ubuntu"?"#
    );
    assert_eq!(
        lines(check_references(&good, &BTreeMap::new(), &|_, _, _, _| {
            true
        })),
        r#"os: "ubuntu" is not in the library catalog, which is empty"#
    );
}
