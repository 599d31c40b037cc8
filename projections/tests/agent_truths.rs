//! Given/when/then: what a node agent reports of the machine — the node's address,
//! a process OOM-killed inside a running container, a stale container removed.

mod support;

use dcloud_projections::{Command, DeploymentStatus, DomainError, Report};
use support::*;

fn address(node: &str, address: &str) -> Command {
    Command::ReportNodeAddress {
        node_id: node.into(),
        address: address.into(),
    }
}

#[test]
fn a_node_address_is_logged_when_it_changes() {
    let mut w = World::new();
    w.add_node("n1", fingerprint("n1", 1000, 1, 0));
    let a = agent("n1");
    assert_eq!(
        kinds(&w.ok(&a, address("n1", "10.0.0.7"))),
        vec!["NodeAddressReported"]
    );
    assert_eq!(
        w.state.node("n1").unwrap().address.as_deref(),
        Some("10.0.0.7")
    );
    assert_eq!(w.ok(&a, address("n1", "10.0.0.7")), vec![], "unchanged");
    assert_eq!(
        kinds(&w.ok(&admin(), address("n1", "gpu-7.lab.example"))),
        vec!["NodeAddressReported"]
    );
    w.ok(&a, address("n1", "::1"));
    assert_eq!(w.state.node("n1").unwrap().address.as_deref(), Some("::1"));
}

#[test]
fn a_node_address_is_refused_to_others_and_when_malformed() {
    let mut w = World::new();
    w.add_node("n1", fingerprint("n1", 1000, 1, 0));
    for actor in [agent("n2"), alice(), auditor()] {
        assert!(matches!(
            w.when(&actor, address("n1", "10.0.0.7")),
            Err(DomainError::Forbidden(_))
        ));
    }
    for bad in ["", "http://10.0.0.7", "10.0.0.7:80", "a b"] {
        let err = w.when(&agent("n1"), address("n1", bad)).unwrap_err();
        assert!(
            matches!(&err, DomainError::Invalid(m) if m.contains("address")),
            "{bad:?}: {err:?}"
        );
    }
    assert!(matches!(
        w.when(&admin(), address("n9", "10.0.0.7")),
        Err(DomainError::NotFound { .. })
    ));
    assert_eq!(w.state.node("n1").unwrap().address, None);
}

fn running(w: &mut World) {
    w.add_node("n1", fingerprint("n1", 4000, 8, 0));
    w.add_env("e1", &alice(), spec(1000, 1, 0));
    w.deploy(&alice(), "d1", "e1");
    w.ok(
        &agent("n1"),
        Command::Report {
            deployment_id: "d1".into(),
            report: Report::ContainerStarted,
        },
    );
}

#[test]
fn an_oom_inside_a_running_container_is_a_warning_that_frees_nothing() {
    let mut w = World::with_catalog();
    running(&mut w);
    let free_before = w.state.node("n1").unwrap().free();
    let warn = Command::Report {
        deployment_id: "d1".into(),
        report: Report::ContainerOomWarning {
            message: "a process was oom-killed".into(),
        },
    };
    assert_eq!(
        kinds(&w.ok(&agent("n1"), warn.clone())),
        vec!["ContainerOomWarning"]
    );
    let d = w.state.deployment("d1").unwrap();
    assert_eq!(d.status, DeploymentStatus::Running);
    assert_eq!(d.warnings.len(), 1);
    assert_eq!(d.warnings[0].kind, "oom");
    assert_eq!(w.state.node("n1").unwrap().free(), free_before);
    assert!(w.state.node("n1").unwrap().deployments.contains("d1"));
    // Each kill is its own warning.
    w.ok(&agent("n1"), warn.clone());
    assert_eq!(w.state.deployment("d1").unwrap().warnings.len(), 2);
    // Another node's agent and users may not report it.
    assert!(matches!(
        w.when(&agent("n2"), warn.clone()),
        Err(DomainError::Forbidden(_))
    ));
    assert!(matches!(
        w.when(&alice(), warn),
        Err(DomainError::Forbidden(_))
    ));
}

#[test]
fn a_stale_container_removed_is_recorded_on_the_deployment() {
    let mut w = World::with_catalog();
    running(&mut w);
    let stale = |node: &str| Command::ReportStaleContainer {
        node_id: node.into(),
        deployment_id: "d1".into(),
        container_id: "c1".into(),
    };
    // Still assigned to n1: its container there is not stale.
    assert!(matches!(
        w.when(&agent("n1"), stale("n1")),
        Err(DomainError::Invalid(_))
    ));
    // n1 is lost (no grace), the deployment moves to n2; n1 comes back and removes
    // its copy.
    w.settings.lost_node_grace_ms = 0;
    w.add_node("n2", fingerprint("n2", 4000, 8, 0));
    w.ok(
        &admin(),
        Command::MarkNodesLost {
            node_ids: vec!["n1".into()],
        },
    );
    assert_eq!(w.node_of("d1").as_deref(), Some("n2"));
    assert!(matches!(
        w.when(&agent("n2"), stale("n1")),
        Err(DomainError::Forbidden(_))
    ));
    assert_eq!(
        kinds(&w.ok(&agent("n1"), stale("n1"))),
        vec!["StaleContainerRemoved"]
    );
    let d = w.state.deployment("d1").unwrap();
    assert_eq!(d.status, DeploymentStatus::Scheduled);
    assert_eq!(d.warnings[0].kind, "stale_container_removed");
    assert!(d.warnings[0].message.contains("c1"), "{:?}", d.warnings);
}
