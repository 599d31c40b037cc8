//! The driver contract: what the agent asks of a container engine (an `Assignment` to
//! run, `Report`s back, what is `Observed`), shared by the Docker and simulated drivers.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use dcloud_events::model::{ContainerUsage, PortPublish, Resources, StorageMount};
use dcloud_events::Event;
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::error::AgentError;
use crate::session::{unsupported, ExecRequest, ExecSession, LogLines, LogOptions};

/// Label naming the deployment a container runs.
pub const LABEL_DEPLOYMENT: &str = "dcloud.deployment";
/// Label naming the node (agent) that owns a container.
pub const LABEL_NODE: &str = "dcloud.node";
/// Label naming the environment a container (or persistent volume) belongs to.
pub const LABEL_ENVIRONMENT: &str = "dcloud.environment";
/// Label naming the image tag (recipe hash) a container was created from: `docker ps`
/// shows an image id instead once another build (another agent on the same engine)
/// moves the tag, so the tag is kept here.
pub const LABEL_IMAGE: &str = "dcloud.image";
/// Label carrying a container's readiness check ([`Readiness::label`]): its start is
/// reported only once the check passes.
pub const LABEL_READY: &str = "dcloud.ready";
/// Label naming the cluster (the control plane's log) a container or volume belongs
/// to: an agent touches only what carries its own cluster's id, so the agents of two
/// clusters on one engine never remove each other's containers, even with one node id.
pub const LABEL_CLUSTER: &str = "dcloud.cluster";
/// Where datasets appear inside a container: `/datasets/<category>/<db>/<dataset>@<version>`.
pub const DATASET_MOUNT_ROOT: &str = "/datasets";

/// Where reports go: `(deployment_id, report)`.
pub type ReportSender = mpsc::Sender<(String, Report)>;

/// One deployment this node must run, as the control plane decided it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignment {
    pub deployment_id: String,
    pub env_id: String,
    pub node_id: String,
    /// Image tag, the content hash of the recipe: identical recipes share one image.
    pub image_tag: String,
    /// The recipe, built as the only file of the build context.
    pub dockerfile: String,
    /// Number of build steps in the recipe (for progress reports).
    pub steps: u32,
    pub resources: Resources,
    /// GPU device uuids assigned by the scheduler.
    pub gpus: Vec<String>,
    pub ports: Vec<PortPublish>,
    pub storage: Vec<StorageMount>,
    /// Dataset keys `category/db/dataset@version`, mounted read-only from the node's
    /// dataset root.
    pub datasets: Vec<String>,
    /// Datasets on shared storage, mounted read-only from it.
    #[serde(default)]
    pub shared_datasets: Vec<SharedDataset>,
    /// Environment variables for the container (service endpoints).
    pub env: BTreeMap<String, String>,
    /// Overrides the image's command.
    pub command: Option<Vec<String>>,
    /// The declared service's readiness check: the container counts as started only
    /// once it passes.
    pub ready: Option<Readiness>,
}

/// A dataset on shared storage: the Docker `local` volume options of its category's
/// storage (`type`, `device`, `o`); the dataset is the folder `db/dataset@version`
/// under `device`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SharedDataset {
    /// `category/db/dataset@version`.
    pub key: String,
    pub fs_type: String,
    pub device: String,
    pub options: String,
}

impl SharedDataset {
    /// What the volume mounts: the category's device and the dataset's folder under it
    /// (`:/export/vision` + `coco/val@2017`).
    pub fn device_path(&self) -> Result<String, String> {
        let rel = dataset_relative_path(&self.key)?;
        let mut parts = rel.iter().skip(1).map(|c| c.to_string_lossy().into_owned());
        let sub = parts.by_ref().collect::<Vec<_>>().join("/");
        Ok(format!("{}/{sub}", self.device.trim_end_matches('/')))
    }

    /// The volume's name: `dcloud-ds-` and a hash of what it mounts, so one volume
    /// serves every container of this dataset on the node.
    pub fn volume_name(&self) -> Result<String, String> {
        let device = self.device_path()?;
        let mut h = blake3::Hasher::new();
        for part in [
            self.fs_type.as_str(),
            device.as_str(),
            self.options.as_str(),
        ] {
            h.update(part.as_bytes());
            h.update(b"\0");
        }
        Ok(format!("dcloud-ds-{}", &h.finalize().to_hex()[..16]))
    }
}

/// How full one storage target of a running deployment is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MeasuredVolume {
    pub deployment_id: String,
    /// The mount target inside the container.
    pub target: String,
    pub used_bytes: u64,
    /// The engine holds it to the size asked for.
    pub enforced: bool,
}

/// A service's readiness check: a TCP connect to `port` inside the container, or with
/// `http_path` an HTTP GET answering 2xx or 3xx.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Readiness {
    pub port: u16,
    pub http_path: Option<String>,
}

impl Readiness {
    /// `tcp:PORT` or `http:PORT:PATH`, as the container's [`LABEL_READY`] label.
    pub fn label(&self) -> String {
        match &self.http_path {
            Some(path) => format!("http:{}:{path}", self.port),
            None => format!("tcp:{}", self.port),
        }
    }

    /// Reads [`Readiness::label`] back.
    pub fn parse(label: &str) -> Option<Readiness> {
        if let Some(port) = label.strip_prefix("tcp:") {
            return Some(Readiness {
                port: port.parse().ok()?,
                http_path: None,
            });
        }
        let (port, path) = label.strip_prefix("http:")?.split_once(':')?;
        Some(Readiness {
            port: port.parse().ok()?,
            http_path: Some(path.to_string()),
        })
    }
}

/// What a driver tells the control plane about one deployment. Each maps onto one
/// event of `dcloud_events::Event` (see [`Report::into_event`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Report {
    BuildStarted {
        steps: u32,
    },
    BuildProgress {
        step: u32,
        steps: u32,
    },
    BuildFailed {
        step: u32,
        command: String,
        output_tail: String,
    },
    ImageReady {
        cached: bool,
    },
    Created {
        container_id: String,
    },
    Started,
    Exited {
        code: i64,
    },
    OomKilled,
    Removed,
    Failed {
        message: String,
    },
    /// A process inside the container was OOM-killed; the container runs on.
    OomWarning {
        message: String,
    },
    /// The last output of the main process, sent just before `Exited`.
    Output {
        tail: String,
    },
    /// The agent removed this deployment's container from `node_id`, where the
    /// deployment is no longer assigned (not a report about its current run).
    StaleRemoved {
        node_id: String,
        container_id: String,
    },
}

impl Report {
    /// The event recording this report; `image` is the assignment's image tag.
    pub fn into_event(self, deployment_id: String, image: &str) -> Event {
        match self {
            Report::BuildStarted { steps } => Event::ImageBuildStarted {
                deployment_id,
                image: image.to_string(),
                steps,
            },
            Report::BuildProgress { step, steps } => Event::ImageBuildProgress {
                deployment_id,
                step,
                steps,
            },
            Report::BuildFailed {
                step,
                command,
                output_tail,
            } => Event::ImageBuildFailed {
                deployment_id,
                step,
                command,
                output_tail,
            },
            Report::ImageReady { cached } => Event::ImageReady {
                deployment_id,
                image: image.to_string(),
                cached,
            },
            Report::Created { container_id } => Event::ContainerCreated {
                deployment_id,
                container_id,
            },
            Report::Started => Event::ContainerStarted { deployment_id },
            Report::Exited { code } => Event::ContainerExited {
                deployment_id,
                code,
            },
            Report::OomKilled => Event::ContainerOomKilled { deployment_id },
            Report::Removed => Event::ContainerRemoved { deployment_id },
            Report::Failed { message } => Event::ContainerFailed {
                deployment_id,
                message,
            },
            Report::OomWarning { message } => Event::ContainerOomWarning {
                deployment_id,
                message,
            },
            Report::Output { tail } => Event::ContainerOutput {
                deployment_id,
                output_tail: tail,
            },
            Report::StaleRemoved {
                node_id,
                container_id,
            } => Event::StaleContainerRemoved {
                deployment_id,
                node_id,
                container_id,
            },
        }
    }
}

/// A container the engine holds for this node (found by the node label).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    /// Empty when the container carries our node label but no deployment label.
    pub deployment_id: String,
    pub container_id: String,
    /// Container name without the leading `/`.
    pub name: String,
    /// The image the container was created from (the tag we asked for).
    pub image: String,
    pub running: bool,
    /// Set once the container has exited; `None` while created or running.
    pub exit_code: Option<i64>,
}

/// A container engine as the agent uses it. Implementations: `DockerDriver`, `SimDriver`.
///
/// Reports: `ensure_running` sends what it does itself (build progress, image ready,
/// created); `watch` forwards what the engine sees happen (exits, OOM kills, removals,
/// and starts, so that a start is always reported before the exit). Without a running
/// `watch`, `ensure_running` reports the start itself. Delivery is at least once: after
/// a restart the reconciler may report an exit the watch already reported, so the
/// receiver treats a repeated report as a no-op. Errors are returned, not reported: the caller (the reconciler)
/// reports `Failed` for a non-transient error other than a build failure, which the
/// driver has already reported as `BuildFailed`.
pub trait Driver: Send + Sync {
    /// Builds (or reuses) the image, then creates and starts the deployment's container
    /// unless it already runs. Idempotent: never makes a second container.
    fn ensure_running<'a>(
        &'a self,
        assignment: &'a Assignment,
        tx: &'a ReportSender,
    ) -> BoxFuture<'a, Result<(), AgentError>>;

    /// Stops the deployment's container (SIGTERM, then SIGKILL after `grace`) and removes
    /// it with its temporary storage. Unknown deployments are not an error.
    fn stop<'a>(
        &'a self,
        deployment_id: &'a str,
        grace: Duration,
    ) -> BoxFuture<'a, Result<(), AgentError>>;

    /// Stops and removes one container by id (orphans and duplicates).
    fn remove_container<'a>(
        &'a self,
        container_id: &'a str,
        grace: Duration,
    ) -> BoxFuture<'a, Result<(), AgentError>>;

    /// All containers carrying this node's label, running or not.
    fn list(&self) -> BoxFuture<'_, Result<Vec<Observed>, AgentError>>;

    /// Reports `Started` for the running container `container_id` of `deployment_id`:
    /// at once, or, with `ready` (a declared service), once the check passes. The one
    /// way a driver or the reconciler says a container runs. The default reports at
    /// once (a driver with no processes to check, like the simulated one).
    fn report_running<'a>(
        &'a self,
        deployment_id: &'a str,
        container_id: &'a str,
        ready: Option<&'a Readiness>,
        tx: &'a ReportSender,
    ) -> BoxFuture<'a, ()> {
        let _ = (container_id, ready);
        Box::pin(async move {
            let _ = tx.send((deployment_id.to_string(), Report::Started)).await;
        })
    }

    /// Tells the driver its cluster's id (from the server, right after registering):
    /// from then on it labels what it creates with it and sees only what carries it.
    /// The default ignores it (a driver with no engine shared with others).
    fn set_cluster(&self, cluster_id: &str) {
        let _ = cluster_id;
    }

    /// How full the storage targets of this node's running deployments are. The
    /// default measures nothing (a driver with no volumes).
    fn volume_usage(&self) -> BoxFuture<'_, Result<Vec<MeasuredVolume>, AgentError>> {
        Box::pin(async { Ok(Vec::new()) })
    }

    /// Current usage of each running container.
    fn stats(&self) -> BoxFuture<'_, Result<Vec<ContainerUsage>, AgentError>>;

    /// Forwards lifecycle reports (started, exited, OOM-killed, removed) to `tx` until
    /// `tx` is closed, reconnecting to the engine with backoff when it goes away.
    fn watch(&self, tx: ReportSender) -> BoxFuture<'_, Result<(), AgentError>>;

    /// False while the engine is unreachable.
    fn engine_ok(&self) -> bool;

    /// The deployment's log lines (see [`crate::session`]): the backlog as `opts` asks,
    /// then, with `opts.follow`, new lines until the container is gone.
    /// `NoContainer` when this node runs no container of it.
    fn logs<'a>(
        &'a self,
        deployment_id: &'a str,
        opts: LogOptions,
    ) -> BoxFuture<'a, Result<LogLines, AgentError>> {
        let _ = (deployment_id, opts);
        Box::pin(async { Err(unsupported("this", "logs")) })
    }

    /// Starts `req.cmd` in the deployment's running container. The session ends when
    /// the command exits or the container stops.
    fn exec<'a>(
        &'a self,
        deployment_id: &'a str,
        req: ExecRequest,
    ) -> BoxFuture<'a, Result<ExecSession, AgentError>> {
        let _ = (deployment_id, req);
        Box::pin(async { Err(unsupported("this", "exec")) })
    }
}

/// The deterministic container name of a deployment on a node: `dcloud-<deployment>-<node>`.
/// The node is part of it so that two agents on one engine never claim one name (a
/// deployment moved from a lost node to another on the same engine gets its own).
pub fn container_name(deployment_id: &str, node_id: &str) -> String {
    format!("dcloud-{deployment_id}-{node_id}")
}

impl Assignment {
    /// Checks what both drivers rely on: ids usable in names, sane mount targets and
    /// dataset keys, env names.
    pub fn validate(&self) -> Result<(), AgentError> {
        check_id("deployment_id", &self.deployment_id)?;
        check_id("env_id", &self.env_id)?;
        if self.image_tag.is_empty() {
            return Err(invalid("image_tag", "must not be empty"));
        }
        for (i, s) in self.storage.iter().enumerate() {
            check_target(&format!("storage[{i}].target"), &s.target)?;
        }
        for (i, d) in self.datasets.iter().enumerate() {
            dataset_relative_path(d)
                .map_err(|reason| invalid(&format!("datasets[{i}]"), &reason))?;
        }
        for (i, d) in self.shared_datasets.iter().enumerate() {
            d.device_path()
                .map_err(|reason| invalid(&format!("shared_datasets[{i}].key"), &reason))?;
            if d.fs_type.is_empty() || d.device.is_empty() {
                return Err(invalid(
                    &format!("shared_datasets[{i}]"),
                    "needs a type and a device",
                ));
            }
        }
        for (i, p) in self.ports.iter().enumerate() {
            if p.external == 0 || p.internal == 0 {
                return Err(invalid(&format!("ports[{i}]"), "port 0 is not a port"));
            }
        }
        for key in self.env.keys() {
            if key.is_empty() || key.contains('=') || key.contains('\0') {
                return Err(invalid(&format!("env.{key}"), "not a valid variable name"));
            }
        }
        Ok(())
    }
}

/// Validates a dataset key `category/db/dataset@version` and returns it as a relative path.
pub fn dataset_relative_path(key: &str) -> Result<PathBuf, String> {
    let parts: Vec<&str> = key.split('/').collect();
    if parts.len() != 3 {
        return Err(format!("{key:?} is not category/db/dataset@version"));
    }
    for part in &parts {
        if part.is_empty() || *part == "." || *part == ".." || part.contains(['\\', '\0']) {
            return Err(format!("{key:?} has an invalid path component {part:?}"));
        }
    }
    if !parts[2].contains('@') {
        return Err(format!("{key:?} has no @version"));
    }
    Ok(parts.iter().collect())
}

/// The host path of a dataset under the node's dataset root.
pub fn dataset_host_path(root: &Path, key: &str) -> Result<PathBuf, AgentError> {
    let rel = dataset_relative_path(key).map_err(|reason| invalid("datasets", &reason))?;
    Ok(root.join(rel))
}

/// Where a dataset appears inside the container.
pub fn dataset_container_path(key: &str) -> String {
    format!("{DATASET_MOUNT_ROOT}/{key}")
}

fn check_id(field: &str, id: &str) -> Result<(), AgentError> {
    let ok = id.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && id.len() <= 128
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if ok {
        Ok(())
    } else {
        Err(invalid(
            field,
            &format!("{id:?} must be 1-128 of [A-Za-z0-9_.-], starting with a letter or digit"),
        ))
    }
}

fn check_target(field: &str, target: &str) -> Result<(), AgentError> {
    let path = Path::new(target);
    if !path.is_absolute() {
        return Err(invalid(
            field,
            &format!("{target:?} is not an absolute path"),
        ));
    }
    if path.components().any(|c| matches!(c, Component::ParentDir)) || target.contains('\0') {
        return Err(invalid(field, &format!("{target:?} must not contain ..")));
    }
    if path.components().count() < 2 {
        return Err(invalid(field, "cannot mount over /"));
    }
    Ok(())
}

fn invalid(field: &str, reason: &str) -> AgentError {
    AgentError::InvalidAssignment {
        field: field.to_string(),
        reason: reason.to_string(),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use dcloud_events::model::{Lifecycle, Protocol};

    /// A valid assignment for tests of this crate.
    pub(crate) fn assignment(deployment_id: &str) -> Assignment {
        Assignment {
            deployment_id: deployment_id.to_string(),
            env_id: "env1".to_string(),
            node_id: "0x020000000001".to_string(),
            image_tag: "dcloud/env:abc123".to_string(),
            dockerfile: "FROM dcloud-test/busybox:latest\nRUN true\n".to_string(),
            steps: 2,
            resources: Resources {
                cpu_millis: 500,
                memory_bytes: 256 << 20,
                gpus: 0,
                storage_bytes: 1 << 30,
            },
            gpus: vec![],
            ports: vec![PortPublish {
                external: 30080,
                internal: 8080,
                protocol: Protocol::Tcp,
            }],
            storage: vec![StorageMount {
                target: "/data".to_string(),
                size_bytes: 1 << 30,
                lifecycle: Lifecycle::Persistent,
            }],
            datasets: vec!["vision/imagenet/train@v2".to_string()],
            shared_datasets: vec![],
            env: BTreeMap::from([("DFS_URL".to_string(), "http://10.0.0.5:9000".to_string())]),
            command: None,
            ready: None,
        }
    }

    #[test]
    fn valid_assignment_passes() {
        assert!(assignment("d1").validate().is_ok());
    }

    #[test]
    fn bad_inputs_name_the_field() {
        let mut a = assignment("bad/id");
        let err = a.validate().unwrap_err().to_string();
        assert!(err.contains("deployment_id"), "{err}");

        a = assignment("d1");
        a.datasets = vec!["vision/../etc@1".to_string()];
        let err = a.validate().unwrap_err().to_string();
        assert!(err.contains("datasets[0]"), "{err}");

        a = assignment("d1");
        a.datasets = vec!["vision/imagenet/train".to_string()];
        let err = a.validate().unwrap_err().to_string();
        assert!(err.contains("no @version"), "{err}");

        a = assignment("d1");
        a.storage[0].target = "data".to_string();
        let err = a.validate().unwrap_err().to_string();
        assert!(err.contains("storage[0].target"), "{err}");

        a = assignment("d1");
        a.storage[0].target = "/data/../etc".to_string();
        assert!(a.validate().is_err());

        a = assignment("d1");
        a.env.insert("A=B".to_string(), "x".to_string());
        assert!(a.validate().is_err());
    }

    #[test]
    fn dataset_paths() {
        let root = Path::new("/srv/datasets");
        assert_eq!(
            dataset_host_path(root, "vision/imagenet/train@v2").unwrap(),
            PathBuf::from("/srv/datasets/vision/imagenet/train@v2")
        );
        assert_eq!(
            dataset_container_path("vision/imagenet/train@v2"),
            "/datasets/vision/imagenet/train@v2"
        );
        assert!(dataset_host_path(root, "/abs/db/x@1").is_err());
        assert!(dataset_host_path(root, "a/b/c/d@1").is_err());
    }

    #[test]
    fn reports_become_events() {
        let e = Report::BuildFailed {
            step: 3,
            command: "RUN false".into(),
            output_tail: "boom".into(),
        }
        .into_event("d1".into(), "img:1");
        assert_eq!(
            e,
            Event::ImageBuildFailed {
                deployment_id: "d1".into(),
                step: 3,
                command: "RUN false".into(),
                output_tail: "boom".into()
            }
        );
        let e = Report::ImageReady { cached: true }.into_event("d1".into(), "img:1");
        assert_eq!(
            e,
            Event::ImageReady {
                deployment_id: "d1".into(),
                image: "img:1".into(),
                cached: true
            }
        );
        let e = Report::Exited { code: 3 }.into_event("d1".into(), "img:1");
        assert_eq!(
            e,
            Event::ContainerExited {
                deployment_id: "d1".into(),
                code: 3
            }
        );
    }
}
