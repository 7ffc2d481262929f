//! S3 multipart uploads (CreateMultipartUpload, UploadPart, CompleteMultipartUpload,
//! AbortMultipartUpload), as the AWS CLI uses for large files.
//!
//! Parts are ordinary store objects in the internal `.rift-mpu` namespace (unreachable through
//! the S3 API, since bucket names cannot start with a dot): they are written atomically,
//! survive restarts, and count against the cache size, so abandoned uploads are eventually
//! evicted like anything else. Completion streams the parts, in order, into a new object
//! through the usual temporary-file-and-rename path, then removes them. The completed object's
//! ETag is the MD5 of its whole body (not S3's `md5-of-md5s-N` form).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt;
use http::{header, HeaderMap, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::error::{xml_escape, ApiError, Body};
use crate::s3::XMLNS;
use crate::server::{status_only, xml, AppState};
use crate::store::{ByteStream, PutOptions, Store};

/// Internal bucket holding parts.
pub const MPU_BUCKET: &str = ".rift-mpu";
/// Highest part number S3 allows.
pub const MAX_PART_NUMBER: u32 = 10_000;
/// Largest CompleteMultipartUpload body accepted.
const MAX_COMPLETE_BODY: usize = 4 << 20;

static COUNTER: AtomicU64 = AtomicU64::new(0);

fn init_key(id: &str) -> String {
    format!("{MPU_BUCKET}/{id}/init")
}

fn part_key(id: &str, n: u32) -> String {
    format!("{MPU_BUCKET}/{id}/{n:05}")
}

fn no_such_upload() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "NoSuchUpload",
        "The specified multipart upload does not exist.",
    )
}

fn valid_id(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Checks that `id` is an upload of `full_key`; returns the content type given at creation.
async fn check_upload(state: &Arc<AppState>, id: &str, full_key: &str) -> Result<String, ApiError> {
    if !valid_id(id) {
        return Err(no_such_upload());
    }
    let Some(init) = state.store.get(&init_key(id)).await? else {
        return Err(no_such_upload());
    };
    let ctype = init.meta.content_type.clone();
    match &init.small {
        Some(b) if b.as_ref() == full_key.as_bytes() => Ok(ctype),
        _ => Err(no_such_upload()),
    }
}

/// CreateMultipartUpload.
pub async fn create(
    state: &Arc<AppState>,
    headers: &HeaderMap,
    bucket: &str,
    key: &str,
) -> Result<Response<Body>, ApiError> {
    let full_key = format!("{bucket}/{key}");
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let seed = format!("{full_key}\0{nanos}\0{n}\0{}", std::process::id());
    let id = hex::encode(&Sha256::digest(seed.as_bytes())[..16]);
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = Bytes::from(full_key.clone().into_bytes());
    state
        .store
        .put_stream(
            &init_key(&id),
            PutOptions {
                content_type,
                expected_len: Some(body.len() as u64),
                ..PutOptions::default()
            },
            futures_util::stream::iter([Ok::<_, std::io::Error>(body)]),
        )
        .await?;
    Ok(xml(
        StatusCode::OK,
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<InitiateMultipartUploadResult xmlns=\"{XMLNS}\"><Bucket>{}</Bucket><Key>{}</Key><UploadId>{id}</UploadId></InitiateMultipartUploadResult>",
            xml_escape(bucket),
            xml_escape(key)
        ),
    ))
}

/// Validates an UploadPart request and returns the store key of the part.
pub async fn part_key_for(
    state: &Arc<AppState>,
    id: &str,
    part_number: &str,
    full_key: &str,
) -> Result<String, ApiError> {
    let n: u32 = part_number
        .parse()
        .ok()
        .filter(|n| (1..=MAX_PART_NUMBER).contains(n))
        .ok_or_else(|| {
            ApiError::invalid_argument("Part number must be an integer between 1 and 10000")
        })?;
    check_upload(state, id, full_key).await?;
    Ok(part_key(id, n))
}

#[derive(Debug, Deserialize)]
struct CompleteRequest {
    #[serde(rename = "Part", default)]
    parts: Vec<CompletePart>,
}

#[derive(Debug, Deserialize)]
struct CompletePart {
    #[serde(rename = "PartNumber")]
    number: u32,
    #[serde(rename = "ETag")]
    etag: String,
}

fn invalid_part(message: &str) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "InvalidPart", message)
}

/// Streams the bodies of `keys`, in order, opening each part only when it is reached.
fn concat(store: Arc<Store>, keys: Vec<String>) -> ByteStream {
    struct St {
        store: Arc<Store>,
        keys: VecDeque<String>,
        current: Option<ByteStream>,
    }
    let st = St {
        store,
        keys: keys.into(),
        current: None,
    };
    Box::pin(futures_util::stream::unfold(st, |mut st| async move {
        loop {
            if let Some(cur) = st.current.as_mut() {
                match cur.next().await {
                    Some(item) => return Some((item, st)),
                    None => st.current = None,
                }
            }
            let key = st.keys.pop_front()?;
            let opened = match st.store.get(&key).await {
                Ok(Some(o)) => {
                    let size = o.meta.size;
                    o.into_stream(0, size)
                }
                Ok(None) => Err(std::io::Error::other(format!("part {key} disappeared"))),
                Err(e) => Err(std::io::Error::other(e.to_string())),
            };
            match opened {
                Ok(s) => st.current = Some(s),
                Err(e) => {
                    st.keys.clear();
                    return Some((Err(e), st));
                }
            }
        }
    }))
}

async fn remove_upload(store: &Arc<Store>, id: &str) -> Result<usize, ApiError> {
    let mut keys = Vec::new();
    store.scan(&format!("{MPU_BUCKET}/{id}/"), None, |e| {
        keys.push(e.key);
        true
    });
    for k in &keys {
        store.delete(k).await?;
    }
    Ok(keys.len())
}

/// CompleteMultipartUpload.
pub async fn complete(
    state: &Arc<AppState>,
    req: Request<Incoming>,
    bucket: &str,
    key: &str,
    id: &str,
) -> Result<Response<Body>, ApiError> {
    let full_key = format!("{bucket}/{key}");
    let content_type = check_upload(state, id, &full_key).await?;
    let body = http_body_util::Limited::new(req.into_body(), MAX_COMPLETE_BODY)
        .collect()
        .await
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "MalformedXML", e.to_string()))?
        .to_bytes();
    let text = std::str::from_utf8(&body)
        .map_err(|_| ApiError::new(StatusCode::BAD_REQUEST, "MalformedXML", "body is not UTF-8"))?;
    let parsed: CompleteRequest = quick_xml::de::from_str(text)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "MalformedXML", e.to_string()))?;
    if parsed.parts.is_empty() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "MalformedXML",
            "You must specify at least one part",
        ));
    }
    if parsed.parts.windows(2).any(|w| w[0].number >= w[1].number) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "InvalidPartOrder",
            "The list of parts was not in ascending order.",
        ));
    }
    let mut total: u64 = 0;
    let mut keys = Vec::with_capacity(parsed.parts.len());
    for p in &parsed.parts {
        let k = part_key(id, p.number);
        let Some(o) = state.store.get(&k).await? else {
            return Err(invalid_part(
                "One or more of the specified parts could not be found.",
            ));
        };
        if o.meta.etag().trim_matches('"') != p.etag.trim().trim_matches('"') {
            return Err(invalid_part("A part's ETag does not match."));
        }
        total += o.meta.size;
        keys.push(k);
    }
    let meta = state
        .store
        .put_stream(
            &full_key,
            PutOptions {
                content_type: Some(content_type),
                expected_len: Some(total),
                ..PutOptions::default()
            },
            concat(Arc::clone(&state.store), keys),
        )
        .await?;
    remove_upload(&state.store, id).await?;
    Ok(xml(
        StatusCode::OK,
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<CompleteMultipartUploadResult xmlns=\"{XMLNS}\"><Location>/{}/{}</Location><Bucket>{}</Bucket><Key>{}</Key><ETag>{}</ETag></CompleteMultipartUploadResult>",
            xml_escape(bucket),
            xml_escape(key),
            xml_escape(bucket),
            xml_escape(key),
            xml_escape(&meta.etag())
        ),
    ))
}

/// AbortMultipartUpload.
pub async fn abort(
    state: &Arc<AppState>,
    full_key: &str,
    id: &str,
) -> Result<Response<Body>, ApiError> {
    check_upload(state, id, full_key).await?;
    remove_upload(&state.store, id).await?;
    Ok(status_only(StatusCode::NO_CONTENT))
}
