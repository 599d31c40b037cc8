//! The subscription router: events reach only the streams that can care (a heartbeat
//! wakes no assignment stream, counted), catch-up and resume keep no gap and no
//! duplicate from any seq (also while appends race the hand-over from the log to the
//! live buffer), and a stalled subscriber is dropped at its bounded buffer and later
//! catches up from the log.

mod common;

use std::time::Duration;

use async_graphql::Response;
use common::*;
use dcloud_graphql::{to_graphql_error, ApiError, Backend};
use dcloud_projections::{Actor, Command};
use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt};
use serde_json::{json, Value};
use tokio::sync::mpsc;

const EVENTS: &str = "subscription($after: Int) { events(after: $after) { seq type } }";
const ASSIGNMENTS: &str =
    "subscription($n: ID!, $after: Int) { assignments(nodeId: $n, after: $after) { seq kind deploymentId } }";
const HEARTBEAT: &str = "mutation($n: ID!) { heartbeat(nodeId: $n, usage: {cpuMillis: 100, memoryBytes: 1000}) { logged } }";

fn subscribe(api: &Api, actor: &Actor, query: &str, vars: Value) -> BoxStream<'static, Response> {
    api.schema
        .execute_stream(Api::request(Some(actor), query, vars))
}

/// Drives a stream on its own task; its items arrive on the receiver.
fn drive(mut stream: BoxStream<'static, Response>) -> mpsc::UnboundedReceiver<Value> {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(resp) = stream.next().await {
            if tx.send(Api::ok(resp)).is_err() {
                return;
            }
        }
    });
    rx
}

/// Polls `cond` until it holds (failing after a generous deadline).
async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn recv(rx: &mut mpsc::UnboundedReceiver<Value>) -> Value {
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("an item within the deadline")
        .expect("the stream goes on")
}

async fn next(stream: &mut BoxStream<'static, Response>) -> Value {
    let resp = tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("an item within the deadline")
        .expect("the stream goes on");
    Api::ok(resp)
}

/// Items until none comes for a short while (what a finished catch-up looks like).
async fn drain_quiet(rx: &mut mpsc::UnboundedReceiver<Value>) -> Vec<Value> {
    let mut out = Vec::new();
    while let Ok(Some(v)) = tokio::time::timeout(Duration::from_millis(300), rx.recv()).await {
        out.push(v);
    }
    out
}

/// One logged event about node A (drain, then undrain, alternately).
fn toggle(api: &Api, i: usize) {
    let node_id = NODE_A.to_string();
    let cmd = if i.is_multiple_of(2) {
        Command::DrainNode { node_id }
    } else {
        Command::UndrainNode { node_id }
    };
    assert_eq!(api.backend.run(&admin(), cmd).len(), 1);
}

#[tokio::test]
async fn a_heartbeat_wakes_no_assignment_stream_and_a_placement_wakes_only_its_node() {
    let api = Api::new();
    fleet(&api).await;
    let agent = Actor::agent(NODE_A);
    let mut a = drive(subscribe(&api, &agent, ASSIGNMENTS, json!({"n": NODE_A})));
    until("the stream registered", || {
        api.router.stats().subscriptions == 1
    })
    .await;
    let before = api.router.stats().delivered;

    for _ in 0..5 {
        api.backend.advance(61_000);
        let hb = api.data(&agent, HEARTBEAT, json!({"n": NODE_A})).await;
        assert_eq!(
            hb["heartbeat"]["logged"], true,
            "every heartbeat here is logged"
        );
    }
    let last = api.backend.log().last_seq();
    until("the heartbeats were routed", || {
        api.router.stats().routed_seq >= last
    })
    .await;
    assert_eq!(
        api.router.stats().delivered,
        before,
        "logged heartbeats woke the assignment stream"
    );

    // Placements: each one on A wakes A's stream once; those on B wake nothing.
    let mut on_a = Vec::new();
    for port in 8001..8012 {
        let (_, d, node) = deployed(&api, &alice(), &format!("app{port}"), port).await;
        if node == NODE_A {
            on_a.push(d);
        }
    }
    assert!(!on_a.is_empty(), "some deployments land on node A");
    for d in &on_a {
        let item = recv(&mut a).await;
        assert_eq!(item["assignments"]["kind"], "RUN");
        assert_eq!(item["assignments"]["deploymentId"], d.as_str());
    }
    let last = api.backend.log().last_seq();
    until("the deploys were routed", || {
        api.router.stats().routed_seq >= last
    })
    .await;
    assert_eq!(
        api.router.stats().delivered - before,
        on_a.len() as u64,
        "only A's placements woke A's stream"
    );
    assert!(drain_quiet(&mut a).await.is_empty());
}

#[tokio::test]
async fn resuming_from_any_seq_gives_every_later_event_once() {
    let api = Api::new();
    fleet(&api).await;
    for port in 8001..8006 {
        deployed(&api, &alice(), &format!("app{port}"), port).await;
    }
    for i in 0..10 {
        toggle(&api, i);
    }
    let last = api.backend.log().last_seq();
    let mut open = Vec::new();
    for k in 0..=last {
        let mut s = subscribe(&api, &auditor(), EVENTS, json!({"after": k}));
        for seq in k + 1..=last {
            assert_eq!(next(&mut s).await["events"]["seq"], seq, "after {k}");
        }
        if k.is_multiple_of(7) {
            open.push(s);
        }
    }
    // Then live, each stream once per event.
    toggle(&api, 0);
    toggle(&api, 1);
    let live = api.backend.log().last_seq();
    for s in &mut open {
        for seq in last + 1..=live {
            assert_eq!(next(s).await["events"]["seq"], seq, "live");
        }
    }
    resume_assignments(&api).await;
}

/// An agent resuming its assignments from any seq gets exactly those after it.
async fn resume_assignments(api: &Api) {
    let agent = Actor::agent(NODE_A);
    let mut all = drive(subscribe(
        api,
        &agent,
        ASSIGNMENTS,
        json!({"n": NODE_A, "after": 0}),
    ));
    let full = drain_quiet(&mut all).await;
    assert!(!full.is_empty(), "node A holds deployments");
    let seqs: Vec<u64> = full
        .iter()
        .map(|v| v["assignments"]["seq"].as_u64().expect("seq"))
        .collect();
    for &k in std::iter::once(&0).chain(&seqs) {
        let mut s = drive(subscribe(
            api,
            &agent,
            ASSIGNMENTS,
            json!({"n": NODE_A, "after": k}),
        ));
        let got = drain_quiet(&mut s).await;
        let want: Vec<&Value> = full
            .iter()
            .filter(|v| v["assignments"]["seq"].as_u64() > Some(k))
            .collect();
        assert_eq!(got.iter().collect::<Vec<_>>(), want, "after {k}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catch_up_racing_live_appends_has_no_gap_and_no_duplicate() {
    let api = std::sync::Arc::new(Api::new());
    fleet(&api).await;
    let writer = api.clone();
    let appends = tokio::task::spawn_blocking(move || {
        for i in 0..600 {
            toggle(&writer, i);
        }
    });
    // Streams joining at different points of the flood, each from the start.
    let mut streams = Vec::new();
    for _ in 0..4 {
        streams.push(subscribe(&api, &auditor(), EVENTS, json!({"after": 0})));
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    appends.await.expect("appends");
    let last = api.backend.log().last_seq();
    for mut s in streams {
        for seq in 1..=last {
            assert_eq!(next(&mut s).await["events"]["seq"], seq);
        }
    }
}

#[tokio::test]
async fn a_stalled_subscriber_is_dropped_at_its_buffer_then_catches_up_from_the_log() {
    let api = Api::new();
    fleet(&api).await;
    let from = api.backend.log().last_seq();
    let mut s = subscribe(&api, &auditor(), EVENTS, json!({}));
    // Poll it until it is registered, then stop reading (a stalled websocket).
    until("the stream registered", || {
        assert!(s.next().now_or_never().is_none(), "nothing to read yet");
        api.router.stats().subscriptions == 1
    })
    .await;
    let flood = dcloud_graphql::router::BUFFER * 4;
    for i in 0..flood {
        toggle(&api, i);
    }
    let last = api.backend.log().last_seq();
    until("the flood was routed", || {
        api.router.stats().routed_seq >= last
    })
    .await;
    let st = api.router.stats();
    assert_eq!(st.overflowed, 1, "dropped once its buffer was full");
    assert_eq!(st.subscriptions, 0, "the router holds nothing for it");

    // Read again: everything, in order, from the buffer then the log, then live.
    for seq in from + 1..=last {
        assert_eq!(next(&mut s).await["events"]["seq"], seq);
    }
    toggle(&api, flood);
    assert_eq!(next(&mut s).await["events"]["seq"], last + 1);
    assert_eq!(api.router.stats().subscriptions, 1, "it registered again");
}

#[test]
fn overloaded_is_a_clear_error_with_a_retry_after() {
    let e = ApiError::Overloaded {
        message: "4096 commands waiting".into(),
        retry_after_ms: 2000,
    };
    assert_eq!(e.code(), "OVERLOADED");
    assert_eq!(e.http_status(), 503);
    let g = to_graphql_error(&e, "req-1");
    let ext = serde_json::to_value(&g.extensions).expect("json");
    assert_eq!(ext["code"], "OVERLOADED");
    assert_eq!(ext["retryAfterMs"], 2000);
    assert!(g.message.contains("overloaded"), "{}", g.message);
}
