//! Environments (create, update with optimistic versioning, deactivate, delete) and
//! templates (save, delete, create an environment from one with overrides).

use dcloud_events::model::EnvironmentSpec;
use dcloud_events::Event;

use super::sessions::check_idle_timeout;
use super::{admin_only, not_found, owner_or_admin, user_or_admin, Scratch};
use crate::command::SpecOverrides;
use crate::error::DomainError;

/// Every catalog reference (os, languages, libraries, datasets) must be known.
fn check_references(s: &Scratch<'_>, spec: &EnvironmentSpec) -> Result<(), DomainError> {
    let datasets = &s.state.datasets;
    let known = |c: &str, db: &str, d: &str, v: &str| datasets.contains(c, db, d, v);
    let errors = crate::config::check_references(spec, &s.state.catalogs, &known);
    if errors.is_empty() {
        Ok(())
    } else {
        Err(DomainError::Validation(errors))
    }
}

fn fresh_env_id(s: &Scratch<'_>, env_id: &str) -> Result<(), DomainError> {
    if env_id.is_empty() {
        return Err(DomainError::Invalid(
            "an environment id must not be empty".into(),
        ));
    }
    if s.state.environments.contains_key(env_id) {
        return Err(DomainError::AlreadyExists {
            kind: "environment",
            id: env_id.to_string(),
        });
    }
    Ok(())
}

pub(super) fn create(
    s: &mut Scratch<'_>,
    env_id: &str,
    spec: &EnvironmentSpec,
) -> Result<(), DomainError> {
    user_or_admin(s.ctx, "creating an environment")?;
    fresh_env_id(s, env_id)?;
    check_references(s, spec)?;
    let owner = s.ctx.actor.name.clone();
    s.emit(Event::EnvironmentCreated {
        env_id: env_id.to_string(),
        owner,
        spec: spec.clone(),
    });
    Ok(())
}

pub(super) fn update(
    s: &mut Scratch<'_>,
    env_id: &str,
    expected_version: u64,
    spec: &EnvironmentSpec,
) -> Result<(), DomainError> {
    let env = s
        .state
        .environment(env_id)
        .ok_or_else(|| not_found("environment", env_id))?;
    owner_or_admin(s.ctx, &env.owner, &format!("environment {env_id}"))?;
    let actual = env.version();
    if u64::from(actual) != expected_version {
        return Err(DomainError::Conflict {
            expected: expected_version,
            actual: u64::from(actual),
        });
    }
    check_references(s, spec)?;
    s.emit(Event::EnvironmentUpdated {
        env_id: env_id.to_string(),
        version: actual + 1,
        spec: spec.clone(),
    });
    Ok(())
}

/// Running deployments go on; new ones are refused. Deactivating twice is a no-op.
pub(super) fn deactivate(s: &mut Scratch<'_>, env_id: &str) -> Result<(), DomainError> {
    let env = s
        .state
        .environment(env_id)
        .ok_or_else(|| not_found("environment", env_id))?;
    owner_or_admin(s.ctx, &env.owner, &format!("environment {env_id}"))?;
    if env.active {
        s.emit(Event::EnvironmentDeactivated {
            env_id: env_id.to_string(),
        });
    }
    Ok(())
}

/// Refused while any deployment of the environment is live (pending, placed, running
/// or stopping): stop them first. Its versions stay in the state for history.
pub(super) fn delete(s: &mut Scratch<'_>, env_id: &str) -> Result<(), DomainError> {
    let env = s
        .state
        .environment(env_id)
        .ok_or_else(|| not_found("environment", env_id))?;
    owner_or_admin(s.ctx, &env.owner, &format!("environment {env_id}"))?;
    let live = s
        .state
        .deployments
        .values()
        .filter(|d| d.env_id == env_id && d.status.is_live())
        .count();
    if live > 0 {
        return Err(DomainError::Invalid(format!(
            "environment {env_id} has {live} live deployment(s); stop them first"
        )));
    }
    s.emit(Event::EnvironmentDeleted {
        env_id: env_id.to_string(),
    });
    Ok(())
}

/// Templates are admin-curated; saving an existing name replaces it.
pub(super) fn save_template(
    s: &mut Scratch<'_>,
    name: &str,
    spec: &EnvironmentSpec,
    idle_timeout_ms: Option<u64>,
) -> Result<(), DomainError> {
    admin_only(s.ctx, "saving a template")?;
    if name.is_empty() {
        return Err(DomainError::Invalid(
            "a template name must not be empty".into(),
        ));
    }
    check_references(s, spec)?;
    if let Some(ms) = idle_timeout_ms {
        check_idle_timeout(ms)?;
    }
    let owner = s.ctx.actor.name.clone();
    s.emit(Event::TemplateSaved {
        name: name.to_string(),
        owner,
        spec: spec.clone(),
    });
    // A save replaces the whole template: no field, no timeout (the fold resets it).
    if let Some(timeout_ms) = idle_timeout_ms.filter(|ms| *ms > 0) {
        s.emit(Event::TemplateIdleTimeoutSet {
            name: name.to_string(),
            timeout_ms,
        });
    }
    Ok(())
}

pub(super) fn delete_template(s: &mut Scratch<'_>, name: &str) -> Result<(), DomainError> {
    admin_only(s.ctx, "deleting a template")?;
    if !s.state.templates.contains_key(name) {
        return Err(not_found("template", name));
    }
    s.emit(Event::TemplateDeleted {
        name: name.to_string(),
    });
    Ok(())
}

/// A new environment, owned by the caller, from a template's spec with `overrides`.
pub(super) fn create_from_template(
    s: &mut Scratch<'_>,
    env_id: &str,
    template: &str,
    overrides: &SpecOverrides,
) -> Result<(), DomainError> {
    user_or_admin(s.ctx, "creating an environment")?;
    let tpl = s
        .state
        .templates
        .get(template)
        .ok_or_else(|| not_found("template", template))?;
    fresh_env_id(s, env_id)?;
    let spec = overrides.apply_to(&tpl.spec);
    check_references(s, &spec)?;
    let owner = s.ctx.actor.name.clone();
    let idle_timeout_ms = tpl.idle_timeout_ms;
    s.emit(Event::EnvironmentCreated {
        env_id: env_id.to_string(),
        owner,
        spec,
    });
    if idle_timeout_ms > 0 {
        // The template's timeout, for the environment's first version.
        s.emit(Event::EnvironmentIdleTimeoutSet {
            env_id: env_id.to_string(),
            version: 1,
            timeout_ms: idle_timeout_ms,
        });
    }
    Ok(())
}
