//! `UsageSample`: one heartbeat's reading of a container's CPU and memory, kept in the
//! server's memory (every heartbeat, logged or not) for the console's usage chart.

use async_graphql::SimpleObject;

/// CPU and memory of one container at one heartbeat.
#[derive(SimpleObject, Clone, Copy, Debug, PartialEq, Eq)]
pub struct UsageSample {
    pub time_ms: i64,
    pub cpu_millis: u64,
    pub memory_bytes: u64,
}
