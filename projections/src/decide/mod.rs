//! `decide`: a command against the current state gives the events to append, or a
//! typed refusal. All business rules and all authorisation live here.
//!
//! Roles: `admin` may do everything; `user` only its own environments and deployments
//! (owner = actor name) and never catalogs, nodes or tokens; `agent` only its own node's
//! registration, heartbeats and reports; `auditor` nothing (it only reads).

mod deployments;
mod environments;
mod nodes;
mod quotas;
mod registry;
mod scratch;
mod sessions;

use dcloud_events::model::Role;
use dcloud_events::Event;

use crate::command::{Command, Ctx};
use crate::error::DomainError;
use crate::state::State;

pub use registry::DATASET_SERVICE;

pub(crate) use scratch::Scratch;

/// Decides `cmd` against `state`. Never changes anything: the caller appends the events
/// and applies them. An empty list means "nothing to do" (e.g. a duplicate report).
pub fn decide(state: &State, cmd: &Command, ctx: &Ctx) -> Result<Vec<Event>, DomainError> {
    // Auditors only read; opening logs is a read the log records, and joining a node
    // is authorised by the join token, not the caller's role.
    if ctx.actor.role == Role::Auditor
        && !matches!(cmd, Command::OpenLogs { .. } | Command::JoinNode { .. })
    {
        return Err(DomainError::Forbidden("auditors only read".into()));
    }
    let mut s = Scratch::new(state, ctx);
    match cmd {
        Command::CreateEnvironment { env_id, spec } => environments::create(&mut s, env_id, spec)?,
        Command::UpdateEnvironment {
            env_id,
            expected_version,
            spec,
        } => environments::update(&mut s, env_id, *expected_version, spec)?,
        Command::DeactivateEnvironment { env_id } => environments::deactivate(&mut s, env_id)?,
        Command::DeleteEnvironment { env_id } => environments::delete(&mut s, env_id)?,
        Command::SaveTemplate {
            name,
            spec,
            idle_timeout_ms,
        } => environments::save_template(&mut s, name, spec, *idle_timeout_ms)?,
        Command::DeleteTemplate { name } => environments::delete_template(&mut s, name)?,
        Command::CreateFromTemplate {
            env_id,
            template,
            overrides,
        } => environments::create_from_template(&mut s, env_id, template, overrides)?,
        Command::UpsertCatalog { catalog } => registry::upsert_catalog(&mut s, catalog)?,
        Command::SetCatalogServices { os, services } => {
            registry::set_catalog_services(&mut s, os, services)?
        }
        Command::RegisterDatasets { category } => registry::register_datasets(&mut s, category)?,
        Command::RemoveDataset {
            category,
            db,
            dataset,
            version,
        } => registry::remove_dataset(&mut s, category, db, dataset, version)?,
        Command::RegisterService { service } => registry::register_service(&mut s, service)?,
        Command::RefreshService { name } => registry::refresh_service(&mut s, name)?,
        Command::DeregisterService { name } => registry::deregister_service(&mut s, name)?,
        Command::ExpireServices => registry::expire_services(&mut s)?,
        Command::CreateToken {
            token_id,
            name,
            role,
            secret_hash,
            node_id,
        } => registry::create_token(
            &mut s,
            token_id,
            name,
            *role,
            secret_hash,
            node_id.as_deref(),
            None,
        )?,
        Command::CreateTokenV2 {
            token_id,
            name,
            role,
            secret_hash,
            node_id,
            expires_ms,
        } => registry::create_token(
            &mut s,
            token_id,
            name,
            *role,
            secret_hash,
            node_id.as_deref(),
            *expires_ms,
        )?,
        Command::CreateJoinToken {
            token_id,
            name,
            secret_hash,
            expires_ms,
            uses,
        } => registry::create_join_token(&mut s, token_id, name, secret_hash, *expires_ms, *uses)?,
        Command::JoinNode {
            join_secret_hash,
            node_id,
            token_id,
            secret_hash,
        } => registry::join_node(&mut s, join_secret_hash, node_id, token_id, secret_hash)?,
        Command::RevokeToken { token_id } => registry::revoke_token(&mut s, token_id)?,
        Command::RegisterNode {
            node_id,
            fingerprint,
        } => nodes::register(&mut s, node_id, fingerprint)?,
        Command::Heartbeat {
            node_id,
            usage,
            containers,
            engine_ok,
        } => nodes::heartbeat(&mut s, node_id, usage, containers, *engine_ok)?,
        Command::ReportNodeAddress { node_id, address } => {
            nodes::report_address(&mut s, node_id, address)?
        }
        Command::ReportStaleContainer {
            node_id,
            deployment_id,
            container_id,
        } => nodes::stale_container(&mut s, node_id, deployment_id, container_id)?,
        Command::ReportVolumeUsage {
            node_id,
            deployment_id,
            volumes,
        } => nodes::volume_usage(&mut s, node_id, deployment_id, volumes)?,
        Command::CreateCluster { cluster_id } => registry::create_cluster(&mut s, cluster_id)?,
        Command::SetDatasetStorage { category, shared } => {
            registry::set_dataset_storage(&mut s, category, shared.as_ref())?
        }
        Command::MarkNodesLost { node_ids } => nodes::mark_lost(&mut s, node_ids)?,
        Command::EvictLostNodes { node_ids, force } => nodes::evict_lost(&mut s, node_ids, *force)?,
        Command::DrainNode { node_id } => nodes::drain(&mut s, node_id)?,
        Command::UndrainNode { node_id } => nodes::undrain(&mut s, node_id)?,
        Command::Deploy {
            deployment_id,
            env_id,
            policy,
            wait_for_quota,
        } => deployments::deploy(&mut s, deployment_id, env_id, *policy, *wait_for_quota)?,
        Command::Stop { deployment_id } => deployments::stop(&mut s, deployment_id)?,
        Command::Report {
            deployment_id,
            report,
        } => deployments::report(&mut s, deployment_id, report)?,
        Command::OpenLogs { deployment_id } => sessions::open_logs(&mut s, deployment_id)?,
        Command::StartExec {
            session_id,
            deployment_id,
            command,
            tty,
        } => sessions::start_exec(&mut s, session_id, deployment_id, command, *tty)?,
        Command::EndExec {
            session_id,
            deployment_id,
            exit_code,
            reason,
        } => sessions::end_exec(&mut s, session_id, deployment_id, *exit_code, reason)?,
        Command::SetIdleTimeout { env_id, timeout_ms } => {
            sessions::set_idle_timeout(&mut s, env_id, *timeout_ms)?
        }
        Command::StopIdle {
            deployment_id,
            idle_ms,
            reason,
        } => sessions::stop_idle(&mut s, deployment_id, *idle_ms, reason)?,
        Command::SetQuota { user, quota } => quotas::set(&mut s, user, quota)?,
        Command::RetryPending => {
            admin_only(ctx, "retrying the pending queue")?;
            s.place_pending(true);
        }
    }
    Ok(s.into_events())
}

fn forbidden(msg: String) -> DomainError {
    DomainError::Forbidden(msg)
}

pub(crate) fn admin_only(ctx: &Ctx, what: &str) -> Result<(), DomainError> {
    if ctx.actor.is_admin() {
        Ok(())
    } else {
        Err(forbidden(format!("{what} needs an admin token")))
    }
}

/// Admins and users (not agents).
pub(crate) fn user_or_admin(ctx: &Ctx, what: &str) -> Result<(), DomainError> {
    match ctx.actor.role {
        Role::Admin | Role::User => Ok(()),
        _ => Err(forbidden(format!("{what} needs a user or admin token"))),
    }
}

/// Admins, and the user who owns the thing.
pub(crate) fn owner_or_admin(ctx: &Ctx, owner: &str, what: &str) -> Result<(), DomainError> {
    match ctx.actor.role {
        Role::Admin => Ok(()),
        Role::User if ctx.actor.name == owner => Ok(()),
        Role::User => Err(forbidden(format!("{what} belongs to another user"))),
        _ => Err(forbidden(format!("{what} needs a user or admin token"))),
    }
}

/// Admins, and the agent of `node_id`.
pub(crate) fn node_actor(ctx: &Ctx, node_id: &str) -> Result<(), DomainError> {
    match ctx.actor.role {
        Role::Admin => Ok(()),
        Role::Agent if ctx.actor.node_id.as_deref() == Some(node_id) => Ok(()),
        Role::Agent => Err(forbidden(format!(
            "an agent may act only for its own node, not {node_id}"
        ))),
        _ => Err(forbidden(format!(
            "node {node_id} is acted for by its agent or an admin"
        ))),
    }
}

fn not_found(kind: &'static str, id: &str) -> DomainError {
    DomainError::NotFound {
        kind,
        id: id.to_string(),
    }
}
