//! Binding and serving: every aerekos server is a library whose `start` returns a [`ServerHandle`].

use std::{io, net::SocketAddr, time::Duration};

use poem::{
    Endpoint, EndpointExt as _, Route, Server,
    listener::{Acceptor, Listener, TcpAcceptor, TcpListener},
    web::{LocalAddr, RemoteAddr},
};
use poem_openapi::{OpenApi, OpenApiService};

use crate::{edge::Edge, limits::Limit};
use tokio::{sync::oneshot, task::JoinHandle};

/// How long in-flight requests get to finish after shutdown is asked for.
const GRACEFUL_SHUTDOWN: Duration = Duration::from_secs(10);

/// A running server: its bound address and the means to stop it.
pub struct ServerHandle {
    addr: SocketAddr,
    tls: bool,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<io::Result<()>>,
}

impl ServerHandle {
    /// The address actually bound (the real port when port 0 was asked for).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://<addr>` (`https://` when serving TLS), with 0.0.0.0 / :: replaced by loopback so
    /// it can be dialled.
    pub fn url(&self) -> String {
        let mut addr = self.addr;
        if addr.ip().is_unspecified() {
            addr.set_ip(if addr.is_ipv4() {
                [127, 0, 0, 1].into()
            } else {
                std::net::Ipv6Addr::LOCALHOST.into()
            });
        }
        format!("{}://{addr}", if self.tls { "https" } else { "http" })
    }

    /// Stops accepting connections, lets in-flight requests finish (up to 10 s), and waits.
    pub async fn shutdown(mut self) -> io::Result<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.task.await.map_err(io::Error::other)?
    }

    /// Waits until the server stops (it only stops by itself on an I/O error).
    pub async fn wait(self) -> io::Result<()> {
        self.task.await.map_err(io::Error::other)?
    }
}

/// Where a worker tells its instances to listen: every interface, or loopback on a worker that
/// serves plain HTTP (a name of the platform's own: a shell's `HOST` holds the machine's name).
pub const INSTANCE_HOST_ENV: &str = "AEREKOS_INSTANCE_HOST";

/// A service's listening address from its environment: `<PREFIX>_HOST` else
/// [`INSTANCE_HOST_ENV`] (which a worker sets) else every interface, and `<PREFIX>_PORT` else
/// `PORT` (which a worker sets) else `default_port`.
/// Runs `work` (file I/O, a store's lock) on the blocking pool, for an API handler; a panic in it
/// answers 500.
pub async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> crate::ApiResult<T> + Send + 'static,
) -> crate::ApiResult<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(crate::ApiError::internal)?
}

pub fn bind_from_env(
    get: impl Fn(&str) -> Option<String>,
    prefix: &str,
    default_port: u16,
) -> Result<SocketAddr, String> {
    let host = get(&format!("{prefix}_HOST"))
        .or_else(|| get(INSTANCE_HOST_ENV))
        .unwrap_or_else(|| "0.0.0.0".into());
    let port = get(&format!("{prefix}_PORT"))
        .or_else(|| get("PORT"))
        .unwrap_or_else(|| default_port.to_string());
    socket_addr(&host, &port)
        .ok_or_else(|| format!("{prefix}_HOST/PORT {host}:{port} is not an address"))
}

/// `host` (an IP address, IPv6 with or without brackets) and `port` as one address.
pub fn socket_addr(host: &str, port: &str) -> Option<SocketAddr> {
    let joined = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    joined.parse().ok()
}

/// Binds `addr` (port 0 picks a free port) and serves `ep` in plain HTTP on a background task.
pub async fn serve<E>(addr: SocketAddr, ep: E) -> io::Result<ServerHandle>
where
    E: Endpoint + 'static,
{
    serve_tls(addr, ep, None).await
}

/// Like [`serve`], over TLS when `tls` is given (see [`crate::tls`]).
pub async fn serve_tls<E>(
    addr: SocketAddr,
    ep: E,
    tls: Option<std::sync::Arc<crate::tls::ServerConfig>>,
) -> io::Result<ServerHandle>
where
    E: Endpoint + 'static,
{
    let acceptor = NoDelay(TcpListener::bind(addr).into_acceptor().await?);
    let bound = acceptor
        .local_addr()
        .first()
        .and_then(|a| a.as_socket_addr().copied())
        .ok_or_else(|| io::Error::other("listener reported no local address"))?;
    let (tx, rx) = oneshot::channel::<()>();
    let stopped = async {
        let _ = rx.await;
    };
    let is_tls = tls.is_some();
    let task = match tls {
        Some(config) => {
            let acceptor = crate::tls::TlsAcceptor::new(acceptor, config);
            tokio::spawn(
                Server::new_with_acceptor(acceptor).run_with_graceful_shutdown(
                    ep,
                    stopped,
                    Some(GRACEFUL_SHUTDOWN),
                ),
            )
        }
        None => tokio::spawn(
            Server::new_with_acceptor(acceptor).run_with_graceful_shutdown(
                ep,
                stopped,
                Some(GRACEFUL_SHUTDOWN),
            ),
        ),
    };
    Ok(ServerHandle {
        addr: bound,
        tls: is_tls,
        shutdown: Some(tx),
        task,
    })
}

/// An API the way every aerekos server exposes it: its spec at `/openapi.json`, Swagger UI at
/// `/docs`, the operations themselves (405s naming the methods a path has, JSON bodies held to
/// their declared types: [`crate::strict_json`]), `state` attached for the endpoints (no
/// middleware yet).
pub fn api_routes<T, S>(
    api: OpenApiService<T, ()>,
    limits: &[Limit],
    state: S,
) -> impl Endpoint<Output = poem::Response> + 'static
where
    T: OpenApi + 'static,
    S: Clone + Send + Sync + 'static,
{
    let spec = finished_spec(&api.spec(), limits);
    let allowed = AllowedMethods::from_spec(&spec);
    let bodies = crate::strict_json::JsonBodies::from_spec(&spec);
    let spec_endpoint = poem::endpoint::make_sync(move |_| {
        poem::Response::builder()
            .content_type("application/json; charset=utf-8")
            .body(spec.clone())
    });
    let routes = Route::new()
        .at("/openapi.json", spec_endpoint)
        .nest("/docs", api.swagger_ui())
        .nest("/", api)
        .data(state);
    WithAllow {
        inner: crate::strict_json::StrictJson {
            inner: routes,
            bodies,
        },
        allowed,
    }
}

/// An API's spec as it is served and committed: poem-openapi's, plus what poem-openapi leaves
/// out that the servers enforce: an integer of a sized format (`uint32`, `int64`, …) stays in
/// that format's range (`minimum`, `maximum`), so clients and fuzzers are not told a negative or
/// 30-digit number is valid; and the `limits` the server's domain enforces (see [`crate::limits`]).
pub fn finished_spec(spec: &str, limits: &[Limit]) -> String {
    fn walk(value: &mut serde_json::Value) {
        match value {
            serde_json::Value::Object(map) => {
                let range = match (
                    map.get("type").and_then(|t| t.as_str()),
                    map.get("format").and_then(|f| f.as_str()),
                ) {
                    (Some("integer"), Some("uint8")) => {
                        Some((serde_json::Value::from(0), serde_json::Value::from(u8::MAX)))
                    }
                    (Some("integer"), Some("uint16")) => Some((0.into(), u16::MAX.into())),
                    (Some("integer"), Some("uint32")) => Some((0.into(), u32::MAX.into())),
                    (Some("integer"), Some("uint64")) => Some((0.into(), u64::MAX.into())),
                    (Some("integer"), Some("int8")) => Some((i8::MIN.into(), i8::MAX.into())),
                    (Some("integer"), Some("int16")) => Some((i16::MIN.into(), i16::MAX.into())),
                    (Some("integer"), Some("int32")) => Some((i32::MIN.into(), i32::MAX.into())),
                    (Some("integer"), Some("int64")) => Some((i64::MIN.into(), i64::MAX.into())),
                    _ => None,
                };
                if let Some((min, max)) = range {
                    map.entry("minimum").or_insert(min);
                    map.entry("maximum").or_insert(max);
                }
                map.values_mut().for_each(walk);
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(walk),
            _ => {}
        }
    }
    let mut doc: serde_json::Value = serde_json::from_str(spec).expect("poem-openapi writes JSON");
    // Declared limits first: a narrower minimum or maximum wins over the format's range.
    crate::limits::declare(&mut doc, limits);
    walk(&mut doc);
    serde_json::to_string_pretty(&doc).expect("a JSON value serializes")
}

/// A spec's path (`/api/keys/{key}`) as requests are matched against it: a `{param}` matches one
/// non-empty segment.
#[derive(Clone, Debug)]
pub struct PathTemplate(Vec<Option<String>>);

impl PathTemplate {
    pub fn new(path: &str) -> Self {
        Self(
            path.split('/')
                .map(|segment| {
                    (!(segment.starts_with('{') && segment.ends_with('}')))
                        .then(|| segment.to_owned())
                })
                .collect(),
        )
    }

    pub fn fits(&self, path: &str) -> bool {
        let mut segments = path.split('/');
        let fits = self.0.iter().all(|t| {
            segments
                .next()
                .is_some_and(|s| t.as_deref().map_or(!s.is_empty(), |t| t == s))
        });
        fits && segments.next().is_none()
    }
}

/// The methods each path of an API takes, read off its spec: RFC 9110 wants every 405 to carry
/// `Allow`, and poem's router does not say.
#[derive(Clone, Debug, Default)]
pub struct AllowedMethods(std::sync::Arc<Vec<(PathTemplate, String)>>);

impl AllowedMethods {
    pub fn from_spec(spec_json: &str) -> Self {
        let spec: serde_json::Value = serde_json::from_str(spec_json).unwrap_or_default();
        let mut table = Vec::new();
        for (path, operations) in spec["paths"].as_object().into_iter().flatten() {
            let mut methods: Vec<String> = operations
                .as_object()
                .into_iter()
                .flatten()
                .map(|(m, _)| m.to_ascii_uppercase())
                .collect();
            if methods.iter().any(|m| m == "GET") {
                methods.push("HEAD".into());
            }
            methods.sort();
            table.push((PathTemplate::new(path), methods.join(", ")));
        }
        Self(std::sync::Arc::new(table))
    }

    /// The `Allow` value for a request path, if the API has that path.
    pub fn for_path(&self, path: &str) -> Option<&str> {
        self.0
            .iter()
            .find_map(|(template, methods)| template.fits(path).then_some(methods.as_str()))
    }
}

/// Adds `Allow` to the 405s of the endpoint it wraps.
pub struct WithAllow<E> {
    pub inner: E,
    pub allowed: AllowedMethods,
}

impl<E: Endpoint> Endpoint for WithAllow<E> {
    type Output = poem::Response;

    async fn call(&self, req: poem::Request) -> poem::Result<poem::Response> {
        use poem::IntoResponse as _;
        let path = req.uri().path().to_owned();
        let allow = |mut resp: poem::Response| {
            if let Some(value) = self
                .allowed
                .for_path(&path)
                .and_then(|m| poem::http::HeaderValue::from_str(m).ok())
            {
                resp.headers_mut().insert(poem::http::header::ALLOW, value);
            }
            resp
        };
        match self.inner.call(req).await {
            Ok(resp) => {
                let resp = resp.into_response();
                Ok(
                    if resp.status() == poem::http::StatusCode::METHOD_NOT_ALLOWED {
                        allow(resp)
                    } else {
                        resp
                    },
                )
            }
            Err(e) if e.status() == poem::http::StatusCode::METHOD_NOT_ALLOWED => {
                Ok(allow(e.into_response()))
            }
            Err(e) => Err(e),
        }
    }
}

/// Serves [`api_routes`] behind `edge`, over TLS when `tls` is given.
pub async fn serve_api<T, S>(
    addr: SocketAddr,
    api: OpenApiService<T, ()>,
    limits: &[Limit],
    state: S,
    edge: Edge,
    tls: Option<std::sync::Arc<crate::tls::ServerConfig>>,
) -> io::Result<ServerHandle>
where
    T: OpenApi + 'static,
    S: Clone + Send + Sync + 'static,
{
    serve_tls(addr, api_routes(api, limits, state).with(edge), tls).await
}

/// Accepts TCP connections with Nagle's algorithm off. A response whose body streams goes out as
/// headers, then body: with Nagle on, the body waits for the client's (delayed, up to 40 ms) ACK
/// of the headers, which held each small-object GET to about that long.
struct NoDelay(TcpAcceptor);

impl Acceptor for NoDelay {
    type Io = tokio::net::TcpStream;

    fn local_addr(&self) -> Vec<LocalAddr> {
        self.0.local_addr()
    }

    async fn accept(
        &mut self,
    ) -> io::Result<(Self::Io, LocalAddr, RemoteAddr, poem::http::uri::Scheme)> {
        let accepted = self.0.accept().await?;
        // Best effort: a socket that refuses the option still serves, only slower.
        let _ = accepted.0.set_nodelay(true);
        Ok(accepted)
    }
}

/// CORS answered only for `origins` (each `scheme://host[:port]`): a preflight from any other
/// origin is refused with 403 and no `Access-Control-Allow-Origin`, so browsers block the call.
pub fn cors_allow_list(origins: Vec<String>) -> poem::middleware::Cors {
    poem::middleware::Cors::new()
        .allow_origins_fn(move |origin| {
            origins
                .iter()
                .any(|allowed| allowed.eq_ignore_ascii_case(origin))
        })
        .expose_header(crate::edge::REQUEST_ID_HEADER)
}

/// The origin of `url` as a browser sends it; a loopback host in each spelling a browser may use
/// (`127.0.0.1`, `localhost`, `[::1]`), since the dashboard of `aerekos up` is opened either way.
pub fn origins_of(url: &str) -> Vec<String> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return Vec::new();
    };
    let authority = rest.split('/').next().unwrap_or_default();
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if p.parse::<u16>().is_ok() && !h.ends_with(':') => (h, Some(p)),
        _ => (authority, None),
    };
    let port = port.map(|p| format!(":{p}")).unwrap_or_default();
    let loopback = ["127.0.0.1", "localhost", "[::1]"];
    if loopback.contains(&host) {
        loopback
            .iter()
            .map(|h| format!("{scheme}://{h}{port}"))
            .collect()
    } else {
        vec![format!("{scheme}://{host}{port}")]
    }
}

/// `CORS_ALLOWED_ORIGINS`: a comma-separated list of origins, or None when unset.
pub fn cors_origins_from_env(get: impl Fn(&str) -> Option<String>) -> Option<Vec<String>> {
    get("CORS_ALLOWED_ORIGINS").map(|v| {
        v.split(',')
            .map(|o| o.trim().trim_end_matches('/').to_owned())
            .filter(|o| !o.is_empty())
            .collect()
    })
}

#[cfg(test)]
mod allow_tests {
    use super::AllowedMethods;

    #[test]
    fn allow_names_the_methods_of_the_matching_path() {
        let spec = r#"{"paths": {"/api/keys": {"get": {}, "post": {}}, "/api/keys/{key}": {"delete": {}}}}"#;
        let allowed = AllowedMethods::from_spec(spec);
        assert_eq!(allowed.for_path("/api/keys"), Some("GET, HEAD, POST"));
        assert_eq!(allowed.for_path("/api/keys/k1"), Some("DELETE"));
        assert_eq!(allowed.for_path("/api/keys/"), None);
        assert_eq!(allowed.for_path("/api/other"), None);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn origins_of_loopback_and_other_hosts() {
        assert_eq!(
            super::origins_of("http://127.0.0.1:8080/"),
            [
                "http://127.0.0.1:8080",
                "http://localhost:8080",
                "http://[::1]:8080"
            ]
        );
        assert_eq!(
            super::origins_of("https://cloud.example.com"),
            ["https://cloud.example.com"]
        );
    }
}
