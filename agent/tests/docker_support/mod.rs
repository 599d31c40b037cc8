//! The Docker tests' world: a node of its own per test, a watcher, report waiting, and
//! cleanup of everything the test made (containers, volumes, images) on drop.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bollard::query_parameters::{
    ListContainersOptionsBuilder, ListImagesOptionsBuilder, RemoveContainerOptionsBuilder,
    RemoveImageOptionsBuilder, RemoveVolumeOptionsBuilder,
};
use bollard::Docker;
use dcloud_agent::{Assignment, DockerConfig, DockerDriver, Driver, Observed, Report};
use dcloud_events::model::Resources;
use tokio::sync::mpsc;

pub(crate) const BASE_IMAGE: &str = "dcloud-test/busybox:latest";
pub(crate) const WAIT: Duration = Duration::from_secs(90);

fn unique() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "{:x}{:x}{}",
        std::process::id(),
        nanos,
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// One test's world: a node of its own, a watcher, and cleanup on drop.
pub(crate) struct World {
    pub(crate) uid: String,
    pub(crate) node: String,
    pub(crate) driver: Arc<DockerDriver>,
    pub(crate) tx: mpsc::Sender<(String, Report)>,
    pub(crate) rx: mpsc::Receiver<(String, Report)>,
    pub(crate) seen: Vec<(String, Report)>,
    pub(crate) datasets: tempfile::TempDir,
    pub(crate) volumes: Vec<String>,
}

impl World {
    pub(crate) async fn new() -> World {
        let uid = unique();
        let node = format!("0xtest{uid}");
        let datasets = tempfile::tempdir().unwrap();
        let driver = Arc::new(connect(&node, datasets.path()).await);
        driver
            .docker()
            .inspect_image(BASE_IMAGE)
            .await
            .unwrap_or_else(|e| {
                panic!("{BASE_IMAGE} is missing ({e}): run scripts/make-test-images.sh first")
            });
        let (tx, rx) = mpsc::channel(1000);
        let d = Arc::clone(&driver);
        let watch_tx = tx.clone();
        tokio::spawn(async move { d.watch(watch_tx).await });
        World {
            uid,
            node,
            driver,
            tx,
            rx,
            seen: Vec::new(),
            datasets,
            volumes: Vec::new(),
        }
    }

    pub(crate) fn image(&self, name: &str) -> String {
        format!("dcloud-test/env-{}-{name}:latest", self.uid)
    }

    /// A busybox environment; the LABEL marks every image and layer of this test.
    pub(crate) fn assignment(&self, dep: &str, image: &str, command: &str) -> Assignment {
        Assignment {
            deployment_id: format!("{dep}-{}", self.uid),
            env_id: format!("env-{}", self.uid),
            node_id: self.node.clone(),
            image_tag: self.image(image),
            dockerfile: format!(
                "FROM {BASE_IMAGE}\nLABEL dcloud.test={}\nRUN echo built > /built.txt\n",
                self.uid
            ),
            steps: 3,
            resources: Resources {
                cpu_millis: 500,
                memory_bytes: 256 << 20,
                gpus: 0,
                storage_bytes: 1 << 30,
            },
            gpus: vec![],
            ports: vec![],
            storage: vec![],
            datasets: vec![],
            shared_datasets: vec![],
            env: BTreeMap::from([("DFS_URL".to_string(), "http://10.0.0.5:9000".to_string())]),
            command: Some(vec!["sh".into(), "-c".into(), command.into()]),
            ready: None,
        }
    }

    /// Waits until `dep` gets a report matching `pred`; returns all of `dep`'s reports so far.
    pub(crate) async fn wait_for(
        &mut self,
        dep: &str,
        what: &str,
        pred: impl Fn(&Report) -> bool,
    ) -> Vec<Report> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let mine: Vec<Report> = self
                .seen
                .iter()
                .filter(|(d, _)| d == dep)
                .map(|(_, r)| r.clone())
                .collect();
            if mine.iter().any(&pred) {
                return mine;
            }
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some(r)) => self.seen.push(r),
                _ => panic!("no {what} for {dep} within {WAIT:?}; got {mine:?}"),
            }
        }
    }

    /// The engine's list catches up with its own `die` event a moment later: poll it.
    pub(crate) async fn listed_exited(&self, dep: &str) -> Observed {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let listed = self.driver.list().await.unwrap();
            if let Some(o) = listed.iter().find(|o| o.deployment_id == dep && !o.running) {
                return o.clone();
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{dep} still running: {listed:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub(crate) async fn containers_of(&self, dep: &str) -> usize {
        self.driver
            .list()
            .await
            .unwrap()
            .iter()
            .filter(|o| o.deployment_id == dep)
            .count()
    }
}

impl Drop for World {
    fn drop(&mut self) {
        let (node, uid, volumes) = (self.node.clone(), self.uid.clone(), self.volumes.clone());
        // Drop cannot await: clean up on a thread with its own runtime.
        let cleaned = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(cleanup(&node, &uid, &volumes))
        })
        .join();
        if cleaned.is_err() {
            eprintln!("cleanup of test {} failed", self.uid);
        }
    }
}

async fn cleanup(node: &str, uid: &str, volumes: &[String]) {
    let docker = Docker::connect_with_local_defaults()
        .unwrap()
        .negotiate_version()
        .await
        .unwrap();
    let filters = HashMap::from([("label", vec![format!("dcloud.node={node}")])]);
    let list = ListContainersOptionsBuilder::default()
        .all(true)
        .filters(&filters)
        .build();
    for c in docker.list_containers(Some(list)).await.unwrap_or_default() {
        let rm = RemoveContainerOptionsBuilder::default()
            .force(true)
            .v(true)
            .build();
        let _ = docker
            .remove_container(&c.id.unwrap_or_default(), Some(rm))
            .await;
    }
    for v in volumes {
        let _ = docker
            .remove_volume(
                v,
                Some(RemoveVolumeOptionsBuilder::default().force(true).build()),
            )
            .await;
    }
    let filters = HashMap::from([("label", vec![format!("dcloud.test={uid}")])]);
    let images = ListImagesOptionsBuilder::default()
        .all(true)
        .filters(&filters)
        .build();
    let mut images = docker.list_images(Some(images)).await.unwrap_or_default();
    // Children before parents: newest first.
    images.sort_by_key(|i| std::cmp::Reverse(i.created));
    for image in images {
        for tag in image.repo_tags.iter().filter(|t| !t.starts_with("<none>")) {
            let _ = docker
                .remove_image(
                    tag,
                    None::<bollard::query_parameters::RemoveImageOptions>,
                    None,
                )
                .await;
        }
        let _ = docker
            .remove_image(
                &image.id,
                Some(RemoveImageOptionsBuilder::default().force(true).build()),
                None,
            )
            .await;
    }
}

pub(crate) async fn connect(node: &str, datasets: &std::path::Path) -> DockerDriver {
    let mut config = DockerConfig::new(node);
    config.dataset_root = datasets.to_path_buf();
    DockerDriver::connect(config)
        .await
        .unwrap_or_else(|e| panic!("docker-tests need a running docker engine: {e}"))
}
