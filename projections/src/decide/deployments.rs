//! Deployments: deploy (request, then place or record why not), stop, and the agent's
//! reports, each checked against the deployment's status so that the log never shows
//! a transition twice or out of order.

use dcloud_events::model::{PlacementPolicy, Role};
use dcloud_events::Event;

use super::{forbidden, not_found, owner_or_admin, user_or_admin, Scratch};
use crate::command::Report;
use crate::error::DomainError;
use crate::state::{need_of, quota_excess, DeploymentStatus as S, QuotaUsage};

pub(super) fn deploy(
    s: &mut Scratch<'_>,
    deployment_id: &str,
    env_id: &str,
    policy: Option<PlacementPolicy>,
    wait_for_quota: bool,
) -> Result<(), DomainError> {
    user_or_admin(s.ctx, "deploying")?;
    if deployment_id.is_empty() {
        return Err(DomainError::Invalid(
            "a deployment id must not be empty".into(),
        ));
    }
    if s.state.deployments.contains_key(deployment_id) {
        return Err(DomainError::AlreadyExists {
            kind: "deployment",
            id: deployment_id.to_string(),
        });
    }
    let state = s.state;
    let env = state
        .environment(env_id)
        .ok_or_else(|| not_found("environment", env_id))?;
    owner_or_admin(s.ctx, &env.owner, &format!("environment {env_id}"))?;
    if !env.active {
        return Err(DomainError::Invalid(format!(
            "environment {env_id} is inactive"
        )));
    }
    let spec = env.spec().ok_or_else(|| not_found("environment", env_id))?;
    let image = s.image_for(spec)?;
    let policy = policy.unwrap_or(s.ctx.settings.default_policy);
    let over = quota_check(s, &env.owner, &need_of(spec))?;
    if over.is_some() && !wait_for_quota {
        return Err(DomainError::QuotaExceeded(format!(
            "quota exceeded: {}",
            over.unwrap_or_default()
        )));
    }
    s.emit(Event::DeploymentRequested {
        deployment_id: deployment_id.to_string(),
        env_id: env_id.to_string(),
        env_version: env.version(),
        owner: env.owner.clone(),
        policy,
    });
    match over {
        Some(over) => s.emit(Event::DeploymentQuotaWaiting {
            deployment_id: deployment_id.to_string(),
            reason: format!("waiting for quota: {over}"),
        }),
        None => {
            s.try_place(deployment_id, spec, policy, Some(image), true);
        }
    }
    Ok(())
}

/// `Some(limits passed)` when one more deployment needing `need` would pass `owner`'s
/// quota now; refused outright when it would pass it even with nothing else live.
fn quota_check(
    s: &Scratch<'_>,
    owner: &str,
    need: &dcloud_events::model::Resources,
) -> Result<Option<String>, DomainError> {
    let Some(quota) = s.state.quotas.get(owner) else {
        return Ok(None);
    };
    if let Some(alone) = quota_excess(quota, &QuotaUsage::default(), need) {
        return Err(DomainError::QuotaExceeded(format!(
            "quota exceeded: {alone} (more than {owner}'s quota allows even with nothing else running)"
        )));
    }
    Ok(quota_excess(quota, &s.quota_usage(owner), need))
}

/// Queued or finished: stopped at once. Placed: the agent is asked to stop it, and its
/// resources stay booked until the agent reports the container removed. Placed on a
/// lost node: stopped at once (its agent removes the container if it comes back).
pub(super) fn stop(s: &mut Scratch<'_>, deployment_id: &str) -> Result<(), DomainError> {
    let d = s
        .state
        .deployment(deployment_id)
        .ok_or_else(|| not_found("deployment", deployment_id))?;
    owner_or_admin(s.ctx, &d.owner, &format!("deployment {deployment_id}"))?;
    let deployment_id = deployment_id.to_string();
    match d.status {
        S::Pending | S::Lost => {
            s.emit(Event::DeploymentStopped { deployment_id });
            if d.counts_against_quota() {
                // Its quota is free again: a deployment waiting for it may fit now.
                s.ended(d);
                s.place_pending(false);
            }
        }
        S::Exited | S::OomKilled | S::Failed => {
            s.emit(Event::DeploymentStopped { deployment_id });
        }
        // Its node is lost: nobody can stop the container now, so it is stopped in
        // the log at once; the agent removes the container as stale if it comes back.
        S::Scheduled | S::Building | S::Created | S::Running | S::Stopping
            if super::nodes::on_lost_node(s, d) =>
        {
            s.emit(Event::DeploymentStopped { deployment_id });
            s.release(d);
            s.ended(d);
            s.place_pending(false);
        }
        S::Scheduled | S::Building | S::Created | S::Running => {
            s.emit(Event::DeploymentStopRequested { deployment_id });
        }
        S::Stopping | S::Stopped => {}
    }
    Ok(())
}

/// How far along a status (or the status a report implies) is; terminal reports and
/// `Stopping` have none.
fn rank(status: S) -> Option<u8> {
    match status {
        S::Scheduled => Some(0),
        S::Building => Some(1),
        S::Created => Some(2),
        S::Running => Some(3),
        _ => None,
    }
}

fn implied_rank(report: &Report) -> Option<u8> {
    match report {
        Report::BuildStarted { .. } | Report::BuildProgress { .. } | Report::ImageReady { .. } => {
            Some(1)
        }
        Report::ContainerCreated { .. } => Some(2),
        Report::ContainerStarted => Some(3),
        _ => None,
    }
}

fn report_name(report: &Report) -> &'static str {
    match report {
        Report::BuildStarted { .. } => "build started",
        Report::BuildProgress { .. } => "build progress",
        Report::BuildFailed { .. } => "build failed",
        Report::ImageReady { .. } => "image ready",
        Report::ContainerCreated { .. } => "container created",
        Report::ContainerStarted => "container started",
        Report::ContainerExited { .. } => "container exited",
        Report::ContainerOomKilled => "container oom-killed",
        Report::ContainerRemoved => "container removed",
        Report::ContainerFailed { .. } => "container failed",
        Report::ContainerOomWarning { .. } => "oom warning",
        Report::ContainerOutput { .. } => "container output",
    }
}

/// An agent reports for deployments assigned to its own node. A report that changes
/// nothing (sent twice) decides no events; one that contradicts the status is refused.
/// Reports that end a placed deployment (exited, oom-killed, failed, removed while
/// stopping) free its resources, and the queue is tried again at once.
pub(super) fn report(
    s: &mut Scratch<'_>,
    deployment_id: &str,
    report: &Report,
) -> Result<(), DomainError> {
    let state = s.state;
    let d = state
        .deployment(deployment_id)
        .ok_or_else(|| not_found("deployment", deployment_id))?;
    match s.ctx.actor.role {
        Role::Admin => {}
        Role::Agent => {
            let mine = s.ctx.actor.node_id.as_deref();
            if d.node.is_none() || d.node.as_deref() != mine {
                return Err(forbidden(format!(
                    "deployment {deployment_id} is not assigned to node {}",
                    mine.unwrap_or("(none)")
                )));
            }
        }
        _ => {
            return Err(forbidden(
                "only a node's agent reports container state".into(),
            ))
        }
    }
    let event = report.to_event(deployment_id);
    if d.status == S::Stopping && *report == Report::ContainerRemoved {
        if d.container_id.is_some() {
            s.emit(event);
        }
        s.emit(Event::DeploymentStopped {
            deployment_id: deployment_id.to_string(),
        });
        s.release(d);
        s.ended(d);
        s.place_pending(false);
        return Ok(());
    }
    let mut probe = d.clone();
    probe.fold(&event, 0, 0);
    if probe == *d {
        return Ok(());
    }
    let refuse = || {
        DomainError::Invalid(format!(
            "deployment {deployment_id} is {}; a {} report does not apply",
            d.status.as_str(),
            report_name(report)
        ))
    };
    if !d.status.holds_resources() {
        // Finished: only the container's removal is still news.
        if *report != Report::ContainerRemoved {
            return Err(refuse());
        }
        s.emit(event);
        return Ok(());
    }
    if let (Some(now), Some(implied)) = (rank(d.status), implied_rank(report)) {
        if implied < now {
            return Err(refuse());
        }
    }
    s.emit(event);
    if *report == Report::ContainerRemoved && d.status != S::Stopping {
        // Removed behind DCloud's back while placed: the deployment failed.
        s.emit(Event::ContainerFailed {
            deployment_id: deployment_id.to_string(),
            message: "container was removed outside dcloud".into(),
        });
        probe.status = S::Failed;
    }
    if !probe.status.holds_resources() {
        s.release(d);
        if !probe.status.is_live() {
            s.ended(d);
        }
        s.place_pending(false);
    }
    Ok(())
}
