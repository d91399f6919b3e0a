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
//! With `--url`, `/ready` also asks the app, in one worker thread made at
//! start, one check at a time: every `/ready` that comes while a check runs
//! waits for that check's answer, up to `--timeout` from its own arrival (a
//! 503 naming the step then, even when a name lookup hangs far longer), and
//! nothing else waits for it. No thread is ever made per probe.
//!
//! Everything the listener needs is taken before the app starts, so that a
//! container short of threads or memory is refused (exit 125), not run
//! without its probes: its thread (and the worker), with stacks of sizes
//! drainit chooses (never `RUST_MIN_STACK`'s), and the bytes of every
//! connection it will ever hold. Serving starts once the app has started.
//!
//! It runs in a thread of its own, which sleeps in one `poll` with no timeout
//! while no client is connected (no idle wake-up), and it knows nothing of
//! signals: the supervisor tells it what to answer through [`Status`]. Each
//! connection has a deadline, requests are bounded in size, and so is the
//! number of connections open at once, so that no client, however slow,
//! huge or numerous, costs drainit more than a bounded set of descriptors —
//! and none can delay signal forwarding or reaping, which happen elsewhere.
//! At the limit (of connections, or of descriptors: EMFILE), the oldest
//! connection that has not sent a complete request goes first, from the
//! peer that holds the most, once it has had 100 ms to send one (until
//! then the listening socket rests); with nothing to drop, a pending client
//! is accepted and closed at once through a descriptor kept in reserve, and
//! if even that fails the listening socket rests 100 ms: never a busy loop.

use std::fmt::{self, Write as _};
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::health::Health;
use crate::signals::Signal;
use crate::sys::{self, PollFd};
use crate::time::since;

/// How long a client has to send its request and read the answer.
pub const CONNECTION_DEADLINE: Duration = Duration::from_secs(5);
/// The largest request head accepted (request line and headers).
pub const MAX_REQUEST: usize = 2048;
/// How many connections are held at once; a new one beyond this drops one
/// that has not sent a complete request (the oldest, of the busiest peer).
pub const MAX_CONNECTIONS: usize = 64;
/// The listener thread's stack: its loop and the answers it renders need a
/// few KiB; set explicitly, whatever `RUST_MIN_STACK` says.
const LISTENER_STACK: usize = 128 * 1024;
/// Each connection's bytes: its request head as it arrives (up to one byte
/// over [`MAX_REQUEST`], to tell it is too large), then its answer.
const SLOT: usize = 2112;
// A slot holds the longest head it reads, and the longest answer (a head of
// under 256 bytes and the longest body).
const _: () = assert!(SLOT > MAX_REQUEST && SLOT > MAX_BODY.saturating_add(256));
/// The longest answer body; a longer one (a long `--url` in the reason) is cut.
const MAX_BODY: usize = 1024;
/// How many clients one wake-up accepts before reading those it holds, so
/// that a flood of connections cannot push a probe out before it is read.
const ACCEPT_BATCH: usize = 16;
/// Descriptors left free for the rest of drainit once EMFILE has been seen
/// (the app check's socket, the drain file).
const FD_HEADROOM: usize = 4;
/// The fewest connections held, however low the descriptor limit.
const MIN_CONNECTIONS: usize = 4;
/// How long the listening socket rests when a client can be neither accepted
/// nor dropped (no descriptor at all, no memory).
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);
/// Address space asked for at start beyond the stacks and the connections'
/// bytes: what starting the threads allocates, with room to spare.
const HEADROOM: usize = 128 * 1024;
/// How long a new connection that has sent nothing yet is safe from being
/// dropped to make room: long enough for a probe's request to arrive on a
/// busy machine, short enough that a flood waits little in the backlog.
const QUIET_GRACE: Duration = Duration::from_millis(100);

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

/// What the supervisor and the listener share.
#[derive(Debug)]
struct Shared {
    phase: Mutex<Phase>,
    /// Set once the app has started: the listener serves from then on.
    serving: Mutex<bool>,
    go: Condvar,
}

/// The supervisor's side: it tells the listener what changed.
#[derive(Clone, Debug)]
pub struct Status(Arc<Shared>);

impl Status {
    /// The app has started: the listener serves from now on.
    pub fn serve(&self) {
        *self
            .0
            .serving
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = true;
        self.0.go.notify_all();
    }

    /// A drain started now, by `signal` (a later one does not move its start).
    pub fn draining(&self, signal: Signal) {
        let mut phase = self.0.phase.lock().unwrap_or_else(PoisonError::into_inner);
        if *phase == Phase::Running {
            *phase = Phase::Draining {
                at: Instant::now(),
                signal,
            };
        }
    }

    /// The app exited with `code`.
    pub fn exited(&self, code: i32) {
        *self.0.phase.lock().unwrap_or_else(PoisonError::into_inner) = Phase::Exited { code };
    }

    fn get(&self) -> Phase {
        *self.0.phase.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sleeps until [`Status::serve`].
    fn wait_for_serve(&self) {
        let mut serving = self
            .0
            .serving
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        while !*serving {
            serving = self
                .0
                .go
                .wait(serving)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }
}

/// A bound listening socket, not yet serving.
pub struct Listener {
    socket: TcpListener,
    /// With `--url`: the app's own health check, which `/ready` asks too.
    app_health: Option<Health>,
}

/// Why the listener could not be started (a line for drainit's refusal).
fn cannot(what: &str, e: &io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{what}: {}", crate::error::os_reason(e)))
}

impl Listener {
    /// Binds now, so that a bad address or a port in use is an error before
    /// the app starts.
    pub fn bind(addr: SocketAddr, app_health: Option<Health>) -> io::Result<Listener> {
        let socket = TcpListener::bind(addr)?;
        socket.set_nonblocking(true)?;
        Ok(Listener { socket, app_health })
    }

    /// Takes everything the listener will need (its thread, the app check's
    /// worker, every connection's bytes, a spare descriptor), before the app
    /// starts; it serves once [`Status::serve`] is called. An error here is
    /// drainit's refusal to start, never a container without its probes.
    pub fn start(self) -> io::Result<Status> {
        let no_memory = || {
            io::Error::new(
                io::ErrorKind::OutOfMemory,
                "not enough memory for its threads and connections",
            )
        };
        // Starting threads allocates in ways that cannot fail softly (a
        // failure aborts): the address space they need, and more, is asked
        // for first, in one allocation that can fail, and given back.
        let stacks = match self.app_health {
            Some(_) => LISTENER_STACK.checked_add(crate::health::CHECK_STACK),
            None => Some(LISTENER_STACK),
        };
        let needed = SLOT
            .checked_mul(MAX_CONNECTIONS)
            .zip(stacks)
            .and_then(|(pool, stacks)| pool.checked_add(stacks)?.checked_add(HEADROOM))
            .ok_or_else(no_memory)?;
        let mut room: Vec<u8> = Vec::new();
        room.try_reserve_exact(needed).map_err(|_| no_memory())?;
        drop(room);
        let pool = Pool::reserve().ok_or_else(no_memory)?;
        let spare = self
            .socket
            .try_clone()
            .map_err(|e| cannot("cannot keep a spare descriptor", &e))?;
        let app_check = match &self.app_health {
            Some(health) => Some(AppCheck::start(health.clone())?),
            None => None,
        };
        let status = Status(Arc::new(Shared {
            phase: Mutex::new(Phase::Running),
            serving: Mutex::new(false),
            go: Condvar::new(),
        }));
        let shared = status.clone();
        let mut connections = Vec::new();
        connections
            .try_reserve_exact(MAX_CONNECTIONS)
            .map_err(|_| no_memory())?;
        let serving = Serving {
            socket: self.socket,
            spare: Some(spare),
            app_check,
            pool,
            connections,
            limit: MAX_CONNECTIONS,
            paused_until: None,
            scratch: Some(Scratch::reserve().ok_or_else(no_memory)?),
        };
        std::thread::Builder::new()
            .name("health-listen".into())
            .stack_size(LISTENER_STACK)
            .spawn(move || {
                shared.wait_for_serve();
                serving.run(&shared);
            })
            .map_err(|e| cannot("cannot create its thread", &e))?;
        Ok(status)
    }
}

/// Every connection's bytes, taken once at start: [`SLOT`] bytes each.
struct Pool {
    bytes: Vec<u8>,
    /// The slots no connection holds.
    free: Vec<usize>,
}

impl Pool {
    fn reserve() -> Option<Pool> {
        let total = SLOT.checked_mul(MAX_CONNECTIONS)?;
        let mut bytes = Vec::new();
        bytes.try_reserve_exact(total).ok()?;
        bytes.resize(total, 0);
        let mut free = Vec::new();
        free.try_reserve_exact(MAX_CONNECTIONS).ok()?;
        free.extend((0..MAX_CONNECTIONS).rev());
        Some(Pool { bytes, free })
    }

    fn slot(&mut self, slot: usize) -> &mut [u8] {
        let start = slot.saturating_mul(SLOT);
        self.bytes
            .get_mut(start..start.saturating_add(SLOT))
            .unwrap_or_default()
    }
}

/// The listener at work, in its own thread.
struct Serving {
    socket: TcpListener,
    /// A descriptor kept in reserve: at EMFILE with no connection to drop,
    /// it is closed to accept and close a pending client, then taken again.
    spare: Option<TcpListener>,
    app_check: Option<AppCheck>,
    pool: Pool,
    /// Oldest first.
    connections: Vec<Connection>,
    /// How many connections are held at most: [`MAX_CONNECTIONS`], less
    /// once EMFILE has shown how many descriptors there are.
    limit: usize,
    /// The listening socket is not polled until then.
    paused_until: Option<Instant>,
    /// The poll loop's lists, reserved at start (taken by [`Serving::run`]).
    scratch: Option<Scratch>,
}

/// What each turn of the poll loop fills: room for every descriptor it can
/// poll, taken at start so that the loop never allocates.
struct Scratch {
    fds: Vec<PollFd>,
    /// Which connection each poll entry after the fixed ones is.
    polled: Vec<usize>,
}

impl Scratch {
    fn reserve() -> Option<Scratch> {
        let mut fds = Vec::new();
        fds.try_reserve_exact(MAX_CONNECTIONS.checked_add(2)?)
            .ok()?;
        let mut polled = Vec::new();
        polled.try_reserve_exact(MAX_CONNECTIONS).ok()?;
        Some(Scratch { fds, polled })
    }
}

impl Serving {
    fn run(mut self, status: &Status) {
        let Scratch {
            mut fds,
            mut polled,
        } = match self.scratch.take() {
            Some(scratch) => scratch,
            None => return,
        };
        loop {
            let now = Instant::now();
            self.expire(now, status);
            if self.paused_until.is_some_and(|until| until <= now) {
                self.paused_until = None;
            }
            let timeout = self
                .connections
                .iter()
                .map(|c| c.next_deadline())
                .chain(self.paused_until)
                .min()
                .map(|at| at.saturating_duration_since(now));
            fds.clear();
            fds.push(PollFd::readable(if self.paused_until.is_some() {
                -1
            } else {
                self.socket.as_raw_fd()
            }));
            let check_fd = self.app_check.as_ref().and_then(AppCheck::running_fd);
            fds.extend(check_fd.map(PollFd::readable));
            polled.clear();
            // A connection that waits for the app's check has nothing to do
            // until the check wakes this loop (its deadline still counts).
            polled.extend(
                self.connections
                    .iter()
                    .enumerate()
                    .filter(|(_, c)| c.polled())
                    .map(|(i, _)| i),
            );
            fds.extend(
                polled
                    .iter()
                    .filter_map(|&i| self.connections.get(i).map(Connection::poll_fd)),
            );
            if sys::poll(&mut fds, timeout).is_err() {
                // Nothing useful to do about a failing poll but not spin.
                std::thread::sleep(ACCEPT_PAUSE);
                continue;
            }
            let mut ready = fds.iter().map(PollFd::ready);
            let accept = ready.next() == Some(true);
            let checked = check_fd.is_some() && ready.next() == Some(true);
            // Connections first: accepting may drop one, which would shift
            // them against their poll results.
            let app_timeout = self.app_check.as_ref().map(AppCheck::timeout);
            for (&i, ready) in polled.iter().zip(ready) {
                if let (true, Some(connection)) = (ready, self.connections.get_mut(i)) {
                    connection.progress(self.pool.slot(connection.slot), status, app_timeout);
                }
            }
            if checked {
                self.app_answered(status);
            }
            if accept {
                self.accept(status);
            }
            self.ask_app();
        }
    }

    /// Drops the connections that are done or past their deadline, and
    /// answers 503 to each `/ready` whose wait for the app is over.
    fn expire(&mut self, now: Instant, status: &Status) {
        if let Some(check) = &self.app_check {
            for connection in self.connections.iter_mut() {
                if connection.app_wait_over(now) {
                    let late = check.late();
                    let slot = self.pool.slot(connection.slot);
                    connection.answer_app(slot, (false, &late), status);
                }
            }
        }
        let free = &mut self.pool.free;
        self.connections.retain(|c| {
            let keep = !matches!(c.state, State::Done) && c.deadline > now;
            if !keep {
                free.push(c.slot);
            }
            keep
        });
    }

    /// The app check's answer is in: every `/ready` waiting gets it.
    fn app_answered(&mut self, status: &Status) {
        let Some(answer) = self.app_check.as_mut().and_then(AppCheck::finished) else {
            return;
        };
        for connection in self.connections.iter_mut() {
            if matches!(connection.state, State::WaitsForApp { .. }) {
                let slot = self.pool.slot(connection.slot);
                connection.answer_app(slot, (answer.0, &answer.1), status);
            }
        }
    }

    /// Starts a check of the app when a `/ready` waits and none runs.
    fn ask_app(&mut self) {
        let waiting = self
            .connections
            .iter()
            .any(|c| matches!(c.state, State::WaitsForApp { .. }));
        if let (true, Some(check)) = (waiting, &mut self.app_check) {
            check.start_check();
        }
    }

    /// Accepts pending clients, at most [`ACCEPT_BATCH`] a wake-up.
    fn accept(&mut self, status: &Status) {
        let app_timeout = self.app_check.as_ref().map(AppCheck::timeout);
        for _ in 0..ACCEPT_BATCH {
            if (self.connections.len() >= self.limit || self.pool.free.is_empty())
                && !self.make_room()
            {
                return;
            }
            match self.socket.accept() {
                Ok((stream, peer)) => {
                    let Some(slot) = self.pool.free.pop() else {
                        continue; // cannot happen: room was made
                    };
                    if stream.set_nonblocking(true).is_err() {
                        self.pool.free.push(slot);
                        continue;
                    }
                    let mut connection = Connection::new(stream, peer.ip(), slot);
                    // A probe sends its request at once: read it now, before
                    // more clients come in.
                    connection.progress(self.pool.slot(slot), status, app_timeout);
                    self.connections.push(connection);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) => {
                    if !self.out_of_descriptors() {
                        return;
                    }
                }
                // A client that reset before it was accepted, and the like.
                Err(e) if e.kind() == io::ErrorKind::ConnectionAborted => {}
                Err(_) => {
                    // ENOBUFS, ENOMEM: let it rest rather than spin.
                    self.pause_until(Instant::now().checked_add(ACCEPT_PAUSE));
                    return;
                }
            }
        }
    }

    /// EMFILE or ENFILE on accept: hold fewer connections from now on, and
    /// make room (a connection dropped, or the pending client accepted and
    /// closed through the spare descriptor). `false`: stop accepting for now.
    fn out_of_descriptors(&mut self) -> bool {
        self.limit = self
            .connections
            .len()
            .saturating_sub(FD_HEADROOM)
            .max(MIN_CONNECTIONS);
        if !self.connections.is_empty() {
            return self.make_room();
        }
        // Nothing to drop: refuse the pending client with the spare descriptor.
        drop(self.spare.take());
        let refused = self.socket.accept().is_ok();
        self.spare = self.socket.try_clone().ok();
        if !refused || self.spare.is_none() {
            self.pause_until(Instant::now().checked_add(ACCEPT_PAUSE));
            return false;
        }
        true
    }

    /// Stops polling the listening socket until `until` (at least 1 ms, at
    /// most [`ACCEPT_PAUSE`] from now: never a busy loop, never a long wait).
    fn pause_until(&mut self, until: Option<Instant>) {
        let now = Instant::now();
        let soonest = now.checked_add(Duration::from_millis(1)).unwrap_or(now);
        let latest = now.checked_add(ACCEPT_PAUSE).unwrap_or(soonest);
        self.paused_until = Some(until.unwrap_or(latest).clamp(soonest, latest));
    }

    /// Drops one connection to make room: the oldest that has sent no
    /// complete request and has had [`QUIET_GRACE`] to send one, from the
    /// peer holding the most connections; if every one has sent its
    /// request, the oldest of all. `false`: only connections still in their
    /// grace could go, so the listening socket rests until the first one's
    /// grace ends (a flood cannot push out a probe whose request is on its
    /// way).
    fn make_room(&mut self) -> bool {
        let now = Instant::now();
        let count = |ip: IpAddr| self.connections.iter().filter(|c| c.peer == ip).count();
        let mut victim: Option<(usize, usize)> = None; // (index, its peer's count)
        let mut in_grace: Option<Instant> = None; // when the first grace ends
        for (i, c) in self.connections.iter().enumerate() {
            if !matches!(c.state, State::Reading { .. }) {
                continue;
            }
            let grace_over = c.accepted.checked_add(QUIET_GRACE).unwrap_or(now);
            if grace_over > now {
                in_grace = Some(in_grace.map_or(grace_over, |t| t.min(grace_over)));
                continue;
            }
            let n = count(c.peer);
            if victim.is_none_or(|(_, most)| n > most) {
                victim = Some((i, n));
            }
        }
        let index = match (victim, in_grace) {
            (Some((i, _)), _) => i,
            (None, Some(until)) => {
                self.pause_until(Some(until));
                return false;
            }
            (None, None) if self.connections.is_empty() => return true,
            (None, None) => 0,
        };
        if index < self.connections.len() {
            let dropped = self.connections.remove(index);
            self.pool.free.push(dropped.slot);
        }
        true
    }
}

enum State {
    /// `len` bytes of the request head are in the slot.
    Reading {
        len: usize,
    },
    /// `/ready` waits for the app's own check, at most until `until`.
    WaitsForApp {
        head_only: bool,
        until: Instant,
    },
    /// The answer is the slot's first `len` bytes; `written` of them are out.
    Writing {
        len: usize,
        written: usize,
    },
    Done,
}

struct Connection {
    stream: TcpStream,
    peer: IpAddr,
    /// Its bytes in the pool.
    slot: usize,
    accepted: Instant,
    deadline: Instant,
    state: State,
}

impl Connection {
    fn new(stream: TcpStream, peer: IpAddr, slot: usize) -> Connection {
        let accepted = Instant::now();
        Connection {
            stream,
            peer,
            slot,
            accepted,
            deadline: accepted
                .checked_add(CONNECTION_DEADLINE)
                .unwrap_or_else(Instant::now),
            state: State::Reading { len: 0 },
        }
    }

    /// When the loop must wake for it at the latest.
    fn next_deadline(&self) -> Instant {
        match self.state {
            State::WaitsForApp { until, .. } => until.min(self.deadline),
            _ => self.deadline,
        }
    }

    fn polled(&self) -> bool {
        matches!(self.state, State::Reading { .. } | State::Writing { .. })
    }

    fn poll_fd(&self) -> PollFd {
        if matches!(self.state, State::Writing { .. }) {
            PollFd::writable(self.stream.as_raw_fd())
        } else {
            PollFd::readable(self.stream.as_raw_fd())
        }
    }

    /// Whether it waits for the app and its time to is up.
    fn app_wait_over(&self, now: Instant) -> bool {
        matches!(self.state, State::WaitsForApp { until, .. } if until <= now)
    }

    /// `app_timeout`: with `--url`, how long `/ready` waits for the app.
    fn progress(&mut self, slot: &mut [u8], status: &Status, app_timeout: Option<Duration>) {
        if let State::Reading { len } = self.state {
            self.read(slot, len, status, app_timeout);
        }
        if matches!(self.state, State::Writing { .. }) {
            self.write(slot);
        }
    }

    /// The app's check has answered (or its time is up): a `/ready` that
    /// waited for it is answered now, by the phase as it is now (a drain may
    /// have started meanwhile).
    fn answer_app(&mut self, slot: &mut [u8], app: (bool, &str), status: &Status) {
        let State::WaitsForApp { head_only, .. } = self.state else {
            return;
        };
        let mut response = ready(status.get(), Some(app));
        response.head_only = head_only;
        self.state = State::Writing {
            len: response.render(slot),
            written: 0,
        };
        self.write(slot);
    }

    fn read(
        &mut self,
        slot: &mut [u8],
        mut len: usize,
        status: &Status,
        app_timeout: Option<Duration>,
    ) {
        let limit = MAX_REQUEST.saturating_add(1).min(slot.len());
        loop {
            let Some(room) = slot.get_mut(len..limit) else {
                self.state = State::Done;
                return;
            };
            match self.stream.read(room) {
                Ok(0) => {
                    self.state = State::Done;
                    return;
                }
                Ok(n) => {
                    let from = len.saturating_sub(3);
                    len = len.saturating_add(n).min(limit);
                    self.state = State::Reading { len };
                    let head = slot.get(..len).unwrap_or_default();
                    if let Some(end) = head_end(head, from) {
                        let request = parse_request(head.get(..end).unwrap_or_default());
                        let response = match respond(&request, status.get(), app_timeout.is_some())
                        {
                            Reply::Now(response) => response,
                            Reply::AskApp { head_only } => {
                                let timeout = app_timeout.unwrap_or_default();
                                let now = Instant::now();
                                let until = now.checked_add(timeout).unwrap_or(now);
                                // A --timeout longer than the connection's
                                // deadline still gets its answer written.
                                let written_by = until
                                    .checked_add(CONNECTION_DEADLINE)
                                    .unwrap_or(self.deadline);
                                self.deadline = self.deadline.max(written_by);
                                self.state = State::WaitsForApp { head_only, until };
                                return;
                            }
                        };
                        self.state = State::Writing {
                            len: response.render(slot),
                            written: 0,
                        };
                        return;
                    }
                    if len > MAX_REQUEST {
                        self.state = State::Writing {
                            len: Response::new(431, Body::TooLarge).render(slot),
                            written: 0,
                        };
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(_) => {
                    self.state = State::Done;
                    return;
                }
            }
        }
    }

    fn write(&mut self, slot: &[u8]) {
        let State::Writing { len, mut written } = self.state else {
            return;
        };
        while let Some(rest) = slot.get(written..len).filter(|r| !r.is_empty()) {
            match self.stream.write(rest) {
                Ok(0) => break,
                Ok(n) => {
                    written = written.saturating_add(n);
                    self.state = State::Writing { len, written };
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(_) => break,
            }
        }
        self.state = State::Done;
    }
}

/// Where the request head ends (just past the blank line), once it has
/// arrived; `from`: where to start looking (the bytes before it were
/// looked at already, but for the 3 that may begin a terminator).
fn head_end(buf: &[u8], from: usize) -> Option<usize> {
    let mut at = from;
    while let Some(rest) = buf.get(at..) {
        if rest.starts_with(b"\n\n") {
            return at.checked_add(2);
        }
        if rest.starts_with(b"\r\n\r\n") {
            return at.checked_add(4);
        }
        if rest.is_empty() {
            return None;
        }
        at = at.checked_add(1)?;
    }
    None
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

/// What an answer says, rendered straight into the connection's bytes.
#[derive(Debug)]
enum Body<'a> {
    Ready,
    /// The app's check said yes or no, and why.
    App(bool, &'a str),
    Draining {
        at: Instant,
        signal: Signal,
    },
    Exited(i32),
    Live,
    LiveDraining,
    NotFound,
    NotAllowed,
    BadRequest,
    TooLarge,
}

impl fmt::Display for Body<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Body::Ready => f.write_str("ready\n"),
            Body::App(true, reason) => writeln!(f, "ready: {reason}"),
            Body::App(false, reason) => writeln!(f, "not ready: {reason}"),
            Body::Draining { at, signal } => {
                writeln!(f, "draining since {} ({signal})", since(at.elapsed()))
            }
            Body::Exited(code) => writeln!(f, "the app has exited (code {code})"),
            Body::Live => f.write_str("live\n"),
            Body::LiveDraining => f.write_str("live (draining)\n"),
            Body::NotFound => f.write_str("no such path: try /ready or /live\n"),
            Body::NotAllowed => f.write_str("only GET and HEAD\n"),
            Body::BadRequest => f.write_str("not an HTTP/1.x request\n"),
            Body::TooLarge => writeln!(f, "request head over {MAX_REQUEST} bytes"),
        }
    }
}

struct Response<'a> {
    code: u16,
    body: Body<'a>,
    head_only: bool,
}

/// Writes into a fixed buffer and never grows it: what does not fit is cut.
struct Fixed<'a> {
    buf: &'a mut [u8],
    len: usize,
}

impl fmt::Write for Fixed<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let room = self.buf.get_mut(self.len..).unwrap_or_default();
        let n = s.len().min(room.len());
        if let (Some(to), Some(from)) = (room.get_mut(..n), s.as_bytes().get(..n)) {
            to.copy_from_slice(from);
        }
        self.len = self.len.saturating_add(n);
        if n < s.len() { Err(fmt::Error) } else { Ok(()) }
    }
}

impl<'a> Response<'a> {
    fn new(code: u16, body: Body<'a>) -> Response<'a> {
        Response {
            code,
            body,
            head_only: false,
        }
    }

    /// Writes the answer into `out` (no allocation); returns its length.
    fn render(&self, out: &mut [u8]) -> usize {
        let mut body = [0u8; MAX_BODY];
        let mut text = Fixed {
            buf: &mut body,
            len: 0,
        };
        let _ = write!(text, "{}", self.body);
        let body_len = text.len;
        let body = body.get(..body_len).unwrap_or_default();
        let reason = match self.code {
            200 => "OK",
            400 => "Bad Request",
            404 => "Not Found",
            405 => "Method Not Allowed",
            431 => "Request Header Fields Too Large",
            _ => "Service Unavailable",
        };
        let mut answer = Fixed { buf: out, len: 0 };
        let _ = write!(
            answer,
            "HTTP/1.1 {} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n",
            self.code,
            body.len()
        );
        if !self.head_only {
            // The slot holds the longest head and body (see the tests).
            let _ = answer.write_str(std::str::from_utf8(body).unwrap_or_default());
        }
        answer.len
    }
}

/// What to answer a request with: now, or once the app's own check is done.
enum Reply<'a> {
    Now(Response<'a>),
    /// `/ready` while the app runs, with `--url`: the app is asked first.
    AskApp {
        head_only: bool,
    },
}

/// The answer to a request, given what the app is doing; `asks_app`:
/// `--url` makes `/ready` ask the app too while it runs.
fn respond(request: &Option<Request<'_>>, phase: Phase, asks_app: bool) -> Reply<'static> {
    let Some(request) = request else {
        return Reply::Now(Response::new(400, Body::BadRequest));
    };
    let head_only = request.method == "HEAD";
    if request.method != "GET" && !head_only {
        return Reply::Now(Response::new(405, Body::NotAllowed));
    }
    let mut response = match (request.path, phase) {
        ("/ready", Phase::Running) if asks_app => return Reply::AskApp { head_only },
        ("/ready", phase) => ready(phase, None),
        ("/live", Phase::Exited { code }) => Response::new(503, Body::Exited(code)),
        ("/live", Phase::Draining { .. }) => Response::new(200, Body::LiveDraining),
        ("/live", Phase::Running) => Response::new(200, Body::Live),
        _ => Response::new(404, Body::NotFound),
    };
    response.head_only = head_only;
    Reply::Now(response)
}

/// `/ready`'s answer in `phase`; `app`: what the app's own check said, when
/// it was asked.
fn ready(phase: Phase, app: Option<(bool, &str)>) -> Response<'_> {
    match (phase, app) {
        (Phase::Exited { code }, _) => Response::new(503, Body::Exited(code)),
        (Phase::Draining { at, signal }, _) => Response::new(503, Body::Draining { at, signal }),
        (Phase::Running, None) => Response::new(200, Body::Ready),
        (Phase::Running, Some((true, reason))) => Response::new(200, Body::App(true, reason)),
        (Phase::Running, Some((false, reason))) => Response::new(503, Body::App(false, reason)),
    }
}

/// What the listener and the app check's worker share.
struct Worker {
    job: Mutex<Job>,
    asked: Condvar,
    /// Where the running check is (see [`crate::health::too_late`]).
    stage: AtomicU8,
}

#[derive(Default)]
struct Job {
    /// A check is asked for and not yet started.
    asked: bool,
    answer: Option<(bool, String)>,
}

/// The app's own check (`--url`), in one worker thread made at start, one
/// check at a time: every `/ready` that comes while a check runs is answered
/// by that check, or 503 once its own `--timeout` is up (a name lookup
/// cannot be cut short, and no second one is started beside it).
struct AppCheck {
    health: Health,
    worker: Arc<Worker>,
    /// The worker writes a byte to its end when its answer is in.
    wake: UnixStream,
    running: bool,
}

impl AppCheck {
    /// Makes the worker, which sleeps until asked.
    fn start(health: Health) -> io::Result<AppCheck> {
        let (wake, theirs) =
            UnixStream::pair().map_err(|e| cannot("cannot create a socket pair", &e))?;
        wake.set_nonblocking(true)
            .map_err(|e| cannot("cannot create a socket pair", &e))?;
        let worker = Arc::new(Worker {
            job: Mutex::new(Job::default()),
            asked: Condvar::new(),
            stage: AtomicU8::new(crate::health::AT_DRAIN_FILE),
        });
        let shared = Arc::clone(&worker);
        let checked = health.clone();
        std::thread::Builder::new()
            .name("app-health".into())
            .stack_size(crate::health::CHECK_STACK)
            .spawn(move || check_when_asked(&checked, &shared, theirs))
            .map_err(|e| cannot("cannot create its worker thread", &e))?;
        Ok(AppCheck {
            health,
            worker,
            wake,
            running: false,
        })
    }

    fn timeout(&self) -> Duration {
        self.health.timeout
    }

    /// What to poll for the running check's end.
    fn running_fd(&self) -> Option<std::os::fd::RawFd> {
        self.running.then(|| self.wake.as_raw_fd())
    }

    /// Asks the worker for a check, unless one runs.
    fn start_check(&mut self) {
        if self.running {
            return;
        }
        self.worker
            .job
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .asked = true;
        self.worker.asked.notify_one();
        self.running = true;
    }

    /// The running check's answer, once its worker has woken the listener.
    fn finished(&mut self) -> Option<(bool, String)> {
        let mut byte = [0u8; 16];
        while matches!((&self.wake).read(&mut byte), Ok(n) if n > 0) {}
        let answer = self
            .worker
            .job
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .answer
            .take()?;
        self.running = false;
        Some(answer)
    }

    /// The answer for a `/ready` whose wait is over, naming the step the
    /// running check is at.
    fn late(&self) -> String {
        crate::health::too_late(&self.health, self.worker.stage.load(Ordering::SeqCst))
    }
}

/// The worker's life: sleep until asked, check, tell the listener, again.
fn check_when_asked(health: &Health, worker: &Worker, mut wake: UnixStream) {
    loop {
        {
            let mut job = worker.job.lock().unwrap_or_else(PoisonError::into_inner);
            while !job.asked {
                job = worker
                    .asked
                    .wait(job)
                    .unwrap_or_else(PoisonError::into_inner);
            }
            job.asked = false;
        }
        worker
            .stage
            .store(crate::health::AT_DRAIN_FILE, Ordering::SeqCst);
        let deadline = Instant::now().checked_add(health.timeout);
        let answer = crate::health::run(health, deadline, &worker.stage);
        worker
            .job
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .answer = Some(answer);
        let _ = wake.write(&[1]);
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
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nHost: x\r\n", 0), None);
        assert_eq!(head_end(b"GET / HTTP/1.1\r\n\r\nextra", 0), Some(18));
        assert_eq!(head_end(b"GET / HTTP/1.0\n\nextra", 0), Some(16));
        // Looked at from where the last read ended, less 3 bytes: a
        // terminator split over two reads is found.
        assert_eq!(head_end(b"GET / HTTP/1.1\r\n\r\n", 14), Some(18));
    }

    fn answer(head: &[u8], phase: Phase) -> (u16, String) {
        match respond(&parse_request(head), phase, false) {
            Reply::Now(r) => (r.code, r.body.to_string()),
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
        let no = (false, "http://x/ answered 500");
        let r = ready(Phase::Running, Some(no));
        assert_eq!(
            (r.code, r.body.to_string().as_str()),
            (503, "not ready: http://x/ answered 500\n")
        );
        // A drain that started while the app was asked wins over its 200.
        let yes = (true, "http://x/ answered 200");
        assert_eq!(ready(draining, Some(yes)).code, 503);
        assert_eq!(ready(Phase::Running, Some(yes)).code, 200);
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
        let mut out = [0u8; SLOT];
        let len = r.render(&mut out);
        let text = String::from_utf8(out[..len].to_vec()).unwrap();
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
        assert!(text.contains("Content-Length: 6\r\n"), "{text}");
        assert!(text.contains("Connection: close\r\n"), "{text}");
        assert!(text.ends_with("\r\n\r\n"), "{text}");
    }

    #[test]
    fn the_longest_answer_fits_a_slot_and_a_longer_body_is_cut() {
        let reason = "x".repeat(4 * MAX_BODY);
        let r = ready(Phase::Running, Some((false, &reason)));
        let mut out = [0u8; SLOT];
        let len = r.render(&mut out);
        let text = std::str::from_utf8(&out[..len]).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert_eq!(body.len(), MAX_BODY, "{head}");
        assert!(head.contains(&format!("Content-Length: {MAX_BODY}\r\n")));
        assert!(len < SLOT, "{len}");
    }
}
