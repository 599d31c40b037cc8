//! The graphql-transport-ws protocol without I/O: its messages, and `Demux`, which
//! routes what the server sends to the subscription each message belongs to.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::mpsc;

/// The websocket subprotocol name.
pub const SUBPROTOCOL: &str = "graphql-transport-ws";

/// A message the client sends.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientMessage {
    ConnectionInit {
        payload: Value,
    },
    Subscribe {
        id: String,
        payload: SubscribePayload,
    },
    Complete {
        id: String,
    },
    Ping {},
    Pong {},
}

/// The operation of a `subscribe` message.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SubscribePayload {
    pub query: String,
    pub variables: Value,
}

/// A message the server sends.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    ConnectionAck {
        #[serde(default)]
        payload: Option<Value>,
    },
    Next {
        id: String,
        payload: Value,
    },
    Error {
        id: String,
        payload: Value,
    },
    Complete {
        id: String,
    },
    Ping {
        #[serde(default)]
        payload: Option<Value>,
    },
    Pong {
        #[serde(default)]
        payload: Option<Value>,
    },
}

impl ServerMessage {
    pub fn parse(text: &str) -> Result<ServerMessage, String> {
        serde_json::from_str(text).map_err(|e| format!("not a graphql-transport-ws message: {e}"))
    }
}

impl ClientMessage {
    pub fn to_text(&self) -> String {
        // Serialising these plain enums cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// What one subscription receives.
#[derive(Debug, Clone, PartialEq)]
pub enum SubEvent {
    /// The `data` of one result (a `next` without errors).
    Data(Value),
    /// The server ended the subscription with an error: `(code, message)` of the
    /// first GraphQL error (`extensions.code`, else `ERROR`).
    Error { code: String, message: String },
    /// The server completed the subscription.
    Complete,
}

/// What the connection task must do after handling one server message.
#[derive(Debug, PartialEq)]
pub enum Effect {
    /// Nothing to do.
    None,
    /// Send this to the server.
    Reply(ClientMessage),
    /// The connection was acknowledged.
    Acked,
    /// A message that makes no sense here: close the connection.
    Violation(String),
}

/// Routes server messages to subscriptions by id. Senders are unbounded so that one
/// slow subscriber never stalls the others sharing the connection.
#[derive(Default)]
pub struct Demux {
    subs: HashMap<String, mpsc::UnboundedSender<SubEvent>>,
}

impl Demux {
    pub fn new() -> Self {
        Demux::default()
    }

    pub fn insert(&mut self, id: String, tx: mpsc::UnboundedSender<SubEvent>) {
        self.subs.insert(id, tx);
    }

    /// Forgets a subscription (the caller dropped it); returns whether it was known.
    pub fn remove(&mut self, id: &str) -> bool {
        self.subs.remove(id).is_some()
    }

    pub fn len(&self) -> usize {
        self.subs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.subs.is_empty()
    }

    /// Ids of subscriptions whose receiver was dropped (to `complete` them).
    pub fn abandoned(&mut self) -> Vec<String> {
        let gone: Vec<String> = self
            .subs
            .iter()
            .filter(|(_, tx)| tx.is_closed())
            .map(|(id, _)| id.clone())
            .collect();
        for id in &gone {
            self.subs.remove(id);
        }
        gone
    }

    pub fn handle(&mut self, msg: ServerMessage) -> Effect {
        match msg {
            ServerMessage::ConnectionAck { .. } => Effect::Acked,
            ServerMessage::Ping { .. } => Effect::Reply(ClientMessage::Pong {}),
            ServerMessage::Pong { .. } => Effect::None,
            ServerMessage::Next { id, payload } => {
                let event = match first_error(&payload) {
                    Some((code, message)) => SubEvent::Error { code, message },
                    None => SubEvent::Data(payload.get("data").cloned().unwrap_or(Value::Null)),
                };
                self.deliver(&id, event, false)
            }
            ServerMessage::Error { id, payload } => {
                let (code, message) = first_error(&serde_json::json!({ "errors": payload }))
                    .unwrap_or_else(|| ("ERROR".to_string(), payload.to_string()));
                self.deliver(&id, SubEvent::Error { code, message }, true)
            }
            ServerMessage::Complete { id } => self.deliver(&id, SubEvent::Complete, true),
        }
    }

    fn deliver(&mut self, id: &str, event: SubEvent, last: bool) -> Effect {
        let Some(tx) = self.subs.get(id) else {
            // Late messages for a subscription we completed ourselves are normal.
            return Effect::None;
        };
        let gone = tx.send(event).is_err();
        if last || gone {
            self.subs.remove(id);
        }
        if gone && !last {
            return Effect::Reply(ClientMessage::Complete { id: id.to_string() });
        }
        Effect::None
    }
}

/// `(extensions.code or "ERROR", message)` of the first entry of `errors`, if any.
pub fn first_error(body: &Value) -> Option<(String, String)> {
    let first = match body.get("errors")? {
        Value::Array(list) => list.first()?,
        other => other,
    };
    let message = first
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or("(no message)")
        .to_string();
    let code = first
        .pointer("/extensions/code")
        .and_then(Value::as_str)
        .unwrap_or("ERROR")
        .to_string();
    Some((code, message))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn client_messages_have_the_protocol_shape() {
        let init = ClientMessage::ConnectionInit {
            payload: json!({"token": "t"}),
        };
        assert_eq!(
            serde_json::to_value(&init).unwrap(),
            json!({"type": "connection_init", "payload": {"token": "t"}})
        );
        let sub = ClientMessage::Subscribe {
            id: "7".into(),
            payload: SubscribePayload {
                query: "subscription { x }".into(),
                variables: json!({"a": 1}),
            },
        };
        assert_eq!(
            serde_json::to_value(&sub).unwrap(),
            json!({"type": "subscribe", "id": "7",
                   "payload": {"query": "subscription { x }", "variables": {"a": 1}}})
        );
        assert_eq!(
            ClientMessage::Complete { id: "7".into() }.to_text(),
            r#"{"type":"complete","id":"7"}"#
        );
        assert_eq!(ClientMessage::Pong {}.to_text(), r#"{"type":"pong"}"#);
    }

    #[test]
    fn server_messages_parse() {
        assert_eq!(
            ServerMessage::parse(r#"{"type":"connection_ack"}"#).unwrap(),
            ServerMessage::ConnectionAck { payload: None }
        );
        assert_eq!(
            ServerMessage::parse(r#"{"type":"next","id":"1","payload":{"data":{"a":1}}}"#).unwrap(),
            ServerMessage::Next {
                id: "1".into(),
                payload: json!({"data": {"a": 1}})
            }
        );
        assert!(ServerMessage::parse(r#"{"type":"data","id":"1"}"#).is_err());
        assert!(ServerMessage::parse("not json").is_err());
    }

    #[test]
    fn demux_routes_by_id_and_ends_on_complete_or_error() {
        let mut d = Demux::new();
        let (tx1, mut rx1) = mpsc::unbounded_channel();
        let (tx2, mut rx2) = mpsc::unbounded_channel();
        d.insert("1".into(), tx1);
        d.insert("2".into(), tx2);

        let ack = ServerMessage::parse(r#"{"type":"connection_ack","payload":{}}"#).unwrap();
        assert_eq!(d.handle(ack), Effect::Acked);
        let ping = ServerMessage::parse(r#"{"type":"ping"}"#).unwrap();
        assert_eq!(d.handle(ping), Effect::Reply(ClientMessage::Pong {}));

        let next = |id: &str, v: Value| ServerMessage::Next {
            id: id.into(),
            payload: v,
        };
        assert_eq!(d.handle(next("2", json!({"data": {"n": 2}}))), Effect::None);
        assert_eq!(d.handle(next("1", json!({"data": {"n": 1}}))), Effect::None);
        assert_eq!(rx1.try_recv().unwrap(), SubEvent::Data(json!({"n": 1})));
        assert_eq!(rx2.try_recv().unwrap(), SubEvent::Data(json!({"n": 2})));

        // A `next` carrying errors is an error for that subscription only.
        d.handle(next(
            "1",
            json!({"data": null, "errors": [{"message": "no", "extensions": {"code": "FORBIDDEN"}}]}),
        ));
        assert_eq!(
            rx1.try_recv().unwrap(),
            SubEvent::Error {
                code: "FORBIDDEN".into(),
                message: "no".into()
            }
        );
        assert_eq!(d.len(), 2);

        // `error` ends the subscription.
        d.handle(ServerMessage::Error {
            id: "1".into(),
            payload: json!([{"message": "bad query"}]),
        });
        assert_eq!(
            rx1.try_recv().unwrap(),
            SubEvent::Error {
                code: "ERROR".into(),
                message: "bad query".into()
            }
        );
        assert_eq!(d.len(), 1);

        d.handle(ServerMessage::Complete { id: "2".into() });
        assert_eq!(rx2.try_recv().unwrap(), SubEvent::Complete);
        assert!(d.is_empty());

        // Late messages for unknown ids are ignored.
        assert_eq!(d.handle(next("2", json!({"data": {}}))), Effect::None);
    }

    #[test]
    fn a_dropped_receiver_is_completed() {
        let mut d = Demux::new();
        let (tx, rx) = mpsc::unbounded_channel();
        d.insert("9".into(), tx);
        drop(rx);
        let effect = d.handle(ServerMessage::Next {
            id: "9".into(),
            payload: json!({"data": {}}),
        });
        assert_eq!(
            effect,
            Effect::Reply(ClientMessage::Complete { id: "9".into() })
        );
        assert!(d.is_empty());

        let (tx, rx) = mpsc::unbounded_channel();
        d.insert("10".into(), tx);
        drop(rx);
        assert_eq!(d.abandoned(), vec!["10".to_string()]);
        assert!(d.is_empty());
    }
}
