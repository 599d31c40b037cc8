//! A seeded deterministic simulation of the control plane's core with its agents:
//! simulated time, users deploying and stopping, agents that follow their assignments
//! and report what their containers do, and random faults (agents killed and brought
//! back after the node TTL, heartbeats lost, server restarts from the log or from a
//! snapshot plus its tail, appends that fail as a failed fsync does).
//!
//! The "server" is the writer's core, run in-process and single-threaded so that a
//! seed replays exactly: `decide` on the live state, append the events to the log
//! (here a list of encoded records with their hash chain, written with the real
//! record codec), then `apply`. A failed append applies nothing and the server
//! restarts from its log, as the real writer fail-stops. The async writer's queueing,
//! batching and request keys are covered by other tests; this one checks the rules
//! they rely on.
//!
//! Invariants, checked after every step and at the end:
//! - no node is over-committed and every allocation matches its deployment
//!   (`State::check_invariants`), and no deployment is booked on two nodes;
//! - every acknowledged event is kept: a restart comes back with exactly the log's
//!   events and the digest the live state had;
//! - replay from empty, and from a snapshot plus the tail, give the live digest;
//! - the log's hash chain verifies record by record;
//! - after the faults stop and every agent is back, each deployment runs in at most
//!   one container, on the node the state names.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use dcloud_events::model::{ContainerUsage, PlacementPolicy, Usage};
use dcloud_events::record::{decode_record, Decoder, Encoder};
use dcloud_events::{Envelope, EnvelopeBody, Hash, GENESIS_HASH, SCHEMA_VERSION};
use dcloud_projections::{
    decide, Actor, Command, Ctx, DeploymentStatus, DomainError, Report, Settings, State,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::crash::{env_spec, node_fingerprint, small_catalog};

/// What one seed did.
#[derive(Debug, Default, Clone, Copy)]
pub struct SimStats {
    pub commands: u64,
    pub refused: u64,
    pub events: u64,
    pub restarts: u64,
    pub snapshot_restarts: u64,
    pub failed_appends: u64,
    pub agent_kills: u64,
    pub nodes_lost: u64,
    /// Lost nodes whose deployments were moved when their grace ran out.
    pub nodes_evicted: u64,
    /// Lost nodes that registered again within their grace, still holding deployments.
    pub nodes_back_in_grace: u64,
    pub deployments: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Held {
    Created,
    Running,
    Exited,
}

struct Agent {
    node: String,
    alive: bool,
    /// Heartbeats it sends are lost on the way while set (a partition).
    muted_until_ms: i64,
    /// Its containers on the engine, by deployment.
    containers: BTreeMap<String, Held>,
}

/// One simulated run.
pub struct Sim {
    seed: u64,
    rng: StdRng,
    now_ms: i64,
    ttl_ms: i64,
    settings: Arc<Settings>,
    records: Vec<Vec<u8>>,
    head: Hash,
    encoder: Encoder,
    state: State,
    snapshot: Option<(u64, Vec<u8>)>,
    agents: Vec<Agent>,
    /// When the server last heard each node (its memory: lost on restart).
    heard: BTreeMap<String, i64>,
    envs: Vec<String>,
    next_id: u64,
    fail_next_append: bool,
    pub stats: SimStats,
}

/// A broken invariant, with the seed and step that broke it.
#[derive(Debug)]
pub struct SimFailure {
    pub seed: u64,
    pub step: usize,
    pub message: String,
}

impl std::fmt::Display for SimFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "seed {} step {}: {} (replay: DCLOUD_SIM_SEED={} cargo test -p replay-tests --test simulation)",
            self.seed, self.step, self.message, self.seed
        )
    }
}

const NODES: usize = 4;

impl Sim {
    pub fn new(seed: u64) -> Sim {
        let settings = Settings {
            node_ttl_ms: 15_000,
            // Some nodes come back within it (keeping their deployments), some after.
            lost_node_grace_ms: 30_000,
            ..Settings::default()
        };
        Sim {
            seed,
            rng: StdRng::seed_from_u64(seed),
            now_ms: 1_700_000_000_000,
            ttl_ms: settings.node_ttl_ms,
            settings: Arc::new(settings),
            records: Vec::new(),
            head: GENESIS_HASH,
            encoder: Encoder::new(),
            state: State::default(),
            snapshot: None,
            agents: (0..NODES)
                .map(|i| Agent {
                    node: format!("0x5f6e0000{i:04x}"),
                    alive: true,
                    muted_until_ms: 0,
                    containers: BTreeMap::new(),
                })
                .collect(),
            heard: BTreeMap::new(),
            envs: Vec::new(),
            next_id: 0,
            fail_next_append: false,
            stats: SimStats::default(),
        }
    }

    /// Runs `steps` steps with faults, then a calm phase in which every agent comes
    /// back and converges; checks the invariants throughout.
    pub fn run(mut self, steps: usize) -> Result<SimStats, SimFailure> {
        let seed = self.seed;
        self.setup().map_err(|message| SimFailure {
            seed,
            step: 0,
            message,
        })?;
        for step in 1..=steps {
            self.step()
                .and_then(|()| self.check())
                .map_err(|message| SimFailure {
                    seed,
                    step,
                    message,
                })?;
        }
        // Calm: no faults, every agent back; they converge within a few TTLs.
        for a in &mut self.agents {
            a.alive = true;
            a.muted_until_ms = 0;
        }
        for i in 0..NODES {
            let node = self.agents[i].node.clone();
            self.register(&node).map_err(|message| SimFailure {
                seed,
                step: steps,
                message,
            })?;
        }
        for calm in 0..60 {
            let step = steps + 1 + calm;
            self.now_ms += 1_000;
            let r = (0..NODES)
                .try_for_each(|i| self.agent_tick(i))
                .and_then(|()| self.liveness())
                .and_then(|()| self.check());
            r.map_err(|message| SimFailure {
                seed,
                step,
                message,
            })?;
        }
        self.check_converged()
            .and_then(|()| self.check_replay())
            .map_err(|message| SimFailure {
                seed,
                step: steps + 61,
                message,
            })?;
        Ok(self.stats)
    }

    fn setup(&mut self) -> Result<(), String> {
        let admin = Actor::admin("root");
        self.submit(
            &admin,
            Command::UpsertCatalog {
                catalog: small_catalog(),
            },
        )?;
        for i in 0..NODES {
            let node = self.agents[i].node.clone();
            self.register(&node)?;
        }
        for e in 0..3u64 {
            let env_id = format!("env-{e}");
            let spec = env_spec(
                &format!("env{e}"),
                500 + 700 * e,
                256 + 512 * e,
                (e == 2) as u32,
            );
            self.submit(
                &Actor::user("alice"),
                Command::CreateEnvironment {
                    env_id: env_id.clone(),
                    spec,
                },
            )?;
            self.envs.push(env_id);
        }
        Ok(())
    }

    fn register(&mut self, node: &str) -> Result<(), String> {
        let cpus = 2 + (node.as_bytes()[node.len() - 1] % 3) as u64;
        let cmd = Command::RegisterNode {
            node_id: node.to_string(),
            fingerprint: node_fingerprint(node, cpus, 4, 1),
        };
        if self
            .state
            .node(node)
            .is_some_and(|n| !n.is_alive() && !n.deployments.is_empty())
        {
            self.stats.nodes_back_in_grace += 1;
        }
        self.submit(&Actor::agent(node), cmd)?;
        self.heard.insert(node.to_string(), self.now_ms);
        Ok(())
    }

    /// One step of the faulty phase.
    fn step(&mut self) -> Result<(), String> {
        let faults = true;
        self.now_ms += 1_000;
        let roll = self.rng.random_range(0..100);
        match roll {
            0..=29 => self.user_deploy()?,
            30..=39 => self.user_stop()?,
            40..=79 => {
                let i = self.rng.random_range(0..NODES);
                self.agent_tick(i)?;
            }
            80..=84 if faults => {
                // An agent is killed (SIGKILL): its containers stay on the engine.
                let i = self.rng.random_range(0..NODES);
                if self.agents[i].alive {
                    self.agents[i].alive = false;
                    self.stats.agent_kills += 1;
                }
            }
            85..=89 if faults => {
                // A killed agent comes back: it registers again.
                let i = self.rng.random_range(0..NODES);
                if !self.agents[i].alive {
                    self.agents[i].alive = true;
                    let node = self.agents[i].node.clone();
                    self.register(&node)?;
                }
            }
            90..=91 if faults => {
                // A partition: the node's heartbeats are lost for a while.
                let i = self.rng.random_range(0..NODES);
                self.agents[i].muted_until_ms = self.now_ms + self.rng.random_range(5_000..40_000);
            }
            92..=93 if faults => self.restart()?,
            94 if faults => self.fail_next_append = true,
            95..=96 => self.take_snapshot(),
            97 => {
                let i = self.rng.random_range(0..NODES);
                let node = self.agents[i].node.clone();
                let cmd = if self.rng.random() {
                    Command::DrainNode { node_id: node }
                } else {
                    Command::UndrainNode { node_id: node }
                };
                self.submit(&Actor::admin("root"), cmd)?;
            }
            _ => {}
        }
        self.liveness()
    }

    fn fresh(&mut self, prefix: &str) -> String {
        self.next_id += 1;
        format!("{prefix}-{}", self.next_id)
    }

    fn user_deploy(&mut self) -> Result<(), String> {
        let env_id = self.envs[self.rng.random_range(0..self.envs.len())].clone();
        let deployment_id = self.fresh("dep");
        let policy = match self.rng.random_range(0..3) {
            0 => None,
            1 => Some(PlacementPolicy::Spread),
            _ => Some(PlacementPolicy::BinPack),
        };
        self.stats.deployments += 1;
        self.submit(
            &Actor::user("alice"),
            Command::Deploy {
                deployment_id,
                env_id,
                policy,
                wait_for_quota: false,
            },
        )
    }

    fn user_stop(&mut self) -> Result<(), String> {
        let live: Vec<String> = self
            .state
            .deployments
            .values()
            .filter(|d| d.status.is_live())
            .map(|d| d.id.clone())
            .collect();
        if live.is_empty() {
            return Ok(());
        }
        let deployment_id = live[self.rng.random_range(0..live.len())].clone();
        self.submit(&Actor::user("alice"), Command::Stop { deployment_id })
    }

    /// An alive agent heartbeats and takes one step on each of its deployments.
    fn agent_tick(&mut self, i: usize) -> Result<(), String> {
        if !self.agents[i].alive {
            return Ok(());
        }
        let node = self.agents[i].node.clone();
        let actor = Actor::agent(&node);
        if self.agents[i].muted_until_ms <= self.now_ms {
            let containers = self.agents[i]
                .containers
                .iter()
                .filter(|(_, c)| **c == Held::Running)
                .map(|(d, _)| ContainerUsage {
                    deployment_id: d.clone(),
                    usage: Usage {
                        cpu_millis: 10,
                        memory_bytes: 1 << 20,
                    },
                })
                .collect();
            let beat = Command::Heartbeat {
                node_id: node.clone(),
                usage: Usage {
                    cpu_millis: 100,
                    memory_bytes: 1 << 28,
                },
                containers,
                engine_ok: true,
            };
            match self.try_submit(&actor, beat)? {
                Ok(()) => {
                    self.heard.insert(node.clone(), self.now_ms);
                }
                // The server took the node for lost: the agent registers again.
                Err(DomainError::Invalid(m)) if m.contains("is lost") => self.register(&node)?,
                Err(_) => {}
            }
        }
        // What the server assigns to this node, as its assignment stream says.
        let assigned: BTreeMap<String, DeploymentStatus> = self
            .state
            .deployments
            .values()
            .filter(|d| d.node.as_deref() == Some(node.as_str()) && d.status.holds_resources())
            .map(|d| (d.id.clone(), d.status))
            .collect();
        for (dep, status) in &assigned {
            let held = self.agents[i].containers.get(dep).copied();
            let image_ready = self.state.deployments[dep].image_ready;
            let report = match (status, held) {
                (DeploymentStatus::Stopping, _) => {
                    self.agents[i].containers.remove(dep);
                    Some(Report::ContainerRemoved)
                }
                (DeploymentStatus::Scheduled | DeploymentStatus::Building, _) if !image_ready => {
                    Some(Report::ImageReady {
                        image: self.state.deployments[dep]
                            .image
                            .clone()
                            .unwrap_or_default(),
                        cached: true,
                    })
                }
                (DeploymentStatus::Scheduled | DeploymentStatus::Building, _) => {
                    self.agents[i].containers.insert(dep.clone(), Held::Created);
                    Some(Report::ContainerCreated {
                        container_id: format!("c-{dep}-{node}"),
                    })
                }
                (DeploymentStatus::Created, _) => {
                    self.agents[i].containers.insert(dep.clone(), Held::Running);
                    Some(Report::ContainerStarted)
                }
                (DeploymentStatus::Running, held) if held != Some(Held::Running) => {
                    // Adopted after a restart, or re-made: it runs here now.
                    self.agents[i].containers.insert(dep.clone(), Held::Running);
                    Some(Report::ContainerStarted)
                }
                (DeploymentStatus::Running, _) => match self.rng.random_range(0..100) {
                    0..=2 => {
                        self.agents[i].containers.insert(dep.clone(), Held::Exited);
                        Some(Report::ContainerExited {
                            code: self.rng.random_range(0..3),
                        })
                    }
                    3 => {
                        self.agents[i].containers.insert(dep.clone(), Held::Exited);
                        Some(Report::ContainerOomKilled)
                    }
                    _ => None,
                },
                _ => None,
            };
            if let Some(report) = report {
                let cmd = Command::Report {
                    deployment_id: dep.clone(),
                    report,
                };
                self.try_submit(&actor, cmd)?.ok();
            }
        }
        // Containers of deployments no longer assigned here: removed; a stale one
        // (moved away while this agent was gone) is reported.
        let mine: Vec<String> = self.agents[i].containers.keys().cloned().collect();
        for dep in mine {
            if assigned.contains_key(&dep) {
                continue;
            }
            self.agents[i].containers.remove(&dep);
            let moved = self
                .state
                .deployments
                .get(&dep)
                .is_some_and(|d| d.node.as_deref() != Some(node.as_str()));
            if moved {
                let cmd = Command::ReportStaleContainer {
                    node_id: node.clone(),
                    deployment_id: dep.clone(),
                    container_id: format!("c-{dep}-{node}"),
                };
                self.try_submit(&actor, cmd)?.ok();
            }
        }
        Ok(())
    }

    /// The server's liveness timer: nodes not heard from within the TTL are lost, and
    /// lost nodes past their grace give up their deployments.
    fn liveness(&mut self) -> Result<(), String> {
        let late: Vec<String> = self
            .state
            .nodes_by_id()
            .filter(|n| n.is_alive())
            .filter(|n| {
                self.heard
                    .get(&n.id)
                    .is_none_or(|t| self.now_ms - t > self.ttl_ms)
            })
            .map(|n| n.id.clone())
            .collect();
        if !late.is_empty() {
            self.stats.nodes_lost += late.len() as u64;
            self.submit(&Actor::system(), Command::MarkNodesLost { node_ids: late })?;
        }
        let grace = self.settings.lost_node_grace_ms;
        let due: Vec<String> = self
            .state
            .nodes_by_id()
            .filter(|n| !n.deployments.is_empty() && n.lost_past(grace, self.now_ms))
            .map(|n| n.id.clone())
            .collect();
        if due.is_empty() {
            return Ok(());
        }
        self.stats.nodes_evicted += due.len() as u64;
        let cmd = Command::EvictLostNodes {
            node_ids: due,
            force: false,
        };
        self.submit(&Actor::system(), cmd)
    }

    fn take_snapshot(&mut self) {
        self.snapshot = Some((self.state.last_seq(), self.state.to_snapshot_bytes()));
    }

    /// The server restarts: from its newest snapshot plus the tail when it has one
    /// (and a coin says so), else from the whole log. Nothing acknowledged is lost.
    fn restart(&mut self) -> Result<(), String> {
        let live = (self.state.last_seq(), self.state.digest());
        let use_snapshot = self.snapshot.is_some() && self.rng.random();
        self.state = self.recover(use_snapshot)?;
        self.stats.restarts += 1;
        self.stats.snapshot_restarts += use_snapshot as u64;
        if (self.state.last_seq(), self.state.digest()) != live {
            return Err(format!(
                "a restart (snapshot: {use_snapshot}) came back at seq {} with another state than the live one at seq {}",
                self.state.last_seq(),
                live.0
            ));
        }
        // A new process: it has heard from no node yet, so each gets a full TTL.
        for t in self.heard.values_mut() {
            *t = self.now_ms;
        }
        Ok(())
    }

    fn recover(&self, use_snapshot: bool) -> Result<State, String> {
        let (mut state, from) = match (&self.snapshot, use_snapshot) {
            (Some((seq, bytes)), true) => (
                State::from_snapshot_bytes(bytes).map_err(|e| format!("snapshot: {e}"))?,
                *seq,
            ),
            _ => (State::default(), 0),
        };
        for (i, bytes) in self.records.iter().enumerate().skip(from as usize) {
            let env =
                decode_record(i as u64 + 1, bytes).map_err(|e| format!("record {}: {e}", i + 1))?;
            state.apply(&env);
        }
        Ok(state)
    }

    fn submit(&mut self, actor: &Actor, cmd: Command) -> Result<(), String> {
        self.try_submit(actor, cmd).map(drop)
    }

    /// Decides `cmd`; a refusal is `Ok(Err(_))`. Appends and applies the events, or,
    /// with a failed append pending, appends nothing and restarts the server.
    fn try_submit(
        &mut self,
        actor: &Actor,
        cmd: Command,
    ) -> Result<Result<(), DomainError>, String> {
        self.stats.commands += 1;
        let ctx = Ctx {
            now_ms: self.now_ms,
            actor: actor.clone(),
            settings: self.settings.clone(),
        };
        let events = match decide(&self.state, &cmd, &ctx) {
            Ok(e) => e,
            Err(e) => {
                self.stats.refused += 1;
                return Ok(Err(e));
            }
        };
        if events.is_empty() {
            return Ok(Ok(()));
        }
        if std::mem::take(&mut self.fail_next_append) {
            // The fsync failed: nothing was acknowledged and nothing applied; the
            // writer stops and the server comes back from its log.
            self.stats.failed_appends += 1;
            let before = (self.state.last_seq(), self.state.digest());
            self.restart()?;
            if (self.state.last_seq(), self.state.digest()) != before {
                return Err("a failed append left a trace".to_string());
            }
            return Ok(Err(DomainError::Invalid("the append failed".into())));
        }
        for event in events {
            let seq = self.records.len() as u64 + 1;
            let body = EnvelopeBody {
                seq,
                time_ms: self.now_ms,
                actor: actor.label(),
                correlation: format!("sim-{seq}"),
                event,
            };
            let (bytes, hash) = self
                .encoder
                .encode(&body, &self.head)
                .map_err(|e| format!("encode: {e}"))?;
            self.records.push(bytes.to_vec());
            let env = Envelope {
                seq,
                time_ms: body.time_ms,
                actor: body.actor,
                correlation: body.correlation,
                schema: SCHEMA_VERSION,
                prev_hash: self.head,
                hash,
                event: body.event,
            };
            self.head = hash;
            self.state.apply(&env);
            self.stats.events += 1;
        }
        Ok(Ok(()))
    }

    /// After every step: the state's own invariants, and no deployment booked twice.
    fn check(&self) -> Result<(), String> {
        self.state.check_invariants()?;
        let mut booked = BTreeSet::new();
        for n in &self.state.nodes {
            for d in &n.deployments {
                if !booked.insert(d.clone()) {
                    return Err(format!("deployment {d} is booked on two nodes"));
                }
            }
        }
        if self.state.last_seq() != self.records.len() as u64 {
            return Err(format!(
                "the state is at seq {} but the log holds {}",
                self.state.last_seq(),
                self.records.len()
            ));
        }
        Ok(())
    }

    /// After the calm phase: each deployment runs in at most one container, on the
    /// node the state names, and each running one is where the state says.
    fn check_converged(&self) -> Result<(), String> {
        let mut running: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for a in &self.agents {
            for (d, c) in &a.containers {
                if *c == Held::Running {
                    running.entry(d.as_str()).or_default().push(a.node.as_str());
                }
            }
        }
        for (d, nodes) in &running {
            if nodes.len() > 1 {
                return Err(format!("deployment {d} runs on {nodes:?}"));
            }
            let dep = &self.state.deployments[*d];
            if dep.node.as_deref() != Some(nodes[0]) || !dep.status.holds_resources() {
                return Err(format!(
                    "deployment {d} runs on {} but the state says {:?} on {:?}",
                    nodes[0], dep.status, dep.node
                ));
            }
        }
        for dep in self.state.deployments.values() {
            if dep.status == DeploymentStatus::Running && !running.contains_key(dep.id.as_str()) {
                return Err(format!("deployment {} is running on no engine", dep.id));
            }
        }
        Ok(())
    }

    /// Replays from empty and from the snapshot equal the live state, and the chain
    /// verifies record by record.
    fn check_replay(&mut self) -> Result<(), String> {
        let live = self.state.digest();
        if self.recover(false)?.digest() != live {
            return Err("replay from empty differs from the live state".into());
        }
        if self.snapshot.is_some() && self.recover(true)?.digest() != live {
            return Err("snapshot plus tail differs from the live state".into());
        }
        let mut decoder = Decoder::new();
        let mut prev = GENESIS_HASH;
        for (i, bytes) in self.records.iter().enumerate() {
            let env = decoder
                .decode_checked(i as u64 + 1, bytes)
                .map_err(|e| format!("record {} does not verify: {e}", i + 1))?;
            if env.prev_hash != prev {
                return Err(format!("record {} does not chain to the one before", i + 1));
            }
            prev = env.hash;
        }
        Ok(())
    }
}
