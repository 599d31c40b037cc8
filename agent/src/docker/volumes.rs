//! Storage sizes: enforced where the engine can (the `local` driver's `size` option,
//! which needs a filesystem with project quotas, such as xfs mounted with `pquota`,
//! under the engine's volumes), otherwise watched: the agent measures each storage
//! target of its running containers on the host, as `du` would, and the runtime
//! reports it against the size asked for.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use bollard::models::VolumeCreateRequest;
use bollard::query_parameters::{ListContainersOptionsBuilder, RemoveVolumeOptions};
use bollard::Docker;
use tracing::{debug, warn};

use super::DockerDriver;
use crate::driver::{MeasuredVolume, DATASET_MOUNT_ROOT, LABEL_DEPLOYMENT};
use crate::error::AgentError;

static UNREADABLE_SAID: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether the engine makes a `local` volume with a `size`: it makes (and here removes)
/// a 1 MiB probe volume. Engines without quota support refuse ("quota size requested
/// but no quota support").
pub(super) async fn probe_quota(docker: &Docker) -> bool {
    let name = format!("dcloud-quota-probe-{}", uuid::Uuid::new_v4().simple());
    let request = VolumeCreateRequest {
        name: Some(name.clone()),
        driver: Some("local".to_string()),
        driver_opts: Some(HashMap::from([("size".to_string(), "1M".to_string())])),
        ..Default::default()
    };
    match docker.create_volume(request).await {
        Ok(_) => {
            let _ = docker
                .remove_volume(&name, None::<RemoveVolumeOptions>)
                .await;
            true
        }
        Err(e) => {
            debug!(error = %e, "volume size probe refused");
            false
        }
    }
}

impl DockerDriver {
    /// Measures the storage targets (volume mounts other than datasets) of this node's
    /// running containers, from their host folders. An engine whose folders this host
    /// cannot read (a remote engine) measures nothing.
    pub(super) async fn measure_volumes(&self) -> Result<Vec<MeasuredVolume>, AgentError> {
        let filters = HashMap::from([("label", self.own_filters())]);
        let options = ListContainersOptionsBuilder::default()
            .filters(&filters)
            .build();
        let list = self
            .call("list containers", || {
                self.docker.list_containers(Some(options.clone()))
            })
            .await?;
        let mut targets: Vec<(String, String, PathBuf)> = Vec::new();
        for c in list.into_iter().filter(|c| self.owns(c.labels.as_ref())) {
            let Some(deployment) = c.labels.as_ref().and_then(|l| l.get(LABEL_DEPLOYMENT)) else {
                continue;
            };
            for m in c.mounts.unwrap_or_default() {
                let (Some(dest), Some(source)) = (m.destination, m.source) else {
                    continue;
                };
                let is_volume = m.typ.as_deref() == Some("volume");
                if !is_volume || dest.starts_with(DATASET_MOUNT_ROOT) {
                    continue;
                }
                targets.push((deployment.clone(), dest, PathBuf::from(source)));
            }
        }
        let enforced = self.volume_quota;
        let measured = tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            for (deployment_id, target, source) in targets {
                match disk_usage(&source) {
                    Ok(used_bytes) => out.push(MeasuredVolume {
                        deployment_id,
                        target,
                        used_bytes,
                        enforced,
                    }),
                    Err(e) => {
                        // Said once per process (a remote engine fails every round).
                        if !UNREADABLE_SAID.swap(true, std::sync::atomic::Ordering::Relaxed) {
                            warn!(path = %source.display(), error = %e, "cannot measure a volume's folder (is the engine on another host?): storage use is not watched");
                        } else {
                            debug!(path = %source.display(), error = %e, "volume folder unreadable");
                        }
                    }
                }
            }
            out
        })
        .await
        .unwrap_or_default();
        Ok(measured)
    }
}

/// Bytes a folder takes on disk (allocated blocks, like `du`), each inode once.
pub(super) fn disk_usage(root: &Path) -> std::io::Result<u64> {
    let mut seen = std::collections::HashSet::new();
    let mut total = 0u64;
    let mut stack = vec![root.to_path_buf()];
    let top = std::fs::symlink_metadata(root)?;
    let device = top.dev();
    while let Some(path) = stack.pop() {
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue; // removed meanwhile
        };
        if meta.dev() != device || !seen.insert(meta.ino()) {
            continue;
        }
        total += meta.blocks() * 512;
        if meta.is_dir() {
            if let Ok(entries) = std::fs::read_dir(&path) {
                stack.extend(entries.flatten().map(|e| e.path()));
            }
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_usage_counts_allocated_blocks_once_per_inode() {
        let dir = tempfile::tempdir().unwrap();
        let empty = disk_usage(dir.path()).unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/a"), vec![7u8; 3 << 20]).unwrap();
        std::fs::hard_link(dir.path().join("sub/a"), dir.path().join("b")).unwrap();
        // A sparse file takes (almost) nothing.
        let f = std::fs::File::create(dir.path().join("sparse")).unwrap();
        f.set_len(1 << 30).unwrap();
        let used = disk_usage(dir.path()).unwrap() - empty;
        assert!(used >= 3 << 20, "{used}");
        assert!(used < (3 << 20) + (1 << 20), "{used}");
    }
}
