//! The [`ObjectStore`] trait (deployment IR and plans, OpenTofu states and binaries) with a
//! local-directory adapter and an S3 adapter (AWS, Yandex Object Storage, any S3-compatible
//! endpoint).

use crate::error::{Result, StateError};
use async_trait::async_trait;
use std::path::{Path, PathBuf};

/// Blobs by key (`deployments/ir/<sha256>.json`, `tofu-states/<egg>/terraform.tfstate`, …).
#[async_trait]
pub trait ObjectStore: Send + Sync {
    /// Where the objects are (URL without credentials), for messages.
    fn describe(&self) -> String;
    /// Stores `bytes` under `key`, replacing any object there.
    async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<()>;
    /// The object under `key`, if any.
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>>;
    /// Removes the object under `key` (nothing happens when there is none).
    async fn delete(&self, key: &str) -> Result<()>;
    /// Every key that starts with `prefix`, sorted.
    async fn list(&self, prefix: &str) -> Result<Vec<String>>;
}

/// Checks that a key cannot escape the store: `[A-Za-z0-9._/-]`, no empty, `.` or `..`
/// segment, no leading `/`.
pub fn check_key(key: &str) -> Result<()> {
    let ok = !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-/".contains(&b))
        && key
            .split('/')
            .all(|seg| !seg.is_empty() && seg != "." && seg != "..");
    if ok {
        Ok(())
    } else {
        Err(StateError::BadObjectKey(key.to_string()))
    }
}

/// Objects as files under a directory (the Nest's `.gosling/objects/` by default).
#[derive(Debug)]
pub struct LocalObjects {
    root: PathBuf,
    read_only: bool,
}

impl LocalObjects {
    /// Objects under `root` (created on the first write unless read-only).
    pub fn new(root: &Path, read_only: bool) -> LocalObjects {
        LocalObjects {
            root: root.to_path_buf(),
            read_only,
        }
    }

    fn io(path: &Path, source: std::io::Error) -> StateError {
        StateError::Io {
            path: path.display().to_string(),
            source,
        }
    }
}

#[async_trait]
impl ObjectStore for LocalObjects {
    fn describe(&self) -> String {
        format!("file://{}", self.root.display())
    }

    async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<()> {
        check_key(key)?;
        if self.read_only {
            return Err(StateError::ReadOnly);
        }
        let path = self.root.join(key);
        let dir = path.parent().unwrap_or(&self.root);
        std::fs::create_dir_all(dir).map_err(|e| Self::io(dir, e))?;
        // Write beside, then rename: a reader never sees half an object.
        let tmp = dir.join(format!(
            ".{}.tmp-{}",
            path.file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("object"),
            std::process::id()
        ));
        std::fs::write(&tmp, &bytes).map_err(|e| Self::io(&tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| Self::io(&path, e))
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        check_key(key)?;
        let path = self.root.join(key);
        match std::fs::read(&path) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Self::io(&path, e)),
        }
    }

    async fn delete(&self, key: &str) -> Result<()> {
        check_key(key)?;
        if self.read_only {
            return Err(StateError::ReadOnly);
        }
        let path = self.root.join(key);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Self::io(&path, e)),
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>> {
        let mut out = Vec::new();
        let mut stack = vec![self.root.clone()];
        while let Some(dir) = stack.pop() {
            let entries = match std::fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Self::io(&dir, e)),
            };
            for entry in entries {
                let entry = entry.map_err(|e| Self::io(&dir, e))?;
                let path = entry.path();
                let name = entry.file_name();
                if name.to_string_lossy().starts_with('.') {
                    continue;
                }
                if path.is_dir() {
                    stack.push(path);
                } else if let Ok(rel) = path.strip_prefix(&self.root) {
                    let key = rel.to_string_lossy().replace('\\', "/");
                    if key.starts_with(prefix) {
                        out.push(key);
                    }
                }
            }
        }
        out.sort();
        Ok(out)
    }
}

/// Objects in an S3 bucket under a prefix.
#[derive(Debug)]
pub struct S3Objects {
    client: aws_sdk_s3::Client,
    bucket: String,
    prefix: String,
    read_only: bool,
}

fn s3_err(operation: String, e: impl std::error::Error) -> StateError {
    StateError::Remote {
        service: "S3",
        operation,
        message: aws_sdk_s3::error::DisplayErrorContext(e).to_string(),
    }
}

impl S3Objects {
    /// Objects in `bucket` under `prefix` (without a trailing `/`), through `client`.
    pub fn new(
        client: aws_sdk_s3::Client,
        bucket: &str,
        prefix: &str,
        read_only: bool,
    ) -> S3Objects {
        S3Objects {
            client,
            bucket: bucket.to_string(),
            prefix: prefix.trim_matches('/').to_string(),
            read_only,
        }
    }

    fn full(&self, key: &str) -> String {
        if self.prefix.is_empty() {
            key.to_string()
        } else {
            format!("{}/{key}", self.prefix)
        }
    }

    /// Creates the bucket (for tests and local trials; production buckets come from IaC).
    pub async fn create_bucket(&self) -> Result<()> {
        self.client
            .create_bucket()
            .bucket(&self.bucket)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| s3_err(format!("CreateBucket {}", self.bucket), e))
    }
}

#[async_trait]
impl ObjectStore for S3Objects {
    fn describe(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.prefix)
    }

    async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<()> {
        check_key(key)?;
        if self.read_only {
            return Err(StateError::ReadOnly);
        }
        let full = self.full(key);
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(&full)
            .body(bytes.into())
            .send()
            .await
            .map(|_| ())
            .map_err(|e| s3_err(format!("PutObject s3://{}/{full}", self.bucket), e))
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        check_key(key)?;
        let full = self.full(key);
        let op = || format!("GetObject s3://{}/{full}", self.bucket);
        match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(&full)
            .send()
            .await
        {
            Ok(out) => {
                let data = out.body.collect().await.map_err(|e| s3_err(op(), e))?;
                Ok(Some(data.into_bytes().to_vec()))
            }
            Err(e) => {
                if e.as_service_error().is_some_and(|s| s.is_no_such_key()) {
                    Ok(None)
                } else {
                    Err(s3_err(op(), e))
                }
            }
        }
    }

    async fn delete(&self, key: &str) -> Result<()> {
        check_key(key)?;
        if self.read_only {
            return Err(StateError::ReadOnly);
        }
        let full = self.full(key);
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(&full)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| s3_err(format!("DeleteObject s3://{}/{full}", self.bucket), e))
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>> {
        let base = if self.prefix.is_empty() {
            String::new()
        } else {
            format!("{}/", self.prefix)
        };
        let mut out = Vec::new();
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(format!("{base}{prefix}"))
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page =
                page.map_err(|e| s3_err(format!("ListObjectsV2 s3://{}", self.bucket), e))?;
            for obj in page.contents() {
                if let Some(k) = obj.key().and_then(|k| k.strip_prefix(&base)) {
                    out.push(k.to_string());
                }
            }
        }
        out.sort();
        Ok(out)
    }
}
