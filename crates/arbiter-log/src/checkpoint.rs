//! Signed checkpoints: "the log had `size` entries and this root at time `at`", signed with an
//! Ed25519 key kept outside the database, so that whoever can rewrite the database still cannot
//! forge a checkpoint.

use crate::merkle::Hash;
use crate::LogError;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::Path;

/// A signed tree head.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Entries covered: the first `size` entries, seq 1 to `size`.
    pub size: u64,
    /// Merkle tree hash of those entries, hex.
    pub root: String,
    /// When it was signed (seconds since the Unix epoch).
    pub at: i64,
    /// Which key signed it: the first 8 bytes of SHA-256 of the public key, hex.
    pub key_id: String,
    /// Ed25519 signature of [`Checkpoint::signed_text`], hex.
    pub signature: String,
}

impl Checkpoint {
    /// The exact text that is signed. Versioned and line-based, in the spirit of CT's signed
    /// notes, so that a third party can check a checkpoint with any Ed25519 tool.
    pub fn signed_text(size: u64, root: &str, at: i64) -> String {
        format!("arbiter decision log checkpoint v1\n{size}\n{root}\n{at}\n")
    }

    /// The root as bytes, or `None` when it is not 32 bytes of hex.
    pub fn root_hash(&self) -> Option<Hash> {
        let bytes = hex::decode(&self.root).ok()?;
        bytes.try_into().ok()
    }

    /// Whether `key` signed this checkpoint.
    pub fn verify(&self, key: &VerifyingKey) -> bool {
        let Ok(bytes) = hex::decode(&self.signature) else {
            return false;
        };
        let Ok(signature) = Signature::from_slice(&bytes) else {
            return false;
        };
        let text = Self::signed_text(self.size, &self.root, self.at);
        key_id(key) == self.key_id && key.verify_strict(text.as_bytes(), &signature).is_ok()
    }
}

/// The short id of a public key.
pub fn key_id(key: &VerifyingKey) -> String {
    let digest = Sha256::digest(key.as_bytes());
    hex::encode(digest.get(..8).unwrap_or_default())
}

/// The log's signing key.
pub struct LogKey {
    signing: SigningKey,
}

impl std::fmt::Debug for LogKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secret.
        write!(f, "LogKey({})", key_id(&self.signing.verifying_key()))
    }
}

impl LogKey {
    /// A new random key.
    pub fn generate() -> Result<Self, LogError> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed)
            .map_err(|err| LogError::Key(format!("no randomness for a new key: {err}")))?;
        Ok(Self {
            signing: SigningKey::from_bytes(&seed),
        })
    }

    /// Loads the key at `path` (its 32-byte seed as hex), creating it (mode 0600) when the file
    /// does not exist. The public key is written beside it as `<path>.pub` for verifiers.
    pub fn load_or_create(path: &Path) -> Result<Self, LogError> {
        let key = match std::fs::read_to_string(path) {
            Ok(text) => {
                let bytes = hex::decode(text.trim())
                    .map_err(|err| LogError::Key(format!("{}: not hex: {err}", path.display())))?;
                let seed: [u8; 32] = bytes.try_into().map_err(|_| {
                    LogError::Key(format!("{}: must hold 32 bytes of hex", path.display()))
                })?;
                Self {
                    signing: SigningKey::from_bytes(&seed),
                }
            }
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                let key = Self::generate()?;
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent)?;
                }
                write_private(path, &hex::encode(key.signing.to_bytes()))?;
                key
            }
            Err(err) => return Err(err.into()),
        };
        let public = public_key_path(path);
        std::fs::write(&public, hex::encode(key.verifying_key().as_bytes()))?;
        Ok(key)
    }

    /// The public half.
    pub fn verifying_key(&self) -> VerifyingKey {
        self.signing.verifying_key()
    }

    /// Signs a checkpoint of `size` entries with `root`, at `at`.
    pub fn sign(&self, size: u64, root: &Hash, at: i64) -> Checkpoint {
        let root = hex::encode(root);
        let signature = self
            .signing
            .sign(Checkpoint::signed_text(size, &root, at).as_bytes());
        Checkpoint {
            size,
            root,
            at,
            key_id: key_id(&self.verifying_key()),
            signature: hex::encode(signature.to_bytes()),
        }
    }
}

/// Where the public key of the key at `path` is written.
pub fn public_key_path(path: &Path) -> std::path::PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".pub");
    name.into()
}

/// Reads a public key (32 bytes as hex).
pub fn read_public_key(path: &Path) -> Result<VerifyingKey, LogError> {
    let text = std::fs::read_to_string(path)
        .map_err(|err| LogError::Key(format!("{}: {err}", path.display())))?;
    let bytes = hex::decode(text.trim())
        .map_err(|err| LogError::Key(format!("{}: not hex: {err}", path.display())))?;
    let bytes: [u8; 32] = bytes
        .try_into()
        .map_err(|_| LogError::Key(format!("{}: must hold 32 bytes of hex", path.display())))?;
    VerifyingKey::from_bytes(&bytes)
        .map_err(|err| LogError::Key(format!("{}: not an Ed25519 key: {err}", path.display())))
}

#[cfg(unix)]
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()
}

#[cfg(not(unix))]
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    std::fs::write(path, text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkpoint_verifies_with_its_key_only_and_not_once_altered() {
        let key = LogKey::generate().unwrap();
        let other = LogKey::generate().unwrap();
        let checkpoint = key.sign(7, &[3u8; 32], 1_700_000_000);
        assert!(checkpoint.verify(&key.verifying_key()));
        assert!(!checkpoint.verify(&other.verifying_key()));
        let mut altered = checkpoint.clone();
        altered.size = 6;
        assert!(!altered.verify(&key.verifying_key()));
        let mut altered = checkpoint;
        altered.root = hex::encode([4u8; 32]);
        assert!(!altered.verify(&key.verifying_key()));
    }

    #[test]
    fn a_key_is_created_once_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys/log.key");
        let first = LogKey::load_or_create(&path).unwrap();
        let again = LogKey::load_or_create(&path).unwrap();
        assert_eq!(first.verifying_key(), again.verifying_key());
        assert_eq!(
            read_public_key(&public_key_path(&path)).unwrap(),
            first.verifying_key()
        );
    }
}
