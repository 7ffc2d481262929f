//! Errors returned to clients: S3-style XML `<Error>` documents with the status codes S3 uses,
//! except that every authentication failure is `401 Unauthorized` (Property 21). An
//! authenticated runner outside its egg's prefix gets `403 AccessDenied`; a credential that
//! cannot be checked because MotherGoose does not answer gets `503` with `Retry-After`.

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Empty, Full};

use crate::fleet::FleetError;
use crate::sigv4::SigError;
use crate::store::StoreError;

/// Error type of response bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// The body type of every response Rift sends.
pub type Body = UnsyncBoxBody<Bytes, BoxError>;

/// A body holding `data`.
pub fn full(data: impl Into<Bytes>) -> Body {
    Full::new(data.into())
        .map_err(|e| match e {})
        .boxed_unsync()
}

/// An empty body.
pub fn empty() -> Body {
    Empty::<Bytes>::new().map_err(|e| match e {}).boxed_unsync()
}

/// An error answered to a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// S3 error code (`NoSuchKey`, `AccessDenied`, ...).
    pub code: &'static str,
    /// Human-readable message.
    pub message: String,
    /// The resource concerned (`/bucket/key`).
    pub resource: Option<String>,
    /// Seconds after which the client may retry (rate limiting).
    pub retry_after: Option<u64>,
}

impl ApiError {
    /// A new error.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            resource: None,
            retry_after: None,
        }
    }

    /// Sets the resource.
    pub fn with_resource(mut self, resource: impl Into<String>) -> Self {
        self.resource = Some(resource.into());
        self
    }

    /// 401 for a request without credentials.
    pub fn unauthenticated() -> Self {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "AccessDenied",
            "Access Denied: missing credentials",
        )
    }

    /// 401 for an invalid bearer token.
    pub fn bad_token() -> Self {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "AccessDenied",
            "Access Denied: invalid token",
        )
    }

    /// 403 for an authenticated request outside what its credential may use.
    pub fn access_denied(resource: impl Into<String>) -> Self {
        ApiError::new(StatusCode::FORBIDDEN, "AccessDenied", "Access Denied")
            .with_resource(resource)
    }

    /// 429 while a client is locked out after repeated auth failures.
    pub fn rate_limited(retry_after_secs: u64) -> Self {
        let mut e = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "SlowDown",
            "Too many authentication failures; retry later",
        );
        e.retry_after = Some(retry_after_secs.max(1));
        e
    }

    /// 404 for a missing object.
    pub fn no_such_key(resource: &str) -> Self {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "NoSuchKey",
            "The specified key does not exist.",
        )
        .with_resource(resource)
    }

    /// 501 for an S3 operation Rift does not implement.
    pub fn not_implemented(what: &str) -> Self {
        ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            "NotImplemented",
            format!("{what} is not implemented by Rift"),
        )
    }

    /// 400 for a malformed request.
    pub fn invalid_argument(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, "InvalidArgument", message)
    }

    /// 500.
    pub fn internal(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", message)
    }

    /// Renders the error; `head` omits the body (HEAD requests).
    pub fn into_response(self, head: bool, request_id: &str) -> Response<Body> {
        let mut xml = String::with_capacity(256);
        xml.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>");
        xml.push_str(self.code);
        xml.push_str("</Code><Message>");
        xml.push_str(&xml_escape(&self.message));
        xml.push_str("</Message>");
        if let Some(r) = &self.resource {
            xml.push_str("<Resource>");
            xml.push_str(&xml_escape(r));
            xml.push_str("</Resource>");
        }
        xml.push_str("<RequestId>");
        xml.push_str(request_id);
        xml.push_str("</RequestId></Error>");
        let len = xml.len();
        let mut resp = Response::new(if head { empty() } else { full(xml) });
        *resp.status_mut() = self.status;
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/xml"),
        );
        if head {
            h.insert(header::CONTENT_LENGTH, HeaderValue::from(0));
        } else {
            h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
        }
        if let Ok(v) = HeaderValue::from_str(request_id) {
            h.insert("x-amz-request-id", v);
        }
        if self.status == StatusCode::UNAUTHORIZED {
            h.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"rift\""),
            );
        }
        if let Some(s) = self.retry_after {
            h.insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        resp
    }
}

impl From<SigError> for ApiError {
    fn from(e: SigError) -> Self {
        let code = match &e {
            SigError::Malformed(_) => "AuthorizationHeaderMalformed",
            SigError::UnsupportedAlgorithm => "AuthorizationHeaderMalformed",
            SigError::InvalidAccessKey => "InvalidAccessKeyId",
            SigError::SignatureMismatch => "SignatureDoesNotMatch",
            SigError::Expired => "AccessDenied",
            SigError::TimeSkewed => "RequestTimeTooSkewed",
        };
        let message = match &e {
            SigError::Expired => "Request has expired".to_string(),
            other => other.to_string(),
        };
        ApiError::new(StatusCode::UNAUTHORIZED, code, message)
    }
}

impl From<FleetError> for ApiError {
    fn from(e: FleetError) -> Self {
        tracing::debug!(error = %e, "runner credential not verified");
        let mut r = match e {
            FleetError::Throttled => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "SlowDown",
                "Please reduce your request rate.",
            ),
            _ => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceUnavailable",
                "Rift cannot verify runner credentials now; retry later",
            ),
        };
        r.retry_after = Some(1);
        r
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match &e {
            StoreError::TooLarge { .. } => ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "EntityTooLarge",
                e.to_string(),
            ),
            StoreError::Incomplete { .. } | StoreError::Body(_) => {
                ApiError::new(StatusCode::BAD_REQUEST, "IncompleteBody", e.to_string())
            }
            StoreError::TooLong { .. } => {
                ApiError::new(StatusCode::BAD_REQUEST, "InvalidRequest", e.to_string())
            }
            StoreError::Sha256Mismatch => ApiError::new(
                StatusCode::BAD_REQUEST,
                "XAmzContentSHA256Mismatch",
                e.to_string(),
            ),
            StoreError::Md5Mismatch => {
                ApiError::new(StatusCode::BAD_REQUEST, "BadDigest", e.to_string())
            }
            StoreError::InvalidKey(_) => {
                ApiError::new(StatusCode::BAD_REQUEST, "KeyTooLongError", e.to_string())
            }
            StoreError::Io { source, .. } if out_of_space(source) => {
                tracing::warn!(error = %e, "upload refused: no space");
                ApiError::new(
                    StatusCode::INSUFFICIENT_STORAGE,
                    "InsufficientStorage",
                    "Rift has no space left for this upload; nothing of it was stored",
                )
            }
            StoreError::Io { .. } | StoreError::Task(_) => {
                tracing::error!(error = %e, "store error");
                ApiError::internal("internal storage error")
            }
        }
    }
}

/// A write failed for want of space: the disk is full, a quota is reached, or the file
/// size limit (RLIMIT_FSIZE) is exceeded.
fn out_of_space(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::{FileTooLarge, QuotaExceeded, StorageFull};
    matches!(e.kind(), StorageFull | QuotaExceeded | FileTooLarge)
}

/// Escapes text for XML element content and attribute values.
pub fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // Characters XML 1.0 cannot carry are replaced.
            c if (c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r') => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape() {
        assert_eq!(
            xml_escape("a<b>&\"'\u{1}"),
            "a&lt;b&gt;&amp;&quot;&apos;\u{FFFD}"
        );
    }

    #[test]
    fn sig_errors_are_401() {
        for e in [
            SigError::Expired,
            SigError::SignatureMismatch,
            SigError::InvalidAccessKey,
        ] {
            assert_eq!(ApiError::from(e).status, StatusCode::UNAUTHORIZED);
        }
    }
}
