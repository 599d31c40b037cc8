//! What an agent is told to do: `Assignment`s (run, stop, stopped, lost), each with
//! the sequence number to resume from and, to run, everything the agent needs
//! (image tag, Dockerfile, resources, GPUs, ports, storage, datasets, service
//! endpoints as environment variables, container labels).

use std::collections::HashMap;

use async_graphql::{Enum, SimpleObject};
use dcloud_events::{Envelope, Event};
use dcloud_projections::config::recipe_for;
use dcloud_projections::state::{dataset_category, dataset_keys, Deployment};
use dcloud_projections::{Settings, State};

use super::common::{DeploymentStatus, Label, Resources};
use super::config::{PortPublish, StorageMount};

#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
pub enum AssignmentKind {
    /// Build (or reuse) the image and run the container.
    Run,
    /// Stop the container (grace period), remove it, report `CONTAINER_REMOVED`.
    Stop,
    /// The deployment is over: remove anything left of it (idempotent).
    Stopped,
    /// The node was considered lost and the deployment moved away: remove it here.
    Lost,
}

#[derive(SimpleObject, Clone, Debug, PartialEq, Eq)]
pub struct EnvVar {
    pub name: String,
    pub value: String,
}

/// Everything an agent needs to run one deployment.
#[derive(SimpleObject, Clone, Debug)]
pub struct RunSpec {
    pub deployment_id: String,
    pub environment_id: String,
    pub environment_version: u32,
    pub environment_name: String,
    /// Tag to build or reuse (the recipe's content hash, chosen when it was scheduled).
    pub image: String,
    pub base_image: String,
    /// `FROM base` then one `RUN` per step; empty when `recipeError` is set.
    pub dockerfile: String,
    /// Number of `RUN` steps in the Dockerfile.
    pub steps: u32,
    /// Why no recipe could be made from today's catalog (report it as a failed build).
    pub recipe_error: Option<String>,
    /// CPU and memory limits, GPUs asked for, `resources.storage`.
    pub resources: Resources,
    /// GPU device uuids to pass to the engine.
    pub gpus: Vec<String>,
    pub ports: Vec<PortPublish>,
    pub storage: Vec<StorageMount>,
    /// Dataset keys (`category/db/dataset@version`) to mount read-only from the
    /// node's dataset root.
    pub datasets: Vec<String>,
    /// Datasets on shared storage, to mount read-only from it.
    pub shared_datasets: Vec<SharedDataset>,
    /// Registered service endpoints and the deployment's own ids.
    pub env: Vec<EnvVar>,
    /// Container labels (`dcloud.deployment`, `dcloud.node`, `dcloud.environment`).
    pub labels: Vec<Label>,
    /// The service the container runs, when one of its libraries declares one: run
    /// its command, and report the container running only once it is ready.
    pub service: Option<RunService>,
}

/// A dataset on shared storage: mount the `local` volume these options describe and
/// take the folder `db/dataset@version` of it.
#[derive(SimpleObject, Clone, Debug, PartialEq, Eq)]
pub struct SharedDataset {
    /// `category/db/dataset@version`.
    pub key: String,
    /// The volume's `type` (`nfs`, `nfs4`, `cifs`, `none`).
    pub fs_type: String,
    pub device: String,
    /// The volume's `o`.
    pub options: String,
}

/// A library's service, as the agent runs and checks it.
#[derive(SimpleObject, Clone, Debug, PartialEq, Eq)]
pub struct RunService {
    /// The library that declares it (`jupyter-notebook`).
    pub name: String,
    /// The container's command.
    pub command: Vec<String>,
    /// The port it listens on inside the container.
    pub port: u16,
    /// Ready when a GET of this path answers 2xx or 3xx; null: when a TCP connect does.
    pub ready_http_path: Option<String>,
    /// The variable that carries the deployment's token (already in `env`).
    pub token_env: Option<String>,
}

/// The service of a spec: the first of its libraries (in the document's order) whose
/// catalog declares one.
pub(crate) fn declared_service<'a>(
    state: &'a State,
    spec: &dcloud_events::model::EnvironmentSpec,
) -> Option<&'a dcloud_events::model::LibraryService> {
    let services = state.catalog_services.get(&spec.os)?;
    spec.languages
        .iter()
        .flat_map(|l| l.libraries.iter())
        .find_map(|lib| services.iter().find(|s| &s.library == lib))
}

/// Puts the deployment's service token into the run spec's environment (the backend
/// derives it; it is never in the log).
pub(crate) fn add_service_token(a: &mut Assignment, backend: &dyn crate::Backend) {
    let Some(run) = a.run.as_mut() else { return };
    let Some(name) = run.service.as_ref().and_then(|s| s.token_env.clone()) else {
        return;
    };
    if let Some(token) = backend.service_token(&run.deployment_id) {
        run.env.retain(|v| v.name != name);
        run.env.push(EnvVar { name, value: token });
    }
}

#[derive(SimpleObject, Clone, Debug)]
pub struct Assignment {
    /// The event this came from: resume a subscription with `after: seq`.
    pub seq: u64,
    pub kind: AssignmentKind,
    pub deployment_id: String,
    pub node_id: String,
    /// The deployment's status now (during catch-up it may be past this assignment).
    pub status: Option<DeploymentStatus>,
    /// Set for `RUN`.
    pub run: Option<RunSpec>,
}

/// `NAME` of a service as an environment variable prefix (`dfs-server` → `DFS_SERVER`).
fn env_name(service: &str) -> String {
    let mut s: String = service
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    if s.starts_with(|c: char| c.is_ascii_digit()) {
        s.insert(0, '_');
    }
    s
}

/// The environment variables of a container: `DCLOUD_DEPLOYMENT_ID`, `DCLOUD_NODE_ID`,
/// `DCLOUD_ENVIRONMENT_ID`, then per registered, unexpired service `<NAME>_HOST`,
/// `<NAME>_PORT` (its first endpoint) and `<NAME>_ENDPOINTS` (`ip:port,…`).
pub(crate) fn container_env(
    state: &State,
    d: &Deployment,
    node_id: &str,
    now_ms: i64,
) -> Vec<EnvVar> {
    let var = |name: String, value: String| EnvVar { name, value };
    let mut env = vec![
        var("DCLOUD_DEPLOYMENT_ID".into(), d.id.clone()),
        var("DCLOUD_NODE_ID".into(), node_id.to_string()),
        var("DCLOUD_ENVIRONMENT_ID".into(), d.env_id.clone()),
    ];
    for s in state.services.values().filter(|s| !s.is_expired(now_ms)) {
        let r = &s.registration;
        let Some(first) = r.endpoints.first() else {
            continue;
        };
        let prefix = env_name(&r.name);
        env.push(var(format!("{prefix}_HOST"), first.ip.clone()));
        env.push(var(format!("{prefix}_PORT"), first.port.to_string()));
        let all: Vec<String> = r
            .endpoints
            .iter()
            .map(|e| format!("{}:{}", e.ip, e.port))
            .collect();
        env.push(var(format!("{prefix}_ENDPOINTS"), all.join(",")));
    }
    env
}

/// The run spec of `d` on `node_id`, from the version it runs and today's catalog.
pub(crate) fn run_spec(
    state: &State,
    d: &Deployment,
    node_id: &str,
    settings: &Settings,
    now_ms: i64,
) -> Option<RunSpec> {
    let spec = state.deployment_spec(d)?;
    let recipe = recipe_for(spec, &state.catalogs, &settings.default_base_images);
    let (base_image, dockerfile, steps, recipe_error, tag) = match recipe {
        Ok(r) => (
            r.base_image,
            r.dockerfile,
            r.steps.len() as u32,
            None,
            Some(r.tag),
        ),
        Err(errors) => {
            let why = errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ");
            (String::new(), String::new(), 0, Some(why), None)
        }
    };
    let label = |k: &str, v: &str| Label {
        key: k.into(),
        value: v.into(),
    };
    Some(RunSpec {
        deployment_id: d.id.clone(),
        environment_id: d.env_id.clone(),
        environment_version: d.env_version,
        environment_name: spec.name.clone(),
        image: d.image.clone().or(tag).unwrap_or_default(),
        base_image,
        dockerfile,
        steps,
        recipe_error,
        resources: (&spec.resources).into(),
        gpus: d.gpus.clone(),
        ports: spec.ports.iter().map(Into::into).collect(),
        storage: spec.storage.iter().map(Into::into).collect(),
        datasets: dataset_keys(spec)
            .into_iter()
            .filter(|k| !state.dataset_storage.contains_key(dataset_category(k)))
            .collect(),
        shared_datasets: dataset_keys(spec)
            .into_iter()
            .filter_map(|key| {
                let shared = state.dataset_storage.get(dataset_category(&key))?;
                Some(SharedDataset {
                    key,
                    fs_type: shared.fs_type.clone(),
                    device: shared.device.clone(),
                    options: shared.options.clone(),
                })
            })
            .collect(),
        env: container_env(state, d, node_id, now_ms),
        labels: vec![
            label("dcloud.deployment", &d.id),
            label("dcloud.node", node_id),
            label("dcloud.environment", &d.env_id),
        ],
        service: declared_service(state, spec).map(|s| RunService {
            name: s.library.clone(),
            command: s.command.clone(),
            port: s.port,
            ready_http_path: s.http_path.clone(),
            token_env: s.token_env.clone(),
        }),
    })
}

/// Follows one node's assignments through the log. Remembers which node each
/// deployment was placed on as the events go by, so a stop is sent to the node that
/// held the deployment at that point, even when the live state has moved on.
pub(crate) struct AssignmentTracker {
    node_id: String,
    placed: HashMap<String, Option<String>>,
    settings: Settings,
}

impl AssignmentTracker {
    pub(crate) fn new(node_id: String, settings: Settings) -> Self {
        AssignmentTracker {
            node_id,
            placed: HashMap::new(),
            settings,
        }
    }

    fn node_of(&self, state: &State, deployment: &str) -> Option<String> {
        match self.placed.get(deployment) {
            Some(node) => node.clone(),
            None => state.deployment(deployment).and_then(|d| d.node.clone()),
        }
    }

    /// The assignment `env` makes for this node, if any.
    pub(crate) fn next(
        &mut self,
        state: &State,
        env: &Envelope,
        now_ms: i64,
    ) -> Option<Assignment> {
        let mine = |node: &str| node == self.node_id;
        let (kind, id) = match &env.event {
            Event::DeploymentScheduled {
                deployment_id,
                node_id,
                ..
            } => {
                self.placed
                    .insert(deployment_id.clone(), Some(node_id.clone()));
                if !mine(node_id) {
                    return None;
                }
                (AssignmentKind::Run, deployment_id)
            }
            Event::DeploymentLost {
                deployment_id,
                node_id,
            } => {
                self.placed.insert(deployment_id.clone(), None);
                if !mine(node_id) {
                    return None;
                }
                (AssignmentKind::Lost, deployment_id)
            }
            Event::DeploymentStopRequested { deployment_id } => {
                self.node_of(state, deployment_id).filter(|n| mine(n))?;
                (AssignmentKind::Stop, deployment_id)
            }
            Event::DeploymentStopped { deployment_id } => {
                self.node_of(state, deployment_id).filter(|n| mine(n))?;
                (AssignmentKind::Stopped, deployment_id)
            }
            _ => return None,
        };
        let d = state.deployment(id);
        let run = match (kind, d) {
            (AssignmentKind::Run, Some(d)) => {
                run_spec(state, d, &self.node_id, &self.settings, now_ms)
            }
            _ => None,
        };
        Some(Assignment {
            seq: env.seq,
            kind,
            deployment_id: id.clone(),
            node_id: self.node_id.clone(),
            status: d.map(|d| d.status.into()),
            run,
        })
    }
}

/// What the node holds now, for reconcile: `RUN` for each deployment placed on it,
/// `STOP` for those being stopped. Each carries `seq`.
pub(crate) fn current_assignments(
    state: &State,
    node_id: &str,
    settings: &Settings,
    now_ms: i64,
) -> Vec<Assignment> {
    let Some(node) = state.node(node_id) else {
        return Vec::new();
    };
    let seq = state.last_seq();
    node.deployments
        .iter()
        .filter_map(|id| state.deployment(id))
        .map(|d| {
            let stopping = d.status == dcloud_projections::DeploymentStatus::Stopping;
            Assignment {
                seq,
                kind: if stopping {
                    AssignmentKind::Stop
                } else {
                    AssignmentKind::Run
                },
                deployment_id: d.id.clone(),
                node_id: node_id.to_string(),
                status: Some(d.status.into()),
                run: if stopping {
                    None
                } else {
                    run_spec(state, d, node_id, settings, now_ms)
                },
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_names_become_variable_prefixes() {
        assert_eq!(env_name("dfs-server"), "DFS_SERVER");
        assert_eq!(env_name("broker.v2"), "BROKER_V2");
        assert_eq!(env_name("9lives"), "_9LIVES");
    }
}
