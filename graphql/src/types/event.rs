//! `EventRecord`: one envelope of the log as the API shows it (payload as JSON).

use async_graphql::{Json, Object};
use dcloud_events::Envelope;

pub struct EventRecord(pub(crate) Envelope);

#[Object(name = "EventRecord")]
impl EventRecord {
    /// Gap-free sequence number, from 1.
    async fn seq(&self) -> u64 {
        self.0.seq
    }

    async fn time_ms(&self) -> i64 {
        self.0.time_ms
    }

    /// Who caused it (`admin:NAME`, `user:NAME`, `agent:NODE`, `system`).
    async fn actor(&self) -> &str {
        &self.0.actor
    }

    /// Ties together the events of one request.
    async fn correlation(&self) -> &str {
        &self.0.correlation
    }

    /// The event's variant name (`DeploymentScheduled`, …).
    #[graphql(name = "type")]
    async fn kind(&self) -> &'static str {
        self.0.event.kind()
    }

    /// What it is about (`deployment:ID`, `node:ID`, …).
    async fn entity(&self) -> String {
        self.0.event.entity()
    }

    /// Envelope schema version.
    async fn schema(&self) -> u16 {
        self.0.schema
    }

    /// Hex blake3 hash of this envelope (chained to the previous one).
    async fn hash(&self) -> String {
        hex::encode(self.0.hash)
    }

    async fn prev_hash(&self) -> String {
        hex::encode(self.0.prev_hash)
    }

    /// The event's fields, as in the events catalogue.
    async fn payload(&self) -> Json<serde_json::Value> {
        Json(payload(&self.0))
    }
}

/// The event's fields without its `type` tag.
pub(crate) fn payload(env: &Envelope) -> serde_json::Value {
    match serde_json::to_value(&env.event) {
        Ok(serde_json::Value::Object(mut m)) => m.remove("data").unwrap_or(serde_json::Value::Null),
        _ => serde_json::Value::Null,
    }
}
