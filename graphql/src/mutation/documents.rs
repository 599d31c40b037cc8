//! Document mutations: `apply` (any document kind, or a list), environments (create,
//! update with an expected version, deactivate, delete, from a template), templates,
//! library catalogs, datasets and services.

use async_graphql::{Context, Object, Result, ID};
use dcloud_projections::config;
use dcloud_projections::Command;

use super::apply::{apply, invalid, ApplyResult};
use super::inputs::{DocumentFormat, TemplateOverrides};
use super::submit;
use crate::error::{ApiError, Gql};
use crate::query::live;
use crate::schema::{backend, fresh_id};
use crate::types::config::{
    dataset_catalog, CatalogObj, DatasetCategory, EnvironmentObj, ServiceObj, TemplateObj,
};

fn environment(ctx: &Context<'_>, id: &str) -> Result<EnvironmentObj, ApiError> {
    live(ctx, |r| r.environment(id))
}

#[derive(Default)]
pub struct DocumentMutation;

#[Object]
impl DocumentMutation {
    /// Applies JSON or YAML text holding any document kind, or a list of them. Each
    /// becomes its command: an environment creates one, or updates the caller's live
    /// environment of the same `env-name`; a template is saved; a catalog upserted; a
    /// service registered; a dataset category registered. Nothing is written when any
    /// document is invalid; a refusal part-way leaves the documents before it applied.
    async fn apply(
        &self,
        ctx: &Context<'_>,
        document: String,
        format: Option<DocumentFormat>,
    ) -> Result<ApplyResult> {
        apply(ctx, &document, format.unwrap_or_default())
            .await
            .gql(ctx)
    }

    /// Creates an environment from one environment document.
    async fn create_environment(
        &self,
        ctx: &Context<'_>,
        document: String,
        format: Option<DocumentFormat>,
    ) -> Result<EnvironmentObj> {
        let run = async {
            let spec = config::parse_environment(&document, format.unwrap_or_default().into())
                .map_err(invalid)?;
            let env_id = fresh_id(ctx)?;
            submit(
                ctx,
                Command::CreateEnvironment {
                    env_id: env_id.clone(),
                    spec,
                },
            )
            .await?;
            environment(ctx, &env_id)
        };
        run.await.gql(ctx)
    }

    /// Writes a new version of environment `id`; refused with `CONFLICT` unless
    /// `expectedVersion` is its current version.
    async fn update_environment(
        &self,
        ctx: &Context<'_>,
        id: ID,
        expected_version: u32,
        document: String,
        format: Option<DocumentFormat>,
    ) -> Result<EnvironmentObj> {
        let run = async {
            let spec = config::parse_environment(&document, format.unwrap_or_default().into())
                .map_err(invalid)?;
            let cmd = Command::UpdateEnvironment {
                env_id: id.to_string(),
                expected_version: u64::from(expected_version),
                spec,
            };
            submit(ctx, cmd).await?;
            environment(ctx, &id)
        };
        run.await.gql(ctx)
    }

    /// New deployments of it are refused; running ones go on.
    async fn deactivate_environment(&self, ctx: &Context<'_>, id: ID) -> Result<EnvironmentObj> {
        let run = async {
            submit(
                ctx,
                Command::DeactivateEnvironment {
                    env_id: id.to_string(),
                },
            )
            .await?;
            environment(ctx, &id)
        };
        run.await.gql(ctx)
    }

    /// Refused while it has live deployments. Its versions stay for history.
    async fn delete_environment(&self, ctx: &Context<'_>, id: ID) -> Result<EnvironmentObj> {
        let run = async {
            submit(
                ctx,
                Command::DeleteEnvironment {
                    env_id: id.to_string(),
                },
            )
            .await?;
            environment(ctx, &id)
        };
        run.await.gql(ctx)
    }

    /// Saves (creates or replaces) a template from a template or environment document;
    /// its name is `name`, else the document's `template-name`/`env-name`. Admins.
    async fn save_template(
        &self,
        ctx: &Context<'_>,
        document: String,
        format: Option<DocumentFormat>,
        name: Option<String>,
    ) -> Result<TemplateObj> {
        let run = async {
            let format = format.unwrap_or_default().into();
            let spec = config::parse_template(&document, format).map_err(invalid)?;
            let idle = config::idle_timeouts(&document, format).map_err(invalid)?;
            let name = name.unwrap_or_else(|| spec.name.clone());
            submit(
                ctx,
                Command::SaveTemplate {
                    name: name.clone(),
                    spec,
                    idle_timeout_ms: idle.first().copied().flatten(),
                },
            )
            .await?;
            live(ctx, |r| {
                let t = r
                    .state
                    .templates
                    .get(&name)
                    .ok_or_else(|| ApiError::not_found("template", &name))?;
                Ok(TemplateObj(t.clone()))
            })
        };
        run.await.gql(ctx)
    }

    async fn delete_template(&self, ctx: &Context<'_>, name: String) -> Result<bool> {
        submit(ctx, Command::DeleteTemplate { name })
            .await
            .map(|_| true)
            .gql(ctx)
    }

    /// A new environment, owned by the caller, from template `template` with
    /// `overrides`.
    async fn create_from_template(
        &self,
        ctx: &Context<'_>,
        template: String,
        overrides: Option<TemplateOverrides>,
    ) -> Result<EnvironmentObj> {
        let run = async {
            let base = live(ctx, |r| {
                let t = r
                    .state
                    .templates
                    .get(&template)
                    .ok_or_else(|| ApiError::not_found("template", &template))?;
                Ok(t.spec.clone())
            })?;
            let overrides = overrides
                .unwrap_or_default()
                .into_domain(&base.resources)
                .map_err(invalid)?;
            let errors = config::validate_environment(&overrides.apply_to(&base));
            if !errors.is_empty() {
                return Err(invalid(errors));
            }
            let env_id = fresh_id(ctx)?;
            submit(
                ctx,
                Command::CreateFromTemplate {
                    env_id: env_id.clone(),
                    template,
                    overrides,
                },
            )
            .await?;
            environment(ctx, &env_id)
        };
        run.await.gql(ctx)
    }

    /// Creates or replaces the library catalog of the document's `os`. Admins.
    async fn upsert_catalog(
        &self,
        ctx: &Context<'_>,
        document: String,
        format: Option<DocumentFormat>,
    ) -> Result<CatalogObj> {
        let run = async {
            let format = format.unwrap_or_default().into();
            let catalog = config::parse_catalog(&document, format).map_err(invalid)?;
            let services = config::catalog_services(&document, format).map_err(invalid)?;
            let os = catalog.os.clone();
            submit(ctx, Command::UpsertCatalog { catalog }).await?;
            if let Some(Some(services)) = services.into_iter().next() {
                let cmd = Command::SetCatalogServices {
                    os: os.clone(),
                    services,
                };
                submit(ctx, cmd).await?;
            }
            live(ctx, |r| {
                let c = r
                    .state
                    .catalogs
                    .get(&os)
                    .ok_or_else(|| ApiError::not_found("catalog", &os))?;
                Ok(CatalogObj(c.clone()))
            })
        };
        run.await.gql(ctx)
    }

    /// Merges a dataset category document into the dataset catalog (admins and the
    /// `dfs-server` service); returns the whole catalog.
    async fn register_datasets(
        &self,
        ctx: &Context<'_>,
        document: String,
        format: Option<DocumentFormat>,
    ) -> Result<Vec<DatasetCategory>> {
        let run = async {
            let format = format.unwrap_or_default().into();
            let category = config::parse_dataset_category(&document, format).map_err(invalid)?;
            let storage = config::dataset_storage(&document, format).map_err(invalid)?;
            let name = category.category.clone();
            submit(ctx, Command::RegisterDatasets { category }).await?;
            if let Some(Some(shared)) = storage.into_iter().next() {
                super::apply::set_dataset_storage(ctx, name, shared).await?;
            }
            live(ctx, |r| Ok(dataset_catalog(r.state)))
        };
        run.await.gql(ctx)
    }

    async fn remove_dataset(
        &self,
        ctx: &Context<'_>,
        category: String,
        db: String,
        dataset: String,
        version: String,
    ) -> Result<bool> {
        submit(
            ctx,
            Command::RemoveDataset {
                category,
                db,
                dataset,
                version,
            },
        )
        .await
        .map(|_| true)
        .gql(ctx)
    }

    /// Registers (or replaces) a service from its document (the service itself, or an
    /// admin).
    async fn register_service(
        &self,
        ctx: &Context<'_>,
        document: String,
        format: Option<DocumentFormat>,
    ) -> Result<ServiceObj> {
        let run = async {
            let service = config::parse_service(&document, format.unwrap_or_default().into())
                .map_err(invalid)?;
            let name = service.name.clone();
            submit(ctx, Command::RegisterService { service }).await?;
            service_obj(ctx, &name)
        };
        run.await.gql(ctx)
    }

    /// Keeps a service with a TTL registered.
    async fn refresh_service(&self, ctx: &Context<'_>, name: String) -> Result<ServiceObj> {
        let run = async {
            submit(ctx, Command::RefreshService { name: name.clone() }).await?;
            service_obj(ctx, &name)
        };
        run.await.gql(ctx)
    }

    async fn deregister_service(&self, ctx: &Context<'_>, name: String) -> Result<bool> {
        submit(ctx, Command::DeregisterService { name })
            .await
            .map(|_| true)
            .gql(ctx)
    }
}

fn service_obj(ctx: &Context<'_>, name: &str) -> Result<ServiceObj, ApiError> {
    let backend = backend(ctx)?;
    let now_ms = backend.now_ms();
    let state = backend.state();
    let s = state
        .services
        .get(name)
        .ok_or_else(|| ApiError::not_found("service", name))?;
    Ok(ServiceObj {
        service: s.clone(),
        now_ms,
    })
}
