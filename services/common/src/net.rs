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

/// The socket addresses the host of `url` resolves to (port 80 when the URL names none); empty
/// when it does not resolve.
pub fn resolve_url_host(url: &str) -> Vec<SocketAddr> {
    let authority = url
        .split("://")
        .nth(1)
        .unwrap_or(url)
        .split('/')
        .next()
        .unwrap_or_default();
    let with_port = if authority
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    {
        authority.to_owned()
    } else {
        format!("{authority}:80")
    };
    with_port
        .to_socket_addrs()
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
