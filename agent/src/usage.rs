//! Node usage for heartbeats: CPU (millicores in use) and memory, sampled with sysinfo.

use dcloud_events::model::Usage;
use sysinfo::{CpuRefreshKind, MemoryRefreshKind, RefreshKind, System};

use crate::error::AgentError;

/// Samples the whole node's usage. CPU usage is measured between two samples, so the
/// first sample after `new` reports the CPU use since `new`.
pub struct NodeSampler {
    system: System,
}

impl NodeSampler {
    pub fn new() -> Result<Self, AgentError> {
        let system = System::new_with_specifics(
            RefreshKind::nothing()
                .with_cpu(CpuRefreshKind::nothing().with_usage())
                .with_memory(MemoryRefreshKind::nothing().with_ram()),
        )
        .map_err(|e| AgentError::System {
            what: "cpu and memory",
            message: e.to_string(),
        })?;
        Ok(NodeSampler { system })
    }

    /// Refreshes and returns current usage.
    pub fn sample(&mut self) -> Usage {
        self.system.refresh_cpu_usage();
        self.system.refresh_memory();
        let cpus = self.system.cpus().len() as f64;
        let percent = f64::from(self.system.global_cpu_usage()).clamp(0.0, 100.0);
        Usage {
            cpu_millis: (percent / 100.0 * cpus * 1000.0).round() as u64,
            memory_bytes: self.system.used_memory(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_is_within_the_machine() {
        let mut s = NodeSampler::new().unwrap();
        let u = s.sample();
        let cpus = s.system.cpus().len() as u64;
        assert!(u.cpu_millis <= cpus * 1000);
        assert!(u.memory_bytes > 0 && u.memory_bytes <= s.system.total_memory());
    }
}
