//! GPU discovery through NVML. No NVML library (or no driver) means no GPUs: said once
//! in the log, never an error.

use std::sync::atomic::{AtomicBool, Ordering};

use dcloud_events::model::GpuDevice;
use nvml_wrapper::Nvml;
use tracing::{info, warn};

static SAID_UNAVAILABLE: AtomicBool = AtomicBool::new(false);

/// The node's NVIDIA GPUs, sorted by index; empty when NVML is unavailable.
pub fn detect() -> Vec<GpuDevice> {
    let nvml = match Nvml::init() {
        Ok(nvml) => nvml,
        Err(e) => {
            if !SAID_UNAVAILABLE.swap(true, Ordering::Relaxed) {
                info!("nvml not available ({e}): reporting 0 gpus");
            }
            return Vec::new();
        }
    };
    let count = match nvml.device_count() {
        Ok(n) => n,
        Err(e) => {
            warn!(error = %e, "nvml cannot count devices: reporting 0 gpus");
            return Vec::new();
        }
    };
    let mut gpus = Vec::with_capacity(count as usize);
    for i in 0..count {
        let device = match nvml.device_by_index(i) {
            Ok(d) => d,
            Err(e) => {
                warn!(index = i, error = %e, "nvml cannot open gpu: skipped");
                continue;
            }
        };
        let uuid = match device.uuid() {
            Ok(u) => u,
            Err(e) => {
                // Without a uuid the device cannot be assigned by id.
                warn!(index = i, error = %e, "gpu has no uuid: skipped");
                continue;
            }
        };
        gpus.push(GpuDevice {
            index: device.index().unwrap_or(i),
            uuid,
            model: device.name().unwrap_or_else(|_| "unknown".to_string()),
            memory_bytes: device.memory_info().map(|m| m.total).unwrap_or(0),
        });
    }
    gpus.sort_by_key(|g| g.index);
    gpus
}

#[cfg(test)]
mod tests {
    use super::*;

    /// On a machine without NVML this reports zero GPUs (and says so once); on a GPU
    /// machine every reported device has a uuid and distinct indices.
    #[test]
    fn detect_never_fails() {
        let gpus = detect();
        let again = detect();
        assert_eq!(gpus, again);
        for (n, g) in gpus.iter().enumerate() {
            assert!(g.uuid.starts_with("GPU-"), "{g:?}");
            assert!(n == 0 || gpus[n - 1].index < g.index);
        }
        if Nvml::init().is_err() {
            assert!(gpus.is_empty());
            assert!(SAID_UNAVAILABLE.load(Ordering::Relaxed));
        }
    }
}
