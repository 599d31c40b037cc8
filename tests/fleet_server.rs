//! Fleet scale on the server side: heartbeats that change nothing skip the writer
//! (counted, liveness still updated, nothing appended), and the writer's queue
//! refuses a flood with `OVERLOADED` instead of growing.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use dcloud::server::{router, AppState, ServerConfig};
use dcloud::{spawn_writer_with, QueueLimits, WriterConfig, WriterError};
use dcloud_events::{EventLog, FjallLog};
use dcloud_projections::{Actor, Command, Settings, State};
use serde_json::{json, Value};
use tower::ServiceExt;

async fn post_gql(app: &AppState, token: &str, query: &str, vars: Value) -> Value {
    let req = Request::post("/graphql")
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Body::from(
            json!({ "query": query, "variables": vars }).to_string(),
        ))
        .expect("request");
    let resp = router(app.clone()).oneshot(req).await.expect("response");
    assert_eq!(resp.status(), StatusCode::OK);
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .expect("body");
    serde_json::from_slice(&bytes).expect("json")
}

async fn metrics(app: &AppState) -> String {
    let req = Request::get("/metrics")
        .body(Body::empty())
        .expect("request");
    let resp = router(app.clone()).oneshot(req).await.expect("response");
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .expect("body");
    String::from_utf8_lossy(&bytes).into_owned()
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
        .unwrap_or_else(|| panic!("no metric {name} in\n{text}"))
        .trim()
        .parse()
        .expect("a number")
}

const REGISTER: &str = "mutation($id: ID!) { registerNode(nodeId: $id, fingerprint: {
    hostname: \"h\", os: \"ubuntu\", agentVersion: \"t\",
    capacity: { cpuMillis: 4000, memoryBytes: 8000000000, storageBytes: 100000000000 } }) { id } }";
const HEARTBEAT: &str = "mutation($id: ID!) { heartbeat(nodeId: $id, usage: {cpuMillis: 1, memoryBytes: 2}) { logged } }";

#[tokio::test]
async fn a_heartbeat_that_changes_nothing_skips_the_writer_but_counts_for_liveness() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (app, admin) = AppState::open(&ServerConfig::new(dir.path()))
        .await
        .expect("open");
    let admin = admin.expect("admin token");
    app.set_ready(true);
    let r = post_gql(
        &app,
        &admin,
        "mutation { createToken(role: AGENT, name: \"n1\", nodeId: \"n1\") { token } }",
        json!({}),
    )
    .await;
    let agent = r["data"]["createToken"]["token"]
        .as_str()
        .unwrap_or_else(|| panic!("{r}"))
        .to_string();
    post_gql(&app, &agent, REGISTER, json!({"id": "n1"})).await;
    let first = post_gql(&app, &agent, HEARTBEAT, json!({"id": "n1"})).await;
    assert_eq!(first["data"]["heartbeat"]["logged"], true, "{first}");
    let seen = app.liveness().last_seen_ms("n1").expect("heard from");
    let last = app.writer().log().last_seq();

    for _ in 0..3 {
        let quiet = post_gql(&app, &agent, HEARTBEAT, json!({"id": "n1"})).await;
        assert_eq!(quiet["data"]["heartbeat"]["logged"], false, "{quiet}");
    }
    assert_eq!(app.writer().log().last_seq(), last, "nothing appended");
    assert_eq!(
        metric(&metrics(&app).await, "dcloud_heartbeats_quiet_total"),
        3.0
    );
    assert!(app.liveness().last_seen_ms("n1") >= Some(seen));

    // The fast path refuses what the writer would: another node's heartbeat.
    let other = post_gql(&app, &agent, HEARTBEAT, json!({"id": "n2"})).await;
    assert_eq!(
        other["errors"][0]["extensions"]["code"], "FORBIDDEN",
        "{other}"
    );
    assert_eq!(app.liveness().last_seen_ms("n2"), None);
}

// Holding the state's read lock across awaits is the point: it stalls the writer.
#[allow(clippy::await_holding_lock)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_past_the_writer_queue_is_refused_with_overloaded() {
    let dir = tempfile::tempdir().expect("temp dir");
    let log: Arc<dyn EventLog> = Arc::new(FjallLog::open(dir.path()).expect("open log"));
    let limits = QueueLimits {
        capacity: 4,
        wait: Duration::from_millis(50),
    };
    let config = WriterConfig {
        settings: Settings::default(),
        snapshot_every: 0,
        keep_snapshots: dcloud::writer::DEFAULT_KEEP_SNAPSHOTS,
        clock: Arc::new(|| 1_700_000_000_000),
    };
    let writer = spawn_writer_with(log, State::new(), config, limits);

    // Stall the writer: it decides on a copy of its own, but folding a batch that
    // appended events into the live state needs the write lock held off here.
    let stall = writer.state();
    let flood = dcloud::writer::MAX_BATCH + 64;
    let mut tasks = Vec::new();
    for i in 0..flood {
        let w = writer.clone();
        tasks.push(tokio::spawn(async move {
            // Each sets a quota, so each batch appends and then waits for the fold.
            let cmd = Command::SetQuota {
                user: format!("user{i}"),
                quota: dcloud_events::model::Quota {
                    cpu_millis: Some(1000),
                    memory_bytes: None,
                    gpus: None,
                    deployments: None,
                },
            };
            w.submit(cmd, Actor::admin("admin"), format!("c{i}")).await
        }));
        if i.is_multiple_of(64) {
            tokio::task::yield_now().await;
        }
    }
    // Everything past the batch in hand and the queue's room is refused in time.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !tasks.iter().any(|t| t.is_finished()) {
        assert!(tokio::time::Instant::now() < deadline, "no refusal");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut overloaded = 0;
    let mut waiting = Vec::new();
    for t in tasks {
        if t.is_finished() {
            match t.await.expect("task") {
                Err(WriterError::Overloaded { retry_after_ms, .. }) => {
                    assert!(retry_after_ms > 0);
                    overloaded += 1;
                }
                other => panic!("only refusals finish while the writer is stalled: {other:?}"),
            }
        } else {
            waiting.push(t);
        }
    }
    // Those still waiting either get room once it frees or are refused too.
    drop(stall);
    let mut done = 0;
    for t in waiting {
        match t.await.expect("task") {
            Ok(_) => done += 1,
            Err(WriterError::Overloaded { .. }) => overloaded += 1,
            Err(e) => panic!("unexpected: {e}"),
        }
    }
    assert!(overloaded > 0, "a flood past the queue is refused");
    assert!(done > 0, "what was queued is done");
    assert_eq!(done + overloaded, flood);
    tokio::task::spawn_blocking(move || writer.shutdown())
        .await
        .expect("writer shut down");
}
