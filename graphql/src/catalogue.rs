//! What environments may name, for everyone who writes them: each os with its base
//! image, languages and library names, without the install commands (those stay in
//! the admin-only `catalogs`).

use async_graphql::{Context, Object, Result, SimpleObject};

use crate::auth::require_not_agent;
use crate::error::{ApiError, Gql};
use crate::query::live;
use crate::types::config::Language;

/// One os of the library catalog, as environments may name it.
#[derive(SimpleObject, Clone, Debug)]
pub struct OsLibraries {
    pub os: String,
    /// `null`: the default base image for the os.
    pub base_image: Option<String>,
    /// Each language with the names of its libraries, sorted.
    pub languages: Vec<Language>,
}

#[derive(Default)]
pub struct CatalogueQuery;

#[Object]
impl CatalogueQuery {
    /// The operating systems, languages and library names environments may use (one
    /// os with `os`; unknown: `NOT_FOUND`). Users, admins and auditors.
    async fn available_libraries(
        &self,
        ctx: &Context<'_>,
        os: Option<String>,
    ) -> Result<Vec<OsLibraries>> {
        live(ctx, |r| {
            require_not_agent(r.actor, "the library catalog")?;
            if let Some(os) = &os {
                if !r.state.catalogs.contains_key(os) {
                    return Err(ApiError::not_found("catalog", os));
                }
            }
            Ok(r.state
                .catalogs
                .values()
                .filter(|c| os.as_ref().is_none_or(|o| *o == c.os))
                .map(|c| OsLibraries {
                    os: c.os.clone(),
                    base_image: c.base_image.clone(),
                    languages: c
                        .specifications
                        .iter()
                        .map(|(name, lang)| Language {
                            name: name.clone(),
                            libraries: lang.libraries.keys().cloned().collect(),
                        })
                        .collect(),
                })
                .collect())
        })
        .gql(ctx)
    }
}
