//! [`Router`]: one tail of the log for all of a schema's subscriptions. Each event is
//! read once and handed, by key, only to the subscriptions that can care about it:
//! assignment streams by node, deployment and node update streams by id, the rest
//! through a state-free predicate applied in the router (so a subscriber is woken only
//! by the events that pass it). A heartbeat wakes no assignment stream.
//!
//! Each subscription has a bounded buffer of shared (`Arc`) events. One that does not
//! keep up is dropped from the router when its buffer is full; it then drains what it
//! has, reads the gap back from the log in small chunks and registers again, so a slow
//! or stalled subscriber costs at most its buffer and never stops the others.
//!
//! No gap, no duplicate: a registration returns the last seq the router has routed
//! (`D`); the subscription reads `next..=D` from the log and takes everything after `D`
//! from its buffer (the router routes in seq order, each seq once).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use dcloud_events::{Envelope, Event, EventLog, LogError};
use tokio::sync::mpsc;

use crate::backend::Backend;
use crate::error::ApiError;

/// Events a subscription may have waiting before it is dropped from the router (and
/// catches up from the log instead).
pub const BUFFER: usize = 64;
/// Events one catch-up read takes from the log at most.
const CATCH_UP_CHUNK: u64 = 64;

/// A state-free test on an event, applied once per event in the router.
pub(crate) type Predicate = Arc<dyn Fn(&Envelope) -> bool + Send + Sync>;

/// What a subscription wants to be woken for.
#[derive(Clone)]
pub(crate) enum Interest {
    /// What concerns node `0`'s assignments (placements, losses, stops of what it holds).
    Assignments(String),
    /// Events about deployment `0`.
    Deployment(String),
    /// Events about node `0`.
    Node(String),
    /// Every event passing the predicate.
    Matching(Predicate),
}

/// Counters, for tests and `/metrics`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RouterStats {
    /// Subscriptions registered now.
    pub subscriptions: u64,
    /// Events handed to a subscription (each one a wake-up).
    pub delivered: u64,
    /// Subscriptions dropped because their buffer was full (they caught up from the log).
    pub overflowed: u64,
    /// Last seq routed.
    pub routed_seq: u64,
}

struct Sub {
    interest: Interest,
    tx: mpsc::Sender<Arc<Envelope>>,
    overflowed: Arc<AtomicBool>,
}

#[derive(Default)]
struct Inner {
    started: bool,
    /// Last seq routed (events after it reach registered subscriptions).
    routed: u64,
    /// `Some` once the router's tail ended: `None` inside when the log closed, else why
    /// it failed.
    ended: Option<Option<String>>,
    next_id: u64,
    subs: HashMap<u64, Sub>,
    assignments: HashMap<String, Vec<u64>>,
    deployments: HashMap<String, Vec<u64>>,
    nodes: HashMap<String, Vec<u64>>,
    matching: Vec<u64>,
    /// Which node each deployment was last placed on, as the events went by.
    placed: HashMap<String, Option<String>>,
}

/// The routing hub of one schema (see the module docs).
pub struct Router {
    backend: Arc<dyn Backend>,
    inner: Mutex<Inner>,
    delivered: AtomicU64,
    overflowed: AtomicU64,
}

impl Router {
    pub fn new(backend: Arc<dyn Backend>) -> Arc<Router> {
        Arc::new(Router {
            backend,
            inner: Mutex::new(Inner::default()),
            delivered: AtomicU64::new(0),
            overflowed: AtomicU64::new(0),
        })
    }

    pub fn stats(&self) -> RouterStats {
        let inner = self.lock();
        RouterStats {
            subscriptions: inner.subs.len() as u64,
            delivered: self.delivered.load(Ordering::Relaxed),
            overflowed: self.overflowed.load(Ordering::Relaxed),
            routed_seq: inner.routed,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers `interest`; returns the registration and the last seq routed before
    /// it (later events come through the registration's buffer).
    fn register(self: &Arc<Self>, interest: Interest) -> (Registration, u64) {
        let (tx, rx) = mpsc::channel(BUFFER);
        let overflowed = Arc::new(AtomicBool::new(false));
        let mut inner = self.lock();
        if !inner.started {
            inner.started = true;
            let log = self.backend.log();
            let applied = self.backend.applied();
            // Start where the state is, not the log: what a new stream catches up on
            // from the log must already be in the state it reads.
            inner.routed = applied
                .as_ref()
                .map_or_else(|| log.last_seq(), |rx| (*rx.borrow()).min(log.last_seq()));
            let tail = log.subscribe(inner.routed + 1);
            tokio::spawn(run(Arc::downgrade(self), tail, applied));
        }
        let id = inner.next_id;
        inner.next_id += 1;
        if inner.ended.is_none() {
            let key = |m: &mut HashMap<String, Vec<u64>>, k: &str| {
                m.entry(k.to_string()).or_default().push(id);
            };
            match &interest {
                Interest::Assignments(n) => key(&mut inner.assignments, n),
                Interest::Deployment(d) => key(&mut inner.deployments, d),
                Interest::Node(n) => key(&mut inner.nodes, n),
                Interest::Matching(_) => inner.matching.push(id),
            }
            inner.subs.insert(
                id,
                Sub {
                    interest,
                    tx,
                    overflowed: overflowed.clone(),
                },
            );
        }
        let routed = inner.routed;
        drop(inner);
        let reg = Registration {
            router: self.clone(),
            id,
            rx,
            overflowed,
        };
        (reg, routed)
    }

    fn unregister(&self, id: u64) {
        let mut inner = self.lock();
        remove(&mut inner, id);
    }

    /// Hands `env` to every subscription that can care.
    fn route(&self, env: Envelope) {
        let env = Arc::new(env);
        let mut inner = self.lock();
        inner.routed = env.seq;
        let mut targets: Vec<u64> = Vec::new();
        let add = |targets: &mut Vec<u64>, m: &HashMap<String, Vec<u64>>, k: &str| {
            if let Some(ids) = m.get(k) {
                targets.extend_from_slice(ids);
            }
        };
        if let Some(node) = self.assignment_node(&mut inner, &env.event) {
            add(&mut targets, &inner.assignments, &node);
        }
        if let Some(d) = deployment_of(&env.event) {
            add(&mut targets, &inner.deployments, d);
        }
        if let Some(n) = node_of(&env.event) {
            add(&mut targets, &inner.nodes, n);
        }
        for id in &inner.matching {
            if let Some(Sub {
                interest: Interest::Matching(p),
                ..
            }) = inner.subs.get(id)
            {
                if p(&env) {
                    targets.push(*id);
                }
            }
        }
        for id in targets {
            let Some(sub) = inner.subs.get(&id) else {
                continue;
            };
            match sub.tx.try_send(env.clone()) {
                Ok(()) => {
                    self.delivered.fetch_add(1, Ordering::Relaxed);
                }
                Err(mpsc::error::TrySendError::Full(_)) => {
                    sub.overflowed.store(true, Ordering::SeqCst);
                    self.overflowed.fetch_add(1, Ordering::Relaxed);
                    remove(&mut inner, id);
                }
                Err(mpsc::error::TrySendError::Closed(_)) => remove(&mut inner, id),
            }
        }
    }

    /// The node whose assignments `event` can change, keeping `placed` current.
    fn assignment_node(&self, inner: &mut Inner, event: &Event) -> Option<String> {
        match event {
            Event::DeploymentScheduled {
                deployment_id,
                node_id,
                ..
            } => {
                inner
                    .placed
                    .insert(deployment_id.clone(), Some(node_id.clone()));
                Some(node_id.clone())
            }
            Event::DeploymentLost {
                deployment_id,
                node_id,
            } => {
                inner.placed.insert(deployment_id.clone(), None);
                Some(node_id.clone())
            }
            Event::DeploymentStopRequested { deployment_id } => {
                self.placed_node(inner, deployment_id)
            }
            Event::DeploymentStopped { deployment_id } => {
                let node = self.placed_node(inner, deployment_id);
                inner.placed.remove(deployment_id);
                node
            }
            _ => None,
        }
    }

    fn placed_node(&self, inner: &Inner, deployment: &str) -> Option<String> {
        match inner.placed.get(deployment) {
            Some(node) => node.clone(),
            None => self
                .backend
                .state()
                .deployment(deployment)
                .and_then(|d| d.node.clone()),
        }
    }

    /// The tail ended: every subscription is told by its buffer closing.
    fn end(&self, why: Option<String>) {
        let mut inner = self.lock();
        inner.ended = Some(why);
        inner.subs.clear();
        inner.assignments.clear();
        inner.deployments.clear();
        inner.nodes.clear();
        inner.matching.clear();
    }

    fn ended(&self) -> Option<Option<String>> {
        self.lock().ended.clone()
    }
}

fn remove(inner: &mut Inner, id: u64) {
    let Some(sub) = inner.subs.remove(&id) else {
        return;
    };
    let unkey = |m: &mut HashMap<String, Vec<u64>>, k: &str| {
        if let Some(ids) = m.get_mut(k) {
            ids.retain(|i| *i != id);
            if ids.is_empty() {
                m.remove(k);
            }
        }
    };
    match &sub.interest {
        Interest::Assignments(n) => unkey(&mut inner.assignments, n),
        Interest::Deployment(d) => unkey(&mut inner.deployments, d),
        Interest::Node(n) => unkey(&mut inner.nodes, n),
        Interest::Matching(_) => inner.matching.retain(|i| *i != id),
    }
}

/// The router's task: the one tail of the log. Ends when the log closes or fails, or
/// when the router is gone.
async fn run(
    router: Weak<Router>,
    mut tail: dcloud_events::Tail,
    mut applied: Option<tokio::sync::watch::Receiver<u64>>,
) {
    loop {
        let next = tail.next().await;
        // The state the streams read for this event must hold it: wait until the
        // writer has folded it (it folds after the append is durable).
        if let (Ok(env), Some(rx)) = (&next, applied.as_mut()) {
            let seq = env.seq;
            if rx.wait_for(|s| *s >= seq).await.is_err() {
                applied = None; // The writer is gone; the tail ends next.
            }
        }
        let Some(router) = router.upgrade() else {
            return;
        };
        match next {
            Ok(env) => router.route(env),
            Err(LogError::Closed) => return router.end(None),
            Err(e) => return router.end(Some(format!("log tail failed: {e}"))),
        }
    }
}

/// A subscription's place in the router; leaving it unregisters.
struct Registration {
    router: Arc<Router>,
    id: u64,
    rx: mpsc::Receiver<Arc<Envelope>>,
    overflowed: Arc<AtomicBool>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.router.unregister(self.id);
    }
}

/// One subscription's events from a seq on: from the log up to where the router was
/// when it registered, then what the router routes to it. Catch-up yields every event
/// (the caller filters); live yields only what its interest can care about.
pub(crate) struct Feed {
    router: Arc<Router>,
    interest: Interest,
    next: u64,
    /// Read from the log up to here (inclusive) before taking the buffer.
    disk_until: u64,
    reg: Option<Registration>,
    pending: VecDeque<Arc<Envelope>>,
    done: bool,
}

impl Feed {
    pub(crate) fn new(router: Arc<Router>, interest: Interest, from: u64) -> Feed {
        Feed {
            router,
            interest,
            next: from.max(1),
            disk_until: 0,
            reg: None,
            pending: VecDeque::new(),
            done: false,
        }
    }

    /// The next event (seq `next` or later, never one already given), or `None` once
    /// the log closed.
    pub(crate) async fn next(&mut self) -> Option<Result<Arc<Envelope>, ApiError>> {
        loop {
            if self.done {
                return None;
            }
            if let Some(env) = self.pending.pop_front() {
                if env.seq < self.next {
                    continue;
                }
                self.next = env.seq + 1;
                return Some(Ok(env));
            }
            if self.reg.is_none() {
                let (reg, routed) = self.router.register(self.interest.clone());
                self.reg = Some(reg);
                self.disk_until = routed;
            }
            if self.next <= self.disk_until {
                if let Err(e) = self.read_disk().await {
                    self.done = true;
                    return Some(Err(e));
                }
                continue;
            }
            let reg = self.reg.as_mut()?;
            match reg.rx.recv().await {
                Some(env) => self.pending.push_back(env),
                None if reg.overflowed.load(Ordering::SeqCst) => {
                    // Dropped for falling behind: catch up from the log, then rejoin.
                    self.reg = None;
                }
                None => {
                    self.done = true;
                    self.reg = None;
                    if let Some(Some(why)) = self.router.ended() {
                        return Some(Err(ApiError::Internal(why)));
                    }
                    // The log closed: what it made durable was routed; end quietly.
                    return None;
                }
            }
        }
    }

    /// Reads the next chunk of the catch-up from the log on a blocking thread: a disk
    /// read never runs inside the poll of an async task, where it would stall every
    /// connection served by that thread.
    async fn read_disk(&mut self) -> Result<(), ApiError> {
        let from = self.next;
        let to = self.disk_until.min(from + CATCH_UP_CHUNK - 1);
        let log: Arc<dyn EventLog> = self.router.backend.log();
        let read = move || -> Result<Vec<Envelope>, ApiError> {
            log.read_range(from, to)
                .map(|env| env.map_err(|e| ApiError::Internal(format!("log read failed: {e}"))))
                .collect()
        };
        let envs = tokio::task::spawn_blocking(read)
            .await
            .map_err(|e| ApiError::Internal(format!("log read task failed: {e}")))??;
        self.pending.extend(envs.into_iter().map(Arc::new));
        if self.pending.back().map(|e| e.seq) != Some(to) {
            return Err(ApiError::Internal(format!(
                "committed events {from}..={to} could not all be read back"
            )));
        }
        Ok(())
    }
}

/// The deployment an event is about (one exhaustive definition, in `events`).
pub(crate) fn deployment_of(event: &Event) -> Option<&str> {
    event.deployment_id()
}

/// The node an event is about (one exhaustive definition, in `events`).
pub(crate) fn node_of(event: &Event) -> Option<&str> {
    event.node_id()
}
