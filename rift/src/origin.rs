//! Optional pull-through origin: on a miss, the object is fetched from an upstream S3 bucket
//! (AWS, Yandex Object Storage, MinIO, another Rift), stored like an upload (temporary file,
//! checksum, rename), and then served from disk. Concurrent misses of one key share a single
//! fetch. Any origin failure is reported to the caller, which answers the request as a plain
//! miss: the runner then simply rebuilds its cache.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_s3::error::DisplayErrorContext;

use crate::config::OriginConfig;
use crate::metrics::Metrics;
use crate::store::{PutOptions, Store, StoreError};

/// Why an origin fetch failed.
#[derive(Debug, thiserror::Error)]
pub enum OriginError {
    /// The request to the origin failed (network, auth, server error, timeout).
    #[error("origin request failed: {0}")]
    Request(String),
    /// Storing the fetched object failed (including a truncated or corrupt transfer).
    #[error("storing the origin object failed: {0}")]
    Store(#[from] StoreError),
}

/// A pull-through origin.
#[derive(Debug)]
pub struct Origin {
    client: aws_sdk_s3::Client,
    bucket: Option<String>,
    inflight: Mutex<HashMap<String, Weak<tokio::sync::Mutex<()>>>>,
    metrics: Arc<Metrics>,
}

impl Origin {
    /// Builds the S3 client for `cfg` (path-style addressing, bounded timeouts, two attempts).
    pub fn new(cfg: &OriginConfig, metrics: Arc<Metrics>) -> Self {
        let mut b = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(cfg.region.clone()))
            .force_path_style(true)
            .retry_config(RetryConfig::standard().with_max_attempts(2))
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(cfg.timeout)
                    .read_timeout(cfg.timeout)
                    .operation_attempt_timeout(cfg.timeout)
                    .build(),
            );
        if let Some(ep) = &cfg.endpoint {
            b = b.endpoint_url(ep);
        }
        match (&cfg.access_key, &cfg.secret_key) {
            (Some(ak), Some(sk)) => {
                b = b.credentials_provider(Credentials::new(ak, sk, None, None, "rift-origin"));
            }
            _ => tracing::warn!("origin configured without credentials; fetches will fail"),
        }
        Origin {
            client: aws_sdk_s3::Client::from_conf(b.build()),
            bucket: cfg.bucket.clone(),
            inflight: Mutex::new(HashMap::new()),
            metrics,
        }
    }

    fn key_lock(&self, key: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut map = self.inflight.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(l) = map.get(key).and_then(Weak::upgrade) {
            return l;
        }
        if map.len() > 1024 {
            map.retain(|_, w| w.strong_count() > 0);
        }
        let l = Arc::new(tokio::sync::Mutex::new(()));
        map.insert(key.to_string(), Arc::downgrade(&l));
        l
    }

    /// Fetches `bucket/key` into `store`. `Ok(false)` when the origin does not have it.
    pub async fn fetch(
        &self,
        store: &Arc<Store>,
        bucket: &str,
        key: &str,
    ) -> Result<bool, OriginError> {
        let full = format!("{bucket}/{key}");
        let lock = self.key_lock(&full);
        let _guard = lock.lock().await;
        if store.contains(&full) {
            // Filled by a concurrent fetch while this one waited.
            return Ok(true);
        }
        let origin_bucket = self.bucket.as_deref().unwrap_or(bucket);
        let out = match self
            .client
            .get_object()
            .bucket(origin_bucket)
            .key(key)
            .send()
            .await
        {
            Ok(o) => o,
            Err(e) => {
                let missing = e.as_service_error().is_some_and(|s| s.is_no_such_key())
                    || e.raw_response().is_some_and(|r| r.status().as_u16() == 404);
                if missing {
                    return Ok(false);
                }
                return Err(OriginError::Request(DisplayErrorContext(&e).to_string()));
            }
        };
        let expected_len = out.content_length().and_then(|n| u64::try_from(n).ok());
        // A single-part ETag is the body's MD5: verify the transfer against it.
        let expected_md5 = out
            .e_tag()
            .map(|t| t.trim_matches('"'))
            .filter(|t| t.len() == 32)
            .and_then(|t| hex::decode(t).ok())
            .and_then(|v| <[u8; 16]>::try_from(v).ok());
        let opts = PutOptions {
            content_type: out.content_type().map(str::to_string),
            expected_len,
            expected_sha256: None,
            expected_md5,
        };
        let body = out.body;
        let stream = Box::pin(futures_util::stream::unfold(body, |mut b| async move {
            b.next().await.map(|r| (r, b))
        }));
        store.put_stream(&full, opts, stream).await?;
        Metrics::inc(&self.metrics.origin_fetches);
        tracing::info!(key = %full, "filled from origin");
        Ok(true)
    }
}
