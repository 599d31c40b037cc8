//! Docker driver against a real engine (feature `docker-tests`; run
//! `scripts/make-test-images.sh` first). Without an engine these tests fail, never skip.
//! Each test uses its own node id, deployment ids and image tags, and removes what it
//! made (containers, volumes, images) even when it fails.

#![cfg(feature = "docker-tests")]

mod docker_support;

use std::time::Duration;

use bollard::query_parameters::KillContainerOptionsBuilder;
use dcloud_agent::docker::{container_body, persistent_volume_name};
use dcloud_agent::{container_name, Action, AgentError, Driver, Reconciler, Report};
use dcloud_events::model::{Lifecycle, PortPublish, Protocol, StorageMount};
use docker_support::{connect, World, BASE_IMAGE};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_labels_security_and_read_only_datasets() {
    let mut w = World::new().await;
    let ds = w.datasets.path().join("vision/imagenet/train@v2");
    std::fs::create_dir_all(&ds).unwrap();
    std::fs::write(ds.join("hello.txt"), "hi").unwrap();

    let mut a = w.assignment("limits", "main", "sleep 300");
    a.datasets = vec!["vision/imagenet/train@v2".into()];
    let port = 40000 + (std::process::id() % 20000) as u16;
    a.ports = vec![PortPublish {
        external: port,
        internal: 8080,
        protocol: Protocol::Tcp,
    }];
    w.driver.ensure_running(&a, &w.tx).await.unwrap();
    let reports = w
        .wait_for(&a.deployment_id, "Started", |r| *r == Report::Started)
        .await;
    assert_eq!(reports[0], Report::BuildStarted { steps: 3 });
    for step in 1..=3 {
        assert!(
            reports.contains(&Report::BuildProgress { step, steps: 3 }),
            "{reports:?}"
        );
    }
    assert!(reports.contains(&Report::ImageReady { cached: false }));
    assert_eq!(
        reports
            .iter()
            .filter(|r| matches!(r, Report::Created { .. }))
            .count(),
        1
    );
    assert_eq!(
        reports.iter().filter(|r| **r == Report::Started).count(),
        1,
        "start reported once"
    );

    let c = w
        .driver
        .docker()
        .inspect_container(&container_name(&a.deployment_id, &w.node), None)
        .await
        .unwrap();
    let hc = c.host_config.unwrap();
    assert_eq!(hc.memory, Some(268_435_456));
    assert_eq!(hc.nano_cpus, Some(500_000_000));
    assert_eq!(hc.memory_swap, Some(268_435_456));
    assert_eq!(hc.cap_drop, Some(vec!["ALL".to_string()]));
    assert_eq!(hc.security_opt, Some(vec!["no-new-privileges".to_string()]));
    assert_eq!(hc.privileged, Some(false));
    assert_eq!(hc.pids_limit, Some(4096));
    let bindings = hc.port_bindings.unwrap();
    assert_eq!(
        bindings["8080/tcp"].as_ref().unwrap()[0].host_port,
        Some(port.to_string())
    );
    let labels = c.config.unwrap().labels.unwrap();
    assert_eq!(labels["dcloud.deployment"], a.deployment_id);
    assert_eq!(labels["dcloud.node"], w.node);
    assert_eq!(labels["dcloud.environment"], a.env_id);
    let mounts = c.mounts.unwrap();
    let dataset = mounts
        .iter()
        .find(|m| m.destination.as_deref() == Some("/datasets/vision/imagenet/train@v2"))
        .expect("dataset mounted");
    assert_eq!(dataset.rw, Some(false));

    let stats = w.driver.stats().await.unwrap();
    let mine = stats
        .iter()
        .find(|s| s.deployment_id == a.deployment_id)
        .expect("stats of the container");
    assert!(
        mine.usage.memory_bytes > 0 && mine.usage.memory_bytes <= 256 << 20,
        "{mine:?}"
    );

    // Same image again: cached. The dataset can be read and not written.
    let mut b = w.assignment(
        "reader",
        "main",
        "cat /datasets/vision/imagenet/train@v2/hello.txt || exit 10; touch /datasets/vision/imagenet/train@v2/x && exit 11; exit 0",
    );
    b.datasets = a.datasets.clone();
    w.driver.ensure_running(&b, &w.tx).await.unwrap();
    let reports = w
        .wait_for(&b.deployment_id, "Exited", |r| {
            matches!(r, Report::Exited { .. })
        })
        .await;
    assert_eq!(reports[0], Report::ImageReady { cached: true });
    assert!(reports.contains(&Report::Exited { code: 0 }), "{reports:?}");

    w.driver
        .stop(&a.deployment_id, Duration::from_secs(1))
        .await
        .unwrap();
    let reports = w
        .wait_for(&a.deployment_id, "Removed", |r| *r == Report::Removed)
        .await;
    assert!(
        reports.iter().any(|r| matches!(r, Report::Exited { .. })),
        "{reports:?}"
    );
    assert_eq!(w.containers_of(&a.deployment_id).await, 0);
    // Stopping what is gone is not an error.
    w.driver
        .stop(&a.deployment_id, Duration::from_secs(1))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_code_is_reported() {
    let mut w = World::new().await;
    let a = w.assignment("exit3", "main", "exit 3");
    w.driver.ensure_running(&a, &w.tx).await.unwrap();
    let reports = w
        .wait_for(&a.deployment_id, "Exited", |r| {
            matches!(r, Report::Exited { .. })
        })
        .await;
    assert!(reports.contains(&Report::Exited { code: 3 }), "{reports:?}");
    assert!(!reports.contains(&Report::OomKilled));
    let started = reports.iter().position(|r| *r == Report::Started);
    let exited = reports
        .iter()
        .position(|r| matches!(r, Report::Exited { .. }));
    assert!(
        started.is_some() && started < exited,
        "started before exited: {reports:?}"
    );
    let listed = w.listed_exited(&a.deployment_id).await;
    assert_eq!(listed.exit_code, Some(3), "{listed:?}");
    assert_eq!(w.driver.list().await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oom_kill_is_reported() {
    let mut w = World::new().await;
    let mut a = w.assignment("oom", "main", "x=a; while true; do x=$x$x; done");
    a.resources.memory_bytes = 64 << 20;
    w.driver.ensure_running(&a, &w.tx).await.unwrap();
    let reports = w
        .wait_for(&a.deployment_id, "Exited", |r| {
            matches!(r, Report::Exited { .. })
        })
        .await;
    assert!(reports.contains(&Report::OomKilled), "{reports:?}");
    assert!(
        reports.contains(&Report::Exited { code: 137 }),
        "{reports:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persistent_storage_survives_redeploy_temporary_does_not() {
    let mut w = World::new().await;
    let storage = vec![
        StorageMount {
            target: "/persist".into(),
            size_bytes: 1 << 20,
            lifecycle: Lifecycle::Persistent,
        },
        StorageMount {
            target: "/scratch".into(),
            size_bytes: 1 << 20,
            lifecycle: Lifecycle::Temporary,
        },
    ];
    let mut first = w.assignment(
        "writer",
        "main",
        "echo keep > /persist/f && echo gone > /scratch/f",
    );
    first.storage = storage.clone();
    let volume = persistent_volume_name(&first.env_id, "/persist");
    w.volumes.push(volume.clone());
    w.driver.ensure_running(&first, &w.tx).await.unwrap();
    let reports = w
        .wait_for(&first.deployment_id, "Exited", |r| {
            matches!(r, Report::Exited { .. })
        })
        .await;
    assert!(reports.contains(&Report::Exited { code: 0 }), "{reports:?}");
    w.driver
        .stop(&first.deployment_id, Duration::from_secs(1))
        .await
        .unwrap();
    w.wait_for(&first.deployment_id, "Removed", |r| *r == Report::Removed)
        .await;
    w.driver
        .docker()
        .inspect_volume(&volume)
        .await
        .expect("persistent volume kept");

    let mut second = w.assignment(
        "reader",
        "main",
        "test \"$(cat /persist/f)\" = keep || exit 10; test -e /scratch/f && exit 11; exit 0",
    );
    second.storage = storage;
    w.driver.ensure_running(&second, &w.tx).await.unwrap();
    let reports = w
        .wait_for(&second.deployment_id, "Exited", |r| {
            matches!(r, Report::Exited { .. })
        })
        .await;
    assert!(
        reports.contains(&Report::Exited { code: 0 }),
        "10: persistent lost, 11: temporary kept: {reports:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_build_reports_step_command_and_output() {
    let mut w = World::new().await;
    let mut a = w.assignment("broken", "broken", "true");
    a.dockerfile = format!(
        "FROM {BASE_IMAGE}\nLABEL dcloud.test={}\nRUN echo fine\nRUN for i in $(seq 1 30); do echo line-$i; done; exit 7\n",
        w.uid
    );
    a.steps = 4;
    let err = w.driver.ensure_running(&a, &w.tx).await.unwrap_err();
    assert!(
        matches!(err, AgentError::BuildFailed { step: 4, .. }),
        "{err}"
    );
    let reports = w
        .wait_for(&a.deployment_id, "BuildFailed", |r| {
            matches!(r, Report::BuildFailed { .. })
        })
        .await;
    let Some(Report::BuildFailed {
        step,
        command,
        output_tail,
    }) = reports.last()
    else {
        panic!("{reports:?}");
    };
    assert_eq!(*step, 4);
    assert!(
        command.starts_with("RUN for i in") && command.ends_with("exit 7"),
        "{command}"
    );
    let lines: Vec<&str> = output_tail.lines().collect();
    assert!(
        lines.contains(&"line-30") && lines.contains(&"line-11"),
        "{output_tail}"
    );
    assert!(!lines.contains(&"line-10"), "only the tail: {output_tail}");
    assert!(
        lines.last().unwrap().contains("non-zero code: 7"),
        "{output_tail}"
    );
    let gone = w.driver.docker().inspect_image(&a.image_tag).await;
    assert!(gone.is_err(), "no image tagged after a failed build");
    assert_eq!(w.containers_of(&a.deployment_id).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconcile_after_crash_leaves_exactly_one_container() {
    let mut w = World::new().await;
    let a = w.assignment("svc", "main", "sleep 300");
    let b = w.assignment("half", "main", "sleep 300");
    let mut reconciler = Reconciler::new().with_grace(Duration::from_secs(1));
    reconciler
        .run_once(w.driver.as_ref(), std::slice::from_ref(&a), &w.tx)
        .await
        .unwrap();
    w.wait_for(&a.deployment_id, "Started", |r| *r == Report::Started)
        .await;

    // The agent crashes and restarts: a new connection and a reconciler with no memory.
    // Meanwhile `b` was created but never started (a crash between create and start),
    // and a stray second container for `a` appeared.
    let driver = connect(&w.node, w.datasets.path()).await;
    let config = driver.config().clone();
    let body = container_body(&b, &config).unwrap();
    let make = |name: String, body| {
        let docker = driver.docker().clone();
        async move {
            let options = bollard::query_parameters::CreateContainerOptionsBuilder::default()
                .name(&name)
                .build();
            docker.create_container(Some(options), body).await.unwrap()
        }
    };
    // b's image must exist for a manual create: the first pass built it (same tag).
    make(container_name(&b.deployment_id, &w.node), body).await;
    make(
        format!("stray-{}", a.deployment_id),
        container_body(&a, &config).unwrap(),
    )
    .await;

    let mut reconciler = Reconciler::new().with_grace(Duration::from_secs(1));
    let assigned = vec![a.clone(), b.clone()];
    let outcome = reconciler
        .run_once(&driver, &assigned, &w.tx)
        .await
        .unwrap();
    assert!(outcome.failures.is_empty(), "{:?}", outcome.failures);
    assert!(
        matches!(&outcome.actions[..], [Action::Remove { .. }, Action::Ensure { deployment_id }, Action::ReportRunning { .. }] if *deployment_id == b.deployment_id),
        "{:?}",
        outcome.actions
    );
    w.wait_for(&b.deployment_id, "Started", |r| *r == Report::Started)
        .await;
    assert_eq!(w.containers_of(&a.deployment_id).await, 1);
    assert_eq!(w.containers_of(&b.deployment_id).await, 1);
    let listed = driver.list().await.unwrap();
    assert!(listed
        .iter()
        .all(|o| o.running && o.name == container_name(&o.deployment_id, &w.node)));

    // A second pass changes nothing (it confirms what runs); ensuring again adopts,
    // never duplicates.
    assert!(reconciler
        .run_once(&driver, &assigned, &w.tx)
        .await
        .unwrap()
        .actions
        .iter()
        .all(|a| matches!(a, Action::ReportRunning { .. })));
    driver.ensure_running(&a, &w.tx).await.unwrap();
    assert_eq!(w.containers_of(&a.deployment_id).await, 1);

    // The container crashes: reported, kept, not restarted.
    let kill = KillContainerOptionsBuilder::default()
        .signal("SIGKILL")
        .build();
    driver
        .docker()
        .kill_container(&container_name(&a.deployment_id, &w.node), Some(kill))
        .await
        .unwrap();
    w.wait_for(&a.deployment_id, "Exited", |r| {
        matches!(r, Report::Exited { .. })
    })
    .await;
    w.listed_exited(&a.deployment_id).await;
    let outcome = reconciler
        .run_once(&driver, &assigned, &w.tx)
        .await
        .unwrap();
    assert!(
        matches!(
            &outcome.actions[..],
            [
                Action::ReportRunning { .. },
                Action::ReportExited { code: 137, .. }
            ]
        ),
        "{:?}",
        outcome.actions
    );
    assert_eq!(w.containers_of(&a.deployment_id).await, 1);

    // Nothing assigned: everything of this node goes.
    reconciler.run_once(&driver, &[], &w.tx).await.unwrap();
    assert!(driver.list().await.unwrap().is_empty());
}
