//! One graphql-transport-ws connection carrying many subscriptions (ids per
//! subscription), and `WsPool`, which shares a live connection between the nodes of
//! one process and makes a new one when it drops.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::sync::{mpsc, Mutex};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;
use tracing::{debug, warn};

use super::protocol::{
    ClientMessage, Demux, Effect, ServerMessage, SubEvent, SubscribePayload, SUBPROTOCOL,
};
use super::tls::ClientTls;
use crate::error::AgentError;

/// How long the server has to acknowledge `connection_init`.
const ACK_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the client pings (keeps idle connections and proxies alive).
const PING_EVERY: Duration = Duration::from_secs(15);

enum Command {
    Subscribe {
        id: String,
        payload: SubscribePayload,
        tx: mpsc::UnboundedSender<SubEvent>,
    },
}

/// A live connection. Cheap to clone; the connection closes when the server drops it.
#[derive(Clone)]
pub struct WsConnection {
    commands: mpsc::UnboundedSender<Command>,
    next_id: Arc<AtomicU64>,
    closed: Arc<AtomicBool>,
}

/// The items of one subscription; `None` from `next` when the connection dropped.
pub struct WsSubscription {
    rx: mpsc::UnboundedReceiver<SubEvent>,
}

impl WsSubscription {
    pub async fn next(&mut self) -> Option<SubEvent> {
        self.rx.recv().await
    }
}

fn unavailable(url: &str, reason: impl ToString) -> AgentError {
    AgentError::ServerUnavailable {
        url: url.to_string(),
        reason: reason.to_string(),
    }
}

impl WsConnection {
    /// Opens the websocket (`Authorization` on the upgrade and in `connection_init`)
    /// and waits for `connection_ack`.
    pub async fn connect(url: &str, token: &str) -> Result<WsConnection, AgentError> {
        WsConnection::connect_with(url, token, &ClientTls::default()).await
    }

    /// [`WsConnection::connect`], trusting `tls` for wss:// URLs.
    pub async fn connect_with(
        url: &str,
        token: &str,
        tls: &ClientTls,
    ) -> Result<WsConnection, AgentError> {
        let mut request = url.into_client_request().map_err(|e| unavailable(url, e))?;
        let bearer = format!("Bearer {token}");
        let headers = request.headers_mut();
        headers.insert(
            "Sec-WebSocket-Protocol",
            HeaderValue::from_static(SUBPROTOCOL),
        );
        if let Ok(v) = HeaderValue::from_str(&bearer) {
            headers.insert("Authorization", v);
        }
        let (mut socket, _) =
            tokio_tungstenite::connect_async_tls_with_config(request, None, false, tls.connector())
                .await
                .map_err(|e| unavailable(url, e))?;
        let init = ClientMessage::ConnectionInit {
            payload: json!({ "Authorization": bearer, "authorization": bearer, "token": token }),
        };
        socket
            .send(Message::text(init.to_text()))
            .await
            .map_err(|e| unavailable(url, e))?;
        let acked = tokio::time::timeout(ACK_TIMEOUT, async {
            while let Some(msg) = socket.next().await {
                let msg = msg.map_err(|e| unavailable(url, e))?;
                match msg {
                    Message::Text(text) => match ServerMessage::parse(&text) {
                        Ok(ServerMessage::ConnectionAck { .. }) => return Ok(()),
                        Ok(ServerMessage::Ping { .. }) => {
                            let pong = ClientMessage::Pong {}.to_text();
                            socket
                                .send(Message::text(pong))
                                .await
                                .map_err(|e| unavailable(url, e))?;
                        }
                        Ok(other) => {
                            return Err(AgentError::Protocol {
                                op: "connection_init",
                                message: format!("expected connection_ack, got {other:?}"),
                            })
                        }
                        Err(message) => {
                            return Err(AgentError::Protocol {
                                op: "connection_init",
                                message,
                            })
                        }
                    },
                    Message::Close(frame) => {
                        let code = frame.as_ref().map(|f| u16::from(f.code));
                        let why = frame.map(|f| format!("{} {}", f.code, f.reason));
                        let why = why.unwrap_or_default();
                        // Only a refused token (4401/4403) is final; a server going
                        // away, restarting or over its limits is tried again later.
                        if matches!(code, Some(4401 | 4403)) {
                            return Err(AgentError::Api {
                                op: "connection_init",
                                code: "UNAUTHENTICATED".to_string(),
                                message: format!("the server refused the token: {why}"),
                            });
                        }
                        return Err(unavailable(
                            url,
                            format!("the server closed the connection: {why}"),
                        ));
                    }
                    _ => {}
                }
            }
            Err(unavailable(url, "closed before connection_ack"))
        })
        .await
        .map_err(|_| unavailable(url, "no connection_ack in time"))?;
        acked?;

        let (commands, rx) = mpsc::unbounded_channel();
        let closed = Arc::new(AtomicBool::new(false));
        tokio::spawn(drive(socket, rx, closed.clone(), url.to_string()));
        Ok(WsConnection {
            commands,
            next_id: Arc::new(AtomicU64::new(1)),
            closed,
        })
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst) || self.commands.is_closed()
    }

    /// Starts a subscription on this connection.
    pub fn subscribe(&self, query: &str, variables: Value) -> Result<WsSubscription, AgentError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed).to_string();
        let (tx, rx) = mpsc::unbounded_channel();
        let payload = SubscribePayload {
            query: query.to_string(),
            variables,
        };
        self.commands
            .send(Command::Subscribe { id, payload, tx })
            .map_err(|_| AgentError::ServerUnavailable {
                url: "websocket".to_string(),
                reason: "connection closed".to_string(),
            })?;
        Ok(WsSubscription { rx })
    }
}

/// The connection task: sends subscribes, routes what arrives, pings, completes
/// subscriptions whose receiver went away. Ends (dropping every subscriber, which is
/// how they learn) when the socket ends.
async fn drive<S>(
    mut socket: S,
    mut commands: mpsc::UnboundedReceiver<Command>,
    closed: Arc<AtomicBool>,
    url: String,
) where
    S: futures::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>>
        + futures::Sink<Message, Error = tokio_tungstenite::tungstenite::Error>
        + Unpin,
{
    let mut demux = Demux::new();
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.tick().await;
    let reason = loop {
        tokio::select! {
            cmd = commands.recv() => {
                let Some(Command::Subscribe { id, payload, tx }) = cmd else {
                    break "client gone".to_string();
                };
                demux.insert(id.clone(), tx);
                let msg = ClientMessage::Subscribe { id, payload };
                if let Err(e) = socket.send(Message::text(msg.to_text())).await {
                    break e.to_string();
                }
            }
            msg = socket.next() => {
                let text = match msg {
                    Some(Ok(Message::Text(text))) => text,
                    Some(Ok(Message::Close(_))) | None => break "closed by the server".to_string(),
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => break e.to_string(),
                };
                let effect = match ServerMessage::parse(&text) {
                    Ok(m) => demux.handle(m),
                    Err(e) => {
                        warn!(%url, error = %e, "ignoring a websocket message");
                        Effect::None
                    }
                };
                if let Effect::Reply(reply) = effect {
                    if let Err(e) = socket.send(Message::text(reply.to_text())).await {
                        break e.to_string();
                    }
                }
            }
            _ = ping.tick() => {
                let mut out = vec![ClientMessage::Ping {}];
                out.extend(demux.abandoned().into_iter().map(|id| ClientMessage::Complete { id }));
                for m in out {
                    if let Err(e) = socket.send(Message::text(m.to_text())).await {
                        closed.store(true, Ordering::SeqCst);
                        debug!(%url, error = %e, "websocket send failed");
                        return;
                    }
                }
            }
        }
    };
    closed.store(true, Ordering::SeqCst);
    debug!(%url, %reason, subscriptions = demux.len(), "websocket connection ended");
}

/// A shared connection: every node of the process subscribes over the same socket;
/// the first caller after it drops makes the next one.
pub struct WsPool {
    servers: std::sync::Arc<super::Servers>,
    token: String,
    tls: ClientTls,
    current: Mutex<Option<WsConnection>>,
}

impl WsPool {
    /// A pool for the current one of `servers` (moving on when it cannot be reached).
    pub fn over(servers: std::sync::Arc<super::Servers>, token: String) -> Self {
        WsPool {
            servers,
            token,
            tls: ClientTls::default(),
            current: Mutex::new(None),
        }
    }

    /// Trusts `tls` for wss:// URLs.
    pub fn with_tls(mut self, tls: ClientTls) -> Self {
        self.tls = tls;
        self
    }

    /// The websocket URL of the server in use.
    pub fn url(&self) -> String {
        self.servers.current().1.ws.clone()
    }

    /// The servers the pool connects to.
    pub fn servers(&self) -> &std::sync::Arc<super::Servers> {
        &self.servers
    }

    /// The token the connections authenticate with (session sockets use it too).
    pub fn token(&self) -> &str {
        &self.token
    }

    /// The live connection, connecting when there is none.
    pub async fn get(&self) -> Result<WsConnection, AgentError> {
        let mut current = self.current.lock().await;
        if let Some(c) = current.as_ref().filter(|c| !c.is_closed()) {
            return Ok(c.clone());
        }
        *current = None;
        let (index, endpoints) = self.servers.current();
        let c = match WsConnection::connect_with(&endpoints.ws, &self.token, &self.tls).await {
            Ok(c) => c,
            Err(e @ AgentError::ServerUnavailable { .. }) => {
                self.servers.failed(index);
                return Err(e);
            }
            Err(e) => return Err(e),
        };
        *current = Some(c.clone());
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
    use tokio_tungstenite::tungstenite::http::HeaderValue;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
    use tokio_tungstenite::tungstenite::protocol::CloseFrame;
    use tokio_tungstenite::tungstenite::Message;

    use super::WsConnection;
    use crate::error::AgentError;

    /// A server that answers `connection_init` by closing with `code`; its URL.
    #[allow(clippy::result_large_err)] // the handshake callback's type is tungstenite's
    async fn closing_server(code: u16) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.expect("accept");
            let protocol = |_: &Request, mut resp: Response| {
                resp.headers_mut().insert(
                    "Sec-WebSocket-Protocol",
                    HeaderValue::from_static("graphql-transport-ws"),
                );
                Ok(resp)
            };
            let mut ws = tokio_tungstenite::accept_hdr_async(tcp, protocol)
                .await
                .expect("upgrade");
            let _init = ws.next().await;
            let frame = CloseFrame {
                code: CloseCode::from(code),
                reason: "bye".into(),
            };
            let _ = ws.send(Message::Close(Some(frame))).await;
        });
        format!("ws://{addr}/graphql/ws")
    }

    #[tokio::test]
    async fn a_refused_token_is_final_and_a_server_going_away_is_not() {
        let err = WsConnection::connect(&closing_server(4403).await, "t")
            .await
            .err()
            .expect("refused");
        assert!(
            matches!(&err, AgentError::Api { code, .. } if code == "UNAUTHENTICATED"),
            "{err:?}"
        );
        for code in [1001, 1012, 4429] {
            let err = WsConnection::connect(&closing_server(code).await, "t")
                .await
                .err()
                .expect("closed");
            assert!(
                matches!(err, AgentError::ServerUnavailable { .. }),
                "close {code}: {err:?}"
            );
        }
    }
}
