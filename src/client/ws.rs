//! A GraphQL subscription over `/graphql/ws` (the graphql-transport-ws protocol): the
//! token goes in `connection_init`, each `next` payload's `data` comes back in order.

use anyhow::Context;
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::api::{Api, GqlErrors};

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// One open subscription.
pub(super) struct Subscription {
    socket: Socket,
    done: bool,
}

impl Subscription {
    /// Connects, authenticates and subscribes; errors when the server refuses the
    /// connection (e.g. closed with 4403 for a bad token) or the operation.
    pub(super) async fn open(api: &Api, query: &str, variables: Value) -> anyhow::Result<Self> {
        let url = api.ws_url();
        let mut request = url
            .as_str()
            .into_client_request()
            .with_context(|| format!("bad websocket url {url}"))?;
        request.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            HeaderValue::from_static("graphql-transport-ws"),
        );
        let (mut socket, _) = tokio_tungstenite::connect_async_tls_with_config(
            request,
            None,
            false,
            api.tls().connector(),
        )
        .await
        .with_context(|| format!("cannot open the websocket {url}"))?;
        let bearer = format!("Bearer {}", api.token());
        let init = json!({
            "type": "connection_init",
            "payload": {"token": api.token(), "authorization": bearer, "Authorization": bearer},
        });
        socket.send(Message::text(init.to_string())).await?;
        loop {
            let msg = next_json(&mut socket)
                .await?
                .context("the server closed the websocket before acknowledging it")?;
            match msg.get("type").and_then(Value::as_str) {
                Some("connection_ack") => break,
                Some("ping") => pong(&mut socket).await?,
                _ => {}
            }
        }
        let subscribe = json!({
            "id": "1",
            "type": "subscribe",
            "payload": {"query": query, "variables": variables},
        });
        socket.send(Message::text(subscribe.to_string())).await?;
        Ok(Subscription {
            socket,
            done: false,
        })
    }

    /// The next item's `data`; `Ok(None)` once the server completes the subscription.
    pub(super) async fn next(&mut self) -> anyhow::Result<Option<Value>> {
        if self.done {
            return Ok(None);
        }
        loop {
            let Some(msg) = next_json(&mut self.socket).await? else {
                self.done = true;
                anyhow::bail!("the server closed the websocket");
            };
            match msg.get("type").and_then(Value::as_str) {
                Some("next") => {
                    let payload = msg.get("payload").cloned().unwrap_or(Value::Null);
                    if let Some(errors) = payload.get("errors").filter(|e| !e.is_null()) {
                        return Err(GqlErrors::from_value(errors).into());
                    }
                    return Ok(Some(payload.get("data").cloned().unwrap_or(Value::Null)));
                }
                Some("error") => {
                    self.done = true;
                    let payload = msg.get("payload").cloned().unwrap_or(Value::Null);
                    return Err(GqlErrors::from_value(&payload).into());
                }
                Some("complete") => {
                    self.done = true;
                    return Ok(None);
                }
                Some("ping") => pong(&mut self.socket).await?,
                _ => {}
            }
        }
    }
}

async fn pong(socket: &mut Socket) -> anyhow::Result<()> {
    let msg = json!({"type": "pong"}).to_string();
    socket.send(Message::text(msg)).await?;
    Ok(())
}

/// The next text frame as JSON; `None` when the socket closed.
async fn next_json(socket: &mut Socket) -> anyhow::Result<Option<Value>> {
    while let Some(frame) = socket.next().await {
        match frame.context("websocket error")? {
            Message::Text(text) => {
                let value = serde_json::from_str(text.as_str())
                    .context("the server sent a websocket message that is not json")?;
                return Ok(Some(value));
            }
            Message::Close(frame) => {
                if let Some(f) = frame {
                    anyhow::bail!("the server closed the websocket ({}: {})", f.code, f.reason);
                }
                return Ok(None);
            }
            Message::Ping(data) => socket.send(Message::Pong(data)).await?,
            _ => {}
        }
    }
    Ok(None)
}
