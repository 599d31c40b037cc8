//! The stored record format of one log entry: a fixed 100-byte header carrying the hash
//! chain, then the rkyv bytes of the [`EnvelopeBody`]; encoding, cheap header reads and
//! validated decoding.
//!
//! ```text
//! offset  size  field
//!      0     1  magic / format byte (RECORD_MAGIC)
//!      1     1  flags (bit 0: body compacted; other bits must be zero)
//!      2     2  schema version, u16 little-endian
//!      4    32  prev_hash  (hash of the previous record; GENESIS_HASH before seq 1)
//!     36    32  body_hash = blake3(body)
//!     68    32  hash      = blake3(prev_hash ‖ body_hash)
//!    100     …  body      = rkyv bytes of EnvelopeBody (empty when compacted)
//! ```
//!
//! The key is the sequence number as a big-endian `u64`; the body repeats it and
//! decoding checks that the two agree. Splitting `hash` from `body_hash` lets a future
//! retention policy drop a heartbeat's body while the chain still verifies.

use rkyv::rancor;
use rkyv::util::AlignedVec;

use crate::envelope::{ArchivedEnvelopeBody, Envelope, EnvelopeBody, Hash, SCHEMA_VERSION};
use crate::error::LogError;

/// First byte of every record: the record format version.
pub const RECORD_MAGIC: u8 = 0xD1;
/// Flag bit: the body was dropped by retention; only the header remains.
/// Reserved: nothing writes it yet, the verifier accepts it.
pub const FLAG_COMPACTED: u8 = 0b0000_0001;
/// Length of the fixed header before the body.
pub const HEADER_LEN: usize = 100;

const FLAGS_KNOWN: u8 = FLAG_COMPACTED;
const PREV: std::ops::Range<usize> = 4..36;
const BODY_HASH: std::ops::Range<usize> = 36..68;
const HASH: std::ops::Range<usize> = 68..100;

/// The key of `seq` in the `events` keyspace.
pub fn seq_key(seq: u64) -> [u8; 8] {
    seq.to_be_bytes()
}

/// The sequence number a key stands for; `None` when the key is not 8 bytes.
pub fn key_seq(key: &[u8]) -> Option<u64> {
    let bytes: [u8; 8] = key.try_into().ok()?;
    Some(u64::from_be_bytes(bytes))
}

/// `blake3(prev_hash ‖ body_hash)`: the hash chain link.
pub fn chain_hash(prev_hash: &Hash, body_hash: &Hash) -> Hash {
    let mut h = blake3::Hasher::new();
    h.update(prev_hash);
    h.update(body_hash);
    h.finalize().into()
}

/// The fixed header of a stored record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordHeader {
    pub flags: u8,
    pub schema: u16,
    pub prev_hash: Hash,
    pub body_hash: Hash,
    pub hash: Hash,
}

impl RecordHeader {
    pub fn is_compacted(&self) -> bool {
        self.flags & FLAG_COMPACTED != 0
    }

    /// Whether `hash` is `blake3(prev_hash ‖ body_hash)`.
    pub fn link_ok(&self) -> bool {
        chain_hash(&self.prev_hash, &self.body_hash) == self.hash
    }
}

/// A stored record split into header and body, without decoding the body.
#[derive(Debug, Clone, Copy)]
pub struct RecordView<'a> {
    pub seq: u64,
    pub header: RecordHeader,
    pub body: &'a [u8],
}

impl<'a> RecordView<'a> {
    /// Checks length, magic and flags and splits off the body; `seq` (the key) is only
    /// used to name the record in errors. Cheap: no hashing, no rkyv.
    pub fn parse(seq: u64, bytes: &'a [u8]) -> Result<Self, LogError> {
        let Some((head, body)) = bytes.split_at_checked(HEADER_LEN) else {
            return Err(LogError::corrupt(
                seq,
                format!(
                    "record is {} bytes, shorter than its {HEADER_LEN}-byte header",
                    bytes.len()
                ),
            ));
        };
        if head[0] != RECORD_MAGIC {
            return Err(LogError::corrupt(
                seq,
                format!("bad magic byte {:#04x}", head[0]),
            ));
        }
        let flags = head[1];
        if flags & !FLAGS_KNOWN != 0 {
            return Err(LogError::corrupt(
                seq,
                format!("unknown flags {flags:#010b}"),
            ));
        }
        let header = RecordHeader {
            flags,
            schema: u16::from_le_bytes([head[2], head[3]]),
            prev_hash: hash_at(head, PREV),
            body_hash: hash_at(head, BODY_HASH),
            hash: hash_at(head, HASH),
        };
        if header.is_compacted() && !body.is_empty() {
            return Err(LogError::corrupt(seq, "compacted record still has a body"));
        }
        Ok(RecordView { seq, header, body })
    }

    /// Whether `body_hash` matches the body. Always true for a compacted record (its
    /// body is gone; the chain link still covers `body_hash`).
    pub fn body_hash_ok(&self) -> bool {
        self.header.is_compacted() || *blake3::hash(self.body).as_bytes() == self.header.body_hash
    }
}

fn hash_at(head: &[u8], range: std::ops::Range<usize>) -> Hash {
    let mut h = [0u8; 32];
    h.copy_from_slice(&head[range]);
    h
}

/// Encodes envelope bodies into stored records, reusing its buffers between calls.
#[derive(Default)]
pub struct Encoder {
    body: AlignedVec,
    record: Vec<u8>,
}

impl Encoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Encodes `body` as the record following `prev_hash`. Returns the record bytes
    /// (valid until the next call) and the record's hash.
    pub fn encode(
        &mut self,
        body: &EnvelopeBody,
        prev_hash: &Hash,
    ) -> Result<(&[u8], Hash), LogError> {
        let mut record = std::mem::take(&mut self.record);
        record.clear();
        let hash = self.encode_into(body, prev_hash, &mut record);
        self.record = record;
        Ok((&self.record, hash?))
    }

    /// Like [`Encoder::encode`], appending the record to `out` (a frame being built).
    pub fn encode_into(
        &mut self,
        body: &EnvelopeBody,
        prev_hash: &Hash,
        out: &mut Vec<u8>,
    ) -> Result<Hash, LogError> {
        let mut buf = std::mem::take(&mut self.body);
        buf.clear();
        self.body = rkyv::api::high::to_bytes_in::<_, rancor::Error>(body, buf).map_err(|e| {
            LogError::Encode {
                seq: body.seq,
                reason: e.to_string(),
            }
        })?;
        let body_hash: Hash = blake3::hash(&self.body).into();
        let hash = chain_hash(prev_hash, &body_hash);
        out.reserve(HEADER_LEN + self.body.len());
        out.push(RECORD_MAGIC);
        out.push(0);
        out.extend_from_slice(&SCHEMA_VERSION.to_le_bytes());
        out.extend_from_slice(prev_hash);
        out.extend_from_slice(&body_hash);
        out.extend_from_slice(&hash);
        out.extend_from_slice(&self.body);
        Ok(hash)
    }
}

/// Decodes stored records, reusing one aligned buffer (values read back from fjall are
/// not aligned the way rkyv's validated access needs).
#[derive(Default)]
pub struct Decoder {
    aligned: AlignedVec,
}

impl Decoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Full decode of the record stored under key `seq`: header checks, rkyv validated
    /// access, body seq = key, deserialisation. Does not hash (see [`Decoder::decode_checked`]).
    pub fn decode(&mut self, seq: u64, bytes: &[u8]) -> Result<Envelope, LogError> {
        let view = RecordView::parse(seq, bytes)?;
        self.decode_view(&view)
    }

    /// [`Decoder::decode`] plus the body-hash and chain-link checks.
    pub fn decode_checked(&mut self, seq: u64, bytes: &[u8]) -> Result<Envelope, LogError> {
        let view = RecordView::parse(seq, bytes)?;
        if !view.body_hash_ok() {
            return Err(LogError::corrupt(seq, "body hash does not match body"));
        }
        if !view.header.link_ok() {
            return Err(LogError::corrupt(
                seq,
                "hash is not blake3(prev_hash, body_hash)",
            ));
        }
        self.decode_view(&view)
    }

    /// Decodes an already parsed record.
    pub fn decode_view(&mut self, view: &RecordView<'_>) -> Result<Envelope, LogError> {
        let archived = self.access(view)?;
        let body = rkyv::deserialize::<EnvelopeBody, rancor::Error>(archived)
            .map_err(|e| LogError::corrupt(view.seq, format!("body does not deserialise: {e}")))?;
        let h = &view.header;
        Ok(Envelope {
            seq: body.seq,
            time_ms: body.time_ms,
            actor: body.actor,
            correlation: body.correlation,
            schema: h.schema,
            prev_hash: h.prev_hash,
            hash: h.hash,
            event: body.event,
        })
    }

    /// Validates the body (bytecheck, schema, seq = key) without deserialising it.
    pub fn validate_view(&mut self, view: &RecordView<'_>) -> Result<(), LogError> {
        self.access(view).map(|_| ())
    }

    fn access(&mut self, view: &RecordView<'_>) -> Result<&ArchivedEnvelopeBody, LogError> {
        let seq = view.seq;
        if view.header.is_compacted() {
            return Err(LogError::corrupt(seq, "body was compacted away"));
        }
        if view.header.schema != SCHEMA_VERSION {
            return Err(LogError::corrupt(
                seq,
                format!("unsupported schema {}", view.header.schema),
            ));
        }
        self.aligned.clear();
        self.aligned.extend_from_slice(view.body);
        let archived = rkyv::access::<ArchivedEnvelopeBody, rancor::Error>(&self.aligned)
            .map_err(|e| LogError::corrupt(seq, format!("body fails validation: {e}")))?;
        let body_seq = archived.seq.to_native();
        if body_seq != seq {
            return Err(LogError::corrupt(
                seq,
                format!("body says seq {body_seq}, key says {seq}"),
            ));
        }
        Ok(archived)
    }
}

/// One-off full decode (allocates a buffer; use a [`Decoder`] in loops).
pub fn decode_record(seq: u64, bytes: &[u8]) -> Result<Envelope, LogError> {
    Decoder::new().decode(seq, bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::GENESIS_HASH;
    use crate::event::Event;

    fn body(seq: u64) -> EnvelopeBody {
        EnvelopeBody {
            seq,
            time_ms: 1_700_000_000_000 + seq as i64,
            actor: "admin:root".into(),
            correlation: format!("req-{seq}"),
            event: Event::NodeLost {
                node_id: "node-agent_0x5f6e4b6e4b50".into(),
            },
        }
    }

    fn encoded(seq: u64, prev: &Hash) -> (Vec<u8>, Hash) {
        let mut enc = Encoder::new();
        let (bytes, hash) = enc.encode(&body(seq), prev).expect("encode");
        (bytes.to_vec(), hash)
    }

    #[test]
    fn round_trip_keeps_every_field_and_links_the_chain() {
        let (bytes, hash) = encoded(7, &GENESIS_HASH);
        let env = decode_record(7, &bytes).expect("decode");
        let b = body(7);
        assert_eq!(
            (env.seq, env.time_ms, &env.actor, &env.correlation),
            (7, b.time_ms, &b.actor, &b.correlation)
        );
        assert_eq!(env.event, b.event);
        assert_eq!(env.schema, SCHEMA_VERSION);
        assert_eq!(env.prev_hash, GENESIS_HASH);
        assert_eq!(env.hash, hash);
        let view = RecordView::parse(7, &bytes).expect("parse");
        assert!(view.body_hash_ok());
        assert!(view.header.link_ok());
        assert_eq!(view.header.body_hash, *blake3::hash(view.body).as_bytes());
        assert_eq!(hash, chain_hash(&GENESIS_HASH, &view.header.body_hash));
    }

    #[test]
    fn decode_rejects_a_key_that_disagrees_with_the_body() {
        let (bytes, _) = encoded(7, &GENESIS_HASH);
        let err = decode_record(8, &bytes).expect_err("seq mismatch");
        assert!(
            matches!(err, LogError::Corrupt { seq: 8, ref reason } if reason.contains("body says seq 7")),
            "{err}"
        );
    }

    #[test]
    fn decode_rejects_bad_magic_unknown_flags_and_schema() {
        let (bytes, _) = encoded(1, &GENESIS_HASH);
        for (offset, value, what) in [(0, 0x00, "magic"), (1, 0x80, "flags"), (2, 9, "schema")] {
            let mut b = bytes.clone();
            b[offset] = value;
            let err = decode_record(1, &b).expect_err(what);
            assert!(err.to_string().contains(what), "{what}: {err}");
        }
    }

    #[test]
    fn decode_checked_catches_an_edited_body_that_plain_decode_accepts() {
        let (mut bytes, _) = encoded(3, &GENESIS_HASH);
        let pos = bytes
            .windows(5)
            .position(|w| w == b"admin")
            .expect("actor in body");
        bytes[pos] = b'A';
        let env = decode_record(3, &bytes).expect("structurally fine");
        assert_eq!(env.actor, "Admin:root");
        let err = Decoder::new().decode_checked(3, &bytes).expect_err("hash");
        assert!(err.to_string().contains("body hash"), "{err}");
    }

    #[test]
    fn compacted_header_verifies_but_does_not_decode() {
        let (bytes, _) = encoded(2, &GENESIS_HASH);
        let mut compacted = bytes[..HEADER_LEN].to_vec();
        compacted[1] = FLAG_COMPACTED;
        let view = RecordView::parse(2, &compacted).expect("parse");
        assert!(view.body_hash_ok() && view.header.link_ok());
        let err = decode_record(2, &compacted).expect_err("no body");
        assert!(err.to_string().contains("compacted"), "{err}");
        let mut with_body = bytes.clone();
        with_body[1] = FLAG_COMPACTED;
        assert!(RecordView::parse(2, &with_body).is_err());
    }

    #[test]
    fn keys_sort_by_seq() {
        assert!(seq_key(255) < seq_key(256));
        assert_eq!(key_seq(&seq_key(42)), Some(42));
        assert_eq!(key_seq(b"short"), None);
    }
}
