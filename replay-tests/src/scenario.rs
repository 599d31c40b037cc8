//! Random and fixed command sequences run through the real writer, for the replay
//! property test and the golden log.

use std::path::Path;
use std::sync::Arc;

use dcloud::writer::{WriterConfig, WriterHandle};
use dcloud_events::model::{PlacementPolicy, PortPublish, Protocol, Role, Usage};
use dcloud_events::EventLog;
use dcloud_projections::command::Report;
use dcloud_projections::{Actor, Command, Settings};

use crate::crash::{env_spec, node_fingerprint, small_catalog};

/// One step: who sends which command.
#[derive(Debug, Clone)]
pub struct Step {
    pub actor: Actor,
    pub cmd: Command,
}

/// A compact description of a step that proptest can generate and shrink.
#[derive(Debug, Clone, Copy)]
pub enum Op {
    RegisterNode {
        node: u8,
        cpus: u8,
        gpus: u8,
    },
    CreateEnv {
        env: u8,
        cpu_tenths: u8,
        mem_mib: u16,
        gpus: u8,
        port: Option<u8>,
    },
    UpdateEnv {
        env: u8,
        expected: u8,
        cpu_tenths: u8,
    },
    Deploy {
        env: u8,
        deployment: u8,
        binpack: bool,
    },
    Stop {
        deployment: u8,
    },
    Heartbeat {
        node: u8,
    },
    Lose {
        node: u8,
    },
    Drain {
        node: u8,
        on: bool,
    },
    Report {
        deployment: u8,
        node: u8,
        kind: u8,
    },
    Token {
        id: u8,
    },
    UserDeploy {
        env: u8,
        deployment: u8,
    },
}

pub fn node_id(n: u8) -> String {
    format!("0x00000000{:04x}", n)
}

fn env_id(e: u8) -> String {
    format!("env-{e}")
}

fn dep_id(d: u8) -> String {
    format!("dep-{d}")
}

/// Turns an op into the command and actor that send it.
pub fn step_of(op: Op) -> Step {
    let admin = Actor::admin("root");
    match op {
        Op::RegisterNode { node, cpus, gpus } => Step {
            actor: Actor::agent(&node_id(node)),
            cmd: Command::RegisterNode {
                node_id: node_id(node),
                fingerprint: node_fingerprint(
                    &node_id(node),
                    u64::from(cpus % 8) + 1,
                    8,
                    u32::from(gpus % 3),
                ),
            },
        },
        Op::CreateEnv {
            env,
            cpu_tenths,
            mem_mib,
            gpus,
            port,
        } => {
            let mut spec = env_spec(
                &format!("env{env}"),
                u64::from(cpu_tenths % 40 + 1) * 100,
                u64::from(mem_mib % 4096 + 64),
                u32::from(gpus % 2),
            );
            if let Some(p) = port {
                spec.ports = vec![PortPublish {
                    external: 9000 + u16::from(p % 3),
                    internal: 80,
                    protocol: Protocol::Tcp,
                }];
            }
            Step {
                actor: admin,
                cmd: Command::CreateEnvironment {
                    env_id: env_id(env),
                    spec,
                },
            }
        }
        Op::UpdateEnv {
            env,
            expected,
            cpu_tenths,
        } => Step {
            actor: admin,
            cmd: Command::UpdateEnvironment {
                env_id: env_id(env),
                expected_version: u64::from(expected % 3 + 1),
                spec: env_spec(
                    &format!("env{env}"),
                    u64::from(cpu_tenths % 40 + 1) * 100,
                    128,
                    0,
                ),
            },
        },
        Op::Deploy {
            env,
            deployment,
            binpack,
        } => Step {
            actor: admin,
            cmd: Command::Deploy {
                deployment_id: dep_id(deployment),
                env_id: env_id(env),
                wait_for_quota: false,
                policy: Some(if binpack {
                    PlacementPolicy::BinPack
                } else {
                    PlacementPolicy::Spread
                }),
            },
        },
        Op::UserDeploy { env, deployment } => Step {
            actor: Actor::user("alice"),
            cmd: Command::Deploy {
                deployment_id: format!("u{}", dep_id(deployment)),
                env_id: env_id(env),
                wait_for_quota: false,
                policy: None,
            },
        },
        Op::Stop { deployment } => Step {
            actor: admin,
            cmd: Command::Stop {
                deployment_id: dep_id(deployment),
            },
        },
        Op::Heartbeat { node } => Step {
            actor: Actor::agent(&node_id(node)),
            cmd: Command::Heartbeat {
                node_id: node_id(node),
                usage: Usage {
                    cpu_millis: 10,
                    memory_bytes: 1 << 20,
                },
                containers: vec![],
                engine_ok: true,
            },
        },
        Op::Lose { node } => Step {
            actor: Actor::system(),
            cmd: Command::MarkNodesLost {
                node_ids: vec![node_id(node)],
            },
        },
        Op::Drain { node, on } => Step {
            actor: admin,
            cmd: if on {
                Command::DrainNode {
                    node_id: node_id(node),
                }
            } else {
                Command::UndrainNode {
                    node_id: node_id(node),
                }
            },
        },
        Op::Report {
            deployment,
            node,
            kind,
        } => {
            let report = match kind % 6 {
                0 => Report::BuildStarted {
                    image: "img".into(),
                    steps: 3,
                },
                1 => Report::ImageReady {
                    image: "img".into(),
                    cached: false,
                },
                2 => Report::ContainerCreated {
                    container_id: format!("c{deployment}"),
                },
                3 => Report::ContainerStarted,
                4 => Report::ContainerExited {
                    code: i64::from(kind),
                },
                _ => Report::ContainerRemoved,
            };
            Step {
                actor: Actor::agent(&node_id(node)),
                cmd: Command::Report {
                    deployment_id: dep_id(deployment),
                    report,
                },
            }
        }
        Op::Token { id } => Step {
            actor: admin,
            cmd: Command::CreateToken {
                token_id: format!("tok-{id}"),
                name: format!("t{id}"),
                role: Role::User,
                secret_hash: blake3::hash(&[id]).into(),
                node_id: None,
            },
        },
    }
}

/// The steps every scenario starts with: a catalog, so environments validate.
pub fn preamble() -> Vec<Step> {
    vec![Step {
        actor: Actor::admin("root"),
        cmd: Command::UpsertCatalog {
            catalog: small_catalog(),
        },
    }]
}

/// A writer over a fresh log in `dir` with a fixed clock that advances 1 s per batch.
pub fn start_writer(dir: &Path, snapshot_every: u64) -> WriterHandle {
    let log: Arc<dyn EventLog> = dcloud::store::open_log(dir).expect("open log");
    let (state, _) = dcloud::store::recover(&*log, None, true).expect("recover");
    let tick = Arc::new(std::sync::atomic::AtomicI64::new(1_700_000_000_000));
    let clock = Arc::new(move || tick.fetch_add(1_000, std::sync::atomic::Ordering::Relaxed));
    let config = WriterConfig {
        settings: Settings::default(),
        snapshot_every,
        keep_snapshots: dcloud::writer::DEFAULT_KEEP_SNAPSHOTS,
        clock,
    };
    dcloud::spawn_writer(log, state, config)
}

/// Submits each step in order (blocking); refusals are part of the scenario.
pub fn run_steps(writer: &WriterHandle, steps: &[Step]) -> (usize, usize) {
    let (mut ok, mut refused) = (0, 0);
    for (i, s) in steps.iter().enumerate() {
        match writer.submit_blocking(s.cmd.clone(), s.actor.clone(), format!("step-{i}")) {
            Ok(_) => ok += 1,
            Err(dcloud::WriterError::Domain(_)) => refused += 1,
            Err(e) => panic!("writer failed: {e}"),
        }
    }
    (ok, refused)
}
