//! The data directory's free space, watched so that a full disk never stops the
//! server: below the reserve the writer refuses writes with `STORAGE_FULL` (nothing is
//! written, reads go on, `/readyz` says so); below the warning level `/metrics` shows
//! it before that happens. A write that still meets a full disk (a reserve too small
//! for one batch) fails the append, and that stays fail-stop.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tracing::{info, warn};

/// Default reserve: writes are refused once less than this is free.
pub const DEFAULT_RESERVE_BYTES: u64 = 64 * 1024 * 1024;

/// Watches the file system holding one directory.
#[derive(Debug)]
pub struct StorageGate {
    path: PathBuf,
    reserve: u64,
    warn: u64,
    /// Free bytes at the last look (u64::MAX before the first).
    free: AtomicU64,
    full: AtomicBool,
}

/// What the gate saw at its last look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StorageStatus {
    pub free_bytes: u64,
    pub reserve_bytes: u64,
    pub warn_bytes: u64,
    /// Below the reserve: writes refused.
    pub full: bool,
    /// Below the warning level (four times the reserve).
    pub low: bool,
}

impl StorageGate {
    /// Refuses writes when less than `reserve_bytes` is free on `path`'s file system;
    /// warns below four times that.
    pub fn new(path: impl Into<PathBuf>, reserve_bytes: u64) -> StorageGate {
        StorageGate {
            path: path.into(),
            reserve: reserve_bytes,
            warn: reserve_bytes.saturating_mul(4),
            free: AtomicU64::new(u64::MAX),
            full: AtomicBool::new(false),
        }
    }

    /// Bytes an unprivileged writer may still use there (`statvfs`'s `f_bavail`).
    fn free_now(&self) -> std::io::Result<u64> {
        let st = rustix::fs::statvfs(&self.path)?;
        Ok(st.f_bavail.saturating_mul(st.f_frsize))
    }

    /// Looks again; `Some(reason)` when writes must be refused. An unreadable free
    /// count is taken as room (the append itself is still fail-stop).
    pub fn check(&self) -> Option<String> {
        let free = match self.free_now() {
            Ok(f) => f,
            Err(e) => {
                warn!(path = %self.path.display(), error = %e, "cannot read the free space");
                return None;
            }
        };
        self.free.store(free, Ordering::Relaxed);
        let full = free < self.reserve;
        let was = self.full.swap(full, Ordering::Relaxed);
        if full && !was {
            warn!(free, reserve = self.reserve, path = %self.path.display(),
                "storage full: refusing writes until space is freed (reads go on)");
        } else if was && !full {
            info!(
                free,
                reserve = self.reserve,
                "storage has room again: taking writes"
            );
        }
        full.then(|| self.reason(free))
    }

    fn reason(&self, free: u64) -> String {
        format!(
            "{} has {free} bytes free, below the reserve of {} bytes",
            self.path.display(),
            self.reserve
        )
    }

    /// Looks again and says what it saw.
    pub fn status(&self) -> StorageStatus {
        self.check();
        let free = self.free.load(Ordering::Relaxed);
        StorageStatus {
            free_bytes: free,
            reserve_bytes: self.reserve,
            warn_bytes: self.warn,
            full: free < self.reserve,
            low: free < self.warn,
        }
    }

    /// The reason writes are refused, from the last look (`None`: they are taken).
    pub fn full_reason(&self) -> Option<String> {
        let free = self.free.load(Ordering::Relaxed);
        self.full.load(Ordering::Relaxed).then(|| self.reason(free))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reserve_larger_than_the_disk_refuses_and_zero_takes_writes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let gate = StorageGate::new(dir.path(), u64::MAX);
        let why = gate.check().expect("no disk has u64::MAX bytes free");
        assert!(why.contains("below the reserve"), "{why}");
        assert!(gate.status().full && gate.status().low);
        assert!(gate.full_reason().is_some());
        let gate = StorageGate::new(dir.path(), 0);
        assert_eq!(gate.check(), None);
        assert!(!gate.status().full);
    }
}
