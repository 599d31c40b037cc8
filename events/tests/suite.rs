//! The `EventLog` test suite (`dcloud-log-tests`) on the fjall backend: the same tests
//! the JetStream backend runs (`log-nats/tests/suite.rs`).

use dcloud_events::{FjallLog, VerifyError, VerifyReport};

/// A log in a temp dir of its own.
struct Fjall {
    dir: tempfile::TempDir,
}

impl Fjall {
    fn new() -> Self {
        Fjall {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }
}

impl dcloud_log_tests::Backend for Fjall {
    type Log = FjallLog;

    fn open(&self) -> FjallLog {
        FjallLog::open(self.dir.path()).expect("open log")
    }

    fn verify(&self, log: &FjallLog) -> Result<VerifyReport, VerifyError> {
        log.verify()
    }

    fn snapshot_seqs(&self, log: &FjallLog) -> Vec<u64> {
        log.snapshot_seqs().expect("snapshot seqs")
    }
}

dcloud_log_tests::log_suite!(Fjall::new());
