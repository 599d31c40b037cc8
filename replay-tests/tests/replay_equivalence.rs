//! Property: random command sequences through the writer give a live state whose
//! digest equals a replay from the first event and a replay from a snapshot plus the
//! tail, and the state never breaks its invariants.

use dcloud_projections::State;
use proptest::prelude::*;
use replay_tests::scenario::{preamble, run_steps, start_writer, step_of, Op};

fn op() -> impl Strategy<Value = Op> {
    let n = 0u8..5;
    prop_oneof![
        (n.clone(), any::<u8>(), any::<u8>()).prop_map(|(node, cpus, gpus)| Op::RegisterNode {
            node,
            cpus,
            gpus
        }),
        (
            0u8..4,
            any::<u8>(),
            any::<u16>(),
            any::<u8>(),
            proptest::option::of(any::<u8>())
        )
            .prop_map(|(env, cpu_tenths, mem_mib, gpus, port)| Op::CreateEnv {
                env,
                cpu_tenths,
                mem_mib,
                gpus,
                port
            }),
        (0u8..4, any::<u8>(), any::<u8>()).prop_map(|(env, expected, cpu_tenths)| Op::UpdateEnv {
            env,
            expected,
            cpu_tenths
        }),
        (0u8..4, 0u8..20, any::<bool>()).prop_map(|(env, deployment, binpack)| Op::Deploy {
            env,
            deployment,
            binpack
        }),
        (0u8..4, 0u8..20, any::<bool>()).prop_map(|(env, deployment, binpack)| Op::Deploy {
            env,
            deployment,
            binpack
        }),
        (0u8..4, 0u8..5).prop_map(|(env, deployment)| Op::UserDeploy { env, deployment }),
        (0u8..20).prop_map(|deployment| Op::Stop { deployment }),
        n.clone().prop_map(|node| Op::Heartbeat { node }),
        n.clone().prop_map(|node| Op::Lose { node }),
        (n.clone(), any::<bool>()).prop_map(|(node, on)| Op::Drain { node, on }),
        (0u8..20, n, any::<u8>()).prop_map(|(deployment, node, kind)| Op::Report {
            deployment,
            node,
            kind
        }),
        (0u8..4).prop_map(|id| Op::Token { id }),
    ]
}

fn replay(data: &std::path::Path, use_snapshot: bool) -> (State, Option<u64>) {
    let log = dcloud::store::open_log(data).unwrap();
    let (state, rec) = dcloud::store::recover(&*log, None, use_snapshot).unwrap();
    (state, rec.snapshot_seq)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn live_equals_replay_equals_snapshot_plus_tail(ops in proptest::collection::vec(op(), 1..80)) {
        let tmp = tempfile::tempdir().unwrap();
        let mut steps = preamble();
        steps.extend(ops.into_iter().map(step_of));
        let live = {
            // Snapshot every 7 events so most runs recover from a snapshot plus a tail.
            let writer = start_writer(tmp.path(), 7);
            run_steps(&writer, &steps);
            let live = {
                let state = writer.state();
                state.check_invariants().map_err(TestCaseError::fail)?;
                (state.digest(), state.last_seq())
            };
            writer.shutdown();
            live
        };
        let (from_empty, _) = replay(tmp.path(), false);
        let (from_snapshot, snap) = replay(tmp.path(), true);
        prop_assert_eq!(from_empty.last_seq(), live.1);
        prop_assert_eq!(from_empty.digest(), live.0, "replay from empty differs from live");
        prop_assert_eq!(from_snapshot.digest(), live.0, "snapshot {:?} + tail differs from live", snap);
        // Only the newest snapshots are kept, and recovery used the newest.
        let seqs = dcloud::store::open_log(tmp.path()).unwrap().snapshot_seqs().unwrap();
        let keep = dcloud::writer::DEFAULT_KEEP_SNAPSHOTS;
        prop_assert!(seqs.len() <= keep, "{} snapshots kept: {:?}", seqs.len(), seqs);
        // A snapshot is taken once 7 or more events were appended since the last (one
        // command appends at most a few), so 12 events each leaves room for batches.
        if live.1 >= 12 * (keep as u64 + 1) {
            prop_assert_eq!(seqs.len(), keep, "older snapshots were not removed: {:?}", seqs);
        }
        prop_assert_eq!(seqs.last().copied(), snap);
    }
}
