//! The on-disk object store and its in-memory LRU index.
//!
//! Every object is one immutable file `objects/<hh>/<sha256(key)>-<generation>.obj` holding a
//! small binary header (key, content type, size, MD5, modification time) followed by the body.
//! Uploads stream into `tmp/`, are checksummed while they are written, and are renamed into
//! `objects/` only once complete: a cut connection or a crash never leaves a partial object
//! that a later read would serve. A newer generation of a key replaces the older one in the
//! index atomically; readers that already opened the older file keep reading it untouched.
//!
//! The index (key → generation, size, ETag, age, recency) is rebuilt from the headers on start,
//! so a restart finds every committed object again. Eviction removes least-recently-used
//! objects until the total size is within the limit, and objects older than the optional
//! maximum age.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use http::HeaderValue;
use sha2::{Digest as _, Sha256};
use tokio::sync::mpsc;

use crate::etag::Md5;
use crate::metrics::{Metrics, StoreGauges};

const MAGIC: &[u8; 8] = b"RIFTOBJ1";
/// magic + body_len + md5 + modified + ctype_len + key_len
const FIXED_HEADER: usize = 8 + 8 + 16 + 8 + 2 + 4;
/// Longest key accepted (bucket, `/`, object key), in bytes.
pub const MAX_KEY_LEN: usize = 1100;
/// Longest content type stored; longer ones are replaced by the default.
const MAX_CTYPE_LEN: usize = 255;
/// Objects whose file is at most this big are read in one go.
const SMALL_FILE: u64 = 128 * 1024;
/// How much of a large file is read to parse its header.
const HEADER_PROBE: usize = 4096;

/// Configuration of a [`Store`].
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// Directory holding `objects/` and `tmp/`; created if missing.
    pub dir: PathBuf,
    /// Total size limit (headers included); least-recently-used objects are evicted beyond it.
    pub max_bytes: u64,
    /// Objects older than this are evicted (checked on read and by [`Store::sweep_expired`]).
    pub max_age: Option<Duration>,
    /// Largest single object accepted.
    pub max_object_size: u64,
    /// Whether to `fsync` an upload before renaming it into place.
    pub fsync: bool,
    /// Memory for small objects kept for reading without disk access (0 turns it off).
    pub memory_cache: u64,
}

/// Errors of the store. None of them leaves a partial object behind.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A file system operation failed.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file or directory concerned.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The object is larger than the configured limit.
    #[error("object of at least {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// Bytes declared or received so far.
        size: u64,
        /// The limit in force.
        limit: u64,
    },
    /// The body ended before the declared length.
    #[error("upload ended after {received} of {expected} bytes")]
    Incomplete {
        /// Declared length.
        expected: u64,
        /// Bytes received.
        received: u64,
    },
    /// The body was longer than the declared length.
    #[error("upload has more than the declared {expected} bytes")]
    TooLong {
        /// Declared length.
        expected: u64,
    },
    /// Reading the request body failed (for example the connection was cut).
    #[error("upload body failed: {0}")]
    Body(String),
    /// The body's SHA-256 differs from the signed `x-amz-content-sha256`.
    #[error("the body's SHA-256 does not match x-amz-content-sha256")]
    Sha256Mismatch,
    /// The body's MD5 differs from `Content-MD5`.
    #[error("the body's MD5 does not match Content-MD5")]
    Md5Mismatch,
    /// The key is empty, too long, or contains a NUL byte.
    #[error("invalid key: {0}")]
    InvalidKey(&'static str),
    /// A background task of the store failed.
    #[error("store task failed: {0}")]
    Task(String),
}

impl StoreError {
    fn io(path: &Path, source: io::Error) -> Self {
        StoreError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// What is known about a stored object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    /// The full key (`bucket/key`).
    pub key: String,
    /// Body length in bytes.
    pub size: u64,
    /// MD5 of the body (the S3 single-part ETag).
    pub md5: [u8; 16],
    /// Modification time, seconds since the Unix epoch.
    pub modified: i64,
    /// Content type given at upload.
    pub content_type: String,
}

impl ObjectMeta {
    /// The ETag as S3 shows it: the MD5 in hex, in double quotes.
    pub fn etag(&self) -> String {
        format!("\"{}\"", hex::encode(self.md5))
    }
}

/// An object opened for reading. The file stays readable even if the object is replaced or
/// evicted meanwhile.
#[derive(Debug)]
pub struct OpenObject {
    /// The object's metadata, read from the file itself.
    pub meta: ObjectMeta,
    /// The whole body when the object is small.
    pub small: Option<Bytes>,
    /// The open file (positioned anywhere; use `body_offset`).
    pub file: File,
    /// Offset of the body in the file.
    pub body_offset: u64,
}

/// A stream of body bytes.
pub type ByteStream =
    std::pin::Pin<Box<dyn Stream<Item = Result<Bytes, io::Error>> + Send + 'static>>;

/// Read size when streaming large objects.
const STREAM_CHUNK: usize = 1024 * 1024;

impl OpenObject {
    /// Streams `len` body bytes starting at body offset `start` (both within the body).
    pub fn into_stream(self, start: u64, len: u64) -> Result<ByteStream, io::Error> {
        if let Some(b) = self.small {
            let s = usize::try_from(start).unwrap_or(usize::MAX).min(b.len());
            let e = s
                .saturating_add(usize::try_from(len).unwrap_or(usize::MAX))
                .min(b.len());
            let chunk = b.slice(s..e);
            return Ok(Box::pin(futures_util::stream::once(
                async move { Ok(chunk) },
            )));
        }
        // Each chunk is read with `pread` on the blocking pool straight into the buffer that
        // is sent (no intermediate copy); the buffer's memory is used again once the
        // connection has written the previous chunks.
        let first = self.body_offset + start;
        let state = (Arc::new(self.file), first, first + len, BytesMut::new());
        let stream =
            futures_util::stream::try_unfold(state, |(file, pos, end, mut buf)| async move {
                if pos >= end {
                    return Ok(None);
                }
                let n = usize::try_from(end - pos)
                    .unwrap_or(usize::MAX)
                    .min(STREAM_CHUNK);
                buf.reserve(n);
                buf.resize(n, 0);
                let f = Arc::clone(&file);
                let (mut buf, read) = tokio::task::spawn_blocking(move || {
                    let r = f.read_exact_at(&mut buf[..], pos);
                    (buf, r)
                })
                .await
                .map_err(io::Error::other)?;
                read?;
                let chunk = buf.split().freeze();
                Ok(Some((chunk, (file, pos + n as u64, end, buf))))
            });
        Ok(Box::pin(stream))
    }
}

/// One entry of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListEntry {
    /// The full key (`bucket/key`).
    pub key: String,
    /// Body length.
    pub size: u64,
    /// Body MD5.
    pub md5: [u8; 16],
    /// Modification time (Unix seconds).
    pub modified: i64,
}

/// Options of an upload.
#[derive(Debug, Clone, Default)]
pub struct PutOptions {
    /// Content type to store (default `binary/octet-stream`).
    pub content_type: Option<String>,
    /// Declared body length (`Content-Length`), enforced exactly when given.
    pub expected_len: Option<u64>,
    /// Expected SHA-256 of the body (signed `x-amz-content-sha256`).
    pub expected_sha256: Option<[u8; 32]>,
    /// Expected MD5 of the body (`Content-MD5`).
    pub expected_md5: Option<[u8; 16]>,
}

#[derive(Debug, Clone)]
struct Entry {
    gen: u64,
    file_len: u64,
    size: u64,
    md5: [u8; 16],
    modified: i64,
    tick: u64,
    /// This very generation, in memory.
    hot: Option<Arc<Hot>>,
    /// Read since the memory cache last looked at it (second chance).
    hot_ref: bool,
}

impl Entry {
    /// The index entry of generation `gen` of an object, not yet used.
    fn new(gen: u64, file_len: u64, meta: &ObjectMeta) -> Entry {
        Entry {
            gen,
            file_len,
            size: meta.size,
            md5: meta.md5,
            modified: meta.modified,
            tick: 0,
            hot: None,
            hot_ref: false,
        }
    }
}

/// A small object held in memory, with the response headers that describe it.
///
/// It is attached to one generation of a key in the index and leaves with it: replacing,
/// deleting or evicting the key drops it, so a read never sees an older write through it.
#[derive(Debug)]
pub struct Hot {
    /// The object's metadata.
    pub meta: ObjectMeta,
    /// The whole body.
    pub body: Bytes,
    /// `ETag`.
    pub etag: HeaderValue,
    /// `Last-Modified`.
    pub last_modified: HeaderValue,
    /// `Content-Type`.
    pub content_type: HeaderValue,
}

impl Hot {
    fn new(meta: ObjectMeta, body: Bytes) -> Hot {
        let headers = ObjectHeaders::of(&meta);
        Hot {
            meta,
            body,
            etag: headers.etag,
            last_modified: headers.last_modified,
            content_type: headers.content_type,
        }
    }

    /// Memory charged for it.
    fn cost(&self) -> u64 {
        // The body shares its allocation with the file's header.
        (FIXED_HEADER
            + self.meta.content_type.len()
            + 2 * self.meta.key.len()
            + self.body.len()
            + HOT_OVERHEAD) as u64
    }
}

/// Memory charged for a hot object beyond its body and key.
const HOT_OVERHEAD: usize = 256;

/// The response headers that describe an object.
#[derive(Debug, Clone)]
pub struct ObjectHeaders {
    /// `ETag`.
    pub etag: HeaderValue,
    /// `Last-Modified`.
    pub last_modified: HeaderValue,
    /// `Content-Type` (`binary/octet-stream` when the stored one is not a valid header).
    pub content_type: HeaderValue,
}

impl ObjectHeaders {
    /// The headers of `meta`.
    pub fn of(meta: &ObjectMeta) -> ObjectHeaders {
        ObjectHeaders {
            etag: HeaderValue::from_str(&meta.etag())
                .unwrap_or_else(|_| HeaderValue::from_static("\"\"")),
            last_modified: HeaderValue::from_str(&crate::s3::http_date(meta.modified))
                .unwrap_or_else(|_| HeaderValue::from_static("Thu, 01 Jan 1970 00:00:00 GMT")),
            content_type: HeaderValue::from_str(&meta.content_type)
                .unwrap_or_else(|_| HeaderValue::from_static("binary/octet-stream")),
        }
    }
}

#[derive(Debug, Default)]
struct Index {
    entries: BTreeMap<String, Entry>,
    lru: BTreeMap<u64, String>,
    tick: u64,
    next_gen: u64,
    total: u64,
    /// Memory used by hot objects, and their number.
    hot_total: u64,
    hot_count: usize,
    /// Hot objects in the order they were made hot (the clock of a second-chance policy).
    /// Entries of keys since replaced or removed are skipped when met.
    hot_ring: VecDeque<(String, u64)>,
}

impl Index {
    fn touch(&mut self, key: &str) {
        self.tick += 1;
        let tick = self.tick;
        if let Some(e) = self.entries.get_mut(key) {
            let old = std::mem::replace(&mut e.tick, tick);
            if let Some(k) = self.lru.remove(&old) {
                self.lru.insert(tick, k);
            }
        }
    }

    fn remove(&mut self, key: &str) -> Option<Entry> {
        let mut e = self.entries.remove(key)?;
        self.lru.remove(&e.tick);
        self.total = self.total.saturating_sub(e.file_len);
        if let Some(h) = e.hot.take() {
            self.hot_total = self.hot_total.saturating_sub(h.cost());
            self.hot_count -= 1;
        }
        Some(e)
    }

    /// The hot copy of `key`, marked as used, when it has one (and is not expired: the
    /// caller checks with `fresh`).
    fn hot(&mut self, key: &str, fresh: impl Fn(&Entry) -> bool) -> Option<Arc<Hot>> {
        let e = self.entries.get_mut(key)?;
        let hot = e.hot.as_ref()?;
        if !fresh(e) {
            return None;
        }
        let hot = Arc::clone(hot);
        e.hot_ref = true;
        self.tick += 1;
        let old = std::mem::replace(&mut e.tick, self.tick);
        if let Some(k) = self.lru.remove(&old) {
            self.lru.insert(self.tick, k);
        }
        Some(hot)
    }

    /// Keeps `hot` in memory for generation `gen` of `key`, if that is still the current one,
    /// then makes room within `limit` by dropping hot copies not read recently.
    fn make_hot(&mut self, key: &str, gen: u64, hot: Arc<Hot>, limit: u64) {
        let cost = hot.cost();
        if cost > limit {
            return;
        }
        let Some(e) = self.entries.get_mut(key) else {
            return;
        };
        if e.gen != gen || e.hot.is_some() {
            return;
        }
        e.hot = Some(hot);
        e.hot_ref = false;
        self.hot_total += cost;
        self.hot_count += 1;
        self.hot_ring.push_back((key.to_string(), gen));
        // Every pass either drops a copy or clears a mark, so this ends within two turns.
        while self.hot_total > limit {
            let Some((k, g)) = self.hot_ring.pop_front() else {
                break;
            };
            let Some(e) = self.entries.get_mut(&k).filter(|e| e.gen == g) else {
                continue;
            };
            if e.hot_ref {
                e.hot_ref = false;
                self.hot_ring.push_back((k, g));
            } else if let Some(h) = e.hot.take() {
                self.hot_total = self.hot_total.saturating_sub(h.cost());
                self.hot_count -= 1;
            }
        }
        // Entries of replaced or removed keys accumulate: sweep them out now and then.
        if self.hot_ring.len() > 2 * self.hot_count + 64 {
            let entries = &self.entries;
            self.hot_ring.retain(|(k, g)| {
                entries
                    .get(k)
                    .is_some_and(|e| e.gen == *g && e.hot.is_some())
            });
        }
    }

    fn insert(&mut self, key: String, mut e: Entry) -> Option<Entry> {
        let old = self.remove(&key);
        self.tick += 1;
        e.tick = self.tick;
        self.total += e.file_len;
        self.lru.insert(e.tick, key.clone());
        self.entries.insert(key, e);
        old
    }
}

/// The object store. Cheap to share behind an [`Arc`].
#[derive(Debug)]
pub struct Store {
    cfg: StoreConfig,
    objects: PathBuf,
    tmp: PathBuf,
    index: Mutex<Index>,
    tmp_counter: AtomicU64,
    metrics: Arc<Metrics>,
}

fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// The two lowercase hex digits of `b`.
fn hex_byte(b: u8) -> [u8; 2] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    [DIGITS[usize::from(b >> 4)], DIGITS[usize::from(b & 15)]]
}

fn key_hash(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// Checks a full key (`bucket/key`).
pub fn validate_key(key: &str) -> Result<(), StoreError> {
    if key.is_empty() {
        return Err(StoreError::InvalidKey("empty"));
    }
    if key.len() > MAX_KEY_LEN {
        return Err(StoreError::InvalidKey("longer than 1100 bytes"));
    }
    if key.as_bytes().contains(&0) {
        return Err(StoreError::InvalidKey("contains a NUL byte"));
    }
    Ok(())
}

fn encode_header(body_len: u64, md5: &[u8; 16], modified: i64, ctype: &str, key: &str) -> Vec<u8> {
    let mut h = Vec::with_capacity(FIXED_HEADER + ctype.len() + key.len());
    h.extend_from_slice(MAGIC);
    h.extend_from_slice(&body_len.to_le_bytes());
    h.extend_from_slice(md5);
    h.extend_from_slice(&modified.to_le_bytes());
    h.extend_from_slice(&(ctype.len() as u16).to_le_bytes());
    h.extend_from_slice(&(key.len() as u32).to_le_bytes());
    h.extend_from_slice(ctype.as_bytes());
    h.extend_from_slice(key.as_bytes());
    h
}

/// Parses a header from the start of a file; returns the metadata and the body offset.
fn decode_header(buf: &[u8]) -> Option<(ObjectMeta, u64)> {
    if buf.len() < FIXED_HEADER || &buf[..8] != MAGIC {
        return None;
    }
    let body_len = u64::from_le_bytes(buf[8..16].try_into().ok()?);
    let md5: [u8; 16] = buf[16..32].try_into().ok()?;
    let modified = i64::from_le_bytes(buf[32..40].try_into().ok()?);
    let ctype_len = u16::from_le_bytes(buf[40..42].try_into().ok()?) as usize;
    let key_len = u32::from_le_bytes(buf[42..46].try_into().ok()?) as usize;
    if key_len > MAX_KEY_LEN || ctype_len > MAX_CTYPE_LEN {
        return None;
    }
    let end = FIXED_HEADER + ctype_len + key_len;
    if buf.len() < end {
        return None;
    }
    let ctype = std::str::from_utf8(&buf[FIXED_HEADER..FIXED_HEADER + ctype_len]).ok()?;
    let key = std::str::from_utf8(&buf[FIXED_HEADER + ctype_len..end]).ok()?;
    Some((
        ObjectMeta {
            key: key.to_string(),
            size: body_len,
            md5,
            modified,
            content_type: ctype.to_string(),
        },
        end as u64,
    ))
}

fn read_prefix(file: &mut File, len: usize) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; len];
    let mut filled = 0;
    while filled < len {
        match file.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(filled);
    Ok(buf)
}

enum Chunk {
    Data(Bytes),
    Finish,
}

struct Written {
    body_len: u64,
    md5: [u8; 16],
    sha256: Option<[u8; 32]>,
    modified: i64,
}

/// Removes a temporary file unless disarmed.
struct TmpGuard(Option<PathBuf>);

impl Drop for TmpGuard {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = fs::remove_file(p);
        }
    }
}

/// Checks the body's digests against those the client declared.
fn check_digests(
    opts: &PutOptions,
    md5: [u8; 16],
    sha256: Option<[u8; 32]>,
) -> Result<(), StoreError> {
    if let (Some(exp), Some(got)) = (opts.expected_sha256, sha256) {
        if exp != got {
            return Err(StoreError::Sha256Mismatch);
        }
    }
    if let Some(exp) = opts.expected_md5 {
        if exp != md5 {
            return Err(StoreError::Md5Mismatch);
        }
    }
    Ok(())
}

/// Uploads of a declared length up to this are received whole before they are written.
const SMALL_PUT: u64 = 256 * 1024;

/// Most chunks written with one `writev`.
const WRITE_BATCH: usize = 64;

/// Writes all of `bufs` (advancing over partial writes).
fn write_all_vectored(file: &mut File, mut bufs: &mut [io::IoSlice<'_>]) -> io::Result<()> {
    io::IoSlice::advance_slices(&mut bufs, 0);
    while !bufs.is_empty() {
        match file.write_vectored(bufs) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => io::IoSlice::advance_slices(&mut bufs, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn writer_thread(
    path: &Path,
    header: &[u8],
    mut rx: mpsc::Receiver<Chunk>,
    want_sha: bool,
    fsync: bool,
) -> Result<Written, StoreError> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|e| StoreError::io(path, e))?;
    // The MD5 runs on the ETag engine while this thread writes (see `etag`).
    let mut md5 = Md5::new();
    let mut sha = want_sha.then(Sha256::new);
    let mut n: u64 = 0;
    let mut header = Some(header);
    let mut batch: Vec<Bytes> = Vec::with_capacity(WRITE_BATCH);
    let mut finished = false;
    while !finished {
        // Everything already received is written with one system call, without copying.
        match rx.blocking_recv() {
            Some(Chunk::Data(b)) => batch.push(b),
            Some(Chunk::Finish) => finished = true,
            None => return Err(StoreError::Body("upload cancelled".into())),
        }
        while !finished && batch.len() < WRITE_BATCH {
            match rx.try_recv() {
                Ok(Chunk::Data(b)) => batch.push(b),
                Ok(Chunk::Finish) => finished = true,
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => {
                    return Err(StoreError::Body("upload cancelled".into()))
                }
            }
        }
        for b in &batch {
            if let Some(s) = sha.as_mut() {
                s.update(b);
            }
            md5.update(b.clone())
                .map_err(|e| StoreError::Task(e.to_string()))?;
            n += b.len() as u64;
        }
        let mut slices: Vec<io::IoSlice<'_>> = Vec::with_capacity(batch.len() + 1);
        if let Some(h) = header.take() {
            slices.push(io::IoSlice::new(h));
        }
        slices.extend(batch.iter().map(|b| io::IoSlice::new(b)));
        write_all_vectored(&mut file, &mut slices).map_err(|e| StoreError::io(path, e))?;
        drop(slices);
        batch.clear();
    }
    let md5 = md5.finish().map_err(|e| StoreError::Task(e.to_string()))?;
    let modified = now_unix();
    let mut patch = [0u8; 32];
    patch[..8].copy_from_slice(&n.to_le_bytes());
    patch[8..24].copy_from_slice(&md5);
    patch[24..].copy_from_slice(&modified.to_le_bytes());
    file.write_all_at(&patch, 8)
        .map_err(|e| StoreError::io(path, e))?;
    if fsync {
        file.sync_data().map_err(|e| StoreError::io(path, e))?;
    }
    Ok(Written {
        body_len: n,
        md5,
        sha256: sha.map(|s| s.finalize().into()),
        modified,
    })
}

impl Store {
    /// Opens (or creates) a store, rebuilding the index from the objects found on disk and
    /// deleting leftovers of interrupted uploads.
    pub fn open(cfg: StoreConfig, metrics: Arc<Metrics>) -> Result<Arc<Self>, StoreError> {
        let objects = cfg.dir.join("objects");
        let tmp = cfg.dir.join("tmp");
        for d in [&cfg.dir, &objects, &tmp] {
            fs::create_dir_all(d).map_err(|e| StoreError::io(d, e))?;
        }
        // Interrupted uploads are never resumed: clear them.
        let rd = fs::read_dir(&tmp).map_err(|e| StoreError::io(&tmp, e))?;
        for ent in rd.flatten() {
            let _ = fs::remove_file(ent.path());
        }
        let store = Arc::new(Store {
            cfg,
            objects,
            tmp,
            index: Mutex::new(Index::default()),
            tmp_counter: AtomicU64::new(0),
            metrics,
        });
        store.rebuild()?;
        Ok(store)
    }

    /// The configuration in force.
    pub fn config(&self) -> &StoreConfig {
        &self.cfg
    }

    fn lock(&self) -> MutexGuard<'_, Index> {
        // A panic while holding the lock cannot leave the index inconsistent in a way that
        // matters more than refusing service, so recover the guard.
        self.index.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn object_path(&self, key: &str, gen: u64) -> PathBuf {
        // objects/<hh>/<sha256 hex>-<gen as 16 hex digits>.obj, built in one buffer.
        let mut name = [0u8; 3 + 64 + 1 + 16 + 4];
        let digest: [u8; 32] = Sha256::digest(key.as_bytes()).into();
        name[..2].copy_from_slice(hex_byte(digest[0]).as_slice());
        name[2] = b'/';
        for (i, b) in digest.iter().enumerate() {
            name[3 + 2 * i..5 + 2 * i].copy_from_slice(hex_byte(*b).as_slice());
        }
        name[67] = b'-';
        for (i, b) in gen.to_be_bytes().iter().enumerate() {
            name[68 + 2 * i..70 + 2 * i].copy_from_slice(hex_byte(*b).as_slice());
        }
        name[84..].copy_from_slice(b".obj");
        let name = std::str::from_utf8(&name).expect("hex digits are ASCII");
        let mut path = PathBuf::with_capacity(self.objects.as_os_str().len() + 1 + name.len());
        path.push(&self.objects);
        path.push(name);
        path
    }

    fn rebuild(&self) -> Result<(), StoreError> {
        struct Found {
            entry: Entry,
            path: PathBuf,
        }
        let mut found: HashMap<String, Found> = HashMap::new();
        let mut max_gen = 0u64;
        let mut stale: Vec<PathBuf> = Vec::new();
        // Shard directories (`objects/<hh>/`) are created on first use.
        let shards: Vec<PathBuf> = fs::read_dir(&self.objects)
            .map_err(|e| StoreError::io(&self.objects, e))?
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.is_dir())
            .collect();
        for d in shards {
            let rd = match fs::read_dir(&d) {
                Ok(rd) => rd,
                Err(e) => return Err(StoreError::io(&d, e)),
            };
            for ent in rd.flatten() {
                let path = ent.path();
                let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                    continue;
                };
                let Some(stem) = name.strip_suffix(".obj") else {
                    continue;
                };
                let Some((hash, gen_hex)) = stem.split_once('-') else {
                    continue;
                };
                let Ok(gen) = u64::from_str_radix(gen_hex, 16) else {
                    continue;
                };
                let parsed = File::open(&path).and_then(|mut f| {
                    let len = f.metadata()?.len();
                    let prefix = read_prefix(&mut f, HEADER_PROBE)?;
                    Ok((len, prefix))
                });
                let valid = match parsed {
                    Ok((file_len, prefix)) => decode_header(&prefix).and_then(|(meta, off)| {
                        (off + meta.size == file_len && key_hash(&meta.key) == hash)
                            .then_some((meta, file_len))
                    }),
                    Err(_) => None,
                };
                let Some((meta, file_len)) = valid else {
                    tracing::warn!(path = %path.display(), "removing unreadable or truncated object");
                    stale.push(path);
                    continue;
                };
                max_gen = max_gen.max(gen);
                let entry = Entry::new(gen, file_len, &meta);
                match found.get(&meta.key) {
                    Some(prev) if prev.entry.gen > gen => stale.push(path),
                    _ => {
                        if let Some(prev) = found.insert(meta.key, Found { entry, path }) {
                            stale.push(prev.path);
                        }
                    }
                }
            }
        }
        for p in stale {
            let _ = fs::remove_file(p);
        }
        let mut items: Vec<(String, Found)> = found.into_iter().collect();
        // Recency is not persisted: the oldest modification is treated as least recently used.
        items.sort_by(|a, b| {
            a.1.entry
                .modified
                .cmp(&b.1.entry.modified)
                .then(a.0.cmp(&b.0))
        });
        let victims = {
            let mut idx = self.lock();
            idx.next_gen = max_gen + 1;
            for (key, f) in items {
                idx.insert(key, f.entry);
            }
            let mut v = self.expire_locked(&mut idx);
            v.extend(self.evict_locked(&mut idx));
            v
        };
        self.delete_files(victims);
        let idx = self.lock();
        tracing::info!(
            objects = idx.entries.len(),
            bytes = idx.total,
            "cache index rebuilt from disk"
        );
        Ok(())
    }

    fn expire_locked(&self, idx: &mut Index) -> Vec<PathBuf> {
        let Some(max_age) = self.cfg.max_age else {
            return Vec::new();
        };
        let cutoff = now_unix() - max_age.as_secs() as i64;
        let expired: Vec<String> = idx
            .entries
            .iter()
            .filter(|(_, e)| e.modified < cutoff)
            .map(|(k, _)| k.clone())
            .collect();
        let mut victims = Vec::with_capacity(expired.len());
        for k in expired {
            if let Some(e) = idx.remove(&k) {
                Metrics::inc(&self.metrics.evictions);
                victims.push(self.object_path(&k, e.gen));
            }
        }
        victims
    }

    fn evict_locked(&self, idx: &mut Index) -> Vec<PathBuf> {
        let mut victims = Vec::new();
        while idx.total > self.cfg.max_bytes {
            let Some((_, key)) = idx.lru.pop_first() else {
                break;
            };
            if let Some(e) = idx.remove(&key) {
                Metrics::inc(&self.metrics.evictions);
                tracing::debug!(%key, bytes = e.file_len, "evicted");
                victims.push(self.object_path(&key, e.gen));
            }
        }
        victims
    }

    fn delete_files(&self, victims: Vec<PathBuf>) {
        for p in victims {
            if let Err(e) = fs::remove_file(&p) {
                if e.kind() != io::ErrorKind::NotFound {
                    tracing::warn!(path = %p.display(), error = %e, "could not delete evicted object");
                }
            }
        }
    }

    fn is_expired(&self, e: &Entry) -> bool {
        match self.cfg.max_age {
            Some(age) => e.modified < now_unix() - age.as_secs() as i64,
            None => false,
        }
    }

    /// The largest body an upload may have: the object limit, and the cache must be able to
    /// hold it.
    pub fn upload_limit(&self, key_len: usize) -> u64 {
        let overhead = (FIXED_HEADER + MAX_CTYPE_LEN + key_len) as u64;
        self.cfg
            .max_object_size
            .min(self.cfg.max_bytes.saturating_sub(overhead))
    }

    /// Stores a body under `key`, streaming it to a temporary file and committing it only when
    /// it is complete and matches the declared length and checksums.
    pub async fn put_stream<S, E>(
        self: &Arc<Self>,
        key: &str,
        opts: PutOptions,
        mut body: S,
    ) -> Result<ObjectMeta, StoreError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        validate_key(key)?;
        let limit = self.upload_limit(key.len());
        if let Some(n) = opts.expected_len {
            if n > limit {
                return Err(StoreError::TooLarge { size: n, limit });
            }
        }
        let ctype = match opts.content_type.clone() {
            Some(c) if !c.is_empty() && c.len() <= MAX_CTYPE_LEN => c,
            _ => "binary/octet-stream".to_string(),
        };
        if let Some(n) = opts.expected_len.filter(|&n| n <= SMALL_PUT) {
            return self.put_small(key, opts, ctype, n, body).await;
        }
        let header = encode_header(0, &[0; 16], 0, &ctype, key);
        let header_len = header.len() as u64;
        let n = self.tmp_counter.fetch_add(1, Ordering::Relaxed);
        let tmp_path = self.tmp.join(format!("{}-{n}.part", std::process::id()));
        let (tx, rx) = mpsc::channel::<Chunk>(8);
        let want_sha = opts.expected_sha256.is_some();
        let fsync = self.cfg.fsync;
        let writer_path = tmp_path.clone();
        // Removes the temporary file if this future is dropped (connection cut) at any point.
        let guard = TmpGuard(Some(tmp_path.clone()));
        // The writer owns the temporary file until it returns; on any error it removes it.
        let writer = tokio::task::spawn_blocking(move || {
            let r = writer_thread(&writer_path, &header, rx, want_sha, fsync);
            if r.is_err() {
                let _ = fs::remove_file(&writer_path);
            }
            r
        });
        let mut received: u64 = 0;
        let feed: Result<(), StoreError> = async {
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(|e| StoreError::Body(e.to_string()))?;
                received += chunk.len() as u64;
                if let Some(exp) = opts.expected_len {
                    if received > exp {
                        return Err(StoreError::TooLong { expected: exp });
                    }
                }
                if received > limit {
                    return Err(StoreError::TooLarge {
                        size: received,
                        limit,
                    });
                }
                if chunk.is_empty() {
                    continue;
                }
                if tx.send(Chunk::Data(chunk)).await.is_err() {
                    // The writer failed (disk full, …): its error is the answer.
                    return Ok(());
                }
            }
            if let Some(exp) = opts.expected_len {
                if received < exp {
                    return Err(StoreError::Incomplete {
                        expected: exp,
                        received,
                    });
                }
            }
            Ok(())
        }
        .await;
        if feed.is_ok() {
            let _ = tx.send(Chunk::Finish).await;
        }
        drop(tx);
        let written = writer
            .await
            .map_err(|e| StoreError::Task(e.to_string()))
            .and_then(|r| r);
        let result = feed
            .and(written)
            .and_then(|w| check_digests(&opts, w.md5, w.sha256).map(|()| w));
        let w = match result {
            Ok(w) => w,
            Err(e) => {
                Metrics::inc(&self.metrics.uploads_aborted);
                drop(guard);
                return Err(e);
            }
        };
        let meta = ObjectMeta {
            key: key.to_string(),
            size: w.body_len,
            md5: w.md5,
            modified: w.modified,
            content_type: ctype,
        };
        let store = Arc::clone(self);
        let commit_meta = meta.clone();
        let committed = tokio::task::spawn_blocking(move || {
            store.commit(&tmp_path, &commit_meta, header_len + commit_meta.size)
        })
        .await
        .map_err(|e| StoreError::Task(e.to_string()))
        .and_then(|r| r);
        match committed {
            Ok(()) => {
                std::mem::forget(guard);
                Metrics::inc(&self.metrics.uploads_committed);
                Metrics::add(&self.metrics.bytes_in, meta.size);
                Ok(meta)
            }
            Err(e) => {
                Metrics::inc(&self.metrics.uploads_aborted);
                drop(guard);
                Err(e)
            }
        }
    }

    /// An upload of a declared length of at most [`SMALL_PUT`] bytes: received whole, then
    /// hashed, written and committed in one blocking task (no writer thread, no channel).
    async fn put_small<S, E>(
        self: &Arc<Self>,
        key: &str,
        opts: PutOptions,
        ctype: String,
        expected: u64,
        mut body: S,
    ) -> Result<ObjectMeta, StoreError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let mut chunks: Vec<Bytes> = Vec::with_capacity(1);
        let mut received: u64 = 0;
        let fed: Result<(), StoreError> = async {
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(|e| StoreError::Body(e.to_string()))?;
                received += chunk.len() as u64;
                if received > expected {
                    return Err(StoreError::TooLong { expected });
                }
                if !chunk.is_empty() {
                    chunks.push(chunk);
                }
            }
            if received < expected {
                return Err(StoreError::Incomplete { expected, received });
            }
            Ok(())
        }
        .await;
        if let Err(e) = fed {
            Metrics::inc(&self.metrics.uploads_aborted);
            return Err(e);
        }
        let store = Arc::clone(self);
        let key = key.to_string();
        let n = self.tmp_counter.fetch_add(1, Ordering::Relaxed);
        let tmp_path = self.tmp.join(format!("{}-{n}.part", std::process::id()));
        let done = tokio::task::spawn_blocking(move || {
            let mut md5 = Md5::new();
            let mut sha = opts.expected_sha256.map(|_| Sha256::new());
            for c in &chunks {
                md5.update(c.clone())
                    .map_err(|e| StoreError::Task(e.to_string()))?;
                if let Some(s) = sha.as_mut() {
                    s.update(c);
                }
            }
            let md5 = md5.finish().map_err(|e| StoreError::Task(e.to_string()))?;
            check_digests(&opts, md5, sha.map(|s| s.finalize().into()))?;
            let meta = ObjectMeta {
                key,
                size: received,
                md5,
                modified: now_unix(),
                content_type: ctype,
            };
            let header = encode_header(
                meta.size,
                &meta.md5,
                meta.modified,
                &meta.content_type,
                &meta.key,
            );
            let guard = TmpGuard(Some(tmp_path.clone()));
            let mut file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&tmp_path)
                .map_err(|e| StoreError::io(&tmp_path, e))?;
            let mut slices: Vec<io::IoSlice<'_>> = Vec::with_capacity(chunks.len() + 1);
            slices.push(io::IoSlice::new(&header));
            slices.extend(chunks.iter().map(|c| io::IoSlice::new(c)));
            write_all_vectored(&mut file, &mut slices).map_err(|e| StoreError::io(&tmp_path, e))?;
            if store.cfg.fsync {
                file.sync_data().map_err(|e| StoreError::io(&tmp_path, e))?;
            }
            drop(file);
            store.commit(&tmp_path, &meta, header.len() as u64 + meta.size)?;
            std::mem::forget(guard);
            Ok(meta)
        })
        .await
        .map_err(|e| StoreError::Task(e.to_string()))
        .and_then(|r| r);
        match done {
            Ok(meta) => {
                Metrics::inc(&self.metrics.uploads_committed);
                Metrics::add(&self.metrics.bytes_in, meta.size);
                Ok(meta)
            }
            Err(e) => {
                Metrics::inc(&self.metrics.uploads_aborted);
                Err(e)
            }
        }
    }

    fn commit(&self, tmp: &Path, meta: &ObjectMeta, file_len: u64) -> Result<(), StoreError> {
        let (victims, shard) = {
            let mut idx = self.lock();
            let gen = idx.next_gen;
            idx.next_gen += 1;
            let dest = self.object_path(&meta.key, gen);
            let renamed = match fs::rename(tmp, &dest) {
                Err(e) if e.kind() == io::ErrorKind::NotFound && tmp.exists() => {
                    // First object of this shard: create its directory.
                    match dest.parent() {
                        Some(parent) => {
                            fs::create_dir_all(parent).and_then(|_| fs::rename(tmp, &dest))
                        }
                        None => Err(e),
                    }
                }
                other => other,
            };
            renamed.map_err(|e| StoreError::io(&dest, e))?;
            let shard = if self.cfg.fsync {
                dest.parent().map(Path::to_path_buf)
            } else {
                None
            };
            let mut victims = Vec::new();
            if let Some(old) = idx.insert(meta.key.clone(), Entry::new(gen, file_len, meta)) {
                victims.push(self.object_path(&meta.key, old.gen));
            }
            victims.extend(self.evict_locked(&mut idx));
            (victims, shard)
        };
        self.delete_files(victims);
        // The rename is durable only once its directory is synced (outside the index lock).
        if let Some(dir) = shard {
            if let Err(e) = fs::File::open(&dir).and_then(|d| d.sync_all()) {
                tracing::warn!(dir = %dir.display(), error = %e, "could not sync the object's directory");
            }
        }
        Ok(())
    }

    /// Opens an object for reading (blocking; see [`Store::get`]). Reading an object makes it
    /// the most recently used. An object past the maximum age is evicted and not returned.
    pub fn open_blocking(&self, key: &str) -> Result<Option<OpenObject>, StoreError> {
        for _ in 0..3 {
            let (path, entry) = {
                let mut idx = self.lock();
                let Some(e) = idx.entries.get(key).cloned() else {
                    return Ok(None);
                };
                if self.is_expired(&e) {
                    idx.remove(key);
                    drop(idx);
                    Metrics::inc(&self.metrics.evictions);
                    self.delete_files(vec![self.object_path(key, e.gen)]);
                    return Ok(None);
                }
                idx.touch(key);
                (self.object_path(key, e.gen), e)
            };
            let mut file = match File::open(&path) {
                Ok(f) => f,
                // Replaced or evicted between the lookup and the open: look again.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(StoreError::io(&path, e)),
            };
            let probe = if entry.file_len <= SMALL_FILE {
                entry.file_len as usize
            } else {
                HEADER_PROBE
            };
            let buf = read_prefix(&mut file, probe).map_err(|e| StoreError::io(&path, e))?;
            let Some((meta, off)) = decode_header(&buf) else {
                self.forget_corrupt(key, entry.gen, &path);
                return Ok(None);
            };
            if meta.key != key || off + meta.size != entry.file_len {
                self.forget_corrupt(key, entry.gen, &path);
                return Ok(None);
            }
            let small = if entry.file_len <= SMALL_FILE && buf.len() as u64 == entry.file_len {
                Some(Bytes::from(buf).slice(off as usize..))
            } else {
                None
            };
            if let (Some(body), true) = (&small, self.cfg.memory_cache > 0) {
                let hot = Arc::new(Hot::new(meta.clone(), body.clone()));
                self.lock()
                    .make_hot(key, entry.gen, hot, self.cfg.memory_cache);
            }
            return Ok(Some(OpenObject {
                meta,
                small,
                file,
                body_offset: off,
            }));
        }
        Ok(None)
    }

    /// The in-memory copy of `key`, when it has one: no disk access and no thread handoff.
    /// Like [`Store::open_blocking`], it makes the object the most recently used. `None`
    /// means "not in memory" (it may still be on disk: use [`Store::get`]).
    pub fn get_hot(&self, key: &str) -> Option<Arc<Hot>> {
        if self.cfg.memory_cache == 0 {
            return None;
        }
        let mut idx = self.lock();
        idx.hot(key, |e| !self.is_expired(e))
    }

    fn forget_corrupt(&self, key: &str, gen: u64, path: &Path) {
        tracing::warn!(%key, path = %path.display(), "dropping corrupt object");
        let mut idx = self.lock();
        if idx.entries.get(key).map(|e| e.gen) == Some(gen) {
            idx.remove(key);
        }
        drop(idx);
        let _ = fs::remove_file(path);
    }

    /// Opens an object for reading on the blocking pool.
    pub async fn get(self: &Arc<Self>, key: &str) -> Result<Option<OpenObject>, StoreError> {
        let store = Arc::clone(self);
        let key = key.to_string();
        tokio::task::spawn_blocking(move || store.open_blocking(&key))
            .await
            .map_err(|e| StoreError::Task(e.to_string()))?
    }

    /// Whether `key` is currently cached (does not change recency).
    pub fn contains(&self, key: &str) -> bool {
        let idx = self.lock();
        idx.entries.get(key).is_some_and(|e| !self.is_expired(e))
    }

    /// Removes an object. Returns whether it existed.
    pub async fn delete(self: &Arc<Self>, key: &str) -> Result<bool, StoreError> {
        let store = Arc::clone(self);
        let key = key.to_string();
        tokio::task::spawn_blocking(move || {
            let removed = store.lock().remove(&key);
            match removed {
                Some(e) => {
                    store.delete_files(vec![store.object_path(&key, e.gen)]);
                    true
                }
                None => false,
            }
        })
        .await
        .map_err(|e| StoreError::Task(e.to_string()))
    }

    /// Evicts every object older than the maximum age; returns how many were removed.
    pub fn sweep_expired(&self) -> usize {
        let victims = {
            let mut idx = self.lock();
            self.expire_locked(&mut idx)
        };
        let n = victims.len();
        self.delete_files(victims);
        n
    }

    /// Object count, bytes used and the limit.
    pub fn gauges(&self) -> StoreGauges {
        let idx = self.lock();
        StoreGauges {
            objects: idx.entries.len() as u64,
            bytes: idx.total,
            max_bytes: self.cfg.max_bytes,
        }
    }

    /// Lists keys starting with `prefix` (a full-key prefix, `bucket/...`) strictly after
    /// `after`, in byte order; `visit` is called for each and stops the scan by returning
    /// `false`.
    pub fn scan(
        &self,
        prefix: &str,
        after: Option<&str>,
        mut visit: impl FnMut(ListEntry) -> bool,
    ) {
        let idx = self.lock();
        let start = match after {
            Some(a) if a >= prefix => std::ops::Bound::Excluded(a.to_string()),
            _ => std::ops::Bound::Included(prefix.to_string()),
        };
        for (k, e) in idx.entries.range((start, std::ops::Bound::Unbounded)) {
            if !k.starts_with(prefix) {
                break;
            }
            if self.is_expired(e) {
                continue;
            }
            let go_on = visit(ListEntry {
                key: k.clone(),
                size: e.size,
                md5: e.md5,
                modified: e.modified,
            });
            if !go_on {
                break;
            }
        }
    }

    /// Names of the buckets that hold at least one object.
    pub fn buckets(&self) -> Vec<String> {
        let idx = self.lock();
        let mut out: Vec<String> = Vec::new();
        let mut cursor = String::new();
        loop {
            let next = idx
                .entries
                .range::<String, _>((
                    std::ops::Bound::Included(&cursor),
                    std::ops::Bound::Unbounded,
                ))
                .next();
            let Some((k, _)) = next else { break };
            let Some((bucket, _)) = k.split_once('/') else {
                break;
            };
            // Internal namespaces (multipart parts) start with a dot.
            if !bucket.starts_with('.') {
                out.push(bucket.to_string());
            }
            // '0' is the byte after '/': skip the whole bucket.
            cursor = format!("{bucket}0");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::stream;
    use std::io::{Seek, SeekFrom};

    fn store(dir: &Path, max: u64) -> Arc<Store> {
        Store::open(
            StoreConfig {
                dir: dir.to_path_buf(),
                max_bytes: max,
                max_age: None,
                max_object_size: 1 << 30,
                fsync: false,
                memory_cache: 1 << 20,
            },
            Arc::new(Metrics::default()),
        )
        .unwrap()
    }

    fn body(parts: &[&'static [u8]]) -> impl Stream<Item = Result<Bytes, String>> + Unpin {
        stream::iter(
            parts
                .iter()
                .map(|p| Ok(Bytes::from_static(p)))
                .collect::<Vec<_>>(),
        )
    }

    fn read_all(o: OpenObject) -> Vec<u8> {
        if let Some(b) = o.small {
            return b.to_vec();
        }
        let mut f = o.file;
        f.seek(SeekFrom::Start(o.body_offset)).unwrap();
        let mut v = Vec::new();
        f.read_to_end(&mut v).unwrap();
        v
    }

    #[tokio::test]
    async fn put_get_replace_delete() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path(), 1 << 20);
        let m = s
            .put_stream("b/k", PutOptions::default(), body(&[b"hello ", b"world"]))
            .await
            .unwrap();
        assert_eq!(m.size, 11);
        assert_eq!(
            m.etag(),
            format!("\"{:x}\"", md5::Md5::digest(b"hello world"))
        );
        let o = s.get("b/k").await.unwrap().unwrap();
        assert_eq!(read_all(o), b"hello world");
        s.put_stream("b/k", PutOptions::default(), body(&[b"v2"]))
            .await
            .unwrap();
        assert_eq!(read_all(s.get("b/k").await.unwrap().unwrap()), b"v2");
        assert!(s.delete("b/k").await.unwrap());
        assert!(s.get("b/k").await.unwrap().is_none());
        assert_eq!(s.gauges().objects, 0);
        assert_eq!(s.gauges().bytes, 0);
    }

    #[tokio::test]
    async fn incomplete_and_bad_checksum_leave_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path(), 1 << 20);
        let opts = PutOptions {
            expected_len: Some(100),
            ..Default::default()
        };
        let e = s
            .put_stream("b/k", opts, body(&[b"short"]))
            .await
            .unwrap_err();
        assert!(matches!(e, StoreError::Incomplete { .. }));
        let opts = PutOptions {
            expected_sha256: Some([0; 32]),
            ..Default::default()
        };
        let e = s.put_stream("b/k", opts, body(&[b"x"])).await.unwrap_err();
        assert!(matches!(e, StoreError::Sha256Mismatch));
        let failing = stream::iter(vec![Ok(Bytes::from_static(b"abc")), Err("cut".to_string())]);
        let e = s
            .put_stream("b/k", PutOptions::default(), failing)
            .await
            .unwrap_err();
        assert!(matches!(e, StoreError::Body(_)));
        assert!(s.get("b/k").await.unwrap().is_none());
        assert_eq!(fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
    }

    #[tokio::test]
    async fn lru_eviction_and_restart() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path(), 3 * 1200);
        let data = vec![7u8; 1000];
        for k in ["b/1", "b/2", "b/3"] {
            s.put_stream(
                k,
                PutOptions::default(),
                stream::iter(vec![Ok::<_, String>(Bytes::from(data.clone()))]),
            )
            .await
            .unwrap();
        }
        // Touch 1 so that 2 is the least recently used.
        assert!(s.get("b/1").await.unwrap().is_some());
        s.put_stream(
            "b/4",
            PutOptions::default(),
            stream::iter(vec![Ok::<_, String>(Bytes::from(data.clone()))]),
        )
        .await
        .unwrap();
        assert!(s.get("b/2").await.unwrap().is_none());
        assert!(s.gauges().bytes <= 3 * 1200);
        drop(s);
        let s = store(dir.path(), 3 * 1200);
        let mut keys = Vec::new();
        s.scan("b/", None, |e| {
            keys.push(e.key);
            true
        });
        assert_eq!(keys, ["b/1", "b/3", "b/4"]);
        assert_eq!(read_all(s.get("b/4").await.unwrap().unwrap()), data);
        assert_eq!(s.buckets(), ["b"]);
    }

    #[test]
    fn header_roundtrip_and_garbage() {
        let h = encode_header(5, &[1; 16], 42, "text/plain", "b/k");
        let (m, off) = decode_header(&h).unwrap();
        assert_eq!(off as usize, h.len());
        assert_eq!(m.key, "b/k");
        assert_eq!(m.size, 5);
        assert!(decode_header(b"garbage").is_none());
        assert!(decode_header(&h[..h.len() - 1]).is_none());
    }

    #[test]
    fn object_paths_are_sharded_hashes() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path(), 1 << 20);
        let h = key_hash("b/k");
        assert_eq!(
            s.object_path("b/k", 0x1234),
            dir.path()
                .join("objects")
                .join(&h[..2])
                .join(format!("{h}-0000000000001234.obj"))
        );
    }

    #[tokio::test]
    async fn hot_copies_follow_the_last_write_and_stay_within_budget() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path(), 1 << 30);
        let put = |k: &'static str, body: Vec<u8>| {
            let s = Arc::clone(&s);
            async move {
                let opts = PutOptions {
                    expected_len: Some(body.len() as u64),
                    ..Default::default()
                };
                s.put_stream(
                    k,
                    opts,
                    stream::iter(vec![Ok::<_, String>(Bytes::from(body))]),
                )
                .await
                .unwrap()
            }
        };
        put("b/a", vec![1; 1000]).await;
        // Not in memory until read from disk once.
        assert!(s.get_hot("b/a").is_none());
        assert!(s.get("b/a").await.unwrap().is_some());
        assert_eq!(&s.get_hot("b/a").unwrap().body[..], &[1u8; 1000][..]);
        // A new write replaces the hot copy: the old one is never served again.
        put("b/a", vec![2; 500]).await;
        assert!(s.get_hot("b/a").is_none());
        assert_eq!(read_all(s.get("b/a").await.unwrap().unwrap()), vec![2; 500]);
        assert_eq!(&s.get_hot("b/a").unwrap().body[..], &[2u8; 500][..]);
        assert!(s.delete("b/a").await.unwrap());
        assert!(s.get_hot("b/a").is_none());
        // Many objects: memory stays within the budget (1 MiB in these tests).
        for i in 0..40u8 {
            let k: &'static str = Box::leak(format!("b/many{i}").into_boxed_str());
            put(k, vec![i; 100 * 1024]).await;
            assert!(s.get(k).await.unwrap().is_some());
            let idx = s.lock();
            assert!(idx.hot_total <= 1 << 20, "{}", idx.hot_total);
            assert!(idx.hot_ring.len() <= 2 * idx.hot_count + 64);
        }
        // Recently read objects are the ones kept.
        assert!(s.get_hot("b/many39").is_some());
        assert!(s.get_hot("b/many0").is_none());
    }

    #[tokio::test]
    async fn small_uploads_check_length_and_digests() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path(), 1 << 20);
        let opts = |len: u64| PutOptions {
            expected_len: Some(len),
            ..Default::default()
        };
        let e = s
            .put_stream("b/k", opts(3), body(&[b"four"]))
            .await
            .unwrap_err();
        assert!(matches!(e, StoreError::TooLong { .. }));
        let e = s
            .put_stream("b/k", opts(9), body(&[b"four"]))
            .await
            .unwrap_err();
        assert!(matches!(e, StoreError::Incomplete { .. }));
        let e = s
            .put_stream(
                "b/k",
                PutOptions {
                    expected_md5: Some([0; 16]),
                    ..opts(4)
                },
                body(&[b"fo", b"ur"]),
            )
            .await
            .unwrap_err();
        assert!(matches!(e, StoreError::Md5Mismatch));
        let e = s
            .put_stream(
                "b/k",
                PutOptions {
                    expected_sha256: Some([0; 32]),
                    ..opts(4)
                },
                body(&[b"four"]),
            )
            .await
            .unwrap_err();
        assert!(matches!(e, StoreError::Sha256Mismatch));
        assert!(s.get("b/k").await.unwrap().is_none());
        assert_eq!(fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
        let sha: [u8; 32] = Sha256::digest(b"four").into();
        let md5: [u8; 16] = md5::Md5::digest(b"four").into();
        let m = s
            .put_stream(
                "b/k",
                PutOptions {
                    expected_sha256: Some(sha),
                    expected_md5: Some(md5),
                    ..opts(4)
                },
                body(&[b"fo", b"ur"]),
            )
            .await
            .unwrap();
        assert_eq!(m.md5, md5);
        assert_eq!(read_all(s.get("b/k").await.unwrap().unwrap()), b"four");
    }

    #[tokio::test]
    async fn large_uploads_hash_on_the_engine() {
        // Beyond the inline limit, several at once, with odd chunk sizes.
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path(), 1 << 30);
        let mut tasks = Vec::new();
        for t in 0..3u64 {
            let s = Arc::clone(&s);
            tasks.push(tokio::spawn(async move {
                let len = crate::etag::INLINE_LIMIT as usize * 2 + 777 * t as usize;
                let data: Vec<u8> = (0..len).map(|i| (i as u64 * (t + 7)) as u8).collect();
                let chunks: Vec<Result<Bytes, String>> = data
                    .chunks(65_537 + t as usize)
                    .map(|c| Ok(Bytes::copy_from_slice(c)))
                    .collect();
                let key = format!("b/large{t}");
                let m = s
                    .put_stream(&key, PutOptions::default(), stream::iter(chunks))
                    .await
                    .unwrap();
                let want: [u8; 16] = md5::Md5::digest(&data).into();
                assert_eq!(m.md5, want);
                assert_eq!(read_all(s.get(&key).await.unwrap().unwrap()), data);
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    }

    #[tokio::test]
    async fn large_objects_stream_any_range() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path(), 1 << 30);
        let data: Vec<u8> = (0..STREAM_CHUNK * 2 + 12_345)
            .map(|i| (i % 251) as u8)
            .collect();
        s.put_stream(
            "b/big",
            PutOptions::default(),
            stream::iter(vec![Ok::<_, String>(Bytes::from(data.clone()))]),
        )
        .await
        .unwrap();
        for (start, len) in [
            (0, data.len()),
            (1, STREAM_CHUNK),
            (STREAM_CHUNK - 1, STREAM_CHUNK + 2),
            (data.len() - 1, 1),
            (5, 0),
        ] {
            let o = s.get("b/big").await.unwrap().unwrap();
            assert!(o.small.is_none());
            let mut got = Vec::new();
            let mut st = o.into_stream(start as u64, len as u64).unwrap();
            while let Some(c) = st.next().await {
                got.extend_from_slice(&c.unwrap());
            }
            assert_eq!(got, &data[start..start + len], "{start}+{len}");
        }
    }
}
