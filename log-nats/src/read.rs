//! Reading stored frames back: batch direct gets (`$JS.API.DIRECT.GET.<stream>` with
//! `batch`, nats-server 2.11+), one request per few frames, answered by any replica
//! that is current. [`RangeIter`] turns them into envelopes, gap-checked like fjall's
//! cursor; the frame holding a seq is found by `Inner::locate` (in `log.rs`).
//!
//! A replica that answers a direct get may lag the leader by a moment, so a read that
//! finds nothing where this handle knows the log holds committed events asks again for
//! a little while before calling them missing.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use async_nats::{Client, StatusCode};
use bytes::Bytes;
use dcloud_events::frame::{entries, Entry};
use dcloud_events::record::Decoder;
use dcloud_events::{Envelope, LogError};
use futures::StreamExt;

use crate::log::Inner;
use crate::remote;

/// Messages (frames of up to 256 records) per direct-get request at most.
pub(crate) const MESSAGES_PER_READ: u64 = 16;
/// How long a read waits for a lagging replica to show committed events.
const STALE_REPLICA_WAIT: Duration = Duration::from_secs(5);

/// Stored messages from stream seq `from` on, at most `max` of them, in stream order,
/// as `(stream seq, payload)`. Empty when nothing is stored at or after `from`.
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

/// The records of one stored message (a frame), as `(seq, byte range)`; damage stops
/// the list with the reason (the entries before it are kept).
pub(crate) fn frame_records(payload: &[u8], out: &mut Vec<Entry>) -> Result<(), String> {
    // A message is always a frame here; a lone record would be read as seq 0 and fail.
    entries(0, payload, out).map_err(|d| d.reason)
}

/// Decoded envelopes `from..=to`, as [`dcloud_events::EventLog::read_range`] promises:
/// an error and the end at the first missing or undecodable record; a quiet end at
/// the end of the log as this handle knows it.
pub(crate) struct RangeIter<'a> {
    inner: &'a Inner,
    next: u64,
    to: u64,
    /// Stream seq of the next message to read; found by bisection at the first read.
    stream_next: Option<u64>,
    buf: VecDeque<Envelope>,
    entries: Vec<Entry>,
    decoder: Decoder,
    done: bool,
}

impl<'a> RangeIter<'a> {
    pub(crate) fn new(inner: &'a Inner, from: u64, to: u64) -> Self {
        let from = from.max(1);
        let to = to.min(inner.committed());
        RangeIter {
            inner,
            next: from,
            to,
            stream_next: None,
            buf: VecDeque::new(),
            entries: Vec::new(),
            decoder: Decoder::new(),
            done: from > to,
        }
    }

    /// Fills `buf` with the records of the next few messages.
    fn fetch(&mut self) -> Result<(), LogError> {
        let stream_next = match self.stream_next {
            Some(s) => s,
            None => self.inner.locate(self.next)?,
        };
        let want = (self.to - self.next + 1).min(MESSAGES_PER_READ);
        let started = Instant::now();
        let messages = loop {
            let messages = self.inner.get_batch(stream_next, want)?;
            if !messages.is_empty() || started.elapsed() > STALE_REPLICA_WAIT {
                break messages;
            }
            // A replica behind the leader answered: ask again shortly.
            std::thread::sleep(Duration::from_millis(20));
        };
        if messages.is_empty() {
            return Err(LogError::corrupt(
                self.next,
                format!("committed but stream seq {stream_next} is not readable"),
            ));
        }
        let mut expected_stream = stream_next;
        for (stream_seq, payload) in messages {
            if stream_seq != expected_stream {
                return Err(LogError::corrupt(
                    self.next,
                    format!("stream seq {expected_stream} is missing (next is {stream_seq})"),
                ));
            }
            expected_stream += 1;
            let damage = frame_records(&payload, &mut self.entries).err();
            for e in &self.entries {
                if e.seq < self.next && self.buf.is_empty() && self.stream_next.is_none() {
                    continue; // before the start of a read inside a frame
                }
                if e.seq != self.next {
                    let why = if e.seq > self.next {
                        format!("missing (next stored seq is {})", e.seq)
                    } else {
                        format!("seq {} stored again after {}", e.seq, self.next - 1)
                    };
                    return Err(LogError::corrupt(self.next, why));
                }
                if e.seq > self.to {
                    break;
                }
                self.buf
                    .push_back(self.decoder.decode(e.seq, &payload[e.range.clone()])?);
                self.next += 1;
            }
            if let Some(reason) = damage {
                return Err(LogError::corrupt(self.next, reason));
            }
            self.stream_next = Some(expected_stream);
            if self.next > self.to {
                break;
            }
        }
        Ok(())
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
            if let Err(e) = self.fetch() {
                self.done = true;
                return Some(Err(e));
            }
        }
    }
}
