//! The middleware in front of every aerekos server.
//!
//! For each request it: takes the `X-Request-Id` (or makes one) and keeps it in a task-local so
//! errors and logs can name it; refuses bodies over the limit with 413; logs the request; records
//! metrics by operation id; and rewrites every error that is not already JSON (the framework's own
//! 400/401/404/405/413 are plain text) into the shared [`ErrorBody`], keeping the status.

use std::{
    collections::HashSet,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Instant,
};

use futures_util::StreamExt;
use poem::{
    Body, Endpoint, IntoResponse, Middleware, Request, Response,
    http::{HeaderValue, StatusCode, header},
};
use poem_openapi::OperationId;
use tracing::Instrument;

use crate::{ErrorBody, error::code_for_status, metrics::Metrics};

pub const REQUEST_ID_HEADER: &str = "x-request-id";

tokio::task_local! {
    static REQUEST_ID: String;
}

/// The id of the request being served on this task, or `"none"` outside a request.
pub fn current_request_id() -> String {
    REQUEST_ID
        .try_with(|id| id.clone())
        .unwrap_or_else(|_| "none".to_owned())
}

/// Runs `fut` with `request_id` as the current request id (for work spawned off a request).
pub async fn with_request_id<F: std::future::Future>(request_id: String, fut: F) -> F::Output {
    REQUEST_ID.scope(request_id, fut).await
}

/// A client-supplied id is kept only if it is short printable ASCII, so it is safe in logs and headers.
fn accept_request_id(value: &HeaderValue) -> Option<String> {
    let s = value.to_str().ok()?;
    let ok = !s.is_empty() && s.len() <= 128 && s.bytes().all(|b| b.is_ascii_graphic());
    ok.then(|| s.to_owned())
}

/// Decides, from its path, whether a request's body is exempt from the limit.
pub type BodyLimitExemption = Arc<dyn Fn(&str) -> bool + Send + Sync>;

#[derive(Clone)]
pub struct Edge {
    max_body_bytes: u64,
    metrics: Arc<Metrics>,
    quiet_operations: Arc<HashSet<&'static str>>,
    exempt: Option<BodyLimitExemption>,
    throttle: Option<crate::throttle::Throttle>,
}

impl Edge {
    pub fn new(metrics: Arc<Metrics>, max_body_bytes: u64) -> Self {
        Self {
            max_body_bytes,
            metrics,
            quiet_operations: Arc::default(),
            exempt: None,
            throttle: None,
        }
    }

    /// Requests over `config`'s limits are answered 429 here (see [`crate::throttle`]).
    pub fn throttle(mut self, config: &crate::throttle::ThrottleConfig) -> Self {
        self.throttle = Some(crate::throttle::Throttle::new(config));
        self
    }

    /// Requests for which `exempt(path)` holds are not held to the body limit (the conductor's
    /// gateway streams them on; the service behind it has its own limit).
    pub fn body_limit_exempt(mut self, exempt: BodyLimitExemption) -> Self {
        self.exempt = Some(exempt);
        self
    }

    /// Operations whose successful requests are logged at debug, not info (health probes,
    /// heartbeats): they would drown the access log.
    pub fn quiet(mut self, operation_ids: &[&'static str]) -> Self {
        self.quiet_operations = Arc::new(operation_ids.iter().copied().collect());
        self
    }
}

impl<E: Endpoint> Middleware<E> for Edge {
    type Output = EdgeEndpoint<E>;
    fn transform(&self, inner: E) -> Self::Output {
        EdgeEndpoint {
            inner,
            edge: self.clone(),
        }
    }
}

pub struct EdgeEndpoint<E> {
    inner: E,
    edge: Edge,
}

impl<E: Endpoint> Endpoint for EdgeEndpoint<E> {
    type Output = Response;

    async fn call(&self, mut req: Request) -> poem::Result<Response> {
        let request_id = req
            .headers()
            .get(REQUEST_ID_HEADER)
            .and_then(accept_request_id)
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let method = req.method().clone();
        let path = req.uri().path().to_owned();
        let started = Instant::now();
        let span = tracing::info_span!("request", request_id = %request_id);
        let limited = !self
            .edge
            .exempt
            .as_ref()
            .is_some_and(|exempt| exempt(&path));

        let (mut resp, operation) = REQUEST_ID
            .scope(request_id.clone(), async {
                if let Some(wait_secs) = self
                    .edge
                    .throttle
                    .as_ref()
                    .and_then(|t| t.check(&req).err())
                {
                    return (crate::throttle::too_many_requests(wait_secs), None);
                }
                let declared_len = req
                    .headers()
                    .get(header::CONTENT_LENGTH)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<u64>().ok());
                if limited && declared_len.is_some_and(|len| len > self.edge.max_body_bytes) {
                    return (self.too_large(), None);
                }
                // A body without a length is counted as it streams; past the limit the stream fails
                // and the answer is 413 whatever the endpoint made of the broken body.
                let overflowed = Arc::new(AtomicBool::new(false));
                if limited && declared_len.is_none() {
                    let limit = self.edge.max_body_bytes;
                    let seen = AtomicU64::new(0);
                    let flag = overflowed.clone();
                    let stream = req.take_body().into_bytes_stream().map(move |chunk| {
                        let chunk = chunk?;
                        if seen.fetch_add(chunk.len() as u64, Ordering::Relaxed)
                            + chunk.len() as u64
                            > limit
                        {
                            flag.store(true, Ordering::Relaxed);
                            return Err(std::io::Error::other("request body too large"));
                        }
                        Ok(chunk)
                    });
                    req.set_body(Body::from_bytes_stream(stream));
                }
                let (resp, operation) = match self.inner.call(req).await {
                    Ok(out) => {
                        let resp = out.into_response();
                        let op = resp.data::<OperationId>().map(|op| op.0);
                        (resp, op)
                    }
                    Err(err) => {
                        let op = err.data::<OperationId>().map(|op| op.0);
                        (err.into_response(), op)
                    }
                };
                if overflowed.load(Ordering::Relaxed) {
                    return (self.too_large(), operation);
                }
                (
                    normalize_error(resp, operation.is_some(), &method, &path).await,
                    operation,
                )
            })
            .instrument(span.clone())
            .await;

        let elapsed = started.elapsed();
        let status = resp.status();
        let op_label = operation.unwrap_or("unmatched");
        self.edge
            .metrics
            .observe_http(op_label, status.as_u16(), elapsed);
        span.in_scope(|| {
            let ms = elapsed.as_secs_f64() * 1000.0;
            if status.is_server_error() {
                tracing::warn!(%method, %path, status = status.as_u16(), operation = op_label, ms, "request failed");
            } else if status.is_client_error() {
                tracing::info!(%method, %path, status = status.as_u16(), operation = op_label, ms, "request refused");
            } else if self.edge.quiet_operations.contains(op_label) {
                tracing::debug!(%method, %path, status = status.as_u16(), operation = op_label, ms, "request");
            } else {
                tracing::info!(%method, %path, status = status.as_u16(), operation = op_label, ms, "request");
            }
        });
        if let Ok(v) = HeaderValue::from_str(&request_id) {
            resp.headers_mut().insert(REQUEST_ID_HEADER, v);
        }
        Ok(resp)
    }
}

impl<E> EdgeEndpoint<E> {
    fn too_large(&self) -> Response {
        error_response(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!(
                "the request body is larger than this server accepts ({} bytes)",
                self.edge.max_body_bytes
            ),
        )
    }
}

/// An [`ErrorBody`] response for the current request.
pub fn error_response(status: StatusCode, code: &str, message: String) -> Response {
    let body = ErrorBody {
        code: code.to_owned(),
        message,
        request_id: current_request_id(),
    };
    Response::builder()
        .status(status)
        .content_type("application/json; charset=utf-8")
        .body(serde_json::to_vec(&body).expect("ErrorBody serializes"))
}

/// Error responses that are not JSON yet (the framework's) become an [`ErrorBody`] with the same
/// status. XML errors are left alone: they are a protocol's own (S3's `<Error>`), which its clients parse.
async fn normalize_error(
    mut resp: Response,
    matched_operation: bool,
    method: &poem::http::Method,
    path: &str,
) -> Response {
    let status = resp.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return resp;
    }
    let structured = resp
        .content_type()
        .is_some_and(|ct| ct.starts_with("application/json") || ct.starts_with("application/xml"));
    if structured {
        return resp;
    }
    let text = resp.take_body().into_string().await.unwrap_or_default();
    let message = match status {
        StatusCode::NOT_FOUND if !matched_operation => {
            format!("no route for {method} {path}; the API is described at /openapi.json and /docs")
        }
        StatusCode::METHOD_NOT_ALLOWED => format!("{method} is not allowed on {path}"),
        StatusCode::UNAUTHORIZED if text.trim().is_empty() || text.contains("authorization") => {
            "missing or malformed bearer token: send `Authorization: Bearer <token>`".to_owned()
        }
        _ if text.trim().is_empty() => status.canonical_reason().unwrap_or("error").to_owned(),
        _ => text,
    };
    let mut out = error_response(status, code_for_status(status), message);
    // Keep headers such as WWW-Authenticate or Allow that the framework set.
    for (name, value) in resp.headers() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            out.headers_mut().insert(name.clone(), value.clone());
        }
    }
    out
}
