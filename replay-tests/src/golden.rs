//! The golden scenario (a fixed story that exercises most event kinds through the real
//! writer) and the portable golden-log file format: for each envelope,
//! `seq: u64 BE | len: u32 BE | record bytes` exactly as the log stores them.

use dcloud_events::model::{
    DatasetCategory, DatasetDb, DatasetVersion, Endpoint, Lifecycle, OriginalMeta, PortPublish,
    Protocol, Quota, Role, ServiceRegistration, StorageMount, Usage, VolumeUsage,
};
use dcloud_events::record::Encoder;
use dcloud_events::{Envelope, EnvelopeBody};
use dcloud_projections::command::{Report, SpecOverrides};
use dcloud_projections::{Actor, Command};

use crate::crash::{env_spec, node_fingerprint};
use crate::scenario::{preamble, Step};

fn admin(cmd: Command) -> Step {
    Step {
        actor: Actor::admin("root"),
        cmd,
    }
}

fn agent(node: &str, deployment: &str, report: Report) -> Step {
    Step {
        actor: Actor::agent(node),
        cmd: Command::Report {
            deployment_id: deployment.into(),
            report,
        },
    }
}

/// The story recorded in the golden log of schema version 1.
pub fn scenario() -> Vec<Step> {
    let (n1, n2, n3) = ("0x0000000000a1", "0x0000000000a2", "0x0000000000a3");
    let mut steps = preamble();
    steps.push(admin(Command::RegisterDatasets {
        category: DatasetCategory {
            category: "imaging".into(),
            dbs: vec![DatasetDb {
                name: "coco".into(),
                datasets: vec![DatasetVersion {
                    name: "train2017".into(),
                    version: "3".into(),
                }],
            }],
        },
    }));
    steps.push(admin(Command::RegisterService {
        service: ServiceRegistration {
            name: "dfs-server".into(),
            endpoints: vec![Endpoint {
                ip: "127.0.0.1".into(),
                port: 8003,
            }],
            ttl_ms: Some(30_000),
            single: true,
            meta: OriginalMeta::default(),
        },
    }));
    for (id, cpus, gpus) in [(n1, 8, 2), (n2, 4, 0), (n3, 16, 4)] {
        steps.push(Step {
            actor: Actor::agent(id),
            cmd: Command::RegisterNode {
                node_id: id.into(),
                fingerprint: node_fingerprint(id, cpus, 32, gpus),
            },
        });
    }
    let mut web = env_spec("web", 500, 256, 0);
    web.ports = vec![PortPublish {
        external: 8888,
        internal: 8888,
        protocol: Protocol::Tcp,
    }];
    steps.push(admin(Command::CreateEnvironment {
        env_id: "env-web".into(),
        spec: web.clone(),
    }));
    steps.push(admin(Command::CreateEnvironment {
        env_id: "env-gpu".into(),
        spec: env_spec("gpu", 2000, 1024, 2),
    }));
    steps.push(admin(Command::UpdateEnvironment {
        env_id: "env-web".into(),
        expected_version: 1,
        spec: web,
    }));
    steps.push(admin(Command::SaveTemplate {
        name: "small".into(),
        spec: env_spec("small", 250, 128, 0),
        idle_timeout_ms: None,
    }));
    steps.push(admin(Command::CreateFromTemplate {
        env_id: "env-small".into(),
        template: "small".into(),
        overrides: SpecOverrides {
            name: Some("small-copy".into()),
            ..SpecOverrides::default()
        },
    }));
    for (d, env) in [
        ("dep-1", "env-web"),
        ("dep-2", "env-gpu"),
        ("dep-3", "env-web"),
        ("dep-4", "env-gpu"),
        ("dep-5", "env-gpu"),
    ] {
        steps.push(admin(Command::Deploy {
            deployment_id: d.into(),
            env_id: env.into(),
            wait_for_quota: false,
            policy: None,
        }));
    }
    // dep-1 on whichever node it went to: the agent of every node tries; only the right one is accepted.
    for node in [n1, n2, n3] {
        steps.push(agent(
            node,
            "dep-1",
            Report::BuildStarted {
                image: "img".into(),
                steps: 2,
            },
        ));
        steps.push(agent(
            node,
            "dep-1",
            Report::BuildProgress { step: 1, steps: 2 },
        ));
        steps.push(agent(
            node,
            "dep-1",
            Report::ImageReady {
                image: "img".into(),
                cached: false,
            },
        ));
        steps.push(agent(
            node,
            "dep-1",
            Report::ContainerCreated {
                container_id: "c1".into(),
            },
        ));
        steps.push(agent(node, "dep-1", Report::ContainerStarted));
        steps.push(agent(node, "dep-1", Report::ContainerStarted));
        steps.push(agent(
            node,
            "dep-2",
            Report::BuildFailed {
                step: 1,
                command: "false".into(),
                output_tail: "exit 1".into(),
            },
        ));
        steps.push(agent(node, "dep-4", Report::ContainerOomKilled));
        steps.push(Step {
            actor: Actor::agent(node),
            cmd: Command::Heartbeat {
                node_id: node.into(),
                usage: Usage {
                    cpu_millis: 100,
                    memory_bytes: 1 << 20,
                },
                containers: vec![],
                engine_ok: true,
            },
        });
    }
    steps.push(admin(Command::Stop {
        deployment_id: "dep-3".into(),
    }));
    steps.push(admin(Command::DrainNode { node_id: n2.into() }));
    steps.push(admin(Command::UndrainNode { node_id: n2.into() }));
    steps.push(Step {
        actor: Actor::system(),
        cmd: Command::MarkNodesLost {
            node_ids: vec![n3.into()],
        },
    });
    // Its deployments move without waiting for the lost-node grace.
    steps.push(admin(Command::EvictLostNodes {
        node_ids: vec![n3.into()],
        force: true,
    }));
    steps.push(Step {
        actor: Actor::auditor("audit"),
        cmd: Command::Stop {
            deployment_id: "dep-1".into(),
        },
    });
    steps.push(admin(Command::CreateToken {
        token_id: "tok-1".into(),
        name: "alice".into(),
        role: Role::User,
        secret_hash: blake3::hash(b"golden-secret").into(),
        node_id: None,
    }));
    steps.push(admin(Command::RevokeToken {
        token_id: "tok-1".into(),
    }));
    steps.push(admin(Command::ExpireServices));
    steps.push(admin(Command::DeactivateEnvironment {
        env_id: "env-small".into(),
    }));
    steps.push(admin(Command::DeleteTemplate {
        name: "small".into(),
    }));
    steps
}

/// Every report an agent can send about `deployment`, from each of `nodes` (only the
/// deployment's node is accepted; the others are refused, which is part of the story).
fn all_nodes(nodes: &[&str], deployment: &str, reports: &[Report]) -> Vec<Step> {
    let mut steps = Vec::new();
    for node in nodes {
        for r in reports {
            steps.push(agent(node, deployment, r.clone()));
        }
    }
    steps
}

fn user(name: &str, cmd: Command) -> Step {
    Step {
        actor: Actor::user(name),
        cmd,
    }
}

fn system(cmd: Command) -> Step {
    Step {
        actor: Actor::system(),
        cmd,
    }
}

/// The story of the golden log of version 2: version 1's, then what makes every other
/// event variant of today (the test `every_event_variant_is_in_a_golden_log` checks).
/// The last step is submitted under an idempotency key (`RequestKeyRecorded`).
pub fn scenario_v2() -> Vec<Step> {
    let (n1, n2) = ("0x0000000000a1", "0x0000000000a2");
    let nodes = [n1, n2];
    let mut steps = scenario();
    steps.push(admin(Command::CreateCluster {
        cluster_id: "c-00000000000000a1".into(),
    }));
    steps.push(admin(Command::SetCatalogServices {
        os: "ubuntu".into(),
        services: vec![dcloud_events::model::LibraryService {
            library: "numpy".into(),
            command: vec!["python3".into(), "-m".into(), "http.server".into()],
            port: 8000,
            http_path: Some("/".into()),
            token_env: None,
            open_path: "/".into(),
        }],
    }));
    steps.push(admin(Command::SetDatasetStorage {
        category: "imaging".into(),
        shared: Some(dcloud_events::model::SharedStorage {
            fs_type: "nfs".into(),
            device: ":/export/imaging".into(),
            options: "addr=10.0.0.5,ro".into(),
        }),
    }));
    steps.push(admin(Command::RemoveDataset {
        category: "imaging".into(),
        db: "coco".into(),
        dataset: "train2017".into(),
        version: "3".into(),
    }));
    steps.push(admin(Command::SaveTemplate {
        name: "idle".into(),
        spec: env_spec("idle", 250, 128, 0),
        idle_timeout_ms: Some(3_600_000),
    }));
    steps.push(admin(Command::RegisterService {
        service: ServiceRegistration {
            name: "broker".into(),
            endpoints: vec![Endpoint {
                ip: "10.0.0.9".into(),
                port: 4222,
            }],
            ttl_ms: Some(60_000),
            single: true,
            meta: OriginalMeta::default(),
        },
    }));
    steps.push(admin(Command::RefreshService {
        name: "broker".into(),
    }));
    steps.push(admin(Command::DeregisterService {
        name: "broker".into(),
    }));
    steps.push(admin(Command::CreateEnvironment {
        env_id: "env-tmp".into(),
        spec: env_spec("tmp", 100, 64, 0),
    }));
    steps.push(admin(Command::DeleteEnvironment {
        env_id: "env-tmp".into(),
    }));
    let mut vol = env_spec("vol", 250, 128, 0);
    vol.storage = vec![StorageMount {
        target: "/data".into(),
        size_bytes: 1 << 30,
        lifecycle: Lifecycle::Persistent,
    }];
    steps.push(user(
        "alice",
        Command::CreateEnvironment {
            env_id: "env-vol".into(),
            spec: vol,
        },
    ));
    steps.push(admin(Command::SetIdleTimeout {
        env_id: "env-vol".into(),
        timeout_ms: 7_200_000,
    }));
    for node in nodes {
        steps.push(Step {
            actor: Actor::agent(node),
            cmd: Command::ReportNodeAddress {
                node_id: node.into(),
                address: format!("10.0.0.{}", &node[node.len() - 1..]),
            },
        });
    }
    for d in ["dep-6", "dep-7", "dep-8"] {
        steps.push(user(
            "alice",
            Command::Deploy {
                deployment_id: d.into(),
                env_id: "env-vol".into(),
                wait_for_quota: false,
                policy: None,
            },
        ));
    }
    let up = [
        Report::ImageReady {
            image: "img-vol".into(),
            cached: true,
        },
        Report::ContainerCreated {
            container_id: "c6".into(),
        },
        Report::ContainerStarted,
    ];
    steps.extend(all_nodes(&nodes, "dep-6", &up));
    steps.extend(all_nodes(&nodes, "dep-7", &up));
    for node in nodes {
        steps.push(Step {
            actor: Actor::agent(node),
            cmd: Command::ReportVolumeUsage {
                node_id: node.into(),
                deployment_id: "dep-6".into(),
                volumes: vec![VolumeUsage {
                    target: "/data".into(),
                    used_bytes: 300 << 20,
                    size_bytes: 1 << 30,
                    enforced: false,
                }],
            },
        });
    }
    steps.extend(all_nodes(
        &nodes,
        "dep-6",
        &[Report::ContainerOomWarning {
            message: "a process inside was OOM-killed".into(),
        }],
    ));
    steps.push(admin(Command::OpenLogs {
        deployment_id: "dep-6".into(),
    }));
    steps.push(admin(Command::StartExec {
        session_id: "exec-1".into(),
        deployment_id: "dep-6".into(),
        command: vec!["sh".into()],
        tty: true,
    }));
    steps.push(system(Command::EndExec {
        session_id: "exec-1".into(),
        deployment_id: "dep-6".into(),
        exit_code: Some(0),
        reason: "exited".into(),
    }));
    steps.push(system(Command::StopIdle {
        deployment_id: "dep-6".into(),
        idle_ms: 7_200_000,
        reason: "no session, no traffic".into(),
    }));
    steps.extend(all_nodes(&nodes, "dep-6", &[Report::ContainerRemoved]));
    steps.extend(all_nodes(
        &nodes,
        "dep-7",
        &[
            Report::ContainerOutput {
                output_tail: "done\n".into(),
            },
            Report::ContainerExited { code: 0 },
        ],
    ));
    steps.extend(all_nodes(
        &nodes,
        "dep-8",
        &[Report::ContainerFailed {
            message: "no such image".into(),
        }],
    ));
    for node in nodes {
        steps.push(Step {
            actor: Actor::agent(node),
            cmd: Command::ReportStaleContainer {
                node_id: node.into(),
                deployment_id: "dep-2".into(),
                container_id: "c2-old".into(),
            },
        });
    }
    steps.push(admin(Command::SetQuota {
        user: "bob".into(),
        quota: Quota {
            deployments: Some(1),
            ..Quota::default()
        },
    }));
    for d in ["dep-9", "dep-10"] {
        steps.push(user(
            "bob",
            Command::CreateEnvironment {
                env_id: format!("env-{d}"),
                spec: env_spec(d, 100, 64, 0),
            },
        ));
        steps.push(user(
            "bob",
            Command::Deploy {
                deployment_id: d.into(),
                env_id: format!("env-{d}"),
                wait_for_quota: true,
                policy: None,
            },
        ));
    }
    // Fits no node: pending, with the reasons (`DeploymentUnschedulable`).
    steps.push(admin(Command::CreateEnvironment {
        env_id: "env-huge".into(),
        spec: env_spec("huge", 64_000, 1 << 20, 64),
    }));
    steps.push(admin(Command::Deploy {
        deployment_id: "dep-11".into(),
        env_id: "env-huge".into(),
        wait_for_quota: false,
        policy: None,
    }));
    steps.push(admin(Command::CreateTokenV2 {
        token_id: "tok-2".into(),
        name: "carol".into(),
        role: Role::User,
        secret_hash: blake3::hash(b"golden-secret-2").into(),
        node_id: None,
        expires_ms: Some(1_800_000_000_000),
    }));
    steps.push(admin(Command::CreateJoinToken {
        token_id: "join-1".into(),
        name: "rack-2".into(),
        secret_hash: blake3::hash(b"golden-join").into(),
        expires_ms: None,
        uses: 1,
    }));
    steps.push(Step {
        // The server submits a join as the agent of the joining node.
        actor: Actor::agent("0x0000000000b1"),
        cmd: Command::JoinNode {
            join_secret_hash: blake3::hash(b"golden-join").into(),
            node_id: "0x0000000000b1".into(),
            token_id: "tok-b1".into(),
            secret_hash: blake3::hash(b"golden-node-b1").into(),
        },
    });
    steps.push(admin(Command::Stop {
        deployment_id: "dep-7".into(),
    }));
    steps
}

/// Encodes envelopes into the golden file format (the exact stored record bytes).
pub fn encode_file(envs: &[Envelope]) -> Vec<u8> {
    let mut enc = Encoder::new();
    let mut out = Vec::new();
    for e in envs {
        let body = EnvelopeBody {
            seq: e.seq,
            time_ms: e.time_ms,
            actor: e.actor.clone(),
            correlation: e.correlation.clone(),
            event: e.event.clone(),
        };
        let (bytes, hash) = enc.encode(&body, &e.prev_hash).expect("encode");
        assert_eq!(
            hash, e.hash,
            "re-encoding seq {} must give the stored bytes",
            e.seq
        );
        out.extend_from_slice(&e.seq.to_be_bytes());
        out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
        out.extend_from_slice(bytes);
    }
    out
}

/// Splits a golden file into `(seq, record bytes)`.
pub fn split_file(mut data: &[u8]) -> Result<Vec<(u64, Vec<u8>)>, String> {
    let mut out = Vec::new();
    while !data.is_empty() {
        if data.len() < 12 {
            return Err(format!("truncated header after {} records", out.len()));
        }
        let seq = u64::from_be_bytes(data[..8].try_into().expect("8 bytes"));
        let len = u32::from_be_bytes(data[8..12].try_into().expect("4 bytes")) as usize;
        data = &data[12..];
        if data.len() < len {
            return Err(format!("record {seq} truncated"));
        }
        out.push((seq, data[..len].to_vec()));
        data = &data[len..];
    }
    Ok(out)
}
