//! Decoding of `aws-chunked` request bodies (`x-amz-content-sha256: STREAMING-...`), as sent
//! by AWS SDKs and the AWS CLI for uploads with trailing checksums or per-chunk signatures:
//!
//! ```text
//! <hex size>[;chunk-signature=<sig>]\r\n<data>\r\n ... 0[;chunk-signature=<sig>]\r\n
//! [<trailer>:<value>\r\n ...]\r\n
//! ```
//!
//! With `STREAMING-AWS4-HMAC-SHA256-PAYLOAD[-TRAILER]` every chunk signature is verified
//! against the chain seeded by the request signature; a mismatch fails the upload, which is
//! then discarded like any other incomplete upload. Trailing headers (checksums) are read and
//! ignored: the store computes its own MD5.

use bytes::{Buf, Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::sigv4::hmac;

/// Longest chunk header or trailer line accepted.
const MAX_LINE: usize = 4096;
/// Largest chunk accepted (S3 chunks are typically 64 KiB).
const MAX_CHUNK: usize = 16 << 20;
const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// What is needed to verify chunk signatures.
#[derive(Clone, PartialEq, Eq)]
pub struct ChunkSigning {
    /// The derived SigV4 signing key.
    pub key: [u8; 32],
    /// The request's `x-amz-date`.
    pub amz_date: String,
    /// The credential scope (`date/region/s3/aws4_request`).
    pub scope: String,
    /// The request signature (hex), which seeds the chain.
    pub seed: String,
}

impl std::fmt::Debug for ChunkSigning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChunkSigning")
            .field("amz_date", &self.amz_date)
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

/// Why an aws-chunked body was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChunkError {
    /// The framing is malformed.
    #[error("malformed aws-chunked body: {0}")]
    Malformed(&'static str),
    /// A chunk signature does not match.
    #[error("aws-chunked chunk signature does not match")]
    Signature,
    /// The body ended early.
    #[error("aws-chunked body ended early")]
    Truncated,
    /// The underlying body failed.
    #[error("{0}")]
    Body(String),
}

enum Phase {
    Header,
    Data {
        remaining: usize,
        sig: Option<[u8; 32]>,
        hasher: Option<Sha256>,
    },
    DataEnd {
        sig: Option<[u8; 32]>,
        digest: Option<String>,
    },
    Trailer,
    Done,
}

struct Decoder<S> {
    inner: S,
    buf: BytesMut,
    phase: Phase,
    signing: Option<ChunkSigning>,
    prev: String,
}

impl<S, E> Decoder<S>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    async fn fill(&mut self) -> Result<(), ChunkError> {
        match self.inner.next().await {
            Some(Ok(b)) => {
                self.buf.extend_from_slice(&b);
                Ok(())
            }
            Some(Err(e)) => Err(ChunkError::Body(e.to_string())),
            None => Err(ChunkError::Truncated),
        }
    }

    async fn line(&mut self) -> Result<Bytes, ChunkError> {
        loop {
            if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line = self.buf.split_to(i).freeze();
                self.buf.advance(2);
                return Ok(line);
            }
            if self.buf.len() > MAX_LINE {
                return Err(ChunkError::Malformed("line too long"));
            }
            self.fill().await?;
        }
    }

    fn verify(&mut self, sig: Option<[u8; 32]>, digest: &str) -> Result<(), ChunkError> {
        let Some(s) = &self.signing else {
            return Ok(());
        };
        let sig = sig.ok_or(ChunkError::Malformed("missing chunk-signature"))?;
        let sts = format!(
            "AWS4-HMAC-SHA256-PAYLOAD\n{}\n{}\n{}\n{EMPTY_SHA256}\n{digest}",
            s.amz_date, s.scope, self.prev
        );
        let expected = hmac(&s.key, sts.as_bytes());
        if !bool::from(expected.ct_eq(&sig)) {
            return Err(ChunkError::Signature);
        }
        self.prev = hex::encode(sig);
        Ok(())
    }

    async fn next_chunk(&mut self) -> Option<Result<Bytes, ChunkError>> {
        loop {
            if matches!(self.phase, Phase::Done) {
                return None;
            }
            let step: Result<Option<Bytes>, ChunkError> = async {
                match std::mem::replace(&mut self.phase, Phase::Done) {
                    Phase::Header => {
                        let line = self.line().await?;
                        let line = std::str::from_utf8(&line)
                            .map_err(|_| ChunkError::Malformed("chunk header is not text"))?;
                        let (size, ext) = line.split_once(';').unwrap_or((line, ""));
                        let size = usize::from_str_radix(size.trim(), 16)
                            .map_err(|_| ChunkError::Malformed("chunk size"))?;
                        if size > MAX_CHUNK {
                            return Err(ChunkError::Malformed("chunk too large"));
                        }
                        let sig = ext
                            .split(';')
                            .find_map(|p| p.trim().strip_prefix("chunk-signature="))
                            .map(|h| {
                                hex::decode(h)
                                    .ok()
                                    .and_then(|v| <[u8; 32]>::try_from(v).ok())
                                    .ok_or(ChunkError::Signature)
                            })
                            .transpose()?;
                        if size == 0 {
                            self.verify(sig, EMPTY_SHA256)?;
                            self.phase = Phase::Trailer;
                        } else {
                            self.phase = Phase::Data {
                                remaining: size,
                                sig,
                                hasher: self.signing.is_some().then(Sha256::new),
                            };
                        }
                        Ok(None)
                    }
                    Phase::Data {
                        remaining,
                        sig,
                        mut hasher,
                    } => {
                        if self.buf.is_empty() {
                            self.phase = Phase::Data {
                                remaining,
                                sig,
                                hasher,
                            };
                            self.fill().await?;
                            return Ok(None);
                        }
                        let n = remaining.min(self.buf.len());
                        let data = self.buf.split_to(n).freeze();
                        if let Some(h) = hasher.as_mut() {
                            h.update(&data);
                        }
                        self.phase = if remaining == n {
                            Phase::DataEnd {
                                sig,
                                digest: hasher.map(|h| hex::encode(h.finalize())),
                            }
                        } else {
                            Phase::Data {
                                remaining: remaining - n,
                                sig,
                                hasher,
                            }
                        };
                        Ok(Some(data))
                    }
                    Phase::DataEnd { sig, digest } => {
                        let line = self.line().await?;
                        if !line.is_empty() {
                            return Err(ChunkError::Malformed("chunk data longer than its size"));
                        }
                        if let Some(d) = digest {
                            self.verify(sig, &d)?;
                        }
                        self.phase = Phase::Header;
                        Ok(None)
                    }
                    Phase::Trailer => {
                        // Trailing headers (checksums, trailer signature) up to an empty line.
                        // Some encoders end the body right after the final chunk.
                        loop {
                            if self.buf.is_empty() {
                                match self.inner.next().await {
                                    Some(Ok(b)) => self.buf.extend_from_slice(&b),
                                    Some(Err(e)) => return Err(ChunkError::Body(e.to_string())),
                                    None => break,
                                }
                                continue;
                            }
                            if self.line().await?.is_empty() {
                                break;
                            }
                        }
                        Ok(None)
                    }
                    Phase::Done => Ok(None),
                }
            }
            .await;
            match step {
                Ok(Some(b)) => return Some(Ok(b)),
                Ok(None) => {
                    if matches!(self.phase, Phase::Done) {
                        return None;
                    }
                }
                Err(e) => {
                    self.phase = Phase::Done;
                    return Some(Err(e));
                }
            }
        }
    }
}

/// Decodes an aws-chunked body; `signing` enables chunk-signature verification.
pub fn decode<S, E>(
    inner: S,
    signing: Option<ChunkSigning>,
) -> impl Stream<Item = Result<Bytes, ChunkError>> + Unpin
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let prev = signing.as_ref().map(|s| s.seed.clone()).unwrap_or_default();
    let decoder = Decoder {
        inner,
        buf: BytesMut::new(),
        phase: Phase::Header,
        signing,
        prev,
    };
    Box::pin(futures_util::stream::unfold(decoder, |mut d| async move {
        d.next_chunk().await.map(|item| (item, d))
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::stream;

    async fn collect(
        parts: Vec<&'static [u8]>,
        signing: Option<ChunkSigning>,
    ) -> Result<Vec<u8>, ChunkError> {
        let s = stream::iter(
            parts
                .into_iter()
                .map(|p| Ok::<_, String>(Bytes::from_static(p))),
        );
        let mut d = decode(s, signing);
        let mut out = Vec::new();
        while let Some(c) = d.next().await {
            out.extend_from_slice(&c?);
        }
        Ok(out)
    }

    #[tokio::test]
    async fn unsigned_with_trailer_split_anywhere() {
        let body: &'static [u8] =
            b"5\r\nhello\r\n6\r\n world\r\n0\r\nx-amz-checksum-crc32:AAAAAA==\r\n\r\n";
        for cut in 0..body.len() {
            let (a, b) = body.split_at(cut);
            assert_eq!(collect(vec![a, b], None).await.unwrap(), b"hello world");
        }
        assert_eq!(collect(vec![b"0\r\n"], None).await.unwrap(), b"");
    }

    #[tokio::test]
    async fn malformed_and_truncated_are_errors() {
        assert_eq!(
            collect(vec![b"5\r\nhel"], None).await,
            Err(ChunkError::Truncated)
        );
        assert!(matches!(
            collect(vec![b"zz\r\n"], None).await,
            Err(ChunkError::Malformed(_))
        ));
        assert!(matches!(
            collect(vec![b"2\r\nabc\r\n0\r\n\r\n"], None).await,
            Err(ChunkError::Malformed(_))
        ));
    }

    /// The chunked-upload example of the S3 SigV4 documentation (66560 bytes of `a`).
    #[tokio::test]
    async fn documented_signed_chunks_verify() {
        let key = crate::sigv4::signing_key(
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            "20130524",
            "us-east-1",
            "s3",
        );
        let signing = ChunkSigning {
            key,
            amz_date: "20130524T000000Z".into(),
            scope: "20130524/us-east-1/s3/aws4_request".into(),
            seed: "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9".into(),
        };
        let mut body = Vec::new();
        body.extend_from_slice(b"10000;chunk-signature=ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648\r\n");
        body.extend_from_slice(&[b'a'; 65536]);
        body.extend_from_slice(b"\r\n400;chunk-signature=0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497\r\n");
        body.extend_from_slice(&[b'a'; 1024]);
        body.extend_from_slice(b"\r\n0;chunk-signature=b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9\r\n\r\n");
        let body: &'static [u8] = Box::leak(body.into_boxed_slice());
        let out = collect(vec![&body[..1000], &body[1000..]], Some(signing.clone()))
            .await
            .unwrap();
        assert_eq!(out.len(), 66560);
        // One flipped data byte breaks the chain.
        let mut bad = body.to_vec();
        bad[200] = b'b';
        let bad: &'static [u8] = Box::leak(bad.into_boxed_slice());
        assert_eq!(
            collect(vec![bad], Some(signing)).await,
            Err(ChunkError::Signature)
        );
    }
}
