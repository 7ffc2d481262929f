//! `/metrics` (Prometheus text, for the MotherGoose admin token as a bearer token) and
//! `/health` (open).

use crate::metrics::Metrics;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use gosling_fleet::credentials::{TokenCheck, ADMIN_TOKEN};
use gosling_state::StateStore;
use std::sync::Arc;

/// What the routes share.
struct Shared {
    metrics: Arc<Metrics>,
    store: Arc<dyn StateStore>,
    admin: TokenCheck,
}

/// The router; `/metrics` checks the admin token kept in `store`.
pub fn router(metrics: Arc<Metrics>, store: Arc<dyn StateStore>) -> Router {
    let shared = Arc::new(Shared {
        metrics,
        store,
        admin: TokenCheck::new(ADMIN_TOKEN),
    });
    Router::new()
        .route("/metrics", get(metrics_text))
        .route("/health", get(|| async { "ok\n" }))
        .with_state(shared)
}

async fn metrics_text(State(s): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let allowed = match presented {
        Some(token) => s.admin.allows(&*s.store, token).await,
        None => false,
    };
    if !allowed {
        let challenge = [(header::WWW_AUTHENTICATE, "Bearer")];
        return (
            StatusCode::UNAUTHORIZED,
            challenge,
            "the admin token is needed\n",
        )
            .into_response();
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        s.metrics.render(),
    )
        .into_response()
}

/// Serves the router on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: Arc<Metrics>,
    store: Arc<dyn StateStore>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(metrics, store))
        .with_graceful_shutdown(shutdown)
        .await
}
