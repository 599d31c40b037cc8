//! The seeded deterministic simulation (`replay_tests::sim`) over many seeds: users,
//! agents and faults in simulated time, every invariant checked at every step. A
//! failure names its seed; `DCLOUD_SIM_SEED=N` replays that one seed, and
//! `DCLOUD_SIM_SEEDS=N` (default 2,000) and `DCLOUD_SIM_STEPS=N` (default 200) size
//! the run.

use replay_tests::sim::{Sim, SimStats};

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
fn the_invariants_hold_over_many_seeds_of_faults() {
    let steps = env_u64("DCLOUD_SIM_STEPS", 200) as usize;
    let seeds: Vec<u64> = match std::env::var("DCLOUD_SIM_SEED") {
        Ok(one) => vec![one.parse().expect("DCLOUD_SIM_SEED is a number")],
        Err(_) => (1..=env_u64("DCLOUD_SIM_SEEDS", 2_000)).collect(),
    };
    let mut total = SimStats::default();
    for &seed in &seeds {
        let s = Sim::new(seed).run(steps).unwrap_or_else(|f| panic!("{f}"));
        total.commands += s.commands;
        total.refused += s.refused;
        total.events += s.events;
        total.restarts += s.restarts;
        total.snapshot_restarts += s.snapshot_restarts;
        total.failed_appends += s.failed_appends;
        total.agent_kills += s.agent_kills;
        total.nodes_lost += s.nodes_lost;
        total.nodes_evicted += s.nodes_evicted;
        total.nodes_back_in_grace += s.nodes_back_in_grace;
        total.deployments += s.deployments;
    }
    println!("{} seeds x {steps} steps: {total:?}", seeds.len());
    // The faults really happened, or the run proved little.
    assert!(total.restarts > 0 && total.failed_appends > 0 && total.agent_kills > 0);
    assert!(total.nodes_lost > 0 && total.snapshot_restarts > 0);
    assert!(total.nodes_evicted > 0 && total.nodes_back_in_grace > 0);
}

#[test]
fn a_seed_replays_exactly() {
    let a = Sim::new(42).run(200).expect("seed 42 holds");
    let b = Sim::new(42).run(200).expect("seed 42 holds");
    assert_eq!(format!("{a:?}"), format!("{b:?}"));
}
