//! Binding and serving: every aerekos server is a library whose `start` returns a [`ServerHandle`].

use std::{io, net::SocketAddr, time::Duration};

use poem::{
    Endpoint, EndpointExt as _, Route, Server,
    listener::{Acceptor, Listener, TcpAcceptor, TcpListener},
    web::{LocalAddr, RemoteAddr},
};
use poem_openapi::{OpenApi, OpenApiService};

use crate::edge::Edge;
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
            addr.set_ip(if addr.is_ipv4() { [127, 0, 0, 1].into() } else { std::net::Ipv6Addr::LOCALHOST.into() });
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

/// Binds `addr` (port 0 picks a free port) and serves `ep` in plain HTTP on a background task.
pub async fn serve<E>(addr: SocketAddr, ep: E) -> io::Result<ServerHandle>
where
    E: Endpoint + 'static,
{
    serve_tls(addr, ep, None).await
}

/// Like [`serve`], over TLS when `tls` is given (see [`crate::tls`]).
pub async fn serve_tls<E>(addr: SocketAddr, ep: E, tls: Option<std::sync::Arc<crate::tls::ServerConfig>>) -> io::Result<ServerHandle>
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
            tokio::spawn(Server::new_with_acceptor(acceptor).run_with_graceful_shutdown(ep, stopped, Some(GRACEFUL_SHUTDOWN)))
        }
        None => tokio::spawn(Server::new_with_acceptor(acceptor).run_with_graceful_shutdown(ep, stopped, Some(GRACEFUL_SHUTDOWN))),
    };
    Ok(ServerHandle { addr: bound, tls: is_tls, shutdown: Some(tx), task })
}

/// An API the way every aerekos server exposes it: its spec at `/openapi.json`, Swagger UI at
/// `/docs`, the operations themselves, `state` attached for the endpoints (no middleware yet).
pub fn api_routes<T, S>(api: OpenApiService<T, ()>, state: S) -> impl Endpoint<Output = poem::Response> + 'static
where
    T: OpenApi + 'static,
    S: Clone + Send + Sync + 'static,
{
    Route::new().at("/openapi.json", api.spec_endpoint()).nest("/docs", api.swagger_ui()).nest("/", api).data(state)
}

/// Serves [`api_routes`] behind `edge`, over TLS when `tls` is given.
pub async fn serve_api<T, S>(
    addr: SocketAddr,
    api: OpenApiService<T, ()>,
    state: S,
    edge: Edge,
    tls: Option<std::sync::Arc<crate::tls::ServerConfig>>,
) -> io::Result<ServerHandle>
where
    T: OpenApi + 'static,
    S: Clone + Send + Sync + 'static,
{
    serve_tls(addr, api_routes(api, state).with(edge), tls).await
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

    async fn accept(&mut self) -> io::Result<(Self::Io, LocalAddr, RemoteAddr, poem::http::uri::Scheme)> {
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
        .allow_origins_fn(move |origin| origins.iter().any(|allowed| allowed.eq_ignore_ascii_case(origin)))
        .expose_header(crate::edge::REQUEST_ID_HEADER)
}

/// The origin of `url` as a browser sends it; a loopback host in each spelling a browser may use
/// (`127.0.0.1`, `localhost`, `[::1]`), since the dashboard of `aerekos up` is opened either way.
pub fn origins_of(url: &str) -> Vec<String> {
    let Some((scheme, rest)) = url.split_once("://") else { return Vec::new() };
    let authority = rest.split('/').next().unwrap_or_default();
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if p.parse::<u16>().is_ok() && !h.ends_with(':') => (h, Some(p)),
        _ => (authority, None),
    };
    let port = port.map(|p| format!(":{p}")).unwrap_or_default();
    let loopback = ["127.0.0.1", "localhost", "[::1]"];
    if loopback.contains(&host) {
        loopback.iter().map(|h| format!("{scheme}://{h}{port}")).collect()
    } else {
        vec![format!("{scheme}://{host}{port}")]
    }
}

/// `CORS_ALLOWED_ORIGINS`: a comma-separated list of origins, or None when unset.
pub fn cors_origins_from_env(get: impl Fn(&str) -> Option<String>) -> Option<Vec<String>> {
    get("CORS_ALLOWED_ORIGINS").map(|v| v.split(',').map(|o| o.trim().trim_end_matches('/').to_owned()).filter(|o| !o.is_empty()).collect())
}

#[cfg(test)]
mod tests {
    #[test]
    fn origins_of_loopback_and_other_hosts() {
        assert_eq!(
            super::origins_of("http://127.0.0.1:8080/"),
            ["http://127.0.0.1:8080", "http://localhost:8080", "http://[::1]:8080"]
        );
        assert_eq!(super::origins_of("https://cloud.example.com"), ["https://cloud.example.com"]);
    }
}
