//! The S3 API with real clients: the AWS CLI (`aws --endpoint-url`), and URLs presigned by
//! aws-sdk-rust's presigner (as gitlab-runner's cache does) used with a plain HTTP client.

mod common;

use std::time::{Duration, SystemTime};

use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_s3::presigning::{PresignedRequest, PresigningConfig};
use common::{bytes, client, md5_hex, require_program, start, Aws, ACCESS_KEY, SECRET_KEY};
use reqwest::StatusCode;

const LIMIT: Duration = Duration::from_secs(120);

fn sdk(url: &str, access_key: &str, secret: &str) -> aws_sdk_s3::Client {
    let conf = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(url)
        .force_path_style(true)
        .credentials_provider(Credentials::new(access_key, secret, None, None, "test"))
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}

fn presign_for(secs: u64) -> PresigningConfig {
    PresigningConfig::expires_in(Duration::from_secs(secs)).expect("presigning config")
}

fn request(p: &PresignedRequest, url: &str) -> reqwest::RequestBuilder {
    let method = reqwest::Method::from_bytes(p.method().as_bytes()).expect("method");
    let mut rb = client().request(method, url);
    for (k, v) in p.headers() {
        rb = rb.header(k, v);
    }
    rb
}

async fn error_code(r: reqwest::Response) -> String {
    let text = r.text().await.unwrap();
    assert!(text.starts_with("<?xml"), "not an S3 XML error: {text}");
    let start = text.find("<Code>").expect("Code element") + 6;
    let end = text.find("</Code>").expect("Code element");
    text[start..end].to_string()
}

#[tokio::test]
async fn presigned_urls_from_the_rust_sdk() {
    tokio::time::timeout(LIMIT, async {
        let s = start(|_| {}).await;
        let url = s.url();
        let c = sdk(&url, ACCESS_KEY, SECRET_KEY);
        let key = "runner/glrt-x/project/42/default-protected/cache.zip";
        let data = bytes(1 << 20, 42);

        // PUT, the way gitlab-runner's cache archiver uploads.
        let p = c
            .put_object()
            .bucket("runner-cache")
            .key(key)
            .presigned(presign_for(300))
            .await
            .unwrap();
        let r = request(&p, p.uri())
            .body(data.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
        assert_eq!(
            r.headers()["etag"].to_str().unwrap(),
            format!("\"{}\"", md5_hex(&data))
        );

        // GET (whole and ranged) and HEAD.
        let p = c
            .get_object()
            .bucket("runner-cache")
            .key(key)
            .presigned(presign_for(300))
            .await
            .unwrap();
        let r = request(&p, p.uri()).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(
            r.headers()["content-length"].to_str().unwrap(),
            (1 << 20).to_string()
        );
        assert!(r.bytes().await.unwrap().as_ref() == data.as_slice());
        let r = request(&p, p.uri())
            .header("range", "bytes=-100")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
        assert_eq!(r.bytes().await.unwrap().as_ref(), &data[data.len() - 100..]);
        let r = request(&p, p.uri())
            .header("range", "bytes=2000000-")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::RANGE_NOT_SATISFIABLE);
        assert_eq!(error_code(r).await, "InvalidRange");
        let h = c
            .head_object()
            .bucket("runner-cache")
            .key(key)
            .presigned(presign_for(300))
            .await
            .unwrap();
        let r = request(&h, h.uri()).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(
            r.headers()["etag"].to_str().unwrap(),
            format!("\"{}\"", md5_hex(&data))
        );

        // Missing object: S3's 404 NoSuchKey.
        let p = c
            .get_object()
            .bucket("runner-cache")
            .key("nope")
            .presigned(presign_for(300))
            .await
            .unwrap();
        let r = request(&p, p.uri()).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        assert_eq!(error_code(r).await, "NoSuchKey");

        // Expired: signed two hours ago for one minute.
        let expired = PresigningConfig::builder()
            .start_time(SystemTime::now() - Duration::from_secs(7200))
            .expires_in(Duration::from_secs(60))
            .build()
            .unwrap();
        let p = c
            .get_object()
            .bucket("runner-cache")
            .key(key)
            .presigned(expired)
            .await
            .unwrap();
        let r = request(&p, p.uri()).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        let text = r.text().await.unwrap();
        assert!(
            text.contains("<Code>AccessDenied</Code>") && text.contains("expired"),
            "{text}"
        );

        // Tampered signature, tampered key, and a PUT URL replayed as GET.
        let p = c
            .get_object()
            .bucket("runner-cache")
            .key(key)
            .presigned(presign_for(300))
            .await
            .unwrap();
        let uri = p.uri().to_string();
        let last = uri.chars().last().unwrap();
        let flipped = format!(
            "{}{}",
            &uri[..uri.len() - 1],
            if last == '0' { '1' } else { '0' }
        );
        let r = request(&p, &flipped).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(error_code(r).await, "SignatureDoesNotMatch");
        let other_key = uri.replace("cache.zip", "cache.ZIP");
        let r = request(&p, &other_key).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(error_code(r).await, "SignatureDoesNotMatch");
        let put = c
            .put_object()
            .bucket("runner-cache")
            .key(key)
            .presigned(presign_for(300))
            .await
            .unwrap();
        let r = client().get(put.uri()).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        let r = request(&put, put.uri())
            .body("overwrite attempt")
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            StatusCode::OK,
            "the genuine PUT URL still works"
        );

        // Wrong secret and unknown access key.
        for (access, secret, code) in [
            (ACCESS_KEY, "not-the-secret", "SignatureDoesNotMatch"),
            ("NOSUCHKEY", SECRET_KEY, "InvalidAccessKeyId"),
        ] {
            let p = sdk(&url, access, secret)
                .get_object()
                .bucket("runner-cache")
                .key(key)
                .presigned(presign_for(300))
                .await
                .unwrap();
            let r = request(&p, p.uri()).send().await.unwrap();
            assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
            assert_eq!(error_code(r).await, code);
        }
        assert!(s.metric(|m| &m.auth_failures) >= 5);
    })
    .await
    .expect("bounded in time");
}

#[tokio::test]
async fn header_signed_requests_from_the_rust_sdk() {
    tokio::time::timeout(LIMIT, async {
        let s = start(|_| {}).await;
        let c = sdk(&s.url(), ACCESS_KEY, SECRET_KEY);
        for k in ["a/1", "a/2", "a/b/3", "a/b/4", "c", "d e+f"] {
            let p = c
                .put_object()
                .bucket("bkt")
                .key(k)
                .presigned(presign_for(60))
                .await
                .unwrap();
            let r = request(&p, p.uri())
                .body(k.as_bytes().to_vec())
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::OK);
        }
        let o = c
            .get_object()
            .bucket("bkt")
            .key("d e+f")
            .send()
            .await
            .unwrap();
        assert_eq!(
            o.body.collect().await.unwrap().into_bytes().as_ref(),
            b"d e+f"
        );
        let h = c
            .head_object()
            .bucket("bkt")
            .key("a/1")
            .send()
            .await
            .unwrap();
        assert_eq!(h.content_length(), Some(3));
        // Paginated listing with a delimiter.
        let mut keys = Vec::new();
        let mut prefixes = Vec::new();
        let mut token = None;
        let mut pages = 0;
        loop {
            let page = c
                .list_objects_v2()
                .bucket("bkt")
                .delimiter("/")
                .prefix("a/")
                .max_keys(1)
                .set_continuation_token(token.clone())
                .send()
                .await
                .unwrap();
            pages += 1;
            keys.extend(
                page.contents()
                    .iter()
                    .filter_map(|o| o.key().map(str::to_string)),
            );
            prefixes.extend(
                page.common_prefixes()
                    .iter()
                    .filter_map(|p| p.prefix().map(str::to_string)),
            );
            if page.is_truncated() != Some(true) {
                break;
            }
            token = page.next_continuation_token().map(str::to_string);
        }
        assert_eq!(keys, ["a/1", "a/2"]);
        assert_eq!(prefixes, ["a/b/"]);
        assert_eq!(pages, 3);
        c.delete_object()
            .bucket("bkt")
            .key("c")
            .send()
            .await
            .unwrap();
        let e = c
            .head_object()
            .bucket("bkt")
            .key("c")
            .send()
            .await
            .unwrap_err();
        assert_eq!(e.raw_response().map(|r| r.status().as_u16()), Some(404));
        // The SDK's own PutObject: by default it streams aws-chunked with a CRC32 trailer.
        let big = bytes(300_000, 77);
        c.put_object()
            .bucket("bkt")
            .key("sdk-default-put")
            .body(aws_sdk_s3::primitives::ByteStream::from(big.clone()))
            .send()
            .await
            .unwrap();
        let o = c
            .get_object()
            .bucket("bkt")
            .key("sdk-default-put")
            .send()
            .await
            .unwrap();
        assert_eq!(o.e_tag(), Some(format!("\"{}\"", md5_hex(&big)).as_str()));
        assert!(o.body.collect().await.unwrap().into_bytes().as_ref() == big.as_slice());
        // And with checksums only when required (a plain signed body).
        let conf = c
            .config()
            .to_builder()
            .request_checksum_calculation(
                aws_sdk_s3::config::RequestChecksumCalculation::WhenRequired,
            )
            .build();
        let c2 = aws_sdk_s3::Client::from_conf(conf);
        c2.put_object()
            .bucket("bkt")
            .key("sdk-put")
            .body(aws_sdk_s3::primitives::ByteStream::from_static(
                b"from the sdk",
            ))
            .send()
            .await
            .unwrap();
        let o = c
            .get_object()
            .bucket("bkt")
            .key("sdk-put")
            .send()
            .await
            .unwrap();
        assert_eq!(
            o.body.collect().await.unwrap().into_bytes().as_ref(),
            b"from the sdk"
        );
    })
    .await
    .expect("bounded in time");
}

#[tokio::test]
async fn aws_cli_against_rift() {
    tokio::time::timeout(LIMIT, async {
        require_program("aws", "pip install awscli");
        let s = start(|_| {}).await;
        let home = tempfile::tempdir().unwrap();
        std::fs::write(
            home.path().join("config"),
            "[default]\nregion = us-east-1\ns3 =\n    addressing_style = path\n    multipart_threshold = 8MB\n    multipart_chunksize = 8MB\n",
        )
        .unwrap();
        std::fs::write(home.path().join("credentials"), "").unwrap();
        let aws = Aws {
            endpoint: s.url(),
            home: home.path(),
            ca_bundle: None,
        };
        let data = bytes(5 << 20, 5);
        let src = home.path().join("cache.zip");
        std::fs::write(&src, &data).unwrap();
        let src_s = src.to_str().unwrap();

        aws.ok(&["s3", "cp", src_s, "s3://runner-cache/project/7/key one/cache.zip"]).await;
        aws.ok(&["s3", "cp", src_s, "s3://runner-cache/project/7/other+key/cache.zip"]).await;
        let dst = home.path().join("down.zip");
        aws.ok(&["s3", "cp", "s3://runner-cache/project/7/key one/cache.zip", dst.to_str().unwrap()]).await;
        assert!(std::fs::read(&dst).unwrap() == data, "downloaded bytes differ");

        let head = aws
            .ok(&["s3api", "head-object", "--bucket", "runner-cache", "--key", "project/7/key one/cache.zip"])
            .await;
        assert!(head.contains(&format!("\\\"{}\\\"", md5_hex(&data))), "{head}");
        assert!(head.contains(&format!("\"ContentLength\": {}", 5 << 20)), "{head}");

        let ls = aws.ok(&["s3", "ls", "s3://runner-cache/project/7/"]).await;
        assert!(ls.contains("PRE key one/") && ls.contains("PRE other+key/"), "{ls}");
        let ls = aws.ok(&["s3", "ls", "--recursive", "s3://runner-cache/"]).await;
        assert!(ls.contains("project/7/key one/cache.zip") && ls.contains("project/7/other+key/cache.zip"), "{ls}");
        let buckets = aws.ok(&["s3", "ls"]).await;
        assert!(buckets.contains("runner-cache"), "{buckets}");
        let v2 = aws
            .ok(&["s3api", "list-objects-v2", "--bucket", "runner-cache", "--prefix", "project/7/other"])
            .await;
        assert!(v2.contains("project/7/other+key/cache.zip"), "{v2}");

        aws.ok(&["s3", "rm", "s3://runner-cache/project/7/key one/cache.zip"]).await;
        let out = aws
            .run(&["s3api", "head-object", "--bucket", "runner-cache", "--key", "project/7/key one/cache.zip"], SECRET_KEY)
            .await;
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("404"), "{out:?}");

        // Files over the multipart threshold go up in parts (3 x 8 MiB here, concurrently).
        let big = bytes(20 << 20, 6);
        let big_src = home.path().join("big.zip");
        std::fs::write(&big_src, &big).unwrap();
        aws.ok(&["s3", "cp", big_src.to_str().unwrap(), "s3://runner-cache/project/7/big/cache.zip"]).await;
        let big_dst = home.path().join("big-down.zip");
        aws.ok(&["s3", "cp", "s3://runner-cache/project/7/big/cache.zip", big_dst.to_str().unwrap()]).await;
        assert!(std::fs::read(&big_dst).unwrap() == big, "multipart round trip differs");
        let head = aws
            .ok(&["s3api", "head-object", "--bucket", "runner-cache", "--key", "project/7/big/cache.zip"])
            .await;
        assert!(head.contains(&format!("\"ContentLength\": {}", 20 << 20)), "{head}");
        // An aborted upload leaves nothing behind.
        let created = aws
            .ok(&["s3api", "create-multipart-upload", "--bucket", "runner-cache", "--key", "aborted"])
            .await;
        let id = created
            .split('"')
            .skip_while(|s| *s != "UploadId")
            .nth(2)
            .expect("UploadId in the answer")
            .to_string();
        aws.ok(&["s3api", "abort-multipart-upload", "--bucket", "runner-cache", "--key", "aborted", "--upload-id", &id])
            .await;
        let out = aws
            .run(&["s3api", "abort-multipart-upload", "--bucket", "runner-cache", "--key", "aborted", "--upload-id", &id], SECRET_KEY)
            .await;
        assert!(String::from_utf8_lossy(&out.stderr).contains("NoSuchUpload"), "{out:?}");
        let buckets = aws.ok(&["s3", "ls"]).await;
        assert!(!buckets.contains(".rift"), "{buckets}");

        // Recursive delete uses DeleteObjects.
        aws.ok(&["s3", "cp", src_s, "s3://runner-cache/tree/a/1.zip"]).await;
        aws.ok(&["s3", "cp", src_s, "s3://runner-cache/tree/b & c/2.zip"]).await;
        let rm = aws.ok(&["s3", "rm", "--recursive", "s3://runner-cache/tree/"]).await;
        assert!(rm.contains("delete: s3://runner-cache/tree/b & c/2.zip"), "{rm}");
        // (`aws s3 ls` exits with 1 when nothing matches.)
        let out = aws.run(&["s3", "ls", "--recursive", "s3://runner-cache/tree/"], SECRET_KEY).await;
        assert!(out.stdout.is_empty(), "{out:?}");
        assert!(out.stderr.is_empty(), "{out:?}");

        // A wrong secret is refused (401, SignatureDoesNotMatch).
        let out = aws.run(&["s3", "ls", "s3://runner-cache/"], "wrong-secret").await;
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("SignatureDoesNotMatch") || err.contains("401"), "{err}");
    })
    .await
    .expect("bounded in time");
}

#[tokio::test]
async fn aws_chunked_uploads_signed_and_with_trailer() {
    tokio::time::timeout(LIMIT, async {
        let s = start(|_| {}).await;
        let host = s.running().addr.to_string();
        let data = bytes(200_000, 21);
        let put = |path: &'static str, headers: Vec<(String, String)>, body: Vec<u8>| {
            let mut rb = client().put(format!("{}{path}", s.url()));
            for (k, v) in headers {
                if k != "host" {
                    rb = rb.header(k, v);
                }
            }
            rb.body(body).send()
        };
        let extra = [
            ("content-encoding", "aws-chunked".to_string()),
            ("x-amz-decoded-content-length", data.len().to_string()),
        ];
        // Signed chunks (what minio-go and older SDKs send over plain HTTP).
        let (h, info) = common::sign_headers(
            "PUT",
            &host,
            "/bkt/signed",
            "STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
            &extra,
        );
        let body = common::signed_chunks(&data, 65536, &info);
        let r = put("/bkt/signed", h, body.clone()).await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
        assert_eq!(
            r.headers()["etag"].to_str().unwrap(),
            format!("\"{}\"", md5_hex(&data))
        );
        let c = sdk(&s.url(), ACCESS_KEY, SECRET_KEY);
        let o = c
            .get_object()
            .bucket("bkt")
            .key("signed")
            .send()
            .await
            .unwrap();
        assert!(o.body.collect().await.unwrap().into_bytes().as_ref() == data.as_slice());

        // A tampered chunk breaks the signature chain: refused, nothing stored.
        let (h, info) = common::sign_headers(
            "PUT",
            &host,
            "/bkt/tampered",
            "STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
            &extra,
        );
        let mut body = common::signed_chunks(&data, 65536, &info);
        let i = body.len() / 2;
        body[i] ^= 1;
        let r = put("/bkt/tampered", h, body).await.unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        let e = c
            .head_object()
            .bucket("bkt")
            .key("tampered")
            .send()
            .await
            .unwrap_err();
        assert_eq!(e.raw_response().map(|r| r.status().as_u16()), Some(404));

        // Unsigned chunks with a checksum trailer (SDKs and the AWS CLI over HTTPS).
        let extra_t = [
            ("content-encoding", "aws-chunked".to_string()),
            ("x-amz-decoded-content-length", data.len().to_string()),
            ("x-amz-trailer", "x-amz-checksum-crc32".to_string()),
        ];
        let (h, _) = common::sign_headers(
            "PUT",
            &host,
            "/bkt/trailer",
            "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
            &extra_t,
        );
        let mut body = Vec::new();
        for p in data.chunks(100_000) {
            body.extend_from_slice(format!("{:x}\r\n", p.len()).as_bytes());
            body.extend_from_slice(p);
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(b"0\r\nx-amz-checksum-crc32:AAAAAA==\r\n\r\n");
        let r = put("/bkt/trailer", h, body).await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
        let o = c
            .get_object()
            .bucket("bkt")
            .key("trailer")
            .send()
            .await
            .unwrap();
        assert!(o.body.collect().await.unwrap().into_bytes().as_ref() == data.as_slice());
    })
    .await
    .expect("bounded in time");
}
