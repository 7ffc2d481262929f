//! AWS Signature Version 4 verification for S3 requests: header-signed
//! (`Authorization: AWS4-HMAC-SHA256 ...`) and presigned (`?X-Amz-Signature=...`).
//!
//! Rift recomputes the canonical request from what it received, derives the signing key from
//! the configured secret for the access key named in the credential scope, and compares
//! signatures in constant time. Header-signed requests must be within the clock-skew window;
//! presigned ones must not be expired (nor dated in the future beyond the window).

use chrono::{DateTime, NaiveDateTime, Utc};
use hmac::{Hmac, Mac};
use http::HeaderMap;
use percent_encoding::{percent_decode_str, percent_encode, AsciiSet, NON_ALPHANUMERIC};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Characters left unencoded by SigV4's `UriEncode`: `A-Z a-z 0-9 - . _ ~`.
const SIGV4_QUERY: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');
/// As [`SIGV4_QUERY`] but keeping `/` (object key paths).
const SIGV4_PATH: &AsciiSet = &SIGV4_QUERY.remove(b'/');

/// The only algorithm supported.
pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";
/// The payload hash of presigned and unsigned-payload requests.
pub const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";
/// Longest validity of a presigned URL (7 days), as S3 enforces.
pub const MAX_PRESIGN_EXPIRES: i64 = 604_800;

/// What a request looked like, for verification.
#[derive(Debug, Clone, Copy)]
pub struct SigRequest<'a> {
    /// HTTP method (`GET`, `PUT`, ...).
    pub method: &'a str,
    /// The path exactly as received (still percent-encoded).
    pub path: &'a str,
    /// The raw query string, if any.
    pub query: Option<&'a str>,
    /// The request headers.
    pub headers: &'a HeaderMap,
}

/// How the request body is covered by the signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PayloadHash {
    /// `UNSIGNED-PAYLOAD` (presigned URLs, or clients that do not hash).
    Unsigned,
    /// The body must have this SHA-256.
    Sha256([u8; 32]),
    /// `STREAMING-AWS4-HMAC-SHA256-PAYLOAD[-TRAILER]`: aws-chunked with signed chunks.
    StreamingSigned(crate::chunked::ChunkSigning),
    /// `STREAMING-UNSIGNED-PAYLOAD-TRAILER`: aws-chunked without chunk signatures.
    StreamingUnsigned,
    /// Another `STREAMING-*` variant (not supported), named by the given value.
    Streaming(String),
}

/// A successfully verified request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The access key that signed it.
    pub access_key: String,
    /// How the body is covered.
    pub payload: PayloadHash,
    /// Whether it was a presigned (query) signature.
    pub presigned: bool,
}

/// Why a signature was refused. Each maps to an S3 error code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SigError {
    /// The `Authorization` header or the presign parameters are malformed.
    #[error("malformed authorization: {0}")]
    Malformed(&'static str),
    /// An algorithm other than AWS4-HMAC-SHA256.
    #[error("unsupported signature algorithm")]
    UnsupportedAlgorithm,
    /// The access key is not configured.
    #[error("the access key does not exist")]
    InvalidAccessKey,
    /// The signature does not match.
    #[error("the request signature does not match")]
    SignatureMismatch,
    /// The presigned URL has expired.
    #[error("request has expired")]
    Expired,
    /// The request time is too far from the server's clock.
    #[error("the difference between the request time and the server's time is too large")]
    TimeSkewed,
}

/// Whether a request carries SigV4 credentials (in the header or the query).
pub fn is_sigv4(headers: &HeaderMap, query: Option<&str>) -> bool {
    let header = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("AWS4-") || v.starts_with("AWS "));
    header
        || query.is_some_and(|q| {
            q.split('&').any(|p| {
                let k = p.split('=').next().unwrap_or("");
                k.eq_ignore_ascii_case("X-Amz-Signature")
                    || k.eq_ignore_ascii_case("X-Amz-Algorithm")
            })
        })
}

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// HMAC-SHA256 of `data` under `key`.
pub(crate) fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    match Hmac::<Sha256>::new_from_slice(key) {
        Ok(mut m) => {
            m.update(data);
            m.finalize().into_bytes().into()
        }
        // HMAC accepts keys of any length; this branch cannot be taken. A zero digest would
        // only make the comparison fail.
        Err(_) => [0; 32],
    }
}

/// Derives the SigV4 signing key.
pub fn signing_key(secret: &str, date: &str, region: &str, service: &str) -> [u8; 32] {
    let k_date = hmac(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    let k_region = hmac(&k_date, region.as_bytes());
    let k_service = hmac(&k_region, service.as_bytes());
    hmac(&k_service, b"aws4_request")
}

struct Scope<'a> {
    access_key: &'a str,
    date: &'a str,
    region: &'a str,
    service: &'a str,
}

fn parse_scope(credential: &str) -> Result<Scope<'_>, SigError> {
    let mut parts = credential.rsplitn(5, '/');
    let terminal = parts.next().ok_or(SigError::Malformed("credential"))?;
    let service = parts.next().ok_or(SigError::Malformed("credential"))?;
    let region = parts.next().ok_or(SigError::Malformed("credential"))?;
    let date = parts.next().ok_or(SigError::Malformed("credential"))?;
    let access_key = parts.next().ok_or(SigError::Malformed("credential"))?;
    if terminal != "aws4_request"
        || date.len() != 8
        || !date.bytes().all(|b| b.is_ascii_digit())
        || access_key.is_empty()
    {
        return Err(SigError::Malformed("credential scope"));
    }
    if service != "s3" {
        return Err(SigError::Malformed("credential scope service must be s3"));
    }
    Ok(Scope {
        access_key,
        date,
        region,
        service,
    })
}

fn parse_amz_date(s: &str) -> Result<DateTime<Utc>, SigError> {
    NaiveDateTime::parse_from_str(s, "%Y%m%dT%H%M%SZ")
        .map(|n| n.and_utc())
        .map_err(|_| SigError::Malformed("x-amz-date"))
}

/// Query parameters, percent-decoded (a `+` stays a `+`).
fn query_pairs(query: Option<&str>) -> Vec<(Vec<u8>, Vec<u8>)> {
    let Some(q) = query else { return Vec::new() };
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (
                percent_decode_str(k).collect::<Vec<u8>>(),
                percent_decode_str(v).collect::<Vec<u8>>(),
            )
        })
        .collect()
}

fn canonical_query(pairs: &[(Vec<u8>, Vec<u8>)], skip_signature: bool) -> String {
    let mut enc: Vec<(String, String)> = pairs
        .iter()
        .filter(|(k, _)| !(skip_signature && k.as_slice() == b"X-Amz-Signature"))
        .map(|(k, v)| {
            (
                percent_encode(k, SIGV4_QUERY).to_string(),
                percent_encode(v, SIGV4_QUERY).to_string(),
            )
        })
        .collect();
    enc.sort();
    enc.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

fn canonical_headers(headers: &HeaderMap, signed: &[&str]) -> String {
    let mut out = String::new();
    for name in signed {
        let values: Vec<String> = headers
            .get_all(*name)
            .iter()
            .map(|v| {
                let s = String::from_utf8_lossy(v.as_bytes());
                s.split_whitespace().collect::<Vec<_>>().join(" ")
            })
            .collect();
        out.push_str(name);
        out.push(':');
        out.push_str(&values.join(","));
        out.push('\n');
    }
    out
}

/// Canonical URI candidates: the S3 encoding of the decoded path, then the path as sent.
fn canonical_uris(path: &str) -> Vec<String> {
    let decoded: Vec<u8> = percent_decode_str(path).collect();
    let reencoded = percent_encode(&decoded, SIGV4_PATH).to_string();
    let reencoded = if reencoded.is_empty() {
        "/".to_string()
    } else {
        reencoded
    };
    if reencoded == path {
        vec![reencoded]
    } else {
        vec![reencoded, path.to_string()]
    }
}

fn parse_signature(sig: &str) -> Result<[u8; 32], SigError> {
    let bytes = hex::decode(sig).map_err(|_| SigError::SignatureMismatch)?;
    bytes.try_into().map_err(|_| SigError::SignatureMismatch)
}

struct Parsed<'a> {
    credential: String,
    amz_date: String,
    signed_headers: String,
    signature: String,
    payload: String,
    presigned: bool,
    expires: Option<i64>,
    pairs: Vec<(Vec<u8>, Vec<u8>)>,
    req: SigRequest<'a>,
}

fn parse_request<'a>(req: SigRequest<'a>) -> Result<Parsed<'a>, SigError> {
    let pairs = query_pairs(req.query);
    let q = |name: &str| -> Option<String> {
        pairs
            .iter()
            .find(|(k, _)| k.as_slice() == name.as_bytes())
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    };
    let auth = req
        .headers
        .get(http::header::AUTHORIZATION)
        .map(|v| {
            v.to_str()
                .map_err(|_| SigError::Malformed("authorization header"))
        })
        .transpose()?;
    if let Some(auth) = auth {
        let rest = auth
            .strip_prefix(ALGORITHM)
            .ok_or(SigError::UnsupportedAlgorithm)?;
        let mut credential = None;
        let mut signed_headers = None;
        let mut signature = None;
        for part in rest.split(',') {
            let part = part.trim();
            if let Some(v) = part.strip_prefix("Credential=") {
                credential = Some(v.to_string());
            } else if let Some(v) = part.strip_prefix("SignedHeaders=") {
                signed_headers = Some(v.to_string());
            } else if let Some(v) = part.strip_prefix("Signature=") {
                signature = Some(v.to_string());
            }
        }
        let header = |name: &str| req.headers.get(name).and_then(|v| v.to_str().ok());
        let amz_date = header("x-amz-date").ok_or(SigError::Malformed("missing x-amz-date"))?;
        let payload = header("x-amz-content-sha256")
            .ok_or(SigError::Malformed("missing x-amz-content-sha256"))?;
        Ok(Parsed {
            credential: credential.ok_or(SigError::Malformed("missing Credential"))?,
            amz_date: amz_date.to_string(),
            signed_headers: signed_headers.ok_or(SigError::Malformed("missing SignedHeaders"))?,
            signature: signature.ok_or(SigError::Malformed("missing Signature"))?,
            payload: payload.to_string(),
            presigned: false,
            expires: None,
            pairs,
            req,
        })
    } else {
        let algorithm =
            q("X-Amz-Algorithm").ok_or(SigError::Malformed("missing X-Amz-Algorithm"))?;
        if algorithm != ALGORITHM {
            return Err(SigError::UnsupportedAlgorithm);
        }
        let expires: i64 = q("X-Amz-Expires")
            .ok_or(SigError::Malformed("missing X-Amz-Expires"))?
            .parse()
            .map_err(|_| SigError::Malformed("X-Amz-Expires"))?;
        if !(1..=MAX_PRESIGN_EXPIRES).contains(&expires) {
            return Err(SigError::Malformed("X-Amz-Expires out of range"));
        }
        Ok(Parsed {
            credential: q("X-Amz-Credential")
                .ok_or(SigError::Malformed("missing X-Amz-Credential"))?,
            amz_date: q("X-Amz-Date").ok_or(SigError::Malformed("missing X-Amz-Date"))?,
            signed_headers: q("X-Amz-SignedHeaders")
                .ok_or(SigError::Malformed("missing X-Amz-SignedHeaders"))?,
            signature: q("X-Amz-Signature")
                .ok_or(SigError::Malformed("missing X-Amz-Signature"))?,
            payload: q("X-Amz-Content-Sha256").unwrap_or_else(|| UNSIGNED_PAYLOAD.to_string()),
            presigned: true,
            expires: Some(expires),
            pairs,
            req,
        })
    }
}

/// A SigV4 request whose shape and time have been checked, waiting for the secret of its
/// access key: the secret can be looked up (in the auth file, or asynchronously elsewhere)
/// between [`prepare`] and [`Signed::verify`].
pub struct Signed<'a> {
    p: Parsed<'a>,
}

impl std::fmt::Debug for Signed<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signed")
            .field("access_key", &self.access_key())
            .field("presigned", &self.p.presigned)
            .finish_non_exhaustive()
    }
}

/// Parses a SigV4-signed request and checks its time, before any key lookup (as S3 does).
pub fn prepare(
    req: SigRequest<'_>,
    now: DateTime<Utc>,
    skew: chrono::Duration,
) -> Result<Signed<'_>, SigError> {
    let p = parse_request(req)?;
    let scope = parse_scope(&p.credential)?;
    let t = parse_amz_date(&p.amz_date)?;
    if !p.amz_date.starts_with(scope.date) {
        return Err(SigError::Malformed(
            "x-amz-date does not match the credential scope date",
        ));
    }
    let signed: Vec<&str> = p.signed_headers.split(';').collect();
    if !signed.contains(&"host") {
        return Err(SigError::Malformed("the host header must be signed"));
    }
    if signed
        .iter()
        .any(|h| h.is_empty() || h.bytes().any(|b| b.is_ascii_uppercase()))
    {
        return Err(SigError::Malformed("SignedHeaders"));
    }
    check_time(t, p.expires, now, skew)?;
    Ok(Signed { p })
}

/// A header-signed request must be within the skew window; a presigned one must not be
/// expired (nor dated in the future beyond the window).
fn check_time(
    t: DateTime<Utc>,
    expires: Option<i64>,
    now: DateTime<Utc>,
    skew: chrono::Duration,
) -> Result<(), SigError> {
    match expires {
        Some(expires) => {
            if t > now + skew {
                return Err(SigError::TimeSkewed);
            }
            if now > t + chrono::Duration::seconds(expires) {
                return Err(SigError::Expired);
            }
        }
        None => {
            if t > now + skew || t < now - skew {
                return Err(SigError::TimeSkewed);
            }
        }
    }
    Ok(())
}

impl Signed<'_> {
    /// The access key named in the credential scope (not yet proven: see [`Signed::verify`]).
    pub fn access_key(&self) -> &str {
        parse_scope(&self.p.credential).map_or("", |s| s.access_key)
    }

    /// Checks the signature against `secret`, the secret key of [`Signed::access_key`].
    pub fn verify(&self, secret: &str) -> Result<Verified, SigError> {
        let p = &self.p;
        let scope = parse_scope(&p.credential)?;
        let provided = parse_signature(&p.signature)?;
        let key = signing_key(secret, scope.date, scope.region, scope.service);
        let signed: Vec<&str> = p.signed_headers.split(';').collect();
        let cquery = canonical_query(&p.pairs, p.presigned);
        let cheaders = canonical_headers(p.req.headers, &signed);
        let scope_str = format!(
            "{}/{}/{}/aws4_request",
            scope.date, scope.region, scope.service
        );
        let mut ok = subtle::Choice::from(0u8);
        for uri in canonical_uris(p.req.path) {
            let creq = format!(
                "{}\n{}\n{}\n{}\n{}\n{}",
                p.req.method, uri, cquery, cheaders, p.signed_headers, p.payload
            );
            let sts = format!(
                "{ALGORITHM}\n{}\n{}\n{}",
                p.amz_date,
                scope_str,
                sha256_hex(creq.as_bytes())
            );
            let sig = hmac(&key, sts.as_bytes());
            ok |= sig.ct_eq(&provided);
        }
        if !bool::from(ok) {
            return Err(SigError::SignatureMismatch);
        }
        Ok(Verified {
            access_key: scope.access_key.to_string(),
            payload: payload_hash(p, key, scope_str)?,
            presigned: p.presigned,
        })
    }
}

/// How the body of a verified request is covered.
fn payload_hash(p: &Parsed<'_>, key: [u8; 32], scope: String) -> Result<PayloadHash, SigError> {
    Ok(if p.payload == UNSIGNED_PAYLOAD {
        PayloadHash::Unsigned
    } else if p.payload == "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
        || p.payload == "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"
    {
        PayloadHash::StreamingSigned(crate::chunked::ChunkSigning {
            key,
            amz_date: p.amz_date.clone(),
            scope,
            seed: p.signature.to_ascii_lowercase(),
        })
    } else if p.payload == "STREAMING-UNSIGNED-PAYLOAD-TRAILER" {
        PayloadHash::StreamingUnsigned
    } else if p.payload.starts_with("STREAMING-") {
        PayloadHash::Streaming(p.payload.clone())
    } else {
        let h = hex::decode(&p.payload).map_err(|_| SigError::Malformed("x-amz-content-sha256"))?;
        PayloadHash::Sha256(
            h.try_into()
                .map_err(|_| SigError::Malformed("x-amz-content-sha256"))?,
        )
    })
}

/// Verifies a SigV4-signed request. `secret_for` looks up the secret of an access key.
pub fn verify<'s>(
    req: SigRequest<'_>,
    secret_for: impl Fn(&str) -> Option<&'s str>,
    now: DateTime<Utc>,
    skew: chrono::Duration,
) -> Result<Verified, SigError> {
    let signed = prepare(req, now, skew)?;
    let secret = secret_for(signed.access_key()).ok_or(SigError::InvalidAccessKey)?;
    signed.verify(secret)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    const AK: &str = "AKIAIOSFODNN7EXAMPLE";
    const SK: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

    fn lookup(ak: &str) -> Option<&'static str> {
        (ak == AK).then_some(SK)
    }

    fn at(s: &str) -> DateTime<Utc> {
        let n = NaiveDateTime::parse_from_str(s, "%Y%m%dT%H%M%SZ").unwrap();
        Utc.from_utc_datetime(&n)
    }

    /// The "GET Object" example of the S3 SigV4 documentation.
    fn doc_header_request() -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("host", "examplebucket.s3.amazonaws.com".parse().unwrap());
        h.insert("range", "bytes=0-9".parse().unwrap());
        h.insert(
            "x-amz-content-sha256",
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
                .parse()
                .unwrap(),
        );
        h.insert("x-amz-date", "20130524T000000Z".parse().unwrap());
        h.insert("authorization", "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41".parse().unwrap());
        h
    }

    #[test]
    fn documented_header_example_verifies() {
        let h = doc_header_request();
        let req = SigRequest {
            method: "GET",
            path: "/test.txt",
            query: None,
            headers: &h,
        };
        let v = verify(
            req,
            lookup,
            at("20130524T000500Z"),
            chrono::Duration::minutes(15),
        )
        .unwrap();
        assert_eq!(v.access_key, AK);
        assert!(!v.presigned);
        // Outside the skew window.
        assert_eq!(
            verify(
                req,
                lookup,
                at("20130525T000000Z"),
                chrono::Duration::minutes(15)
            ),
            Err(SigError::TimeSkewed)
        );
        // Another method changes the canonical request.
        let put = SigRequest {
            method: "PUT",
            ..req
        };
        assert_eq!(
            verify(
                put,
                lookup,
                at("20130524T000000Z"),
                chrono::Duration::minutes(15)
            ),
            Err(SigError::SignatureMismatch)
        );
        assert_eq!(
            verify(
                req,
                |_| None,
                at("20130524T000000Z"),
                chrono::Duration::minutes(15)
            ),
            Err(SigError::InvalidAccessKey)
        );
    }

    #[test]
    fn documented_presigned_example_verifies_and_expires() {
        let mut h = HeaderMap::new();
        h.insert("host", "examplebucket.s3.amazonaws.com".parse().unwrap());
        let q = "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host&X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404";
        let req = SigRequest {
            method: "GET",
            path: "/test.txt",
            query: Some(q),
            headers: &h,
        };
        assert!(is_sigv4(&h, Some(q)));
        let skew = chrono::Duration::minutes(15);
        let v = verify(req, lookup, at("20130524T120000Z"), skew).unwrap();
        assert!(v.presigned);
        assert_eq!(v.payload, PayloadHash::Unsigned);
        assert_eq!(
            verify(req, lookup, at("20130525T000001Z"), skew),
            Err(SigError::Expired)
        );
        assert_eq!(
            verify(req, lookup, at("20130523T000000Z"), skew),
            Err(SigError::TimeSkewed)
        );
        let tampered = q.replace("d404", "d405");
        let req2 = SigRequest {
            query: Some(&tampered),
            ..req
        };
        assert_eq!(
            verify(req2, lookup, at("20130524T120000Z"), skew),
            Err(SigError::SignatureMismatch)
        );
        let longer = q.replace("86400", "86401");
        let req3 = SigRequest {
            query: Some(&longer),
            ..req
        };
        assert_eq!(
            verify(req3, lookup, at("20130524T120000Z"), skew),
            Err(SigError::SignatureMismatch)
        );
    }

    #[test]
    fn malformed_inputs_are_errors_not_panics() {
        let skew = chrono::Duration::minutes(15);
        for auth in [
            "AWS4-HMAC-SHA256",
            "AWS4-HMAC-SHA256 Credential=/,SignedHeaders=,Signature=",
            "AWS4-HMAC-SHA256 Credential=a/b/c/d/e,SignedHeaders=host,Signature=zz",
            "AWS4-HMAC-SHA1 Credential=x",
        ] {
            let mut h = HeaderMap::new();
            h.insert("host", "h".parse().unwrap());
            h.insert("x-amz-date", "20130524T000000Z".parse().unwrap());
            h.insert("x-amz-content-sha256", "UNSIGNED-PAYLOAD".parse().unwrap());
            h.insert("authorization", auth.parse().unwrap());
            let req = SigRequest {
                method: "GET",
                path: "/%zz/%",
                query: Some("a=%&&=b&X-Amz-Signature"),
                headers: &h,
            };
            assert!(verify(req, lookup, at("20130524T000000Z"), skew).is_err());
        }
    }

    #[test]
    fn canonical_uri_reencodes() {
        assert_eq!(canonical_uris("/b/a%20b"), vec!["/b/a%20b".to_string()]);
        assert_eq!(
            canonical_uris("/b/a+b(1)"),
            vec!["/b/a%2Bb%281%29".to_string(), "/b/a+b(1)".to_string()]
        );
    }
}
