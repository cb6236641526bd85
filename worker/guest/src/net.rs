//! The guest's network, set up over rtnetlink (the guest has no `ip` tool): loopback and the
//! virtio NIC up, the NIC's IPv4 address, the default route and the resolver. QEMU's user-mode
//! network gives a guest 10.0.2.15/24 behind 10.0.2.2, with DNS at 10.0.2.3; the worker says so
//! in the plan.

use std::{
    net::Ipv4Addr,
    os::fd::{AsRawFd as _, OwnedFd},
    time::{Duration, Instant},
};

use nix::sys::socket::{
    AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType, bind, recv, send,
    socket,
};

const RTM_NEWLINK: u16 = 16;
const RTM_NEWADDR: u16 = 20;
const RTM_NEWROUTE: u16 = 24;
const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_EXCL: u16 = 0x200;
const NLM_F_CREATE: u16 = 0x400;
const IFF_UP: u32 = 0x1;
const AF_INET: u8 = 2;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const RTA_OIF: u16 = 4;
const RTA_GATEWAY: u16 = 5;
const RT_TABLE_MAIN: u8 = 254;
const RTPROT_BOOT: u8 = 3;
const RTN_UNICAST: u8 = 1;

/// What the plan says of the guest's network.
#[derive(serde::Deserialize)]
pub struct Network {
    pub address: Ipv4Addr,
    pub prefix_len: u8,
    pub gateway: Ipv4Addr,
    pub dns: Ipv4Addr,
}

/// Brings the network up as `net` says.
pub fn configure(net: &Network) -> Result<(), String> {
    let nic = wait_for_nic(Duration::from_secs(10))?;
    let (lo, nic_index) = (index("lo")?, index(&nic)?);
    let socket = Rtnetlink::open().map_err(|e| format!("rtnetlink: {e}"))?;
    socket.link_up(lo)?;
    socket.link_up(nic_index)?;
    socket.add_address(nic_index, net.address, net.prefix_len)?;
    socket.add_default_route(nic_index, net.gateway)?;
    std::fs::create_dir_all("/etc").map_err(|e| e.to_string())?;
    std::fs::write("/etc/resolv.conf", format!("nameserver {}\n", net.dns))
        .map_err(|e| format!("/etc/resolv.conf: {e}"))
}

/// Gives the loopback interface `address` too (a /32), so the guest's programs reach it inside
/// (where a relay listens for it).
pub fn add_loopback_address(address: Ipv4Addr) -> Result<(), String> {
    let lo = index("lo")?;
    Rtnetlink::open()
        .map_err(|e| format!("rtnetlink: {e}"))?
        .add_address(lo, address, 32)
}

/// The kernel's index of interface `name`.
fn index(name: &str) -> Result<u32, String> {
    std::fs::read_to_string(format!("/sys/class/net/{name}/ifindex"))
        .ok()
        .and_then(|t| t.trim().parse().ok())
        .ok_or_else(|| format!("no index for interface {name}"))
}

/// The first network interface that is not loopback, once its driver has made it.
fn wait_for_nic(patience: Duration) -> Result<String, String> {
    let deadline = Instant::now() + patience;
    loop {
        let found = std::fs::read_dir("/sys/class/net")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .find(|n| n != "lo");
        if let Some(name) = found {
            return Ok(name);
        }
        if Instant::now() > deadline {
            return Err("no network interface appeared".into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

struct Rtnetlink {
    fd: OwnedFd,
    seq: std::cell::Cell<u32>,
}

/// One rtattr: its length, type and payload, padded to 4 bytes.
fn attr(kind: u16, payload: &[u8]) -> Vec<u8> {
    let len = 4 + payload.len();
    let mut out = Vec::with_capacity(len.next_multiple_of(4));
    out.extend_from_slice(&(len as u16).to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(payload);
    out.resize(len.next_multiple_of(4), 0);
    out
}

impl Rtnetlink {
    fn open() -> nix::Result<Self> {
        let fd = socket(
            AddressFamily::Netlink,
            SockType::Raw,
            SockFlag::SOCK_CLOEXEC,
            SockProtocol::NetlinkRoute,
        )?;
        bind(fd.as_raw_fd(), &NetlinkAddr::new(0, 0))?;
        Ok(Self {
            fd,
            seq: std::cell::Cell::new(1),
        })
    }

    /// Sends one request and waits for the kernel's acknowledgement.
    fn request(&self, kind: u16, flags: u16, body: &[u8], what: &str) -> Result<(), String> {
        let seq = self.seq.get();
        self.seq.set(seq + 1);
        let len = 16 + body.len();
        let mut msg = Vec::with_capacity(len);
        msg.extend_from_slice(&(len as u32).to_ne_bytes());
        msg.extend_from_slice(&kind.to_ne_bytes());
        msg.extend_from_slice(&(flags | NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
        msg.extend_from_slice(&seq.to_ne_bytes());
        msg.extend_from_slice(&0u32.to_ne_bytes());
        msg.extend_from_slice(body);
        send(self.fd.as_raw_fd(), &msg, MsgFlags::empty()).map_err(|e| format!("{what}: {e}"))?;
        let mut reply = [0u8; 4096];
        let n = recv(self.fd.as_raw_fd(), &mut reply, MsgFlags::empty())
            .map_err(|e| format!("{what}: {e}"))?;
        let kind = u16::from_ne_bytes([reply[4], reply[5]]);
        if n < 20 || kind != NLMSG_ERROR {
            return Err(format!("{what}: an unexpected answer from the kernel"));
        }
        match i32::from_ne_bytes([reply[16], reply[17], reply[18], reply[19]]) {
            0 => Ok(()),
            errno => Err(format!(
                "{what}: {}",
                nix::errno::Errno::from_raw(-errno).desc()
            )),
        }
    }

    fn link_up(&self, index: u32) -> Result<(), String> {
        let mut body = vec![0u8, 0]; // family, pad
        body.extend_from_slice(&0u16.to_ne_bytes()); // type
        body.extend_from_slice(&(index as i32).to_ne_bytes());
        body.extend_from_slice(&IFF_UP.to_ne_bytes()); // flags
        body.extend_from_slice(&IFF_UP.to_ne_bytes()); // change
        self.request(RTM_NEWLINK, 0, &body, "bringing an interface up")
    }

    fn add_address(&self, index: u32, address: Ipv4Addr, prefix_len: u8) -> Result<(), String> {
        let mut body = vec![AF_INET, prefix_len, 0, 0];
        body.extend_from_slice(&index.to_ne_bytes());
        body.extend(attr(IFA_LOCAL, &address.octets()));
        body.extend(attr(IFA_ADDRESS, &address.octets()));
        self.request(
            RTM_NEWADDR,
            NLM_F_CREATE | NLM_F_EXCL,
            &body,
            "adding the address",
        )
    }

    fn add_default_route(&self, index: u32, gateway: Ipv4Addr) -> Result<(), String> {
        // family, dst_len, src_len, tos, table, protocol, scope (universe), type; flags.
        let mut body = vec![AF_INET, 0, 0, 0, RT_TABLE_MAIN, RTPROT_BOOT, 0, RTN_UNICAST];
        body.extend_from_slice(&0u32.to_ne_bytes());
        body.extend(attr(RTA_GATEWAY, &gateway.octets()));
        body.extend(attr(RTA_OIF, &index.to_ne_bytes()));
        self.request(
            RTM_NEWROUTE,
            NLM_F_CREATE | NLM_F_EXCL,
            &body,
            "adding the default route",
        )
    }
}
