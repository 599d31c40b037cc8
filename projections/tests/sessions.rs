//! Given/when/then: who may open a deployment's logs (owner, admin, auditor) or a shell
//! in it (owner, admin; running only), the end of a session, idle timeouts and idle
//! stops.

mod support;

use dcloud_events::Event;
use dcloud_projections::{Actor, Command, DomainError, Report};
use support::*;

/// Node `n1`, environment `e1` of alice, deployment `d1` running on `n1`.
fn running() -> World {
    let mut w = World::with_catalog();
    w.add_node("n1", fingerprint("n1", 4000, 8, 0));
    w.add_env("e1", &alice(), spec(1000, 1, 0));
    w.deploy(&alice(), "d1", "e1");
    for report in [
        Report::ContainerCreated {
            container_id: "c1".into(),
        },
        Report::ContainerStarted,
    ] {
        w.ok(
            &agent("n1"),
            Command::Report {
                deployment_id: "d1".into(),
                report,
            },
        );
    }
    w
}

fn open_logs() -> Command {
    Command::OpenLogs {
        deployment_id: "d1".into(),
    }
}

fn exec(cmd: &[&str]) -> Command {
    Command::StartExec {
        session_id: "s1".into(),
        deployment_id: "d1".into(),
        command: cmd.iter().map(|s| s.to_string()).collect(),
        tty: true,
    }
}

fn forbidden(r: Result<Vec<Event>, DomainError>) -> bool {
    matches!(r, Err(DomainError::Forbidden(_)))
}

#[test]
fn logs_open_for_the_owner_admins_and_auditors_and_are_recorded() {
    let mut w = running();
    for actor in [alice(), admin(), auditor()] {
        assert_eq!(
            w.ok(&actor, open_logs()),
            vec![Event::DeploymentLogsOpened {
                deployment_id: "d1".into()
            }]
        );
    }
    assert!(forbidden(w.when(&bob(), open_logs())));
    assert!(forbidden(w.when(&agent("n1"), open_logs())));
    let missing = Command::OpenLogs {
        deployment_id: "nope".into(),
    };
    assert!(matches!(
        w.when(&admin(), missing),
        Err(DomainError::NotFound { .. })
    ));
}

#[test]
fn exec_is_for_the_owner_and_admins_in_a_running_deployment() {
    let mut w = running();
    let events = w.ok(&alice(), exec(&["/bin/sh"]));
    assert_eq!(
        events,
        vec![Event::ExecSessionStarted {
            session_id: "s1".into(),
            deployment_id: "d1".into(),
            command: vec!["/bin/sh".into()],
            tty: true,
        }]
    );
    assert_eq!(w.ok(&admin(), exec(&["hostname"])).len(), 1);
    for actor in [bob(), auditor(), agent("n1")] {
        assert!(forbidden(w.when(&actor, exec(&["hostname"]))), "{actor:?}");
    }
    match w.when(&alice(), exec(&[])) {
        Err(DomainError::Validation(f)) => assert_eq!(f[0].path, "cmd"),
        other => panic!("{other:?}"),
    }
    w.ok(
        &alice(),
        Command::Stop {
            deployment_id: "d1".into(),
        },
    );
    assert!(matches!(
        w.when(&alice(), exec(&["hostname"])),
        Err(DomainError::Invalid(_))
    ));
}

#[test]
fn only_the_server_ends_sessions_and_stops_idle_deployments() {
    let mut w = running();
    let end = Command::EndExec {
        session_id: "s1".into(),
        deployment_id: "d1".into(),
        exit_code: Some(0),
        reason: "exited".into(),
    };
    assert!(forbidden(w.when(&alice(), end.clone())));
    assert_eq!(w.ok(&Actor::system(), end).len(), 1);
    let idle = Command::StopIdle {
        deployment_id: "d1".into(),
        idle_ms: 1_800_000,
        reason: "idle for 1800s".into(),
    };
    assert!(forbidden(w.when(&alice(), idle.clone())));
    assert_eq!(
        kinds(&w.ok(&Actor::system(), idle.clone())),
        vec!["DeploymentIdleStopped", "DeploymentStopRequested"]
    );
    // Already stopping: nothing more.
    assert_eq!(w.ok(&Actor::system(), idle), vec![]);
}

#[test]
fn idle_timeouts_are_recorded_next_to_the_version_and_checked() {
    let mut w = running();
    let set = |ms| Command::SetIdleTimeout {
        env_id: "e1".into(),
        timeout_ms: ms,
    };
    assert_eq!(
        w.ok(&alice(), set(1_800_000)),
        vec![Event::EnvironmentIdleTimeoutSet {
            env_id: "e1".into(),
            version: 1,
            timeout_ms: 1_800_000
        }]
    );
    assert_eq!(w.ok(&alice(), set(0)).len(), 1);
    assert!(forbidden(w.when(&bob(), set(1_800_000))));
    for bad in [1_000, 31 * 24 * 3_600_000] {
        match w.when(&alice(), set(bad)) {
            Err(DomainError::Validation(f)) => assert_eq!(f[0].path, "idle-timeout"),
            other => panic!("{other:?}"),
        }
    }
}
