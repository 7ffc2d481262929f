//! Secrets at rest (Property 34): AES-256-GCM with a random 96-bit nonce per value and the
//! value's place (`runners/ID/gitlab_runner_token`) as associated data, so a sealed value
//! cannot be moved to another record unnoticed.
//!
//! The key comes from the environment (`GOSLING_STATE_KEY`, base64 of 32 bytes) or from a
//! key file outside the Nest — never from the Nest, which is a git repository.

use crate::error::{Result, StateError};
use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::{Path, PathBuf};

/// The environment variable holding the key (base64 of 32 bytes).
pub const KEY_ENV: &str = "GOSLING_STATE_KEY";
/// The environment variable naming a key file (its content: base64 of 32 bytes).
pub const KEY_FILE_ENV: &str = "GOSLING_STATE_KEY_FILE";

const PREFIX: &str = "aes256gcm:v1:";

/// Where the state key file is by default: `$XDG_CONFIG_HOME/gosling/state.key`, else
/// `~/.config/gosling/state.key` (what `gosling` creates and the executors read).
pub fn default_key_file() -> PathBuf {
    config_dir().join("state.key")
}

/// `$XDG_CONFIG_HOME/gosling`, else `~/.config/gosling`.
pub fn config_dir() -> PathBuf {
    if let Some(x) = std::env::var_os("XDG_CONFIG_HOME").filter(|x| !x.is_empty()) {
        return PathBuf::from(x).join("gosling");
    }
    let home = std::env::var_os("HOME")
        .or_else(|| std::env::var_os("USERPROFILE"))
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    home.join(".config").join("gosling")
}

/// An encrypted value as stored: `aes256gcm:v1:` + base64(nonce ‖ ciphertext ‖ tag).
/// Only a [`Cipher`] makes or opens one; the plaintext never reaches a store.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Sealed(String);

impl Sealed {
    /// The stored text (ciphertext; safe to log).
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Sealed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Sealed(..)")
    }
}

/// A decrypted secret. Its `Debug` and `Display` never show the value.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretString(String);

impl SecretString {
    /// Wraps a plaintext secret.
    pub fn new(s: impl Into<String>) -> Self {
        SecretString(s.into())
    }
    /// The plaintext, for the one place that needs it (an HTTP header, a config file).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretString([redacted])")
    }
}

impl fmt::Display for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Seals and opens secrets with one AES-256 key.
#[derive(Clone)]
pub struct Cipher {
    aead: Aes256Gcm,
}

impl fmt::Debug for Cipher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Cipher([key redacted])")
    }
}

/// Where the key came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeySource {
    /// The `GOSLING_STATE_KEY` variable.
    Env,
    /// A key file.
    File(PathBuf),
}

impl Cipher {
    /// A cipher from a base64-encoded 32-byte key.
    pub fn from_base64(text: &str) -> Result<Cipher> {
        let bytes = B64
            .decode(text.trim())
            .map_err(|e| StateError::Crypto(format!("the state key is not base64: {e}")))?;
        if bytes.len() != 32 {
            return Err(StateError::Crypto(format!(
                "the state key must be 32 bytes (AES-256), found {}",
                bytes.len()
            )));
        }
        let key = Key::<Aes256Gcm>::from_slice(&bytes);
        Ok(Cipher {
            aead: Aes256Gcm::new(key),
        })
    }

    /// A new random key, base64-encoded.
    pub fn generate_key() -> String {
        B64.encode(Aes256Gcm::generate_key(OsRng))
    }

    /// Loads the key: `env_key` (the value of `GOSLING_STATE_KEY`) if set, else the key file.
    /// A key file inside `nest` is refused: the Nest is a git repository.
    /// Returns `Ok(None)` when neither exists.
    pub fn load(
        env_key: Option<&str>,
        key_file: &Path,
        nest: Option<&Path>,
    ) -> Result<Option<(Cipher, KeySource)>> {
        if let Some(k) = env_key.filter(|k| !k.trim().is_empty()) {
            return Ok(Some((Cipher::from_base64(k)?, KeySource::Env)));
        }
        refuse_inside_nest(key_file, nest)?;
        match std::fs::read_to_string(key_file) {
            Ok(text) => Ok(Some((
                Cipher::from_base64(&text)?,
                KeySource::File(key_file.to_path_buf()),
            ))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(StateError::Io {
                path: key_file.display().to_string(),
                source,
            }),
        }
    }

    /// Writes a new random key to `key_file` (readable by its owner only) and returns it.
    /// Never overwrites an existing file.
    pub fn create_key_file(key_file: &Path, nest: Option<&Path>) -> Result<Cipher> {
        refuse_inside_nest(key_file, nest)?;
        let io = |source| StateError::Io {
            path: key_file.display().to_string(),
            source,
        };
        if let Some(dir) = key_file.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let key = Cipher::generate_key();
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(key_file).map_err(io)?;
        std::io::Write::write_all(&mut file, format!("{key}\n").as_bytes()).map_err(io)?;
        Cipher::from_base64(&key)
    }

    /// Encrypts `plain`, bound to `context` (where it is stored).
    pub fn seal(&self, plain: &SecretString, context: &str) -> Result<Sealed> {
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let ct = self
            .aead
            .encrypt(
                &nonce,
                Payload {
                    msg: plain.expose().as_bytes(),
                    aad: context.as_bytes(),
                },
            )
            .map_err(|_| StateError::Crypto("encryption failed".into()))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&ct);
        Ok(Sealed(format!("{PREFIX}{}", B64.encode(out))))
    }

    /// Decrypts a value sealed for `context`. Fails on a wrong key, a changed value or a
    /// value moved from another place.
    pub fn open(&self, sealed: &Sealed, context: &str) -> Result<SecretString> {
        let bad = || {
            StateError::Crypto(format!(
                "cannot decrypt the secret at {context}: wrong state key, or the value was altered"
            ))
        };
        let body = sealed.0.strip_prefix(PREFIX).ok_or_else(bad)?;
        let bytes = B64.decode(body).map_err(|_| bad())?;
        if bytes.len() < 12 + 16 {
            return Err(bad());
        }
        let (nonce, ct) = bytes.split_at(12);
        let plain = self
            .aead
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ct,
                    aad: context.as_bytes(),
                },
            )
            .map_err(|_| bad())?;
        String::from_utf8(plain)
            .map(SecretString)
            .map_err(|_| bad())
    }
}

fn refuse_inside_nest(key_file: &Path, nest: Option<&Path>) -> Result<()> {
    let Some(nest) = nest else { return Ok(()) };
    let abs = |p: &Path| {
        std::path::absolute(p)
            .ok()
            .map(|p| p.canonicalize().unwrap_or(p))
    };
    let key_dir = key_file.parent().and_then(abs);
    if let (Some(k), Some(n)) = (key_dir, abs(nest)) {
        if k.starts_with(&n) {
            return Err(StateError::Crypto(format!(
                "the state key file `{}` is inside the Nest: keep it outside the repository \
                 (set {KEY_FILE_ENV} or {KEY_ENV})",
                key_file.display()
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_binding() {
        let c = Cipher::from_base64(&Cipher::generate_key()).unwrap();
        let s = SecretString::new("glrt-abc");
        let sealed = c.seal(&s, "runners/r1/token").unwrap();
        assert!(!sealed.as_str().contains("glrt"));
        assert_eq!(c.open(&sealed, "runners/r1/token").unwrap(), s);
        assert!(c.open(&sealed, "runners/r2/token").is_err());
        let other = Cipher::from_base64(&Cipher::generate_key()).unwrap();
        assert!(other.open(&sealed, "runners/r1/token").is_err());
        assert_eq!(format!("{s:?} {s}"), "SecretString([redacted]) [redacted]");
        assert!(Cipher::from_base64("AAAA").is_err());
    }

    #[test]
    fn key_file_never_inside_the_nest() {
        let dir = tempfile::tempdir().unwrap();
        let nest = dir.path().join("nest");
        std::fs::create_dir_all(&nest).unwrap();
        let inside = nest.join(".gosling/state.key");
        assert!(Cipher::create_key_file(&inside, Some(&nest)).is_err());
        let outside = dir.path().join("keys/state.key");
        let c = Cipher::create_key_file(&outside, Some(&nest)).unwrap();
        assert!(
            Cipher::create_key_file(&outside, Some(&nest)).is_err(),
            "never overwrites"
        );
        let (loaded, src) = Cipher::load(None, &outside, Some(&nest)).unwrap().unwrap();
        assert_eq!(src, KeySource::File(outside.clone()));
        let sealed = c.seal(&SecretString::new("x"), "a").unwrap();
        assert_eq!(loaded.open(&sealed, "a").unwrap().expose(), "x");
        assert!(Cipher::load(None, &dir.path().join("none"), None)
            .unwrap()
            .is_none());
    }
}
