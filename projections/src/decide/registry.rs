//! The library catalogs (admin only: they hold shell commands), the dataset catalog
//! (admins and the `dfs-server` service), the service registry, and access tokens.

use dcloud_events::model::{
    DatasetCategory, LibraryCatalog, LibraryService, Role, ServiceRegistration, SharedStorage,
};
use dcloud_events::Event;

use super::{admin_only, forbidden, not_found, Scratch};
use crate::error::{DomainError, FieldError};

/// The service actor that owns the dataset catalog besides admins.
pub const DATASET_SERVICE: &str = "dfs-server";

fn invalid(path: &str, message: &str) -> DomainError {
    DomainError::Validation(vec![FieldError::new(path, message)])
}

pub(super) fn upsert_catalog(
    s: &mut Scratch<'_>,
    catalog: &LibraryCatalog,
) -> Result<(), DomainError> {
    admin_only(s.ctx, "changing a library catalog")?;
    if catalog.os.trim().is_empty() {
        return Err(invalid("os", "must name an os"));
    }
    s.emit(Event::CatalogUpserted {
        catalog: catalog.clone(),
    });
    Ok(())
}

/// Services for the libraries of an existing catalog, each naming one of its libraries.
pub(super) fn set_catalog_services(
    s: &mut Scratch<'_>,
    os: &str,
    services: &[LibraryService],
) -> Result<(), DomainError> {
    admin_only(s.ctx, "changing a library catalog")?;
    let catalog = s
        .state
        .catalogs
        .get(os)
        .ok_or_else(|| not_found("catalog", os))?;
    for service in services {
        let known = catalog
            .specifications
            .values()
            .any(|l| l.libraries.contains_key(&service.library));
        if !known {
            return Err(invalid(
                &format!("services.{}", service.library),
                "is not a library of this catalog's specifications",
            ));
        }
    }
    s.emit(Event::CatalogServicesSet {
        os: os.to_string(),
        services: services.to_vec(),
    });
    Ok(())
}

fn datasets_actor(s: &Scratch<'_>) -> Result<(), DomainError> {
    if s.ctx.actor.is_admin() || s.ctx.actor.name == DATASET_SERVICE {
        Ok(())
    } else {
        Err(forbidden(format!(
            "the dataset catalog is kept by admins and {DATASET_SERVICE}"
        )))
    }
}

pub(super) fn register_datasets(
    s: &mut Scratch<'_>,
    category: &DatasetCategory,
) -> Result<(), DomainError> {
    datasets_actor(s)?;
    if category.category.trim().is_empty() {
        return Err(invalid("category-name", "must name a category"));
    }
    s.emit(Event::DatasetsRegistered {
        category: category.clone(),
    });
    Ok(())
}

/// Shared storage for a category's datasets (admin only: the engine of every node
/// mounts what it names). The category need not be registered yet.
pub(super) fn set_dataset_storage(
    s: &mut Scratch<'_>,
    category: &str,
    shared: Option<&SharedStorage>,
) -> Result<(), DomainError> {
    admin_only(s.ctx, "putting datasets on shared storage")?;
    if category.trim().is_empty() {
        return Err(invalid("category-name", "must name a category"));
    }
    if let Some(shared) = shared {
        if let Err(e) = crate::config::check_shared_storage(shared) {
            return Err(DomainError::Validation(e));
        }
    }
    if s.state.dataset_storage.get(category) == shared {
        return Ok(());
    }
    s.emit(Event::DatasetStorageSet {
        category: category.to_string(),
        shared: shared.cloned(),
    });
    Ok(())
}

/// The log's cluster id, once; a second one is refused.
pub(super) fn create_cluster(s: &mut Scratch<'_>, cluster_id: &str) -> Result<(), DomainError> {
    admin_only(s.ctx, "naming the cluster")?;
    if let Some(id) = &s.state.cluster_id {
        return Err(DomainError::Invalid(format!(
            "the cluster already has the id {id}"
        )));
    }
    let ok = !cluster_id.is_empty()
        && cluster_id.len() <= 64
        && cluster_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if !ok {
        return Err(invalid(
            "cluster_id",
            "must be 1 to 64 letters, digits or '-'",
        ));
    }
    s.emit(Event::ClusterCreated {
        cluster_id: cluster_id.to_string(),
    });
    Ok(())
}

pub(super) fn remove_dataset(
    s: &mut Scratch<'_>,
    category: &str,
    db: &str,
    dataset: &str,
    version: &str,
) -> Result<(), DomainError> {
    datasets_actor(s)?;
    if !s.state.datasets.contains(category, db, dataset, version) {
        return Err(not_found(
            "dataset",
            &format!("{category}/{db}/{dataset}@{version}"),
        ));
    }
    s.emit(Event::DatasetRemoved {
        category: category.to_string(),
        db: db.to_string(),
        dataset: dataset.to_string(),
        version: version.to_string(),
    });
    Ok(())
}

/// Services register themselves: an admin, or an actor named like the service.
fn service_actor(s: &Scratch<'_>, name: &str) -> Result<(), DomainError> {
    if s.ctx.actor.is_admin() || s.ctx.actor.name == name {
        Ok(())
    } else {
        Err(forbidden(format!(
            "service {name} is registered by itself or an admin"
        )))
    }
}

pub(super) fn register_service(
    s: &mut Scratch<'_>,
    service: &ServiceRegistration,
) -> Result<(), DomainError> {
    service_actor(s, &service.name)?;
    if service.name.trim().is_empty() {
        return Err(invalid("service-name", "must name the service"));
    }
    if service.endpoints.is_empty() {
        return Err(invalid(
            "servers",
            "a service needs at least one endpoint (ip and port)",
        ));
    }
    s.emit(Event::ServiceRegistered {
        service: service.clone(),
    });
    Ok(())
}

pub(super) fn refresh_service(s: &mut Scratch<'_>, name: &str) -> Result<(), DomainError> {
    service_actor(s, name)?;
    if !s.state.services.contains_key(name) {
        return Err(not_found("service", name));
    }
    s.emit(Event::ServiceRefreshed {
        name: name.to_string(),
    });
    Ok(())
}

pub(super) fn deregister_service(s: &mut Scratch<'_>, name: &str) -> Result<(), DomainError> {
    service_actor(s, name)?;
    if !s.state.services.contains_key(name) {
        return Err(not_found("service", name));
    }
    s.emit(Event::ServiceDeregistered {
        name: name.to_string(),
    });
    Ok(())
}

/// Every service with a TTL not refreshed within it as of `now_ms`.
pub(super) fn expire_services(s: &mut Scratch<'_>) -> Result<(), DomainError> {
    admin_only(s.ctx, "expiring services")?;
    let now = s.ctx.now_ms;
    let expired: Vec<String> = s
        .state
        .services
        .values()
        .filter(|v| v.is_expired(now))
        .map(|v| v.registration.name.clone())
        .collect();
    for name in expired {
        s.emit(Event::ServiceExpired { name });
    }
    Ok(())
}

fn fresh_token_id(s: &Scratch<'_>, token_id: &str) -> Result<(), DomainError> {
    if s.state.tokens.contains_key(token_id) || s.state.join_tokens.contains_key(token_id) {
        return Err(DomainError::AlreadyExists {
            kind: "token",
            id: token_id.to_string(),
        });
    }
    Ok(())
}

fn future_expiry(s: &Scratch<'_>, expires_ms: Option<i64>) -> Result<(), DomainError> {
    match expires_ms {
        Some(e) if e <= s.ctx.now_ms => Err(invalid("expires", "must be in the future")),
        _ => Ok(()),
    }
}

pub(super) fn create_token(
    s: &mut Scratch<'_>,
    token_id: &str,
    name: &str,
    role: Role,
    secret_hash: &[u8; 32],
    node_id: Option<&str>,
    expires_ms: Option<i64>,
) -> Result<(), DomainError> {
    admin_only(s.ctx, "creating a token")?;
    fresh_token_id(s, token_id)?;
    if name.trim().is_empty() {
        return Err(invalid("name", "a token needs a name"));
    }
    match (role, node_id) {
        (Role::Agent, None) => return Err(invalid("node", "an agent token must name its node")),
        (Role::Agent, Some(_)) | (_, None) => {}
        (_, Some(_)) => return Err(invalid("node", "only agent tokens name a node")),
    }
    future_expiry(s, expires_ms)?;
    // Tokens without expiry keep the release-1 event.
    s.emit(match expires_ms {
        None => Event::TokenCreated {
            token_id: token_id.to_string(),
            name: name.to_string(),
            role,
            secret_hash: *secret_hash,
            node_id: node_id.map(str::to_string),
        },
        Some(_) => Event::TokenCreatedV2 {
            token_id: token_id.to_string(),
            name: name.to_string(),
            role,
            secret_hash: *secret_hash,
            node_id: node_id.map(str::to_string),
            expires_ms,
        },
    });
    Ok(())
}

pub(super) fn create_join_token(
    s: &mut Scratch<'_>,
    token_id: &str,
    name: &str,
    secret_hash: &[u8; 32],
    expires_ms: Option<i64>,
    uses: u32,
) -> Result<(), DomainError> {
    admin_only(s.ctx, "creating a join token")?;
    fresh_token_id(s, token_id)?;
    if name.trim().is_empty() {
        return Err(invalid("name", "a token needs a name"));
    }
    if uses == 0 {
        return Err(invalid("uses", "a join token needs at least one use"));
    }
    future_expiry(s, expires_ms)?;
    s.emit(Event::JoinTokenCreated {
        token_id: token_id.to_string(),
        name: name.to_string(),
        secret_hash: *secret_hash,
        expires_ms,
        uses,
    });
    Ok(())
}

/// The longest node id a join accepts (MACs are 14 characters; names a little more).
const MAX_NODE_ID: usize = 128;

/// A node joins: the join token must be known, unrevoked, unexpired and have a use
/// left; one use is spent and a new agent token bound to the node is recorded.
pub(super) fn join_node(
    s: &mut Scratch<'_>,
    join_secret_hash: &[u8; 32],
    node_id: &str,
    token_id: &str,
    secret_hash: &[u8; 32],
) -> Result<(), DomainError> {
    let join = s
        .state
        .join_token_by_secret_hash(join_secret_hash)
        .ok_or_else(|| forbidden("not a valid join token".to_string()))?;
    if join.expires_ms.is_some_and(|e| s.ctx.now_ms >= e) {
        return Err(forbidden(format!("join token {} has expired", join.id)));
    }
    if join.uses_left == 0 {
        return Err(forbidden(format!(
            "join token {} has no uses left ({} of {} spent)",
            join.id, join.uses, join.uses
        )));
    }
    let join_id = join.id.clone();
    if node_id.is_empty()
        || node_id.len() > MAX_NODE_ID
        || !node_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
    {
        return Err(invalid(
            "nodeId",
            "a node id is 1 to 128 letters, digits, '-', '_', '.' or ':'",
        ));
    }
    fresh_token_id(s, token_id)?;
    s.emit(Event::NodeJoined {
        join_token_id: join_id,
        node_id: node_id.to_string(),
        token_id: token_id.to_string(),
        secret_hash: *secret_hash,
        expires_ms: None,
    });
    Ok(())
}

/// Revoking twice is a no-op.
pub(super) fn revoke_token(s: &mut Scratch<'_>, token_id: &str) -> Result<(), DomainError> {
    admin_only(s.ctx, "revoking a token")?;
    let revoked = match (
        s.state.tokens.get(token_id),
        s.state.join_tokens.get(token_id),
    ) {
        (Some(t), _) => t.revoked,
        (None, Some(j)) => j.revoked,
        (None, None) => return Err(not_found("token", token_id)),
    };
    if !revoked {
        s.emit(Event::TokenRevoked {
            token_id: token_id.to_string(),
        });
    }
    Ok(())
}
