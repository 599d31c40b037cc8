//! Container lifecycle on Docker: ensure running (adopting an existing container rather
//! than making a second), stop with a grace period and remove, list by node label, and
//! one-shot stats.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bollard::models::{
    ContainerInspectResponse, ContainerStatsResponse, ContainerSummaryStateEnum,
};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, ListContainersOptionsBuilder, RemoveContainerOptionsBuilder,
    StatsOptionsBuilder, StopContainerOptionsBuilder,
};
use dcloud_events::model::{ContainerUsage, Usage};
use futures::StreamExt;
use tracing::{debug, info};

use crate::docker::{container_body, status_of, DockerDriver};
use crate::driver::{
    container_name, Assignment, Observed, Readiness, Report, ReportSender, LABEL_DEPLOYMENT,
    LABEL_IMAGE,
};
use crate::error::AgentError;

/// Longest stop grace honoured: the stop call must answer within bollard's request timeout.
const MAX_GRACE: Duration = Duration::from_secs(100);
/// Grace when replacing a container of an outdated image.
const REPLACE_GRACE: Duration = Duration::from_secs(10);

impl DockerDriver {
    pub(super) async fn ensure(&self, a: &Assignment, tx: &ReportSender) -> Result<(), AgentError> {
        let body = container_body(a, &self.current_config())?;
        let send = |r: Report| async move {
            let _ = tx.send((a.deployment_id.clone(), r)).await;
        };
        let name = container_name(&a.deployment_id, &self.config.node_id);
        let mut existing = self.inspect(&name).await?;
        if let Some(c) = &existing {
            let labels = c.config.as_ref().and_then(|c| c.labels.as_ref());
            let label = |k: &str| labels.and_then(|l| l.get(k)).map(String::as_str);
            if !self.owns(labels) || label(LABEL_DEPLOYMENT) != Some(a.deployment_id.as_str()) {
                return Err(AgentError::Engine {
                    op: "create container",
                    status: Some(409),
                    message: format!("the name {name} is taken by a container that is not this deployment's on this node"),
                });
            }
            let image = c.config.as_ref().and_then(|c| c.image.as_deref());
            if image != Some(a.image_tag.as_str()) {
                info!(deployment = %a.deployment_id, ?image, "replacing the container of an outdated image");
                self.stop_and_remove(&name, REPLACE_GRACE).await?;
                existing = None;
            } else if is_running(c) {
                // Adopted (after a restart, or a re-assignment to this node while it
                // was away): say so, so that the control plane knows it runs.
                debug!(deployment = %a.deployment_id, "already running");
                self.report_started(a, &name, tx).await;
                return Ok(());
            }
        }
        // The image may have been removed since the container was made: ensure it anyway.
        self.ensure_image(a, tx).await?;

        let (id, running) = match existing {
            Some(c) => (c.id.clone().unwrap_or_else(|| name.clone()), is_running(&c)),
            None => {
                let options = CreateContainerOptionsBuilder::default().name(&name).build();
                let created = self
                    .call("create container", || {
                        self.docker
                            .create_container(Some(options.clone()), body.clone())
                    })
                    .await;
                match created {
                    Ok(r) => {
                        send(Report::Created {
                            container_id: r.id.clone(),
                        })
                        .await;
                        (r.id, false)
                    }
                    // Made meanwhile (or by a try whose answer was lost): adopt it.
                    Err(e) if status_of(&e) == Some(409) => match self.inspect(&name).await? {
                        Some(c) => (c.id.clone().unwrap_or_else(|| name.clone()), is_running(&c)),
                        None => return Err(e),
                    },
                    Err(e) => return Err(e),
                }
            }
        };
        if running {
            debug!(deployment = %a.deployment_id, container = %id, "already running");
            self.report_started(a, &id, tx).await;
            return Ok(());
        }
        self.call("start container", || self.docker.start_container(&id, None))
            .await?;
        info!(deployment = %a.deployment_id, container = %id, "container started");
        // While a watch runs, it reports the start from the engine's event stream, in
        // order with the container's exit (a short-lived container may die before this
        // call returns). Without one, report it here.
        if self.watchers.load(Ordering::SeqCst) == 0 {
            self.report_started(a, &id, tx).await;
        }
        Ok(())
    }

    async fn report_started(&self, a: &Assignment, container: &str, tx: &ReportSender) {
        self.report_running_now_or_when_ready(&a.deployment_id, container, a.ready.as_ref(), tx)
            .await;
    }

    /// `Started` now, or for a declared service once its readiness check passes (see
    /// `Driver::report_running`).
    pub(super) async fn report_running_now_or_when_ready(
        &self,
        deployment_id: &str,
        container: &str,
        ready: Option<&Readiness>,
        tx: &ReportSender,
    ) {
        match ready {
            Some(ready) => super::ready::report_when_ready(
                self.docker.clone(),
                container.to_string(),
                deployment_id.to_string(),
                ready.clone(),
                tx.clone(),
            ),
            None => {
                let _ = tx.send((deployment_id.to_string(), Report::Started)).await;
            }
        }
    }

    pub(super) async fn inspect(
        &self,
        target: &str,
    ) -> Result<Option<ContainerInspectResponse>, AgentError> {
        match self
            .call("inspect container", || {
                self.docker.inspect_container(target, None)
            })
            .await
        {
            Ok(c) => Ok(Some(c)),
            Err(e) if status_of(&e) == Some(404) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Stops (SIGTERM, SIGKILL after `grace`) and removes `target` (a name or id) with its
    /// anonymous volumes. Absent containers are not an error.
    pub(super) async fn stop_and_remove(
        &self,
        target: &str,
        grace: Duration,
    ) -> Result<(), AgentError> {
        let secs = grace.min(MAX_GRACE).as_secs_f64().ceil() as i32;
        let stop = StopContainerOptionsBuilder::default().t(secs).build();
        match self
            .call("stop container", || {
                self.docker.stop_container(target, Some(stop.clone()))
            })
            .await
        {
            Ok(()) => {}
            Err(e) if status_of(&e) == Some(404) => return Ok(()),
            Err(e) => return Err(e),
        }
        let remove = RemoveContainerOptionsBuilder::default()
            .v(true)
            .force(true)
            .build();
        match self
            .call("remove container", || {
                self.docker.remove_container(target, Some(remove.clone()))
            })
            .await
        {
            // 409: a removal is already in progress.
            Err(e) if !matches!(status_of(&e), Some(404) | Some(409)) => Err(e),
            _ => Ok(()),
        }
    }

    pub(super) async fn list_observed(&self) -> Result<Vec<Observed>, AgentError> {
        let filters = HashMap::from([("label", self.own_filters())]);
        let options = ListContainersOptionsBuilder::default()
            .all(true)
            .filters(&filters)
            .build();
        let list = self
            .call("list containers", || {
                self.docker.list_containers(Some(options.clone()))
            })
            .await?;
        Ok(list
            .into_iter()
            // The engine's filter selects by label value; a container of no cluster
            // (or another) is not ours even when the node label matches.
            .filter(|c| self.owns(c.labels.as_ref()))
            .map(|c| {
                let label = |k: &str| c.labels.as_ref().and_then(|l| l.get(k)).cloned();
                let exited = matches!(
                    c.state,
                    Some(ContainerSummaryStateEnum::EXITED) | Some(ContainerSummaryStateEnum::DEAD)
                );
                Observed {
                    deployment_id: label(LABEL_DEPLOYMENT).unwrap_or_default(),
                    container_id: c.id.clone().unwrap_or_default(),
                    name: c
                        .names
                        .as_ref()
                        .and_then(|n| n.first())
                        .map(|n| n.trim_start_matches('/').to_string())
                        .unwrap_or_default(),
                    image: label(LABEL_IMAGE)
                        .or_else(|| c.image.clone())
                        .unwrap_or_default(),
                    running: matches!(
                        c.state,
                        Some(ContainerSummaryStateEnum::RUNNING)
                            | Some(ContainerSummaryStateEnum::RESTARTING)
                            | Some(ContainerSummaryStateEnum::PAUSED)
                    ),
                    exit_code: exited.then(|| {
                        c.status
                            .as_deref()
                            .and_then(exit_code_from_status)
                            .unwrap_or(-1)
                    }),
                }
            })
            .collect())
    }

    pub(super) async fn container_stats(&self) -> Result<Vec<ContainerUsage>, AgentError> {
        let running: Vec<Observed> = self
            .list_observed()
            .await?
            .into_iter()
            .filter(|o| o.running && !o.deployment_id.is_empty())
            .collect();
        let samples = futures::future::join_all(running.iter().map(|o| async move {
            // stream=false: the engine takes two samples a second apart, so CPU is a rate.
            let options = StatsOptionsBuilder::default().stream(false).build();
            let mut stream = self.docker.stats(&o.container_id, Some(options));
            match stream.next().await {
                Some(Ok(s)) => Some(ContainerUsage {
                    deployment_id: o.deployment_id.clone(),
                    usage: usage_from_stats(&s),
                }),
                // Gone meanwhile, or the engine stumbled: no sample this round.
                _ => None,
            }
        }))
        .await;
        Ok(samples.into_iter().flatten().collect())
    }
}

fn is_running(c: &ContainerInspectResponse) -> bool {
    c.state.as_ref().and_then(|s| s.running).unwrap_or(false)
}

/// `Exited (137) 5 seconds ago` → 137.
pub fn exit_code_from_status(status: &str) -> Option<i64> {
    let rest = status.strip_prefix("Exited (")?;
    rest.split_once(')')?.0.trim().parse().ok()
}

/// CPU in millicores (between the engine's two samples) and memory without the page
/// cache the kernel can drop (as `docker stats` shows it).
pub fn usage_from_stats(s: &ContainerStatsResponse) -> Usage {
    let total = |c: &Option<bollard::models::ContainerCpuStats>| {
        c.as_ref()
            .map(|c| {
                (
                    c.cpu_usage
                        .as_ref()
                        .and_then(|u| u.total_usage)
                        .unwrap_or(0),
                    c.system_cpu_usage.unwrap_or(0),
                )
            })
            .unwrap_or((0, 0))
    };
    let (cpu, system) = total(&s.cpu_stats);
    let (pre_cpu, pre_system) = total(&s.precpu_stats);
    let online = s
        .cpu_stats
        .as_ref()
        .and_then(|c| {
            c.online_cpus.map(u64::from).or_else(|| {
                c.cpu_usage
                    .as_ref()
                    .and_then(|u| u.percpu_usage.as_ref())
                    .map(|p| p.len() as u64)
            })
        })
        .unwrap_or(1)
        .max(1);
    let cpu_delta = cpu.saturating_sub(pre_cpu);
    let system_delta = system.saturating_sub(pre_system);
    let cpu_millis = if pre_cpu == 0 || system_delta == 0 {
        0
    } else {
        (cpu_delta as u128 * online as u128 * 1000 / system_delta as u128) as u64
    };

    let memory_bytes = s
        .memory_stats
        .as_ref()
        .map(|m| {
            let usage = m.usage.unwrap_or(0);
            let cache = m
                .stats
                .as_ref()
                .and_then(|st| {
                    st.get("total_inactive_file")
                        .or_else(|| st.get("inactive_file"))
                })
                .copied()
                .unwrap_or(0);
            usage.saturating_sub(cache)
        })
        .unwrap_or(0);
    Usage {
        cpu_millis,
        memory_bytes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::models::{ContainerCpuStats, ContainerCpuUsage, ContainerMemoryStats};

    #[test]
    fn exit_codes_from_status() {
        assert_eq!(
            exit_code_from_status("Exited (137) 5 seconds ago"),
            Some(137)
        );
        assert_eq!(
            exit_code_from_status("Exited (0) About a minute ago"),
            Some(0)
        );
        assert_eq!(exit_code_from_status("Up 3 minutes"), None);
        assert_eq!(exit_code_from_status("Exited (x)"), None);
    }

    fn cpu(total: u64, system: u64) -> Option<ContainerCpuStats> {
        Some(ContainerCpuStats {
            cpu_usage: Some(ContainerCpuUsage {
                total_usage: Some(total),
                ..Default::default()
            }),
            system_cpu_usage: Some(system),
            online_cpus: Some(4),
            throttling_data: None,
        })
    }

    #[test]
    fn usage_is_a_rate_and_excludes_cache() {
        let s = ContainerStatsResponse {
            // Half a CPU of 4: 0.5e9 ns of container time per 4e9 ns of system time.
            cpu_stats: cpu(1_500_000_000, 14_000_000_000),
            precpu_stats: cpu(1_000_000_000, 10_000_000_000),
            memory_stats: Some(ContainerMemoryStats {
                usage: Some(100 << 20),
                stats: Some(HashMap::from([(
                    "total_inactive_file".to_string(),
                    30 << 20,
                )])),
                ..Default::default()
            }),
            ..Default::default()
        };
        let u = usage_from_stats(&s);
        assert_eq!(u.cpu_millis, 500);
        assert_eq!(u.memory_bytes, 70 << 20);
    }

    #[test]
    fn first_sample_has_no_cpu_rate() {
        let s = ContainerStatsResponse {
            cpu_stats: cpu(1_500_000_000, 14_000_000_000),
            precpu_stats: None,
            ..Default::default()
        };
        assert_eq!(usage_from_stats(&s).cpu_millis, 0);
    }
}
