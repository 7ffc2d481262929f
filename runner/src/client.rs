//! The MotherGoose client: the runner's configuration, heartbeats and job results, each
//! with the runner's own credential (`Authorization: Bearer …`).
//!
//! HTTPS with TLS 1.3 at least (Property 35), through rustls, trusting the public roots
//! and the CA of `GOSLING_MOTHERGOOSE_CA` when given. Plain `http://` is accepted only
//! for a loopback address (the local provider on the same machine).

use gosling_api::{Heartbeat, HeartbeatReply, JobResult, RunnerConfig};
use std::future::Future;
use std::time::Duration;
use url::{Host, Url};

/// Why a call to MotherGoose (or a check of its address) failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Plain HTTP to a host that is not this machine.
    #[error(
        "`{url}` is plain HTTP to a host that is not this machine; MotherGoose is reached over \
         HTTPS (TLS 1.3) — http:// is accepted only for a loopback address"
    )]
    PlainHttp {
        /// The URL.
        url: String,
    },
    /// Not an http(s) URL.
    #[error("`{url}` is not a usable URL: {reason}")]
    BadUrl {
        /// The URL.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The CA given is not PEM.
    #[error("the MotherGoose CA is not a usable PEM certificate: {0}")]
    BadCa(String),
    /// The HTTP client could not be built.
    #[error("building the HTTPS client: {0}")]
    Client(String),
    /// 401: the credential is wrong, or the runner is terminated.
    #[error("MotherGoose refused the runner's credential ({what}, 401): {message}")]
    Unauthorized {
        /// The call.
        what: &'static str,
        /// MotherGoose's explanation.
        message: String,
    },
    /// Any other error status.
    #[error("MotherGoose answered {status} to {what}: {message}")]
    Status {
        /// The call.
        what: &'static str,
        /// The status.
        status: u16,
        /// MotherGoose's explanation.
        message: String,
    },
    /// No answer (connection, TLS or timeout).
    #[error("MotherGoose could not be reached ({what}): {message}")]
    Unreachable {
        /// The call.
        what: &'static str,
        /// The error.
        message: String,
    },
    /// An answer of the wrong shape.
    #[error("MotherGoose's answer to {what} is not what the API documents: {message}")]
    Decode {
        /// The call.
        what: &'static str,
        /// The error.
        message: String,
    },
}

impl ApiError {
    /// Whether trying again later may help (MotherGoose down, overloaded or unreachable).
    pub fn is_transient(&self) -> bool {
        match self {
            ApiError::Unreachable { .. } => true,
            ApiError::Status { status, .. } => *status == 429 || *status >= 500,
            _ => false,
        }
    }
}

/// Checks that `raw` is `https://…`, or `http://…` to a loopback address.
pub fn check_url(raw: &str) -> Result<Url, ApiError> {
    let url = Url::parse(raw).map_err(|e| ApiError::BadUrl {
        url: raw.to_string(),
        reason: e.to_string(),
    })?;
    match url.scheme() {
        "https" if url.host().is_some() => Ok(url),
        "http" if is_loopback(url.host()) => Ok(url),
        "http" => Err(ApiError::PlainHttp {
            url: raw.to_string(),
        }),
        _ => Err(ApiError::BadUrl {
            url: raw.to_string(),
            reason: "it must be https:// (or http:// to a loopback address)".into(),
        }),
    }
}

fn is_loopback(host: Option<Host<&str>>) -> bool {
    match host {
        Some(Host::Ipv4(a)) => a.is_loopback(),
        Some(Host::Ipv6(a)) => a.is_loopback(),
        Some(Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

/// An HTTP client for `url` (already checked by [`check_url`]): TLS 1.3 at least, the
/// public roots plus the certificates of `ca_pem`, no redirects, bounded waits.
pub fn http_client(url: &Url, ca_pem: Option<&str>) -> Result<reqwest::Client, ApiError> {
    let mut builder = reqwest::Client::builder()
        .use_rustls_tls()
        .min_tls_version(reqwest::tls::Version::TLS_1_3)
        .https_only(url.scheme() == "https")
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(30))
        .user_agent(concat!("gosling-runner/", env!("CARGO_PKG_VERSION")));
    if let Some(pem) = ca_pem {
        let certs = reqwest::Certificate::from_pem_bundle(pem.as_bytes())
            .map_err(|e| ApiError::BadCa(e.to_string()))?;
        if certs.is_empty() {
            return Err(ApiError::BadCa("no certificate in it".into()));
        }
        for cert in certs {
            builder = builder.add_root_certificate(cert);
        }
    }
    builder.build().map_err(|e| ApiError::Client(e.to_string()))
}

/// What the heartbeat loop needs from MotherGoose (a trait so that its timing is tested
/// with a stand-in and paused time).
pub trait HeartbeatSink: Send + Sync + 'static {
    /// `POST /runners/{id}/heartbeat`.
    fn heartbeat(
        &self,
        hb: &Heartbeat,
    ) -> impl Future<Output = Result<HeartbeatReply, ApiError>> + Send;
}

/// MotherGoose as one runner sees it.
#[derive(Clone)]
pub struct MotherGoose {
    http: reqwest::Client,
    base: Url,
    runner_id: String,
    credential: String,
}

impl std::fmt::Debug for MotherGoose {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MotherGoose")
            .field("base", &self.base.as_str())
            .field("runner_id", &self.runner_id)
            .finish_non_exhaustive()
    }
}

impl MotherGoose {
    /// A client for runner `runner_id` at `base_url` with its `credential`.
    pub fn new(
        base_url: &str,
        runner_id: &str,
        credential: &str,
        ca_pem: Option<&str>,
    ) -> Result<MotherGoose, ApiError> {
        let base = check_url(base_url)?;
        let http = http_client(&base, ca_pem)?;
        Ok(MotherGoose {
            http,
            base,
            runner_id: runner_id.to_string(),
            credential: credential.to_string(),
        })
    }

    fn url(&self, last: &str) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut segments) = url.path_segments_mut() {
            segments
                .pop_if_empty()
                .extend(["runners", &self.runner_id, last]);
        }
        url
    }

    async fn call(
        &self,
        what: &'static str,
        req: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, ApiError> {
        let resp = req
            .bearer_auth(&self.credential)
            .send()
            .await
            .map_err(|e| ApiError::Unreachable {
                what,
                message: error_chain(&e),
            })?;
        let status = resp.status().as_u16();
        if (200..300).contains(&status) {
            return Ok(resp);
        }
        let text = resp.text().await.unwrap_or_default();
        let message = serde_json::from_str::<gosling_api::ApiError>(&text)
            .map(|e| e.error)
            .unwrap_or(text)
            .chars()
            .take(300)
            .collect();
        Err(match status {
            401 => ApiError::Unauthorized { what, message },
            _ => ApiError::Status {
                what,
                status,
                message,
            },
        })
    }

    async fn json<T: serde::de::DeserializeOwned>(
        what: &'static str,
        resp: reqwest::Response,
    ) -> Result<T, ApiError> {
        let bytes = resp.bytes().await.map_err(|e| ApiError::Unreachable {
            what,
            message: error_chain(&e),
        })?;
        serde_json::from_slice(&bytes).map_err(|e| ApiError::Decode {
            what,
            message: e.to_string(),
        })
    }

    /// `GET /runners/{id}/config`.
    pub async fn config(&self) -> Result<RunnerConfig, ApiError> {
        const WHAT: &str = "GET /runners/{id}/config";
        let resp = self.call(WHAT, self.http.get(self.url("config"))).await?;
        Self::json(WHAT, resp).await
    }

    /// `POST /runners/{id}/job-result`.
    pub async fn job_result(&self, result: &JobResult) -> Result<(), ApiError> {
        const WHAT: &str = "POST /runners/{id}/job-result";
        self.call(WHAT, self.http.post(self.url("job-result")).json(result))
            .await
            .map(drop)
    }
}

impl HeartbeatSink for MotherGoose {
    async fn heartbeat(&self, hb: &Heartbeat) -> Result<HeartbeatReply, ApiError> {
        const WHAT: &str = "POST /runners/{id}/heartbeat";
        let resp = self
            .call(WHAT, self.http.post(self.url("heartbeat")).json(hb))
            .await?;
        Self::json(WHAT, resp).await
    }
}

/// An error with its causes (reqwest hides the TLS or connection reason in its source).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_only_to_loopback() {
        for ok in [
            "https://mothergoose.example.com",
            "http://127.0.0.1:8080",
            "http://127.8.0.1",
            "http://[::1]:9000/",
            "http://localhost:3000",
        ] {
            assert!(check_url(ok).is_ok(), "{ok}");
        }
        for refused in ["http://10.0.0.5:8080", "http://mothergoose.example.com"] {
            let e = check_url(refused).unwrap_err();
            assert!(matches!(e, ApiError::PlainHttp { .. }), "{refused}: {e}");
            assert!(e.to_string().contains("loopback"), "{e}");
        }
        for bad in ["ftp://x", "not a url", "file:///etc/passwd"] {
            assert!(
                matches!(check_url(bad), Err(ApiError::BadUrl { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn urls_encode_the_runner_id_as_one_segment() {
        let mg = MotherGoose::new("http://127.0.0.1:1/api/", "r/../x", "c", None).unwrap();
        assert_eq!(
            mg.url("heartbeat").as_str(),
            "http://127.0.0.1:1/api/runners/r%2F..%2Fx/heartbeat"
        );
        assert!(
            !format!("{mg:?}").contains("\"c\""),
            "no credential in Debug"
        );
    }

    #[test]
    fn a_ca_that_is_not_pem_is_refused() {
        let e = MotherGoose::new("https://x.example", "r", "c", Some("garbage")).unwrap_err();
        assert!(matches!(e, ApiError::BadCa(_)), "{e}");
    }
}
