//! Who may call MotherGoose: runners with their own credential, operators with the admin
//! token, Rift with its token. Nothing secret is stored in plain text and every
//! comparison takes constant time.
//!
//! - A runner's credential is derived, not stored: `HMAC-SHA256(K, runner id ‖ epoch)` with
//!   a key `K` kept sealed in the state store (created on first use). MotherGoose can hand
//!   it to a runner again after a restart (re-deriving it), checks it without a lookup
//!   table, and revokes it by ending the runner (a terminated runner's credential is
//!   refused) or by raising its epoch.
//! - The admin and Rift tokens are random (256 bits) and shown once; the store keeps only
//!   their SHA-256, which is enough for a high-entropy token.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine;
use gosling_state::{Cipher, Expect, SecretString, StateError, StateStore};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The sealed secret holding the runner credential key.
pub const RUNNER_KEY: &str = "runner_credential_key";
const RUNNER_KEY_CONTEXT: &str = "meta/runner_credential_key";
const PREFIX: &str = "gsr1.";

/// Derives and checks runner credentials.
#[derive(Clone)]
pub struct RunnerKeys {
    key: Vec<u8>,
}

impl std::fmt::Debug for RunnerKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RunnerKeys([redacted])")
    }
}

impl RunnerKeys {
    /// Keys from raw key bytes (tests).
    pub fn from_bytes(key: &[u8]) -> RunnerKeys {
        RunnerKeys { key: key.to_vec() }
    }

    /// The key kept sealed in `store`, created (and sealed) on first use. Two processes
    /// creating it at once agree: the second one's write conflicts and it reads the first.
    pub async fn load_or_create(
        store: &dyn StateStore,
        cipher: &Cipher,
    ) -> Result<RunnerKeys, StateError> {
        for _ in 0..3 {
            if let Some(sealed) = store.secret(RUNNER_KEY).await? {
                let key = cipher.open(&sealed.item, RUNNER_KEY_CONTEXT)?;
                return Ok(RunnerKeys {
                    key: key.expose().as_bytes().to_vec(),
                });
            }
            let fresh = SecretString::new(Cipher::generate_key());
            match store
                .put_secret(
                    RUNNER_KEY,
                    &cipher.seal(&fresh, RUNNER_KEY_CONTEXT)?,
                    Expect::Absent,
                )
                .await
            {
                Ok(_) => {
                    return Ok(RunnerKeys {
                        key: fresh.expose().as_bytes().to_vec(),
                    })
                }
                Err(StateError::Conflict { .. }) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(StateError::Invalid(
            "the runner credential key keeps changing under us".into(),
        ))
    }

    fn mac(&self, runner_id: &str, epoch: u32) -> Vec<u8> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("any key length");
        mac.update(b"gosling-runner\0");
        mac.update(runner_id.as_bytes());
        mac.update(b"\0");
        mac.update(&epoch.to_be_bytes());
        mac.finalize().into_bytes().to_vec()
    }

    /// The credential of `runner_id` at `epoch`: `gsr1.<runner id>.<mac>` (the id in it only
    /// says whom the credential claims to be; the MAC proves it).
    pub fn credential(&self, runner_id: &str, epoch: u32) -> SecretString {
        SecretString::new(format!(
            "{PREFIX}{runner_id}.{}",
            B64URL.encode(self.mac(runner_id, epoch))
        ))
    }

    /// Whether `presented` is `runner_id`'s credential at `epoch` (constant time).
    pub fn verify(&self, runner_id: &str, epoch: u32, presented: &str) -> bool {
        let Some((claimed, b64)) = split(presented) else {
            return false;
        };
        let Ok(bytes) = B64URL.decode(b64) else {
            return false;
        };
        let expected = self.mac(runner_id, epoch);
        claimed == runner_id && bytes.len() == expected.len() && bool::from(bytes.ct_eq(&expected))
    }

    /// A secret derived for `purpose` and `subject` (e.g. a runner's Rift S3 secret key).
    pub fn derive(&self, purpose: &str, subject: &str) -> SecretString {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("any key length");
        mac.update(purpose.as_bytes());
        mac.update(b"\0");
        mac.update(subject.as_bytes());
        SecretString::new(B64URL.encode(mac.finalize().into_bytes()))
    }
}

/// The runner a credential claims to be (unverified: check it with
/// [`RunnerKeys::verify`]).
pub fn claimed_runner(presented: &str) -> Option<&str> {
    split(presented).map(|(id, _)| id)
}

fn split(presented: &str) -> Option<(&str, &str)> {
    presented.strip_prefix(PREFIX)?.rsplit_once('.')
}

/// A random 256-bit token with a readable prefix (`gsa_…` admin, `gsk_…` Rift).
pub fn new_token(prefix: &str) -> SecretString {
    let bytes: [u8; 32] = rand::random();
    SecretString::new(format!("{prefix}{}", B64URL.encode(bytes)))
}

/// The SHA-256 (hex) the store keeps of a token.
pub fn token_hash(token: &str) -> String {
    gosling_state::hex(&Sha256::digest(token.as_bytes()))
}

/// Whether `presented` hashes to `stored_hash` (constant time).
pub fn token_matches(stored_hash: &str, presented: &str) -> bool {
    let h = token_hash(presented);
    h.len() == stored_hash.len() && bool::from(h.as_bytes().ct_eq(stored_hash.as_bytes()))
}

/// Checks presented tokens against a [`StoredToken`]'s hash, kept in memory. A mismatch
/// re-reads the hash when none was stored yet or the copy is older than a second, so a
/// created or rotated token works at once; once a token exists, bad tokens cost at most
/// a store read a second.
pub struct TokenCheck {
    token: StoredToken,
    cached: std::sync::Mutex<(Option<String>, Option<std::time::Instant>)>,
}

impl TokenCheck {
    /// A check of `token`, nothing read yet.
    pub fn new(token: StoredToken) -> TokenCheck {
        TokenCheck {
            token,
            cached: std::sync::Mutex::new((None, None)),
        }
    }

    /// Whether `presented` is the token `store` keeps (constant-time comparison).
    pub async fn allows(&self, store: &dyn StateStore, presented: &str) -> bool {
        let matches =
            |h: &Option<String>| h.as_deref().is_some_and(|h| token_matches(h, presented));
        let stale = {
            let c = self.cached.lock().unwrap_or_else(|p| p.into_inner());
            if matches(&c.0) {
                return true;
            }
            let old = |t: &std::time::Instant| t.elapsed() > std::time::Duration::from_secs(1);
            c.0.is_none() || c.1.as_ref().is_none_or(old)
        };
        if !stale {
            return false;
        }
        let hash = self.token.hash(store).await.ok().flatten();
        let ok = matches(&hash);
        *self.cached.lock().unwrap_or_else(|p| p.into_inner()) =
            (hash, Some(std::time::Instant::now()));
        ok
    }
}

/// A token whose hash is kept in the store's `meta` table under `name`.
pub struct StoredToken {
    /// The `meta` key.
    pub name: &'static str,
    /// The token's prefix.
    pub prefix: &'static str,
}

/// The operators' token for management endpoints.
pub const ADMIN_TOKEN: StoredToken = StoredToken {
    name: "admin_token",
    prefix: "gsa_",
};

/// Rift's token for the runner-verification endpoint.
pub const RIFT_TOKEN: StoredToken = StoredToken {
    name: "rift_token",
    prefix: "gsk_",
};

impl StoredToken {
    /// The stored hash, if a token was created.
    pub async fn hash(&self, store: &dyn StateStore) -> Result<Option<String>, StateError> {
        Ok(store.meta_value(self.name).await?.and_then(|v| {
            v.item
                .get("sha256")
                .and_then(|h| h.as_str())
                .map(String::from)
        }))
    }

    /// Creates the token if there is none; returns it only when this call created it
    /// (it is shown once).
    pub async fn ensure(&self, store: &dyn StateStore) -> Result<Option<SecretString>, StateError> {
        if self.hash(store).await?.is_some() {
            return Ok(None);
        }
        self.put(store, Expect::Absent)
            .await
            .map(Some)
            .or_else(|e| match e {
                StateError::Conflict { .. } => Ok(None),
                e => Err(e),
            })
    }

    /// Replaces the token (the old one stops working at once); returns the new one.
    pub async fn rotate(&self, store: &dyn StateStore) -> Result<SecretString, StateError> {
        let expect = match store.meta_value(self.name).await? {
            Some(v) => Expect::Version(v.version),
            None => Expect::Absent,
        };
        self.put(store, expect).await
    }

    async fn put(
        &self,
        store: &dyn StateStore,
        expect: Expect,
    ) -> Result<SecretString, StateError> {
        let token = new_token(self.prefix);
        let value = serde_json::json!({ "sha256": token_hash(token.expose()) });
        store.put_meta_value(self.name, value, expect).await?;
        Ok(token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_credential_verifies_only_for_its_runner_and_epoch() {
        let keys = RunnerKeys::from_bytes(b"0123456789abcdef0123456789abcdef");
        let c = keys.credential("r-1", 0);
        assert!(c.expose().starts_with(PREFIX));
        assert!(keys.verify("r-1", 0, c.expose()));
        assert!(!keys.verify("r-2", 0, c.expose()), "another runner");
        assert!(!keys.verify("r-1", 1, c.expose()), "a revoked epoch");
        assert!(!keys.verify("r-1", 0, "gsr1.r-1.AAAA"));
        assert_eq!(claimed_runner(c.expose()), Some("r-1"));
        let forged = c.expose().replace("gsr1.r-1.", "gsr1.r-2.");
        assert!(
            !keys.verify("r-2", 0, &forged),
            "the id is bound into the MAC"
        );
        assert!(!keys.verify("r-1", 0, ""));
        let other = RunnerKeys::from_bytes(b"another key of thirty-two bytes!");
        assert!(
            !other.verify("r-1", 0, c.expose()),
            "another deployment's key"
        );
        assert_ne!(
            keys.derive("rift-s3", "r-1").expose(),
            keys.derive("rift-s3", "r-2").expose()
        );
    }

    #[test]
    fn tokens_match_their_hash_only() {
        let t = new_token("gsa_");
        let h = token_hash(t.expose());
        assert!(token_matches(&h, t.expose()));
        assert!(!token_matches(&h, "gsa_guess"));
        assert!(!token_matches("", t.expose()));
        assert_ne!(new_token("gsa_").expose(), t.expose());
    }
}
