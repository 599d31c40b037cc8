//! `GET /exec`: a shell (or one command) in a deployment's container over a websocket,
//! relayed to the node's agent through the [`SessionHub`]. The client's first frame is
//! text: `{"token","deployment","cmd":[…],"tty","cols","rows"}`; then binary frames
//! are stdin (client → server) and output (server → client); text frames from the
//! client are `{"resize":{"cols","rows"}}` or `{"eof":true}` (stdin closed). The
//! server ends with `{"exit":CODE}` or `{"error":"…","code":"…"}` and closes. Owner
//! and admin only; every session is recorded (`ExecSessionStarted`/`Ended`) and closed
//! when the deployment stops.
//!
//! Also `GET /agent/session/{id}`: where an agent brings the socket of a session it
//! was asked for (its own token in `Authorization`).

use std::time::Duration;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use dcloud_graphql::{AgentRequest, ApiError, RequestId, SessionKind};
use dcloud_projections::{Actor, Command};
use serde::Deserialize;
use serde_json::{json, Value};
use tracing::{info, warn};

use super::backend::api_error;
use super::graphql::Caller;
use super::AppState;

/// How long a client has to send its first frame.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// The client's first frame.
#[derive(Debug, Deserialize)]
struct Hello {
    token: Option<String>,
    deployment: String,
    cmd: Vec<String>,
    #[serde(default)]
    tty: bool,
    cols: Option<u16>,
    rows: Option<u16>,
}

/// How a session ended, for the client and for the log.
enum End {
    Exit(i64),
    Error { code: &'static str, message: String },
}

fn error(e: &ApiError) -> End {
    End::Error {
        code: e.code(),
        message: e.to_string(),
    }
}

pub(super) async fn upgrade(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    Extension(request_id): Extension<RequestId>,
    upgrade: WebSocketUpgrade,
) -> Response {
    upgrade.on_upgrade(move |socket| serve(app, socket, caller, request_id))
}

async fn serve(app: AppState, mut client: WebSocket, caller: Caller, request_id: RequestId) {
    let end = session(&app, &mut client, caller, request_id).await;
    let last = match end {
        End::Exit(code) => json!({ "exit": code }),
        End::Error { code, message } => json!({ "error": message, "code": code }),
    };
    let _ = client.send(Message::Text(last.to_string().into())).await;
    let _ = client.send(Message::Close(None)).await;
}

async fn hello(client: &mut WebSocket) -> Result<Hello, End> {
    let bad = |m: String| End::Error {
        code: "BAD_USER_INPUT",
        message: m,
    };
    let first = tokio::time::timeout(HELLO_TIMEOUT, client.recv())
        .await
        .map_err(|_| bad("no first frame in time".into()))?;
    match first {
        Some(Ok(Message::Text(text))) => serde_json::from_str(&text).map_err(|e| {
            bad(format!(
                "the first frame must be {{\"token\",\"deployment\",\"cmd\":[…],\"tty\",\"cols\",\"rows\"}}: {e}"
            ))
        }),
        _ => Err(bad("the first frame must be a text frame with the session's JSON".into())),
    }
}

async fn session(
    app: &AppState,
    client: &mut WebSocket,
    caller: Caller,
    request_id: RequestId,
) -> End {
    let hello = match hello(client).await {
        Ok(h) => h,
        Err(end) => return end,
    };
    let actor = match &hello.token {
        Some(t) => dcloud_graphql::authenticate(&app.writer().state(), t),
        None => caller.actor().cloned(),
    };
    let Some(actor) = actor else {
        return error(&ApiError::Unauthenticated);
    };
    let session_id = uuid::Uuid::new_v4().simple().to_string();
    let start = Command::StartExec {
        session_id: session_id.clone(),
        deployment_id: hello.deployment.clone(),
        command: hello.cmd.clone(),
        tty: hello.tty,
    };
    let backend = app.backend();
    if let Err(e) = backend
        .submit_cmd(start, actor.clone(), request_id.0.clone())
        .await
    {
        return error(&api_error(e));
    }
    info!(session = %session_id, deployment = %hello.deployment, actor = %actor.label(), cmd = ?hello.cmd, "exec session started");
    let node = app
        .writer()
        .state()
        .deployment(&hello.deployment)
        .and_then(|d| d.node.clone());
    let end = match node {
        None => error(&ApiError::Unavailable("the deployment has no node".into())),
        Some(node) => relay(app, client, &node, &session_id, &hello).await,
    };
    let (exit_code, reason) = match &end {
        End::Exit(code) => (Some(*code), "exited".to_string()),
        End::Error { message, .. } => (None, message.clone()),
    };
    let done = Command::EndExec {
        session_id,
        deployment_id: hello.deployment,
        exit_code,
        reason,
    };
    if let Err(e) = backend
        .submit_cmd(done, Actor::system(), request_id.0)
        .await
    {
        warn!(error = %e, "cannot record the end of an exec session");
    }
    end
}

async fn relay(
    app: &AppState,
    client: &mut WebSocket,
    node: &str,
    session_id: &str,
    hello: &Hello,
) -> End {
    let hub = app.sessions();
    let mut guard = hub.track(&hello.deployment);
    let req = AgentRequest {
        session_id: session_id.to_string(),
        deployment_id: hello.deployment.clone(),
        kind: SessionKind::Exec,
        tail: None,
        since_ms: None,
        follow: false,
        cmd: hello.cmd.clone(),
        tty: hello.tty,
        cols: hello.cols,
        rows: hello.rows,
    };
    let mut agent = match hub.open(node, req).await {
        Ok(s) => s,
        Err(e) => return error(&e),
    };
    let stopped = End::Error {
        code: "DEPLOYMENT_STOPPED",
        message: "the deployment stopped".to_string(),
    };
    let end = loop {
        tokio::select! {
            _ = guard.closed() => break stopped,
            msg = client.recv() => match msg {
                Some(Ok(Message::Binary(b))) => {
                    if agent.send(Message::Binary(b)).await.is_err() {
                        break lost();
                    }
                }
                Some(Ok(Message::Text(t))) => {
                    let v: Value = serde_json::from_str(&t).unwrap_or_default();
                    if (v.get("resize").is_some() || v.get("eof").is_some())
                        && agent.send(Message::Text(t)).await.is_err()
                    {
                        break lost();
                    }
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => {
                    break End::Error { code: "CLIENT_GONE", message: "the client closed the session".into() };
                }
                Some(Ok(_)) => {}
            },
            msg = agent.recv() => match msg {
                Some(Ok(Message::Binary(b))) => {
                    if client.send(Message::Binary(b)).await.is_err() {
                        break End::Error { code: "CLIENT_GONE", message: "the client closed the session".into() };
                    }
                }
                Some(Ok(Message::Text(t))) => {
                    let v: Value = serde_json::from_str(&t).unwrap_or_default();
                    if let Some(code) = v.get("exit").and_then(Value::as_i64) {
                        break End::Exit(code);
                    }
                    if let Some(e) = v.get("error").and_then(Value::as_str) {
                        break End::Error { code: "EXEC_FAILED", message: e.to_string() };
                    }
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break lost(),
                Some(Ok(_)) => {}
            },
        }
    };
    let _ = agent.send(Message::Close(None)).await;
    end
}

fn lost() -> End {
    End::Error {
        code: "UNAVAILABLE",
        message: "the agent closed the session".to_string(),
    }
}

/// `GET /agent/session/{id}`: the agent of the session's node brings its socket.
pub(super) async fn agent_session(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(session_id): Path<String>,
    upgrade: WebSocketUpgrade,
) -> Response {
    let Some(actor) = caller.actor() else {
        return (StatusCode::FORBIDDEN, "an agent token is needed\n").into_response();
    };
    match app.sessions().accept(&session_id, actor) {
        Ok(tx) => upgrade.on_upgrade(move |socket| async move {
            let _ = tx.send(socket);
        }),
        Err(e) => {
            let status = StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::FORBIDDEN);
            (status, format!("{e}\n")).into_response()
        }
    }
}
