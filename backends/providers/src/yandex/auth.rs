//! IAM tokens: from a service account's authorized key (a PS256-signed JWT exchanged at
//! `POST {iam}/iam/v1/tokens`) or from the metadata service of the VM MotherGoose runs
//! on. Tokens are cached and renewed before they expire; no token or key is ever logged.

use super::ApiError;
use crate::errors::grpc;
use crate::settings::{SettingsError, YandexSettings};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use std::fmt;
use std::time::Duration;
use tokio::sync::Mutex;
use tokio::time::Instant;

/// The `aud` of the JWT: always the public IAM token URL (also when the endpoint is
/// overridden).
pub const IAM_AUDIENCE: &str = "https://iam.api.cloud.yandex.net/iam/v1/tokens";

/// How long the JWT is valid (the IAM service accepts at most one hour).
const JWT_LIFETIME_S: i64 = 3600;

/// Renew a token this long before it expires (or at half its life, if sooner).
const RENEW_BEFORE: Duration = Duration::from_secs(300);

/// An authorized key, as `yc iam key create --output key.json` writes it.
#[derive(Clone, Deserialize)]
pub struct ServiceAccountKey {
    /// Key id (the JWT's `kid`).
    pub id: String,
    /// The service account (the JWT's `iss`).
    pub service_account_id: String,
    /// PEM private key (a comment line before it is allowed).
    pub private_key: String,
}

impl fmt::Debug for ServiceAccountKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ServiceAccountKey({}, {}, [redacted])",
            self.id, self.service_account_id
        )
    }
}

impl ServiceAccountKey {
    /// Parses the key file's JSON.
    pub fn from_json(text: &str) -> Result<ServiceAccountKey, SettingsError> {
        let key: ServiceAccountKey = serde_json::from_str(text)
            .map_err(|e| SettingsError::Key(format!("not an authorized key file: {e}")))?;
        key.encoding_key()?;
        Ok(key)
    }

    fn encoding_key(&self) -> Result<jsonwebtoken::EncodingKey, SettingsError> {
        let pem = match self.private_key.find("-----BEGIN") {
            Some(i) => &self.private_key[i..],
            None => {
                return Err(SettingsError::Key(
                    "no PEM private key in the key file".into(),
                ))
            }
        };
        jsonwebtoken::EncodingKey::from_rsa_pem(pem.as_bytes())
            .map_err(|e| SettingsError::Key(format!("the private key is not an RSA key: {e}")))
    }

    /// A JWT for the token exchange, valid for an hour from `now`.
    pub fn jwt(&self, now: DateTime<Utc>) -> Result<String, ApiError> {
        #[derive(serde::Serialize)]
        struct Claims<'a> {
            aud: &'a str,
            iss: &'a str,
            iat: i64,
            exp: i64,
        }
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::PS256);
        header.kid = Some(self.id.clone());
        let claims = Claims {
            aud: IAM_AUDIENCE,
            iss: &self.service_account_id,
            iat: now.timestamp(),
            exp: now.timestamp() + JWT_LIFETIME_S,
        };
        let key = self
            .encoding_key()
            .map_err(|e| ApiError::Network(e.to_string()))?;
        jsonwebtoken::encode(&header, &claims, &key).map_err(|e| ApiError::Status {
            code: grpc::UNAUTHENTICATED,
            http: None,
            message: format!("cannot sign the IAM JWT: {e}"),
        })
    }
}

enum Kind {
    Key { key: ServiceAccountKey, url: String },
    Metadata { url: String },
    Static(String),
}

/// Where IAM tokens come from, with the current one cached.
pub struct TokenSource {
    kind: Kind,
    cache: Mutex<Option<(String, Instant)>>,
}

impl fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Key { key, .. } => write!(f, "TokenSource(key {key:?})"),
            Kind::Metadata { url } => write!(f, "TokenSource(metadata {url})"),
            Kind::Static(_) => write!(f, "TokenSource(static, redacted)"),
        }
    }
}

impl TokenSource {
    /// Tokens for the key, exchanged at `iam_base`.
    pub fn from_key(key: ServiceAccountKey, iam_base: &str) -> TokenSource {
        TokenSource::new(Kind::Key {
            key,
            url: format!("{}/iam/v1/tokens", iam_base.trim_end_matches('/')),
        })
    }

    /// Tokens of the VM's service account from the metadata service at `base`.
    pub fn from_metadata(base: &str) -> TokenSource {
        TokenSource::new(Kind::Metadata {
            url: format!(
                "{}/computeMetadata/v1/instance/service-accounts/default/token",
                base.trim_end_matches('/')
            ),
        })
    }

    /// A fixed token (development).
    pub fn fixed(token: impl Into<String>) -> TokenSource {
        TokenSource::new(Kind::Static(token.into()))
    }

    fn new(kind: Kind) -> TokenSource {
        TokenSource {
            kind,
            cache: Mutex::new(None),
        }
    }

    /// From the settings: the key file if one is set, else the metadata service.
    pub fn from_settings(s: &YandexSettings) -> Result<TokenSource, SettingsError> {
        match &s.key_file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| SettingsError::Read {
                    path: path.clone(),
                    source,
                })?;
                Ok(TokenSource::from_key(
                    ServiceAccountKey::from_json(&text)?,
                    &s.endpoints.iam,
                ))
            }
            None => Ok(TokenSource::from_metadata(&s.endpoints.metadata)),
        }
    }

    /// Forgets the cached token (after the API refused it).
    pub async fn invalidate(&self) {
        *self.cache.lock().await = None;
    }

    /// A valid token: the cached one unless it expires soon.
    pub async fn token(&self, http: &reqwest::Client) -> Result<String, ApiError> {
        if let Kind::Static(t) = &self.kind {
            return Ok(t.clone());
        }
        let mut cache = self.cache.lock().await;
        if let Some((token, renew_at)) = cache.as_ref() {
            if Instant::now() < *renew_at {
                return Ok(token.clone());
            }
        }
        let (token, lifetime) = self.fetch(http).await?;
        let margin = RENEW_BEFORE.min(lifetime / 2);
        *cache = Some((
            token.clone(),
            Instant::now() + lifetime.saturating_sub(margin),
        ));
        Ok(token)
    }

    async fn fetch(&self, http: &reqwest::Client) -> Result<(String, Duration), ApiError> {
        let net = |e: reqwest::Error| {
            ApiError::Network(format!("IAM token: {}", crate::errors::describe(&e)))
        };
        match &self.kind {
            Kind::Key { key, url } => {
                let jwt = key.jwt(Utc::now())?;
                let resp = http
                    .post(url)
                    .json(&serde_json::json!({ "jwt": jwt }))
                    .send()
                    .await
                    .map_err(net)?;
                let status = resp.status().as_u16();
                let text = resp.text().await.map_err(net)?;
                let v = super::parse_answer(status, &text).map_err(|e| match e {
                    ApiError::Status {
                        code,
                        http,
                        message,
                    } => ApiError::Status {
                        code,
                        http,
                        message: format!("IAM token exchange: {message}"),
                    },
                    other => other,
                })?;
                let token = v
                    .get("iamToken")
                    .and_then(|t| t.as_str())
                    .ok_or_else(|| ApiError::Network("IAM answer without iamToken".into()))?;
                let expires = v
                    .get("expiresAt")
                    .and_then(|t| t.as_str())
                    .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                    .map(|t| t.with_timezone(&Utc) - Utc::now())
                    .and_then(|d| d.to_std().ok())
                    .unwrap_or(Duration::from_secs(3600));
                Ok((token.to_string(), expires))
            }
            Kind::Metadata { url } => {
                let resp = http
                    .get(url)
                    .header("Metadata-Flavor", "Google")
                    .send()
                    .await
                    .map_err(net)?;
                let status = resp.status().as_u16();
                let text = resp.text().await.map_err(net)?;
                let v = super::parse_answer(status, &text)?;
                let token = v
                    .get("access_token")
                    .and_then(|t| t.as_str())
                    .ok_or_else(|| {
                        ApiError::Network("metadata answer without access_token".into())
                    })?;
                let secs = v.get("expires_in").and_then(|t| t.as_u64()).unwrap_or(3600);
                Ok((token.to_string(), Duration::from_secs(secs)))
            }
            Kind::Static(t) => Ok((t.clone(), Duration::from_secs(u64::MAX / 4))),
        }
    }
}
