//! Relays from inside the guest to the host. QEMU's user-mode network is `restrict=on`: the guest
//! reaches nothing outside but the addresses the worker forwards (`guestfwd`), each to one host
//! address. The conductor is such an address; the guest's programs are given its URL unchanged
//! (its certificate names that host), so the agent listens on that address inside the guest (on
//! loopback) and carries each connection to the forwarded address.

use std::{
    io,
    net::{Shutdown, SocketAddr, TcpListener, TcpStream},
};

/// Listen on `listen` in the guest; carry each connection to `to` (a forwarded address).
#[derive(serde::Deserialize)]
pub struct Relay {
    pub listen: SocketAddr,
    pub to: SocketAddr,
    /// The host name that stands for `listen` (the conductor's URL names a host, not an
    /// address): it goes in the guest's `/etc/hosts`.
    #[serde(default)]
    pub name: Option<String>,
}

/// Binds every relay's listener (so a program started after this finds them), then serves each on
/// a thread of its own.
pub fn start(relays: &[Relay]) -> Result<(), String> {
    for relay in relays {
        if let Some(name) = &relay.name {
            let mut hosts = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
            hosts.push_str(&format!("{} {name}\n", relay.listen.ip()));
            std::fs::write("/etc/hosts", hosts).map_err(|e| format!("/etc/hosts: {e}"))?;
        }
        let listener = TcpListener::bind(relay.listen)
            .map_err(|e| format!("listening on {} for the relay: {e}", relay.listen))?;
        let to = relay.to;
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                std::thread::spawn(move || {
                    let _ = carry(client, to);
                });
            }
        });
    }
    Ok(())
}

/// Copies both ways until each side has finished sending.
fn carry(client: TcpStream, to: SocketAddr) -> io::Result<()> {
    let server = TcpStream::connect(to)?;
    let (mut client_read, mut server_write) = (client.try_clone()?, server.try_clone()?);
    let upstream = std::thread::spawn(move || {
        let _ = io::copy(&mut client_read, &mut server_write);
        let _ = server_write.shutdown(Shutdown::Write);
    });
    let (mut server_read, mut client_write) = (server, client);
    let _ = io::copy(&mut server_read, &mut client_write);
    let _ = client_write.shutdown(Shutdown::Write);
    let _ = upstream.join();
    Ok(())
}
