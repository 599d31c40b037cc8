//! Helpers shared by the integration tests: sample events and a log in a temp dir.

#![allow(dead_code, unreachable_pub)] // each test binary uses a different subset

use dcloud_events::model::{ContainerUsage, Usage};
use dcloud_events::{Envelope, Event, EventLog, FjallLog, NewEvent};

/// A realistic, varied event: mostly heartbeats, some deployment events.
pub fn new_event(i: u64) -> NewEvent {
    let event = match i % 4 {
        0 => Event::NodeHeartbeat {
            node_id: format!("node-agent_0x{:012x}", i % 97),
            usage: Usage {
                cpu_millis: i * 7 % 16_000,
                memory_bytes: i << 20,
            },
            containers: vec![ContainerUsage {
                deployment_id: format!("dep-{}", i % 13),
                usage: Usage {
                    cpu_millis: 250,
                    memory_bytes: 1 << 30,
                },
            }],
            engine_ok: true,
        },
        1 => Event::ContainerStarted {
            deployment_id: format!("dep-{i}"),
        },
        2 => Event::ContainerExited {
            deployment_id: format!("dep-{i}"),
            code: i as i64 % 3,
        },
        _ => Event::NodeLost {
            node_id: format!("node-{i}"),
        },
    };
    NewEvent {
        time_ms: 1_700_000_000_000 + i as i64,
        actor: format!("agent:node-{}", i % 97),
        correlation: format!("req-{i}"),
        event,
    }
}

/// `count` events numbered from `first` (the number only varies their content).
pub fn new_events(first: u64, count: u64) -> Vec<NewEvent> {
    (first..first + count).map(new_event).collect()
}

/// Appends `batches` batches of `size` events, returning everything appended.
pub fn fill(log: &FjallLog, batches: u64, size: u64) -> Vec<Envelope> {
    let mut all = Vec::new();
    for _ in 0..batches {
        let last = log.last_seq();
        all.extend(
            log.append(last, new_events(last + 1, size))
                .expect("append"),
        );
    }
    all
}

/// Whether the envelope carries exactly what `new` asked for.
pub fn same_content(env: &Envelope, new: &NewEvent) -> bool {
    env.time_ms == new.time_ms
        && env.actor == new.actor
        && env.correlation == new.correlation
        && env.event == new.event
}

pub fn open(dir: &tempfile::TempDir) -> FjallLog {
    FjallLog::open(dir.path()).expect("open log")
}
