//! Property tests: random sequences of registrations, deployments, stops, reports,
//! heartbeats, drains and losses (decide, then apply each) never break the invariants;
//! replaying the events they produced from empty gives the same state and digest; and
//! snapshot bytes round-trip to the same digest.

mod support;

use dcloud_events::model::PlacementPolicy;
use dcloud_projections::{Actor, Command, Report, State};
use proptest::prelude::*;
use support::*;

#[derive(Debug, Clone)]
enum Op {
    Register {
        node: u8,
        cpu: u8,
        gib: u8,
        gpus: u8,
        reserved_gpu: bool,
    },
    Deploy {
        env: u8,
        binpack: bool,
    },
    Stop {
        dep: u8,
    },
    Report {
        dep: u8,
        report: u8,
        code: i8,
    },
    Heartbeat {
        node: u8,
        advance_ms: u16,
    },
    Lost {
        nodes: Vec<u8>,
    },
    Evict {
        nodes: Vec<u8>,
        force: bool,
    },
    Drain {
        node: u8,
        on: bool,
    },
    Retry,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..6u8, 1..9u8, 1..9u8, 0..4u8, any::<bool>())
            .prop_map(|(node, cpu, gib, gpus, reserved_gpu)| Op::Register { node, cpu, gib, gpus, reserved_gpu }),
        5 => (0..4u8, any::<bool>()).prop_map(|(env, binpack)| Op::Deploy { env, binpack }),
        2 => (1..14u8).prop_map(|dep| Op::Stop { dep }),
        8 => (1..14u8, 0..10u8, any::<i8>()).prop_map(|(dep, report, code)| Op::Report { dep, report, code }),
        2 => (0..6u8, any::<u16>()).prop_map(|(node, advance_ms)| Op::Heartbeat { node, advance_ms }),
        1 => proptest::collection::vec(0..6u8, 1..3).prop_map(|nodes| Op::Lost { nodes }),
        1 => (proptest::collection::vec(0..6u8, 1..3), any::<bool>())
            .prop_map(|(nodes, force)| Op::Evict { nodes, force }),
        2 => (0..6u8, any::<bool>()).prop_map(|(node, on)| Op::Drain { node, on }),
        1 => Just(Op::Retry),
    ]
}

fn node_id(n: u8) -> String {
    format!("n{n}")
}

fn report_of(kind: u8, code: i8) -> Report {
    match kind {
        0 => Report::BuildStarted {
            image: "img".into(),
            steps: 2,
        },
        1 => Report::BuildProgress { step: 1, steps: 2 },
        2 => Report::ImageReady {
            image: "img".into(),
            cached: code % 2 == 0,
        },
        3 => Report::ContainerCreated {
            container_id: format!("c{code}"),
        },
        4 => Report::ContainerStarted,
        5 => Report::ContainerExited {
            code: i64::from(code),
        },
        6 => Report::ContainerOomKilled,
        7 => Report::ContainerRemoved,
        8 => Report::ContainerFailed {
            message: "engine said no".into(),
        },
        _ => Report::BuildFailed {
            step: 1,
            command: "pip install numpy".into(),
            output_tail: "x".into(),
        },
    }
}

/// A world with a catalog and four environments: small, one GPU, a port, big.
fn world() -> World {
    let mut w = World::with_catalog();
    w.add_env("small", &alice(), spec(500, 1, 0));
    w.add_env("gpu", &alice(), spec(1000, 2, 1));
    w.add_env("web", &alice(), with_port(spec(250, 1, 0), 9000));
    w.add_env("big", &alice(), spec(4000, 6, 0));
    w
}

fn run_op(w: &mut World, op: &Op, deployed: &mut u32) {
    let (actor, cmd): (Actor, Command) = match op {
        Op::Register {
            node,
            cpu,
            gib,
            gpus,
            reserved_gpu,
        } => {
            let id = node_id(*node);
            let mut fp = fingerprint(
                &id,
                u64::from(*cpu) * 1000,
                u64::from(*gib),
                u32::from(*gpus),
            );
            fp.reserved.gpus = u32::from(*reserved_gpu);
            (
                agent(&id),
                Command::RegisterNode {
                    node_id: id,
                    fingerprint: fp,
                },
            )
        }
        Op::Deploy { env, binpack } => {
            let env = ["small", "gpu", "web", "big"][usize::from(*env)];
            *deployed += 1;
            let policy = binpack.then_some(PlacementPolicy::BinPack);
            (
                alice(),
                Command::Deploy {
                    deployment_id: format!("d{deployed}"),
                    env_id: env.into(),
                    wait_for_quota: false,
                    policy,
                },
            )
        }
        Op::Stop { dep } => (
            alice(),
            Command::Stop {
                deployment_id: format!("d{dep}"),
            },
        ),
        Op::Report { dep, report, code } => {
            let id = format!("d{dep}");
            let actor = match w.state.deployment(&id).and_then(|d| d.node.clone()) {
                Some(node) => agent(&node),
                None => admin(),
            };
            (
                actor,
                Command::Report {
                    deployment_id: id,
                    report: report_of(*report, *code),
                },
            )
        }
        Op::Heartbeat { node, advance_ms } => {
            w.now += i64::from(*advance_ms) * 10;
            (agent(&node_id(*node)), heartbeat(&node_id(*node)))
        }
        Op::Lost { nodes } => (
            admin(),
            Command::MarkNodesLost {
                node_ids: nodes.iter().map(|n| node_id(*n)).collect(),
            },
        ),
        Op::Evict { nodes, force } => (
            admin(),
            Command::EvictLostNodes {
                node_ids: nodes.iter().map(|n| node_id(*n)).collect(),
                force: *force,
            },
        ),
        Op::Drain { node, on: true } => (
            admin(),
            Command::DrainNode {
                node_id: node_id(*node),
            },
        ),
        Op::Drain { node, on: false } => (
            admin(),
            Command::UndrainNode {
                node_id: node_id(*node),
            },
        ),
        Op::Retry => (admin(), Command::RetryPending),
    };
    // Refusals are fine (unknown ids, bad transitions); what is decided must keep the
    // invariants, which `run` checks after applying.
    let _ = w.run(&actor, cmd);
}

fn replay(w: &World) -> State {
    let mut replayed = State::new();
    for env in &w.log {
        replayed.apply(env);
    }
    replayed
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn decisions_keep_invariants_and_replay_exactly(ops in proptest::collection::vec(op(), 1..80)) {
        let mut w = world();
        let mut deployed = 0;
        for op in &ops {
            run_op(&mut w, op, &mut deployed);
        }
        let replayed = replay(&w);
        prop_assert_eq!(replayed.digest(), w.state.digest());
        prop_assert!(replayed == w.state);
        let restored = State::from_snapshot_bytes(&w.state.to_snapshot_bytes()).expect("snapshot loads");
        prop_assert_eq!(restored.digest(), w.state.digest());
        prop_assert!(restored == w.state, "restored state (with rebuilt summaries) is equal");
        prop_assert!(restored.check_invariants().is_ok());
    }

    #[test]
    fn a_pending_deployment_fits_nowhere(ops in proptest::collection::vec(op(), 1..60)) {
        // The queue is only retried on nodes that gained room; that is sound only if
        // nothing queued could have been placed. A full retry must find nothing to do.
        let mut w = world();
        let mut deployed = 0;
        for op in &ops {
            run_op(&mut w, op, &mut deployed);
        }
        let retry = w.when(&admin(), Command::RetryPending).expect("admins may retry");
        prop_assert!(retry.is_empty(), "retry placed {:?}", kinds(&retry));
    }
}

#[test]
fn corrupt_snapshots_are_refused() {
    let mut w = world();
    w.add_node("n1", fingerprint("n1", 4000, 8, 1));
    w.deploy(&alice(), "d1", "gpu");
    let bytes = w.state.to_snapshot_bytes();
    assert!(State::from_snapshot_bytes(&bytes[..bytes.len() / 2]).is_err());
    assert!(State::from_snapshot_bytes(b"hello").is_err());
    let mut wrong_format = bytes.clone();
    wrong_format[7] = 99;
    assert!(matches!(
        State::from_snapshot_bytes(&wrong_format),
        Err(dcloud_projections::SnapshotError::Format { found: 99 })
    ));
    let restored = State::from_snapshot_bytes(&bytes).unwrap();
    assert_eq!(restored.last_seq(), w.state.last_seq());
    // A restored state decides exactly as the live one.
    let cmd = Command::Deploy {
        deployment_id: "d2".into(),
        env_id: "small".into(),
        wait_for_quota: false,
        policy: None,
    };
    let ctx = w.ctx(&alice());
    assert_eq!(
        dcloud_projections::decide(&restored, &cmd, &ctx),
        dcloud_projections::decide(&w.state, &cmd, &ctx)
    );
}
