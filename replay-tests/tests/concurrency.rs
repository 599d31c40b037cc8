//! 1,000 deploy requests at once against capacity for exactly 500: the single writer
//! places exactly 500, leaves 500 pending with their reasons, over-allocates no node,
//! and a replay of the log gives the same state digest.

use std::collections::BTreeMap;
use std::sync::Arc;

use dcloud::writer::{system_clock, WriterConfig};
use dcloud_events::EventLog;
use dcloud_projections::{Actor, Command, DeploymentStatus, Settings};
use replay_tests::crash::{env_spec, node_fingerprint, small_catalog};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_deploys_against_room_for_five_hundred() {
    let tmp = tempfile::tempdir().unwrap();
    let log: Arc<dyn EventLog> = dcloud::store::open_log(tmp.path()).unwrap();
    let (state, _) = dcloud::store::recover(&*log, None, true).unwrap();
    let config = WriterConfig {
        settings: Settings::default(),
        snapshot_every: 0,
        keep_snapshots: dcloud::writer::DEFAULT_KEEP_SNAPSHOTS,
        clock: system_clock(),
    };
    let writer = dcloud::spawn_writer(log, state, config);
    let admin = Actor::admin("root");
    writer
        .submit(
            Command::UpsertCatalog {
                catalog: small_catalog(),
            },
            admin.clone(),
            "c".into(),
        )
        .await
        .unwrap();
    // 10 nodes × 5 CPUs; each deployment asks 100 millicores: room for exactly 500.
    for i in 0..10 {
        let id = format!("0x{:012x}", i);
        let cmd = Command::RegisterNode {
            node_id: id.clone(),
            fingerprint: node_fingerprint(&id, 5, 256, 0),
        };
        writer
            .submit(cmd, Actor::agent(&id), format!("n{i}"))
            .await
            .unwrap();
    }
    let cmd = Command::CreateEnvironment {
        env_id: "env".into(),
        spec: env_spec("small", 100, 64, 0),
    };
    writer.submit(cmd, admin.clone(), "e".into()).await.unwrap();

    let tasks: Vec<_> = (0..1_000)
        .map(|i| {
            let writer = writer.clone();
            let admin = admin.clone();
            tokio::spawn(async move {
                let cmd = Command::Deploy {
                    deployment_id: format!("d{i:04}"),
                    env_id: "env".into(),
                    wait_for_quota: false,
                    policy: None,
                };
                writer.submit(cmd, admin, format!("d{i}")).await
            })
        })
        .collect();
    for t in tasks {
        let envs = t
            .await
            .unwrap()
            .expect("every deploy is accepted (placed or pending)");
        assert_eq!(envs.len(), 2, "requested + scheduled or unschedulable");
    }

    let (live_digest, last_seq) = {
        let state = writer.state();
        state.check_invariants().unwrap();
        let mut by_status: BTreeMap<&str, usize> = BTreeMap::new();
        for d in state.deployments.values() {
            *by_status.entry(d.status.as_str()).or_default() += 1;
        }
        assert_eq!(
            by_status.get(DeploymentStatus::Scheduled.as_str()),
            Some(&500),
            "{by_status:?}"
        );
        assert_eq!(
            by_status.get(DeploymentStatus::Pending.as_str()),
            Some(&500),
            "{by_status:?}"
        );
        assert_eq!(state.pending.len(), 500);
        for d in state.pending_in_order() {
            let reasons: Vec<_> = d
                .pending_reasons
                .iter()
                .map(|r| (r.reason.as_str(), r.count))
                .collect();
            assert_eq!(reasons, vec![("insufficient cpu", 10)], "{}", d.id);
        }
        for n in state.nodes_by_id() {
            assert_eq!(
                n.allocated.cpu_millis, 5_000,
                "node {} is exactly full",
                n.id
            );
            assert_eq!(n.deployments.len(), 50);
        }
        (state.digest(), state.last_seq())
    };
    tokio::task::spawn_blocking(move || writer.shutdown())
        .await
        .unwrap();

    let log = dcloud::store::open_log(tmp.path()).unwrap();
    let (replayed, _) = dcloud::store::recover(&*log, None, false).unwrap();
    assert_eq!(replayed.last_seq(), last_seq);
    assert_eq!(
        replayed.digest(),
        live_digest,
        "replay of the log gives the live state"
    );
}
