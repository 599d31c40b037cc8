//! Given/when/then: quotas. Admins set them; a deploy past one is refused naming the
//! limit, or waits (pending, not counted) when it asked to, and is placed once the
//! owner's usage drops or the quota is raised.

mod support;

use dcloud_events::model::Quota;
use dcloud_events::Event;
use dcloud_projections::{Command, DeploymentStatus as S, DomainError, Report};
use support::*;

fn set_quota(user: &str, quota: Quota) -> Command {
    Command::SetQuota {
        user: user.into(),
        quota,
    }
}

fn gpus(n: u32) -> Quota {
    Quota {
        gpus: Some(n),
        ..Quota::default()
    }
}

fn deploy(dep: &str, env: &str, wait: bool) -> Command {
    Command::Deploy {
        deployment_id: dep.into(),
        env_id: env.into(),
        policy: None,
        wait_for_quota: wait,
    }
}

/// Node `n1` with 4 GPUs; alice's `e1` needs 1 GPU, `e2` needs 2; her quota is 1 GPU.
fn world() -> World {
    let mut w = World::with_catalog();
    w.add_node("n1", fingerprint("n1", 16_000, 64, 4));
    w.add_env("e1", &alice(), spec(1000, 1, 1));
    w.add_env("e2", &alice(), spec(1000, 1, 2));
    w.ok(&admin(), set_quota("alice", gpus(1)));
    w
}

fn status(w: &World, dep: &str) -> S {
    w.state
        .deployment(dep)
        .map(|d| d.status)
        .expect("deployment")
}

#[test]
fn only_admins_set_quotas_and_names_are_checked() {
    let w = World::with_catalog();
    for who in [alice(), agent("n1"), auditor()] {
        let err = w
            .when(&who, set_quota("alice", gpus(1)))
            .expect_err("refused");
        assert!(matches!(err, DomainError::Forbidden(_)), "{err:?}");
    }
    let err = w
        .when(&admin(), set_quota(" ", gpus(1)))
        .expect_err("bad name");
    assert!(
        matches!(&err, DomainError::Validation(f) if f[0].path == "user"),
        "{err:?}"
    );
    let events = w.when(&admin(), set_quota("alice", gpus(1))).expect("set");
    assert_eq!(kinds(&events), ["QuotaSet"]);
}

#[test]
fn setting_the_same_quota_twice_records_it_once_and_unlimited_removes_it() {
    let mut w = world();
    assert_eq!(w.ok(&admin(), set_quota("alice", gpus(1))), vec![]);
    assert_eq!(w.state.quotas.get("alice"), Some(&gpus(1)));
    w.ok(&admin(), set_quota("alice", Quota::default()));
    assert_eq!(w.state.quotas.get("alice"), None);
}

#[test]
fn a_deploy_past_the_quota_is_refused_naming_the_limit_and_changes_nothing() {
    let mut w = world();
    w.ok(&alice(), deploy("d1", "e1", false));
    assert_eq!(status(&w, "d1"), S::Scheduled);
    let before = w.state.clone();
    let err = w
        .run(&alice(), deploy("d2", "e1", false))
        .expect_err("over");
    assert_eq!(
        err,
        DomainError::QuotaExceeded("quota exceeded: gpus 2 of 1".into())
    );
    assert_eq!(w.state, before);
    // Other users are not limited by alice's quota.
    w.add_env("eb", &bob(), spec(1000, 1, 1));
    w.ok(&bob(), deploy("b1", "eb", false));
    w.ok(&bob(), deploy("b2", "eb", false));
    // An admin deploying alice's environment is held to alice's quota.
    let err = w
        .run(&admin(), deploy("d3", "e1", false))
        .expect_err("over");
    assert!(matches!(err, DomainError::QuotaExceeded(_)), "{err:?}");
}

#[test]
fn a_deploy_that_cannot_ever_fit_the_quota_is_refused_even_when_asked_to_wait() {
    let mut w = world();
    let err = w
        .run(&alice(), deploy("d1", "e2", true))
        .expect_err("never");
    match err {
        DomainError::QuotaExceeded(m) => {
            assert!(m.starts_with("quota exceeded: gpus 2 of 1"), "{m}");
            assert!(m.contains("even with nothing else running"), "{m}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn pending_deployments_count_against_the_deployments_limit() {
    let mut w = World::with_catalog();
    w.add_env("e1", &alice(), spec(1000, 1, 0));
    w.ok(
        &admin(),
        set_quota(
            "alice",
            Quota {
                deployments: Some(1),
                ..Quota::default()
            },
        ),
    );
    // No node: it waits for room, and it counts.
    w.ok(&alice(), deploy("d1", "e1", false));
    assert_eq!(status(&w, "d1"), S::Pending);
    assert_eq!(w.state.quota_usage("alice").deployments, 1);
    let err = w
        .run(&alice(), deploy("d2", "e1", false))
        .expect_err("over");
    assert_eq!(
        err,
        DomainError::QuotaExceeded("quota exceeded: deployments 2 of 1".into())
    );
}

#[test]
fn a_waiting_deployment_is_placed_when_the_owners_usage_drops() {
    let mut w = world();
    w.ok(&alice(), deploy("d1", "e1", false));
    let events = w.ok(&alice(), deploy("d2", "e1", true));
    assert_eq!(
        kinds(&events),
        ["DeploymentRequested", "DeploymentQuotaWaiting"]
    );
    let d2 = w.state.deployment("d2").expect("d2");
    assert_eq!(d2.status, S::Pending);
    assert_eq!(
        d2.quota_wait.as_deref(),
        Some("waiting for quota: gpus 2 of 1")
    );
    // Waiting, it is not counted: usage is d1's alone.
    assert_eq!(w.state.quota_usage("alice").gpus, 1);
    // A capacity change elsewhere does not let it past the quota.
    w.add_node("n2", fingerprint("n2", 16_000, 64, 4));
    assert_eq!(status(&w, "d2"), S::Pending);
    w.ok(&admin(), Command::RetryPending);
    assert_eq!(status(&w, "d2"), S::Pending);

    // d1 exits: its GPU is free again, and d2 is placed in the same decision.
    let events = w.ok(
        &agent("n1"),
        Command::Report {
            deployment_id: "d1".into(),
            report: Report::ContainerExited { code: 0 },
        },
    );
    assert_eq!(kinds(&events), ["ContainerExited", "DeploymentScheduled"]);
    let d2 = w.state.deployment("d2").expect("d2");
    assert_eq!(d2.status, S::Scheduled);
    assert_eq!(d2.quota_wait, None);
    assert_eq!(w.state.quota_usage("alice").gpus, 1);
}

#[test]
fn stopping_a_queued_deployment_frees_its_quota_for_one_waiting() {
    let mut w = World::with_catalog();
    w.add_env("e1", &alice(), spec(1000, 1, 0));
    w.ok(
        &admin(),
        set_quota(
            "alice",
            Quota {
                deployments: Some(1),
                ..Quota::default()
            },
        ),
    );
    w.ok(&alice(), deploy("d1", "e1", false)); // no node: pending, counted
    w.ok(&alice(), deploy("d2", "e1", true)); // waits for quota
    w.add_node("n1", fingerprint("n1", 16_000, 64, 0));
    // d1 was placed when the node came; d2 still waits for the quota.
    assert_eq!(status(&w, "d1"), S::Scheduled);
    assert_eq!(status(&w, "d2"), S::Pending);
    // Stopping d1 asks its agent; the quota frees once the container is removed.
    w.ok(
        &alice(),
        Command::Stop {
            deployment_id: "d1".into(),
        },
    );
    assert_eq!(status(&w, "d2"), S::Pending);
    let events = w.ok(
        &agent("n1"),
        Command::Report {
            deployment_id: "d1".into(),
            report: Report::ContainerRemoved,
        },
    );
    assert_eq!(kinds(&events), ["DeploymentStopped", "DeploymentScheduled"]);
    assert_eq!(status(&w, "d2"), S::Scheduled);
}

#[test]
fn a_stopped_pending_deployment_lets_a_waiting_one_through() {
    let mut w = World::with_catalog();
    w.add_env("e1", &alice(), spec(1000, 1, 0));
    w.ok(
        &admin(),
        set_quota(
            "alice",
            Quota {
                deployments: Some(1),
                ..Quota::default()
            },
        ),
    );
    w.ok(&alice(), deploy("d1", "e1", false)); // no node: pending, counted
    w.ok(&alice(), deploy("d2", "e1", true)); // waits for quota
    let events = w.ok(
        &alice(),
        Command::Stop {
            deployment_id: "d1".into(),
        },
    );
    // d2 now fits the quota; with no node it stays pending, counted from now on
    // only once placed.
    assert_eq!(kinds(&events), ["DeploymentStopped"]);
    w.add_node("n1", fingerprint("n1", 16_000, 64, 0));
    assert_eq!(status(&w, "d2"), S::Scheduled);
}

#[test]
fn raising_the_quota_places_what_waits_for_it() {
    let mut w = world();
    w.ok(&alice(), deploy("d1", "e1", false));
    w.ok(&alice(), deploy("d2", "e1", true));
    let events = w.ok(&admin(), set_quota("alice", gpus(2)));
    assert_eq!(kinds(&events), ["QuotaSet", "DeploymentScheduled"]);
    assert_eq!(status(&w, "d2"), S::Scheduled);
    // Removing the quota altogether places the rest.
    w.ok(&alice(), deploy("d3", "e1", true));
    assert_eq!(status(&w, "d3"), S::Pending);
    let events = w.ok(&admin(), set_quota("alice", Quota::default()));
    assert_eq!(kinds(&events), ["QuotaSet", "DeploymentScheduled"]);
}

#[test]
fn waiting_deployments_are_admitted_in_arrival_order_within_the_quota() {
    let mut w = world();
    w.ok(&alice(), deploy("d1", "e1", false));
    w.ok(&alice(), deploy("d2", "e1", true));
    w.ok(&alice(), deploy("d3", "e1", true));
    w.ok(
        &agent("n1"),
        Command::Report {
            deployment_id: "d1".into(),
            report: Report::ContainerFailed {
                message: "boom".into(),
            },
        },
    );
    assert_eq!(status(&w, "d2"), S::Scheduled);
    assert_eq!(status(&w, "d3"), S::Pending);
    let stopped = w.ok(
        &alice(),
        Command::Stop {
            deployment_id: "d3".into(),
        },
    );
    assert_eq!(
        stopped,
        vec![Event::DeploymentStopped {
            deployment_id: "d3".into()
        }]
    );
    assert_eq!(
        w.state.deployment("d3").and_then(|d| d.quota_wait.clone()),
        None
    );
}

#[test]
fn replaying_the_log_gives_the_same_state() {
    let mut w = world();
    w.ok(&alice(), deploy("d1", "e1", false));
    w.ok(&alice(), deploy("d2", "e1", true));
    w.ok(&admin(), set_quota("alice", gpus(2)));
    let mut replayed = dcloud_projections::State::new();
    for e in &w.log {
        replayed.apply(e);
    }
    assert_eq!(replayed, w.state);
    assert_eq!(replayed.digest(), w.state.digest());
    let bytes = w.state.to_snapshot_bytes();
    let loaded = dcloud_projections::State::from_snapshot_bytes(&bytes).expect("snapshot");
    assert_eq!(loaded, w.state);
    assert_eq!(loaded.quotas.get("alice"), Some(&gpus(2)));
}
