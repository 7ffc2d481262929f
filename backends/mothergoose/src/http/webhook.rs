//! `POST /webhooks/gitlab`: check, deduplicate, enqueue, answer — nothing more, so GitLab
//! gets its answer in milliseconds and a processing failure never becomes an error answer
//! (GitLab would retry, then disable the hook). Only the queue is touched here: webhooks
//! are still accepted while the state store is down.

use super::ApiErr;
use crate::app::App;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use gosling_api::Accepted;
use gosling_fleet::Task;
use gosling_gitlab::{secrets_equal, Event};
use gosling_queue::Enqueued;
use std::sync::Arc;
use std::time::Duration;

const METRIC: &str = "mothergoose_webhooks_total";

fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
}

/// The delivery's id: `webhook-id`, `Idempotency-Key`, `X-Gitlab-Event-UUID`, or (for a
/// sender that gives none) the body's hash.
pub fn delivery_id(h: &HeaderMap, body: &[u8]) -> String {
    ["webhook-id", "idempotency-key", "x-gitlab-event-uuid"]
        .iter()
        .find_map(|n| header(h, n))
        .map(|v| v.chars().take(200).collect())
        .unwrap_or_else(|| {
            use sha2::Digest;
            format!("sha256:{}", gosling_state::hex(&sha2::Sha256::digest(body)))
        })
}

/// Receives a GitLab webhook.
#[utoipa::path(
    post,
    path = "/webhooks/gitlab",
    tag = "webhooks",
    request_body(content = Object, description = "A GitLab Job, Pipeline, Push or Merge Request hook payload", content_type = "application/json"),
    params(
        ("X-Gitlab-Token" = String, Header, description = "The webhook secret"),
        ("X-Gitlab-Event" = Option<String>, Header, description = "`Job Hook`, `Pipeline Hook`, …"),
        ("webhook-id" = Option<String>, Header, description = "Standard Webhooks delivery id (deduplication)"),
        ("webhook-timestamp" = Option<String>, Header, description = "Standard Webhooks timestamp"),
        ("webhook-signature" = Option<String>, Header, description = "Standard Webhooks signature, when a signing secret is configured"),
    ),
    responses(
        (status = 200, description = "Queued, or a duplicate of a delivery already queued", body = Accepted),
        (status = 400, description = "Not JSON, or an event kind MotherGoose does not handle", body = gosling_api::ApiError),
        (status = 401, description = "Bad or stale signature", body = gosling_api::ApiError),
        (status = 403, description = "Missing or wrong X-Gitlab-Token (Property 33)", body = gosling_api::ApiError),
        (status = 413, description = "Body larger than the limit", body = gosling_api::ApiError),
        (status = 503, description = "The queue is unavailable: nothing was accepted", body = gosling_api::ApiError),
    )
)]
pub async fn gitlab(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Accepted>, ApiErr> {
    let result = accept(&app, &headers, body).await;
    let label = match &result {
        Ok(a) => a.status.as_str(),
        Err(ApiErr(s, _)) => match *s {
            StatusCode::UNAUTHORIZED => "unauthorized",
            StatusCode::FORBIDDEN => "forbidden",
            StatusCode::PAYLOAD_TOO_LARGE => "too_large",
            StatusCode::BAD_REQUEST => "bad_request",
            _ => "unavailable",
        },
    };
    app.metrics.inc(METRIC, label);
    result.map(Json)
}

async fn accept(
    app: &App,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Accepted, ApiErr> {
    let body = body.map_err(|e| {
        let status = e.status();
        ApiErr(status, e.body_text())
    })?;
    authenticate(app, headers, &body)?;
    let value: serde_json::Value = serde_json::from_slice(&body)
        .map_err(|e| ApiErr::bad_request(format!("the body is not JSON: {e}")))?;
    let event = Event::from_value(value.clone()).map_err(|e| ApiErr::bad_request(e.to_string()))?;
    let delivery = delivery_id(headers, &body);
    let task = Task::ProcessWebhook {
        delivery: delivery.clone(),
        event: header(headers, "x-gitlab-event")
            .unwrap_or(event.kind())
            .to_string(),
        instance: header(headers, "x-gitlab-instance").map(String::from),
        received_at: app.clock.now(),
        payload: value,
    };
    let queued = app
        .queue
        .enqueue(&task.to_message(), task.options(Duration::ZERO, false))
        .await
        .map_err(|e| {
            tracing::error!("enqueueing webhook {delivery} failed: {e}");
            ApiErr::unavailable("the queue is unavailable; GitLab will retry the delivery")
        })?;
    Ok(match queued {
        Enqueued::New(id) => Accepted {
            status: "queued".into(),
            runner_id: None,
            task_id: Some(id),
        },
        Enqueued::Duplicate => Accepted {
            status: "duplicate".into(),
            runner_id: None,
            task_id: None,
        },
    })
}

/// Property 33: the shared secret in `X-Gitlab-Token` (constant-time), then the Standard
/// Webhooks signature when a signing secret is configured.
fn authenticate(app: &App, headers: &HeaderMap, body: &[u8]) -> Result<(), ApiErr> {
    let Some(secret) = app.webhook_secret() else {
        return Err(ApiErr::forbidden(
            "no webhook secret is set up yet: run `gosling deploy` (or `gosling webhook-secret`)",
        ));
    };
    let presented = header(headers, "x-gitlab-token")
        .ok_or_else(|| ApiErr::forbidden("the X-Gitlab-Token header is missing"))?;
    if !secrets_equal(presented, secret.expose()) {
        return Err(ApiErr::forbidden(
            "X-Gitlab-Token does not match the webhook secret",
        ));
    }
    if let Some(key) = &app.signing_key {
        key.verify(
            header(headers, "webhook-id"),
            header(headers, "webhook-timestamp"),
            header(headers, "webhook-signature"),
            body,
            app.clock.now().timestamp(),
        )
        .map_err(|e| ApiErr::unauthorized(format!("webhook signature: {e}")))?;
    }
    Ok(())
}
