//! The edge's limits: the settings ([`Limits`]), token buckets for failed
//! authentications (per client address) and writes (per token), and the counts of
//! open websocket connections and subscriptions per token.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

/// How much one caller may ask of the server. Every field is a server setting (flag,
/// `DCLOUD_*` variable, config file key; see docs/operations.md).
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// A GraphQL request over HTTP running longer than this is answered `OVERLOADED`.
    pub request_timeout: Duration,
    /// Open websocket connections per token.
    pub max_connections_per_token: usize,
    /// Open subscriptions per token (over all its connections).
    pub max_subscriptions_per_token: usize,
    /// Failed authentications per client address per minute (then every request of
    /// that address that carries a token is refused until the bucket refills).
    pub auth_failures_per_minute: u32,
    /// Writes (mutations) per token per second, with bursts of twice as many.
    pub writes_per_second: u32,
    /// Most fields (aliases and fragment spreads included) one document may select.
    pub max_query_fields: usize,
    /// How often open websocket sessions re-check their token (revocation, expiry).
    pub token_recheck: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            request_timeout: Duration::from_secs(30),
            max_connections_per_token: 64,
            max_subscriptions_per_token: 10_000,
            auth_failures_per_minute: 30,
            writes_per_second: 1_000,
            max_query_fields: 2_000,
            token_recheck: Duration::from_secs(1),
        }
    }
}

/// A token bucket per key: `burst` tokens, refilled at `per_sec`.
pub(crate) struct Buckets {
    burst: f64,
    per_sec: f64,
    map: Mutex<HashMap<String, (f64, Instant)>>,
}

/// Above this many keys, full (idle) buckets are forgotten.
const PRUNE_AT: usize = 10_000;

impl Buckets {
    pub(crate) fn new(burst: f64, per_sec: f64) -> Buckets {
        Buckets {
            burst: burst.max(1.0),
            per_sec: per_sec.max(f64::MIN_POSITIVE),
            map: Mutex::new(HashMap::new()),
        }
    }

    fn refill(&self, entry: &mut (f64, Instant), now: Instant) {
        let elapsed = now.saturating_duration_since(entry.1).as_secs_f64();
        entry.0 = (entry.0 + elapsed * self.per_sec).min(self.burst);
        entry.1 = now;
    }

    fn wait_ms(&self, level: f64) -> u64 {
        let missing = (1.0 - level).max(0.0);
        ((missing / self.per_sec) * 1000.0).ceil().max(1.0) as u64
    }

    /// Takes one token for `key`, or says how long (ms) until one is there.
    pub(crate) fn take(&self, key: &str) -> Result<(), u64> {
        let now = Instant::now();
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() > PRUNE_AT {
            let burst = self.burst;
            let per_sec = self.per_sec;
            map.retain(|_, (level, at)| {
                *level + now.saturating_duration_since(*at).as_secs_f64() * per_sec < burst
            });
        }
        let entry = map.entry(key.to_string()).or_insert((self.burst, now));
        self.refill(entry, now);
        if entry.0 >= 1.0 {
            entry.0 -= 1.0;
            Ok(())
        } else {
            Err(self.wait_ms(entry.0))
        }
    }

    /// Whether `key` has run dry: `Err(ms until one token is back)`.
    pub(crate) fn check(&self, key: &str) -> Result<(), u64> {
        let now = Instant::now();
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        match map.get_mut(key) {
            None => Ok(()),
            Some(entry) => {
                self.refill(entry, now);
                if entry.0 >= 1.0 {
                    Ok(())
                } else {
                    Err(self.wait_ms(entry.0))
                }
            }
        }
    }
}

/// Counts of open things per key; a [`Slot`] gives its place back when dropped.
#[derive(Default)]
pub(crate) struct Counter {
    map: Mutex<HashMap<String, usize>>,
}

/// One open thing counted in a [`Counter`].
pub(crate) struct Slot {
    counter: Arc<Counter>,
    key: String,
}

impl Counter {
    /// One more for `key`, unless it already has `max`.
    pub(crate) fn acquire(self: &Arc<Self>, key: &str, max: usize) -> Option<Slot> {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        let n = map.entry(key.to_string()).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(Slot {
            counter: self.clone(),
            key: key.to_string(),
        })
    }

    pub(crate) fn open(&self, key: &str) -> usize {
        let map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.get(key).copied().unwrap_or(0)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut map = self.counter.map.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = map.get_mut(&self.key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                map.remove(&self.key);
            }
        }
    }
}

/// The limits in force and their live counts, shared by every handler.
pub struct Guards {
    pub(crate) limits: Limits,
    pub(crate) auth_failures: Buckets,
    pub(crate) writes: Buckets,
    pub(crate) connections: Arc<Counter>,
    pub(crate) subscriptions: Arc<Counter>,
}

impl Guards {
    pub fn new(limits: Limits) -> Guards {
        let per_min = f64::from(limits.auth_failures_per_minute);
        let per_sec = f64::from(limits.writes_per_second);
        Guards {
            auth_failures: Buckets::new(per_min, per_min / 60.0),
            writes: Buckets::new(per_sec * 2.0, per_sec),
            connections: Arc::default(),
            subscriptions: Arc::default(),
            limits,
        }
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Open websocket connections of the token with this key.
    pub fn connections_open(&self, key: &str) -> usize {
        self.connections.open(key)
    }
}

/// The key of a token in the limiters: the hex of its hash (never the secret).
pub(crate) fn token_key(hash: &[u8; 32]) -> String {
    hex::encode(&hash[..16])
}

/// The key of a client address (failed authentications, anonymous writes).
pub(crate) fn addr_key(ip: Option<IpAddr>) -> String {
    ip.map_or_else(|| "addr:unknown".to_string(), |ip| format!("addr:{ip}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn buckets_refill_at_their_rate() {
        let b = Buckets::new(2.0, 1.0);
        assert!(b.take("k").is_ok());
        assert!(b.take("k").is_ok());
        let wait = b.take("k").expect_err("dry");
        assert_eq!(wait, 1000);
        assert!(b.check("k").is_err());
        assert!(b.take("other").is_ok(), "keys are separate");
        tokio::time::advance(Duration::from_millis(1000)).await;
        assert!(b.check("k").is_ok());
        assert!(b.take("k").is_ok());
    }

    #[test]
    fn counters_give_back_on_drop() {
        let c = Arc::new(Counter::default());
        let a = c.acquire("t", 2).expect("first");
        let b = c.acquire("t", 2).expect("second");
        assert!(c.acquire("t", 2).is_none(), "third refused");
        assert_eq!(c.open("t"), 2);
        drop(a);
        assert!(c.acquire("t", 2).is_some());
        drop(b);
        assert_eq!(c.open("t"), 0);
    }
}
