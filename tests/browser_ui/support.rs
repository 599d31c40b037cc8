//! What the browser tests share: a server with the catalog and two templates, tokens
//! per role, signing in and out in the page, GraphQL calls, waits and screenshots.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};

use super::webdriver::Session;

/// One browser test at a time: each starts a server and a browser, and the fleet test
/// measures page times that a second browser on the same cores would distort.
pub(crate) static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The catalog the templates' recipes need.
pub(crate) const CATALOG: &str = r#"{"os": "ubuntu", "init-steps": [], "specifications": {"python": {
    "installation-steps": ["apt-get install -y python3"],
    "libraries": {"numpy": ["pip install numpy"], "pandas": ["pip install pandas"],
                  "jupyterlab": ["pip install jupyterlab"]}}}}"#;

/// A small template, and one that publishes a port.
pub(crate) const TEMPLATES: [&str; 2] = [
    r#"{"template-name": "py-small", "version": "1", "os": "ubuntu",
        "languages": [{"language-name": "python", "libraries": ["numpy"]}],
        "resources": {"ram": "256M", "cpu": "0.25", "gpu": "0", "storage": 1}}"#,
    r#"{"template-name": "py-notebook", "version": "1", "os": "ubuntu",
        "languages": [{"language-name": "python", "libraries": ["numpy", "pandas", "jupyterlab"]}],
        "resources": {"ram": "1G", "cpu": "1.0", "gpu": "0", "storage": 2},
        "port-publish": [{"external": {"ports": "8888"}, "internal": {"ports": "8888", "protocol": "tcp"}}]}"#,
];

/// Where the screenshots go (kept as CI artefacts; the ones in docs/img come from here).
pub(crate) fn shots_dir() -> PathBuf {
    let dir = std::env::var_os("DCLOUD_SCREENSHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("ui-screenshots"));
    std::fs::create_dir_all(&dir).expect("creating the screenshot folder");
    dir
}

pub(crate) async fn graphql(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    query: &str,
    vars: Value,
) -> Value {
    let res: Value = http
        .post(format!("{url}/graphql"))
        .bearer_auth(token)
        .json(&json!({"query": query, "variables": vars}))
        .send()
        .await
        .expect("graphql request")
        .json()
        .await
        .expect("graphql body");
    assert!(res.get("errors").is_none(), "graphql errors: {res}");
    res["data"].clone()
}

/// Loads the catalog and the templates as the admin.
pub(crate) async fn seed(http: &reqwest::Client, url: &str, admin: &str) {
    graphql(
        http,
        url,
        admin,
        "mutation($d: String!) { upsertCatalog(document: $d) { os } }",
        json!({"d": CATALOG}),
    )
    .await;
    for t in TEMPLATES {
        graphql(
            http,
            url,
            admin,
            "mutation($d: String!) { saveTemplate(document: $d) { name } }",
            json!({"d": t}),
        )
        .await;
    }
}

/// A new token of `role` (ADMIN, USER, AUDITOR) named `name`.
pub(crate) async fn token(
    http: &reqwest::Client,
    url: &str,
    admin: &str,
    role: &str,
    name: &str,
) -> String {
    let d = graphql(
        http,
        url,
        admin,
        "mutation($r: Role!, $n: String!) { createToken(role: $r, name: $n) { token } }",
        json!({"r": role, "n": name}),
    )
    .await;
    d["createToken"]["token"]
        .as_str()
        .expect("a token")
        .to_string()
}

/// Opens the console and signs in with `token`; waits for the tabs.
pub(crate) async fn sign_in(web: &Session, url: &str, token: &str) {
    web.goto(url).await;
    let input = web.wait_for("#token-input", 10).await;
    web.type_into(&input, token).await;
    web.click(&web.wait_for("#signin-form button[type=submit]", 5).await)
        .await;
    web.wait_for("#tabs:not([hidden]) a[data-tab=cluster]", 10)
        .await;
}

pub(crate) async fn sign_out(web: &Session) {
    web.click(&web.wait_for("#sign-out", 5).await).await;
    web.wait_for("#signin:not([hidden])", 5).await;
}

/// Goes to `#/path` and waits until its view says it is ready; fails when the view
/// shows "Could not load".
pub(crate) async fn open(web: &Session, path: &str) {
    web.exec("location.hash = arguments[0];", json!([format!("#{path}")]))
        .await;
    let ready = format!("#view[data-ready='{path}']");
    web.wait_for(&ready, 30).await;
    let text = web
        .exec(
            "return document.querySelector('#view').innerText;",
            json!([]),
        )
        .await;
    let text = text.as_str().unwrap_or_default();
    assert!(
        !text.contains("Could not load"),
        "{path} did not load: {text}"
    );
}

/// Saves a screenshot of the page as it is, after checking that no template slip
/// (`null`, `undefined`, `[object …]`) shows in its text.
pub(crate) async fn snap(web: &Session, dir: &Path, name: &str) {
    let slips = web
        .exec(
            "return document.body.innerText.split('\\n').filter((l) => l.trim() === 'null' || l.includes('undefined') || l.includes('[object ') || l.includes('NaN'));",
            json!([]),
        )
        .await;
    assert_eq!(slips, json!([]), "{name}: the page shows template slips");
    web.screenshot(&dir.join(name)).await;
}

/// Polls `script` (returning a boolean) until it is true.
pub(crate) async fn wait_until(web: &Session, script: &str, secs: u64) {
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    while web.exec(script, json!([])).await != json!(true) {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for: {script}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Which optional server features the console found (`data-features` on the body).
pub(crate) async fn features(web: &Session) -> String {
    web.exec("return document.body.dataset.features || '';", json!([]))
        .await
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// Presses Stop on a deployment's page and confirms in the dialog.
pub(crate) async fn stop_and_confirm(web: &Session) {
    web.click(&web.wait_for("#dep-stop", 10).await).await;
    let dialog = web.wait_for("dialog#confirm[open]", 5).await;
    assert!(
        web.text(&dialog).await.contains("cannot be undone"),
        "the dialog says what stopping does"
    );
    web.click(&web.wait_for("#confirm-yes", 5).await).await;
}
