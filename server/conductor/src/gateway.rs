//! The gateway: every `/api/<service>/…` request for a service of the catalog is checked (a valid
//! user or service token) and forwarded to a healthy instance of that service, bodies streamed
//! both ways. Everything else goes to the conductor's own API.
//!
//! The instance is picked by the service's load balancing (see [`crate::domain::routes`]). A
//! request that cannot reach its instance (connection refused or reset before an answer) is tried
//! once more on another instance when it is safe to repeat: an idempotent method with no body.
//! The request id travels on as `X-Request-Id`; the service checks the token again itself.

use std::{
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use aerekos_common::edge::{REQUEST_ID_HEADER, current_request_id, error_response};
use futures_util::TryStreamExt as _;
use poem::{
    Body, Endpoint, IntoResponse, Request, Response,
    http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header},
};
use poem_openapi::OperationId;

use crate::AppState;

/// The service a path is for, if it has the gateway's shape: `/api/<service>` or `/api/<service>/…`.
pub fn service_of(path: &str) -> Option<&str> {
    let rest = path.strip_prefix("/api/")?;
    let name = rest.split('/').next()?;
    (!name.is_empty()).then_some(name)
}

pub struct Gateway<E> {
    api: E,
    state: Arc<AppState>,
    forwarder: Arc<Forwarder>,
}

impl<E> Gateway<E> {
    pub fn new(api: E, state: Arc<AppState>, forwarder: Arc<Forwarder>) -> Self {
        Self {
            api,
            state,
            forwarder,
        }
    }
}

/// Sends requests on to service instances and their answers back: what the gateway and the S3
/// edge ([`crate::s3_edge`]) share.
pub struct Forwarder {
    client: reqwest::Client,
}

impl Forwarder {
    pub fn new(state: &AppState) -> Self {
        let mut client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(3))
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .pool_max_idle_per_host(256);
        // Instances serving HTTPS present certificates of the cluster CA, and nothing else is believed.
        if let Some(tls) = &state.tls {
            let ca = reqwest::Certificate::from_pem_bundle(tls.ca.pem().as_bytes())
                .expect("the cluster CA parses");
            client = client.tls_certs_only(ca);
        }
        let client = client.build().expect("an HTTP client");
        Self { client }
    }
}

/// Schedules' calls to platform services, through the same forwarder as the gateway's requests.
pub struct ServiceCalls {
    state: Arc<AppState>,
    forwarder: Arc<Forwarder>,
}

impl ServiceCalls {
    pub fn new(state: Arc<AppState>, forwarder: Arc<Forwarder>) -> Self {
        Self { state, forwarder }
    }
}

impl crate::domain::schedules::ServiceCaller for ServiceCalls {
    fn call<'a>(
        &'a self,
        call: &'a crate::model::ServiceCall,
        token: &'a str,
    ) -> futures_util::future::BoxFuture<'a, Result<u16, String>> {
        Box::pin(async move {
            let Some(route) = self
                .state
                .routes
                .snapshot()
                .services
                .get(&call.service)
                .cloned()
            else {
                return Err(format!("no service {} in the catalog", call.service));
            };
            let method = Method::from_bytes(call.method.as_deref().unwrap_or("POST").as_bytes())
                .map_err(|e| e.to_string())?;
            let body = call.body.clone().unwrap_or_default();
            let req = Request::builder()
                .method(method)
                .uri_str(&format!("/api/{}{}", call.service, call.path))
                .header(header::AUTHORIZATION, format!("Bearer {token}"))
                .header(header::CONTENT_TYPE, "application/json")
                .header(header::CONTENT_LENGTH, body.len().to_string())
                .body(body);
            let resp = self
                .forwarder
                .forward(req, &call.service, &route, false)
                .await;
            Ok(resp.status().as_u16())
        })
    }
}

/// Headers that belong to one connection, not to the request (RFC 9110 §7.6.1).
fn is_hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "host"
    )
}

/// Workers' log batches to logs_manager.
const LOG_INGEST_PATH: &str = "/api/logs_manager/ingest";
/// The operation a successful log batch through the gateway is counted and logged as.
pub const LOG_INGEST_OPERATION: &str = "gateway_log_ingest";

fn gateway_error(status: StatusCode, code: &str, message: String) -> Response {
    let mut resp = error_response(status, code, message);
    resp.set_data(OperationId("gateway"));
    resp
}

impl<E: Endpoint> Endpoint for Gateway<E> {
    type Output = Response;

    async fn call(&self, req: Request) -> poem::Result<Response> {
        let routed = service_of(req.uri().path()).and_then(|name| {
            self.state
                .routes
                .snapshot()
                .services
                .get(name)
                .cloned()
                .map(|r| (name.to_owned(), r))
        });
        match routed {
            Some((service, route)) => {
                let log_ingest = req.uri().path() == LOG_INGEST_PATH;
                let mut resp = self.checked_forward(req, &service, &route).await;
                if log_ingest && resp.status().is_success() {
                    // Logged at debug (the edge's quiet list): a line per shipped batch would be
                    // shipped itself, and so another batch, for ever.
                    resp.set_data(OperationId(LOG_INGEST_OPERATION));
                }
                Ok(resp)
            }
            None => self.api.call(req).await.map(IntoResponse::into_response),
        }
    }
}

impl<E> Gateway<E> {
    /// Requests through the gateway carry a user's or service's token: checked here first.
    async fn checked_forward(
        &self,
        req: Request,
        service: &str,
        route: &crate::domain::routes::ServiceRoute,
    ) -> Response {
        let token = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            });
        let Some(token) = token else {
            return gateway_error(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "missing or malformed bearer token: send `Authorization: Bearer <token>`".into(),
            );
        };
        if let Err(e) = self.state.auth.verify(token) {
            return gateway_error(
                StatusCode::UNAUTHORIZED,
                &e.body().code,
                e.body().message.clone(),
            );
        }
        self.forwarder.forward(req, service, route, false).await
    }
}

impl Forwarder {
    /// Forwards `req` to an instance of `service`. With `keep_host` the client's `Host` goes on
    /// unchanged (S3 signatures cover it, and virtual-host buckets are named in it).
    pub async fn forward(
        &self,
        mut req: Request,
        service: &str,
        route: &crate::domain::routes::ServiceRoute,
        keep_host: bool,
    ) -> Response {
        let client_ip = aerekos_common::net::peer_address(&req);
        let method = req.method().clone();
        let path_and_query = req
            .uri()
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_owned();
        let mut headers = HeaderMap::new();
        for (name, value) in req.headers() {
            if !is_hop_by_hop(name) {
                headers.append(name.clone(), value.clone());
            }
        }
        if let Ok(id) = HeaderValue::from_str(&current_request_id()) {
            headers.insert(REQUEST_ID_HEADER, id);
        }
        if let Ok(ip) = HeaderValue::from_str(&client_ip.to_string()) {
            headers.insert("x-forwarded-for", ip);
        }
        if keep_host && let Some(host) = req.headers().get(header::HOST) {
            headers.insert(header::HOST, host.clone());
        }
        let has_body = headers.contains_key(header::CONTENT_LENGTH)
            && headers[header::CONTENT_LENGTH] != "0"
            || req.headers().contains_key(header::TRANSFER_ENCODING);
        let repeatable = !has_body
            && matches!(
                method,
                Method::GET | Method::HEAD | Method::OPTIONS | Method::DELETE
            );
        let mut body = Some(req.take_body());

        let mut tried = vec![];
        loop {
            let Some(endpoint) = route.pick(client_ip, &tried) else {
                if let (Some(why), true) = (&route.unavailable, tried.is_empty()) {
                    let mut resp = gateway_error(
                        StatusCode::SERVICE_UNAVAILABLE,
                        why.code,
                        format!("{service} is unavailable: {}", why.message),
                    );
                    resp.headers_mut()
                        .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
                    return resp;
                }
                let message = if tried.is_empty() {
                    format!(
                        "no healthy instance of {service}; see GET /api/services/{service}/deployments"
                    )
                } else {
                    format!("no healthy instance of {service} could be reached")
                };
                return gateway_error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "service_unavailable",
                    message,
                );
            };
            let scheme = if endpoint.tls { "https" } else { "http" };
            let url = format!("{scheme}://{}{}", endpoint.address, path_and_query);
            let outgoing = match body.take() {
                Some(b) if has_body => reqwest::Body::wrap_stream(b.into_bytes_stream()),
                _ => reqwest::Body::from(Vec::new()),
            };
            let in_flight = InFlight::enter(endpoint.in_flight.clone());
            let sent = self
                .client
                .request(method.clone(), &url)
                .headers(headers.clone())
                .body(outgoing)
                .send()
                .await;
            match sent {
                Ok(upstream) => return relay(upstream, in_flight),
                Err(e) if repeatable && (e.is_connect() || e.is_request()) && tried.is_empty() => {
                    tracing::warn!(service, instance_id = %endpoint.instance_id, error = %e, "instance unreachable; trying another");
                    tried.push(endpoint.instance_id);
                }
                Err(e) => {
                    tracing::warn!(service, instance_id = %endpoint.instance_id, error = %e, "forwarding failed");
                    return gateway_error(
                        StatusCode::BAD_GATEWAY,
                        "bad_gateway",
                        format!(
                            "instance {} of {service} at {} failed: {e}",
                            endpoint.instance_id, endpoint.address
                        ),
                    );
                }
            }
        }
    }
}

/// The instance's answer, its body streamed back; the request counts as in flight until the
/// body has been sent.
fn relay(upstream: reqwest::Response, in_flight: InFlight) -> Response {
    let mut builder = Response::builder().status(upstream.status());
    for (name, value) in upstream.headers() {
        if !is_hop_by_hop(name) {
            builder = builder.header(name.clone(), value.clone());
        }
    }
    let stream = upstream
        .bytes_stream()
        .map_err(std::io::Error::other)
        .inspect_ok(move |_| {
            let _ = &in_flight;
        });
    let mut resp = builder.body(Body::from_bytes_stream(stream));
    resp.set_data(OperationId("gateway"));
    resp
}

/// Counts a request in flight on an endpoint until dropped.
struct InFlight(Arc<std::sync::atomic::AtomicUsize>);

impl InFlight {
    fn enter(counter: Arc<std::sync::atomic::AtomicUsize>) -> Self {
        counter.fetch_add(1, Ordering::Relaxed);
        Self(counter)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}
