//! The simulated driver under the reconciler: a thousand nodes in one process, capacity
//! enforcement, crashes, outages and stops, on tokio's paused clock.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use dcloud_agent::{
    sim_fingerprints, Action, AgentError, Assignment, Driver, Reconciler, Report, SimConfig,
    SimDriver,
};
use dcloud_events::model::{PortPublish, Protocol, Resources};
use tokio::sync::mpsc;

fn per_node() -> Resources {
    Resources {
        cpu_millis: 8000,
        memory_bytes: 32 << 30,
        gpus: 2,
        storage_bytes: 500 << 30,
    }
}

fn assignment(dep: &str, node: &str, gpus: Vec<String>) -> Assignment {
    Assignment {
        deployment_id: dep.to_string(),
        env_id: format!("env-{dep}"),
        node_id: node.to_string(),
        image_tag: "dcloud/env:sim".to_string(),
        dockerfile: "FROM ubuntu\nRUN apt-get install -y python3\nRUN pip install numpy\n"
            .to_string(),
        steps: 3,
        resources: Resources {
            cpu_millis: 2000,
            memory_bytes: 4 << 30,
            gpus: gpus.len() as u32,
            storage_bytes: 10 << 30,
        },
        gpus,
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

fn reports_of<'a>(all: &'a [(String, Report)], dep: &str) -> Vec<&'a Report> {
    all.iter()
        .filter(|(d, _)| d == dep)
        .map(|(_, r)| r)
        .collect()
}

#[tokio::test(start_paused = true)]
async fn thousand_nodes_carry_deployments_to_started() {
    let fps = sim_fingerprints(1000, &per_node());
    assert_eq!(
        fps,
        sim_fingerprints(1000, &per_node()),
        "ids are deterministic"
    );
    let ids: std::collections::BTreeSet<&String> = fps.iter().map(|(id, _)| id).collect();
    assert_eq!(ids.len(), 1000);
    assert_eq!(fps[0].0, "0x020000000001");
    for (id, fp) in &fps {
        assert_eq!(id.len(), 14);
        assert_eq!(fp.labels.get("simulated").map(String::as_str), Some("true"));
        assert_eq!(fp.capacity, per_node());
        assert_eq!(fp.gpus.len(), 2);
        assert_eq!(fp.gpus[1].uuid, format!("GPU-sim-{id}-1"));
    }

    let drivers: Vec<Arc<SimDriver>> = fps
        .into_iter()
        .map(|(id, fp)| Arc::new(SimDriver::new(id, fp, SimConfig::default())))
        .collect();
    let (tx, mut rx) = mpsc::channel(100_000);
    let mut tasks = Vec::new();
    for (i, d) in drivers.iter().enumerate() {
        let d = Arc::clone(d);
        let tx = tx.clone();
        tasks.push(tokio::spawn(async move {
            let gpu = d.fingerprint().gpus[i % 2].uuid.clone();
            let assigned = vec![
                assignment(&format!("dep-{i}-a"), d.node_id(), vec![gpu]),
                assignment(&format!("dep-{i}-b"), d.node_id(), vec![]),
            ];
            let outcome = Reconciler::new()
                .run_once(d.as_ref(), &assigned, &tx)
                .await
                .unwrap();
            assert!(outcome.failures.is_empty(), "{:?}", outcome.failures);
            assert_eq!(outcome.actions.len(), 2);
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let all = drain(&mut rx);
    let mut by_dep: HashMap<&str, Vec<&Report>> = HashMap::new();
    for (d, r) in &all {
        by_dep.entry(d.as_str()).or_default().push(r);
    }
    assert_eq!(by_dep.len(), 2000);
    for (dep, reports) in &by_dep {
        assert_eq!(
            reports.last(),
            Some(&&Report::Started),
            "{dep}: {reports:?}"
        );
        assert!(
            matches!(
                reports[0],
                Report::BuildStarted { steps: 3 } | Report::ImageReady { cached: true }
            ),
            "{dep}: {reports:?}"
        );
        assert_eq!(
            reports
                .iter()
                .filter(|r| matches!(r, Report::Created { .. }))
                .count(),
            1
        );
    }
    for d in &drivers {
        let listed = d.list().await.unwrap();
        assert_eq!(listed.len(), 2);
        assert!(listed.iter().all(|o| o.running));
        assert_eq!(d.allocated().cpu_millis, 4000);
        assert_eq!(d.stats().await.unwrap().len(), 2);
    }
}

#[tokio::test(start_paused = true)]
async fn capacity_gpus_and_ports_are_enforced() {
    let (id, fp) = sim_fingerprints(2, &per_node()).remove(0);
    let driver = SimDriver::new(id.clone(), fp, SimConfig::default());
    let (tx, mut rx) = mpsc::channel(1000);

    let foreign_gpu = assignment("d-gpu", &id, vec!["GPU-sim-0x020000000002-0".into()]);
    let mut too_big = assignment("d-big", &id, vec![]);
    too_big.resources.memory_bytes = 33 << 30;
    let mut web1 = assignment("d-web1", &id, vec![]);
    web1.ports = vec![PortPublish {
        external: 30080,
        internal: 80,
        protocol: Protocol::Tcp,
    }];
    let mut web2 = web1.clone();
    web2.deployment_id = "d-web2".into();

    let mut reconciler = Reconciler::new().with_concurrency(1);
    let outcome = reconciler
        .run_once(&driver, &[foreign_gpu, too_big, web1, web2], &tx)
        .await
        .unwrap();
    let failed: BTreeMap<&str, &AgentError> = outcome
        .failures
        .iter()
        .map(|(d, e)| (d.as_str(), e))
        .collect();
    assert_eq!(
        failed.keys().copied().collect::<Vec<_>>(),
        vec!["d-big", "d-gpu", "d-web2"]
    );
    assert!(failed["d-gpu"].to_string().contains("not on this node"));
    assert!(failed["d-big"].to_string().contains("insufficient memory"));
    assert!(failed["d-web2"]
        .to_string()
        .contains("port 30080 is in use"));
    let all = drain(&mut rx);
    assert!(matches!(
        reports_of(&all, "d-gpu").last(),
        Some(Report::Failed { .. })
    ));
    assert_eq!(reports_of(&all, "d-web1").last(), Some(&&Report::Started));
    assert_eq!(driver.list().await.unwrap().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn crash_is_reported_once_and_not_restarted() {
    let (id, fp) = sim_fingerprints(1, &per_node()).remove(0);
    let driver = Arc::new(SimDriver::new(id.clone(), fp, SimConfig::default()));
    let (tx, mut rx) = mpsc::channel(1000);
    let watcher = {
        let d = Arc::clone(&driver);
        let tx = tx.clone();
        tokio::spawn(async move { d.watch(tx).await })
    };
    tokio::task::yield_now().await;
    let assigned = vec![assignment("d1", &id, vec![])];
    let mut reconciler = Reconciler::new();
    reconciler
        .run_once(driver.as_ref(), &assigned, &tx)
        .await
        .unwrap();
    drain(&mut rx);

    assert!(driver.oom("d1"));
    assert_eq!(
        drain(&mut rx),
        vec![
            ("d1".into(), Report::OomKilled),
            ("d1".into(), Report::Exited { code: 137 })
        ]
    );
    // The reconciler finds the exit (it may have been missed) and reports it once.
    let outcome = reconciler
        .run_once(driver.as_ref(), &assigned, &tx)
        .await
        .unwrap();
    assert!(matches!(
        outcome.actions[..],
        [Action::ReportExited { code: 137, .. }]
    ));
    assert_eq!(
        drain(&mut rx),
        vec![("d1".into(), Report::Exited { code: 137 })]
    );
    reconciler
        .run_once(driver.as_ref(), &assigned, &tx)
        .await
        .unwrap();
    assert!(drain(&mut rx).is_empty(), "reported once");
    let listed = driver.list().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert!(!listed[0].running, "not restarted");

    // Unassigned: removed, and the watcher says so.
    reconciler
        .run_once(driver.as_ref(), &[], &tx)
        .await
        .unwrap();
    assert_eq!(drain(&mut rx), vec![("d1".into(), Report::Removed)]);
    assert!(driver.list().await.unwrap().is_empty());
    assert_eq!(driver.allocated(), Resources::default());
    drop(tx);
    drop(rx);
    watcher.await.unwrap().unwrap();
}

#[tokio::test(start_paused = true)]
async fn engine_outage_loses_no_deployment() {
    let (id, fp) = sim_fingerprints(1, &per_node()).remove(0);
    let driver = SimDriver::new(id.clone(), fp, SimConfig::default());
    let (tx, mut rx) = mpsc::channel(1000);
    let assigned = vec![assignment("d1", &id, vec![])];
    let mut reconciler = Reconciler::new();

    driver.set_engine_ok(false);
    assert!(!driver.engine_ok());
    let err = reconciler
        .run_once(&driver, &assigned, &tx)
        .await
        .unwrap_err();
    assert!(err.is_transient(), "{err}");
    assert!(drain(&mut rx).is_empty());

    driver.set_engine_ok(true);
    reconciler.run_once(&driver, &assigned, &tx).await.unwrap();
    assert_eq!(
        reports_of(&drain(&mut rx), "d1").last(),
        Some(&&Report::Started)
    );
    // Converged: later passes change nothing; the running container is confirmed to
    // the control plane once (a restarted agent's first pass says it runs).
    let outcome = reconciler.run_once(&driver, &assigned, &tx).await.unwrap();
    assert!(
        outcome
            .actions
            .iter()
            .all(|a| matches!(a, Action::ReportRunning { .. })),
        "{:?}",
        outcome.actions
    );
    reconciler.run_once(&driver, &assigned, &tx).await.unwrap();
    assert_eq!(drain(&mut rx), vec![("d1".into(), Report::Started)]);
}

#[tokio::test(start_paused = true)]
async fn build_failure_is_reported_with_its_step() {
    let (id, fp) = sim_fingerprints(1, &per_node()).remove(0);
    let driver = SimDriver::new(id.clone(), fp, SimConfig::default());
    let (tx, mut rx) = mpsc::channel(1000);
    let mut a = assignment("d1", &id, vec![]);
    a.image_tag = "dcloud/env:broken".into();
    a.dockerfile = "FROM ubuntu\nRUN pip install nope # sim:fail\nRUN true\n".into();
    let outcome = Reconciler::new()
        .run_once(&driver, &[a], &tx)
        .await
        .unwrap();
    assert!(matches!(
        outcome.failures[..],
        [(_, AgentError::BuildFailed { step: 2, .. })]
    ));
    let reports = drain(&mut rx);
    assert_eq!(
        reports.last().map(|(_, r)| r),
        Some(&Report::BuildFailed {
            step: 2,
            command: "RUN pip install nope # sim:fail".into(),
            output_tail: "simulated build failure".into()
        }),
        "no extra Failed after BuildFailed"
    );
    assert!(driver.list().await.unwrap().is_empty());
}

#[tokio::test(start_paused = true)]
async fn second_deployment_of_same_image_is_cached_and_build_takes_time() {
    let (id, fp) = sim_fingerprints(1, &per_node()).remove(0);
    let driver = SimDriver::new(
        id.clone(),
        fp,
        SimConfig {
            step_delay: Duration::from_secs(1),
        },
    );
    let (tx, mut rx) = mpsc::channel(1000);
    let start = tokio::time::Instant::now();
    driver
        .ensure_running(&assignment("d1", &id, vec![]), &tx)
        .await
        .unwrap();
    assert_eq!(start.elapsed(), Duration::from_secs(3));
    driver
        .ensure_running(&assignment("d2", &id, vec![]), &tx)
        .await
        .unwrap();
    assert_eq!(start.elapsed(), Duration::from_secs(3));
    let all = drain(&mut rx);
    assert_eq!(
        reports_of(&all, "d2")[0],
        &Report::ImageReady { cached: true }
    );
    let d1 = reports_of(&all, "d1");
    assert_eq!(d1[0], &Report::BuildStarted { steps: 3 });
    assert_eq!(d1[3], &Report::BuildProgress { step: 3, steps: 3 });
    assert_eq!(d1[4], &Report::ImageReady { cached: false });
    // Idempotent: ensuring a running deployment again does nothing and only says it
    // runs (a repeat is a no-op for the control plane).
    driver
        .ensure_running(&assignment("d1", &id, vec![]), &tx)
        .await
        .unwrap();
    assert_eq!(drain(&mut rx), vec![("d1".into(), Report::Started)]);
    assert_eq!(driver.list().await.unwrap().len(), 2);
}
