//! The host's end of a guest's way to the conductor. A guest's network is `restrict=on`: it
//! reaches only the addresses QEMU forwards for it. For the conductor the driver asks QEMU to run
//! `aerekos relay <conductor host:port>` for each connection the guest opens to
//! [`GUEST_ADDRESS`] (a `guestfwd … cmd:`), with the connection as the command's standard input
//! and output; the guest agent listens on the conductor's own address inside the guest and
//! carries connections there (worker/guest/src/relay.rs), so programs in the guest use the
//! conductor's URL unchanged and its certificate still names its host.

use std::{
    io,
    net::{Shutdown, TcpStream},
    os::{fd::AsFd as _, unix::net::UnixStream},
};

/// The address in the guest's network that QEMU forwards to the conductor.
pub const GUEST_ADDRESS: [u8; 4] = [10, 0, 2, 100];
/// The executable's hidden command (`aerekos relay <host:port>`).
pub const COMMAND: &str = "relay";

/// Connects to `to` and carries the connection on standard input and output (one socket, as
/// QEMU gives it) to it and back. When the server has finished sending, the guest's side is told
/// (its write half shut) and the relay ends, whatever the guest still sends.
pub fn run(to: &str) -> io::Result<()> {
    // The guest's connection, from its descriptor (standard output is line-buffered in Rust,
    // and an HTTP body need not end in a newline).
    let guest = UnixStream::from(io::stdout().as_fd().try_clone_to_owned()?);
    let server = TcpStream::connect(to)?;
    let (mut from_guest, mut to_server) = (guest.try_clone()?, server.try_clone()?);
    std::thread::spawn(move || {
        let _ = io::copy(&mut from_guest, &mut to_server);
        let _ = to_server.shutdown(Shutdown::Write);
    });
    let _ = io::copy(&mut &server, &mut &guest);
    let _ = guest.shutdown(Shutdown::Write);
    Ok(())
}
