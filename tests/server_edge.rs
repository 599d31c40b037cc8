//! The edge on a real socket: open websocket connections and subscriptions per token
//! are capped (4429 / `OVERLOADED`), and revoking a token closes its open websocket
//! sessions (4403), for every role that holds them.

use std::time::Duration;

use dcloud::server::{start, Limits, Server, ServerConfig, CLOSE_FORBIDDEN, CLOSE_OVERLOADED};
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

const WAIT: Duration = Duration::from_secs(15);

async fn server(dir: &std::path::Path, limits: Limits) -> Server {
    let mut c = ServerConfig::new(dir);
    c.listen = "127.0.0.1:0".parse().expect("addr");
    c.limits = limits;
    start(c).await.expect("start")
}

async fn gql(url: &str, token: &str, query: &str, vars: Value) -> Value {
    let body: Value = reqwest::Client::new()
        .post(format!("{url}/graphql"))
        .bearer_auth(token)
        .json(&json!({ "query": query, "variables": vars }))
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json body");
    assert!(body.get("errors").is_none(), "errors: {body}");
    body["data"].clone()
}

async fn token(url: &str, admin: &str, role: &str, node: Option<&str>) -> (String, String) {
    let d = gql(
        url,
        admin,
        "mutation($r: Role!, $n: ID) { createToken(role: $r, name: \"t\", nodeId: $n) { id token } }",
        json!({"r": role, "n": node}),
    )
    .await;
    (
        d["createToken"]["id"].as_str().expect("id").to_string(),
        d["createToken"]["token"]
            .as_str()
            .expect("token")
            .to_string(),
    )
}

async fn next(ws: &mut Ws) -> Option<Message> {
    loop {
        match tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("a message in time")
        {
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            Some(Ok(m)) => return Some(m),
            Some(Err(_)) | None => return None,
        }
    }
}

/// Connects and sends `connection_init` with `token`; returns the socket and the
/// first answer.
async fn open(url: &str, token: &str) -> (Ws, Option<Message>) {
    let ws_url = format!("{}/graphql/ws", url.replacen("http", "ws", 1));
    let mut req = ws_url.into_client_request().expect("ws request");
    req.headers_mut().insert(
        "sec-websocket-protocol",
        "graphql-transport-ws".parse().expect("header"),
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(req)
        .await
        .expect("connect");
    let init = json!({"type": "connection_init", "payload": {"token": token}});
    ws.send(Message::text(init.to_string()))
        .await
        .expect("send");
    let first = next(&mut ws).await;
    (ws, first)
}

fn acked(m: &Option<Message>) -> bool {
    matches!(m, Some(Message::Text(t)) if t.as_str().contains("connection_ack"))
}

fn closed_with(m: &Option<Message>) -> Option<u16> {
    match m {
        Some(Message::Close(Some(f))) => Some(u16::from(f.code)),
        _ => None,
    }
}

/// A subscription the role may hold: agents follow their assignments, others events.
async fn subscribe(ws: &mut Ws, id: &str, role: &str) {
    let query = if role == "AGENT" {
        "subscription { assignments(nodeId: \"n1\") { seq } }"
    } else {
        "subscription { events { seq } }"
    };
    let sub = json!({"id": id, "type": "subscribe", "payload": {"query": query}});
    ws.send(Message::text(sub.to_string())).await.expect("send");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_and_subscriptions_per_token_are_capped() {
    let dir = tempfile::tempdir().expect("dir");
    let s = server(
        dir.path(),
        Limits {
            max_connections_per_token: 1,
            max_subscriptions_per_token: 1,
            ..Limits::default()
        },
    )
    .await;
    let url = s.url();
    let admin = s.admin_token.clone().expect("admin");
    for (role, node) in [
        ("ADMIN", None),
        ("USER", None),
        ("AUDITOR", None),
        ("AGENT", Some("n1")),
    ] {
        let (_, t) = token(&url, &admin, role, node).await;
        let (mut first, m) = open(&url, &t).await;
        assert!(acked(&m), "{role}: {m:?}");
        let (_second, m) = open(&url, &t).await;
        assert_eq!(closed_with(&m), Some(CLOSE_OVERLOADED), "{role}: {m:?}");

        subscribe(&mut first, "1", role).await;
        subscribe(&mut first, "2", role).await;
        // The second subscription is refused with OVERLOADED; the first stays open.
        let refused = loop {
            let Some(Message::Text(t)) = next(&mut first).await else {
                panic!("{role}: connection closed")
            };
            let v: Value = serde_json::from_str(t.as_str()).expect("json");
            if v["id"] == "2" {
                break v;
            }
        };
        let code = refused["payload"][0]["extensions"]["code"]
            .as_str()
            .or(refused["payload"]["errors"][0]["extensions"]["code"].as_str());
        assert_eq!(code, Some("OVERLOADED"), "{role}: {refused}");

        // Once the first connection closes, its place is free again.
        drop(first);
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let (_ws, m) = open(&url, &t).await;
            if acked(&m) {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{role}: never freed"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_a_token_closes_its_open_websockets() {
    let dir = tempfile::tempdir().expect("dir");
    let s = server(
        dir.path(),
        Limits {
            token_recheck: Duration::from_millis(50),
            ..Limits::default()
        },
    )
    .await;
    let url = s.url();
    let admin = s.admin_token.clone().expect("admin");
    for (role, node) in [
        ("USER", None),
        ("AUDITOR", None),
        ("AGENT", Some("n1")),
        ("ADMIN", None),
    ] {
        let (id, t) = token(&url, &admin, role, node).await;
        let (mut ws, m) = open(&url, &t).await;
        assert!(acked(&m), "{role}: {m:?}");
        subscribe(&mut ws, "1", role).await;
        gql(
            &url,
            &admin,
            "mutation($id: ID!) { revokeToken(id: $id) }",
            json!({"id": id}),
        )
        .await;
        let closed = loop {
            match next(&mut ws).await {
                Some(Message::Close(f)) => break f.map(|f| u16::from(f.code)),
                Some(_) => continue,
                None => break None,
            }
        };
        assert_eq!(closed, Some(CLOSE_FORBIDDEN), "{role}");
        let (_ws, m) = open(&url, &t).await;
        assert_eq!(
            closed_with(&m),
            Some(CLOSE_FORBIDDEN),
            "{role}: reconnecting"
        );
    }
    s.shutdown().await;
}
