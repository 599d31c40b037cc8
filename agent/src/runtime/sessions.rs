//! Logs and exec sessions, agent side. The server asks over the `agentRequests`
//! subscription ("open session S: logs or exec of deployment D"); for each request the
//! agent opens a websocket back to the server at `/agent/session/S` (its own token in
//! the `Authorization` header) and carries the session there:
//!
//! - logs: one text frame per line, `{"stream","line","timeMs"}`, then `{"end":true}`;
//! - exec: binary frames are stdin (server → agent) and output (agent → server); text
//!   frames from the server are `{"resize":{"cols","rows"}}` or `{"eof":true}`; the
//!   agent ends with `{"exit":CODE}` or `{"error":"…"}`.
//!
//! Failures end with `{"error":"…"}`. Every channel is bounded, and frames are sent
//! with backpressure: a slow reader on the far end slows the container's output down.

use std::sync::Arc;

use futures::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::json;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tracing::{debug, info, warn};

use super::client::{decode, WS_PATH};
use super::protocol::SubEvent;
use super::Shared;
use crate::driver::Driver;
use crate::error::AgentError;
use crate::session::{ExecInput, ExecRequest, LogOptions};

/// The subscription the server sends session requests on.
pub const AGENT_REQUESTS: &str = "subscription AgentRequests($nodeId: ID!) { agentRequests(nodeId: $nodeId) { sessionId deploymentId kind tail sinceMs follow cmd tty cols rows } }";

/// Path prefix of the session sockets on the server.
pub const SESSION_PATH: &str = "/agent/session/";

/// One request, as the subscription delivers it.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionRequest {
    pub session_id: String,
    pub deployment_id: String,
    /// `LOGS` or `EXEC`.
    pub kind: String,
    pub tail: Option<u32>,
    pub since_ms: Option<i64>,
    #[serde(default)]
    pub follow: bool,
    #[serde(default)]
    pub cmd: Vec<String>,
    #[serde(default)]
    pub tty: bool,
    pub cols: Option<u16>,
    pub rows: Option<u16>,
}

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Follows the node's session requests for as long as the node runs, resubscribing
/// with backoff when the connection drops.
pub async fn serve(shared: Arc<Shared>, node_id: String, driver: Arc<dyn Driver>) {
    let mut attempt = 0u32;
    loop {
        let err = follow(&shared, &node_id, &driver, &mut attempt).await;
        attempt += 1;
        let delay = shared.config.backoff(attempt);
        debug!(%node_id, error = %err, retry_in = ?delay, "session requests ended");
        tokio::time::sleep(delay).await;
    }
}

async fn follow(
    shared: &Arc<Shared>,
    node_id: &str,
    driver: &Arc<dyn Driver>,
    attempt: &mut u32,
) -> AgentError {
    let conn = match shared.sessions_ws.get().await {
        Ok(c) => c,
        Err(e) => return e,
    };
    let mut sub = match conn.subscribe(AGENT_REQUESTS, json!({ "nodeId": node_id })) {
        Ok(s) => s,
        Err(e) => return e,
    };
    loop {
        match sub.next().await {
            Some(SubEvent::Data(data)) => {
                *attempt = 0;
                let req: SessionRequest = match decode("agentRequests", data.get("agentRequests")) {
                    Ok(r) => r,
                    Err(e) => return e,
                };
                info!(%node_id, session = %req.session_id, deployment = %req.deployment_id, kind = %req.kind, "session requested");
                tokio::spawn(run_session(shared.clone(), driver.clone(), req));
            }
            Some(SubEvent::Error { code, message }) => {
                return AgentError::Api {
                    op: "agentRequests",
                    code,
                    message,
                }
            }
            Some(SubEvent::Complete) | None => {
                return AgentError::ServerUnavailable {
                    url: shared.sessions_ws.url().to_string(),
                    reason: "the agentRequests subscription ended".to_string(),
                }
            }
        }
    }
}

/// The session socket's URL for the server behind `ws_url` (`…/graphql/ws`).
pub fn session_url(ws_url: &str, session_id: &str) -> String {
    let base = ws_url.strip_suffix(WS_PATH).unwrap_or(ws_url);
    format!("{base}{SESSION_PATH}{session_id}")
}

async fn connect(shared: &Shared, session_id: &str) -> Result<Socket, AgentError> {
    // The server that asked for the session (the one its request came from) holds it.
    let url = session_url(&shared.sessions_ws.url(), session_id);
    let unavailable = |e: &dyn std::fmt::Display| AgentError::ServerUnavailable {
        url: url.clone(),
        reason: e.to_string(),
    };
    let mut request = url
        .as_str()
        .into_client_request()
        .map_err(|e| unavailable(&e))?;
    if let Ok(v) = HeaderValue::from_str(&format!("Bearer {}", shared.ws.token())) {
        request.headers_mut().insert("Authorization", v);
    }
    let (socket, _) = tokio_tungstenite::connect_async(request)
        .await
        .map_err(|e| unavailable(&e))?;
    Ok(socket)
}

async fn run_session(shared: Arc<Shared>, driver: Arc<dyn Driver>, req: SessionRequest) {
    let mut socket = match connect(&shared, &req.session_id).await {
        Ok(s) => s,
        Err(e) => {
            warn!(session = %req.session_id, error = %e, "cannot open the session socket");
            return;
        }
    };
    let result = match req.kind.as_str() {
        "LOGS" => logs(&*driver, &req, &mut socket).await,
        "EXEC" => exec(&*driver, &req, &mut socket).await,
        other => Err(format!("unknown session kind {other:?}")),
    };
    let last = match result {
        Ok(last) => last,
        Err(message) => json!({ "error": message }),
    };
    let _ = socket.send(Message::text(last.to_string())).await;
    let _ = socket.close(None).await;
}

/// Sends the lines; `Ok` with the closing frame, `Err` with the reason.
async fn logs(
    driver: &dyn Driver,
    req: &SessionRequest,
    socket: &mut Socket,
) -> Result<serde_json::Value, String> {
    let opts = LogOptions {
        tail: req.tail,
        since_ms: req.since_ms,
        follow: req.follow,
    };
    let mut lines = driver
        .logs(&req.deployment_id, opts)
        .await
        .map_err(|e| e.to_string())?;
    loop {
        tokio::select! {
            line = lines.next() => match line {
                Some(Ok(line)) => {
                    let text = serde_json::to_string(&line).map_err(|e| e.to_string())?;
                    socket
                        .send(Message::text(text))
                        .await
                        .map_err(|e| format!("the server went away: {e}"))?;
                }
                Some(Err(e)) => return Err(e.to_string()),
                None => return Ok(json!({ "end": true })),
            },
            msg = socket.next() => match msg {
                // The reader is gone: stop reading the engine.
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => {
                    return Err("the reader closed the session".to_string())
                }
                Some(Ok(_)) => {}
            },
        }
    }
}

/// Relays one exec session; `Ok` with the closing frame, `Err` with the reason.
async fn exec(
    driver: &dyn Driver,
    req: &SessionRequest,
    socket: &mut Socket,
) -> Result<serde_json::Value, String> {
    let request = ExecRequest {
        cmd: req.cmd.clone(),
        tty: req.tty,
        cols: req.cols.unwrap_or(80),
        rows: req.rows.unwrap_or(24),
    };
    let session = driver
        .exec(&req.deployment_id, request)
        .await
        .map_err(|e| e.to_string())?;
    let mut input = Some(session.input);
    let mut output = session.output;
    let mut output_open = true;
    while output_open {
        tokio::select! {
            chunk = output.recv() => match chunk {
                Some(bytes) => socket
                    .send(Message::binary(bytes))
                    .await
                    .map_err(|e| format!("the server went away: {e}"))?,
                None => output_open = false,
            },
            msg = socket.next() => match msg {
                Some(Ok(Message::Binary(bytes))) => {
                    if let Some(tx) = &input {
                        // Bounded: a command that does not read its stdin stalls the sender.
                        let _ = tx.send(ExecInput::Stdin(bytes.to_vec())).await;
                    }
                }
                Some(Ok(Message::Text(text))) => {
                    let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
                    if v.get("eof").is_some() {
                        if let Some(tx) = input.take() {
                            let _ = tx.send(ExecInput::Eof).await;
                        }
                    } else if let Some(r) = v.get("resize") {
                        let dim = |k: &str| r.get(k).and_then(serde_json::Value::as_u64).map(|n| n.min(u64::from(u16::MAX)) as u16);
                        if let (Some(cols), Some(rows), Some(tx)) = (dim("cols"), dim("rows"), &input) {
                            let _ = tx.send(ExecInput::Resize { cols, rows }).await;
                        }
                    }
                }
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => {
                    return Err("the client closed the session".to_string());
                }
                Some(Ok(_)) => {}
            },
        }
    }
    match session.exit.await {
        Ok(Ok(code)) => Ok(json!({ "exit": code })),
        Ok(Err(why)) => Err(why),
        Err(_) => Err("the session ended without an exit code".to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_url_replaces_the_graphql_path() {
        assert_eq!(
            session_url("ws://127.0.0.1:7070/graphql/ws", "s1"),
            "ws://127.0.0.1:7070/agent/session/s1"
        );
        assert_eq!(
            session_url("wss://h/prefix/graphql/ws", "s2"),
            "wss://h/prefix/agent/session/s2"
        );
    }
}
