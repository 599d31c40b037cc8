//! The writer's idempotency window (exactly-once requests): which keyed command
//! appended which envelopes, from the `RequestKeyRecorded` events in the log. A key is
//! remembered per actor for [`WINDOW_MS`]; on start-up the window is rebuilt from the
//! last [`SCAN_EVENTS`] events of the log.

use std::collections::{HashMap, VecDeque};

use dcloud_events::{Event, EventLog, LogError};

/// How long a key is answered with its first result.
pub const WINDOW_MS: i64 = 24 * 60 * 60 * 1000;
/// How far back start-up looks for keys (older ones are forgotten earlier).
pub const SCAN_EVENTS: u64 = 262_144;

/// Where a keyed command's envelopes are: `first..first + count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Keyed {
    pub(crate) first: u64,
    pub(crate) count: u32,
}

#[derive(Default)]
pub(crate) struct RequestKeys {
    map: HashMap<String, Keyed>,
    /// Insertion order with the time of each key, for pruning.
    order: VecDeque<(i64, String)>,
}

/// A key is the actor's own: the same key from two actors is two requests.
pub(crate) fn scoped(actor_label: &str, key: &str) -> String {
    format!("{actor_label}\u{0}{key}")
}

impl RequestKeys {
    /// The keys recorded in the last [`SCAN_EVENTS`] events of `log` within the window.
    pub(crate) fn load(log: &dyn EventLog, now_ms: i64) -> Result<RequestKeys, LogError> {
        let mut keys = RequestKeys::default();
        let last = log.last_seq();
        if last == 0 {
            return Ok(keys);
        }
        let from = last.saturating_sub(SCAN_EVENTS - 1).max(1);
        for env in log.read_range(from, last) {
            let env = env?;
            if let Event::RequestKeyRecorded { key, events } = &env.event {
                if env.time_ms >= now_ms - WINDOW_MS {
                    let first = env.seq - u64::from(*events);
                    keys.insert(scoped(&env.actor, key), first, *events, env.time_ms);
                }
            }
        }
        Ok(keys)
    }

    pub(crate) fn get(&self, scoped_key: &str) -> Option<Keyed> {
        self.map.get(scoped_key).copied()
    }

    pub(crate) fn insert(&mut self, scoped_key: String, first: u64, count: u32, time_ms: i64) {
        self.prune(time_ms);
        self.order.push_back((time_ms, scoped_key.clone()));
        self.map.insert(scoped_key, Keyed { first, count });
    }

    fn prune(&mut self, now_ms: i64) {
        while let Some((t, _)) = self.order.front() {
            if *t >= now_ms - WINDOW_MS {
                break;
            }
            if let Some((_, k)) = self.order.pop_front() {
                self.map.remove(&k);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_per_actor_and_forgotten_after_the_window() {
        let mut keys = RequestKeys::default();
        keys.insert(scoped("user:ann", "k"), 5, 2, 1_000);
        assert_eq!(
            keys.get(&scoped("user:ann", "k")),
            Some(Keyed { first: 5, count: 2 })
        );
        assert_eq!(keys.get(&scoped("user:bob", "k")), None);
        keys.insert(scoped("user:ann", "later"), 9, 1, 1_000 + WINDOW_MS + 1);
        assert_eq!(keys.get(&scoped("user:ann", "k")), None, "pruned");
        assert_eq!(keys.map.len(), 1);
    }
}
