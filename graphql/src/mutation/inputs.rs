//! Input types of the mutations and their conversion into domain values (checked
//! here when GraphQL's types cannot say it, with field paths in the errors).

use std::collections::BTreeMap;

use async_graphql::{Enum, InputObject};
use dcloud_events::model;
use dcloud_projections::config::{self, Format, QuantityError};
use dcloud_projections::{FieldError, Report, SpecOverrides};

use crate::types::common::{Lifecycle, Protocol};

#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq, Default)]
pub enum DocumentFormat {
    /// JSON when the text parses as JSON, else YAML.
    #[default]
    Auto,
    Json,
    Yaml,
}

impl From<DocumentFormat> for Format {
    fn from(f: DocumentFormat) -> Self {
        match f {
            DocumentFormat::Auto => Format::Auto,
            DocumentFormat::Json => Format::Json,
            DocumentFormat::Yaml => Format::Yaml,
        }
    }
}

#[derive(InputObject, Clone, Debug)]
pub struct LabelInput {
    pub key: String,
    pub value: String,
}

pub(crate) fn label_map(labels: Vec<LabelInput>) -> BTreeMap<String, String> {
    labels.into_iter().map(|l| (l.key, l.value)).collect()
}

/// Resources in base units (CPU in millicores, bytes), as agents send them.
#[derive(InputObject, Clone, Debug, Default)]
pub struct ResourcesInput {
    pub cpu_millis: u64,
    pub memory_bytes: u64,
    #[graphql(default)]
    pub gpus: u32,
    #[graphql(default)]
    pub storage_bytes: u64,
}

impl From<ResourcesInput> for model::Resources {
    fn from(r: ResourcesInput) -> Self {
        model::Resources {
            cpu_millis: r.cpu_millis,
            memory_bytes: r.memory_bytes,
            gpus: r.gpus,
            storage_bytes: r.storage_bytes,
        }
    }
}

#[derive(InputObject, Clone, Debug)]
pub struct GpuInput {
    pub index: u32,
    pub uuid: String,
    pub model: String,
    pub memory_bytes: u64,
}

/// What an agent found on its machine.
#[derive(InputObject, Clone, Debug)]
pub struct FingerprintInput {
    pub hostname: String,
    pub os: String,
    pub capacity: ResourcesInput,
    #[graphql(default)]
    pub reserved: ResourcesInput,
    #[graphql(default)]
    pub gpus: Vec<GpuInput>,
    #[graphql(default)]
    pub labels: Vec<LabelInput>,
    /// Dataset keys (`category/db/dataset@version`) present on the node.
    #[graphql(default)]
    pub datasets: Vec<String>,
    pub agent_version: String,
}

impl From<FingerprintInput> for model::NodeFingerprint {
    fn from(f: FingerprintInput) -> Self {
        model::NodeFingerprint {
            hostname: f.hostname,
            os: f.os,
            capacity: f.capacity.into(),
            reserved: f.reserved.into(),
            gpus: f
                .gpus
                .into_iter()
                .map(|g| model::GpuDevice {
                    index: g.index,
                    uuid: g.uuid,
                    model: g.model,
                    memory_bytes: g.memory_bytes,
                })
                .collect(),
            labels: label_map(f.labels),
            datasets: f.datasets,
            agent_version: f.agent_version,
        }
    }
}

#[derive(InputObject, Clone, Debug, Default)]
pub struct UsageInput {
    pub cpu_millis: u64,
    pub memory_bytes: u64,
}

impl From<UsageInput> for model::Usage {
    fn from(u: UsageInput) -> Self {
        model::Usage {
            cpu_millis: u.cpu_millis,
            memory_bytes: u.memory_bytes,
        }
    }
}

#[derive(InputObject, Clone, Debug)]
pub struct ContainerUsageInput {
    pub deployment_id: String,
    pub usage: UsageInput,
}

/// How full one storage target of a deployment is, as its node measured it.
#[derive(InputObject, Clone, Debug)]
pub struct VolumeUsageInput {
    /// The mount target inside the container (`/data`).
    pub target: String,
    pub used_bytes: u64,
    /// The size asked for (0: none).
    pub size_bytes: u64,
    /// The engine holds the volume to its size (a filesystem quota).
    pub enforced: bool,
}

impl From<VolumeUsageInput> for dcloud_events::model::VolumeUsage {
    fn from(v: VolumeUsageInput) -> Self {
        dcloud_events::model::VolumeUsage {
            target: v.target,
            used_bytes: v.used_bytes,
            size_bytes: v.size_bytes,
            enforced: v.enforced,
        }
    }
}

#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
pub enum ReportKind {
    /// Needs `image`, `steps`.
    BuildStarted,
    /// Needs `step`, `steps`.
    BuildProgress,
    /// Needs `step`, `command`, `outputTail`.
    BuildFailed,
    /// Needs `image`; `cached` when it was already there.
    ImageReady,
    /// Needs `containerId`.
    ContainerCreated,
    ContainerStarted,
    /// Needs `code`.
    ContainerExited,
    ContainerOomKilled,
    ContainerRemoved,
    /// Needs `message`.
    ContainerFailed,
    /// A process inside the container was OOM-killed and the container runs on.
    /// Needs `message`.
    ContainerOomWarning,
    /// The main process's last output, sent just before `CONTAINER_EXITED`. Needs
    /// `outputTail`.
    ContainerOutput,
}

/// One container state change, as the agent saw it.
#[derive(InputObject, Clone, Debug)]
pub struct ReportInput {
    pub kind: ReportKind,
    pub image: Option<String>,
    pub step: Option<u32>,
    pub steps: Option<u32>,
    pub command: Option<String>,
    pub output_tail: Option<String>,
    #[graphql(default)]
    pub cached: bool,
    pub container_id: Option<String>,
    pub code: Option<i64>,
    pub message: Option<String>,
}

impl ReportInput {
    /// The report, or every missing field (paths `report.<field>`).
    pub(crate) fn into_report(self) -> Result<Report, Vec<FieldError>> {
        let mut missing = Vec::new();
        let mut need = |name: &str, present: bool| {
            if !present {
                missing.push(FieldError::new(
                    format!("report.{name}"),
                    format!("missing; a {:?} report needs it", self.kind),
                ));
            }
        };
        use ReportKind as K;
        match self.kind {
            K::BuildStarted => {
                need("image", self.image.is_some());
                need("steps", self.steps.is_some());
            }
            K::BuildProgress => {
                need("step", self.step.is_some());
                need("steps", self.steps.is_some());
            }
            K::BuildFailed => {
                need("step", self.step.is_some());
                need("command", self.command.is_some());
            }
            K::ImageReady => need("image", self.image.is_some()),
            K::ContainerCreated => need("containerId", self.container_id.is_some()),
            K::ContainerExited => need("code", self.code.is_some()),
            K::ContainerFailed | K::ContainerOomWarning => need("message", self.message.is_some()),
            K::ContainerOutput => need("outputTail", self.output_tail.is_some()),
            K::ContainerStarted | K::ContainerOomKilled | K::ContainerRemoved => {}
        }
        if !missing.is_empty() {
            return Err(missing);
        }
        let s = |v: Option<String>| v.unwrap_or_default();
        let n = |v: Option<u32>| v.unwrap_or_default();
        Ok(match self.kind {
            K::BuildStarted => Report::BuildStarted {
                image: s(self.image),
                steps: n(self.steps),
            },
            K::BuildProgress => Report::BuildProgress {
                step: n(self.step),
                steps: n(self.steps),
            },
            K::BuildFailed => Report::BuildFailed {
                step: n(self.step),
                command: s(self.command),
                output_tail: s(self.output_tail),
            },
            K::ImageReady => Report::ImageReady {
                image: s(self.image),
                cached: self.cached,
            },
            K::ContainerCreated => Report::ContainerCreated {
                container_id: s(self.container_id),
            },
            K::ContainerStarted => Report::ContainerStarted,
            K::ContainerExited => Report::ContainerExited {
                code: self.code.unwrap_or_default(),
            },
            K::ContainerOomKilled => Report::ContainerOomKilled,
            K::ContainerRemoved => Report::ContainerRemoved,
            K::ContainerFailed => Report::ContainerFailed {
                message: s(self.message),
            },
            K::ContainerOomWarning => Report::ContainerOomWarning {
                message: s(self.message),
            },
            K::ContainerOutput => Report::ContainerOutput {
                output_tail: s(self.output_tail),
            },
        })
    }
}

#[derive(InputObject, Clone, Debug)]
pub struct LanguageInput {
    pub name: String,
    #[graphql(default)]
    pub libraries: Vec<String>,
}

/// Resources as the documents write them; absent fields keep the template's.
#[derive(InputObject, Clone, Debug, Default)]
pub struct ResourceOverrides {
    /// `512M`, `1G`, `2.5G`.
    pub ram: Option<String>,
    /// Cores: `1.0`, `0.5`, or millicores `500m`.
    pub cpu: Option<String>,
    pub gpu: Option<u32>,
    /// Gigabytes (`20`, `2.5`).
    pub storage: Option<String>,
}

#[derive(InputObject, Clone, Debug)]
pub struct PortInput {
    pub external: u16,
    pub internal: u16,
    #[graphql(default_with = "Protocol::Tcp")]
    pub protocol: Protocol,
}

#[derive(InputObject, Clone, Debug)]
pub struct StorageInput {
    pub target: String,
    /// `512M`, `2G`.
    pub size: String,
    pub lifecycle: Lifecycle,
}

/// What a new environment changes from its template; absent fields keep the
/// template's.
#[derive(InputObject, Clone, Debug, Default)]
pub struct TemplateOverrides {
    /// `env-name` of the new environment.
    pub name: Option<String>,
    pub version_label: Option<String>,
    pub os: Option<String>,
    pub languages: Option<Vec<LanguageInput>>,
    pub resources: Option<ResourceOverrides>,
    pub ports: Option<Vec<PortInput>>,
    pub storage: Option<Vec<StorageInput>>,
    pub node_labels: Option<Vec<LabelInput>>,
}

fn quantity(
    errors: &mut Vec<FieldError>,
    path: &str,
    text: &str,
    hint: &str,
    r: Result<u64, QuantityError>,
) -> u64 {
    r.unwrap_or_else(|e| {
        let why = match e {
            QuantityError::Malformed => "is not a quantity",
            QuantityError::TooFine => "is finer than this field can hold",
            QuantityError::TooLarge => "is too large",
        };
        errors.push(FieldError::new(path, format!("{text:?} {why}; {hint}")));
        0
    })
}

impl TemplateOverrides {
    /// The domain's overrides, filled from `base` (the template's resources) where a
    /// resource is not given; every bad quantity is reported with its path.
    pub(crate) fn into_domain(
        self,
        base: &model::Resources,
    ) -> Result<SpecOverrides, Vec<FieldError>> {
        let mut errors = Vec::new();
        let resources = self.resources.map(|r| {
            let mut out = base.clone();
            if let Some(ram) = &r.ram {
                out.memory_bytes = quantity(
                    &mut errors,
                    "overrides.resources.ram",
                    ram,
                    "use 512M, 1G, 2.5G",
                    config::parse_size(ram),
                );
            }
            if let Some(cpu) = &r.cpu {
                out.cpu_millis = quantity(
                    &mut errors,
                    "overrides.resources.cpu",
                    cpu,
                    "use 0.5, 1.0 or 500m",
                    config::parse_cpu_millis(cpu),
                );
            }
            if let Some(gpu) = r.gpu {
                out.gpus = gpu;
            }
            if let Some(storage) = &r.storage {
                let parsed = config::parse_storage_gb(storage);
                out.storage_bytes = quantity(
                    &mut errors,
                    "overrides.resources.storage",
                    storage,
                    "gigabytes, e.g. 20",
                    parsed,
                );
            }
            out
        });
        let storage = self.storage.map(|list| {
            list.into_iter()
                .enumerate()
                .map(|(i, s)| model::StorageMount {
                    size_bytes: quantity(
                        &mut errors,
                        &format!("overrides.storage[{i}].size"),
                        &s.size,
                        "use 512M, 1G, 2.5G",
                        config::parse_size(&s.size),
                    ),
                    target: s.target,
                    lifecycle: s.lifecycle.into(),
                })
                .collect()
        });
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(SpecOverrides {
            name: self.name,
            version_label: self.version_label,
            os: self.os,
            languages: self.languages.map(|ls| {
                ls.into_iter()
                    .map(|l| model::LanguageSpec {
                        name: l.name,
                        libraries: l.libraries,
                    })
                    .collect()
            }),
            resources,
            datasets: None,
            ports: self.ports.map(|ps| {
                ps.into_iter()
                    .map(|p| model::PortPublish {
                        external: p.external,
                        internal: p.internal,
                        protocol: p.protocol.into(),
                    })
                    .collect()
            }),
            storage,
            node_labels: self.node_labels.map(label_map),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(kind: ReportKind) -> ReportInput {
        ReportInput {
            kind,
            image: None,
            step: None,
            steps: None,
            command: None,
            output_tail: None,
            cached: false,
            container_id: None,
            code: None,
            message: None,
        }
    }

    #[test]
    fn reports_name_every_missing_field() {
        let errors = report(ReportKind::BuildProgress)
            .into_report()
            .expect_err("incomplete");
        let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, vec!["report.step", "report.steps"]);
        let ok = ReportInput {
            code: Some(3),
            ..report(ReportKind::ContainerExited)
        }
        .into_report();
        assert_eq!(ok, Ok(Report::ContainerExited { code: 3 }));
    }

    #[test]
    fn overrides_parse_quantities_and_keep_the_rest() {
        let base = model::Resources {
            cpu_millis: 1000,
            memory_bytes: 1 << 30,
            gpus: 1,
            storage_bytes: 5 << 30,
        };
        let o = TemplateOverrides {
            resources: Some(ResourceOverrides {
                ram: Some("2G".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let d = o.into_domain(&base).expect("valid");
        assert_eq!(
            d.resources,
            Some(model::Resources {
                memory_bytes: 2 << 30,
                ..base.clone()
            })
        );
        let bad = TemplateOverrides {
            resources: Some(ResourceOverrides {
                ram: Some("2 GB".into()),
                cpu: Some("x".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let errors = bad.into_domain(&base).expect_err("invalid");
        let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            vec!["overrides.resources.ram", "overrides.resources.cpu"]
        );
    }
}
