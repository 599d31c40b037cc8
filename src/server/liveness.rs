//! In-memory liveness: when each node's agent was last heard from (every accepted
//! `RegisterNode` or `Heartbeat`, logged or not), and the pure decision of which alive
//! nodes are overdue. Monotonic time is tokio's, so tests can run it on a paused clock.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Last-heard times per node, and when this table started (after a restart every node
/// gets one TTL of grace from then).
pub struct Liveness {
    started: Mutex<Instant>,
    seen: Mutex<HashMap<String, Seen>>,
}

#[derive(Debug, Clone, Copy)]
struct Seen {
    at: Instant,
    wall_ms: i64,
}

impl Default for Liveness {
    fn default() -> Self {
        Liveness::new()
    }
}

impl Liveness {
    pub fn new() -> Liveness {
        Liveness {
            started: Mutex::new(Instant::now()),
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// The node was heard from now (`wall_ms`: the wall clock, for display).
    pub fn touch(&self, node_id: &str, wall_ms: i64) {
        self.touch_at(node_id, Instant::now(), wall_ms);
    }

    /// The node was heard from at `at` (when its message was received); a later
    /// touch already recorded is kept.
    pub fn touch_at(&self, node_id: &str, at: Instant, wall_ms: i64) {
        let mut seen = self.lock();
        match seen.get_mut(node_id) {
            Some(s) if s.at >= at => {}
            Some(s) => *s = Seen { at, wall_ms },
            None => {
                seen.insert(node_id.to_string(), Seen { at, wall_ms });
            }
        }
    }

    /// Every node gets one TTL of grace from now, as after a restart (a standby that
    /// became the leader heard from no agent before).
    pub fn restart_grace(&self) {
        *self.started.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
    }

    pub fn last_seen_ms(&self, node_id: &str) -> Option<i64> {
        self.lock().get(node_id).map(|s| s.wall_ms)
    }

    /// Which of `alive` have been silent for `ttl` as of now.
    pub fn overdue<'a>(
        &self,
        alive: impl IntoIterator<Item = &'a str>,
        ttl: Duration,
    ) -> Vec<String> {
        let started = *self.started.lock().unwrap_or_else(|p| p.into_inner());
        let seen = self.lock();
        let now = Instant::now();
        alive
            .into_iter()
            .filter(|id| is_overdue(seen.get(*id).map(|s| s.at), started, now, ttl))
            .map(str::to_string)
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Seen>> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The nodes of `alive` not heard from for at least `ttl` at `now`. A node never heard
/// from since `started` counts from `started` (a fresh grace period after a restart).
pub fn overdue_nodes<'a>(
    alive: impl IntoIterator<Item = &'a str>,
    seen: &HashMap<String, Instant>,
    started: Instant,
    now: Instant,
    ttl: Duration,
) -> Vec<String> {
    alive
        .into_iter()
        .filter(|id| is_overdue(seen.get(*id).copied(), started, now, ttl))
        .map(str::to_string)
        .collect()
}

fn is_overdue(last: Option<Instant>, started: Instant, now: Instant, ttl: Duration) -> bool {
    let last = last.unwrap_or(started).max(started);
    now.saturating_duration_since(last) >= ttl
}

/// The silence after which a node is lost, given how late the liveness timer itself
/// fired (`lag`): a server too busy to run its timer on time was as likely too busy to
/// read heartbeats, so its own delay is added to the TTL.
pub(super) fn lost_after(ttl: Duration, lag: Duration) -> Duration {
    ttl.saturating_add(lag)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_is_overdue_once_silent_for_the_ttl() {
        let t0 = Instant::now();
        let ttl = Duration::from_secs(15);
        let seen = HashMap::from([
            ("a".to_string(), t0 + Duration::from_secs(10)),
            ("b".to_string(), t0 + Duration::from_secs(2)),
        ]);
        let at = |s| t0 + Duration::from_secs(s);
        assert!(overdue_nodes(["a", "b"], &seen, t0, at(16), ttl).is_empty());
        assert_eq!(overdue_nodes(["a", "b"], &seen, t0, at(17), ttl), vec!["b"]);
        assert_eq!(
            overdue_nodes(["a", "b"], &seen, t0, at(25), ttl),
            vec!["a", "b"]
        );
    }

    #[test]
    fn nodes_unheard_since_start_get_one_ttl_of_grace() {
        let t0 = Instant::now();
        let ttl = Duration::from_secs(15);
        let seen = HashMap::new();
        assert!(overdue_nodes(["c"], &seen, t0, t0 + Duration::from_secs(14), ttl).is_empty());
        assert_eq!(
            overdue_nodes(["c"], &seen, t0, t0 + Duration::from_secs(15), ttl),
            vec!["c"]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn silence_counts_from_receipt_and_the_timers_own_delay_is_grace() {
        let live = Liveness::new();
        let ttl = Duration::from_secs(15);
        tokio::time::advance(Duration::from_secs(10)).await;
        // Received at 10 s; the server only got round to it at 20 s.
        let received = Instant::now();
        tokio::time::advance(Duration::from_secs(10)).await;
        live.touch_at("a", received, 1);
        // An older receipt never moves the last-heard time back.
        live.touch_at("a", received - Duration::from_secs(5), 0);
        assert_eq!(live.last_seen_ms("a"), Some(1));
        tokio::time::advance(Duration::from_secs(4)).await;
        assert!(live.overdue(["a"], ttl).is_empty(), "24 s: 14 s of silence");
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(
            live.overdue(["a"], ttl),
            vec!["a"],
            "25 s: the TTL of silence"
        );
        // A timer that fired 8 s late was a server too busy to read heartbeats:
        // the node gets those 8 s on top.
        let grace = lost_after(ttl, Duration::from_secs(8));
        assert!(live.overdue(["a"], grace).is_empty());
        tokio::time::advance(Duration::from_secs(8)).await;
        assert_eq!(live.overdue(["a"], grace), vec!["a"]);
    }

    #[tokio::test(start_paused = true)]
    async fn the_table_follows_the_paused_clock() {
        let live = Liveness::new();
        let ttl = Duration::from_secs(15);
        tokio::time::advance(Duration::from_secs(10)).await;
        live.touch("a", 1_000);
        assert_eq!(live.last_seen_ms("a"), Some(1_000));
        assert_eq!(live.last_seen_ms("zz"), None);
        tokio::time::advance(Duration::from_secs(6)).await;
        // "b" was never heard from: its grace (one TTL from start) is over; "a" has 9s left.
        assert_eq!(live.overdue(["a", "b"], ttl), vec!["b"]);
        tokio::time::advance(Duration::from_secs(9)).await;
        assert_eq!(live.overdue(["a", "b"], ttl), vec!["a", "b"]);
        live.touch("a", 2_000);
        assert_eq!(live.overdue(["a", "b"], ttl), vec!["b"]);
    }
}
