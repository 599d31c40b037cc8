//! The Cluster and Deployments pages against 1,000 nodes and 10,000 deployments: the
//! nodes are registered through the writer (no agents: the nodes' TTL is long), the
//! deployments through the API; then the pages are loaded fresh and their ready time
//! read from the page (reported, never asserted), and sorting, filtering and paging
//! are checked to work at that size.

use dcloud_events::model::Resources;
use dcloud_projections::{Actor, Command};
use futures::future::join_all;
use futures::stream::{self, StreamExt};
use serde_json::json;

use super::support::{graphql, seed, shots_dir, sign_in, snap, token, wait_until, SERIAL};
use super::webdriver::{self, Driver, Session};

const NODES: usize = 1_000;
const DEPLOYMENTS: usize = 10_000;
const USERS: usize = 10;
static LOADS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cluster_and_deployments_pages_at_fleet_scale() {
    let _one_at_a_time = SERIAL.lock().await;
    let (chromedriver, chromium) = webdriver::locate();
    let shots = shots_dir();
    let data = tempfile::tempdir().expect("temp dir");
    let mut config = dcloud::server::ServerConfig::new(data.path());
    config.listen = "127.0.0.1:0".parse().expect("address");
    config.settings.node_ttl_ms = 3_600_000;
    let server = dcloud::server::start(config).await.expect("server starts");
    let url = format!("http://{}", server.addr);
    let admin = server.admin_token.clone().expect("a fresh admin token");
    let http = reqwest::Client::new();
    seed(&http, &url, &admin).await;

    // The fleet, through the writer: nodes, one environment per user, deployments.
    let started = std::time::Instant::now();
    let writer = server.writer().clone();
    let per_node = Resources {
        cpu_millis: 64_000,
        memory_bytes: 256 << 30,
        gpus: 8,
        storage_bytes: 4 << 40,
    };
    let nodes = dcloud_agent::sim_fingerprints(NODES, &per_node);
    let registered = join_all(nodes.into_iter().map(|(node_id, fingerprint)| {
        let actor = Actor::agent(&node_id);
        writer.submit(
            Command::RegisterNode {
                node_id: node_id.clone(),
                fingerprint,
            },
            actor,
            format!("fleet-{node_id}"),
        )
    }))
    .await;
    assert!(registered.iter().all(Result::is_ok), "every node registers");
    // One environment per user and the deployments, through the API as those users
    // (as many requests in flight as a busy console would have).
    let mut users = Vec::new();
    for u in 0..USERS {
        let user = token(&http, &url, &admin, "USER", &format!("user{u}")).await;
        let doc = json!({"env-name": format!("notebook-{u}"), "version": "1", "os": "ubuntu",
            "languages": [{"language-name": "python", "libraries": ["numpy"]}],
            "resources": {"ram": "1G", "cpu": "0.5", "gpu": "0", "storage": 1}});
        let env = graphql(
            &http,
            &url,
            &user,
            "mutation($d: String!) { createEnvironment(document: $d) { id } }",
            json!({"d": doc.to_string()}),
        )
        .await;
        let env_id = env["createEnvironment"]["id"]
            .as_str()
            .expect("an environment id")
            .to_string();
        users.push((user, env_id));
    }
    let placed: Vec<_> = stream::iter(0..DEPLOYMENTS)
        .map(|i| {
            let (user, env_id) = &users[i % USERS];
            graphql(
                &http,
                &url,
                user,
                "mutation($e: String!) { deploy(environment: $e) { status } }",
                json!({"e": env_id}),
            )
        })
        .buffer_unordered(64)
        .collect()
        .await;
    assert!(
        placed.iter().all(|d| d["deploy"]["status"] == "SCHEDULED"),
        "every deployment is placed"
    );
    eprintln!(
        "fleet: {NODES} nodes (through the writer) and {DEPLOYMENTS} deployments (through the API) made in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let driver = Driver::start(&chromedriver, &http).await;
    let web = Session::new(&driver, &chromium, http.clone()).await;
    sign_in(&web, &url, &admin).await;
    let mut report = Vec::new();

    // Each page loaded fresh three times (the token stays in the tab's session
    // storage); the page records when its view had its data drawn.
    for (who, path) in [("admin", "/cluster"), ("admin", "/deployments")] {
        let times = ready_times(&web, &url, path).await;
        report.push(format!(
            "{who} {path}: (ready, scripts loaded, view) ms = {times:?}"
        ));
    }

    // The Cluster page at this size: totals from the server, one page of nodes.
    load(&web, &url, "/cluster").await;
    let count = web.text(&web.wait_for("#node-count", 5).await).await;
    assert!(count.contains("1,000"), "{count}");
    assert_range(&web, "node-table", "1–50 of 1,000").await;
    snap(&web, &shots, "fleet-cluster.png").await;
    web.click(&web.wait_for("#node-table-next", 5).await).await;
    assert_range(&web, "node-table", "51–100 of 1,000").await;
    // Sorted by deployments, most first: none holds fewer than the average.
    web.click(
        &web.wait_for("#node-table th[data-sort=DEPLOYMENTS] button", 5)
            .await,
    )
    .await;
    assert_range(&web, "node-table", "1–50 of 1,000").await;
    let first = web
        .exec(
            "return document.querySelector('#node-table tbody tr td:nth-child(6)').textContent;",
            json!([]),
        )
        .await;
    let most: usize = first
        .as_str()
        .and_then(|t| t.parse().ok())
        .expect("a count");
    assert!(most >= DEPLOYMENTS / NODES, "the fullest node holds {most}");
    let search = web.wait_for("#node-search", 5).await;
    web.type_into(&search, "sim-node-999").await;
    assert_range(&web, "node-table", "1–1 of 1").await;

    // The Deployments list at this size.
    load(&web, &url, "/deployments").await;
    assert_range(&web, "dep-table", "1–50 of 10,000").await;
    snap(&web, &shots, "fleet-deployments.png").await;
    let search = web.wait_for("#dep-search", 5).await;
    web.type_into(&search, "notebook-3").await;
    assert_range(&web, "dep-table", "1–50 of 1,000").await;
    web.click(
        &web.wait_for("#dep-table th[data-sort=NODE] button", 5)
            .await,
    )
    .await;
    assert_range(&web, "dep-table", "1–50 of 1,000").await;
    // The range reads the same before and after the sort: wait for the sorted page
    // itself (reading at once raced the server's answer).
    wait_until(
        &web,
        "const n = [...document.querySelectorAll('#dep-table tbody tr td:nth-child(3)')]\
            .map((td) => parseInt(td.textContent.replace('sim-node-', ''), 10));\
         return n.length > 1 && n.every((x, i) => i === 0 || n[i - 1] <= x);",
        15,
    )
    .await;
    let hosts = web
        .exec("return [...document.querySelectorAll('#dep-table tbody tr td:nth-child(3)')].map((td) => td.textContent);", json!([]))
        .await;
    let hosts: Vec<String> = serde_json::from_value(hosts).expect("hostnames");
    // By hostname as people read it: sim-node-2 before sim-node-10.
    let numbers: Vec<u32> = hosts
        .iter()
        .map(|h| {
            h.strip_prefix("sim-node-")
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("a sim node's hostname: {h}"))
        })
        .collect();
    assert!(
        numbers.windows(2).all(|w| w[0] <= w[1]),
        "sorted by node hostname: {hosts:?}"
    );

    // A user's view of the same fleet: their own thousand deployments.
    web.exec("sessionStorage.clear();", json!([])).await;
    sign_in(&web, &url, &users[3].0).await;
    for path in ["/cluster", "/deployments"] {
        let times = ready_times(&web, &url, path).await;
        report.push(format!(
            "user {path}: (ready, scripts loaded, view) ms = {times:?}"
        ));
    }
    load(&web, &url, "/deployments").await;
    assert_range(&web, "dep-table", "1–50 of 1,000").await;

    let text = report.join("\n");
    eprintln!("fleet page timings ({NODES} nodes, {DEPLOYMENTS} deployments):\n{text}");
    std::fs::write(shots.join("fleet-timings.txt"), text + "\n").expect("writing the timings");

    web.close().await;
    drop(driver);
    server.shutdown().await;
}

/// Loads `path` fresh (a new page load, signed in from session storage) and waits for
/// its view to be ready.
async fn load(web: &Session, url: &str, path: &str) {
    // A query string of its own each time: the browser loads the page anew.
    let n = LOADS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    web.goto(&format!("{url}/?load={n}#{path}")).await;
    web.wait_for(&format!("#view[data-ready='{path}']"), 60)
        .await;
}

/// Three fresh loads of `path`, each as (page ready, scripts loaded, the view's own
/// loading and drawing) in ms, the first two since navigation start.
async fn ready_times(web: &Session, url: &str, path: &str) -> Vec<(u64, u64, u64)> {
    let mut out = Vec::new();
    for _ in 0..3 {
        load(web, url, path).await;
        let ms = web
            .exec(
                "const v = document.querySelector('#view').dataset; \
                 const nav = performance.getEntriesByType('navigation')[0]; \
                 return [Number(v.readyMs), Math.round(nav.domContentLoadedEventEnd), Number(v.routeMs)];",
                json!([]),
            )
            .await;
        let t: Vec<u64> =
            serde_json::from_value(ms.clone()).unwrap_or_else(|_| panic!("no ready mark: {ms}"));
        out.push((t[0], t[1], t[2]));
    }
    out
}

/// Waits until the table's range line reads `want`.
async fn assert_range(web: &Session, table: &str, want: &str) {
    let script = format!(
        "return document.querySelector('#{table}-range').textContent === {};",
        json!(want)
    );
    wait_until(web, &script, 30).await;
}
