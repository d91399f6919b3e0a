//! `--health-listen`: drainit answers /ready and /live itself, so that the
//! drain works for apps that cannot be changed; no client, however slow,
//! numerous or hostile, delays signal forwarding or grows drainit's
//! descriptors without bound; a bind failure stops drainit before the app.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod common;
mod probe;
use common::*;
use probe::*;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Instant;

/// `(status code, body)` of a one-shot request, if it got an answer.
fn try_get(port: u16, request: &str) -> Option<(u16, String)> {
    try_get_within(port, request, secs(10.0))
}

fn get(port: u16, request: &str) -> (u16, String) {
    try_get(port, request).unwrap_or_else(|| panic!("no HTTP answer to {request:?}"))
}

#[test]
fn answers_ready_live_and_turns_ready_503_the_instant_a_drain_starts() {
    for mode in BOTH {
        if !can_run(mode) {
            continue;
        }
        let dir = Scratch::new("listener-phases");
        let port = free_port();
        let listen = format!("127.0.0.1:{port}");
        let mut r = Drainit::new(mode)
            .options(
                &[("--health-listen", &listen), ("--drain-delay", "3s")],
                mode == Mode::Parent,
            )
            .app(&["--ready", &dir.str("ready"), "--log", &dir.str("log")])
            .spawn();
        r.ready(&dir.path("ready"));
        assert_eq!(path(port, "/ready"), (200, "ready\n".into()), "{mode:?}");
        assert_eq!(path(port, "/live"), (200, "live\n".into()), "{mode:?}");
        assert_eq!(path(port, "/nope").0, 404, "{mode:?}");
        let (code, _) = get(port, "HEAD /ready HTTP/1.0\r\n\r\n");
        assert_eq!(code, 200, "{mode:?}");
        assert_eq!(get(port, "DELETE /ready HTTP/1.1\r\n\r\n").0, 405);
        assert_eq!(get(port, "hello\r\n\r\n").0, 400);

        r.signal(SIGTERM);
        r.wait_for_log("drain started", 1, secs(10.0));
        let (code, body) = path(port, "/ready");
        assert_eq!(code, 503, "{mode:?}: {body}");
        assert!(body.starts_with("draining since t+"), "{mode:?}: {body}");
        assert!(body.contains("(SIGTERM)"), "{mode:?}: {body}");
        assert_eq!(path(port, "/live"), (200, "live (draining)\n".into()));
        // The app still serves during the delay: it has had no signal yet.
        assert_eq!(log_lines(&dir.path("log")), Vec::<String>::new());
        let out = r.wait(secs(20.0));
        assert_eq!(out.code, Some(0), "{mode:?}: {}", out.stderr);
    }
}

#[test]
fn once_the_app_has_exited_both_answer_503() {
    for mode in BOTH {
        if !can_run(mode) {
            continue;
        }
        let dir = Scratch::new("listener-exited");
        let port = free_port();
        let listen = format!("127.0.0.1:{port}");
        // The app exits 4 at once, leaving a process that ignores SIGTERM:
        // drainit waits out the grace period with the listener still up.
        let script = format!(
            "trap '' TERM; sleep 60 & touch {}; exit 4",
            dir.str("started")
        );
        let r = Drainit::new(mode)
            .args(&[
                "--health-listen",
                &listen,
                "--grace",
                "3s",
                "sh",
                "-c",
                &script,
            ])
            .spawn();
        r.wait_for_log("the app exited with code 4", 1, secs(10.0));
        let (code, body) = path(port, "/live");
        assert_eq!(
            (code, body.as_str()),
            (503, "the app has exited (code 4)\n")
        );
        assert_eq!(path(port, "/ready").0, 503);
        let out = r.wait(secs(20.0));
        assert_eq!(out.code, Some(4), "{mode:?}: {}", out.stderr);
    }
}

/// drainit with a listener on a free port, running `sleep 1000`, once the
/// app has started and the listener answers.
fn listening_on_sleep(mode: Mode) -> (Running, u16) {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut r = Drainit::new(mode)
        .args(&["--health-listen", &listen, "sleep", "1000"])
        .spawn();
    r.app_pid();
    wait_listening(port);
    (r, port)
}

#[test]
fn hostile_clients_neither_delay_signals_nor_grow_descriptors() {
    for mode in BOTH {
        if !can_run(mode) {
            continue;
        }
        let dir = Scratch::new("listener-hostile");
        let port = free_port();
        let listen = format!("127.0.0.1:{port}");
        let log = dir.path("log");
        let mut r = Drainit::new(mode)
            .args(&["--health-listen", &listen])
            .app(&["--ready", &dir.str("ready"), "--log", &dir.str("log")])
            .spawn();
        r.ready(&dir.path("ready"));
        wait_listening(port);
        let drainit = r.pid();
        let fds_before = open_fds(drainit).len();

        // One that connects and sends nothing; one that sends a byte a second;
        // one with an endless header; then a thousand at once.
        let silent = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let mut slow = TcpStream::connect(("127.0.0.1", port)).unwrap();
        slow.write_all(b"G").unwrap();
        let mut huge = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let _ = huge.write_all(b"GET /ready HTTP/1.1\r\nX: ");
        let _ = huge.write_all(&[b'a'; 4096]);
        // The oversized request is refused, not buffered.
        let mut answer = String::new();
        huge.set_read_timeout(Some(secs(10.0))).unwrap();
        let _ = huge.read_to_string(&mut answer);
        assert!(answer.starts_with("HTTP/1.1 431"), "{mode:?}: {answer:?}");
        let mut crowd = Vec::new();
        for _ in 0..1000 {
            if let Ok(s) = TcpStream::connect(("127.0.0.1", port)) {
                crowd.push(s);
            }
        }

        // Signals are still forwarded at once.
        for _ in 0..5 {
            let before = lines(&log).len();
            let sent = Instant::now();
            kill(drainit, SIGUSR1);
            wait_until(secs(5.0), || (lines(&log).len() > before).then_some(()))
                .expect("SIGUSR1 forwarded while clients hang on the listener");
            assert!(
                sent.elapsed() < secs(1.0),
                "{mode:?}: forwarding took {:?}",
                sent.elapsed()
            );
            let _ = slow.write_all(b"E");
        }
        // Descriptors stay bounded while a thousand clients wait.
        let held = open_fds(drainit).len();
        assert!(
            held <= fds_before + 64 + 2,
            "{mode:?}: drainit holds {held} descriptors (was {fds_before})"
        );
        // The silent client was dropped to make room for the crowd.
        let mut silent = silent;
        silent.set_read_timeout(Some(secs(15.0))).unwrap();
        let mut buf = [0u8; 16];
        let n = silent.read(&mut buf);
        assert!(matches!(n, Ok(0)) || n.is_err(), "{mode:?}: {n:?}");
        drop(crowd);
        // And the listener still answers once the crowd is gone.
        wait_until(secs(15.0), || {
            try_get(port, "GET /ready HTTP/1.0\r\n\r\n").filter(|(code, _)| *code == 200)
        })
        .expect("the listener answers again");
        r.signal(SIGTERM);
        assert_eq!(r.wait(secs(20.0)).code, Some(0), "{mode:?}");
    }
}

#[test]
fn a_client_that_never_finishes_is_cut_off_at_its_deadline() {
    for mode in BOTH {
        if !can_run(mode) {
            continue;
        }
        let (mut r, port) = listening_on_sleep(mode);
        let mut slow = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let connected = Instant::now();
        slow.write_all(b"GET /ready HTTP/1.1\r\n").unwrap();
        slow.set_read_timeout(Some(secs(20.0))).unwrap();
        let mut buf = [0u8; 64];
        let n = slow.read(&mut buf);
        let took = connected.elapsed();
        assert!(matches!(n, Ok(0)) || n.is_err(), "{mode:?}: {n:?}");
        assert!(
            took >= secs(4.9),
            "{mode:?}: cut off after {took:?}, before its 5s"
        );
        assert!(took < secs(15.0), "{mode:?}: cut off after {took:?}");
        r.signal(SIGTERM);
        assert_eq!(r.wait(secs(10.0)).code, Some(143));
    }
}

#[test]
fn an_idle_listener_wakes_nobody() {
    for mode in BOTH {
        if !can_run(mode) {
            continue;
        }
        let (mut r, port) = listening_on_sleep(mode);
        assert_eq!(path(port, "/ready").0, 200);
        let pid = r.pid();
        // Let the answered connection's close settle.
        std::thread::sleep(secs(0.5));
        let before = context_switches(pid);
        std::thread::sleep(secs(5.0));
        let after = context_switches(pid);
        assert_eq!(
            after - before,
            0,
            "{mode:?}: {} context switches",
            after - before
        );
        r.signal(SIGTERM);
        assert_eq!(r.wait(secs(10.0)).code, Some(143));
    }
}

#[test]
fn a_bind_failure_stops_drainit_before_the_app_starts() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let dir = Scratch::new("listener-bind");
    let marker = dir.str("ran");
    for (by_env, address, says) in [
        (false, format!("127.0.0.1:{port}"), "--health-listen"),
        (true, format!("127.0.0.1:{port}"), "--health-listen"),
        (false, "192.0.2.1:8081".to_string(), "--health-listen"),
        (false, "localhost:8081".to_string(), "--health-listen"),
        (true, ":99999".to_string(), "DRAINIT_HEALTH_LISTEN"),
    ] {
        let out = Drainit::new(Mode::Parent)
            .options(&[("--health-listen", &address)], by_env)
            .args(&["touch", &marker])
            .run(secs(10.0));
        assert_eq!(out.code, Some(125), "{address}: {}", out.stderr);
        let lines = out.stderr_lines();
        assert_eq!(lines.len(), 1, "{address}: {}", out.stderr);
        assert!(lines[0].starts_with("drainit: error: "), "{}", lines[0]);
        assert!(lines[0].contains(says), "{address}: {}", lines[0]);
        assert!(!dir.path("ran").exists(), "{address}: the app was started");
    }
}

/// Like `listening_on_sleep`, with `/ready` also asking `url` (the options
/// as DRAINIT_* variables for a plain parent, as flags for PID 1).
fn listening_with_url(mode: Mode, url: &str, timeout: &str) -> (Running, u16) {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut r = Drainit::new(mode)
        .options(
            &[
                ("--health-listen", &listen),
                ("--url", url),
                ("--timeout", timeout),
            ],
            mode == Mode::Parent,
        )
        .args(&["sleep", "1000"])
        .spawn();
    r.app_pid();
    wait_listening(port);
    (r, port)
}

#[test]
fn with_url_ready_also_requires_the_apps_own_health_check() {
    // A tiny stand-in for the app's health endpoint: answers each request
    // with the next code in line.
    let app = TcpListener::bind("127.0.0.1:0").unwrap();
    let app_port = app.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for (stream, code) in app.incoming().zip(["200 OK", "500 Oops"].iter().cycle()) {
            let Ok(mut stream) = stream else { continue };
            let mut buf = [0u8; 1024];
            let _ = stream.read(&mut buf);
            let _ = write!(stream, "HTTP/1.1 {code}\r\nContent-Length: 0\r\n\r\n");
        }
    });
    for mode in BOTH {
        if !can_run(mode) {
            continue;
        }
        let url = format!("http://127.0.0.1:{app_port}/healthz");
        let (mut r, port) = listening_with_url(mode, &url, "2s");
        let answers: Vec<(u16, String)> = (0..2).map(|_| path(port, "/ready")).collect();
        let mut codes: Vec<u16> = answers.iter().map(|a| a.0).collect();
        codes.sort();
        assert_eq!(codes, [200, 503], "{mode:?}: {answers:?}");
        let not_ready = answers.iter().find(|a| a.0 == 503).unwrap();
        assert!(
            not_ready.1.contains("answered 500"),
            "{mode:?}: {answers:?}"
        );
        // /live does not ask the app.
        assert_eq!(path(port, "/live").0, 200);
        r.signal(SIGTERM);
        assert_eq!(r.wait(secs(10.0)).code, Some(143));
    }
}

#[test]
fn explain_shows_the_listeners_answers_on_the_timeline() {
    let out = Drainit::new(Mode::Parent)
        .args(&[
            "--explain",
            "--health-listen",
            ":8081",
            "--drain-delay",
            "5s",
        ])
        .run(secs(10.0));
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("  t+0s   /ready on 0.0.0.0:8081 answers 503 (draining); /live answers 200 until the app exits\n"),
        "{text}"
    );
    let before = text.find("/ready on").unwrap();
    let stop = text
        .find("t+5s   the signal that started the drain")
        .unwrap();
    assert!(before < stop, "{text}");
}

#[test]
fn a_hanging_app_check_delays_no_other_probe_and_runs_once() {
    // The app's health endpoint accepts and never answers.
    let app = TcpListener::bind("127.0.0.1:0").unwrap();
    app.set_nonblocking(true).unwrap();
    let app_port = app.local_addr().unwrap().port();
    let url = format!("http://127.0.0.1:{app_port}/healthz");
    for mode in BOTH {
        if !can_run(mode) {
            continue;
        }
        // Longer than a connection's 5 s deadline: /ready still gets its answer.
        let (mut r, port) = listening_with_url(mode, &url, "6s");
        let asked = Instant::now();
        let first = std::thread::spawn(move || (path(port, "/ready"), asked.elapsed()));
        // Hand-shake: drainit's check has reached the app, which says nothing.
        let held = wait_until(secs(10.0), || app.accept().ok())
            .unwrap_or_else(|| panic!("{mode:?}: the app was never asked: {}", r.stderr()));
        let second = std::thread::spawn(move || path(port, "/ready"));
        let live_asked = Instant::now();
        assert_eq!(path(port, "/live"), (200, "live\n".to_string()), "{mode:?}");
        let live_took = live_asked.elapsed();
        assert!(
            live_took < secs(2.0),
            "{mode:?}: /live waited {live_took:?} for the app's check"
        );
        let ((first, first_took), second) = (first.join().unwrap(), second.join().unwrap());
        for answer in [&first, &second] {
            assert_eq!(answer.0, 503, "{mode:?}: {answer:?}");
            assert!(answer.1.starts_with("not ready: "), "{mode:?}: {answer:?}");
        }
        assert!(
            first_took >= secs(6.0),
            "{mode:?}: /ready answered after {first_took:?}, before --timeout"
        );
        // Both /ready were answered by one check: the app was asked once.
        assert!(
            app.accept().is_err(),
            "{mode:?}: the app was asked once per probe"
        );
        drop(held);
        r.signal(SIGTERM);
        assert_eq!(r.wait(secs(10.0)).code, Some(143), "{mode:?}");
    }
}
