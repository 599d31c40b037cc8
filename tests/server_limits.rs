//! The edge's limits through the router (no sockets): failed authentications per
//! address and writes per token are answered 429 `RATE_LIMITED` with `Retry-After`
//! and `extensions.retryAfterMs`, for every role; the query field limit over HTTP.

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use dcloud::server::{router, AppState, Limits, ServerConfig};
use serde_json::{json, Value};
use tower::ServiceExt;

struct Fixture {
    app: AppState,
    admin: String,
    _dir: tempfile::TempDir,
}

async fn fixture(limits: Limits) -> Fixture {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = ServerConfig::new(dir.path());
    config.limits = limits;
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
    retry_after: Option<String>,
    body: Value,
}

async fn post(app: &AppState, token: Option<&str>, query: &str, vars: Value) -> Reply {
    let mut req = Request::post("/graphql").header(header::CONTENT_TYPE, "application/json");
    if let Some(t) = token {
        req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    let body = json!({ "query": query, "variables": vars }).to_string();
    let resp = router(app.clone())
        .oneshot(req.body(Body::from(body)).expect("request"))
        .await
        .expect("response");
    let status = resp.status();
    let retry_after = resp
        .headers()
        .get(header::RETRY_AFTER)
        .map(|v| v.to_str().unwrap_or_default().to_string());
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .expect("body");
    Reply {
        status,
        retry_after,
        body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    }
}

impl Reply {
    fn code(&self) -> &str {
        self.body["errors"][0]["extensions"]["code"]
            .as_str()
            .unwrap_or_default()
    }

    fn assert_limited(&self, what: &str) {
        assert_eq!(
            self.status,
            StatusCode::TOO_MANY_REQUESTS,
            "{what}: {}",
            self.body
        );
        assert_eq!(self.code(), "RATE_LIMITED", "{what}: {}", self.body);
        assert!(self.retry_after.is_some(), "{what}: no Retry-After");
        assert!(
            self.body["errors"][0]["extensions"]["retryAfterMs"].as_u64() > Some(0),
            "{what}: {}",
            self.body
        );
    }
}

async fn token(f: &Fixture, role: &str, name: &str, node: Option<&str>) -> String {
    let r = post(
        &f.app,
        Some(&f.admin),
        "mutation($r: Role!, $n: String!, $node: ID) { createToken(role: $r, name: $n, nodeId: $node) { token } }",
        json!({ "r": role, "n": name, "node": node }),
    )
    .await;
    r.body["data"]["createToken"]["token"]
        .as_str()
        .unwrap_or_else(|| panic!("no token in {}", r.body))
        .to_string()
}

#[tokio::test]
async fn failed_authentications_are_rate_limited_per_address() {
    let f = fixture(Limits {
        auth_failures_per_minute: 3,
        ..Limits::default()
    })
    .await;
    let bad = format!("dcl_{}", "0".repeat(64));
    for _ in 0..3 {
        let r = post(&f.app, Some(&bad), "{ me { name } }", json!({})).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.body);
    }
    let r = post(&f.app, Some(&bad), "{ me { name } }", json!({})).await;
    r.assert_limited("the fourth bad token");
    // While limited, no token from that address is checked, good or bad: answering
    // differently would let guessing go on.
    let r = post(&f.app, Some(&f.admin), "{ me { name } }", json!({})).await;
    r.assert_limited("a good token from the same address");
    // Requests without a token are not authentication attempts.
    let r = post(&f.app, None, "{ __typename }", json!({})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
}

#[tokio::test]
async fn writes_are_rate_limited_per_token_for_every_role() {
    // One write a second, bursts of two.
    let f = fixture(Limits {
        writes_per_second: 1,
        ..Limits::default()
    })
    .await;
    // Made before the limit bites: the admin's own writes count too.
    let user = token(&f, "USER", "alice", None).await;
    let agent = token(&f, "AGENT", "n1", Some("n1")).await;
    let r = post(
        &f.app,
        Some(&f.admin),
        "mutation { retryPending }",
        json!({}),
    )
    .await;
    r.assert_limited("admin's third write");
    // A second server whose admin is not limited yet makes the auditor's token.
    let g = fixture(Limits {
        writes_per_second: 1,
        ..Limits::default()
    })
    .await;
    let auditor = token(&g, "AUDITOR", "audrey", None).await;
    let cases = [
        (
            "user",
            &f.app,
            user.as_str(),
            "mutation { stop(deploymentId: \"nope\") { id } }",
        ),
        ("agent", &f.app, agent.as_str(), "mutation { retryPending }"),
        (
            "auditor",
            &g.app,
            auditor.as_str(),
            "mutation { retryPending }",
        ),
    ];
    for (who, app, t, q) in cases {
        // Two writes pass the limiter (and are decided: refused or not, they count).
        for _ in 0..2 {
            let r = post(app, Some(t), q, json!({})).await;
            assert_eq!(r.status, StatusCode::OK, "{who}: {}", r.body);
            assert_ne!(r.code(), "RATE_LIMITED", "{who}");
        }
        post(app, Some(t), q, json!({})).await.assert_limited(who);
        // Reads are not writes.
        let r = post(app, Some(t), "{ __typename }", json!({})).await;
        assert_eq!(r.status, StatusCode::OK, "{who} reads: {}", r.body);
    }
}

#[tokio::test]
async fn the_field_limit_holds_over_http() {
    let f = fixture(Limits {
        max_query_fields: 50,
        ..Limits::default()
    })
    .await;
    let q = format!(
        "{{ {} }}",
        (0..51)
            .map(|i| format!("a{i}: me {{ name }}"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    let r = post(&f.app, Some(&f.admin), &q, json!({})).await;
    assert_eq!(r.code(), "BAD_USER_INPUT", "{}", r.body);
    assert!(
        r.body["errors"][0]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("at most 50"),
        "{}",
        r.body
    );
}

#[tokio::test]
async fn failed_joins_count_as_failed_authentications_of_the_address() {
    let f = fixture(Limits {
        auth_failures_per_minute: 2,
        ..Limits::default()
    })
    .await;
    let join = "mutation($t: String!, $n: ID!) { joinNode(joinToken: $t, nodeId: $n) { nodeId } }";
    let bad = json!({ "t": format!("dcj_{}", "0".repeat(64)), "n": "n1" });
    for _ in 0..2 {
        let r = post(&f.app, None, join, bad.clone()).await;
        assert_eq!(r.code(), "FORBIDDEN", "{}", r.body);
    }
    let r = post(&f.app, None, join, bad.clone()).await;
    r.assert_limited("the third bad join token");
    assert!(
        r.body["errors"][0]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("failed authentications"),
        "{}",
        r.body
    );
    // The address is limited for tokens too, as after bad bearer tokens.
    let r = post(&f.app, Some(&f.admin), "{ me { name } }", json!({})).await;
    r.assert_limited("a good token from the same address");
}
