//! Through the router (no sockets): a mutation retried with the same `Idempotency-Key`
//! is answered with the first one's result and appends nothing; the key is the
//! caller's own; a malformed key is refused; a retried `createToken` says it cannot
//! show the secret again. The `checkpoint` query under each role.

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use dcloud::server::{router, AppState, ServerConfig, IDEMPOTENCY_KEY_HEADER};
use serde_json::{json, Value};
use tower::ServiceExt;

const CATALOG: &str = r#"{"os": "busybox", "base-image": "dcloud-test/busybox:latest",
  "init-steps": ["true"], "specifications": {}}"#;
const ENVIRONMENT: &str = r#"{"env-name": "keyed", "version": "1", "os": "busybox",
  "languages": [], "resources": {"ram": "256M", "cpu": "0.5", "gpu": "0", "storage": 1}}"#;

async fn post(
    app: &AppState,
    token: &str,
    key: Option<&str>,
    query: &str,
    vars: Value,
) -> (StatusCode, Value) {
    let mut req = Request::post("/graphql")
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::AUTHORIZATION, format!("Bearer {token}"));
    if let Some(k) = key {
        req = req.header(IDEMPOTENCY_KEY_HEADER, k);
    }
    let body = json!({ "query": query, "variables": vars }).to_string();
    let resp = router(app.clone())
        .oneshot(req.body(Body::from(body)).expect("request"))
        .await
        .expect("response");
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .expect("body");
    (status, serde_json::from_slice(&bytes).expect("json"))
}

struct Fixture {
    app: AppState,
    admin: String,
    _dir: tempfile::TempDir,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("temp dir");
    let (app, token) = AppState::open(&ServerConfig::new(dir.path()))
        .await
        .expect("open");
    app.set_ready(true);
    Fixture {
        app,
        admin: token.expect("admin token"),
        _dir: dir,
    }
}

async fn token(f: &Fixture, role: &str, name: &str) -> String {
    let q = "mutation($r: Role!, $n: String!, $node: ID) { createToken(role: $r, name: $n, nodeId: $node) { token } }";
    let node = (role == "AGENT").then_some("0x0000000000aa");
    let (_, v) = post(
        &f.app,
        &f.admin,
        None,
        q,
        json!({"r": role, "n": name, "node": node}),
    )
    .await;
    v["data"]["createToken"]["token"]
        .as_str()
        .unwrap_or_else(|| panic!("{v}"))
        .to_string()
}

fn code(v: &Value) -> &str {
    v["errors"][0]["extensions"]["code"]
        .as_str()
        .unwrap_or_default()
}

#[tokio::test]
async fn a_retried_key_gets_the_first_answer_and_appends_nothing() {
    let f = fixture().await;
    let user = token(&f, "USER", "ann").await;
    let other = token(&f, "USER", "bob").await;
    post(
        &f.app,
        &f.admin,
        None,
        "mutation($d: String!) { upsertCatalog(document: $d) { os } }",
        json!({"d": CATALOG}),
    )
    .await;
    let (_, v) = post(
        &f.app,
        &user,
        Some("env-1"),
        "mutation($d: String!) { createEnvironment(document: $d) { id } }",
        json!({"d": ENVIRONMENT}),
    )
    .await;
    let env = v["data"]["createEnvironment"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{v}"))
        .to_string();

    let deploy = "mutation($e: String!) { deploy(environment: $e) { id } }";
    let (_, first) = post(&f.app, &user, Some("deploy-1"), deploy, json!({"e": env})).await;
    let id = first["data"]["deploy"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{first}"))
        .to_string();
    let seq = f.app.writer().state().last_seq();
    let (_, again) = post(&f.app, &user, Some("deploy-1"), deploy, json!({"e": env})).await;
    assert_eq!(
        again["data"]["deploy"]["id"].as_str(),
        Some(id.as_str()),
        "{again}"
    );
    assert_eq!(
        f.app.writer().state().last_seq(),
        seq,
        "a retry appends nothing"
    );
    assert_eq!(f.app.writer().state().deployments.len(), 1);

    // Another key, or the same key from another caller, is another request.
    let (_, second) = post(&f.app, &user, Some("deploy-2"), deploy, json!({"e": env})).await;
    assert_ne!(second["data"]["deploy"]["id"].as_str(), Some(id.as_str()));
    let (_, bobs) = post(&f.app, &other, Some("deploy-1"), deploy, json!({"e": env})).await;
    assert_eq!(
        code(&bobs),
        "NOT_FOUND",
        "bob cannot see ann's environment: {bobs}"
    );
    let (_, admins) = post(
        &f.app,
        &f.admin,
        Some("deploy-1"),
        deploy,
        json!({"e": env}),
    )
    .await;
    assert_ne!(
        admins["data"]["deploy"]["id"].as_str(),
        Some(id.as_str()),
        "{admins}"
    );
    assert_eq!(f.app.writer().state().deployments.len(), 3);

    // A key survives a restart: it is in the log.
    let dir = f._dir.path().to_path_buf();
    let writer = f.app.writer().clone();
    drop(f.app);
    tokio::task::spawn_blocking(move || writer.shutdown())
        .await
        .expect("join");
    let (app, _) = AppState::open(&ServerConfig::new(&dir))
        .await
        .expect("reopen");
    let (_, after) = post(&app, &user, Some("deploy-1"), deploy, json!({"e": env})).await;
    assert_eq!(
        after["data"]["deploy"]["id"].as_str(),
        Some(id.as_str()),
        "{after}"
    );
    assert_eq!(app.writer().state().deployments.len(), 3);
}

#[tokio::test]
async fn a_malformed_key_is_refused_and_a_retried_token_keeps_its_secret() {
    let f = fixture().await;
    let q = "mutation { createToken(role: USER, name: \"x\") { id token } }";
    let (status, v) = post(&f.app, &f.admin, Some(&"k".repeat(129)), q, json!({})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(v.to_string().contains("idempotency-key"), "{v}");
    let (_, first) = post(&f.app, &f.admin, Some("tok"), q, json!({})).await;
    let id = first["data"]["createToken"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{first}"))
        .to_string();
    let (_, again) = post(&f.app, &f.admin, Some("tok"), q, json!({})).await;
    assert_eq!(code(&again), "BAD_USER_INPUT", "{again}");
    assert!(again.to_string().contains(&id), "{again}");
}

#[tokio::test]
async fn the_checkpoint_is_for_admins_and_auditors() {
    let f = fixture().await;
    let q = "{ checkpoint { seq chainHash publicKey signature } }";
    let (_, none) = post(&f.app, &f.admin, None, q, json!({})).await;
    assert!(
        none["data"]["checkpoint"].is_null(),
        "none written yet: {none}"
    );
    let cp = f
        .app
        .write_checkpoint()
        .expect("write")
        .expect("a new head");
    for role in ["ADMIN", "AUDITOR"] {
        let t = if role == "ADMIN" {
            f.admin.clone()
        } else {
            token(&f, role, "audit").await
        };
        let (_, v) = post(&f.app, &t, None, q, json!({})).await;
        assert_eq!(
            v["data"]["checkpoint"]["signature"].as_str(),
            Some(cp.signature.as_str()),
            "{role}: {v}"
        );
        assert_eq!(
            v["data"]["checkpoint"]["publicKey"].as_str(),
            Some(cp.public_key.as_str())
        );
    }
    for role in ["USER", "AGENT"] {
        let t = token(&f, role, "x").await;
        let (_, v) = post(&f.app, &t, None, q, json!({})).await;
        assert_eq!(code(&v), "FORBIDDEN", "{role}: {v}");
    }
}
