//! One node's agent loop: register, then sessions of (snapshot → reconcile →
//! subscription from the last seq) with reconnect and backoff between them, plus the
//! node's background tasks (report delivery, the driver's watch, heartbeats).

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dcloud_events::model::{NodeFingerprint, Usage, VolumeUsage};
use serde_json::json;
use tokio::sync::mpsc;
use tokio::task::{AbortHandle, Id, JoinSet};
use tracing::{debug, info, warn};

use super::client::decode;
use super::protocol::SubEvent;
use super::seq::SeqTracker;
use super::wire::{self, Item, Kind};
use super::Shared;
use crate::driver::{Assignment, Driver, Report, ReportSender};
use crate::error::AgentError;
use crate::reconcile::Reconciler;
use crate::usage::NodeSampler;

/// Timings and where state is kept.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    pub heartbeat_interval: Duration,
    /// A reconcile pass also runs this often while connected (retries what failed
    /// because the engine was away).
    pub reconcile_interval: Duration,
    /// SIGTERM → SIGKILL grace when stopping containers.
    pub grace: Duration,
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    /// Where `agent-<node>.seq` files are kept (`None`: in memory only).
    pub data_dir: Option<PathBuf>,
    /// Each node opens its own websocket (as separate real agents do) instead of
    /// sharing the process's one.
    pub connection_per_node: bool,
    /// How often the storage of running deployments is measured and reported.
    pub volume_interval: Duration,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            heartbeat_interval: Duration::from_secs(5),
            reconcile_interval: Duration::from_secs(30),
            grace: Duration::from_secs(10),
            backoff_initial: Duration::from_millis(200),
            backoff_max: Duration::from_secs(10),
            data_dir: None,
            connection_per_node: false,
            volume_interval: Duration::from_secs(60),
        }
    }
}

impl RuntimeConfig {
    /// Delay before reconnect attempt `attempt` (1-based): doubled each time, capped,
    /// with jitter (see [`crate::backoff::Backoff`]).
    pub fn backoff(&self, attempt: u32) -> Duration {
        crate::backoff::Backoff::new(self.backoff_initial, self.backoff_max).delay(attempt)
    }
}

/// Where a node's heartbeat usage comes from.
pub enum UsageSource {
    /// The machine itself (sysinfo).
    Host(Box<NodeSampler>),
    /// The sum of the node's containers (simulated nodes).
    Containers,
}

/// One node the process acts for.
pub struct NodeSpec {
    pub node_id: String,
    pub fingerprint: NodeFingerprint,
    pub driver: Arc<dyn Driver>,
    pub usage: UsageSource,
    /// Delay before the first heartbeat (spreads a fleet's heartbeats).
    pub heartbeat_offset: Duration,
    /// The address users reach the node at, reported after each registration.
    pub address: Option<String>,
}

/// Aborts the node's background tasks when the node's loop ends or is dropped.
struct AbortOnDrop(Vec<AbortHandle>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        for h in &self.0 {
            h.abort();
        }
    }
}

type Images = Arc<Mutex<HashMap<String, String>>>;
/// Deployment → its storage targets and the size each asked for (0: none).
type Sizes = Arc<Mutex<HashMap<String, BTreeMap<String, u64>>>>;

/// What a driver task did, for `finish`.
enum Op {
    Ensure,
    Stop { report_removed: bool },
}

/// A driver task's deployment, what it did, and how that went.
type TaskOutput = (String, Op, Result<(), AgentError>);

struct NodeState {
    node_id: String,
    driver: Arc<dyn Driver>,
    tx: ReportSender,
    images: Images,
    sizes: Sizes,
    assigned: BTreeMap<String, Assignment>,
    reconciler: Reconciler,
    seq: SeqTracker,
    tasks: JoinSet<TaskOutput>,
    by_deployment: HashMap<String, AbortHandle>,
    grace: Duration,
    /// This node's own connection (`connection_per_node`).
    own_ws: Option<super::WsPool>,
}

/// Runs one node until a fatal error (bad token, refused registration).
pub async fn run_node(shared: Arc<Shared>, spec: NodeSpec) -> Result<(), AgentError> {
    let NodeSpec {
        node_id,
        fingerprint,
        driver,
        usage,
        heartbeat_offset,
        address,
    } = spec;
    let config = &shared.config;
    let cluster = register(&shared, &node_id, &fingerprint, address.as_deref()).await?;
    // Before anything touches the engine: from here on the driver sees only what
    // carries this cluster's label.
    if let Some(cluster) = &cluster {
        driver.set_cluster(cluster);
    }
    let sizes: Sizes = Arc::default();

    let images: Images = Arc::default();
    let (tx, rx) = mpsc::channel(1024);
    let mut background = AbortOnDrop(Vec::new());
    background.0.push(
        tokio::spawn(deliver_reports(
            shared.clone(),
            node_id.clone(),
            rx,
            images.clone(),
        ))
        .abort_handle(),
    );
    let watcher = driver.clone();
    let watch_tx = tx.clone();
    background.0.push(
        tokio::spawn(async move {
            if let Err(e) = watcher.watch(watch_tx).await {
                warn!(error = %e, "driver watch ended");
            }
        })
        .abort_handle(),
    );
    background.0.push(
        tokio::spawn(super::sessions::serve(
            shared.clone(),
            node_id.clone(),
            driver.clone(),
        ))
        .abort_handle(),
    );
    background.0.push(
        tokio::spawn(report_volumes(
            shared.clone(),
            node_id.clone(),
            driver.clone(),
            sizes.clone(),
        ))
        .abort_handle(),
    );
    background.0.push(
        tokio::spawn(heartbeats(
            shared.clone(),
            node_id.clone(),
            fingerprint.clone(),
            driver.clone(),
            usage,
            heartbeat_offset,
        ))
        .abort_handle(),
    );

    let seq_path = config
        .data_dir
        .as_ref()
        .map(|d| d.join(format!("agent-{node_id}.seq")));
    let mut st = NodeState {
        node_id: node_id.clone(),
        driver,
        tx,
        images,
        sizes,
        assigned: BTreeMap::new(),
        reconciler: Reconciler::new()
            .with_grace(config.grace)
            .with_node(node_id.clone()),
        seq: SeqTracker::load(seq_path),
        tasks: JoinSet::new(),
        by_deployment: HashMap::new(),
        grace: config.grace,
        own_ws: config.connection_per_node.then(|| {
            super::WsPool::over(shared.ws.servers().clone(), shared.ws.token().to_string())
        }),
    };
    let mut attempt = 0u32;
    loop {
        let err = session(
            &shared,
            &fingerprint,
            address.as_deref(),
            &mut st,
            &mut attempt,
        )
        .await;
        if is_fatal(&err) {
            return Err(err);
        }
        attempt += 1;
        let delay = config.backoff(attempt);
        info!(%node_id, error = %err, retry_in = ?delay, last_seq = st.seq.last(), "reconnecting");
        tokio::time::sleep(delay).await;
    }
}

/// The server refused a heartbeat because it considers the node lost.
fn is_lost(e: &AgentError) -> bool {
    matches!(e, AgentError::Api { code, message, .. } if code == "BAD_USER_INPUT" && message.contains("is lost"))
}

/// Errors that retrying cannot fix: the token is refused.
fn is_fatal(e: &AgentError) -> bool {
    matches!(e, AgentError::Api { code, .. } if code == "UNAUTHENTICATED" || code == "FORBIDDEN")
}

/// Registers the node; returns the server's cluster id (`None` from a server too old
/// to have one).
async fn register(
    shared: &Shared,
    node_id: &str,
    fingerprint: &NodeFingerprint,
    address: Option<&str>,
) -> Result<Option<String>, AgentError> {
    let mut attempt = 0;
    loop {
        let registered = async {
            shared.client.register_node(node_id, fingerprint).await?;
            if let Some(address) = address {
                shared.client.report_node_address(node_id, address).await?;
            }
            shared.client.cluster_id().await
        };
        match registered.await {
            Ok(cluster) => {
                info!(%node_id, ?address, ?cluster, "registered");
                return Ok(cluster);
            }
            Err(e) if e.is_transient() => {
                attempt += 1;
                let delay = shared.config.backoff(attempt);
                warn!(%node_id, error = %e, retry_in = ?delay, "cannot register yet");
                tokio::time::sleep(delay).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// How long a node waits for a server whose state is behind what the node already saw
/// (a standby a moment behind its leader) before it tries another.
const BEHIND_WAIT: Duration = Duration::from_secs(5);

/// The node's assignments from a server whose state holds at least seq `seen` (what
/// this node already acted on). A snapshot older than that would miss deployments the
/// node runs, and reconciling with it would stop them: a server behind is asked again
/// until it caught up, and after [`BEHIND_WAIT`] left for the next server.
async fn fresh_snapshot(
    shared: &Shared,
    node_id: &str,
    seen: u64,
    wait: Duration,
) -> Result<wire::Snapshot, AgentError> {
    let started = tokio::time::Instant::now();
    loop {
        let (index, _) = shared.client.servers().current();
        let snapshot = shared.client.node_assignments(node_id).await?;
        if snapshot.seq >= seen {
            return Ok(snapshot);
        }
        if started.elapsed() >= wait {
            shared.client.servers().failed(index);
            return Err(AgentError::ServerUnavailable {
                url: shared.client.url(),
                reason: format!(
                    "its state is at seq {}, behind the {seen} this node already saw",
                    snapshot.seq
                ),
            });
        }
        debug!(%node_id, snapshot_seq = snapshot.seq, seen, "the server is behind; asking again");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One connected stretch; returns why it ended.
async fn session(
    shared: &Shared,
    fingerprint: &NodeFingerprint,
    address: Option<&str>,
    st: &mut NodeState,
    attempt: &mut u32,
) -> AgentError {
    let snapshot = match fresh_snapshot(shared, &st.node_id, st.seq.last(), BEHIND_WAIT).await {
        Ok(s) => s,
        Err(AgentError::Api { code, .. }) if code == "NOT_FOUND" => {
            // The server does not know this node (any more): register again.
            return match register(shared, &st.node_id, fingerprint, address).await {
                Ok(_) => AgentError::Protocol {
                    op: "nodeAssignments",
                    message: "node was unknown; registered again".to_string(),
                },
                Err(e) => e,
            };
        }
        Err(e) => return e,
    };
    st.assigned.clear();
    let mut stops = Vec::new();
    for item in snapshot.items {
        match item.kind {
            Kind::Run => {
                st.take_run(item).await;
            }
            Kind::Stop => stops.push(item.deployment_id),
            Kind::Stopped | Kind::Lost => {}
        }
    }
    // Stops first (their removal is reported as such, not as a stale container), and
    // let what is in flight finish, so reconcile sees the engine as it settles.
    for dep in stops {
        st.spawn_stop(dep, true);
    }
    while let Some(done) = st.tasks.join_next_with_id().await {
        st.finish(done).await;
    }
    st.reconcile().await;
    let after = st.seq.resume_after(snapshot.seq);
    st.seq.persist();

    let pool = st.own_ws.as_ref().unwrap_or(&shared.ws);
    let conn = match pool.get().await {
        Ok(c) => c,
        Err(e) => return e,
    };
    let vars = json!({ "nodeId": st.node_id, "after": after });
    let mut sub = match conn.subscribe(&wire::assignments_subscription(), vars) {
        Ok(s) => s,
        Err(e) => return e,
    };
    info!(node_id = %st.node_id, after, assigned = st.assigned.len(), "following assignments");
    *attempt = 0;
    let mut tick = tokio::time::interval(shared.config.reconcile_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tokio::select! {
            event = sub.next() => match event {
                Some(SubEvent::Data(data)) => {
                    let item: Item = match decode("assignments", data.get("assignments")) {
                        Ok(i) => i,
                        Err(e) => return e,
                    };
                    if !st.seq.accept(item.seq) {
                        debug!(node_id = %st.node_id, seq = item.seq, "skipping a repeated item");
                        continue;
                    }
                    st.apply(item).await;
                    st.seq.persist();
                }
                Some(SubEvent::Error { code, message }) => {
                    return AgentError::Api { op: "assignments", code, message };
                }
                Some(SubEvent::Complete) | None => {
                    return AgentError::ServerUnavailable {
                        url: shared.ws.url().to_string(),
                        reason: "the assignments subscription ended".to_string(),
                    };
                }
            },
            Some(done) = st.tasks.join_next_with_id(), if !st.tasks.is_empty() => {
                st.finish(done).await;
            }
            _ = tick.tick() => {
                if st.tasks.is_empty() {
                    st.reconcile().await;
                }
            }
        }
    }
}

impl NodeState {
    /// Records a RUN item's assignment; a recipe that cannot be made is a failed build.
    async fn take_run(&mut self, item: Item) -> Option<Assignment> {
        let Some(run) = item.run else {
            // The server sends a RUN item with its assignment; one without it is a
            // server fault (it read its state before folding the event): say so.
            warn!(node_id = %self.node_id, seq = item.seq, deployment = %item.deployment_id,
                "a RUN item came without its assignment; ignored");
            return None;
        };
        if let Some(why) = &run.recipe_error {
            let report = Report::BuildFailed {
                step: 0,
                command: "recipe".to_string(),
                output_tail: why.clone(),
            };
            let _ = self.tx.send((item.deployment_id, report)).await;
            return None;
        }
        let a = run.to_assignment(&self.node_id);
        if let Ok(mut images) = self.images.lock() {
            images.insert(a.deployment_id.clone(), a.image_tag.clone());
        }
        if let Ok(mut sizes) = self.sizes.lock() {
            let targets = a.storage.iter().map(|s| (s.target.clone(), s.size_bytes));
            sizes.insert(a.deployment_id.clone(), targets.collect());
        }
        self.assigned.insert(a.deployment_id.clone(), a.clone());
        Some(a)
    }

    async fn apply(&mut self, item: Item) {
        let dep = item.deployment_id.clone();
        debug!(node_id = %self.node_id, seq = item.seq, kind = ?item.kind, deployment = %dep, "assignment");
        match item.kind {
            Kind::Run => {
                if let Some(a) = self.take_run(item).await {
                    self.cancel(&dep);
                    let (driver, tx) = (self.driver.clone(), self.tx.clone());
                    let handle = self.tasks.spawn(async move {
                        let r = driver.ensure_running(&a, &tx).await;
                        (a.deployment_id, Op::Ensure, r)
                    });
                    self.by_deployment.insert(dep, handle);
                }
            }
            Kind::Stop => {
                self.assigned.remove(&dep);
                self.spawn_stop(dep, true);
            }
            Kind::Stopped | Kind::Lost => {
                self.assigned.remove(&dep);
                self.spawn_stop(dep, false);
            }
        }
    }

    fn cancel(&mut self, dep: &str) {
        if let Some(h) = self.by_deployment.remove(dep) {
            h.abort();
        }
    }

    fn spawn_stop(&mut self, dep: String, report_removed: bool) {
        self.cancel(&dep);
        let (driver, grace) = (self.driver.clone(), self.grace);
        let key = dep.clone();
        let handle = self.tasks.spawn(async move {
            let r = driver.stop(&dep, grace).await;
            (dep, Op::Stop { report_removed }, r)
        });
        self.by_deployment.insert(key, handle);
    }

    async fn finish(&mut self, done: Result<(Id, TaskOutput), tokio::task::JoinError>) {
        let Ok((id, (dep, op, result))) = done else {
            return; // Cancelled: a later item took over.
        };
        if self.by_deployment.get(&dep).is_some_and(|h| h.id() == id) {
            self.by_deployment.remove(&dep);
        }
        match (op, result) {
            (Op::Stop { report_removed }, Ok(())) => {
                if let Ok(mut sizes) = self.sizes.lock() {
                    sizes.remove(&dep);
                }
                if report_removed {
                    let _ = self.tx.send((dep, Report::Removed)).await;
                }
            }
            (Op::Ensure, Ok(())) => {}
            (_, Err(e)) if e.is_transient() => {
                warn!(node_id = %self.node_id, deployment = %dep, error = %e, "engine away; will retry");
            }
            (Op::Ensure, Err(e)) => {
                warn!(node_id = %self.node_id, deployment = %dep, error = %e, "deployment failed");
                self.assigned.remove(&dep);
                if !matches!(e, AgentError::BuildFailed { .. }) {
                    let report = Report::Failed {
                        message: e.to_string(),
                    };
                    let _ = self.tx.send((dep, report)).await;
                }
            }
            (Op::Stop { .. }, Err(e)) => {
                warn!(node_id = %self.node_id, deployment = %dep, error = %e, "stop failed");
            }
        }
    }

    async fn reconcile(&mut self) {
        let assigned: Vec<Assignment> = self.assigned.values().cloned().collect();
        match self
            .reconciler
            .run_once(&*self.driver, &assigned, &self.tx)
            .await
        {
            Ok(outcome) => {
                for (key, e) in outcome.failures {
                    if !e.is_transient() {
                        self.assigned.remove(&key);
                    }
                }
            }
            Err(e) => warn!(node_id = %self.node_id, error = %e, "reconcile failed; will retry"),
        }
    }
}

/// Measures the storage of this node's running deployments every
/// `volume_interval` and reports each deployment's when it changed (the server records
/// it only when it moved by enough to matter).
async fn report_volumes(
    shared: Arc<Shared>,
    node_id: String,
    driver: Arc<dyn Driver>,
    sizes: Sizes,
) {
    let mut sent: HashMap<String, Vec<VolumeUsage>> = HashMap::new();
    let mut tick = tokio::time::interval(shared.config.volume_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let measured = match driver.volume_usage().await {
            Ok(m) => m,
            Err(e) => {
                debug!(%node_id, error = %e, "cannot measure volumes this round");
                continue;
            }
        };
        let mut by_deployment: BTreeMap<String, Vec<VolumeUsage>> = BTreeMap::new();
        for m in measured {
            let size_bytes = sizes
                .lock()
                .ok()
                .and_then(|s| {
                    s.get(&m.deployment_id)
                        .and_then(|t| t.get(&m.target).copied())
                })
                .unwrap_or(0);
            by_deployment
                .entry(m.deployment_id)
                .or_default()
                .push(VolumeUsage {
                    target: m.target,
                    used_bytes: m.used_bytes,
                    size_bytes,
                    enforced: m.enforced && size_bytes > 0,
                });
        }
        sent.retain(|d, _| by_deployment.contains_key(d));
        for (deployment_id, mut volumes) in by_deployment {
            volumes.sort_by(|a, b| a.target.cmp(&b.target));
            if sent.get(&deployment_id) == Some(&volumes) {
                continue;
            }
            match shared
                .client
                .report_volume_usage(&node_id, &deployment_id, &volumes)
                .await
            {
                Ok(_) => {
                    sent.insert(deployment_id, volumes);
                }
                Err(e) => {
                    debug!(%node_id, deployment = %deployment_id, error = %e, "volume usage not reported")
                }
            }
        }
    }
}

/// Sends the driver's reports in order, retrying while the server is away. A report
/// the server refuses is logged and dropped (repeats are no-ops there).
async fn deliver_reports(
    shared: Arc<Shared>,
    node_id: String,
    mut rx: mpsc::Receiver<(String, Report)>,
    images: Images,
) {
    while let Some((dep, report)) = rx.recv().await {
        let image = images
            .lock()
            .ok()
            .and_then(|m| m.get(&dep).cloned())
            .unwrap_or_default();
        // One key per report, the same for each retry of it: a report whose answer was
        // lost (the server restarted) is not recorded twice.
        let key = uuid::Uuid::new_v4().simple().to_string();
        let mut attempt = 0;
        loop {
            match shared
                .client
                .report_status(&node_id, &dep, &report, &image, &key)
                .await
            {
                Ok(()) => break,
                Err(e) if e.is_transient() => {
                    if attempt % 10 == 0 {
                        warn!(deployment = %dep, ?report, error = %e, attempt, "report not taken yet; retrying");
                    }
                    attempt += 1;
                    tokio::time::sleep(shared.config.backoff(attempt)).await;
                }
                Err(e) => {
                    warn!(deployment = %dep, ?report, error = %e, "report refused");
                    break;
                }
            }
        }
    }
}

async fn heartbeats(
    shared: Arc<Shared>,
    node_id: String,
    fingerprint: NodeFingerprint,
    driver: Arc<dyn Driver>,
    mut usage: UsageSource,
    offset: Duration,
) {
    tokio::time::sleep(offset).await;
    let mut tick = tokio::time::interval(shared.config.heartbeat_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut engine_was_ok = true;
    loop {
        tick.tick().await;
        let containers = driver.stats().await.unwrap_or_default();
        let engine_ok = driver.engine_ok();
        if engine_ok != engine_was_ok {
            if engine_ok {
                info!(%node_id, "container engine is back");
            } else {
                warn!(%node_id, "container engine unreachable; heartbeats say so");
            }
            engine_was_ok = engine_ok;
        }
        let node_usage = match &mut usage {
            UsageSource::Host(sampler) => sampler.sample(),
            UsageSource::Containers => containers.iter().fold(Usage::default(), |mut u, c| {
                u.cpu_millis += c.usage.cpu_millis;
                u.memory_bytes += c.usage.memory_bytes;
                u
            }),
        };
        match shared
            .client
            .heartbeat(&node_id, &node_usage, &containers, engine_ok)
            .await
        {
            Ok(()) => {}
            Err(e) if is_lost(&e) => {
                // The server gave up on this node while it was running: speak again
                // as a node, so it is alive and takes work again.
                warn!(%node_id, "the server marked this node lost; registering again");
                if let Err(e) = shared.client.register_node(&node_id, &fingerprint).await {
                    debug!(%node_id, error = %e, "registration not delivered");
                }
            }
            Err(e) => debug!(%node_id, error = %e, "heartbeat not delivered"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A GraphQL server on loopback whose `nodeAssignments` answers the seqs of
    /// `answers` in turn (the last one from then on).
    async fn assignments_server(answers: Vec<u64>) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let mut answers = answers.into_iter();
            let mut last = 0;
            loop {
                let Ok((mut sock, _)) = listener.accept().await else {
                    return;
                };
                let mut buf = vec![0u8; 64 * 1024];
                let _ = sock.read(&mut buf).await;
                if let Some(seq) = answers.next() {
                    last = seq;
                }
                let body =
                    format!(r#"{{"data":{{"nodeAssignments":{{"seq":{last},"items":[]}}}}}}"#);
                let reply = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = sock.write_all(reply.as_bytes()).await;
            }
        });
        format!("http://{addr}")
    }

    #[tokio::test]
    async fn a_snapshot_behind_what_the_node_saw_is_asked_for_again() {
        let url = assignments_server(vec![5, 5, 12]).await;
        let shared = Shared::new(&url, "t", RuntimeConfig::default()).expect("shared");
        let s = fresh_snapshot(&shared, "n1", 10, Duration::from_secs(5))
            .await
            .expect("a snapshot once the server caught up");
        assert_eq!(s.seq, 12);
        // One that stays behind is left, after the wait, as unavailable.
        let url = assignments_server(vec![5]).await;
        let shared = Shared::new(&url, "t", RuntimeConfig::default()).expect("shared");
        match fresh_snapshot(&shared, "n1", 10, Duration::from_millis(200)).await {
            Err(AgentError::ServerUnavailable { reason, .. }) => {
                assert!(reason.contains("behind"), "{reason}")
            }
            other => panic!("expected unavailable, got {other:?}"),
        }
        // A server at or past what the node saw answers at once.
        let s = fresh_snapshot(&shared, "n1", 5, Duration::from_millis(200))
            .await
            .expect("snapshot");
        assert_eq!(s.seq, 5);
    }
}
