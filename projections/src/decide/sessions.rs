//! Logs, exec sessions and idleness: who may open a deployment's logs (owner, admin,
//! auditor) or a shell in it (owner, admin; running only), the end of a session, an
//! environment's idle timeout, and the stop of a deployment found idle.

use dcloud_events::model::Role;
use dcloud_events::Event;

use super::{admin_only, forbidden, not_found, owner_or_admin, Scratch};
use crate::error::{DomainError, FieldError};
use crate::state::DeploymentStatus as S;

/// The longest idle timeout accepted: 30 days.
pub(super) const MAX_IDLE_TIMEOUT_MS: u64 = 30 * 24 * 3600 * 1000;
/// The shortest idle timeout accepted: one minute.
pub(super) const MIN_IDLE_TIMEOUT_MS: u64 = 60 * 1000;

pub(super) fn open_logs(s: &mut Scratch<'_>, deployment_id: &str) -> Result<(), DomainError> {
    let d = s
        .state
        .deployment(deployment_id)
        .ok_or_else(|| not_found("deployment", deployment_id))?;
    let what = format!("deployment {deployment_id}");
    match s.ctx.actor.role {
        Role::Admin | Role::Auditor => {}
        Role::User if s.ctx.actor.name == d.owner => {}
        Role::User => return Err(forbidden(format!("{what} belongs to another user"))),
        Role::Agent => return Err(forbidden(format!("the logs of {what} are not an agent's"))),
    }
    s.emit(Event::DeploymentLogsOpened {
        deployment_id: deployment_id.to_string(),
    });
    Ok(())
}

pub(super) fn start_exec(
    s: &mut Scratch<'_>,
    session_id: &str,
    deployment_id: &str,
    command: &[String],
    tty: bool,
) -> Result<(), DomainError> {
    let d = s
        .state
        .deployment(deployment_id)
        .ok_or_else(|| not_found("deployment", deployment_id))?;
    owner_or_admin(s.ctx, &d.owner, &format!("deployment {deployment_id}"))?;
    if command.is_empty() || command[0].is_empty() {
        return Err(DomainError::Validation(vec![FieldError::new(
            "cmd",
            "expected a command: a non-empty list of strings",
        )]));
    }
    if d.status != S::Running {
        return Err(DomainError::Invalid(format!(
            "deployment {deployment_id} is {}, not running",
            d.status.as_str()
        )));
    }
    s.emit(Event::ExecSessionStarted {
        session_id: session_id.to_string(),
        deployment_id: deployment_id.to_string(),
        command: command.to_vec(),
        tty,
    });
    Ok(())
}

pub(super) fn end_exec(
    s: &mut Scratch<'_>,
    session_id: &str,
    deployment_id: &str,
    exit_code: Option<i64>,
    reason: &str,
) -> Result<(), DomainError> {
    admin_only(s.ctx, "ending an exec session")?;
    s.emit(Event::ExecSessionEnded {
        session_id: session_id.to_string(),
        deployment_id: deployment_id.to_string(),
        exit_code,
        reason: reason.to_string(),
    });
    Ok(())
}

/// An idle timeout is 0 (none) or between [`MIN_IDLE_TIMEOUT_MS`] and
/// [`MAX_IDLE_TIMEOUT_MS`].
pub(super) fn check_idle_timeout(timeout_ms: u64) -> Result<(), DomainError> {
    if timeout_ms != 0 && !(MIN_IDLE_TIMEOUT_MS..=MAX_IDLE_TIMEOUT_MS).contains(&timeout_ms) {
        return Err(DomainError::Validation(vec![FieldError::new(
            "idle-timeout",
            "expected a duration between 1m and 30d, e.g. \"30m\"",
        )]));
    }
    Ok(())
}

pub(super) fn set_idle_timeout(
    s: &mut Scratch<'_>,
    env_id: &str,
    timeout_ms: u64,
) -> Result<(), DomainError> {
    let env = s
        .state
        .environment(env_id)
        .ok_or_else(|| not_found("environment", env_id))?;
    owner_or_admin(s.ctx, &env.owner, &format!("environment {env_id}"))?;
    check_idle_timeout(timeout_ms)?;
    s.emit(Event::EnvironmentIdleTimeoutSet {
        env_id: env_id.to_string(),
        version: env.version(),
        timeout_ms,
    });
    Ok(())
}

/// A running deployment found idle is stopped with the reason; anything else (already
/// stopping, finished) is left alone.
pub(super) fn stop_idle(
    s: &mut Scratch<'_>,
    deployment_id: &str,
    idle_ms: u64,
    reason: &str,
) -> Result<(), DomainError> {
    admin_only(s.ctx, "stopping idle deployments")?;
    let d = s
        .state
        .deployment(deployment_id)
        .ok_or_else(|| not_found("deployment", deployment_id))?;
    if d.status != S::Running {
        return Ok(());
    }
    let deployment_id = deployment_id.to_string();
    s.emit(Event::DeploymentIdleStopped {
        deployment_id: deployment_id.clone(),
        idle_ms,
        reason: reason.to_string(),
    });
    s.emit(Event::DeploymentStopRequested { deployment_id });
    Ok(())
}
