//! TLS with a real handshake: a CA and a server certificate made here (rcgen); the
//! server serves HTTPS and WSS; the agent's and the CLI's clients trust the CA file
//! and are refused without it; a simulated fleet joins over TLS with one join token,
//! each node receiving its own node-bound token, kept with mode 0600.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use dcloud::agent_cmd::{node_token_path, run_async, AgentArgs};
use dcloud::server::{start, Server, ServerConfig, TlsFiles};
use dcloud_agent::runtime::protocol::SubEvent;
use dcloud_agent::runtime::{ClientTls, WsConnection};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(20);

/// Writes `ca.pem`, `server.pem` and `server.key` into `dir` (the server's name is
/// `localhost` and 127.0.0.1).
fn make_certs(dir: &Path) {
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "dcloud test ca");
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().expect("ca key")).expect("ca");
    let key = KeyPair::generate().expect("server key");
    let params = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
        .expect("server params");
    let cert = params.signed_by(&key, &ca).expect("server cert");
    std::fs::write(dir.join("ca.pem"), ca.pem()).expect("write ca");
    std::fs::write(dir.join("server.pem"), cert.pem()).expect("write cert");
    std::fs::write(dir.join("server.key"), key.serialize_pem()).expect("write key");
}

async fn tls_server(data: &Path, certs: &Path) -> Server {
    let mut c = ServerConfig::new(data);
    c.listen = "127.0.0.1:0".parse().expect("addr");
    c.tls = Some(TlsFiles {
        cert: certs.join("server.pem"),
        key: certs.join("server.key"),
    });
    start(c).await.expect("tls server starts")
}

async fn gql(http: &reqwest::Client, url: &str, token: &str, query: &str, vars: Value) -> Value {
    let body: Value = http
        .post(format!("{url}/graphql"))
        .bearer_auth(token)
        .json(&json!({"query": query, "variables": vars}))
        .send()
        .await
        .expect("https request")
        .json()
        .await
        .expect("json");
    assert!(body.get("errors").is_none(), "{body}");
    body["data"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_and_wss_with_the_ca_and_refused_without_it() {
    let certs = tempfile::tempdir().expect("dir");
    make_certs(certs.path());
    let data = tempfile::tempdir().expect("dir");
    let server = tls_server(data.path(), certs.path()).await;
    let url = server.url();
    assert!(url.starts_with("https://"), "{url}");
    let admin = server.admin_token.clone().expect("admin");
    let tls = ClientTls::from_ca_file(&certs.path().join("ca.pem")).expect("ca file");

    // HTTPS GraphQL with the CA.
    let http = tls
        .apply(reqwest::Client::builder())
        .expect("ca")
        .build()
        .expect("client");
    let me = gql(&http, &url, &admin, "{ me { role } }", json!({})).await;
    assert_eq!(me["me"]["role"], "ADMIN");
    // Without the CA the handshake fails; plain HTTP on the TLS port gets nothing.
    let refused = reqwest::Client::new()
        .post(format!("{url}/graphql"))
        .json(&json!({"query": "{ __typename }"}))
        .send()
        .await;
    assert!(refused.is_err(), "a client without the CA was served");
    let plain = reqwest::Client::new()
        .post(format!("{}/graphql", url.replacen("https", "http", 1)))
        .json(&json!({"query": "{ __typename }"}))
        .send()
        .await;
    assert!(plain.is_err(), "plain http was served on the tls port");

    // wss:// subscription with the CA; refused without it.
    let ws_url = format!("{}/graphql/ws", url.replacen("https", "wss", 1));
    let conn = WsConnection::connect_with(&ws_url, &admin, &tls)
        .await
        .expect("wss with the ca");
    let mut sub = conn
        .subscribe("subscription { events { type } }", json!({}))
        .expect("subscribe");
    let deadline = tokio::time::Instant::now() + WAIT;
    while server.app().metrics().subscriptions_open() < 1 {
        assert!(tokio::time::Instant::now() < deadline, "never subscribed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    gql(
        &http,
        &url,
        &admin,
        "mutation { createToken(role: USER, name: \"u\") { id } }",
        json!({}),
    )
    .await;
    match tokio::time::timeout(WAIT, sub.next())
        .await
        .expect("in time")
    {
        Some(SubEvent::Data(d)) => assert_eq!(d["events"]["type"], "TokenCreated", "{d}"),
        other => panic!("expected an event, got {other:?}"),
    }
    let no_ca = WsConnection::connect(&ws_url, &admin).await;
    assert!(no_ca.is_err(), "wss without the ca was accepted");

    // The CLI: --ca-file trusts the CA; without it the command fails to connect.
    let bin = env!("CARGO_BIN_EXE_dcloud");
    let ok = Command::new(bin)
        .args(["--server", &url, "--token", &admin, "--ca-file"])
        .arg(certs.path().join("ca.pem"))
        .args(["--output", "json", "nodes"])
        .env_remove("DCLOUD_CA_FILE")
        .output()
        .expect("run cli");
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let bad = Command::new(bin)
        .args(["--server", &url, "--token", &admin, "nodes"])
        .env_remove("DCLOUD_CA_FILE")
        .output()
        .expect("run cli");
    assert_eq!(
        bad.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
    // `token create --role join` over HTTPS.
    let made = Command::new(bin)
        .args(["--server", &url, "--token", &admin, "--output", "json"])
        .args([
            "token", "create", "--role", "join", "--name", "rack", "--uses", "2",
        ])
        .args(["--expires", "1h"])
        .env("DCLOUD_CA_FILE", certs.path().join("ca.pem"))
        .output()
        .expect("run cli");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let made: Value = serde_json::from_slice(&made.stdout).expect("json");
    assert_eq!(made["uses"], 2);
    assert!(made["expiresMs"].as_i64() > Some(0), "{made}");
    assert!(made["token"]
        .as_str()
        .is_some_and(|t| t.starts_with("dcl_")));
    let bad = Command::new(bin)
        .args(["--server", &url, "--token", &admin])
        .args(["token", "create", "--role", "join", "--expires", "soon"])
        .env("DCLOUD_CA_FILE", certs.path().join("ca.pem"))
        .output()
        .expect("run cli");
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("--expires"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
    drop(conn);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sim_fleet_joins_over_tls_with_one_join_token() {
    let certs = tempfile::tempdir().expect("dir");
    make_certs(certs.path());
    let data = tempfile::tempdir().expect("dir");
    let state = tempfile::tempdir().expect("dir");
    let server = tls_server(data.path(), certs.path()).await;
    let url = server.url();
    let admin = server.admin_token.clone().expect("admin");
    let ca = certs.path().join("ca.pem");
    dcloud::client::set_ca_file(Some(ca.clone()));
    let http = ClientTls::from_ca_file(&ca)
        .expect("ca")
        .apply(reqwest::Client::builder())
        .expect("ca")
        .build()
        .expect("client");
    let j = gql(
        &http,
        &url,
        &admin,
        "mutation { createJoinToken(name: \"rack\", uses: 3, expiresInMs: 3600000) { token } }",
        json!({}),
    )
    .await;
    let join = j["createJoinToken"]["token"]
        .as_str()
        .expect("t")
        .to_string();

    let mut args = AgentArgs::sim(3);
    args.heartbeat_interval = "200ms".into();
    args.join_token = Some(join);
    args.data = Some(state.path().to_path_buf());
    let agent = {
        let url = url.clone();
        tokio::spawn(async move { run_async(&url, "", &args).await })
    };
    let deadline = tokio::time::Instant::now() + WAIT;
    let nodes: Vec<String> = loop {
        let d = gql(
            &http,
            &url,
            &admin,
            "{ nodes(first: 10) { nodes { id } } }",
            json!({}),
        )
        .await;
        let ids: Vec<String> = d["nodes"]["nodes"]
            .as_array()
            .expect("list")
            .iter()
            .filter_map(|n| n["id"].as_str().map(str::to_string))
            .collect();
        if ids.len() == 3 {
            break ids;
        }
        assert!(!agent.is_finished(), "the agent stopped");
        assert!(
            tokio::time::Instant::now() < deadline,
            "nodes never joined: {ids:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // Each node has its own token, bound to it, kept owner-only.
    let tokens = gql(
        &http,
        &url,
        &admin,
        "{ tokens { role nodeId } joinTokens { usesLeft joined } }",
        json!({}),
    )
    .await;
    let mut bound: Vec<String> = tokens["tokens"]
        .as_array()
        .expect("tokens")
        .iter()
        .filter(|t| t["role"] == "AGENT")
        .filter_map(|t| t["nodeId"].as_str().map(str::to_string))
        .collect();
    bound.sort();
    let mut expected = nodes.clone();
    expected.sort();
    assert_eq!(bound, expected);
    assert_eq!(tokens["joinTokens"][0]["usesLeft"], 0);
    let mut seen = std::collections::HashSet::new();
    for node in &nodes {
        let path = node_token_path(state.path(), node);
        let mode = std::fs::metadata(&path)
            .expect("token file")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{}", path.display());
        let t = std::fs::read_to_string(&path)
            .expect("read")
            .trim()
            .to_string();
        assert!(seen.insert(t), "two nodes share a token");
    }
    agent.abort();
    server.shutdown().await;
}
