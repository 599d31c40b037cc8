//! Given/when/then: placement choices and their records, GPU devices, ports, labels,
//! datasets, the pending queue, and stop.

mod support;

use std::collections::BTreeMap;

use dcloud_events::model::{
    DatasetCategory, DatasetDb, DatasetVersion, PlacementPolicy, RejectCount,
};
use dcloud_events::Event;
use dcloud_projections::{Command, DeploymentStatus, Report};
use support::*;

fn rejected(events: &[Event]) -> Vec<(String, u32)> {
    let list: &[RejectCount] = match events.last() {
        Some(Event::DeploymentScheduled { rejected, .. })
        | Some(Event::DeploymentUnschedulable { rejected, .. }) => rejected,
        _ => panic!("no decision in {events:?}"),
    };
    list.iter().map(|r| (r.reason.clone(), r.count)).collect()
}

#[test]
fn a_deployment_is_requested_then_scheduled_with_its_record() {
    let mut w = World::with_catalog();
    w.add_node("n1", fingerprint("n1", 4000, 8, 0));
    w.add_node("n2", fingerprint("n2", 2000, 8, 0));
    w.add_env("e1", &alice(), spec(1000, 2, 0));
    let events = w.deploy(&alice(), "d1", "e1");
    assert_eq!(
        kinds(&events),
        vec!["DeploymentRequested", "DeploymentScheduled"]
    );
    let Event::DeploymentScheduled {
        node_id,
        score_milli,
        runners_up,
        candidates,
        image,
        ..
    } = &events[1]
    else {
        unreachable!()
    };
    // Spread: n1 keeps 3/4 cpu and 3/4 memory free, n2 1/2 and 3/4.
    assert_eq!(node_id, "n1");
    assert_eq!(*score_milli, 750);
    assert_eq!(runners_up.len(), 1);
    assert_eq!(
        (runners_up[0].node_id.as_str(), runners_up[0].score_milli),
        ("n2", 625)
    );
    assert_eq!(*candidates, 2);
    assert!(image.starts_with("dcloud-env:"), "{image}");
    let d = w.state.deployment("d1").unwrap();
    assert_eq!(d.status, DeploymentStatus::Scheduled);
    assert_eq!(d.image.as_deref(), Some(image.as_str()));
    assert_eq!(w.state.node("n1").unwrap().free().cpu_millis, 3000);
}

#[test]
fn spread_and_bin_pack_choose_opposite_nodes() {
    let mut w = World::with_catalog();
    w.add_node("big", fingerprint("big", 8000, 16, 0));
    w.add_node("small", fingerprint("small", 2000, 4, 0));
    w.add_env("e1", &alice(), spec(1000, 1, 0));
    let spread = w.deploy(&alice(), "d1", "e1");
    assert_eq!(scheduled(&spread), vec![("d1".into(), "big".into())]);
    let pack = w.ok(
        &alice(),
        Command::Deploy {
            deployment_id: "d2".into(),
            env_id: "e1".into(),
            wait_for_quota: false,
            policy: Some(PlacementPolicy::BinPack),
        },
    );
    assert_eq!(scheduled(&pack), vec![("d2".into(), "small".into())]);
    assert_eq!(
        w.state.deployment("d2").unwrap().policy,
        PlacementPolicy::BinPack
    );
}

#[test]
fn equal_scores_break_ties_by_node_id() {
    let mut w = World::with_catalog();
    for id in ["n3", "n1", "n2"] {
        w.add_node(id, fingerprint(id, 4000, 8, 0));
    }
    w.add_env("e1", &alice(), spec(1000, 1, 0));
    let events = w.deploy(&alice(), "d1", "e1");
    assert_eq!(scheduled(&events), vec![("d1".into(), "n1".into())]);
    let Event::DeploymentScheduled { runners_up, .. } = &events[1] else {
        unreachable!()
    };
    let ids: Vec<_> = runners_up.iter().map(|c| c.node_id.as_str()).collect();
    assert_eq!(ids, vec!["n2", "n3"]);
}

#[test]
fn gpu_devices_are_assigned_lowest_index_first_and_never_twice() {
    let mut w = World::with_catalog();
    let mut fp = fingerprint("g", 16000, 64, 4);
    fp.reserved.gpus = 1; // gpu3 is the host's
    w.add_node("g", fp);
    w.add_env("two", &alice(), spec(1000, 1, 2));
    let events = w.deploy(&alice(), "d1", "two");
    let Event::DeploymentScheduled { gpus, .. } = &events[1] else {
        panic!("{events:?}")
    };
    assert_eq!(gpus, &vec!["g-gpu0".to_string(), "g-gpu1".to_string()]);
    let events = w.deploy(&alice(), "d2", "two");
    assert_eq!(
        rejected(&events),
        vec![("insufficient gpu".into(), 1)],
        "one unreserved device left"
    );
    w.add_env("one", &alice(), spec(1000, 1, 1));
    let events = w.deploy(&alice(), "d3", "one");
    let Event::DeploymentScheduled { gpus, .. } = &events[1] else {
        panic!("{events:?}")
    };
    assert_eq!(gpus, &vec!["g-gpu2".to_string()]);
}

#[test]
fn a_published_port_is_booked_once_per_node_and_protocol() {
    let mut w = World::with_catalog();
    w.add_node("n1", fingerprint("n1", 8000, 16, 0));
    w.add_env("web", &alice(), with_port(spec(100, 1, 0), 9000));
    w.deploy(&alice(), "d1", "web");
    let events = w.deploy(&alice(), "d2", "web");
    assert_eq!(rejected(&events), vec![("port 9000/tcp in use".into(), 1)]);
    w.add_node("n2", fingerprint("n2", 1000, 2, 0));
    assert_eq!(w.state.pending.len(), 0, "placed on the new node at once");
    assert_eq!(w.node_of("d2").as_deref(), Some("n2"));
}

#[test]
fn reasons_are_counted_once_per_node_in_a_fixed_order() {
    let mut w = World::with_catalog();
    w.add_node("lost", fingerprint("lost", 64000, 64, 0));
    w.ok(
        &admin(),
        Command::MarkNodesLost {
            node_ids: vec!["lost".into()],
        },
    );
    w.add_node("cpu", fingerprint("cpu", 500, 64, 0));
    w.add_node("mem", fingerprint("mem", 8000, 1, 0));
    w.add_node("mem2", fingerprint("mem2", 8000, 1, 0));
    let mut labelled = fingerprint("arm", 64000, 64, 0);
    labelled.labels.insert("os".into(), "alpine".into());
    w.add_node("arm", labelled);
    w.add_env("e1", &alice(), spec(1000, 2, 0));
    let events = w.deploy(&alice(), "d1", "e1");
    assert_eq!(
        kinds(&events),
        vec!["DeploymentRequested", "DeploymentUnschedulable"]
    );
    assert_eq!(
        rejected(&events),
        vec![
            ("node lost".into(), 1),
            ("label mismatch".into(), 1),
            ("insufficient cpu".into(), 1),
            ("insufficient memory".into(), 2),
        ]
    );
    assert_eq!(w.state.deployment("d1").unwrap().pending_reasons.len(), 4);
}

#[test]
fn node_labels_must_match() {
    let mut w = World::with_catalog();
    let mut gpu_box = fingerprint("a", 4000, 8, 0);
    gpu_box.labels = BTreeMap::from([("zone".into(), "eu".into()), ("os".into(), "ubuntu".into())]);
    w.add_node("a", gpu_box);
    w.add_node("b", fingerprint("b", 64000, 64, 0));
    let mut s = spec(1000, 1, 0);
    s.node_labels.insert("zone".into(), "eu".into());
    w.add_env("e1", &alice(), s);
    let events = w.deploy(&alice(), "d1", "e1");
    assert_eq!(scheduled(&events), vec![("d1".into(), "a".into())]);
    assert_eq!(rejected(&events), vec![("label mismatch".into(), 1)]);
}

fn coco() -> DatasetCategory {
    DatasetCategory {
        category: "vision".into(),
        dbs: vec![DatasetDb {
            name: "coco".into(),
            datasets: vec![DatasetVersion {
                name: "val".into(),
                version: "2017".into(),
            }],
        }],
    }
}

#[test]
fn only_nodes_holding_the_datasets_are_chosen() {
    let mut w = World::with_catalog();
    w.ok(&admin(), Command::RegisterDatasets { category: coco() });
    let mut holder = fingerprint("holder", 4000, 8, 0);
    holder.datasets = vec!["vision/coco/val@2017".into()];
    w.add_node("holder", holder);
    w.add_node("roomy", fingerprint("roomy", 16000, 32, 0)); // more free, no data
    w.add_node("other", fingerprint("other", 16000, 32, 0));
    let mut s = spec(1000, 1, 0);
    s.datasets = vec![coco()];
    w.add_env("e1", &alice(), s);
    let events = w.deploy(&alice(), "d1", "e1");
    assert_eq!(scheduled(&events), vec![("d1".into(), "holder".into())]);
    let Event::DeploymentScheduled {
        score_milli,
        runners_up,
        candidates,
        ..
    } = &events[1]
    else {
        unreachable!()
    };
    // holder: (3/4 cpu + 7/8 memory) / 2 = 812, plus the 200 bonus for its data.
    assert_eq!(*score_milli, 812 + 200);
    assert_eq!(*candidates, 1);
    assert!(runners_up.is_empty(), "{runners_up:?}");
    assert_eq!(
        rejected(&events),
        vec![("missing dataset vision/coco/val@2017".into(), 2)]
    );
}

#[test]
fn a_dataset_no_node_holds_keeps_the_deployment_pending_naming_it() {
    let mut w = World::with_catalog();
    w.ok(&admin(), Command::RegisterDatasets { category: coco() });
    w.add_node("roomy", fingerprint("roomy", 16000, 32, 0));
    let mut s = spec(1000, 1, 0);
    s.datasets = vec![coco()];
    w.add_env("e1", &alice(), s);
    let events = w.deploy(&alice(), "d1", "e1");
    assert_eq!(
        kinds(&events),
        vec!["DeploymentRequested", "DeploymentUnschedulable"]
    );
    assert_eq!(
        rejected(&events),
        vec![("missing dataset vision/coco/val@2017".into(), 1)]
    );
    assert_eq!(
        w.state.deployment("d1").unwrap().status,
        DeploymentStatus::Pending
    );
    // A node holding it registers: the deployment is placed there.
    let mut holder = fingerprint("holder", 4000, 8, 0);
    holder.datasets = vec!["vision/coco/val@2017".into()];
    let events = w.add_node("holder", holder);
    assert_eq!(scheduled(&events), vec![("d1".into(), "holder".into())]);
}

#[test]
fn pending_deployments_are_placed_in_arrival_order_when_capacity_frees() {
    let mut w = World::with_catalog();
    w.add_node("n1", fingerprint("n1", 2000, 8, 0));
    w.add_env("big", &alice(), spec(2000, 1, 0));
    w.add_env("small", &alice(), spec(1000, 1, 0));
    w.deploy(&alice(), "d1", "big");
    for d in ["d2", "d3", "d4"] {
        let env = if d == "d2" { "big" } else { "small" };
        let events = w.deploy(&alice(), d, env);
        assert_eq!(
            kinds(&events),
            vec!["DeploymentRequested", "DeploymentUnschedulable"]
        );
    }
    assert_eq!(
        w.state.pending_ids().collect::<Vec<_>>(),
        vec!["d2", "d3", "d4"]
    );
    // Stop d1: resources stay booked until the agent reports the container removed.
    let events = w.ok(
        &alice(),
        Command::Stop {
            deployment_id: "d1".into(),
        },
    );
    assert_eq!(kinds(&events), vec!["DeploymentStopRequested"]);
    assert_eq!(w.state.node("n1").unwrap().free().cpu_millis, 0);
    let events = w.ok(
        &agent("n1"),
        Command::Report {
            deployment_id: "d1".into(),
            report: Report::ContainerRemoved,
        },
    );
    // d2 arrived first and takes the whole node; d3 and d4 keep waiting.
    assert_eq!(
        kinds(&events),
        vec!["DeploymentStopped", "DeploymentScheduled"]
    );
    assert_eq!(scheduled(&events), vec![("d2".into(), "n1".into())]);
    assert_eq!(w.state.pending_ids().collect::<Vec<_>>(), vec!["d3", "d4"]);
    // d2 exits: its resources free, d3 then d4 take them in order.
    let a = agent("n1");
    w.ok(
        &a,
        Command::Report {
            deployment_id: "d2".into(),
            report: Report::ContainerStarted,
        },
    );
    let events = w.ok(
        &a,
        Command::Report {
            deployment_id: "d2".into(),
            report: Report::ContainerExited { code: 0 },
        },
    );
    assert_eq!(
        kinds(&events),
        vec![
            "ContainerExited",
            "DeploymentScheduled",
            "DeploymentScheduled"
        ]
    );
    assert_eq!(
        scheduled(&events),
        vec![("d3".into(), "n1".into()), ("d4".into(), "n1".into())]
    );
    assert!(w.state.pending.is_empty());
}

#[test]
fn stopping_a_pending_or_finished_deployment_is_immediate() {
    let mut w = World::with_catalog();
    w.add_env("e1", &alice(), spec(1000, 1, 0));
    w.deploy(&alice(), "d1", "e1");
    assert!(matches!(
        w.when(
            &bob(),
            Command::Stop {
                deployment_id: "d1".into()
            }
        ),
        Err(dcloud_projections::DomainError::Forbidden(_))
    ));
    assert_eq!(
        kinds(&w.ok(
            &alice(),
            Command::Stop {
                deployment_id: "d1".into()
            }
        )),
        vec!["DeploymentStopped"]
    );
    assert!(w.state.pending.is_empty());
    assert_eq!(
        w.ok(
            &alice(),
            Command::Stop {
                deployment_id: "d1".into()
            }
        ),
        vec![],
        "stopping twice is a no-op"
    );
}

#[test]
fn deploy_needs_a_catalog_for_the_os() {
    let mut w = World::with_catalog();
    w.add_env("e1", &alice(), spec(1000, 1, 0));
    let mut other = catalog();
    other.os = "debian".into();
    w.ok(&admin(), Command::UpsertCatalog { catalog: other });
    let mut fresh = World::new();
    fresh.given(w.log.iter().skip(1).map(|e| e.event.clone())); // everything but the ubuntu catalog
    let deploy = Command::Deploy {
        deployment_id: "d1".into(),
        env_id: "e1".into(),
        wait_for_quota: false,
        policy: None,
    };
    assert!(
        matches!(fresh.when(&alice(), deploy), Err(dcloud_projections::DomainError::Validation(e)) if e[0].path == "os")
    );
}
