//! Rift: the Polar Gosling runner cache server.
//!
//! Rift is the optional cache that GitLab runners point at. It speaks what the runners already
//! speak:
//!
//! * the **S3 API** (path style, SigV4 header-signed and presigned requests) that
//!   gitlab-runner's distributed cache uses (`[runners.cache] Type = "s3"`),
//! * a **plain artifact cache** at `GET/HEAD/PUT /cache/{key}` with a runner bearer token,
//! * a **Docker Engine API proxy** on a separate listener, so runners can set `DOCKER_HOST`
//!   to Rift and have their requests authenticated and forwarded to an upstream daemon.
//!
//! Credentials come from an auth file ([`auth`], full access) and, with MotherGoose
//! configured, from the fleet ([`fleet`]): a live runner's own S3 key and token, limited to
//! its egg's prefix.
//!
//! Objects live on disk ([`store::Store`]), are written atomically (temporary file, checksum,
//! rename), evicted least-recently-used first by total size and optionally by age, and found
//! again after a restart. On a miss, an optional S3 origin ([`origin::Origin`]) is consulted
//! (pull-through). See [`server::start`] for the entry point used by the binary and the tests.

#![warn(missing_docs)]

pub mod auth;
pub mod chunked;
pub mod config;
pub mod docker;
pub mod error;
pub mod etag;
pub mod fleet;
pub mod metrics;
pub mod multipart;
pub mod origin;
pub mod reload;
pub mod s3;
pub mod server;
pub mod sigv4;
pub mod store;
pub mod tls;
pub mod units;

pub use config::Config;
pub use server::{start, Running};
