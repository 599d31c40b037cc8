//! The single writer: the one task that owns the log and the live state. It drains
//! every command waiting in its queue, decides each against the state left by the ones
//! before it, appends all their events as one durable batch (group commit), then
//! answers the callers. Subscribers follow the log's tail.
//!
//! Fail-stop: when an append cannot be made durable the writer stops for good; every
//! later command is refused and [`WriterHandle::fatal`] says why. A restart replays
//! the log.

use std::sync::{Arc, Mutex, RwLock};
use std::thread;

use dcloud_events::{Envelope, EventLog, LogError, NewEvent, GENESIS_HASH, SCHEMA_VERSION};
use dcloud_projections::{decide, Actor, Command, Ctx, DomainError, Settings, State};
use tokio::sync::{mpsc, oneshot};
use tracing::{error, info, warn};

/// The most commands decided and appended as one batch.
pub const MAX_BATCH: usize = 1024;

/// How many commands may wait for the writer, and how long a caller waits for room
/// before it is told `Overloaded` (back-pressure instead of unbounded growth).
#[derive(Debug, Clone, Copy)]
pub struct QueueLimits {
    pub capacity: usize,
    pub wait: std::time::Duration,
}

impl Default for QueueLimits {
    fn default() -> Self {
        QueueLimits {
            capacity: MAX_BATCH * 4,
            wait: std::time::Duration::from_secs(2),
        }
    }
}

/// Why a submitted command produced no events.
#[derive(Debug, thiserror::Error)]
pub enum WriterError {
    #[error(transparent)]
    Domain(#[from] DomainError),
    /// The writer stopped after a storage failure; the outcome of this command is
    /// unknown only if it was in the failed batch, which a restart resolves from the log.
    #[error("the writer has stopped: {0}")]
    Stopped(String),
    /// The queue stayed full for the whole wait: nothing was done; retry after the
    /// given time.
    #[error("the server is overloaded ({queued} commands waiting); retry in {retry_after_ms} ms")]
    Overloaded { queued: usize, retry_after_ms: u64 },
}

/// What the writer thread consumes.
enum Msg {
    Submit(Box<Submission>),
    Shutdown,
}

/// One command and where its answer goes.
struct Submission {
    cmd: Command,
    actor: Actor,
    correlation: String,
    reply: oneshot::Sender<Result<Vec<Envelope>, WriterError>>,
}

/// Wall clock, injected so tests can fix time.
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

pub fn system_clock() -> Clock {
    Arc::new(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0)
    })
}

/// Cheap to clone; every part of the server submits through one of these.
#[derive(Clone)]
pub struct WriterHandle {
    tx: mpsc::Sender<Msg>,
    shared: Arc<Shared>,
    limits: QueueLimits,
}

/// What the writer thread and the handles share.
struct Shared {
    state: RwLock<State>,
    log: Arc<dyn EventLog>,
    fatal: Mutex<Option<String>>,
    thread: Mutex<Option<thread::JoinHandle<()>>>,
}

impl WriterHandle {
    /// Decides `cmd` and, when it yields events, makes them durable. Returns the
    /// envelopes appended for it (possibly none: e.g. a heartbeat between log intervals).
    pub async fn submit(
        &self,
        cmd: Command,
        actor: Actor,
        correlation: String,
    ) -> Result<Vec<Envelope>, WriterError> {
        let (reply, rx) = oneshot::channel();
        let sub = Submission {
            cmd,
            actor,
            correlation,
            reply,
        };
        let msg = match self.tx.try_send(Msg::Submit(Box::new(sub))) {
            Ok(()) => None,
            Err(mpsc::error::TrySendError::Full(msg)) => Some(msg),
            Err(mpsc::error::TrySendError::Closed(_)) => return Err(self.stopped()),
        };
        if let Some(msg) = msg {
            match tokio::time::timeout(self.limits.wait, self.tx.send(msg)).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Err(self.stopped()),
                Err(_) => {
                    return Err(WriterError::Overloaded {
                        queued: self.limits.capacity,
                        retry_after_ms: (self.limits.wait.as_millis() as u64).max(100),
                    })
                }
            }
        }
        rx.await.unwrap_or_else(|_| Err(self.stopped()))
    }

    /// Blocking variant for callers outside the runtime (tests, offline tools).
    pub fn submit_blocking(
        &self,
        cmd: Command,
        actor: Actor,
        correlation: String,
    ) -> Result<Vec<Envelope>, WriterError> {
        let (reply, rx) = oneshot::channel();
        let sub = Submission {
            cmd,
            actor,
            correlation,
            reply,
        };
        if self.tx.blocking_send(Msg::Submit(Box::new(sub))).is_err() {
            return Err(self.stopped());
        }
        rx.blocking_recv().unwrap_or_else(|_| Err(self.stopped()))
    }

    fn stopped(&self) -> WriterError {
        let why = self.fatal().unwrap_or_else(|| "shut down".into());
        WriterError::Stopped(why)
    }

    /// Read access to the live state. Only durable state is ever visible here: the
    /// writer holds the write lock from decide to fsync.
    pub fn state(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.shared.state.read().unwrap_or_else(|p| p.into_inner())
    }

    pub fn log(&self) -> &Arc<dyn EventLog> {
        &self.shared.log
    }

    /// Set once the writer has stopped on a storage error.
    pub fn fatal(&self) -> Option<String> {
        self.shared
            .fatal
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Stops taking commands, lets the writer finish the batch in hand, and returns
    /// once its thread has exited. Commands still queued, and any submitted through
    /// other handles afterwards, are refused with `Stopped`.
    pub fn shutdown(self) {
        let thread = self
            .shared
            .thread
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        let _ = self.tx.blocking_send(Msg::Shutdown);
        if let Some(t) = thread {
            let _ = t.join();
        }
    }
}

/// How the writer runs.
#[derive(Clone)]
pub struct WriterConfig {
    pub settings: Settings,
    /// Store a snapshot of the state every this many events (0: never).
    pub snapshot_every: u64,
    pub clock: Clock,
}

/// Starts the writer thread over `log`, with `state` already recovered from it.
pub fn spawn(log: Arc<dyn EventLog>, state: State, config: WriterConfig) -> WriterHandle {
    spawn_with(log, state, config, QueueLimits::default())
}

/// [`spawn`] with a queue of the given limits.
pub fn spawn_with(
    log: Arc<dyn EventLog>,
    state: State,
    config: WriterConfig,
    limits: QueueLimits,
) -> WriterHandle {
    let (tx, rx) = mpsc::channel(limits.capacity.max(1));
    let shared = Arc::new(Shared {
        state: RwLock::new(state),
        log,
        fatal: Mutex::new(None),
        thread: Mutex::new(None),
    });
    let worker = shared.clone();
    let thread = thread::Builder::new()
        .name("dcloud-writer".into())
        .spawn(move || run(&worker, rx, &config))
        .expect("spawning the writer thread");
    *shared.thread.lock().unwrap_or_else(|p| p.into_inner()) = Some(thread);
    WriterHandle { tx, shared, limits }
}

fn run(h: &Shared, mut rx: mpsc::Receiver<Msg>, config: &WriterConfig) {
    let mut since_snapshot = 0u64;
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut stop: Option<String> = None;
    while stop.is_none() {
        let Some(first) = rx.blocking_recv() else {
            break;
        };
        let mut shutdown = false;
        let mut next = Some(first);
        while let Some(msg) = next.take() {
            match msg {
                Msg::Submit(s) => batch.push(*s),
                Msg::Shutdown => {
                    shutdown = true;
                    break;
                }
            }
            if batch.len() < MAX_BATCH {
                next = rx.try_recv().ok();
            }
        }
        if !batch.is_empty() {
            match commit_batch(h, config, &mut batch) {
                Ok(appended) => {
                    since_snapshot += appended;
                    if config.snapshot_every > 0 && since_snapshot >= config.snapshot_every {
                        since_snapshot = 0;
                        snapshot(h);
                    }
                }
                Err(e) => {
                    error!(error = %e, "append could not be made durable; the writer stops (restart replays the log)");
                    let why = e.to_string();
                    *h.fatal.lock().unwrap_or_else(|p| p.into_inner()) = Some(why.clone());
                    for s in batch.drain(..) {
                        let _ = s.reply.send(Err(WriterError::Stopped(why.clone())));
                    }
                    stop = Some(why);
                }
            }
        }
        if shutdown {
            stop = Some("shut down".into());
        }
    }
    let why = stop.unwrap_or_else(|| "shut down".into());
    rx.close();
    while let Ok(msg) = rx.try_recv() {
        if let Msg::Submit(s) = msg {
            let _ = s.reply.send(Err(WriterError::Stopped(why.clone())));
        }
    }
    info!(reason = %why, "writer stopped");
}

/// Decides and applies each submission in order, then appends all events in one
/// durable batch. Returns the number of events appended.
fn commit_batch(
    h: &Shared,
    config: &WriterConfig,
    batch: &mut Vec<Submission>,
) -> Result<u64, LogError> {
    let mut state = h.state.write().unwrap_or_else(|p| p.into_inner());
    let now = (config.clock)();
    let first_seq = state.last_seq() + 1;
    let mut next_seq = first_seq;
    let mut pending: Vec<NewEvent> = Vec::new();
    // Per submission: Ok(range of indices in `pending`) or the refusal.
    let mut outcomes: Vec<Result<std::ops::Range<usize>, DomainError>> =
        Vec::with_capacity(batch.len());
    let settings = std::sync::Arc::new(config.settings.clone());
    for s in batch.iter() {
        let ctx = Ctx {
            now_ms: now,
            actor: s.actor.clone(),
            settings: settings.clone(),
        };
        match decide(&state, &s.cmd, &ctx) {
            Ok(events) => {
                let start = pending.len();
                let actor = s.actor.label();
                for event in events {
                    // Apply now so the next command is decided against this one's
                    // outcome; readers can't see it until the lock is released.
                    let provisional = Envelope {
                        seq: next_seq,
                        time_ms: now,
                        actor: actor.clone(),
                        correlation: s.correlation.clone(),
                        schema: SCHEMA_VERSION,
                        prev_hash: GENESIS_HASH,
                        hash: GENESIS_HASH,
                        event,
                    };
                    state.apply(&provisional);
                    next_seq += 1;
                    pending.push(NewEvent {
                        time_ms: now,
                        actor: provisional.actor,
                        correlation: provisional.correlation,
                        event: provisional.event,
                    });
                }
                outcomes.push(Ok(start..pending.len()));
            }
            Err(e) => outcomes.push(Err(e)),
        }
    }
    let appended = pending.len() as u64;
    let envelopes = if pending.is_empty() {
        Vec::new()
    } else {
        h.log.append(first_seq - 1, pending)?
    };
    drop(state);
    for (s, outcome) in batch.drain(..).zip(outcomes) {
        let reply = match outcome {
            Ok(range) => Ok(envelopes[range].to_vec()),
            Err(e) => Err(WriterError::Domain(e)),
        };
        let _ = s.reply.send(reply);
    }
    Ok(appended)
}

fn snapshot(h: &Shared) {
    let (seq, bytes) = {
        let state = h.state.read().unwrap_or_else(|p| p.into_inner());
        (state.last_seq(), state.to_snapshot_bytes())
    };
    match h.log.save_snapshot(seq, &bytes) {
        Ok(()) => info!(seq, bytes = bytes.len(), "snapshot stored"),
        Err(e) => warn!(seq, error = %e, "snapshot not stored; the log is still the truth"),
    }
}
