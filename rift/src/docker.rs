//! The Docker Engine API proxy.
//!
//! Runners set `DOCKER_HOST=tcp://rift:PORT` and send their runner token in an
//! `X-Rift-Token` header (the Docker CLI adds it from `HttpHeaders` in `config.json`) or as
//! `Authorization: Bearer`: a token of the auth file, or a live runner's
//! `<runner id>.<secret>` (checked with MotherGoose, see [`crate::fleet`]). Rift checks the
//! token, removes it, and forwards the request to the upstream daemon over a fresh HTTP/1.1
//! connection (unix socket or TCP). Bodies stream both ways; `101 Switching Protocols`
//! answers (`attach`, `exec`, BuildKit sessions) are spliced into a bidirectional byte pipe.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use http::{header, HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;

use crate::config::DockerUpstream;
use crate::error::{full, Body, BoxError};
use crate::metrics::Metrics;
use crate::server::AppState;

/// Header carrying the runner token on Docker API requests.
pub const TOKEN_HEADER: &str = "x-rift-token";

/// Why forwarding failed.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// The upstream daemon could not be reached.
    #[error("cannot connect to the upstream Docker daemon: {0}")]
    Connect(std::io::Error),
    /// The HTTP exchange with the upstream failed.
    #[error("upstream Docker daemon: {0}")]
    Http(#[from] hyper::Error),
    /// No upstream is configured.
    #[error("no Docker upstream is configured")]
    NoUpstream,
}

const HOP_BY_HOP: [&str; 7] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "te",
    "trailer",
    "upgrade",
];

fn strip_hop_by_hop(h: &mut HeaderMap) {
    let listed: Vec<String> = h
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|s| s.trim().to_ascii_lowercase())
        .filter(|s| !s.is_empty())
        .collect();
    for name in listed {
        h.remove(name.as_str());
    }
    for name in HOP_BY_HOP {
        h.remove(name);
    }
}

fn token_of(h: &HeaderMap) -> Option<&str> {
    if let Some(t) = h.get(TOKEN_HEADER).and_then(|v| v.to_str().ok()) {
        return Some(t.trim());
    }
    h.get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
}

/// An error in the Docker API's JSON shape, which the Docker CLI prints.
fn docker_error(status: StatusCode, message: &str) -> Response<Body> {
    let body = format!("{{\"message\":{}}}", json_string(message));
    let mut r = Response::new(full(body));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Handles one request on the Docker listener.
pub async fn handle(
    state: Arc<AppState>,
    peer: SocketAddr,
    mut req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    Metrics::inc(&state.metrics.requests);
    if let Some(r) = crate::server::head_too_large(&req, state.config.max_header_size) {
        return Ok(r);
    }
    if let Err(wait) = state.limiter.check(peer.ip()) {
        Metrics::inc(&state.metrics.rate_limited);
        let mut r = docker_error(
            StatusCode::TOO_MANY_REQUESTS,
            "Rift: too many authentication failures; retry later",
        );
        r.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from(wait.as_secs().max(1)),
        );
        return Ok(r);
    }
    let principal = match token_of(req.headers()) {
        Some(t) => crate::server::token_principal(&state, t).await,
        None => Ok(None),
    };
    let authorized = match principal {
        Ok(p) => p.is_some(),
        Err(e) => {
            tracing::debug!(error = %e, "docker token not verified");
            let mut r = docker_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "Rift: cannot verify the runner token now (MotherGoose does not answer); retry later",
            );
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            return Ok(r);
        }
    };
    if !authorized {
        state.auth_failure(peer, "docker");
        return Ok(docker_error(
            StatusCode::UNAUTHORIZED,
            "Rift: missing or invalid runner token (set HttpHeaders.X-Rift-Token in the Docker config.json)",
        ));
    }
    req.headers_mut().remove(TOKEN_HEADER);
    req.headers_mut().remove(header::AUTHORIZATION);
    Metrics::inc(&state.metrics.docker_requests);
    let upstream = match &state.config.docker_upstream {
        Some(u) => u.clone(),
        None => {
            return Ok(docker_error(
                StatusCode::BAD_GATEWAY,
                &ProxyError::NoUpstream.to_string(),
            ))
        }
    };
    match forward(&upstream, req).await {
        Ok(r) => Ok(r),
        Err(e) => {
            Metrics::inc(&state.metrics.docker_upstream_errors);
            tracing::warn!(error = %e, "docker upstream failed");
            Ok(docker_error(StatusCode::BAD_GATEWAY, &format!("Rift: {e}")))
        }
    }
}

async fn connect(
    upstream: &DockerUpstream,
) -> Result<hyper::client::conn::http1::SendRequest<Incoming>, ProxyError> {
    macro_rules! handshake {
        ($stream:expr) => {{
            let (sender, conn) =
                hyper::client::conn::http1::handshake::<_, Incoming>(TokioIo::new($stream)).await?;
            tokio::spawn(async move {
                if let Err(e) = conn.with_upgrades().await {
                    tracing::debug!(error = %e, "docker upstream connection ended");
                }
            });
            sender
        }};
    }
    Ok(match upstream {
        DockerUpstream::Unix(path) => {
            let s = tokio::net::UnixStream::connect(path)
                .await
                .map_err(ProxyError::Connect)?;
            handshake!(s)
        }
        DockerUpstream::Tcp(addr) => {
            let s = tokio::net::TcpStream::connect(addr.as_str())
                .await
                .map_err(ProxyError::Connect)?;
            let _ = s.set_nodelay(true);
            handshake!(s)
        }
    })
}

async fn forward(
    upstream: &DockerUpstream,
    mut req: Request<Incoming>,
) -> Result<Response<Body>, ProxyError> {
    let wants_upgrade = req.headers().contains_key(header::UPGRADE);
    let client_upgrade = wants_upgrade.then(|| hyper::upgrade::on(&mut req));
    if !wants_upgrade {
        strip_hop_by_hop(req.headers_mut());
    }
    let target = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".to_string());
    if let Ok(uri) = target.parse() {
        *req.uri_mut() = uri;
    }
    let mut sender = connect(upstream).await?;
    let mut resp = sender.send_request(req).await?;
    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        if let Some(client_upgrade) = client_upgrade {
            let upstream_upgrade = hyper::upgrade::on(&mut resp);
            tokio::spawn(async move {
                match tokio::try_join!(client_upgrade, upstream_upgrade) {
                    Ok((c, u)) => {
                        let mut c = TokioIo::new(c);
                        let mut u = TokioIo::new(u);
                        match tokio::io::copy_bidirectional(&mut c, &mut u).await {
                            Ok((up, down)) => {
                                tracing::debug!(up, down, "docker upgraded stream closed")
                            }
                            Err(e) => tracing::debug!(error = %e, "docker upgraded stream ended"),
                        }
                    }
                    Err(e) => tracing::debug!(error = %e, "docker upgrade failed"),
                }
            });
        }
    } else {
        strip_hop_by_hop(resp.headers_mut());
    }
    Ok(resp.map(|b| b.map_err(|e| Box::new(e) as BoxError).boxed_unsync()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_are_removed() {
        let mut h = HeaderMap::new();
        h.insert("connection", "keep-alive, x-secret".parse().unwrap());
        h.insert("x-secret", "1".parse().unwrap());
        h.insert("keep-alive", "timeout=5".parse().unwrap());
        h.insert("content-type", "application/json".parse().unwrap());
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
    }

    #[test]
    fn tokens_from_either_header() {
        let mut h = HeaderMap::new();
        h.insert("x-rift-token", "abc".parse().unwrap());
        assert_eq!(token_of(&h), Some("abc"));
        let mut h = HeaderMap::new();
        h.insert("authorization", "Bearer xyz".parse().unwrap());
        assert_eq!(token_of(&h), Some("xyz"));
        assert_eq!(json_string("a\"b\n"), "\"a\\\"b\\u000a\"");
    }
}
