//! `drainit --healthcheck`: a health check for images with no curl and no shell.
//!
//! Unhealthy while the drain file exists; with `--url`, also unless a plain
//! HTTP GET answers 2xx within the timeout.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::time::format_duration;

/// What `--healthcheck` checks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Health {
    pub drain_file: Option<PathBuf>,
    pub url: Option<crate::health::Url>,
    pub timeout: Duration,
}

/// An `http://host[:port][/path]` URL, the only kind a local health check needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Url {
    pub host: String,
    pub port: u16,
    pub path: String,
    text: String,
}

impl Url {
    pub fn parse(text: &str) -> Result<Url, String> {
        let rest = text
            .strip_prefix("http://")
            .ok_or_else(|| format!("'{text}': only http:// URLs are supported"))?;
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) if rest[i..].starts_with('/') => (&rest[..i], rest[i..].to_string()),
            Some(i) => (&rest[..i], format!("/{}", &rest[i..])),
            None => (rest, "/".to_string()),
        };
        let bad = || format!("'{text}': expected http://HOST[:PORT][/PATH]");
        if authority.contains('@') {
            return Err(bad());
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (h, after) = v6.split_once(']').ok_or_else(bad)?;
            let port = match after.strip_prefix(':') {
                Some(p) => Some(p),
                None if after.is_empty() => None,
                None => return Err(bad()),
            };
            (h, port)
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        let port = match port {
            Some(p) => p.parse::<u16>().ok().filter(|p| *p != 0).ok_or_else(bad)?,
            None => 80,
        };
        if host.is_empty() {
            return Err(bad());
        }
        Ok(Url {
            host: host.to_string(),
            port,
            path,
            text: text.to_string(),
        })
    }
}

impl std::fmt::Display for Url {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// Runs the check: `(healthy, one-line reason)`.
pub fn check(health: &Health) -> (bool, String) {
    if let Some(path) = &health.drain_file
        && let Some(reason) = draining(path)
    {
        return (false, reason);
    }
    let Some(url) = &health.url else {
        return match &health.drain_file {
            Some(path) => (
                true,
                format!("healthy: not draining ({} absent)", crate::text::path(path)),
            ),
            None => (
                true,
                "healthy: nothing to check (no --drain-file, no --url)".to_string(),
            ),
        };
    };
    match get_status(url, health.timeout) {
        Ok(code) if (200..300).contains(&code) => {
            (true, format!("healthy: GET {url} answered {code}"))
        }
        Ok(code) => (false, format!("unhealthy: GET {url} answered {code}")),
        Err(reason) => (false, format!("unhealthy: GET {url}: {reason}")),
    }
}

fn draining(path: &Path) -> Option<String> {
    std::fs::symlink_metadata(path).ok()?;
    let content = std::fs::read_to_string(path).unwrap_or_default();
    let detail = content.split_whitespace().collect::<Vec<_>>().join(" ");
    let detail = if detail.is_empty() {
        String::new()
    } else {
        format!(" ({detail})")
    };
    Some(format!(
        "unhealthy: draining: {} exists{detail}",
        crate::text::path(path)
    ))
}

/// GETs the URL and returns the HTTP status code, all within `timeout`.
fn get_status(url: &Url, timeout: Duration) -> Result<u16, String> {
    let deadline = Instant::now() + timeout;
    let left = || {
        deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
            .ok_or_else(|| format!("no answer within {}", format_duration(timeout)))
    };
    let addrs: Vec<SocketAddr> = (url.host.as_str(), url.port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {}: {e}", url.host))?
        .collect();
    let mut last_error = format!("cannot resolve {}", url.host);
    let mut stream = None;
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, left()?) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                return Err(format!("no answer within {}", format_duration(timeout)));
            }
            Err(e) => last_error = io_reason(&e),
        }
    }
    let mut stream = stream.ok_or(last_error)?;
    let host = if url.host.contains(':') {
        format!("[{}]", url.host)
    } else {
        url.host.clone()
    };
    let request = format!(
        "GET {} HTTP/1.0\r\nHost: {host}:{}\r\nUser-Agent: drainit-healthcheck\r\nConnection: close\r\n\r\n",
        url.path, url.port
    );
    stream
        .set_write_timeout(Some(left()?))
        .map_err(|e| io_reason(&e))?;
    stream
        .write_all(request.as_bytes())
        .map_err(|e| timeout_or(&e, timeout))?;
    // Read only as far as the status line.
    let mut head = Vec::with_capacity(64);
    let mut buf = [0u8; 256];
    while !head.contains(&b'\n') && head.len() < 4096 {
        stream
            .set_read_timeout(Some(left()?))
            .map_err(|e| io_reason(&e))?;
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => head.extend_from_slice(&buf[..n]),
            Err(e) => return Err(timeout_or(&e, timeout)),
        }
    }
    parse_status_line(&head)
}

fn timeout_or(e: &std::io::Error, timeout: Duration) -> String {
    match e.kind() {
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
            format!("no answer within {}", format_duration(timeout))
        }
        _ => io_reason(e),
    }
}

fn io_reason(e: &std::io::Error) -> String {
    let text = e.to_string();
    text.split(" (os error")
        .next()
        .unwrap_or(&text)
        .to_lowercase()
}

/// `HTTP/1.1 200 OK` → 200.
fn parse_status_line(head: &[u8]) -> Result<u16, String> {
    let line = head.split(|b| *b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut words = line.split_whitespace();
    match (
        words.next(),
        words.next().and_then(|c| c.parse::<u16>().ok()),
    ) {
        (Some(v), Some(code)) if v.starts_with("HTTP/") => Ok(code),
        _ if head.is_empty() => Err("connection closed without an answer".to_string()),
        _ => Err(format!("not an HTTP answer: '{}'", line.trim())),
    }
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
    }

    #[test]
    fn rejects_other_urls() {
        for bad in [
            "https://x/",
            "x:80",
            "http://",
            "http://:80/",
            "http://h:0/",
            "http://h:99999/",
            "http://u@h/",
            "http://[::1/",
        ] {
            assert!(Url::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn reads_status_lines() {
        assert_eq!(parse_status_line(b"HTTP/1.1 200 OK\r\n"), Ok(200));
        assert_eq!(
            parse_status_line(b"HTTP/1.0 503 Service Unavailable\r\n"),
            Ok(503)
        );
        assert!(parse_status_line(b"").is_err());
        assert!(parse_status_line(b"SSH-2.0-OpenSSH\r\n").is_err());
    }
}
