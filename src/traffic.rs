//! What the adaptive drain (`--drain-quiet`) sees of the app's TCP traffic.
//!
//! The app's ports are those of its own listening sockets: the socket inodes
//! in `/proc/PID/fd` of the app's processes (as PID 1, every process in the
//! namespace but drainit; otherwise the app's process group), matched
//! against the listening sockets that `NETLINK_SOCK_DIAG` lists (what `ss`
//! reads; no capability needed). Looked up once, when the drain starts.
//!
//! Each sample then lists the connections to those ports, with `tcp_info`:
//! - a connection whose four-tuple was not there at the last sample is
//!   **new** (in any state, `TIME_WAIT` included: one the app served and
//!   closed between two samples counts too; one the client opened and closed
//!   within one sample interval can be missed);
//! - an open connection is **busy** while it carries a request: bytes wait
//!   in its queues, it received data more recently than it answered (or
//!   received some and never answered), or it carried data within the quiet period.
//!
//! Never counted: connections from the `--drain-ignore-from` networks (the
//! load balancer's health checks), and drainit's own while they are open (its
//! `--url` probes, which stop when `/ready` fails: one the app closed just
//! before can count once, restarting the quiet period by one sample at most).
//!
//! Everything read from the kernel is parsed with bounds checks: a short or
//! odd answer is skipped, never trusted.

use crate::error::Reason;
use std::collections::HashSet;
use std::net::IpAddr;
use std::os::fd::OwnedFd;
use std::time::Duration;

use crate::sys;

/// The TCP states (as bits) of the sockets a sample lists.
const LISTEN: u32 = 1 << 10;
/// Every state of a connection that reached the app: ESTABLISHED, SYN_RECV,
/// FIN_WAIT1/2, TIME_WAIT, CLOSE_WAIT, LAST_ACK, CLOSING, NEW_SYN_RECV.
const CONNECTED: u32 = (1 << 1)
    | (1 << 3)
    | (1 << 4)
    | (1 << 5)
    | (1 << 6)
    | (1 << 8)
    | (1 << 9)
    | (1 << 11)
    | (1 << 12);
const ESTABLISHED: u8 = 1;
const CLOSE_WAIT: u8 = 8;

/// netlink message types and flags.
const SOCK_DIAG_BY_FAMILY: u16 = 20;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_DUMP: u16 = 0x300;
/// `INET_DIAG_INFO`: the `tcp_info` attribute.
const INET_DIAG_INFO: u16 = 2;
/// How long one answer may take before the sample is given up.
const RECV_TIMEOUT: Duration = Duration::from_millis(50);
/// At most this many datagrams a dump (each holds dozens of sockets).
const MAX_DATAGRAMS: usize = 4096;
/// A sample runs in the supervisor's loop: one that takes longer than this
/// (a namespace with a huge socket table) is given up, and so is the adaptive
/// drain, so that signals and reaping never wait for it.
const MAX_SAMPLE_TIME: Duration = Duration::from_millis(50);

/// An address block (`10.0.0.0/8`, `192.0.2.7`, `fd00::/8`), IPv4 kept as
/// IPv4-mapped IPv6.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    net: [u8; 16],
    prefix: u8,
}

impl Cidr {
    /// One block; a bare address is a block of one.
    pub fn parse(text: &str) -> Result<Cidr, String> {
        let bad = || {
            format!(
                "'{}' is not an address block (e.g. 10.0.0.0/8, 192.0.2.7, fd00::/8)",
                crate::text::escaped(text)
            )
        };
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let ip: IpAddr = addr.parse().map_err(|_| bad())?;
        let (bytes, width) = match ip {
            IpAddr::V4(v4) => (v4.to_ipv6_mapped().octets(), 32u8),
            IpAddr::V6(v6) => (v6.octets(), 128u8),
        };
        let prefix = match prefix {
            None => width,
            Some(p) if !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= width)
                .ok_or_else(bad)?,
            Some(_) => return Err(bad()),
        };
        // Counted over the 128 bits of the mapped form.
        let prefix = prefix.saturating_add(128u8.saturating_sub(width));
        Ok(Cidr {
            net: mask(bytes, prefix),
            prefix,
        })
    }

    /// A comma-separated list.
    pub fn parse_list(text: &str) -> Result<Vec<Cidr>, String> {
        text.split(',')
            .map(|item| Cidr::parse(item.trim()))
            .collect()
    }

    fn contains(&self, addr: [u8; 16]) -> bool {
        mask(addr, self.prefix) == self.net
    }
}

fn mask(mut bytes: [u8; 16], prefix: u8) -> [u8; 16] {
    for (i, byte) in bytes.iter_mut().enumerate() {
        let start = u32::try_from(i).unwrap_or(u32::MAX).saturating_mul(8);
        let keep = u32::from(prefix).saturating_sub(start).min(8);
        *byte &= u8::try_from(0xff00u32 >> keep & 0xff).unwrap_or(0);
    }
    bytes
}

/// Whether a listener on `listening` takes connections to `local`: the same
/// address, or any (`0.0.0.0`, or `::`, which takes IPv4 too).
fn serves(listening: [u8; 16], local: [u8; 16]) -> bool {
    const ANY4: [u8; 16] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 0, 0];
    listening == local
        || listening == [0; 16]
        || (listening == ANY4 && local.get(..12) == ANY4.get(..12))
}

/// One socket as `NETLINK_SOCK_DIAG` lists it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Socket {
    state: u8,
    local: [u8; 16],
    local_port: u16,
    peer: [u8; 16],
    peer_port: u16,
    rqueue: u32,
    wqueue: u32,
    inode: u32,
    info: Option<Info>,
}

/// What `tcp_info` says of a connection's data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Info {
    /// Milliseconds since data was last sent, and received.
    last_sent_ms: u32,
    last_recv_ms: u32,
    /// Bytes received and data segments sent, where the kernel tells (4.6+).
    bytes_received: Option<u64>,
    data_segs_out: Option<u32>,
}

impl Socket {
    /// A four-tuple, as the key of "seen before".
    fn key(&self) -> ([u8; 16], u16, [u8; 16], u16) {
        (self.local, self.local_port, self.peer, self.peer_port)
    }

    /// Whether this connection carries a request now (see the module doc).
    fn busy(&self, quiet: Duration) -> bool {
        if self.state != ESTABLISHED && self.state != CLOSE_WAIT {
            return false;
        }
        if self.rqueue > 0 || self.wqueue > 0 {
            return true;
        }
        let Some(info) = self.info else {
            // Open, and nothing tells it is idle.
            return true;
        };
        let received = info.bytes_received.is_none_or(|b| b > 0);
        let answered = info.data_segs_out.is_none_or(|n| n > 0);
        let quiet_ms = u32::try_from(quiet.as_millis()).unwrap_or(u32::MAX);
        (received && (!answered || info.last_recv_ms < info.last_sent_ms))
            || info.last_recv_ms.min(info.last_sent_ms) < quiet_ms
    }
}

fn u16_ne(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(
        b.get(at..at.checked_add(2)?)?.try_into().ok()?,
    ))
}
fn u16_be(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(
        b.get(at..at.checked_add(2)?)?.try_into().ok()?,
    ))
}
fn u32_ne(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(
        b.get(at..at.checked_add(4)?)?.try_into().ok()?,
    ))
}
fn u64_ne(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_ne_bytes(
        b.get(at..at.checked_add(8)?)?.try_into().ok()?,
    ))
}

/// An address from `inet_diag_sockid` (16 bytes; IPv4 in the first 4), as mapped IPv6.
fn address(family: u8, b: &[u8]) -> Option<[u8; 16]> {
    let raw: [u8; 16] = b.get(..16)?.try_into().ok()?;
    if i32::from(family) == libc::AF_INET {
        let v4: [u8; 4] = raw.get(..4)?.try_into().ok()?;
        Some(std::net::Ipv4Addr::from(v4).to_ipv6_mapped().octets())
    } else {
        Some(raw)
    }
}

/// One `inet_diag_msg` and its attributes (the payload after the netlink header).
fn parse_socket(msg: &[u8]) -> Option<Socket> {
    let family = *msg.first()?;
    let state = *msg.get(1)?;
    let mut socket = Socket {
        state,
        local_port: u16_be(msg, 4)?,
        peer_port: u16_be(msg, 6)?,
        local: address(family, msg.get(8..)?)?,
        peer: address(family, msg.get(24..)?)?,
        rqueue: u32_ne(msg, 56)?,
        wqueue: u32_ne(msg, 60)?,
        inode: u32_ne(msg, 68)?,
        info: None,
    };
    // Attributes: rtattr { u16 len; u16 type; } aligned to 4.
    let mut at = 72usize;
    while let (Some(len), Some(kind)) = (u16_ne(msg, at), u16_ne(msg, at.saturating_add(2))) {
        let len = usize::from(len);
        if len < 4 {
            break;
        }
        let body = msg.get(at.saturating_add(4)..at.saturating_add(len))?;
        if kind == INET_DIAG_INFO {
            socket.info = Some(Info {
                last_sent_ms: u32_ne(body, 44)?,
                last_recv_ms: u32_ne(body, 52)?,
                bytes_received: u64_ne(body, 128),
                data_segs_out: u32_ne(body, 156),
            });
        }
        at = at.saturating_add(len.saturating_add(3) & !3);
    }
    Some(socket)
}

/// Every socket in one datagram of a dump; `Err` for a netlink error,
/// `Ok(true)` once the dump is done.
fn parse_datagram(buf: &[u8], seq: u32, out: &mut Vec<Socket>) -> Result<bool, i32> {
    let mut at = 0usize;
    while let (Some(len), Some(kind), Some(got_seq)) = (
        u32_ne(buf, at),
        u16_ne(buf, at.saturating_add(4)),
        u32_ne(buf, at.saturating_add(8)),
    ) {
        let len = usize::try_from(len).unwrap_or(0);
        if len < 16 {
            break;
        }
        let payload = buf.get(at.saturating_add(16)..at.saturating_add(len));
        if got_seq == seq {
            match kind {
                NLMSG_DONE => return Ok(true),
                NLMSG_ERROR => {
                    let errno = payload
                        .and_then(|p| u32_ne(p, 0))
                        .map_or(0, |e| i32::from_ne_bytes(e.to_ne_bytes()));
                    if errno != 0 {
                        return Err(errno.saturating_neg());
                    }
                    return Ok(true);
                }
                SOCK_DIAG_BY_FAMILY => {
                    if let Some(socket) = payload.and_then(parse_socket) {
                        out.push(socket);
                    }
                }
                _ => {}
            }
        }
        at = at.saturating_add(len.saturating_add(3) & !3);
    }
    Ok(false)
}

/// `nlmsghdr` + `inet_diag_req_v2`: dump TCP sockets of `family` in `states`, with `tcp_info`.
fn request(family: u8, states: u32, seq: u32) -> [u8; 72] {
    let mut req = [0u8; 72];
    let mut put = |at: usize, bytes: &[u8]| {
        if let Some(dst) = req.get_mut(at..at.saturating_add(bytes.len())) {
            dst.copy_from_slice(bytes);
        }
    };
    put(0, &72u32.to_ne_bytes());
    put(4, &SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    put(6, &(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    put(8, &seq.to_ne_bytes());
    put(
        16,
        &[
            family,
            u8::try_from(libc::IPPROTO_TCP).unwrap_or(6),
            1 << (INET_DIAG_INFO - 1),
            0,
        ],
    );
    put(20, &states.to_ne_bytes());
    req
}

/// The socket inodes among `pid`'s descriptors; `Err` with why they cannot be read.
fn socket_inodes(pid: i32, into: &mut HashSet<u32>) -> Result<(), std::io::Error> {
    for entry in std::fs::read_dir(format!("/proc/{pid}/fd"))? {
        let Ok(link) = entry.and_then(|e| std::fs::read_link(e.path())) else {
            continue;
        };
        if let Some(inode) = link
            .to_str()
            .and_then(|l| l.strip_prefix("socket:["))
            .and_then(|l| l.strip_suffix(']'))
            .and_then(|n| n.parse().ok())
        {
            into.insert(inode);
        }
    }
    Ok(())
}

/// Whose listening sockets count as the app's.
#[derive(Clone, Copy, Debug)]
pub enum Whose {
    /// Every process in the namespace but drainit (drainit is PID 1 and `/proc` is its namespace's).
    AllButDrainit,
    /// The processes of this process group.
    Group(i32),
    /// This process only (`--no-group`).
    Pid(i32),
}

/// The sampler of one drain.
pub struct Sampler {
    fd: OwnedFd,
    seq: u32,
    /// The app's listening addresses and ports (an unspecified address: any).
    listening: Vec<([u8; 16], u16)>,
    ports: Vec<u16>,
    ignore: Vec<Cidr>,
    quiet: Duration,
    seen: HashSet<([u8; 16], u16, [u8; 16], u16)>,
    buf: Vec<u8>,
}

/// What one sample saw.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sample {
    pub new: u32,
    pub busy: u32,
}

impl Sampler {
    /// Finds the app's listening ports and takes the baseline (what is open
    /// now is not new). `Err`: why the app's sockets cannot be seen.
    pub fn start(whose: Whose, ignore: Vec<Cidr>, quiet: Duration) -> Result<Sampler, String> {
        let fd = sys::sock_diag_socket(RECV_TIMEOUT)
            .map_err(|e| format!("cannot open a NETLINK_SOCK_DIAG socket ({})", Reason(&e)))?;
        let me = sys::pid();
        let pids: Vec<i32> = match whose {
            Whose::Pid(pid) => vec![pid],
            Whose::AllButDrainit | Whose::Group(_) => std::fs::read_dir("/proc")
                .map_err(|e| format!("cannot read /proc ({})", Reason(&e)))?
                .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<i32>().ok())
                .filter(|pid| *pid != me)
                .filter(|pid| match whose {
                    Whose::Group(pgid) => crate::procfs::pgid(*pid) == Some(pgid),
                    _ => true,
                })
                .collect(),
        };
        let mut inodes = HashSet::new();
        let mut unreadable = None;
        for pid in &pids {
            if let Err(e) = socket_inodes(*pid, &mut inodes) {
                unreadable.get_or_insert(format!("/proc/{pid}/fd: {}", Reason(&e)));
            }
        }
        let mut sampler = Sampler {
            fd,
            seq: 0,
            listening: Vec::new(),
            ports: Vec::new(),
            ignore,
            quiet,
            seen: HashSet::new(),
            buf: vec![0u8; 32 * 1024],
        };
        let listening = sampler.dump(LISTEN)?;
        let mut listening: Vec<([u8; 16], u16)> = listening
            .iter()
            .filter(|s| inodes.contains(&s.inode))
            .map(|s| (s.local, s.local_port))
            .collect();
        listening.sort_unstable();
        listening.dedup();
        let mut ports: Vec<u16> = listening.iter().map(|(_, port)| *port).collect();
        ports.sort_unstable();
        ports.dedup();
        if ports.is_empty() {
            return Err(match unreadable {
                Some(why) => format!("no listening TCP socket of the app is visible ({why})"),
                None => format!(
                    "no listening TCP socket of the app is visible in drainit's network namespace ({} processes looked at)",
                    pids.len()
                ),
            });
        }
        sampler.ports = ports;
        sampler.listening = listening;
        sampler.sample()?;
        Ok(sampler)
    }

    /// The app's listening ports.
    pub fn ports(&self) -> &[u16] {
        &self.ports
    }

    /// One sample: new connections since the last one, busy ones now.
    pub fn sample(&mut self) -> Result<Sample, String> {
        let sockets = self.dump(CONNECTED)?;
        let mut own = HashSet::new();
        let _ = socket_inodes(sys::pid(), &mut own);
        let own_ends: HashSet<([u8; 16], u16)> = sockets
            .iter()
            .filter(|s| s.inode != 0 && own.contains(&s.inode))
            .map(|s| (s.local, s.local_port))
            .collect();
        let mut seen = HashSet::with_capacity(self.seen.len());
        let mut sample = Sample { new: 0, busy: 0 };
        for s in sockets.iter().filter(|s| {
            self.listening
                .iter()
                .any(|(addr, port)| *port == s.local_port && serves(*addr, s.local))
                && !own_ends.contains(&(s.peer, s.peer_port))
                && !self.ignore.iter().any(|c| c.contains(s.peer))
        }) {
            if !self.seen.contains(&s.key()) {
                sample.new = sample.new.saturating_add(1);
            }
            seen.insert(s.key());
            if s.busy(self.quiet) {
                sample.busy = sample.busy.saturating_add(1);
            }
        }
        self.seen = seen;
        Ok(sample)
    }

    /// Every TCP socket (IPv4 and IPv6) in `states`.
    fn dump(&mut self, states: u32) -> Result<Vec<Socket>, String> {
        let started = std::time::Instant::now();
        let mut out = Vec::new();
        for family in [libc::AF_INET, libc::AF_INET6] {
            self.seq = self.seq.wrapping_add(1);
            let family = u8::try_from(family).unwrap_or(0);
            sys::send_datagram(&self.fd, &request(family, states, self.seq))
                .map_err(|e| format!("cannot ask NETLINK_SOCK_DIAG ({})", Reason(&e)))?;
            let mut done = false;
            for _ in 0..MAX_DATAGRAMS {
                let n = sys::recv_datagram(&self.fd, &mut self.buf)
                    .map_err(|e| format!("no answer from NETLINK_SOCK_DIAG ({})", Reason(&e)))?;
                let got = self.buf.get(..n).unwrap_or_default();
                match parse_datagram(got, self.seq, &mut out) {
                    Ok(true) => {
                        done = true;
                        break;
                    }
                    Ok(false) if n == 0 => break,
                    Ok(false) if started.elapsed() > MAX_SAMPLE_TIME => {
                        return Err(format!(
                            "listing the sockets took longer than {} ({} so far)",
                            crate::time::format_duration(MAX_SAMPLE_TIME),
                            out.len()
                        ));
                    }
                    Ok(false) => {}
                    Err(errno) => {
                        return Err(format!(
                            "NETLINK_SOCK_DIAG refused ({})",
                            std::io::Error::from_raw_os_error(errno)
                        ));
                    }
                }
            }
            if !done {
                return Err("NETLINK_SOCK_DIAG's answer did not end".into());
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn v4(a: [u8; 4]) -> [u8; 16] {
        std::net::Ipv4Addr::from(a).to_ipv6_mapped().octets()
    }

    #[test]
    fn address_blocks() {
        let c = Cidr::parse("10.1.0.0/16").unwrap();
        assert!(c.contains(v4([10, 1, 200, 3])));
        assert!(!c.contains(v4([10, 2, 0, 1])));
        let host = Cidr::parse("192.0.2.7").unwrap();
        assert!(host.contains(v4([192, 0, 2, 7])));
        assert!(!host.contains(v4([192, 0, 2, 8])));
        let all4 = Cidr::parse("0.0.0.0/0").unwrap();
        assert!(all4.contains(v4([8, 8, 8, 8])));
        assert!(
            !all4.contains(
                "2001:db8::1"
                    .parse::<std::net::Ipv6Addr>()
                    .unwrap()
                    .octets()
            )
        );
        let v6 = Cidr::parse("fd00::/8").unwrap();
        assert!(v6.contains("fd12::1".parse::<std::net::Ipv6Addr>().unwrap().octets()));
        assert!(!v6.contains(v4([10, 0, 0, 1])));
        assert_eq!(Cidr::parse_list("10.0.0.0/8, ::1").unwrap().len(), 2);
        for bad in [
            "",
            "10.0.0.0/33",
            "::/129",
            "10.0.0/8",
            "x",
            "10.0.0.0/",
            "10.0.0.0/+8",
            "1.2.3.4/0008",
        ] {
            assert!(Cidr::parse(bad).is_err(), "{bad}");
        }
    }

    fn info(sent: u32, recv: u32, bytes_in: u64, segs_out: u32) -> Option<Info> {
        Some(Info {
            last_sent_ms: sent,
            last_recv_ms: recv,
            bytes_received: Some(bytes_in),
            data_segs_out: Some(segs_out),
        })
    }

    fn conn(state: u8, info: Option<Info>) -> Socket {
        Socket {
            state,
            local: v4([127, 0, 0, 1]),
            local_port: 8080,
            peer: v4([127, 0, 0, 1]),
            peer_port: 40000,
            rqueue: 0,
            wqueue: 0,
            inode: 1,
            info,
        }
    }

    #[test]
    fn a_listener_serves_its_address_or_any() {
        let lo = v4([127, 0, 0, 1]);
        let other = v4([127, 0, 0, 2]);
        assert!(serves(lo, lo));
        assert!(!serves(lo, other));
        assert!(serves(v4([0, 0, 0, 0]), other));
        assert!(!serves(
            v4([0, 0, 0, 0]),
            "::1".parse::<std::net::Ipv6Addr>().unwrap().octets()
        ));
        assert!(serves([0; 16], other));
        assert!(serves(
            [0; 16],
            "::1".parse::<std::net::Ipv6Addr>().unwrap().octets()
        ));
    }

    #[test]
    fn busy_means_carrying_a_request() {
        let q = Duration::from_secs(1);
        // Idle keep-alive: answered, nothing for 5 s.
        assert!(!conn(ESTABLISHED, info(5000, 5010, 100, 1)).busy(q));
        // A request received 3 s ago, never answered: in flight.
        assert!(conn(ESTABLISHED, info(3000, 3000, 100, 0)).busy(q));
        // A newer request than the last answer.
        assert!(conn(ESTABLISHED, info(5000, 3000, 200, 2)).busy(q));
        // Data within the quiet period.
        assert!(conn(ESTABLISHED, info(500, 510, 100, 1)).busy(q));
        // Opened, never used, for longer than the quiet period: idle.
        assert!(!conn(ESTABLISHED, info(4000, 4000, 0, 0)).busy(q));
        // Bytes queued either way.
        let mut s = conn(ESTABLISHED, info(9000, 9000, 0, 0));
        s.wqueue = 10;
        assert!(s.busy(q));
        // Closed ones never are.
        assert!(!conn(6, None).busy(q));
        // No tcp_info: open counts as busy.
        assert!(conn(ESTABLISHED, None).busy(q));
    }

    #[test]
    fn parses_a_dump_and_skips_what_does_not_fit() {
        let mut msg = vec![0u8; 72];
        msg[0] = 2; // AF_INET
        msg[1] = ESTABLISHED;
        msg[4..6].copy_from_slice(&8080u16.to_be_bytes());
        msg[6..8].copy_from_slice(&40000u16.to_be_bytes());
        msg[8..12].copy_from_slice(&[127, 0, 0, 1]);
        msg[24..28].copy_from_slice(&[10, 0, 0, 9]);
        msg[68..72].copy_from_slice(&77u32.to_ne_bytes());
        let mut tcp = vec![0u8; 232];
        tcp[44..48].copy_from_slice(&1500u32.to_ne_bytes());
        tcp[52..56].copy_from_slice(&20u32.to_ne_bytes());
        tcp[128..136].copy_from_slice(&300u64.to_ne_bytes());
        msg.extend_from_slice(&(236u16).to_ne_bytes());
        msg.extend_from_slice(&INET_DIAG_INFO.to_ne_bytes());
        msg.extend_from_slice(&tcp);
        let mut dg = Vec::new();
        dg.extend_from_slice(&u32::try_from(16 + msg.len()).unwrap().to_ne_bytes());
        dg.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
        dg.extend_from_slice(&[0, 0]);
        dg.extend_from_slice(&9u32.to_ne_bytes());
        dg.extend_from_slice(&[0; 4]);
        dg.extend_from_slice(&msg);
        let mut out = Vec::new();
        assert_eq!(parse_datagram(&dg, 9, &mut out), Ok(false));
        assert_eq!(out.len(), 1);
        let s = out[0];
        assert_eq!((s.local_port, s.peer_port, s.inode), (8080, 40000, 77));
        assert_eq!(s.peer, v4([10, 0, 0, 9]));
        let i = s.info.unwrap();
        assert_eq!((i.last_sent_ms, i.last_recv_ms), (1500, 20));
        assert_eq!(i.bytes_received, Some(300));
        // Another sequence number is not ours; every cut is skipped, never a panic.
        out.clear();
        assert_eq!(parse_datagram(&dg, 8, &mut out), Ok(false));
        assert!(out.is_empty());
        for cut in 0..dg.len() {
            let _ = parse_datagram(&dg[..cut], 9, &mut out);
        }
        // An error answer.
        let mut err = Vec::new();
        err.extend_from_slice(&20u32.to_ne_bytes());
        err.extend_from_slice(&NLMSG_ERROR.to_ne_bytes());
        err.extend_from_slice(&[0, 0]);
        err.extend_from_slice(&9u32.to_ne_bytes());
        err.extend_from_slice(&[0; 4]);
        err.extend_from_slice(&(-13i32).to_ne_bytes());
        assert_eq!(parse_datagram(&err, 9, &mut out), Err(13));
    }

    #[test]
    fn sees_its_own_listener_and_a_new_connection() {
        // The test runner is "the app" here: its own process.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut sampler =
            match Sampler::start(Whose::Pid(sys::pid()), vec![], Duration::from_secs(60)) {
                Ok(s) => s,
                // Some sandboxes have no sock_diag; CI=true requires it.
                Err(e)
                    if e.contains("NETLINK_SOCK_DIAG")
                        && std::env::var("CI").as_deref() != Ok("true") =>
                {
                    use std::io::Write as _;
                    let _ = writeln!(std::io::stderr(), "SKIPPED: {e}");
                    return;
                }
                Err(e) => panic!("{e}"),
            };
        assert!(sampler.ports().contains(&port));
        // A client of another process: drainit's (here: this process's) own never count.
        let mut client = std::process::Command::new("bash")
            .args(["-c", &format!("exec 3<>/dev/tcp/127.0.0.1/{port}; sleep 5")])
            .spawn()
            .unwrap();
        let (_served, _) = listener.accept().unwrap();
        let s = sampler.sample().unwrap();
        assert_eq!(s.new, 1, "{s:?}");
        assert_eq!(s.busy, 1, "fresh: within the quiet period");
        assert_eq!(sampler.sample().unwrap().new, 0);
        let _ = client.kill();
        let _ = client.wait();
    }
}
