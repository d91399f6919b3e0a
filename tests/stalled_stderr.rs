//! drainit's stderr stalled: a pipe, a FIFO (what containerd hands a
//! container) or a socket whose reader holds it open and never reads (a stuck
//! log driver), or a terminal whose output is stopped (Ctrl-S). A log write never waits: drainit keeps forwarding, reaping
//! and meeting the kill deadline with `-v` and a stream of signals, `/live`
//! turns 503 when the app dies, and once stderr takes lines again the first
//! one says how many were dropped.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod common;
use common::*;

use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::UnixStream;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What drainit's stderr is.
#[derive(Clone, Copy, Debug)]
enum Kind {
    Pipe,
    /// A named FIFO: the kernel cannot write to it with RWF_NOWAIT.
    Fifo,
    Socket,
    /// A terminal with its output stopped (`tcflow(TCOOFF)`, as Ctrl-S does).
    Terminal,
}

const KINDS: [Kind; 4] = [Kind::Pipe, Kind::Fifo, Kind::Socket, Kind::Terminal];

/// A full stderr for drainit: its read end (held, never read until the test
/// says), and the write end to hand over, blocking as a log driver's is.
struct Stalled {
    reader: File,
    writer: Option<OwnedFd>,
    /// A terminal's own side, kept to restart its output.
    terminal: Option<OwnedFd>,
}

#[allow(unsafe_code)]
fn set_nonblocking(fd: &impl AsRawFd, on: bool) {
    // SAFETY: fcntl on a descriptor the test owns, with integer arguments.
    unsafe {
        let flags = libc::fcntl(fd.as_raw_fd(), libc::F_GETFL);
        let flags = if on {
            flags | libc::O_NONBLOCK
        } else {
            flags & !libc::O_NONBLOCK
        };
        assert_eq!(libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags), 0);
    }
}

/// Writes lines into `writer` until it takes no more.
fn fill(writer: &OwnedFd) {
    set_nonblocking(writer, true);
    let mut file = File::from(writer.try_clone().unwrap());
    let mut total = 0;
    // Pages while they fit, then smaller lines (a stopped terminal takes less).
    for size in [4096, 256, 16] {
        let mut chunk = vec![b'x'; size - 1];
        chunk.push(b'\n');
        loop {
            match file.write(&chunk) {
                Ok(n) => total += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) => panic!("filling the pipe: {e}"),
            }
        }
    }
    assert!(total >= 1024, "took only {total} bytes");
    set_nonblocking(writer, false);
}

#[allow(unsafe_code)]
fn stalled(kind: Kind, dir: &Scratch) -> Stalled {
    let (reader, writer): (File, OwnedFd) = match kind {
        Kind::Pipe => {
            let mut fds = [0; 2];
            // SAFETY: `fds` has room for the two descriptors pipe2 writes.
            assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
            // SAFETY: both were just returned by the kernel, owned by nothing else.
            unsafe { (File::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
        }
        Kind::Fifo => {
            let path = dir.path("stderr.fifo");
            let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
            // SAFETY: a NUL-terminated path and a mode.
            assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
            let reader = std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(&path)
                .unwrap();
            let writer = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
            (reader, writer.into())
        }
        Kind::Socket => {
            let (a, b) = UnixStream::pair().unwrap();
            (File::from(OwnedFd::from(b)), a.into())
        }
        Kind::Terminal => {
            let (mut master, mut slave) = (0, 0);
            // SAFETY: openpty writes the two descriptors; the other arguments may be null.
            let ret = unsafe {
                libc::openpty(
                    &mut master,
                    &mut slave,
                    std::ptr::null_mut(),
                    std::ptr::null(),
                    std::ptr::null(),
                )
            };
            assert_eq!(ret, 0);
            // SAFETY: both were just returned by the kernel, owned by nothing else.
            let (master, slave) =
                unsafe { (File::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
            // SAFETY: tcflow on the terminal just opened.
            assert_eq!(unsafe { libc::tcflow(slave.as_raw_fd(), libc::TCOOFF) }, 0);
            (master, slave)
        }
    };
    if !matches!(kind, Kind::Terminal) {
        fill(&writer); // a stopped terminal takes nothing at all already
    }
    let terminal = matches!(kind, Kind::Terminal).then(|| writer.try_clone().unwrap());
    Stalled {
        reader,
        writer: Some(writer),
        terminal,
    }
}

impl Stalled {
    /// The write end, for drainit's stderr (the test keeps none of it).
    fn for_drainit(&mut self) -> Stdio {
        Stdio::from(self.writer.take().unwrap())
    }

    /// Reads all there is now and throws it away (a terminal's output first
    /// starts again).
    #[allow(unsafe_code)]
    fn drain(&mut self) {
        if let Some(terminal) = &self.terminal {
            // SAFETY: tcflow on the test's own descriptor of the terminal.
            let restarted = unsafe { libc::tcflow(terminal.as_raw_fd(), libc::TCOON) };
            assert_eq!(restarted, 0);
        }
        set_nonblocking(&self.reader, true);
        let mut buf = vec![0u8; 65536];
        loop {
            match self.reader.read(&mut buf) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) => panic!("draining: {e}"),
            }
        }
        set_nonblocking(&self.reader, false);
    }

    /// From now on, everything written is collected (in a thread).
    fn collect(self) -> Arc<Mutex<Vec<u8>>> {
        let out = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&out);
        let mut reader = self.reader;
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        out
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The status code of `GET path`, if an answer came within 5 s.
fn status(port: u16, path: &str) -> Option<u16> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(secs(5.0))).ok()?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    text.split(' ').nth(1)?.parse().ok()
}

/// Sends `signal` to drainit `count` times, each only once the app has logged
/// the previous one: each is a forward drainit made (and, with `-v`, logged).
fn forward_each(r: &mut Running, log: &std::path::Path, signal: i32, name: &str, count: usize) {
    let seen = || lines(log).iter().filter(|l| *l == name).count();
    let before = seen();
    for i in 1..=count {
        r.signal(signal);
        wait_until(secs(10.0), || (seen() >= before + i).then_some(())).unwrap_or_else(|| {
            panic!("{name} #{i} was not forwarded within 10s (drainit stuck writing its log?)")
        });
    }
}

#[test]
fn a_stalled_stderr_stops_neither_forwarding_nor_reaping_nor_the_kill_deadline() {
    for mode in BOTH {
        if !can_run(mode) {
            continue;
        }
        for kind in KINDS {
            let what = format!("{mode:?} {kind:?}");
            let dir = Scratch::new("stalled");
            let mut stderr = stalled(kind, &dir);
            let port = free_port();
            let listen = format!("127.0.0.1:{port}");
            let log = dir.path("log");
            let mut r = Drainit::new(mode)
                .args(&["-v", "--kill-after", "2s", "--health-listen", &listen])
                .app(&[
                    "--ready",
                    &dir.str("ready"),
                    "--log",
                    &dir.str("log"),
                    "--on-term",
                    "ignore",
                    "--orphans",
                    "2",
                ])
                .stderr_to(stderr.for_drainit())
                .spawn();
            r.ready(&dir.path("ready"));
            let drainit = r.pid();
            // A stream of signals, each forwarded and logged (-v) into the full stderr.
            forward_each(&mut r, &log, SIGWINCH, "SIGWINCH", 100);
            assert_eq!(status(port, "/live"), Some(200), "{what}");
            // SIGUSR1 ends the orphans the app left: drainit reaps them.
            forward_each(&mut r, &log, SIGUSR1, "SIGUSR1", 1);
            let app = r.app_pid();
            let others = || {
                children_of(drainit)
                    .into_iter()
                    .filter(|p| *p != app)
                    .collect::<Vec<_>>()
            };
            if wait_until(secs(10.0), || others().is_empty().then_some(())).is_none() {
                let states: Vec<_> = others().iter().map(|p| (*p, state(*p))).collect();
                panic!("{what}: the orphans were not reaped: {states:?}");
            }
            // The app ignores SIGTERM: SIGKILL at the deadline, 2s after it.
            let sent = r.signal(SIGTERM);
            let out = r.wait(secs(20.0));
            assert_eq!(out.code, Some(137), "{what}");
            let took = out.elapsed - sent;
            assert!(
                took >= secs(1.9) && took < secs(6.0),
                "{what}: exited {took:?} after SIGTERM, with --kill-after 2s"
            );
            drop(stderr);
        }
    }
}

#[test]
fn live_answers_503_once_the_app_dies_with_a_stalled_stderr() {
    for mode in BOTH {
        if !can_run(mode) {
            continue;
        }
        for kind in [Kind::Pipe, Kind::Fifo] {
            let what = format!("{mode:?} {kind:?}");
            let dir = Scratch::new("stalled-live");
            let mut stderr = stalled(kind, &dir);
            let port = free_port();
            let listen = format!("127.0.0.1:{port}");
            // The app waits for the test's go-ahead, then exits 4, leaving a
            // process that ignores SIGTERM: drainit waits out the grace period.
            let script = format!(
                "trap '' TERM; sleep 60 & touch {}; while [ ! -e {} ]; do sleep 0.05; done; exit 4",
                dir.str("started"),
                dir.str("go")
            );
            let r = Drainit::new(mode)
                .args(&["-v", "--health-listen", &listen, "--grace", "3s"])
                .args(&["sh", "-c", &script])
                .stderr_to(stderr.for_drainit())
                .spawn();
            assert!(
                wait_for_file(&dir.path("started"), secs(15.0)),
                "{what}: the app never started"
            );
            wait_until(secs(10.0), || {
                (status(port, "/live") == Some(200)).then_some(())
            })
            .unwrap_or_else(|| panic!("{what}: /live never answered 200"));
            std::fs::write(dir.path("go"), "").unwrap();
            wait_until(secs(10.0), || {
                (status(port, "/live") == Some(503)).then_some(())
            })
            .unwrap_or_else(|| {
                panic!(
                    "{what}: /live still says {:?} after the app exited",
                    status(port, "/live")
                )
            });
            let out = r.wait(secs(20.0));
            assert_eq!(out.code, Some(4), "{what}");
            drop(stderr);
        }
    }
}

#[test]
fn once_stderr_takes_lines_again_the_first_says_how_many_were_dropped() {
    let mode = Mode::Parent;
    for kind in KINDS {
        let what = format!("{kind:?}");
        let dir = Scratch::new("stalled-dropped");
        let mut stderr = stalled(kind, &dir);
        let log = dir.path("log");
        let mut r = Drainit::new(mode)
            .arg("-v")
            .app(&["--ready", &dir.str("ready"), "--log", &dir.str("log")])
            .stderr_to(stderr.for_drainit())
            .spawn();
        r.ready(&dir.path("ready"));
        // Five lines that cannot be written (and the start-up lines before them).
        forward_each(&mut r, &log, SIGWINCH, "SIGWINCH", 5);
        stderr.drain();
        let out = stderr.collect();
        let text = || String::from_utf8_lossy(&out.lock().unwrap()).into_owned();
        forward_each(&mut r, &log, SIGUSR2, "SIGUSR2", 1);
        wait_until(secs(10.0), || text().contains("SIGUSR2").then_some(()))
            .unwrap_or_else(|| panic!("{what}: no line about SIGUSR2: {:?}", text()));
        let got = text();
        let lines: Vec<&str> = got.lines().collect();
        let notice = lines[0];
        let dropped: usize = notice
            .strip_prefix("drainit: warning: ")
            .and_then(|l| l.strip_suffix(" log lines dropped: stderr could not take them in time"))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{what}: the first line is not the count: {got:?}"));
        assert!(
            dropped >= 5,
            "{what}: {dropped} dropped, 5 signals logged: {got:?}"
        );
        assert!(
            lines[1].starts_with("drainit: debug: forwarded SIGUSR2 to "),
            "{what}: {got:?}"
        );
        let sent = r.signal(SIGTERM);
        let end = r.wait(secs(10.0));
        assert_eq!(end.code, Some(0), "{what}");
        assert!(end.elapsed - sent < secs(5.0), "{what}");
        // What it logged after, whole lines only: nothing cut, nothing mixed.
        std::thread::sleep(Duration::from_millis(100));
        let got = text();
        assert!(got.ends_with('\n'), "{what}: {got:?}");
        for line in got.lines() {
            assert!(line.starts_with("drainit: "), "{what}: {line:?} in {got:?}");
        }
    }
}
