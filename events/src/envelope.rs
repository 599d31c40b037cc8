//! The envelope that wraps every event in the log: sequence number, time, actor,
//! correlation id, schema version and the hash chain.

use serde::{Deserialize, Serialize};

use crate::event::Event;

/// blake3 digest.
pub type Hash = [u8; 32];

/// Schema version written into every new envelope. Bump it (and add an upcaster)
/// when the envelope body or any released event changes shape.
pub const SCHEMA_VERSION: u16 = 1;

/// The hash before the first envelope.
pub const GENESIS_HASH: Hash = [0; 32];

/// What the writer hands the log: everything but the sequence number and hashes,
/// which the log assigns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent {
    /// Wall-clock milliseconds since the epoch, stamped by the writer.
    pub time_ms: i64,
    /// Who caused it: `admin:NAME`, `user:NAME`, `agent:NODE`, `auditor:NAME`, `system`.
    pub actor: String,
    /// Ties together the events of one request.
    pub correlation: String,
    pub event: Event,
}

impl NewEvent {
    /// The body this event is stored as when it gets sequence number `seq`.
    pub fn at(self, seq: u64) -> EnvelopeBody {
        EnvelopeBody {
            seq,
            time_ms: self.time_ms,
            actor: self.actor,
            correlation: self.correlation,
            event: self.event,
        }
    }
}

/// The part of an envelope that is serialised with rkyv and hashed.
#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct EnvelopeBody {
    pub seq: u64,
    pub time_ms: i64,
    pub actor: String,
    pub correlation: String,
    pub event: Event,
}

impl EnvelopeBody {
    /// The envelope of this body once encoded after `prev_hash` with hash `hash` (what
    /// an append hands back; every backend builds it here).
    pub fn into_envelope(self, prev_hash: Hash, hash: Hash) -> Envelope {
        Envelope {
            seq: self.seq,
            time_ms: self.time_ms,
            actor: self.actor,
            correlation: self.correlation,
            schema: SCHEMA_VERSION,
            prev_hash,
            hash,
            event: self.event,
        }
    }
}

/// One entry of the log, as read back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// Gap-free, starting at 1.
    pub seq: u64,
    pub time_ms: i64,
    pub actor: String,
    pub correlation: String,
    pub schema: u16,
    #[serde(with = "hex_hash")]
    pub prev_hash: Hash,
    #[serde(with = "hex_hash")]
    pub hash: Hash,
    pub event: Event,
}

mod hex_hash {
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(h: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(h))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let s = String::deserialize(d)?;
        let v = hex::decode(&s).map_err(serde::de::Error::custom)?;
        v.try_into()
            .map_err(|_| serde::de::Error::custom("hash must be 32 bytes"))
    }
}
