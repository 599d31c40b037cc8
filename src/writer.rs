//! The single writer: the one task that owns the log and the live state. It drains
//! every command waiting in its queue, decides each against the state left by the ones
//! before it, appends all their events as one durable batch (group commit), then
//! answers the callers. Subscribers follow the log's tail.
//!
//! Two copies of the state: the writer's own working copy, against which it decides
//! and provisionally applies a batch, and the live copy readers see, to which it
//! applies a batch only once the log has made it durable. So no reader ever sees an
//! event that is not durable, and no reader waits on an fsync (the live copy's write
//! lock is held only to fold the durable envelopes).
//!
//! Fail-stop: when an append cannot be made durable, or the writer panics, the writer
//! stops for good; every later command is refused and [`WriterHandle::fatal`] says
//! why. A restart replays the log.
//!
//! Standby ([`spawn_standby`], for a log other servers write, as JetStream's): the
//! writer refuses every command with [`WriterError::NotLeader`] and folds what it is
//! handed of the log ([`WriterHandle::follow`]) into both copies, until
//! [`WriterHandle::promote`] makes it the leader, from the log's head. A leader that
//! is handed an event it did not append (another server wrote) stops: it was fenced.

use std::collections::HashMap;
use std::panic::{self, AssertUnwindSafe};
use std::sync::{Arc, Mutex, RwLock};
use std::thread;

use dcloud_events::{Envelope, Event, EventLog, LogError, NewEvent, GENESIS_HASH, SCHEMA_VERSION};
use dcloud_projections::{decide, Actor, Command, Ctx, DomainError, Settings, State};
use tokio::sync::{mpsc, oneshot};
use tracing::{error, info, warn};

use crate::request_keys::{self, RequestKeys};
use crate::storage::StorageGate;

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
    /// The data directory's disk is below its reserve: nothing was written, and the
    /// writer goes on (reads too); writes are taken again once space is freed.
    #[error("storage full: {0}")]
    StorageFull(String),
    /// This server is a standby: another one writes the log. Nothing was done; send
    /// the command to the leader (`leader`: its URL, when known).
    #[error("this server is a standby; writes go to the leader{}", leader.as_deref().map(|l| format!(" at {l}")).unwrap_or_else(|| " (none elected yet)".into()))]
    NotLeader { leader: Option<String> },
}

/// What the writer thread consumes.
enum Msg {
    Submit(Box<Submission>),
    /// Envelopes of the log, in order, as a standby follows it (and, once leader, its
    /// own appends again, which are skipped).
    Followed(Vec<Envelope>),
    /// Become the leader if the state holds the whole log; the answer says whether.
    Promote(oneshot::Sender<Result<u64, String>>),
    Shutdown,
}

/// One command and where its answer goes.
struct Submission {
    cmd: Command,
    actor: Actor,
    correlation: String,
    /// The client's idempotency key, if it sent one.
    key: Option<String>,
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
    /// The live state: only durable events are ever folded into it.
    state: RwLock<State>,
    log: Arc<dyn EventLog>,
    fatal: Mutex<Option<String>>,
    thread: Mutex<Option<thread::JoinHandle<()>>>,
    /// When set, a batch that would append is refused while the disk is below its
    /// reserve (see [`WriterHandle::guard_storage`]).
    storage: std::sync::OnceLock<Arc<StorageGate>>,
    /// The seq of the last envelope folded into the live state. The log holds an
    /// event a moment before the live state does (it is folded after the append is
    /// durable), so whoever reads the state for an event it took from the log waits
    /// for this to reach it first.
    applied: tokio::sync::watch::Sender<u64>,
    /// False while a standby (see the module doc).
    leading: std::sync::atomic::AtomicBool,
    /// The leader's URL as a standby last learnt it (for `NotLeader`).
    leader_hint: Mutex<Option<String>>,
}

impl WriterHandle {
    /// Whether this writer leads (always, unless spawned by [`spawn_standby`] and not
    /// promoted yet).
    pub fn is_leader(&self) -> bool {
        self.shared
            .leading
            .load(std::sync::atomic::Ordering::Acquire)
    }

    /// Records where the leader is, for the `NotLeader` answers of a standby.
    pub fn set_leader_hint(&self, leader: Option<String>) {
        *self
            .shared
            .leader_hint
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = leader;
    }

    /// The leader's URL as last learnt (a leader's own, once it leads a shared log).
    pub fn leader_hint(&self) -> Option<String> {
        self.shared
            .leader_hint
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Why a writer that does not lead refuses: it stopped, or it is a standby.
    fn refusal(&self) -> WriterError {
        if self.fatal().is_some() {
            self.stopped()
        } else {
            self.not_leader()
        }
    }

    fn not_leader(&self) -> WriterError {
        WriterError::NotLeader {
            leader: self
                .shared
                .leader_hint
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        }
    }

    /// Hands the writer envelopes read from the log (in order, each batch following
    /// the last; seqs it already holds are skipped). A standby folds them; a leader
    /// that is handed one past its own head stops (another server wrote the log).
    /// `Err` once the writer has stopped.
    pub async fn follow(&self, envelopes: Vec<Envelope>) -> Result<(), WriterError> {
        self.tx
            .send(Msg::Followed(envelopes))
            .await
            .map_err(|_| self.stopped())
    }

    /// Makes a standby the leader, from the log's head: `Ok(seq)` (the head it leads
    /// from) once its state holds every event of the log, `Err` with the reason when
    /// it does not yet (follow, then try again). A leader answers `Ok` at once.
    pub async fn promote(&self) -> Result<u64, String> {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Msg::Promote(tx)).await.is_err() {
            return Err(self.stopped().to_string());
        }
        rx.await.unwrap_or_else(|_| Err(self.stopped().to_string()))
    }

    /// Decides `cmd` and, when it yields events, makes them durable. Returns the
    /// envelopes appended for it (possibly none: e.g. a heartbeat between log intervals).
    pub async fn submit(
        &self,
        cmd: Command,
        actor: Actor,
        correlation: String,
    ) -> Result<Vec<Envelope>, WriterError> {
        self.submit_keyed(cmd, actor, correlation, None).await
    }

    /// [`WriterHandle::submit`] under the client's idempotency key: a key this actor
    /// used within [`request_keys::WINDOW_MS`] is answered with the envelopes its first
    /// submission appended, and nothing is decided again (the keys are in the log, so
    /// this holds across restarts).
    pub async fn submit_keyed(
        &self,
        cmd: Command,
        actor: Actor,
        correlation: String,
        key: Option<String>,
    ) -> Result<Vec<Envelope>, WriterError> {
        if !self.is_leader() {
            return Err(self.refusal());
        }
        let (reply, rx) = oneshot::channel();
        let sub = Submission {
            cmd,
            actor,
            correlation,
            key,
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
        if !self.is_leader() {
            return Err(self.refusal());
        }
        let (reply, rx) = oneshot::channel();
        let sub = Submission {
            cmd,
            actor,
            correlation,
            key: None,
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
    /// writer folds a batch into it after the append returned, and decides against a
    /// copy of its own. The write lock is never held across an fsync.
    pub fn state(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.shared.state.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Follows the seq of the last envelope folded into the live state (see
    /// `Shared::applied`).
    pub fn applied(&self) -> tokio::sync::watch::Receiver<u64> {
        self.shared.applied.subscribe()
    }

    pub fn log(&self) -> &Arc<dyn EventLog> {
        &self.shared.log
    }

    /// Refuses, from now on, every batch that would append while `gate` says the disk
    /// is below its reserve (`WriterError::StorageFull`; nothing is written, the writer
    /// goes on). Set once; later calls are ignored.
    pub fn guard_storage(&self, gate: Arc<StorageGate>) {
        let _ = self.shared.storage.set(gate);
    }

    /// Set once the writer has stopped on a storage error or a panic. Also set (with a
    /// reason) when the live state's lock was poisoned by a panic while it was held.
    pub fn fatal(&self) -> Option<String> {
        let fatal = self
            .shared
            .fatal
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        fatal.or_else(|| {
            self.shared
                .state
                .is_poisoned()
                .then(|| "the writer panicked while updating the live state".to_string())
        })
    }

    /// Stops the writer for good from outside (a leader that lost its lease): from now
    /// on [`WriterHandle::fatal`] says `why` and every command is refused.
    pub fn stop_with(&self, why: String) {
        self.shared
            .leading
            .store(false, std::sync::atomic::Ordering::Release);
        self.shared
            .fatal
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_or_insert(why);
        let _ = self.tx.try_send(Msg::Shutdown);
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
    /// After storing one, keep only the newest this many snapshots (0: keep all).
    pub keep_snapshots: usize,
    pub clock: Clock,
}

/// Snapshots kept by default: the newest few cover a restart and recent `at(seq:)`
/// reads; older points in history are rebuilt from an earlier snapshot or the log.
pub const DEFAULT_KEEP_SNAPSHOTS: usize = 3;

/// Starts the writer thread over `log`, with `state` already recovered from it.
pub fn spawn(log: Arc<dyn EventLog>, state: State, config: WriterConfig) -> WriterHandle {
    spawn_with(log, state, config, QueueLimits::default())
}

/// A writer that starts as a standby over a log another server writes (see the module
/// doc): it leads once [`WriterHandle::promote`] succeeds.
pub fn spawn_standby(log: Arc<dyn EventLog>, state: State, config: WriterConfig) -> WriterHandle {
    spawn_inner(log, state, config, QueueLimits::default(), false)
}

/// [`spawn`] with a queue of the given limits.
pub fn spawn_with(
    log: Arc<dyn EventLog>,
    state: State,
    config: WriterConfig,
    limits: QueueLimits,
) -> WriterHandle {
    spawn_inner(log, state, config, limits, true)
}

fn spawn_inner(
    log: Arc<dyn EventLog>,
    state: State,
    config: WriterConfig,
    limits: QueueLimits,
    leading: bool,
) -> WriterHandle {
    let (tx, rx) = mpsc::channel(limits.capacity.max(1));
    let working = state.clone();
    let applied = tokio::sync::watch::Sender::new(state.last_seq());
    let shared = Arc::new(Shared {
        state: RwLock::new(state),
        applied,
        log,
        fatal: Mutex::new(None),
        thread: Mutex::new(None),
        storage: std::sync::OnceLock::new(),
        leading: std::sync::atomic::AtomicBool::new(leading),
        leader_hint: Mutex::new(None),
    });
    let worker = shared.clone();
    let thread = thread::Builder::new()
        .name("dcloud-writer".into())
        .spawn(move || run(&worker, rx, &config, working))
        .expect("spawning the writer thread");
    *shared.thread.lock().unwrap_or_else(|p| p.into_inner()) = Some(thread);
    WriterHandle { tx, shared, limits }
}

fn run(h: &Shared, mut rx: mpsc::Receiver<Msg>, config: &WriterConfig, mut working: State) {
    let mut since_snapshot = 0u64;
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut stop: Option<String> = None;
    let mut keys = match RequestKeys::load(&*h.log, (config.clock)()) {
        Ok(keys) => keys,
        Err(e) => {
            let why = format!("reading the idempotency keys from the log: {e}");
            error!(reason = %why, "the writer stops");
            *h.fatal.lock().unwrap_or_else(|p| p.into_inner()) = Some(why.clone());
            stop = Some(why);
            RequestKeys::default()
        }
    };
    while stop.is_none() {
        let Some(first) = rx.blocking_recv() else {
            break;
        };
        let mut shutdown = false;
        let mut next = Some(first);
        while let Some(msg) = next.take() {
            match msg {
                Msg::Submit(s) if h.leading.load(std::sync::atomic::Ordering::Acquire) => {
                    batch.push(*s)
                }
                Msg::Submit(s) => {
                    let leader = h
                        .leader_hint
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .clone();
                    let _ = s.reply.send(Err(WriterError::NotLeader { leader }));
                }
                Msg::Followed(envs) => {
                    if let Err(why) = fold_followed(h, &mut working, envs) {
                        error!(reason = %why, "the writer stops");
                        *h.fatal.lock().unwrap_or_else(|p| p.into_inner()) = Some(why.clone());
                        stop = Some(why);
                        break;
                    }
                }
                Msg::Promote(reply) => {
                    let _ = reply.send(promote(h, config, &working, &mut keys));
                }
                Msg::Shutdown => {
                    shutdown = true;
                    break;
                }
            }
            if batch.len() < MAX_BATCH {
                next = rx.try_recv().ok();
            }
        }
        if stop.is_some() {
            for s in batch.drain(..) {
                let _ = s
                    .reply
                    .send(Err(WriterError::Stopped(stop.clone().unwrap_or_default())));
            }
            break;
        }
        if !batch.is_empty() {
            // A panic anywhere in deciding, appending or folding leaves the working
            // state unknown: fail-stop, exactly as for a failed fsync.
            let outcome = panic::catch_unwind(AssertUnwindSafe(|| {
                commit_batch(h, config, &mut working, &mut keys, &mut batch)
            }));
            let failure = match outcome {
                Ok(Ok(appended)) => {
                    since_snapshot += appended;
                    if config.snapshot_every > 0 && since_snapshot >= config.snapshot_every {
                        since_snapshot = 0;
                        snapshot(h, &working, config.keep_snapshots);
                    }
                    None
                }
                Ok(Err(e)) => {
                    error!(error = %e, "append could not be made durable; the writer stops (restart replays the log)");
                    Some(e.to_string())
                }
                Err(payload) => {
                    let why = format!("the writer panicked: {}", panic_message(&*payload));
                    error!(reason = %why, "the writer stops (restart replays the log)");
                    Some(why)
                }
            };
            if let Some(why) = failure {
                *h.fatal.lock().unwrap_or_else(|p| p.into_inner()) = Some(why.clone());
                for s in batch.drain(..) {
                    let _ = s.reply.send(Err(WriterError::Stopped(why.clone())));
                }
                stop = Some(why);
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

/// Folds envelopes read from the log into both copies of the state (a standby), or
/// checks that they are the leader's own appends. `Err`: the writer must stop.
fn fold_followed(h: &Shared, working: &mut State, envs: Vec<Envelope>) -> Result<(), String> {
    let leading = h.leading.load(std::sync::atomic::Ordering::Acquire);
    let held = working.last_seq();
    let fresh: Vec<Envelope> = envs.into_iter().filter(|e| e.seq > held).collect();
    let Some(first) = fresh.first() else {
        return Ok(());
    };
    if leading {
        return Err(format!(
            "another server appended to the log (seq {} after this leader's {}): this server was fenced out",
            first.seq,
            working.last_seq()
        ));
    }
    let mut live = h.state.write().unwrap_or_else(|p| p.into_inner());
    for env in fresh {
        if env.seq != working.last_seq() + 1 {
            return Err(format!(
                "following the log: seq {} came after {}",
                env.seq,
                working.last_seq()
            ));
        }
        working.apply(&env);
        live.apply(&env);
    }
    let last = live.last_seq();
    drop(live);
    h.applied.send_replace(last);
    Ok(())
}

/// A standby becomes the leader when its state holds the whole log as the log knows
/// it (the caller holds the lease and caught the log up first).
fn promote(
    h: &Shared,
    config: &WriterConfig,
    working: &State,
    keys: &mut RequestKeys,
) -> Result<u64, String> {
    use std::sync::atomic::Ordering;
    if h.leading.load(Ordering::Acquire) {
        return Ok(working.last_seq());
    }
    let head = h.log.last_seq();
    if working.last_seq() != head {
        return Err(format!(
            "the state holds seq {} and the log {head}: not caught up yet",
            working.last_seq()
        ));
    }
    *keys = RequestKeys::load(&*h.log, (config.clock)())
        .map_err(|e| format!("reading the idempotency keys from the log: {e}"))?;
    h.leading.store(true, Ordering::Release);
    info!(seq = head, "this server leads: the writer takes commands");
    Ok(head)
}

/// What became of one submission of a batch.
enum Outcome {
    /// Decided here: its events are `pending[range]`, or it was refused.
    Decided(Result<std::ops::Range<usize>, DomainError>),
    /// Its key was answered before: these are the envelopes that answer it.
    Replayed(Vec<Envelope>),
    /// Its key is that of an earlier submission of this batch (a retry that overtook
    /// the original's answer): it gets the same answer.
    SameAs(usize),
}

/// Decides each submission in order against the writer's working copy (applying each
/// one's events there so the next is decided against its outcome), appends all events
/// in one durable batch, and only then folds them into the live state and answers.
/// A keyed submission whose key was seen is answered with its first result instead;
/// a keyed one that appends events is followed by its `RequestKeyRecorded`.
/// Returns the number of events appended. On an error the working copy holds events
/// that are not durable; the caller stops the writer, so it is never used again.
fn commit_batch(
    h: &Shared,
    config: &WriterConfig,
    state: &mut State,
    keys: &mut RequestKeys,
    batch: &mut Vec<Submission>,
) -> Result<u64, LogError> {
    let now = (config.clock)();
    let first_seq = state.last_seq() + 1;
    let mut next_seq = first_seq;
    let mut pending: Vec<NewEvent> = Vec::new();
    let mut outcomes: Vec<Outcome> = Vec::with_capacity(batch.len());
    // Keys first seen in this batch: scoped key → index of the submission.
    let mut batch_keys: HashMap<String, usize> = HashMap::new();
    let settings = std::sync::Arc::new(config.settings.clone());
    for (i, s) in batch.iter().enumerate() {
        let actor = s.actor.label();
        let scoped_key = s.key.as_deref().map(|k| request_keys::scoped(&actor, k));
        if let Some(k) = &scoped_key {
            if let Some(earlier) = batch_keys.get(k) {
                outcomes.push(Outcome::SameAs(*earlier));
                continue;
            }
            if let Some(keyed) = keys.get(k) {
                let last = keyed.first + u64::from(keyed.count) - 1;
                let envs = h
                    .log
                    .read_range(keyed.first, last)
                    .collect::<Result<_, _>>()?;
                outcomes.push(Outcome::Replayed(envs));
                continue;
            }
        }
        let ctx = Ctx {
            now_ms: now,
            actor: s.actor.clone(),
            settings: settings.clone(),
        };
        let mut events = match decide(state, &s.cmd, &ctx) {
            Ok(events) => events,
            Err(e) => {
                outcomes.push(Outcome::Decided(Err(e)));
                continue;
            }
        };
        let start = pending.len();
        let count = events.len();
        if let (Some(k), Some(key)) = (scoped_key, &s.key) {
            if count > 0 {
                batch_keys.insert(k, i);
                events.push(Event::RequestKeyRecorded {
                    key: key.clone(),
                    events: count as u32,
                });
            }
        }
        for event in events {
            // Apply to the working copy so the next command is decided against this
            // one's outcome; readers never see this copy.
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
        outcomes.push(Outcome::Decided(Ok(start..start + count)));
    }
    if !pending.is_empty() {
        if let Some(why) = h.storage.get().and_then(|g| g.check()) {
            refuse_full(h, state, batch, outcomes, &why);
            return Ok(0);
        }
    }
    let appended = pending.len() as u64;
    let envelopes = if pending.is_empty() {
        Vec::new()
    } else {
        h.log.append(first_seq - 1, pending)?
    };
    if !envelopes.is_empty() {
        // Durable now: readers may see it. The lock is held only for the fold.
        let mut live = h.state.write().unwrap_or_else(|p| p.into_inner());
        for env in &envelopes {
            live.apply(env);
        }
        let last = live.last_seq();
        drop(live);
        h.applied.send_replace(last);
    }
    for (k, i) in batch_keys {
        if let Outcome::Decided(Ok(range)) = &outcomes[i] {
            keys.insert(k, envelopes[range.start].seq, range.len() as u32, now);
        }
    }
    let answers: Vec<Result<Vec<Envelope>, WriterError>> = outcomes
        .iter()
        .map(|outcome| match outcome {
            Outcome::Decided(Ok(range)) => Ok(envelopes[range.clone()].to_vec()),
            Outcome::Decided(Err(e)) => Err(WriterError::Domain(e.clone())),
            Outcome::Replayed(envs) => Ok(envs.clone()),
            Outcome::SameAs(_) => Ok(Vec::new()),
        })
        .collect();
    for (i, s) in batch.drain(..).enumerate() {
        let reply = match &outcomes[i] {
            Outcome::SameAs(j) => clone_answer(&answers[*j]),
            _ => clone_answer(&answers[i]),
        };
        let _ = s.reply.send(reply);
    }
    Ok(appended)
}

/// The disk is below its reserve: nothing of the batch is written. The working copy
/// goes back to the live state (which never saw the batch); every submission that
/// would have appended is refused with `StorageFull`, the others get their answer.
fn refuse_full(
    h: &Shared,
    state: &mut State,
    batch: &mut Vec<Submission>,
    outcomes: Vec<Outcome>,
    why: &str,
) {
    *state = h.state.read().unwrap_or_else(|p| p.into_inner()).clone();
    let answers: Vec<Result<Vec<Envelope>, WriterError>> = outcomes
        .iter()
        .map(|outcome| match outcome {
            Outcome::Decided(Ok(range)) if range.is_empty() => Ok(Vec::new()),
            Outcome::Decided(Ok(_)) => Err(WriterError::StorageFull(why.to_string())),
            Outcome::Decided(Err(e)) => Err(WriterError::Domain(e.clone())),
            Outcome::Replayed(envs) => Ok(envs.clone()),
            Outcome::SameAs(_) => Ok(Vec::new()),
        })
        .collect();
    for (i, s) in batch.drain(..).enumerate() {
        let reply = match &outcomes[i] {
            Outcome::SameAs(j) => clone_answer(&answers[*j]),
            _ => clone_answer(&answers[i]),
        };
        let _ = s.reply.send(reply);
    }
}

fn clone_answer(a: &Result<Vec<Envelope>, WriterError>) -> Result<Vec<Envelope>, WriterError> {
    match a {
        Ok(envs) => Ok(envs.clone()),
        Err(WriterError::Domain(e)) => Err(WriterError::Domain(e.clone())),
        Err(WriterError::Stopped(why)) => Err(WriterError::Stopped(why.clone())),
        Err(WriterError::StorageFull(why)) => Err(WriterError::StorageFull(why.clone())),
        Err(WriterError::NotLeader { leader }) => Err(WriterError::NotLeader {
            leader: leader.clone(),
        }),
        Err(WriterError::Overloaded {
            queued,
            retry_after_ms,
        }) => Err(WriterError::Overloaded {
            queued: *queued,
            retry_after_ms: *retry_after_ms,
        }),
    }
}

/// The text of a panic's payload (`panic!` with a literal or a formatted message).
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".to_string()
    }
}

/// Stores a snapshot of the working copy, which equals the live state between batches.
fn snapshot(h: &Shared, state: &State, keep: usize) {
    let (seq, bytes) = (state.last_seq(), state.to_snapshot_bytes());
    match h.log.save_snapshot(seq, &bytes) {
        Ok(()) => info!(seq, bytes = bytes.len(), "snapshot stored"),
        Err(e) => {
            warn!(seq, error = %e, "snapshot not stored; the log is still the truth");
            return;
        }
    }
    if keep > 0 {
        match h.log.prune_snapshots(keep) {
            Ok(0) => {}
            Ok(n) => info!(removed = n, kept = keep, "older snapshots removed"),
            Err(e) => warn!(error = %e, "older snapshots not removed"),
        }
    }
}
