//! GraphQL subscriptions over websockets (`/graphql/ws`, graphql-transport-ws): the
//! client authenticates in `connection_init` (`{"Authorization": "Bearer …"}` or
//! `{"token": "…"}`; else the upgrade request's own header); a refused client is closed
//! with code 4403. Sessions close when the server stops.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use async_graphql::futures_util::stream::BoxStream;
use async_graphql::{Data, Executor};
use async_graphql_axum::{GraphQLProtocol, GraphQLWebSocket};
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::Response;
use axum::Extension;
use dcloud_graphql::{DcloudSchema, RequestId};
use futures::{SinkExt, StreamExt};
use serde_json::Value;

use super::graphql::Caller;
use super::metrics::Metrics;
use super::AppState;

/// Read and write buffer of one websocket connection, bytes.
const WS_BUFFER: usize = 8 * 1024;
/// The most bytes one connection may have waiting to be written.
const WS_MAX_WRITE_BUFFER: usize = 1 << 20;

/// Close code for a `connection_init` whose token is missing or not valid.
pub const CLOSE_FORBIDDEN: u16 = 4403;

pub(super) async fn upgrade(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    Extension(request_id): Extension<RequestId>,
    protocol: GraphQLProtocol,
    upgrade: WebSocketUpgrade,
) -> Response {
    // Small buffers per connection (a fleet keeps one open per node), and a cap on
    // what may wait to be written: a client that stops reading is disconnected at
    // the cap instead of growing the server (it resumes from its last seq).
    upgrade
        .read_buffer_size(WS_BUFFER)
        .write_buffer_size(WS_BUFFER)
        .max_write_buffer_size(WS_MAX_WRITE_BUFFER)
        .protocols(async_graphql::http::ALL_WEBSOCKET_PROTOCOLS)
        .on_upgrade(move |socket| serve(app, socket, protocol, caller, request_id))
}

async fn serve(
    app: AppState,
    socket: WebSocket,
    protocol: GraphQLProtocol,
    caller: Caller,
    request_id: RequestId,
) {
    let metrics = app.backend().metrics_handle();
    metrics.ws_connection_opened();
    let _open = ConnectionGuard(metrics);
    let refused = Arc::new(AtomicBool::new(false));
    let (sink, stream) = socket.split();
    let flag = refused.clone();
    // async-graphql closes a failed `connection_init` with 1002; ours says 4403.
    let sink = sink.with(move |msg: Message| {
        let msg = match msg {
            Message::Close(Some(frame)) if flag.load(Ordering::SeqCst) => {
                Message::Close(Some(CloseFrame {
                    code: CLOSE_FORBIDDEN,
                    reason: frame.reason,
                }))
            }
            other => other,
        };
        futures::future::ready(Ok::<_, axum::Error>(msg))
    });
    let mut stopping = app.stopping();
    let stream = stream.take_until(async move {
        let _ = stopping.wait_for(|s| *s).await;
    });
    let executor = CountingExecutor {
        schema: app.schema().clone(),
        metrics: app.backend().metrics_handle(),
    };
    let on_init = move |payload: Value| async move {
        let token = token_of(&payload);
        let actor = match token {
            Some(t) => dcloud_graphql::authenticate(&app.writer().state(), &t),
            None => caller.actor().cloned(),
        };
        match actor {
            Some(actor) => {
                let mut data = Data::default();
                data.insert(actor);
                data.insert(request_id);
                Ok(data)
            }
            None => {
                refused.store(true, Ordering::SeqCst);
                Err(async_graphql::Error::new(
                    "forbidden: connection_init needs a valid token",
                ))
            }
        }
    };
    GraphQLWebSocket::new_with_pair(sink, stream, executor, protocol)
        .on_connection_init(on_init)
        .serve()
        .await;
}

/// The token in a `connection_init` payload: `Authorization`/`authorization`
/// (`Bearer …` or bare), `token`, or the same inside `headers`.
fn token_of(payload: &Value) -> Option<String> {
    ["Authorization", "authorization", "token"]
        .iter()
        .find_map(|k| payload.get(*k).and_then(Value::as_str))
        .map(str::to_string)
        .or_else(|| payload.get("headers").and_then(token_of))
}

/// The schema, counting the subscription streams it is serving.
#[derive(Clone)]
struct CountingExecutor {
    schema: DcloudSchema,
    metrics: Arc<Metrics>,
}

struct OpenGuard(Arc<Metrics>);

/// Counts one open websocket connection while it lives.
struct ConnectionGuard(Arc<Metrics>);

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.0.ws_connection_closed();
    }
}

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
        request: async_graphql::Request,
        session_data: Option<Arc<Data>>,
    ) -> BoxStream<'static, async_graphql::Response> {
        self.metrics.subscription_opened();
        let guard = OpenGuard(self.metrics.clone());
        let inner = Executor::execute_stream(&self.schema, request, session_data);
        inner
            .map(move |r| {
                let _keep = &guard;
                r
            })
            .boxed()
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
