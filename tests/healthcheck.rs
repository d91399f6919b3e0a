//! `drainit --healthcheck`: 0 when healthy, 1 when not, one line on stdout;
//! unhealthy while the drain file exists, or when --url does not answer 2xx
//! in time (refused, hanging, 503).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod common;
use common::*;
use std::io::{Read, Write};
use std::net::TcpListener;

/// A local HTTP server that answers every request with `status` (or, with
/// `None`, accepts and never answers). Returns its URL.
fn server(status: Option<u16>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let Some(code) = status else {
                held.push(stream);
                continue;
            };
            let mut buf = [0u8; 1024];
            let _ = stream.read(&mut buf);
            let _ = write!(
                stream,
                "HTTP/1.1 {code} Whatever\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
        }
    });
    format!("http://127.0.0.1:{port}/healthz")
}

/// A URL that refuses connections. The port stays bound on 127.0.0.1 for as
/// long as the listener lives, so no other test can take it, and nothing
/// listens on 127.0.0.2 at that port.
fn refused() -> (String, TcpListener) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    (format!("http://127.0.0.2:{port}/healthz"), listener)
}

fn check(args: &[&str]) -> Outcome {
    Drainit::new(Mode::Parent)
        .arg("--healthcheck")
        .args(args)
        .run(secs(20.0))
}

fn one_line(out: &Outcome) -> String {
    let text = String::from_utf8(out.stdout.clone()).unwrap();
    assert_eq!(text.lines().count(), 1, "one line on stdout: {text:?}");
    text.trim().to_string()
}

#[test]
fn a_2xx_answer_is_healthy() {
    for code in [200, 204] {
        let url = server(Some(code));
        let out = check(&["--url", &url]);
        assert_eq!(out.code, Some(0), "{code}: {}", out.stderr);
        assert_eq!(
            one_line(&out),
            format!("healthy: GET {url} answered {code}")
        );
    }
}

#[test]
fn a_503_is_unhealthy() {
    let url = server(Some(503));
    let out = check(&["--url", &url]);
    assert_eq!(out.code, Some(1));
    assert_eq!(one_line(&out), format!("unhealthy: GET {url} answered 503"));
}

#[test]
fn a_refused_connection_is_unhealthy() {
    let (url, _held) = refused();
    let out = check(&["--url", &url]);
    assert_eq!(out.code, Some(1));
    assert!(one_line(&out).contains("refused"), "{}", one_line(&out));
}

#[test]
fn a_hanging_server_is_unhealthy_after_the_timeout() {
    let url = server(None);
    let out = check(&["--url", &url, "--timeout", "700ms"]);
    assert_eq!(out.code, Some(1));
    assert!(
        one_line(&out).contains("no answer within 700ms"),
        "{}",
        one_line(&out)
    );
    assert!(out.elapsed >= secs(0.7), "gave up early: {:?}", out.elapsed);
    assert!(out.elapsed < secs(5.0), "hung: {:?}", out.elapsed);
    // The timeout also comes from DRAINIT_TIMEOUT.
    let out = Drainit::new(Mode::Parent)
        .env("DRAINIT_TIMEOUT", "300ms")
        .env("DRAINIT_URL", &url)
        .arg("--healthcheck")
        .run(secs(20.0));
    assert_eq!(out.code, Some(1));
    assert!(
        one_line(&out).contains("no answer within 300ms"),
        "{}",
        one_line(&out)
    );
}

#[test]
fn the_drain_file_makes_it_unhealthy_whatever_the_url_says() {
    let dir = Scratch::new("hc");
    let file = dir.str("draining");
    let url = server(Some(200));
    let out = check(&["--drain-file", &file, "--url", &url]);
    assert_eq!(out.code, Some(0), "no drain file yet");
    std::fs::write(&file, "signal=SIGTERM\ntime=2026-11-22T08:00:00.000Z\n").unwrap();
    let out = check(&["--drain-file", &file, "--url", &url]);
    assert_eq!(out.code, Some(1));
    assert!(
        one_line(&out).starts_with(&format!("unhealthy: draining: {file} exists")),
        "{}",
        one_line(&out)
    );
    // From the environment, as a task definition sets it.
    let out = Drainit::new(Mode::Parent)
        .env("DRAINIT_DRAIN_FILE", &file)
        .arg("--healthcheck")
        .run(secs(10.0));
    assert_eq!(out.code, Some(1));
    std::fs::remove_file(&file).unwrap();
    let out = Drainit::new(Mode::Parent)
        .env("DRAINIT_DRAIN_FILE", &file)
        .arg("--healthcheck")
        .run(secs(10.0));
    assert_eq!(out.code, Some(0));
}

#[test]
fn the_health_check_turns_unhealthy_during_a_real_drain() {
    if !can_run(Mode::Pid1) {
        return;
    }
    let dir = Scratch::new("hcdrain");
    let file = dir.str("draining");
    let mut r = Drainit::new(Mode::Pid1)
        .args(&[
            "--drain-file",
            &file,
            "--drain-delay",
            "10s",
            "--kill-after",
            "20s",
        ])
        .app(&["--ready", &dir.str("ready")])
        .spawn();
    r.ready(&dir.path("ready"));
    assert_eq!(check(&["--drain-file", &file]).code, Some(0));
    r.signal(SIGTERM);
    assert!(wait_for_file(&dir.path("draining"), secs(5.0)));
    assert_eq!(check(&["--drain-file", &file]).code, Some(1));
    r.signal(SIGTERM);
    assert_eq!(r.wait(secs(10.0)).code, Some(0));
}
