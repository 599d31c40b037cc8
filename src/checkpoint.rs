//! Signed checkpoints of the log's head: `(seq, chain hash)` signed with the server's
//! ed25519 key, written to a file outside the log's directory (an operator ships it
//! elsewhere) and served by the API. A log that ends before a checkpoint, or whose
//! event at the checkpoint's seq is another one, lost or rewrote history that the
//! hash chain alone cannot see (a cut tail looks like a torn write):
//! `dcloud audit verify --expect-head FILE` names the missing range.
//!
//! The key is `DATA/server.key` (hex of the 32-byte secret, mode 0600), made on first
//! start. The signed message is `"dcloud checkpoint v1\0" ‖ seq (u64 BE) ‖ chain hash
//! (32 bytes) ‖ time_ms (i64 BE)`.

use std::path::{Path, PathBuf};

use anyhow::Context;
use dcloud_events::Hash;
use ed25519_dalek::{Signature, Signer as _, SigningKey, Verifier as _, VerifyingKey};
use serde::{Deserialize, Serialize};

/// The server key's file inside the data directory.
pub const KEY_FILE: &str = "server.key";
/// The default checkpoint file inside the data directory (outside `log/`).
pub const CHECKPOINT_FILE: &str = "checkpoint.json";

const DOMAIN: &[u8] = b"dcloud checkpoint v1\0";

/// One signed checkpoint, as stored in the file and served by the API (hex strings).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub seq: u64,
    pub chain_hash: String,
    pub time_ms: i64,
    pub public_key: String,
    pub signature: String,
}

fn message(seq: u64, hash: &Hash, time_ms: i64) -> Vec<u8> {
    let mut m = Vec::with_capacity(DOMAIN.len() + 48);
    m.extend_from_slice(DOMAIN);
    m.extend_from_slice(&seq.to_be_bytes());
    m.extend_from_slice(hash);
    m.extend_from_slice(&time_ms.to_be_bytes());
    m
}

/// The server's signing key.
pub struct CheckpointSigner {
    key: SigningKey,
}

impl CheckpointSigner {
    /// A key for `context` derived from the server key (blake3's key derivation): other
    /// secrets the server hands out without writing them into the log.
    pub fn derive_key(&self, context: &str) -> [u8; 32] {
        blake3::derive_key(context, &self.key.to_bytes())
    }

    /// Reads `DATA/server.key`, or makes it (durably, mode 0600) when absent.
    pub fn load_or_create(data: &Path) -> anyhow::Result<CheckpointSigner> {
        let path = data.join(KEY_FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let bytes: [u8; 32] = hex::decode(text.trim())
                    .ok()
                    .and_then(|b| b.try_into().ok())
                    .with_context(|| {
                        format!(
                            "{}: expected 64 hex digits (an ed25519 secret)",
                            path.display()
                        )
                    })?;
                Ok(CheckpointSigner {
                    key: SigningKey::from_bytes(&bytes),
                })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut secret = [0u8; 32];
                rand::Rng::fill(&mut rand::rng(), &mut secret);
                crate::durable_file::write_durably(
                    &path,
                    format!("{}\n", hex::encode(secret)).as_bytes(),
                    true,
                )
                .with_context(|| format!("writing {}", path.display()))?;
                Ok(CheckpointSigner {
                    key: SigningKey::from_bytes(&secret),
                })
            }
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    pub fn public_key_hex(&self) -> String {
        hex::encode(self.key.verifying_key().to_bytes())
    }

    /// A checkpoint of `(seq, hash)` taken at `time_ms`.
    pub fn sign(&self, seq: u64, hash: &Hash, time_ms: i64) -> Checkpoint {
        let sig = self.key.sign(&message(seq, hash, time_ms));
        Checkpoint {
            seq,
            chain_hash: hex::encode(hash),
            time_ms,
            public_key: self.public_key_hex(),
            signature: hex::encode(sig.to_bytes()),
        }
    }
}

impl Checkpoint {
    /// Reads a checkpoint file.
    pub fn read(path: &Path) -> anyhow::Result<Checkpoint> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the checkpoint {}", path.display()))?;
        serde_json::from_str(&text).with_context(|| {
            format!(
                "{}: expected a checkpoint (JSON with seq, chain_hash, time_ms, public_key, signature)",
                path.display()
            )
        })
    }

    /// Writes it durably (temporary file, fsync, rename, fsync of the directory).
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        let mut text = serde_json::to_string_pretty(self).map_err(std::io::Error::other)?;
        text.push('\n');
        crate::durable_file::write_durably(path, text.as_bytes(), false)
    }

    /// Checks the signature (with `pinned`, the public key it must be made with) and
    /// returns the `(seq, chain hash)` it vouches for.
    pub fn verify(&self, pinned: Option<&str>) -> Result<(u64, Hash), String> {
        if let Some(p) = pinned {
            if !p.trim().eq_ignore_ascii_case(&self.public_key) {
                return Err(format!(
                    "signed by key {}, not the expected {}",
                    self.public_key,
                    p.trim()
                ));
            }
        }
        let key: [u8; 32] = hex::decode(&self.public_key)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or("public_key: expected 64 hex digits")?;
        let key = VerifyingKey::from_bytes(&key).map_err(|e| format!("public_key: {e}"))?;
        let hash: Hash = hex::decode(&self.chain_hash)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or("chain_hash: expected 64 hex digits")?;
        let sig: [u8; 64] = hex::decode(&self.signature)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or("signature: expected 128 hex digits")?;
        key.verify(
            &message(self.seq, &hash, self.time_ms),
            &Signature::from_bytes(&sig),
        )
        .map_err(|_| "the signature does not verify: the checkpoint was altered".to_string())?;
        Ok((self.seq, hash))
    }
}

/// Where the checkpoint goes for a data directory (unless configured elsewhere).
pub fn default_path(data: &Path) -> PathBuf {
    data.join(CHECKPOINT_FILE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkpoint_verifies_and_any_change_breaks_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let signer = CheckpointSigner::load_or_create(dir.path()).expect("key");
        let again = CheckpointSigner::load_or_create(dir.path()).expect("same key");
        assert_eq!(signer.public_key_hex(), again.public_key_hex());
        let cp = signer.sign(42, &[7; 32], 1_700_000_000_000);
        assert_eq!(cp.verify(None), Ok((42, [7; 32])));
        assert_eq!(cp.verify(Some(&signer.public_key_hex())), Ok((42, [7; 32])));
        assert!(cp.verify(Some(&"00".repeat(32))).is_err());
        let mut moved = cp.clone();
        moved.seq = 41;
        assert!(moved.verify(None).is_err());
        let path = dir.path().join("cp.json");
        cp.write(&path).expect("write");
        assert_eq!(Checkpoint::read(&path).expect("read"), cp);
    }
}
