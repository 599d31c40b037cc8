//! The session hub: relays logs and exec sessions between API callers and node
//! agents. A caller's request becomes an [`AgentRequest`] on the node's
//! `agentRequests` subscription; the agent answers by opening `/agent/session/{id}`,
//! and that socket is handed to the waiting caller. The hub also counts the open
//! sessions per deployment (the idle timer treats a deployment with one as active) and
//! closes them when the deployment stops (`close_on_stop` follows the log).
//!
//! Nothing here buffers without bound: the agent request queue is bounded, and session
//! bytes go socket to socket with backpressure.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket};
use dcloud_events::model::Role;
use dcloud_events::{Event, EventLog, LogError};
use dcloud_graphql::{AgentRequest, ApiError, LogLine, LogLines, LogStream, SessionRelay};
use dcloud_projections::Actor;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::StreamExt;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot, watch};

/// How long an agent has to open the session socket after a request.
const AGENT_ANSWER: Duration = Duration::from_secs(10);
/// Requests queued per agent before the hub says the agent is unavailable.
const AGENT_QUEUE: usize = 16;

/// Shared by the GraphQL schema (logs), the `/exec` and `/agent/session` routes, the
/// idle timer and the stop follower. Cheap to clone.
#[derive(Clone, Default)]
pub struct SessionHub {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Default)]
struct Inner {
    /// The listening agent of each node (the latest subscription wins).
    agents: HashMap<String, (u64, mpsc::Sender<AgentRequest>)>,
    next_link: u64,
    pending: HashMap<String, Pending>,
    open: HashMap<String, Open>,
}

struct Pending {
    node_id: String,
    socket: oneshot::Sender<WebSocket>,
}

struct Open {
    count: usize,
    /// Sessions ever opened: a change between two idle checks is activity.
    opened: u64,
    close: watch::Sender<bool>,
}

/// Keeps a session counted as open; dropped when the session ends.
pub struct SessionGuard {
    hub: SessionHub,
    deployment_id: String,
    closed: watch::Receiver<bool>,
}

impl SessionGuard {
    /// Resolves when the deployment stops (or at once if it already did).
    pub async fn closed(&mut self) {
        let _ = self.closed.wait_for(|c| *c).await;
    }
}

impl Drop for SessionGuard {
    fn drop(&mut self) {
        self.hub.with(|i| {
            if let Some(o) = i.open.get_mut(&self.deployment_id) {
                o.count = o.count.saturating_sub(1);
            }
        });
    }
}

impl SessionHub {
    fn with<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> T {
        f(&mut self.inner.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Counts a session of `deployment_id` as open until the guard drops.
    pub fn track(&self, deployment_id: &str) -> SessionGuard {
        let closed = self.with(|i| {
            let o = i
                .open
                .entry(deployment_id.to_string())
                .or_insert_with(|| Open {
                    count: 0,
                    opened: 0,
                    close: watch::channel(false).0,
                });
            o.count += 1;
            o.opened += 1;
            o.close.subscribe()
        });
        SessionGuard {
            hub: self.clone(),
            deployment_id: deployment_id.to_string(),
            closed,
        }
    }

    /// `(open now, opened ever)` for the deployment.
    pub fn activity(&self, deployment_id: &str) -> (usize, u64) {
        self.with(|i| {
            i.open
                .get(deployment_id)
                .map_or((0, 0), |o| (o.count, o.opened))
        })
    }

    /// Ends every session of the deployment (it stopped).
    pub fn close_deployment(&self, deployment_id: &str) {
        self.with(|i| {
            if let Some(o) = i.open.remove(deployment_id) {
                o.close.send_replace(true);
            }
        });
    }

    /// Asks the agent of `node_id` to open session `req.session_id` and returns its
    /// socket. `Unavailable` when no agent of that node listens or it does not answer.
    pub async fn open(&self, node_id: &str, req: AgentRequest) -> Result<WebSocket, ApiError> {
        let session_id = req.session_id.clone();
        let (tx, rx) = oneshot::channel();
        let agent = self.with(|i| {
            let agent = i.agents.get(node_id).map(|(_, tx)| tx.clone());
            if agent.is_some() {
                i.pending.insert(
                    session_id.clone(),
                    Pending {
                        node_id: node_id.to_string(),
                        socket: tx,
                    },
                );
            }
            agent
        });
        let unavailable =
            || ApiError::Unavailable(format!("the agent of node {node_id} is not connected"));
        let Some(agent) = agent else {
            return Err(unavailable());
        };
        if agent.try_send(req).is_err() {
            self.with(|i| i.pending.remove(&session_id));
            return Err(unavailable());
        }
        match tokio::time::timeout(AGENT_ANSWER, rx).await {
            Ok(Ok(socket)) => Ok(socket),
            _ => {
                self.with(|i| i.pending.remove(&session_id));
                Err(ApiError::Unavailable(format!(
                    "the agent of node {node_id} did not open the session"
                )))
            }
        }
    }

    /// The agent `actor` (the node's agent, or an admin token running agents) claims
    /// session `session_id`: where to hand its socket.
    pub fn accept(
        &self,
        session_id: &str,
        actor: &Actor,
    ) -> Result<oneshot::Sender<WebSocket>, ApiError> {
        self.with(|i| {
            let p = i
                .pending
                .get(session_id)
                .ok_or_else(|| ApiError::not_found("session", session_id))?;
            let node_agent =
                actor.role == Role::Agent && actor.node_id.as_deref() == Some(p.node_id.as_str());
            if !(node_agent || actor.is_admin()) {
                return Err(ApiError::forbidden(format!(
                    "session {session_id} is for the agent of node {}",
                    p.node_id
                )));
            }
            Ok(i.pending.remove(session_id).map(|p| p.socket))
        })?
        .ok_or_else(|| ApiError::not_found("session", session_id))
    }

    fn listen(&self, node_id: &str) -> (u64, mpsc::Receiver<AgentRequest>) {
        let (tx, rx) = mpsc::channel(AGENT_QUEUE);
        let id = self.with(|i| {
            i.next_link += 1;
            i.agents.insert(node_id.to_string(), (i.next_link, tx));
            i.next_link
        });
        (id, rx)
    }

    fn unlisten(&self, node_id: &str, link: u64) {
        self.with(|i| {
            if i.agents.get(node_id).is_some_and(|(l, _)| *l == link) {
                i.agents.remove(node_id);
            }
        });
    }
}

/// Unregisters an agent's subscription when its stream is dropped.
struct Listening {
    hub: SessionHub,
    node_id: String,
    link: u64,
}

impl Drop for Listening {
    fn drop(&mut self) {
        self.hub.unlisten(&self.node_id, self.link);
    }
}

impl SessionRelay for SessionHub {
    fn agent_requests(&self, node_id: &str) -> BoxStream<'static, AgentRequest> {
        let (link, rx) = self.listen(node_id);
        let guard = Listening {
            hub: self.clone(),
            node_id: node_id.to_string(),
            link,
        };
        futures::stream::unfold((rx, guard), |(mut rx, guard)| async move {
            rx.recv().await.map(|r| (r, (rx, guard)))
        })
        .boxed()
    }

    fn open_logs(
        &self,
        node_id: &str,
        req: AgentRequest,
    ) -> BoxFuture<'static, Result<LogLines, ApiError>> {
        let hub = self.clone();
        let node_id = node_id.to_string();
        Box::pin(async move {
            let guard = hub.track(&req.deployment_id);
            let socket = hub.open(&node_id, req).await?;
            Ok(log_lines(socket, guard))
        })
    }
}

/// The agent's log frames as lines, ending at `{"end":true}`, an error, the socket's
/// end, or the deployment's stop. One frame is read per line asked for: a slow reader
/// leaves the rest in the socket (TCP backpressure up to the container engine).
fn log_lines(socket: WebSocket, guard: SessionGuard) -> LogLines {
    futures::stream::unfold(Some((socket, guard)), |st| async move {
        let (mut socket, mut guard) = st?;
        loop {
            let msg = tokio::select! {
                m = socket.recv() => m,
                _ = guard.closed() => return None,
            };
            let text = match msg {
                Some(Ok(Message::Text(t))) => t,
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return None,
                Some(Ok(_)) => continue,
            };
            let v: Value = serde_json::from_str(&text).unwrap_or_default();
            if v.get("end").is_some() {
                return None;
            }
            if let Some(e) = v.get("error").and_then(Value::as_str) {
                return Some((Err(ApiError::Unavailable(e.to_string())), None));
            }
            let stream = match v.get("stream").and_then(Value::as_str) {
                Some("STDERR") => LogStream::Stderr,
                Some("BUILD") => LogStream::Build,
                _ => LogStream::Stdout,
            };
            let line = LogLine {
                stream,
                line: v
                    .get("line")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
                time_ms: v.get("timeMs").and_then(Value::as_i64),
            };
            return Some((Ok(line), Some((socket, guard))));
        }
    })
    .boxed()
}

/// Whether `event` ends a deployment's container (its sessions close).
fn stops(event: &Event) -> Option<&str> {
    match event {
        Event::DeploymentStopRequested { deployment_id }
        | Event::DeploymentStopped { deployment_id }
        | Event::DeploymentLost { deployment_id, .. }
        | Event::ContainerExited { deployment_id, .. }
        | Event::ContainerOomKilled { deployment_id }
        | Event::ContainerRemoved { deployment_id }
        | Event::ContainerFailed { deployment_id, .. } => Some(deployment_id),
        _ => None,
    }
}

/// Follows the log from `from` and closes the sessions of each deployment that stops,
/// until `stop` fires or the log closes.
pub(super) async fn close_on_stop(
    hub: SessionHub,
    log: Arc<dyn EventLog>,
    from: u64,
    mut stop: watch::Receiver<bool>,
) {
    let mut tail = log.subscribe(from);
    loop {
        let next = tokio::select! {
            n = tail.next() => n,
            _ = stop.wait_for(|s| *s) => return,
        };
        match next {
            Ok(env) => {
                if let Some(dep) = stops(&env.event) {
                    hub.close_deployment(dep);
                }
            }
            Err(LogError::Closed) => return,
            Err(e) => {
                tracing::error!(error = %e, "the session stop follower lost the log");
                return;
            }
        }
    }
}
