//! The container create body for an assignment: limits, labels, security settings,
//! ports, GPUs and mounts. Pure: no engine call, so every field is unit-tested.

use std::collections::HashMap;

use bollard::models::{
    ContainerCreateBody, DeviceRequest, HostConfig, Mount, MountType, MountVolumeOptions,
    MountVolumeOptionsDriverConfig, PortBinding, RestartPolicy, RestartPolicyNameEnum,
};
use dcloud_events::model::Lifecycle;

use crate::docker::DockerConfig;
use crate::driver::{
    dataset_container_path, dataset_host_path, Assignment, LABEL_CLUSTER, LABEL_DEPLOYMENT,
    LABEL_ENVIRONMENT, LABEL_IMAGE, LABEL_NODE,
};
use crate::error::AgentError;

/// Capabilities given back after `cap_drop: ["ALL"]`: what a typical image's startup
/// needs as root, and nothing that reaches outside the container.
pub const DEFAULT_CAP_ADD: &[&str] = &[
    // chown files at start-up (entrypoints fixing the owner of a mounted volume)
    "CHOWN",
    // root reading and writing files it does not own (volumes made by another uid)
    "DAC_OVERRIDE",
    // chmod/utime on files it does not own
    "FOWNER",
    // keep set-group-id bits when package managers write files
    "FSETID",
    // drop from root to an unprivileged user (gosu, su-exec, notebook start scripts)
    "SETGID",
    "SETUID",
    // signal processes of another user inside the container
    "KILL",
    // listen on ports below 1024
    "NET_BIND_SERVICE",
];

/// The named volume of a persistent storage target: `dcloud-<env_id>-<target>` with the
/// target's `/` turned into `-` (`/data/models` → `dcloud-env1-data-models`). It outlives
/// containers, so a redeploy of the same environment finds its files again.
pub fn persistent_volume_name(env_id: &str, target: &str) -> String {
    let mut sanitized = String::new();
    for c in target.chars() {
        let c = if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
            c
        } else {
            '-'
        };
        if !(c == '-' && (sanitized.is_empty() || sanitized.ends_with('-'))) {
            sanitized.push(c);
        }
    }
    let sanitized = sanitized.trim_end_matches('-');
    let sanitized = if sanitized.is_empty() {
        "root"
    } else {
        sanitized
    };
    format!("dcloud-{env_id}-{sanitized}")
}

/// The create body for `a` on this node. Never privileged; `cap_drop: ALL` plus
/// `config.cap_add`; `no-new-privileges`; pids limit; memory with no extra swap; nano
/// CPUs from millicores; GPUs by uuid; datasets read-only; temporary storage as
/// anonymous volumes (removed with the container); persistent storage as named volumes.
pub fn container_body(
    a: &Assignment,
    config: &DockerConfig,
) -> Result<ContainerCreateBody, AgentError> {
    a.validate()?;
    let memory = limit("resources.memory_bytes", a.resources.memory_bytes, 1)?;
    let nano_cpus = limit(
        "resources.cpu_millis",
        a.resources.cpu_millis,
        1_000_000, // 1 millicore = 10^6 nano CPUs
    )?;

    let mut labels = HashMap::from([
        (LABEL_DEPLOYMENT.to_string(), a.deployment_id.clone()),
        (LABEL_NODE.to_string(), config.node_id.clone()),
        (LABEL_ENVIRONMENT.to_string(), a.env_id.clone()),
        (LABEL_IMAGE.to_string(), a.image_tag.clone()),
    ]);
    if let Some(cluster) = &config.cluster_id {
        labels.insert(LABEL_CLUSTER.to_string(), cluster.clone());
    }
    // Labels of the volumes this container makes (persistent and shared-dataset ones).
    let mut volume_labels = HashMap::from([
        (LABEL_ENVIRONMENT.to_string(), a.env_id.clone()),
        (LABEL_NODE.to_string(), config.node_id.clone()),
    ]);
    if let Some(cluster) = &config.cluster_id {
        volume_labels.insert(LABEL_CLUSTER.to_string(), cluster.clone());
    }
    if let Some(ready) = &a.ready {
        labels.insert(crate::driver::LABEL_READY.to_string(), ready.label());
    }

    // The server sends the DCLOUD_* ids with the assignment; they are added here only
    // when missing, so each variable appears once.
    let mut vars = a.env.clone();
    for (k, v) in [
        ("DCLOUD_DEPLOYMENT_ID", &a.deployment_id),
        ("DCLOUD_ENVIRONMENT_ID", &a.env_id),
        ("DCLOUD_NODE_ID", &config.node_id),
    ] {
        vars.entry(k.to_string()).or_insert_with(|| v.clone());
    }
    let env: Vec<String> = vars.iter().map(|(k, v)| format!("{k}={v}")).collect();

    let mut exposed_ports = Vec::new();
    let mut port_bindings: HashMap<String, Option<Vec<PortBinding>>> = HashMap::new();
    for p in &a.ports {
        let key = format!("{}/{}", p.internal, p.protocol.as_str());
        if !exposed_ports.contains(&key) {
            exposed_ports.push(key.clone());
        }
        port_bindings
            .entry(key)
            .or_default()
            .get_or_insert_with(Vec::new)
            .push(PortBinding {
                host_ip: config.bind_address.clone(),
                host_port: Some(p.external.to_string()),
            });
    }

    let mut mounts = Vec::new();
    for s in &a.storage {
        // With quota support (xfs with project quotas under the engine's volumes) the
        // local driver holds the volume to its size; without, the size is watched.
        let sized =
            (config.volume_quota && s.size_bytes > 0).then(|| MountVolumeOptionsDriverConfig {
                name: Some("local".to_string()),
                options: Some(HashMap::from([(
                    "size".to_string(),
                    s.size_bytes.to_string(),
                )])),
            });
        mounts.push(match s.lifecycle {
            Lifecycle::Persistent => Mount {
                target: Some(s.target.clone()),
                source: Some(persistent_volume_name(&a.env_id, &s.target)),
                typ: Some(MountType::VOLUME),
                read_only: Some(false),
                volume_options: Some(MountVolumeOptions {
                    labels: Some(volume_labels.clone()),
                    driver_config: sized,
                    ..Default::default()
                }),
                ..Default::default()
            },
            Lifecycle::Temporary => Mount {
                target: Some(s.target.clone()),
                typ: Some(MountType::VOLUME),
                read_only: Some(false),
                volume_options: sized.map(|d| MountVolumeOptions {
                    driver_config: Some(d),
                    ..Default::default()
                }),
                ..Default::default()
            },
        });
    }
    for d in &a.shared_datasets {
        let invalid = |reason: String| AgentError::InvalidAssignment {
            field: "shared_datasets".to_string(),
            reason,
        };
        let device = d.device_path().map_err(invalid)?;
        let name = d.volume_name().map_err(invalid)?;
        let mut options = HashMap::from([
            ("type".to_string(), d.fs_type.clone()),
            ("device".to_string(), device),
        ]);
        if !d.options.is_empty() {
            options.insert("o".to_string(), d.options.clone());
        }
        mounts.push(Mount {
            target: Some(dataset_container_path(&d.key)),
            source: Some(name),
            typ: Some(MountType::VOLUME),
            read_only: Some(true),
            volume_options: Some(MountVolumeOptions {
                labels: Some(volume_labels.clone()),
                driver_config: Some(MountVolumeOptionsDriverConfig {
                    name: Some("local".to_string()),
                    options: Some(options),
                }),
                ..Default::default()
            }),
            ..Default::default()
        });
    }
    for d in &a.datasets {
        let source = dataset_host_path(&config.dataset_root, d)?;
        mounts.push(Mount {
            target: Some(dataset_container_path(d)),
            source: Some(source.to_string_lossy().into_owned()),
            typ: Some(MountType::BIND),
            read_only: Some(true),
            ..Default::default()
        });
    }

    let device_requests = (!a.gpus.is_empty()).then(|| {
        vec![DeviceRequest {
            driver: Some("nvidia".to_string()),
            device_ids: Some(a.gpus.clone()),
            capabilities: Some(vec![vec!["gpu".to_string()]]),
            ..Default::default()
        }]
    });

    let host_config = HostConfig {
        memory: Some(memory),
        memory_swap: Some(memory),
        nano_cpus: Some(nano_cpus),
        pids_limit: Some(config.pids_limit),
        privileged: Some(false),
        cap_drop: Some(vec!["ALL".to_string()]),
        cap_add: Some(config.cap_add.clone()),
        security_opt: Some(vec!["no-new-privileges".to_string()]),
        // A tiny init as PID 1 reaps zombies and forwards the stop signal.
        init: Some(true),
        // The agent restarts nothing behind the control plane's back.
        restart_policy: Some(RestartPolicy {
            name: Some(RestartPolicyNameEnum::NO),
            maximum_retry_count: None,
        }),
        port_bindings: (!port_bindings.is_empty()).then_some(port_bindings),
        mounts: (!mounts.is_empty()).then_some(mounts),
        device_requests,
        ..Default::default()
    };

    Ok(ContainerCreateBody {
        image: Some(a.image_tag.clone()),
        cmd: a.command.clone(),
        env: Some(env),
        labels: Some(labels),
        exposed_ports: (!exposed_ports.is_empty()).then_some(exposed_ports),
        host_config: Some(host_config),
        ..Default::default()
    })
}

/// A resource amount as Docker's i64, refusing zero: every container has hard limits.
fn limit(field: &str, value: u64, scale: u64) -> Result<i64, AgentError> {
    let invalid = |reason: &str| AgentError::InvalidAssignment {
        field: field.to_string(),
        reason: reason.to_string(),
    };
    if value == 0 {
        return Err(invalid("a container needs a limit; 0 is not one"));
    }
    value
        .checked_mul(scale)
        .and_then(|v| i64::try_from(v).ok())
        .ok_or_else(|| invalid("too large"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::driver::tests::assignment;
    use dcloud_events::model::{PortPublish, Protocol, StorageMount};
    use std::path::PathBuf;

    fn config() -> DockerConfig {
        let mut c = DockerConfig::new("0x5f6e4b6e4b50");
        c.dataset_root = PathBuf::from("/srv/datasets");
        c
    }

    #[test]
    fn limits_labels_and_security() {
        let body = container_body(&assignment("d1"), &config()).unwrap();
        let hc = body.host_config.as_ref().unwrap();
        assert_eq!(hc.memory, Some(268_435_456));
        assert_eq!(hc.memory_swap, Some(268_435_456));
        assert_eq!(hc.nano_cpus, Some(500_000_000));
        assert_eq!(hc.pids_limit, Some(4096));
        assert_eq!(hc.privileged, Some(false));
        assert_eq!(hc.cap_drop, Some(vec!["ALL".to_string()]));
        let cap_add = hc.cap_add.clone().unwrap();
        assert!(
            cap_add.contains(&"CHOWN".to_string()) && !cap_add.contains(&"SYS_ADMIN".to_string())
        );
        assert_eq!(hc.security_opt, Some(vec!["no-new-privileges".to_string()]));
        assert_eq!(hc.device_requests, None, "no gpus asked, no device request");
        let labels = body.labels.as_ref().unwrap();
        assert_eq!(
            labels.get("dcloud.deployment").map(String::as_str),
            Some("d1")
        );
        assert_eq!(
            labels.get("dcloud.node").map(String::as_str),
            Some("0x5f6e4b6e4b50")
        );
        assert_eq!(
            labels.get("dcloud.environment").map(String::as_str),
            Some("env1")
        );
        assert_eq!(body.image.as_deref(), Some("dcloud/env:abc123"));
        let env = body.env.unwrap();
        assert!(env.contains(&"DFS_URL=http://10.0.0.5:9000".to_string()));
        assert!(env.contains(&"DCLOUD_DEPLOYMENT_ID=d1".to_string()));
    }

    #[test]
    fn dcloud_variables_appear_once() {
        let mut a = assignment("d1");
        // As the server sends them.
        a.env.insert("DCLOUD_DEPLOYMENT_ID".into(), "d1".into());
        a.env
            .insert("DCLOUD_NODE_ID".into(), "0x5f6e4b6e4b50".into());
        a.env.insert("DCLOUD_ENVIRONMENT_ID".into(), "env1".into());
        let env = container_body(&a, &config()).unwrap().env.unwrap();
        for name in [
            "DCLOUD_DEPLOYMENT_ID",
            "DCLOUD_NODE_ID",
            "DCLOUD_ENVIRONMENT_ID",
        ] {
            let n = env
                .iter()
                .filter(|e| e.starts_with(&format!("{name}=")))
                .count();
            assert_eq!(n, 1, "{name} in {env:?}");
        }
        // Without them (an older server), the agent adds each once.
        let env = container_body(&assignment("d1"), &config())
            .unwrap()
            .env
            .unwrap();
        assert_eq!(
            env.iter().filter(|e| e.starts_with("DCLOUD_")).count(),
            3,
            "{env:?}"
        );
    }

    #[test]
    fn ports_bind_to_the_configured_address() {
        let mut c = config();
        let body = container_body(&assignment("d1"), &c).unwrap();
        let b = &body.host_config.unwrap().port_bindings.unwrap()["8080/tcp"];
        assert_eq!(
            b.as_ref().unwrap()[0].host_ip,
            None,
            "unset: every interface"
        );
        c.bind_address = Some("10.1.2.3".into());
        let body = container_body(&assignment("d1"), &c).unwrap();
        let b = &body.host_config.unwrap().port_bindings.unwrap()["8080/tcp"];
        assert_eq!(b.as_ref().unwrap()[0].host_ip.as_deref(), Some("10.1.2.3"));
    }

    #[test]
    fn mounts_datasets_read_only_and_storage_by_lifecycle() {
        let mut a = assignment("d1");
        a.storage.push(StorageMount {
            target: "/scratch".into(),
            size_bytes: 1,
            lifecycle: Lifecycle::Temporary,
        });
        let body = container_body(&a, &config()).unwrap();
        let mounts = body.host_config.unwrap().mounts.unwrap();
        assert_eq!(mounts.len(), 3);
        let persistent = &mounts[0];
        assert_eq!(persistent.typ, Some(MountType::VOLUME));
        assert_eq!(persistent.source.as_deref(), Some("dcloud-env1-data"));
        assert_eq!(persistent.target.as_deref(), Some("/data"));
        let temporary = &mounts[1];
        assert_eq!(temporary.typ, Some(MountType::VOLUME));
        assert_eq!(
            temporary.source, None,
            "anonymous: removed with the container"
        );
        let dataset = &mounts[2];
        assert_eq!(dataset.typ, Some(MountType::BIND));
        assert_eq!(dataset.read_only, Some(true));
        assert_eq!(
            dataset.source.as_deref(),
            Some("/srv/datasets/vision/imagenet/train@v2")
        );
        assert_eq!(
            dataset.target.as_deref(),
            Some("/datasets/vision/imagenet/train@v2")
        );
    }

    #[test]
    fn ports_and_gpus() {
        let mut a = assignment("d1");
        a.ports.push(PortPublish {
            external: 30053,
            internal: 53,
            protocol: Protocol::Udp,
        });
        a.ports.push(PortPublish {
            external: 30081,
            internal: 8080,
            protocol: Protocol::Tcp,
        });
        a.gpus = vec!["GPU-aaa".into(), "GPU-bbb".into()];
        let body = container_body(&a, &config()).unwrap();
        assert_eq!(
            body.exposed_ports,
            Some(vec!["8080/tcp".to_string(), "53/udp".to_string()])
        );
        let hc = body.host_config.unwrap();
        let bindings = hc.port_bindings.unwrap();
        let tcp: Vec<_> = bindings["8080/tcp"]
            .clone()
            .unwrap()
            .into_iter()
            .map(|b| b.host_port.unwrap())
            .collect();
        assert_eq!(tcp, vec!["30080", "30081"]);
        assert_eq!(
            bindings["53/udp"].clone().unwrap()[0].host_port.as_deref(),
            Some("30053")
        );
        let gpu = &hc.device_requests.unwrap()[0];
        assert_eq!(gpu.driver.as_deref(), Some("nvidia"));
        assert_eq!(
            gpu.device_ids,
            Some(vec!["GPU-aaa".to_string(), "GPU-bbb".to_string()])
        );
        assert_eq!(gpu.capabilities, Some(vec![vec!["gpu".to_string()]]));
    }

    #[test]
    fn zero_limits_are_refused() {
        let mut a = assignment("d1");
        a.resources.memory_bytes = 0;
        let err = container_body(&a, &config()).unwrap_err().to_string();
        assert!(err.contains("resources.memory_bytes"), "{err}");
        let mut a = assignment("d1");
        a.resources.cpu_millis = 0;
        assert!(container_body(&a, &config()).is_err());
    }

    #[test]
    fn volume_names() {
        assert_eq!(
            persistent_volume_name("e1", "/data/models"),
            "dcloud-e1-data-models"
        );
        assert_eq!(
            persistent_volume_name("e1", "/home/user/.cache/"),
            "dcloud-e1-home-user-.cache"
        );
        assert_eq!(persistent_volume_name("e1", "/a b//c"), "dcloud-e1-a-b-c");
    }
}
