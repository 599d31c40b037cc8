//! Given/when/then: node registration, heartbeats at an interval, loss (a grace, then
//! rescheduling), drain and undrain.

mod support;

use dcloud_events::Event;
use dcloud_projections::{Command, DeploymentStatus, DomainError, NodeHealth};
use support::*;

#[test]
fn registration_then_reregistration_is_the_same_node() {
    let mut w = World::new();
    w.add_node("n1", fingerprint("n1", 4000, 8, 0));
    assert_eq!(w.state.nodes.len(), 1);
    w.ok(
        &admin(),
        Command::MarkNodesLost {
            node_ids: vec!["n1".into()],
        },
    );
    assert_eq!(w.state.node("n1").unwrap().health, NodeHealth::Lost);
    w.now += 5000;
    let events = w.ok(
        &agent("n1"),
        Command::RegisterNode {
            node_id: "n1".into(),
            fingerprint: fingerprint("n1", 8000, 16, 0),
        },
    );
    assert_eq!(kinds(&events), vec!["NodeRegistered"]);
    assert_eq!(w.state.nodes.len(), 1, "same id: not a new node");
    let n = w.state.node("n1").unwrap();
    assert_eq!(n.health, NodeHealth::Alive);
    assert_eq!(n.allocatable().cpu_millis, 8000);
    assert_eq!(n.last_registered_ms, w.now);
    assert!(n.first_registered_ms < n.last_registered_ms);
}

#[test]
fn agents_register_and_beat_only_for_their_own_node() {
    let mut w = World::new();
    let register = Command::RegisterNode {
        node_id: "n1".into(),
        fingerprint: fingerprint("n1", 1000, 1, 0),
    };
    assert!(matches!(
        w.when(&agent("n2"), register.clone()),
        Err(DomainError::Forbidden(_))
    ));
    assert!(matches!(
        w.when(&alice(), register.clone()),
        Err(DomainError::Forbidden(_))
    ));
    w.ok(&agent("n1"), register);
    assert!(matches!(
        w.when(&agent("n2"), heartbeat("n1")),
        Err(DomainError::Forbidden(_))
    ));
}

#[test]
fn heartbeats_are_kept_once_per_interval() {
    let mut w = World::new();
    w.settings.heartbeat_log_interval_ms = 30_000;
    w.add_node("n1", fingerprint("n1", 1000, 1, 0));
    let a = agent("n1");
    assert_eq!(
        kinds(&w.ok(&a, heartbeat("n1"))),
        vec!["NodeHeartbeat"],
        "first one is kept"
    );
    assert_eq!(w.state.node("n1").unwrap().last_heartbeat_ms, Some(w.now));
    w.now += 29_999;
    assert_eq!(
        w.ok(&a, heartbeat("n1")),
        vec![],
        "within the interval: liveness is the writer's"
    );
    w.now += 1;
    assert_eq!(kinds(&w.ok(&a, heartbeat("n1"))), vec!["NodeHeartbeat"]);
    w.now += 1;
    let engine_down = Command::Heartbeat {
        node_id: "n1".into(),
        usage: Default::default(),
        containers: vec![],
        engine_ok: false,
    };
    assert_eq!(
        kinds(&w.ok(&a, engine_down)),
        vec!["NodeHeartbeat"],
        "engine health changed: kept at once"
    );
    assert!(!w.state.node("n1").unwrap().engine_ok);
    assert!(matches!(
        w.when(&a, heartbeat("n9")),
        Err(DomainError::Forbidden(_))
    ));
    assert!(matches!(
        w.when(&admin(), heartbeat("n9")),
        Err(DomainError::NotFound { .. })
    ));
}

#[test]
fn a_lost_node_must_register_again_before_it_beats() {
    let mut w = World::new();
    w.add_node("n1", fingerprint("n1", 1000, 1, 0));
    w.ok(
        &admin(),
        Command::MarkNodesLost {
            node_ids: vec!["n1".into()],
        },
    );
    assert!(
        matches!(w.when(&agent("n1"), heartbeat("n1")), Err(DomainError::Invalid(m)) if m.contains("register"))
    );
    assert_eq!(
        w.ok(
            &admin(),
            Command::MarkNodesLost {
                node_ids: vec!["n1".into(), "ghost".into()]
            }
        ),
        vec![]
    );
}

#[test]
fn with_no_grace_a_lost_nodes_deployments_are_lost_and_placed_elsewhere_in_the_same_decision() {
    let mut w = World::with_catalog();
    w.settings.lost_node_grace_ms = 0;
    w.add_node("n1", fingerprint("n1", 4000, 8, 0));
    w.add_env("e1", &alice(), spec(1000, 1, 0));
    w.deploy(&alice(), "d1", "e1");
    w.deploy(&alice(), "d2", "e1");
    assert_eq!(w.node_of("d1").as_deref(), Some("n1"));
    // A second node arrives after both were placed.
    w.add_node("n2", fingerprint("n2", 4000, 8, 0));
    let events = w.ok(
        &admin(),
        Command::MarkNodesLost {
            node_ids: vec!["n1".into()],
        },
    );
    assert_eq!(
        kinds(&events),
        vec![
            "NodeLost",
            "DeploymentLost",
            "DeploymentLost",
            "DeploymentScheduled",
            "DeploymentScheduled"
        ]
    );
    assert_eq!(
        scheduled(&events),
        vec![("d1".into(), "n2".into()), ("d2".into(), "n2".into())]
    );
    let d1 = w.state.deployment("d1").unwrap();
    let statuses: Vec<_> = d1.history.iter().map(|h| h.status).collect();
    assert_eq!(
        statuses,
        vec![
            DeploymentStatus::Pending,
            DeploymentStatus::Scheduled,
            DeploymentStatus::Lost,
            DeploymentStatus::Scheduled
        ]
    );
    assert_eq!(w.state.node("n1").unwrap().allocated, Default::default());
}

const GRACE: i64 = 60_000;

/// n1 runs d1; n2 has room for it; n1 is marked lost at `w.now`.
fn lost_with_a_deployment() -> World {
    let mut w = World::with_catalog();
    w.settings.lost_node_grace_ms = GRACE;
    w.add_node("n1", fingerprint("n1", 4000, 8, 0));
    w.add_env("e1", &alice(), spec(1000, 1, 0));
    w.deploy(&alice(), "d1", "e1");
    w.ok(
        &agent("n1"),
        Command::Report {
            deployment_id: "d1".into(),
            report: dcloud_projections::Report::ContainerStarted,
        },
    );
    w.add_node("n2", fingerprint("n2", 4000, 8, 0));
    let events = w.ok(&admin(), lost("n1"));
    assert_eq!(kinds(&events), vec!["NodeLost"], "nothing moves yet");
    w
}

fn lost(node: &str) -> Command {
    Command::MarkNodesLost {
        node_ids: vec![node.into()],
    }
}

fn evict(node: &str, force: bool) -> Command {
    Command::EvictLostNodes {
        node_ids: vec![node.into()],
        force,
    }
}

#[test]
fn a_lost_node_keeps_its_deployments_through_the_grace_and_has_them_when_it_speaks_again() {
    let mut w = lost_with_a_deployment();
    let lost_at = w.now;
    let n1 = w.state.node("n1").unwrap();
    assert_eq!(n1.lost_since_ms, Some(lost_at));
    assert_eq!(
        n1.allocated.cpu_millis, 1000,
        "still booked on the lost node"
    );
    let d1 = w.state.deployment("d1").unwrap();
    assert_eq!(
        (d1.status, d1.node.as_deref()),
        (DeploymentStatus::Running, Some("n1"))
    );
    // The timer's check inside the grace moves nothing.
    w.now += GRACE - 1;
    assert_eq!(w.ok(&admin(), evict("n1", false)), vec![]);
    assert_eq!(w.ok(&admin(), Command::RetryPending), vec![]);
    // The node speaks again: same deployment, same node, still running.
    let events = w.add_node("n1", fingerprint("n1", 4000, 8, 0));
    assert_eq!(kinds(&events), vec!["NodeRegistered"]);
    let n1 = w.state.node("n1").unwrap();
    assert_eq!((n1.health, n1.lost_since_ms), (NodeHealth::Alive, None));
    let d1 = w.state.deployment("d1").unwrap();
    assert_eq!(
        (d1.status, d1.node.as_deref()),
        (DeploymentStatus::Running, Some("n1"))
    );
    let statuses: Vec<_> = d1.history.iter().map(|h| h.status).collect();
    assert!(!statuses.contains(&DeploymentStatus::Lost), "{statuses:?}");
    // Past the old grace nothing happens to a node that is alive again.
    w.now += GRACE;
    assert_eq!(w.ok(&admin(), evict("n1", false)), vec![]);
    assert_eq!(w.node_of("d1").as_deref(), Some("n1"));
}

#[test]
fn past_the_grace_a_lost_nodes_deployments_are_placed_elsewhere() {
    let mut w = lost_with_a_deployment();
    w.now += GRACE;
    let events = w.ok(&admin(), evict("n1", false));
    assert_eq!(
        kinds(&events),
        vec!["DeploymentLost", "DeploymentScheduled"]
    );
    assert_eq!(scheduled(&events), vec![("d1".into(), "n2".into())]);
    assert_eq!(w.state.node("n1").unwrap().allocated, Default::default());
    // Named again (the timer runs every second): nothing more to move.
    assert_eq!(w.ok(&admin(), evict("n1", false)), vec![]);
    // n1 comes back late: it is a node again, without d1.
    w.add_node("n1", fingerprint("n1", 4000, 8, 0));
    assert_eq!(w.node_of("d1").as_deref(), Some("n2"));
}

#[test]
fn an_admin_moves_a_lost_nodes_deployments_without_waiting_and_only_an_admin() {
    let mut w = lost_with_a_deployment();
    for who in [alice(), agent("n1"), auditor()] {
        assert!(matches!(
            w.when(&who, evict("n1", true)),
            Err(DomainError::Forbidden(_))
        ));
    }
    // An alive node is not evicted, forced or not.
    assert_eq!(w.ok(&admin(), evict("n2", true)), vec![]);
    assert_eq!(w.ok(&admin(), evict("ghost", true)), vec![]);
    let events = w.ok(&admin(), evict("n1", true));
    assert_eq!(scheduled(&events), vec![("d1".into(), "n2".into())]);
}

#[test]
fn stopping_a_deployment_whose_node_is_lost_stops_it_at_once() {
    let mut w = lost_with_a_deployment();
    let events = w.ok(
        &alice(),
        Command::Stop {
            deployment_id: "d1".into(),
        },
    );
    assert_eq!(kinds(&events), vec!["DeploymentStopped"]);
    assert_eq!(
        w.state.deployment("d1").unwrap().status,
        DeploymentStatus::Stopped
    );
    assert_eq!(w.state.node("n1").unwrap().allocated, Default::default());
    // Past the grace there is nothing left to move.
    w.now += GRACE;
    assert_eq!(w.ok(&admin(), evict("n1", false)), vec![]);
}

#[test]
fn a_deployment_stopping_when_its_node_is_lost_is_stopped_at_the_grace() {
    let mut w = World::with_catalog();
    w.settings.lost_node_grace_ms = GRACE;
    w.add_node("n1", fingerprint("n1", 4000, 8, 0));
    w.add_env("e1", &alice(), spec(1000, 1, 0));
    w.deploy(&alice(), "d1", "e1");
    w.ok(
        &alice(),
        Command::Stop {
            deployment_id: "d1".into(),
        },
    );
    assert_eq!(
        w.state.deployment("d1").unwrap().status,
        DeploymentStatus::Stopping
    );
    w.ok(&admin(), lost("n1"));
    w.now += GRACE;
    assert_eq!(
        kinds(&w.ok(&admin(), evict("n1", false))),
        vec!["DeploymentStopped"]
    );
}

#[test]
fn lost_deployments_that_fit_nowhere_wait_with_reasons() {
    let mut w = World::with_catalog();
    w.settings.lost_node_grace_ms = 0;
    w.add_node("n1", fingerprint("n1", 4000, 8, 0));
    w.add_env("e1", &alice(), spec(1000, 1, 0));
    w.deploy(&alice(), "d1", "e1");
    let events = w.ok(
        &admin(),
        Command::MarkNodesLost {
            node_ids: vec!["n1".into()],
        },
    );
    assert_eq!(
        kinds(&events),
        vec!["NodeLost", "DeploymentLost", "DeploymentUnschedulable"]
    );
    let d1 = w.state.deployment("d1").unwrap();
    assert_eq!(d1.status, DeploymentStatus::Lost);
    assert_eq!(d1.pending_reasons[0].reason, "node lost");
    assert_eq!(w.state.pending_ids().collect::<Vec<_>>(), vec!["d1"]);
    // The node comes back: the deployment is placed on it again.
    let events = w.add_node("n1", fingerprint("n1", 4000, 8, 0));
    assert_eq!(scheduled(&events), vec![("d1".into(), "n1".into())]);
    assert!(w.state.pending.is_empty());
}

#[test]
fn reregistering_with_less_capacity_evicts_the_newest_that_no_longer_fit() {
    let mut w = World::with_catalog();
    w.add_node("n1", fingerprint("n1", 4000, 8, 0));
    w.add_env("e1", &alice(), spec(2000, 1, 0));
    w.deploy(&alice(), "d1", "e1");
    w.deploy(&alice(), "d2", "e1");
    let events = w.add_node("n1", fingerprint("n1", 3000, 8, 0));
    assert_eq!(
        kinds(&events),
        vec![
            "NodeRegistered",
            "DeploymentLost",
            "DeploymentUnschedulable"
        ]
    );
    assert_eq!(w.node_of("d1").as_deref(), Some("n1"));
    assert_eq!(
        w.state.deployment("d2").unwrap().status,
        DeploymentStatus::Lost
    );
}

#[test]
fn a_draining_node_takes_nothing_new_until_undrained() {
    let mut w = World::with_catalog();
    w.add_node("n1", fingerprint("n1", 4000, 8, 0));
    w.add_env("e1", &alice(), spec(1000, 1, 0));
    let drain = Command::DrainNode {
        node_id: "n1".into(),
    };
    assert!(matches!(
        w.when(&alice(), drain.clone()),
        Err(DomainError::Forbidden(_))
    ));
    w.ok(&admin(), drain.clone());
    assert_eq!(w.ok(&admin(), drain), vec![], "draining twice is a no-op");
    let events = w.deploy(&alice(), "d1", "e1");
    let Event::DeploymentUnschedulable { rejected, .. } = &events[1] else {
        panic!("{events:?}")
    };
    assert_eq!(
        (rejected[0].reason.as_str(), rejected[0].count),
        ("node draining", 1)
    );
    let events = w.ok(
        &admin(),
        Command::UndrainNode {
            node_id: "n1".into(),
        },
    );
    assert_eq!(kinds(&events), vec!["NodeUndrained", "DeploymentScheduled"]);
    assert_eq!(w.node_of("d1").as_deref(), Some("n1"));
}
