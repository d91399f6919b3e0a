//! `drainit --healthcheck`: a health check for images with no curl and no shell.
//!
//! Unhealthy while anything is at the drain-file path, or when that cannot be
//! told; with `--url`, also unless a plain HTTP GET answers 2xx. The whole run
//! (drain file, name lookup, connect, send, read) is bounded by `--timeout`:
//! it runs in a worker thread, and the answer is "unhealthy" the moment the
//! timeout passes, whatever the worker is stuck on.

use std::fmt;
use std::io::{Read, Write};
use std::net::{Ipv6Addr, SocketAddr, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::drainfile::{self, reason};
use crate::text;
use crate::time::format_duration;

/// What `--healthcheck` checks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Health {
    pub drain_file: Option<PathBuf>,
    pub url: Option<crate::health::Url>,
    pub timeout: Duration,
}

/// An `http://host[:port][/path][?query]` URL, the only kind a local health
/// check needs, parsed strictly (see [`Url::parse`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Url {
    pub host: String,
    pub port: u16,
    pub path: String,
    text: String,
}

impl Url {
    /// Parses `http://HOST[:PORT][/PATH][?QUERY]`: the scheme in any case; the
    /// host a name, an IPv4 address or a bracketed IPv6 address; the port 1 to
    /// 65535 in digits only. Refused: spaces, control and non-ASCII characters
    /// anywhere, a fragment (`#`), user information (`user@`), an empty host
    /// or port. The message does not name the option (the caller does).
    pub fn parse(text: &str) -> Result<Url, String> {
        let shown = text::escaped(text);
        if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(format!(
                "'{shown}': spaces and control characters are not allowed in a URL (percent-encode them: %20 for a space)"
            ));
        }
        if !text.is_ascii() {
            return Err(format!(
                "'{shown}': only ASCII characters are allowed in a URL (percent-encode the rest)"
            ));
        }
        let rest = match (text.get(..7), text.get(7..)) {
            (Some(scheme), Some(rest)) if scheme.eq_ignore_ascii_case("http://") => rest,
            _ => {
                return Err(format!(
                    "'{shown}': only http:// URLs are supported (expected http://HOST[:PORT][/PATH])"
                ));
            }
        };
        if text.contains('#') {
            return Err(format!(
                "'{shown}': a fragment (#...) is never sent to a server; remove it"
            ));
        }
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) => {
                let (authority, path) = rest.split_at(i);
                if path.starts_with('/') {
                    (authority, path.to_string())
                } else {
                    (authority, format!("/{path}"))
                }
            }
            None => (rest, "/".to_string()),
        };
        if authority.contains('@') {
            // Not echoed: it may hold a password.
            return Err("user information (user:password@) is not supported in a URL".to_string());
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (h, after) = v6
                .split_once(']')
                .ok_or_else(|| format!("'{shown}': an IPv6 address needs its closing ']'"))?;
            if h.parse::<Ipv6Addr>().is_err() {
                return Err(format!("'{shown}': '[{h}]' is not an IPv6 address"));
            }
            let port = match after.strip_prefix(':') {
                Some(p) => Some(p),
                None if after.is_empty() => None,
                None => {
                    return Err(format!(
                        "'{shown}': expected ':PORT' or nothing after ']', got '{after}'"
                    ));
                }
            };
            (h, port)
        } else {
            let (h, port) = match authority.split_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            };
            if h.is_empty() {
                return Err(format!(
                    "'{shown}': the host is empty (expected http://HOST[:PORT][/PATH])"
                ));
            }
            if let Some(c) = h
                .chars()
                .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '~')))
            {
                return Err(format!(
                    "'{shown}': '{c}' is not allowed in a host name (letters, digits, '-', '.', '_', '~')"
                ));
            }
            (h, port)
        };
        let port = match port {
            None => 80,
            Some(p) => {
                let digits = !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit());
                match p.parse::<u16>() {
                    Ok(n) if digits && n != 0 => n,
                    _ => {
                        return Err(format!(
                            "'{shown}': the port must be a number from 1 to 65535, got '{p}'"
                        ));
                    }
                }
            }
        };
        Ok(Url {
            host: host.to_string(),
            port,
            path,
            text: text.to_string(),
        })
    }
}

impl fmt::Display for Url {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// How much of a drain file's content, or of a server's first line, an
/// answer shows.
const SHOWN_BYTES: usize = 128;

/// The stack of a thread that runs a check: a name lookup in musl takes
/// some KiB of stack (buffers for the DNS query and answers). Always set
/// explicitly, so that `RUST_MIN_STACK` in the environment has no say.
pub const CHECK_STACK: usize = 128 * 1024;

/// Where the check is, for the answer when the timeout passes first.
pub const AT_DRAIN_FILE: u8 = 0;
const AT_LOOKUP: u8 = 1;
const AT_HTTP: u8 = 2;

/// Runs the check: `(healthy, one-line reason)`, within `health.timeout`.
pub fn check(health: &Health) -> (bool, String) {
    let deadline = Instant::now().checked_add(health.timeout);
    let shared = Arc::new(Shared {
        stage: AtomicU8::new(AT_DRAIN_FILE),
        answer: Mutex::new(None),
    });
    let main = std::thread::current();
    let worker = {
        let health = health.clone();
        let shared = Arc::clone(&shared);
        move || {
            let answer = run(&health, deadline, &shared.stage);
            if let Ok(mut slot) = shared.answer.lock() {
                *slot = Some(answer);
            }
            main.unpark();
        }
    };
    let spawned = std::thread::Builder::new()
        .name("health-check".into())
        .stack_size(CHECK_STACK)
        .spawn(worker);
    if spawned.is_err() {
        // No thread: check in this one; every step but the lookup still
        // keeps to the deadline.
        return run(health, deadline, &AtomicU8::new(AT_DRAIN_FILE));
    }
    loop {
        if let Some(answer) = shared.answer.lock().ok().and_then(|mut slot| slot.take()) {
            return answer;
        }
        match deadline.map(|d| d.saturating_duration_since(Instant::now())) {
            Some(left) if left.is_zero() => break,
            Some(left) => std::thread::park_timeout(left),
            None => std::thread::park(),
        }
    }
    (false, too_late(health, shared.stage.load(Ordering::SeqCst)))
}

/// What the worker and the waiting thread share.
struct Shared {
    stage: AtomicU8,
    answer: Mutex<Option<(bool, String)>>,
}

/// The answer when the timeout passed before the worker had one.
pub fn too_late(health: &Health, stage: u8) -> String {
    let within = format_duration(health.timeout);
    match (&health.url, &health.drain_file, stage) {
        (Some(url), _, AT_LOOKUP) => format!(
            "unhealthy: GET {url}: cannot resolve {} within {within}",
            url.host
        ),
        (Some(url), _, AT_HTTP) => format!("unhealthy: GET {url}: no answer within {within}"),
        (_, Some(path), _) => format!(
            "unhealthy: cannot check drain file {} within {within}",
            text::path(path)
        ),
        _ => format!("unhealthy: no answer within {within}"),
    }
}

/// The check itself, in the calling thread: every step but the name lookup
/// keeps to `deadline`; `stage` tells where it is (see [`too_late`]).
pub fn run(health: &Health, deadline: Option<Instant>, stage: &AtomicU8) -> (bool, String) {
    if let Some(path) = &health.drain_file
        && let Some(reason) = draining(path)
    {
        return (false, reason);
    }
    let Some(url) = &health.url else {
        return match &health.drain_file {
            Some(path) => (
                true,
                format!("healthy: not draining ({} absent)", text::path(path)),
            ),
            None => (
                true,
                "healthy: nothing to check (no --drain-file, no --url)".to_string(),
            ),
        };
    };
    stage.store(AT_LOOKUP, Ordering::SeqCst);
    match get_status(url, health.timeout, deadline, stage) {
        Ok(code) if (200..300).contains(&code) => {
            (true, format!("healthy: GET {url} answered {code}"))
        }
        Ok(code) => (false, format!("unhealthy: GET {url} answered {code}")),
        Err(reason) => (false, format!("unhealthy: GET {url}: {reason}")),
    }
}

/// `None` when nothing is at the path; otherwise why the check is unhealthy:
/// something is there (never followed, never opened unless a regular file,
/// never blocked on), or the path cannot be looked at.
fn draining(path: &Path) -> Option<String> {
    let shown = text::path(path);
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            return Some(format!(
                "unhealthy: cannot check drain file {shown}: {}",
                reason(&e)
            ));
        }
    };
    let detail = if meta.is_file() {
        match drainfile::read_bounded(path) {
            Ok((_, bytes)) => Shown(&bytes).to_string(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => format!("cannot read it: {}", reason(&e)),
        }
    } else {
        drainfile::describe_non_file(path, &meta)
    };
    let detail = if detail.is_empty() {
        String::new()
    } else {
        format!(" ({detail})")
    };
    Some(format!("unhealthy: draining: {shown} exists{detail}"))
}

/// Up to `SHOWN_BYTES` of outside text on one line: runs of white space
/// become one space, control bytes are escaped, "..." marks a cut.
struct Shown<'a>(&'a [u8]);

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bytes = self.0.get(..SHOWN_BYTES).unwrap_or(self.0);
        let mut words = bytes
            .split(|b| b.is_ascii_whitespace())
            .filter(|w| !w.is_empty());
        if let Some(first) = words.next() {
            write!(f, "{}", text::Escaped(first))?;
        }
        for word in words {
            write!(f, " {}", text::Escaped(word))?;
        }
        if self.0.len() > SHOWN_BYTES {
            f.write_str("...")?;
        }
        Ok(())
    }
}

/// `--on-drain-post`: POSTs nothing to the URL and returns the HTTP status
/// code, all within `timeout` (but for the name lookup, which the resolver
/// bounds: a late answer is "no answer within").
pub fn post(url: &Url, timeout: Duration) -> Result<u16, String> {
    let deadline = Instant::now().checked_add(timeout);
    let stage = AtomicU8::new(AT_LOOKUP);
    status_of(url, Method::Post, timeout, deadline, &stage)
}

/// The requests drainit makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Method {
    /// The health check's.
    Get,
    /// `--on-drain-post`'s, with an empty body.
    Post,
}

/// GETs the URL and returns the HTTP status code, all before `deadline`.
fn get_status(
    url: &Url,
    timeout: Duration,
    deadline: Option<Instant>,
    stage: &AtomicU8,
) -> Result<u16, String> {
    status_of(url, Method::Get, timeout, deadline, stage)
}

/// Sends one request and returns the HTTP status code, all before `deadline`.
fn status_of(
    url: &Url,
    method: Method,
    timeout: Duration,
    deadline: Option<Instant>,
    stage: &AtomicU8,
) -> Result<u16, String> {
    let late = || format!("no answer within {}", format_duration(timeout));
    let left = || match deadline {
        Some(deadline) => deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
            .ok_or_else(late),
        None => Ok(timeout),
    };
    let addrs: Vec<SocketAddr> = (url.host.as_str(), url.port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {}: {}", url.host, reason(&e)))?
        .collect();
    stage.store(AT_HTTP, Ordering::SeqCst);
    let mut last_error = format!("cannot resolve {}", url.host);
    let mut stream = None;
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, left()?) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => return Err(late()),
            Err(e) => last_error = reason(&e),
        }
    }
    let mut stream = stream.ok_or(last_error)?;
    let host = if url.host.contains(':') {
        format!("[{}]", url.host)
    } else {
        url.host.clone()
    };
    let request = match method {
        Method::Get => format!(
            "GET {} HTTP/1.0\r\nHost: {host}:{}\r\nUser-Agent: drainit-healthcheck\r\nConnection: close\r\n\r\n",
            url.path, url.port
        ),
        Method::Post => format!(
            "POST {} HTTP/1.0\r\nHost: {host}:{}\r\nUser-Agent: drainit\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            url.path, url.port
        ),
    };
    stream
        .set_write_timeout(Some(left()?))
        .map_err(|e| reason(&e))?;
    stream
        .write_all(request.as_bytes())
        .map_err(|e| timeout_or(&e, timeout))?;
    // Read only as far as the status code and the byte after it.
    let mut head = Vec::with_capacity(STATUS_BYTES);
    let mut buf = [0u8; 256];
    while head.len() < STATUS_BYTES && !head.contains(&b'\n') {
        stream
            .set_read_timeout(Some(left()?))
            .map_err(|e| reason(&e))?;
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => head.extend_from_slice(buf.get(..n).unwrap_or_default()),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(timeout_or(&e, timeout)),
        }
    }
    parse_status_line(&head)
}

/// `HTTP/1.1 200 ` or `HTTP/1.1 200\r`: all a status line must hold.
const STATUS_BYTES: usize = 13;

fn timeout_or(e: &std::io::Error, timeout: Duration) -> String {
    match e.kind() {
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
            format!("no answer within {}", format_duration(timeout))
        }
        _ => reason(e),
    }
}

/// `HTTP/1.1 200 OK` → 200. The line must start `HTTP/<digit>.<digit>
/// <3 digits>`, followed by a space or the end of the line.
fn parse_status_line(head: &[u8]) -> Result<u16, String> {
    if let [
        b'H',
        b'T',
        b'T',
        b'P',
        b'/',
        major,
        b'.',
        minor,
        b' ',
        a,
        b,
        c,
        b' ' | b'\r' | b'\n',
        ..,
    ] = head
    {
        let code = [*a, *b, *c];
        if major.is_ascii_digit()
            && minor.is_ascii_digit()
            && code.iter().all(u8::is_ascii_digit)
            && let Some(code) = std::str::from_utf8(&code)
                .ok()
                .and_then(|c| c.parse::<u16>().ok())
        {
            return Ok(code);
        }
    }
    if head.is_empty() {
        return Err("connection closed without an answer".to_string());
    }
    let line = head.split(|b| *b == b'\n').next().unwrap_or_default();
    Err(format!("not an HTTP answer: '{}'", Shown(line)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_http_urls() {
        let u = Url::parse("http://127.0.0.1:8080/healthz?full=1").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.path.as_str()),
            ("127.0.0.1", 8080, "/healthz?full=1")
        );
        let u = Url::parse("http://localhost").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.path.as_str()),
            ("localhost", 80, "/")
        );
        let u = Url::parse("http://[::1]:9000/x").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.path.as_str()),
            ("::1", 9000, "/x")
        );
        let u = Url::parse("http://h?q").unwrap();
        assert_eq!(u.path, "/?q");
        // The scheme in any case.
        for text in ["HTTP://app:8080/", "Http://app:8080/", "hTtP://app:8080/"] {
            let u = Url::parse(text).unwrap();
            assert_eq!((u.host.as_str(), u.port), ("app", 8080), "{text}");
            assert_eq!(u.to_string(), text);
        }
        let u = Url::parse("http://my-app.internal_1:65535/a/b%20c?x=1&y=2").unwrap();
        assert_eq!(u.port, 65535);
        assert_eq!(u.path, "/a/b%20c?x=1&y=2");
    }

    #[test]
    fn rejects_other_urls() {
        for bad in [
            "https://x/",
            "x:80",
            "http:/x/",
            "http://",
            "http://:80/",
            "http:///path",
            "http://h:0/",
            "http://h:99999/",
            "http://h:/",
            "http://h:+80/",
            "http://h:-80/",
            "http://h:8_0/",
            "http://h:0080x/",
            "http://h:000080/",
            "http://u@h/",
            "http://user:secret@h/",
            "http://[::1/",
            "http://[nope]/",
            "http://[::1]x/",
            "http://a:b:80/",
            "http://h/x#frag",
            "http://h#",
            "http://h/a b",
            " http://h/",
            "http://h/\n",
            "http://h/\r\nX-Evil: 1",
            "http://h/\t",
            "http://h/\u{7f}",
            "http://h\u{0}/",
            "http://h/caf\u{e9}",
            "http://h\u{e9}/",
            "http://h%41/",
        ] {
            assert!(Url::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn url_errors_say_what_is_wrong_on_one_line() {
        let err = |t: &str| Url::parse(t).unwrap_err();
        assert!(err("http://h:+80/").contains("port must be a number from 1 to 65535, got '+80'"));
        assert!(err("http://h/x#y").contains("fragment"));
        assert!(err("http://h/a b").contains("spaces and control characters"));
        assert!(err("http://:80/").contains("host is empty"));
        assert!(err("ftp://h/").contains("only http:// URLs"));
        // Control characters are escaped, never printed raw.
        let e = err("http://h/\n\x1b[31m");
        assert!(e.contains("'http://h/\\n\\u{1b}[31m'"), "{e}");
        assert!(!e.contains('\n') && !e.contains('\x1b'));
        // A password is never echoed.
        let e = err("http://user:hunter2@h/");
        assert!(
            e.contains("user information") && !e.contains("hunter2"),
            "{e}"
        );
    }

    #[test]
    fn reads_status_lines() {
        assert_eq!(parse_status_line(b"HTTP/1.1 200 OK\r\n"), Ok(200));
        assert_eq!(
            parse_status_line(b"HTTP/1.0 503 Service Unavailable\r\n"),
            Ok(503)
        );
        assert_eq!(parse_status_line(b"HTTP/1.1 204\r\n"), Ok(204));
        assert_eq!(parse_status_line(b"HTTP/1.1 204\n"), Ok(204));
        assert_eq!(parse_status_line(b"HTTP/2.0 200 "), Ok(200));
        for bad in [
            &b""[..],
            b"SSH-2.0-OpenSSH\r\n",
            b"HTTP/1.1 2000 OK\r\n",
            b"HTTP/1.1 20 OK\r\n",
            b"HTTP/1.1 +20 OK\r\n",
            b"HTTP/1.1 2x0 OK\r\n",
            b"HTTP/1.1  200 OK\r\n",
            b"HTTP/1.1 200",
            b"HTTP/1.1 200OK\r\n",
            b"HTTP/11 200 OK\r\n",
            b"HTTP/1.10 200 OK\r\n",
            b"HTTP/x.1 200 OK\r\n",
            b"http/1.1 200 OK\r\n",
            b" HTTP/1.1 200 OK\r\n",
            b"HTTP/1.1\t200 OK\r\n",
        ] {
            assert!(
                parse_status_line(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let e = parse_status_line(b"\x1b[2Jevil\r\nmore").unwrap_err();
        assert_eq!(e, "not an HTTP answer: '\\u{1b}[2Jevil'");
    }

    #[test]
    fn outside_text_is_shown_on_one_bounded_escaped_line() {
        let show = |b: &[u8]| Shown(b).to_string();
        assert_eq!(
            show(b"signal=SIGTERM\ntime=T\nwritten-by=drainit\n"),
            "signal=SIGTERM time=T written-by=drainit"
        );
        assert_eq!(show(b"a\x1b[31mb\x00"), "a\\u{1b}[31mb\\u{0}");
        assert_eq!(
            show(&[b'x'; 300]),
            format!("{}...", "x".repeat(SHOWN_BYTES))
        );
        assert_eq!(show(b""), "");
    }
}
