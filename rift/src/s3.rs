//! S3 wire details: `Range` parsing, dates, and the XML documents of ListObjects(V2) and
//! ListBuckets.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use percent_encoding::{percent_encode, AsciiSet, NON_ALPHANUMERIC};

use crate::error::xml_escape;
use crate::store::Store;

/// `encoding-type=url` escapes everything but unreserved characters and `/`.
const URL_ENCODING: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'/');

/// Namespace of the S3 2006-03-01 API.
pub const XMLNS: &str = "http://s3.amazonaws.com/doc/2006-03-01/";

/// The outcome of a `Range` header against an object of a given size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeSpec {
    /// No (usable) range: the whole object.
    Full,
    /// Bytes `start..=end`.
    Partial {
        /// First byte.
        start: u64,
        /// Last byte (inclusive).
        end: u64,
    },
    /// The range cannot be satisfied (416).
    Unsatisfiable,
}

/// Parses a `Range` header. Like S3, multiple ranges and malformed headers are ignored (the
/// whole object is served).
pub fn parse_range(header: Option<&str>, size: u64) -> RangeSpec {
    let Some(h) = header else {
        return RangeSpec::Full;
    };
    let Some(spec) = h.trim().strip_prefix("bytes=") else {
        return RangeSpec::Full;
    };
    if spec.contains(',') {
        return RangeSpec::Full;
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return RangeSpec::Full;
    };
    let (a, b) = (a.trim(), b.trim());
    if a.is_empty() {
        // Suffix range: the last `b` bytes.
        let Ok(n) = b.parse::<u64>() else {
            return RangeSpec::Full;
        };
        if n == 0 || size == 0 {
            return RangeSpec::Unsatisfiable;
        }
        let n = n.min(size);
        return RangeSpec::Partial {
            start: size - n,
            end: size - 1,
        };
    }
    let Ok(start) = a.parse::<u64>() else {
        return RangeSpec::Full;
    };
    let end = if b.is_empty() {
        u64::MAX
    } else {
        match b.parse::<u64>() {
            Ok(e) if e >= start => e,
            _ => return RangeSpec::Full,
        }
    };
    if start >= size {
        return RangeSpec::Unsatisfiable;
    }
    RangeSpec::Partial {
        start,
        end: end.min(size - 1),
    }
}

fn datetime(unix: i64) -> DateTime<Utc> {
    DateTime::<Utc>::from_timestamp(unix, 0).unwrap_or_default()
}

/// An HTTP date (`Last-Modified`).
pub fn http_date(unix: i64) -> String {
    datetime(unix)
        .format("%a, %d %b %Y %H:%M:%S GMT")
        .to_string()
}

/// An ISO 8601 date as S3 XML uses it.
pub fn iso_date(unix: i64) -> String {
    datetime(unix).format("%Y-%m-%dT%H:%M:%S.000Z").to_string()
}

/// Parameters of a listing.
#[derive(Debug, Clone, Default)]
pub struct ListParams {
    /// Key prefix.
    pub prefix: String,
    /// Grouping delimiter.
    pub delimiter: Option<String>,
    /// Maximum number of keys and common prefixes (at most 1000).
    pub max_keys: usize,
    /// Start strictly after this key (continuation token, start-after or marker).
    pub after: Option<String>,
}

/// One listed object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// Key within the bucket.
    pub key: String,
    /// Size.
    pub size: u64,
    /// ETag (quoted hex MD5).
    pub etag: String,
    /// Modification time (Unix seconds).
    pub modified: i64,
}

/// The result of a listing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListResult {
    /// Objects.
    pub contents: Vec<Listed>,
    /// Common prefixes (with `delimiter`).
    pub prefixes: Vec<String>,
    /// Whether more results follow.
    pub truncated: bool,
    /// The last key or prefix returned (where the next page starts after).
    pub last: Option<String>,
}

/// Lists `bucket` in key order.
pub fn list(store: &Store, bucket: &str, p: &ListParams) -> ListResult {
    let base = format!("{bucket}/");
    let full_prefix = format!("{base}{}", p.prefix);
    let after = p.after.as_ref().map(|a| format!("{base}{a}"));
    let mut r = ListResult::default();
    let mut last_cp: Option<String> = p.after.clone();
    let mut count = 0usize;
    let delimiter = p.delimiter.as_deref().filter(|d| !d.is_empty());
    store.scan(&full_prefix, after.as_deref(), |e| {
        let key = &e.key[base.len()..];
        let rest = &key[p.prefix.len()..];
        if let Some(d) = delimiter {
            if let Some(i) = rest.find(d) {
                let cp = &key[..p.prefix.len() + i + d.len()];
                if last_cp.as_deref() == Some(cp) {
                    return true;
                }
                if count >= p.max_keys {
                    r.truncated = true;
                    return false;
                }
                r.prefixes.push(cp.to_string());
                last_cp = Some(cp.to_string());
                r.last = Some(cp.to_string());
                count += 1;
                return true;
            }
        }
        if count >= p.max_keys {
            r.truncated = true;
            return false;
        }
        r.contents.push(Listed {
            key: key.to_string(),
            size: e.size,
            etag: format!("\"{}\"", hex::encode(e.md5)),
            modified: e.modified,
        });
        r.last = Some(key.to_string());
        count += 1;
        true
    });
    r
}

fn enc(s: &str, url: bool) -> String {
    if url {
        percent_encode(s.as_bytes(), URL_ENCODING).to_string()
    } else {
        xml_escape(s)
    }
}

/// Which listing API is answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListVersion {
    /// ListObjectsV2, with the continuation token and start-after given.
    V2 {
        /// `continuation-token` as received.
        continuation_token: Option<String>,
        /// `start-after` as received.
        start_after: Option<String>,
    },
    /// ListObjects (v1), with the marker given.
    V1 {
        /// `marker` as received.
        marker: Option<String>,
    },
}

/// Renders a `ListBucketResult`.
pub fn list_xml(
    bucket: &str,
    p: &ListParams,
    r: &ListResult,
    version: &ListVersion,
    url_encoding: bool,
) -> String {
    let mut x = String::with_capacity(512 + r.contents.len() * 256);
    let _ = write!(
        x,
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ListBucketResult xmlns=\"{XMLNS}\"><Name>{}</Name><Prefix>{}</Prefix>",
        xml_escape(bucket),
        enc(&p.prefix, url_encoding)
    );
    match version {
        ListVersion::V2 {
            continuation_token,
            start_after,
        } => {
            let _ = write!(
                x,
                "<KeyCount>{}</KeyCount>",
                r.contents.len() + r.prefixes.len()
            );
            if let Some(t) = continuation_token {
                let _ = write!(
                    x,
                    "<ContinuationToken>{}</ContinuationToken>",
                    xml_escape(t)
                );
            }
            if let Some(s) = start_after {
                let _ = write!(x, "<StartAfter>{}</StartAfter>", enc(s, url_encoding));
            }
            if r.truncated {
                if let Some(last) = &r.last {
                    let _ = write!(
                        x,
                        "<NextContinuationToken>{}</NextContinuationToken>",
                        hex::encode(last)
                    );
                }
            }
        }
        ListVersion::V1 { marker } => {
            let _ = write!(
                x,
                "<Marker>{}</Marker>",
                enc(marker.as_deref().unwrap_or(""), url_encoding)
            );
            if r.truncated {
                if let Some(last) = &r.last {
                    let _ = write!(x, "<NextMarker>{}</NextMarker>", enc(last, url_encoding));
                }
            }
        }
    }
    let _ = write!(x, "<MaxKeys>{}</MaxKeys>", p.max_keys);
    if let Some(d) = &p.delimiter {
        let _ = write!(x, "<Delimiter>{}</Delimiter>", enc(d, url_encoding));
    }
    if url_encoding {
        x.push_str("<EncodingType>url</EncodingType>");
    }
    let _ = write!(x, "<IsTruncated>{}</IsTruncated>", r.truncated);
    for c in &r.contents {
        let _ = write!(
            x,
            "<Contents><Key>{}</Key><LastModified>{}</LastModified><ETag>{}</ETag><Size>{}</Size><StorageClass>STANDARD</StorageClass></Contents>",
            enc(&c.key, url_encoding),
            iso_date(c.modified),
            xml_escape(&c.etag),
            c.size
        );
    }
    for cp in &r.prefixes {
        let _ = write!(
            x,
            "<CommonPrefixes><Prefix>{}</Prefix></CommonPrefixes>",
            enc(cp, url_encoding)
        );
    }
    x.push_str("</ListBucketResult>");
    x
}

/// Renders a `ListAllMyBucketsResult`.
pub fn buckets_xml(buckets: &[String], created: i64) -> String {
    let mut x = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ListAllMyBucketsResult xmlns=\"{XMLNS}\"><Owner><ID>rift</ID><DisplayName>rift</DisplayName></Owner><Buckets>"
    );
    for b in buckets {
        let _ = write!(
            x,
            "<Bucket><Name>{}</Name><CreationDate>{}</CreationDate></Bucket>",
            xml_escape(b),
            iso_date(created)
        );
    }
    x.push_str("</Buckets></ListAllMyBucketsResult>");
    x
}

/// A parsed DeleteObjects request body.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
pub struct DeleteRequest {
    /// The objects to delete.
    #[serde(rename = "Object", default)]
    pub objects: Vec<DeleteObject>,
    /// Whether to omit successfully deleted keys from the answer.
    #[serde(rename = "Quiet", default)]
    pub quiet: bool,
}

/// One object of a DeleteObjects request.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
pub struct DeleteObject {
    /// Its key.
    #[serde(rename = "Key")]
    pub key: String,
}

/// Most keys one DeleteObjects request may name (as S3).
pub const MAX_DELETE_KEYS: usize = 1000;

/// Parses a DeleteObjects (`POST /bucket?delete`) body.
pub fn parse_delete(xml: &str) -> Result<DeleteRequest, String> {
    let d: DeleteRequest = quick_xml::de::from_str(xml).map_err(|e| e.to_string())?;
    if d.objects.len() > MAX_DELETE_KEYS {
        return Err(format!("at most {MAX_DELETE_KEYS} keys per request"));
    }
    Ok(d)
}

/// Renders a `DeleteResult` listing `deleted` keys (none when quiet).
pub fn delete_result_xml(deleted: &[String], quiet: bool) -> String {
    let mut x =
        format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<DeleteResult xmlns=\"{XMLNS}\">");
    if !quiet {
        for k in deleted {
            let _ = write!(x, "<Deleted><Key>{}</Key></Deleted>", xml_escape(k));
        }
    }
    x.push_str("</DeleteResult>");
    x
}

/// Decodes a continuation token made by [`list_xml`].
pub fn decode_token(token: &str) -> Option<String> {
    String::from_utf8(hex::decode(token).ok()?).ok()
}

/// Whether a bucket name is acceptable (S3's rules, slightly relaxed: 1–255 characters of
/// letters, digits, `.`, `-` and `_`).
pub fn valid_bucket(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && name.len() <= 255
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range(None, 10), RangeSpec::Full);
        assert_eq!(
            parse_range(Some("bytes=0-9"), 100),
            RangeSpec::Partial { start: 0, end: 9 }
        );
        assert_eq!(
            parse_range(Some("bytes=90-"), 100),
            RangeSpec::Partial { start: 90, end: 99 }
        );
        assert_eq!(
            parse_range(Some("bytes=-10"), 100),
            RangeSpec::Partial { start: 90, end: 99 }
        );
        assert_eq!(
            parse_range(Some("bytes=-1000"), 100),
            RangeSpec::Partial { start: 0, end: 99 }
        );
        assert_eq!(
            parse_range(Some("bytes=50-1000"), 100),
            RangeSpec::Partial { start: 50, end: 99 }
        );
        assert_eq!(
            parse_range(Some("bytes=100-"), 100),
            RangeSpec::Unsatisfiable
        );
        assert_eq!(parse_range(Some("bytes=-0"), 100), RangeSpec::Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=5-2"), 100), RangeSpec::Full);
        assert_eq!(parse_range(Some("bytes=0-1,5-6"), 100), RangeSpec::Full);
        assert_eq!(parse_range(Some("items=0-1"), 100), RangeSpec::Full);
        assert_eq!(parse_range(Some("bytes=x-y"), 100), RangeSpec::Full);
    }

    #[test]
    fn dates() {
        assert_eq!(http_date(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(iso_date(1_255_369_830), "2009-10-12T17:50:30.000Z");
    }

    #[test]
    fn delete_bodies() {
        let d = parse_delete(
            "<?xml version=\"1.0\"?><Delete xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Object><Key>a&amp;b</Key></Object><Object><Key>c/d</Key><VersionId>x</VersionId></Object><Quiet>true</Quiet></Delete>",
        )
        .unwrap();
        assert_eq!(d.objects.len(), 2);
        assert_eq!(d.objects[0].key, "a&b");
        assert!(d.quiet);
        assert!(parse_delete("<Delete><Object>").is_err());
        assert!(parse_delete("not xml").is_err());
        assert!(delete_result_xml(&["a<".into()], false).contains("<Key>a&lt;</Key>"));
    }

    #[test]
    fn bucket_names() {
        assert!(valid_bucket("runner-cache"));
        assert!(!valid_bucket(""));
        assert!(!valid_bucket("a/b"));
        assert!(!valid_bucket(".rift-mpu"));
    }
}
