//! A deterministic stream of realistic events for benchmarks: 1,000 nodes register,
//! ten environments are created, then a steady mix of heartbeats, deployments placed
//! and started, and older deployments stopped (about 50,000 stay live).

use dcloud_events::model::{PlacementPolicy, Usage};
use dcloud_events::{Event, NewEvent};

use crate::crash::{env_spec, node_fingerprint};

const NODES: u64 = 1_000;
const ENVS: u64 = 10;
const LIVE: u64 = 50_000;

pub struct Generator {
    seed: u64,
    n: u64,
    deployments: u64,
    queue: Vec<Event>,
}

impl Generator {
    pub fn new(seed: u64) -> Self {
        Generator {
            seed,
            n: 0,
            deployments: 0,
            queue: Vec::new(),
        }
    }

    fn node_id(i: u64) -> String {
        format!("0x{:012x}", 0x5f6e_0000_0000 + i)
    }

    pub fn next_event(&mut self) -> NewEvent {
        let event = self.next_inner();
        self.n += 1;
        NewEvent {
            time_ms: 1_700_000_000_000 + self.n as i64,
            actor: "system".into(),
            correlation: format!("w{}-{}", self.seed, self.n),
            event,
        }
    }

    fn next_inner(&mut self) -> Event {
        if self.n < NODES {
            let id = Self::node_id(self.n);
            return Event::NodeRegistered {
                node_id: id.clone(),
                fingerprint: node_fingerprint(&id, 64, 256, 4),
            };
        }
        if self.n < NODES + ENVS {
            let k = self.n - NODES;
            return Event::EnvironmentCreated {
                env_id: format!("env-{k}"),
                owner: "bench".into(),
                spec: env_spec(&format!("bench-{k}"), 100, 64, 0),
            };
        }
        if let Some(e) = self.queue.pop() {
            return e;
        }
        let i = self.n;
        if i % 10 < 6 {
            return Event::NodeHeartbeat {
                node_id: Self::node_id(i % NODES),
                usage: Usage {
                    cpu_millis: i % 64_000,
                    memory_bytes: (i % 256) << 30,
                },
                containers: vec![],
                engine_ok: true,
            };
        }
        // Request, schedule and start one deployment; stop an old one.
        let k = self.deployments;
        self.deployments += 1;
        let id = format!("d{k}");
        if k >= LIVE {
            self.queue.push(Event::DeploymentStopped {
                deployment_id: format!("d{}", k - LIVE),
            });
        }
        self.queue.push(Event::ContainerStarted {
            deployment_id: id.clone(),
        });
        self.queue.push(Event::DeploymentScheduled {
            deployment_id: id.clone(),
            node_id: Self::node_id(k % NODES),
            gpus: vec![],
            image: "dcloud-env:0123456789abcdef".into(),
            score_milli: 900,
            runners_up: vec![],
            rejected: vec![],
            candidates: NODES as u32,
        });
        Event::DeploymentRequested {
            deployment_id: id,
            env_id: format!("env-{}", k % ENVS),
            env_version: 1,
            owner: "bench".into(),
            policy: PlacementPolicy::Spread,
        }
    }
}
