//! The health listener (`--health-listen`): drainit answers the load
//! balancer's and the orchestrator's probes itself, so that the drain works
//! for apps nobody can change.
//!
//! - `GET /ready` (or `HEAD`): 200 while the app runs and no drain has
//!   started (and, with `--url`, the app's own health URL answers 2xx);
//!   503 from the instant a drain starts, and once the app has exited.
//! - `GET /live`: 200 while the app runs, during a drain too; 503 once the
//!   app has exited.
//! - anything else: 404 (unknown path) or 405 (other method).
//!
//! With `--url`, `/ready` also asks the app, in a worker thread, one check at
//! a time: every `/ready` that comes while a check runs waits for that
//! check's answer, and nothing else waits for it.
//!
//! It runs in a thread of its own, which sleeps in one `poll` with no timeout
//! while no client is connected (no idle wake-up), and it knows nothing of
//! signals: the supervisor tells it what to answer through [`Status`]. Each
//! connection has a deadline, requests are bounded in size, and so is the
//! number of connections open at once, so that no client, however slow,
//! huge or numerous, costs drainit more than a bounded set of descriptors —
//! and none can delay signal forwarding or reaping, which happen elsewhere.

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::health::Health;
use crate::signals::Signal;
use crate::sys::{self, PollFd};
use crate::time::since;

/// How long a client has to send its request and read the answer.
pub const CONNECTION_DEADLINE: Duration = Duration::from_secs(5);
/// The largest request head accepted (request line and headers).
pub const MAX_REQUEST: usize = 2048;
/// How many connections are held at once; a new one beyond this drops the oldest.
pub const MAX_CONNECTIONS: usize = 64;

/// Where to listen: `:8081`, `0.0.0.0:8081`, `127.0.0.1:8081`, `[::]:8081`.
pub fn parse_address(text: &str) -> Result<SocketAddr, String> {
    let bad = || {
        format!(
            "'{text}': expected [ADDRESS]:PORT (:8081, 0.0.0.0:8081, 127.0.0.1:8081, [::]:8081)"
        )
    };
    let (host, port) = text.rsplit_once(':').ok_or_else(bad)?;
    if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let port: u16 = port.parse().map_err(|_| bad())?;
    if port == 0 {
        return Err(format!(
            "'{text}': port 0 is not a port a probe can be pointed at"
        ));
    }
    let ip = if host.is_empty() {
        Ipv4Addr::UNSPECIFIED.into()
    } else if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        v6.parse::<Ipv6Addr>().map_err(|_| bad())?.into()
    } else {
        host.parse::<Ipv4Addr>().map_err(|_| bad())?.into()
    };
    Ok(SocketAddr::new(ip, port))
}

/// What the app is doing, as the listener answers it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Running,
    /// A drain started at this instant, by this signal.
    Draining {
        at: Instant,
        signal: Signal,
    },
    /// The app exited with this code.
    Exited {
        code: i32,
    },
}

/// The supervisor's side: it tells the listener what changed.
#[derive(Clone, Debug)]
pub struct Status(Arc<Mutex<Phase>>);

impl Status {
    /// A drain started now, by `signal` (a later one does not move its start).
    pub fn draining(&self, signal: Signal) {
        let mut phase = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if *phase == Phase::Running {
            *phase = Phase::Draining {
                at: Instant::now(),
                signal,
            };
        }
    }

    /// The app exited with `code`.
    pub fn exited(&self, code: i32) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Phase::Exited { code };
    }

    fn get(&self) -> Phase {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A bound listening socket, not yet serving.
pub struct Listener {
    socket: TcpListener,
    /// With `--url`: the app's own health check, which `/ready` asks too.
    app_health: Option<Health>,
}

impl Listener {
    /// Binds now, so that a bad address or a port in use is an error before
    /// the app starts.
    pub fn bind(addr: SocketAddr, app_health: Option<Health>) -> io::Result<Listener> {
        let socket = TcpListener::bind(addr)?;
        socket.set_nonblocking(true)?;
        Ok(Listener { socket, app_health })
    }

    /// Starts serving in a thread of its own; the returned handle sets what
    /// it answers.
    pub fn serve(self) -> io::Result<Status> {
        let status = Status(Arc::new(Mutex::new(Phase::Running)));
        let shared = status.clone();
        std::thread::Builder::new()
            .name("health-listener".into())
            .stack_size(128 * 1024)
            .spawn(move || self.run(&shared))?;
        Ok(status)
    }

    fn run(self, status: &Status) {
        let mut app_check = self.app_health.clone().map(AppCheck::new);
        let mut connections: Vec<Connection> = Vec::new();
        let mut fds: Vec<PollFd> = Vec::with_capacity(MAX_CONNECTIONS.saturating_add(2));
        // Which connection each poll entry after the fixed ones is.
        let mut polled: Vec<usize> = Vec::with_capacity(MAX_CONNECTIONS);
        loop {
            let now = Instant::now();
            connections.retain(|c| !c.done && c.deadline > now);
            let timeout = connections
                .iter()
                .map(|c| c.deadline.saturating_duration_since(now))
                .min();
            fds.clear();
            fds.push(PollFd::readable(self.socket.as_raw_fd()));
            let check_fd = app_check.as_ref().and_then(AppCheck::running_fd);
            fds.extend(check_fd.map(PollFd::readable));
            polled.clear();
            // A connection that waits for the app's check has nothing to do
            // until the check wakes this loop (its deadline still counts).
            polled.extend((0..connections.len()).filter(|&i| {
                connections
                    .get(i)
                    .is_some_and(|c| c.waits_for_app.is_none())
            }));
            fds.extend(
                polled
                    .iter()
                    .filter_map(|&i| connections.get(i).map(Connection::poll_fd)),
            );
            if sys::poll(&mut fds, timeout).is_err() {
                // Nothing useful to do about a failing poll but not spin.
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
            let mut ready = fds.iter().map(PollFd::ready);
            let accept = ready.next() == Some(true);
            let checked = check_fd.is_some() && ready.next() == Some(true);
            // Connections first: accepting may drop the oldest, which would
            // shift them against their poll results.
            for (&i, ready) in polled.iter().zip(ready) {
                if let (true, Some(connection)) = (ready, connections.get_mut(i)) {
                    connection.progress(status, app_check.as_ref().map(|c| c.health.timeout));
                }
            }
            if let Some(check) = &mut app_check {
                if checked && let Some(result) = check.finished() {
                    for connection in connections.iter_mut() {
                        connection.app_answered(&result, status);
                    }
                }
                if connections.iter().any(|c| c.waits_for_app.is_some()) {
                    check.start(&mut connections, status);
                }
            }
            if accept {
                self.accept(&mut connections);
            }
        }
    }

    /// Accepts every pending client. At the limit, the oldest connection is
    /// dropped to make room: a flood of clients that send nothing cannot
    /// lock a real probe out (a probe is answered in microseconds), and the
    /// descriptors held stay bounded.
    fn accept(&self, connections: &mut Vec<Connection>) {
        loop {
            match self.socket.accept() {
                Ok((stream, _)) => {
                    if stream.set_nonblocking(true).is_err() {
                        continue;
                    }
                    if connections.len() >= MAX_CONNECTIONS && !connections.is_empty() {
                        connections.remove(0);
                    }
                    connections.push(Connection::new(stream));
                }
                // WouldBlock: none left; anything else (EMFILE, a client that
                // reset before accept): try again on the next wake-up.
                Err(_) => return,
            }
        }
    }
}

struct Connection {
    stream: TcpStream,
    deadline: Instant,
    request: Vec<u8>,
    answer: Option<Vec<u8>>,
    /// `/ready` waits for the app's own check (`Some(head_only)`).
    waits_for_app: Option<bool>,
    written: usize,
    done: bool,
}

impl Connection {
    fn new(stream: TcpStream) -> Connection {
        Connection {
            stream,
            deadline: Instant::now()
                .checked_add(CONNECTION_DEADLINE)
                .unwrap_or_else(Instant::now),
            request: Vec::new(),
            answer: None,
            waits_for_app: None,
            written: 0,
            done: false,
        }
    }

    fn poll_fd(&self) -> PollFd {
        if self.answer.is_some() {
            PollFd::writable(self.stream.as_raw_fd())
        } else {
            PollFd::readable(self.stream.as_raw_fd())
        }
    }

    /// `app_timeout`: with `--url`, how long the app's check may take.
    fn progress(&mut self, status: &Status, app_timeout: Option<Duration>) {
        if self.answer.is_none() {
            self.read(status, app_timeout);
        }
        if self.answer.is_some() {
            self.write();
        }
    }

    /// The app's check is done: a `/ready` that waited for it is answered
    /// now, by the phase as it is now (a drain may have started meanwhile).
    fn app_answered(&mut self, result: &(bool, String), status: &Status) {
        let Some(head_only) = self.waits_for_app.take() else {
            return;
        };
        let mut response = ready(status.get(), Some(result));
        response.head_only = head_only;
        self.answer = Some(response.render());
        self.write();
    }

    fn read(&mut self, status: &Status, app_timeout: Option<Duration>) {
        let mut buf = [0u8; 512];
        loop {
            match self.stream.read(&mut buf) {
                Ok(0) => {
                    self.done = true;
                    return;
                }
                Ok(n) => {
                    let Some(chunk) = buf.get(..n) else { return };
                    self.request.extend_from_slice(chunk);
                    if let Some(head) = complete_head(&self.request) {
                        match respond(&parse_request(head), status.get(), app_timeout.is_some()) {
                            Reply::Now(response) => self.answer = Some(response.render()),
                            Reply::AskApp { head_only } => {
                                self.waits_for_app = Some(head_only);
                                // A --timeout longer than the connection's deadline
                                // still gets its answer written.
                                let answered_by = app_timeout
                                    .and_then(|t| t.checked_add(CONNECTION_DEADLINE))
                                    .and_then(|t| Instant::now().checked_add(t));
                                self.deadline =
                                    self.deadline.max(answered_by.unwrap_or(self.deadline));
                            }
                        }
                        return;
                    }
                    if self.request.len() > MAX_REQUEST {
                        self.answer = Some(Response::too_large().render());
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(_) => {
                    self.done = true;
                    return;
                }
            }
        }
    }

    fn write(&mut self) {
        let Some(answer) = &self.answer else { return };
        while let Some(rest) = answer.get(self.written..).filter(|r| !r.is_empty()) {
            match self.stream.write(rest) {
                Ok(0) => break,
                Ok(n) => self.written = self.written.saturating_add(n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(_) => break,
            }
        }
        self.done = true;
    }
}

/// The request head, once the blank line that ends it has arrived.
fn complete_head(buf: &[u8]) -> Option<&[u8]> {
    let end = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .and_then(|i| i.checked_add(4))
        .or_else(|| {
            buf.windows(2)
                .position(|w| w == b"\n\n")
                .and_then(|i| i.checked_add(2))
        })?;
    buf.get(..end)
}

#[derive(Debug, PartialEq, Eq)]
struct Request<'a> {
    method: &'a str,
    path: &'a str,
}

/// `GET /ready HTTP/1.1` → method and path (query string dropped); `None`
/// for anything that is not a request line.
fn parse_request(head: &[u8]) -> Option<Request<'_>> {
    let line = head.split(|b| *b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?.trim_end_matches('\r');
    let mut words = line.split(' ');
    let (method, target, version) = (words.next()?, words.next()?, words.next()?);
    if words.next().is_some() || !matches!(version, "HTTP/1.0" | "HTTP/1.1") {
        return None;
    }
    let path = target.split('?').next()?;
    Some(Request { method, path })
}

struct Response {
    code: u16,
    body: String,
    head_only: bool,
}

impl Response {
    fn new(code: u16, body: String) -> Response {
        Response {
            code,
            body,
            head_only: false,
        }
    }

    fn too_large() -> Response {
        Response::new(431, format!("request head over {MAX_REQUEST} bytes\n"))
    }

    fn render(&self) -> Vec<u8> {
        let reason = match self.code {
            200 => "OK",
            400 => "Bad Request",
            404 => "Not Found",
            405 => "Method Not Allowed",
            431 => "Request Header Fields Too Large",
            _ => "Service Unavailable",
        };
        let mut out = format!(
            "HTTP/1.1 {} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n",
            self.code,
            self.body.len()
        )
        .into_bytes();
        if !self.head_only {
            out.extend_from_slice(self.body.as_bytes());
        }
        out
    }
}

/// What to answer a request with: now, or once the app's own check is done.
enum Reply {
    Now(Response),
    /// `/ready` while the app runs, with `--url`: the app is asked first.
    AskApp {
        head_only: bool,
    },
}

/// The answer to a request, given what the app is doing; `asks_app`:
/// `--url` makes `/ready` ask the app too while it runs.
fn respond(request: &Option<Request<'_>>, phase: Phase, asks_app: bool) -> Reply {
    let Some(request) = request else {
        return Reply::Now(Response::new(400, "not an HTTP/1.x request\n".into()));
    };
    let head_only = request.method == "HEAD";
    if request.method != "GET" && !head_only {
        return Reply::Now(Response::new(405, "only GET and HEAD\n".into()));
    }
    let mut response = match (request.path, phase) {
        ("/ready", Phase::Running) if asks_app => return Reply::AskApp { head_only },
        ("/ready", phase) => ready(phase, None),
        ("/live", Phase::Exited { code }) => {
            Response::new(503, format!("the app has exited (code {code})\n"))
        }
        ("/live", Phase::Draining { .. }) => Response::new(200, "live (draining)\n".into()),
        ("/live", Phase::Running) => Response::new(200, "live\n".into()),
        _ => Response::new(404, "no such path: try /ready or /live\n".into()),
    };
    response.head_only = head_only;
    Reply::Now(response)
}

/// `/ready`'s answer in `phase`; `app`: what the app's own check said, when
/// it was asked.
fn ready(phase: Phase, app: Option<&(bool, String)>) -> Response {
    match (phase, app) {
        (Phase::Exited { code }, _) => {
            Response::new(503, format!("the app has exited (code {code})\n"))
        }
        (Phase::Draining { at, signal }, _) => Response::new(
            503,
            format!("draining since {} ({signal})\n", since(at.elapsed())),
        ),
        (Phase::Running, None) => Response::new(200, "ready\n".into()),
        (Phase::Running, Some((true, reason))) => Response::new(200, format!("ready: {reason}\n")),
        (Phase::Running, Some((false, reason))) => {
            Response::new(503, format!("not ready: {reason}\n"))
        }
    }
}

/// The app's own check (`--url`), one at a time in a thread of its own, so
/// that no probe waits for another: every `/ready` that comes while a check
/// runs is answered by that check, and `/live` never waits.
struct AppCheck {
    health: Health,
    /// The worker writes a byte to the second when its answer is in `answer`;
    /// `None`: no socket pair, so checks run in the listener's own thread.
    wake: Option<(UnixStream, UnixStream)>,
    answer: Arc<Mutex<Option<(bool, String)>>>,
    running: bool,
}

impl AppCheck {
    fn new(health: Health) -> AppCheck {
        let wake = UnixStream::pair()
            .and_then(|(ours, theirs)| ours.set_nonblocking(true).map(|()| (ours, theirs)))
            .ok();
        AppCheck {
            health,
            wake,
            answer: Arc::new(Mutex::new(None)),
            running: false,
        }
    }

    /// What to poll for the running check's end.
    fn running_fd(&self) -> Option<std::os::fd::RawFd> {
        let (ours, _) = self.wake.as_ref().filter(|_| self.running)?;
        Some(ours.as_raw_fd())
    }

    /// Starts a check unless one runs. Without a worker (no thread, no
    /// socket pair), checks here and answers the waiting connections at once.
    fn start(&mut self, connections: &mut [Connection], status: &Status) {
        if self.running {
            return;
        }
        let worker = self
            .wake
            .as_ref()
            .and_then(|(_, theirs)| theirs.try_clone().ok());
        if let Some(mut theirs) = worker {
            let health = self.health.clone();
            let slot = Arc::clone(&self.answer);
            let spawned = std::thread::Builder::new()
                .name("app-health".into())
                .stack_size(128 * 1024)
                .spawn(move || {
                    // Bounded by --timeout, lookup included (see health::check).
                    let answer = crate::health::check(&health);
                    *slot.lock().unwrap_or_else(PoisonError::into_inner) = Some(answer);
                    let _ = theirs.write(&[1]);
                });
            if spawned.is_ok() {
                self.running = true;
                return;
            }
        }
        let result = crate::health::check(&self.health);
        for connection in connections.iter_mut() {
            connection.app_answered(&result, status);
        }
    }

    /// The running check's answer, once its worker has woken the listener.
    fn finished(&mut self) -> Option<(bool, String)> {
        if let Some((ours, _)) = &self.wake {
            let mut byte = [0u8; 16];
            while matches!((&*ours).read(&mut byte), Ok(n) if n > 0) {}
        }
        let answer = self
            .answer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()?;
        self.running = false;
        Some(answer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_listen_addresses() {
        let ok = |t: &str| parse_address(t).unwrap().to_string();
        assert_eq!(ok(":8081"), "0.0.0.0:8081");
        assert_eq!(ok("0.0.0.0:8081"), "0.0.0.0:8081");
        assert_eq!(ok("127.0.0.1:9"), "127.0.0.1:9");
        assert_eq!(ok("[::]:8081"), "[::]:8081");
        assert_eq!(ok("[::1]:80"), "[::1]:80");
        for bad in [
            "",
            "8081",
            ":",
            ":0",
            ":65536",
            ":+80",
            ":-1",
            "localhost:80",
            "[::1:80",
            "::1:80",
            "1.2.3:80",
            " :80",
            ":80 ",
        ] {
            assert!(parse_address(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn reads_request_lines() {
        assert_eq!(
            parse_request(b"GET /ready HTTP/1.1\r\nHost: x\r\n\r\n"),
            Some(Request {
                method: "GET",
                path: "/ready"
            })
        );
        assert_eq!(
            parse_request(b"HEAD /live?x=1 HTTP/1.0\n\n"),
            Some(Request {
                method: "HEAD",
                path: "/live"
            })
        );
        assert_eq!(parse_request(b"GET /ready\r\n\r\n"), None);
        assert_eq!(parse_request(b"GET /ready HTTP/2\r\n\r\n"), None);
        assert_eq!(parse_request(b"\xff\xfe HTTP/1.1\r\n\r\n"), None);
        assert_eq!(complete_head(b"GET / HTTP/1.1\r\nHost: x\r\n"), None);
        assert!(complete_head(b"GET / HTTP/1.1\r\n\r\nextra").is_some());
    }

    fn answer(head: &[u8], phase: Phase) -> (u16, String) {
        match respond(&parse_request(head), phase, false) {
            Reply::Now(r) => (r.code, r.body),
            Reply::AskApp { .. } => panic!("asks the app without --url"),
        }
    }

    #[test]
    fn answers_by_phase() {
        let get = |path: &str| format!("GET {path} HTTP/1.1\r\n\r\n").into_bytes();
        let draining = Phase::Draining {
            at: Instant::now(),
            signal: Signal::TERM,
        };
        let exited = Phase::Exited { code: 0 };
        assert_eq!(answer(&get("/ready"), Phase::Running).0, 200);
        assert_eq!(answer(&get("/live"), Phase::Running).0, 200);
        let (code, body) = answer(&get("/ready"), draining);
        assert_eq!(code, 503);
        assert!(
            body.starts_with("draining since t+0.0s (SIGTERM)"),
            "{body}"
        );
        assert_eq!(answer(&get("/live"), draining).0, 200);
        assert_eq!(answer(&get("/ready"), exited).0, 503);
        assert_eq!(answer(&get("/live"), exited).0, 503);
        assert_eq!(answer(&get("/other"), Phase::Running).0, 404);
        assert_eq!(
            answer(b"POST /ready HTTP/1.1\r\n\r\n", Phase::Running).0,
            405
        );
        assert_eq!(answer(b"garbage\r\n\r\n", Phase::Running).0, 400);
    }

    #[test]
    fn with_url_only_a_running_apps_ready_asks_the_app() {
        let head = b"HEAD /ready HTTP/1.1\r\n\r\n";
        assert!(matches!(
            respond(&parse_request(head), Phase::Running, true),
            Reply::AskApp { head_only: true }
        ));
        let live = respond(
            &parse_request(b"GET /live HTTP/1.1\r\n\r\n"),
            Phase::Running,
            true,
        );
        assert!(matches!(live, Reply::Now(Response { code: 200, .. })));
        let draining = Phase::Draining {
            at: Instant::now(),
            signal: Signal::TERM,
        };
        let ready_draining = respond(&parse_request(head), draining, true);
        assert!(matches!(
            ready_draining,
            Reply::Now(Response { code: 503, .. })
        ));
        let no = (false, "http://x/ answered 500".to_string());
        let r = ready(Phase::Running, Some(&no));
        assert_eq!(
            (r.code, r.body.as_str()),
            (503, "not ready: http://x/ answered 500\n")
        );
        // A drain that started while the app was asked wins over its 200.
        let yes = (true, "http://x/ answered 200".to_string());
        assert_eq!(ready(draining, Some(&yes)).code, 503);
        assert_eq!(ready(Phase::Running, Some(&yes)).code, 200);
    }

    #[test]
    fn head_has_no_body_but_its_length() {
        let Reply::Now(r) = respond(
            &parse_request(b"HEAD /ready HTTP/1.1\r\n\r\n"),
            Phase::Running,
            false,
        ) else {
            panic!("asks the app without --url");
        };
        let text = String::from_utf8(r.render()).unwrap();
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
        assert!(text.contains("Content-Length: 6\r\n"), "{text}");
        assert!(text.contains("Connection: close\r\n"), "{text}");
        assert!(text.ends_with("\r\n\r\n"), "{text}");
    }
}
