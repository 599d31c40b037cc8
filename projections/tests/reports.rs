//! Given/when/then: an agent's reports move a deployment through its statuses, once
//! each, only for its own node's deployments.

mod support;

use dcloud_events::Event;
use dcloud_projections::{Command, DeploymentStatus as S, DomainError, Report};
use support::*;

/// One node `n1`, one environment, deployment `d1` scheduled on it.
fn placed() -> World {
    let mut w = World::with_catalog();
    w.add_node("n1", fingerprint("n1", 4000, 8, 0));
    w.add_node("n2", fingerprint("n2", 1000, 1, 0));
    w.add_env("e1", &alice(), spec(2000, 2, 0));
    w.deploy(&alice(), "d1", "e1");
    assert_eq!(w.node_of("d1").as_deref(), Some("n1"));
    w
}

fn report(w: &mut World, r: Report) -> Result<Vec<Event>, DomainError> {
    w.run(
        &agent("n1"),
        Command::Report {
            deployment_id: "d1".into(),
            report: r,
        },
    )
}

fn statuses(w: &World) -> Vec<S> {
    w.state
        .deployment("d1")
        .unwrap()
        .history
        .iter()
        .map(|h| h.status)
        .collect()
}

#[test]
fn a_full_life_shows_each_transition_once() {
    let mut w = placed();
    let steps = [
        Report::BuildStarted {
            image: "img".into(),
            steps: 3,
        },
        Report::BuildProgress { step: 1, steps: 3 },
        Report::BuildProgress { step: 1, steps: 3 },
        Report::BuildProgress { step: 3, steps: 3 },
        Report::ImageReady {
            image: "img".into(),
            cached: false,
        },
        Report::ImageReady {
            image: "img".into(),
            cached: false,
        },
        Report::ContainerCreated {
            container_id: "c1".into(),
        },
        Report::ContainerCreated {
            container_id: "c1".into(),
        },
        Report::ContainerStarted,
        Report::ContainerStarted,
    ];
    let emitted: Vec<usize> = steps
        .into_iter()
        .map(|r| report(&mut w, r).unwrap().len())
        .collect();
    assert_eq!(
        emitted,
        vec![1, 1, 0, 1, 1, 0, 1, 0, 1, 0],
        "duplicates emit nothing"
    );
    let d = w.state.deployment("d1").unwrap();
    assert_eq!(d.container_id.as_deref(), Some("c1"));
    assert!(d.image_ready);
    assert_eq!(d.build.map(|b| (b.step, b.steps)), Some((3, 3)));
    assert_eq!(
        statuses(&w),
        vec![
            S::Pending,
            S::Scheduled,
            S::Building,
            S::Created,
            S::Running
        ]
    );
    // Stop: requested, then the agent removes the container and the resources free.
    w.ok(
        &alice(),
        Command::Stop {
            deployment_id: "d1".into(),
        },
    );
    assert_eq!(
        w.state.node("n1").unwrap().free().cpu_millis,
        2000,
        "still booked while stopping"
    );
    assert_eq!(
        kinds(&report(&mut w, Report::ContainerExited { code: 137 }).unwrap()),
        vec!["ContainerExited"]
    );
    assert_eq!(
        w.state.deployment("d1").unwrap().status,
        S::Stopping,
        "an exit while stopping is part of the stop"
    );
    let events = report(&mut w, Report::ContainerRemoved).unwrap();
    assert_eq!(
        kinds(&events),
        vec!["ContainerRemoved", "DeploymentStopped"]
    );
    assert_eq!(w.state.node("n1").unwrap().free().cpu_millis, 4000);
    assert_eq!(report(&mut w, Report::ContainerRemoved).unwrap(), vec![]);
    assert_eq!(
        statuses(&w),
        vec![
            S::Pending,
            S::Scheduled,
            S::Building,
            S::Created,
            S::Running,
            S::Stopping,
            S::Stopped
        ]
    );
}

#[test]
fn an_agent_reports_only_for_its_own_node() {
    let mut w = placed();
    let r = Command::Report {
        deployment_id: "d1".into(),
        report: Report::ContainerStarted,
    };
    assert!(
        matches!(w.when(&agent("n2"), r.clone()), Err(DomainError::Forbidden(m)) if m.contains("n2"))
    );
    assert!(matches!(
        w.when(&alice(), r.clone()),
        Err(DomainError::Forbidden(_))
    ));
    assert!(w.when(&admin(), r).is_ok());
    let missing = Command::Report {
        deployment_id: "nope".into(),
        report: Report::ContainerStarted,
    };
    assert!(matches!(
        w.when(&agent("n1"), missing),
        Err(DomainError::NotFound { .. })
    ));
    // Pending deployments are assigned to no node.
    w.add_env("huge", &alice(), spec(64000, 1, 0));
    w.deploy(&alice(), "d2", "huge");
    let r = Command::Report {
        deployment_id: "d2".into(),
        report: Report::ContainerStarted,
    };
    assert!(matches!(
        w.when(&agent("n1"), r),
        Err(DomainError::Forbidden(_))
    ));
}

#[test]
fn reports_that_come_too_late_are_refused() {
    let mut w = placed();
    report(&mut w, Report::ContainerStarted).unwrap();
    let late = report(&mut w, Report::BuildProgress { step: 1, steps: 2 });
    assert!(matches!(late, Err(DomainError::Invalid(m)) if m.contains("running")));
    report(&mut w, Report::ContainerExited { code: 1 }).unwrap();
    assert_eq!(
        report(&mut w, Report::ContainerExited { code: 1 }).unwrap(),
        vec![]
    );
    assert!(matches!(
        report(&mut w, Report::ContainerStarted),
        Err(DomainError::Invalid(_))
    ));
    assert!(matches!(
        report(&mut w, Report::ContainerExited { code: 2 }),
        Err(DomainError::Invalid(_))
    ));
    assert_eq!(w.state.deployment("d1").unwrap().exit_code, Some(1));
}

#[test]
fn endings_free_resources() {
    for (ending, status) in [
        (Report::ContainerOomKilled, S::OomKilled),
        (
            Report::ContainerFailed {
                message: "create refused".into(),
            },
            S::Failed,
        ),
        (
            Report::BuildFailed {
                step: 2,
                command: "pip install x".into(),
                output_tail: "no such package".into(),
            },
            S::Failed,
        ),
        (Report::ContainerExited { code: 0 }, S::Exited),
    ] {
        let mut w = placed();
        report(&mut w, ending.clone()).unwrap();
        let d = w.state.deployment("d1").unwrap();
        assert_eq!(d.status, status, "{ending:?}");
        assert_eq!(
            w.state.node("n1").unwrap().allocated,
            Default::default(),
            "{ending:?}"
        );
        assert!(d.node.is_some(), "the node stays on record");
    }
    let mut w = placed();
    report(
        &mut w,
        Report::BuildFailed {
            step: 2,
            command: "pip install x".into(),
            output_tail: "boom".into(),
        },
    )
    .unwrap();
    let f = w.state.deployment("d1").unwrap().failure.clone().unwrap();
    assert_eq!(
        (f.step, f.command.as_deref(), f.message.as_str()),
        (Some(2), Some("pip install x"), "boom")
    );
}

#[test]
fn a_container_removed_behind_our_back_fails_the_deployment() {
    let mut w = placed();
    report(
        &mut w,
        Report::ContainerCreated {
            container_id: "c1".into(),
        },
    )
    .unwrap();
    report(&mut w, Report::ContainerStarted).unwrap();
    let events = report(&mut w, Report::ContainerRemoved).unwrap();
    assert_eq!(kinds(&events), vec!["ContainerRemoved", "ContainerFailed"]);
    assert_eq!(w.state.deployment("d1").unwrap().status, S::Failed);
    assert_eq!(w.state.node("n1").unwrap().allocated, Default::default());
}

#[test]
fn a_finished_deployment_stops_at_once_and_its_container_removal_is_recorded() {
    let mut w = placed();
    report(
        &mut w,
        Report::ContainerCreated {
            container_id: "c1".into(),
        },
    )
    .unwrap();
    report(&mut w, Report::ContainerExited { code: 3 }).unwrap();
    assert_eq!(
        kinds(&w.ok(
            &alice(),
            Command::Stop {
                deployment_id: "d1".into()
            }
        )),
        vec!["DeploymentStopped"]
    );
    assert_eq!(
        kinds(&report(&mut w, Report::ContainerRemoved).unwrap()),
        vec!["ContainerRemoved"]
    );
    assert_eq!(w.state.deployment("d1").unwrap().container_id, None);
    assert_eq!(report(&mut w, Report::ContainerRemoved).unwrap(), vec![]);
}
