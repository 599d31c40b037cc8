//! How records sit in the `events` keyspace: one stored value (a *frame*) holds the
//! records of a run of consecutive sequence numbers, keyed by the first of them.
//!
//! ```text
//! key   = first seq, u64 big-endian
//! value = FRAME_MAGIC (1) | count u32 LE (4) | count × entry
//! entry = seq u64 LE (8) | len u32 LE (4) | record (len bytes, see crate::record)
//! ```
//!
//! Why frames: the storage engine's cost is per stored item (journal framing, memtable
//! node, merge step, block entry), not per byte, so an append batch becomes one item
//! per [`MAX_FRAME_RECORDS`] events instead of one per event. The hash chain is still
//! per record, and every entry repeats its seq, so a verifier names the exact seq
//! that is missing or damaged inside a frame just as it would across keys.
//!
//! A value that starts with [`RECORD_MAGIC`] instead is a lone record stored under its
//! own seq (the layout before frames); readers accept both.

use crate::record::RECORD_MAGIC;

/// First byte of a frame value.
pub const FRAME_MAGIC: u8 = 0xF1;
/// Bytes before the first entry: magic and count.
pub const FRAME_HEADER_LEN: usize = 5;
/// Bytes before each record: its seq and its length.
pub const ENTRY_HEADER_LEN: usize = 12;
/// Records per frame at most; a larger append batch is stored as several frames,
/// still committed atomically with one fsync.
pub const MAX_FRAME_RECORDS: usize = 256;

/// Appends entries to a frame under construction.
#[derive(Debug, Default)]
pub struct FrameBuilder {
    buf: Vec<u8>,
    count: u32,
}

impl FrameBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts a new, empty frame, keeping the buffer's capacity.
    pub fn clear(&mut self) {
        self.buf.clear();
        self.buf.push(FRAME_MAGIC);
        self.buf.extend_from_slice(&0u32.to_le_bytes());
        self.count = 0;
    }

    pub fn len(&self) -> usize {
        self.count as usize
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Adds the entry for `seq`; `write` appends the record bytes to the buffer it is
    /// given (so that the record can be encoded in place, without a copy).
    pub fn push_with<E>(
        &mut self,
        seq: u64,
        write: impl FnOnce(&mut Vec<u8>) -> Result<(), E>,
    ) -> Result<(), E> {
        if self.buf.is_empty() {
            self.clear();
        }
        self.buf.extend_from_slice(&seq.to_le_bytes());
        let len_at = self.buf.len();
        self.buf.extend_from_slice(&0u32.to_le_bytes());
        let start = self.buf.len();
        if let Err(e) = write(&mut self.buf) {
            self.buf.truncate(len_at - 8);
            return Err(e);
        }
        let len = u32::try_from(self.buf.len() - start).expect("a record under 4 GiB");
        self.buf[len_at..start].copy_from_slice(&len.to_le_bytes());
        self.count += 1;
        self.buf[1..FRAME_HEADER_LEN].copy_from_slice(&self.count.to_le_bytes());
        Ok(())
    }

    /// Adds an already encoded record.
    pub fn push(&mut self, seq: u64, record: &[u8]) {
        let ok: Result<(), std::convert::Infallible> = self.push_with(seq, |b| {
            b.extend_from_slice(record);
            Ok(())
        });
        let Ok(()) = ok;
    }

    /// The frame's bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.buf
    }
}

/// Encodes `records` (seq, record bytes) as one frame value.
pub fn encode_frame<'a>(records: impl IntoIterator<Item = (u64, &'a [u8])>) -> Vec<u8> {
    let mut b = FrameBuilder::new();
    b.clear();
    for (seq, r) in records {
        b.push(seq, r);
    }
    b.buf
}

/// One entry's place inside a stored value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub seq: u64,
    pub range: std::ops::Range<usize>,
}

/// A stored value that does not parse as a frame: the entries before the damage, and
/// why parsing stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameDamage {
    /// Index of the first entry that could not be read.
    pub at_entry: usize,
    pub reason: String,
}

/// Splits the value stored under key `key` into its entries (a lone record is one
/// entry with seq = key). Checks structure only: lengths, magic, count, trailing
/// bytes. Does not check that seqs follow each other: the walker does, so that it can
/// tell a gap from damage.
pub fn entries(key: u64, value: &[u8], out: &mut Vec<Entry>) -> Result<(), FrameDamage> {
    out.clear();
    let damage = |at_entry, reason: String| FrameDamage { at_entry, reason };
    match value.first() {
        Some(&RECORD_MAGIC) => {
            out.push(Entry {
                seq: key,
                range: 0..value.len(),
            });
            return Ok(());
        }
        Some(&FRAME_MAGIC) => {}
        Some(other) => return Err(damage(0, format!("bad frame magic byte {other:#04x}"))),
        None => return Err(damage(0, "empty value".into())),
    }
    let Some(count) = value.get(1..FRAME_HEADER_LEN) else {
        return Err(damage(0, "frame header truncated".into()));
    };
    let count = u32::from_le_bytes(count.try_into().expect("4 bytes")) as usize;
    if count == 0 {
        return Err(damage(0, "frame holds no records".into()));
    }
    let mut pos = FRAME_HEADER_LEN;
    for i in 0..count {
        let Some(head) = value.get(pos..pos + ENTRY_HEADER_LEN) else {
            return Err(damage(
                i,
                format!("frame truncated: entry {i} of {count} missing"),
            ));
        };
        let seq = u64::from_le_bytes(head[..8].try_into().expect("8 bytes"));
        let len = u32::from_le_bytes(head[8..].try_into().expect("4 bytes")) as usize;
        let start = pos + ENTRY_HEADER_LEN;
        let Some(end) = start.checked_add(len).filter(|&e| e <= value.len()) else {
            return Err(damage(
                i,
                format!("record of {len} bytes runs past the end of its frame"),
            ));
        };
        out.push(Entry {
            seq,
            range: start..end,
        });
        pos = end;
    }
    if pos != value.len() {
        return Err(damage(
            count,
            format!("{} bytes after the last record", value.len() - pos),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_splits_back_into_its_records() {
        let frame = encode_frame([(7, &b"\xD1one"[..]), (8, b"\xD1two!"), (9, b"\xD1")]);
        let mut out = Vec::new();
        entries(7, &frame, &mut out).expect("parses");
        let got: Vec<(u64, &[u8])> = out
            .iter()
            .map(|e| (e.seq, &frame[e.range.clone()]))
            .collect();
        assert_eq!(
            got,
            vec![(7, &b"\xD1one"[..]), (8, b"\xD1two!"), (9, b"\xD1")]
        );
    }

    #[test]
    fn a_lone_record_is_one_entry_at_its_key() {
        let mut out = Vec::new();
        entries(42, b"\xD1abc", &mut out).expect("parses");
        assert_eq!(
            out,
            vec![Entry {
                seq: 42,
                range: 0..4
            }]
        );
    }

    #[test]
    fn damage_names_the_first_entry_it_could_not_read() {
        let frame = encode_frame([(1, &b"\xD1aaaa"[..]), (2, b"\xD1bbbb")]);
        let mut out = Vec::new();
        let cut = entries(1, &frame[..frame.len() - 2], &mut out).expect_err("truncated");
        assert_eq!(cut.at_entry, 1, "{}", cut.reason);
        assert_eq!(out.len(), 1, "the intact first entry is kept");
        let mut longer = frame.clone();
        longer.push(0);
        assert_eq!(
            entries(1, &longer, &mut out)
                .expect_err("trailing")
                .at_entry,
            2
        );
        let mut bad = frame.clone();
        bad[0] = 0x00;
        assert!(entries(1, &bad, &mut out)
            .expect_err("magic")
            .reason
            .contains("magic"));
        assert!(entries(1, &[FRAME_MAGIC, 0, 0, 0, 0], &mut out).is_err());
        assert!(entries(1, &[], &mut out).is_err());
    }
}
