//! The console as a user and as an auditor. A user (a data scientist) signs in, sees
//! the Cluster page, deploys a template, watches it run, opens its URL, reads its
//! logs, types in its terminal and stops it; an auditor reads every page and is
//! offered nothing that writes. Screenshots feed docs/data-scientists.md.

use serde_json::json;

use super::support::{
    features, graphql, open, shots_dir, sign_in, sign_out, snap, stop_and_confirm, token,
    wait_until, SERIAL,
};
use super::webdriver::{self, Driver, Session};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_user_deploys_a_template_and_an_auditor_reads_everything() {
    let _one_at_a_time = SERIAL.lock().await;
    let (chromedriver, chromium) = webdriver::locate();
    let shots = shots_dir();
    let data = tempfile::tempdir().expect("temp dir");
    let mut config = dcloud::server::ServerConfig::new(data.path());
    config.listen = "127.0.0.1:0".parse().expect("address");
    config.settings.heartbeat_log_interval_ms = 500;
    let server = dcloud::server::start(config).await.expect("server starts");
    let url = format!("http://{}", server.addr);
    let admin = server.admin_token.clone().expect("a fresh admin token");
    let http = reqwest::Client::new();
    // The starter catalog and templates, as `dcloud dev` loads them.
    assert!(dcloud::server::load_starter(server.app())
        .await
        .expect("the starter documents load"));
    // The notebook template of docs/data-scientists.md: the starter one plus Jupyter's port.
    graphql(
        &http,
        &url,
        &admin,
        "mutation($d: String!) { saveTemplate(document: $d) { name } }",
        json!({"d": NOTEBOOK}),
    )
    .await;
    let user = token(&http, &url, &admin, "USER", "dana").await;
    let auditor = token(&http, &url, &admin, "AUDITOR", "audrey").await;
    let agents = dcloud::agent_cmd::spawn_local(url.clone(), admin.clone(), "sim", 3)
        .expect("simulated agents start");

    let driver = Driver::start(&chromedriver, &http).await;
    let web = Session::new(&driver, &chromium, http.clone()).await;

    // ── a user ──────────────────────────────────────────────────────────────
    sign_in(&web, &url, &user).await;
    let who = web.text(&web.wait_for("#who-name", 5).await).await;
    assert_eq!(who, "dana (user)");
    // The landing page loads for a user (it used to ask for the admins' state digest).
    web.wait_for("#view[data-ready='/cluster']", 30).await;
    wait_until(
        &web,
        "return document.querySelectorAll('#node-table tbody tr[data-node]').length === 3;",
        30,
    )
    .await;
    open(&web, "/cluster").await;
    snap(&web, &shots, "ds-1-cluster.png").await;
    // Catalog and Audit are not offered to a user, and refuse when opened directly.
    for tab in ["catalog", "audit"] {
        let hidden = web
            .exec(
                "return document.querySelector(`#tabs a[data-tab=${arguments[0]}]`).parentElement.hidden;",
                json!([tab]),
            )
            .await;
        assert_eq!(hidden, json!(true), "the {tab} tab is hidden from users");
    }
    web.exec("location.hash = '#/catalog';", json!([])).await;
    let refused = web
        .wait_for("#view[data-ready='/catalog'] #not-for-role", 15)
        .await;
    assert!(web
        .text(&refused)
        .await
        .contains("This page is for admins and auditors"));
    web.exec("location.hash = '#/audit';", json!([])).await;
    let refused = web
        .wait_for("#view[data-ready='/audit'] #not-for-role", 15)
        .await;
    assert!(web
        .text(&refused)
        .await
        .contains("This page is for admins and auditors"));

    // With quotas on the server, the admin gives dana one; the pages show her usage of it.
    let found = features(&web).await;
    eprintln!("server features the console found: [{found}]");
    if found.contains("quota") {
        graphql(
            &http,
            &url,
            &admin,
            "mutation { setQuota(user: \"dana\", quota: {deployments: 3, cpuMillis: 8000}) { __typename } }",
            json!({}),
        )
        .await;
    }
    // Templates: Deploy makes the user's own copy and opens its page.
    open(&web, "/templates").await;
    if found.contains("quota") {
        let quota = web
            .wait_for("#quota:not([hidden]) [data-quota=Deployments]", 10)
            .await;
        let text = web.text(&quota).await;
        assert!(text.contains("of 3"), "the quota card: {text}");
    } else {
        assert!(web.find_all("#quota:not([hidden])").await.is_empty());
    }
    snap(&web, &shots, "ds-2-templates.png").await;
    web.click(
        &web.wait_for("[data-template=jupyter-notebook] button.deploy-template", 5)
            .await,
    )
    .await;
    web.wait_for("#dep-status", 15).await;
    wait_until(
        &web,
        "return /^#\\/deployments\\/[^/]+$/.test(location.hash) && document.querySelector('#view').dataset.ready === decodeURIComponent(location.hash.slice(1));",
        15,
    )
    .await;
    let text = web
        .exec(
            "return document.querySelector('#view').innerText;",
            json!([]),
        )
        .await;
    assert!(
        !text.as_str().unwrap_or_default().contains("Could not load"),
        "the page after Deploy loads for a user: {text}"
    );
    web.wait_for("#dep-status[data-status=RUNNING]", 90).await;
    let node = web.text(&web.wait_for("#dep-node", 5).await).await;
    assert!(
        node.starts_with("sim-node-"),
        "the node by hostname: {node}"
    );
    // A point per heartbeat, from the first one on.
    web.wait_for("#usage-chart circle:nth-of-type(2)", 30).await;
    if found.contains("endpoints") {
        // The notebook's URL, with its token for the owner, once ready.
        let link = web
            .wait_for("#endpoints li[data-ready=true] a.endpoint-url", 60)
            .await;
        let href = web
            .exec("return arguments[0].href;", json!([{ ELEMENT: link }]))
            .await;
        assert!(
            href.as_str().is_some_and(|h| h.starts_with("http://")),
            "{href}"
        );
    } else {
        web.wait_for("#endpoints-absent", 5).await;
    }
    // The log panel.
    web.click(&web.wait_for("#logs summary", 5).await).await;
    if found.contains("logs") {
        web.wait_for("#log-lines span", 30).await;
    } else {
        web.wait_for("#logs-absent", 5).await;
    }
    // The terminal.
    web.click(&web.wait_for("#shell summary", 5).await).await;
    if found.contains("exec") {
        let term = web.wait_for("#term[data-connected=true]", 20).await;
        web.click(&term).await;
        // `hostname` answers the node id (the simulated engine's shell; a container's
        // would print its own). Ctrl+J is a newline on any terminal.
        web.exec(
            "const t = document.querySelector('#term'); \
             for (const key of 'hostname') t.dispatchEvent(new KeyboardEvent('keydown', {key, bubbles: true})); \
             t.dispatchEvent(new KeyboardEvent('keydown', {key: 'j', ctrlKey: true, bubbles: true}));",
            json!([]),
        )
        .await;
        wait_until(
            &web,
            "return document.querySelector('#term').textContent.includes(document.querySelector('#dep-node').title);",
            20,
        )
        .await;
    } else {
        web.wait_for("#term-absent", 5).await;
    }
    web.exec("window.scrollTo(0, 0);", json!([])).await;
    snap(&web, &shots, "ds-3-deployment.png").await;
    web.exec(
        "document.querySelector('#logs').scrollIntoView();",
        json!([]),
    )
    .await;
    snap(&web, &shots, "ds-3b-logs-and-terminal.png").await;
    let deployment = web
        .exec(
            "return decodeURIComponent(location.hash.split('/')[2]);",
            json!([]),
        )
        .await;

    // The user's deployment list, then Stop (confirmed) from the deployment's page.
    open(&web, "/deployments").await;
    wait_until(
        &web,
        "return document.querySelectorAll('#dep-table tbody tr[data-deployment]').length === 1;",
        15,
    )
    .await;
    if found.contains("quota") {
        // Her running notebook counts against the quota.
        wait_until(
            &web,
            "const q = document.querySelector('#quota:not([hidden]) [data-quota=Deployments] .big'); return !!q && q.textContent === '1';",
            10,
        )
        .await;
    }
    snap(&web, &shots, "ds-4-deployments.png").await;
    open(&web, "/environments").await;
    // The environment Deploy made for the user: their own, with its versions.
    let env_path = web
        .exec(
            "return decodeURIComponent(document.querySelector('#env-table tbody tr a').getAttribute('href').slice(1));",
            json!([]),
        )
        .await;
    open(&web, env_path.as_str().expect("an environment link")).await;
    let owner = web
        .exec(
            "return document.querySelector('#view').innerText.includes('owner dana');",
            json!([]),
        )
        .await;
    assert_eq!(owner, json!(true), "the user's own environment");
    open(
        &web,
        &format!("/deployments/{}", deployment.as_str().unwrap_or_default()),
    )
    .await;
    // Cancelling the dialog stops nothing.
    web.click(&web.wait_for("#dep-stop", 10).await).await;
    web.click(
        &web.wait_for("dialog#confirm[open] #confirm-cancel", 5)
            .await,
    )
    .await;
    web.wait_for("#dep-status[data-status=RUNNING]", 5).await;
    stop_and_confirm(&web).await;
    web.wait_for("#dep-status[data-status=STOPPED]", 60).await;
    snap(&web, &shots, "ds-5-stopped.png").await;
    sign_out(&web).await;

    // ── an auditor ──────────────────────────────────────────────────────────
    sign_in(&web, &url, &auditor).await;
    for path in [
        "/cluster",
        "/deployments",
        "/environments",
        "/templates",
        "/catalog",
        "/audit",
    ] {
        open(&web, path).await;
    }
    web.wait_for("#chain-status[data-ok=true]", 30).await;
    open(&web, "/deployments").await;
    wait_until(
        &web,
        "return document.querySelectorAll('#dep-table tbody tr[data-deployment]').length === 1;",
        15,
    )
    .await;
    // Nothing that writes is offered to an auditor.
    let writes = "return document.querySelectorAll('#view button.danger, #view button.primary.deploy, #view .deploy-template, #deploy-form, #upload-form, #template-form').length;";
    assert_eq!(web.exec(writes, json!([])).await, json!(0));
    open(
        &web,
        &format!("/deployments/{}", deployment.as_str().unwrap_or_default()),
    )
    .await;
    assert_eq!(web.exec(writes, json!([])).await, json!(0));
    assert!(web.find_all("#dep-stop").await.is_empty());
    open(&web, "/templates").await;
    assert_eq!(web.exec(writes, json!([])).await, json!(0));
    snap(&web, &shots, "auditor-templates.png").await;

    web.close().await;
    drop(driver);
    agents.abort();
    server.shutdown().await;
}

/// The template docs/data-scientists.md has an admin add (`dcloud apply -f`).
const NOTEBOOK: &str = r#"{"template-name": "jupyter-notebook", "version": "1", "os": "ubuntu",
    "languages": [{"language-name": "python",
                   "libraries": ["numpy", "pandas", "scikit-learn", "jupyter-notebook"]}],
    "resources": {"ram": "2G", "cpu": "1.0", "gpu": "0", "storage": 10},
    "port-publish": [{"external": {"ports": "8888"}, "internal": {"ports": "8888", "protocol": "tcp"}}]}"#;

/// The W3C key of an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";
