//! The writer over a log that fails or panics on command: no reader ever sees an event
//! that is not durable, and a panic in the writer is fail-stop (readiness 503, every
//! later request refused with the reason, the server's `wait` ends in an error).

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use dcloud::server::{router, AppState, ServerConfig};
use dcloud::writer::{system_clock, WriterConfig, WriterError, WriterHandle};
use dcloud_events::model::Role;
use dcloud_events::{Envelope, EventLog, FjallLog, Hash, LogError, NewEvent, Tail};
use dcloud_projections::{Actor, Command, Settings, State};
use tower::ServiceExt;

const WORK: u8 = 0;
const FAIL: u8 = 1;
const PANIC: u8 = 2;

/// A [`FjallLog`] whose next appends fail (as a failed fsync does) or panic, on command.
struct FaultyLog {
    inner: Arc<FjallLog>,
    mode: AtomicU8,
}

impl FaultyLog {
    fn set(&self, mode: u8) {
        self.mode.store(mode, Ordering::SeqCst);
    }
}

impl EventLog for FaultyLog {
    fn last_seq(&self) -> u64 {
        self.inner.last_seq()
    }
    fn last_hash(&self) -> Hash {
        self.inner.last_hash()
    }
    fn append(&self, expected_last: u64, batch: Vec<NewEvent>) -> Result<Vec<Envelope>, LogError> {
        match self.mode.load(Ordering::SeqCst) {
            FAIL => Err(LogError::Storage(fjall::Error::Io(std::io::Error::other(
                "injected: fsync failed",
            )))),
            PANIC => panic!("injected panic inside the append"),
            _ => self.inner.append(expected_last, batch),
        }
    }
    fn read_range(
        &self,
        from: u64,
        to_inclusive: u64,
    ) -> Box<dyn Iterator<Item = Result<Envelope, LogError>> + Send + '_> {
        self.inner.read_range(from, to_inclusive)
    }
    fn subscribe(&self, from: u64) -> Tail {
        self.inner.subscribe(from)
    }
    fn save_snapshot(&self, seq: u64, state: &[u8]) -> Result<(), LogError> {
        self.inner.save_snapshot(seq, state)
    }
    fn scan_snapshots(
        &self,
        max_seq: u64,
        accept: &mut dyn FnMut(u64, &[u8]) -> bool,
    ) -> Option<u64> {
        self.inner.scan_snapshots(max_seq, accept)
    }
    fn prune_snapshots(&self, keep: usize) -> Result<usize, LogError> {
        self.inner.prune_snapshots(keep)
    }
}

struct Fixture {
    log: Arc<FaultyLog>,
    fjall: Arc<FjallLog>,
    writer: WriterHandle,
    _dir: tempfile::TempDir,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("temp dir");
    let fjall = Arc::new(FjallLog::open(dir.path()).expect("open log"));
    let log = Arc::new(FaultyLog {
        inner: fjall.clone(),
        mode: AtomicU8::new(WORK),
    });
    let config = WriterConfig {
        settings: Settings::default(),
        snapshot_every: 0,
        keep_snapshots: dcloud::writer::DEFAULT_KEEP_SNAPSHOTS,
        clock: system_clock(),
    };
    let writer = dcloud::spawn_writer(log.clone(), State::default(), config);
    Fixture {
        log,
        fjall,
        writer,
        _dir: dir,
    }
}

fn create_token(id: &str) -> Command {
    Command::CreateToken {
        token_id: id.into(),
        name: id.into(),
        role: Role::User,
        secret_hash: *blake3::hash(id.as_bytes()).as_bytes(),
        node_id: None,
    }
}

fn submit(w: &WriterHandle, cmd: Command) -> Result<Vec<Envelope>, WriterError> {
    w.submit_blocking(cmd, Actor::system(), "test".into())
}

/// The invariant of docs/ARCHITECTURE.md: an append that fails leaves nothing of its
/// batch in the live state, and the state readers see equals the durable log.
#[test]
fn a_failed_append_is_never_visible_to_readers() {
    let f = fixture();
    submit(&f.writer, create_token("kept")).expect("first append");
    f.log.set(FAIL);
    let err = submit(&f.writer, create_token("lost")).expect_err("the append fails");
    assert!(
        matches!(&err, WriterError::Stopped(why) if why.contains("injected: fsync failed")),
        "{err}"
    );
    let state = f.writer.state();
    assert!(state.tokens.contains_key("kept"));
    assert!(
        !state.tokens.contains_key("lost"),
        "a reader sees an event whose append failed"
    );
    assert_eq!(
        state.last_seq(),
        f.fjall.last_seq(),
        "live state = durable log"
    );
    drop(state);
    assert!(f.writer.fatal().is_some());
    let later = submit(&f.writer, create_token("later")).expect_err("fail-stop");
    assert!(matches!(later, WriterError::Stopped(why) if why.contains("fsync failed")));
}

/// A panic inside the writer stops it for good, with the reason, like a failed fsync;
/// the live state holds nothing of the batch that panicked.
#[test]
fn a_panic_in_the_writer_stops_it_with_the_reason() {
    let f = fixture();
    submit(&f.writer, create_token("kept")).expect("first append");
    f.log.set(PANIC);
    let err = submit(&f.writer, create_token("boom")).expect_err("the writer panics");
    assert!(
        matches!(&err, WriterError::Stopped(why) if why.contains("panicked") && why.contains("injected panic")),
        "{err}"
    );
    let fatal = f.writer.fatal().expect("the writer is marked stopped");
    assert!(fatal.contains("injected panic"), "{fatal}");
    f.log.set(WORK);
    let later = submit(&f.writer, create_token("later")).expect_err("every later command refused");
    assert!(
        matches!(&later, WriterError::Stopped(why) if why.contains("injected panic")),
        "{later}"
    );
    assert!(!f.writer.state().tokens.contains_key("boom"));
    assert!(!f.writer.state().tokens.contains_key("later"));
}

async fn get(app: &AppState, path: &str, token: Option<&str>) -> (StatusCode, String) {
    let mut req = Request::get(path);
    if let Some(t) = token {
        req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    let resp = router(app.clone())
        .oneshot(req.body(Body::empty()).expect("request"))
        .await
        .expect("response");
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .expect("body");
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

/// Through the server: after a panic in the writer `/readyz` is 503 naming it, every
/// GraphQL request (read or write) is refused with the reason, and `Server::wait`
/// returns the error that makes the process exit non-zero.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_writer_panic_the_server_refuses_everything_and_stops() {
    let f = fixture();
    let dir = tempfile::tempdir().expect("temp dir");
    let config = ServerConfig::new(dir.path());
    let app = AppState::new(f.writer.clone(), f.fjall.clone(), &config);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let server = dcloud::server::serve(listener, app.clone(), None, config).expect("serve");
    assert_eq!(get(&app, "/readyz", None).await.0, StatusCode::OK);
    let writer = f.writer.clone();
    f.log.set(PANIC);
    let err = tokio::task::spawn_blocking(move || submit(&writer, create_token("boom")))
        .await
        .expect("join")
        .expect_err("the writer panics");
    assert!(matches!(err, WriterError::Stopped(_)));

    let (status, body) = get(&app, "/readyz", None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body.contains("injected panic"), "{body}");
    let (status, body) = get(&app, "/graphql?query=%7B__typename%7D", None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(
        body.contains("UNAVAILABLE") && body.contains("injected panic"),
        "{body}"
    );
    let (status, _) = get(&app, "/metrics", None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(get(&app, "/livez", None).await.0, StatusCode::OK);

    let stopped = server
        .wait()
        .await
        .expect_err("wait ends in the writer's error");
    assert!(
        format!("{stopped:#}").contains("injected panic"),
        "{stopped:#}"
    );
}
