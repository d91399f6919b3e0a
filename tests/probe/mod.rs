//! HTTP probes against drainit's health listener, and what a test reads of
//! drainit's threads and CPU time, for the health_listener_* tests.

#![allow(dead_code)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `(status code, body)` of a one-shot request, if it got an answer within
/// `within`.
pub fn try_get_within(port: u16, request: &str, within: Duration) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(within)).ok()?;
    s.write_all(request.as_bytes()).ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let code = text.split(' ').nth(1)?.parse().ok()?;
    let body = text
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .to_string();
    Some((code, body))
}

/// `GET path` with 10 s to answer; panics without an answer.
pub fn path(port: u16, path: &str) -> (u16, String) {
    let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n");
    try_get_within(port, &request, Duration::from_secs(10))
        .unwrap_or_else(|| panic!("no HTTP answer to GET {path}"))
}

/// Waits until the listener takes connections.
pub fn wait_listening(port: u16) {
    crate::common::wait_until(Duration::from_secs(10), || {
        TcpStream::connect(("127.0.0.1", port)).ok()
    })
    .expect("the listener answers");
}

/// How many threads `pid` has.
pub fn threads(pid: i32) -> usize {
    crate::common::status_field(pid, "Threads")
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("no Threads line for {pid}"))
}

/// CPU time `pid` has used (user and system), in clock ticks.
pub fn cpu_ticks(pid: i32) -> u64 {
    let stat = crate::common::stat(pid).unwrap_or_else(|| panic!("no /proc/{pid}/stat"));
    // After the command name: utime is field 14 of stat, [11] here; stime [12].
    stat[11].parse::<u64>().unwrap() + stat[12].parse::<u64>().unwrap()
}

/// A stand-in for the app's health endpoint on 127.0.0.1 that answers every
/// request 200; returns its port.
pub fn healthy_app() -> u16 {
    let app = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = app.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in app.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut buf = [0u8; 1024];
            let _ = stream.read(&mut buf);
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
        }
    });
    port
}

/// A user id no other process has: RLIMIT_NPROC counts a user's tasks, so
/// each test takes one of its own (`which` tells a test's uses apart).
pub fn lonely_uid(which: u32) -> String {
    (200_000 + (std::process::id() % 100_000) * 8 + which).to_string()
}

/// A TCP connection to `to` from `from` (port chosen by the kernel), so that
/// the listener sees another peer than 127.0.0.1; `None` if it does not
/// connect within a second.
#[allow(unsafe_code)]
pub fn connect_from(from: std::net::Ipv4Addr, to: std::net::SocketAddrV4) -> Option<TcpStream> {
    use std::os::fd::FromRawFd;
    let sockaddr = |ip: std::net::Ipv4Addr, port: u16| libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(ip).to_be(),
        },
        sin_zero: [0; 8],
    };
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: plain integers in, a descriptor out.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return None;
    }
    // SAFETY: `fd` is a socket just made and owned here from now on.
    let stream = unsafe { TcpStream::from_raw_fd(fd) };
    stream
        .set_write_timeout(Some(Duration::from_secs(1)))
        .ok()?;
    let local = sockaddr(from, 0);
    let remote = sockaddr(*to.ip(), to.port());
    // SAFETY: the addresses are valid `sockaddr_in`s of `len` bytes for the
    // calls; connect honours the write timeout (SO_SNDTIMEO).
    let ok = unsafe {
        libc::bind(fd, (&raw const local).cast(), len) == 0
            && libc::connect(fd, (&raw const remote).cast(), len) == 0
    };
    ok.then_some(stream)
}
