//! `apply`: JSON or YAML text holding any document kind (or a list), each turned into
//! its command and submitted in order.

use async_graphql::{Context, Enum, SimpleObject};
use dcloud_projections::config::{self, Document};
use dcloud_projections::{Command, DomainError, FieldError};

use super::inputs::DocumentFormat;
use super::submit;
use crate::auth::actor;
use crate::error::ApiError;
use crate::schema::{backend, fresh_id};

#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
pub enum DocumentKind {
    Environment,
    Template,
    Catalog,
    Service,
    Datasets,
}

#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
pub enum ApplyAction {
    Created,
    Updated,
    /// An environment identical to its current version: nothing was written.
    Unchanged,
}

#[derive(SimpleObject, Clone, Debug)]
pub struct AppliedDocument {
    /// Position in the list sent (0 for a single document).
    pub index: usize,
    pub kind: DocumentKind,
    /// Environment id, template name, catalog os, service name or dataset category.
    pub id: String,
    pub action: ApplyAction,
    /// The environment's version after it.
    pub version: Option<u32>,
}

#[derive(SimpleObject, Clone, Debug)]
pub struct ApplyResult {
    pub documents: Vec<AppliedDocument>,
    /// Events appended for all of them.
    pub events: usize,
}

pub(crate) fn invalid(errors: Vec<FieldError>) -> ApiError {
    ApiError::Domain(DomainError::Validation(errors))
}

/// `err` about document `index` of a list: validation paths get the `[i].` prefix the
/// parser uses, messages say which document.
fn at_document(index: usize, err: ApiError) -> ApiError {
    let prefix = |p: &str| {
        if p.is_empty() {
            format!("[{index}]")
        } else {
            format!("[{index}].{p}")
        }
    };
    match err {
        ApiError::Domain(DomainError::Validation(fs)) => invalid(
            fs.into_iter()
                .map(|f| FieldError::new(prefix(&f.path), f.message))
                .collect(),
        ),
        ApiError::Domain(DomainError::Forbidden(m)) => {
            ApiError::Domain(DomainError::Forbidden(format!("document [{index}]: {m}")))
        }
        ApiError::Domain(DomainError::Invalid(m)) => {
            ApiError::Domain(DomainError::Invalid(format!("document [{index}]: {m}")))
        }
        other => other,
    }
}

/// What one document of `apply` becomes.
struct Planned {
    /// `None`: nothing to write (an environment identical to its current version).
    cmd: Option<Command>,
    kind: DocumentKind,
    id: String,
    action: ApplyAction,
}

/// The command one document becomes, as the caller and against the live state.
/// `idle_timeout_ms`: the document's `idle-timeout` (read beside the spec).
fn plan(
    ctx: &Context<'_>,
    doc: Document,
    idle_timeout_ms: Option<u64>,
) -> Result<Planned, ApiError> {
    let backend = backend(ctx)?;
    let a = actor(ctx)?;
    let state = backend.state();
    let action = |exists: bool| {
        if exists {
            ApplyAction::Updated
        } else {
            ApplyAction::Created
        }
    };
    let (cmd, kind, id, action) = match doc {
        Document::Environment(spec) => {
            // Declarative: the caller's live environment of that name is updated.
            let existing = state.environments.values().find(|e| {
                !e.deleted && e.owner == a.name && e.spec().is_some_and(|s| s.name == spec.name)
            });
            match existing {
                Some(e) if e.spec() == Some(&spec) => (
                    None,
                    DocumentKind::Environment,
                    e.id.clone(),
                    ApplyAction::Unchanged,
                ),
                Some(e) => {
                    let cmd = Command::UpdateEnvironment {
                        env_id: e.id.clone(),
                        expected_version: u64::from(e.version()),
                        spec,
                    };
                    (
                        Some(cmd),
                        DocumentKind::Environment,
                        e.id.clone(),
                        ApplyAction::Updated,
                    )
                }
                None => {
                    let env_id = fresh_id(ctx)?;
                    let cmd = Command::CreateEnvironment {
                        env_id: env_id.clone(),
                        spec,
                    };
                    (
                        Some(cmd),
                        DocumentKind::Environment,
                        env_id,
                        ApplyAction::Created,
                    )
                }
            }
        }
        Document::Template(spec) => {
            let name = spec.name.clone();
            let act = action(state.templates.contains_key(&name));
            (
                Some(Command::SaveTemplate {
                    name: name.clone(),
                    spec,
                    idle_timeout_ms,
                }),
                DocumentKind::Template,
                name,
                act,
            )
        }
        Document::Catalog(catalog) => {
            let os = catalog.os.clone();
            let act = action(state.catalogs.contains_key(&os));
            (
                Some(Command::UpsertCatalog { catalog }),
                DocumentKind::Catalog,
                os,
                act,
            )
        }
        Document::Service(service) => {
            let name = service.name.clone();
            let act = action(state.services.contains_key(&name));
            (
                Some(Command::RegisterService { service }),
                DocumentKind::Service,
                name,
                act,
            )
        }
        Document::Datasets(category) => {
            let name = category.category.clone();
            let act = action(state.datasets.categories.contains_key(&name));
            (
                Some(Command::RegisterDatasets { category }),
                DocumentKind::Datasets,
                name,
                act,
            )
        }
    };
    Ok(Planned {
        cmd,
        kind,
        id,
        action,
    })
}

/// Puts `category` on shared storage (or back on nodes' disks) and, when that changed
/// anything, retries the pending queue: deployments waiting for its datasets may now
/// fit anywhere. Returns how many events were written.
pub(crate) async fn set_dataset_storage(
    ctx: &Context<'_>,
    category: String,
    shared: Option<dcloud_events::model::SharedStorage>,
) -> Result<usize, ApiError> {
    let events = submit(ctx, Command::SetDatasetStorage { category, shared })
        .await?
        .len();
    if events > 0 {
        return Ok(events + submit(ctx, Command::RetryPending).await?.len());
    }
    Ok(events)
}

fn env_version(ctx: &Context<'_>, id: &str) -> Option<u32> {
    let backend = backend(ctx).ok()?;
    let state = backend.state();
    state.environment(id).map(|e| e.version())
}

pub(crate) async fn apply(
    ctx: &Context<'_>,
    document: &str,
    format: DocumentFormat,
) -> Result<ApplyResult, ApiError> {
    let docs = config::parse_document(document, format.into()).map_err(invalid)?;
    let idle = config::idle_timeouts(document, format.into()).map_err(invalid)?;
    let services = config::catalog_services(document, format.into()).map_err(invalid)?;
    let storage = config::dataset_storage(document, format.into()).map_err(invalid)?;
    let many = docs.len() > 1;
    let mut out = ApplyResult {
        documents: Vec::with_capacity(docs.len()),
        events: 0,
    };
    for (index, doc) in docs.into_iter().enumerate() {
        let located = |e: ApiError| if many { at_document(index, e) } else { e };
        let Planned {
            cmd,
            kind,
            id,
            action,
        } = plan(ctx, doc, idle.get(index).copied().flatten()).map_err(located)?;
        if let Some(cmd) = cmd {
            out.events += submit(ctx, cmd).await.map_err(located)?.len();
        }
        if let (DocumentKind::Catalog, Some(Some(services))) = (kind, services.get(index)) {
            // Recorded next to the catalog just written (the catalog type is frozen).
            let cmd = Command::SetCatalogServices {
                os: id.clone(),
                services: services.clone(),
            };
            out.events += submit(ctx, cmd).await.map_err(located)?.len();
        }
        if let (DocumentKind::Datasets, Some(Some(shared))) = (kind, storage.get(index)) {
            // Recorded next to the category just registered (its type is frozen).
            out.events += set_dataset_storage(ctx, id.clone(), shared.clone())
                .await
                .map_err(located)?;
        }
        if let (DocumentKind::Environment, Some(Some(timeout_ms))) = (kind, idle.get(index)) {
            // Recorded next to the version just written (the spec type is frozen).
            let cmd = Command::SetIdleTimeout {
                env_id: id.clone(),
                timeout_ms: *timeout_ms,
            };
            out.events += submit(ctx, cmd).await.map_err(located)?.len();
        }
        let version = if kind == DocumentKind::Environment {
            env_version(ctx, &id)
        } else {
            None
        };
        out.documents.push(AppliedDocument {
            index,
            kind,
            id,
            action,
            version,
        });
    }
    Ok(out)
}
