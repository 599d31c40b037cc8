//! Prometheus metrics, hand-written in the text exposition format: counters and the
//! append-latency histogram kept here, gauges read from the state when scraped.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use dcloud_projections::State;

/// Upper bounds (seconds) of the append-latency histogram's buckets.
const LATENCY_BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

#[derive(Default)]
pub struct Metrics {
    events_appended: AtomicU64,
    placements: AtomicU64,
    subscriptions_open: AtomicI64,
    quiet_heartbeats: AtomicU64,
    ws_connections_open: AtomicI64,
    /// Weak: the router holds the backend, which holds these metrics.
    router: Mutex<Option<std::sync::Weak<dcloud_graphql::Router>>>,
    latency: Mutex<Histogram>,
}

#[derive(Default)]
struct Histogram {
    /// Per bucket (not cumulative); the last one is `+Inf`.
    counts: [u64; LATENCY_BUCKETS.len() + 1],
    sum: f64,
    count: u64,
}

impl Metrics {
    /// One submission appended `events` events (`placements` of them placements) and
    /// took `latency` from submit to durable.
    pub fn record_append(&self, events: u64, placements: u64, latency: Duration) {
        self.events_appended.fetch_add(events, Ordering::Relaxed);
        self.placements.fetch_add(placements, Ordering::Relaxed);
        let secs = latency.as_secs_f64();
        let bucket = LATENCY_BUCKETS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(LATENCY_BUCKETS.len());
        let mut h = self.latency.lock().unwrap_or_else(|p| p.into_inner());
        h.counts[bucket] += 1;
        h.sum += secs;
        h.count += 1;
    }

    pub fn events_appended(&self) -> u64 {
        self.events_appended.load(Ordering::Relaxed)
    }

    /// A heartbeat accepted without a log append (nor a trip through the writer).
    pub fn record_quiet_heartbeat(&self) {
        self.quiet_heartbeats.fetch_add(1, Ordering::Relaxed);
    }

    /// The subscription router whose counters `render` shows.
    pub fn set_router(&self, router: &std::sync::Arc<dcloud_graphql::Router>) {
        *self.router.lock().unwrap_or_else(|p| p.into_inner()) =
            Some(std::sync::Arc::downgrade(router));
    }

    pub fn ws_connection_opened(&self) {
        self.ws_connections_open.fetch_add(1, Ordering::Relaxed);
    }

    pub fn ws_connection_closed(&self) {
        self.ws_connections_open.fetch_sub(1, Ordering::Relaxed);
    }

    pub fn subscription_opened(&self) {
        self.subscriptions_open.fetch_add(1, Ordering::Relaxed);
    }

    pub fn subscription_closed(&self) {
        self.subscriptions_open.fetch_sub(1, Ordering::Relaxed);
    }

    pub fn subscriptions_open(&self) -> i64 {
        self.subscriptions_open.load(Ordering::Relaxed)
    }

    /// The text exposition of every metric, gauges read from `state`.
    pub fn render(&self, state: &State) -> String {
        let mut out = String::with_capacity(2048);
        counter(
            &mut out,
            "dcloud_events_appended_total",
            "Events appended to the log by this process.",
            self.events_appended(),
        );
        counter(
            &mut out,
            "dcloud_placements_total",
            "Deployments placed on a node by this process.",
            self.placements.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "dcloud_heartbeats_quiet_total",
            "Heartbeats accepted without a log append.",
            self.quiet_heartbeats.load(Ordering::Relaxed),
        );
        let router = self
            .router
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .and_then(std::sync::Weak::upgrade);
        if let Some(r) = router {
            let st = r.stats();
            counter(
                &mut out,
                "dcloud_subscription_deliveries_total",
                "Events handed to a subscription by the router (each a wake-up).",
                st.delivered,
            );
            counter(
                &mut out,
                "dcloud_subscription_overflows_total",
                "Subscriptions that fell a buffer behind and caught up from the log.",
                st.overflowed,
            );
        }
        self.render_latency(&mut out);
        let _ = writeln!(
            out,
            "# HELP dcloud_pending_deployments Deployments waiting for capacity.\n\
             # TYPE dcloud_pending_deployments gauge\n\
             dcloud_pending_deployments {}",
            state.pending.len()
        );
        let (mut alive, mut lost, mut draining) = (0u64, 0u64, 0u64);
        for n in &state.nodes {
            match (n.is_alive(), n.draining) {
                (false, _) => lost += 1,
                (true, true) => draining += 1,
                (true, false) => alive += 1,
            }
        }
        let _ = writeln!(
            out,
            "# HELP dcloud_nodes Nodes by state.\n# TYPE dcloud_nodes gauge\n\
             dcloud_nodes{{state=\"alive\"}} {alive}\n\
             dcloud_nodes{{state=\"lost\"}} {lost}\n\
             dcloud_nodes{{state=\"draining\"}} {draining}"
        );
        let _ = writeln!(
            out,
            "# HELP dcloud_subscriptions_open GraphQL subscriptions being served.\n\
             # TYPE dcloud_subscriptions_open gauge\n\
             dcloud_subscriptions_open {}",
            self.subscriptions_open().max(0)
        );
        let _ = writeln!(
            out,
            "# HELP dcloud_ws_connections_open Websocket connections open.\n\
             # TYPE dcloud_ws_connections_open gauge\n\
             dcloud_ws_connections_open {}",
            self.ws_connections_open.load(Ordering::Relaxed).max(0)
        );
        let _ = writeln!(
            out,
            "# HELP dcloud_log_last_seq Sequence number of the last event in the log.\n\
             # TYPE dcloud_log_last_seq gauge\n\
             dcloud_log_last_seq {}",
            state.last_seq()
        );
        out
    }

    fn render_latency(&self, out: &mut String) {
        let h = self.latency.lock().unwrap_or_else(|p| p.into_inner());
        let name = "dcloud_append_latency_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} Time from submitting a command to its events being durable.\n\
             # TYPE {name} histogram"
        );
        let mut cumulative = 0u64;
        for (i, bound) in LATENCY_BUCKETS.iter().enumerate() {
            cumulative += h.counts[i];
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        cumulative += h.counts[LATENCY_BUCKETS.len()];
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cumulative}");
        let _ = writeln!(out, "{name}_sum {}", h.sum);
        let _ = writeln!(out, "{name}_count {}", h.count);
    }
}

/// The data directory's free space: gauges, and `dcloud_storage_low` (1 below the
/// warning level, four times the reserve) before `dcloud_storage_full` (1 below the
/// reserve: writes refused).
pub(super) fn render_storage(out: &mut String, s: &crate::storage::StorageStatus) {
    let _ = writeln!(
        out,
        "# HELP dcloud_storage_free_bytes Bytes free on the data directory's file system.\n\
         # TYPE dcloud_storage_free_bytes gauge\n\
         dcloud_storage_free_bytes {}\n\
         # HELP dcloud_storage_reserve_bytes Below this much free, writes are refused.\n\
         # TYPE dcloud_storage_reserve_bytes gauge\n\
         dcloud_storage_reserve_bytes {}\n\
         # HELP dcloud_storage_low 1 when free space is below four times the reserve (warning).\n\
         # TYPE dcloud_storage_low gauge\n\
         dcloud_storage_low {}\n\
         # HELP dcloud_storage_full 1 when free space is below the reserve (writes refused).\n\
         # TYPE dcloud_storage_full gauge\n\
         dcloud_storage_full {}",
        s.free_bytes,
        s.reserve_bytes,
        u8::from(s.low),
        u8::from(s.full)
    );
}

/// Who leads: 1 on the server whose writer takes commands (always, on a log of its
/// own), 0 on a standby; with the leader's URL as a label when known.
pub(super) fn render_leader(out: &mut String, leading: bool, leader: Option<&str>) {
    let label = leader
        .map(|l| format!("{{leader=\"{}\"}}", l.replace(['\\', '"', '\n'], "_")))
        .unwrap_or_default();
    let _ = writeln!(
        out,
        "# HELP dcloud_leader 1 when this server leads (its writer takes commands), 0 on a standby.\n\
         # TYPE dcloud_leader gauge\n\
         dcloud_leader{label} {}",
        u8::from(leading)
    );
}

fn counter(out: &mut String, name: &str, help: &str, value: u64) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line<'a>(text: &'a str, prefix: &str) -> &'a str {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no line {prefix} in\n{text}"))
    }

    #[test]
    fn the_histogram_is_cumulative_and_counts_every_append() {
        let m = Metrics::default();
        m.record_append(3, 1, Duration::from_micros(300));
        m.record_append(2, 0, Duration::from_millis(30));
        m.record_append(1, 0, Duration::from_secs(10));
        let text = m.render(&State::default());
        assert_eq!(
            line(&text, "dcloud_events_appended_total "),
            "dcloud_events_appended_total 6"
        );
        assert_eq!(
            line(&text, "dcloud_placements_total "),
            "dcloud_placements_total 1"
        );
        let b = "dcloud_append_latency_seconds_bucket";
        assert_eq!(
            line(&text, &format!("{b}{{le=\"0.0005\"}}")),
            format!("{b}{{le=\"0.0005\"}} 1")
        );
        assert_eq!(
            line(&text, &format!("{b}{{le=\"0.05\"}}")),
            format!("{b}{{le=\"0.05\"}} 2")
        );
        assert_eq!(
            line(&text, &format!("{b}{{le=\"2.5\"}}")),
            format!("{b}{{le=\"2.5\"}} 2")
        );
        assert_eq!(
            line(&text, &format!("{b}{{le=\"+Inf\"}}")),
            format!("{b}{{le=\"+Inf\"}} 3")
        );
        assert_eq!(
            line(&text, "dcloud_append_latency_seconds_count"),
            "dcloud_append_latency_seconds_count 3"
        );
        assert_eq!(
            line(&text, "dcloud_nodes{state=\"alive\"}"),
            "dcloud_nodes{state=\"alive\"} 0"
        );
    }
}
