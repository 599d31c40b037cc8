//! Read latency while the writer commits (`cargo bench -p replay-tests --bench
//! read_latency`): one client sends a GraphQL request (`{ me { name } }` through the
//! real router: the bearer-token middleware and the resolver both read the live state)
//! after another while a second client keeps the writer busy with batches of 256
//! events (256 concurrent `createToken` commands, one group commit each). Prints the
//! request latency percentiles and the time a batch takes. `BENCH_QUICK=1` shrinks it.
//! It uses only the writer API the tree had before the live state moved off the
//! fsync, so the same file measures both (docs/reliability.md).

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dcloud::server::{router, AppState, ServerConfig};
use dcloud::writer::{system_clock, WriterConfig};
use dcloud_events::model::Role;
use dcloud_events::EventLog;
use dcloud_projections::{Actor, Command, Settings};
use tower::ServiceExt;

const BATCH: usize = 256;

fn main() {
    let rounds = if std::env::var_os("BENCH_QUICK").is_some() {
        40
    } else {
        200
    };
    let base =
        std::env::var("BENCH_DIR").unwrap_or_else(|_| env!("CARGO_TARGET_TMPDIR").to_string());
    std::fs::create_dir_all(&base).expect("bench dir");
    let tmp = tempfile::tempdir_in(&base).expect("tempdir");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let fjall = dcloud::store::open_log(tmp.path()).expect("log");
    let log: Arc<dyn EventLog> = fjall.clone();
    let writer = dcloud::spawn_writer(
        log,
        Default::default(),
        WriterConfig {
            settings: Settings::default(),
            snapshot_every: 0,
            keep_snapshots: dcloud::writer::DEFAULT_KEEP_SNAPSHOTS,
            clock: system_clock(),
        },
    );
    let (token, secret_hash) = dcloud_graphql::new_token([7; 32]);
    rt.block_on(writer.submit(
        Command::CreateToken {
            token_id: "bench-admin".into(),
            name: "bench".into(),
            role: Role::Admin,
            secret_hash,
            node_id: None,
        },
        Actor::system(),
        "setup".into(),
    ))
    .expect("admin token");
    let app = AppState::new(writer.clone(), fjall, &ServerConfig::new(tmp.path()));

    let done = Arc::new(AtomicBool::new(false));
    let reader = {
        let (done, app, token) = (done.clone(), app.clone(), token.clone());
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("reader runtime");
            let mut samples = Vec::new();
            while !done.load(Ordering::Relaxed) {
                let req = axum::http::Request::post("/graphql")
                    .header("content-type", "application/json")
                    .header("authorization", format!("Bearer {token}"))
                    .body(axum::body::Body::from(r#"{"query":"{ me { name } }"}"#))
                    .expect("request");
                let t = Instant::now();
                let resp = rt
                    .block_on(router(app.clone()).oneshot(req))
                    .expect("response");
                assert!(resp.status().is_success());
                samples.push(t.elapsed());
            }
            samples
        })
    };
    let mut batch_times = Vec::new();
    let mut n = 0u64;
    for _ in 0..rounds {
        let t = Instant::now();
        rt.block_on(async {
            let mut tasks = Vec::with_capacity(BATCH);
            for _ in 0..BATCH {
                n += 1;
                let w = writer.clone();
                let cmd = Command::CreateToken {
                    token_id: format!("t{n}"),
                    name: format!("t{n}"),
                    role: Role::User,
                    secret_hash: *blake3::hash(&n.to_be_bytes()).as_bytes(),
                    node_id: None,
                };
                tasks.push(tokio::spawn(async move {
                    w.submit(cmd, Actor::system(), "load".into()).await
                }));
            }
            for t in tasks {
                t.await.expect("join").expect("accepted");
            }
        });
        batch_times.push(t.elapsed());
    }
    done.store(true, Ordering::Relaxed);
    let mut samples = reader.join().expect("reader");
    samples.sort();
    batch_times.sort();
    let pct = |v: &[Duration], p: f64| v[((v.len() as f64 * p) as usize).min(v.len() - 1)];
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!("# read latency while the writer commits\n");
    println!(
        "{rounds} rounds of {BATCH} concurrent createToken commands ({} events); {} requests measured.\n",
        rounds * BATCH,
        samples.len()
    );
    println!("| request p50 | request p99 | request max | batch of {BATCH} p50 | batch p99 |");
    println!("|---:|---:|---:|---:|---:|");
    println!(
        "| {:.3} ms | {:.3} ms | {:.3} ms | {:.2} ms | {:.2} ms |",
        ms(pct(&samples, 0.50)),
        ms(pct(&samples, 0.99)),
        ms(*samples.last().expect("samples")),
        ms(pct(&batch_times, 0.50)),
        ms(pct(&batch_times, 0.99))
    );
    drop(app);
    writer.shutdown();
}
