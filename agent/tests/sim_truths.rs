//! The simulated driver tells the same truths as the Docker one (issue #17): a process
//! OOM-killed inside a running container is a warning, not the container's end; a
//! restarted agent says that the containers it adopts run; a container of a deployment
//! no longer assigned to the node is removed and reported as stale.

use std::collections::BTreeMap;

use dcloud_agent::{
    sim_fingerprints, Action, Assignment, Driver, Reconciler, Report, SimConfig, SimDriver,
};
use dcloud_events::model::Resources;
use tokio::sync::mpsc;

fn node() -> (String, SimDriver) {
    let per_node = Resources {
        cpu_millis: 8000,
        memory_bytes: 32 << 30,
        gpus: 0,
        storage_bytes: 500 << 30,
    };
    let (id, fp) = sim_fingerprints(1, &per_node).remove(0);
    (id.clone(), SimDriver::new(id, fp, SimConfig::default()))
}

fn assignment(dep: &str, node: &str) -> Assignment {
    Assignment {
        deployment_id: dep.to_string(),
        env_id: format!("env-{dep}"),
        node_id: node.to_string(),
        image_tag: "dcloud/env:sim".to_string(),
        dockerfile: "FROM ubuntu\nRUN true\n".to_string(),
        steps: 1,
        resources: Resources {
            cpu_millis: 1000,
            memory_bytes: 64 << 20,
            gpus: 0,
            storage_bytes: 1 << 30,
        },
        gpus: vec![],
        ports: vec![],
        storage: vec![],
        datasets: vec![],
        shared_datasets: vec![],
        env: BTreeMap::new(),
        command: None,
        ready: None,
    }
}

fn drain(rx: &mut mpsc::Receiver<(String, Report)>) -> Vec<(String, Report)> {
    let mut out = Vec::new();
    while let Ok(r) = rx.try_recv() {
        out.push(r);
    }
    out
}

#[tokio::test(start_paused = true)]
async fn an_oom_inside_a_running_container_is_a_warning() {
    let (id, driver) = node();
    let (tx, mut rx) = mpsc::channel(100);
    let watch = {
        let tx = tx.clone();
        let driver = std::sync::Arc::new(driver);
        let d = driver.clone();
        (tokio::spawn(async move { d.watch(tx).await }), driver)
    };
    let (watcher, driver) = watch;
    tokio::task::yield_now().await;
    driver
        .ensure_running(&assignment("d1", &id), &tx)
        .await
        .unwrap();
    let allocated = driver.allocated();
    drain(&mut rx);

    assert!(driver.oom_child("d1"));
    let reports = drain(&mut rx);
    assert!(
        matches!(&reports[..], [(d, Report::OomWarning { .. })] if d == "d1"),
        "{reports:?}"
    );
    assert_eq!(driver.allocated(), allocated, "nothing freed");
    assert!(driver.list().await.unwrap()[0].running);

    // The main process OOM-killed ends the container.
    assert!(driver.oom("d1"));
    let reports: Vec<Report> = drain(&mut rx).into_iter().map(|(_, r)| r).collect();
    assert_eq!(
        reports,
        vec![Report::OomKilled, Report::Exited { code: 137 }]
    );
    assert!(!driver.oom_child("d1"), "not running any more");
    drop(tx);
    drop(rx);
    watcher.abort();
}

#[tokio::test(start_paused = true)]
async fn a_restarted_agent_reports_what_it_adopts_once_and_removes_stale_containers() {
    let (id, driver) = node();
    let (tx, mut rx) = mpsc::channel(100);
    let assigned = vec![assignment("d1", &id), assignment("d2", &id)];
    Reconciler::new()
        .with_node(id.clone())
        .run_once(&driver, &assigned, &tx)
        .await
        .unwrap();
    drain(&mut rx);

    // The agent restarts; meanwhile d2 was moved to another node.
    let mut fresh = Reconciler::new().with_node(id.clone());
    let outcome = fresh.run_once(&driver, &assigned[..1], &tx).await.unwrap();
    let d2 = driver
        .list()
        .await
        .unwrap()
        .into_iter()
        .find(|o| o.deployment_id == "d2");
    assert!(d2.is_none(), "the stale container is removed");
    assert!(outcome.actions.iter().any(|a| matches!(
        a,
        Action::ReportRunning { deployment_id, .. } if deployment_id == "d1"
    )));
    let reports = drain(&mut rx);
    assert!(
        reports.contains(&("d1".into(), Report::Started)),
        "{reports:?}"
    );
    assert!(
        reports.iter().any(|(d, r)| d == "d2"
            && matches!(r, Report::StaleRemoved { node_id, .. } if node_id == &id)),
        "{reports:?}"
    );

    // A second pass confirms nothing again and removes nothing.
    fresh.run_once(&driver, &assigned[..1], &tx).await.unwrap();
    assert_eq!(drain(&mut rx), vec![]);
}
