//! GraphQL subscriptions over websockets (`/graphql/ws`, graphql-transport-ws): the
//! client authenticates in `connection_init` (`{"Authorization": "Bearer …"}` or
//! `{"token": "…"}`; else the upgrade request's own header); a refused client is closed
//! with code 4403 (4429 past its limits). Sessions close when the server stops, and
//! with 4403 when their token is revoked or expires.

use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::{Arc, Mutex};

use async_graphql::futures_util::stream::BoxStream;
use async_graphql::{Data, Executor};
use async_graphql_axum::{GraphQLProtocol, GraphQLWebSocket};
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::Response;
use axum::Extension;
use dcloud_graphql::{ApiError, DcloudSchema, RequestId};
use futures::{SinkExt, StreamExt};
use serde_json::Value;

use super::graphql::{Caller, ClientKey};
use super::limits::{self, Guards, Slot};
use super::metrics::Metrics;
use super::AppState;

/// Close code for a `connection_init` whose token is missing or not valid, and for a
/// session whose token was revoked or expired while it was open.
pub const CLOSE_FORBIDDEN: u16 = 4403;
/// Close code for a `connection_init` past the caller's limits (too many open
/// connections for its token, too many failed authentications from its address).
pub const CLOSE_OVERLOADED: u16 = 4429;

/// Read and write buffer of one websocket connection, bytes.
const WS_BUFFER: usize = 8 * 1024;
/// The most bytes one connection may have waiting to be written.
const WS_MAX_WRITE_BUFFER: usize = 1 << 20;
/// Messages waiting between the GraphQL session and the socket writer: bounded, so a
/// client that stops reading holds the session back instead of growing the server.
const WS_OUT_QUEUE: usize = 64;

pub(super) async fn upgrade(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    Extension(request_id): Extension<RequestId>,
    Extension(client): Extension<ClientKey>,
    protocol: GraphQLProtocol,
    upgrade: WebSocketUpgrade,
) -> Response {
    upgrade
        // Small buffers per connection (a fleet keeps one open per node), and a cap on
        // what may wait to be written: a client that stops reading is disconnected at
        // the cap instead of growing the server (it resumes from its last seq).
        .read_buffer_size(WS_BUFFER)
        .write_buffer_size(WS_BUFFER)
        .max_write_buffer_size(WS_MAX_WRITE_BUFFER)
        .protocols(async_graphql::http::ALL_WEBSOCKET_PROTOCOLS)
        .on_upgrade(move |socket| serve(app, socket, protocol, caller, request_id, client))
}

/// What an accepted session holds: its token's hash (re-checked while open) and its
/// place among the token's open connections.
struct Session {
    hash: Option<[u8; 32]>,
    _slot: Slot,
}

async fn serve(
    app: AppState,
    socket: WebSocket,
    protocol: GraphQLProtocol,
    caller: Caller,
    request_id: RequestId,
    client: ClientKey,
) {
    // The close code the refusal of `connection_init` should carry (0: as sent).
    let close_code = Arc::new(AtomicU16::new(0));
    let session: Arc<Mutex<Option<Session>>> = Arc::default();
    let (mut sink, stream) = socket.split();
    let metrics = app.backend().metrics_handle();
    metrics.ws_connection_opened();
    let _open = ConnectionGuard(metrics);
    let (mut out_tx, mut out_rx) = futures::channel::mpsc::channel::<Message>(WS_OUT_QUEUE);
    let code = close_code.clone();
    // async-graphql closes a failed `connection_init` with 1002; ours says why.
    let writer = tokio::spawn(async move {
        while let Some(msg) = out_rx.next().await {
            let msg = match msg {
                Message::Close(Some(frame)) if code.load(Ordering::SeqCst) != 0 => {
                    Message::Close(Some(CloseFrame {
                        code: code.load(Ordering::SeqCst),
                        reason: frame.reason,
                    }))
                }
                other => other,
            };
            if sink.send(msg).await.is_err() {
                return;
            }
        }
        let _ = sink.close().await;
    });
    let mut stopping = app.stopping();
    let revoked = Arc::new(AtomicBool::new(false));
    let watch = {
        let app = app.clone();
        let session = session.clone();
        let revoked = revoked.clone();
        let every = app.guards().limits().token_recheck;
        async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                let hash = session
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .as_ref()
                    .and_then(|s| s.hash);
                if let Some(h) = hash {
                    let now = dcloud_graphql::wall_ms();
                    let valid = app
                        .writer()
                        .state()
                        .token_by_secret_hash(&h)
                        .is_some_and(|t| t.is_valid_at(now));
                    if !valid {
                        revoked.store(true, Ordering::SeqCst);
                        return;
                    }
                }
            }
        }
    };
    let stream = stream.take_until(async move {
        tokio::select! {
            _ = stopping.wait_for(|s| *s) => {}
            () = watch => {}
        }
    });
    let executor = CountingExecutor {
        schema: app.schema().clone(),
        metrics: app.backend().metrics_handle(),
        guards: app.guards().clone(),
    };
    let init_app = app.clone();
    let on_init = move |payload: Value| async move {
        let app = init_app;
        let guards = app.guards();
        let (hash, actor) = match token_of(&payload) {
            Some(t) => {
                if let Err(ms) = guards.auth_failures.check(&client.addr) {
                    close_code.store(CLOSE_OVERLOADED, Ordering::SeqCst);
                    return Err(async_graphql::Error::new(format!(
                        "rate limited: too many failed authentications from this address; \
                         retry after {ms} ms"
                    )));
                }
                let actor = dcloud_graphql::authenticate(&app.writer().state(), &t);
                if actor.is_none() {
                    let _ = guards.auth_failures.take(&client.addr);
                }
                (dcloud_graphql::token_hash(&t), actor)
            }
            None => (client.token_hash, caller.actor().cloned()),
        };
        let Some(actor) = actor else {
            close_code.store(CLOSE_FORBIDDEN, Ordering::SeqCst);
            return Err(async_graphql::Error::new(
                "forbidden: connection_init needs a valid token",
            ));
        };
        let key = hash.map_or_else(|| client.addr.clone(), |h| limits::token_key(&h));
        let max = guards.limits().max_connections_per_token;
        let Some(slot) = guards.connections.acquire(&key, max) else {
            close_code.store(CLOSE_OVERLOADED, Ordering::SeqCst);
            return Err(async_graphql::Error::new(format!(
                "overloaded: {max} websocket connections are already open for this token"
            )));
        };
        *session.lock().unwrap_or_else(|p| p.into_inner()) = Some(Session { hash, _slot: slot });
        let mut data = Data::default();
        data.insert(actor);
        data.insert(request_id);
        data.insert(SubscriberKey(key));
        Ok(data)
    };
    let sink = out_tx
        .clone()
        .sink_map_err(|e| axum::Error::new(e.to_string()));
    GraphQLWebSocket::new_with_pair(sink, stream, executor, protocol)
        .on_connection_init(on_init)
        .serve()
        .await;
    if revoked.load(Ordering::SeqCst) {
        let _ = out_tx
            .send(Message::Close(Some(CloseFrame {
                code: CLOSE_FORBIDDEN,
                reason: "the token was revoked or has expired".into(),
            })))
            .await;
    }
    drop(out_tx);
    let _ = writer.await;
}

/// The key a websocket session's subscriptions are counted under (its token).
struct SubscriberKey(String);

/// The token in a `connection_init` payload: `Authorization`/`authorization`
/// (`Bearer …` or bare), `token`, or the same inside `headers`.
fn token_of(payload: &Value) -> Option<String> {
    ["Authorization", "authorization", "token"]
        .iter()
        .find_map(|k| payload.get(*k).and_then(Value::as_str))
        .map(str::to_string)
        .or_else(|| payload.get("headers").and_then(token_of))
}

/// The schema, counting the subscription streams it is serving (and refusing those
/// past the token's limit).
#[derive(Clone)]
struct CountingExecutor {
    schema: DcloudSchema,
    metrics: Arc<Metrics>,
    guards: Arc<Guards>,
}

struct OpenGuard(Arc<Metrics>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.subscription_closed();
    }
}

impl Executor for CountingExecutor {
    async fn execute(&self, request: async_graphql::Request) -> async_graphql::Response {
        self.schema.execute(request).await
    }

    fn execute_stream(
        &self,
        mut request: async_graphql::Request,
        session_data: Option<Arc<Data>>,
    ) -> BoxStream<'static, async_graphql::Response> {
        let key = session_data
            .as_ref()
            .and_then(|d| d.get(&std::any::TypeId::of::<SubscriberKey>()))
            .and_then(|k| k.downcast_ref::<SubscriberKey>())
            .map_or_else(String::new, |k| k.0.clone());
        // Mutations over the socket are held to the token's write limit, as over POST.
        if super::graphql::parse_once(&mut request) {
            if let Err(ms) = self.guards.writes.take(&key) {
                let err = ApiError::RateLimited {
                    message: format!(
                        "more than {} writes per second for this token",
                        self.guards.limits().writes_per_second
                    ),
                    retry_after_ms: ms,
                };
                return error_stream(&err, &request, session_data.as_deref());
            }
        }
        let max = self.guards.limits().max_subscriptions_per_token;
        let Some(slot) = self.guards.subscriptions.acquire(&key, max) else {
            let err = ApiError::Overloaded {
                message: format!("{max} subscriptions are already open for this token"),
                retry_after_ms: 1000,
            };
            return error_stream(&err, &request, session_data.as_deref());
        };
        self.metrics.subscription_opened();
        let guard = OpenGuard(self.metrics.clone());
        let inner = Executor::execute_stream(&self.schema, request, session_data);
        inner
            .map(move |r| {
                let _keep = (&guard, &slot);
                r
            })
            .boxed()
    }
}

/// One response holding `err` (with the request's id), as a stream.
fn error_stream(
    err: &ApiError,
    request: &async_graphql::Request,
    session_data: Option<&Data>,
) -> BoxStream<'static, async_graphql::Response> {
    let id = request
        .data
        .get(&std::any::TypeId::of::<RequestId>())
        .or_else(|| session_data.and_then(|d| d.get(&std::any::TypeId::of::<RequestId>())))
        .and_then(|r| r.downcast_ref::<RequestId>())
        .map_or_else(|| "-".to_string(), |r| r.0.clone());
    let e = dcloud_graphql::to_graphql_error(err, &id);
    let response = async_graphql::Response::from_errors(vec![
        e.into_server_error(async_graphql::Pos::default())
    ]);
    futures::stream::once(async move { response }).boxed()
}

/// Counts one open websocket connection while it lives.
struct ConnectionGuard(Arc<Metrics>);

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.0.ws_connection_closed();
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::token_of;

    #[test]
    fn tokens_are_found_where_clients_put_them() {
        assert_eq!(
            token_of(&json!({"Authorization": "Bearer x"})).as_deref(),
            Some("Bearer x")
        );
        assert_eq!(token_of(&json!({"token": "y"})).as_deref(), Some("y"));
        assert_eq!(
            token_of(&json!({"headers": {"authorization": "z"}})).as_deref(),
            Some("z")
        );
        assert_eq!(token_of(&json!({"other": 1})), None);
    }
}
