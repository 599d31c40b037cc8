//! The web console in headless Chromium against a real server and simulated agents,
//! under every role: an admin uploads, deploys, validates and audits; a user deploys a
//! template, watches it, reads its logs, opens a terminal and stops it; an auditor
//! reads everything and changes nothing; and the Cluster and Deployments pages are
//! timed against 1,000 nodes and 10,000 deployments. Screenshots of each page are
//! kept. Runs only with `--features browser-tests` (CI turns it on); without chromium
//! it fails, it never skips.
#![cfg(feature = "browser-tests")]

#[path = "browser_ui/fleet.rs"]
mod fleet;
#[path = "browser_ui/roles.rs"]
mod roles;
#[path = "browser_ui/support.rs"]
mod support;
#[path = "browser_ui/webdriver.rs"]
mod webdriver;

use serde_json::json;
use support::{graphql, seed, shots_dir, sign_in, snap, stop_and_confirm, wait_until, SERIAL};
use webdriver::{Driver, Session};

const VALID: &str = "\
# A small notebook environment, uploaded through the console.
env-name: ui-notebook
version: \"1\"
os: ubuntu
languages:
  - language-name: python
    libraries: [numpy]
resources:
  ram: 512M
  cpu: \"0.5\"
  gpu: \"0\"
  storage: 2
storage:
  - target: /home/work
    size: 64M
    lifecycle: temporary
";

const INVALID: &str = "\
env-name: ui-broken
version: \"1\"
os: ubuntu
languages:
  - language-name: python
    libraries: [numpy]
resources:
  ram: 1 GB
  cpu: \"0.5\"
  storage: 2
";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn console_deploys_validates_and_audits_in_a_real_browser() {
    let (chromedriver, chromium) = webdriver::locate();
    let _one_at_a_time = SERIAL.lock().await;
    let shots = shots_dir();

    // A real server on a free port with simulated agents.
    let data = tempfile::tempdir().expect("temp dir");
    let mut config = dcloud::server::ServerConfig::new(data.path());
    config.listen = "127.0.0.1:0".parse().expect("address");
    config.dev_mode = true;
    config.settings.heartbeat_log_interval_ms = 500;
    let server = dcloud::server::start(config).await.expect("server starts");
    let url = format!("http://{}", server.addr);
    let admin = server.admin_token.clone().expect("a fresh admin token");
    let http = reqwest::Client::new();
    // The library catalog and the templates (admins keep them; not this test's UI path).
    seed(&http, &url, &admin).await;

    let agents = dcloud::agent_cmd::spawn_local(url.clone(), admin.clone(), "sim", 3)
        .expect("simulated agents start");

    let driver = Driver::start(&chromedriver, &http).await;
    let web = Session::new(&driver, &chromium, http.clone()).await;

    // Sign in with the admin token.
    sign_in(&web, &url, &admin).await;
    web.wait_for("#tabs:not([hidden]) a[data-tab=audit]", 10)
        .await;
    // Marks this page load: a reload would lose it.
    web.exec("window.__dcloudPageLoad = 'first';", json!([]))
        .await;

    // Cluster: the totals, and the three simulated nodes in the table.
    web.wait_for("#view[data-ready='/cluster']", 30).await;
    wait_until(
        &web,
        "return document.querySelectorAll('#node-table tbody tr[data-node]').length === 3;",
        30,
    )
    .await;
    let count = web.text(&web.wait_for("#node-count", 5).await).await;
    assert!(count.contains("3 alive"), "totals from the server: {count}");
    snap(&web, &shots, "1-cluster.png").await;

    // Environments: upload a valid YAML file.
    web.click(&web.wait_for("a[data-tab=environments]", 5).await)
        .await;
    let file = web.wait_for("#upload-file", 10).await;
    let valid_path = data.path().join("ui-notebook.yaml");
    std::fs::write(&valid_path, VALID).expect("writing the file");
    web.type_into(&file, &valid_path.to_string_lossy()).await;
    wait_until(
        &web,
        "return document.querySelector('#upload-text').value.includes('ui-notebook');",
        10,
    )
    .await;
    web.click(&web.wait_for("#upload-apply", 5).await).await;
    let deploy = web
        .wait_for("tr[data-name=ui-notebook] button.deploy", 15)
        .await;
    snap(&web, &shots, "2-environments.png").await;

    // Deploy it and watch the status reach RUNNING on the same page load.
    web.click(&deploy).await;
    web.wait_for("#dep-status", 15).await;
    web.wait_for("#dep-status[data-status=RUNNING]", 90).await;
    let page_load = web.exec("return window.__dcloudPageLoad;", json!([])).await;
    assert_eq!(page_load, json!("first"), "the page was reloaded");
    let timeline = web.text(&web.wait_for("#timeline", 5).await).await;
    for status in ["PENDING", "SCHEDULED", "RUNNING"] {
        assert!(
            timeline.contains(status),
            "timeline lacks {status}: {timeline}"
        );
    }
    web.wait_for("#placement", 5).await;
    // The chart fills in from the node's logged heartbeats.
    web.wait_for("#usage-chart polyline[data-series=cpu]", 30)
        .await;
    // At least two heartbeats: a line, not a dot.
    web.wait_for("#usage-chart circle:nth-of-type(2)", 40).await;
    snap(&web, &shots, "3-deployment.png").await;

    // Storage use, as the node reports it, shows on the page (past its size here).
    let id = web
        .exec(
            "return decodeURIComponent(location.hash.split('/').pop());",
            json!([]),
        )
        .await;
    let q = "query($id: ID!) { deployment(id: $id) { nodeId } }";
    let node =
        graphql(&http, &url, &admin, q, json!({"id": id})).await["deployment"]["nodeId"].clone();
    let report = "mutation($n: ID!, $d: ID!, $v: [VolumeUsageInput!]!) { \
        reportVolumeUsage(nodeId: $n, deploymentId: $d, volumes: $v) }";
    let volumes = json!([{"target": "/home/work", "usedBytes": 80u64 << 20,
        "sizeBytes": 64u64 << 20, "enforced": false}]);
    graphql(
        &http,
        &url,
        &admin,
        report,
        json!({"n": node, "d": id, "v": volumes}),
    )
    .await;
    let row = web
        .wait_for("#storage li[data-target='/home/work'][data-over=true]", 15)
        .await;
    let text = web.text(&row).await;
    assert!(
        text.contains("80 MiB of 64 MiB") && text.contains("over its size"),
        "{text}"
    );

    web.click(&web.wait_for("a[data-tab=deployments]", 5).await)
        .await;
    let status_cell = web.wait_for("#dep-table tbody tr .status", 10).await;
    assert_eq!(web.text(&status_cell).await, "RUNNING");
    snap(&web, &shots, "4-deployments.png").await;

    // An invalid file: the error sits on the line of the field it names.
    web.click(&web.wait_for("a[data-tab=environments]", 5).await)
        .await;
    let file = web.wait_for("#upload-file", 10).await;
    let invalid_path = data.path().join("ui-broken.yaml");
    std::fs::write(&invalid_path, INVALID).expect("writing the file");
    web.type_into(&file, &invalid_path.to_string_lossy()).await;
    wait_until(
        &web,
        "return document.querySelector('#upload-text').value.includes('ui-broken');",
        10,
    )
    .await;
    web.click(&web.wait_for("#upload-apply", 5).await).await;
    let error = web
        .wait_for(".doc .line .field-error[data-path='resources.ram']", 15)
        .await;
    let message = web.text(&error).await;
    assert!(
        message.contains("not a size"),
        "unexpected message: {message}"
    );
    let line = web
        .exec("return document.querySelector(\".doc .field-error[data-path='resources.ram']\").closest('.line').querySelector('code').textContent;", json!([]))
        .await;
    assert!(
        line.as_str().is_some_and(|l| l.contains("ram: 1 GB")),
        "the error is not next to its field: {line}"
    );
    // Each problem is shown once. A one-line JSON document gets a plain list (no
    // annotated copy whose errors would overlap the long line).
    let once = "return document.querySelectorAll(\"#upload-result .field-error[data-path='resources.ram']\").length;";
    assert_eq!(web.exec(once, json!([])).await, json!(1));
    web.exec(
        "document.querySelector('#upload-text').value = arguments[0];",
        json!([r#"{"env-name": "ui-json", "version": "1", "os": "ubuntu", "languages": [{"language-name": "python", "libraries": ["numpy"]}], "resources": {"ram": "1 GB", "cpu": "x", "storage": 2}}"#]),
    )
    .await;
    web.click(&web.wait_for("#upload-apply", 5).await).await;
    wait_until(
        &web,
        "return document.querySelectorAll(\"#upload-result li.field-error[data-path='resources.cpu']\").length === 1;",
        15,
    )
    .await;
    assert_eq!(web.exec(once, json!([])).await, json!(1));
    assert_eq!(
        web.exec(
            "return document.querySelectorAll('#upload-result .doc').length;",
            json!([])
        )
        .await,
        json!(0)
    );
    snap(&web, &shots, "5a-one-line-json-errors.png").await;
    // The template form puts a refused override next to its input.
    web.type_into(&web.wait_for("#tpl-name", 5).await, "ui-from-template")
        .await;
    web.type_into(&web.wait_for("#tpl-ram", 5).await, "lots")
        .await;
    web.click(&web.wait_for("#tpl-create", 5).await).await;
    wait_until(
        &web,
        "return document.querySelector('#tpl-ram-err').textContent.includes('\"lots\"');",
        10,
    )
    .await;
    // A GPU count that is not a number and a name the server would refuse are caught
    // before anything is sent, each next to its field.
    web.exec(
        "document.querySelector('#tpl-name').value = 'Bad Name!'; document.querySelector('#tpl-gpu').value = 'x'; document.querySelector('#tpl-ram').value = '';",
        json!([]),
    )
    .await;
    web.click(&web.wait_for("#tpl-create", 5).await).await;
    let gpu_err = web.text(&web.wait_for("#tpl-gpu-err", 5).await).await;
    assert!(gpu_err.contains("\"x\" is not a whole number"), "{gpu_err}");
    let name_err = web.text(&web.wait_for("#tpl-name-err", 5).await).await;
    assert!(name_err.contains("not a valid name"), "{name_err}");
    // The form's field blocks keep the page's background (not the header's).
    let bg = web
        .exec("return getComputedStyle(document.querySelector('#template-form .row')).backgroundColor;", json!([]))
        .await;
    assert_eq!(
        bg,
        json!("rgba(0, 0, 0, 0)"),
        "the field block has a background"
    );
    let envs_after = web
        .exec(
            "return document.querySelectorAll('#env-table tbody tr').length;",
            json!([]),
        )
        .await;
    assert_eq!(envs_after, json!(1), "nothing was created");
    snap(&web, &shots, "5-upload-error.png").await;

    // The environment's page: edit it into version 2 and see the diff.
    web.click(&web.wait_for("tr[data-name=ui-notebook] a", 5).await)
        .await;
    let edit = web.wait_for("#edit-text", 10).await;
    web.exec(
        "const t = arguments[0]; t.value = t.value.replace('\"512M\"', '\"1G\"');",
        json!([{ "element-6066-11e4-a52e-4f735466cecf": edit }]),
    )
    .await;
    web.click(&web.wait_for("#edit-save", 5).await).await;
    web.wait_for("#diff-to option[value='2'][selected]", 15)
        .await;
    let diff = web.text(&web.wait_for("#diff .add", 5).await).await;
    assert!(diff.contains("1G"), "the diff shows the new ram: {diff}");
    snap(&web, &shots, "5b-environment.png").await;

    // Templates and the catalog (admin view).
    web.click(&web.wait_for("a[data-tab=templates]", 5).await)
        .await;
    web.wait_for("#view h2", 10).await;
    snap(&web, &shots, "6-templates.png").await;
    web.click(&web.wait_for("a[data-tab=catalog]", 5).await)
        .await;
    web.wait_for("[data-catalog=ubuntu]", 10).await;
    snap(&web, &shots, "7-catalog.png").await;

    // Audit: the chain verifies, the events list, and the state at a past seq.
    web.click(&web.wait_for("a[data-tab=audit]", 5).await).await;
    let chain = web.wait_for("#chain-status[data-ok=true]", 30).await;
    assert!(web.text(&chain).await.contains("Chain verified"));
    web.wait_for("#event-table tbody tr", 10).await;
    web.click(&web.wait_for("#state-at button[type=submit]", 5).await)
        .await;
    let at = web.wait_for("#state-at-result", 30).await;
    assert!(
        web.text(&at).await.contains("RUNNING"),
        "the state at the last seq shows the running deployment"
    );
    snap(&web, &shots, "8-audit.png").await;
    assert_eq!(
        web.exec("return window.__dcloudPageLoad;", json!([])).await,
        json!("first")
    );

    // Without a websocket the console polls: stop the deployment from its page (a
    // fresh load, signed in from sessionStorage) and watch it reach STOPPED.
    let deployment = web
        .exec("return document.querySelector('#state-at-result tr[data-deployment]').dataset.deployment;", json!([]))
        .await;
    let deployment = deployment.as_str().expect("a deployment id").to_string();
    web.cdp(
        "Page.addScriptToEvaluateOnNewDocument",
        json!({"source": "window.WebSocket = function () { throw new Error('websockets blocked by the test'); };"}),
    )
    .await;
    web.goto(&format!("{url}/?nows#/deployments/{deployment}"))
        .await;
    web.wait_for("#dep-status[data-status=RUNNING]", 15).await;
    web.wait_for("#live-mode[data-mode=polling]", 10).await;
    stop_and_confirm(&web).await;
    web.wait_for("#dep-status[data-status=STOPPED]", 60).await;
    snap(&web, &shots, "9-stopped-by-polling.png").await;

    eprintln!("screenshots in {}", shots.display());
    web.close().await;
    drop(driver);
    agents.abort();
    server.shutdown().await;
}
