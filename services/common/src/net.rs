//! Addresses: where a request comes from, where a URL's host is, and which of this machine's
//! addresses faces a destination.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs as _};

use poem::Request;

/// The TCP peer of `req` (0.0.0.0 when it has none, which a real connection always has).
pub fn peer_address(req: &Request) -> IpAddr {
    req.remote_addr()
        .as_socket_addr()
        .map_or(IpAddr::from([0, 0, 0, 0]), |a| a.ip())
}

/// The client's address: the peer, or, when the peer is one of `trusted_proxies` (the conductor's
/// gateway, for a service behind it), the address that proxy names last in `X-Forwarded-For`.
pub fn client_address(req: &Request, trusted_proxies: &[IpAddr]) -> IpAddr {
    let peer = peer_address(req);
    if !trusted_proxies.contains(&peer) {
        return peer;
    }
    req.headers()
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.rsplit(',').next())
        .and_then(|last| last.trim().parse().ok())
        .unwrap_or(peer)
}

/// The host and port `url` (`scheme://host[:port]/…`) names: the port from the scheme when it
/// names none (443 for https, else 80); an IPv6 host without its brackets. None without a scheme
/// or a host.
pub fn url_host_port(url: &str) -> Option<(String, u16)> {
    let (scheme, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    let default = if scheme == "https" { 443 } else { 80 };
    // `[v6]:port`, `host:port`, `host`.
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) if !port.contains(']') => (host, port.parse().ok()?),
        _ => (authority, default),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    (!host.is_empty()).then(|| (host.to_owned(), port))
}

/// The socket addresses the host of `url` resolves to (a URL without a scheme is taken as
/// `http://`); empty when it does not resolve.
pub fn resolve_url_host(url: &str) -> Vec<SocketAddr> {
    let with_scheme = if url.contains("://") {
        url.to_owned()
    } else {
        format!("http://{url}")
    };
    url_host_port(&with_scheme)
        .and_then(|(host, port)| (host.as_str(), port).to_socket_addrs().ok())
        .map(Iterator::collect)
        .unwrap_or_default()
}

/// This machine's address on the route to `to`. Connecting a UDP socket sends nothing; it only
/// picks the interface the route goes out of.
pub fn outward_address(to: SocketAddr) -> Option<IpAddr> {
    let socket =
        std::net::UdpSocket::bind(if to.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }).ok()?;
    socket.connect(to).ok()?;
    socket.local_addr().ok().map(|a| a.ip())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_urls_host_and_port_come_from_it() {
        assert_eq!(
            url_host_port("http://127.0.0.1:8080"),
            Some(("127.0.0.1".into(), 8080))
        );
        assert_eq!(
            url_host_port("https://conductor.lan/api"),
            Some(("conductor.lan".into(), 443))
        );
        assert_eq!(url_host_port("http://[::1]:9/"), Some(("::1".into(), 9)));
        assert_eq!(url_host_port("conductor:8080"), None);
        assert_eq!(
            resolve_url_host("127.0.0.1:8080"),
            vec![SocketAddr::from(([127, 0, 0, 1], 8080))]
        );
    }
}
