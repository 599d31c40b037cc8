//! The simulated driver: the `Driver` contract entirely in memory, so one process can
//! act as thousands of nodes for scale tests (like KWOK for Kubernetes). It enforces
//! the node's declared capacity (CPU, memory, storage, GPU uuids, ports), builds in a
//! few timed steps, and can be told to crash, OOM-kill or lose its engine.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use dcloud_events::model::{ContainerUsage, GpuDevice, NodeFingerprint, Resources, Usage};
use futures::future::BoxFuture;
use futures::FutureExt;

use crate::driver::{container_name, Assignment, Driver, Observed, Report, ReportSender};
use crate::error::AgentError;
use crate::session::{ExecRequest, ExecSession, LogLines, LogOptions, LogStream};
use crate::sim_session::SimSessions;

/// How the simulation behaves.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Time per simulated build step (tests run on tokio's paused clock).
    pub step_delay: Duration,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            step_delay: Duration::from_millis(20),
        }
    }
}

/// `n` simulated nodes with the same declared capacity and deterministic ids
/// (`0x02` + 10 hex digits of the index: locally administered MAC addresses), each
/// labelled `simulated=true`, with fake GPUs `GPU-sim-<node>-<i>`.
pub fn sim_fingerprints(n: usize, per_node: &Resources) -> Vec<(String, NodeFingerprint)> {
    sim_fingerprints_from(0, n, per_node)
}

/// [`sim_fingerprints`] for nodes `first..first + n` (processes sharing one fleet).
pub fn sim_fingerprints_from(
    first: usize,
    n: usize,
    per_node: &Resources,
) -> Vec<(String, NodeFingerprint)> {
    (first..first + n)
        .map(|i| {
            let node_id = format!("0x02{:010x}", i + 1);
            let gpus = (0..per_node.gpus)
                .map(|g| GpuDevice {
                    index: g,
                    uuid: format!("GPU-sim-{node_id}-{g}"),
                    model: "Simulated GPU".to_string(),
                    memory_bytes: 80 << 30,
                })
                .collect();
            let fingerprint = NodeFingerprint {
                hostname: format!("sim-node-{}", i + 1),
                os: "simulated".to_string(),
                capacity: per_node.clone(),
                reserved: Resources::default(),
                gpus,
                labels: BTreeMap::from([("simulated".to_string(), "true".to_string())]),
                datasets: Vec::new(),
                agent_version: env!("CARGO_PKG_VERSION").to_string(),
            };
            (node_id, fingerprint)
        })
        .collect()
}

#[derive(Debug, Clone)]
struct SimContainer {
    id: String,
    image: String,
    resources: Resources,
    gpus: Vec<String>,
    ports: Vec<u16>,
    running: bool,
    exit_code: Option<i64>,
}

#[derive(Default)]
struct SimState {
    containers: BTreeMap<String, SimContainer>,
    images: BTreeSet<String>,
}

/// One simulated node's engine.
pub struct SimDriver {
    node_id: String,
    fingerprint: NodeFingerprint,
    config: SimConfig,
    state: Mutex<SimState>,
    next_id: AtomicU64,
    engine_ok: AtomicBool,
    watcher: Mutex<Option<ReportSender>>,
    sessions: SimSessions,
}

impl SimDriver {
    pub fn new(node_id: String, fingerprint: NodeFingerprint, config: SimConfig) -> Self {
        SimDriver {
            fingerprint,
            config,
            state: Mutex::new(SimState::default()),
            next_id: AtomicU64::new(1),
            engine_ok: AtomicBool::new(true),
            watcher: Mutex::new(None),
            sessions: SimSessions::new(&node_id),
            node_id,
        }
    }

    /// `n` nodes from [`sim_fingerprints`].
    pub fn fleet(n: usize, per_node: &Resources, config: &SimConfig) -> Vec<SimDriver> {
        SimDriver::fleet_from(0, n, per_node, config)
    }

    /// Nodes `first..first + n` of a fleet.
    pub fn fleet_from(
        first: usize,
        n: usize,
        per_node: &Resources,
        config: &SimConfig,
    ) -> Vec<SimDriver> {
        sim_fingerprints_from(first, n, per_node)
            .into_iter()
            .map(|(id, fp)| SimDriver::new(id, fp, config.clone()))
            .collect()
    }

    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    pub fn fingerprint(&self) -> &NodeFingerprint {
        &self.fingerprint
    }

    /// Simulates the engine going away (`false`) or coming back.
    pub fn set_engine_ok(&self, ok: bool) {
        self.engine_ok.store(ok, Ordering::SeqCst);
    }

    /// The deployment's container prints `line` (tests: a line after `logs --follow`).
    pub fn print(&self, deployment_id: &str, stream: LogStream, line: &str) {
        self.sessions.print(deployment_id, stream, line);
    }

    /// The CPU the deployment's container reports from now on (default: half its share).
    pub fn set_cpu(&self, deployment_id: &str, millis: u64) {
        self.sessions.set_cpu(deployment_id, millis);
    }

    /// The deployment's container exits with `code`; false if it was not running.
    pub fn crash(&self, deployment_id: &str, code: i64) -> bool {
        let exited = self.with_state(|s| match s.containers.get_mut(deployment_id) {
            Some(c) if c.running => {
                c.running = false;
                c.exit_code = Some(code);
                true
            }
            _ => false,
        });
        if exited {
            self.sessions.exited(deployment_id);
            self.emit(deployment_id, Report::Exited { code });
        }
        exited
    }

    /// The deployment's container is OOM-killed (reports `OomKilled`, then `Exited{137}`).
    pub fn oom(&self, deployment_id: &str) -> bool {
        let running =
            self.with_state(|s| s.containers.get(deployment_id).is_some_and(|c| c.running));
        if running {
            self.emit(deployment_id, Report::OomKilled);
        }
        running && self.crash(deployment_id, 137)
    }

    /// A process inside the deployment's container is OOM-killed and the container runs
    /// on: reports `OomWarning` only; false if it was not running.
    pub fn oom_child(&self, deployment_id: &str) -> bool {
        let running =
            self.with_state(|s| s.containers.get(deployment_id).is_some_and(|c| c.running));
        if running {
            let message = crate::docker::OOM_WARNING.to_string();
            self.emit(deployment_id, Report::OomWarning { message });
        }
        running
    }

    /// Resources held by the node's containers that are created or running.
    pub fn allocated(&self) -> Resources {
        self.with_state(|s| {
            let mut r = Resources::default();
            for c in s.containers.values().filter(|c| c.exit_code.is_none()) {
                add(&mut r, &c.resources);
            }
            r
        })
    }

    fn with_state<T>(&self, f: impl FnOnce(&mut SimState) -> T) -> T {
        let mut guard = self.state.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut guard)
    }

    fn emit(&self, deployment_id: &str, report: Report) {
        let tx = self
            .watcher
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if let Some(tx) = tx {
            // A full or closed channel drops the report, as a lost connection would.
            let _ = tx.try_send((deployment_id.to_string(), report));
        }
    }

    fn check_engine(&self) -> Result<(), AgentError> {
        if self.engine_ok.load(Ordering::SeqCst) {
            Ok(())
        } else {
            Err(AgentError::EngineUnavailable {
                socket: format!("sim://{}", self.node_id),
                reason: "simulated engine outage".to_string(),
            })
        }
    }

    /// Claims the container slot for `a`, or explains why it does not fit.
    fn admit(&self, s: &SimState, a: &Assignment) -> Result<(), String> {
        let mut used = Resources::default();
        let mut gpus_used = BTreeSet::new();
        let mut ports_used = BTreeSet::new();
        for (dep, c) in &s.containers {
            if c.exit_code.is_none() && dep != &a.deployment_id {
                add(&mut used, &c.resources);
                gpus_used.extend(c.gpus.iter().cloned());
                ports_used.extend(c.ports.iter().copied());
            }
        }
        let cap = &self.fingerprint.capacity;
        let res = &self.fingerprint.reserved;
        let free = |total: u64, reserved: u64, used: u64| {
            total.saturating_sub(reserved).saturating_sub(used)
        };
        let want = &a.resources;
        if want.cpu_millis > free(cap.cpu_millis, res.cpu_millis, used.cpu_millis) {
            return Err(format!(
                "insufficient cpu: {} millicores asked",
                want.cpu_millis
            ));
        }
        if want.memory_bytes > free(cap.memory_bytes, res.memory_bytes, used.memory_bytes) {
            return Err(format!(
                "insufficient memory: {} bytes asked",
                want.memory_bytes
            ));
        }
        if want.storage_bytes > free(cap.storage_bytes, res.storage_bytes, used.storage_bytes) {
            return Err(format!(
                "insufficient storage: {} bytes asked",
                want.storage_bytes
            ));
        }
        for uuid in &a.gpus {
            if !self.fingerprint.gpus.iter().any(|g| &g.uuid == uuid) {
                return Err(format!("gpu {uuid} is not on this node"));
            }
            if gpus_used.contains(uuid) {
                return Err(format!("gpu {uuid} is in use"));
            }
        }
        for p in &a.ports {
            if ports_used.contains(&p.external) {
                return Err(format!("port {} is in use", p.external));
            }
        }
        Ok(())
    }

    async fn ensure(&self, a: &Assignment, tx: &ReportSender) -> Result<(), AgentError> {
        a.validate()?;
        self.check_engine()?;
        let dep = a.deployment_id.clone();
        let send = |r: Report| {
            let dep = dep.clone();
            async move {
                let _ = tx.send((dep, r)).await;
            }
        };
        let (running, cached) = self.with_state(|s| {
            let running = s
                .containers
                .get(&a.deployment_id)
                .is_some_and(|c| c.running && c.image == a.image_tag);
            (running, s.images.contains(&a.image_tag))
        });
        if running {
            // Adopted: say it runs (a repeat is a no-op for the control plane).
            send(Report::Started).await;
            return Ok(());
        }
        if cached {
            send(Report::ImageReady { cached: true }).await;
        } else {
            let steps = a.steps.max(1);
            let commands: Vec<&str> = a
                .dockerfile
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .collect();
            send(Report::BuildStarted { steps }).await;
            for step in 1..=steps {
                tokio::time::sleep(self.config.step_delay).await;
                let command = commands.get(step as usize - 1).copied().unwrap_or("");
                let line = format!("Step {step}/{steps} : {command}");
                self.sessions.print(&dep, LogStream::Build, &line);
                if command.contains("sim:fail") {
                    send(Report::BuildFailed {
                        step,
                        command: command.to_string(),
                        output_tail: "simulated build failure".to_string(),
                    })
                    .await;
                    return Err(AgentError::BuildFailed {
                        step,
                        command: command.to_string(),
                        message: "simulated build failure".to_string(),
                    });
                }
                send(Report::BuildProgress { step, steps }).await;
            }
            self.with_state(|s| s.images.insert(a.image_tag.clone()));
            send(Report::ImageReady { cached: false }).await;
        }
        self.check_engine()?;

        // Create (or adopt) and start, under one lock: no second container, ever. An
        // exited container of the same image is started again; one of another image is
        // replaced.
        let (created, started, replaced) = self.with_state(|s| {
            let existing = s.containers.get(&a.deployment_id);
            if existing.is_some_and(|c| c.running && c.image == a.image_tag) {
                return Ok((None, false, None));
            }
            self.admit(s, a)
                .map_err(|reason| AgentError::Insufficient {
                    node_id: self.node_id.clone(),
                    deployment_id: a.deployment_id.clone(),
                    reason,
                })?;
            let reuse = existing.is_some_and(|c| c.image == a.image_tag);
            let mut created = None;
            let mut replaced = None;
            if !reuse {
                let id = format!(
                    "sim-{}-{}",
                    self.node_id,
                    self.next_id.fetch_add(1, Ordering::Relaxed)
                );
                created = Some(id.clone());
                replaced = s.containers.insert(
                    a.deployment_id.clone(),
                    SimContainer {
                        id,
                        image: a.image_tag.clone(),
                        resources: a.resources.clone(),
                        gpus: a.gpus.clone(),
                        ports: a.ports.iter().map(|p| p.external).collect(),
                        running: false,
                        exit_code: None,
                    },
                );
            }
            if let Some(c) = s.containers.get_mut(&a.deployment_id) {
                c.running = true;
                c.exit_code = None;
            }
            Ok::<_, AgentError>((created, true, replaced))
        })?;
        if let Some(old) = replaced {
            if old.running {
                self.emit(&a.deployment_id, Report::Exited { code: 0 });
            }
            self.emit(&a.deployment_id, Report::Removed);
        }
        if let Some(container_id) = created {
            send(Report::Created { container_id }).await;
        }
        if started {
            self.sessions.started(&dep);
            send(Report::Started).await;
        }
        Ok(())
    }

    fn remove_where(&self, pick: impl Fn(&str, &SimContainer) -> bool) -> Result<(), AgentError> {
        self.check_engine()?;
        let removed: Vec<(String, SimContainer)> = self.with_state(|s| {
            let keys: Vec<String> = s
                .containers
                .iter()
                .filter(|(d, c)| pick(d, c))
                .map(|(d, _)| d.clone())
                .collect();
            keys.into_iter()
                .filter_map(|d| s.containers.remove(&d).map(|c| (d, c)))
                .collect()
        });
        for (dep, c) in removed {
            self.sessions.removed(&dep);
            if c.running {
                self.emit(&dep, Report::Exited { code: 0 });
            }
            self.emit(&dep, Report::Removed);
        }
        Ok(())
    }
}

fn add(total: &mut Resources, r: &Resources) {
    total.cpu_millis += r.cpu_millis;
    total.memory_bytes += r.memory_bytes;
    total.gpus += r.gpus;
    total.storage_bytes += r.storage_bytes;
}

impl Driver for SimDriver {
    fn ensure_running<'a>(
        &'a self,
        assignment: &'a Assignment,
        tx: &'a ReportSender,
    ) -> BoxFuture<'a, Result<(), AgentError>> {
        self.ensure(assignment, tx).boxed()
    }

    fn stop<'a>(
        &'a self,
        deployment_id: &'a str,
        _grace: Duration,
    ) -> BoxFuture<'a, Result<(), AgentError>> {
        async move { self.remove_where(|d, _| d == deployment_id) }.boxed()
    }

    fn remove_container<'a>(
        &'a self,
        container_id: &'a str,
        _grace: Duration,
    ) -> BoxFuture<'a, Result<(), AgentError>> {
        async move { self.remove_where(|_, c| c.id == container_id) }.boxed()
    }

    fn list(&self) -> BoxFuture<'_, Result<Vec<Observed>, AgentError>> {
        async move {
            self.check_engine()?;
            Ok(self.with_state(|s| {
                s.containers
                    .iter()
                    .map(|(dep, c)| Observed {
                        deployment_id: dep.clone(),
                        container_id: c.id.clone(),
                        name: container_name(dep, &self.node_id),
                        image: c.image.clone(),
                        running: c.running,
                        exit_code: c.exit_code,
                    })
                    .collect()
            }))
        }
        .boxed()
    }

    fn stats(&self) -> BoxFuture<'_, Result<Vec<ContainerUsage>, AgentError>> {
        async move {
            self.check_engine()?;
            Ok(self.with_state(|s| {
                s.containers
                    .iter()
                    .filter(|(_, c)| c.running)
                    .map(|(dep, c)| ContainerUsage {
                        deployment_id: dep.clone(),
                        usage: Usage {
                            cpu_millis: self
                                .sessions
                                .cpu(dep)
                                .unwrap_or(c.resources.cpu_millis / 2),
                            memory_bytes: c.resources.memory_bytes / 2,
                        },
                    })
                    .collect()
            }))
        }
        .boxed()
    }

    fn watch(&self, tx: ReportSender) -> BoxFuture<'_, Result<(), AgentError>> {
        async move {
            *self.watcher.lock().unwrap_or_else(|p| p.into_inner()) = Some(tx.clone());
            tx.closed().await;
            Ok(())
        }
        .boxed()
    }

    fn engine_ok(&self) -> bool {
        self.engine_ok.load(Ordering::SeqCst)
    }

    fn logs<'a>(
        &'a self,
        deployment_id: &'a str,
        opts: LogOptions,
    ) -> BoxFuture<'a, Result<LogLines, AgentError>> {
        async move {
            self.check_engine()?;
            self.sessions.logs(deployment_id, &opts)
        }
        .boxed()
    }

    fn exec<'a>(
        &'a self,
        deployment_id: &'a str,
        req: ExecRequest,
    ) -> BoxFuture<'a, Result<ExecSession, AgentError>> {
        async move {
            self.check_engine()?;
            self.sessions.exec(deployment_id, req)
        }
        .boxed()
    }
}
