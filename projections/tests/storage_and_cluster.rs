//! Given/when/then: the cluster's id, datasets on shared storage, and the storage
//! usage agents report against the sizes asked for.

mod support;

use dcloud_events::model::{
    DatasetCategory, DatasetDb, DatasetVersion, Lifecycle, SharedStorage, StorageMount, VolumeUsage,
};
use dcloud_events::Event;
use dcloud_projections::{Command, DeploymentStatus, DomainError};
use support::*;

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

fn nfs() -> SharedStorage {
    SharedStorage {
        fs_type: "nfs".into(),
        device: ":/export/vision".into(),
        options: "addr=10.0.0.5,ro".into(),
    }
}

fn share(category: &str, shared: Option<SharedStorage>) -> Command {
    Command::SetDatasetStorage {
        category: category.into(),
        shared,
    }
}

#[test]
fn the_cluster_is_named_once_by_an_admin() {
    let mut w = World::new();
    let refused = w.when(
        &alice(),
        Command::CreateCluster {
            cluster_id: "c-1".into(),
        },
    );
    assert!(
        matches!(refused, Err(DomainError::Forbidden(_))),
        "{refused:?}"
    );
    let bad = w.when(
        &admin(),
        Command::CreateCluster {
            cluster_id: "c 1/x".into(),
        },
    );
    assert!(matches!(bad, Err(DomainError::Validation(_))), "{bad:?}");
    let events = w.ok(
        &admin(),
        Command::CreateCluster {
            cluster_id: "c-0123456789abcdef".into(),
        },
    );
    assert_eq!(kinds(&events), vec!["ClusterCreated"]);
    assert_eq!(w.state.cluster_id.as_deref(), Some("c-0123456789abcdef"));
    let again = w.when(
        &admin(),
        Command::CreateCluster {
            cluster_id: "c-other".into(),
        },
    );
    assert!(matches!(again, Err(DomainError::Invalid(_))), "{again:?}");
    assert_eq!(w.state.cluster_id.as_deref(), Some("c-0123456789abcdef"));
}

#[test]
fn a_dataset_on_shared_storage_is_placed_on_any_node() {
    let mut w = World::with_catalog();
    w.ok(&admin(), Command::RegisterDatasets { category: coco() });
    w.add_node("roomy", fingerprint("roomy", 16000, 32, 0));
    let mut s = spec(1000, 1, 0);
    s.datasets = vec![coco()];
    w.add_env("e1", &alice(), s);
    // On nodes' disks and held by none: pending, the dataset named.
    let events = w.deploy(&alice(), "d1", "e1");
    assert_eq!(kinds(&events).last(), Some(&"DeploymentUnschedulable"));

    // Only admins put a category on shared storage (every engine mounts it).
    let refused = w.when(&alice(), share("vision", Some(nfs())));
    assert!(
        matches!(refused, Err(DomainError::Forbidden(_))),
        "{refused:?}"
    );
    let mut bind = nfs();
    bind.fs_type = "none".into();
    bind.options = "ro".into();
    let bad = w.when(&admin(), share("vision", Some(bind)));
    let Err(DomainError::Validation(errors)) = bad else {
        panic!("{bad:?}")
    };
    assert!(
        errors.iter().any(|e| e.path == "shared-storage.o"),
        "{errors:?}"
    );

    let events = w.ok(&admin(), share("vision", Some(nfs())));
    assert_eq!(kinds(&events), vec!["DatasetStorageSet"]);
    assert_eq!(w.state.dataset_storage.get("vision"), Some(&nfs()));
    // The same again writes nothing.
    assert!(w.ok(&admin(), share("vision", Some(nfs()))).is_empty());
    // The queued deployment now fits the node without the data.
    let events = w.ok(&admin(), Command::RetryPending);
    assert_eq!(scheduled(&events), vec![("d1".into(), "roomy".into())]);
    // So does a new one, at once.
    let events = w.deploy(&alice(), "d2", "e1");
    assert_eq!(scheduled(&events), vec![("d2".into(), "roomy".into())]);

    // Back on nodes' disks: a third one waits again for a node that holds it.
    let events = w.ok(&admin(), share("vision", None));
    assert_eq!(kinds(&events), vec!["DatasetStorageSet"]);
    assert!(w.state.dataset_storage.is_empty());
    let events = w.deploy(&alice(), "d3", "e1");
    assert_eq!(kinds(&events).last(), Some(&"DeploymentUnschedulable"));
}

fn usage(target: &str, used: u64, size: u64) -> VolumeUsage {
    VolumeUsage {
        target: target.into(),
        used_bytes: used,
        size_bytes: size,
        enforced: false,
    }
}

fn report(node: &str, dep: &str, volumes: Vec<VolumeUsage>) -> Command {
    Command::ReportVolumeUsage {
        node_id: node.into(),
        deployment_id: dep.into(),
        volumes,
    }
}

#[test]
fn storage_usage_is_recorded_when_it_moves_enough_or_passes_its_size() {
    let mut w = World::with_catalog();
    w.add_node("n1", fingerprint("n1", 4000, 8, 0));
    w.add_node("n2", fingerprint("n2", 4000, 8, 0));
    let mut s = spec(1000, 1, 0);
    s.storage = vec![StorageMount {
        target: "/data".into(),
        size_bytes: 1 << 30,
        lifecycle: Lifecycle::Persistent,
    }];
    w.add_env("e1", &alice(), s);
    w.deploy(&alice(), "d1", "e1");
    let node = w.node_of("d1").unwrap();
    let other = if node == "n1" { "n2" } else { "n1" };
    let gib = 1u64 << 30;

    // Only the node's own agent reports for it (or an admin); an agent reporting a
    // deployment that is not on its node writes nothing.
    let refused = w.when(
        &agent(other),
        report(&node, "d1", vec![usage("/data", 1, gib)]),
    );
    assert!(
        matches!(refused, Err(DomainError::Forbidden(_))),
        "{refused:?}"
    );
    let elsewhere = w.ok(
        &agent(other),
        report(other, "d1", vec![usage("/data", 1, gib)]),
    );
    assert!(elsewhere.is_empty(), "{elsewhere:?}");
    let bad = w.when(
        &agent(&node),
        report(&node, "d1", vec![usage("data", 1, gib)]),
    );
    assert!(matches!(bad, Err(DomainError::Validation(_))), "{bad:?}");

    let first = w.ok(
        &agent(&node),
        report(&node, "d1", vec![usage("/data", 100 << 20, gib)]),
    );
    assert_eq!(kinds(&first), vec!["VolumeUsageReported"]);
    assert_eq!(
        w.state.deployment("d1").unwrap().volumes,
        vec![usage("/data", 100 << 20, gib)]
    );
    // Under 5% of the size: not worth an event.
    let small = w.ok(
        &agent(&node),
        report(&node, "d1", vec![usage("/data", 120 << 20, gib)]),
    );
    assert!(small.is_empty(), "{small:?}");
    // 5% or more: recorded.
    let more = w.ok(
        &agent(&node),
        report(&node, "d1", vec![usage("/data", 160 << 20, gib)]),
    );
    assert_eq!(kinds(&more), vec!["VolumeUsageReported"]);
    // Passing the size is recorded even by a small step, and is seen as over.
    w.ok(
        &agent(&node),
        report(&node, "d1", vec![usage("/data", gib - (1 << 20), gib)]),
    );
    let over = w.ok(
        &agent(&node),
        report(&node, "d1", vec![usage("/data", gib + (1 << 20), gib)]),
    );
    assert_eq!(kinds(&over), vec!["VolumeUsageReported"]);
    let v = &w.state.deployment("d1").unwrap().volumes[0];
    assert!(v.used_bytes > v.size_bytes);
    // Usage is not a resource: the deployment keeps running and holding what it had.
    assert_eq!(
        w.state.deployment("d1").unwrap().status,
        DeploymentStatus::Scheduled
    );

    // Once it no longer runs there, a late report writes nothing.
    w.ok(
        &alice(),
        Command::Stop {
            deployment_id: "d1".into(),
        },
    );
    w.ok(
        &agent(&node),
        Command::Report {
            deployment_id: "d1".into(),
            report: dcloud_projections::Report::ContainerRemoved,
        },
    );
    let late = w.ok(
        &agent(&node),
        report(&node, "d1", vec![usage("/data", 1, gib)]),
    );
    assert!(late.is_empty(), "{late:?}");
}

#[test]
fn the_new_events_name_their_entities() {
    let e = Event::VolumeUsageReported {
        deployment_id: "d".into(),
        node_id: "n".into(),
        volumes: vec![usage("/data", 5, 10)],
    };
    assert_eq!(e.deployment_id(), Some("d"));
    assert_eq!(e.entity(), "deployment:d");
    let e = Event::DatasetStorageSet {
        category: "vision".into(),
        shared: Some(nfs()),
    };
    assert_eq!(e.entity(), "dataset:vision");
    assert_eq!(e.deployment_id(), None);
}
