//! Quota usage (what a user's live deployments need) and the one check of a request
//! against a quota, shared by `decide` and the read side.

use dcloud_events::model::{Quota, Resources};
use serde::Serialize;

/// What a user's counted deployments need, summed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct QuotaUsage {
    pub cpu_millis: u64,
    pub memory_bytes: u64,
    pub gpus: u64,
    pub deployments: u64,
}

impl QuotaUsage {
    /// Adds one deployment needing `need`.
    pub fn add(&mut self, need: &Resources) {
        self.cpu_millis = self.cpu_millis.saturating_add(need.cpu_millis);
        self.memory_bytes = self.memory_bytes.saturating_add(need.memory_bytes);
        self.gpus = self.gpus.saturating_add(u64::from(need.gpus));
        self.deployments = self.deployments.saturating_add(1);
    }
}

/// `None` when one more deployment needing `need` fits in `quota` on top of `usage`;
/// else every limit it would pass, as `cpu 3 of 2, gpus 2 of 1` (what would be held,
/// of the limit; CPU in cores, memory with a binary unit).
pub fn quota_excess(quota: &Quota, usage: &QuotaUsage, need: &Resources) -> Option<String> {
    let mut after = *usage;
    after.add(need);
    let mut over = Vec::new();
    if let Some(limit) = quota.cpu_millis.filter(|l| after.cpu_millis > *l) {
        over.push(format!(
            "cpu {} of {}",
            cores(after.cpu_millis),
            cores(limit)
        ));
    }
    if let Some(limit) = quota.memory_bytes.filter(|l| after.memory_bytes > *l) {
        over.push(format!(
            "memory {} of {}",
            bytes(after.memory_bytes),
            bytes(limit)
        ));
    }
    if let Some(limit) = quota.gpus.filter(|l| after.gpus > u64::from(*l)) {
        over.push(format!("gpus {} of {limit}", after.gpus));
    }
    if let Some(limit) = quota
        .deployments
        .filter(|l| after.deployments > u64::from(*l))
    {
        over.push(format!("deployments {} of {limit}", after.deployments));
    }
    (!over.is_empty()).then(|| over.join(", "))
}

fn cores(millis: u64) -> String {
    if millis.is_multiple_of(1000) {
        (millis / 1000).to_string()
    } else {
        let text = format!("{:.3}", millis as f64 / 1000.0);
        text.trim_end_matches('0').to_string()
    }
}

fn bytes(n: u64) -> String {
    const UNITS: [(&str, u64); 4] = [
        ("T", 1 << 40),
        ("G", 1 << 30),
        ("M", 1 << 20),
        ("K", 1 << 10),
    ];
    for (unit, size) in UNITS {
        if n >= size {
            let v = n as f64 / size as f64;
            let text = format!("{v:.2}");
            return format!("{}{unit}", text.trim_end_matches('0').trim_end_matches('.'));
        }
    }
    n.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excess_names_every_limit_passed() {
        let quota = Quota {
            cpu_millis: Some(2000),
            memory_bytes: Some(4 << 30),
            gpus: Some(1),
            deployments: Some(3),
        };
        let need = Resources {
            cpu_millis: 1500,
            memory_bytes: 3 << 30,
            gpus: 1,
            storage_bytes: 0,
        };
        assert_eq!(quota_excess(&quota, &QuotaUsage::default(), &need), None);
        let mut used = QuotaUsage::default();
        used.add(&need);
        assert_eq!(
            quota_excess(&quota, &used, &need).as_deref(),
            Some("cpu 3 of 2, memory 6G of 4G, gpus 2 of 1")
        );
        let small = Resources {
            cpu_millis: 250,
            ..Resources::default()
        };
        used.add(&small);
        used.add(&small);
        assert_eq!(
            quota_excess(&quota, &used, &small).as_deref(),
            Some("cpu 2.25 of 2, deployments 4 of 3")
        );
        assert_eq!(quota_excess(&Quota::default(), &used, &need), None);
    }
}
