//! Choosing an adapter by URL.

use crate::dynamo::DynamoStore;
use crate::error::{Result, StateError};
use crate::objects::{LocalObjects, ObjectStore, S3Objects};
use crate::sqlite::SqliteStore;
use crate::store::StateStore;
use std::collections::HashMap;
use std::path::Path;

/// Static AWS-style credentials (tests, S3-compatible services); without them the AWS
/// default chain is used (environment, profile, instance role).
#[derive(Clone)]
pub struct AwsCredentials {
    /// Access key id.
    pub access_key_id: String,
    /// Secret access key.
    pub secret_access_key: String,
}

impl std::fmt::Debug for AwsCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AwsCredentials({}, [redacted])", self.access_key_id)
    }
}

/// How to open a store.
#[derive(Clone, Debug, Default)]
pub struct OpenOptions {
    /// Open for reading only: nothing is created or written anywhere (dry runs).
    pub read_only: bool,
    /// Credentials for `dynamodb://` and `s3://`.
    pub credentials: Option<AwsCredentials>,
}

struct Parsed<'a> {
    scheme: Option<&'a str>,
    rest: &'a str,
    query: HashMap<String, String>,
}

fn parse(url: &str) -> Parsed<'_> {
    let (scheme, after) = match url.split_once("://") {
        Some((s, r)) => (Some(s), r),
        None => (None, url),
    };
    let (rest, query) = match (scheme, after.split_once('?')) {
        (Some(_), Some((r, q))) => (
            r,
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect(),
        ),
        _ => (after, HashMap::new()),
    };
    Parsed {
        scheme,
        rest,
        query,
    }
}

/// A true/false URL parameter (`true`, `1`, `false`, `0`), `default` when absent.
pub(crate) fn flag(
    url: &str,
    query: &HashMap<String, String>,
    name: &str,
    default: bool,
) -> Result<bool> {
    match query.get(name).map(String::as_str) {
        None => Ok(default),
        Some("true" | "1") => Ok(true),
        Some("false" | "0") => Ok(false),
        Some(other) => Err(StateError::BadUrl {
            url: url.into(),
            reason: format!("`{name}` must be true or false, not `{other}`"),
        }),
    }
}

fn unknown_params(url: &str, p: &Parsed<'_>, known: &[&str]) -> Result<()> {
    if let Some(k) = p.query.keys().find(|k| !known.contains(&k.as_str())) {
        return Err(StateError::BadUrl {
            url: url.into(),
            reason: format!("unknown parameter `{k}` (known: {})", known.join(", ")),
        });
    }
    Ok(())
}

/// How long one attempt of an AWS call may take before it fails and is retried. Without
/// it a service that accepts connections and never answers (a partition, a hung or frozen
/// server) holds the caller forever; with it the outage surfaces as an error the callers
/// retry with backoff. Clients that long-poll (SQS) set their own, longer, limits.
pub const AWS_ATTEMPT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The timeouts of AWS calls: connecting 3 s, one attempt `attempt`, a whole call with its
/// retries three attempts' worth.
pub fn aws_timeouts(attempt: std::time::Duration) -> aws_config::timeout::TimeoutConfig {
    aws_config::timeout::TimeoutConfig::builder()
        .connect_timeout(std::time::Duration::from_secs(3))
        .operation_attempt_timeout(attempt)
        .operation_timeout(attempt * 3)
        .build()
}

/// The shared AWS SDK configuration: region, endpoint override, credentials, the
/// standard retry mode (exponential backoff with jitter, 5 attempts) for transient errors
/// and [`aws_timeouts`] of [`AWS_ATTEMPT_TIMEOUT`].
pub async fn aws_config(
    endpoint: Option<&str>,
    region: Option<&str>,
    credentials: Option<&AwsCredentials>,
) -> aws_config::SdkConfig {
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(5))
        .timeout_config(aws_timeouts(AWS_ATTEMPT_TIMEOUT));
    if let Some(r) = region {
        loader = loader.region(aws_config::Region::new(r.to_string()));
    }
    if let Some(c) = credentials {
        loader = loader.credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            c.access_key_id.clone(),
            c.secret_access_key.clone(),
            None,
            None,
            "gosling-static",
        ));
    }
    if let Some(ep) = endpoint {
        loader = loader.endpoint_url(ep);
    }
    loader.load().await
}

/// Opens the state store a URL names:
///
/// - `sqlite://PATH` or a plain path: the embedded store (created unless read-only);
/// - `dynamodb://PREFIX?region=R&endpoint=URL&max_tx=N&create_tables=false`: DynamoDB, or the
///   YDB Document API (`endpoint=https://docapi.serverless.yandexcloud.net/ru-central1/…`,
///   `max_tx=25`); missing tables are created unless `create_tables=false` or read-only;
/// - `ydb://HOST[:PORT]/DATABASE?secure=false&prefix=P&timeout=SECONDS&create_tables=false&
///   ca_certificate=FILE`: native YDB (see [`crate::ydb_store::YdbUrl`]); credentials from the
///   YDB SDKs' environment variables ([`crate::ydb_store::Auth::from_env`]).
pub async fn open_state(url: &str, opts: &OpenOptions) -> Result<Box<dyn StateStore>> {
    let p = parse(url);
    match p.scheme {
        None | Some("sqlite") => {
            if p.rest.is_empty() {
                return Err(StateError::BadUrl {
                    url: url.into(),
                    reason: "no database path".into(),
                });
            }
            Ok(Box::new(SqliteStore::open(
                Path::new(p.rest),
                opts.read_only,
            )?))
        }
        Some("dynamodb") => {
            unknown_params(url, &p, &["endpoint", "region", "max_tx", "create_tables"])?;
            let max_tx = match p.query.get("max_tx") {
                Some(n) => n.parse::<usize>().map_err(|_| StateError::BadUrl {
                    url: url.into(),
                    reason: "`max_tx` must be a number".into(),
                })?,
                None => 100,
            };
            let endpoint = p.query.get("endpoint").cloned();
            let conf = aws_config(
                endpoint.as_deref(),
                p.query.get("region").map(String::as_str),
                opts.credentials.as_ref(),
            )
            .await;
            let client = aws_sdk_dynamodb::Client::new(&conf);
            let store = DynamoStore::new(
                client,
                p.rest.trim_end_matches('/'),
                endpoint,
                opts.read_only,
                max_tx,
            );
            let create = flag(url, &p.query, "create_tables", true)?;
            if create && !opts.read_only {
                store.ensure_tables().await?;
            }
            Ok(Box::new(store))
        }
        #[cfg(feature = "ydb")]
        Some("ydb") => {
            use crate::ydb_store::{Auth, YdbStore, YdbUrl, URL_PARAMS};
            unknown_params(url, &p, URL_PARAMS)?;
            let parsed = YdbUrl::parse(url, p.rest, &p.query)?;
            let create = parsed.create_tables;
            let auth = Auth::from_env(|k| std::env::var(k).ok(), parsed.secure);
            let store = YdbStore::connect(parsed, auth, opts.read_only).await?;
            if create && !opts.read_only {
                store.ensure_tables().await?;
            }
            Ok(Box::new(store))
        }
        #[cfg(not(feature = "ydb"))]
        Some("ydb") => Err(StateError::NotBuiltIn(
            "`ydb://` (the native YDB protocol) is not built into this gosling (it was built \
             without the `ydb` feature): rebuild with it, or use YDB's DynamoDB-compatible \
             Document API, e.g. `dynamodb://gosling?endpoint=https://docapi.serverless.\
             yandexcloud.net/ru-central1/FOLDER/DATABASE&region=ru-central1&max_tx=25`"
                .into(),
        )),
        Some(other) => Err(StateError::BadUrl {
            url: url.into(),
            reason: format!(
                "unknown scheme `{other}://` (use sqlite://PATH, dynamodb://PREFIX or ydb://HOST/DATABASE)"
            ),
        }),
    }
}

/// Opens the object store a URL names:
///
/// - `file://PATH` or a plain path: a local directory;
/// - `s3://BUCKET/PREFIX?region=R&endpoint=URL`: S3 (AWS, Yandex Object Storage at
///   `endpoint=https://storage.yandexcloud.net`, or any S3-compatible service); with an
///   endpoint, path-style addressing is used.
pub async fn open_objects(url: &str, opts: &OpenOptions) -> Result<Box<dyn ObjectStore>> {
    Ok(match open_s3(url, opts).await? {
        Some(s3) => Box::new(s3),
        None => {
            let p = parse(url);
            if p.rest.is_empty() {
                return Err(StateError::BadUrl {
                    url: url.into(),
                    reason: "no directory".into(),
                });
            }
            Box::new(LocalObjects::new(Path::new(p.rest), opts.read_only))
        }
    })
}

/// The S3 adapter for an `s3://` URL (`None` for other URLs).
pub async fn open_s3(url: &str, opts: &OpenOptions) -> Result<Option<S3Objects>> {
    let p = parse(url);
    match p.scheme {
        None | Some("file") => Ok(None),
        Some("s3") => {
            unknown_params(url, &p, &["endpoint", "region"])?;
            let (bucket, prefix) = p.rest.split_once('/').unwrap_or((p.rest, ""));
            if bucket.is_empty() {
                return Err(StateError::BadUrl {
                    url: url.into(),
                    reason: "no bucket".into(),
                });
            }
            let endpoint = p.query.get("endpoint").map(String::as_str);
            let conf = aws_config(
                endpoint,
                p.query.get("region").map(String::as_str),
                opts.credentials.as_ref(),
            )
            .await;
            let s3conf = aws_sdk_s3::config::Builder::from(&conf)
                .force_path_style(endpoint.is_some())
                .build();
            Ok(Some(S3Objects::new(
                aws_sdk_s3::Client::from_conf(s3conf),
                bucket,
                prefix,
                opts.read_only,
            )))
        }
        Some(other) => Err(StateError::BadUrl {
            url: url.into(),
            reason: format!("unknown scheme `{other}://` (use file://PATH or s3://BUCKET/PREFIX)"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn urls() {
        let e = open_state("redis://x", &OpenOptions::default())
            .await
            .err()
            .unwrap();
        assert!(e.to_string().contains("unknown scheme"), "{e}");
        let e = open_state("dynamodb://p?bogus=1", &OpenOptions::default())
            .await
            .err()
            .unwrap();
        assert!(e.to_string().contains("unknown parameter `bogus`"), "{e}");
        let p = parse("s3://bucket/a/b?endpoint=http%3A%2F%2F127.0.0.1%3A9000&region=us-east-1");
        assert_eq!(p.rest, "bucket/a/b");
        assert_eq!(p.query["endpoint"], "http://127.0.0.1:9000");
        assert_eq!(parse("/tmp/x.db").rest, "/tmp/x.db");
        assert_eq!(parse("sqlite:///tmp/x.db").rest, "/tmp/x.db");
    }
}
