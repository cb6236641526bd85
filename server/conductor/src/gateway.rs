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
use http_body_util::BodyExt as _;
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use poem::{
    Body, Endpoint, IntoResponse, Request, Response,
    http::{
        HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri, header,
        uri::{PathAndQuery, Scheme},
    },
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

/// The body of a request forwarded to an instance: the client's, streamed (poem's body is this
/// type inside, so no copy is made).
type ForwardedBody = http_body_util::combinators::BoxBody<hyper::body::Bytes, std::io::Error>;

/// Sends requests on to service instances and their answers back: what the gateway and the S3
/// edge ([`crate::s3_edge`]) share.
///
/// hyper's pooled client rather than reqwest: a proxy has the request's parts already parsed, and
/// reqwest parsed every URL again (IDNA included) and copied every header into a request of its
/// own; with keep-alive connections to each instance, those were most of the gateway's own
/// user-space work (docs/benchmarks.md, "Orchestration").
pub struct Forwarder {
    client: Client<hyper_rustls::HttpsConnector<HttpConnector>, ForwardedBody>,
}

impl Forwarder {
    pub fn new(state: &AppState) -> Self {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(Duration::from_secs(3)));
        // Instances serving HTTPS present certificates of the cluster CA, and nothing else is believed.
        let ca = state
            .tls
            .as_ref()
            .map(|tls| tls.ca.pem().as_bytes().to_vec());
        let tls = aerekos_common::tls::client_config(ca.as_deref()).expect("the cluster CA parses");
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(256)
            .build(connector);
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

/// Headers that belong to one connection, not to the request (RFC 9110 §7.6.1), and `Host`
/// (the instance's, unless the caller keeps the client's).
const HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::HOST,
];

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
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        let has_body = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .is_some_and(|l| l != "0")
            || req.headers().contains_key(header::TRANSFER_ENCODING);
        let repeatable = !has_body
            && matches!(
                method,
                Method::GET | Method::HEAD | Method::OPTIONS | Method::DELETE
            );
        // The client's headers go on, edited in place, less those of its connection.
        let mut headers = std::mem::take(req.headers_mut());
        let host = keep_host
            .then(|| headers.get(header::HOST).cloned())
            .flatten();
        strip_hop_by_hop(&mut headers);
        if let Some(host) = host {
            headers.insert(header::HOST, host);
        }
        if let Ok(id) = HeaderValue::from_str(&current_request_id()) {
            headers.insert(REQUEST_ID_HEADER, id);
        }
        if let Ok(ip) = HeaderValue::from_str(&client_ip.to_string()) {
            headers.insert("x-forwarded-for", ip);
        }
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
            let uri = Uri::builder()
                .scheme(if endpoint.tls {
                    Scheme::HTTPS
                } else {
                    Scheme::HTTP
                })
                .authority(endpoint.address.as_str())
                .path_and_query(path_and_query.clone())
                .build();
            let uri = match uri {
                Ok(uri) => uri,
                Err(e) => {
                    return gateway_error(
                        StatusCode::BAD_GATEWAY,
                        "bad_gateway",
                        format!(
                            "instance {} of {service} has an unusable address {:?}: {e}",
                            endpoint.instance_id, endpoint.address
                        ),
                    );
                }
            };
            let outgoing: ForwardedBody = match body.take() {
                Some(b) if has_body => b.into(),
                _ => Body::empty().into(),
            };
            let mut forwarded = hyper::Request::new(outgoing);
            *forwarded.method_mut() = method.clone();
            *forwarded.uri_mut() = uri;
            // Kept for a second try only when there can be one.
            *forwarded.headers_mut() = if repeatable && tried.is_empty() {
                headers.clone()
            } else {
                std::mem::take(&mut headers)
            };
            let in_flight = InFlight::enter(endpoint.in_flight.clone());
            match self.client.request(forwarded).await {
                Ok(upstream) => return relay(upstream, in_flight),
                // Nothing came back: a request that is safe to repeat goes to another instance.
                Err(e) if repeatable && tried.is_empty() => {
                    tracing::warn!(service, instance_id = %endpoint.instance_id, error = ?e, "instance unreachable; trying another");
                    tried.push(endpoint.instance_id);
                }
                Err(e) => {
                    tracing::warn!(service, instance_id = %endpoint.instance_id, error = ?e, "forwarding failed");
                    return gateway_error(
                        StatusCode::BAD_GATEWAY,
                        "bad_gateway",
                        format!(
                            "instance {} of {service} at {} failed: {}",
                            endpoint.instance_id,
                            endpoint.address,
                            causes(&e)
                        ),
                    );
                }
            }
        }
    }
}

/// An error and its causes, on one line (hyper's own message is only "client error (Connect)").
fn causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

/// The instance's answer, its body streamed back; the request counts as in flight until the
/// body has been sent.
fn relay(upstream: hyper::Response<hyper::body::Incoming>, in_flight: InFlight) -> Response {
    let mut resp: Response = upstream
        .map(|body| {
            body.map_err(std::io::Error::other).map_frame(move |frame| {
                let _ = &in_flight;
                frame
            })
        })
        .into();
    strip_hop_by_hop(resp.headers_mut());
    resp.set_data(OperationId("gateway"));
    resp
}

/// Removes the headers of one connection (see [`HOP_BY_HOP`]).
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
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
