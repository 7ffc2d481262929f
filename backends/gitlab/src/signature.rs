//! Standard Webhooks signatures (what GitLab sends with a signing token): `webhook-id`,
//! `webhook-timestamp` (unix seconds) and `webhook-signature` (`v1,<base64>`, a
//! space-separated list), an HMAC-SHA256 over `{id}.{timestamp}.{body}` keyed with the
//! base64-decoded secret (without its `whsec_` prefix). Compared in constant time.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// How far a timestamp may be from now, in seconds (the reference libraries' tolerance).
pub const TOLERANCE_S: i64 = 300;

/// Why a signature was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignatureError {
    /// A `webhook-*` header is missing.
    #[error("the `{0}` header is missing")]
    MissingHeader(&'static str),
    /// `webhook-timestamp` is not a number.
    #[error("`webhook-timestamp` is not a unix time")]
    BadTimestamp,
    /// The timestamp is too old or too far in the future.
    #[error("`webhook-timestamp` is {0} s away from now (at most {TOLERANCE_S} s)")]
    Stale(i64),
    /// No signature in the header matches.
    #[error("no `v1` signature matches")]
    Mismatch,
    /// The secret is not `whsec_` + base64.
    #[error("the signing secret is not base64 (with or without `whsec_`)")]
    BadSecret,
}

/// A signing secret (`whsec_…` or bare base64), decoded.
#[derive(Clone)]
pub struct SigningKey(Vec<u8>);

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningKey([redacted])")
    }
}

impl SigningKey {
    /// Decodes `whsec_<base64>` (or bare base64).
    pub fn parse(secret: &str) -> Result<SigningKey, SignatureError> {
        let b64 = secret
            .trim()
            .strip_prefix("whsec_")
            .unwrap_or(secret.trim());
        let key = B64.decode(b64).map_err(|_| SignatureError::BadSecret)?;
        if key.is_empty() {
            return Err(SignatureError::BadSecret);
        }
        Ok(SigningKey(key))
    }

    fn mac(&self, id: &str, timestamp: &str, body: &[u8]) -> Vec<u8> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.as_bytes());
        mac.update(b".");
        mac.update(body);
        mac.finalize().into_bytes().to_vec()
    }

    /// The `webhook-signature` value for a delivery.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        format!(
            "v1,{}",
            B64.encode(self.mac(id, &timestamp.to_string(), body))
        )
    }

    /// Checks a delivery's headers against its body at `now` (unix seconds).
    pub fn verify(
        &self,
        id: Option<&str>,
        timestamp: Option<&str>,
        signature: Option<&str>,
        body: &[u8],
        now: i64,
    ) -> Result<(), SignatureError> {
        let id = id.ok_or(SignatureError::MissingHeader("webhook-id"))?;
        let ts = timestamp.ok_or(SignatureError::MissingHeader("webhook-timestamp"))?;
        let header = signature.ok_or(SignatureError::MissingHeader("webhook-signature"))?;
        let t: i64 = ts
            .trim()
            .parse()
            .map_err(|_| SignatureError::BadTimestamp)?;
        let skew = now.saturating_sub(t);
        if skew.abs() > TOLERANCE_S {
            return Err(SignatureError::Stale(skew));
        }
        let expected = self.mac(id, ts.trim(), body);
        let mut ok = subtle::Choice::from(0);
        for part in header.split(' ') {
            let Some(sig) = part.strip_prefix("v1,") else {
                continue;
            };
            if let Ok(bytes) = B64.decode(sig) {
                if bytes.len() == expected.len() {
                    ok |= bytes.ct_eq(&expected);
                }
            }
        }
        if bool::from(ok) {
            Ok(())
        } else {
            Err(SignatureError::Mismatch)
        }
    }
}

/// Compares two secrets in constant time (for the length of the longer one).
pub fn secrets_equal(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    // Hash both to a fixed length first so neither the content nor the length of the
    // expected secret leaks through timing.
    use sha2::Digest;
    let ha = Sha256::digest(a);
    let hb = Sha256::digest(b);
    bool::from(ha.ct_eq(&hb))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_and_verifies_within_the_tolerance() {
        let key = SigningKey::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let body = br#"{"object_kind":"build"}"#;
        let sig = key.sign("msg_1", 1_700_000_000, body);
        assert!(sig.starts_with("v1,"));
        let check =
            |id, ts: &str, sig: &str, now| key.verify(Some(id), Some(ts), Some(sig), body, now);
        assert_eq!(check("msg_1", "1700000000", &sig, 1_700_000_100), Ok(()));
        // Several signatures (key rotation): any one may match.
        let both = format!("v1,AAAA {sig}");
        assert_eq!(check("msg_1", "1700000000", &both, 1_700_000_000), Ok(()));
        assert_eq!(
            check("msg_2", "1700000000", &sig, 1_700_000_000),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            check("msg_1", "1700000000", &sig, 1_700_000_301),
            Err(SignatureError::Stale(301))
        );
        assert_eq!(
            check("msg_1", "1700000000", &sig, 1_699_999_600),
            Err(SignatureError::Stale(-400))
        );
        assert_eq!(
            check("msg_1", "soon", &sig, 1_700_000_000),
            Err(SignatureError::BadTimestamp)
        );
        assert_eq!(
            key.verify(None, Some("1"), Some(&sig), body, 1),
            Err(SignatureError::MissingHeader("webhook-id"))
        );
        assert!(SigningKey::parse("whsec_!!!").is_err());
    }

    #[test]
    fn secrets_compare_by_value() {
        assert!(secrets_equal("abc", "abc"));
        assert!(!secrets_equal("abc", "abd"));
        assert!(!secrets_equal("abc", "abcd"));
        assert!(!secrets_equal("", "a"));
    }
}
