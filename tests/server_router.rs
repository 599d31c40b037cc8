//! The router without sockets (`tower::ServiceExt::oneshot`): health, readiness,
//! metrics, bearer-token auth, GET rules, the body limit and GraphiQL's gate.

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use dcloud::server::{router, AppState, ServerConfig, MAX_BODY_BYTES, REQUEST_ID_HEADER};
use serde_json::{json, Value};
use tower::ServiceExt;

struct Fixture {
    app: AppState,
    admin: String,
    _dir: tempfile::TempDir,
}

async fn fixture(dev_mode: bool) -> Fixture {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = ServerConfig::new(dir.path());
    config.dev_mode = dev_mode;
    let (app, token) = AppState::open(&config).await.expect("open");
    app.set_ready(true);
    Fixture {
        app,
        admin: token.expect("first open creates the admin token"),
        _dir: dir,
    }
}

struct Reply {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }

    fn code(&self) -> String {
        self.json()["errors"][0]["extensions"]["code"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }
}

async fn send(app: &AppState, req: Request<Body>) -> Reply {
    let resp = router(app.clone()).oneshot(req).await.expect("response");
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .expect("body");
    Reply {
        status,
        headers,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

async fn get(app: &AppState, path: &str, token: Option<&str>) -> Reply {
    let mut req = Request::get(path);
    if let Some(t) = token {
        req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    send(app, req.body(Body::empty()).expect("request")).await
}

async fn post_gql(app: &AppState, token: Option<&str>, query: &str, vars: Value) -> Reply {
    let mut req = Request::post("/graphql").header(header::CONTENT_TYPE, "application/json");
    if let Some(t) = token {
        req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    let body = json!({ "query": query, "variables": vars }).to_string();
    send(app, req.body(Body::from(body)).expect("request")).await
}

/// A new token of `role` made by the admin over the API.
async fn token(f: &Fixture, role: &str, name: &str) -> String {
    let r = post_gql(
        &f.app,
        Some(&f.admin),
        "mutation($role: Role!, $name: String!) { createToken(role: $role, name: $name) { token } }",
        json!({ "role": role, "name": name }),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    r.json()["data"]["createToken"]["token"]
        .as_str()
        .unwrap_or_else(|| panic!("no token in {}", r.body))
        .to_string()
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
        .unwrap_or_else(|| panic!("no metric {name} in\n{text}"))
        .trim()
        .parse()
        .expect("a number")
}

#[tokio::test]
async fn liveness_answers_and_readiness_follows_the_flag() {
    let f = fixture(false).await;
    for path in ["/livez", "/healthz"] {
        let r = get(&f.app, path, None).await;
        assert_eq!(
            (r.status, r.body.as_str()),
            (StatusCode::OK, "ok\n"),
            "{path}"
        );
    }
    assert_eq!(get(&f.app, "/readyz", None).await.status, StatusCode::OK);
    f.app.set_ready(false);
    let r = get(&f.app, "/readyz", None).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.body);
}

#[tokio::test]
async fn metrics_change_after_a_mutation() {
    let f = fixture(false).await;
    let before = get(&f.app, "/metrics", None).await;
    assert_eq!(before.status, StatusCode::OK);
    assert!(before.headers[header::CONTENT_TYPE]
        .to_str()
        .expect("ascii")
        .starts_with("text/plain"));
    for name in [
        "# TYPE dcloud_events_appended_total counter",
        "# TYPE dcloud_append_latency_seconds histogram",
        "# TYPE dcloud_placements_total counter",
        "# TYPE dcloud_pending_deployments gauge",
        "dcloud_nodes{state=\"alive\"} 0",
        "dcloud_nodes{state=\"lost\"} 0",
        "dcloud_nodes{state=\"draining\"} 0",
        "# TYPE dcloud_subscriptions_open gauge",
    ] {
        assert!(
            before.body.contains(name),
            "missing {name} in\n{}",
            before.body
        );
    }
    let appended = metric(&before.body, "dcloud_events_appended_total");
    let appends = metric(&before.body, "dcloud_append_latency_seconds_count");
    let last_seq = metric(&before.body, "dcloud_log_last_seq");
    assert_eq!(
        appended, 2.0,
        "the cluster's id and the admin token, written at the first start"
    );

    token(&f, "USER", "alice").await;

    let after = get(&f.app, "/metrics", None).await.body;
    assert_eq!(
        metric(&after, "dcloud_events_appended_total"),
        appended + 1.0
    );
    assert_eq!(
        metric(&after, "dcloud_append_latency_seconds_count"),
        appends + 1.0
    );
    assert_eq!(metric(&after, "dcloud_log_last_seq"), last_seq + 1.0);
}

#[tokio::test]
async fn graphql_without_a_valid_token_is_unauthenticated() {
    let f = fixture(false).await;
    let q = "{ me { name } }";
    let none = post_gql(&f.app, None, q, json!({})).await;
    assert_eq!(
        none.status,
        StatusCode::OK,
        "GraphQL errors travel in a 200"
    );
    assert_eq!(none.code(), "UNAUTHENTICATED", "{}", none.body);

    let bad = format!("dcl_{}", "0".repeat(64));
    let wrong = post_gql(&f.app, Some(&bad), q, json!({})).await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert_eq!(wrong.code(), "UNAUTHENTICATED", "{}", wrong.body);
    assert_eq!(wrong.headers[header::WWW_AUTHENTICATE], "Bearer");

    let ok = post_gql(&f.app, Some(&f.admin), q, json!({})).await;
    assert_eq!(ok.json()["data"]["me"]["name"], "admin", "{}", ok.body);
    assert!(ok.headers.contains_key(REQUEST_ID_HEADER));
}

#[tokio::test]
async fn get_serves_queries_but_refuses_mutations() {
    let f = fixture(false).await;
    let q = get(
        &f.app,
        "/graphql?query=%7B%20me%20%7B%20name%20%7D%20%7D",
        Some(&f.admin),
    )
    .await;
    assert_eq!(q.status, StatusCode::OK, "{}", q.body);
    assert_eq!(q.json()["data"]["me"]["name"], "admin");

    let m = "/graphql?query=mutation%20%7B%20revokeToken(id%3A%20%22x%22)%20%7D";
    let r = get(&f.app, m, Some(&f.admin)).await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED, "{}", r.body);
    assert_eq!(r.code(), "METHOD_NOT_ALLOWED");
    let tokens_before = f.app.writer().state().tokens.len();
    assert_eq!(tokens_before, 1, "nothing was done");
}

#[tokio::test]
async fn bodies_over_the_limit_are_refused() {
    let f = fixture(false).await;
    let padding = " ".repeat(MAX_BODY_BYTES + 1);
    let body = format!(r#"{{"query": "{{ me {{ name }} }}{padding}"}}"#);
    let len = body.len();
    let req = Request::builder()
        .method(Method::POST)
        .uri("/graphql")
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::AUTHORIZATION, format!("Bearer {}", f.admin))
        .header(header::CONTENT_LENGTH, len)
        .body(Body::from(body))
        .expect("request");
    let r = send(&f.app, req).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);

    // Without a length up front, the limit still holds while reading.
    let body = format!(
        r#"{{"query": "{{ me {{ name }} }}{}"}}"#,
        " ".repeat(MAX_BODY_BYTES + 1)
    );
    let stream = futures::stream::iter(
        body.into_bytes()
            .chunks(64 * 1024)
            .map(|c| Ok::<_, std::io::Error>(c.to_vec()))
            .collect::<Vec<_>>(),
    );
    let req = Request::post("/graphql")
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::AUTHORIZATION, format!("Bearer {}", f.admin))
        .body(Body::from_stream(stream))
        .expect("request");
    let r = send(&f.app, req).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", r.body);
}

#[tokio::test]
async fn graphiql_is_for_admins_outside_dev_mode() {
    let f = fixture(false).await;
    let user = token(&f, "USER", "bob").await;
    assert_eq!(
        get(&f.app, "/graphiql", None).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        get(&f.app, "/graphiql", Some(&user)).await.status,
        StatusCode::NOT_FOUND
    );
    let admin = get(&f.app, "/graphiql", Some(&f.admin)).await;
    assert_eq!(admin.status, StatusCode::OK);
    assert!(admin.body.contains("/graphql/ws"), "{}", admin.body);

    let dev = fixture(true).await;
    assert_eq!(
        get(&dev.app, "/graphiql", None).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_node_heard_from_is_in_the_liveness_table() {
    let f = fixture(false).await;
    let r = post_gql(
        &f.app,
        Some(&f.admin),
        "mutation { createToken(role: AGENT, name: \"n1\", nodeId: \"n1\") { token } }",
        json!({}),
    )
    .await;
    let agent = r.json()["data"]["createToken"]["token"]
        .as_str()
        .unwrap_or_else(|| panic!("{}", r.body))
        .to_string();
    assert_eq!(f.app.liveness().last_seen_ms("n1"), None);
    let r = post_gql(&f.app, Some(&agent), REGISTER, json!({ "id": "n1" })).await;
    assert_eq!(r.json()["data"]["registerNode"]["id"], "n1", "{}", r.body);
    assert!(f.app.liveness().last_seen_ms("n1").is_some());
    let m = get(&f.app, "/metrics", None).await.body;
    assert_eq!(metric(&m, "dcloud_nodes{state=\"alive\"}"), 1.0);
}

const REGISTER: &str = "mutation($id: ID!) { registerNode(nodeId: $id, fingerprint: {
    hostname: \"h\", os: \"ubuntu\", agentVersion: \"t\",
    capacity: { cpuMillis: 4000, memoryBytes: 8000000000, storageBytes: 100000000000 } }) { id } }";

#[tokio::test]
async fn the_starter_catalog_and_templates_load_once_and_are_usable() {
    let f = fixture(true).await;
    assert!(dcloud::server::load_starter(&f.app).await.expect("load"));
    {
        let s = f.app.writer().state();
        let oses: Vec<&String> = s.catalogs.keys().collect();
        assert_eq!(oses, ["ubuntu", "ubuntu-cuda"]);
        let names: Vec<&String> = s.templates.keys().collect();
        assert_eq!(names, ["notebook-cpu", "pytorch-1gpu", "tensorflow-1gpu"]);
    }
    assert!(!dcloud::server::load_starter(&f.app)
        .await
        .expect("second load"));
    let user = token(&f, "USER", "carol").await;
    for template in ["notebook-cpu", "pytorch-1gpu"] {
        let r = post_gql(
            &f.app,
            Some(&user),
            "mutation($t: String!) { createFromTemplate(template: $t) { id } }",
            json!({ "t": template }),
        )
        .await;
        assert!(
            r.json()["data"]["createFromTemplate"]["id"].is_string(),
            "{}",
            r.body
        );
    }
}
