//! Reading stored records back: batch direct gets (`$JS.API.DIRECT.GET.<stream>` with
//! `batch`, nats-server 2.11+), one request per few hundred records, answered by any
//! replica that is current. [`RangeIter`] turns them into envelopes, gap-checked like
//! fjall's cursor.
//!
//! A replica that answers a direct get may lag the leader by a moment, so a read that
//! finds nothing where this handle knows the log holds committed events asks again for
//! a little while before calling them missing.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use async_nats::{Client, StatusCode};
use bytes::Bytes;
use dcloud_events::record::Decoder;
use dcloud_events::{Envelope, LogError};
use futures::StreamExt;

use crate::log::Inner;
use crate::remote;

/// Records per direct-get request at most.
pub(crate) const READ_CHUNK: u64 = 512;
/// How long a read waits for a lagging replica to show committed events.
const STALE_REPLICA_WAIT: Duration = Duration::from_secs(5);

/// Stored records from `from` on, at most `max` of them, in stream order, as
/// `(stream seq, payload)`. Empty when nothing is stored at or after `from`.
pub(crate) async fn get_batch(
    client: &Client,
    stream: &str,
    from: u64,
    max: u64,
    timeout: Duration,
) -> Result<Vec<(u64, Bytes)>, LogError> {
    let inbox = client.new_inbox();
    let mut sub = client
        .subscribe(inbox.clone())
        .await
        .map_err(|e| remote(format!("direct get: cannot subscribe: {e}")))?;
    let request = format!(r#"{{"seq":{from},"batch":{max}}}"#);
    client
        .publish_with_reply(
            format!("$JS.API.DIRECT.GET.{stream}"),
            inbox,
            Bytes::from(request),
        )
        .await
        .map_err(|e| remote(format!("direct get: cannot publish: {e}")))?;
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let msg = match tokio::time::timeout_at(deadline, sub.next()).await {
            Ok(Some(msg)) => msg,
            Ok(None) => return Err(remote("direct get: subscription closed")),
            Err(_) => {
                return Err(remote(format!(
                    "direct get of {stream} from seq {from}: no answer in {timeout:?}"
                )))
            }
        };
        match msg.status {
            None | Some(StatusCode::OK) => {}
            // End of a batch (204 EOB), or nothing at or after `from`.
            Some(StatusCode::NOT_FOUND) => break,
            Some(s) if s.as_u16() == 204 => break,
            Some(s) => {
                return Err(remote(format!(
                    "direct get of {stream} from seq {from}: status {} {}",
                    s.as_u16(),
                    msg.description.unwrap_or_default()
                )))
            }
        }
        let seq = msg
            .headers
            .as_ref()
            .and_then(|h| h.get("Nats-Sequence"))
            .and_then(|v| v.as_str().parse::<u64>().ok())
            .ok_or_else(|| remote("direct get: a message without Nats-Sequence"))?;
        out.push((seq, msg.payload));
        if out.len() as u64 >= max {
            // The EOB that follows is not needed; dropping `sub` unsubscribes.
            break;
        }
    }
    Ok(out)
}

/// Decoded envelopes `from..=to`, as [`dcloud_events::EventLog::read_range`] promises:
/// an error and the end at the first missing or undecodable record; a quiet end at
/// the end of the stream.
pub(crate) struct RangeIter<'a> {
    inner: &'a Inner,
    next: u64,
    to: u64,
    buf: VecDeque<Envelope>,
    decoder: Decoder,
    done: bool,
}

impl<'a> RangeIter<'a> {
    pub(crate) fn new(inner: &'a Inner, from: u64, to: u64) -> Self {
        let from = from.max(1);
        RangeIter {
            inner,
            next: from,
            to,
            buf: VecDeque::new(),
            decoder: Decoder::new(),
            done: from > to,
        }
    }

    /// Fills `buf` with the next records; `Ok(false)` at the end of the stream.
    fn fetch(&mut self) -> Result<bool, LogError> {
        let want = (self.to - self.next + 1).min(READ_CHUNK);
        let started = Instant::now();
        let records = loop {
            let records = self.inner.get_batch(self.next, want)?;
            let committed = self.inner.committed();
            if !records.is_empty()
                || self.next > committed.min(self.to)
                || started.elapsed() > STALE_REPLICA_WAIT
            {
                break records;
            }
            // A replica behind the leader answered: ask again shortly.
            std::thread::sleep(Duration::from_millis(20));
        };
        if records.is_empty() {
            if self.next <= self.inner.committed().min(self.to) {
                return Err(LogError::corrupt(
                    self.next,
                    "committed but not readable from the stream",
                ));
            }
            return Ok(false);
        }
        for (seq, payload) in records {
            if seq != self.next {
                let why = if seq > self.next {
                    format!("missing (next stored seq is {seq})")
                } else {
                    format!("seq {seq} delivered again after {}", self.next - 1)
                };
                return Err(LogError::corrupt(self.next, why));
            }
            self.buf.push_back(self.decoder.decode(seq, &payload)?);
            self.next += 1;
        }
        Ok(true)
    }
}

impl Iterator for RangeIter<'_> {
    type Item = Result<Envelope, LogError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(env) = self.buf.pop_front() {
                return Some(Ok(env));
            }
            if self.done || self.next > self.to {
                return None;
            }
            match self.fetch() {
                Ok(true) => {}
                Ok(false) => {
                    self.done = true;
                    return None;
                }
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            }
        }
    }
}
