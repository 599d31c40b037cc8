//! In-memory usage history: each container's CPU and memory from every accepted
//! heartbeat (the log keeps only one heartbeat per node per interval), so the
//! console's chart starts at the first heartbeat and gains a point per heartbeat.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use dcloud_events::model::ContainerUsage;
use dcloud_graphql::types::usage::UsageSample;

/// Samples kept per deployment (at a 5-second heartbeat, 30 minutes).
pub(super) const SAMPLES_KEPT: usize = 360;
/// Deployments not reported for this long are forgotten.
const FORGET_AFTER_MS: i64 = 3_600_000;

#[derive(Default)]
pub(super) struct UsageHistory {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    by_deployment: HashMap<String, VecDeque<UsageSample>>,
    recorded: u64,
}

impl UsageHistory {
    /// Records one heartbeat's containers at `time_ms`.
    pub(super) fn record(&self, containers: &[ContainerUsage], time_ms: i64) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        for c in containers {
            let samples = inner
                .by_deployment
                .entry(c.deployment_id.clone())
                .or_default();
            if samples.len() == SAMPLES_KEPT {
                samples.pop_front();
            }
            samples.push_back(UsageSample {
                time_ms,
                cpu_millis: c.usage.cpu_millis,
                memory_bytes: c.usage.memory_bytes,
            });
        }
        inner.recorded += 1;
        if inner.recorded.is_multiple_of(1024) {
            inner.by_deployment.retain(|_, s| {
                s.back()
                    .is_some_and(|last| time_ms - last.time_ms < FORGET_AFTER_MS)
            });
        }
    }

    pub(super) fn samples(&self, deployment_id: &str) -> Vec<UsageSample> {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner
            .by_deployment
            .get(deployment_id)
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use dcloud_events::model::Usage;

    use super::*;

    fn report(id: &str, cpu: u64) -> ContainerUsage {
        ContainerUsage {
            deployment_id: id.to_string(),
            usage: Usage {
                cpu_millis: cpu,
                memory_bytes: cpu * 10,
            },
        }
    }

    #[test]
    fn keeps_every_heartbeat_up_to_the_cap_and_forgets_old_ones() {
        let h = UsageHistory::default();
        h.record(&[report("a", 1), report("b", 2)], 1_000);
        h.record(&[report("a", 3)], 2_000);
        let a = h.samples("a");
        assert_eq!(
            a.iter()
                .map(|s| (s.time_ms, s.cpu_millis))
                .collect::<Vec<_>>(),
            vec![(1_000, 1), (2_000, 3)]
        );
        assert_eq!(h.samples("b").len(), 1);
        assert!(h.samples("zz").is_empty());
        for i in 0..(SAMPLES_KEPT as i64 + 10) {
            h.record(&[report("a", 5)], 3_000 + i);
        }
        assert_eq!(h.samples("a").len(), SAMPLES_KEPT);
        // Two thousand heartbeats an hour later: "b" (silent since) is forgotten.
        for i in 0..2048 {
            h.record(&[report("a", 5)], 10_000_000 + i);
        }
        assert!(h.samples("b").is_empty());
        assert_eq!(h.samples("a").len(), SAMPLES_KEPT);
    }
}
