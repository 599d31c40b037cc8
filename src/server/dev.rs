//! `dcloud dev`: the server in dev mode with data in `./.dcloud`, the starter library
//! catalog and templates on first start, and a local agent in the same process (Docker,
//! or simulated nodes).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use dcloud_projections::config::{self, parse_document, Document, Format};
use dcloud_projections::{Actor, Command};
use tracing::info;

use super::args::{announce, forget_server_file, runtime, serve_until_signal};
use super::{start, AppState, ServerConfig, ADMIN_TOKEN_FILE};

const STARTER_CATALOG: &str = include_str!("starter/catalog.json");
const STARTER_TEMPLATES: &str = include_str!("starter/templates.json");

/// Which driver the local agent runs containers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DevDriver {
    Docker,
    Sim,
}

/// `dcloud dev` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct DevArgs {
    /// How the local agent runs containers (`sim`: no Docker needed).
    #[arg(long, value_enum, default_value_t = DevDriver::Docker)]
    pub driver: DevDriver,
    /// Simulated nodes to run with `--driver sim`.
    #[arg(long, default_value_t = 1)]
    pub sim_nodes: u32,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:7070")]
    pub listen: SocketAddr,
    /// Data directory.
    #[arg(long, default_value = ".dcloud")]
    pub data: PathBuf,
}

/// The starter documents (library catalogs for `ubuntu` and `ubuntu-cuda`, and the
/// templates `notebook-cpu`, `pytorch-1gpu`, `tensorflow-1gpu`), parsed as any upload is.
pub fn starter_documents() -> anyhow::Result<Vec<Document>> {
    let mut docs = Vec::new();
    for (name, text) in [
        ("catalog.json", STARTER_CATALOG),
        ("templates.json", STARTER_TEMPLATES),
    ] {
        let parsed = parse_document(text, Format::Json).map_err(|errors| {
            let list: Vec<String> = errors
                .iter()
                .map(|e| format!("{}: {}", e.path, e.message))
                .collect();
            anyhow::anyhow!("starter document {name} is invalid: {}", list.join("; "))
        })?;
        docs.extend(parsed);
    }
    Ok(docs)
}

/// Applies the starter documents when the state has neither catalogs nor templates.
/// Returns whether it did.
pub async fn load_starter(app: &AppState) -> anyhow::Result<bool> {
    let empty = {
        let s = app.writer().state();
        s.catalogs.is_empty() && s.templates.is_empty()
    };
    if !empty {
        return Ok(false);
    }
    // The templates' `idle-timeout`s, in the order of their documents.
    let mut idle = config::idle_timeouts(STARTER_TEMPLATES, Format::Json)
        .map_err(|e| anyhow::anyhow!("starter templates: {e:?}"))?
        .into_iter();
    let mut services = config::catalog_services(STARTER_CATALOG, Format::Json)
        .map_err(|e| anyhow::anyhow!("starter catalog: {e:?}"))?
        .into_iter();
    for doc in starter_documents()? {
        let mut then = None;
        let cmd = match doc {
            Document::Catalog(catalog) => {
                if let Some(Some(services)) = services.next() {
                    then = Some(Command::SetCatalogServices {
                        os: catalog.os.clone(),
                        services,
                    });
                }
                Command::UpsertCatalog { catalog }
            }
            Document::Template(spec) => Command::SaveTemplate {
                name: spec.name.clone(),
                spec,
                idle_timeout_ms: idle.next().flatten(),
            },
            other => anyhow::bail!("unexpected starter document {other:?}"),
        };
        for cmd in std::iter::once(cmd).chain(then) {
            app.backend()
                .submit_cmd(cmd, Actor::system(), "dev:starter".into())
                .await
                .context("loading the starter catalog and templates")?;
        }
    }
    info!("starter catalog and templates loaded");
    Ok(true)
}

/// `dcloud dev`: server (dev mode) + starter documents + a local agent.
pub fn run_dev(args: DevArgs) -> anyhow::Result<ExitCode> {
    crate::init_tracing("info");
    let mut config = ServerConfig::new(&args.data);
    config.listen = args.listen;
    config.dev_mode = true;
    runtime()?.block_on(async move {
        let server = start(config.clone()).await?;
        load_starter(server.app()).await?;
        let token = match &server.admin_token {
            Some(t) => t.clone(),
            None => {
                let path = config.data.join(ADMIN_TOKEN_FILE);
                std::fs::read_to_string(&path)
                    .with_context(|| format!("reading {}", path.display()))?
                    .trim()
                    .to_string()
            }
        };
        announce(&server, &config.data, Some(&token));
        let driver = match args.driver {
            DevDriver::Docker => "docker",
            DevDriver::Sim => "sim",
        };
        let agent = crate::agent_cmd::spawn_local(
            server.url(),
            token,
            driver,
            args.sim_nodes as usize,
        )
        .context("starting the local agent")?;
        tokio::spawn(async move {
            match agent.await {
                Ok(Ok(())) => info!("local agent stopped"),
                Ok(Err(e)) => tracing::error!(
                    error = %format!("{e:#}"),
                    "the local agent stopped; the server keeps running (try `dcloud dev --driver sim` without Docker)"
                ),
                Err(e) => tracing::error!(error = %e, "the local agent task failed"),
            }
        });
        info!(driver, "local agent started");
        let served = serve_until_signal(server).await;
        forget_server_file(&config.data);
        served?;
        Ok(ExitCode::SUCCESS)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starter_documents_hold_what_the_original_offered() {
        let docs = starter_documents().expect("starter documents parse");
        let catalogs: Vec<_> = docs
            .iter()
            .filter_map(|d| match d {
                Document::Catalog(c) => Some(c),
                _ => None,
            })
            .collect();
        let oses: Vec<&str> = catalogs.iter().map(|c| c.os.as_str()).collect();
        assert_eq!(oses, ["ubuntu", "ubuntu-cuda"]);
        let templates: Vec<&str> = docs
            .iter()
            .filter_map(|d| match d {
                Document::Template(t) => Some(t.name.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(
            templates,
            ["notebook-cpu", "pytorch-1gpu", "tensorflow-1gpu"]
        );
        let debug = format!("{catalogs:?}");
        for lib in [
            "numpy",
            "pandas",
            "scikit-learn",
            "tensorflow",
            "pytorch",
            "jupyter-notebook",
            "express",
            "golang",
            "nvidia/cuda:12.4.1-runtime-ubuntu22.04",
        ] {
            assert!(debug.contains(lib), "starter catalog lacks {lib}");
        }
    }
}
