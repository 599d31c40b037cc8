//! Publishing one chunk of frames as a JetStream atomic batch (ADR-50, nats-server
//! 2.12+), and what its answer means.
//!
//! Every message on the log's subject is one frame of up to 256 consecutive records
//! (`dcloud_events::frame`, the layout fjall stores: each entry repeats its seq). A
//! chunk of at most [`MAX_ATOMIC`] frames is one batch: every message carries
//! `Nats-Batch-Id` and `Nats-Batch-Sequence`, the first also
//! `Nats-Expected-Last-Sequence` (the stream-wide optimistic guard: the server checks
//! it against the stream's last seq when the batch commits), the last
//! `Nats-Batch-Commit: 1` and is the only one sent as a request. The server stores the
//! whole batch or none of it.
//!
//! Every message also carries `Nats-Msg-Id: <first seq>.<hash of its last record>`:
//! the same frame always gets the same id, so a batch published again after an unknown outcome (a timeout, a
//! dropped connection) is refused as a duplicate if the first try committed, within
//! the stream's duplicate window (2 minutes by default; past it, the expected-last
//! check refuses it instead). Either way the caller reads the batch's last message
//! back: the same bytes there mean the same records, committed. Another writer's
//! frame there has other records (another chain hash), so it never passes for ours.
//!
//! A chunk of one frame (any append of up to 256 events) is not sent as a batch but as
//! one plain publish with the same `Nats-Msg-Id` and `Nats-Expected-Last-Sequence`: a
//! single message is stored whole or not at all anyway, and the server stores a
//! batched message twice (staged, then committed), so this halves what it writes and
//! fsyncs. A repeat is then answered `duplicate` rather than refused.
//!
//! Why one message per frame and not per record, measured (docs/operations.md): with
//! `sync_interval: always` the server fsyncs every stored message, twice for a message
//! of an atomic batch, so an append of 256 events as 256 messages took 115 ms on R1
//! and 262 ms on R3 (2,200 and 980 events/s), against about 3 ms for one message. The
//! price is a mapping from log seq to stream seq: the frames say which seqs they hold,
//! and a read finds the frame of a seq by bisecting the stream (`read.rs`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_nats::header::{
    NATS_BATCH_COMMIT, NATS_BATCH_ID, NATS_BATCH_SEQUENCE, NATS_EXPECTED_LAST_SEQUENCE,
    NATS_MESSAGE_ID,
};
use async_nats::{Client, HeaderMap, Subject};
use bytes::Bytes;
use dcloud_events::Hash;
use serde::Deserialize;

/// Messages (frames) per atomic batch at most (the server's default limit): an
/// append of up to 1,000 × 256 events is all or nothing.
pub const MAX_ATOMIC: usize = 1000;

/// `wrong last sequence: N`: the stream's last seq is not the expected one.
const WRONG_LAST_SEQUENCE: u64 = 10071;
/// A message of the batch has an id already stored (within the duplicate window).
const BATCH_HAS_DUPLICATE: u64 = 10201;

/// One encoded frame of consecutive records, ready to publish.
#[derive(Clone)]
pub(crate) struct Frame {
    /// Seq of its first and last record.
    pub(crate) first: u64,
    pub(crate) last: u64,
    /// Chain hash of its last record.
    pub(crate) hash: Hash,
    pub(crate) bytes: Bytes,
}

impl Frame {
    /// The `Nats-Msg-Id` of this frame: its first seq and its last chain hash.
    pub(crate) fn msg_id(&self) -> String {
        format!("{}.{}", self.first, hex::encode(self.hash))
    }
}

/// What the server said about one published chunk.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Stored, ending at the expected stream seq.
    Committed,
    /// Refused: the stream's last seq is `actual` (a stream seq), not the expected one.
    WrongLast { actual: u64 },
    /// Refused: a record of the chunk is already stored (an earlier try committed).
    Duplicate,
    /// Refused for another reason: nothing was stored.
    Rejected(String),
    /// No answer: stored or not, nobody knows yet.
    Unknown(String),
}

#[derive(Deserialize)]
struct PubAck {
    #[serde(default)]
    error: Option<ApiError>,
    #[serde(default)]
    seq: u64,
    /// A plain publish whose message id is already stored (nothing was stored again).
    #[serde(default)]
    duplicate: bool,
}

#[derive(Deserialize)]
struct ApiError {
    #[serde(default)]
    err_code: u64,
    #[serde(default)]
    description: String,
}

static BATCHES: AtomicU64 = AtomicU64::new(0);

/// A batch id no other try of any process uses: blake3 of the pid, the time, a
/// counter and the first frame's id (at most 64 characters, the server's limit).
fn batch_id(first: &Frame) -> String {
    let mut h = blake3::Hasher::new();
    h.update(&std::process::id().to_le_bytes());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    h.update(&now.to_le_bytes());
    h.update(&BATCHES.fetch_add(1, Ordering::Relaxed).to_le_bytes());
    h.update(first.msg_id().as_bytes());
    hex::encode(&h.finalize().as_bytes()[..16])
}

/// Publishes `chunk` (consecutive frames, at most [`MAX_ATOMIC`]) as one atomic batch
/// after stream seq `after`, and reads the commit's answer.
pub(crate) async fn publish_chunk(
    client: &Client,
    subject: &Subject,
    after: u64,
    chunk: &[Frame],
    timeout: Duration,
) -> Outcome {
    let (Some(first), Some(last)) = (chunk.first(), chunk.last()) else {
        return Outcome::Committed;
    };
    let end = after + chunk.len() as u64;
    assert!(chunk.len() <= MAX_ATOMIC, "a chunk over the batch limit");
    if chunk.len() == 1 {
        let mut h = HeaderMap::new();
        h.insert(NATS_MESSAGE_ID, first.msg_id());
        h.insert(NATS_EXPECTED_LAST_SEQUENCE, after.to_string());
        let request = async_nats::Request::new()
            .headers(h)
            .payload(first.bytes.clone())
            .timeout(Some(timeout));
        return answer(client, subject, request, end, first, last).await;
    }
    let id = batch_id(first);
    for (i, r) in chunk.iter().enumerate() {
        let mut h = HeaderMap::new();
        h.insert(NATS_BATCH_ID, id.as_str());
        h.insert(NATS_BATCH_SEQUENCE, (i + 1).to_string());
        h.insert(NATS_MESSAGE_ID, r.msg_id());
        if i == 0 {
            h.insert(NATS_EXPECTED_LAST_SEQUENCE, after.to_string());
        }
        if i + 1 < chunk.len() {
            if let Err(e) = client
                .publish_with_headers(subject.clone(), h, r.bytes.clone())
                .await
            {
                return Outcome::Unknown(format!("publish of seqs {}..={}: {e}", r.first, r.last));
            }
            continue;
        }
        h.insert(NATS_BATCH_COMMIT, "1");
        let request = async_nats::Request::new()
            .headers(h)
            .payload(r.bytes.clone())
            .timeout(Some(timeout));
        return answer(client, subject, request, end, first, last).await;
    }
    unreachable!("a non-empty chunk ends with its commit")
}

/// Sends the request that commits (a batch's last message, or the one message) and
/// reads its answer.
async fn answer(
    client: &Client,
    subject: &Subject,
    request: async_nats::Request,
    end: u64,
    first: &Frame,
    last: &Frame,
) -> Outcome {
    match client.send_request(subject.clone(), request).await {
        Ok(msg) => read_ack(&msg.payload, end),
        Err(e) if e.kind() == async_nats::RequestErrorKind::NoResponders => {
            Outcome::Rejected(format!("no JetStream stream answers on {subject}"))
        }
        Err(e) => Outcome::Unknown(format!(
            "commit of seqs {}..={}: {e}",
            first.first, last.last
        )),
    }
}

/// What the answer to a batch commit says, for a batch ending at stream seq `last_seq`.
pub(crate) fn read_ack(payload: &[u8], last_seq: u64) -> Outcome {
    let ack: PubAck = match serde_json::from_slice(payload) {
        Ok(a) => a,
        Err(e) => {
            return Outcome::Unknown(format!(
                "unreadable answer to a commit ({e}): {}",
                String::from_utf8_lossy(payload)
            ))
        }
    };
    match ack.error {
        None if ack.duplicate => Outcome::Duplicate,
        None if ack.seq == last_seq => Outcome::Committed,
        None => Outcome::Rejected(format!(
            "the batch ending at seq {last_seq} was stored ending at stream seq {}",
            ack.seq
        )),
        Some(e) if e.err_code == WRONG_LAST_SEQUENCE => {
            let actual = e
                .description
                .rsplit(':')
                .next()
                .and_then(|n| n.trim().parse().ok());
            match actual {
                Some(actual) => Outcome::WrongLast { actual },
                None => Outcome::Rejected(e.description),
            }
        }
        Some(e) if e.err_code == BATCH_HAS_DUPLICATE => Outcome::Duplicate,
        Some(e) => Outcome::Rejected(format!("{} (error {})", e.description, e.err_code)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_to_a_commit_are_read() {
        assert_eq!(
            read_ack(br#"{"stream":"s","seq":7,"batch":"x","count":3}"#, 7),
            Outcome::Committed
        );
        assert_eq!(
            read_ack(
                br#"{"error":{"code":400,"err_code":10071,"description":"wrong last sequence: 15"},"stream":"s","seq":0}"#,
                7
            ),
            Outcome::WrongLast { actual: 15 }
        );
        assert_eq!(
            read_ack(
                br#"{"error":{"code":400,"err_code":10201,"description":"atomic publish batch contains duplicate message id"}}"#,
                7
            ),
            Outcome::Duplicate
        );
        assert!(matches!(
            read_ack(br#"{"error":{"code":400,"err_code":10174,"description":"atomic publish is disabled"}}"#, 7),
            Outcome::Rejected(r) if r.contains("disabled") && r.contains("10174")
        ));
        assert!(matches!(read_ack(br#"{"seq":9}"#, 7), Outcome::Rejected(_)));
        assert_eq!(
            read_ack(br#"{"stream":"s","seq":7,"duplicate":true}"#, 7),
            Outcome::Duplicate
        );
        assert!(matches!(read_ack(b"", 7), Outcome::Unknown(_)));
    }

    #[test]
    fn message_ids_name_seq_and_hash_and_batch_ids_differ() {
        let r = Frame {
            first: 12,
            last: 14,
            hash: [0xab; 32],
            bytes: Bytes::new(),
        };
        assert_eq!(r.msg_id(), format!("12.{}", "ab".repeat(32)));
        let (a, b) = (batch_id(&r), batch_id(&r));
        assert_ne!(a, b);
        assert_eq!(a.len(), 32);
    }
}
