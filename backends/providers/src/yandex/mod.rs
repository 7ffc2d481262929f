//! Yandex Cloud over its REST APIs (reqwest, rustls): VM runners on Compute
//! ([`ComputeProvider`]) and serverless runners on Serverless Containers
//! ([`ServerlessProvider`]).
//!
//! Every call carries `Authorization: Bearer IAM_TOKEN` ([`TokenSource`]: a service
//! account's authorized key exchanged for a token with a PS256 JWT, or the metadata
//! service). Mutating calls return an Operation, polled at the operation endpoint with
//! backoff until it is done; its error is a gRPC status, mapped by
//! [`crate::errors::yandex_is_retryable`].

mod auth;
mod compute;
mod serverless;

pub use auth::{ServiceAccountKey, TokenSource, IAM_AUDIENCE};
pub use compute::{instance_request, yandex_name, ComputeProvider};
pub use serverless::{container_request, revision_request, ServerlessProvider};

use crate::errors::{grpc, grpc_code_of_http, yandex_is_retryable};
use crate::settings::YandexEndpoints;
use gosling_fleet::ProviderError;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

/// The API bases in use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoints {
    /// IAM (token exchange).
    pub iam: String,
    /// Compute.
    pub compute: String,
    /// Serverless Containers.
    pub serverless_containers: String,
    /// Operations.
    pub operation: String,
    /// Metadata service.
    pub metadata: String,
}

impl From<&YandexEndpoints> for Endpoints {
    fn from(e: &YandexEndpoints) -> Self {
        let t = |s: &str| s.trim_end_matches('/').to_string();
        Endpoints {
            iam: t(&e.iam),
            compute: t(&e.compute),
            serverless_containers: t(&e.serverless_containers),
            operation: t(&e.operation),
            metadata: t(&e.metadata),
        }
    }
}

/// A failed API call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiError {
    /// The API (or an operation) answered with a gRPC status.
    Status {
        /// gRPC code.
        code: i64,
        /// HTTP status, when the call itself failed.
        http: Option<u16>,
        /// The message.
        message: String,
    },
    /// No answer (connection, timeout) or an unreadable one.
    Network(String),
}

impl ApiError {
    /// The gRPC code, if any.
    pub fn code(&self) -> Option<i64> {
        match self {
            ApiError::Status { code, .. } => Some(*code),
            ApiError::Network(_) => None,
        }
    }

    /// As a provider error, retryable or not by its code.
    pub fn into_provider(self, provider: &str, what: &str) -> ProviderError {
        match self {
            ApiError::Status { code, message, .. } => {
                let text = format!("{what}: {message} (gRPC code {code})");
                if yandex_is_retryable(code, &message) {
                    ProviderError::retryable(provider, text)
                } else {
                    ProviderError::permanent(provider, text)
                }
            }
            ApiError::Network(m) => ProviderError::retryable(provider, format!("{what}: {m}")),
        }
    }
}

/// How operations are polled: the first wait, doubled each time up to the longest.
#[derive(Clone, Copy, Debug)]
pub struct Poll {
    /// First wait.
    pub initial: Duration,
    /// Longest wait between polls.
    pub max: Duration,
    /// Give up after.
    pub timeout: Duration,
}

impl Default for Poll {
    fn default() -> Self {
        Poll {
            initial: Duration::from_millis(500),
            max: Duration::from_secs(5),
            timeout: Duration::from_secs(600),
        }
    }
}

/// An authenticated REST client with operation polling.
#[derive(Clone, Debug)]
pub struct Api {
    http: reqwest::Client,
    tokens: Arc<TokenSource>,
    /// The API bases.
    pub endpoints: Endpoints,
    /// Operation polling.
    pub poll: Poll,
}

fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap_or_default()
}

impl Api {
    /// A client over `endpoints` authenticated by `tokens`.
    pub fn new(endpoints: Endpoints, tokens: Arc<TokenSource>, poll: Poll) -> Api {
        Api {
            http: http_client(),
            tokens,
            endpoints,
            poll,
        }
    }

    /// Sends a request with the IAM token; on 401 the token is renewed and the call sent
    /// once more. The JSON answer, or the error it carries.
    pub async fn call(
        &self,
        method: reqwest::Method,
        url: &str,
        body: Option<&Value>,
    ) -> Result<Value, ApiError> {
        self.call_with(method, url, body, &[]).await
    }

    /// [`Api::call`] with extra headers.
    pub async fn call_with(
        &self,
        method: reqwest::Method,
        url: &str,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> Result<Value, ApiError> {
        for attempt in 0..2 {
            let token = self.tokens.token(&self.http).await?;
            let mut req = self.http.request(method.clone(), url).bearer_auth(&token);
            for (k, v) in headers {
                req = req.header(*k, *v);
            }
            if let Some(b) = body {
                req = req.json(b);
            }
            let resp = req
                .send()
                .await
                .map_err(|e| ApiError::Network(crate::errors::describe(&e)))?;
            let status = resp.status().as_u16();
            let text = resp
                .text()
                .await
                .map_err(|e| ApiError::Network(crate::errors::describe(&e)))?;
            if status == 401 && attempt == 0 {
                self.tokens.invalidate().await;
                continue;
            }
            return parse_answer(status, &text);
        }
        Err(ApiError::Status {
            code: grpc::UNAUTHENTICATED,
            http: Some(401),
            message: "the IAM token was refused twice".into(),
        })
    }

    /// Polls an operation until it is done, with backoff; its error becomes an
    /// [`ApiError::Status`], its success the whole (done) operation.
    pub async fn wait(&self, mut op: Value) -> Result<Value, ApiError> {
        let start = tokio::time::Instant::now();
        let mut delay = self.poll.initial;
        loop {
            if op.get("done").and_then(Value::as_bool) == Some(true) {
                if let Some(err) = op.get("error") {
                    return Err(ApiError::Status {
                        code: err
                            .get("code")
                            .and_then(Value::as_i64)
                            .unwrap_or(grpc::UNKNOWN),
                        http: None,
                        message: err
                            .get("message")
                            .and_then(Value::as_str)
                            .unwrap_or("the operation failed")
                            .to_string(),
                    });
                }
                return Ok(op);
            }
            let Some(id) = op.get("id").and_then(Value::as_str).map(str::to_string) else {
                return Err(ApiError::Network("an operation without an id".into()));
            };
            if start.elapsed() + delay > self.poll.timeout {
                return Err(ApiError::Status {
                    code: grpc::DEADLINE_EXCEEDED,
                    http: None,
                    message: format!(
                        "operation {id} not done after {} s",
                        self.poll.timeout.as_secs()
                    ),
                });
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(self.poll.max);
            let url = format!("{}/operations/{id}", self.endpoints.operation);
            op = match self.call(reqwest::Method::GET, &url, None).await {
                Ok(op) => op,
                // A poll that fails for a passing reason is polled again.
                Err(e @ ApiError::Status { code, .. }) if !yandex_is_retryable(code, "") => {
                    return Err(e)
                }
                Err(_) => continue,
            };
        }
    }

    /// Sends the request and waits for its operation.
    pub async fn call_and_wait(
        &self,
        method: reqwest::Method,
        url: &str,
        body: Option<&Value>,
    ) -> Result<Value, ApiError> {
        let op = self.call(method, url, body).await?;
        self.wait(op).await
    }
}

fn parse_answer(status: u16, text: &str) -> Result<Value, ApiError> {
    let json: Option<Value> = serde_json::from_str(text).ok();
    if (200..300).contains(&status) {
        return Ok(json.unwrap_or(Value::Null));
    }
    let code = json
        .as_ref()
        .and_then(|j| j.get("code"))
        .and_then(Value::as_i64)
        .unwrap_or_else(|| grpc_code_of_http(status));
    let message = json
        .as_ref()
        .and_then(|j| j.get("message"))
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| format!("HTTP {status}"));
    Err(ApiError::Status {
        code,
        http: Some(status),
        message,
    })
}

/// A filter by name, as the list calls take it.
pub(crate) fn name_filter(name: &str) -> String {
    format!("name=\"{name}\"")
}
