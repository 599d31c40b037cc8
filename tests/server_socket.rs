//! A real server on a socket: the admin token on first start only, recovery on restart,
//! a websocket subscription (graphql-transport-ws) that authenticates in
//! `connection_init`, and the liveness timer marking a silent node lost.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use dcloud::server::{start, ServerConfig, ADMIN_TOKEN_FILE, CLOSE_FORBIDDEN};
use dcloud_projections::NodeHealth;
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

const WAIT: Duration = Duration::from_secs(15);

fn config(dir: &std::path::Path) -> ServerConfig {
    let mut c = ServerConfig::new(dir);
    c.listen = "127.0.0.1:0".parse().expect("addr");
    c.settings.node_ttl_ms = 1_500;
    c.liveness_tick = Duration::from_millis(50);
    c
}

async fn gql(url: &str, token: &str, query: &str, vars: Value) -> Value {
    let resp = reqwest::Client::new()
        .post(format!("{url}/graphql"))
        .bearer_auth(token)
        .json(&json!({ "query": query, "variables": vars }))
        .send()
        .await
        .expect("request");
    let body: Value = resp.json().await.expect("json body");
    assert!(body.get("errors").is_none(), "errors: {body}");
    body["data"].clone()
}

async fn connect(url: &str) -> Ws {
    let ws_url = format!("{}/graphql/ws", url.replacen("http", "ws", 1));
    let mut req = ws_url.into_client_request().expect("ws request");
    req.headers_mut().insert(
        "sec-websocket-protocol",
        "graphql-transport-ws".parse().expect("header"),
    );
    let (ws, resp) = tokio_tungstenite::connect_async(req)
        .await
        .expect("connect");
    assert_eq!(
        resp.headers()["sec-websocket-protocol"],
        "graphql-transport-ws"
    );
    ws
}

async fn send(ws: &mut Ws, v: Value) {
    ws.send(Message::text(v.to_string())).await.expect("send");
}

/// The next message, within the deadline.
async fn next(ws: &mut Ws) -> Message {
    tokio::time::timeout(WAIT, ws.next())
        .await
        .expect("a message in time")
        .expect("stream open")
        .expect("a message")
}

async fn next_json(ws: &mut Ws) -> Value {
    loop {
        match next(ws).await {
            Message::Text(t) => return serde_json::from_str(t.as_str()).expect("json"),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("expected text, got {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_end_to_end_on_a_socket() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = start(config(dir.path())).await.expect("start");
    let url = server.url();
    let admin = server
        .admin_token
        .clone()
        .expect("first start makes a token");

    // The token file: the token, owner-only.
    let file = dir.path().join(ADMIN_TOKEN_FILE);
    assert_eq!(
        std::fs::read_to_string(&file).expect("token file").trim(),
        admin
    );
    let mode = std::fs::metadata(&file).expect("meta").permissions().mode();
    assert_eq!(mode & 0o777, 0o600);

    // A bad token in connection_init: closed with 4403.
    let mut ws = connect(&url).await;
    let bad = format!("dcl_{}", "0".repeat(64));
    send(
        &mut ws,
        json!({"type": "connection_init", "payload": {"Authorization": format!("Bearer {bad}")}}),
    )
    .await;
    match next(&mut ws).await {
        Message::Close(Some(frame)) => assert_eq!(u16::from(frame.code), CLOSE_FORBIDDEN),
        other => panic!("expected a close frame, got {other:?}"),
    }
    // No token at all: the same.
    let mut ws = connect(&url).await;
    send(&mut ws, json!({"type": "connection_init"})).await;
    match next(&mut ws).await {
        Message::Close(Some(frame)) => assert_eq!(u16::from(frame.code), CLOSE_FORBIDDEN),
        other => panic!("expected a close frame, got {other:?}"),
    }

    // A good token: ack, subscribe, and a live event arrives.
    let mut ws = connect(&url).await;
    send(
        &mut ws,
        json!({"type": "connection_init", "payload": {"Authorization": format!("Bearer {admin}")}}),
    )
    .await;
    assert_eq!(next_json(&mut ws).await["type"], "connection_ack");
    send(
        &mut ws,
        json!({"id": "1", "type": "subscribe", "payload": {"query": "subscription { events { seq type actor } }"}}),
    )
    .await;
    // The subscription is open once the metrics say so (then the event cannot be missed:
    // it starts from "now", and "now" is before the mutation below).
    let deadline = tokio::time::Instant::now() + WAIT;
    while server.app().metrics().subscriptions_open() != 1 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "subscription never opened"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let created = gql(
        &url,
        &admin,
        "mutation { createToken(role: AGENT, name: \"n1\", nodeId: \"n1\") { token } }",
        json!({}),
    )
    .await;
    let agent = created["createToken"]["token"]
        .as_str()
        .expect("token")
        .to_string();
    let msg = next_json(&mut ws).await;
    assert_eq!(msg["type"], "next", "{msg}");
    assert_eq!(msg["id"], "1");
    assert_eq!(
        msg["payload"]["data"]["events"]["type"], "TokenCreated",
        "{msg}"
    );
    assert_eq!(
        msg["payload"]["data"]["events"]["actor"], "admin:admin",
        "{msg}"
    );

    // Liveness: the node registers, then stays silent; the timer marks it lost.
    let reg = gql(&url, &agent, REGISTER, json!({"id": "n1"})).await;
    assert_eq!(reg["registerNode"]["id"], "n1");
    assert_eq!(
        server.writer().state().node("n1").map(|n| n.health),
        Some(NodeHealth::Alive)
    );
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let health = server.writer().state().node("n1").map(|n| n.health);
        if health == Some(NodeHealth::Lost) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "node never marked lost"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let lost_by = server
        .writer()
        .log()
        .read_range(1, server.writer().state().last_seq())
        .filter_map(Result::ok)
        .find(|e| e.event.kind() == "NodeLost")
        .map(|e| e.actor)
        .expect("a NodeLost event in the log");
    assert_eq!(lost_by, "system");

    let seq_before = server.writer().state().last_seq();
    drop(ws);
    server.shutdown().await;

    // Restart on the same directory: no new token, the state recovered.
    let again = start(config(dir.path())).await.expect("restart");
    assert_eq!(again.admin_token, None);
    assert_eq!(
        std::fs::read_to_string(&file).expect("token file").trim(),
        admin
    );
    assert_eq!(again.writer().state().last_seq(), seq_before);
    assert_eq!(
        again.writer().state().node("n1").map(|n| n.health),
        Some(NodeHealth::Lost)
    );
    let me = gql(&again.url(), &admin, "{ me { name } }", json!({})).await;
    assert_eq!(me["me"]["name"], "admin");
    let ready = reqwest::get(format!("{}/readyz", again.url()))
        .await
        .expect("readyz");
    assert_eq!(ready.status(), 200);
    again.shutdown().await;
}

const REGISTER: &str = "mutation($id: ID!) { registerNode(nodeId: $id, fingerprint: {
    hostname: \"h\", os: \"ubuntu\", agentVersion: \"t\",
    capacity: { cpuMillis: 4000, memoryBytes: 8000000000, storageBytes: 100000000000 } }) { id } }";

/// Mutations sent over the websocket are held to the token's write limit, as over POST.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_over_the_websocket_are_rate_limited() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut c = config(dir.path());
    // One write a second, bursts of two.
    c.limits.writes_per_second = 1;
    let server = start(c).await.expect("server starts");
    let url = server.url();
    let admin = server.admin_token.clone().expect("admin token");
    let mut ws = connect(&url).await;
    send(
        &mut ws,
        json!({"type": "connection_init", "payload": {"Authorization": format!("Bearer {admin}")}}),
    )
    .await;
    assert_eq!(next_json(&mut ws).await["type"], "connection_ack");
    let mut codes = Vec::new();
    for id in 1..=3 {
        send(
            &mut ws,
            json!({"id": id.to_string(), "type": "subscribe",
                "payload": {"query": "mutation { retryPending }"}}),
        )
        .await;
        // `next` (data or errors) then `complete`, or `error`.
        loop {
            let m = next_json(&mut ws).await;
            match m["type"].as_str() {
                Some("next") => {
                    let code = m["payload"]["errors"][0]["extensions"]["code"]
                        .as_str()
                        .unwrap_or("OK")
                        .to_string();
                    codes.push(code);
                }
                Some("error") => {
                    let code = m["payload"][0]["extensions"]["code"]
                        .as_str()
                        .unwrap_or("ERROR")
                        .to_string();
                    codes.push(code);
                    break;
                }
                Some("complete") => break,
                _ => {}
            }
        }
    }
    assert_eq!(codes, ["OK", "OK", "RATE_LIMITED"], "{codes:?}");
    server.shutdown().await;
}
