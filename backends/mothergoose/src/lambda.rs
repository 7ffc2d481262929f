//! The same router as an AWS Lambda function behind API Gateway (REST or HTTP API),
//! through `lambda_http`. In Lambda the API only accepts and queues (use an SQS queue);
//! `mothergoose worker` — on a VM, in ECS, or as a second function — runs the tasks.

use crate::app::App;
use axum::http::{Request, Uri};
use lambda_http::RequestExt;
use std::sync::Arc;

/// Removes the API Gateway stage from the front of the path (`/prod/health` → `/health`):
/// `lambda_http` keeps it for REST APIs, the API's routes do not have it.
pub fn strip_stage<B>(mut req: Request<B>) -> Request<B> {
    let stage = match req.request_context_ref() {
        Some(lambda_http::request::RequestContext::ApiGatewayV1(c)) => c.stage.clone(),
        Some(lambda_http::request::RequestContext::ApiGatewayV2(c)) => c.stage.clone(),
        _ => None,
    };
    let Some(stage) = stage.filter(|s| s != "$default") else {
        return req;
    };
    let prefix = format!("/{stage}");
    let path = req.uri().path();
    if let Some(rest) = path
        .strip_prefix(&prefix)
        .filter(|r| r.is_empty() || r.starts_with('/'))
    {
        let rest = if rest.is_empty() { "/" } else { rest };
        let pq = match req.uri().query() {
            Some(q) => format!("{rest}?{q}"),
            None => rest.to_string(),
        };
        if let Ok(uri) = pq.parse::<Uri>() {
            *req.uri_mut() = uri;
        }
    }
    req
}

/// The router as a Lambda service (stage stripped).
pub fn service(
    app: Arc<App>,
) -> impl tower::Service<
    lambda_http::Request,
    Response = axum::response::Response,
    Error = std::convert::Infallible,
    Future = impl Send,
> + Clone {
    tower::ServiceBuilder::new()
        .map_request(strip_stage::<lambda_http::Body>)
        .service(crate::http::router(app))
}

/// Serves API Gateway events until the Lambda runtime stops the process.
pub async fn run(app: Arc<App>) -> Result<(), lambda_http::Error> {
    lambda_http::run(service(app)).await
}
