//! The HTTP API: one axum router, served over TCP (with TLS 1.3 when given a
//! certificate), in AWS Lambda behind API Gateway, and in a Yandex Serverless Container.
//!
//! Who may call what: `/health` is open; `/webhooks/gitlab` needs the webhook secret
//! (`X-Gitlab-Token`, and a Standard Webhooks signature when a signing secret is set);
//! runner endpoints need that runner's own credential; `/rift/verify` needs Rift's token;
//! everything else needs the admin token. A refused request changes nothing.

mod admin;
mod runner;
mod webhook;

use crate::app::App;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use gosling_api::ApiError;
use std::sync::Arc;

pub use admin::ApiDoc;

/// An error answer: a status and words.
#[derive(Debug)]
pub struct ApiErr(pub StatusCode, pub String);

impl ApiErr {
    /// 401: who are you?
    pub fn unauthorized(why: impl Into<String>) -> ApiErr {
        ApiErr(StatusCode::UNAUTHORIZED, why.into())
    }
    /// 403: not you.
    pub fn forbidden(why: impl Into<String>) -> ApiErr {
        ApiErr(StatusCode::FORBIDDEN, why.into())
    }
    /// 404.
    pub fn not_found(why: impl Into<String>) -> ApiErr {
        ApiErr(StatusCode::NOT_FOUND, why.into())
    }
    /// 400.
    pub fn bad_request(why: impl Into<String>) -> ApiErr {
        ApiErr(StatusCode::BAD_REQUEST, why.into())
    }
    /// 503: try again later (nothing was done).
    pub fn unavailable(why: impl std::fmt::Display) -> ApiErr {
        ApiErr(StatusCode::SERVICE_UNAVAILABLE, why.to_string())
    }
}

impl IntoResponse for ApiErr {
    fn into_response(self) -> Response {
        let mut r = (self.0, Json(ApiError { error: self.1 })).into_response();
        if self.0 == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        r
    }
}

impl From<gosling_state::StateError> for ApiErr {
    fn from(e: gosling_state::StateError) -> ApiErr {
        tracing::warn!("state store: {e}");
        ApiErr::unavailable(format!("the state store failed: {e}"))
    }
}

impl From<gosling_fleet::FleetError> for ApiErr {
    fn from(e: gosling_fleet::FleetError) -> ApiErr {
        use gosling_fleet::FleetError as F;
        match e {
            F::NotFound(id) => ApiErr::not_found(format!("no runner `{id}`")),
            F::Illegal(e) => ApiErr(StatusCode::CONFLICT, e.to_string()),
            F::Refused { .. } => ApiErr(StatusCode::CONFLICT, e.to_string()),
            F::State(e) => e.into(),
            F::Busy(_) => ApiErr::unavailable(e),
        }
    }
}

/// The bearer token of a request, if it has one.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Refuses a request without the admin token.
pub async fn require_admin(app: &App, headers: &HeaderMap) -> Result<(), ApiErr> {
    let token = bearer(headers).ok_or_else(|| ApiErr::unauthorized("the admin token is needed"))?;
    if app.token_ok(token, false).await {
        Ok(())
    } else {
        Err(ApiErr::unauthorized("the admin token is not valid"))
    }
}

/// The whole API.
pub fn router(app: Arc<App>) -> Router {
    let limit = app.settings.max_body;
    Router::new()
        .route("/health", get(admin::health))
        .route("/metrics", get(admin::metrics))
        .route(
            "/webhooks/gitlab",
            post(webhook::gitlab).layer(DefaultBodyLimit::max(limit)),
        )
        .route(
            "/runners",
            get(admin::list_runners).post(admin::create_runner),
        )
        .route("/runners/{id}", get(admin::get_runner))
        .route("/runners/{id}", delete(admin::delete_runner))
        .route("/runners/{id}/heartbeat", post(runner::heartbeat))
        .route("/runners/{id}/config", get(runner::config))
        .route("/runners/{id}/job-result", post(runner::job_result))
        .route("/eggs", get(admin::list_eggs))
        .route("/eggs/{name}", get(runner::get_egg))
        .route("/jobs/{name}/trigger", post(admin::trigger_job))
        .route("/rift/verify", post(runner::rift_verify))
        .layer(DefaultBodyLimit::max(64 * 1024))
        .with_state(app)
}
