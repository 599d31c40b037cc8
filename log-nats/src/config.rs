//! [`JetStreamConfig`]: where the log lives (servers, stream, replicas) and how long a
//! request may take; the names derived from it (subject, snapshot bucket).

use std::time::Duration;

use dcloud_events::LogError;

/// Where the JetStream log lives and how it is replicated.
#[derive(Debug, Clone)]
pub struct JetStreamConfig {
    /// Server URLs as async-nats takes them, comma separated:
    /// `nats://10.0.0.1:4222,nats://10.0.0.2:4222`.
    pub url: String,
    /// The stream's name (letters, digits, `-` and `_`). Its subject is
    /// `dcloud.log.<stream>`, its snapshots go to the object store `<stream>-snapshots`.
    pub stream: String,
    /// Replicas of the stream and of the snapshot bucket: 3 in a cluster, 1 on a single
    /// server. An existing stream must have this many.
    pub replicas: usize,
    /// How long one request (a batch commit, a read) may take; past it a write's outcome
    /// is unknown and is resolved by publishing the same messages again (see `append.rs`).
    pub request_timeout: Duration,
    /// Messages (frames of up to 256 events) per atomic batch, at most
    /// [`crate::MAX_ATOMIC`]: lower it to a server's `max_batch_size` if that is lower.
    pub max_batch_messages: usize,
}

impl JetStreamConfig {
    /// A single-replica log on stream `stream` at `url`.
    pub fn new(url: impl Into<String>, stream: impl Into<String>) -> Self {
        JetStreamConfig {
            url: url.into(),
            stream: stream.into(),
            replicas: 1,
            request_timeout: Duration::from_secs(10),
            max_batch_messages: crate::MAX_ATOMIC,
        }
    }

    /// The same, with `replicas` replicas.
    pub fn replicas(mut self, replicas: usize) -> Self {
        self.replicas = replicas;
        self
    }

    /// The one subject every record of the log is published on.
    pub fn subject(&self) -> String {
        format!("dcloud.log.{}", self.stream)
    }

    /// The object store holding the snapshots.
    pub fn snapshot_bucket(&self) -> String {
        format!("{}-snapshots", self.stream)
    }

    pub(crate) fn check(&self) -> Result<(), LogError> {
        let bad = |reason: String| Err(LogError::Unsupported { reason });
        if self.stream.is_empty()
            || !self
                .stream
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return bad(format!(
                "stream name {:?}: use letters, digits, '-' and '_' only",
                self.stream
            ));
        }
        if !(1..=5).contains(&self.replicas) {
            return bad(format!(
                "replicas {}: use 1 (single server) to 5; 3 in a cluster",
                self.replicas
            ));
        }
        if !(1..=crate::MAX_ATOMIC).contains(&self.max_batch_messages) {
            return bad(format!(
                "max_batch_messages {}: use 1 to {} (the server's atomic batch limit)",
                self.max_batch_messages,
                crate::MAX_ATOMIC
            ));
        }
        Ok(())
    }
}
