//! The image recipe of an environment: base image of its os, the catalog's init steps,
//! then for each language (sorted) its installation steps and each of its libraries'
//! (sorted) commands. The content hash names the image, so environments that need the
//! same software share one build whatever order they list it in.

use std::collections::BTreeMap;

use dcloud_events::model::{EnvironmentSpec, LibraryCatalog};

use super::read::{field_path, item_path, quote, Errors};
use super::references::not_in;
use super::rules::{check_command, check_image};
use crate::error::FieldError;

/// Prefix of the hashed text; bump it if the recipe's meaning ever changes.
const RECIPE_VERSION: &str = "dcloud-recipe-v1";

/// What to build for an environment, and the name of the image it makes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipe {
    pub base_image: String,
    /// Shell commands in build order, one `RUN` each.
    pub steps: Vec<String>,
    /// `FROM <base_image>` then one `RUN <step>` line per step.
    pub dockerfile: String,
    /// Hex blake3 of the base image and the steps (not of the resources).
    pub hash: String,
    /// `dcloud-env:<first 16 hex digits of hash>`.
    pub tag: String,
}

/// Base images for catalogs that name none (`ubuntu` → `ubuntu:22.04`).
pub fn default_base_images() -> BTreeMap<String, String> {
    BTreeMap::from([("ubuntu".to_owned(), "ubuntu:22.04".to_owned())])
}

/// The recipe for `spec` from the catalog of its os, found in `catalogs` (keyed by os).
pub fn recipe_for(
    spec: &EnvironmentSpec,
    catalogs: &BTreeMap<String, LibraryCatalog>,
    default_base_images: &BTreeMap<String, String>,
) -> Result<Recipe, Vec<FieldError>> {
    match catalogs.get(&spec.os) {
        Some(catalog) => recipe(spec, catalog, default_base_images),
        None => {
            let known: Vec<&str> = catalogs.keys().map(String::as_str).collect();
            Err(vec![FieldError::new(
                "os",
                not_in(&spec.os, "the library catalog", &known),
            )])
        }
    }
}

/// The recipe for `spec` from `catalog`, which must be the catalog of `spec.os`. Errors
/// name the environment's fields for unknown names (`languages[0].libraries[2]`) and the
/// catalog's fields for bad commands (`specifications.python.libraries.numpy[0]`).
pub fn recipe(
    spec: &EnvironmentSpec,
    catalog: &LibraryCatalog,
    default_base_images: &BTreeMap<String, String>,
) -> Result<Recipe, Vec<FieldError>> {
    let mut errors = Errors::default();
    if catalog.os != spec.os {
        let message = format!(
            "{} does not match the catalog's os {}",
            quote(&spec.os),
            quote(&catalog.os)
        );
        errors.push("os", message);
        return Err(errors.into_vec());
    }
    let base_image = catalog
        .base_image
        .as_ref()
        .or_else(|| default_base_images.get(&spec.os));
    let base_image = match base_image {
        Some(image) => {
            errors.check("base-image", check_image(image));
            image.clone()
        }
        None => {
            let message = format!(
                "no base image for {}: the catalog names none and there is no default for it",
                quote(&spec.os)
            );
            errors.push("os", message);
            String::new()
        }
    };
    let mut steps = Vec::new();
    add_steps(&mut errors, &mut steps, "init-steps", &catalog.init_steps);
    for (i, libraries) in wanted(spec) {
        let name = &spec.languages[i].name;
        let Some(available) = catalog.specifications.get(name) else {
            let known: Vec<&str> = catalog.specifications.keys().map(String::as_str).collect();
            let path = field_path(&item_path("languages", i), "language-name");
            errors.push(
                &path,
                not_in(name, &format!("the catalog for {}", spec.os), &known),
            );
            continue;
        };
        let spec_path = field_path("specifications", name);
        add_steps(
            &mut errors,
            &mut steps,
            &field_path(&spec_path, "installation-steps"),
            &available.installation_steps,
        );
        for (library, (i, j)) in libraries {
            let Some(commands) = available.libraries.get(library) else {
                let known: Vec<&str> = available.libraries.keys().map(String::as_str).collect();
                let place = format!("the catalog for {name} on {}", spec.os);
                let path = item_path(&field_path(&item_path("languages", i), "libraries"), j);
                errors.push(&path, not_in(library, &place, &known));
                continue;
            };
            let lib_path = field_path(&field_path(&spec_path, "libraries"), library);
            add_steps(&mut errors, &mut steps, &lib_path, commands);
        }
    }
    errors.finish(Some(()))?;
    Ok(build(base_image, steps))
}

/// Languages sorted by name, as (index of the first entry naming it, its libraries);
/// libraries sorted and deduplicated (merged across repeated entries of one language),
/// each with (language index, library index) of where it first appears.
type Wanted<'a> = BTreeMap<&'a str, (usize, BTreeMap<&'a str, (usize, usize)>)>;

fn wanted(spec: &EnvironmentSpec) -> impl Iterator<Item = (usize, BTreeMap<&str, (usize, usize)>)> {
    let mut wanted: Wanted<'_> = BTreeMap::new();
    for (i, language) in spec.languages.iter().enumerate() {
        let entry = wanted
            .entry(language.name.as_str())
            .or_insert((i, BTreeMap::new()));
        for (j, library) in language.libraries.iter().enumerate() {
            entry.1.entry(library.as_str()).or_insert((i, j));
        }
    }
    wanted.into_values()
}

fn add_steps(errors: &mut Errors, steps: &mut Vec<String>, path: &str, commands: &[String]) {
    for (i, command) in commands.iter().enumerate() {
        let before = errors.len();
        errors.check(&item_path(path, i), check_command(command));
        if errors.len() == before {
            steps.push(command.clone());
        }
    }
}

/// The Dockerfile and its hash; `base_image` and `steps` hold no line breaks.
fn build(base_image: String, steps: Vec<String>) -> Recipe {
    let mut dockerfile = format!("FROM {base_image}\n");
    for step in &steps {
        dockerfile.push_str("RUN ");
        dockerfile.push_str(step);
        dockerfile.push('\n');
    }
    let mut hasher = blake3::Hasher::new();
    hasher.update(RECIPE_VERSION.as_bytes());
    hasher.update(b"\n");
    hasher.update(dockerfile.as_bytes());
    let hash = hasher.finalize().to_hex().to_string();
    let tag = format!("dcloud-env:{}", &hash[..16]);
    Recipe {
        base_image,
        steps,
        dockerfile,
        hash,
        tag,
    }
}
