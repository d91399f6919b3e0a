//! Started with stdout and stderr closed, drainit puts `/dev/null` on them
//! before it opens anything: its sockets never take descriptors 1 or 2, so
//! its log lines never reach a health client and the health check's answer
//! never reaches the app's server. The app inherits the same `/dev/null`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod common;
use common::*;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// `launcher... drainit args` with descriptors 1 and 2 closed (a shell closes
/// them and execs the rest), stdin from /dev/null.
fn start_closed(mode: Mode, args: &[&str]) -> Child {
    let mut command = Command::new("sh");
    command.args(["-c", "exec \"$@\" >&- 2>&-", "sh"]);
    if mode == Mode::Pid1 {
        command.args(["unshare", "--pid", "--fork", "--mount-proc"]);
    }
    command.arg(bin()).args(args);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("DRAINIT_") {
            command.env_remove(key);
        }
    }
    command.stdin(Stdio::null()).spawn().expect("start drainit")
}

/// Kills what is left if the test fails half-way.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let root = self.0.id() as i32;
            for pid in descendants(root).into_iter().chain([root]) {
                kill(pid, SIGKILL);
            }
            let _ = self.0.wait();
        }
    }
}

impl Guard {
    fn wait(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.0.try_wait().unwrap() {
                return status.code();
            }
            assert!(Instant::now() < deadline, "drainit did not exit in time");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// drainit's host pid.
    fn drainit(&self, mode: Mode) -> i32 {
        let me = self.0.id() as i32;
        if mode == Mode::Parent {
            return me;
        }
        wait_until(secs(10.0), || {
            children_of(me)
                .into_iter()
                .find(|p| comm(*p) == Some(bin_comm()))
        })
        .expect("drainit under unshare")
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A client connects to drainit's listener and waits while drainit logs
/// (-v) three forwards of SIGWINCH (the app writes each to `log`); its answer
/// is HTTP, with none of drainit's log lines in it.
fn client_gets_no_log_line(drainit: i32, port: u16, log: &Path, what: &str) {
    let listening = sockets(drainit);
    let mut client = TcpStream::connect(("127.0.0.1", port)).unwrap();
    wait_until(secs(10.0), || (sockets(drainit) > listening).then_some(()))
        .expect("the listener accepted the client");
    for i in 1..=3 {
        kill(drainit, SIGWINCH);
        wait_until(secs(10.0), || (lines(log).len() >= i).then_some(()))
            .unwrap_or_else(|| panic!("{what}: SIGWINCH #{i} not forwarded"));
    }
    std::thread::sleep(Duration::from_millis(100));
    client.set_read_timeout(Some(secs(10.0))).unwrap();
    client
        .write_all(b"GET /live HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    client.read_to_string(&mut answer).unwrap();
    assert!(
        answer.starts_with("HTTP/1.1 200 ") && !answer.contains("drainit"),
        "{what}: the client got: {answer:?}"
    );
}

fn target(pid: i32, fd: i32) -> String {
    std::fs::read_link(format!("/proc/{pid}/fd/{fd}"))
        .map(|t| t.to_string_lossy().into_owned())
        .unwrap_or_else(|_| "(closed)".into())
}

fn sockets(pid: i32) -> usize {
    open_fds(pid)
        .iter()
        .filter(|(_, t)| t.starts_with("socket:"))
        .count()
}

#[test]
fn a_health_client_gets_no_log_lines_when_stdout_and_stderr_were_closed() {
    for mode in BOTH {
        if !can_run(mode) {
            continue;
        }
        let dir = Scratch::new("closed-stdio");
        let port = free_port();
        let listen = format!("127.0.0.1:{port}");
        let log = dir.path("log");
        let app = app();
        let mut g = Guard(start_closed(
            mode,
            &[
                "-v",
                "--health-listen",
                &listen,
                "--",
                "python3",
                &app,
                "--ready",
                &dir.str("ready"),
                "--log",
                &dir.str("log"),
            ],
        ));
        assert!(
            wait_for_file(&dir.path("ready"), secs(15.0)),
            "{mode:?}: the app never started"
        );
        let drainit = g.drainit(mode);
        let app_pid = wait_until(secs(10.0), || children_of(drainit).into_iter().min()).unwrap();
        client_gets_no_log_line(drainit, port, &log, &format!("{mode:?}"));
        // Both have /dev/null there: the app inherits what drainit put there.
        for fd in [1, 2] {
            assert_eq!(target(drainit, fd), "/dev/null", "{mode:?}: drainit's {fd}");
            assert_eq!(target(app_pid, fd), "/dev/null", "{mode:?}: the app's {fd}");
        }
        kill(drainit, SIGTERM);
        assert_eq!(g.wait(secs(10.0)), Some(0), "{mode:?}");
    }
}

#[test]
fn the_health_checks_server_gets_only_the_request_when_stdout_and_stderr_were_closed() {
    // The server reads the request and never answers: the check gives up
    // after --timeout and writes its line while its connection is still open
    // (the worker that holds it is not waited for).
    let server = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = server.local_addr().unwrap().port();
    let received = std::thread::spawn(move || {
        let (mut s, _) = server.accept().unwrap();
        s.set_read_timeout(Some(secs(5.0))).unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        // Everything that comes on this connection, until the client closes it.
        while let Ok(n) = s.read(&mut buf) {
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        String::from_utf8_lossy(&got).into_owned()
    });
    let url = format!("http://127.0.0.1:{port}/health");
    let mut g = Guard(start_closed(
        Mode::Parent,
        &["-v", "--healthcheck", "--timeout", "1s", "--url", &url],
    ));
    assert_eq!(g.wait(secs(15.0)), Some(1), "the check");
    let got = received.join().unwrap();
    assert!(got.starts_with("GET /health HTTP/1."), "{got:?}");
    assert!(
        got.ends_with("\r\n\r\n") && got.matches("\r\n\r\n").count() == 1,
        "the server got more than the request: {got:?}"
    );
}

#[test]
fn without_dev_null_a_placeholder_keeps_sockets_off_1_and_2() {
    if !can_run(Mode::Pid1) {
        return; // a mount namespace with an empty /dev: root
    }
    let dir = Scratch::new("closed-stdio-no-dev");
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let log = dir.path("log");
    // The app logs each SIGWINCH it gets.
    let script = format!(
        "trap 'echo SIGWINCH >> {log}' WINCH; touch {ready}; while :; do sleep 0.05; done",
        log = dir.str("log"),
        ready = dir.str("ready")
    );
    let mut command = Command::new("unshare");
    command
        .args(["--mount", "sh", "-c"])
        .arg("mount -t tmpfs none /dev && exec \"$@\" >&- 2>&-")
        .arg("sh")
        .arg(bin())
        .args(["-v", "--health-listen", &listen, "sh", "-c", &script]);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("DRAINIT_") {
            command.env_remove(key);
        }
    }
    let mut g = Guard(command.stdin(Stdio::null()).spawn().unwrap());
    assert!(
        wait_for_file(&dir.path("ready"), secs(15.0)),
        "the app never started"
    );
    let drainit = g.drainit(Mode::Parent);
    let app_pid = wait_until(secs(10.0), || children_of(drainit).into_iter().min()).unwrap();
    client_gets_no_log_line(drainit, port, &log, "parent");
    // drainit holds a placeholder there (`/`, O_PATH); the app gets them closed.
    for fd in [1, 2] {
        assert_eq!(target(drainit, fd), "/", "drainit's {fd}");
        assert_eq!(target(app_pid, fd), "(closed)", "the app's {fd}");
    }
    kill(drainit, SIGTERM);
    assert_eq!(g.wait(secs(10.0)), Some(143));
}
