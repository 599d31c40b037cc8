//! The crate's one error enum, [`LogError`], shared by the stored record format, the
//! log, the tail, snapshots and verification.

use crate::verify::VerifyError;

/// Everything the log can refuse or fail at. A caller acts on the variant:
/// `Conflict` → re-read and retry; `Storage`/`Poisoned` → stop the process (fail-stop,
/// a restart replays the log); `Corrupt`/`Verify` → the stored history is damaged.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// The caller's view of the log is stale: nothing was written.
    #[error("append conflict: expected last seq {expected}, log is at {actual}")]
    Conflict { expected: u64, actual: u64 },

    /// The storage engine failed. For a write, its outcome is unknown: the log refuses
    /// every later write and the caller must stop.
    #[error("storage error: {0}")]
    Storage(#[from] fjall::Error),

    /// A stored record (or snapshot) could not be read back as written.
    #[error("corrupt record at seq {seq}: {reason}")]
    Corrupt { seq: u64, reason: String },

    /// An earlier write failed; this log accepts no more writes until the process
    /// restarts and replays.
    #[error(
        "log is poisoned by an earlier storage failure and refuses writes; restart to recover"
    )]
    Poisoned,

    /// The log stopped publishing (it was poisoned or dropped) and the tail has
    /// delivered everything that was durable.
    #[error("log subscription closed")]
    Closed,

    /// An event could not be serialised (never expected for well-formed events).
    #[error("cannot encode event seq {seq}: {reason}")]
    Encode { seq: u64, reason: String },

    /// The hash chain does not verify (from [`crate::verify::verify_dir`]).
    #[error(transparent)]
    Verify(#[from] VerifyError),

    /// A remote backend (a replicated log) failed or could not be reached. For a write,
    /// like `Storage`: its outcome is unknown, the log refuses every later write and the
    /// caller must stop.
    #[error("{backend} log: {reason}")]
    Remote {
        backend: &'static str,
        reason: String,
    },

    /// Another writer appended to this log (it reached seq `actual`): this handle was
    /// fenced out by the first append that found out (a `Conflict`) and refuses writes.
    #[error("another writer appended to the log (it is at seq {actual}); this writer is fenced out and refuses writes")]
    Fenced { actual: u64 },

    /// The backend cannot promise what the log needs (a server too old, a stream
    /// without a required setting); `reason` names what is wrong and what is expected.
    #[error("log backend unsupported: {reason}")]
    Unsupported { reason: String },
}

impl LogError {
    /// A `Corrupt` error at `seq`.
    pub fn corrupt(seq: u64, reason: impl Into<String>) -> Self {
        LogError::Corrupt {
            seq,
            reason: reason.into(),
        }
    }
}
